"""Every Redis key of the event store, named in one place: the layout the receiver, the workers and the
operator tools share, and the data already deployed. A key's string must never change here without a
migration of that data.

Every key starts with a prefix (`EVENT_KEY_PREFIX`, default `sc:`, written `{p}` below):

| key | type | what |
| --- | --- | --- |
| `{p}seen:{event}` | string, TTL = dedupe window (7 days) | the id was accepted (value: receipt time) |
| `{p}event:{event}` | hash | the event record (`eventstore.record`) |
| `{p}inbox` | list | ids not yet handed to Celery (receiver LPUSHes, the relay pops the right end) |
| `{p}pending` | sorted set, score = when it should move on | ids neither done nor failed: the sweeper's |
| `{p}dead` | sorted set, score = time of failure | the dead letters |
| `{p}scheduled` | sorted set, score = due time | retries parked until due (longer than a countdown) |
| `{p}leases` | sorted set, score = lease end | runs in progress (renewed by their worker) |
| `{p}ix:status:{status}` | sorted set, score = status time | the events in that status (`eventstore.index`) |
| `{p}ix:type:{event_type}` | sorted set, score = receipt time | the claimed events of one type |
| `{p}ix:vehicle:{vehicle}` | sorted set, score = receipt time | the claimed events of one vehicle |
| `{p}ix:user:{user}` | sorted set, score = receipt time | the claimed events of one Smartcar user |
| `{p}ix:webhook:{webhook}` | sorted set, score = receipt time | the claimed events of one webhook |
| `{p}ix:error-type:{error_type}` | sorted set, score = failure time | not done, last failed with this type |
| `{p}ix:error:{error_type}:{code}` | sorted set, score = failure time | the same, by type and code |
| `{p}cmd:{event}:{step}` | hash, TTL = retention | one command step of an event (`eventstore.commands`) |
| `{p}cmd-steps:{event}` | set, TTL = retention | the steps of an event that have a record (for operators) |
| `{p}vehicle:{vehicle}:signals` | hash, code -> JSON | each signal's latest value (`eventstore.vehicles`) |
| `{p}vehicle:{vehicle}:errors` | hash, TYPE:CODE -> JSON | the latest VEHICLE_ERROR item of each kind |
| `{p}vlock:{vehicle}` | string with a lease | held while a command for the vehicle runs |
| `{p}rate:app` | hash `tokens`, `at` | our copy of Smartcar's application rate bucket (`eventstore.rates`) |
| `{p}rate:pauses` | hash, `app` or vehicle id -> epoch s | no call to Smartcar (or the vehicle) till then |
| `{p}grant:{grant}` | hash | one OAuth grant's encrypted token pair and its times (`eventstore.grants`) |
| `{p}grant-of:{vehicle}` | string | the grant that covers the vehicle |
| `{p}grant-expiry` | sorted set, score = access token expiry | what the beat refresher looks at |
| `{p}grant-lock:{grant}` | string with a lease | held while one worker refreshes the grant |
| `{p}lifecycle` | sorted set, `action:vehicle`, score = due | lifecycle jobs (`eventstore.lifecycle`) |
| `{p}lifecycle-job:{action}:{vehicle}` | hash | one lifecycle job's details |
| `{p}fleet` | sorted set, score = when first known | the registry's vehicles (`eventstore.fleet`) |
| `{p}fleet:{vehicle}` | hash | what we know of one vehicle: status, user, subscribed_at, last error |
| `{p}fleet-reconcile` | hash | the last reconciliation's report (when, connections, drift counts) |
| `{p}held-vehicles` | sorted set, score = access lost at | vehicles whose events wait (`eventstore.held`) |
| `{p}held:{vehicle}` | set | the ids of the vehicle's events waiting for re-consent (parked far ahead) |
| `{p}pause` | hash | an operator's global pause, or the drain after it (`eventstore.pauses`) |
| `{p}paused-vehicles` | hash, vehicle -> paused at | vehicles whose new events are parked by the claim |
| `{p}parked:{vehicle}` | list | the ids of a paused vehicle's parked events (oldest at the right end) |
| `{p}replays` | sorted set, score = when due (or lease end) | unfinished replay jobs (`eventstore.replays`) |
| `{p}replay:{job}` | hash | one replay job: selection, rate, status, cursor, counts, lease |
| `{p}replay-ids:{job}` | list | the ids the job selected, snapshotted when it was created |
| `{p}replaying` | hash, event -> job | the events a job still has to go through (one job per event) |
| `{p}connect-state:{state}` | string, TTL = its life | a Connect state, used once (`eventstore.connect`) |
| `{p}verify:armed` | string, TTL = the window | VERIFY is answered while it exists (`eventstore.verify`) |
| `{p}ping:{token}` | string, TTL 5 min | a worker ran the ping task (proof that the queue is consumed) |
| `{p}sig-failures:{minute}` | hash, reason -> count, TTL 1 h | signature failures (`eventstore.signatures`) |

Scripts receive every key they touch in KEYS, built here (none is built inside Lua): that is what Redis
Cluster needs, once the prefix carries a hash tag.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "sc:"
DEFAULT_DEDUPE_SECONDS = 7 * 24 * 3600
"""How long an accepted event id is remembered (Smartcar retries a delivery for up to 3 days)."""


@dataclass(frozen=True, slots=True)
class KeySpace:
    """The key names under one prefix (see the module's table)."""

    prefix: str = DEFAULT_PREFIX

    # The event store: what the receiver writes and the workers move through its life.

    def seen(self, event_id: str) -> str:
        return f"{self.prefix}seen:{event_id}"

    def event(self, event_id: str) -> str:
        return f"{self.prefix}event:{event_id}"

    @property
    def inbox(self) -> str:
        return f"{self.prefix}inbox"

    @property
    def pending(self) -> str:
        return f"{self.prefix}pending"

    @property
    def dead(self) -> str:
        return f"{self.prefix}dead"

    @property
    def scheduled(self) -> str:
        return f"{self.prefix}scheduled"

    @property
    def leases(self) -> str:
        return f"{self.prefix}leases"

    # Operator indexes (`eventstore.index`): kept by the event scripts in the step of each transition.

    def status_index(self, status: str) -> str:
        return f"{self.prefix}ix:status:{status}"

    def type_index(self, event_type: str) -> str:
        return f"{self.prefix}ix:type:{event_type}"

    def vehicle_index(self, vehicle_id: str) -> str:
        return f"{self.prefix}ix:vehicle:{vehicle_id}"

    def user_index(self, user_id: str) -> str:
        return f"{self.prefix}ix:user:{user_id}"

    def webhook_index(self, webhook_id: str) -> str:
        return f"{self.prefix}ix:webhook:{webhook_id}"

    def error_type_index(self, error_type: str) -> str:
        return f"{self.prefix}ix:error-type:{error_type}"

    def error_index(self, error_type: str, code: str) -> str:
        return f"{self.prefix}ix:error:{error_type}:{code}"

    # The workers' own state.

    def command(self, event_id: str, step: str) -> str:
        return f"{self.prefix}cmd:{event_id}:{step}"

    def command_steps(self, event_id: str) -> str:
        return f"{self.prefix}cmd-steps:{event_id}"

    def vehicle_signals(self, vehicle_id: str) -> str:
        return f"{self.prefix}vehicle:{vehicle_id}:signals"

    def vehicle_errors(self, vehicle_id: str) -> str:
        return f"{self.prefix}vehicle:{vehicle_id}:errors"

    def vehicle_lock(self, vehicle_id: str) -> str:
        return f"{self.prefix}vlock:{vehicle_id}"

    @property
    def rate_bucket(self) -> str:
        return f"{self.prefix}rate:app"

    @property
    def rate_pauses(self) -> str:
        return f"{self.prefix}rate:pauses"

    def grant(self, grant_id: str) -> str:
        return f"{self.prefix}grant:{grant_id}"

    def grant_of(self, vehicle_id: str) -> str:
        return f"{self.prefix}grant-of:{vehicle_id}"

    @property
    def grant_expiry(self) -> str:
        return f"{self.prefix}grant-expiry"

    def grant_lock(self, grant_id: str) -> str:
        return f"{self.prefix}grant-lock:{grant_id}"

    # Vehicle lifecycle jobs.

    @property
    def lifecycle(self) -> str:
        return f"{self.prefix}lifecycle"

    def lifecycle_job(self, action: str, vehicle_id: str) -> str:
        return f"{self.prefix}lifecycle-job:{action}:{vehicle_id}"

    # The vehicle registry (fleet) and its reconciliation with Smartcar.

    @property
    def fleet(self) -> str:
        return f"{self.prefix}fleet"

    def fleet_vehicle(self, vehicle_id: str) -> str:
        return f"{self.prefix}fleet:{vehicle_id}"

    @property
    def fleet_reconcile(self) -> str:
        return f"{self.prefix}fleet-reconcile"

    # Vehicles whose access was lost, and their events waiting for re-consent (`eventstore.held`).

    @property
    def held_vehicles(self) -> str:
        return f"{self.prefix}held-vehicles"

    def held(self, vehicle_id: str) -> str:
        return f"{self.prefix}held:{vehicle_id}"

    # Replay jobs (`eventstore.replays`).

    @property
    def replays(self) -> str:
        return f"{self.prefix}replays"

    def replay_job(self, job_id: str) -> str:
        return f"{self.prefix}replay:{job_id}"

    def replay_ids(self, job_id: str) -> str:
        return f"{self.prefix}replay-ids:{job_id}"

    @property
    def replaying(self) -> str:
        return f"{self.prefix}replaying"

    # Operator pauses (`eventstore.pauses`): the relay's global switch, and the vehicles parked at claim.

    @property
    def pause(self) -> str:
        return f"{self.prefix}pause"

    @property
    def paused_vehicles(self) -> str:
        return f"{self.prefix}paused-vehicles"

    def parked(self, vehicle_id: str) -> str:
        return f"{self.prefix}parked:{vehicle_id}"

    # The receiver's Connect sessions.

    def connect_state(self, state: str) -> str:
        return f"{self.prefix}connect-state:{state}"

    # Operator switches and probes.

    @property
    def verify_armed(self) -> str:
        return f"{self.prefix}verify:armed"

    def ping(self, token: str) -> str:
        return f"{self.prefix}ping:{token}"

    def signature_failures(self, minute: int) -> str:
        """`minute`: epoch seconds // 60."""
        return f"{self.prefix}sig-failures:{minute}"

"""Subscribe, unsubscribe, disconnect and refresh vehicles, and the drain of the lifecycle jobs that asks
for them (`eventstore.lifecycle`: the receiver's Connect callback, `smartcar-events vehicles`, the
reconciliation and the direct tasks request them; beat drains them).

Every operation is idempotent, because a job may run again (its worker died before `done`, or a retry
after a failure that came after the effect): subscribing a subscribed vehicle is answered with success by
Smartcar, an unsubscribe of a subscription Smartcar does not know (or a vehicle it does not know) counts
as done, and a disconnect records that Smartcar's disconnect is done before it goes on, so that a retry
does not send it again. Calls go through the runtime's gateway (the vehicle's token, the shared rate
bucket, one refresh on AUTHENTICATION); unsubscribe and the connections list are authorised by the AMT.

How a job's failure is handled (`run_job`), by `RetryPolicy` for Smartcar's errors:

- retryable (transient, rate limits, long-delay): due again after the policy's delay, one attempt more,
  until the policy gives up;
- waiting (an empty rate bucket, a refresh running elsewhere): due again, no attempt counted;
- needing a person: AUTHENTICATION after a refresh (`revoked`), PERMISSION, or a refresh token Smartcar
  refused (`needs_reconsent`) hold the vehicle (`workers.access`: its owner must connect again, which asks
  for a new subscribe, and a re-consent URL is kept); other
  never-retry errors, no tokens, a missing SMARTCAR_WEBHOOK_ID or SMARTCAR_AMT, or attempts used up are
  recorded on the vehicle (`last_error`, `failed_action`, shown by `smartcar-events vehicles show`) and
  logged (`lifecycle_job_dropped`). Such a job is dropped, not parked: the reconciliation asks again for
  the subscribe of every connected vehicle that is not subscribed, once what was wrong is fixed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from eventstore.fleet import FleetStore, VehicleStatus
from eventstore.lifecycle import LifecycleAction, LifecycleJob, LifecycleStore
from service_base.logs import get_logger
from smartcar_core.errors import SmartcarError
from smartcar_core.retry import Action
from workers.access import AccessLoss, access_lost
from workers.limits import DeferredError
from workers.runtime import Runtime
from workers.tokens import GrantRefusedError, TokenError, TokenRefreshBusyError

log = get_logger("workers.lifecycle")

DRAIN_TASK = "workers.lifecycle_jobs"
"""The task that drains due lifecycle jobs (beat, every WORKERS_LIFECYCLE_INTERVAL; the CLI sends it too)."""
RECONCILE_TASK = "workers.reconcile_fleet"

_BUSY_DELAY = 1.0
_GONE_TYPES = frozenset({"AUTHENTICATION", "PERMISSION", "RESOURCE_NOT_FOUND"})
"""Smartcar's answers to a disconnect of a vehicle whose connection is already gone."""


class LifecycleError(Exception):
    """An operation cannot be done without a person; `vehicle_id` and `action` say which."""

    def __init__(self, message: str, *, vehicle_id: str, action: LifecycleAction) -> None:
        super().__init__(message)
        self.vehicle_id = vehicle_id
        self.action = action


class MissingSettingError(Exception):
    """A setting that `needed_for` (an action, the reconciliation) needs is not set: `setting` names it."""

    def __init__(self, setting: str, *, needed_for: str) -> None:
        super().__init__(f"{needed_for} needs {setting}, which is not set")
        self.setting = setting
        self.needed_for = needed_for


class NoTokensError(LifecycleError):
    """We hold no tokens for the vehicle: its owner must connect it (Connect) first."""

    def __init__(self, *, vehicle_id: str, action: LifecycleAction) -> None:
        super().__init__(
            f"no Smartcar tokens for vehicle {vehicle_id}: its owner must connect it first",
            vehicle_id=vehicle_id,
            action=action,
        )


def describe(error: BaseException) -> str:
    """One line about a failure, for logs and the registry: Smartcar's type, code and status, or the
    exception's class and message. Our messages never hold a token or the AMT; Smartcar's are its own."""
    if isinstance(error, SmartcarError):
        return f"{error.message} (HTTP {error.status_code})" if error.status_code else error.message
    return f"{type(error).__name__}: {error}"


_EXPECTED = (SmartcarError, TokenError, LifecycleError, MissingSettingError, DeferredError)
"""The failures an operation reports on purpose; anything else is a bug or an outage (traceback logged)."""


class Outcome(StrEnum):
    DONE = "done"
    RETRYING = "retrying"
    DEFERRED = "deferred"
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class JobResult:
    job: LifecycleJob
    outcome: Outcome
    detail: str
    delay: float = 0.0


class VehicleLifecycle:
    """The operations on one vehicle, with the runtime's gateway, tokens and stores."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.gateway = runtime.gateway
        self.tokens = runtime.tokens
        self.policy = runtime.policy
        self.fleet = FleetStore(runtime.redis, runtime.keys)
        self.jobs = LifecycleStore(runtime.redis, runtime.keys)

    def __repr__(self) -> str:
        return f"VehicleLifecycle(prefix={self.runtime.keys.prefix!r})"

    # --- what the operations need -------------------------------------------------------------------

    def webhook_id(self, needed_for: str) -> str:
        if not self.settings.smartcar_webhook_id:
            raise MissingSettingError("SMARTCAR_WEBHOOK_ID", needed_for=needed_for)
        return self.settings.smartcar_webhook_id

    def amt(self, needed_for: str) -> str:
        """The AMT that authorises management calls: the first of SMARTCAR_AMT (the current one)."""
        secret = self.settings.smartcar_amt
        first = secret.get_secret_value().split(",")[0].strip() if secret is not None else ""
        if not first:
            raise MissingSettingError("SMARTCAR_AMT", needed_for=needed_for)
        return first

    def _grant(self, vehicle_id: str, action: LifecycleAction) -> str:
        grant = self.tokens.grants.grant_of(vehicle_id)
        if grant is None:
            raise NoTokensError(vehicle_id=vehicle_id, action=action)
        return grant

    def _user(self, vehicle_id: str, grant: str | None, user_id: str | None) -> str | None:
        if user_id:
            return user_id
        info = self.tokens.info(grant) if grant else None
        if info is not None and info.user_id:
            return info.user_id
        known = self.fleet.get(vehicle_id)
        return known.user_id if known is not None else None

    # --- the operations ------------------------------------------------------------------------------

    def perform(self, action: LifecycleAction, vehicle_id: str, *, user_id: str | None = None) -> str:
        """Do `action` now; returns what was done (one line). Raises what failed (see `run_job`)."""
        operations: dict[LifecycleAction, Callable[[], str]] = {
            LifecycleAction.SUBSCRIBE: lambda: self.subscribe(vehicle_id, user_id=user_id),
            LifecycleAction.UNSUBSCRIBE: lambda: self.unsubscribe(vehicle_id),
            LifecycleAction.DISCONNECT: lambda: self.disconnect(vehicle_id),
            LifecycleAction.REFRESH: lambda: self.refresh(vehicle_id),
            LifecycleAction.FORGET: lambda: self.forget_expired(vehicle_id),
        }
        return operations[action]()

    def subscribe(self, vehicle_id: str, *, user_id: str | None = None) -> str:
        """Subscribe the vehicle to our webhook (SMARTCAR_WEBHOOK_ID) with its own token."""
        action = LifecycleAction.SUBSCRIBE
        webhook = self.webhook_id(action.value)
        grant = self._grant(vehicle_id, action)
        self.gateway.call(vehicle_id, lambda vehicle: vehicle.subscribe(webhook))
        self.fleet.subscribed(vehicle_id, webhook_id=webhook, user_id=self._user(vehicle_id, grant, user_id))
        return f"subscribed to webhook {webhook}"

    def unsubscribe(self, vehicle_id: str) -> str:
        """Unsubscribe the vehicle from our webhook (authorised by the AMT, so no token is needed)."""
        action = LifecycleAction.UNSUBSCRIBE
        webhook = self.webhook_id(action.value)
        amt = self.amt(action.value)
        how = self._unsubscribe(vehicle_id, webhook, amt)
        self._cancel(vehicle_id, LifecycleAction.SUBSCRIBE)  # a subscribe asked for earlier is withdrawn
        grant = self.tokens.grants.grant_of(vehicle_id)
        if grant is not None:
            user = self._user(vehicle_id, grant, None)
            self.fleet.connected(vehicle_id, user_id=user, reason="unsubscribed", unsubscribed=True)
        elif self.fleet.get(vehicle_id) is not None:
            self.fleet.revoked(vehicle_id, reason="unsubscribed; no tokens held")
        return how

    def _unsubscribe(self, vehicle_id: str, webhook: str, amt: str) -> str:
        try:
            self.gateway.call_as_application(
                vehicle_id, amt, lambda vehicle: vehicle.unsubscribe(amt, webhook)
            )
        except SmartcarError as error:
            if error.type != "RESOURCE_NOT_FOUND":
                raise
            return f"not subscribed to webhook {webhook} (Smartcar does not know the vehicle)"
        return f"unsubscribed from webhook {webhook}"

    def disconnect(self, vehicle_id: str) -> str:
        """Smartcar's disconnect (our application loses the vehicle), then unsubscribe, then forget its
        tokens and state. Each step is safe to repeat; the first is recorded so as not to be sent twice."""
        action = LifecycleAction.DISCONNECT
        webhook = self.webhook_id(action.value)
        amt = self.amt(action.value)  # both checked first: nothing is half done for want of one
        known = self.fleet.get(vehicle_id)
        if known is None or known.disconnected_at is None:
            how = self._disconnect(vehicle_id)
            self.fleet.disconnected(vehicle_id)
        else:
            how = "disconnected at Smartcar before"
        unsubscribed = self._unsubscribe(vehicle_id, webhook, amt)
        self.forget(vehicle_id, reason="disconnected", keep=action)
        return f"{how}; {unsubscribed}; tokens and state forgotten"

    def _disconnect(self, vehicle_id: str) -> str:
        try:
            self.gateway.call(vehicle_id, lambda vehicle: vehicle.disconnect())
        except TokenError as error:
            if isinstance(error, TokenRefreshBusyError):
                raise
            return "no usable token (already disconnected)"
        except SmartcarError as error:
            if error.type not in _GONE_TYPES:
                raise
            return f"already disconnected ({error.type})"
        return "disconnected at Smartcar"

    def refresh(self, vehicle_id: str) -> str:
        """Exchange the vehicle's grant's refresh token now (single-flight with the other workers)."""
        grant = self._grant(vehicle_id, LifecycleAction.REFRESH)
        access = self.tokens.refresh(grant)
        known = self.fleet.get(vehicle_id)
        if known is not None and known.status is VehicleStatus.NEEDS_RECONSENT:
            self.fleet.connected(vehicle_id, user_id=known.user_id, reason="token refreshed")
            self.tokens.held.release([vehicle_id])  # Smartcar took the grant after all: its events run
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(access.expires_at))
        return f"grant {grant} refreshed; the access token expires at {expires}"

    def forget(self, vehicle_id: str, *, reason: str, keep: LifecycleAction | None = None) -> None:
        """Forget the vehicle's tokens, signals and errors and its waiting jobs (but `keep`'s, running);
        its registry record stays, revoked, saying `reason`."""
        self.tokens.grants.forget(vehicle_id)
        self.runtime.vehicles.forget(vehicle_id)
        for other in LifecycleAction:
            if other is not keep:
                self._cancel(vehicle_id, other)
        self.fleet.revoked(vehicle_id, reason=reason)
        # Its held events run now and end as dead letters (no tokens): nothing would ever release them.
        self.tokens.held.release([vehicle_id])

    def forget_expired(self, vehicle_id: str) -> str:
        """A vehicle held past WORKERS_REVOKED_GRACE: unsubscribed (when SMARTCAR_WEBHOOK_ID and
        SMARTCAR_AMT are set; a refusal that no retry helps is noted, not a reason to keep it) and forgotten.
        One reconnected meanwhile is left alone."""
        since = self.tokens.held.since(vehicle_id)
        if since is None:
            return "no longer held (its owner connected again): kept"
        how = "not unsubscribed (SMARTCAR_WEBHOOK_ID or SMARTCAR_AMT is not set)"
        secret = self.settings.smartcar_amt
        if self.settings.smartcar_webhook_id and secret is not None and secret.get_secret_value().strip():
            try:
                how = self._unsubscribe(vehicle_id, self.settings.smartcar_webhook_id, self.amt("forget"))
            except SmartcarError as error:
                if self.policy.decide(error, 1, refreshed=True).action is Action.RETRY:
                    raise
                how = f"unsubscribe refused: {describe(error)}"
        lost = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
        reason = f"access lost at {lost} and not given back within the grace period; {how}"
        self.forget(vehicle_id, reason=reason, keep=LifecycleAction.FORGET)
        return f"forgotten; {how}"

    def grant_refused(self, grant_id: str, *, reason: str, vehicle_ids: list[str] | None = None) -> None:
        """Smartcar refused the grant's refresh token: every vehicle it covered needs its owner to connect
        again (`vehicle_ids` when the grant's own list is gone)."""
        info = self.tokens.info(grant_id)
        vehicles = vehicle_ids or (info.vehicles if info is not None else [])
        AccessLoss(self.runtime).lost(vehicles, status=VehicleStatus.NEEDS_RECONSENT, reason=reason)

    def _cancel(self, vehicle_id: str, action: LifecycleAction) -> None:
        job = self.jobs.get(action.value, vehicle_id)
        if job is not None:
            self.jobs.done(job)

    # --- jobs ----------------------------------------------------------------------------------------

    def request(
        self, action: LifecycleAction, vehicle_id: str, *, user_id: str | None = None, reason: str
    ) -> None:
        self.jobs.request(action, vehicle_id, user_id=user_id, reason=reason)

    def run_job(self, job: LifecycleJob) -> JobResult:
        """Do one taken job and settle it: done, due again (retry or deferral), or dropped (recorded)."""
        try:
            detail = self.perform(job.action, job.vehicle_id, user_id=job.user_id)
        except Exception as error:
            if not isinstance(error, _EXPECTED):
                # A bug, Redis, the network: retried like a transient error, its traceback logged.
                log.warning("lifecycle_job_failed", action=job.action.value, exc_info=True)
            return self._settle(job, error)
        self.jobs.done(job)
        log.info("lifecycle_job_done", action=job.action.value, vehicle_id=job.vehicle_id, detail=detail)
        return JobResult(job, Outcome.DONE, detail)

    def _settle(self, job: LifecycleJob, error: Exception) -> JobResult:
        if isinstance(error, DeferredError | TokenRefreshBusyError):
            delay = error.delay if isinstance(error, DeferredError) else _BUSY_DELAY
            return self._defer(job, str(error), delay)
        if isinstance(error, GrantRefusedError):
            return self._drop(job, describe(error), lost=VehicleStatus.NEEDS_RECONSENT)
        if isinstance(error, LifecycleError | MissingSettingError | TokenError):
            return self._drop(job, describe(error))
        if isinstance(error, SmartcarError):
            return self._after_smartcar_error(job, error)
        attempt = job.attempts + 1
        if attempt >= self.policy.max_attempts:
            return self._drop(job, f"gave up after {attempt} attempts: {describe(error)}")
        return self._retry(job, describe(error), self.policy.backoff(attempt))

    def _after_smartcar_error(self, job: LifecycleJob, error: SmartcarError) -> JobResult:
        # The gateway refreshed once already on AUTHENTICATION: another is the owner's to fix.
        decision = self.policy.decide(error, job.attempts + 1, refreshed=True)
        if decision.action is Action.RETRY:
            return self._retry(job, describe(error), decision.delay)
        return self._drop(job, f"{describe(error)}: {decision.reason}", lost=access_lost(error))

    def _retry(self, job: LifecycleJob, error: str, delay: float) -> JobResult:
        self.jobs.retry(job, delay=delay, error=error)
        log.warning(
            "lifecycle_job_retrying",
            action=job.action.value,
            vehicle_id=job.vehicle_id,
            attempt=job.attempts + 1,
            delay=round(delay, 2),
            error=error,
        )
        return JobResult(job, Outcome.RETRYING, error, delay)

    def _defer(self, job: LifecycleJob, reason: str, delay: float) -> JobResult:
        self.jobs.defer(job, delay=delay)
        return JobResult(job, Outcome.DEFERRED, reason, delay)

    def _drop(self, job: LifecycleJob, error: str, *, lost: VehicleStatus | None = None) -> JobResult:
        """A job that needs a person: recorded on the vehicle and logged, then removed; when access was
        `lost`, the vehicle is held with that status (`workers.access`)."""
        self.fleet.failed(job.vehicle_id, action=job.action.value, error=error)
        if lost is not None:
            AccessLoss(self.runtime).lost([job.vehicle_id], status=lost, reason=error)
        self.jobs.done(job)
        log.warning(
            "lifecycle_job_dropped",
            action=job.action.value,
            vehicle_id=job.vehicle_id,
            attempts=job.attempts + 1,
            needs_reconsent=lost is not None,
            error=error,
        )
        return JobResult(job, Outcome.DROPPED, error)

    def drain(self, *, limit: int | None = None, lease: float | None = None) -> list[JobResult]:
        """Run due jobs one at a time (each leased only when its turn comes), at most `limit`."""
        limit = self.settings.lifecycle_batch if limit is None else limit
        lease = self.settings.lifecycle_lease if lease is None else lease
        results: list[JobResult] = []
        while len(results) < limit:
            taken = self.jobs.take(1, lease=lease)
            if not taken:
                break
            results.append(self.run_job(taken[0]))
        return results

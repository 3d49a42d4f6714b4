"""The key names are deployed data: each stays exactly what it was, and the one table lists every one."""

from __future__ import annotations

import inspect
import re

import eventstore.keys
from eventstore.keys import DEFAULT_DEDUPE_SECONDS, DEFAULT_PREFIX, KeySpace

# Every key as it was written before the store had one owner (receiver.store, workers.*): never edit one.
DEPLOYED = {
    "seen": ("seen", ("e1",), "sc:seen:e1"),
    "event": ("event", ("e1",), "sc:event:e1"),
    "inbox": ("inbox", None, "sc:inbox"),
    "pending": ("pending", None, "sc:pending"),
    "dead": ("dead", None, "sc:dead"),
    "scheduled": ("scheduled", None, "sc:scheduled"),
    "leases": ("leases", None, "sc:leases"),  # added with the lease heartbeat
    # added with the operator indexes (issue 9)
    "status_index": ("status_index", ("failed",), "sc:ix:status:failed"),
    "type_index": ("type_index", ("VEHICLE_STATE",), "sc:ix:type:VEHICLE_STATE"),
    "vehicle_index": ("vehicle_index", ("v1",), "sc:ix:vehicle:v1"),
    "user_index": ("user_index", ("u1",), "sc:ix:user:u1"),
    "webhook_index": ("webhook_index", ("wh1",), "sc:ix:webhook:wh1"),
    "error_type_index": ("error_type_index", ("VEHICLE_STATE",), "sc:ix:error-type:VEHICLE_STATE"),
    "error_index": ("error_index", ("VEHICLE_STATE", "ASLEEP"), "sc:ix:error:VEHICLE_STATE:ASLEEP"),
    "command": ("command", ("e1", "charging-rule:stop"), "sc:cmd:e1:charging-rule:stop"),
    "command_steps": ("command_steps", ("e1",), "sc:cmd-steps:e1"),  # added for events show (issue 9)
    "vehicle_signals": ("vehicle_signals", ("v1",), "sc:vehicle:v1:signals"),
    "vehicle_errors": ("vehicle_errors", ("v1",), "sc:vehicle:v1:errors"),
    "vehicle_lock": ("vehicle_lock", ("v1",), "sc:vlock:v1"),
    "rate_bucket": ("rate_bucket", None, "sc:rate:app"),
    "rate_pauses": ("rate_pauses", None, "sc:rate:pauses"),
    "grant": ("grant", ("u1:0123abcd",), "sc:grant:u1:0123abcd"),
    "grant_of": ("grant_of", ("v1",), "sc:grant-of:v1"),
    "grant_expiry": ("grant_expiry", None, "sc:grant-expiry"),
    "grant_lock": ("grant_lock", ("u1:0123abcd",), "sc:grant-lock:u1:0123abcd"),
    "lifecycle": ("lifecycle", None, "sc:lifecycle"),  # added with the vehicle lifecycle jobs
    "lifecycle_job": ("lifecycle_job", ("subscribe", "v1"), "sc:lifecycle-job:subscribe:v1"),
    "fleet": ("fleet", None, "sc:fleet"),  # added with the vehicle registry
    "fleet_vehicle": ("fleet_vehicle", ("v1",), "sc:fleet:v1"),
    "fleet_reconcile": ("fleet_reconcile", None, "sc:fleet-reconcile"),
    "held_vehicles": ("held_vehicles", None, "sc:held-vehicles"),  # added with re-consent holds (issue 10)
    "held": ("held", ("v1",), "sc:held:v1"),
    "pause": ("pause", None, "sc:pause"),  # added with pause/resume (issue 9)
    "paused_vehicles": ("paused_vehicles", None, "sc:paused-vehicles"),
    "parked": ("parked", ("v1",), "sc:parked:v1"),
    "replays": ("replays", None, "sc:replays"),  # added with the replay jobs (issue 9)
    "replay_job": ("replay_job", ("j1",), "sc:replay:j1"),
    "replay_ids": ("replay_ids", ("j1",), "sc:replay-ids:j1"),
    "replaying": ("replaying", None, "sc:replaying"),
    "connect_state": ("connect_state", ("s1",), "sc:connect-state:s1"),  # added with the Connect flow
    "verify_armed": ("verify_armed", None, "sc:verify:armed"),
    "ping": ("ping", ("t0k3n",), "sc:ping:t0k3n"),
    "signature_failures": ("signature_failures", (29000000,), "sc:sig-failures:29000000"),
}


def key_names() -> set[str]:
    """Every key KeySpace names: its public properties and methods (not `of`, which builds a KeySpace)."""
    return {
        name
        for name, member in inspect.getmembers(KeySpace)
        if not name.startswith("_") and (isinstance(member, property) or inspect.isfunction(member))
    }


def render(keys: KeySpace, name: str, arguments: tuple[object, ...] | None) -> str:
    member = getattr(keys, name)
    key = member if arguments is None else member(*arguments)
    assert isinstance(key, str)
    return key


def test_every_key_is_named_as_deployed() -> None:
    assert key_names() == set(DEPLOYED)
    keys = KeySpace()
    for name, (attribute, arguments, expected) in DEPLOYED.items():
        assert render(keys, attribute, arguments) == expected, name


def test_every_key_starts_with_its_prefix() -> None:
    keys = KeySpace("test:x:")
    for name, (attribute, arguments, expected) in DEPLOYED.items():
        assert render(keys, attribute, arguments) == "test:x:" + expected.removeprefix("sc:"), name


def test_the_defaults_are_the_deployed_ones() -> None:
    assert (DEFAULT_PREFIX, DEFAULT_DEDUPE_SECONDS) == ("sc:", 7 * 24 * 3600)
    assert KeySpace() == KeySpace("sc:")


def test_the_module_table_lists_every_key() -> None:
    table = eventstore.keys.__doc__ or ""
    keys = KeySpace("{p}")
    for name in key_names():
        member = getattr(KeySpace, name)
        if isinstance(member, property):
            rendered = render(keys, name, None)
        else:  # event_id -> {event}, vehicle_id -> {vehicle}, step -> {step}: the table's placeholders
            parameters = list(inspect.signature(member).parameters)[1:]
            rendered = render(keys, name, tuple("{" + p.removesuffix("_id") + "}" for p in parameters))
        assert re.search(rf"^\| `{re.escape(rendered)}` \|", table, re.MULTILINE), rendered

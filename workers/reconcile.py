"""Reconciliation: our vehicles (the registry, and every vehicle a grant covers) against the connections
Smartcar lists for the application (Management API `get_connections`, every page by its cursor).

Drift, each kind counted in the report (stored as `{p}fleet-reconcile`, the metric `smartcar-events
vehicles reconcile` and `vehicles list` show) and logged (`fleet_drift`, WARNING, or `fleet_reconciled`):

- `not_subscribed`: Smartcar lists it, we hold its tokens, and it is not subscribed (its subscribe failed,
  or it was connected before this existed): fixed, a subscribe job is asked for. One an operator
  unsubscribed on purpose is left so;
- `gone`: ours, but Smartcar no longer lists it (the owner revoked access, or it was deleted): fixed, its
  tokens, state and jobs are forgotten and its record says revoked. A page listing is not trusted alone
  for that (an offset cursor skips an item when one before it is deleted meanwhile): each one is asked
  about once more by itself, and one whose tokens or record changed since the listing began (a Connect
  meanwhile) is left alone;
- `no_tokens`: Smartcar lists it and we hold no token for it (ours lost, or connected to another
  deployment): reported only, its owner must connect it again;
- `needs_reconsent`: listed, but Smartcar refused its grant: reported only.

Smartcar's v2 API lists no subscriptions, so "subscribed" is what the registry recorded from Smartcar's
answers; `smartcar-events vehicles subscribe` sends one again (idempotent at Smartcar) when in doubt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from eventstore.fleet import FleetVehicle, VehicleStatus
from eventstore.lifecycle import LifecycleAction
from service_base.logs import get_logger
from workers.lifecycle import VehicleLifecycle

log = get_logger("workers.reconcile")

PAGE_SIZE = 100
"""Connections per page (the Management API's largest)."""
MAX_PAGES = 10_000
_LOGGED_IDS = 20


class ListingError(Exception):
    """The connections listing could not be completed (`pages` read): nothing is judged gone on it."""

    def __init__(self, message: str, *, pages: int) -> None:
        super().__init__(message)
        self.pages = pages


@dataclass
class ReconcileReport:
    started_at: float
    connections: int = 0
    ours: int = 0
    pages: int = 0
    not_subscribed: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    no_tokens: list[str] = field(default_factory=list)
    needs_reconsent: list[str] = field(default_factory=list)
    fixed: int = 0

    @property
    def drift(self) -> int:
        return len(self.not_subscribed) + len(self.gone) + len(self.no_tokens) + len(self.needs_reconsent)

    def counts(self) -> dict[str, float | int]:
        return {
            "at": self.started_at,
            "connections": self.connections,
            "ours": self.ours,
            "pages": self.pages,
            "drift": self.drift,
            "not_subscribed": len(self.not_subscribed),
            "gone": len(self.gone),
            "no_tokens": len(self.no_tokens),
            "needs_reconsent": len(self.needs_reconsent),
            "fixed": self.fixed,
        }


def list_connections(
    lifecycle: VehicleLifecycle, amt: str, *, page_size: int = PAGE_SIZE
) -> tuple[dict[str, str], int]:
    """Every connection Smartcar lists, vehicle -> user, and how many pages it took (`ListingError` when
    a cursor repeats or the pages never end: a listing that cannot be trusted)."""
    listed: dict[str, str] = {}
    cursor: str | None = None
    seen: set[str] = set()
    for page in range(1, MAX_PAGES + 1):
        answer = lifecycle.gateway.connections(amt, cursor=cursor, limit=page_size)
        for connection in answer.connections:
            listed.setdefault(connection.vehicle_id, connection.user_id)
        cursor = answer.paging.cursor
        if not cursor:
            return listed, page
        if cursor in seen:
            raise ListingError("get_connections answered a cursor it gave before", pages=page)
        seen.add(cursor)
    raise ListingError(f"get_connections did not end within {MAX_PAGES} pages", pages=MAX_PAGES)


def _changed_since(lifecycle: VehicleLifecycle, vehicle_id: str, started: float) -> bool:
    """A Connect (or any write of ours) after the listing began: the listing may predate it."""
    grant = lifecycle.tokens.grants.grant_of(vehicle_id)
    info = lifecycle.tokens.info(grant) if grant else None
    known = lifecycle.fleet.get(vehicle_id)
    return (info is not None and info.updated_at >= started) or (
        known is not None and known.updated_at >= started
    )


def _still_gone(lifecycle: VehicleLifecycle, amt: str, vehicle_id: str, started: float) -> bool:
    if _changed_since(lifecycle, vehicle_id, started):
        return False
    return not lifecycle.gateway.connections(amt, vehicle_id=vehicle_id, limit=1).connections


_HELD = (VehicleStatus.NEEDS_RECONSENT, VehicleStatus.REVOKED)
"""A vehicle we hold tokens for with one of these statuses waits for its owner (`workers.access`)."""


def _wants_subscribe(known: FleetVehicle | None) -> bool:
    if known is None:
        return True
    if known.status in (VehicleStatus.SUBSCRIBED, *_HELD):
        return False
    return known.unsubscribed_at is None


def reconcile(
    lifecycle: VehicleLifecycle, *, fix: bool = True, page_size: int = PAGE_SIZE
) -> ReconcileReport:
    """Compare, fix what is safe (when `fix`), store and log the report. `MissingSettingError` without
    SMARTCAR_AMT; Smartcar's errors and `ListingError` are raised with nothing changed."""
    amt = lifecycle.amt("the reconciliation")
    report = ReconcileReport(started_at=time.time())
    covered = lifecycle.tokens.grants.covered_vehicles()  # read before the listing: see _changed_since
    registered = lifecycle.fleet.many(lifecycle.fleet.vehicles())
    listed, report.pages = list_connections(lifecycle, amt, page_size=page_size)
    report.connections = len(listed)
    ours = set(covered) | {v for v, known in registered.items() if known.status is not VehicleStatus.REVOKED}
    report.ours = len(ours)
    for vehicle_id in sorted(ours - set(listed)):
        if _still_gone(lifecycle, amt, vehicle_id, report.started_at):
            report.gone.append(vehicle_id)
            if fix:
                lifecycle.forget(vehicle_id, reason="Smartcar no longer lists its connection")
                report.fixed += 1
    for vehicle_id, user_id in sorted(listed.items()):
        known = registered.get(vehicle_id)
        if vehicle_id not in covered:
            report.no_tokens.append(vehicle_id)
        elif known is not None and known.status in _HELD:  # covered and revoked: access lost, held
            report.needs_reconsent.append(vehicle_id)
        elif _wants_subscribe(known):
            report.not_subscribed.append(vehicle_id)
            if fix:
                lifecycle.request(LifecycleAction.SUBSCRIBE, vehicle_id, user_id=user_id, reason="reconcile")
                report.fixed += 1
    lifecycle.fleet.save_report(report.counts())
    _log(report)
    return report


def _log(report: ReconcileReport) -> None:
    counts = report.counts()
    if not report.drift:
        log.info("fleet_reconciled", **counts)
        return
    log.warning(
        "fleet_drift",
        **counts,
        gone_ids=report.gone[:_LOGGED_IDS],
        not_subscribed_ids=report.not_subscribed[:_LOGGED_IDS],
        no_tokens_ids=report.no_tokens[:_LOGGED_IDS],
        needs_reconsent_ids=report.needs_reconsent[:_LOGGED_IDS],
    )

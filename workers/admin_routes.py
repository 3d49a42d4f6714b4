"""The admin API's routes (`workers.admin_api` serves them, behind its bearer token): each one calls what the
matching `smartcar-events` command calls, and answers JSON.

    GET  events                   the filters of `events list` as query parameters; `limit`, `cursor`
    GET  events/{id}              `events show --json`
    POST replays/plan             {"ids": [...]} or {"filter": {...}}, "rate", "limit", "include_done"
    POST replays                  the same selection (+ "resend_commands"): a job; 201 {"job": ...}
    GET  replays/{job}            `replay status --json`
    POST replays/{job}/cancel     `replay cancel`
    GET  stats                    `stats --json` (`sample`)
    POST pause                    {} or {"vehicle": [...]}, "reason"
    POST resume                   {} or {"vehicle": [...]}, "rate"

A problem with the request is a 4xx whose body names it (`{"error": "..."}`); each change (a replay job,
a cancel, a pause, a resume) is logged as one line, `admin_*`, saying what was done and from where.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from eventstore.commands import CommandStore
from eventstore.events import EventStore
from eventstore.keys import KeySpace
from eventstore.pauses import Pauses, RateError
from eventstore.query import CursorError, EventQuery
from eventstore.replays import JobStatus, ReplayStore
from service_base.logs import get_logger
from workers.cli_events import detail, summary
from workers.replay import DEFAULT_LIMIT, DEFAULT_RATE, MAX_LIMIT, Selection, job_view, make_plan, start_job
from workers.selecting import (
    Conditions,
    SelectionError,
    check_rate,
    given_conditions,
    replay_selection,
    vehicle_ids,
)
from workers.stats import SAMPLE, gather_stats

log = get_logger("workers.admin_api")

MAX_PAGE = 1000
"""The most events one `GET events` page holds."""
M = TypeVar("M", bound=BaseModel)
VIA = " (admin API)"
"""Added to an operator replay's reason when it was asked for here."""


class ApiError(Exception):
    """A request the API cannot do: answered `status` with `{"error": message, **extra}`."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def _spell(name: str) -> str:
    """Options named as the API's parameters are (`error_code`, `since`, `rate`)."""
    return name


def _listed(value: object) -> object:
    """One value where a list is expected (`"status": "failed"`) is a list of one."""
    return [value] if isinstance(value, str) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FilterQuery(_Strict):
    """The filters of `events list`, named as its options are (`--error-type`: `error_type`)."""

    status: list[str] = Field(default_factory=list)
    type: str | None = None
    vehicle: str | None = None
    user: str | None = None
    webhook: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    reason: str | None = None
    since: str | None = None
    until: str | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return _listed(value)

    def conditions(self) -> Conditions:
        return given_conditions(
            status=self.status, event_type=self.type, vehicle=self.vehicle, user=self.user,
            webhook=self.webhook, error_type=self.error_type, error_code=self.error_code,
            reason=self.reason, since=self.since, until=self.until,
        )  # fmt: skip


class EventsQuery(FilterQuery):
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    cursor: str | None = None


class ReplayBody(_Strict):
    ids: list[str] = Field(default_factory=list)
    filter: FilterQuery = Field(default_factory=FilterQuery)
    rate: float = DEFAULT_RATE
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    include_done: bool = False
    resend_commands: bool = False


class PauseBody(_Strict):
    vehicle: list[str] = Field(default_factory=list)
    reason: str = Field("", max_length=500)
    rate: float | None = None

    @field_validator("vehicle", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return _listed(value)


def parsed(model: type[M], given: Mapping[str, Any]) -> M:
    """`given` read as `model`, or a 400 naming every field at fault."""
    try:
        return model.model_validate(given)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['msg']}"
            for item in error.errors(include_input=False, include_url=False)
        ]
        raise ApiError(400, "; ".join(problems)) from None


def _peer(request: Request) -> str:
    return request.client.host if request.client else "-"


@dataclass(frozen=True, slots=True)
class Stores:
    """What the routes work on: the event store's Redis, under its key prefix."""

    client: redis.Redis
    keys: KeySpace
    retention: int

    @property
    def events(self) -> EventStore:
        return EventStore(self.client, self.keys, retention=self.retention)

    @property
    def replays(self) -> ReplayStore:
        return ReplayStore(self.client, self.keys)


class AdminRoutes:
    """The routes over `stores`; `ask_workers()` asks the workers to look for a replay job now (False
    when the broker did not answer: beat's next look starts it)."""

    def __init__(
        self, stores: Stores, *, ask_workers: Callable[[], bool], body: Callable[[Request], Any]
    ) -> None:
        self.stores = stores
        self.ask_workers = ask_workers
        self.body = body

    def routes(self) -> list[Route]:
        return [
            Route("/events", self.list_events, methods=["GET"]),
            Route("/events/{event_id}", self.show_event, methods=["GET"]),
            Route("/replays/plan", self.plan_replay, methods=["POST"]),
            Route("/replays", self.start_replay, methods=["POST"]),
            Route("/replays/{job_id}", self.replay_status, methods=["GET"]),
            Route("/replays/{job_id}/cancel", self.cancel_replay, methods=["POST"]),
            Route("/stats", self.stats, methods=["GET"]),
            Route("/pause", self.pause, methods=["POST"]),
            Route("/resume", self.resume, methods=["POST"]),
        ]

    # --- events ---

    def list_events(self, request: Request) -> JSONResponse:
        params = request.query_params
        given = {name: params.getlist(name) if name == "status" else params[name] for name in params}
        for name in params:
            if name != "status" and len(params.getlist(name)) > 1:
                raise ApiError(400, f"{name}: given more than once")
        query = parsed(EventsQuery, given)
        try:
            wanted = query.conditions().build(now=time.time(), spell=_spell)
            page = EventQuery(self.stores.client, self.stores.keys).page(
                wanted, limit=query.limit, cursor=query.cursor
            )
        except SelectionError as error:
            raise ApiError(400, str(error)) from None
        except CursorError as error:
            raise ApiError(400, f"cursor: {error}") from None
        return JSONResponse({"events": [summary(record) for record in page.records], "cursor": page.cursor})

    def show_event(self, request: Request) -> JSONResponse:
        event_id = request.path_params["event_id"]
        record = self.stores.events.load(event_id)
        if record is None:
            raise ApiError(404, f"no event {event_id} (never received, or past its retention)")
        steps = CommandStore(self.stores.client, self.stores.keys, retention=self.stores.retention)
        return JSONResponse(detail(record, steps.steps(event_id)))

    # --- replays ---

    async def _selection(self, request: Request) -> tuple[ReplayBody, Selection]:
        body = parsed(ReplayBody, await self.body(request))
        try:
            check_rate(body.rate, spell=_spell)
            selection = replay_selection(
                body.ids,
                body.filter.conditions(),
                include_done=body.include_done,
                limit=body.limit,
                now=time.time(),
                spell=_spell,
            )
        except SelectionError as error:
            raise ApiError(400, str(error)) from None
        return body, selection

    def _plan(self, selection: Selection, rate: float) -> Any:
        stores = self.stores
        return make_plan(
            stores.events, EventQuery(stores.client, stores.keys), stores.replays, selection, rate=rate
        )

    async def plan_replay(self, request: Request) -> JSONResponse:
        body, selection = await self._selection(request)
        plan = await run_in_threadpool(self._plan, selection, body.rate)
        return JSONResponse(plan.as_dict())

    async def start_replay(self, request: Request) -> JSONResponse:
        body, selection = await self._selection(request)
        plan = await run_in_threadpool(self._plan, selection, body.rate)
        if not plan.selected:
            raise ApiError(409, "nothing to replay", plan=plan.as_dict())
        replays = self.stores.replays
        created = await run_in_threadpool(
            start_job, replays, plan, selection, resend=body.resend_commands, via=VIA
        )
        asked = await run_in_threadpool(self.ask_workers)
        log.info(
            "admin_replay_started",
            job=created.job_id,
            events=created.taken,
            in_other_replay=created.in_other_replay,
            rate=body.rate,
            resend_commands=body.resend_commands,
            selection=selection.describe(),
            peer=_peer(request),
        )
        job = await run_in_threadpool(replays.get, created.job_id)
        answer = {
            "job": created.job_id,
            "events": created.taken,
            "in_other_replay": created.in_other_replay,
            "workers_asked": asked,
            "plan": plan.as_dict(),
            "status": job_view(job) if job is not None else None,
        }
        return JSONResponse(answer, status_code=201)

    def replay_status(self, request: Request) -> JSONResponse:
        job_id = request.path_params["job_id"]
        job = self.stores.replays.get(job_id)
        if job is None:
            raise ApiError(404, f"no replay job {job_id} (never made, or past its retention)")
        return JSONResponse(job_view(job))

    def cancel_replay(self, request: Request) -> JSONResponse:
        job_id = request.path_params["job_id"]
        replays = self.stores.replays
        after = replays.cancel(job_id)
        job = replays.get(job_id)
        if after is None or job is None:
            raise ApiError(404, f"no replay job {job_id} (never made, or past its retention)")
        if after is not JobStatus.CANCELLED:
            message = f"replay job {job_id} had ended ({after.value}): nothing to cancel"
            raise ApiError(409, message, job=job_view(job))
        log.info("admin_replay_cancelled", job=job_id, done=job.cursor, total=job.total, peer=_peer(request))
        return JSONResponse(job_view(job))

    # --- stats, pause, resume ---

    def stats(self, request: Request) -> JSONResponse:
        sample = parsed(_Sample, dict(request.query_params)).sample
        found = gather_stats(self.stores.client, self.stores.keys, now=time.time(), sample=sample)
        return JSONResponse(asdict(found))

    async def _pause_body(self, request: Request) -> PauseBody:
        body = parsed(PauseBody, await self.body(request))
        try:
            vehicle_ids(body.vehicle)
        except SelectionError as error:
            raise ApiError(400, str(error)) from None
        return body

    async def pause(self, request: Request) -> JSONResponse:
        body = await self._pause_body(request)
        if body.rate is not None:
            raise ApiError(400, "rate: a rate is for resume (the drain), not for pause")
        pauses = Pauses(self.stores.client, self.stores.keys)
        vehicles = vehicle_ids(body.vehicle)
        if vehicles:
            await run_in_threadpool(pauses.pause_vehicles, vehicles)
        else:
            await run_in_threadpool(lambda: pauses.pause(reason=body.reason))
        log.info("admin_paused", vehicles=vehicles or None, reason=body.reason, peer=_peer(request))
        return JSONResponse({"paused": vehicles or "global", "reason": body.reason})

    async def resume(self, request: Request) -> JSONResponse:
        body = await self._pause_body(request)
        if body.reason:
            raise ApiError(400, "reason: a reason is for pause (shown while paused), not for resume")
        pauses = Pauses(self.stores.client, self.stores.keys)
        vehicles = vehicle_ids(body.vehicle)
        try:
            if vehicles:
                released = await run_in_threadpool(lambda: pauses.resume_vehicles(vehicles, rate=body.rate))
                answer: dict[str, Any] = {"resumed": vehicles, "released": released}
            else:
                was = await run_in_threadpool(lambda: pauses.resume(rate=body.rate))
                answer = {"resumed": "global", "was_paused": was}
        except RateError as error:
            raise ApiError(400, f"rate: {error}") from None
        log.info("admin_resumed", vehicles=vehicles or None, rate=body.rate, peer=_peer(request), **answer)
        return JSONResponse({**answer, "rate": body.rate})


class _Sample(_Strict):
    sample: int = Field(SAMPLE, ge=1, le=100_000)

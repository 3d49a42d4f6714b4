"""`smartcar-events doctor`'s signature finding, produced for real: a receiver app (in-process, on the
test's Redis and prefix) is sent deliveries signed with the wrong AMT, unsigned ones and good ones, and
the doctor reads what its receivers counted in the store (`eventstore.signatures`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from eventstore.keys import KeySpace
from eventstore.signatures import KEEP_SECONDS, recent_signatures
from receiver.app import WEBHOOK_PATH, create_app
from receiver.settings import ReceiverSettings
from smartcar_core.webhooks import signature_of
from testsupport.receiver import asgi_client, body_of
from workers.doctor import Finding, Severity, diagnose
from workers.settings import WorkerSettings

AMT = "amt-the-receivers-own-0123456"
WRONG_AMT = "amt-from-another-app-6543210"
Maker = Callable[..., dict[str, Any]]


@pytest.fixture(autouse=True)
def nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Smartcar's addresses where nothing listens: the credentials probe answers at once."""
    for name in ("API", "AUTH", "CONNECT", "MANAGEMENT_API", "VEHICLE_API_V3"):
        monkeypatch.setenv(f"SMARTCAR_{name}_ORIGIN", "http://127.0.0.1:9")


def deliver(settings: WorkerSettings, bodies: list[tuple[bytes, str | None]]) -> list[int]:
    """POST each (body, AMT to sign it with, None for no signature) to a receiver app; the statuses."""
    receiver = ReceiverSettings(
        smartcar_amt=AMT,
        redis_url=settings.redis_url,
        event_key_prefix=settings.event_key_prefix,
        log_format="json",
        gc_freeze=False,
    )

    async def post() -> list[int]:
        statuses = []
        async with asgi_client(create_app(receiver, configure_logs=False)) as http:
            for body, amt in bodies:
                headers = {"Content-Type": "application/json"}
                if amt is not None:
                    headers["SC-Signature"] = signature_of(amt, body)
                statuses.append((await http.post(WEBHOOK_PATH, content=body, headers=headers)).status_code)
        return statuses  # the app's lifespan has ended: its counts are written

    return asyncio.run(post())


def signatures(settings: WorkerSettings) -> Finding:
    (found,) = [f for f in diagnose(settings, wait=0.1) if f.check == "signatures"]
    assert found.severity is Severity.OK or (found.why and found.fix)
    return found


def events(maker: Maker, car: Maker, count: int) -> list[bytes]:
    return [body_of(maker(car(), {"charge-ischarging": True})) for _ in range(count)]


def test_a_wrong_amt_is_a_problem_and_the_hint_says_verify_proves_nothing(
    settings: WorkerSettings, client: redis.Redis, state_event: Maker, car: Maker
) -> None:
    assert deliver(settings, [(body, WRONG_AMT) for body in events(state_event, car, 3)]) == [401] * 3
    found = signatures(settings)
    assert found.severity is Severity.PROBLEM
    assert found.what.startswith("3 request(s) refused for their SC-Signature in the last 15 min (3 mis")
    assert "against 0 event(s)" in found.what
    assert "VERIFY is unsigned" in found.why
    assert "SMARTCAR_AMT" in found.fix
    # Counted per minute, with an expiry: the store holds at most an hour of them.
    key = KeySpace(settings.event_key_prefix).signature_failures(int(time.time() // 60))
    assert 0 < client.ttl(key) <= KEEP_SECONDS


def test_some_failures_among_good_deliveries_are_a_warning(
    settings: WorkerSettings, state_event: Maker, car: Maker
) -> None:
    good = [(body, AMT) for body in events(state_event, car, 4)]
    assert deliver(settings, [*good, (events(state_event, car, 1)[0], WRONG_AMT)]) == [200] * 4 + [401]
    found = signatures(settings)
    assert found.severity is Severity.WARNING
    assert "(1 mismatch), against 4 event(s)" in found.what
    assert "VERIFY is unsigned" in found.why


def test_unsigned_requests_warn_only_when_they_outnumber_the_deliveries(
    settings: WorkerSettings, state_event: Maker, car: Maker
) -> None:
    assert deliver(settings, [(body, None) for body in events(state_event, car, 2)]) == [401, 401]
    alone = signatures(settings)
    assert alone.severity is Severity.WARNING
    assert "(2 missing)" in alone.what
    assert "proxy" in alone.why
    assert deliver(settings, [(body, AMT) for body in events(state_event, car, 3)]) == [200] * 3
    assert signatures(settings).severity is Severity.OK


def test_no_failure_is_fine(settings: WorkerSettings, state_event: Maker, car: Maker) -> None:
    assert deliver(settings, [(body, AMT) for body in events(state_event, car, 2)]) == [200, 200]
    found = signatures(settings)
    assert (found.severity, found.what) == (Severity.OK, "no signature failure in the last 15 min")


def test_counts_older_than_the_window_are_not_read(settings: WorkerSettings, client: redis.Redis) -> None:
    keys = KeySpace(settings.event_key_prefix)
    now = time.time()
    client.hset(keys.signature_failures(int(now // 60) - 15), "mismatch", 7)
    client.hset(keys.signature_failures(int(now // 60) - 14), "malformed", 2)
    recent = recent_signatures(client, keys, minutes=15, now=now)
    assert (recent.failures, recent.failed, recent.moved) == ({"malformed": 2}, 2, 0)


def test_a_redis_that_fails_the_count_never_fails_the_answer(
    settings: WorkerSettings, state_event: Maker, car: Maker
) -> None:
    """A refused signature is answered 401 whatever becomes of its count (here Redis is not there)."""
    gone = settings.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"})
    assert deliver(gone, [(events(state_event, car, 1)[0], WRONG_AMT)]) == [401]

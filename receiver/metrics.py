"""The receiver's Prometheus metrics, in a registry of their own (one per app, so tests can build many).

Children of labelled metrics are bound once here: the hot path only calls `.inc()` / `.observe()`.
With several uvicorn workers set `PROMETHEUS_MULTIPROC_DIR` (an empty directory, wiped at each start):
every process writes its values there and `/metrics` sums them.
"""

from __future__ import annotations

import os
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from receiver.signatures import SignatureFailure

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STORE_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BODY_BYTES_BUCKETS = (256, 1024, 2048, 4096, 8192, 16384, 65536, 262144, 1048576)


class Outcome(StrEnum):
    """What became of one POST /webhooks/smartcar."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    VERIFY_ANSWERED = "verify_answered"
    VERIFY_REFUSED = "verify_refused"
    UNAUTHORIZED = "unauthorized"
    INVALID = "invalid"
    STALE = "stale"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"


class VerifyRefusal(StrEnum):
    """Why a VERIFY went unanswered (the signing-oracle defences)."""

    SIGNATURE = "signature"
    CHALLENGE_SHAPE = "challenge_shape"
    NOT_ARMED = "not_armed"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"


class ConnectOutcome(StrEnum):
    """How one GET /connect or GET /callback ended (`smartcar_connect_total{outcome}`)."""

    STARTED = "started"
    """/connect sent a browser to Smartcar Connect."""
    CONNECTED = "connected"
    REFUSED_STATE = "refused_state"
    """/callback's state was missing, unknown, used, expired or another browser's: nothing exchanged."""
    CONNECT_ERROR = "connect_error"
    """Connect came back with an error (its code: `smartcar_connect_errors_total{error}`)."""
    NO_VEHICLES = "no_vehicles"
    CODE_REFUSED = "code_refused"
    """Smartcar refused the code (spent, expired, or another redirect URI's)."""
    SMARTCAR_UNAVAILABLE = "smartcar_unavailable"
    """Smartcar's token or API calls kept failing after the retries."""
    STORE_UNAVAILABLE = "store_unavailable"
    BAD_REQUEST = "bad_request"
    NOT_CONFIGURED = "not_configured"


CONNECT_ERRORS = (
    "access_denied",
    "invalid_subscription",
    "configuration_error",
    "no_vehicles",
    "vehicle_incompatible",
    "server_error",
    "battery_capacity_no_selection",
)
"""The `error` values Connect redirects with; anything else is counted as `other`."""


class ReceiverMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        requests = Counter(
            "smartcar_webhook_requests",
            "Webhook deliveries by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        failures = Counter(
            "smartcar_webhook_signature_failures",
            "Deliveries refused for their SC-Signature, by reason.",
            ["reason"],
            registry=self.registry,
        )
        refusals = Counter(
            "smartcar_webhook_verify_refusals",
            "VERIFY challenges left unanswered, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "smartcar_webhook_duplicates",
            "Deliveries of an eventId already stored (absorbed, nothing enqueued).",
            registry=self.registry,
        )
        self.store_seconds = Histogram(
            "smartcar_webhook_store_seconds",
            "Time of the one Redis round trip that stores and enqueues an event.",
            buckets=STORE_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.body_bytes = Histogram(
            "smartcar_webhook_body_bytes",
            "Size of the webhook bodies read.",
            buckets=BODY_BYTES_BUCKETS,
            registry=self.registry,
        )
        connect = Counter(
            "smartcar_connect",
            "GET /connect and GET /callback by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        connect_errors = Counter(
            "smartcar_connect_errors",
            "Connect's error redirects by their error code.",
            ["error"],
            registry=self.registry,
        )
        self.outcomes = {outcome: requests.labels(outcome.value) for outcome in Outcome}
        self.connect = {outcome: connect.labels(outcome.value) for outcome in ConnectOutcome}
        self.connect_errors = {error: connect_errors.labels(error) for error in (*CONNECT_ERRORS, "other")}
        self.signature_failures = {reason: failures.labels(reason.value) for reason in SignatureFailure}
        self.verify_refusals = {reason: refusals.labels(reason.value) for reason in VerifyRefusal}

    def exposition(self) -> bytes:
        """The Prometheus text for /metrics (all processes' values when running multiprocess)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call] # - prometheus-client leaves it untyped
            return generate_latest(registry)
        return generate_latest(self.registry)

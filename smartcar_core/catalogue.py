"""Smartcar's error catalogue reduced to what a caller should do about each error.

One table, keyed by (type, code), read by `SmartcarError.retry_class` and by `RetryPolicy`.
The source is `smartcar-errors.md` (section 2): Y = retry with backoff, RA = retry no sooner than
Retry-After, L = retry only after long delays, N = never retry automatically, B = benign for a
given command (the vehicle is already where the command wanted it).
"""

from __future__ import annotations

from enum import Enum


class RetryClass(Enum):
    RETRY = "retry"
    """Transient: retry with capped exponential backoff and jitter."""
    RETRY_AFTER = "retry_after"
    """Throttled: retry no sooner than the Retry-After header says."""
    LONG_DELAY = "long_delay"
    """The vehicle or the OEM needs minutes to hours: retry rarely, with long delays."""
    REFRESH_TOKEN = "refresh_token"  # noqa: S105 - a name, not a secret
    """The access token was refused: refresh it once, then retry; a second refusal is final."""
    NEVER = "never"
    """Needs a person (the user, the operator or a code change): do not retry."""


NEVER = RetryClass.NEVER
RETRY = RetryClass.RETRY
LONG = RetryClass.LONG_DELAY

# (type, code) -> class. A code of None matches errors whose code is null.
CATALOGUE: dict[tuple[str, str | None], RetryClass] = {
    ("AUTHENTICATION", None): RetryClass.REFRESH_TOKEN,
    ("BILLING", "INVALID_PLAN"): NEVER,
    ("BILLING", "VEHICLE_LIMIT"): NEVER,
    ("BILLING", "VEHICLE_REQUEST_LIMIT"): NEVER,
    ("BILLING", "ACCOUNT_SUSPENDED"): NEVER,
    ("COMPATIBILITY", "MAKE_NOT_COMPATIBLE"): NEVER,
    ("COMPATIBILITY", "SMARTCAR_NOT_CAPABLE"): NEVER,
    ("COMPATIBILITY", "VEHICLE_NOT_CAPABLE"): NEVER,
    ("COMPATIBILITY", "PLATFORM_NOT_CAPABLE"): NEVER,
    ("CONNECTED_SERVICES_ACCOUNT", "ACCOUNT_ISSUE"): NEVER,
    ("CONNECTED_SERVICES_ACCOUNT", "AUTHENTICATION_FAILED"): NEVER,
    ("CONNECTED_SERVICES_ACCOUNT", "NO_VEHICLES"): NEVER,
    ("CONNECTED_SERVICES_ACCOUNT", "PERMISSION"): NEVER,
    ("CONNECTED_SERVICES_ACCOUNT", "SUBSCRIPTION"): NEVER,
    ("CONNECTED_SERVICES_ACCOUNT", "VEHICLE_MISSING"): NEVER,
    ("CONNECTED_SERVICES_ACCOUNT", "VIRTUAL_KEY_REQUIRED"): NEVER,
    ("PERMISSION", None): NEVER,
    ("RATE_LIMIT", "SMARTCAR_API"): RETRY,
    ("RATE_LIMIT", "VEHICLE"): RetryClass.RETRY_AFTER,
    ("RESOURCE_NOT_FOUND", "PATH"): NEVER,
    ("RESOURCE_NOT_FOUND", "VERSION"): NEVER,
    ("SERVER", "INTERNAL"): RETRY,
    ("SERVER", "MULTIPLE_RECORDS_FOUND"): NEVER,
    ("SERVER", "RECORD_NOT_FOUND"): NEVER,
    ("UPSTREAM", "INVALID_DATA"): RETRY,
    ("UPSTREAM", "KNOWN_ISSUE"): RETRY,
    ("UPSTREAM", "NO_RESPONSE"): RETRY,
    ("UPSTREAM", "RATE_LIMIT"): LONG,
    ("UPSTREAM", "UNKNOWN_ISSUE"): RETRY,
    ("VALIDATION", None): NEVER,
    ("VALIDATION", "PARAMETER"): NEVER,
    ("VEHICLE_STATE", "ASLEEP"): LONG,
    ("VEHICLE_STATE", "CHARGING_IN_PROGRESS"): NEVER,
    ("VEHICLE_STATE", "CHARGING_PLUG_CONNECTED"): NEVER,
    ("VEHICLE_STATE", "CHARGING_PLUG_NOT_CONNECTED"): NEVER,
    ("VEHICLE_STATE", "CHARGE_FAULT"): NEVER,
    ("VEHICLE_STATE", "DOOR_OPEN"): NEVER,
    ("VEHICLE_STATE", "FULLY_CHARGED"): NEVER,
    ("VEHICLE_STATE", "HOOD_OPEN"): NEVER,
    ("VEHICLE_STATE", "IGNITION_ON"): LONG,
    ("VEHICLE_STATE", "IN_MOTION"): LONG,
    ("VEHICLE_STATE", "LOW_BATTERY"): LONG,
    ("VEHICLE_STATE", "NOT_CHARGING"): NEVER,
    ("VEHICLE_STATE", "REMOTE_ACCESS_DISABLED"): NEVER,
    ("VEHICLE_STATE", "TRUNK_OPEN"): NEVER,
    ("VEHICLE_STATE", "UNKNOWN"): RETRY,
    ("VEHICLE_STATE", "UNREACHABLE"): LONG,
    ("VEHICLE_STATE", "VEHICLE_OFFLINE_FOR_SERVICE"): LONG,
}

# Codes that mean "already done" for one command: the vehicle is in the state the command wanted.
BENIGN: dict[tuple[str, str], frozenset[str]] = {
    ("VEHICLE_STATE", "CHARGING_IN_PROGRESS"): frozenset({"start_charge"}),
    ("VEHICLE_STATE", "FULLY_CHARGED"): frozenset({"start_charge"}),
    ("VEHICLE_STATE", "NOT_CHARGING"): frozenset({"stop_charge"}),
}

# Errors after which a command may or may not have reached the vehicle.
AMBIGUOUS: frozenset[tuple[str, str | None]] = frozenset({("UPSTREAM", "NO_RESPONSE")})

# Whole-application throttles: one such error should slow every worker, not only the caller.
APPLICATION_WIDE: frozenset[tuple[str, str | None]] = frozenset(
    {("RATE_LIMIT", "SMARTCAR_API"), ("BILLING", "ACCOUNT_SUSPENDED")}
)

_RETRYABLE_RESOLUTIONS = frozenset({"RETRY_LATER"})
_RETRYABLE_STATUSES = frozenset({408, 429})
_FIRST_SERVER_ERROR = 500


def classify(
    error_type: str | None, code: str | None, status_code: int | None, resolution_type: str | None
) -> RetryClass:
    """Classify by (type, code), then by resolution, then by HTTP status.

    Unknown server-side failures are worth retrying; unknown client-side ones are not.
    """
    known = CATALOGUE.get((error_type or "", code))
    if known is not None:
        return known
    if error_type is not None and (error_type, None) in CATALOGUE and code is not None:
        # A code Smartcar added after this table was written: follow the type's null-code entry.
        return CATALOGUE[(error_type, None)]
    if resolution_type in _RETRYABLE_RESOLUTIONS:
        return RETRY
    if resolution_type is not None:
        return NEVER
    if status_code is None or status_code >= _FIRST_SERVER_ERROR or status_code in _RETRYABLE_STATUSES:
        return RETRY
    return NEVER


def is_benign(error_type: str | None, code: str | None, command: str | None) -> bool:
    if command is None or error_type is None or code is None:
        return False
    return command in BENIGN.get((error_type, code), frozenset())

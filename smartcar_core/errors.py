"""`SmartcarError` and its subclasses: every failure the client can report, as data.

Smartcar answers errors in several shapes (v1 `{error, message}`, v2 `{type, code, ...}`, v3
`{errors: [...]}`, OAuth `{error, error_description}`, gateway pages that are not JSON at all), and the
network fails in its own ways. All of them become one exception type with the same fields, so that a
caller (or `RetryPolicy`) can decide on `type`, `code`, `status_code` and `retry_after` alone.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

from smartcar_core.catalogue import AMBIGUOUS, APPLICATION_WIDE, RetryClass, classify, is_benign

_MESSAGE_LIMIT = 300
_EPOCH_SECONDS_FLOOR = 1e9  # a Retry-After this large is a timestamp, not a delay
_EPOCH_MILLIS_FLOOR = 1e12
_GATEWAY_TIMEOUT = 504


@dataclass(frozen=True, slots=True)
class Resolution:
    """What Smartcar suggests: `type` such as RETRY_LATER or REAUTHENTICATE, and sometimes a URL."""

    type: str | None
    url: str | None = None


class SmartcarError(Exception):
    """An error answered by Smartcar, or a failure to reach it.

    `status_code` is the HTTP status (never the body's copy). `message` reads `TYPE:CODE - description`,
    or `TYPE - description` when the code is null. The body as received is kept in `body`.
    """

    def __init__(
        self,
        *,
        status_code: int | None,
        type: str | None,  # noqa: A002 - Smartcar's field name
        code: str | None = None,
        description: str | None = None,
        request_id: str | None = None,
        resolution: Resolution | None = None,
        doc_url: str | None = None,
        detail: list[Any] | None = None,
        suggested_user_message: str | None = None,
        retry_after: float | None = None,
        retry_after_raw: str | None = None,
        body: Any = None,
        message: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.type = type
        self.code = code
        self.description = description
        self.request_id = request_id
        self.resolution = resolution
        self.doc_url = doc_url
        self.detail = detail
        self.suggested_user_message = suggested_user_message
        self.retry_after = retry_after
        self.retry_after_raw = retry_after_raw
        self.body = body
        self.message = message if message is not None else _format_message(type, code, description)
        super().__init__(self.message)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code!r}, type={self.type!r}, "
            f"code={self.code!r}, request_id={self.request_id!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by its fields: the default calls `cls(*args)`, which the keyword-only `__init__`
        refuses, so the error could not cross a process boundary (a process pool, a prefork worker)
        or be copied."""
        return (_restore, (type(self), self.message), self.__dict__)

    @property
    def retry_class(self) -> RetryClass:
        """What the catalogue says to do about this error (see `smartcar_core.catalogue`)."""
        resolution_type = self.resolution.type if self.resolution else None
        return classify(self.type, self.code, self.status_code, resolution_type)

    @property
    def retryable(self) -> bool:
        return self.retry_class is not RetryClass.NEVER

    @property
    def ambiguous(self) -> bool:
        """True when a command may have reached the vehicle although the call failed."""
        return self.status_code == _GATEWAY_TIMEOUT or (self.type, self.code) in AMBIGUOUS

    @property
    def application_wide(self) -> bool:
        """True for throttles that should pause every caller of this application, not only this one."""
        return (self.type, self.code) in APPLICATION_WIDE

    def is_benign_for(self, command: str) -> bool:
        """True when this error means `command` (e.g. "start_charge") has nothing left to do."""
        return is_benign(self.type, self.code, command)


class AuthenticationError(SmartcarError):
    """AUTHENTICATION: the access token (or client credentials) was refused."""


class BillingError(SmartcarError):
    """BILLING: the plan does not allow this call."""


class CompatibilityError(SmartcarError):
    """COMPATIBILITY: the make, vehicle or platform cannot do this."""


class ConnectedServicesAccountError(SmartcarError):
    """CONNECTED_SERVICES_ACCOUNT: the owner must act in the OEM's app or account."""


class PermissionDeniedError(SmartcarError):
    """PERMISSION: the application lacks the scope this endpoint needs."""


class RateLimitError(SmartcarError):
    """RATE_LIMIT: the vehicle's or the application's limit was reached."""


class ResourceNotFoundError(SmartcarError):
    """RESOURCE_NOT_FOUND: wrong path or API version."""


class ServerError(SmartcarError):
    """SERVER: Smartcar failed internally."""


class UpstreamError(SmartcarError):
    """UPSTREAM: the OEM or the vehicle failed to answer properly."""


class ValidationError(SmartcarError):
    """VALIDATION: the request was malformed."""


class VehicleStateError(SmartcarError):
    """VEHICLE_STATE: the vehicle's state refuses the request (asleep, door open, not plugged in...)."""


class OAuthError(SmartcarError):
    """The token endpoint refused a grant (`invalid_grant`, `invalid_client`...)."""


class UnexpectedResponseError(SmartcarError):
    """An answer that is not one of Smartcar's error shapes (a gateway page, unknown JSON)."""


class SmartcarTimeoutError(SmartcarError):
    """No answer in time. `request_sent` says whether the request may have reached Smartcar."""

    def __init__(self, description: str, *, request_sent: bool) -> None:
        super().__init__(status_code=408, type="SDK_ERROR", code="TIMEOUT", description=description)
        self.request_sent = request_sent

    @property
    def ambiguous(self) -> bool:
        return self.request_sent


class SmartcarConnectionError(SmartcarError):
    """The connection failed. `request_sent` is False when it failed before anything was sent."""

    def __init__(self, description: str, *, request_sent: bool) -> None:
        super().__init__(status_code=None, type="SDK_ERROR", code="CONNECTION", description=description)
        self.request_sent = request_sent

    @property
    def ambiguous(self) -> bool:
        return self.request_sent


_BY_TYPE: dict[str, type[SmartcarError]] = {
    "AUTHENTICATION": AuthenticationError,
    "BILLING": BillingError,
    "COMPATIBILITY": CompatibilityError,
    "CONNECTED_SERVICES_ACCOUNT": ConnectedServicesAccountError,
    "PERMISSION": PermissionDeniedError,
    "RATE_LIMIT": RateLimitError,
    "RESOURCE_NOT_FOUND": ResourceNotFoundError,
    "SERVER": ServerError,
    "UPSTREAM": UpstreamError,
    "VALIDATION": ValidationError,
    "VEHICLE_STATE": VehicleStateError,
}


def _restore(cls: type[SmartcarError], message: str) -> SmartcarError:
    return cls.__new__(cls, message)


def _format_message(error_type: str | None, code: str | None, description: str | None) -> str:
    head = error_type or "SDK_ERROR"
    if code:
        head = f"{head}:{code}"
    return f"{head} - {description or 'Unknown error'}"


def parse_retry_after(raw: str | None, *, now: float | None = None) -> float | None:  # noqa: PLR0911 - one return per header form
    """Seconds to wait, from a Retry-After header.

    HTTP says seconds or an HTTP date. Some Smartcar SDK tests fill it with a Unix timestamp in
    milliseconds, so very large numbers are read as timestamps (seconds or milliseconds).
    """
    if raw is None or not raw.strip():
        return None
    now = time.time() if now is None else now
    text = raw.strip()
    try:
        number = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:  # "-0000" is UTC with no zone stated; naive would read as local time
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, moment.timestamp() - now)
    if not math.isfinite(number) or number < 0:  # NaN, infinite or negative: not a usable delay
        return None
    if number >= _EPOCH_MILLIS_FLOOR:
        return max(0.0, number / 1000 - now)
    if number >= _EPOCH_SECONDS_FLOOR:
        return max(0.0, number - now)
    return number


def _resolution(value: Any) -> Resolution | None:
    if isinstance(value, str):
        return Resolution(type=value)
    if isinstance(value, dict):
        return Resolution(type=_str_or_none(value.get("type")), url=_str_or_none(value.get("url")))
    return None


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)


def _detail(value: Any) -> list[Any] | None:
    if value is None:
        return None
    return value if isinstance(value, list) else [value]


def error_from_response(status_code: int, headers: Any, text: str) -> SmartcarError:
    """Build the right `SmartcarError` for a non-2xx answer.

    `headers` is any case-insensitive mapping (httpx.Headers). Every body shape Smartcar uses is
    recognised by its keys; anything else becomes `UnexpectedResponseError` with the text kept.
    """
    header_request_id = headers.get("sc-request-id")
    retry_after_raw = headers.get("retry-after")
    common: dict[str, Any] = {
        "status_code": status_code,
        "retry_after": parse_retry_after(retry_after_raw),
        "retry_after_raw": retry_after_raw,
    }
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        snippet = text.strip()[:_MESSAGE_LIMIT] or f"HTTP {status_code} with an empty body"
        return UnexpectedResponseError(
            type="SDK_ERROR", description=snippet, request_id=header_request_id, body=text, **common
        )
    return _error_from_json(body, header_request_id, common)


def _error_from_json(
    body: dict[str, Any], header_request_id: str | None, common: dict[str, Any]
) -> SmartcarError:
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        links = first.get("links")
        links = links if isinstance(links, dict) else {}
        error_type = _str_or_none(first.get("type"))
        return _BY_TYPE.get(error_type or "", SmartcarError)(
            type=error_type,
            code=_str_or_none(first.get("code")),
            description=_str_or_none(first.get("detail") or first.get("title")),
            request_id=_str_or_none(first.get("requestId") or body.get("requestId")) or header_request_id,
            resolution=_resolution(first.get("resolution")),
            doc_url=_str_or_none(links.get("about")),
            suggested_user_message=_str_or_none(first.get("suggestedUserMessage")),
            body=body,
            **common,
        )
    if "error" in body:
        name = str(body.get("error"))
        is_oauth = "error_description" in body or "message" not in body
        # v1 names errors like `vehicle_state_error`: the same families as v2's types.
        v1_family = _BY_TYPE.get(name.removesuffix("_error").upper(), SmartcarError)
        return (OAuthError if is_oauth else v1_family)(
            type=_str_or_none(body.get("error")),
            code=_str_or_none(body.get("code")),
            description=_str_or_none(body.get("error_description") or body.get("message")),
            request_id=_str_or_none(body.get("requestId")) or header_request_id,
            body=body,
            **common,
        )
    if "type" in body:
        error_type = _str_or_none(body.get("type"))
        return _BY_TYPE.get(error_type or "", SmartcarError)(
            type=error_type,
            code=_str_or_none(body.get("code")),
            description=_str_or_none(body.get("description")),
            request_id=_str_or_none(body.get("requestId")) or header_request_id,
            resolution=_resolution(body.get("resolution")),
            doc_url=_str_or_none(body.get("docURL")),
            detail=_detail(body.get("detail")),
            suggested_user_message=_str_or_none(body.get("suggestedUserMessage")),
            body=body,
            **common,
        )
    return UnexpectedResponseError(
        type="SDK_ERROR", description="Unknown error", request_id=header_request_id, body=body, **common
    )

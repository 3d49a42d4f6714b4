"""Errors the simulator answers, in each of Smartcar's body shapes (v2, v1, v3, OAuth).

`ApiError` is raised by handlers and rendered by the request pipeline. The status and resolution of
every (type, code) of Smartcar's catalogue are here, so a fault script may name just the type and code.
"""

from __future__ import annotations

from typing import Any

DOCS = "https://smartcar.com/docs/errors/api-errors"

# (type, code) -> (HTTP status, resolution type, description)
CATALOGUE: dict[tuple[str, str | None], tuple[int, str | None, str]] = {
    ("AUTHENTICATION", None): (401, "REAUTHENTICATE", "The request is missing a valid access token."),
    ("BILLING", "INVALID_PLAN"): (430, "CONTACT_SUPPORT", "The plan does not include this feature."),
    ("BILLING", "VEHICLE_LIMIT"): (430, "CONTACT_SUPPORT", "The plan's vehicle limit is reached."),
    ("BILLING", "VEHICLE_REQUEST_LIMIT"): (
        430,
        "CONTACT_SUPPORT",
        "This vehicle's monthly requests are used up.",
    ),
    ("BILLING", "ACCOUNT_SUSPENDED"): (430, "FINANCE", "The Smartcar account is suspended."),
    ("COMPATIBILITY", "MAKE_NOT_COMPATIBLE"): (501, None, "This make is not supported in this region."),
    ("COMPATIBILITY", "SMARTCAR_NOT_CAPABLE"): (
        501,
        None,
        "Smartcar does not support this for this vehicle.",
    ),
    ("COMPATIBILITY", "VEHICLE_NOT_CAPABLE"): (501, None, "The vehicle is not capable of this request."),
    ("COMPATIBILITY", "PLATFORM_NOT_CAPABLE"): (501, "REAUTHENTICATE", "The connection cannot do this."),
    ("CONNECTED_SERVICES_ACCOUNT", "ACCOUNT_ISSUE"): (400, None, "The owner must act in the OEM's app."),
    ("CONNECTED_SERVICES_ACCOUNT", "AUTHENTICATION_FAILED"): (400, "REAUTHENTICATE", "OEM login changed."),
    ("CONNECTED_SERVICES_ACCOUNT", "NO_VEHICLES"): (400, None, "The OEM account has no vehicles."),
    ("CONNECTED_SERVICES_ACCOUNT", "PERMISSION"): (400, "REAUTHENTICATE", "Access was revoked at the OEM."),
    ("CONNECTED_SERVICES_ACCOUNT", "SUBSCRIPTION"): (400, None, "The OEM subscription is inactive."),
    ("CONNECTED_SERVICES_ACCOUNT", "VEHICLE_MISSING"): (400, None, "The vehicle left the OEM account."),
    ("CONNECTED_SERVICES_ACCOUNT", "VIRTUAL_KEY_REQUIRED"): (
        400,
        "ACTION_REQUIRED",
        "A virtual key is needed.",
    ),
    ("PERMISSION", None): (403, "REAUTHENTICATE", "The application lacks the permission for this request."),
    ("RATE_LIMIT", "SMARTCAR_API"): (429, "RETRY_LATER", "The application's request limit is reached."),
    ("RATE_LIMIT", "VEHICLE"): (429, "RETRY_LATER", "Too many requests to this vehicle."),
    ("RESOURCE_NOT_FOUND", "PATH"): (404, None, "The requested resource does not exist."),
    ("RESOURCE_NOT_FOUND", "VERSION"): (404, None, "The requested API version does not exist."),
    ("SERVER", "INTERNAL"): (500, "RETRY_LATER", "Smartcar failed internally."),
    ("SERVER", "MULTIPLE_RECORDS_FOUND"): (500, "CONTACT_SUPPORT", "Several battery capacities match."),
    ("SERVER", "RECORD_NOT_FOUND"): (500, "CONTACT_SUPPORT", "No battery capacity record was found."),
    ("UPSTREAM", "INVALID_DATA"): (502, "RETRY_LATER", "The manufacturer returned invalid data."),
    ("UPSTREAM", "KNOWN_ISSUE"): (502, "RETRY_LATER", "The manufacturer has a known issue."),
    ("UPSTREAM", "NO_RESPONSE"): (502, "RETRY_LATER", "The manufacturer or vehicle did not answer."),
    ("UPSTREAM", "RATE_LIMIT"): (502, "RETRY_LATER", "The manufacturer's rate limit is reached."),
    ("UPSTREAM", "UNKNOWN_ISSUE"): (502, "RETRY_LATER", "The manufacturer failed unexpectedly."),
    ("VALIDATION", None): (400, None, "The request is invalid or malformed."),
    ("VALIDATION", "PARAMETER"): (400, None, "A parameter has an invalid value."),
    **{
        ("VEHICLE_STATE", code): (409, resolution, description)
        for code, resolution, description in (
            ("ASLEEP", None, "The vehicle is asleep."),
            ("CHARGING_IN_PROGRESS", None, "The vehicle is already charging."),
            ("CHARGING_PLUG_CONNECTED", None, "Not allowed while the charging cable is plugged in."),
            ("CHARGING_PLUG_NOT_CONNECTED", None, "The charging cable is not plugged in."),
            ("CHARGE_FAULT", None, "The charger does not deliver current."),
            ("DOOR_OPEN", None, "A door is open."),
            ("FULLY_CHARGED", None, "The battery is charged to its limit."),
            ("HOOD_OPEN", None, "The hood is open."),
            ("IGNITION_ON", None, "The ignition is on."),
            ("IN_MOTION", None, "The vehicle is moving."),
            ("LOW_BATTERY", "RETRY_LATER", "The vehicle's battery is too low."),
            ("NOT_CHARGING", None, "The vehicle is not charging."),
            ("REMOTE_ACCESS_DISABLED", None, "Remote access is disabled in the vehicle."),
            ("TRUNK_OPEN", None, "The trunk is open."),
            ("UNKNOWN", "RETRY_LATER", "The vehicle is in an unknown state."),
            ("UNREACHABLE", None, "The vehicle cannot be reached."),
            ("VEHICLE_OFFLINE_FOR_SERVICE", None, "The vehicle is in service mode."),
        )
    },
}

_V3_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict"}


class ApiError(Exception):
    """A Smartcar error answer. `status` defaults to the catalogue's for (type, code)."""

    def __init__(
        self,
        error_type: str,
        code: str | None = None,
        *,
        status: int | None = None,
        description: str | None = None,
        retry_after: float | None = None,
        detail: list[Any] | None = None,
        resolution: str | None = None,
    ) -> None:
        known = CATALOGUE.get((error_type, code)) or CATALOGUE.get((error_type, None))
        self.type = error_type
        self.code = code
        self.status = status or (known[0] if known else 500)
        self.description = description or (known[2] if known else f"{error_type}:{code}")
        self.resolution = resolution if resolution is not None else (known[1] if known else None)
        self.retry_after = retry_after
        self.detail = detail
        super().__init__(f"{error_type}:{code} ({self.status})")

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(0, round(self.retry_after)))}

    def doc_url(self) -> str:
        return error_doc_url(self.type, self.code)

    def v2_body(self, request_id: str) -> dict[str, Any]:
        return {
            "type": self.type,
            "code": self.code,
            "description": self.description,
            "docURL": self.doc_url(),
            "statusCode": self.status,
            "requestId": request_id,
            "resolution": {"type": self.resolution},
            "suggestedUserMessage": _user_message(self),
            "detail": self.detail,
        }

    def v1_body(self, request_id: str) -> dict[str, Any]:
        """API v1.0's shape: `error` names the family (`vehicle_state_error`), `message` the text."""
        return {
            "error": f"{self.type.lower()}_error",
            "message": self.description,
            "code": self.code,
            "statusCode": self.status,
            "requestId": request_id,
        }

    def v3_body(self, request_id: str) -> dict[str, Any]:
        item = {
            "status": str(self.status),
            "type": self.type,
            "code": self.code,
            "title": _V3_TITLES.get(self.status, "Error"),
            "detail": self.description,
            "links": {"about": self.doc_url()},
            "resolution": {"type": self.resolution},
            "suggestedUserMessage": _user_message(self),
            "requestId": request_id,
        }
        return {"errors": [item]}


class OAuthError(Exception):
    """The token endpoint's refusals: `{error, error_description}`."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        self.error = error
        self.description = description
        self.status = status
        super().__init__(f"{error} ({status})")

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


def error_doc_url(error_type: str, code: str | None) -> str:
    """The page (and anchor) of Smartcar's error reference for (type, code), as `docURL` names it."""
    page = f"{DOCS}/{error_type.lower().replace('_', '-')}-errors"
    return page if code is None else f"{page}#{code.lower().replace('_', '-')}"


def _user_message(error: ApiError) -> str:
    if error.type == "VEHICLE_STATE":
        return "Your vehicle could not complete the request right now."
    if error.type in ("AUTHENTICATION", "PERMISSION", "CONNECTED_SERVICES_ACCOUNT"):
        return "Please reconnect your vehicle."
    return "Something went wrong. Please try again later."


def not_found() -> ApiError:
    return ApiError("RESOURCE_NOT_FOUND", "PATH")


def not_capable(description: str | None = None) -> ApiError:
    return ApiError("COMPATIBILITY", "VEHICLE_NOT_CAPABLE", description=description)


def vehicle_state(code: str) -> ApiError:
    return ApiError("VEHICLE_STATE", code)


def validation(description: str, *, code: str | None = "PARAMETER", field: str | None = None) -> ApiError:
    detail = [{"field": field, "message": description}] if field else None
    return ApiError("VALIDATION", code, description=description, detail=detail)

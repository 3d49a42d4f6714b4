"""smartcar_core: every function, class and field of Smartcar's SDKs, in Python, sync and async.

Names follow the official Python SDK (snake_case). Results are frozen dataclasses with a `meta`; errors
are `SmartcarError` subclasses that know whether they are worth retrying; `RetryPolicy` says when.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from smartcar_core._version import __version__

if TYPE_CHECKING:
    from smartcar_core.auth import AsyncAuthClient, AuthClient, AuthUrlOptions
    from smartcar_core.batch import BatchResponse
    from smartcar_core.catalogue import RetryClass
    from smartcar_core.client import (
        AsyncSmartcar,
        Smartcar,
        delete_connections,
        get_compatibility,
        get_compatibility_matrix,
        get_connections,
        get_user,
        get_vehicle,
        get_vehicles,
    )
    from smartcar_core.config import Origins, get_api_version, set_api_version
    from smartcar_core.errors import (
        AuthenticationError,
        BillingError,
        CompatibilityError,
        ConnectedServicesAccountError,
        OAuthError,
        PermissionDeniedError,
        RateLimitError,
        Resolution,
        ResourceNotFoundError,
        ServerError,
        SmartcarConnectionError,
        SmartcarError,
        SmartcarTimeoutError,
        UnexpectedResponseError,
        UpstreamError,
        ValidationError,
        VehicleStateError,
    )
    from smartcar_core.results import (
        Access,
        ActionResponse,
        Attributes,
        Battery,
        BatteryCapacity,
        Charge,
        ChargeLimit,
        CompatibilityMatrix,
        CompatibilityV1,
        CompatibilityV2,
        DeleteConnections,
        DiagnosticSystemStatus,
        DiagnosticTroubleCodes,
        EngineOil,
        Fuel,
        GetConnections,
        Location,
        LockStatus,
        Meta,
        NominalCapacity,
        Odometer,
        Permissions,
        Response,
        ServiceHistory,
        Status,
        TirePressure,
        User,
        Vehicles,
        Vin,
        WebhookSubscription,
    )
    from smartcar_core.retry import Action, RetryDecision, RetryPolicy
    from smartcar_core.transport import make_async_client, make_client
    from smartcar_core.v3 import Signal, SignalResponse, SignalsResponse, VehicleResponse
    from smartcar_core.vehicle import AsyncVehicle, Vehicle
    from smartcar_core.webhooks import get_management_token, hash_challenge, verify_payload

# Each name is imported from its module when first used: importing one module of the package (the
# receiver and the operator CLI take `smartcar_core.events`) does not load the clients, httpx and every
# result type with it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("AsyncAuthClient", "AuthClient", "AuthUrlOptions"), "smartcar_core.auth"),
    **dict.fromkeys(("BatchResponse",), "smartcar_core.batch"),
    **dict.fromkeys(("RetryClass",), "smartcar_core.catalogue"),
    **dict.fromkeys(
        (
            "AsyncSmartcar",
            "Smartcar",
            "delete_connections",
            "get_compatibility",
            "get_compatibility_matrix",
            "get_connections",
            "get_user",
            "get_vehicle",
            "get_vehicles",
        ),
        "smartcar_core.client",
    ),
    **dict.fromkeys(("Origins", "get_api_version", "set_api_version"), "smartcar_core.config"),
    **dict.fromkeys(
        (
            "AuthenticationError",
            "BillingError",
            "CompatibilityError",
            "ConnectedServicesAccountError",
            "OAuthError",
            "PermissionDeniedError",
            "RateLimitError",
            "Resolution",
            "ResourceNotFoundError",
            "ServerError",
            "SmartcarConnectionError",
            "SmartcarError",
            "SmartcarTimeoutError",
            "UnexpectedResponseError",
            "UpstreamError",
            "ValidationError",
            "VehicleStateError",
        ),
        "smartcar_core.errors",
    ),
    **dict.fromkeys(
        (
            "Access",
            "ActionResponse",
            "Attributes",
            "Battery",
            "BatteryCapacity",
            "Charge",
            "ChargeLimit",
            "CompatibilityMatrix",
            "CompatibilityV1",
            "CompatibilityV2",
            "DeleteConnections",
            "DiagnosticSystemStatus",
            "DiagnosticTroubleCodes",
            "EngineOil",
            "Fuel",
            "GetConnections",
            "Location",
            "LockStatus",
            "Meta",
            "NominalCapacity",
            "Odometer",
            "Permissions",
            "Response",
            "ServiceHistory",
            "Status",
            "TirePressure",
            "User",
            "Vehicles",
            "Vin",
            "WebhookSubscription",
        ),
        "smartcar_core.results",
    ),
    **dict.fromkeys(("Action", "RetryDecision", "RetryPolicy"), "smartcar_core.retry"),
    **dict.fromkeys(("make_async_client", "make_client"), "smartcar_core.transport"),
    **dict.fromkeys(("Signal", "SignalResponse", "SignalsResponse", "VehicleResponse"), "smartcar_core.v3"),
    **dict.fromkeys(("AsyncVehicle", "Vehicle"), "smartcar_core.vehicle"),
    **dict.fromkeys(("get_management_token", "hash_challenge", "verify_payload"), "smartcar_core.webhooks"),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Access",
    "Action",
    "ActionResponse",
    "AsyncAuthClient",
    "AsyncSmartcar",
    "AsyncVehicle",
    "Attributes",
    "AuthClient",
    "AuthUrlOptions",
    "AuthenticationError",
    "BatchResponse",
    "Battery",
    "BatteryCapacity",
    "BillingError",
    "Charge",
    "ChargeLimit",
    "CompatibilityError",
    "CompatibilityMatrix",
    "CompatibilityV1",
    "CompatibilityV2",
    "ConnectedServicesAccountError",
    "DeleteConnections",
    "DiagnosticSystemStatus",
    "DiagnosticTroubleCodes",
    "EngineOil",
    "Fuel",
    "GetConnections",
    "Location",
    "LockStatus",
    "Meta",
    "NominalCapacity",
    "OAuthError",
    "Odometer",
    "Origins",
    "PermissionDeniedError",
    "Permissions",
    "RateLimitError",
    "Resolution",
    "ResourceNotFoundError",
    "Response",
    "RetryClass",
    "RetryDecision",
    "RetryPolicy",
    "ServerError",
    "ServiceHistory",
    "Signal",
    "SignalResponse",
    "SignalsResponse",
    "Smartcar",
    "SmartcarConnectionError",
    "SmartcarError",
    "SmartcarTimeoutError",
    "Status",
    "TirePressure",
    "UnexpectedResponseError",
    "UpstreamError",
    "User",
    "ValidationError",
    "Vehicle",
    "VehicleResponse",
    "VehicleStateError",
    "Vehicles",
    "Vin",
    "WebhookSubscription",
    "__version__",
    "delete_connections",
    "get_api_version",
    "get_compatibility",
    "get_compatibility_matrix",
    "get_connections",
    "get_management_token",
    "get_user",
    "get_vehicle",
    "get_vehicles",
    "hash_challenge",
    "make_async_client",
    "make_client",
    "set_api_version",
    "verify_payload",
]

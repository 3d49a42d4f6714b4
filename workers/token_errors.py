"""The failures of a token read or refresh (`workers.tokens`), as small exceptions carrying whose they are.

Their messages never hold a token or a secret: they are logged and kept in event histories.
"""

from __future__ import annotations

import time
from collections.abc import Sequence


class TokenError(Exception):
    """Tokens are missing or unusable; `vehicle_id`/`grant_id` say whose. The message never holds a token."""

    def __init__(self, message: str, *, vehicle_id: str | None = None, grant_id: str | None = None) -> None:
        super().__init__(message)
        self.vehicle_id = vehicle_id
        self.grant_id = grant_id


class TokenRefreshBusyError(TokenError):
    """Another worker holds the refresh lock for longer than we wait: try again later."""


class GrantRefusedError(TokenError):
    """Smartcar refused the grant's refresh token (spent or revoked): only the owner reconnecting helps.
    `vehicle_ids` are the vehicles the grant covered (now held)."""

    def __init__(self, message: str, *, grant_id: str, vehicle_ids: Sequence[str] = ()) -> None:
        super().__init__(message, grant_id=grant_id)
        self.vehicle_ids = list(vehicle_ids)


class ClientRejectedError(TokenError):
    """Smartcar rejected our client credentials (`oauth_error`: invalid_client or unauthorized_client):
    SMARTCAR_CLIENT_ID/SECRET must be fixed; the grant is fine and is refreshed once they are."""

    def __init__(self, message: str, *, grant_id: str, oauth_error: str) -> None:
        super().__init__(message, grant_id=grant_id)
        self.oauth_error = oauth_error


class VehicleHeldError(TokenError):
    """The vehicle's access was lost at `since` (epoch s): its events wait for its owner to connect again."""

    def __init__(self, *, vehicle_id: str, since: float) -> None:
        super().__init__(
            f"vehicle {vehicle_id} waits for its owner to connect again (access lost at "
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(since))})",
            vehicle_id=vehicle_id,
        )
        self.since = since

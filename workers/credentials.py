"""Whether Smartcar's token endpoint accepts our SMARTCAR_CLIENT_ID/SECRET, asked without any user.

`probe_client` POSTs the token endpoint with `grant_type=refresh_token` and a refresh token that cannot
exist (random, never issued). The endpoint authenticates the client before it looks at the grant, as
OAuth 2.0 orders it (RFC 6749 section 5.2: `invalid_client`, HTTP 401, when client authentication fails;
`invalid_grant` when the grant is invalid), so:

- `invalid_client` (or `unauthorized_client`): the credentials are wrong;
- `invalid_grant`: they were accepted, and only the made-up token was refused;
- anything else (no answer, a 5xx, another error): not verified, and said so.

We rely on that order. Smartcar documents its token errors in the OAuth shape (`{error,
error_description}`, `invalid_client` with 401: /work/shared/smartcar/smartcar-errors.md), and our
simulator checks the client first too (`smartcar_simulator.auth.token`); the tests run the probe against
the simulator with the right and a wrong secret. Nothing is exchanged: no token exists to be spent.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum

import httpx

from smartcar_core.auth import AuthClient
from smartcar_core.config import Origins
from smartcar_core.errors import OAuthError, SmartcarError
from workers.settings import WorkerSettings

PROBE_TIMEOUT = 10.0
_REJECTED = frozenset({"invalid_client", "unauthorized_client"})


class ClientVerdict(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNSET = "unset"
    UNKNOWN = "not verified"


@dataclass(frozen=True, slots=True)
class ClientProbe:
    """The verdict, and one line saying what Smartcar answered (never a secret)."""

    verdict: ClientVerdict
    detail: str


def probe_client(
    settings: WorkerSettings, *, origins: Origins | None = None, http: httpx.Client | None = None
) -> ClientProbe:
    """Ask the token endpoint whether it accepts our client credentials (see the module's docstring)."""
    if not settings.smartcar_client_id or settings.smartcar_client_secret is None:
        return ClientProbe(ClientVerdict.UNSET, "SMARTCAR_CLIENT_ID or SMARTCAR_CLIENT_SECRET is not set")
    origins = origins or Origins.from_env()
    auth = AuthClient(
        settings.smartcar_client_id,
        settings.smartcar_client_secret.get_secret_value(),
        origins=origins,
        http=http,
        timeout=PROBE_TIMEOUT,
    )
    try:
        auth.exchange_refresh_token(f"smartcar-events-check-{secrets.token_hex(16)}")
    except OAuthError as error:
        answer = f"{error.type} (HTTP {error.status_code}) from {origins.token_url}"
        if error.type in _REJECTED:
            return ClientProbe(ClientVerdict.REJECTED, answer)
        if error.type == "invalid_grant":
            return ClientProbe(ClientVerdict.ACCEPTED, answer)
        return ClientProbe(ClientVerdict.UNKNOWN, answer)
    except SmartcarError as error:
        return ClientProbe(ClientVerdict.UNKNOWN, f"{error.type}:{error.code} from {origins.token_url}")
    # A made-up refresh token exchanged: not what any token endpoint should do, but the client was taken.
    return ClientProbe(ClientVerdict.ACCEPTED, f"a made-up refresh token was accepted by {origins.token_url}")

"""The simulator's settings: one keyword-only object, read from the environment and the command line.

The application's credentials come from the same variables every service reads (`SMARTCAR_CLIENT_ID`,
`SMARTCAR_CLIENT_SECRET`, `SMARTCAR_AMT`, `SMARTCAR_WEBHOOK_ID`), so one environment drives the
simulator, the receiver, the workers and any Smartcar SDK. Everything else is `SIMULATOR_*`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from smartcar_simulator.faults import FaultSpec
from smartcar_simulator.latency import ApplyAt, LatencyModel, parse_latency
from smartcar_simulator.limits import RateLimitSettings

DEFAULT_CLIENT_ID = "simulator-client-id"
DEFAULT_CLIENT_SECRET = "simulator-client-secret"  # noqa: S105 - the local simulator's well-known default
DEFAULT_AMT = "simulator-amt"
SIXTY_DAYS = 60 * 24 * 3600.0


class SimulatorSettings(BaseSettings):
    """Every knob of the simulator, with its default; keywords only: `SimulatorSettings(vehicles=3)`."""

    model_config = SettingsConfigDict(
        env_prefix="SIMULATOR_", extra="ignore", populate_by_name=True, validate_default=True
    )

    # The application, as Smartcar knows it.
    client_id: str = Field(DEFAULT_CLIENT_ID, validation_alias="SMARTCAR_CLIENT_ID")
    client_secret: SecretStr = Field(
        SecretStr(DEFAULT_CLIENT_SECRET),
        validation_alias="SMARTCAR_CLIENT_SECRET",
    )
    amt: SecretStr = Field(
        SecretStr(DEFAULT_AMT),
        validation_alias="SMARTCAR_AMT",
        description="The AMT; a comma-separated list accepts each and signs with the first.",
    )
    webhook_id: str | None = Field(None, validation_alias="SMARTCAR_WEBHOOK_ID")

    # Where it listens (the names uvicorn uses).
    host: str = "127.0.0.1"
    port: int = Field(8010, ge=0, le=65535)
    access_log: bool = False
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "warning"

    # The fleet.
    vehicles: int = Field(10, ge=0, le=100_000)
    vehicles_per_user: int = Field(2, ge=1, le=100)
    seed: int = 0
    clock_speed: float = Field(1.0, gt=0, description="Simulated seconds per real second (charging etc.).")
    charge_per_hour: float = Field(0.25, gt=0, le=10, description="State of charge gained per charging hour.")

    # Answers: how long they take and when within that time a call takes effect; throttles; faults.
    # NoDecode: the environment holds the command line's form (`uniform:0.1,0.5`), not JSON.
    latency: Annotated[LatencyModel, NoDecode] = Field(default_factory=LatencyModel)
    apply_at: ApplyAt = Field(
        "end",
        description=(
            "When within its latency a call takes effect (a command is applied to the car, a read is "
            "taken): `start`, `middle` or `end`. The answer leaves at the end of the latency either way, "
            "and a command takes effect even when its caller has gone by then (a car obeys whether or not "
            "the HTTP caller is still there); a caller that left is recorded with `client_gone`. "
            "`PUT /_sim/apply-at` changes it while running; `/_sim/reset` restores this value."
        ),
    )

    rate_limits: RateLimitSettings = Field(
        default_factory=RateLimitSettings, description='JSON: {"per_vehicle": {...}, "app": {...}}.'
    )
    faults: list[FaultSpec] = Field(default_factory=list, description="JSON: a list of fault rules.")

    # Tokens.
    access_token_ttl: float = Field(7200.0, gt=0, description="Seconds an access token lives.")
    refresh_token_ttl: float = Field(SIXTY_DAYS, gt=0)
    refresh_grace: float = Field(
        60.0, ge=0, description="Seconds a used refresh token is still accepted after its rotation."
    )
    code_ttl: float = Field(600.0, gt=0, description="Seconds an authorization code can be exchanged.")

    # Webhooks.
    webhook_url: str | None = Field(None, description="Deliver `webhook_id`'s events here from the start.")
    webhook_shape: Literal["A", "B"] = "A"
    subscribe_all: bool = Field(
        default=False, description="Subscribe every vehicle to `webhook_id` at start."
    )
    time_scale: float = Field(1.0, ge=0, description="Multiplies webhook retry delays (25, 50, 100 s).")
    webhook_timeout: float = Field(15.0, gt=0)
    tick_seconds: float = Field(1.0, gt=0, description="How often charging progress is applied and emitted.")

    # Limits.
    max_recorded_requests: int = Field(100_000, ge=0)
    max_body_bytes: int = Field(1_048_576, gt=0)
    control_token: SecretStr | None = Field(
        None, description="When set, /_sim/* requires `Authorization: Bearer <control_token>`."
    )

    @field_validator("latency", mode="before")
    @classmethod
    def _latency(cls, value: object) -> object:
        if isinstance(value, int | float | str):
            return parse_latency(value)
        return value

    @property
    def amts(self) -> tuple[str, ...]:
        """Every accepted AMT (rotation: current first)."""
        values = tuple(part.strip() for part in self.amt.get_secret_value().split(",") if part.strip())
        return values or (DEFAULT_AMT,)

    @property
    def signing_amt(self) -> str:
        return self.amts[0]

"""The small HTML pages a vehicle owner sees at the end of Smartcar Connect, from Jinja2 templates.

Every value put in a page is autoescaped, and no page is given a token, a secret or an authorization
code to show: the callback's URL holds the code, so pages load nothing (no image, script or style sheet
from anywhere) and send no Referer. Each answer says `no-store`: a shared computer's back button must not
bring a callback page back from a cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jinja2 import DictLoader, Environment, StrictUndefined
from starlette.responses import HTMLResponse

PAGE_HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
}

_LAYOUT = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 36rem; margin: 3rem auto; padding: 0 1rem;
       line-height: 1.5; color: #1f2328; }
h1 { font-size: 1.4rem; }
li { margin: .3rem 0; }
code { font-size: .95em; }
.status { color: #57606a; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
{% block body %}{% endblock %}
</body>
</html>
"""

_MESSAGE = """{% extends "layout.html" %}{% block body %}
{% for line in lines %}<p>{{ line }}</p>
{% endfor %}{% if restart %}<p><a href="connect">Connect a vehicle again</a></p>
{% endif %}{% endblock %}"""

_CONNECTED = """{% extends "layout.html" %}{% block body %}
<p>Smartcar gave this service access to {{ vehicles | length }}
vehicle{{ "s" if vehicles | length != 1 }}:</p>
<ul>
{% for vehicle in vehicles %}<li><code>{{ vehicle.vehicle_id }}</code>
<span class="status">{{ vehicle.status }}</span></li>
{% endfor %}</ul>
<p>Updates from each vehicle start once its subscription is done. You can close this page.</p>
{% endblock %}"""

TEMPLATES = {"layout.html": _LAYOUT, "message.html": _MESSAGE, "connected.html": _CONNECTED}

# What the owner reads after each Connect error redirect (our words; the codes are Smartcar's).
CONNECT_ERROR_LINES: dict[str, tuple[str, ...]] = {
    "access_denied": ("You did not allow access, so nothing was connected.",),
    "no_vehicles": ("No vehicle could be shared from the account you logged in with.",),
    "vehicle_incompatible": ("Your vehicle cannot give the access this service needs.",),
    "invalid_subscription": (
        "Your vehicle's connected-services subscription is not active.",
        "Activate it in the manufacturer's app, then connect again.",
    ),
    "battery_capacity_no_selection": ("No battery capacity was chosen, so nothing was connected.",),
    "configuration_error": (
        "Smartcar Connect could not run with this service's configuration. Its operator has been told.",
    ),
    "server_error": ("Smartcar had a problem. Nothing was connected; please try again later.",),
}
UNKNOWN_CONNECT_ERROR = ("Smartcar Connect ended without connecting a vehicle.",)


@dataclass(frozen=True, slots=True)
class VehicleLine:
    vehicle_id: str
    status: str


class Pages:
    """The pages, rendered from templates held here (no file to ship or find at run time)."""

    def __init__(self) -> None:
        self._templates = Environment(
            loader=DictLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined
        )

    def _render(self, name: str, status: int, **values: object) -> HTMLResponse:
        body = self._templates.get_template(name).render(**values)
        return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)

    def message(
        self, status: int, title: str, lines: Sequence[str], *, restart: bool = False
    ) -> HTMLResponse:
        return self._render("message.html", status, title=title, lines=lines, restart=restart)

    def connected(self, vehicles: Sequence[VehicleLine]) -> HTMLResponse:
        return self._render("connected.html", 200, title="Vehicle connected", vehicles=vehicles)

    def not_configured(self) -> HTMLResponse:
        return self.message(
            404,
            "Smartcar Connect is not set up here",
            ("This service receives Smartcar's webhooks; it does not connect vehicles.",),
        )

    def bad_request(self, problem: str) -> HTMLResponse:
        return self.message(400, "This link does not work", (problem,), restart=True)

    def refused_state(self) -> HTMLResponse:
        return self.message(
            400,
            "This Connect session cannot be finished",
            (
                "The link is unknown, was already used, has expired, or was started in another browser.",
                "Nothing was connected.",
            ),
            restart=True,
        )

    def connect_error(self, error: str) -> HTMLResponse:
        lines = CONNECT_ERROR_LINES.get(error, UNKNOWN_CONNECT_ERROR)
        status = (
            502
            if error in ("configuration_error", "server_error") or error not in CONNECT_ERROR_LINES
            else 200
        )
        return self.message(status, "No vehicle was connected", lines, restart=True)

    def no_vehicles(self) -> HTMLResponse:
        return self.connect_error("no_vehicles")

    def code_refused(self) -> HTMLResponse:
        return self.message(
            400,
            "This Connect session has expired",
            (
                "Smartcar no longer accepts this sign-in: it was used already, or took too long.",
                "Nothing was connected.",
            ),
            restart=True,
        )

    def smartcar_unavailable(self) -> HTMLResponse:
        return self.message(
            502,
            "Smartcar did not answer",
            ("Nothing was connected. Please try again in a few minutes.",),
            restart=True,
        )

    def store_unavailable(self) -> HTMLResponse:
        return self.message(
            503,
            "The service cannot save your connection right now",
            ("Nothing was kept. Please connect again in a few minutes.",),
            restart=True,
        )

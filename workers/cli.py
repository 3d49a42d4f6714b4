"""`smartcar-events`: the operator's command line (tokens, vehicle state, events, replays, pauses, stats,
purge, the doctor, the relay, a configuration check).

Every command reads the same settings as the workers (environment). Each lives in a module of its own
group (`workers.cli_tools`, `cli_events`, `cli_vehicles`, `cli_replay`, `cli_ops`, `doctor`), imported
only when the command runs (`workers.cli_lazy`): `--help` loads none of them, `events list` only the
events module, and no command but those that need it loads Celery, httpx or the Smartcar client.
"""

from __future__ import annotations

import typer

from workers.cli_lazy import LazyGroup

app = typer.Typer(cls=LazyGroup, help="Operate the Smartcar webhook workers.", no_args_is_help=True)


@app.callback()
def _commands() -> None:
    """Makes `app` a group (typer builds one only for a callback or registered commands): its commands
    are `workers.cli_lazy.COMMANDS`."""

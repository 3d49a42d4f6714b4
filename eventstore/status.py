"""An event's status: the one spelling of each, for Python and for the Lua scripts alike.

received (stored by the receiver, in the inbox) -> queued (claimed by the relay, a task published) ->
processing (a run holds the lease) -> done, or retrying (due again later) -> processing ..., or failed
(a dead letter). replayed: an operator put a finished event back through the relay (like received).

The scripts never spell a status: their text names `$RECEIVED`, `$DONE`, ... and `lua()` substitutes the
values below when the module defining the script is imported, so a renamed status cannot leave a script
comparing against the old word.
"""

from __future__ import annotations

from enum import StrEnum
from string import Template


class Status(StrEnum):
    RECEIVED = "received"
    QUEUED = "queued"
    PROCESSING = "processing"
    RETRYING = "retrying"
    DONE = "done"
    FAILED = "failed"
    REPLAYED = "replayed"


FINISHED = frozenset({Status.DONE, Status.FAILED})
"""The statuses after which nothing runs the event again (short of a replay)."""


def lua(template: str) -> str:
    """A script's text with every `$NAME` of a `Status` member replaced by its value.

    `Template.substitute` raises on a `$` it does not know, so a misspelt status fails at import.
    """
    return Template(template).substitute({status.name: status.value for status in Status})

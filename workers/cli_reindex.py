"""`smartcar-events events reindex`: put the events stored before the operator indexes existed into them
(`eventstore.reindex`), so that `events list`, `replay --filter`, `stats` and `purge` see them.

Without `--yes` it is the plan: the same scan, counting what would change, writing nothing. With `--yes`
it writes. Either way a progress line at most every second, then the totals. Safe while the workers run
and idempotent (a second run adds nothing). It reads every event record once (SCAN, `--batch` at a
time), which costs in proportion to the records stored: a migration step, not a routine command.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from eventstore.keys import KeySpace
from eventstore.reindex import BATCH, ReindexCounts, Reindexer
from workers.cli_output import console, settings_or_exit, store_client

_PROGRESS_EVERY = 1.0


def reindex(
    yes: Annotated[
        bool, typer.Option("--yes", help="Write the entries (without it: only the plan).")
    ] = False,
    batch: Annotated[int, typer.Option(min=1, max=5_000, help="Records read and indexed per call.")] = BATCH,
) -> None:
    """Rebuild the operator indexes from the event records (events stored before the indexes existed)."""
    settings = settings_or_exit()
    verb = "indexed" if yes else "to index"
    total = ReindexCounts()
    with store_client(settings) as client:
        reindexer = Reindexer(client, KeySpace(settings.event_key_prefix))
        shown = time.monotonic()
        for ids in reindexer.batches(batch):
            total.add(reindexer.reindex(ids, write=yes))
            if time.monotonic() - shown >= _PROGRESS_EVERY:
                shown = time.monotonic()
                console.print(f"scanned {total.scanned} record(s): {total.events} {verb}")
    console.print(
        f"scanned {total.scanned} record(s): {total.events} event(s) {verb} "
        f"({total.added} entries {'added' if yes else 'missing'}, {total.removed} in another status's "
        f"index {'removed' if yes else 'to remove'})"
    )
    if total.moved:
        console.print(f"{total.moved} event(s) moved on while read (their transitions index them): run again")
    if not yes:
        console.print("nothing written: run again with --yes to write them")

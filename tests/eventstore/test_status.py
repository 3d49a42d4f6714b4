"""Each status is spelled once, in `Status`: the scripts get theirs substituted when they are built."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import eventstore.scripts
from eventstore import scripts
from eventstore.status import FINISHED, Status, lua

SCRIPTS = {name: value for name, value in vars(scripts).items() if name.isupper() and isinstance(value, str)}


def test_the_script_source_spells_no_status() -> None:
    source = Path(eventstore.scripts.__file__).read_text()
    for status in Status:
        assert not re.search(rf"['\"]{status.value}['\"]", source), status


def test_the_scripts_compare_and_write_the_substituted_statuses() -> None:
    assert not any(re.search(r"\$[A-Z]", text) for text in SCRIPTS.values())  # every $NAME substituted
    assert "'status', 'received'" in scripts.ACCEPT
    assert "status == 'received' or status == 'replayed'" in scripts.CLAIM
    assert "'status', 'queued'" in scripts.CLAIM
    assert "status == 'done' or status == 'failed'" in scripts.BEGIN
    assert "'status', 'processing'" in scripts.BEGIN
    assert "'status', 'done'" in scripts.DONE
    assert "'status', 'retrying'" in scripts.RETRY
    assert "'status', 'failed'" in scripts.DEAD
    assert "'status', 'replayed'" in scripts.REPLAY


def test_a_misspelt_status_fails_when_the_script_is_built() -> None:
    assert lua("return '$DONE'") == "return 'done'"
    with pytest.raises(KeyError, match="DONNE"):
        lua("return '$DONNE'")


def test_finished_means_nothing_runs_it_again() -> None:
    assert frozenset({Status.DONE, Status.FAILED}) == FINISHED
    assert "done" in FINISHED  # a status read from Redis is a str

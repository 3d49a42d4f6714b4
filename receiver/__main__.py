"""`python -m receiver ...`: the operator commands in `receiver.cli`."""

from __future__ import annotations

from receiver.cli import main

main()

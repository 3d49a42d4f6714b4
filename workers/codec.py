"""Reading Redis answers in the workers' own code (the broker): our clients answer bytes.

The event store's decoding lives with the store (`eventstore.codec`); `text` is the one helper the
workers' broker code and their tests need, and the same function.
"""

from __future__ import annotations

from eventstore.codec import text

__all__ = ["text"]

"""An event's life in the store, as the workers name it: claimed by the relay, run, retried, done or
dead-lettered.

The transitions, the record and its decoder belong to the event store (`eventstore.events`,
`eventstore.record`); this module names them for the worker modules that import them from here.
"""

from __future__ import annotations

from eventstore.events import Begin, BeginState, EventStore
from eventstore.record import EventRecord, history_entry

__all__ = ["Begin", "BeginState", "EventRecord", "EventStore", "history_entry"]

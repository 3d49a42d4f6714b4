"""The event store: the Redis layout and operations shared by the receiver, the workers and the operator
tools, and the contract between them. One owner for every key, script, status and record decoder, so that
a change to the layout is made (and reviewed) in one place.

It imports only the standard library, `redis` and `smartcar_core`; never the receiver, the workers,
Celery, pydantic or cryptography (the callers keep their policies: signing, encryption, retries, waits).

- `keys`: `KeySpace`, the name of every key (the one table of them), the default prefix and dedupe window;
- `status`: `Status`, the finished set, and the substitution of statuses into scripts;
- `record`: `EventRecord`, the one decoder of an event hash, and history entries;
- `scripts`: every Lua script, each given all its keys in KEYS (`scripts_index`: the index upkeep and trim);
- `events`: the receiver's accept and an event's life in the workers (`EventStore`);
- `index`, `query`: the operator indexes the event scripts keep, and finding events through them;
- `vehicles`, `commands`, `rates`, `grants`: the workers' own state (signals and errors, command steps and
  vehicle locks, Smartcar's rate bucket and pauses, OAuth grants);
- `verify`: the VERIFY arming switch;
- `client`: `connect`, a sync client configured as the workers configure theirs;
- `codec`: decoding the bytes a client answers.
"""

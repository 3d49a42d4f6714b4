"""Every Lua script of the store, here and (the index upkeep the transitions share, and the sweeper's trim)
in `eventstore.scripts_index`, the OAuth grants' in `eventstore.scripts_grants` and the release of events
held for re-consent in `eventstore.scripts_held`): each one round trip, atomic, and given every key it
touches in KEYS (none builds a key name from a prefix, which Redis Cluster could not route).

Statuses are written `$NAME` and substituted from `Status` at import (`eventstore.status.lua`). The
stores register these texts with their client (`register_script`: EVALSHA, reloaded on NOSCRIPT); the
receiver's writer packs its EVALSHA calls itself, from `ACCEPT` and `eventstore.events.accept_arguments`.
"""

from __future__ import annotations

from eventstore.scripts_index import INDEXES as _INDEXES
from eventstore.status import lua

# --- the receiver -------------------------------------------------------------------------------------

ACCEPT_KEY_COUNT = 5
# KEYS: seen, event, inbox, pending, the received status index (the only index written on the hot path)
# ARGV: event_id, delivery_id, dedupe_seconds, received_at, raw, type, vehicle_id, user_id, webhook_id,
#       mode, version, test
# Returns 1 for a new event (stored, queued in the inbox, listed as pending), 0 for a duplicate (its
# delivery id appended to the record when the record still exists, unless the record has it already: a
# replayed body carries the same delivery id, and must not grow the record; the list is capped too).
# The id is marked seen last: a script that fails half-way (a Redis error between two writes) leaves the
# id unseen, so Smartcar's retry stores it again instead of being taken for a duplicate of nothing.
ACCEPT = lua("""
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[2] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then
    local seen = redis.call('HGET', KEYS[2], 'deliveries')
    if not seen or seen == '' then
      redis.call('HSET', KEYS[2], 'deliveries', ARGV[2])
    elseif #seen < 4096 and not string.find(',' .. seen .. ',', ',' .. ARGV[2] .. ',', 1, true) then
      redis.call('HSET', KEYS[2], 'deliveries', seen .. ',' .. ARGV[2])
    end
  end
  return 0
end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'raw', ARGV[5], 'type', ARGV[6], 'vehicle_id', ARGV[7],
  'user_id', ARGV[8], 'webhook_id', ARGV[9], 'mode', ARGV[10], 'version', ARGV[11], 'test', ARGV[12],
  'deliveries', ARGV[2], 'received_at', ARGV[4], 'status', '$RECEIVED', 'attempts', 0)
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[1])
redis.call('SET', KEYS[1], ARGV[4], 'EX', ARGV[3])
return 1
""")

# --- an event's life in the workers ---------------------------------------------------------------------

# Appends one JSON entry to the `history` array without decoding it (cjson would turn [] into {}).
_APPEND = """
local function append_history(key, entry)
  local h = redis.call('HGET', key, 'history')
  if not h or h == '' or h == '[]' then h = '[' .. entry .. ']'
  else h = string.sub(h, 1, -2) .. ',' .. entry .. ']' end
  redis.call('HSET', key, 'history', h)
end
"""

# Merges the triples (field, order key, json) ARGV[first..last] into the hash `key`: a value replaces the
# stored one only when its order key ("primary:secondary" numbers) is greater. Returns the fields written.
# (`$$` is a `$` once `lua` has put the statuses in.)
_NEWER_WINS_FUNCTION = """
local function newer_wins(key, first, last)
  local written = {}
  for i = first, last, 3 do
    local field, order, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local p, s = string.match(order, '^([^:]*):(.*)$$')
    p, s = tonumber(p) or 0, tonumber(s) or 0
    local old = redis.call('HGET', key, field)
    local replace = not old
    if old then
      local stored = cjson.decode(old)
      local op, os = tonumber(stored['_p']) or 0, tonumber(stored['_s']) or 0
      replace = (p > op) or (p == op and s > os)
    end
    if replace then
      redis.call('HSET', key, field, value)
      written[#written + 1] = field
    end
  end
  return written
end
"""

# KEYS: pending, the status block, paused-vehicles, then per id its event key, its type, vehicle, user,
# webhook indexes and its vehicle's parked list; ARGV: now, parked_until, then the ids. Marks every
# received (or replayed) one queued and indexes it (eventstore.index), after the caller popped it from the
# inbox; ids whose record is gone or further along are dropped (their run happened or is happening). The
# id of a paused vehicle (`eventstore.pauses`) is parked instead of returned: queued, on its vehicle's list,
# its pending score `parked_until` (far ahead: the sweeper leaves it), until a resume makes it due. With no
# vehicle paused that costs one HLEN a call.
CLAIM = lua(
    _INDEXES
    + """
local out = {}
local any_paused = redis.call('HLEN', KEYS[9]) > 0
for i = 3, #ARGV do
  local id, base = ARGV[i], 10 + (i - 3) * 6
  local status = redis.call('HGET', KEYS[base], 'status')
  if status == '$RECEIVED' or status == '$REPLAYED' then
    redis.call('HSET', KEYS[base], 'status', '$QUEUED', 'queued_at', ARGV[1], 'updated_at', ARGV[1])
    move_status(2, id, status, '$QUEUED', ARGV[1])
    index_event(base + 1, id, KEYS[base])
    local vehicle = any_paused and redis.call('HGET', KEYS[base], 'vehicle_id')
    if vehicle and vehicle ~= '' and redis.call('HEXISTS', KEYS[9], vehicle) == 1 then
      redis.call('ZADD', KEYS[1], ARGV[2], id)
      redis.call('LPUSH', KEYS[base + 5], id)
    else
      redis.call('ZADD', KEYS[1], ARGV[1], id)
      out[#out + 1] = id
    end
  end
end
return out
"""
)

# KEYS: event, pending, scheduled, leases, the status block; ARGV: now, lease_until, run_id, event_id,
#       task_id, worker
# A live lease refuses the run (busy, with the lease's end) unless the run comes from the very message
# that holds it: Celery delivers a message again only when its first delivery was lost with its worker.
# Answers {'ok', record}, {'missing'}, {'finished', status} or {'busy', lease_until} (`BeginState`), or
# {'unclaimed'} for an event still received (not indexed yet): the caller claims it (CLAIM), then begins.
BEGIN = lua(
    _INDEXES
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[4], ARGV[4])
  return {'missing'}
end
local status = redis.call('HGET', KEYS[1], 'status')
if status == '$DONE' or status == '$FAILED' then
  redis.call('ZREM', KEYS[4], ARGV[4])
  return {'finished', status}
end
if status == '$RECEIVED' then return {'unclaimed'} end
if status == '$PROCESSING' then
  local lease = redis.call('HGET', KEYS[1], 'lease_until') or '0'
  local holder = redis.call('HGET', KEYS[1], 'task_id') or ''
  if (tonumber(lease) or 0) > tonumber(ARGV[1]) and (ARGV[5] == '' or holder ~= ARGV[5]) then
    return {'busy', lease}
  end
end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', '$PROCESSING', 'started_at', ARGV[1], 'updated_at', ARGV[1],
  'lease_until', ARGV[2], 'run_id', ARGV[3], 'task_id', ARGV[5], 'worker', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('ZREM', KEYS[3], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[4])
move_status(5, ARGV[4], status, '$PROCESSING', ARGV[1])
return {'ok', redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: leases, pending, then the event key of each run; ARGV: lease_until, then (event id, run id) pairs
# The live process's heartbeat: each run still holding its lease (same run id, still processing) gets a
# new lease end, in the record, in `leases` and as its `pending` score. Returns the ids renewed; a run
# missing from the answer lost its lease (another run took over, or it ended).
RENEW = lua("""
local renewed = {}
for i = 3, #KEYS do
  local id, run_id = ARGV[2 * (i - 2)], ARGV[2 * (i - 2) + 1]
  local state = redis.call('HMGET', KEYS[i], 'status', 'run_id')
  if state[1] == '$PROCESSING' and state[2] == run_id then
    redis.call('HSET', KEYS[i], 'lease_until', ARGV[1])
    redis.call('ZADD', KEYS[1], ARGV[1], id)
    redis.call('ZADD', KEYS[2], 'XX', ARGV[1], id)
    renewed[#renewed + 1] = id
  end
end
return renewed
""")

# KEYS: leases, then the event key of each id; ARGV: now, hold_until, then the ids (ARGV[i + 1] is KEYS[i]'s)
# Takes over runs whose lease ended (their worker died or lost Redis): each one still processing, with
# its lease in `leases` still ended, is held until `hold_until` (so no other relay takes it meanwhile)
# and returned, for the caller to enqueue again; the new run's BEGIN takes a fresh lease. Ids that
# finished or whose record is gone are dropped from `leases`.
TAKE_OVER = lua("""
local taken = {}
for i = 2, #KEYS do
  local id = ARGV[i + 1]
  local score = tonumber(redis.call('ZSCORE', KEYS[1], id) or '')
  if score and score <= tonumber(ARGV[1]) then
    if redis.call('HGET', KEYS[i], 'status') == '$PROCESSING' then
      redis.call('ZADD', KEYS[1], ARGV[2], id)
      taken[#taken + 1] = id
    else
      redis.call('ZREM', KEYS[1], id)
    end
  end
end
return taken
""")

# The transitions after BEGIN are fenced by its run id: a run that lost its lease (its worker stalled and
# the sweeper started another) cannot overwrite the newer run's outcome. Each returns 1, or 0 if fenced.

# KEYS: event, pending, leases, the status block, the old error's 2 indexes, then the signals hash of
#       each vehicle the run stores values for; ARGV: run_id, now, expire_seconds, results_json, event_id,
#       old error type, old error code, then for each of those hashes: its number of arguments and its
#       (field, order key, json) triples (`eventstore.vehicles.StagedSignals`)
# The record expires `expire_seconds` later: the retention plus the sweeper's grace (eventstore.index).
# The run's vehicle state is merged only if the run still holds its lease, with its outcome: a run that
# lost it stores nothing, and the run that took over stores the same values.
DONE = lua(
    _INDEXES
    + _NEWER_WINS_FUNCTION
    + """
if redis.call('HGET', KEYS[1], 'run_id') ~= ARGV[1] then return 0 end
local status = redis.call('HGET', KEYS[1], 'status')
redis.call('ZREM', KEYS[3], ARGV[5])
redis.call('HSET', KEYS[1], 'status', '$DONE', 'finished_at', ARGV[2], 'updated_at', ARGV[2],
  'results', ARGV[4])
redis.call('HDEL', KEYS[1], 'lease_until', 'next_attempt_at')
redis.call('ZREM', KEYS[2], ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[3])
move_status(4, ARGV[5], status, '$DONE', ARGV[2])
move_error(11, ARGV[5], ARGV[2], ARGV[6], ARGV[7], '', '')
local at = 8
for k = 13, #KEYS do
  local count = tonumber(ARGV[at])
  newer_wins(KEYS[k], at + 1, at + count)
  at = at + count + 1
end
return 1
"""
)

# KEYS: event, pending, scheduled, leases, the status block, the old error's 2 indexes, the new one's 2;
# ARGV: run_id, now, due, entry, last_error, park, event_id, results, old type, old code, new type, new code
RETRY = lua(
    _APPEND
    + _INDEXES
    + """
if redis.call('HGET', KEYS[1], 'run_id') ~= ARGV[1] then return 0 end
local status = redis.call('HGET', KEYS[1], 'status')
redis.call('ZREM', KEYS[4], ARGV[7])
append_history(KEYS[1], ARGV[4])
redis.call('HSET', KEYS[1], 'status', '$RETRYING', 'updated_at', ARGV[2], 'next_attempt_at', ARGV[3],
  'last_error', ARGV[5], 'results', ARGV[8])
redis.call('HDEL', KEYS[1], 'lease_until')
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[7])
if ARGV[6] == '1' then redis.call('ZADD', KEYS[3], ARGV[3], ARGV[7]) end
move_status(5, ARGV[7], status, '$RETRYING', ARGV[2])
move_error(12, ARGV[7], ARGV[2], ARGV[9], ARGV[10], ARGV[11], ARGV[12])
return 1
"""
)

# KEYS: event, pending, dead, leases, the status block, the old error's 2 indexes, the new one's 2;
# ARGV: run_id, now, entry, last_error, reason, event_id, results, old type, old code, new type, new code
DEAD = lua(
    _APPEND
    + _INDEXES
    + """
if redis.call('HGET', KEYS[1], 'run_id') ~= ARGV[1] then return 0 end
local status = redis.call('HGET', KEYS[1], 'status')
redis.call('ZREM', KEYS[4], ARGV[6])
append_history(KEYS[1], ARGV[3])
redis.call('HSET', KEYS[1], 'status', '$FAILED', 'failed_at', ARGV[2], 'updated_at', ARGV[2],
  'last_error', ARGV[4], 'dead_reason', ARGV[5], 'results', ARGV[7])
redis.call('HDEL', KEYS[1], 'lease_until', 'next_attempt_at')
redis.call('ZREM', KEYS[2], ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[6])
redis.call('PERSIST', KEYS[1])
move_status(5, ARGV[6], status, '$FAILED', ARGV[2])
move_error(12, ARGV[6], ARGV[2], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
return 1
"""
)

# KEYS: event, pending, dead, inbox, leases, the status block, the 4 entity indexes; ARGV: now, entry, id
# Puts a finished (or stuck) event back through the relay: status replayed, results cleared (every
# handler runs again; commands already done are not sent again, see workers.commands), history kept.
# Its error indexes stay as they are: a replayed event is not done, and its last failure is still that.
# replay_event(base, id, now, entry): the replay itself, on the 16 keys from KEYS[base] in REPLAY's order;
# shared with the replay jobs' step (`eventstore.scripts_replay`), which replays under a job's cursor.
REPLAY_FUNCTION = lua(
    _APPEND
    + _INDEXES
    + """
local function replay_event(base, id, now, entry)
  local key = KEYS[base]
  local status = redis.call('HGET', key, 'status')
  append_history(key, entry)
  redis.call('HSET', key, 'status', '$REPLAYED', 'updated_at', now)
  redis.call('HDEL', key, 'results', 'lease_until', 'next_attempt_at', 'dead_reason')
  redis.call('PERSIST', key)
  redis.call('ZREM', KEYS[base + 2], id)
  redis.call('ZREM', KEYS[base + 4], id)
  redis.call('ZADD', KEYS[base + 1], now, id)
  redis.call('LPUSH', KEYS[base + 3], id)
  move_status(base + 5, id, status, '$REPLAYED', now)
  index_event(base + 12, id, key)
end
"""
)
REPLAY_KEY_COUNT = 16
REPLAY = lua(
    REPLAY_FUNCTION
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
replay_event(1, ARGV[3], ARGV[1], ARGV[2])
return 1
"""
)

# KEYS: scheduled; ARGV: now, count -> ids due, removed from the set
DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZREM', KEYS[1], id) end
return ids
"""

# --- vehicle lifecycle jobs (eventstore.lifecycle) -----------------------------------------------------

# KEYS: lifecycle; ARGV: now, lease_until, count -> the members due, each re-scored to the lease's end
TAKE_LIFECYCLE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], member) end
return due
"""

# KEYS: lifecycle, job; ARGV: member, requested_at -> 1 when removed, 0 when asked for again since taken
# A request that came while the job ran is a request of its own: it stays, due now, to be done again.
DONE_LIFECYCLE = """
if redis.call('HGET', KEYS[2], 'requested_at') ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""

# --- vehicle state --------------------------------------------------------------------------------------

# KEYS: hash; ARGV: triples of (field, order key, json). Returns the fields written.
NEWER_WINS = lua(_NEWER_WINS_FUNCTION + "return newer_wins(KEYS[1], 1, #ARGV)\n")

# --- Smartcar's rate limits -----------------------------------------------------------------------------

# KEYS: bucket, pauses; ARGV: capacity, refill_per_second, now, vehicle_id, the application's pause field
# Returns the seconds to wait (0: a token was taken).
TAKE = """
local now = tonumber(ARGV[3])
local paused = redis.call('HMGET', KEYS[2], ARGV[5], ARGV[4])
local wait = math.max(tonumber(paused[1]) or 0, tonumber(paused[2]) or 0) - now
if wait > 0 then return tostring(wait) end
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local answer = '0'
if tokens >= 1 then tokens = tokens - 1 else answer = tostring((1 - tokens) / rate) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
return answer
"""

# KEYS: pauses, bucket; ARGV: field, until, now, empty_bucket
# Keeps the later of two pauses of one field, drops the pauses that ended, and empties the bucket if asked.
PAUSE = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
if tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if (tonumber(all[i + 1]) or 0) <= tonumber(ARGV[3]) then redis.call('HDEL', KEYS[1], all[i]) end
end
if ARGV[4] == '1' then redis.call('HSET', KEYS[2], 'tokens', '0', 'at', ARGV[3]) end
return 1
"""

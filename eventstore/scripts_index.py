"""The Lua of the operator indexes (`eventstore.index`): the upkeep every transition script of
`eventstore.scripts` includes, and the sweeper's trim. Apart from `eventstore.scripts` only for its size;
the same rules hold (statuses as `$NAME`, every key in KEYS).
"""

from __future__ import annotations

from eventstore.status import Status, lua

# The transitions of eventstore.scripts are given the seven status indexes as one
# block of KEYS in `Status` order, starting at KEYS[base]: `move_status` takes the id out of its old
# status's index and puts it in the new one's, scored with the time of the transition. `move_error` moves
# it between the Smartcar error indexes (4 keys from KEYS[base]: the old error's by type and by type and
# code, then the new one's; ARGV gives the old and new type and code, '' for none). `index_event` puts the
# id in its type, vehicle, user and webhook indexes (4 keys from KEYS[base]), scored with its receipt.
_OFFSETS = ", ".join(f"['{status.value}'] = {offset}" for offset, status in enumerate(Status))
INDEXES = (
    "\nlocal STATUS_OFFSET = {"
    + _OFFSETS
    + """}
local function move_status(base, id, old, new, score)
  local from = old and STATUS_OFFSET[old]
  if from then redis.call('ZREM', KEYS[base + from], id) end
  redis.call('ZADD', KEYS[base + STATUS_OFFSET[new]], score, id)
end
local function index_event(base, id, event_key)
  local f = redis.call('HMGET', event_key, 'received_at', 'type', 'vehicle_id', 'user_id', 'webhook_id')
  for k = 2, 5 do
    if f[k] and f[k] ~= '' then redis.call('ZADD', KEYS[base + k - 2], f[1], id) end
  end
end
local function move_error(base, id, score, old_type, old_code, new_type, new_code)
  if old_type ~= '' then redis.call('ZREM', KEYS[base], id) end
  if old_code ~= '' then redis.call('ZREM', KEYS[base + 1], id) end
  if new_type ~= '' then redis.call('ZADD', KEYS[base + 2], score, id) end
  if new_code ~= '' then redis.call('ZADD', KEYS[base + 3], score, id) end
end
"""
)

# KEYS: the status block, dead, then for each id 7 keys: its event, its type, vehicle, user and webhook
#       indexes, its last error's 2 indexes; ARGV: done_before, failed_before, then the ids
# The sweeper's trim (eventstore.index): each event still done (failed) since before `done_before`
# (`failed_before`), or whose record is gone, is deleted with its every index entry. Returns how many.
TRIM = lua(
    INDEXES
    + """
local removed = 0
local done_key = KEYS[1 + STATUS_OFFSET['$DONE']]
local failed_key = KEYS[1 + STATUS_OFFSET['$FAILED']]
for i = 3, #ARGV do
  local id, base = ARGV[i], 9 + (i - 3) * 7
  local state = redis.call('HMGET', KEYS[base], 'status', 'updated_at')
  local at = tonumber(state[2] or '')
  local old = at and ((state[1] == '$DONE' and at <= tonumber(ARGV[1]))
    or (state[1] == '$FAILED' and at <= tonumber(ARGV[2])))
  if old or not state[1] then
    for k = base + 1, base + 6 do redis.call('ZREM', KEYS[k], id) end
    redis.call('ZREM', done_key, id)
    redis.call('ZREM', failed_key, id)
    redis.call('ZREM', KEYS[8], id)
    redis.call('DEL', KEYS[base])
    removed = removed + 1
  end
end
return removed
"""
)

# KEYS: an index, an event; ARGV: the event's id -> {id} when its record is gone (the id is dropped from
# the index), else {}. What a query does with an id it found in an index and not in the records.
DROP_STALE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {} end
redis.call('ZREM', KEYS[1], ARGV[1])
return {ARGV[1]}
"""

# KEYS: events; ARGV: field names -> each event's values of those fields (nil for none), in KEYS' order.
# What a query reads of a batch of records: one command instead of one HMGET each, whose per-command cost
# in the client was most of a long listing's time (a few ms of Redis for a thousand records).
READ_FIELDS = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HMGET', KEYS[i], unpack(ARGV)) end
return out
"""

# KEYS: the status block, then for each id 7 keys: its event, its type, vehicle, user and webhook indexes,
#       its last error's 2 indexes; ARGV: '1' to write ('0': count only), then for each id 6 values: the
#       id, its status and updated_at as the caller read them, its status time, its last failure's time
#       ('' when its last error is none of Smartcar's), and '1' when that error has a code
# `events reindex` (eventstore.reindex): each event is put in the indexes its record says it belongs in,
# as the transitions would have, for records stored before the indexes existed. An entry already there
# is left as it is (ZADD NX), an entry in another status's index is taken out. An event whose status or
# updated_at is no longer what was read has moved on meanwhile (its transition kept the indexes): it is
# left, and returned for the caller to read again. Returns {events changed, entries added, entries
# removed, then the ids that moved on}.
REINDEX = lua(
    INDEXES
    + """
local write = ARGV[1] == '1'
local events, added, removed, moved = 0, 0, 0, {}
local function put(key, score, id)
  if write then return redis.call('ZADD', key, 'NX', score, id) end
  if redis.call('ZSCORE', key, id) then return 0 end
  return 1
end
local function take(key, id)
  if write then return redis.call('ZREM', key, id) end
  if redis.call('ZSCORE', key, id) then return 1 end
  return 0
end
for i = 2, #ARGV, 6 do
  local id, base = ARGV[i], 8 + (i - 2) / 6 * 7
  local f = redis.call('HMGET', KEYS[base], 'status', 'updated_at', 'received_at', 'type', 'vehicle_id',
    'user_id', 'webhook_id')
  local own = f[1] and STATUS_OFFSET[f[1]]
  if not f[1] then
    -- the record is gone (trimmed or expired): nothing to index
  elseif f[1] ~= ARGV[i + 1] or (f[2] or '') ~= ARGV[i + 2] or not own then
    moved[#moved + 1] = id
  else
    local changes, gone = put(KEYS[1 + own], ARGV[i + 3], id), 0
    for _, offset in pairs(STATUS_OFFSET) do
      if offset ~= own then gone = gone + take(KEYS[1 + offset], id) end
    end
    if f[1] ~= '$RECEIVED' then
      for k = 4, 7 do
        if f[k] and f[k] ~= '' then changes = changes + put(KEYS[base + k - 3], f[3], id) end
      end
    end
    if f[1] ~= '$DONE' and ARGV[i + 4] ~= '' then
      changes = changes + put(KEYS[base + 5], ARGV[i + 4], id)
      if ARGV[i + 5] == '1' then changes = changes + put(KEYS[base + 6], ARGV[i + 4], id) end
    end
    added, removed = added + changes, removed + gone
    if changes + gone > 0 then events = events + 1 end
  end
end
return {events, added, removed, unpack(moved)}
"""
)

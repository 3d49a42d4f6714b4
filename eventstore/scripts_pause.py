"""The Lua of operator pauses (`eventstore.pauses`): the shared drain rate after a global resume, and the
release of paused vehicles' parked events. The park itself is in `scripts.CLAIM` (the claim is where an
event of a paused vehicle is recognised, in the step that would have queued it).

Kept apart from `eventstore.scripts` as `scripts_held` is: one concern; the same rules (every key in KEYS).
"""

from __future__ import annotations

# KEYS: pause, inbox; ARGV: now, want -> how many ids a relay may claim now: `want` when nothing is
# paused or drained (-1 is answered then, "no limit"), 0 while paused, else what the drain's bucket holds
# (a rate shared by every relay: refilled at `rate` a second, at most a tenth of a second's worth kept so
# that a resume is not a burst). A drain ends by itself once the inbox is empty: the key is deleted.
DRAIN_TAKE = """
local state = redis.call('HMGET', KEYS[1], 'state', 'rate', 'tokens', 'at')
if state[1] == 'paused' then return 0 end
if state[1] ~= 'draining' then return -1 end
if redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  return -1
end
local now, rate = tonumber(ARGV[1]), tonumber(state[2]) or 1
local at = tonumber(state[4]) or now
local tokens = math.min(math.max(1, rate / 10), (tonumber(state[3]) or 0) + math.max(0, now - at) * rate)
local take = math.min(tonumber(ARGV[2]), math.floor(tokens))
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - take), 'at', ARGV[1])
return take
"""

# KEYS: paused-vehicles, scheduled, pending, then the parked list of each vehicle; ARGV: now, interval,
# then the vehicle ids. Each vehicle is no longer paused, and its parked ids (oldest first, across the
# vehicles in turn) are made due one `interval` apart from `now` (0: all now), in `scheduled` (the relay
# publishes what is due) and as their `pending` score (only ids still pending: one that finished since is
# left alone). Returns how many were released.
RESUME_VEHICLES = """
local released, seen = 0, {}
for i = 4, #KEYS do
  redis.call('HDEL', KEYS[1], ARGV[i - 1])
  local ids = redis.call('LRANGE', KEYS[i], 0, -1)
  for k = #ids, 1, -1 do
    local id = ids[k]
    if not seen[id] and redis.call('ZSCORE', KEYS[3], id) then
      local due = tonumber(ARGV[1]) + released * tonumber(ARGV[2])
      redis.call('ZADD', KEYS[2], due, id)
      redis.call('ZADD', KEYS[3], due, id)
      released = released + 1
    end
    seen[id] = true
  end
  redis.call('DEL', KEYS[i])
end
return released
"""

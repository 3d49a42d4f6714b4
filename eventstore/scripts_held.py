"""The Lua of re-consent holds (`eventstore.held`): the release of a vehicle's waiting events, shared by
its own script and by `scripts_grants.PUT_GRANT` (a new pair for a vehicle releases its events in the same
atomic step), and the mark of a vehicle whose access was lost.

Kept apart from `eventstore.scripts` as `scripts_index` is: one concern, several scripts composing it.
"""

from __future__ import annotations

# release_held(held, scheduled, pending, now): each id of the vehicle's held set that is parked is made due
# now (in `scheduled`, and its `pending` score, so the sweeper sees it as due too) and leaves the set; an
# id that is no longer pending (done, failed, gone) leaves the set; an id still pending but not parked (a
# run between its SADD and its park, see `HeldEvents.hold`) stays, for that run's own check to release.
# Returns how many were made due.
RELEASE_FUNCTION = """
local function release_held(held, scheduled, pending, now)
  local released = 0
  for _, id in ipairs(redis.call('SMEMBERS', held)) do
    if redis.call('ZSCORE', scheduled, id) then
      redis.call('ZADD', scheduled, now, id)
      redis.call('ZADD', pending, 'XX', now, id)
      redis.call('SREM', held, id)
      released = released + 1
    elseif not redis.call('ZSCORE', pending, id) then
      redis.call('SREM', held, id)
    end
  end
  return released
end
"""

# KEYS: scheduled, pending, held-vehicles, then the held set of each vehicle; ARGV: now, then the vehicle ids
# The vehicles are no longer held (a new pair, or they were forgotten) and their events are due now.
RELEASE = (
    RELEASE_FUNCTION
    + """
local released = 0
for i = 4, #KEYS do
  redis.call('ZREM', KEYS[3], ARGV[i - 2])
  released = released + release_held(KEYS[i], KEYS[1], KEYS[2], ARGV[1])
end
return released
"""
)

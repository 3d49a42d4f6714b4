"""The Lua of the OAuth grants (`eventstore.grants`): moving vehicles between grants, the refresh's compare
and set, and forgetting a vehicle's tokens. Apart from `eventstore.scripts` (which grew past a module's
size) when a put began to release the vehicles' events held for re-consent (`eventstore.scripts_held`).
"""

from __future__ import annotations

from eventstore.scripts_held import RELEASE_FUNCTION as _RELEASE_HELD

# --- OAuth grants ---------------------------------------------------------------------------------------

# KEYS: grant, expiry, then the grant-of mapping of each of the n vehicles, then for each vehicle the key of
#       the grant its mapping held when read (the new grant's own key when it held none), then scheduled,
#       pending, held-vehicles and each vehicle's held set;
# ARGV: grant_id, data, expires_at, refresh_expires_at, vehicles (comma-separated), user_id, now, then for
#       each vehicle its id and the grant its mapping held when read ('' for none).
# A new pair is a new consent: the vehicles are no longer held, and their events waiting for re-consent
# are due now, in the same step (`eventstore.held`), so no event is left waiting behind a good pair.
# A vehicle that moves to this grant leaves the grant that covered it; a grant left with no vehicle is
# deleted (nothing would use it, and the refresher would keep refreshing it). The mappings are read before
# the call (their old grants' keys must be in KEYS): if one changed since, nothing is written and the answer
# is 0 (`GRANT_MOVED`), for the caller to read them again. Otherwise the answer is the new generation.
GRANT_MOVED = 0
PUT_GRANT = (
    _RELEASE_HELD
    + """
local n = (#ARGV - 7) / 2
for i = 1, n do
  if (redis.call('GET', KEYS[2 + i]) or '') ~= ARGV[7 + 2 * i] then return 0 end
end
local gen = redis.call('HINCRBY', KEYS[1], 'generation', 1)
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'expires_at', ARGV[3], 'refresh_expires_at', ARGV[4],
  'vehicles', ARGV[5], 'user_id', ARGV[6], 'updated_at', ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
for i = 1, n do
  local vehicle, old = ARGV[6 + 2 * i], ARGV[7 + 2 * i]
  if old ~= '' and old ~= ARGV[1] then
    local old_key = KEYS[2 + n + i]
    local kept = {}
    for other in string.gmatch(redis.call('HGET', old_key, 'vehicles') or '', '[^,]+') do
      if other ~= vehicle then kept[#kept + 1] = other end
    end
    if #kept == 0 then
      redis.call('DEL', old_key)
      redis.call('ZREM', KEYS[2], old)
    else
      redis.call('HSET', old_key, 'vehicles', table.concat(kept, ','))
    end
  end
  redis.call('SET', KEYS[2 + i], ARGV[1])
end
local held = 2 + 2 * n
for i = 1, n do
  redis.call('ZREM', KEYS[held + 3], ARGV[6 + 2 * i])
  release_held(KEYS[held + 3 + i], KEYS[held + 1], KEYS[held + 2], ARGV[7])
end
return gen
"""
)

# KEYS: grant, expiry; ARGV: grant_id, expected_generation, data, expires_at, refresh_expires_at, now
# Compare and set: stored only if the grant's generation is still the one the refresher read (else 0),
# so a stale writer can never overwrite a newer pair.
SWAP_GRANT = """
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[2] then return 0 end
local gen = redis.call('HINCRBY', KEYS[1], 'generation', 1)
redis.call('HSET', KEYS[1], 'data', ARGV[3], 'expires_at', ARGV[4], 'refresh_expires_at', ARGV[5],
  'updated_at', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return gen
"""

# KEYS: the vehicle's grant-of mapping, the grant it held when read, expiry; ARGV: vehicle_id, that grant id
# Forget the vehicle's tokens (a disconnect, or a connection Smartcar no longer lists): its mapping goes,
# it leaves its grant's vehicle list, and a grant left with no vehicle is deleted (as PUT_GRANT does). 0
# (`GRANT_MOVED`) when the mapping changed since it was read (a reconnect meanwhile: read it again);
# 1 otherwise, also when there was nothing to forget.
FORGET_GRANT_VEHICLE = """
local current = redis.call('GET', KEYS[1])
if not current then return 1 end
if current ~= ARGV[2] then return 0 end
local kept = {}
for other in string.gmatch(redis.call('HGET', KEYS[2], 'vehicles') or '', '[^,]+') do
  if other ~= ARGV[1] then kept[#kept + 1] = other end
end
if #kept == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
else
  redis.call('HSET', KEYS[2], 'vehicles', table.concat(kept, ','))
end
redis.call('DEL', KEYS[1])
return 1
"""

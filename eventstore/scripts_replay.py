"""The Lua of the replay jobs (`eventstore.replays`): create, own (a lease), renew, release, step, cancel.

Kept apart from `eventstore.scripts` as `scripts_index` is; the same rules hold (statuses as `$NAME`, every
key in KEYS). A job's own statuses (`planned`, `running`, `done`, `cancelled`) are passed in ARGV where a
script compares them, as the command state is, so that only `eventstore.replays` spells them.

Why a step is one script per id: it checks that the caller still owns the job and that the cursor is at
this id, replays the event (`scripts.REPLAY_FUNCTION`) and moves the cursor, atomically. A worker killed
anywhere leaves either the replay and the new cursor, or neither: the job's next owner goes on from the
cursor, and no id is replayed twice by one job. A batch is a pipeline of steps (one round trip).
"""

from __future__ import annotations

from eventstore.scripts import REPLAY_FUNCTION, REPLAY_KEY_COUNT
from eventstore.status import lua

STEP_FIXED_KEYS = 4
"""job, ids, replays, replaying; then the event's REPLAY keys, then its command records (resend)."""

# KEYS: job, ids, replays, replaying; ARGV: job_id, now, planned, done, field count n, n pairs, then ids
# -> {created (0: the job exists already), ids taken, ids left out because another job has them}.
# An id already in an unfinished job is left out (one job per event); a job with no id is done at once.
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, 0, 0} end
local pairs_end = 5 + 2 * tonumber(ARGV[5])
for i = 6, pairs_end, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local added, taken = 0, 0
for i = pairs_end + 1, #ARGV do
  if redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[1]) == 1 then
    redis.call('RPUSH', KEYS[2], ARGV[i])
    added = added + 1
  else
    taken = taken + 1
  end
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'created_at', ARGV[2], 'total', added, 'cursor', 0,
  'in_other_replay', taken, 'status', ARGV[3])
if added == 0 then
  redis.call('HSET', KEYS[1], 'status', ARGV[4], 'finished_at', ARGV[2])
else
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
end
return {1, added, taken}
"""

# KEYS: replays, job; ARGV: job_id, now, lease_until, owner, planned, running -> 1 when taken
# A job is taken when it is due (never taken, released, or its owner's lease ended): `owner` holds it
# until `lease_until`, and every step of another owner is refused from now on.
OWN = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then return 0 end
local status = redis.call('HGET', KEYS[2], 'status')
if status ~= ARGV[5] and status ~= ARGV[6] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], 'status', ARGV[6], 'owner', ARGV[4], 'lease_until', ARGV[3])
redis.call('HSETNX', KEYS[2], 'started_at', ARGV[2])
redis.call('HINCRBY', KEYS[2], 'takes', 1)
return 1
"""

# KEYS: replays, job; ARGV: job_id, owner, until, running, keep -> 1 when still owned
# keep '1': the lease moves to `until`; keep '0': the job is released, due at `until` for any worker.
RENEW = """
local state = redis.call('HMGET', KEYS[2], 'status', 'owner')
if state[1] ~= ARGV[4] or state[2] ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[2], 'lease_until', ARGV[3])
else
  redis.call('HDEL', KEYS[2], 'owner', 'lease_until')
end
return 1
"""

# KEYS: job, ids, replays, replaying, the event's 16 REPLAY keys, its command records (to be sent again);
# ARGV: owner, position, now, entry, event id, job_id, retention, running, done, not_sent
# -> 'lost' (not the owner), 'moved' (the cursor is not at this id), else the id's outcome: 'replayed',
# 'done_since', 'in_progress' (a run, a retry or another replay will run it) or 'gone'.
STEP = lua(
    REPLAY_FUNCTION
    + """
local job = redis.call('HMGET', KEYS[1], 'status', 'owner', 'cursor', 'total', 'statuses')
if job[1] ~= ARGV[8] or job[2] ~= ARGV[1] then return 'lost' end
if tonumber(job[3]) ~= tonumber(ARGV[2]) or redis.call('LINDEX', KEYS[2], ARGV[2]) ~= ARGV[5] then
  return 'moved'
end
local id, now, after = ARGV[5], ARGV[3], tonumber(ARGV[2]) + 1
redis.call('HSET', KEYS[1], 'cursor', after)
if redis.call('HGET', KEYS[4], id) == ARGV[6] then redis.call('HDEL', KEYS[4], id) end
local status = redis.call('HGET', KEYS[5], 'status')
local outcome
if not status then
  outcome = 'gone'
elseif string.find(' ' .. (job[5] or '') .. ' ', ' ' .. status .. ' ', 1, true) then
  for k = 21, #KEYS do
    if redis.call('EXISTS', KEYS[k]) == 1 then
      redis.call('HSET', KEYS[k], 'state', ARGV[10], 'resend_job', ARGV[6], 'resend_at', now)
    end
  end
  replay_event(5, id, now, ARGV[4])
  outcome = 'replayed'
elseif status == '$DONE' then
  outcome = 'done_since'
else
  outcome = 'in_progress'
end
redis.call('HINCRBY', KEYS[1], outcome, 1)
if after >= tonumber(job[4]) then
  redis.call('HSET', KEYS[1], 'status', ARGV[9], 'finished_at', now)
  redis.call('HDEL', KEYS[1], 'owner', 'lease_until')
  redis.call('ZREM', KEYS[3], ARGV[6])
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  redis.call('EXPIRE', KEYS[2], ARGV[7])
end
return outcome
"""
)
STEP_KEY_COUNT = STEP_FIXED_KEYS + REPLAY_KEY_COUNT

# KEYS: job, ids, replays, replaying; ARGV: job_id, now, retention, planned, running, cancelled
# -> the job's status after the call ('' when there is no such job). The ids not yet gone through leave
# `replaying` (another job may take them); a job already done or cancelled is left as it is.
CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return '' end
if status ~= ARGV[4] and status ~= ARGV[5] then return status end
local rest = redis.call('LRANGE', KEYS[2], tonumber(redis.call('HGET', KEYS[1], 'cursor') or '0'), -1)
for _, id in ipairs(rest) do
  if redis.call('HGET', KEYS[4], id) == ARGV[1] then redis.call('HDEL', KEYS[4], id) end
end
redis.call('HSET', KEYS[1], 'status', ARGV[6], 'cancelled_at', ARGV[2])
redis.call('HDEL', KEYS[1], 'owner', 'lease_until')
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return ARGV[6]
"""

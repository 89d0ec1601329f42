-- Reserve ARGV[2] nano-dollars in every budget bucket, or in none.
-- KEYS: per bucket, its hash (spent, reserved) then its reservation set (member
--       "id|amount", score = expiry ms).
-- ARGV: now_ms, amount, reservation id, reservation expiry ms, then per bucket:
--       limit (-1 = never blocks), seed (spent to start a missing bucket from;
--       negative: answer {-1, i...} for the missing buckets instead),
--       ttl ms of a new bucket (0 = never expires).
-- Returns {0} when reserved, {i, spent, reserved} for the first bucket it would
-- overrun, or {-1, i...} for missing buckets asked about (nothing reserved anywhere).
local now = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
local id = ARGV[3]
local expiry = tonumber(ARGV[4])
local n = #KEYS / 2
-- A missing bucket with a negative seed: the caller re-seeds it from the store's
-- recorded spend and asks again. Answer {-1, i...} before touching anything.
local missing = {-1}
for i = 1, n do
  local seed = tonumber(ARGV[4 + 3 * (i - 1) + 2])
  if seed < 0 and redis.call('EXISTS', KEYS[2 * i - 1]) == 0 then
    table.insert(missing, i)
  end
end
if #missing > 1 then return missing end
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local base = 4 + 3 * (i - 1)
  if redis.call('EXISTS', h) == 0 then
    redis.call('HSET', h, 'spent', ARGV[base + 2], 'reserved', 0)
    local ttl = tonumber(ARGV[base + 3])
    if ttl > 0 then redis.call('PEXPIRE', h, ttl) end
  end
  -- Reservations of calls that never settled (a crashed replica) lapse.
  local stale = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  if #stale > 0 then
    local sum = 0
    for _, m in ipairs(stale) do
      sum = sum + tonumber(string.match(m, '|(%d+)$'))
    end
    redis.call('HINCRBY', h, 'reserved', -sum)
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
  end
end
for i = 1, n do
  local h = KEYS[2 * i - 1]
  local limit = tonumber(ARGV[4 + 3 * (i - 1) + 1])
  if limit >= 0 then
    local spent = tonumber(redis.call('HGET', h, 'spent') or '0')
    local reserved = tonumber(redis.call('HGET', h, 'reserved') or '0')
    if spent + reserved + amount > limit then
      return {i, spent, reserved}
    end
  end
end
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('HINCRBY', h, 'reserved', amount)
  redis.call('ZADD', z, expiry, id .. '|' .. amount)
  redis.call('PEXPIRE', z, math.max(expiry - now, 1) + 60000)
end
return {0}

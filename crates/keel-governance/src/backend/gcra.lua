-- GCRA over several buckets at once: every bucket admits the call, or none is charged.
-- Same arithmetic as gcra.rs (times in microseconds, period 60 s).
-- KEYS: one TAT key per bucket.
-- ARGV: now_us, then per bucket: per_minute, cost.
-- Returns {0, remaining_1, reset_us_1, ...} when admitted, or {i, kind, wait_us} for the
-- first bucket that refuses (kind 1: wait, 2: the cost exceeds the limit).
local period = 60000000
local now = tonumber(ARGV[1])
local n = #KEYS
local tats = {}
for i = 1, n do
  local limit = tonumber(ARGV[2 * i])
  local cost = tonumber(ARGV[2 * i + 1])
  local t = math.max(math.floor(period / limit), 1)
  if cost > limit then return {i, 2, 0} end
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  local new_tat = math.max(tat, now) + cost * t
  if new_tat - now > period then
    return {i, 1, new_tat - now - period}
  end
  tats[i] = new_tat
end
local out = {0}
for i = 1, n do
  local limit = tonumber(ARGV[2 * i])
  local t = math.max(math.floor(period / limit), 1)
  local ahead = tats[i] - now
  redis.call('SET', KEYS[i], string.format('%d', tats[i]), 'PX', math.floor(ahead / 1000) + 1000)
  out[#out + 1] = math.min(math.floor((period - ahead) / t), limit)
  out[#out + 1] = ahead
end
return out

-- Settle one call in a single round trip: correct its token rate limits by the tokens
-- it really used, release its budget reservation (unless it already lapsed) and add
-- what it really cost.
-- KEYS: per token rate bucket its TAT key; then per budget bucket its hash and its
--       reservation set (as in admit.lua).
-- ARGV: now_us, number of rate buckets, token delta (negative gives tokens back), then
--       per rate bucket its per_minute; then reservation id, reserved amount, actual cost
--       (absent with no budget buckets).
-- Returns every budget bucket's spend after the call (0 for a bucket Redis no longer
-- holds: left for the next admission to re-seed). A TAT never moves before now.
local period = 60000000
local now_us = tonumber(ARGV[1])
local nr = tonumber(ARGV[2])
local delta = tonumber(ARGV[3])
for i = 1, nr do
  local t = math.max(math.floor(period / tonumber(ARGV[3 + i])), 1)
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  local new_tat = math.max(math.max(tat, now_us) + delta * t, now_us)
  redis.call('SET', KEYS[i], string.format('%d', new_tat), 'PX', math.floor((new_tat - now_us) / 1000) + 1000)
end
local base = 3 + nr
local out = {}
local nb = (#KEYS - nr) / 2
if nb > 0 then
  local member = ARGV[base + 1] .. '|' .. ARGV[base + 2]
  local reserved = tonumber(ARGV[base + 2])
  local actual = tonumber(ARGV[base + 3])
  for j = 1, nb do
    local h, z = KEYS[nr + 2 * j - 1], KEYS[nr + 2 * j]
    if redis.call('EXISTS', h) == 1 then
      if redis.call('ZREM', z, member) == 1 then
        redis.call('HINCRBY', h, 'reserved', -reserved)
      end
      out[j] = redis.call('HINCRBY', h, 'spent', actual)
    else
      -- Lost since admission (or admitted fail-open while Redis was away): creating it
      -- here would start it from this call alone, with no expiry; the next admission
      -- re-seeds it from the store's recorded spend instead.
      out[j] = 0
    end
  end
end
return out

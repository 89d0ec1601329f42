-- Admit one call in a single round trip: its rate limits (GCRA) and its budget
-- reservation together, all or nothing. A call refused anywhere charges nothing.
-- KEYS: per rate bucket its TAT key; then per budget bucket its hash (spent, reserved)
--       and its reservation set (member "id|amount", score = expiry ms).
-- ARGV: now_us, number of rate buckets, then per rate bucket: per_minute, cost;
--       then now_ms, amount, reservation id, reservation expiry ms, then per budget
--       bucket: limit (-1 = never blocks), seed (spent to start a missing bucket from;
--       negative: answer {3, i...} for the missing buckets instead), ttl ms of a new
--       bucket (0 = never expires). With no budget buckets the last part is absent.
-- Returns {0, remaining_1, reset_us_1, ...} (admitted: rates charged, budgets reserved),
-- {1, i, kind, wait_us} (rate bucket i refuses; kind 1: wait, 2: the cost exceeds the
-- limit), {2, i, spent, reserved} (budget bucket i would overrun), or {3, i...} (budget
-- buckets missing: ask again with their seeds; nothing touched). Rates are checked first.
-- Same arithmetic as gcra.rs and local.rs (rate times in microseconds, period 60 s).
local period = 60000000
local now_us = tonumber(ARGV[1])
local nr = tonumber(ARGV[2])
local base = 2 + 2 * nr
local nb = (#KEYS - nr) / 2
local function hash(j) return KEYS[nr + 2 * j - 1] end
local function set(j) return KEYS[nr + 2 * j] end
local function barg(j, k) return ARGV[base + 4 + 3 * (j - 1) + k] end

-- Rate limits: compute every new TAT, charge none yet.
local tats = {}
for i = 1, nr do
  local limit = tonumber(ARGV[1 + 2 * i])
  local cost = tonumber(ARGV[2 + 2 * i])
  local t = math.max(math.floor(period / limit), 1)
  if cost > limit then return {1, i, 2, 0} end
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  local new_tat = math.max(tat, now_us) + cost * t
  if new_tat - now_us > period then
    return {1, i, 1, new_tat - now_us - period}
  end
  tats[i] = new_tat
end

-- Whether each budget bucket exists, looked up once. A lost bucket the caller can
-- re-seed from its store: ask before touching any (after the rate limits, which only
-- read: a call they refuse costs no store query).
local exists = {}
if nb > 0 then
  local missing = {3}
  for j = 1, nb do
    exists[j] = redis.call('EXISTS', hash(j)) == 1
    if not exists[j] and tonumber(barg(j, 2)) < 0 then
      table.insert(missing, j)
    end
  end
  if #missing > 1 then return missing end
end

-- Budgets: start new buckets, lapse reservations nobody settled (a crashed replica),
-- then check every limit.
local amount, id, expiry, now_ms = 0, '', 0, 0
if nb > 0 then
  now_ms = tonumber(ARGV[base + 1])
  amount = tonumber(ARGV[base + 2])
  id = ARGV[base + 3]
  expiry = tonumber(ARGV[base + 4])
  for j = 1, nb do
    local h, z = hash(j), set(j)
    if not exists[j] then
      redis.call('HSET', h, 'spent', barg(j, 2), 'reserved', 0)
      local ttl = tonumber(barg(j, 3))
      if ttl > 0 then redis.call('PEXPIRE', h, ttl) end
    end
    local stale = redis.call('ZRANGEBYSCORE', z, '-inf', now_ms)
    if #stale > 0 then
      local sum = 0
      for _, m in ipairs(stale) do
        sum = sum + tonumber(string.match(m, '|(%d+)$'))
      end
      redis.call('HINCRBY', h, 'reserved', -sum)
      redis.call('ZREMRANGEBYSCORE', z, '-inf', now_ms)
    end
  end
  for j = 1, nb do
    local limit = tonumber(barg(j, 1))
    if limit >= 0 then
      local both = redis.call('HMGET', hash(j), 'spent', 'reserved')
      local spent = tonumber(both[1] or '0')
      local reserved = tonumber(both[2] or '0')
      if spent + reserved + amount > limit then
        return {2, j, spent, reserved}
      end
    end
  end
end

-- Admitted: charge the rates, reserve in every budget.
local out = {0}
for i = 1, nr do
  local limit = tonumber(ARGV[1 + 2 * i])
  local t = math.max(math.floor(period / limit), 1)
  local ahead = tats[i] - now_us
  redis.call('SET', KEYS[i], string.format('%d', tats[i]), 'PX', math.floor(ahead / 1000) + 1000)
  out[#out + 1] = math.min(math.floor((period - ahead) / t), limit)
  out[#out + 1] = ahead
end
for j = 1, nb do
  local h, z = hash(j), set(j)
  redis.call('HINCRBY', h, 'reserved', amount)
  redis.call('ZADD', z, expiry, id .. '|' .. amount)
  redis.call('PEXPIRE', z, math.max(expiry - now_ms, 1) + 60000)
end
return out

-- Correct a bucket's TAT by ARGV[2] units once a call's real token count is known
-- (negative gives tokens back), never to before now.
-- KEYS: the TAT key. ARGV: now_us, delta units, per_minute.
local period = 60000000
local now = tonumber(ARGV[1])
local t = math.max(math.floor(period / tonumber(ARGV[3])), 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local new_tat = math.max(math.max(tat, now) + tonumber(ARGV[2]) * t, now)
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1000)
return new_tat

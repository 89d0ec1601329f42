-- Settle a reservation: release what was reserved (unless it already lapsed) and add
-- what the call really cost.
-- KEYS: per bucket, its hash then its reservation set (as in reserve.lua).
-- ARGV: reservation id, reserved amount, actual cost.
-- Returns every bucket's spend after the call.
local member = ARGV[1] .. '|' .. ARGV[2]
local out = {}
for i = 1, #KEYS / 2 do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('ZREM', z, member) == 1 then
    redis.call('HINCRBY', h, 'reserved', -tonumber(ARGV[2]))
  end
  out[i] = redis.call('HINCRBY', h, 'spent', tonumber(ARGV[3]))
end
return out

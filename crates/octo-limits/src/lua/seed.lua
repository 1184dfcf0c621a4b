-- Raises a budget's `spent` to at least ARGV[1] (what storage or an instance knows was spent in
-- the period), never lowering what Redis counted; KEYS[1]: the budget's key, ARGV[2]: its expiry
-- (Unix ms).
local cur = tonumber(redis.call('HGET', KEYS[1], 'spent')) or 0
if tonumber(ARGV[1]) > cur then
  redis.call('HSET', KEYS[1], 'spent', ARGV[1])
end
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1

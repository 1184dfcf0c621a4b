-- Extends the concurrency leases of requests still in flight (see src/redis.rs).
-- KEYS[i], ARGV[i + 1]: a concurrency key and a member; ARGV[1]: the lease in ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local lease = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], lease * 2)
end
return 1

-- Settles one admitted request once its real usage is known (see src/redis.rs).
-- KEYS[i]: the i-th check's key. ARGV[1]: the request's member id, then 4 values per check:
-- kind (t = tpm, c = concurrency, b = budget), limit, estimated, actual (tokens for tpm, USD for
-- a budget).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local member = ARGV[1]
local n = (#ARGV - 1) / 4
for i = 1, n do
  local b = 1 + (i - 1) * 4
  local kind = ARGV[b + 1]
  local key = KEYS[i]
  if kind == 't' then
    local interval = 60000 / tonumber(ARGV[b + 2])
    local delta = tonumber(ARGV[b + 4]) - tonumber(ARGV[b + 3])
    local tat = tonumber(redis.call('GET', key)) or now
    if tat < now then tat = now end
    local nt = tat + delta * interval
    if nt <= now then
      redis.call('DEL', key)
    else
      redis.call('SET', key, tostring(nt), 'PX', math.max(1, math.ceil(nt - now)))
    end
  elseif kind == 'c' then
    redis.call('ZREM', key, member)
  else
    if redis.call('EXISTS', key) == 1 then
      local left = tonumber(redis.call('HINCRBYFLOAT', key, 'reserved', '-' .. ARGV[b + 3]))
      if left < 0 then redis.call('HSET', key, 'reserved', '0') end
    end
    redis.call('HINCRBYFLOAT', key, 'spent', ARGV[b + 4])
    if redis.call('PTTL', key) < 0 then
      redis.call('PEXPIRE', key, 32 * 86400000)
    end
  end
end
return 1

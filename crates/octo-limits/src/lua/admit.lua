-- Settles the finished requests carried along, then admits one request against every limit that
-- applies to it, atomically (see src/redis.rs): one round trip per admitted request, with the
-- reconciliation of the requests before it.
-- KEYS: the n admission checks' keys, then the m settlement keys.
-- ARGV[1]: the request's member id (empty when only settling), ARGV[2]: the concurrency lease in
-- ms, ARGV[3]: n; then 4 values per admission check: kind (g = rate, c = concurrency,
-- b = budget), limit, cost (units for a rate, USD for a budget), extra (a budget's period end,
-- Unix ms); then 5 values per settlement: member, kind (t = tpm, c = concurrency, b = budget),
-- limit, estimated, actual (tokens for tpm, USD for a budget).
-- The clock is Redis's own (TIME), so instances with skewed clocks agree.
-- Replies are integers (cheaper to parse than strings), times in microseconds rounded up:
-- {1, out...} when admitted (out per check: a rate's reset-after µs, a concurrency's in-flight
-- count, a budget's used micro-USD), or {0, i, retry, value} when check i refuses: for a rate,
-- retry = µs until this cost fits (-1: never, the cost is above the limit) and value = µs until
-- its TAT; for a concurrency, retry = 0 and value = the in-flight count; for a budget, retry = 1
-- when the finished requests' spend alone reaches the limit (closed until the period turns: no
-- settlement can reopen it), else 0, and value = the used USD as a string. The settlements are
-- applied either way.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local member = ARGV[1]
local lease = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local first = 4 + n * 4
local m = (#ARGV - first + 1) / 5
for j = 1, m do
  local b = first + (j - 1) * 5
  local who = ARGV[b]
  local kind = ARGV[b + 1]
  local key = KEYS[n + j]
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
    redis.call('ZREM', key, who)
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
if n == 0 then
  return {1}
end
local tats = {}
local out = {}
for i = 1, n do
  local b = 3 + (i - 1) * 4
  local kind = ARGV[b + 1]
  local limit = tonumber(ARGV[b + 2])
  local cost = tonumber(ARGV[b + 3])
  local key = KEYS[i]
  if kind == 'g' then
    local interval = 60000 / limit
    local tat = tonumber(redis.call('GET', key)) or now
    if tat < now then tat = now end
    local nt = tat + cost * interval
    if cost > limit then
      return {0, i, -1, math.ceil((tat - now) * 1000)}
    end
    if nt - 60000 > now + 0.001 then
      return {0, i, math.ceil((nt - 60000 - now) * 1000), math.ceil((tat - now) * 1000)}
    end
    tats[i] = nt
    out[i] = math.ceil((nt - now) * 1000)
  elseif kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local c = redis.call('ZCARD', key)
    if c >= limit then
      return {0, i, 0, c}
    end
    out[i] = c + 1
  else
    local v = redis.call('HMGET', key, 'spent', 'reserved')
    local spent = tonumber(v[1]) or 0
    local used = spent + (tonumber(v[2]) or 0)
    if used >= limit then
      local closed = 0
      if spent >= limit then closed = 1 end
      return {0, i, closed, tostring(used)}
    end
    out[i] = math.floor((used + cost) * 1000000)
  end
end
for i = 1, n do
  local b = 3 + (i - 1) * 4
  local kind = ARGV[b + 1]
  local key = KEYS[i]
  if kind == 'g' then
    redis.call('SET', key, tostring(tats[i]), 'PX', math.max(1, math.ceil(tats[i] - now)))
  elseif kind == 'c' then
    redis.call('ZADD', key, now + lease, member)
    redis.call('PEXPIRE', key, lease * 2)
  else
    redis.call('HINCRBYFLOAT', key, 'reserved', ARGV[b + 3])
    redis.call('PEXPIREAT', key, math.floor(tonumber(ARGV[b + 4])) + 86400000)
  end
end
local res = {1}
for i = 1, n do res[#res + 1] = out[i] end
return res

-- GCRA in Redis: the admit-or-refuse half of Gcra::decide (auth-core/src/ratelimit/mod.rs) for a
-- batch of keys, run atomically. The one copy of the script: auth-core's RedisLimiter loads it, and
-- auth-gen emits it into the generated TypeScript module's Redis store.
--
-- KEYS: the keys. ARGV[1]: now in microseconds; then for key i, ARGV[2i] = T and
-- ARGV[2i+1] = burst * T (microseconds). Stores the new TATs (with a TTL ending when the bucket is
-- full again) only if every key admits. Returns {all_admitted, found_1, tat_1, found_2, tat_2, ...}
-- with the TATs as they were before, from which the caller recomputes the decisions. Every value is
-- an integer below 2^53, which Lua's numbers hold exactly; SET writes them with %.0f because Lua's
-- default number format would round them to 14 digits.
local now = tonumber(ARGV[1])
local ok = 1
local out = {}
local new_tats = {}
for i = 1, #KEYS do
  local t = tonumber(ARGV[2 * i])
  local capacity = tonumber(ARGV[2 * i + 1])
  local stored = tonumber(redis.call('GET', KEYS[i]) or '')
  local tat = now
  if stored and stored > now then tat = stored end
  local new_tat = tat + t
  if new_tat - capacity > now then ok = 0 end
  new_tats[i] = new_tat
  if stored then
    out[2 * i - 1] = 1
    out[2 * i] = stored
  else
    out[2 * i - 1] = 0
    out[2 * i] = 0
  end
end
if ok == 1 then
  for i = 1, #KEYS do
    local ttl = math.ceil((new_tats[i] - now) / 1000)
    if ttl < 1 then ttl = 1 end
    redis.call('SET', KEYS[i], string.format('%.0f', new_tats[i]), 'PX', ttl)
  end
end
table.insert(out, 1, ok)
return out

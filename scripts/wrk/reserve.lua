-- wrk script for scripts/flash-sale.sh: POST /api/inventory/reserve, one unit,
-- every request with a fresh random order id (UUID v4 from math.random, seeded
-- per thread from /dev/urandom, so concurrent wrk processes never repeat an
-- order id and every success is a 201, never a 200 idempotent repeat).
--
-- Usage: wrk -t1 -c100 -d10s -s scripts/wrk/reserve.lua http://127.0.0.1:18301 \
--          -- <product_uuid | random:N> [ttl_seconds=3600]
--   <product_uuid>  every request reserves this product (the hot product)
--   random:N        each request picks one of N products uniformly; product i
--                   (1..N) is 00000000-0000-4000-8000-<i as 12 decimal digits>
--
-- At the end it prints one machine-readable line (latencies in ms):
--   FS requests=.. duration_s=.. rps=.. s2xx=.. s201=.. s200=.. s409=.. s503=..
--      other=.. non2xx=.. reserved_rps=.. p50_ms=.. p99_ms=.. mean_ms=..
--      max_ms=.. sock_errors=..

local threads = {}

function setup(thread)
  thread:set("thread_no", #threads + 1)
  table.insert(threads, thread)
end

local function seed()
  local s = os.time()
  local f = io.open("/dev/urandom", "rb")
  if f then
    local bytes = f:read(6)
    f:close()
    s = 0
    for i = 1, #bytes do s = s * 256 + bytes:byte(i) end
  end
  return s + (thread_no or 0)
end

local random = math.random
local product, products, ttl

function init(args)
  local target = args[1] or error("reserve.lua: product uuid or random:N expected after --")
  products = tonumber(target:match("^random:(%d+)$"))
  if not products then product = target end
  ttl = tonumber(args[2] or "3600")
  math.randomseed(seed())
  for _ = 1, 8 do random() end
  wrk.headers["Content-Type"] = "application/json"
  -- Per-thread counters (globals, so done() can read them with thread:get).
  s201, s200, s2xx, s409, s503, other = 0, 0, 0, 0, 0, 0
end

local function uuid4()
  return string.format("%04x%04x-%04x-4%03x-%04x-%04x%04x%04x",
    random(0, 65535), random(0, 65535), random(0, 65535), random(0, 4095),
    random(32768, 49151), random(0, 65535), random(0, 65535), random(0, 65535))
end

function request()
  local p = product or string.format("00000000-0000-4000-8000-%012d", random(1, products))
  local body = string.format('{"product_id":"%s","quantity":1,"order_id":"%s","ttl_seconds":%d}',
    p, uuid4(), ttl)
  return wrk.format("POST", "/api/inventory/reserve", nil, body)
end

function response(status, headers, body)
  if status == 201 then
    s201 = s201 + 1
    s2xx = s2xx + 1
  elseif status == 200 then
    s200 = s200 + 1
    s2xx = s2xx + 1
  elseif status >= 200 and status < 300 then
    s2xx = s2xx + 1
  elseif status == 409 then
    s409 = s409 + 1
  elseif status == 503 then
    s503 = s503 + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local t = { s201 = 0, s200 = 0, s2xx = 0, s409 = 0, s503 = 0, other = 0 }
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + (thread:get(k) or 0) end
  end
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "FS requests=%d duration_s=%.3f rps=%.1f s2xx=%d s201=%d s200=%d s409=%d s503=%d other=%d"
      .. " non2xx=%d reserved_rps=%.1f p50_ms=%.2f p99_ms=%.2f mean_ms=%.2f max_ms=%.2f sock_errors=%d\n",
    summary.requests, secs, summary.requests / secs, t.s2xx, t.s201, t.s200, t.s409, t.s503, t.other,
    summary.requests - t.s2xx, t.s201 / secs,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000,
    latency.max / 1000, e.connect + e.read + e.write + e.timeout))
end

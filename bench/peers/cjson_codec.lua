-- Peer benchmark: lua-cjson decode/encode of the canonical workload messages
-- in their JSON form (data/NAME.json; blob has none and is skipped).
--
--   lua5.4 bench/peers/cjson_codec.lua [DATA_DIR [WORKLOAD...]]
--   luajit bench/peers/cjson_codec.lua [DATA_DIR [WORKLOAD...]]
--
-- env PEER_TARGET_SEC: seconds per timed run (default 0.4); PEER_ROUNDS
-- timed runs, the best printed (default 3; bench/codec.lua runs 1 per round,
-- interleaved with the other peers).
-- Output, one line per operation (<bytes> = size of the NAME.json input):
--   cjson-5.4 <workload> decode <ns_per_op> <bytes>     (Lua 5.4)
--   cjson-jit <workload> encode <ns_per_op> <bytes>     (LuaJIT)
-- decode: cjson.decode(text); encode: cjson.encode(decoded table).
-- Times are CPU time (os.clock): Lua has no monotonic wall clock, and the
-- process is single-threaded. The GC stays on; collectgarbage() runs before
-- each timed run. Note cjson maps numbers to doubles (i64 values beyond 2^53
-- lose precision) and encodes with 14 significant digits by default, so the
-- encoded text is not the input text; nothing is compared.
local cjson = require "cjson"

local prefix = jit and "cjson-jit" or "cjson-" .. _VERSION:match("%d+%.%d+")
local clock = os.clock
local target = tonumber(os.getenv("PEER_TARGET_SEC") or "") or 0.4
local rounds = math.max(1, tonumber(os.getenv("PEER_ROUNDS") or "") or 3)

local data = arg[1] or ((arg[0]:match("^(.*)/bench/peers/[^/]*$") or ".") .. "/bench/data")
local names = {}
for i = 2, #arg do names[#names + 1] = arg[i] end
if #names == 0 then names = { "small", "medium", "large", "mytest", "blob", "vectors" } end

local function bench_ns(fn)
  local n, el = 1, 0
  while true do
    local t0 = clock()
    fn(n)
    el = clock() - t0
    if el >= target / 8 then break end
    n = n * ((el < target / 80) and 10 or 2)
  end
  local iters = math.max(1, math.floor(n * target / el))
  local best = math.huge
  for _ = 1, rounds do
    collectgarbage()
    local t0 = clock()
    fn(iters)
    local ns = (clock() - t0) * 1e9 / iters
    if ns < best then best = ns end
  end
  return best
end

local decode, encode = cjson.decode, cjson.encode
for _, name in ipairs(names) do
  local f = io.open(data .. "/" .. name .. ".json", "rb")
  if f then
    local text = f:read("a")
    f:close()
    local value = decode(text)
    local sink
    local dec = bench_ns(function(n) for _ = 1, n do sink = decode(text) end end)
    io.write(string.format("%s %s decode %.1f %d\n", prefix, name, dec, #text))
    io.stdout:flush()
    local enc = bench_ns(function(n) for _ = 1, n do sink = encode(value) end end)
    io.write(string.format("%s %s encode %.1f %d\n", prefix, name, enc, #text))
    io.stdout:flush()
    sink = nil
  end
end

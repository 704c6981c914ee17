-- examples/demo.lua — the main demo (make demo runs it on Lua 5.4 and on
-- LuaJIT): the Thrift codec on a canonical message of bench/workload.thrift
-- (its schema written as Lua tables in bench/workload.lua), then an Echo
-- server, a client calling every method, the replies pretty-printed, and a
-- short throughput / latency summary. Server and client share one event
-- loop in this process; the client's calls simply run the loop until their
-- reply arrives, as they would in a script or the REPL.
-- Run from the repository root.
local petrel = require "petrel"
local W = require "bench.workload"

local DATA = os.getenv("PETREL_DATA") or "bench/data"
local function slurp(name)
  local f = assert(io.open(DATA .. "/" .. name .. ".bin", "rb"))
  local s = f:read("*a")
  f:close()
  return s
end
local function say(fmt, ...) print(string.format(fmt, ...)) end
local function section(title) print("\n== " .. title) end

say("petrel demo on %s (SIMD: %s)", jit and jit.version or _VERSION, petrel.simd())
-- PETREL_BACKEND=uring (or auto) runs the same demo on io_uring
say("event loop back end: %s  %s", petrel.default_loop():backend())

section("codec: bench/data/small.bin, a Request of " .. #slurp("small") .. " bytes")
local bytes = slurp("small")
print(petrel.hex(bytes, { max = 48 }))
local small = W.Request:decode(bytes)
print(petrel.dump(small, { items = 6 }))
say("re-encoded: %d bytes, byte-identical: %s; size(): %d",
  #W.Request:encode(small), tostring(W.Request:encode(small) == bytes), W.Request:size(small))

section("RPC: an Echo server and a client on one loop")
local fired = 0
local server = assert(petrel.server {
  service = W.Echo, port = 0,
  handler = {
    echo = function(req) return req end,
    fire = function(req) fired = fired + 1 end,
    big = function(req) return req end,
    blob = function(req) return req end,
    vectors = function(req) return req end,
  },
})
say("Echo server listening on 127.0.0.1:%d", server.port)

local client = petrel.client { service = W.Echo, port = server.port }

local r = assert(client:echo(small))
say("echo(small Request) -> a Request; its items[1] and base:")
print(petrel.dump({ ["items[1]"] = r.items[1], base = r.base }))
assert(client:fire(small))
say("fire(small Request): oneway, flushed")
local m = assert(client:big(W.MyTest:decode(slurp("mytest"))))
say("big(MyTest): %d i64 values back: %s", #m.Nums, petrel.dump(m.Nums, { items = 3 }))
local b = assert(client:blob(W.Blob:decode(slurp("blob"))))
say("blob(Blob): %q, %d bytes of data back", b.name, #b.data)
local v = assert(client:vectors(W.Vectors:decode(slurp("vectors"), 1, { typed = true })))
say("vectors(Vectors), sent as typed arrays, back as lists: %s", petrel.dump(v, { items = 2 }))
-- a call the server does not know
local Other = petrel.schema { Echo = petrel.service { nope = { result = "i32" } } }
local _, err = petrel.client { service = Other.Echo, port = server.port }:nope()
say("nope(): %s", tostring(err))

section("echo(small Request), ping-pong on one connection")
local N, lat = 3000, {}
local clock = petrel.clock
local t0 = clock()
for i = 1, N do
  local s = clock()
  assert(client:echo(small))
  lat[i] = clock() - s
end
local total = clock() - t0
table.sort(lat)
say("%d echo calls in %.2f s: %.0f calls/s; latency p50 %.0f µs, p99 %.0f µs, p999 %.0f µs",
  N, total, N / total, lat[math.floor(N * 0.5)] * 1e6, lat[math.floor(N * 0.99)] * 1e6,
  lat[math.floor(N * 0.999)] * 1e6)
say("  (client and server share this one process and core; bench/rpc measures them apart)")

local st = server:stats()
say("server stats: %d connections, %d calls, %d errors, %d oneway (fired %d), %d bytes in",
  st.connections, st.calls, st.errors, st.oneway, fired, st.bytes_in)
say("buffer pool: %d blocks in use, %d idle, %d hits, %d misses",
  st.pool.blocks_in_use, st.pool.blocks_idle, st.pool.hits, st.pool.misses)
client:close()

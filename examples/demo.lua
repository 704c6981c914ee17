-- examples/demo.lua — the main demo (make demo). Until the RPC layer lands
-- it shows the linked buffer: framing Thrift-style messages, no-copy
-- writes of large strings, shared slices and the pool statistics.
local petrel = require "petrel"

local function say(fmt, ...) print(string.format(fmt, ...)) end

say("petrel demo on %s", jit and jit.version or _VERSION)

-- 1. Frame three messages the way Thrift's framed transport does.
local out = petrel.buffer()
local bodies = { "ping", string.rep("payload-", 1000), "bye" }
for _, body in ipairs(bodies) do
  out:write_u32(#body):write(body)
end
say("framed %d messages: %d bytes in %d nodes", #bodies, #out, out:nodes())

-- 2. Read them back as a server would: peek the length, wait for the frame.
local n = 0
while #out >= 4 do
  local len = out:peek_u32()
  if #out < 4 + len then break end
  out:skip(4)
  local frame = out:slice(len)      -- shares the bytes, no copy
  n = n + 1
  say("  frame %d: %d bytes, starts with %q", n, #frame, frame:peek(math.min(8, len)))
end

-- 3. A 16 MiB string is linked, not copied.
local big = string.rep("z", 16 * 1024 * 1024)
local t0 = os.clock()
local b = petrel.buffer()
b:write(big)
say("linked a 16 MiB string in %.1f µs (no copy); buffer holds %d bytes",
  (os.clock() - t0) * 1e6, #b)
big = nil
collectgarbage("collect")
say("  after the collector ran, the bytes are still there: %q...", b:peek(4))
b:skip(#b)
local st = petrel.pool_stats()
say("  consumed: no-copy nodes left %d, strings pinned %d", st.nocopy_blocks, st.anchored)

-- 4. Find a delimiter across nodes, like a line protocol would.
local lines = petrel.buffer({ block = 64 })
lines:write(string.rep("a", 60), "\r\nsecond line\r\n")
local s, e = lines:find("\r\n")
say("line 1 has %d bytes (delimiter at %d-%d, across a node edge)", s - 1, s, e)

-- 5. Pool statistics: blocks come back to their size class for reuse.
for _ = 1, 100 do
  b:write(string.rep("x", 1000))
  b:skip(#b)
end
st = petrel.pool_stats()
say("pool: %d blocks in use, %d idle, %d hits, %d misses, %d bytes idle",
  st.blocks_in_use, st.blocks_idle, st.hits, st.misses, st.bytes_idle)

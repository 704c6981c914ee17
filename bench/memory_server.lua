-- bench/memory_server.lua — the petrel RPC server bench/memory.lua measures.
--   lua5.4|luajit bench/memory_server.lua [SECONDS]
-- Serves Mem (bench/memory_schema.lua) on 127.0.0.1, a free port, with the
-- back end PETREL_BACKEND names; prints "port N" on stdout; exits on
-- Mem.stop() or after SECONDS (default 600).
local root = (arg[0]:match("^(.*)/bench/[^/]*$") or ".")
package.path = root .. "/?.lua;" .. root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/" .. (os.getenv("PETREL_BUILD") or "build") .. "/"
  .. (jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local petrel = require "petrel"
local S = require "bench.memory_schema"

local loop = petrel.default_loop()
local secs = tonumber(arg[1] or "") or 600
loop:after(secs * 1000, function() loop:stop() end)

local function rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local server
server = assert(petrel.server {
  service = S.Mem, port = 0, backlog = 4096,
  handler = {
    echo = function(s) return s end,
    stats = function()
      collectgarbage("collect")
      collectgarbage("collect")
      local st = server:stats()
      local p = st.pool
      local cls, miss = {}, {}
      for _, c in ipairs(p.classes) do
        if c.in_use > 0 then cls[#cls + 1] = ("%dx%d"):format(c.size, c.in_use) end
        miss[#miss + 1] = ("%d:%d"):format(c.size, c.misses)
      end
      return {
        rss_kb = rss_kb(), conns = st.open, bytes_in = st.loop.bytes_in,
        pool_in_use = p.bytes_in_use, pool_idle = p.bytes_idle, hits = p.hits,
        misses = p.misses, classes = table.concat(cls, " "),
        lua_kb = math.floor(collectgarbage("count")),
        backend = (loop:backend()), misses_by_class = table.concat(miss, " "),
      }
    end,
    stop = function() loop:stop() end,
  },
})
io.write("port ", server.port, "\n")
io.flush()
loop:run()

-- bench/rpc_server.lua — petrel servers for bench/peers/rpc_peers.sh.
--   lua5.4 bench/rpc_server.lua thrift PORT SECONDS   Echo.echo (workload schema
--                                                      as Lua tables; decode + encode)
--   lua5.4 bench/rpc_server.lua raw PORT SECONDS      echo raw frames from a Lua
--                                                      handler (no codec)
--   lua5.4 bench/rpc_server.lua lazy PORT SECONDS     Echo.echo, lazy server: the
--                                                      argument view returned as it came
--   lua5.4 bench/rpc_server.lua lazy3 PORT SECONDS    Echo.echo, lazy server: reads 3
--                                                      fields, returns a small Request
-- Exits after SECONDS (bounded) or on SIGTERM.
local root = (arg[0]:match("^(.*)/bench/[^/]*$") or ".")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/" .. (os.getenv("PETREL_BUILD") or "build") .. "/"
  .. (jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local petrel = require "petrel"

local mode, port, secs = arg[1], tonumber(arg[2]), tonumber(arg[3] or "60")
-- Lua 5.4's generational collector suits RPC's short-lived tables (a
-- few percent more calls/s and a lower P99 here); PETREL_GC=inc keeps the
-- default incremental one. LuaJIT has only the incremental collector.
if os.getenv("PETREL_GC") ~= "inc" and _VERSION == "Lua 5.4" and not jit then
  collectgarbage("generational")
end
assert(mode == "thrift" or mode == "raw" or mode == "lazy" or mode == "lazy3",
  "usage: rpc_server.lua thrift|raw|lazy|lazy3 PORT SECONDS")
local loop = petrel.default_loop()
loop:after(secs * 1000, function() loop:stop() end)
io.stderr:write("rpc_server: ", mode, " on ", table.concat({ loop:backend() }, " "), "\n")

if mode == "lazy" or mode == "lazy3" then
  local W = require "bench.workload"
  local echo = function(req) return req end
  if mode == "lazy3" then
    echo = function(req)
      return { user_id = req.user_id, shard = req.shard, priority = req.priority }
    end
  end
  assert(petrel.server { service = W.Echo, port = port, lazy = true, handler = {
    echo = echo,
    fire = function() end,
    big = function(req) return req end,
    blob = function(req) return req end,
    vectors = function(req) return req end,
  } })
elseif mode == "thrift" then
  local W = require "bench.workload"
  assert(petrel.server { service = W.Echo, port = port, handler = {
    echo = function(req) return req end,
    fire = function() end,
    big = function(req) return req end,
    blob = function(req) return req end,
    vectors = function(req) return req end,
  } })
else
  local c = loop.c
  local lid = assert(c:listen("127.0.0.1", port, { backlog = 4096 }))
  local conn = {}
  function conn.on_accept(_, id) loop:attach(id, conn) end
  function conn.on_data(_, id)
    local inb, out = c:input(id), c:output(id)
    while #inb >= 4 do
      local len = inb:peek_u32()
      if #inb < 4 + len then break end
      out:append(inb:slice(4 + len)) -- the frame moves, no copy
    end
    c:send_later(id)
    c:consumed(id)
  end
  loop:attach(lid, conn)
end
loop:run()

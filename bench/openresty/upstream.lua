-- The petrel upstreams of bench/openresty.lua (run by lua5.4, pinned by the
-- caller): an Echo server for bench/workload.thrift (echo returns its
-- argument) and a slow one (echo sleeps SLOW_MS first, default 200), both
-- framed or unframed as the client speaks. Prints "echo=PORT slow=PORT",
-- then serves until killed or --duration seconds (default 600) pass.
--   lua5.4 bench/openresty/upstream.lua [duration_s]
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
local petrel = require "petrel"
local W = require "bench.workload"

local slow_ms = tonumber(os.getenv("SLOW_MS")) or 200
local loop = petrel.default_loop()
local echo = assert(petrel.server { service = W.Echo, port = 0,
  handler = { echo = function(req) return req end } })
local slow = assert(petrel.server { service = W.Echo, port = 0,
  handler = { echo = function(req) loop:sleep(slow_ms); return req end } })
io.write(string.format("echo=%d slow=%d\n", echo.port, slow.port))
io.flush()
loop:after((tonumber(arg[1]) or 600) * 1000, function() loop:stop() end)
petrel.run()

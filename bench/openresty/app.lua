-- The nginx side of bench/openresty.lua (loaded by nginx's LuaJIT): one
-- Thrift call (Echo.echo of bench/data/small.bin's Request) or one
-- lua-resty-redis GET of a value of the same size per HTTP request, both
-- on keepalive pools of the same size; the reply body is "ok" for both.
local petrel = require "petrel"
local core = require "petrel.core"
local resty = require "petrel.resty"
local ok, redis = pcall(require, "resty.redis")
if not ok then redis = require "nginx.redis" end -- Debian's lua-nginx-redis

local app = {}
local POOL = 64

-- init_by_lua: the schema and the request, once, before the workers fork
function app.init(cfg)
  app.cfg = cfg
  app.W = require "bench.workload"
  local f = assert(io.open(cfg.root .. "/bench/data/small.bin", "rb"))
  app.req = app.W.Request:decode(f:read("*a"))
  f:close()
end

-- init_worker_by_lua: the clients of this worker
function app.init_worker()
  local cfg, Echo = app.cfg, app.W.Echo
  app.c = resty.client { service = Echo, port = cfg.c_echo, pool_size = POOL }
  app.c_lazy = resty.client { service = Echo, port = cfg.c_echo, pool_size = POOL, lazy = true }
  app.petrel = resty.client { service = Echo, port = cfg.petrel_echo, pool_size = POOL }
  app.slow = resty.client { service = Echo, port = cfg.petrel_slow, pool_size = POOL,
    read_timeout = 10000 }
  app.redis_opts = { pool_size = POOL }
end

local function thrift(c)
  local r, err = c:echo(app.req)
  if not r or r.user_id ~= app.req.user_id then
    ngx.status = 502
    return ngx.print(tostring(err))
  end
  ngx.print("ok")
end

function app.thrift_c() return thrift(app.c) end
function app.thrift_c_lazy() return thrift(app.c_lazy) end
function app.thrift_petrel() return thrift(app.petrel) end
function app.thrift_slow() return thrift(app.slow) end

-- For contrast in the stall check: the same slow call through a blocking
-- socket (LuaSocket), as Apache's Lua library makes it: the worker waits.
function app.blocking_slow()
  local socket = require "socket"
  if not app.slow_req then
    local buf = petrel.buffer()
    app.W.Echo.functions.echo.args:encode_message({ req = app.req }, buf, "echo", 1, 1, true)
    app.slow_req = buf:read()
  end
  local s = socket.tcp()
  s:settimeout(10)
  assert(s:connect("127.0.0.1", app.cfg.petrel_slow))
  assert(s:send(app.slow_req))
  local hdr = assert(s:receive(4))
  local b1, b2, b3, b4 = hdr:byte(1, 4)
  assert(s:receive(((b1 * 256 + b2) * 256 + b3) * 256 + b4))
  s:close()
  ngx.print("ok")
end

-- For reading the table: the redis location plus petrel's encode and
-- decode of the same Request (no Thrift I/O): what the codec adds.
local cbuf = petrel.buffer()
function app.redis_codec()
  local fn = app.W.Echo.functions.echo
  fn.args:encode_message({ req = app.req }, cbuf, "echo", 1, 1, true)
  local s = cbuf:read()
  local _, _, _, pos = core.msg_header(s, 5)
  local r = fn.args:decode(s, pos)
  if not r or r.req.user_id ~= app.req.user_id then
    ngx.status = 500
    return ngx.print("codec")
  end
  return app.redis()
end

function app.redis()
  local red = redis:new()
  red:set_timeouts(3000, 5000, 5000)
  local okc, err = red:connect("127.0.0.1", app.cfg.redis, app.redis_opts)
  if not okc then
    ngx.status = 502
    return ngx.print(err)
  end
  local v
  v, err = red:get("petrel:small")
  if type(v) ~= "string" or #v ~= app.cfg.size then
    ngx.status = 502
    return ngx.print(tostring(err))
  end
  red:set_keepalive(60000, POOL)
  ngx.print("ok")
end

return app

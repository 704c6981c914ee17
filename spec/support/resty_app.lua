-- The nginx side of spec/resty_spec.lua: loaded by nginx's LuaJIT (OpenResty
-- lua-nginx-module), never by busted. init() runs in init_by_lua (the
-- master, before the workers fork), init_worker() in init_worker_by_lua.
-- The spec posts Lua chunks to /run; they run in the content phase with
-- `app` (this module), `C` (the clients) and the usual globals, and their
-- results come back as JSON.
local petrel = require "petrel"
local resty = require "petrel.resty"
local cjson = require "cjson.safe"

local app = { petrel = petrel, resty = resty }

-- init_by_lua: the calc IDL is compiled here, once, in the master; every
-- worker inherits it (fork, copy-on-write). A call answers why it cannot run.
function app.init(cfg)
  app.cfg = cfg
  app.CALC = assert(petrel.load(cfg.root .. "/spec/thrift/calc.thrift"))
  app.compiled_in = { calc = "init", pid = ngx.worker.pid() }
  local c = resty.client { service = app.CALC.Calc, port = cfg.calc }
  app.init_result = app.show(c:add(1, 2))
end

-- init_worker_by_lua: the workload schema is compiled here, in each worker;
-- the clients every request shares are made here too.
function app.init_worker()
  local cfg = app.cfg
  app.W = require "bench.workload"
  app.worker_pid = ngx.worker.pid()
  local C = {}
  app.C = C
  local CALC, W = app.CALC.Calc, app.W.Echo
  -- petrel's servers: every transport and protocol of petrel.resty
  for tr in pairs(resty.transports) do
    for pname in pairs(resty.protocols) do
      local sfx = tr .. "_" .. pname
      C["calc_" .. sfx] = resty.client { service = CALC, port = cfg.calc, transport = tr,
        protocol = pname }
      C["echo_" .. sfx] = resty.client { service = W, port = cfg.echo, transport = tr,
        protocol = pname }
    end
  end
  -- Apache's Python servers: framed and unframed
  for _, tr in ipairs({ "framed", "buffered" }) do
    C["py_calc_" .. tr] = resty.client { service = CALC, port = cfg["py_calc_" .. tr], transport = tr }
    C["py_ccalc_" .. tr] = resty.client { service = CALC, port = cfg["py_ccalc_" .. tr], transport = tr,
      protocol = "compact" }
    C["py_echo_" .. tr] = resty.client { service = W, port = cfg["py_echo_" .. tr], transport = tr,
      read_timeout = 30000 }
  end
  C.py_mux = resty.client { service = CALC, port = cfg.py_mux, multiplexed = true }
  C.calc = C.calc_framed_binary
  C.calc_unix = resty.client { service = CALC, unix = cfg.calc_unix }
  local h = cfg.hostile
  for _, k in ipairs({ "garbage", "reset", "close", "cut", "seq", "silent", "stall", "full" }) do
    C[k] = resty.client { service = CALC, port = h[k], timeout = 500, connect_timeout = 500 }
  end
  C.garbage_buffered = resty.client { service = CALC, port = h.garbage, transport = "buffered" }
  C.trailing = resty.client { service = CALC, port = h.trailing, transport = "buffered" }
  C.second = resty.client { service = CALC, port = h.second }
  C.refused = resty.client { service = CALC, port = cfg.refused }
  app.init_worker_result = app.show(C.calc:add(1, 2))
  -- a timer may call: cosockets work there
  ngx.timer.at(0, function()
    app.timer_result = app.show(C.calc:add(1, 2))
  end)
end

-- "value|err" of a call's results, for the phase checks
function app.show(r, e)
  return tostring(r) .. "|" .. tostring(e)
end

function app.try_call()
  return app.show(app.C.calc:add(1, 2))
end

-- JSON-safe copy: errors as plain tables, cdata as text, depth-capped.
local function plain(v, depth)
  local t = type(v)
  if t == "table" then
    if depth > 20 then return "<deep>" end
    local out = {}
    for k, x in pairs(v) do
      out[type(k) == "number" and k or tostring(k)] = plain(x, depth + 1)
    end
    if next(out) == nil then return cjson.empty_array end
    return out
  elseif t == "cdata" or t == "userdata" or t == "function" then
    return tostring(v)
  end
  return v
end

-- /run: the posted chunk's results as {"ok": true, "r": [{"v": x}, ...]}
-- (nil results are {}), or {"ok": false, "error": msg}.
function app.run()
  ngx.req.read_body()
  local src = ngx.req.get_body_data() or ""
  local f, err = loadstring(src, "=run")
  local out
  if not f then
    out = { ok = false, error = err }
  else
    setfenv(f, setmetatable({ app = app, C = app.C, resty = resty, petrel = petrel },
      { __index = _G }))
    local res = { pcall(f) }
    local n = table.maxn(res)
    if res[1] then
      local r = {}
      for i = 2, math.max(n, 1) do r[#r + 1] = { v = plain(res[i], 0) } end
      out = { ok = true, r = r }
    else
      out = { ok = false, error = tostring(res[2]) }
    end
  end
  local s, jerr = cjson.encode(out)
  ngx.header["Content-Type"] = "application/json"
  ngx.print(s or cjson.encode({ ok = false, error = "json: " .. tostring(jerr) }))
end

return app

-- petrel.resty inside real nginx: Debian's nginx with lua-nginx-module
-- (OpenResty's LuaJIT2) in a temporary prefix, calling Thrift upstreams over
-- cosockets: a petrel server in this process (Lua 5.4 or LuaJIT, whichever
-- busted runs), Apache Thrift's Python servers (tools/pyrpc.py) and
-- misbehaving peers (spec/support/hostile_peer.py). The spec talks HTTP to
-- nginx over a unix socket on this process's petrel loop, so the in-process
-- server keeps serving while nginx calls it. Ports are ephemeral; every
-- wait is bounded; every process started here is stopped here by its pid.
local petrel = require "petrel"
local W = require "bench.workload"
local N = require "support.nginx"
local cjson = require "cjson"

local CALC = assert(petrel.load("spec/thrift/calc.thrift"))
local PY = "/usr/bin/python3"

-- A Lua table literal for the nginx side's configuration.
local function literal(v)
  if type(v) == "table" then
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = string.format("[%q] = %s", k, literal(x)) end
    return "{ " .. table.concat(parts, ", ") .. " }"
  elseif type(v) == "string" then
    return string.format("%q", v)
  end
  return tostring(v)
end

describe("petrel.resty outside nginx", function()
  it("loads, and a call says that it needs OpenResty", function()
    local resty = require "petrel.resty"
    local c = resty.client { service = CALC.Calc, port = 1 }
    local r, e = c:add(1, 2)
    assert.is_nil(r)
    assert.equal("petrel.resty runs inside OpenResty: ngx.socket.tcp is not available here", e)
    assert.is_nil((c:connect()))
    assert.has_error(function() c:call("nosuch") end, "petrel.resty: no function 'nosuch'")
    assert.has_error(function() resty.client { service = CALC.Calc, port = 1, transport = "carrier-pigeon" } end,
      "petrel.resty.client: unknown transport 'carrier-pigeon'")
    assert.has_error(function() resty.client { service = CALC.Calc, port = 1, protocol = "morse" } end,
      "petrel.resty.client: unknown protocol 'morse'")
    assert.has_error(function() resty.client { service = CALC.Calc } end,
      "petrel.resty.client: port (or unix) expected")
  end)
end)

describe("petrel.resty in nginx", function()
  local loop, nginx, srv, echo_srv, unix_srv, idle_srv, pool_srv
  local pool_peak = 0
  local procs = {} -- pid -> output file
  local tmp

  local H = require "support.handlers"
  local echo_handler = H.echo
  local calc_handler = H.calc()
  -- add(-1, ms): a slow call, sleeping ms
  local plain_add = calc_handler.add
  calc_handler.add = function(a, b)
    if a == -1 then
      loop:sleep(b)
      return 0
    end
    return plain_add(a, b)
  end

  local function start(cmd, tag)
    local out = tmp .. "/" .. tag .. ".out"
    local pid = N.bg(cmd, out)
    procs[pid] = out
    return pid, out
  end

  -- POST a chunk to /run; returns its results (nil results as nil)
  local function run(code, timeout_ms)
    local st, _, body = nginx:request("POST", "/run", code, timeout_ms or 60000)
    assert(st == 200, "HTTP " .. tostring(st) .. ": " .. tostring(body) .. "\n" .. nginx:log())
    local t = cjson.decode(body)
    assert(t.ok, t.error)
    local vals, n = {}, 0
    for i, x in ipairs(t.r) do
      n = i
      if x.v ~= cjson.null then vals[i] = x.v end
    end
    return (table.unpack or unpack)(vals, 1, n)
  end

  local function get(path)
    local st, h, body = nginx:request("GET", path, nil, 30000)
    assert(st == 200, "HTTP " .. tostring(st) .. " for " .. path .. ": " .. tostring(body))
    return body, h
  end

  lazy_setup(function()
    loop = assert(petrel.loop())
    tmp = N.tmpdir("resty")
    srv = assert(petrel.server { loop = loop, port = 0, service = CALC.Calc, handler = calc_handler })
    echo_srv = assert(petrel.server { loop = loop, port = 0, service = W.Echo, handler = echo_handler })
    unix_srv = assert(petrel.server { loop = loop, unix = tmp .. "/calc.sock", service = CALC.Calc,
      handler = calc_handler })
    idle_srv = assert(petrel.server { loop = loop, port = 0, service = CALC.Calc,
      handler = calc_handler, idle_timeout = 150 })
    -- the pool specs' upstream: add() notes the most connections open at once
    pool_srv = assert(petrel.server { loop = loop, port = 0, service = CALC.Calc,
      handler = { add = function(a, b)
        local open = pool_srv:stats().open
        if open > pool_peak then pool_peak = open end
        return calc_handler.add(a, b)
      end } })
    local cfg = { root = assert(io.popen("pwd")):read("*l"), calc = srv.port, echo = echo_srv.port,
      calc_unix = tmp .. "/calc.sock", idle = idle_srv.port, pool = pool_srv.port,
      refused = N.free_port(loop), hostile = {} }
    -- Apache Thrift's Python servers (TSimpleServer: one connection at a time)
    local waits = {}
    for _, svc in ipairs({ "calc", "echo" }) do
      for _, tr in ipairs({ "framed", "buffered" }) do
        local port = N.free_port(loop)
        cfg["py_" .. svc .. "_" .. tr] = port
        local _, out = start(string.format("timeout 300 %s tools/pyrpc.py serve --service %s --port %d " ..
          "--transport %s --duration 280", PY, svc, port, tr), "py_" .. svc .. "_" .. tr)
        waits[#waits + 1] = out
      end
    end
    -- and Calc over Apache's accelerated Compact protocol
    for _, tr in ipairs({ "framed", "buffered" }) do
      local port = N.free_port(loop)
      cfg["py_ccalc_" .. tr] = port
      local _, out = start(string.format("timeout 300 %s tools/pyrpc.py serve --service calc --port %d " ..
        "--transport %s --protocol accelc --duration 280", PY, port, tr), "py_ccalc_" .. tr)
      waits[#waits + 1] = out
    end
    cfg.py_mux = N.free_port(loop)
    local _, mout = start(string.format("timeout 300 %s tools/pyrpc.py serve --service calc --port %d " ..
      "--transport framed --duration 280 --multiplex Calc", PY, cfg.py_mux), "py_mux")
    waits[#waits + 1] = mout
    local _, hout = start(string.format("timeout 300 %s spec/support/hostile_peer.py --duration 280", PY),
      "hostile")
    waits[#waits + 1] = hout
    assert(N.run_until(loop, function()
      for _, f in ipairs(waits) do
        if not N.read_file(f):find("ready") then return false end
      end
      return true
    end, 60000), "upstreams did not start")
    for k, p in N.read_file(hout):gmatch("(%w+)=(%d+)") do cfg.hostile[k] = tonumber(p) end
    local build = os.getenv("PETREL_BUILD") or "build"
    local pfx = N.tmpdir("nginx")
    N.write_file(pfx .. "/upstreams.lua", "return " .. literal(cfg))
    nginx = N.start { loop = loop, prefix = pfx, http = [[
  lua_package_path "${ROOT}/lua/?.lua;${ROOT}/lua/?/init.lua;${ROOT}/spec/?.lua;${ROOT}/?.lua;;";
  lua_package_cpath "${ROOT}/]] .. build .. [[/luajit/?.so;;";
  lua_shared_dict results 1m;
  lua_socket_log_errors off;
  init_by_lua_block { require("support.resty_app").init(dofile("${PREFIX}/upstreams.lua")) }
  init_worker_by_lua_block { require("support.resty_app").init_worker() }
  server {
    listen ${LISTEN};
    location = /__ping { return 200 "pong"; }
    location = /run { content_by_lua_block { require("support.resty_app").run() } }
    location = /phase/init { content_by_lua_block { ngx.print(require("support.resty_app").init_result) } }
    location = /phase/init_worker {
      content_by_lua_block { ngx.print(require("support.resty_app").init_worker_result) } }
    location = /phase/timer {
      content_by_lua_block { ngx.print(tostring(require("support.resty_app").timer_result)) } }
    location = /phase/set {
      set_by_lua_block $res { return require("support.resty_app").try_call() }
      content_by_lua_block { ngx.print(ngx.var.res) } }
    location = /phase/rewrite {
      rewrite_by_lua_block { ngx.ctx.r = require("support.resty_app").try_call() }
      access_by_lua_block { ngx.ctx.a = require("support.resty_app").try_call() }
      content_by_lua_block {
        ngx.print(ngx.ctx.r, " ", ngx.ctx.a, " ", require("support.resty_app").try_call()) } }
    location = /phase/header_filter {
      content_by_lua_block { ngx.print("body") }
      header_filter_by_lua_block { ngx.header["X-Res"] = require("support.resty_app").try_call() } }
    location = /phase/body_filter {
      content_by_lua_block { ngx.print("body") }
      body_filter_by_lua_block {
        if ngx.arg[2] then ngx.arg[1] = require("support.resty_app").try_call() else ngx.arg[1] = "" end } }
    location = /phase/log {
      content_by_lua_block { ngx.print("body") }
      log_by_lua_block { ngx.shared.results:set("log", require("support.resty_app").try_call()) } }
    location = /phase/log_result { content_by_lua_block { ngx.print(ngx.shared.results:get("log")) } }
    location = /phase/balancer { proxy_pass http://petrel_balancer/__ping; }
    location = /phase/balancer_result {
      content_by_lua_block { ngx.print(ngx.shared.results:get("balancer")) } }
  }
  upstream petrel_balancer {
    server unix:${PREFIX}/http.sock;
    balancer_by_lua_block {
      ngx.shared.results:set("balancer", require("support.resty_app").try_call())
    }
  }
]] }
  end)

  lazy_teardown(function()
    if nginx then nginx:stop() end
    for pid in pairs(procs) do os.execute("kill " .. pid .. " 2>/dev/null") end
    if loop then
      N.run_until(loop, function()
        for pid in pairs(procs) do if N.alive(pid) then return false end end
        return true
      end, 10000)
      loop:free()
    end
    if tmp then os.execute("rm -rf '" .. tmp .. "'") end
  end)

  it("loads petrel in nginx's LuaJIT; the IDL compiled in init_by_lua serves every worker", function()
    local master_pid, worker_pid, version, sum = run [[
      return app.compiled_in.pid, app.worker_pid, jit.version, C.calc:add(20, 22)
    ]]
    assert.is_number(master_pid)
    assert.is_number(worker_pid)
    assert.are_not.equal(master_pid, worker_pid) -- compiled before the fork, used after it
    assert.matches("^LuaJIT 2%.1", version)
    assert.equal(42, sum)
    assert.equal(1, #nginx:workers())
    assert.equal(worker_pid, nginx:workers()[1])
  end)

  it("starts no thread and touches no signal in the worker (against an nginx without petrel)", function()
    local function sig(pid)
      local st = N.read_file("/proc/" .. pid .. "/status")
      return { threads = st:match("Threads:%s*(%d+)"), blk = st:match("SigBlk:%s*(%x+)"),
        ign = st:match("SigIgn:%s*(%x+)"), cgt = st:match("SigCgt:%s*(%x+)") }
    end
    assert.equal(3, (run "return C.calc:add(1, 2)")) -- petrel loaded and used
    local with = sig(nginx:workers()[1])
    local plain = N.start { loop = loop, http = [[
  server { listen ${LISTEN}; location = /__ping { return 200 "pong"; } }
]] }
    local without = sig(plain:workers()[1])
    plain:stop()
    assert.equal("1", with.threads)
    assert.same(without, with)
  end)

  describe("phases", function()
    it("cosockets work in rewrite, access, content and timers", function()
      assert.equal("3|nil 3|nil 3|nil", (get("/phase/rewrite")))
      assert.is_true(N.run_until(loop, function() return get("/phase/timer") ~= "nil" end, 10000))
      assert.equal("3|nil", (get("/phase/timer")))
    end)

    for _, case in ipairs({ { "init", "init" }, { "init_worker", "init_worker" }, { "set", "set" } }) do
      it("the " .. case[1] .. " phase gets nil, err", function()
        assert.equal("nil|cosockets are not available in the " .. case[2] .. " phase",
          (get("/phase/" .. case[1])))
      end)
    end

    it("the balancer phase gets nil, err", function()
      assert.equal("pong", (get("/phase/balancer")))
      assert.equal("nil|cosockets are not available in the balancer phase", (get("/phase/balancer_result")))
    end)

    it("header_filter, body_filter and log get nil, err", function()
      local body, h = get("/phase/header_filter")
      assert.equal("body", body)
      assert.equal("nil|cosockets are not available in the header_filter phase", h["x-res"])
      assert.equal("nil|cosockets are not available in the body_filter phase",
        (get("/phase/body_filter")))
      get("/phase/log")
      -- the log phase runs after the reply: poll its result, bounded
      local r
      assert.is_true(N.run_until(loop, function()
        r = get("/phase/log_result")
        return r ~= "nil" and r ~= ""
      end, 10000))
      assert.equal("nil|cosockets are not available in the log phase", r)
    end)
  end)

  describe("every transport and protocol", function()
    local resty = require "petrel.resty"
    local calc_chunk = [[
      local c = C[...]
      local out = {}
      out.add = c:add(40, 2)
      local x, e = c:fail(7)
      out.fail = { x == nil, e.kind, e.name, e.value.code, e.value.message, tostring(e.type) }
      out.ping = c:ping()
      local before = c:notes()
      out.note = c:note("a")
      out.notes = c:notes() - before
      local many = c:many(3, "n")
      out.many = { #many, many[3].name, #many[3].nums }
      local it = c:echo({ id = -9007199254740993LL, name = "é", nums = { 1, -2 }, attrs = { x = 1.5 } })
      out.echo = { tostring(it.id), it.name, it.nums[2], it.attrs.x }
      local conn = assert(c:connect())
      out.conn = { conn:add(1, 1), conn:call("add", 2, 2) }
      out.keep = conn:setkeepalive()
      return out
    ]]
    local function check_calc(out, oneway_counted)
      assert.equal(42, out.add)
      assert.same({ true, "exception", "oops", 7, "failed with 7", "Oops" }, out.fail)
      assert.is_true(out.ping)
      assert.is_true(out.note)
      if oneway_counted then assert.equal(1, out.notes) end
      assert.same({ 3, "n2", 2 }, out.many)
      assert.same({ "-9007199254740993LL", "é", -2, 1.5 }, out.echo)
      assert.same({ 2, 4 }, out.conn)
      assert.equal(1, out.keep)
    end

    local workload_chunk = [=[
      local c = C[...]
      local W = app.W
      local res = {}
      for _, w in ipairs({ { "echo", "small", "Request" }, { "echo", "medium", "Request" },
        { "big", "mytest", "MyTest" }, { "blob", "blob", "Blob" }, { "vectors", "vectors", "Vectors" } }) do
        local f = assert(io.open(app.cfg.root .. "/bench/data/" .. w[2] .. ".bin", "rb"))
        local bytes = f:read("*a")
        f:close()
        local r, e = c[w[1]](c, W[w[3]]:decode(bytes))
        res[w[2]] = r and (W[w[3]]:encode(r) == bytes) or tostring(e)
      end
      res.fire = c:fire(W.Request:decode(io.open(app.cfg.root .. "/bench/data/small.bin", "rb"):read("*a")))
      return res
    ]=]
    local function check_workload(res)
      for _, k in ipairs({ "small", "medium", "mytest", "blob", "vectors" }) do
        assert.is_true(res[k], k .. ": " .. tostring(res[k]))
      end
      assert.is_true(res.fire)
    end

    local trs = {}
    for tr in pairs(resty.transports) do trs[#trs + 1] = tr end
    table.sort(trs)
    assert.is_true(#trs >= 6) -- framed, buffered and the header transports
    for _, tr in ipairs(trs) do
      for pname in pairs(resty.protocols) do
        it("petrel server, " .. tr .. " " .. pname .. ": Calc (results, exceptions, void, oneway, lists, maps)", function()
          check_calc(run((calc_chunk:gsub("%.%.%.", "'calc_" .. tr .. "_" .. pname .. "'"))), true)
        end)
        it("petrel server, " .. tr .. " " .. pname .. ": the workload messages come back byte for byte", function()
          check_workload(run((workload_chunk:gsub("%.%.%.", "'echo_" .. tr .. "_" .. pname .. "'"))))
        end)
      end
    end
    it("lazy = true: struct and list results are views of the reply, every protocol, framed, buffered and THeader", function()
      local res = run [=[
        local V, W = petrel.view, app.W
        local f = assert(io.open(app.cfg.root .. "/bench/data/medium.bin", "rb"))
        local bytes = f:read("*a")
        f:close()
        local req = W.Request:decode(bytes)
        local out = {}
        for _, tr in ipairs({ "framed", "buffered", "header" }) do
          for _, p in ipairs({ "binary", "compact" }) do
            local c = resty.client { service = W.Echo, port = app.cfg.echo, transport = tr, protocol = p,
              lazy = true }
            local r = assert(c:echo(req))
            local k = tr .. "_" .. p
            -- a view (not a table), reading what decode reads, and written
            -- back as the same bytes
            out[k] = { V.is(r), r.user_id == req.user_id, #r.items == #req.items,
              r.items[3].title == req.items[3].title, W.Request:encode(r) == bytes }
            local cc = resty.client { service = app.CALC.Calc, port = app.cfg.calc, transport = tr,
              protocol = p, lazy = true }
            local many = assert(cc:many(3, "n"))
            local x, e = cc:fail(7)
            out[k .. "_calc"] = { V.is(many), #many, many[3].name, cc:add(40, 2), x == nil,
              e.kind, e.name, e.value.code }
          end
        end
        return out
      ]=]
      local n = 0
      for k, v in pairs(res) do
        n = n + 1
        if k:match("_calc$") then
          assert.same({ true, 3, "n2", 42, true, "exception", "oops", 7 }, v, k)
        else
          assert.same({ true, true, true, true, true }, v, k)
        end
      end
      assert.equal(12, n)
    end)

    for _, tr in ipairs({ "framed", "buffered" }) do
      it("Apache Thrift Python server, " .. tr .. ": Calc", function()
        check_calc(run((calc_chunk:gsub("%.%.%.", "'py_calc_" .. tr .. "'"))), true)
      end)
      it("Apache Thrift Python server, Compact, " .. tr .. ": Calc", function()
        check_calc(run((calc_chunk:gsub("%.%.%.", "'py_ccalc_" .. tr .. "'"))), true)
      end)
      it("Apache Thrift Python server, " .. tr .. ": the workload messages", function()
        check_workload(run((workload_chunk:gsub("%.%.%.", "'py_echo_" .. tr .. "'")), 120000))
      end)
    end

    it("multiplexed: Apache's TMultiplexedProcessor answers Calc:add; a plain server does not know it", function()
      local sum, plain = run [[
        local sum = C.py_mux:add(40, 2)
        local c = resty.client { service = app.CALC.Calc, port = app.cfg.calc, multiplexed = "Calc" }
        local r, e = c:add(1, 2)
        return sum, { r == nil, e.kind, e.type, e.message }
      ]]
      assert.equal(42, sum)
      assert.same({ true, "application", 1, "Invalid method name: 'Calc:add'" }, plain)
    end)

    it("unix-domain upstreams", function()
      assert.equal(4, (run "return C.calc_unix:add(2, 2)"))
      assert.is_true(unix_srv:stats().calls >= 1)
    end)
  end)

  describe("pools", function()
    it("reuses one upstream connection for many calls (counted at the upstream)", function()
      local before = srv:stats().connections
      local ok, reused = run [[
        local c = resty.client { service = app.CALC.Calc, port = app.cfg.calc, pool = "reuse", pool_size = 4 }
        for i = 1, 500 do assert(c:add(i, 1) == i + 1) end
        local conn = assert(c:connect())
        local n = conn:getreusedtimes()
        assert(conn:setkeepalive())
        return true, n
      ]]
      assert.is_true(ok)
      assert.equal(500, reused)
      assert.equal(1, srv:stats().connections - before)
    end)

    it("pool_size: a burst opens what it needs, then pool_size connections stay idle", function()
      pool_peak = 0
      local before = pool_srv:stats().connections
      assert.is_true((run [[
        local c = resty.client { service = app.CALC.Calc, port = app.cfg.pool, pool = "burst", pool_size = 2 }
        local threads = {}
        for i = 1, 8 do
          threads[i] = ngx.thread.spawn(function() return c:add(-1, 100) == 0 end)
        end
        for i = 1, 8 do assert(select(2, ngx.thread.wait(threads[i]))) end
        return true
      ]]))
      assert.is_true(pool_peak > 2, "peak " .. pool_peak) -- more than pool_size at once
      assert.equal(8, pool_srv:stats().connections - before)
      assert.is_true(N.run_until(loop, function() return pool_srv:stats().open == 2 end, 10000),
        "open: " .. pool_srv:stats().open)
    end)

    it("backlog: pool_size caps open connections, waiting calls queue, a full queue says so", function()
      pool_peak = 0
      local before, open_before = pool_srv:stats().connections, pool_srv:stats().open
      local errs = run [[
        local d = resty.client { service = app.CALC.Calc, port = app.cfg.pool, pool = "tiny",
          pool_size = 1, backlog = 1 }
        local threads, errs = {}, {}
        for i = 1, 3 do
          threads[i] = ngx.thread.spawn(function() return d:add(-1, 200) end)
        end
        for i = 1, 3 do
          local _, r, e = ngx.thread.wait(threads[i])
          errs[i] = tostring(r) .. "|" .. tostring(e)
        end
        table.sort(errs)
        return errs
      ]]
      assert.same({ "0|nil", "0|nil", "nil|too many waiting connect operations" }, errs)
      assert.equal(1, pool_peak - open_before) -- idle ones of other pools aside
      assert.equal(1, pool_srv:stats().connections - before)
    end)

    it("a pooled connection that ends before any byte of the reply is retried once on another", function()
      local a, b, c = run [[
        local a = C.second:add(1, 1)         -- a fresh connection, then pooled
        local b = C.second:add(2, 2)         -- reused: the peer closes it; a new one answers
        -- the lua-resty style, one connection: no retry
        local conn = assert(C.second:connect())
        local reused = conn:getreusedtimes()  -- the one that answered b
        local r, e = conn:add(3, 3)
        return a, b, { r, e, reused }
      ]]
      assert.equal(42, a)
      assert.equal(42, b)
      assert.equal(cjson.null, c[1])
      assert.equal("closed", c[2])
      assert.equal(1, c[3])
    end)

    it("a pooled connection the upstream closed while idle is not used again", function()
      local before = idle_srv:stats().connections
      local a, b = run [[
        local c = resty.client { service = app.CALC.Calc, port = app.cfg.idle }
        local a = c:add(1, 1)
        ngx.sleep(1.5) -- the upstream drops idle connections after 150 ms (10 times that: a busy machine)
        return a, c:add(2, 2)
      ]]
      assert.equal(2, a)
      assert.equal(4, b)
      assert.equal(2, idle_srv:stats().connections - before)
    end)
  end)

  describe("timeouts", function()
    it("read: a slow upstream gives nil, 'timeout' and the next call is served", function()
      local e, elapsed, after = run [[
        local c = resty.client { service = app.CALC.Calc, port = app.cfg.calc, read_timeout = 200 }
        ngx.update_time()
        local t0 = ngx.now()
        local r, e = c:add(-1, 3000)
        ngx.update_time()
        return e, ngx.now() - t0, c:add(5, 5)
      ]]
      assert.equal("timeout", e)
      assert.is_true(elapsed >= 0.15 and elapsed < 2.5, "elapsed " .. elapsed)
      assert.equal(10, after)
    end)

    it("client:settimeouts and conn:settimeouts", function()
      local e1, e2, ok = run [[
        local c = resty.client { service = app.CALC.Calc, port = app.cfg.calc, pool = "st" }
        c:settimeouts(1000, 1000, 100)
        local _, e1 = c:add(-1, 2000)
        c:settimeouts(1000, 1000, 5000)
        local conn = assert(c:connect())
        assert(conn:settimeouts(1000, 1000, 100))
        local _, e2 = conn:add(-1, 2000)
        return e1, e2, c:add(1, 1)
      ]]
      assert.equal("timeout", e1)
      assert.equal("timeout", e2)
      assert.equal(2, ok)
    end)

    it("connect: an upstream that never accepts", function()
      local e, elapsed = run [[
        ngx.update_time()
        local t0 = ngx.now()
        local _, e = C.full:add(1, 2)
        ngx.update_time()
        return e, ngx.now() - t0
      ]]
      assert.equal("timeout", e)
      assert.is_true(elapsed >= 0.4 and elapsed < 5, "elapsed " .. elapsed)
    end)

    it("send: an upstream that never reads", function()
      local e = run [[
        local _, e = C.stall:echo({ id = 1, name = string.rep("x", 24 * 1024 * 1024), nums = {} })
        return e
      ]]
      assert.equal("timeout", e)
    end)

    it("read: an upstream that never answers", function()
      assert.equal("timeout", (run "local _, e = C.silent:add(1, 2); return e"))
    end)
  end)

  describe("error paths", function()
    it("refused, reset, closed, cut short", function()
      local refused, reset, closed, cut = run [[
        local function e(c) local r, err = c:add(1, 2); assert(r == nil); return err end
        return e(C.refused), e(C.reset), e(C.close), e(C.cut)
      ]]
      assert.equal("connection refused", refused)
      assert.equal("connection reset by peer", reset)
      assert.equal("closed", closed)
      assert.equal("closed", cut)
    end)

    it("garbage replies are protocol errors, framed or not", function()
      local framed, buffered, seq = run [[
        local function e(c) local r, err = c:add(1, 2); assert(r == nil); return err end
        return e(C.garbage), e(C.garbage_buffered), e(C.seq)
      ]]
      assert.equal("protocol error: frame length 1213486160 (max_frame 16777216)", framed)
      assert.matches("^protocol error: ", buffered)
      assert.matches("^protocol error: reply with sequence id %d+, expected %d+$", seq)
    end)

    it("stray bytes after an unframed reply: the result stands, the connection is not pooled", function()
      local r1, keep, r2 = run [[
        local conn = assert(C.trailing:connect())
        local r1 = conn:add(40, 2)
        local again = { conn:add(1, 1) }
        local ok, err = conn:setkeepalive()
        return r1, { ok, err, again[1], again[2] }, C.trailing:add(1, 1)
      ]]
      assert.equal(42, r1)
      assert.equal(cjson.null, keep[1])
      assert.equal("not reusable: bytes after the reply", keep[2])
      assert.equal(cjson.null, keep[3]) -- and no more calls on it
      assert.equal("not reusable: bytes after the reply", keep[4])
      assert.equal(42, r2)
    end)

    it("misuse raises: unknown functions, arguments the schema refuses", function()
      local st, _, body = nginx:request("POST", "/run", "return C.calc:call('nosuch')", 30000)
      assert.equal(200, st)
      local t = cjson.decode(body)
      assert.is_false(t.ok)
      assert.matches("petrel.resty: no function 'nosuch'", t.error, 1, true)
      t = cjson.decode(select(3, nginx:request("POST", "/run", "return C.calc:add('x', 1)", 30000)))
      assert.is_false(t.ok)
      assert.matches("add_args.a", t.error, 1, true)
      -- and the worker goes on
      assert.equal(3, (run "return C.calc:add(1, 2)"))
    end)
  end)

  it("the example (examples/nginx): JSON in, Thrift out, two workers", function()
    local root = assert(io.popen("pwd")):read("*l")
    local build = os.getenv("PETREL_BUILD") or "build"
    local port = N.free_port(loop)
    start(string.format("env LUA_CPATH_5_4='%s/lua5.4/?.so;;' timeout 120 lua5.4 examples/nginx/upstream.lua %d",
      build, port), "example_upstream")
    local pfx = N.tmpdir("example")
    local conf = N.read_file("examples/nginx/nginx.conf")
    local function sub(from, to)
      local i, j = conf:find(from, 1, true)
      assert(i and not conf:find(from, j + 1, true), "examples/nginx/nginx.conf: '" .. from .. "' once")
      conf = conf:sub(1, i - 1) .. to .. conf:sub(j + 1)
    end
    sub("listen 127.0.0.1:8080;", "listen unix:" .. pfx .. "/http.sock;")
    sub("port = 9090", "port = " .. port)
    sub("pid build/nginx-example.pid;", "pid " .. pfx .. "/nginx.pid;")
    sub("client_body_temp_path build/nginx-example-body;", "client_body_temp_path " .. pfx .. "/body;")
    sub("$prefix/build/luajit/", "$prefix/" .. build .. "/luajit/")
    local ex = N.start { loop = loop, prefix = pfx, conf = conf, addr = "unix:" .. pfx .. "/http.sock",
      nginx_prefix = root .. "/" }
    local ok, err = pcall(function()
      local function post(path, body)
        local st, h, b
        -- the upstream may still be starting: a 502 is retried, bounded
        assert.is_true(N.run_until(loop, function()
          st, h, b = ex:request("POST", path, body, 10000)
          return st ~= 502 or not (b or ""):find("connection refused")
        end, 30000), tostring(b))
        assert.equal("application/json", h["content-type"])
        return st, cjson.decode(b)
      end
      local st, r = post("/rpc/add", '{"a": 40, "b": 2}')
      assert.equal(200, st)
      assert.same({ result = 42 }, r)
      st, r = post("/rpc/fail", '{"code": 7}')
      assert.equal(422, st)
      assert.same({ exception = "oops", value = { message = "failed with 7", code = 7 } }, r)
      st, r = post("/rpc/many", '{"n": 2, "prefix": "x"}')
      assert.equal(200, st)
      assert.same({ { id = 1, name = "x1", nums = { 1 } }, { id = 2, name = "x2", nums = { 2 } } }, r.result)
      st, r = post("/rpc/echo", '{"it": {"id": 5, "name": "é", "nums": [1, -2], "attrs": {"x": 1.5}}}')
      assert.equal(200, st)
      assert.same({ id = 5, name = "é", nums = { 1, -2 }, attrs = { x = 1.5 } }, r.result)
      st, r = post("/rpc/nope", "{}")
      assert.equal(404, st)
      st, r = post("/rpc/add", '{"a": "x", "b": 1}')
      assert.equal(400, st)
      assert.equal("Calc.add_args.a: i32 expected, got string", r.error)
      st, r = post("/rpc/add", "not json")
      assert.equal(400, st)
    end)
    local log = ex:log()
    ex:stop()
    assert(ok, tostring(err) .. "\n" .. log)
  end)

  it("keeps the worker's memory flat over 100,000 calls", function()
    local pid = nginx:workers()[1]
    local batch = [[
      local c = C.calc
      for i = 1, 20000 do
        local r, e = c:add(i, 1)
        if r ~= i + 1 then error("call " .. i .. ": " .. tostring(e)) end
      end
      collectgarbage()
      return collectgarbage("count")
    ]]
    run(batch, 180000) -- warm up: pools, JIT traces, the collector's pace
    local rss0, lua0 = N.rss_kb(pid), run(batch, 180000)
    for _ = 1, 5 do run(batch, 180000) end
    local rss1, lua1 = N.rss_kb(pid), run("collectgarbage(); return collectgarbage('count')")
    assert.is_true(rss1 - rss0 < 4096, string.format("RSS %d KiB -> %d KiB", rss0, rss1))
    assert.is_true(lua1 - lua0 < 1024, string.format("Lua heap %.0f KiB -> %.0f KiB", lua0, lua1))
  end)
end)

-- RPC over the Compact protocol, and what a server detects from a
-- connection's first bytes: a petrel Compact client against Apache's
-- Python server, Apache's Python Compact clients (TCompactProtocol and
-- TCompactProtocolAccelerated) against a petrel server, framed and
-- buffered; servers answer each call in its protocol; detection waits
-- until the bytes tell (every split point of strict and non-strict
-- messages, framed and unframed, Binary and Compact) and names HTTP and
-- TLS peers. Every case runs on both back ends (epoll, io_uring: this
-- file makes its loops with each, so it needs no second pass).
local petrel = require "petrel"
local rpc = require "petrel.rpc"
local core = require "petrel.core"
local W = require "bench.workload"

local DATA = "bench/data/"
local CALC = assert(petrel.load("spec/thrift/calc.thrift"))
local slurp = require "support.slurp"
local proc = require "support.proc"
local bg, alive, kill, read_file = proc.bg, proc.alive, proc.kill, proc.read_file

local run_until = require("support.net").run_until

local H = require "support.handlers"
local echo_handler = H.echo
local calc_handler, calc_state = H.calc()

-- one message of each kind, for the detection cases
local function messages()
  local args = CALC.Calc.functions.add.args
  local out = {}
  for _, framed in ipairs({ false, true }) do
    for _, proto in ipairs({ "binary", "compact" }) do
      local b = petrel.buffer()
      args:encode_message({ a = 40, b = 2 }, b, "add", 1, 5, framed, proto)
      out[#out + 1] = { tostring(b), (framed and "framed " or "unframed ") .. proto .. " strict",
        framed and "framed" or "buffered", proto }
    end
    -- non-strict Binary, with a name longer than the first reads
    local body = args:encode({ a = 40, b = 2 })
    local name = "add"
    local msg = petrel.buffer():write_u32(#name):write(name):write("\1"):write_i32(5):write(body)
    local s = tostring(msg)
    if framed then s = tostring(petrel.buffer():write_u32(#s):write(s)) end
    out[#out + 1] = { s, (framed and "framed" or "unframed") .. " binary non-strict",
      framed and "framed" or "buffered", "binary" }
  end
  return out
end

for _, be in ipairs({ "epoll", "uring" }) do
  describe("rpc over compact (" .. be .. ")", function()
    local probe = petrel.loop { backend = be }
    if not probe then
      it("SKIPPED: the " .. be .. " back end is not available here", function()
        pending("the kernel or sandbox refuses " .. be)
      end)
      return
    end
    probe:free()

    local loop
    before_each(function() loop = assert(petrel.loop { backend = be }) end)
    after_each(function() loop:free() end)

    for _, tr in ipairs({ "framed", "buffered" }) do
      it("petrel Compact client against Apache's Python server over " .. tr, function()
        local l1 = assert(loop.c:listen("127.0.0.1", 0))
        local l2 = assert(loop.c:listen("127.0.0.1", 0))
        local port, port2 = loop.c:port(l1), loop.c:port(l2)
        loop.c:close(l1)
        loop.c:close(l2)
        -- the C accelerated server for one transport, the pure one for the other
        local pproto = tr == "framed" and "accelc" or "compact"
        local pid1, out1 = bg(string.format("timeout 60 /usr/bin/python3 tools/pyrpc.py serve " ..
          "--service echo --port %d --transport %s --protocol %s --duration 50", port, tr, pproto))
        local pid2, out2 = bg(string.format("timeout 60 /usr/bin/python3 tools/pyrpc.py serve " ..
          "--service calc --port %d --transport %s --protocol %s --duration 50", port2, tr, pproto))
        local ok, err = pcall(function()
          assert.is_true(run_until(loop, function()
            return read_file(out1):find("ready") ~= nil and read_file(out2):find("ready") ~= nil
          end, 30000), read_file(out1) .. read_file(out2))
          local c = petrel.client { loop = loop, service = W.Echo, port = port, transport = tr,
            protocol = "compact", timeout = 20000 }
          for _, w in ipairs({ { "echo", "small", "Request" }, { "echo", "medium", "Request" },
            { "big", "mytest", "MyTest" }, { "blob", "blob", "Blob" }, { "vectors", "vectors", "Vectors" } }) do
            local bytes = slurp(DATA .. w[2] .. ".bin")
            local r, e = c[w[1]](c, W[w[3]]:decode(bytes))
            assert.is_table(r, tostring(e))
            assert.is_true(W[w[3]]:encode(r) == bytes, w[1] .. " " .. w[2])
          end
          assert.is_true(c:fire(W.Request:decode(slurp(DATA .. "small.bin"))))
          assert.is_table((c:echo(W.Request:decode(slurp(DATA .. "small.bin")))))
          c:close()
          local k = petrel.client { loop = loop, service = CALC.Calc, port = port2, transport = tr,
            protocol = "compact" }
          assert.equal(42, k:add(40, 2))
          local back = k:echo({ id = -9007199254740993, name = "é", nums = { 1, -2 }, attrs = { x = 1.5 } })
          assert.equal("é", back.name)
          assert.equal(1.5, back.attrs.x)
          assert.is_true(k:ping())
          assert.is_true(k:note("a"))
          local r, e = k:fail(9)
          assert.is_nil(r)
          assert.equal("oops", e.name)
          assert.equal(9, e.value.code)
          assert.equal("n2", k:many(3, "n")[3].name)
          assert.equal(1, k:notes())
          k:close()
        end)
        kill(pid1)
        kill(pid2)
        os.remove(out1)
        os.remove(out2)
        assert.is_true(ok, err)
      end)

      for _, pp in ipairs({ "compact", "accelc" }) do
        it("Apache's Python " .. pp .. " client against a petrel server over " .. tr, function()
          for _, svc in ipairs({ "echo", "calc" }) do
            calc_state.notes = 0
            local srv = assert(petrel.server { loop = loop, port = 0,
              service = svc == "echo" and W.Echo or CALC.Calc,
              handler = svc == "echo" and echo_handler or calc_handler })
            local pid, out = bg(string.format("timeout 60 /usr/bin/python3 tools/pyrpc.py call " ..
              "--service %s --port %d --transport %s --protocol %s", svc, srv.port, tr, pp))
            assert.is_true(run_until(loop, function() return not alive(pid) end, 60000))
            local text = read_file(out)
            os.remove(out)
            assert.is_nil(text:find("FAIL"), text)
            local oks = select(2, text:gsub("\nok ", "")) + (text:find("^ok ") and 1 or 0)
            assert.is_true(oks >= (svc == "echo" and 7 or 6), text)
            assert.is_true(srv:stats().calls > 0)
            srv:shutdown()
          end
        end)
      end

      it("a petrel server answers Binary and Compact clients in kind over " .. tr, function()
        local srv = assert(petrel.server { loop = loop, port = 0, service = CALC.Calc,
          handler = calc_handler })
        local cb = petrel.client { loop = loop, service = CALC.Calc, port = srv.port, transport = tr }
        local cc = petrel.client { loop = loop, service = CALC.Calc, port = srv.port, transport = tr,
          protocol = "compact" }
        for i = 1, 3 do
          assert.equal(i + 1, cb:add(i, 1))
          assert.equal(i + 2, cc:add(i, 2))
        end
        local r, e = cc:fail(4)
        assert.is_nil(r)
        assert.equal(4, e.value.code)
        -- a TApplicationException comes back in Compact too
        local Wider = assert(petrel.load("service Calc { i32 nope() }", { text = true }))
        local wc = petrel.client { loop = loop, service = Wider.Calc, port = srv.port, transport = tr,
          protocol = "compact" }
        r, e = wc:nope()
        assert.is_nil(r)
        assert.equal("application", e.kind)
        assert.equal(1, e.type)
        -- JSON too (spec/json_spec.lua has the rest); a protocol petrel
        -- does not have raises
        local cj = petrel.client { loop = loop, service = CALC.Calc, port = srv.port,
          transport = tr, protocol = "json" }
        assert.equal(9, cj:add(4, 5))
        assert.has_error(function()
          petrel.client { loop = loop, service = CALC.Calc, port = srv.port, protocol = "xml" }
        end)
      end)
    end

    -- The reader of a server connection, fed the first k bytes of a
    -- message, then the rest once the reader has seen them: "need more"
    -- after the first piece (never a wrong guess), the message after
    -- the rest.
    it("detects the transport and protocol only once the bytes tell, at every split point", function()
      local lid = assert(loop.c:listen("127.0.0.1", 0))
      local state = {}
      loop:attach(lid, { on_accept = function(_, id)
        local next_msg = rpc._reader(loop, id, "auto", 1048576)
        local st = { got = {}, seen = 0 }
        state.cur = st
        loop:attach(id, { on_data = function()
          st.seen = #loop.c:input(id)
          while true do
            local m, err = next_msg()
            if m == nil then break end
            st.got[#st.got + 1] = m == false and ("error: " .. tostring(err)) or m
            if m == false then break end
          end
          loop.c:consumed(id)
        end, on_closed = function() end })
      end })
      for _, m in ipairs(messages()) do
        local s, what = m[1], m[2]
        local body = s
        if m[3] == "framed" then body = s:sub(5) end
        for k = 1, #s - 1 do
          local id = assert(loop.c:connect("127.0.0.1", loop.c:port(lid), 1000))
          loop:attach(id, { on_connected = function() end, on_data = function() end,
            on_closed = function() end })
          state.cur = nil
          loop.c:output(id):write(s:sub(1, k))
          loop.c:send(id)
          assert.is_true(run_until(loop, function() return state.cur and state.cur.seen >= k end, 5000),
            what .. ": first piece of " .. k)
          local st = state.cur
          assert.equal(0, #st.got, what .. ": answered after " .. k .. " bytes: " .. tostring(st.got[1]))
          loop.c:output(id):write(s:sub(k + 1))
          loop.c:send(id)
          assert.is_true(run_until(loop, function() return #st.got > 0 end, 5000), what .. " split at " .. k)
          assert.equal(body, st.got[1], what .. " split at " .. k)
          loop:close(id)
        end
      end
      loop:close(lid)
    end)

    it("serves every kind of message split at any point, end to end", function()
      local srv = assert(petrel.server { loop = loop, port = 0, service = CALC.Calc,
        handler = calc_handler })
      for _, m in ipairs(messages()) do
        local s, what, proto = m[1], m[2], m[4]
        for _, k in ipairs({ 1, 3, 4, 5, 6, 7, 9, 11, #s - 1 }) do
          local id = assert(loop.c:connect("127.0.0.1", srv.port, 1000))
          local reply
          loop:attach(id, { on_connected = function() end, on_data = function()
            reply = tostring(loop.c:input(id))
          end, on_closed = function() end })
          local before = srv:stats().bytes_in
          loop.c:output(id):write(s:sub(1, k))
          loop.c:send(id)
          assert.is_true(run_until(loop, function() return srv:stats().bytes_in >= before + k end, 5000))
          loop.c:output(id):write(s:sub(k + 1))
          loop.c:send(id)
          assert.is_true(run_until(loop, function()
            if not reply then return false end
            local name, mtype, _, _, p = core.msg_header(m[3] == "framed" and reply:sub(5) or reply)
            return name == "add" and mtype == 2 and p == proto
          end, 5000), what .. " split at " .. k)
          loop:close(id)
        end
      end
    end)

    it("names an HTTP or TLS peer instead of reading a frame of 1213486160 bytes", function()
      local lid = assert(loop.c:listen("127.0.0.1", 0))
      local errs = {}
      loop:attach(lid, { on_accept = function(_, id)
        local next_msg = rpc._reader(loop, id, "auto", 16777216)
        loop:attach(id, { on_data = function()
          local m, err = next_msg()
          if m == false then errs[#errs + 1] = err end
        end, on_closed = function() end })
      end })
      for _, s in ipairs({ "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\22\3\1\0\165\1\0\0\161\3\3" }) do
        local id = assert(loop.c:connect("127.0.0.1", loop.c:port(lid), 1000))
        loop:attach(id, { on_connected = function() end, on_data = function() end,
          on_closed = function() end })
        loop.c:output(id):write(s)
        loop.c:send(id)
        local n = #errs
        assert.is_true(run_until(loop, function() return #errs > n end, 5000))
        loop:close(id)
      end
      assert.matches("an HTTP request on a Thrift port", errs[1], 1, true)
      assert.matches("a TLS handshake on a Thrift port", errs[2], 1, true)
      loop:close(lid)
      -- a server drops such a peer and counts the error
      local srv = assert(petrel.server { loop = loop, port = 0, service = CALC.Calc, handler = calc_handler })
      local id = assert(loop.c:connect("127.0.0.1", srv.port, 1000))
      local closed = false
      loop:attach(id, { on_connected = function() end, on_data = function() end,
        on_closed = function() closed = true end })
      loop.c:output(id):write("GET / HTTP/1.1\r\n\r\n")
      loop.c:send(id)
      assert.is_true(run_until(loop, function() return closed end, 5000))
      assert.equal(1, srv:stats().errors)
    end)
  end)
end

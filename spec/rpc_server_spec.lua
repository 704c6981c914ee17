-- What a server's user meets: petrel.throw by type or field name, handler
-- errors logged through a replaceable logger (oneway ones too), peers told
-- INTERNAL_ERROR without the server's file and line (unless debug), useful
-- text for non-string errors, the handler table checked against the
-- service, options checked at creation. Runs on each loop back end.
local petrel = require "petrel"
local backends = require "support.backends"

local CALC = assert(petrel.load("spec/thrift/calc.thrift"))
local X = assert(petrel.load([[
  exception Xception { 1: i32 errorCode, 2: string message }
  exception Other { 1: string why }
  service T {
    void v(1: string how) throws (1: Xception err),
    i32 n(1: string how) throws (1: Xception err, 2: Other other),
    oneway void o(1: string how),
    i32 plain(1: string how),
  }
]], { text = true, name = "throws.thrift" }))

local net = require "support.net"
local run_until = net.run_until

-- what each `how` makes a handler do
local function act(how)
  if how == "type" then error(petrel.throw("Xception", { errorCode = 1, message = "by type" }))
  elseif how == "field" then error(petrel.throw("err", { errorCode = 2, message = "by field" }))
  elseif how == "other" then error(petrel.throw("Other", { why = "other" }))
  elseif how == "returned" then return nil, petrel.throw("Xception", { errorCode = 3 })
  elseif how == "undeclared" then error(petrel.throw("Nope", { why = "?" }))
  elseif how == "badcontent" then error(petrel.throw("err", { errorCode = "not a number" }))
  elseif how == "string" then error("kaput")
  elseif how == "table" then error({ code = 7, why = "x" })
  elseif how == "tostring" then error(setmetatable({}, { __tostring = function() return "custom text" end }))
  elseif how == "number" then error(42)
  elseif how == "nil" then error()
  end
  return 5
end

local list, why = backends()
for _, be in ipairs(list) do
describe("rpc server (" .. be.name .. ")", function()
  local loop, logged, srv, c
  before_each(function()
    loop = assert(petrel.loop(be.opts))
    logged = {}
    srv = assert(petrel.server { loop = loop, port = 0, service = X.T,
      logger = function(line, info) logged[#logged + 1] = { line = line, info = info } end,
      handler = {
        v = function(how) local r, e = act(how); if e then return r, e end end,
        n = function(how) return act(how) end,
        o = function(how) act(how) end,
        plain = function(how) return act(how) end,
      } })
    c = petrel.client { loop = loop, service = X.T, port = srv.port }
  end)
  after_each(function() loop:free() end)

  it("petrel.throw takes the exception's type name or its throws-field name", function()
    for _, m in ipairs({ "v", "n" }) do
      local r, e = c[m](c, "type")
      assert.is_nil(r, m)
      assert.equal("exception", e.kind)
      assert.equal("err", e.name)
      assert.equal("Xception", e.type)
      assert.equal(1, e.value.errorCode)
      r, e = c[m](c, "field")
      assert.is_nil(r)
      assert.equal("err", e.name)
      assert.equal("by field", e.value.message)
      r, e = c[m](c, "returned")
      assert.is_nil(r)
      assert.equal("err", e.name)
      assert.equal(3, e.value.errorCode)
    end
    local r, e = c:n("other")
    assert.is_nil(r)
    assert.equal("other", e.name)
    assert.equal("Other", e.type)
    assert.equal(0, #logged)
  end)

  it("an undeclared exception is a handler error: INTERNAL_ERROR to the peer, logged", function()
    for _, row in ipairs({ { "v", "undeclared", "'Nope'" }, { "v", "other", "'Other'" },
      { "plain", "type", "'Xception'" } }) do
      local r, e = c[row[1]](c, row[2])
      assert.is_nil(r, row[1] .. " " .. row[2])
      assert.equal("application", e.kind)
      assert.equal(6, e.type)
      assert.matches("undeclared exception " .. row[3], e.message)
    end
    assert.equal(3, #logged)
    assert.matches("undeclared exception 'Nope'", logged[1].line)
    assert.equal("v", logged[1].info.method)
  end)

  it("a declared exception whose contents fail to encode is reported as such", function()
    local r, e = c:v("badcontent")
    assert.is_nil(r)
    assert.equal(6, e.type)
    assert.matches("cannot encode exception err %(Xception%)", e.message)
    assert.matches("errorCode", e.message)
    assert.equal(1, #logged)
    assert.matches("cannot encode exception err", logged[1].line)
    assert.equal(5, c:plain("x")) -- the connection is fine
  end)

  it("logs handler errors in one line with method, peer and message; oneway too", function()
    local r, e = c:plain("string")
    assert.is_nil(r)
    assert.equal(1, #logged)
    local line, info = logged[1].line, logged[1].info
    assert.is_nil(line:find("\n"))
    assert.matches("plain", line)
    assert.matches("127%.0%.0%.1:%d+", line)
    assert.matches("kaput", line)
    assert.equal("plain", info.method)
    assert.matches("^127%.0%.0%.1:%d+$", info.peer)
    assert.matches("rpc_server_spec.lua:%d+: kaput", info.message) -- the log keeps file:line
    assert.equal("kaput", e.message) -- the peer does not get it
    assert.is_true(c:o("string"))
    assert.is_true(c:o("type"))
    assert.is_true(run_until(loop, function() return #logged == 3 end, 5000))
    assert.equal("o", logged[2].info.method)
    assert.is_true(logged[2].info.oneway)
    assert.matches("kaput", logged[2].line)
    assert.matches("Xception", logged[3].line)
  end)

  it("names a unix-socket peer by the socket's path", function()
    local path = os.tmpname()
    os.remove(path)
    local lines = {}
    local s2 = assert(petrel.server { loop = loop, unix = path, service = X.T,
      logger = function(line, info) lines[#lines + 1] = info.peer end, handler = {
        plain = function(how) return act(how) end, v = function() end,
        n = function() return 1 end, o = function() end } })
    local k = petrel.client { loop = loop, service = X.T, unix = path }
    local r = k:plain("string")
    assert.is_nil(r)
    assert.same({ "unix:" .. path }, lines)
    s2:shutdown()
    os.remove(path)
  end)

  it("the default logger writes one line to stderr", function()
    local real, tmp = io.stderr, assert(io.tmpfile())
    local s2 = assert(petrel.server { loop = loop, port = 0, service = X.T, handler = {
      plain = function(how) return act(how) end, v = function() end, n = function() return 1 end,
      o = function() end } })
    local k = petrel.client { loop = loop, service = X.T, port = s2.port }
    io.stderr = tmp
    local ok, r, e = pcall(k.plain, k, "string")
    io.stderr = real
    assert.is_true(ok)
    assert.is_nil(r)
    assert.equal(6, e.type)
    tmp:seek("set")
    local text = tmp:read("*a")
    tmp:close()
    local _, lines = text:gsub("\n", "")
    assert.equal(1, lines, text)
    assert.matches("plain", text)
    assert.matches("127%.0%.0%.1:%d+", text)
    assert.matches("kaput", text)
  end)

  it("debug = true sends the file and line to the peer", function()
    local s2 = assert(petrel.server { loop = loop, port = 0, service = X.T, debug = true,
      logger = false, handler = { plain = function(how) return act(how) end } })
    local k = petrel.client { loop = loop, service = X.T, port = s2.port }
    local _, e = k:plain("string")
    assert.matches("rpc_server_spec.lua:%d+: kaput", e.message)
  end)

  it("renders non-string errors usefully", function()
    local rows = {
      { "table", { "code = 7", "why = \"x\"" } },
      { "tostring", { "custom text" } },
      { "number", { "42" } },
      { "nil", { "nil" } },
    }
    for i, row in ipairs(rows) do
      local r, e = c:plain(row[1])
      assert.is_nil(r)
      assert.equal(6, e.type)
      for _, want in ipairs(row[2]) do
        assert.matches(want, e.message, 1, true)
        assert.matches(want, logged[i].line, 1, true)
      end
      assert.is_nil(e.message:find("table: 0x", 1, true))
    end
  end)

  it("checks the handler table against the service at creation", function()
    local ok, err = pcall(petrel.server, { loop = loop, port = 0, service = CALC.Calc,
      handler = { add = function() end, ad = function() end } })
    assert.is_false(ok)
    assert.matches("petrel.server: handler 'ad' is not a function of service Calc", tostring(err))
    ok, err = pcall(petrel.server, { loop = loop, port = 0, service = CALC.Calc,
      handler = { add = 5 } })
    assert.is_false(ok)
    assert.matches("handler 'add' must be a function", tostring(err))
    local lines = {}
    local s2 = assert(petrel.server { loop = loop, port = 0, service = CALC.Calc,
      logger = function(line) lines[#lines + 1] = line end,
      handler = { add = function(a, b) return a + b end, ping = function() end } })
    assert.same({ "echo", "fail", "many", "note", "notes" }, s2.missing)
    assert.equal(1, #lines)
    assert.matches("no handler for echo, fail, many, note, notes", lines[1])
    -- handlers inherited through __index count
    local s3 = assert(petrel.server { loop = loop, port = 0, service = CALC.Calc, logger = false,
      handler = setmetatable({}, { __index = function() return function() end end }) })
    assert.same({}, s3.missing)
  end)

  it("checks options at creation, naming the option", function()
    local base = { loop = loop, port = 0, service = CALC.Calc, handler = { add = function() end },
      logger = false }
    net.bad_options(petrel.server, "petrel.server", base, {
      { "transport", "bufered", "option 'transport'.*\"bufered\"" },
      { "idle_timeout", "fast", "option 'idle_timeout'" },
      { "max_frame", 0, "option 'max_frame'" },
      { "prot", 1, "unknown option 'prot'" },
      { "logger", "stderr", "option 'logger'" },
      { "debug", "yes", "option 'debug'" },
      { "port", -1, "option 'port'" },
      { "handler", "x", "option 'handler'" },
      { "service", CALC, "option 'service'" },
    })
    net.bad_options(petrel.serve, "petrel.serve", base, {
      { "workers", "many", "option 'workers'" },
      { "bogus", 1, "unknown option 'bogus'" },
    })
  end)
end)
end
if why then
  describe("rpc server (io_uring)", function()
    it("runs on io_uring", function() pending("SKIP: io_uring is not available here: " .. tostring(why)) end)
  end)
end

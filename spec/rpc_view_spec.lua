-- Lazy servers (petrel.server{ lazy = true | { method = true } }): handlers
-- get message views of their arguments instead of decoded tables; a view
-- returned (or placed in the result) is sent as its bytes; the views
-- expire when the handler returns unless retained; bad argument bytes give
-- the peer an error naming the path and offset; lazy clients get views of
-- their results. Both protocols, both
-- transports, each loop back end; Lua 5.4 and LuaJIT.
local petrel = require "petrel"
local backends = require "support.backends"
local net = require "support.net"
local W = require "bench.workload"
local slurp = require "support.slurp"

local V = petrel.view
local run_until = net.run_until
local DATA = "bench/data/"

local list, why = backends()
for _, be in ipairs(list) do
describe("lazy rpc server (" .. be.name .. ")", function()
  local loop, srv, logged, kept
  local seen = {}
  local handler = {
    -- the argument returned as it came: no decode, no encode
    echo = function(req)
      seen.echo = V.is(req)
      kept = req
      if req.query == "retain" then V.retain(req) end
      return req
    end,
    fire = function() end,
    -- reads 3 fields, returns a small struct
    big = function(req)
      seen.big = V.is(req)
      -- a nested view placed in the result: written as its bytes
      return { Num = req.Num + 1, Ano = req.Ano, Nums = { #req.Nums } }
    end,
    blob = function(req)
      seen.blob = V.is(req)
      return { name = req.name, data = req.data }
    end,
    vectors = function(req) return req end,
  }

  local function call(c, m, ...)
    local r, e, done
    local args = { ... }
    loop:spawn(function()
      r, e = c[m](c, table.unpack and table.unpack(args) or unpack(args))
      done = true
    end)
    assert.is_true(run_until(loop, function() return done end, 20000), "no reply in time")
    return r, e
  end

  before_each(function()
    loop = assert(petrel.loop(be.opts))
    logged = {}
    kept, seen = nil, {}
  end)
  after_each(function()
    kept = nil
    loop:free()
    collectgarbage()
  end)

  local function server(lazy, transport)
    srv = assert(petrel.server { loop = loop, port = 0, service = W.Echo, lazy = lazy,
      transport = transport,
      logger = function(line, info) logged[#logged + 1] = { line = line, info = info } end,
      handler = handler })
    return srv
  end

  for _, case in ipairs({ { "binary", "framed" }, { "compact", "framed" },
    { "binary", "buffered" }, { "compact", "buffered" } }) do
    local proto, transport = case[1], case[2]
    it("echo returns its argument view as it came (" .. proto .. ", " .. transport .. ")", function()
      server(true, transport == "buffered" and "buffered" or nil)
      local c = petrel.client { loop = loop, service = W.Echo, port = srv.port,
        protocol = proto, transport = transport }
      local pinned0 = petrel.pool_stats().retained_bytes
      for _, w in ipairs({ "small", "medium" }) do
        local d = W.Request:decode(slurp(DATA .. w .. ".bin"))
        local r, e = call(c, "echo", d)
        assert.is_nil(e)
        assert.is_true(seen.echo)
        assert.equal(W.Request:encode(d), W.Request:encode(r))
        -- the handler's view expired when it returned
        assert.error_matches(function() return kept.user_id end, "view expired")
      end
      c:close()
      collectgarbage()
      assert.equal(pinned0, petrel.pool_stats().retained_bytes)
    end)
  end

  it("reads fields and returns a small struct; views mixed into result tables", function()
    server(true)
    local c = petrel.client { loop = loop, service = W.Echo, port = srv.port }
    local r, e = call(c, "big", { Num = 7, Ano = { Num = 8 }, Nums = { 1, 2, 3, 4 } })
    assert.is_nil(e)
    assert.is_true(seen.big)
    assert.equal(8, r.Num)
    assert.equal(8, r.Ano.Num)
    assert.same({ 4 }, { r.Nums[1] })
    local bl = string.rep("x", 100000)
    r, e = call(c, "blob", { name = "n", data = bl })
    assert.is_nil(e)
    assert.equal(bl, r.data)
    assert.equal("n", r.name)
  end)

  it("lazy = { method = true }: only those get views; unknown names raise", function()
    server({ echo = true })
    local c = petrel.client { loop = loop, service = W.Echo, port = srv.port }
    local d = W.Request:decode(slurp(DATA .. "small.bin"))
    local r = assert(call(c, "echo", d))
    assert.equal(d.query, r.query)
    assert.is_true(seen.echo)
    r = assert(call(c, "blob", { name = "x", data = "y" }))
    assert.equal("y", r.data)
    assert.is_false(seen.blob)
    assert.error_matches(function()
      petrel.server { loop = loop, port = 0, service = W.Echo, lazy = { ehco = true }, handler = handler }
    end, "lazy names 'ehco'")
    assert.error_matches(function()
      petrel.server { loop = loop, port = 0, service = W.Echo, lazy = "yes", handler = handler }
    end, "lazy")
  end)

  it("a retained view outlives its handler; release ends it", function()
    server(true)
    local c = petrel.client { loop = loop, service = W.Echo, port = srv.port }
    local d = W.Request:decode(slurp(DATA .. "medium.bin"))
    d.query = "retain"
    assert(call(c, "echo", d))
    local k = kept
    -- more calls reuse the server's messages; the retained one stays
    d.query = "other"
    for _ = 1, 5 do assert(call(c, "echo", d)) end
    collectgarbage()
    assert.equal("retain", k.query)
    assert.equal(d.items[9].title, k.items[9].title)
    assert.is_true(petrel.pool_stats().retained_bytes > 0)
    V.release(k)
    assert.error_matches(function() return k.query end, "view expired")
  end)

  it("a lazy client gets views of its results (a lazy server or not)", function()
    for _, lazy in ipairs({ true, false }) do
      server(lazy)
      local c = petrel.client { loop = loop, service = W.Echo, port = srv.port, lazy = true }
      local d = W.Request:decode(slurp(DATA .. "medium.bin"))
      local r, e = call(c, "echo", d)
      assert.is_nil(e)
      assert.is_true(V.is(r))
      assert.equal(d.items[17].title, r.items[17].title)
      assert.equal(W.Request:encode(d), V.bytes(r))
      local m = assert(call(c, "big", { Num = 1, Ano = { Num = 2 }, Nums = { 5 } }))
      assert.is_true(V.is(m))
      assert.equal(2, m.Ano.Num)
      c:close()
    end
    assert.error_matches(function()
      petrel.client { loop = loop, service = W.Echo, port = srv.port, lazy = 1 }
    end, "lazy")
  end)

  it("bad argument bytes: the peer gets an error with the path and offset", function()
    server(true)
    local req = { user_id = 1, item_ids = { 1, 2, 3 }, query = "q" }
    local b = petrel.buffer()
    W.Echo.functions.echo.args:encode_message({ req = req }, b, "echo", 1, 7, true)
    local s = b:read()
    local at = assert(s:find("\15\0\3\10\0\0\0\3", 1, true))
    s = s:sub(1, at + 3) .. "\127\255\255\255" .. s:sub(at + 8)
    -- the handler reads the list: a raise naming where
    local orig = handler.echo
    handler.echo = function(r) return { user_id = #r.item_ids } end
    local got = ""
    local id = assert(loop.c:connect("127.0.0.1", srv.port, 1000))
    loop:attach(id, {
      on_connected = function() end,
      on_data = function(_, cid) local inb = loop.c:input(cid); got = got .. inb:read() end,
      on_closed = function() end,
    })
    loop.c:output(id):write(s)
    loop.c:send(id)
    assert.is_true(run_until(loop, function() return got:find("offset", 1, true) ~= nil end, 20000),
      "no error reply: " .. got)
    assert.matches("item_ids", got)
    assert.equal(1, #logged)
    assert.matches("at offset %d+", logged[1].line)
    handler.echo = orig
  end)
end)
end
if why then
  describe("lazy rpc server (io_uring)", function()
    pending("SKIP: io_uring unavailable: " .. tostring(why))
  end)
end

-- Apache Thrift's cross-language tests against petrel, for every protocol
-- petrel speaks today (the rows marked ready in
-- examples/thrift_test_common.lua) over the framed and buffered transports:
-- petrel's ThriftTest server with the checks of Apache's Python test client
-- (tools/crossclient.py --strict), petrel's client against Apache's Python
-- test server (tools/crossserver.py --strict), and petrel against itself.
-- Each side is a process: the server or client under test runs on the
-- interpreter running this spec and on the back end PETREL_BACKEND names.
-- Everything is bounded in time and talks to 127.0.0.1 or a unix socket.
local X = require "support.crosstest"

local PROTOCOLS = X.ready_protocols()
local TRANSPORTS = X.common.TRANSPORTS
local BACKEND = os.getenv("PETREL_BACKEND") or "epoll"
-- what the processes under test name as their back end in their output
local BACKEND_TEXT = ({ epoll = "epoll", uring = "io_uring" })[BACKEND]

local function on_backend(text)
  if BACKEND_TEXT then
    assert.is_truthy(text:find(", " .. BACKEND_TEXT, 1, true), "not on " .. BACKEND .. ": " .. text)
  end
end

-- Run fn(srv) with a server (srv, why: what a starter returned), then stop
-- it; failures carry the server's output.
local function with_server(fn, srv, why)
  assert(srv, why)
  local ok, err = pcall(fn, srv)
  local log = X.stop(srv)
  if not ok then error(tostring(err) .. "\n-- server output:\n" .. log, 0) end
end

local function all_passed(out, passed, total, want)
  assert.equal(want, total, out)
  assert.equal(total, passed, out)
end

describe("cross tests (" .. X.LUA .. ", " .. BACKEND .. ")", function()
  it("has the protocols petrel passes listed", function()
    assert.is_true(#PROTOCOLS >= 2)
    for _, p in ipairs(PROTOCOLS) do assert.is_table(X.common.protocol(p)) end
  end)

  -- one test per ready protocol and transport
  local function each_combination(fn)
    for _, proto in ipairs(PROTOCOLS) do
      for _, tr in ipairs(TRANSPORTS) do
        it(proto .. " over " .. tr .. ": every check passes", function() fn(proto, tr) end)
      end
    end
  end

  describe("petrel server, Apache's Python test client", function()
    each_combination(function(proto, tr)
      with_server(function(srv)
        on_backend(srv.line)
        local out, passed, total = X.python_client(srv, proto, tr, { strict = true })
        all_passed(out, passed, total, X.APACHE_CHECKS)
      end, X.petrel_server(proto, tr))
    end)
  end)

  describe("petrel client, Apache's Python test server", function()
    each_combination(function(proto, tr)
      with_server(function(srv)
        local out, passed, total, _, apache = X.lua_client(srv, proto, tr)
        on_backend(out)
        assert.equal(X.APACHE_CHECKS, apache, out)
        all_passed(out, passed, total, X.LUA_CHECKS)
      end, X.python_server(proto, tr, { strict = true }))
    end)
  end)

  describe("petrel client, petrel server", function()
    each_combination(function(proto, tr)
      with_server(function(srv)
        local out, passed, total = X.lua_client(srv, proto, tr)
        all_passed(out, passed, total, X.LUA_CHECKS)
      end, X.petrel_server(proto, tr))
    end)
  end)

  it("serves the checks over a unix socket", function()
    local path = os.tmpname()
    os.remove(path) -- a unique name; the server creates the socket
    with_server(function(srv)
      assert.equal(path, srv.unix)
      local out, passed, total = X.python_client(srv, PROTOCOLS[1], "buffered", { strict = true })
      all_passed(out, passed, total, X.APACHE_CHECKS)
      out, passed, total = X.lua_client(srv, PROTOCOLS[1], "buffered")
      all_passed(out, passed, total, X.LUA_CHECKS)
    end, X.petrel_server(PROTOCOLS[1], "buffered", { unix = path }))
    os.remove(path)
  end)

  it("fails checks that fail: a client speaking another protocol gets errors, not passes", function()
    -- the harness itself: a Compact client against a Binary-only Python
    -- server must not pass (so a pass above means something)
    with_server(function(srv)
      local out, passed, total = X.python_client(srv, "compact", "framed", { timeout = 3 })
      assert.equal(X.APACHE_CHECKS, total, out)
      assert.is_true(passed < total / 2, out)
    end, X.python_server("binary", "framed"))
    -- and petrel's client speaking Binary to a Compact server
    with_server(function(srv)
      local out, passed, total, _, apache = X.lua_client(srv, "binary", "framed", { timeout = 3 })
      assert.equal(X.LUA_CHECKS, total, out)
      assert.equal(X.APACHE_CHECKS, apache, out)
      assert.is_true(passed < total / 2, out)
    end, X.python_server("compact", "framed"))
  end)
end)

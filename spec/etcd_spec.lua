-- The etcd client (petrel.etcd over petrel.http): HTTP/1.1 against
-- in-process peers that misbehave, then a real etcd (Debian's
-- etcd-server) started on 127.0.0.1 with ports picked now and a temporary
-- data dir: kv, leases, watches, failover, registrations of servers and
-- resolvers, a crashed registrant's lease expiring, etcd going away and
-- coming back. Both loop back ends.
local petrel = require "petrel"
local http = require "petrel.http"
local backends = require "support.backends"
local net = require "support.net"
local etcdp = require "support.etcd"
local procs = require "support.cluster"
local run_until = net.run_until

local NS = assert(petrel.load("spec/thrift/cluster.thrift"))

-- An HTTP peer on loop: respond(id, request_text) is called for each
-- complete request (headers + Content-Length body) and writes what it
-- likes with the helpers; st.accepted counts connections.
local function http_peer(loop, respond)
  local lid = assert(loop.c:listen("127.0.0.1", 0))
  local st = { port = loop.c:port(lid), accepted = 0, requests = 0 }
  function st.send(id, bytes)
    local out = loop.c:output(id)
    if out then out:write(bytes); loop.c:send(id) end
  end
  -- bytes in pieces of n, one piece per ms
  function st.drip(id, bytes, n, then_close)
    local i = 1
    local function step()
      if i > #bytes then
        if then_close then loop:close(id, true) end
        return
      end
      st.send(id, bytes:sub(i, i + n - 1))
      i = i + n
      loop:after(1, step)
    end
    step()
  end
  loop:attach(lid, { on_accept = function(_, id)
    st.accepted = st.accepted + 1
    loop:attach(id, { on_data = function(_, cid)
      local inb = loop.c:input(cid)
      while true do
        local _, e = inb:find("\r\n\r\n")
        if not e then break end
        local head = inb:peek(e)
        local len = tonumber(head:match("[Cc]ontent%-[Ll]ength: (%d+)")) or 0
        if #inb < e + len then break end
        local req = inb:read(e + len)
        st.requests = st.requests + 1
        respond(cid, req)
      end
      loop.c:consumed(cid)
    end })
  end })
  function st.close() loop:close(lid) end
  return st
end

local function ok_response(body, extra)
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" .. (extra or "")
    .. "Content-Length: " .. #body .. "\r\n\r\n" .. body
end

local list, why = backends()
for _, be in ipairs(list) do
describe("petrel.http (" .. be.name .. ")", function()
  local loop
  before_each(function() loop = assert(petrel.loop(be.opts)) end)
  after_each(function() loop:free() end)

  it("reuses a keep-alive connection and reads responses however they arrive", function()
    local peer
    peer = http_peer(loop, function(id, req)
      local path = req:match("^POST (%S+)")
      if path == "/drip" then
        peer.drip(id, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
          .. "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 3)
      else
        peer.send(id, ok_response('{"echo":' .. #req .. '}'))
      end
    end)
    local a = http.agent(loop)
    for i = 1, 3 do
      local status, body = a:request("127.0.0.1", peer.port, "POST", "/x", string.rep("b", i))
      assert.equal(200, status)
      assert.matches('{"echo":%d+}', body)
    end
    local status, body, headers = a:request("127.0.0.1", peer.port, "POST", "/drip", "{}")
    assert.equal(200, status)
    assert.equal("hello world", body)
    assert.equal("chunked", headers["transfer-encoding"])
    assert.equal(1, peer.accepted)
    assert.equal(4, peer.requests)
  end)

  it("replaces a kept connection the server closed, and honours Connection: close", function()
    local peer
    peer = http_peer(loop, function(id, req)
      if req:find("^POST /close") then
        peer.send(id, ok_response("bye", "Connection: close\r\n"))
        loop:close(id, true)
      else
        peer.send(id, ok_response("ok"))
        loop:close(id, true) -- closes without saying so
      end
    end)
    local a = http.agent(loop)
    assert.equal("ok", select(2, a:request("127.0.0.1", peer.port, "POST", "/a", "1")))
    loop:sleep(20) -- the close arrives while the connection is idle
    assert.equal("ok", select(2, a:request("127.0.0.1", peer.port, "POST", "/a", "1")))
    -- kept but closed in the same moment: the request finds it dead and
    -- goes again on a fresh one
    local c = a:_take("127.0.0.1:" .. peer.port)
    if c then a:_put(c) end
    assert.equal("bye", select(2, a:request("127.0.0.1", peer.port, "POST", "/close", "1")))
    assert.is_nil(a.idle["127.0.0.1:" .. peer.port] and a.idle["127.0.0.1:" .. peer.port][1])
    assert.is_true(peer.accepted >= 3)
  end)

  it("fails cleanly on malformed, oversized, cut and missing responses", function()
    local mode
    local peer
    peer = http_peer(loop, function(id)
      if mode == "garbage" then peer.send(id, "SSH-2.0-OpenSSH_9.2\r\n\r\n")
      elseif mode == "huge" then peer.send(id, "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nx")
      elseif mode == "cut" then peer.drip(id, ok_response("0123456789"):sub(1, -4), 7, true)
      elseif mode == "headers" then
        peer.send(id, "HTTP/1.1 200 OK\r\n" .. string.rep("X-Pad: " .. string.rep("p", 1000) .. "\r\n", 20))
      end -- "silent": nothing
    end)
    local a = http.agent(loop, { max_body = 1024 })
    local rows = {
      { "garbage", "malformed response" },
      { "huge", "Content%-Length 99999999999 over the body limit" },
      { "cut", "middle of a response" },
      { "headers", "header section over" },
      { "silent", "timeout after 200 ms" },
    }
    for _, row in ipairs(rows) do
      mode = row[1]
      -- only the silent peer is waited out (200 ms); the others must fail
      -- on what they sent, long before a 10 s timeout (a 200 ms one there
      -- ran out first on a busy machine while "cut" dripped its bytes)
      local silent = mode == "silent"
      local t0 = loop:now()
      local status, err = a:request("127.0.0.1", peer.port, "POST", "/", "{}", nil,
        silent and 200 or 10000)
      local took = loop:now() - t0
      assert.is_nil(status, mode)
      assert.matches(row[2], err)
      assert.matches("127.0.0.1:" .. peer.port, err)
      assert.is_true(took < 5000, mode .. " took " .. took .. " ms")
      if silent then assert.is_true(took >= 190, "gave up after " .. took .. " ms") end
    end
    local dead = net.dead_port(loop)
    local status, err = a:request("127.0.0.1", dead, "GET", "/")
    assert.is_nil(status)
    assert.matches("connect 127.0.0.1:" .. dead .. ": Connection refused", err)
  end)

  it("streams a chunked response piece by piece", function()
    local peer
    peer = http_peer(loop, function(id)
      peer.send(id, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
      local n = 0
      local function tick()
        n = n + 1
        if n > 5 then return peer.send(id, "0\r\n\r\n") end
        local line = '{"n":' .. n .. '}\n'
        peer.send(id, string.format("%x\r\n%s\r\n", #line, line))
        loop:after(5, tick)
      end
      tick()
    end)
    local a = http.agent(loop)
    local lines, ended = {}, false
    local s = assert(a:stream("127.0.0.1", peer.port, "POST", "/v3/watch", "{}", {
      data = function(buf)
        local _, e = buf:find("\n")
        while e do
          lines[#lines + 1] = buf:read(e)
          _, e = buf:find("\n")
        end
      end,
      done = function(err) ended = err or true end }))
    assert.equal(200, s.status)
    assert.is_true(run_until(loop, function() return ended end, 5000))
    assert.is_true(ended)
    assert.same({ '{"n":1}\n', '{"n":2}\n', '{"n":3}\n', '{"n":4}\n', '{"n":5}\n' }, lines)
  end)

  it("parses endpoints", function()
    assert.same({ "127.0.0.1", 2379 }, { http.parse_endpoint("http://127.0.0.1:2379") })
    assert.same({ "127.0.0.1", 2379 }, { http.parse_endpoint("127.0.0.1:2379/") })
    assert.same({ "::1", 2379 }, { http.parse_endpoint("http://[::1]:2379") })
    assert.matches("only http://", select(2, http.parse_endpoint("https://127.0.0.1:2379")))
    assert.matches("host:port expected", select(2, http.parse_endpoint("127.0.0.1")))
    assert.matches("host:port expected", select(2, http.parse_endpoint("h:99999")))
  end)
end)
end
if why then
  describe("petrel.http (io_uring)", function()
    it("runs on io_uring", function() pending("io_uring is not available here: " .. tostring(why)) end)
  end)
end

describe("petrel.etcd options", function()
  it("are checked at creation", function()
    net.bad_options(petrel.etcd, "petrel.etcd", { endpoints = { "127.0.0.1:2379" } }, {
      { "endpoints", {}, "at least one endpoint" },
      { "endpoints", { "https://127.0.0.1:2379" }, "only http://" },
      { "timeout", -1, "option 'timeout'" },
      { "ttl", 0, "option 'ttl'" },
      { "endpoint", { "x" }, "unknown option 'endpoint' %(did you mean 'endpoints'%?%)" },
    })
  end)
end)

-- ---- a real etcd ------------------------------------------------------------------------

if not etcdp.present("etcd") then return end

for _, be in ipairs(list) do
describe("etcd (" .. be.name .. ")", function()
  local proc, loop, reg

  setup(function() proc = etcdp.start() end)
  teardown(function() if proc then proc:cleanup() end end)
  before_each(function()
    loop = assert(petrel.loop(be.opts))
    reg = petrel.etcd { endpoints = { proc.url }, loop = loop, ttl = 2 }
  end)
  after_each(function()
    reg:close()
    loop:free()
  end)

  it("puts, gets, lists and deletes keys with any bytes", function()
    local bin = "\0\1\255 bytes\n" .. string.rep("x", 100000)
    assert.is_number(reg:put("spec/kv/a", "1"))
    assert.is_number(reg:put("spec/kv/b", bin))
    assert.is_number(reg:put("spec/kvz", "outside the prefix"))
    assert.equal("1", reg:get("spec/kv/a"))
    assert.equal(bin, reg:get("spec/kv/b"))
    assert.is_false(reg:get("spec/kv/none"))
    local kvs, rev = reg:list("spec/kv/")
    assert.equal(2, #kvs)
    assert.equal("spec/kv/a", kvs[1].key)
    assert.is_true(rev >= kvs[2].mod_revision)
    assert.equal(2, reg:delete("spec/kv/", true))
    assert.equal(0, #reg:list("spec/kv/"))
    assert.equal(1, reg:delete("spec/kvz"))
  end)

  it("grants, keeps alive and revokes leases; keys go with their lease", function()
    local lease, ttl = reg:grant(5)
    assert.is_string(lease)
    assert.equal(5, ttl)
    assert.is_number(reg:put("spec/lease/k", "v", lease))
    assert.equal(5, reg:keepalive(lease))
    assert.equal(0, reg:keepalive("12345")) -- no such lease
    assert.is_true(reg:revoke(lease))
    assert.is_false(reg:get("spec/lease/k"))
    assert.is_true(reg:revoke(lease)) -- already gone: fine
  end)

  it("fails over to the next endpoint and remembers it", function()
    local dead = net.dead_port(loop)
    local r2 = petrel.etcd { endpoints = { "http://127.0.0.1:" .. dead, proc.url }, loop = loop }
    assert.is_number(r2:put("spec/fo", "x"))
    assert.equal(2, r2.cur)
    assert.equal(1, r2:stats().failovers)
    assert.equal("x", r2:get("spec/fo"))
    assert.equal(1, r2:stats().failovers) -- went straight to the one that answered
    -- refused at once; the timeout is only a bound (500 ms could run out
    -- first on a process kept off the CPU that long)
    local r3 = petrel.etcd { endpoints = { "http://127.0.0.1:" .. dead }, loop = loop,
      timeout = 5000 }
    local v, err = r3:get("spec/fo")
    assert.is_nil(v)
    assert.matches("Connection refused", err)
    r2:close()
  end)

  it("registers a server, resolves it, and deregisters before draining", function()
    local res = reg:resolver("spec-echo", { loop = loop })
    assert.is_true(res:wait(5000))
    assert.equal(0, #res.list)
    local srv = assert(petrel.server { loop = loop, host = "127.0.0.2", port = 0,
      service = NS.Where, logger = false, registry = reg, service_name = "spec-echo",
      weight = 7, tags = { zone = "a" }, deregister_wait = 200, handler = {
        where = function() return "a" end,
        bump = function(n) return n + 1 end,
        slow = function(ms) loop:sleep(ms); return "slow" end } })
    assert.is_true(srv.registration:wait(5000))
    local key = "kitex/registry-etcd/spec-echo/127.0.0.2:" .. srv.port
    local value = assert(reg:get(key))
    local json = require "petrel.json"
    local t = json.decode(value)
    assert.equal("tcp", t.network)
    assert.equal("127.0.0.2:" .. srv.port, t.address)
    assert.equal(7, math.floor(t.weight))
    assert.equal("a", t.tags.zone)
    assert.is_true(run_until(loop, function() return #res.list == 1 end, 5000))
    assert.equal(7, res.list[1].weight)
    assert.equal(srv.port, res.list[1].port)
    -- a call in flight while the server shuts down: the entry goes first,
    -- the call still completes, then the server drains
    local c = petrel.client { loop = loop, service = NS.Where, host = "127.0.0.2", port = srv.port }
    local got, gone_at, drained_at
    -- the call lasts 1.5 s, so that the resolver's watch (another
    -- process, etcd, in between) sees the entry go well before the drain
    -- ends on a busy machine too (400 ms was not always enough)
    loop:spawn(function() got = c:slow(1500) end)
    loop:sleep(20)
    res:subscribe(function(r) if #r.list == 0 then gone_at = loop:now() end end)
    local t0 = loop:now()
    srv:shutdown(function() drained_at = loop:now() end)
    assert.is_true(run_until(loop, function()
      return drained_at ~= nil and got ~= nil and gone_at ~= nil
    end, 15000))
    assert.equal("slow", got)
    assert.is_not_nil(gone_at)
    assert.is_true(gone_at < drained_at)
    assert.is_true(gone_at - t0 < drained_at - t0)
    assert.is_false(reg:get(key))
    res:close()
  end)

  it("sees entries appear, change and vanish; skips values it cannot read", function()
    local res = reg:resolver("spec-watch", { loop = loop })
    assert.is_true(res:wait(5000))
    local changes = 0
    res:subscribe(function() changes = changes + 1 end)
    local p = "kitex/registry-etcd/spec-watch/"
    reg:put(p .. "127.0.0.3:1", '{"network":"tcp","address":"127.0.0.3:1","weight":3}')
    assert.is_true(run_until(loop, function() return #res.list == 1 end, 5000))
    reg:put(p .. "127.0.0.3:1", '{"network":"tcp","address":"127.0.0.3:1","weight":9}')
    assert.is_true(run_until(loop, function() return res.list[1].weight == 9 end, 5000))
    reg:put(p .. "junk", "not json")
    reg:put(p .. "127.0.0.4:2", '{"address":"127.0.0.4:2"}')
    assert.is_true(run_until(loop, function() return #res.list == 2 end, 5000))
    assert.equal(10, res.list[2].weight) -- registry-etcd's default
    assert.is_true(res:stats().bad_values >= 1)
    reg:delete(p, true)
    assert.is_true(run_until(loop, function() return #res.list == 0 end, 5000))
    assert.is_true(changes >= 4)
    res:close()
  end)

  it("a crashed server's entry disappears when its lease expires", function()
    local s = procs.server(proc.url, "127.0.0.5", { service = "spec-crash", ttl = 3,
      backend = be.opts.backend })
    local ok, err = pcall(function() s:ready(loop, 20000) end)
    assert(ok, err)
    local key = "kitex/registry-etcd/spec-crash/" .. s.address
    assert.is_string(reg:get(key))
    s:kill()
    local t0 = loop:now()
    -- nobody deleted it: the lease runs out. Looked at right after the
    -- kill (the lease has 2 s left at least: renewed every second); after
    -- waiting for the process to go, a busy machine had let it expire
    assert.is_string(reg:get(key))
    assert.is_true(s:wait_gone(loop, 5000))
    assert.is_true(run_until(loop, function() return reg:get(key) == false end, 15000))
    local took = loop:now() - t0
    assert.is_true(took <= 3000 + 5000, "gone after " .. took .. " ms")
    s:cleanup()
  end)

  it("keeps the last list while etcd is away and registrations recover after", function()
    local r1 = reg:register { service = "spec-outage", address = "127.0.0.6:1", loop = loop }
    assert.is_true(r1:wait(5000))
    local res = reg:resolver("spec-outage", { loop = loop })
    assert.is_true(res:wait(5000))
    assert.equal(1, #res.list)
    proc:stop()
    assert.is_true(run_until(loop, function() return res.state == "retrying" end, 5000))
    loop:sleep(2500) -- longer than the lease's ttl
    assert.equal(1, #res.list)
    assert.equal("127.0.0.6:1", res.list[1].address)
    proc:restart()
    -- the resolver watches again: a new entry shows up
    local r2 = reg:register { service = "spec-outage", address = "127.0.0.7:1", loop = loop }
    assert.is_true(r2:wait(10000))
    assert.is_true(run_until(loop, function() return #res.list == 2 end, 10000))
    -- and the first registration is alive (kept alive, or registered again)
    loop:sleep(2500)
    assert.is_string(reg:get("kitex/registry-etcd/spec-outage/127.0.0.6:1"))
    assert.is_true(r1.registered)
    assert.is_true(r1:deregister(2000))
    assert.is_true(r2:deregister(2000))
    assert.is_true(run_until(loop, function() return #res.list == 0 end, 5000))
    res:close()
  end)

  -- once per runtime is enough (the example makes its own loop)
  if be.name == "epoll" then
  it("runs the README's etcd examples (```lua etcd blocks) against this etcd", function()
    local f = assert(io.open("README.md"))
    local text = f:read("*a")
    f:close()
    local n = 0
    for block in text:gmatch("```lua etcd\n(.-)```") do
      n = n + 1
      local path = os.tmpname()
      local out = assert(io.open(path, "w"))
      out:write(block)
      out:close()
      local build = os.getenv("PETREL_BUILD") or "build"
      local rt = jit and "luajit" or "lua5.4"
      local p = io.popen(string.format("ETCD=%s LUA_PATH='lua/?.lua;lua/?/init.lua;;' "
        .. "LUA_CPATH='%s/%s/?.so;;' %s %s 2>&1; echo \"exit=$?\"", proc.url, build, rt,
        procs.lua(), path))
      local res = p:read("*a")
      p:close()
      os.remove(path)
      assert.matches("exit=0", res, 1, true)
      assert.matches("hi from 127.0.0.", res, 1, true)
    end
    assert.is_true(n >= 1)
  end)
  end

  it("petrel.serve with workers registers the shared port once, from the parent", function()
    local port = net.dead_port(loop)
    local s = procs.server(proc.url, "127.0.0.8", { service = "spec-workers", workers = 2,
      port = port, ttl = 10, deregister_wait = 100, backend = be.opts.backend })
    local key = "kitex/registry-etcd/spec-workers/127.0.0.8:" .. port
    local ok, err = pcall(function()
      assert.is_true(run_until(loop, function() return reg:get(key) ~= false end, 20000), s:output())
      local kvs = reg:list("kitex/registry-etcd/spec-workers/")
      assert.equal(1, #kvs)
      local c = petrel.client { loop = loop, service = NS.Where, host = "127.0.0.8", port = port }
      assert.equal("127.0.0.8:" .. port, c:where(1))
      s:term()
      assert.is_true(s:wait_gone(loop, 10000))
      assert.is_false(reg:get(key))
    end)
    -- on a failure too: SIGTERM stops the workers with their parent (the
    -- SIGKILL of cleanup would leave them running)
    if not ok and s:alive() then s:term(); s:wait_gone(loop, 10000) end
    s:cleanup()
    assert(ok, err)
  end)
end)
end

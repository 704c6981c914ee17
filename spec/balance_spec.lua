-- Load balancing, circuit breaking, retries (petrel.balance, petrel.breaker,
-- petrel.cluster) — the policies alone, then clients over several
-- in-process servers on 127.0.0.x with static instance lists, on both
-- loop back ends. petrel.json and the base64 of the etcd client too.
local petrel = require "petrel"
local core = require "petrel.core"
local balance = require "petrel.balance"
local breaker = require "petrel.breaker"
local cluster = require "petrel.cluster"
local json = require "petrel.json"
local etcd = require "petrel.etcd"
local backends = require "support.backends"
local net = require "support.net"
local run_until = net.run_until

local NS = assert(petrel.load("spec/thrift/cluster.thrift"))

-- Instances as the balancers see them.
local function insts(spec)
  local list = {}
  for i, w in ipairs(spec) do
    list[i] = { address = "10.0.0." .. i .. ":9000", weight = w, inflight = 0, ok = true }
  end
  return list
end

local function counts(b, n, key_of)
  local c = {}
  for k = 1, n do
    local inst = b:pick(key_of and key_of(k))
    c[inst.address] = (c[inst.address] or 0) + 1
  end
  return c
end

describe("petrel.balance", function()
  it("wrr gives each instance its weight's share, spread out", function()
    local b = balance.new("wrr")
    local list = insts { 1, 2, 3 }
    b:update(list)
    local c = counts(b, 600)
    assert.same({ ["10.0.0.1:9000"] = 100, ["10.0.0.2:9000"] = 200, ["10.0.0.3:9000"] = 300 }, c)
    -- smooth: with weights 5, 1, 1 the others come between the heavy one's turns
    b:update(insts { 5, 1, 1 })
    local run, longest, last = 0, 0, nil
    for _ = 1, 70 do
      local a = b:pick().address
      run = (a == last) and run + 1 or 1
      last = a
      if run > longest then longest = run end
    end
    assert.is_true(longest <= 4, "longest run " .. longest)
  end)

  it("wrr skips instances that are down and those already tried", function()
    local b = balance.new("wrr")
    local list = insts { 1, 1, 1 }
    b:update(list)
    list[2].ok = false
    local c = counts(b, 300)
    assert.is_nil(c["10.0.0.2:9000"])
    assert.equal(300, (c["10.0.0.1:9000"] or 0) + (c["10.0.0.3:9000"] or 0))
    for _ = 1, 20 do
      local inst = b:pick(nil, { list[1] })
      assert.equal(list[3], inst)
    end
    list[1].ok, list[3].ok = false, false
    assert.is_nil(b:pick())
    assert.is_not_nil(b:pick(nil, nil, true)) -- any: every instance down
  end)

  it("p2c never picks the busier of two", function()
    local b = balance.new("p2c")
    local list = insts { 1, 1, 1 }
    b:update(list)
    list[1].inflight = 10
    local c = counts(b, 1000)
    assert.is_nil(c["10.0.0.1:9000"])
    assert.is_true(c["10.0.0.2:9000"] > 300 and c["10.0.0.3:9000"] > 300)
    -- weight counts: inflight per unit of weight
    list[1].inflight, list[1].weight = 10, 100
    c = counts(b, 1000)
    assert.is_true((c["10.0.0.1:9000"] or 0) > 400, tostring(c["10.0.0.1:9000"]))
  end)

  it("chash maps a key alike in every client and moves few keys when one is added", function()
    local a, b = balance.new("chash"), balance.new("chash")
    local list = insts { 10, 10, 10 }
    a:update(list)
    local rev = { list[3], list[1], list[2] }
    b:update(rev)
    local before, share = {}, {}
    for k = 1, 4000 do
      local key = "user-" .. k
      local x = a:pick(key)
      assert.equal(x, b:pick(key))
      before[key] = x
      share[x.address] = (share[x.address] or 0) + 1
    end
    for addr, n in pairs(share) do
      assert.is_true(n > 4000 * 0.2 and n < 4000 * 0.47, addr .. " has " .. n)
    end
    local four = insts { 10, 10, 10, 10 }
    for i = 1, 3 do four[i] = list[i] end
    a:update(four)
    local moved = 0
    for k = 1, 4000 do
      local key = "user-" .. k
      local x = a:pick(key)
      if x ~= before[key] then
        moved = moved + 1
        assert.equal(four[4], x) -- only to the new instance
      end
    end
    assert.is_true(moved / 4000 <= 0.25 + 0.05, "moved " .. moved / 4000)
    assert.is_true(moved > 0)
  end)

  it("chash walks past instances that are down, tried or over the load bound", function()
    local b = balance.new("chash", { bounded_load = 1.25 })
    local list = insts { 10, 10, 10 }
    b:update(list)
    local owner = b:owner("k1")
    assert.equal(owner, b:pick("k1"))
    owner.ok = false
    local second = b:pick("k1")
    assert.is_not_nil(second)
    assert.are_not.equal(owner, second)
    owner.ok = true
    assert.are_not.equal(owner, b:pick("k1", { owner }))
    -- bounded load: the owner holds far more than its share in flight
    owner.inflight = 50
    assert.are_not.equal(owner, b:pick("k1"))
    owner.inflight = 0
    assert.equal(owner, b:pick("k1"))
  end)

  it("the ring hash is MurmurHash3 on both runtimes", function()
    assert.equal(0x248bfa47, core.hash32("hello"))
    assert.equal(0xfaf6cdb3, core.hash32("Hello, world!", 1234))
  end)

  it("the core's ring finds the first point at or past a key's hash, and wraps", function()
    -- the reference: a linear search over the sorted points
    local function first_at(pts, h)
      for i, p in ipairs(pts) do if p >= h then return i end end
      return 1
    end
    local function check(pts, key)
      local r = core.ring(pts)
      local text = type(key) == "string" and key or string.format("%d", key)
      assert.equal(first_at(pts, core.hash32(text)), r:find(key), "key " .. tostring(key))
    end
    math.randomseed(7)
    for _, n in ipairs({ 1, 2, 3, 40, 120, 5000 }) do
      local pts = {}
      for i = 1, n do pts[i] = math.random(0, 0xffffffff) end
      -- ties, and points at the ends of the space and of a slot
      if n > 3 then pts[2], pts[3], pts[4] = pts[1], 0, 0xffffffff end
      table.sort(pts)
      local r = core.ring(pts)
      assert.equal(n, #r)
      for k = 1, 300 do check(pts, "key-" .. k); check(pts, k * 7919 - 1000) end
      -- a hash past the last point wraps to the first
      for k = 1, 2000 do
        local h = core.hash32("w" .. k)
        if h > pts[n] then assert.equal(1, r:find("w" .. k)) end
      end
    end
    -- integral numbers hash as their decimal text, the same on both
    -- runtimes; other keys are the caller's to turn into text
    local r = core.ring({ 5, 0x80000000, 0xfffffff0 })
    for _, k in ipairs({ 0, -1, 42, 2 ^ 40, -(2 ^ 52) }) do
      assert.equal(r:find(string.format("%d", k)), r:find(k))
    end
    assert.equal(r:find("3"), r:find(3.0))
    assert.is_nil(r:find(1.5))
    assert.is_nil(r:find(0 / 0))
    assert.is_nil(r:find(math.huge))
    assert.is_nil(r:find(true))
    assert.equal(1, core.ring({}):find("x"))
    assert.has_error(function() core.ring({ 9, 5 }) end, "bad argument #1 to 'ring' (points are not in ascending order)")
    assert.has_error(function() core.ring({ -1 }) end)
  end)

  it("chash maps a key by its ring text whatever its type", function()
    local b = balance.new("chash")
    local list = {}
    for i = 1, 5 do list[i] = { address = "10.0.0." .. i .. ":9", weight = 1, ok = true, inflight = 0 } end
    b:update(list)
    for k = 1, 200 do assert.equal(b:owner(tostring(k)), b:owner(k)) end
    assert.equal(b:owner("1.5"), b:owner(1.5))
    assert.equal(b:owner("true"), b:owner(true))
    assert.equal(b:owner("1e+300"), b:owner(1e300))
  end)
end)

describe("petrel.breaker", function()
  it("opens on consecutive failures, half-opens after the cooldown, closes on probes", function()
    local b = breaker.new { consecutive = 3, cooldown = 1, probes = 2 }
    local t = 100
    assert.is_true(b:allow(t))
    b:record(false, t); b:record(false, t)
    assert.equal("closed", b.state)
    local st, cd = b:record(false, t)
    assert.equal("open", st)
    assert.equal(1, cd)
    assert.is_false(b:allow(t + 0.5))
    assert.is_true(b:allow(t + 1.01))
    assert.equal("half-open", b.state)
    b:start(); b:start()
    assert.is_false(b:allow(t + 1.02)) -- two probes at most
    b:record(true, t + 1.1, true)
    assert.equal("half-open", b.state)
    b:record(true, t + 1.1, true)
    assert.equal("closed", b.state)
    -- a failed probe opens it again, for twice as long
    for _ = 1, 3 do b:record(false, t + 2) end
    assert.is_true(b:allow(t + 3.01))
    b:start()
    st, cd = b:record(false, t + 3.02, true)
    assert.equal("open", st)
    assert.equal(2, cd)
  end)

  it("opens on the error rate of its window, forgetting old calls", function()
    local b = breaker.new { window = 10, min_calls = 10, error_rate = 0.5, consecutive = 100 }
    local t = 1000
    for i = 1, 20 do b:record(i % 2 == 0, t) end -- 50% failures, alternating
    assert.equal("open", b.state)
    b = breaker.new { window = 10, min_calls = 10, error_rate = 0.5, consecutive = 100 }
    for _ = 1, 9 do b:record(false, t) end
    assert.equal("closed", b.state) -- under min_calls
    -- 11 s later those are out of the window
    for _ = 1, 5 do b:record(true, t + 11) end
    for _ = 1, 5 do b:record(false, t + 11) end
    assert.equal("open", b.state)
    local s = b:stats(t + 11)
    assert.equal(10, s.window_calls)
  end)

  it("the retry budget allows ratio retries per call plus a floor", function()
    local bg = breaker.budget { ratio = 0.1, min_per_sec = 0, window = 10 }
    local t = 50
    for _ = 1, 100 do bg:deposit(t) end
    local allowed = 0
    for _ = 1, 50 do if bg:try(t) then allowed = allowed + 1 end end
    assert.equal(10, allowed)
    assert.equal(40, bg.denied)
    bg = breaker.budget { ratio = 0, min_per_sec = 1, window = 10 }
    allowed = 0
    for _ = 1, 50 do if bg:try(t) then allowed = allowed + 1 end end
    assert.equal(10, allowed) -- 1 per second over 10 s
  end)

  it("classifies transport errors", function()
    assert.equal("conn", cluster._classify("connect 127.0.0.1:1: Connection refused"))
    assert.equal("conn", cluster._classify("read from 127.0.0.1:9: connection closed by the peer"))
    assert.equal("conn", cluster._classify("read from 127.0.0.1:9: Connection reset by peer"))
    assert.equal("timeout", cluster._classify("read from 127.0.0.1:9: timeout after 100 ms"))
    assert.equal("local", cluster._classify(
      "wait for a connection to 127.0.0.1:9: timeout after 100 ms (max_conns 1)"))
    assert.equal("other", cluster._classify("read from 127.0.0.1:9: protocol error: x"))
  end)
end)

describe("petrel.json", function()
  local docs = {
    '{"a":[1,2.5,-300,"x\\n\\u00e9\\ud83d\\ude00"],"b":null,"c":{},"d":true,"e":false}',
    '[]', '"str"', '0', '-0.5e-3', '{"header":{"revision":"12"},"kvs":[{"key":"YQ=="}]}',
  }
  local bad = { "", "[1,", '{"a" 1}', "01", "1.", "-", '"abc', "[1] x", '"\\ud800"', '"\\q"',
    string.rep("[", 100) .. string.rep("]", 100), "nul", '{"a":1,}' }

  it("the pure-Lua codec decodes what cjson decodes, and rejects what it rejects", function()
    local L = json._lua
    for _, d in ipairs(docs) do
      local v, err = L.decode(d)
      assert(v ~= nil, d .. ": " .. tostring(err))
      -- round trip through the encoder
      local again = L.decode(L.encode(v))
      assert.same(v, again)
      if json.backend == "cjson" then
        local cv = json.decode(d)
        assert.equal((L.encode(cv == json.null and L.null or cv):gsub("null", "")),
          (L.encode(v):gsub("null", "")))
      end
    end
    for _, d in ipairs(bad) do
      local v, err = L.decode(d)
      assert(v == nil and type(err) == "string", "accepted " .. d)
      -- cjson reads numbers with strtod, which takes "01" and "1."
      if d ~= "01" and d ~= "1." then assert.is_nil(json.decode(d), d) end
    end
    assert.matches("nesting deeper than 64", select(2, L.decode(string.rep("[", 65))))
    assert.has_error(function() L.encode({ [1] = 1, x = 2, [true] = 3 }) end)
    assert.has_error(function() L.encode(0 / 0) end)
  end)

  it("base64 round-trips every length and rejects bad text", function()
    local enc, dec = etcd._b64encode, etcd._b64decode
    assert.equal("", enc(""))
    assert.equal("Zm9vYmFy", enc("foobar"))
    assert.equal("Zm9vYg==", enc("foob"))
    math.randomseed(7)
    for n = 0, 40 do
      local t = {}
      for i = 1, n do t[i] = string.char(math.random(0, 255)) end
      local s = table.concat(t)
      assert.equal(s, dec(enc(s)))
    end
    for _, b in ipairs({ "Zm9", "Zm9v!A==", "Z===", "=AAA", "Zm9vYg=A" }) do
      assert.is_nil(dec(b), b)
    end
    assert.equal("kitex/registry-etcd/echo0", etcd._prefix_end("kitex/registry-etcd/echo/"))
  end)
end)

-- ---- clients over several servers -------------------------------------------------

-- A Where server on host: srv (srv.calls counts every call it answered).
local function where_server(loop, host, o)
  o = o or {}
  local srv
  srv = assert(petrel.server { loop = loop, host = host, port = o.port or 0, service = NS.Where,
    logger = false, handler = {
      where = function() srv.calls = srv.calls + 1; return host end,
      bump = function(n) srv.calls = srv.calls + 1; return n + 1 end,
      slow = function(ms) srv.calls = srv.calls + 1; loop:sleep(ms); return host end,
    } })
  srv.calls = 0
  srv.addr = host .. ":" .. srv.port
  return srv
end

-- A raw peer: "close" closes each connection when a call arrives, "silent"
-- reads and never answers, "garbage" answers bytes that are no Thrift.
local function raw_peer(loop, host, mode)
  local lid = assert(loop.c:listen(host, 0))
  local st = { port = loop.c:port(lid), calls = 0 }
  st.addr = host .. ":" .. st.port
  loop:attach(lid, { on_accept = function(_, id)
    loop:attach(id, { on_data = function(_, cid)
      local inb = loop.c:input(cid)
      if #inb < 4 then return end
      st.calls = st.calls + 1
      inb:skip(#inb)
      loop.c:consumed(cid)
      if mode == "close" then
        loop:close(cid)
      elseif mode == "garbage" then
        loop.c:output(cid):write("\0\0\0\8garbage!")
        loop.c:send(cid)
      end
    end })
  end })
  function st.close() loop:close(lid) end
  return st
end

-- The cluster client's own record of an instance.
local function client_inst(c, addr)
  return require("petrel.client")._state(c).by_addr[addr]
end

-- Run fn(i) for i = 1..n in `width` coroutines; true when all finished in ms.
local function run_many(loop, n, width, fn, ms)
  local started, done = 0, 0
  for _ = 1, math.min(width, n) do
    loop:spawn(function()
      while started < n do
        started = started + 1
        fn(started)
        done = done + 1
      end
    end)
  end
  return run_until(loop, function() return done == n end, ms or 60000)
end

local list, why = backends()
for _, be in ipairs(list) do
describe("clients over several instances (" .. be.name .. ")", function()
  local loop
  before_each(function() loop = assert(petrel.loop(be.opts)) end)
  after_each(function() loop:free() end)

  it("spread calls by weight and retry a dead instance's calls elsewhere at once", function()
    local a = where_server(loop, "127.0.0.2")
    local b = where_server(loop, "127.0.0.3")
    local dead = net.dead_port(loop)
    local events = {}
    local c = petrel.client { service = NS.Where, loop = loop,
      instances = { { host = "127.0.0.2", port = a.port, weight = 1 },
        { host = "127.0.0.3", port = b.port, weight = 3 }, "127.0.0.1:" .. dead },
      on_event = function(kind, addr) events[#events + 1] = kind .. " " .. addr end }
    local failed = 0
    assert.is_true(run_many(loop, 2000, 8, function(i)
      -- bump is not idempotent: only the dead instance's refused connects
      -- (nothing sent) may be retried, and are
      local r = i % 2 == 0 and c:where(i) or c:bump(i)
      if r == nil then failed = failed + 1 end
    end))
    assert.equal(0, failed)
    local s = petrel.stats(c)
    local d = s.instances["127.0.0.1:" .. dead]
    assert.is_true(d.ejected)
    assert.is_true(d.calls >= 1 and d.calls <= 8, "dead got " .. d.calls) -- the first round only
    assert.equal(d.calls, d.conn_errors)
    assert.equal(d.calls, s.retries)
    -- weights 1:3 between the live ones
    local share = b.calls / (a.calls + b.calls)
    assert.is_true(share > 0.7 and share < 0.8, "share " .. share)
    assert.equal(2000, a.calls + b.calls)
    assert.matches("ejected 127.0.0.1:" .. dead, table.concat(events, "\n"), 1, true)
    assert.is_number(s.instances[a.addr].latency.p99_ms)
    assert.equal("closed", s.instances[a.addr].breaker.state)
  end)

  it("retries a sent call only when its method is idempotent", function()
    local good = where_server(loop, "127.0.0.2")
    local closer = raw_peer(loop, "127.0.0.3", "close")
    local c = petrel.client { service = NS.Where, loop = loop, balance = "chash",
      hash_key = function() return "k" end,
      instances = { good.addr, closer.addr }, eject_time = 60000 }
    local ring = balance.new("chash")
    ring:update({ { address = good.addr, weight = 10 }, { address = closer.addr, weight = 10 } })
    -- the key's own instance is the closer one for one key or the other
    local key
    for k = 1, 100 do
      if ring:owner("k" .. k).address == closer.addr then key = "k" .. k; break end
    end
    local v = petrel.with(c, { key = key })
    -- where (idempotent in the IDL): sent, the connection closed, retried
    assert.equal("127.0.0.2", v:where(1))
    assert.equal(1, closer.calls)
    -- the closer is ejected now; re-admit it by hand for the next check
    local inst = client_inst(c, closer.addr)
    inst.ejected = false
    inst.ok = true
    local r, err = v:bump(1)
    assert.is_nil(r)
    assert.matches("connection closed", err)
    assert.equal(2, closer.calls)
    -- the user marks bump idempotent
    local c2 = petrel.client { service = NS.Where, loop = loop, balance = "chash",
      instances = { good.addr, closer.addr }, idempotent = { "bump" } }
    assert.equal(2, petrel.with(c2, { key = key }):bump(1))
  end)

  it("keeps retries within the call's deadline and the budget", function()
    local s1 = raw_peer(loop, "127.0.0.2", "silent")
    local s2 = raw_peer(loop, "127.0.0.3", "silent")
    local s3 = raw_peer(loop, "127.0.0.4", "silent")
    local c = petrel.client { service = NS.Where, loop = loop, timeout = 300,
      instances = { s1.addr, s2.addr, s3.addr }, retry = { max = 5, backoff = 1 } }
    local t0 = loop:now()
    local r, err = c:where(1)
    local took = loop:now() - t0
    assert.is_nil(r)
    assert.matches("timeout", err)
    assert.is_true(took >= 290 and took < 1500, "took " .. took)
    -- every attempt shared the one deadline: the first used it up
    assert.equal(1, s1.calls + s2.calls + s3.calls)
    -- a budget of nothing: no retry at all
    local dead1, dead2 = net.dead_port(loop), net.dead_port(loop)
    local c2 = petrel.client { service = NS.Where, loop = loop,
      instances = { "127.0.0.1:" .. dead1, "127.0.0.1:" .. dead2 },
      retry = { max = 3, budget = 0, min_per_sec = 0 } }
    r, err = c2:where(1)
    assert.is_nil(r)
    assert.matches("Connection refused", err)
    local st = petrel.stats(c2)
    assert.equal(0, st.retries)
    assert.equal(1, st.budget.denied)
    -- per-call deadline through petrel.with
    t0 = loop:now()
    r = petrel.with(c, { timeout = 100 }):where(1)
    assert.is_nil(r)
    assert.is_true(loop:now() - t0 < 1000)
  end)

  it("opens an instance's breaker on errors and half-opens it after the cooldown", function()
    local good = where_server(loop, "127.0.0.2")
    local junk = raw_peer(loop, "127.0.0.3", "garbage")
    local events = {}
    local c = petrel.client { service = NS.Where, loop = loop, balance = "p2c",
      instances = { good.addr, junk.addr }, retry = false,
      breaker = { consecutive = 3, cooldown = 1000, probes = 1 },
      on_event = function(kind, addr) if addr == junk.addr then events[#events + 1] = kind end end }
    local errors = 0
    assert.is_true(run_many(loop, 100, 1, function(i)
      if not c:where(i) then errors = errors + 1 end
    end))
    assert.equal(3, junk.calls) -- then open: no more calls go there
    assert.equal(3, errors)
    assert.equal("breaker_open", events[#events])
    assert.is_true(run_until(loop, function() return events[#events] == "breaker_half_open" end,
      5000))
    -- one probe goes through, fails, and it opens again for longer
    assert.is_true(run_many(loop, 50, 1, function(i) c:where(i) end))
    assert.equal(4, junk.calls)
    assert.equal("open", petrel.stats(c).instances[junk.addr].breaker.state)
  end)

  it("re-admits an ejected instance once it accepts connections again", function()
    local a = where_server(loop, "127.0.0.2")
    local b = where_server(loop, "127.0.0.3")
    local port = b.port
    local events = {}
    local c = petrel.client { service = NS.Where, loop = loop,
      instances = { a.addr, b.addr }, eject_time = 50,
      on_event = function(kind, addr) events[#events + 1] = kind .. " " .. addr end }
    assert.is_true(run_many(loop, 20, 2, function(i) assert(c:where(i)) end))
    b:shutdown()
    run_until(loop, function() return b.closing and b.inflight == 0 end, 2000)
    loop:step(10)
    assert.is_true(run_many(loop, 50, 2, function(i) assert(c:where(i)) end))
    assert.is_true(petrel.stats(c).instances[b.addr].ejected)
    local b2 = where_server(loop, "127.0.0.3", { port = port })
    assert.is_true(run_until(loop, function()
      return events[#events] == "readmitted " .. b.addr end, 10000))
    assert.is_true(run_many(loop, 100, 2, function(i) assert(c:where(i)) end))
    assert.is_true(b2.calls > 20, "readmitted instance got " .. b2.calls)
  end)

  it("checks its options", function()
    local base = { service = NS.Where, loop = loop, instances = { "127.0.0.1:1" } }
    net.bad_options(petrel.client, "petrel.client", base, {
      { "balance", "random", "option 'balance' must be one of" },
      { "retry", { max = -1 }, "option 'retry' must be a table whose 'max' is an integer >= 0 %(it is %-1%)" },
      { "retry", { tries = 1 }, "unknown key 'tries'" },
      { "breaker", { error_rate = 2 }, "option 'breaker' must be a table whose 'error_rate'" },
      { "idempotent", { "nope" }, "'idempotent' names 'nope'" },
      { "instances", { "nohost" }, "instances%[1%]: 'nohost' is not host:port" },
      { "resolve", "http://x", "option 'resolve' must be" },
      { "host", "127.0.0.1", "unknown option 'host'" },
      { { service = NS.Where, loop = loop, resolve = "etcd://x" }, "'resolve' needs 'registry'" },
      { { service = NS.Where, loop = loop, resolve = "etcd://x", instances = {} },
        "'resolve' %(with 'registry'%) or 'instances', not both" },
    })
    assert.has_error(function() petrel.with({}, {}) end)
  end)
end)
end
if why then
  describe("clients over several instances (io_uring)", function()
    it("runs on io_uring", function() pending("io_uring is not available here: " .. tostring(why)) end)
  end)
end

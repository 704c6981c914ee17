-- petrel.loop: the Lua scheduler over the C event loop (petrel.core.loop).
--
-- The C loop hands back completion batches (accepted, data, drained,
-- closed, connected, timer); this module dispatches them to per-connection
-- handlers and resumes coroutines. Request handlers run in coroutines; a
-- blocking-style call (client call, sleep) made inside one yields to the
-- loop, and made outside any loop coroutine (a script, the REPL) runs the
-- loop until it completes. Millisecond timeouts; failures are nil, err.
local core = require "petrel.core"
local options = require "petrel.options"

local EV = core.loop_events
local E_ACCEPTED, E_DATA, E_DRAINED = EV.accepted, EV.data, EV.drained
local E_CLOSED, E_CONNECTED, E_TIMER = EV.closed, EV.connected, EV.timer
local E_SPLICED, E_DGRAM, E_READY, E_WAKE = EV.spliced, EV.datagram, EV.ready, EV.wake

local unpack = table.unpack or unpack
local co_running, co_yield, co_resume, co_create, co_status =
  coroutine.running, coroutine.yield, coroutine.resume, coroutine.create, coroutine.status

local Loop = {}
Loop.__index = Loop

local M = {}

-- petrel.loop([opts]) -> a new loop | nil, err. opts go to the C loop
-- (petrel.core.loop): pool, in_cap, out_cap, budget, dns_ttl,
-- close_timeout, max_events, no_spin, backend ("epoll" | "uring" | "auto"),
-- sqpoll and the io_uring tuning options.
function M.new(opts)
  -- connection buffers come from the state's default pool unless told
  -- otherwise, so petrel.pool_stats() (and server:stats().pool) see them
  local o = { pool = core.default_pool() }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c, err = core.loop(o)
  if not c then return nil, err end
  return setmetatable({
    c = c,
    conns = {},      -- id -> handler table (on_data, on_closed, ...)
    timers = {},     -- timer id -> function
    cos = {},        -- coroutines this loop runs -> true
    idle_cos = {},   -- parked worker coroutines
    ready = {},      -- coroutines to resume: {co, nargs, ...}
    depth = 0,       -- nested step() calls (blocking calls outside coroutines)
    on_error = function(msg) io.stderr:write("petrel: ", tostring(msg), "\n") end,
  }, Loop)
end

local default
-- petrel.default_loop() -> the loop used when none is given
function M.default()
  if not default then default = assert(M.new()) end
  return default
end

-- In a forked child: forget the inherited default loop (its epoll fd is
-- shared with the parent) so the next default() makes a fresh one.
function M.reset_default() default = nil end

-- Make loop l the default one (petrel repl --backend).
function M.set_default(l) default = l end

function Loop:now() return self.c:now() end

-- Worker coroutines are reused: each runs jobs handed to it by spawn and
-- parks itself in the idle list between jobs (creating a coroutine per
-- request costs more than the request's own Lua work).
local function worker_body(self)
  local fn, a, b, c, d = co_yield()
  while true do
    local ok, err = pcall(fn, a, b, c, d)
    if not ok then self.on_error(err) end
    local idle = self.idle_cos
    if #idle >= 64 then return end
    idle[#idle + 1] = co_running()
    fn, a, b, c, d = co_yield()
  end
end

-- Run fn(...) (up to 4 arguments) in a coroutine of this loop, at once.
-- Errors go to loop.on_error.
function Loop:spawn(fn, ...)
  if select("#", ...) > 4 then
    local args = { n = select("#", ...), ... }
    local f = fn
    fn = function() return f(unpack(args, 1, args.n)) end
  end
  local idle = self.idle_cos
  local co = idle[#idle]
  if co then
    idle[#idle] = nil
  else
    co = co_create(worker_body)
    self.cos[co] = true
    co_resume(co, self)
  end
  self:_resume(co, fn, ...)
  return co
end

function Loop:_resume(co, ...)
  local ok, err = co_resume(co, ...)
  if not ok then
    self.on_error(err)
  end
  if co_status(co) == "dead" then self.cos[co] = nil end
end

-- Is the running code a coroutine this loop may suspend?
function Loop:in_coroutine()
  local co = co_running()
  return co ~= nil and self.cos[co] ~= nil
end

-- A waiter: a rendezvous between code that waits and the event that ends
-- the wait. w = self:waiter(); ... later w:done(results...) from an event
-- handler; self:await(w, timeout_ms) returns the results (or nil,
-- "timeout").
local Waiter = {}
Waiter.__index = Waiter

function Loop:waiter()
  return setmetatable({ loop = self }, Waiter)
end

function Waiter:done(...)
  if self.finished then return false end
  self.finished = true
  self.n = select("#", ...)
  self.res = { ... }
  local loop = self.loop
  if self.timer then
    loop.c:cancel(self.timer)
    loop.timers[self.timer] = nil
    self.timer = nil
  end
  if self.co then
    local q = loop.ready
    q[#q + 1] = self
  end
  return true
end

function Loop:await(w, timeout_ms)
  if not w.finished and timeout_ms and timeout_ms >= 0 then
    w.timer = self:after(timeout_ms, function()
      w.timer = nil
      w:done(nil, "timeout")
    end)
  end
  if not w.finished then
    if self:in_coroutine() then
      w.co = co_running()
      co_yield()
    else
      self.depth = self.depth + 1
      local ok, err = pcall(function()
        while not w.finished do self:step(-1) end
      end)
      self.depth = self.depth - 1
      if not ok then error(err, 0) end
    end
  end
  return unpack(w.res, 1, w.n)
end

-- Call fn after ms milliseconds (once). Returns the timer id.
function Loop:after(ms, fn)
  local id = self.c:timer(ms)
  self.timers[id] = fn
  return id
end

function Loop:cancel(id)
  self.timers[id] = nil
  return self.c:cancel(id)
end

-- Suspend the running loop coroutine (or run the loop) for ms.
function Loop:sleep(ms)
  local w = self:waiter()
  self:after(ms, function() w:done(true) end)
  return self:await(w)
end

-- One round: wait up to timeout_ms for completions, dispatch them, resume
-- the coroutines they finished.
function Loop:step(timeout_ms)
  if self.stepping then
    -- the batch arrays belong to the round being dispatched
    error("petrel: blocking call inside a loop callback; run it in a coroutine (loop:spawn)", 2)
  end
  self.stepping = true
  local ok, n, err = pcall(self._step, self, timeout_ms)
  self.stepping = false
  if not ok then error(n, 0) end
  return n, err
end

function Loop:_step(timeout_ms)
  local n, types, ids, errs, args = self.c:poll(timeout_ms)
  if not n then return nil, types end
  local conns = self.conns
  for i = 1, n do
    local t, id = types[i], ids[i]
    if t == E_DATA then
      local h = conns[id]
      if h then h:on_data(id, args[i]) end
    elseif t == E_DGRAM then
      local h = conns[id]
      if h then h:on_datagram(args[i]) end
    elseif t == E_ACCEPTED then
      local h = conns[args[i]]
      if h then h:on_accept(id) else self.c:close(id) end
    elseif t == E_CLOSED then
      local h = conns[id]
      conns[id] = nil
      if h and h.on_closed then h:on_closed(id, errs[i]) end
      if self._zc_drain then self:_zc_drained(id, false, errs[i]) end
    elseif t == E_DRAINED then
      local h = conns[id]
      if h and h.on_drained then h:on_drained(id) end
      if self._zc_drain then self:_zc_drained(id, true, 0) end
    elseif t == E_SPLICED then
      local f = self._zc_splice and self._zc_splice[id]
      if f then
        self._zc_splice[id] = nil
        f(args[i], errs[i])
      end
    elseif t == E_CONNECTED then
      local h = conns[id]
      if errs[i] ~= 0 then conns[id] = nil end
      if h and h.on_connected then h:on_connected(id, errs[i]) end
    elseif t == E_TIMER then
      local f = self.timers[id]
      self.timers[id] = nil
      if f then f() end
    elseif t == E_READY then
      local h = conns[id]
      if h and h.on_ready then h:on_ready(id, args[i]) end
    elseif t == E_WAKE then
      -- loop.c:wake() or a trapped signal (petrel repl checks for Ctrl-C)
      if self.on_wake then self.on_wake() end
    end
  end
  -- resume waiters finished by this batch (they may finish more)
  local q = self.ready
  while #q > 0 do
    self.ready = {}
    for _, w in ipairs(q) do
      local co = w.co
      w.co = nil
      if co and self.cos[co] then self:_resume(co) end
    end
    q = self.ready
  end
  return n
end

-- Run until stop() (or until fn() returns true when given), in rounds
-- that block at most timeout_ms each.
function Loop:run(until_fn)
  self.stopping = false
  while not self.stopping do
    if until_fn and until_fn() then break end
    local n, err = self:step(until_fn and 50 or 1000)
    if not n then return nil, err end
  end
  return true
end

function Loop:stop() self.stopping = true; self.c:wake() end

function Loop:stats() return self.c:stats() end

-- "epoll" or "io_uring", and a note: the ring's features, or why "auto"
-- fell back to epoll
function Loop:backend() return self.c:backend() end

-- Watch a file descriptor the loop does not own (stdin of a REPL, a pipe,
-- a terminal): fn(bits, id) is called from the loop each round the fd is
-- ready (bits: core.watch_bits IN, OUT, ERR, HUP), until loop:close(id).
-- events: "r" (default), "w" or "rw". Returns the watch id | nil, err
-- (regular files are refused: they are always ready). fn runs inside the
-- loop's dispatch: blocking calls there must go through loop:spawn.
function Loop:watch(fd, fn, events)
  local id, err = self.c:watch(fd, events)
  if not id then return nil, err end
  self.conns[id] = {
    on_ready = function(_, wid, bits) fn(bits, wid) end,
    on_closed = function(_, wid, e) fn(core.watch_bits.ERR, wid, e) end,
  }
  return id
end

-- Register a handler table for a connection or listener id.
function Loop:attach(id, h) self.conns[id] = h end

function Loop:close(id, flush)
  self.conns[id] = nil
  return self.c:close(id, flush)
end

function Loop:free()
  self.c:free()
end

-- Zero-copy transfers (petrel.core.loop sendfile / splice). Waiters for
-- a sendfile's end are kept per connection in _zc_drain, those for a
-- splice's end in _zc_splice; _step hands them DRAINED / CLOSED / SPLICED.

-- A DRAINED counts once the file jobs queued so far are written too.
function Loop:_zc_drained(id, drained, err)
  local fs = self._zc_drain[id]
  if fs and (not drained or (self.c:pending(id) or 0) == 0) then
    self._zc_drain[id] = nil
    for k = 1, #fs do fs[k](drained, err) end
  end
end

local function zc_install(self)
  if not self._zc_drain then self._zc_drain, self._zc_splice = {}, {} end
end

local function errtext(e)
  if e and e ~= 0 then return core.strerror(e) end
  return "connection closed"
end

-- Send a file (path, fd or open Lua file), or offset/len of it, on stream id with
-- sendfile(2) after the bytes already queued; waits (coroutine-friendly)
-- until the file and the output are written. true | nil, err ("timeout":
-- the transfer goes on).
function Loop:sendfile(id, path, offset, len, timeout_ms)
  local ok, err = self.c:sendfile(id, path, offset, len)
  if not ok then return nil, err end
  zc_install(self)
  local w = self:waiter()
  local fs = self._zc_drain[id]
  if not fs then fs = {}; self._zc_drain[id] = fs end
  local function f(drained, e)
    if drained then w:done(true) else w:done(nil, errtext(e)) end
  end
  fs[#fs + 1] = f
  local r, e = self:await(w, timeout_ms)
  if r == nil and e == "timeout" then
    fs = self._zc_drain[id]
    for k = fs and #fs or 0, 1, -1 do
      if fs[k] == f then table.remove(fs, k) end
    end
    if fs and #fs == 0 then self._zc_drain[id] = nil end
  end
  return r, e
end

-- Move len bytes (nil/0: until EOF) from stream `from` to stream `to`
-- with splice(2); waits for the end of the job. bytes moved | nil, err,
-- bytes moved ("timeout": the job goes on; close a side to end it).
function Loop:splice(from, to, len, timeout_ms)
  local ok, err = self.c:splice(from, to, len)
  if not ok then return nil, err end
  zc_install(self)
  local w = self:waiter()
  self._zc_splice[from] = function(moved, e)
    if e == 0 then w:done(moved) else w:done(nil, core.strerror(e), moved) end
  end
  local r, e, m = self:await(w, timeout_ms)
  if r == nil and e == "timeout" then self._zc_splice[from] = nil end
  return r, e, m
end

-- Splice both directions between two streams until either side ends,
-- then close both (flushing). Waits; returns bytes client->upstream,
-- bytes upstream->client | nil, err. Half-close is not propagated.
function Loop:proxy(client, upstream, timeout_ms)
  local ok, err = self.c:splice(client, upstream)
  if not ok then return nil, err end
  ok, err = self.c:splice(upstream, client)
  if not ok then
    self:close(client)
    self:close(upstream)
    return nil, err
  end
  zc_install(self)
  local w = self:waiter()
  local moved, left = {}, 2
  local function ended(src)
    return function(m)
      moved[src] = m
      left = left - 1
      -- the first end closes both; that ends the other job
      self:close(client, true)
      self:close(upstream, true)
      if left == 0 then w:done(moved[client], moved[upstream]) end
    end
  end
  self._zc_splice[client] = ended(client)
  self._zc_splice[upstream] = ended(upstream)
  local up, down = self:await(w, timeout_ms)
  if up == nil then
    self._zc_splice[client], self._zc_splice[upstream] = nil, nil
    self:close(client)
    self:close(upstream)
    return nil, down
  end
  return up, down
end

-- ---- datagram sockets -----------------------------------------------------------
-- loop:udp{...} -> a UDP socket in the cosocket style: recv waits (the
-- running loop coroutine yields; outside one the loop runs) up to a
-- timeout, send / sendto queue a datagram for the round's flush (one
-- sendmmsg per socket per round). Failures are nil, err.

local Udp = {}
Udp.__index = Udp
M.Udp = Udp

-- "host:port" / "[v6]:port" -> host, port
local function split_addr(s)
  local h, p = s:match("^%[(.+)%]:(%d+)$")
  if not h then h, p = s:match("^([^:]+):(%d+)$") end
  return h, tonumber(p)
end

local function check_connect(v)
  if type(v) == "string" then
    local h, p = split_addr(v)
    if h and p <= 65535 then return true end
  elseif type(v) == "table" and type(v.host) == "string" and options.port(v.port) == true then
    return true
  end
  return '"host:port", "[ipv6]:port" or { host =, port = }'
end

local UDP_OPTIONS = {
  host = options.string, port = options.port, connect = check_connect,
  rcvbuf = options.int(1), sndbuf = options.int(1), reuseport = options.bool,
  max_datagram = function(v)
    return (options.integral(v) and v >= 1 and v <= 65536) or "an integer from 1 to 65536"
  end,
  timeout = options.ms, handler = options.func, out_cap = options.int(1),
}
M.UDP_OPTIONS = UDP_OPTIONS

-- loop:udp{ host =, port =, connect = "host:port" | { host =, port = },
--   rcvbuf = bytes (SO_RCVBUF: the kernel's queue; what does not fit is
--   dropped and counted), sndbuf =, max_datagram = bytes (longer datagrams
--   are cut there and reported; default 65536: any), reuseport = bool,
--   timeout = ms (recv's default; nil: none), out_cap = bytes (queued
--   sends beyond it are refused; default 4 MiB), handler = function(data,
--   peer, u) (called for each datagram as it arrives, inside the loop's
--   dispatch: it must not block (an error it raises goes to loop.on_error);
--   recv is then not used; a datagram cut at
--   max_datagram or an error the socket reported comes as handler(nil,
--   err, u, peer) with peer nil for socket errors) }
-- -> udp | nil, err. host/port: bind there (default 127.0.0.1, port 0: the
-- kernel picks, see u.port), unless only connect is given (then the
-- connect binds). Numeric addresses and "localhost"; "*" is every IPv4
-- address, "::" every IPv6 (and IPv4) one. Options are checked: unknown
-- keys and bad values raise.
function Loop:udp(opts)
  opts = opts or {}
  options.check("loop:udp", UDP_OPTIONS, opts, 2)
  local o = { host = opts.host, port = opts.port, rcvbuf = opts.rcvbuf, sndbuf = opts.sndbuf,
    max_datagram = opts.max_datagram, reuseport = opts.reuseport, out_cap = opts.out_cap }
  local conn = opts.connect
  if conn then
    if type(conn) == "string" then
      o.peer, o.peer_port = split_addr(conn)
    else
      o.peer, o.peer_port = conn.host, conn.port
    end
    if not o.host and o.port then o.host = o.peer:find(":", 1, true) and "::" or "*" end
  elseif not o.host then
    o.host = "127.0.0.1"
  end
  local id, err = self.c:udp_open(o)
  if not id then return nil, err end
  local u = setmetatable({ loop = self, id = id, port = self.c:port(id),
    timeout = opts.timeout, handler = opts.handler, waiting = {},
    rd = {}, rp = {}, ri = 1, rn = 0 }, Udp)
  self:attach(id, u)
  return u
end

-- Datagrams taken a batch at a time (loop:udp_recvn): u.rd / u.rp hold
-- the data and senders of the batch, u.ri the next one, u.rn how many.
local BATCH = 64

local function refill(self)
  local n, err, peer = self.loop.c:udp_recvn(self.id, BATCH, self.rd, self.rp)
  self.ri, self.rn = 1, n
  return n, err, peer
end

-- n datagrams arrived: the handler takes them (an error it raises goes
-- to loop.on_error, the next datagram is handed on), or as many waiting
-- recv calls wake.
function Udp:on_datagram(n)
  local f = self.handler
  if f then
    local rd, rp, loop = self.rd, self.rp, self.loop
    while n > 0 and not self.closed do
      local k, err, peer = refill(self)
      local ok, e = true, nil
      if k == 0 then
        if not err then return end
        ok, e = pcall(f, nil, err, self, peer) -- cut at max_datagram or a socket error
        if not ok then loop.on_error(e) end
        n = n - 1
      else
        for i = 1, k do
          self.ri = i + 1
          ok, e = pcall(f, rd[i], rp[i], self)
          if not ok then loop.on_error(e) end
          if self.closed then return end
        end
        n = n - k
      end
    end
    return
  end
  local q = self.waiting
  for _ = 1, n do
    local w = q[1]
    if not w then return end
    table.remove(q, 1)
    w:done(true)
  end
end

function Udp:on_closed()
  self.closed = true
  local q = self.waiting
  self.waiting = {}
  for _, w in ipairs(q) do w:done(nil, "closed") end
end

-- u:recv([timeout_ms]) -> data, peer | nil, err [, peer]. err: "timeout",
-- "closed", "datagram of N bytes cut at max_datagram (M)" (with its
-- peer), or an error the socket reported ("Connection refused": a datagram
-- sent from this socket met a closed port).
function Udp:recv(timeout)
  local loop = self.loop
  while true do
    local i = self.ri
    if i <= self.rn then
      self.ri = i + 1
      return self.rd[i], self.rp[i]
    end
    if self.closed then return nil, "closed" end
    local n, err, peer = refill(self)
    if n > 0 then
      self.ri = 2
      return self.rd[1], self.rp[1]
    end
    if err then return nil, err, peer end
    local w = loop:waiter()
    local q = self.waiting
    q[#q + 1] = w
    local ok, err = loop:await(w, timeout or self.timeout)
    if not ok then
      for i = #q, 1, -1 do
        if q[i] == w then table.remove(q, i) end
      end
      return nil, err
    end
  end
end

-- The datagram leaves in the next round's flush; called outside the
-- loop's coroutines (a script), it leaves now.
local function sent(self, ok, err)
  if not ok then return nil, err end
  local loop = self.loop
  if not loop:in_coroutine() then loop.c:flush() end
  return true
end

-- u:send(data) -> true | nil, err: to the connected peer. data: a string
-- or a petrel.buffer (copied, not consumed).
function Udp:send(data)
  if self.closed then return nil, "closed" end
  return sent(self, self.loop.c:udp_send(self.id, data))
end

-- u:sendto(data, "host:port") or u:sendto(data, host, port) -> true | nil, err
function Udp:sendto(data, host, port)
  if self.closed then return nil, "closed" end
  if port ~= nil then
    host = (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. tostring(port)
  end
  return sent(self, self.loop.c:udp_send(self.id, data, host))
end

function Udp:settimeout(ms) self.timeout = ms end

-- u:close([flush]): flush (default true) sends what is queued first
function Udp:close(flush)
  if self.closed then return end
  self.loop:close(self.id, flush ~= false)
  self:on_closed()
end

-- local address ("127.0.0.1:5353"), and the connected peer (or nil)
function Udp:address()
  local peer, loc = self.loop.c:info(self.id)
  return loc, peer
end

-- counters: dgrams_in, bytes_in, cut, errors_in, dgrams_out, bytes_out,
-- send_errors, send_full, kernel_drops, rcvbuf, sndbuf, queued, ...
function Udp:stats() return self.loop.c:udp_stats(self.id) end

M.Loop = Loop
return M

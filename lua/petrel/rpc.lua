-- petrel.rpc: Thrift RPC over the petrel loop — messages (strict and
-- non-strict binary envelopes), framed and unframed ("buffered")
-- transports, servers with coroutine handlers, clients with a connection
-- pool or one multiplexed connection. Interoperates with Apache Thrift.
local core = require "petrel.core"
local schema = require "petrel.schema"
local loopmod = require "petrel.loop"

local M = {}

local unpack = table.unpack or unpack

-- message types
local CALL, REPLY, EXCEPTION, ONEWAY = 1, 2, 3, 4
M.CALL, M.REPLY, M.EXCEPTION, M.ONEWAY = CALL, REPLY, EXCEPTION, ONEWAY

-- TApplicationException
local AX = schema.compile {
  TApplicationException = schema.exception {
    { 1, "message", "string", "optional" },
    { 2, "type", "i32", "optional" },
  },
}
local TAppEx = AX.TApplicationException
M.UNKNOWN, M.UNKNOWN_METHOD, M.INVALID_MESSAGE_TYPE, M.WRONG_METHOD_NAME = 0, 1, 2, 3
M.BAD_SEQUENCE_ID, M.MISSING_RESULT, M.INTERNAL_ERROR, M.PROTOCOL_ERROR = 4, 5, 6, 7

-- Errors given to callers: transport errors are strings; Thrift errors are
-- tables with kind = "application" (TApplicationException: type, message)
-- or kind = "exception" (a declared exception: name, type, value).
local ErrMT = {}
ErrMT.__index = ErrMT
ErrMT.__tostring = function(e)
  if e.kind == "application" then
    return string.format("TApplicationException(%d): %s", e.type or 0, e.message or "")
  end
  return string.format("%s (%s)", e.type or "exception", e.name or "?")
end
local function app_error(t, msg)
  return setmetatable({ kind = "application", type = t, message = msg }, ErrMT)
end
M.app_error = app_error

-- Raise a declared exception from a handler: error(petrel.throw("oops", v)).
function M.throw(field, value)
  return setmetatable({ kind = "exception", name = field, value = value }, ErrMT)
end

local DEFAULT_MAX_FRAME = 16 * 1024 * 1024

-- Argument names of a service function in declaration order (cached).
local argnames_cache = setmetatable({}, { __mode = "k" })
local function argnames(fn)
  local names = argnames_cache[fn]
  if not names then
    names = {}
    for i, f in ipairs(fn.args:fields()) do names[i] = f.name end
    argnames_cache[fn] = names
  end
  return names
end

-- ---- envelopes -------------------------------------------------------------

-- Parse a message envelope in string s at pos (strict or non-strict):
-- name, type, seqid, next_pos | nil (incomplete) | false, err (malformed).
local parse_header = core.msg_header
M.parse_header = parse_header

-- Decode options per protocol (the protocol of each message is in its
-- envelope: core.msg_header's fifth result).
local DEC = { binary = nil, compact = { protocol = "compact" } }
M.PROTOCOLS = { binary = true, compact = true }

-- Framing of a connection's input: yields complete message strings.
-- mode "framed" | "buffered" | "auto" (server side: decided from the first
-- bytes by core.detect, which waits until they tell: framed or not, Binary
-- or Compact; an HTTP or TLS peer is named as such). Returns a function
-- next() -> msg | nil (need more) | false, err, and mode() -> the mode.
local function new_reader(loop, id, mode, max_frame)
  local inb = loop.c:input(id)
  local scan
  return function()
    if #inb == 0 then return nil end
    if mode == "auto" then
      local tr, what, wire = core.detect(inb, max_frame)
      if tr == nil then return nil end
      if tr == false then
        return false, what .. " on a Thrift port (" .. wire .. "), not a Thrift message"
      end
      mode = tr
    end
    if mode == "framed" then
      return inb:read_frame(max_frame)
    end
    -- buffered (unframed): an incremental scanner finds where the message
    -- ends, looking at each byte once however the bytes arrive.
    if not scan then scan = core.scanner(max_frame) end
    local n, err = scan:feed(inb)
    if n == nil then return nil end
    if n == false then return false, err end
    return inb:read(n)
  end, function() return mode end
end
M._reader = new_reader -- for the specs

-- ---- server ----------------------------------------------------------------

local Server = {}
Server.__index = Server

-- petrel.server{ service = ns.Echo, handler = { echo = function(req) ... end },
--   host = "127.0.0.1", port = 9090 | unix = "/path", loop = ...,
--   transport = "auto" | "framed" | "buffered", max_frame = bytes,
--   idle_timeout = ms, out_cap = bytes (default 64 MiB), write_timeout = ms
--   (a peer whose unread replies stay over out_cap this long is dropped;
--   default 10000), backlog = n, reuseport = bool, keepalive, nodelay,
--   sndbuf, rcvbuf }
function M.server(opts)
  assert(type(opts) == "table", "petrel.server: options table expected")
  assert(type(opts.service) == "table" and opts.service.functions,
    "petrel.server: service (a compiled schema service) expected")
  assert(type(opts.handler) == "table", "petrel.server: handler table expected")
  local self = setmetatable({
    loop = opts.loop or loopmod.default(),
    service = opts.service,
    handler = opts.handler,
    transport = opts.transport or "auto",
    max_frame = opts.max_frame or DEFAULT_MAX_FRAME,
    idle_timeout = opts.idle_timeout,
    out_cap = opts.out_cap or 64 * 1024 * 1024,
    write_timeout = opts.write_timeout or 10000,
    conns = {},
    nconns = 0,
    inflight = 0,
    counters = { connections = 0, calls = 0, errors = 0, bytes_in = 0, oneway = 0 },
    jobs = {},       -- recycled call jobs
    result_tab = {}, -- the result struct of every reply
  }, Server)
  local host, port = opts.host or "127.0.0.1", opts.port or 0
  if opts.unix then host, port = "unix:" .. opts.unix, nil end
  local lid, err = self.loop.c:listen(host, port, { backlog = opts.backlog,
    reuseport = opts.reuseport, keepalive = opts.keepalive, sndbuf = opts.sndbuf,
    rcvbuf = opts.rcvbuf, nodelay = opts.nodelay })
  if not lid then return nil, err end
  self.lid = lid
  self.port = self.loop.c:port(lid)
  -- one handler object for the listener and every connection: the loop
  -- calls h:on_x(id, ...), which forwards to the server
  self.h = {
    on_accept = function(_, id) return self:on_accept(id) end,
    on_data = function(_, id, n) return self:on_data(id, n) end,
    on_closed = function(_, id, err) return self:on_closed(id, err) end,
  }
  self.loop:attach(lid, self.h)
  return self
end

function Server:on_accept(id)
  if self.closing then self.loop.c:close(id); return end
  local conn = { id = id, server = self, busy = 0 }
  conn.next, conn.mode = new_reader(self.loop, id, self.transport, self.max_frame)
  self.conns[id] = conn
  self.nconns = self.nconns + 1
  self.counters.connections = self.counters.connections + 1
  self.loop:attach(id, self.h)
  -- input may hold one whole frame; output beyond out_cap marks a slow reader
  self.loop.c:caps(id, self.max_frame + 4 + 65536, self.out_cap)
  if self.idle_timeout then self:_arm_idle(conn) end
end

function Server:_arm_idle(conn)
  local loop = self.loop
  if conn.idle then loop:cancel(conn.idle) end
  conn.idle = loop:after(self.idle_timeout, function()
    conn.idle = nil
    if conn.busy == 0 then self:_drop(conn, "idle") end
  end)
end

function Server:_drop(conn)
  if conn.dropped then return end
  conn.dropped = true
  if conn.idle then self.loop:cancel(conn.idle); conn.idle = nil end
  if conn.wtimer then self.loop:cancel(conn.wtimer); conn.wtimer = nil end
  self.conns[conn.id] = nil
  self.nconns = self.nconns - 1
  self.loop:close(conn.id)
end

function Server:on_closed(id)
  local conn = self.conns[id]
  if conn then
    conn.dropped = true
    if conn.idle then self.loop:cancel(conn.idle) end
    if conn.wtimer then self.loop:cancel(conn.wtimer) end
    self.conns[id] = nil
    self.nconns = self.nconns - 1
  end
end

-- Reply (or exception) for one call, queued for the round's single writev.
local function send_reply(self, conn, name, mtype, seqid, T, value, proto)
  if conn.dropped then return end
  local loop = self.loop
  local out = loop.c:output(conn.id)
  if not out then return end
  T:encode_message(value, out, name, mtype, seqid, conn.framed, proto)
  local r = loop.c:send_later(conn.id)
  if r == 2 and not conn.wtimer then
    -- over the output cap: a slow reader gets write_timeout ms to catch up
    conn.wtimer = loop:after(self.write_timeout, function()
      conn.wtimer = nil
      -- pending: queued, and (io_uring) handed to a send the peer stalls
      local p = not conn.dropped and loop.c:pending(conn.id)
      if p and p > self.out_cap then self:_drop(conn) end
    end)
  end
end

-- A call's coroutine: run the handler, reply (or not, for oneway).
local function run_call(self, conn, job)
  local ok, res, res2 = pcall(job.h, unpack(job, 1, job.n))
  local fn, name, mtype, seqid, proto = job.fn, job.name, job.mtype, job.seqid, job.proto
  for i = 1, job.n do job[i] = nil end
  job.h, job.fn, job.name, job.proto = nil, nil, nil, nil
  local pool = self.jobs
  if #pool < 64 then pool[#pool + 1] = job end
  conn.busy = conn.busy - 1
  self.inflight = self.inflight - 1
  if fn.oneway or mtype == ONEWAY then
    self.counters.oneway = self.counters.oneway + 1
    if not ok then self.counters.errors = self.counters.errors + 1 end
    return self:_maybe_finish()
  end
  if ok and res == nil and type(res2) == "table" and getmetatable(res2) == ErrMT then
    ok, res = false, res2 -- return nil, petrel.throw(...)
  end
  if ok then
    -- the result struct is written at once (encode does not yield): one
    -- table per server serves every reply
    local r = self.result_tab
    r.success = res
    local ok2, e2 = pcall(send_reply, self, conn, name, REPLY, seqid, fn.result, r, proto)
    r.success = nil
    if not ok2 then
      self.counters.errors = self.counters.errors + 1
      send_reply(self, conn, name, EXCEPTION, seqid, TAppEx,
        { message = "cannot encode the result: " .. tostring(e2), type = M.INTERNAL_ERROR }, proto)
    end
  elseif type(res) == "table" and getmetatable(res) == ErrMT and res.kind == "exception" then
    local ok2, e2 = pcall(send_reply, self, conn, name, REPLY, seqid, fn.result,
      { [res.name] = res.value }, proto)
    if not ok2 then
      self.counters.errors = self.counters.errors + 1
      send_reply(self, conn, name, EXCEPTION, seqid, TAppEx,
        { message = "undeclared exception: " .. tostring(e2), type = M.INTERNAL_ERROR }, proto)
    end
  else
    self.counters.errors = self.counters.errors + 1
    local t = type(res) == "table" and getmetatable(res) == ErrMT and res.type or M.INTERNAL_ERROR
    local m = type(res) == "table" and getmetatable(res) == ErrMT and res.message or tostring(res)
    send_reply(self, conn, name, EXCEPTION, seqid, TAppEx, { message = m, type = t }, proto)
  end
  self:_maybe_finish()
end

function Server:_call(conn, msg)
  local name, mtype, seqid, pos, proto = parse_header(msg, 1, self.max_frame)
  if not name then
    self.counters.errors = self.counters.errors + 1
    return self:_drop(conn)
  end
  local fn = self.service.functions[name]
  self.counters.calls = self.counters.calls + 1
  if mtype ~= CALL and mtype ~= ONEWAY then
    self.counters.errors = self.counters.errors + 1
    return send_reply(self, conn, name, EXCEPTION, seqid, TAppEx,
      { message = "invalid message type " .. tostring(mtype), type = M.INVALID_MESSAGE_TYPE }, proto)
  end
  if not fn then
    self.counters.errors = self.counters.errors + 1
    if mtype == ONEWAY then return end
    return send_reply(self, conn, name, EXCEPTION, seqid, TAppEx,
      { message = "Invalid method name: '" .. name .. "'", type = M.UNKNOWN_METHOD }, proto)
  end
  local args, err = fn.args:decode(msg, pos, DEC[proto])
  if not args then
    self.counters.errors = self.counters.errors + 1
    if mtype == ONEWAY then return end
    return send_reply(self, conn, name, EXCEPTION, seqid, TAppEx,
      { message = "cannot decode arguments: " .. tostring(err), type = M.PROTOCOL_ERROR }, proto)
  end
  local h = self.handler[name]
  if not h then
    self.counters.errors = self.counters.errors + 1
    if mtype == ONEWAY then return end
    return send_reply(self, conn, name, EXCEPTION, seqid, TAppEx,
      { message = "no handler for '" .. name .. "'", type = M.UNKNOWN_METHOD }, proto)
  end
  -- a pooled job carries the call to its coroutine: arguments in
  -- declaration order, then what the reply needs (no closure per call)
  local names = argnames(fn)
  local nargs = #names
  local pool = self.jobs
  local job = pool[#pool]
  if job then pool[#pool] = nil else job = {} end
  for i = 1, nargs do job[i] = args[names[i]] end
  job.n, job.h, job.fn, job.name, job.mtype, job.seqid = nargs, h, fn, name, mtype, seqid
  job.proto = proto -- the reply answers in the call's protocol
  conn.busy = conn.busy + 1
  self.inflight = self.inflight + 1
  self.loop:spawn(run_call, self, conn, job)
end

function Server:on_data(id, n)
  local conn = self.conns[id]
  if not conn or conn.dropped then return end
  self.counters.bytes_in = self.counters.bytes_in + (n or 0)
  if self.idle_timeout then self:_arm_idle(conn) end
  while not conn.dropped do
    local msg, err = conn.next()
    if msg == nil then break end
    if msg == false then
      self.counters.errors = self.counters.errors + 1
      self:_drop(conn, err)
      break
    end
    conn.framed = conn.mode() == "framed"
    self:_call(conn, msg)
  end
  if not conn.dropped then self.loop.c:consumed(id) end
end

function Server:_maybe_finish()
  if self.closing and self.inflight == 0 and self.on_finished then
    local f = self.on_finished
    self.on_finished = nil
    f()
  end
end

-- Stop accepting; close idle connections; when in-flight calls are done,
-- close the rest (their replies flushed) and call done().
function Server:shutdown(done)
  if self.closing then return end
  self.closing = true
  if self.lid then self.loop:close(self.lid); self.lid = nil end
  self.on_finished = function()
    for _, conn in pairs(self.conns) do
      self.loop.c:flush()
      self.loop:close(conn.id, true)
    end
    self.conns = {}
    if done then done() end
  end
  self:_maybe_finish()
end

function Server:stats()
  local s = {}
  for k, v in pairs(self.counters) do s[k] = v end
  s.open = self.nconns
  s.inflight = self.inflight
  s.loop = self.loop:stats()
  s.pool = core.pool_stats()
  return s
end

-- Serve until stop() or shutdown completes.
function Server:serve()
  return self.loop:run(function() return self.closing and self.inflight == 0 and not self.on_finished end)
end

-- petrel.serve{ <server options>, workers = N }: serve until SIGTERM or
-- SIGINT, then stop accepting, let in-flight calls finish and return.
-- With workers > 1 the process forks N workers, each with its own loop and
-- its own listening socket on the same port (SO_REUSEPORT); the parent
-- forwards SIGTERM/SIGINT to them and returns when all have exited.
function M.serve(opts)
  local workers = opts.workers or 1
  -- opts.gc = "generational" switches Lua 5.4's collector (process-wide)
  if opts.gc == "generational" and _VERSION == "Lua 5.4" and not jit then
    collectgarbage("generational")
  end
  if workers <= 1 then
    local srv, err = M.server(opts)
    if not srv then return nil, err end
    local loop = srv.loop
    loop.c:trap("TERM", "INT")
    if opts.on_ready then opts.on_ready(srv) end
    loop:run(function()
      for _ = 1, #core.signals() do srv:shutdown() end
      return srv.closing and srv.inflight == 0 and not srv.on_finished
    end)
    -- the last replies leave while their connections close (a send may
    -- still be queued, or in the kernel's hands under io_uring)
    local deadline = loop:now() + (opts.drain_timeout or 5000)
    while loop.c:stats().conns_open > 0 and loop:now() < deadline do loop:step(20) end
    return true
  end
  if not opts.port or opts.port == 0 then
    return nil, "petrel.serve: workers need a fixed port"
  end
  local pids = {}
  for _ = 1, workers do
    local pid, err = core.fork()
    if not pid then return nil, err end
    if pid == 0 then
      loopmod.reset_default()
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      o.workers, o.reuseport, o.loop = 1, true, loopmod.default()
      local ok, res, e = pcall(M.serve, o)
      if not ok or not res then io.stderr:write("petrel worker: ", tostring(e or res), "\n") end
      core._exit(ok and res and 0 or 1)
    end
    pids[#pids + 1] = pid
  end
  local loop = assert(loopmod.new())
  loop.c:trap("TERM", "INT", "CHLD")
  local alive = #pids
  while alive > 0 do
    loop:step(500)
    for _, sig in ipairs(core.signals()) do
      if sig == "TERM" or sig == "INT" then
        for _, p in ipairs(pids) do core.kill(p, "TERM") end
      end
    end
    while true do
      local p = core.wait(-1, true)
      if not p or p == 0 then break end
      alive = alive - 1
    end
  end
  loop:free()
  return true
end

-- ---- client ----------------------------------------------------------------

local Client = {}

-- A client connection: sends calls, matches replies by seqid.
local Conn = {}
Conn.__index = Conn

local function new_conn(cl)
  local loop = cl.loop
  local id, err
  if cl.unix then
    id, err = loop.c:connect("unix:" .. cl.unix, nil, cl.connect_timeout, cl.sockopts)
  else
    id, err = loop.c:connect(cl.host, cl.port, cl.connect_timeout, cl.sockopts)
  end
  if not id then return nil, err end
  local conn = setmetatable({ id = id, client = cl, pending = {}, npending = 0,
    connected = false }, Conn)
  conn.next = new_reader(loop, id, cl.transport, cl.max_frame)
  loop:attach(id, conn)
  loop.c:caps(id, cl.max_frame + 4 + 65536, 0)
  local w = loop:waiter()
  conn.connect_waiter = w
  local ok, e = loop:await(w, cl.connect_timeout)
  if not ok then
    loop:close(id)
    return nil, e
  end
  return conn
end

function Conn:on_connected(id, err)
  self.connected = (err == 0)
  local w = self.connect_waiter
  self.connect_waiter = nil
  if w then
    if err == 0 then w:done(true) else w:done(nil, core.strerror(err)) end
  end
end

function Conn:_fail_all(err)
  self.broken = err or "closed"
  for seq, w in pairs(self.pending) do
    self.pending[seq] = nil
    w:done(nil, self.broken)
  end
  self.npending = 0
end

function Conn:on_closed(id, err)
  self:_fail_all(err and err ~= 0 and core.strerror(err) or "closed")
end

function Conn:on_data(id)
  local cl = self.client
  while true do
    local msg, err = self.next()
    if msg == nil then break end
    if msg == false then
      self:_fail_all("protocol error: " .. tostring(err))
      cl.loop:close(self.id)
      return
    end
    local name, mtype, seqid, pos, proto = parse_header(msg, 1, cl.max_frame)
    local w = name and self.pending[seqid]
    if not w then
      self:_fail_all("reply with unknown sequence id " .. tostring(seqid))
      cl.loop:close(self.id)
      return
    end
    self.pending[seqid] = nil
    self.npending = self.npending - 1
    w:done(msg, mtype, pos, proto)
  end
  cl.loop.c:consumed(self.id)
end

function Conn:close()
  self:_fail_all("closed")
  self.client.loop:close(self.id)
end

local ClientMT = {}
ClientMT.__index = function(self, k)
  local m = Client[k]
  if m then return m end
  local fn = rawget(self, "service").functions[k]
  if fn then
    local f = function(me, ...) return me:call(k, ...) end
    rawset(self, k, f)
    return f
  end
end

-- petrel.client{ service = ns.Echo, host =, port = | unix =, loop =,
--   transport = "framed" | "buffered", protocol = "binary" | "compact",
--   timeout = ms (per call),
--   connect_timeout = ms, pool_size = n, keepalive_timeout = ms (idle pooled
--   connections close after it, default 60000), multiplex = bool, max_frame = n }
function M.client(opts)
  assert(type(opts) == "table" and type(opts.service) == "table" and opts.service.functions,
    "petrel.client: { service = compiled service, host =, port = } expected")
  if opts.protocol ~= nil and not M.PROTOCOLS[opts.protocol] then
    error("petrel.client: protocol must be \"binary\" or \"compact\", got " .. tostring(opts.protocol), 2)
  end
  return setmetatable({
    service = opts.service,
    loop = opts.loop or loopmod.default(),
    host = opts.host or "127.0.0.1",
    port = opts.port,
    unix = opts.unix,
    transport = opts.transport or "framed",
    protocol = opts.protocol or "binary",
    timeout = opts.timeout or 5000,
    connect_timeout = opts.connect_timeout or 3000,
    pool_size = opts.pool_size or 8,
    keepalive = opts.keepalive_timeout or 60000,
    multiplex = opts.multiplex,
    max_frame = opts.max_frame or DEFAULT_MAX_FRAME,
    sockopts = { nodelay = opts.nodelay, keepalive = opts.keepalive,
      sndbuf = opts.sndbuf, rcvbuf = opts.rcvbuf },
    idle = {},
    seq = 0,
  }, ClientMT)
end

function Client:_get_conn()
  if self.multiplex then
    local c = self.mux
    if c and not c.broken then return c end
    if self.mux_waiters then -- another call is connecting: share its conn
      local w = self.loop:waiter()
      table.insert(self.mux_waiters, w)
      return self.loop:await(w)
    end
    self.mux_waiters = {}
    local err
    c, err = new_conn(self)
    self.mux = c
    local ws = self.mux_waiters
    self.mux_waiters = nil
    for _, w in ipairs(ws) do w:done(c, err) end
    return c, err
  end
  local idle = self.idle
  while #idle > 0 do
    local c = table.remove(idle)
    if c.ka_timer then self.loop:cancel(c.ka_timer); c.ka_timer = nil end
    if not c.broken then return c, nil, true end
  end
  return new_conn(self)
end

-- Back to the pool (at most pool_size idle connections, each closed after
-- keepalive ms unused), or closed.
function Client:_put_conn(c)
  if self.multiplex or c.broken then return end
  if #self.idle < self.pool_size then
    self.idle[#self.idle + 1] = c
    if self.keepalive then
      c.ka_timer = self.loop:after(self.keepalive, function()
        c.ka_timer = nil
        for i, x in ipairs(self.idle) do
          if x == c then table.remove(self.idle, i); break end
        end
        c:close()
      end)
    end
  else
    c:close()
  end
end

-- client:call(name, args...) -> result | nil, err. err is a string for
-- transport failures ("timeout", "closed", ...), a table for Thrift ones
-- (kind = "application" or "exception"; see petrel.throw).
function Client:call(name, ...)
  local fn = self.service.functions[name]
  if not fn then error("petrel.client: no function '" .. tostring(name) .. "'", 2) end
  local res, err, stale = self:_call_once(fn, name, ...)
  if stale then
    -- a pooled connection the server had closed while it sat idle (its
    -- close was not seen yet): nothing was answered, try a fresh one once
    res, err = self:_call_once(fn, name, ...)
  end
  return res, err
end

function Client:_call_once(fn, name, ...)
  local conn, err, reused = self:_get_conn()
  if not conn then return nil, err end
  local loop = self.loop
  self.seq = (self.seq % 0x7fffffff) + 1
  local seqid = self.seq
  -- arguments in declaration order
  local names = argnames(fn)
  local args = {}
  for i = 1, #names do args[names[i]] = (select(i, ...)) end
  local out = loop.c:output(conn.id)
  if not out then return nil, "closed" end
  fn.args:encode_message(args, out, name, fn.oneway and ONEWAY or CALL, seqid,
    self.transport == "framed", self.protocol)
  local w = loop:waiter()
  if fn.oneway then
    local r, serr = loop.c:send(conn.id)
    if not r then
      conn:close()
      return nil, serr
    end
    if r == 0 then w:done(true) else conn.drain_waiter = w end
    local ok, e = loop:await(w, self.timeout)
    conn.drain_waiter = nil
    if ok then self:_put_conn(conn) else conn:close() end
    return ok, e
  end
  conn.pending[seqid] = w
  conn.npending = conn.npending + 1
  local r, serr = loop.c:send(conn.id)
  if not r then
    conn.pending[seqid] = nil
    conn:close()
    return nil, serr
  end
  local msg, mtype, pos, proto = loop:await(w, self.timeout)
  if not msg then
    if mtype == "timeout" then
      conn.pending[seqid] = nil
      conn:close() -- a late reply must not meet the next call
    end
    return nil, mtype, reused and mtype ~= "timeout"
  end
  self:_put_conn(conn)
  if mtype == EXCEPTION then
    local ex = TAppEx:decode(msg, pos, DEC[proto])
    if not ex then return nil, app_error(M.PROTOCOL_ERROR, "undecodable exception") end
    return nil, app_error(ex.type, ex.message)
  end
  if mtype ~= REPLY then
    return nil, app_error(M.INVALID_MESSAGE_TYPE, "unexpected message type " .. tostring(mtype))
  end
  local res, derr = fn.result:decode(msg, pos, DEC[proto])
  if not res then return nil, app_error(M.PROTOCOL_ERROR, derr) end
  if res.success ~= nil then return res.success end
  for _, t in ipairs(fn.throws) do
    if res[t.name] ~= nil then
      return nil, setmetatable({ kind = "exception", name = t.name, type = t.type,
        value = res[t.name] }, ErrMT)
    end
  end
  if fn.result_type == "void" then return true end
  return nil, app_error(M.MISSING_RESULT, name .. " failed: unknown result")
end

function Conn:on_drained()
  local w = self.drain_waiter
  self.drain_waiter = nil
  if w then w:done(true) end
end

function Client:close()
  for _, c in ipairs(self.idle) do
    if c.ka_timer then self.loop:cancel(c.ka_timer) end
    c:close()
  end
  self.idle = {}
  if self.mux then self.mux:close(); self.mux = nil end
end

return M

-- petrel.client: Thrift RPC clients over the petrel loop.
--
-- A client talks to one address, through a pool of connections (one call
-- at a time on each; at most pool_size kept idle, at most max_conns open,
-- callers beyond that queued, at most backlog of them, each up to its
-- timeout: OpenResty's keepalive pool with pool_size + backlog), or through
-- one multiplexed connection (many calls in flight, replies matched by
-- seqid; a timed-out call leaves, its late reply is dropped by seqid, as
-- Kitex's netpollmux does).
--
-- What users hold is a proxy whose own keys are the service's functions:
-- c:add(1, 2) is always the RPC, whatever the function is called. The
-- client's state lives under a private key; petrel.close / call /
-- configure / stats reach it, and c:close() / c:call() work when the
-- service has no function of that name.
--
-- Invariants: arguments are encoded before a connection is taken (bad
-- arguments raise with no connection involved); every connection is
-- counted in st.nopen from the moment its connect starts until it is
-- forgotten (closed by either side), once; a pooled connection carries one
-- call at a time and is closed when that call times out.
local core = require "petrel.core"
local rpc = require "petrel.rpc"
local loopmod = require "petrel.loop"
local options = require "petrel.options"

local CALL, REPLY, EXCEPTION, ONEWAY = rpc.CALL, rpc.REPLY, rpc.EXCEPTION, rpc.ONEWAY
local ErrMT, argnames, new_reader = rpc._ErrMT, rpc._argnames, rpc._new_reader
local decode_reply = rpc.decode_reply
local app_error, parse_header = rpc.app_error, rpc.parse_header

local M = {}

-- A table of header entries: string keys (any transport with headers),
-- integer keys 0-65535 (TTHeader), string values.
local function headers_check(v)
  if type(v) ~= "table" then return "a table of header entries" end
  for k, x in pairs(v) do
    if type(x) ~= "string" then return "a table of string values (" .. tostring(k) .. " is not)" end
    if type(k) ~= "string" and not (options.integral(k) and k >= 0 and k <= 65535) then
      return "a table with string keys or integer keys 0-65535"
    end
  end
  return true
end
M._headers_check = headers_check

local STATE = setmetatable({}, { __tostring = function() return "petrel.client state" end })

-- After this many replies owed to timed-out calls, a multiplexed
-- connection takes no new calls; it closes once its last call ends.
local MAX_LATE = 4096

local function peer_text(o)
  if o.unix then return "unix:" .. o.unix end
  local host = o.host or "127.0.0.1"
  if host:find(":", 1, true) then return "[" .. host .. "]:" .. o.port end
  return host .. ":" .. o.port
end

-- ms left until deadline (nil: no deadline)
local function remaining(loop, deadline)
  if not deadline then return nil end
  local left = deadline - loop:now()
  return left > 0 and left or 0
end

-- ---- connections ----------------------------------------------------------------

local Conn = {}
Conn.__index = Conn

-- Open a connection for client st and wait (at most connect_timeout) until
-- it is up: conn | nil, err. The caller has already counted it in st.nopen
-- and un-counts it on failure.
local function connect(st)
  local loop = st.loop
  local id, err
  if st.unix then
    id, err = loop.c:connect("unix:" .. st.unix, nil, st.connect_timeout, st.sockopts)
  else
    id, err = loop.c:connect(st.host, st.port, st.connect_timeout, st.sockopts)
  end
  if not id then return nil, "connect " .. st.peer .. ": " .. tostring(err) end
  local conn = setmetatable({ id = id, st = st, pending = {}, npending = 0, late = {},
    nlate = 0, epoch = st.epoch }, Conn)
  conn.next = new_reader(loop, id, st.transport, st.max_frame, st.ropts)
  loop:attach(id, conn)
  loop.c:caps(id, st.max_frame + 4 + 65536, 0)
  local w = loop:waiter()
  conn.connect_waiter = w
  local ok, e = loop:await(w, st.connect_timeout > 0 and st.connect_timeout or nil)
  conn.connect_waiter = nil
  if not ok then
    conn.gone, conn.closed = true, true -- never counted as forgotten: the caller un-counts
    loop:close(id)
    if e == "timeout" then e = "timeout after " .. st.connect_timeout .. " ms" end
    return nil, "connect " .. st.peer .. ": " .. tostring(e)
  end
  return conn
end

function Conn:on_connected(_, err)
  local w = self.connect_waiter
  if w then
    if err == 0 then w:done(true) else w:done(nil, core.strerror(err)) end
  end
end

-- Every call waiting on this connection fails with err.
function Conn:_fail_all(err)
  self.broken = self.broken or err
  for seq, w in pairs(self.pending) do
    self.pending[seq] = nil
    w:done(nil, err)
  end
  self.npending = 0
  local ws = self.drain_waiters
  if ws then
    self.drain_waiters = nil
    for i = 1, #ws do ws[i]:done(nil, err) end
  end
end

-- The peer (or the kernel) ended the connection.
function Conn:on_closed(_, err)
  if self.closed then return end
  self.closed = true
  local why = (err and err ~= 0) and core.strerror(err) or "connection closed by the peer"
  self:_fail_all("read from " .. self.st.peer .. ": " .. why)
  self.st:_forget(self)
end

-- Our side ends the connection; calls on it fail with err.
function Conn:close(err)
  if self.closed then return end
  self.closed = true
  self:_fail_all(err or ("read from " .. self.st.peer .. ": connection closed"))
  self.st.loop:close(self.id)
  self.st:_forget(self)
end

-- The output is flushed: oneway calls waiting for it are done.
function Conn:on_drained()
  local ws = self.drain_waiters
  if ws then
    self.drain_waiters = nil
    for i = 1, #ws do ws[i]:done(true) end
  end
end

-- Replies, matched to their calls by seqid; a reply to a call that timed
-- out (multiplexed connections) is dropped; any other is a protocol error.
function Conn:on_data()
  local st = self.st
  while true do
    local msg, err, rseq = self.next()
    if msg == nil then break end
    if msg == false then
      local w = rseq and self.pending[rseq]
      if not w then
        return self:close("read from " .. st.peer .. ": protocol error: " .. tostring(err))
      end
      -- one reply frame refused (a transform this client does not take):
      -- that call fails, the connection goes on
      self.pending[rseq] = nil
      self.npending = self.npending - 1
      w:done(nil, app_error(rpc.INVALID_TRANSFORM, "reply: " .. tostring(err)))
      goto continue
    end
    local name, mtype, seqid, pos, proto = parse_header(msg, 1, st.max_frame)
    if not name then
      return self:close("read from " .. st.peer .. ": malformed reply: "
        .. tostring(mtype or "truncated envelope"))
    end
    local w = self.pending[seqid]
    if w then
      self.pending[seqid] = nil
      self.npending = self.npending - 1
      w:done(msg, mtype, pos, proto, err) -- err: the reply's header entries
    elseif self.late[seqid] then
      self.late[seqid] = nil
      self.nlate = self.nlate - 1
    else
      return self:close("read from " .. st.peer .. ": reply with unknown sequence id "
        .. tostring(seqid))
    end
    ::continue::
  end
  if self.retired and self.npending == 0 then return self:close() end
  st.loop.c:consumed(self.id)
end

-- ---- the client's state ----------------------------------------------------------

local Client = {}
Client.__index = Client

-- The queue of callers waiting for a connection slot: FIFO of waiters;
-- those that timed out stay in it, finished, and are skipped.
local function pop_waiter(st)
  local q = st.queue
  while q.first <= q.last do
    local w = q[q.first]
    q[q.first] = nil
    q.first = q.first + 1
    if not w.finished then
      st.nwaiting = st.nwaiting - 1
      return w
    end
  end
end

local function remove_idle(st, c)
  local idle = st.idle
  for i = #idle, 1, -1 do
    if idle[i] == c then table.remove(idle, i); return end
  end
end

-- While slots are free, queued callers get one each (counted now; they
-- connect themselves).
function Client:_grant()
  if self.multiplex then return end
  while not self.max_conns or self.nopen < self.max_conns do
    local w = pop_waiter(self)
    if not w then return end
    self.nopen = self.nopen + 1
    w:done(true)
  end
end

-- Connection c is closed: it leaves the count (once) and the idle list.
function Client:_forget(c)
  if c.gone then return end
  c.gone = true
  if c.ka_timer then self.loop:cancel(c.ka_timer); c.ka_timer = nil end
  remove_idle(self, c)
  if self.mux == c then self.mux = nil end
  self.nopen = self.nopen - 1
  self:_grant()
end

-- A pooled connection whose call is over: to the first queued caller, to
-- the idle list (closed after keepalive ms unused), or closed.
function Client:_release(c)
  if c.closed then return end
  if c.broken or c.epoch ~= self.epoch then return c:close() end
  local w = pop_waiter(self)
  if w then return w:done(c) end
  local idle = self.idle
  if #idle >= self.pool_size then return c:close() end
  idle[#idle + 1] = c
  if self.keepalive > 0 then
    c.ka_timer = self.loop:after(self.keepalive, function()
      c.ka_timer = nil
      c:close()
    end)
  end
end

-- A connection for one call: conn, nil, reused | nil, err.
function Client:_acquire(deadline)
  if self.multiplex then return self:_mux_conn() end
  local idle = self.idle
  while #idle > 0 do
    local c = idle[#idle]
    idle[#idle] = nil
    if c.ka_timer then self.loop:cancel(c.ka_timer); c.ka_timer = nil end
    if not c.closed then return c, nil, true end
  end
  if self.max_conns and self.nopen >= self.max_conns then
    if self.backlog and self.nwaiting >= self.backlog then
      return nil, string.format("wait for a connection to %s: too many waiting calls "
        .. "(max_conns %d, backlog %d)", self.peer, self.max_conns, self.backlog)
    end
    local q, w = self.queue, self.loop:waiter()
    q.last = q.last + 1
    q[q.last] = w
    self.nwaiting = self.nwaiting + 1
    local c = self.loop:await(w, remaining(self.loop, deadline))
    if not c then
      self.nwaiting = self.nwaiting - 1
      return nil, string.format("wait for a connection to %s: timeout after %d ms (max_conns %d)",
        self.peer, self.timeout, self.max_conns)
    end
    if c ~= true then return c, nil, true end -- handed over by a finished call
    -- else: a free slot, already counted for us
  else
    self.nopen = self.nopen + 1
  end
  local c, err = connect(self)
  if not c then
    self.nopen = self.nopen - 1
    self:_grant()
    return nil, err
  end
  return c
end

-- The multiplexed connection, opened by the first call that needs it
-- (calls arriving meanwhile wait for the same connect).
function Client:_mux_conn()
  local c = self.mux
  if c and not c.closed and not c.retired then return c end
  if self.mux_waiters then
    local w = self.loop:waiter()
    local ws = self.mux_waiters
    ws[#ws + 1] = w
    return self.loop:await(w)
  end
  self.mux_waiters = {}
  self.nopen = self.nopen + 1
  local err
  c, err = connect(self)
  if not c then self.nopen = self.nopen - 1 end
  self.mux = c
  local ws = self.mux_waiters
  self.mux_waiters = nil
  for _, w in ipairs(ws) do w:done(c, err) end
  return c, err
end

-- The encoded message's buffer goes back for the next call.
local function recycle(st, msg)
  if not st.wbuf then
    msg:clear()
    st.wbuf = msg
  end
end

local TO_METHOD, RPC_TIMEOUT = rpc.transmeta.TO_METHOD, rpc.transmeta.RPC_TIMEOUT
local floor = math.floor

-- The header entries of one call (header transports): the client's
-- headers, the call's, and with TTHeader the method (ToMethod) and the
-- time left (RPCTimeout, ms), as Kitex clients send them. A table reused
-- by every call (emptied after the encode), or nil when there are none.
local function call_headers(self, name, hdrs, deadline)
  local tt = self.ttheader
  if not (tt or hdrs or self.headers) then return nil end
  local h = self.hbuf
  if self.headers then for k, v in pairs(self.headers) do h[k] = v end end
  if hdrs then for k, v in pairs(hdrs) do h[k] = v end end
  if tt then
    h[TO_METHOD] = name
    if deadline then
      local left = deadline - self.loop:now()
      h[RPC_TIMEOUT] = tostring(left > 1 and floor(left) or 1)
    end
  end
  return h
end

-- Encode a call (raises on bad arguments, before any connection is
-- involved): message buffer, seqid. hdrs: the call's own header entries;
-- deadline: its deadline (loop ms; sent as TTHeader's RPCTimeout).
function Client:_encode(fn, name, hdrs, deadline, ...)
  local seqid = self.seq % 0x7fffffff + 1
  self.seq = seqid
  local names = argnames(fn)
  local args = self.args -- reused: encoding does not yield
  for i = 1, #names do args[names[i]] = (select(i, ...)) end
  local msg = self.wbuf
  if msg then self.wbuf = nil else msg = core.buffer() end
  local h = self.wf ~= true and self.wf ~= false and call_headers(self, name, hdrs, deadline) or nil
  local ok, err = pcall(fn.args.encode_message, fn.args, args, msg, self.wire_names[name] or name,
    fn.oneway and ONEWAY or CALL, seqid, self.wf, self.protocol, h)
  for i = 1, #names do args[names[i]] = nil end
  if h then for k in pairs(h) do h[k] = nil end end
  if not ok then
    recycle(self, msg)
    -- levels: _encode, Client.call_with (Client.call tail-calls it), the
    -- method (or petrel.call), its caller
    error("petrel.client: " .. name .. ": " .. tostring(err), 4)
  end
  return msg, seqid
end

-- Send an encoded call and wait for its reply: value | nil, err [, stale
-- [, unsent]] (stale: a reused pooled connection failed before any reply;
-- worth one retry on a fresh one; unsent: not a byte of the call left, so
-- any call may be retried). deadline: loop ms (default: now + timeout;
-- petrel.cluster passes the call's own, shared by its retries). o: the
-- call's petrel.with options; shown: the timeout its messages name (ms).
function Client:_send(fn, name, seqid, msg, deadline, o, shown)
  local loop = self.loop
  local timeout = self.timeout
  if deadline then
    -- for messages: the call's own timeout (shown), or what is left
    timeout = shown or deadline - loop:now()
  else
    deadline = timeout > 0 and loop:now() + timeout or nil
  end
  self.inflight = self.inflight + 1
  local conn, err, reused = self:_acquire(deadline)
  if not conn then
    self.inflight = self.inflight - 1
    recycle(self, msg)
    return nil, err, nil, true
  end
  local out = loop.c:output(conn.id)
  if not out or conn.closed then
    self.inflight = self.inflight - 1
    recycle(self, msg)
    local e = conn.broken or ("write to " .. self.peer .. ": connection closed")
    conn:close(e)
    return nil, e, reused, true
  end
  out:append(msg)
  recycle(self, msg)
  local w = loop:waiter()
  if not fn.oneway then
    conn.pending[seqid] = w
    conn.npending = conn.npending + 1
  end
  local r, serr = loop.c:send(conn.id)
  if not r then
    self.inflight = self.inflight - 1
    if conn.pending[seqid] then
      conn.pending[seqid] = nil
      conn.npending = conn.npending - 1
    end
    local e = "write to " .. self.peer .. ": " .. tostring(serr)
    conn:close(e)
    return nil, e, reused
  end
  if fn.oneway then
    -- done once its bytes are flushed
    if r == 0 then
      w:done(true)
    else
      local ws = conn.drain_waiters
      if not ws then ws = {}; conn.drain_waiters = ws end
      ws[#ws + 1] = w
    end
    local ok, e = loop:await(w, remaining(loop, deadline))
    self.inflight = self.inflight - 1
    if ok then
      if not self.multiplex then self:_release(conn) end
      return true
    end
    if e == "timeout" then
      e = "write to " .. self.peer .. ": timeout after " .. timeout .. " ms"
      -- a pooled connection with unsent bytes cannot carry the next call
      if not self.multiplex then conn:close(e) end
      return nil, e
    end
    return nil, e, reused
  end
  local m, mtype, pos, proto, rh = loop:await(w, remaining(loop, deadline))
  self.inflight = self.inflight - 1
  if not m then
    if mtype ~= "timeout" then return nil, mtype, reused end -- the connection failed
    conn.pending[seqid] = nil
    conn.npending = conn.npending - 1
    local e = "read from " .. self.peer .. ": timeout after " .. timeout .. " ms"
    if not self.multiplex then
      conn:close(e) -- a late reply must not meet the next call
    elseif not conn.closed then
      -- only this call ends; its reply, if it comes, is dropped by seqid
      conn.late[seqid] = true
      conn.nlate = conn.nlate + 1
      if conn.nlate >= MAX_LATE then
        conn.retired = true
        if self.mux == conn then self.mux = nil end
      end
      if conn.retired and conn.npending == 0 then conn:close() end
    end
    return nil, e
  end
  if not self.multiplex then self:_release(conn) end
  if rh and o and o.reply_headers then -- petrel.with(c, { reply_headers = t })
    for k, v in pairs(rh) do o.reply_headers[k] = v end
  end
  return decode_reply(fn, name, m, mtype, pos, proto, self.lazy)
end

-- One RPC: value | nil, err. o: per-call options (petrel.with): timeout,
-- headers, reply_headers.
function Client:call_with(o, fn, name, ...)
  local timeout = o and o.timeout or self.timeout
  local deadline = timeout > 0 and self.loop:now() + timeout or nil
  local hdrs = o and o.headers
  local msg, seqid = self:_encode(fn, name, hdrs, deadline, ...)
  local res, err, stale = self:_send(fn, name, seqid, msg, deadline, o, timeout)
  if stale then
    -- a pooled connection the server had closed while it sat idle (its
    -- close not seen yet): nothing was answered; once more on a fresh one
    -- (as OpenResty's keepalive pools do)
    msg, seqid = self:_encode(fn, name, hdrs, deadline, ...)
    res, err = self:_send(fn, name, seqid, msg, deadline, o, timeout)
  end
  return res, err
end

function Client:call(fn, name, ...)
  return self:call_with(nil, fn, name, ...)
end

-- Close idle connections and the multiplexed one; connections busy with a
-- call close when it ends. The client stays usable (new connections).
function Client:close()
  self.epoch = self.epoch + 1
  local idle = self.idle
  self.idle = {}
  for _, c in ipairs(idle) do c:close() end
  local mux = self.mux
  if mux then
    self.mux = nil
    mux:close("read from " .. self.peer .. ": client closed")
  end
end

-- ---- the proxy users hold ----------------------------------------------------------

local function state_of(proxy, who)
  local st = type(proxy) == "table" and rawget(proxy, STATE)
  if not st then error(who .. ": a petrel client expected, got " .. type(proxy), 3) end
  return st
end

-- petrel.call(c, name, ...): the RPC `name` (for names chosen at run time).
function M.call(proxy, name, ...)
  local st = state_of(proxy, "petrel.call")
  local fn = st.service.functions[name]
  if not fn then
    error(string.format("petrel.call: service %s has no function '%s'", st.service.name,
      tostring(name)), 2)
  end
  local r, e = st:call(fn, name, ...)
  if e == nil then return r end -- one value on success: print(c:add(2, 3)) prints 5
  return r, e
end

-- petrel.close(c): close the client's idle and multiplexed connections.
function M.close(proxy)
  state_of(proxy, "petrel.close"):close()
end

-- petrel.stats(c): open (connected or connecting), idle, waiting (for a
-- connection slot), inflight calls.
function M.stats(proxy)
  local st = state_of(proxy, "petrel.stats")
  if st.udp then return st:stats() end
  if st.cluster then return st:stats() end
  return { open = st.nopen, idle = #st.idle, waiting = st.nwaiting, inflight = st.inflight,
    peer = st.peer, max_conns = st.max_conns }
end

function M.is_client(x)
  return type(x) == "table" and rawget(x, STATE) ~= nil
end

-- ---- per-call options: petrel.with ------------------------------------------------

-- A view of a single client whose calls carry options of their own; it
-- has the methods a cluster state has (call, close, stats, configure).
local View = { cluster = true, single = true }
View.__index = View
function View:call(fn, name, ...)
  local r, e = self.base:call_with(self.o, fn, name, ...)
  if e == nil then return r end -- one value on success, as the client's own calls
  return r, e
end
function View:close() return self.base:close() end
function View:stats()
  local st = self.base
  return { open = st.nopen, idle = #st.idle, waiting = st.nwaiting, inflight = st.inflight,
    peer = st.peer, max_conns = st.max_conns }
end
function View:configure(opts, level) return M.configure(M._proxy(self.base), opts, (level or 1) + 1) end

-- petrel.with(c, { timeout = ms, headers = { ... }, reply_headers = t })
-- for a client of one address: a client making c's calls with that
-- deadline, those header entries (header transports; TTHeader also sends
-- the deadline as RPCTimeout) and, when reply_headers is given, the
-- reply's header entries copied into it. (petrel.cluster's with takes
-- clients over many instances and passes the others here.)
function M.with(proxy, o, level)
  level = (level or 1) + 1
  local st = state_of(proxy, "petrel.with")
  if type(o) ~= "table" then error("petrel.with: options table expected", level) end
  options.check("petrel.with", { timeout = options.ms, headers = headers_check,
    reply_headers = options.table }, o, level)
  local merged = {}
  if st.single then -- a view of a view: the options add up
    for k, v in pairs(st.o) do merged[k] = v end
    st = st.base
  end
  for k, v in pairs(o) do merged[k] = v end
  if merged.headers then
    if st.wf == true or st.wf == false then
      error("petrel.with: 'headers' need a transport with headers (\"header\" or "
        .. "\"ttheader\"), this client's is " .. st.transport, level)
    end
    if not st.ttheader then
      for k in pairs(merged.headers) do
        if type(k) ~= "string" then
          error("petrel.with: integer header keys need TTHeader", level)
        end
      end
    end
  end
  return M._proxy(setmetatable({ base = st, o = merged, service = st.service, peer = st.peer },
    View))
end

-- For petrel.cluster: clients over many instances share the proxy (their
-- state has call, close, stats, configure and cluster = true).
M._Client = Client
function M._state(proxy) return rawget(proxy, STATE) end

-- Client methods reachable as c:name(...) when the service has no
-- function of that name.
local Fallback = { close = M.close, call = M.call }

local ProxyMT = {}
ProxyMT.__index = function(proxy, k)
  local st = rawget(proxy, STATE)
  local fn = st.service.functions[k]
  if fn then
    local f = function(me, ...)
      if me ~= proxy then
        error(string.format("petrel.client: call %s with ':' (c:%s(...)), not '.' (c.%s(...))",
          k, k, k), 2)
      end
      local r, e = st:call(fn, k, ...)
      if e == nil then return r end -- one value on success
      return r, e
    end
    rawset(proxy, k, f)
    return f
  end
  return Fallback[k]
end
ProxyMT.__newindex = function(_, k)
  error(string.format("petrel.client: cannot set '%s' on a client "
    .. "(options change with petrel.configure(c, { ... }))", tostring(k)), 2)
end
ProxyMT.__tostring = function(proxy)
  local st = rawget(proxy, STATE)
  return string.format("petrel.client(%s at %s)", st.service.name, st.peer)
end

-- (petrel.cluster's proxies)
function M._proxy(st)
  local proxy = {}
  rawset(proxy, STATE, st)
  return setmetatable(proxy, ProxyMT)
end

local function transforms_check(v)
  if type(v) ~= "table" then return "a list of transforms (\"zlib\", \"zstd\")" end
  for _, x in ipairs(v) do
    if x ~= "zlib" and x ~= "zstd" then return "a list of \"zlib\" and \"zstd\"" end
  end
  return true
end

-- The options petrel.client takes, and their checks.
local CLIENT_OPTIONS = {
  service = options.service, loop = options.loop, host = options.string,
  port = options.port, unix = options.string,
  transport = options.oneof("framed", "buffered", "header", "framed-header", "ttheader",
    "ttheader-framed", "udp"),
  protocol = options.oneof("binary", "compact", "json"),
  -- TMultiplexedProtocol: calls name "Service:method" (true: this service)
  multiplexed = function(v)
    return v == true or v == false or type(v) == "string" or "true or a service name"
  end,
  headers = headers_check, transforms = transforms_check, acl_token = options.string,
  timeout = options.ms,
  connect_timeout = options.ms, pool_size = options.int(0), keepalive_timeout = options.ms,
  multiplex = options.bool, max_frame = options.int(1), max_conns = options.int(1),
  backlog = options.int(0), nodelay = options.bool, keepalive = options.bool,
  sndbuf = options.int(1), rcvbuf = options.int(1), lazy = options.bool,
}
M.CLIENT_OPTIONS = CLIENT_OPTIONS
local MUTABLE = {
  timeout = options.ms, connect_timeout = options.ms, pool_size = options.int(0),
  keepalive_timeout = options.ms, max_conns = options.int(1), backlog = options.int(0),
}

-- petrel.client{ service = ns.Echo, host = "127.0.0.1", port = 9090 | unix = "/path",
--   loop =, transport = "framed" | "buffered", protocol = "binary" |
--   "compact" (default "binary"), timeout = ms (per call: the
--   wait for a connection slot and for the reply; 0: none; default 5000),
--   connect_timeout = ms (default 3000), pool_size = n idle connections
--   kept (default 8), keepalive_timeout = ms (idle ones close after it;
--   0: never; default 60000), max_conns = n open connections at most
--   (default: no cap), backlog = n callers queued for one (default: no
--   cap), multiplex = bool, max_frame = bytes, nodelay, keepalive, sndbuf,
--   rcvbuf, lazy = bool (results of struct or container types come as
--   message views of the reply, T:view: read without decoding; they keep
--   the reply's bytes alive and never expire) } -> client.
--   transport = "udp": oneway calls, one datagram each (petrel.udp): host,
--   port, loop, sndbuf, protocol = "binary" | "compact"; a call returns
--   true once its datagram is handed to the kernel. Options are checked
--   here: unknown keys and bad values raise.
function M.client(opts)
  if type(opts) == "table" and (opts.resolve ~= nil or opts.instances ~= nil) then
    return require("petrel.cluster").client(opts) -- many instances (a tail call)
  end
  options.check("petrel.client", CLIENT_OPTIONS, opts, 2)
  if not opts.service then
    error("petrel.client: option 'service' (a compiled service) is required", 2)
  end
  if opts.transport == "udp" then -- oneway calls in datagrams (petrel.udp)
    local proxy = {}
    rawset(proxy, STATE, require("petrel.udp").client_state(opts, 2))
    return setmetatable(proxy, ProxyMT)
  end
  if not opts.port and not opts.unix then
    error("petrel.client: option 'port' or 'unix' is required", 2)
  end
  local transport = opts.transport or "framed"
  local headered = rpc.HEADERED[transport]
  for _, k in ipairs({ "headers", "transforms", "acl_token" }) do
    if opts[k] ~= nil and not headered then
      error(string.format("petrel.client: option '%s' needs a transport with headers "
        .. "(\"header\" or \"ttheader\"), not %q", k, transport), 2)
    end
  end
  if opts.protocol == "json" and transport:find("ttheader", 1, true) then
    error("petrel.client: TTHeader carries Binary or Compact, not JSON (Kitex has no id for it)", 2)
  end
  if opts.acl_token and not transport:find("ttheader", 1, true) then
    error("petrel.client: option 'acl_token' needs TTHeader (transport = \"ttheader\")", 2)
  end
  if opts.headers and not transport:find("ttheader", 1, true) then
    for k in pairs(opts.headers) do
      if type(k) ~= "string" then
        error("petrel.client: integer header keys need TTHeader (transport = \"ttheader\")", 2)
      end
    end
  end
  local max_frame = opts.max_frame or rpc.DEFAULT_MAX_FRAME
  -- how calls are framed: a boolean (framed or not), or a framer that
  -- writes header frames (its transforms, its ACL token)
  local wf = transport == "framed"
  local accept = { "zlib" }
  if headered then
    for _, x in ipairs(opts.transforms or {}) do
      if x ~= "zlib" then accept[#accept + 1] = x end
    end
    wf = core.framer { transport = transport, max_frame = max_frame,
      transforms = opts.transforms, acl_token = opts.acl_token }
  end
  local wire_names = {}
  local mux = opts.multiplexed
  if mux then
    local prefix = (mux == true and opts.service.name or mux) .. ":"
    for fname in pairs(opts.service.functions) do wire_names[fname] = prefix .. fname end
  end
  local st = setmetatable({
    service = opts.service,
    loop = opts.loop or loopmod.default(),
    host = opts.host or "127.0.0.1",
    port = opts.port,
    unix = opts.unix,
    transport = transport,
    framed = transport == "framed",
    wf = wf, -- what encode_message frames calls with
    ropts = { accept = accept }, -- the reply framers' options
    ttheader = transport:find("ttheader", 1, true) ~= nil,
    headers = opts.headers,
    hbuf = {},
    wire_names = wire_names,
    protocol = opts.protocol or "binary",
    timeout = opts.timeout or 5000,
    connect_timeout = opts.connect_timeout or 3000,
    pool_size = opts.pool_size or 8,
    keepalive = opts.keepalive_timeout or 60000,
    multiplex = opts.multiplex or false,
    lazy = opts.lazy or false,
    max_frame = max_frame,
    max_conns = opts.max_conns,
    backlog = opts.backlog,
    sockopts = { nodelay = opts.nodelay, keepalive = opts.keepalive,
      sndbuf = opts.sndbuf, rcvbuf = opts.rcvbuf },
    idle = {},
    queue = { first = 1, last = 0 },
    nwaiting = 0,
    nopen = 0,
    inflight = 0,
    seq = 0,
    epoch = 0,
    args = {},
  }, Client)
  st.peer = peer_text(st)
  local proxy = {}
  rawset(proxy, STATE, st)
  return setmetatable(proxy, ProxyMT)
end

-- petrel.configure(c, { timeout =, connect_timeout =, pool_size =,
--   keepalive_timeout =, max_conns =, backlog = }) -> c
function M.configure(proxy, opts)
  local st = state_of(proxy, "petrel.configure")
  if st.udp then error('petrel.configure: a transport = "udp" client has nothing to configure', 2) end
  if st.cluster then st:configure(opts, 2); return proxy end
  options.check("petrel.configure", MUTABLE, opts, 2)
  for k, v in pairs(opts) do
    if k == "keepalive_timeout" then st.keepalive = v else st[k] = v end
  end
  while #st.idle > st.pool_size do st.idle[1]:close() end
  st:_grant()
  return proxy
end

return M

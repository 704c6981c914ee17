-- petrel.client: Thrift RPC clients over the petrel loop — a connection
-- pool, or one multiplexed connection with replies matched by seqid.
local core = require "petrel.core"
local loopmod = require "petrel.loop"
local rpc = require "petrel.rpc"

local CALL, REPLY, EXCEPTION, ONEWAY = rpc.CALL, rpc.REPLY, rpc.EXCEPTION, rpc.ONEWAY
local ErrMT, TAppEx, argnames, new_reader = rpc._ErrMT, rpc._TAppEx, rpc._argnames, rpc._new_reader
local app_error, parse_header = rpc.app_error, rpc.parse_header
local DEFAULT_MAX_FRAME = rpc.DEFAULT_MAX_FRAME

local M = {}

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
    local name, mtype, seqid, pos = parse_header(msg, 1, cl.max_frame)
    local w = name and self.pending[seqid]
    if not w then
      self:_fail_all("reply with unknown sequence id " .. tostring(seqid))
      cl.loop:close(self.id)
      return
    end
    self.pending[seqid] = nil
    self.npending = self.npending - 1
    w:done(msg, mtype, pos, name)
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
--   transport = "framed" | "buffered", timeout = ms (per call),
--   connect_timeout = ms, pool_size = n, keepalive_timeout = ms (idle pooled
--   connections close after it, default 60000), multiplex = bool, max_frame = n }
function M.client(opts)
  assert(type(opts) == "table" and type(opts.service) == "table" and opts.service.functions,
    "petrel.client: { service = compiled service, host =, port = } expected")
  return setmetatable({
    service = opts.service,
    loop = opts.loop or loopmod.default(),
    host = opts.host or "127.0.0.1",
    port = opts.port,
    unix = opts.unix,
    transport = opts.transport or "framed",
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
    self.transport == "framed")
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
  local msg, mtype, pos = loop:await(w, self.timeout)
  if not msg then
    if mtype == "timeout" then
      conn.pending[seqid] = nil
      conn:close() -- a late reply must not meet the next call
    end
    return nil, mtype, reused and mtype ~= "timeout"
  end
  self:_put_conn(conn)
  if mtype == EXCEPTION then
    local ex = TAppEx:decode(msg, pos)
    if not ex then return nil, app_error(rpc.PROTOCOL_ERROR, "undecodable exception") end
    return nil, app_error(ex.type, ex.message)
  end
  if mtype ~= REPLY then
    return nil, app_error(rpc.INVALID_MESSAGE_TYPE, "unexpected message type " .. tostring(mtype))
  end
  local res, derr = fn.result:decode(msg, pos)
  if not res then return nil, app_error(rpc.PROTOCOL_ERROR, derr) end
  if res.success ~= nil then return res.success end
  for _, t in ipairs(fn.throws) do
    if res[t.name] ~= nil then
      return nil, setmetatable({ kind = "exception", name = t.name, type = t.type,
        value = res[t.name] }, ErrMT)
    end
  end
  if fn.result_type == "void" then return true end
  return nil, app_error(rpc.MISSING_RESULT, name .. " failed: unknown result")
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

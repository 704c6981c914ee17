-- petrel.resty: Thrift calls from OpenResty (nginx + lua-nginx-module) over
-- nginx's cosockets, the way lua-resty-redis and lua-resty-mysql talk to
-- their servers. petrel's loop cannot run inside nginx (nginx owns the event
-- loop); its codec, compiled schemas and message functions can.
--
--   local client = resty.client { service = ns.Calc, host =, port = }  -- once per worker
--   local sum, err = client:add(1, 2)        -- in rewrite/access/content/timer code
--
-- Each call on a client borrows a connection from nginx's keepalive pool
-- (connect, send, receive, setkeepalive); client:connect() hands out one
-- connection for several calls in lua-resty-* style. Results are
-- `value | nil, err` as with petrel.client: err is a string for transport
-- failures (the cosocket's own words: "timeout", "closed", "connection
-- refused", ...) or a protocol error ("protocol error: ..."), a table for
-- Thrift errors (kind = "application" | "exception", see petrel.throw).
-- Misuse (unknown function, arguments the schema refuses) raises.
local core = require "petrel.core"
local petrel = require "petrel"
local rpc = require "petrel.rpc"

local ngx = rawget(_G, "ngx")
local type, select, setmetatable, rawget, rawset, tostring, error =
  type, select, setmetatable, rawget, rawset, tostring, error
local byte, format = string.byte, string.format

local M = { _VERSION = petrel._VERSION }

local CALL, REPLY, EXCEPTION, ONEWAY = rpc.CALL, rpc.REPLY, rpc.EXCEPTION, rpc.ONEWAY
local decode_reply = rpc.decode_reply
local DEFAULT_MAX_FRAME = 16 * 1024 * 1024
local MAX_NAME = 65536

-- ---- wire protocols ----------------------------------------------------------
-- A protocol is a table of the core's message functions:
--   encode(T, value, buf, name, mtype, seqid, framed) appends one message
--     (envelope and struct; with its 4-byte length when framed is true, in
--     a header frame when it is a framer) to buf;
--   header(s, pos, max_name) -> name, mtype, seqid, body_pos
--     | nil (cut short) | false, err (malformed);
--   scanner(max_bytes) -> an incremental scanner (sc:feed(buf) -> length
--     of the message at the front of buf | nil (more) | false, err).
-- Another protocol of the core is one more entry here. Replies are read by
-- rpc.decode_reply, as petrel.client reads them, given the protocol's name.
M.protocols = {
  binary = {
    encode = function(T, v, buf, name, mtype, seqid, framed)
      return T:encode_message(v, buf, name, mtype, seqid, framed, "binary")
    end,
    header = core.msg_header,
    scanner = core.scanner,
  },
  compact = {
    encode = function(T, v, buf, name, mtype, seqid, framed)
      return T:encode_message(v, buf, name, mtype, seqid, framed, "compact")
    end,
    header = core.msg_header, -- reads either envelope
    scanner = core.scanner, -- finds the end of either protocol's message
  },
}

-- ---- transports --------------------------------------------------------------
-- read(sock, proto, max_frame) -> message (envelope + struct), nil, nil,
-- extra | nil, err, none. extra: bytes beyond the message arrived (the
-- connection is then not reused); none: the connection ended before any
-- byte of the reply.

local function read_framed(sock, _, max_frame)
  local hdr, err, partial = sock:receive(4)
  if not hdr then return nil, err, err == "closed" and (partial == nil or partial == "") end
  local b1, b2, b3, b4 = byte(hdr, 1, 4)
  local len = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
  if b1 >= 0x80 or len == 0 or len > max_frame then
    return nil, format("protocol error: frame length %d (max_frame %d)",
      b1 >= 0x80 and len - 4294967296 or len, max_frame)
  end
  local body
  body, err = sock:receive(len)
  if not body then return nil, err end
  return body
end

-- Unframed replies end where the message ends: the core's incremental
-- scanner finds that point, looking at each byte once, whatever pieces the
-- bytes arrive in (never a guess from lengths or timing).
-- Idle {buffer, scanner} pairs by protocol and max_frame: taken and given
-- back without yielding, so two requests never share one.
local spare = setmetatable({}, { __mode = "k" })
local function read_unframed(sock, proto, max_frame)
  local by_max = spare[proto]
  if not by_max then by_max = {}; spare[proto] = by_max end
  local pool = by_max[max_frame]
  if not pool then pool = {}; by_max[max_frame] = pool end
  local st = pool[#pool]
  if st then
    pool[#pool] = nil
  else
    st = { buf = core.buffer(), scan = proto.scanner(max_frame) }
  end
  local inb, scan = st.buf, st.scan
  local n, err
  while true do
    local data, rerr = sock:receiveany(65536)
    if not data then
      -- st is dropped: its scanner is mid-message
      return nil, rerr, rerr == "closed" and #inb == 0
    end
    inb:write(data)
    n, err = scan:feed(inb)
    if n then break end
    if n == false then return nil, "protocol error: " .. tostring(err) end
  end
  local msg = inb:read(n)
  local extra = #inb > 0
  if extra then inb:clear() end
  if #pool < 16 then pool[#pool + 1] = st end
  return msg, nil, nil, extra
end

-- Header transports (THeader, Kitex's TTHeader, and their framed forms):
-- every reply starts with a 4-byte length; the frame is read whole, then
-- the client's reply framer (core.framer) takes it apart (info headers,
-- transforms) without yielding, so requests never meet in it.
local hbuf = core.buffer()
local function read_header(sock, _, max_frame, rfr)
  local msg, err, none = read_framed(sock, nil, max_frame)
  if not msg then return nil, err, none end
  hbuf:clear()
  local n = #msg
  hbuf:write_u32(n):write(msg)
  local m, e = rfr:next(hbuf)
  if not m then
    hbuf:clear()
    return nil, "protocol error: " .. tostring(e or "a header frame cut short")
  end
  local extra = #hbuf > 0
  hbuf:clear()
  return m, nil, nil, extra
end

M.transports = {
  framed = { framed = true, read = read_framed },
  buffered = { framed = false, read = read_unframed },
  header = { header = true, read = read_header },
  ["framed-header"] = { header = true, read = read_header },
  ttheader = { header = true, read = read_header },
  ["ttheader-framed"] = { header = true, read = read_header },
}

-- ---- phases --------------------------------------------------------------------
-- lua-nginx-module allows cosockets in these phases only (ngx.get_phase()
-- names); elsewhere ngx.socket.tcp raises, so calls answer nil, err first.
local COSOCKET_PHASES = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
  preread = true, -- the stream subsystem
}

-- nil when a cosocket may be made now, else why not
local function no_cosocket()
  if not ngx or not ngx.socket or not ngx.get_phase then
    return "petrel.resty runs inside OpenResty: ngx.socket.tcp is not available here"
  end
  local phase = ngx.get_phase()
  if not COSOCKET_PHASES[phase] then
    return "cosockets are not available in the " .. tostring(phase) .. " phase"
  end
end

-- ---- calls -------------------------------------------------------------------

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

-- One buffer and one argument table for every request's encoding: they
-- are filled, encoded and emptied without yielding, so requests never meet
-- in them. (An encoding error leaves the argument table holding its values
-- until the next call.)
local wbuf = core.buffer()
local args = {}

-- The request bytes of one call (raises on arguments the schema refuses).
local function encode_call(cl, fn, name, ...)
  local names = argnames(fn)
  local n = #names
  if n == 1 then
    args[names[1]] = ...
  else
    for i = 1, n do args[names[i]] = (select(i, ...)) end
  end
  local seqid = cl.seq % 0x7fffffff + 1
  cl.seq = seqid
  if #wbuf > 0 then wbuf:clear() end
  cl.proto.encode(fn.args, args, wbuf, cl.wire_names[name] or name,
    fn.oneway and ONEWAY or CALL, seqid, cl.framed)
  for i = 1, n do args[names[i]] = nil end
  return wbuf:read(), seqid
end

-- One request/reply on sock: result | nil, err, quiet, dirty. A connection
-- left out of step (timeout, bad bytes) is closed here, so it never reaches
-- the pool; quiet: it was a pooled connection that ended before any byte of
-- the reply (the server closed it while it sat idle); dirty: stray bytes
-- followed the reply (the connection must not be pooled).
local function exchange(cl, sock, fn, name, req, seqid)
  local n, err = sock:send(req)
  if not n then
    sock:close()
    return nil, err
  end
  if fn.oneway then return true end
  local msg, rerr, none, extra = cl.transport.read(sock, cl.proto, cl.max_frame, cl.rfr)
  if not msg then
    local quiet = none and (sock:getreusedtimes() or 0) > 0
    sock:close()
    return nil, rerr, quiet
  end
  local rname, mtype, rseq, pos = cl.proto.header(msg, 1, MAX_NAME)
  if not rname then
    sock:close()
    return nil, "protocol error: " .. (mtype or "reply shorter than its envelope")
  end
  if rseq ~= seqid then
    sock:close()
    return nil, format("protocol error: reply with sequence id %d, expected %d", rseq, seqid)
  end
  local res, derr = decode_reply(fn, name, msg, mtype, pos, cl.pname, cl.lazy)
  return res, derr, nil, extra
end

-- ---- connections -----------------------------------------------------------------

local Conn = {}

-- A connected cosocket (from the pool when one is idle) | nil, err.
local function open(cl)
  local why = no_cosocket()
  if why then return nil, why end
  local sock, err = ngx.socket.tcp()
  if not sock then return nil, err end
  sock:settimeouts(cl.connect_timeout, cl.send_timeout, cl.read_timeout)
  local ok
  if cl.unix then
    ok, err = sock:connect(cl.unix, cl.connect_opts)
  else
    ok, err = sock:connect(cl.host, cl.port, cl.connect_opts)
  end
  if not ok then return nil, err end
  return sock
end

-- conn:call(name, ...) -> result | nil, err (see the module's notes)
function Conn:call(name, ...)
  local cl = self.cl
  local fn = cl.functions[name]
  if not fn then error("petrel.resty: no function '" .. tostring(name) .. "'", 2) end
  local req, seqid = encode_call(cl, fn, name, ...)
  if self.dirty then -- a reply may yet be misread: no more calls here
    self.sock:close()
    return nil, "not reusable: " .. self.dirty
  end
  local res, err, _, dirty = exchange(cl, self.sock, fn, name, req, seqid)
  if dirty then self.dirty = "bytes after the reply" end
  return res, err
end

-- conn:settimeouts(connect_ms, send_ms, read_ms) -> true
function Conn:settimeouts(c, s, r)
  self.sock:settimeouts(c, s, r)
  return true
end

-- conn:setkeepalive([idle_ms [, pool_size]]) -> 1 | nil, err: back to the
-- pool (defaults: the client's keepalive_timeout and pool_size). A
-- connection that failed was closed already ("closed"); one with stray
-- bytes after its last reply is closed instead of pooled.
function Conn:setkeepalive(timeout, size)
  local sock = self.sock
  if self.dirty then
    sock:close()
    return nil, "not reusable: " .. self.dirty
  end
  local cl = self.cl
  return sock:setkeepalive(timeout or cl.keepalive_timeout, size or cl.pool_size)
end

-- conn:getreusedtimes() -> how often this connection came from the pool
function Conn:getreusedtimes() return self.sock:getreusedtimes() end

function Conn:close() return self.sock:close() end

-- ---- clients -------------------------------------------------------------------

local Client = {}

-- A service function as a method of clients and connections (one closure
-- per function name and client).
local function method(cl, k)
  local f = cl.methods[k]
  if f == nil and cl.functions[k] then
    f = function(me, ...) return me:call(k, ...) end
    cl.methods[k] = f
  end
  return f
end

-- resty.client{ service = ns.Svc, host = "127.0.0.1", port = n | unix = "/path",
--   transport = "framed" | "buffered" | "header" | "framed-header" | "ttheader"
--     | "ttheader-framed", protocol = "binary" | "compact",
--   timeout = ms (send and read, default 5000), connect_timeout = ms (3000),
--   send_timeout = ms, read_timeout = ms,
--   pool = name, pool_size = n (idle connections kept, default 30),
--   backlog = n, keepalive_timeout = ms (60000), max_frame = bytes (16 MiB),
--   multiplexed = true | "Name" (TMultiplexedProtocol: "Name:method"),
--   lazy = true (results of struct and container types come as views of
--     the reply, as petrel.client's lazy = true gives them) }
-- Create it once per worker (module level, init_by_lua or
-- init_worker_by_lua) and call it from any request.
function M.client(opts)
  if type(opts) ~= "table" or type(opts.service) ~= "table" or not opts.service.functions then
    error("petrel.resty.client: { service = compiled service, host =, port = } expected", 2)
  end
  local tname = opts.transport or "framed"
  local transport = M.transports[tname]
  if not transport then error("petrel.resty.client: unknown transport '" .. tostring(tname) .. "'", 2) end
  local pname = opts.protocol or "binary"
  local proto = M.protocols[pname]
  if not proto then error("petrel.resty.client: unknown protocol '" .. tostring(pname) .. "'", 2) end
  local host, port, unix = opts.host or "127.0.0.1", opts.port, opts.unix
  if not unix and type(port) ~= "number" then
    error("petrel.resty.client: port (or unix) expected", 2)
  end
  local svc = opts.service
  local cl = setmetatable({
    service = svc,
    functions = svc.functions,
    host = host, port = port, unix = unix and "unix:" .. unix,
    transport = transport, framed = transport.framed, proto = proto, pname = pname,
    -- results of struct and container types as views of the reply
    lazy = opts.lazy and true or false,
    -- header transports: calls are written through a framer, replies read
    -- by another (core.framer)
    rfr = transport.header and core.framer { transport = tname,
      max_frame = opts.max_frame or DEFAULT_MAX_FRAME } or nil,
    connect_timeout = opts.connect_timeout or 3000,
    send_timeout = opts.send_timeout or opts.timeout or 5000,
    read_timeout = opts.read_timeout or opts.timeout or 5000,
    keepalive_timeout = opts.keepalive_timeout or 60000,
    pool_size = opts.pool_size,
    max_frame = opts.max_frame or DEFAULT_MAX_FRAME,
    seq = 0,
    methods = {},
    wire_names = {},
  }, M.ClientMT)
  -- connections of one pool must speak alike: the pool name carries the
  -- transport and protocol (a petrel server decides framing per connection)
  if transport.header then
    if pname == "json" then error("petrel.resty.client: header transports carry Binary or Compact", 2) end
    cl.framed = core.framer { transport = tname, max_frame = cl.max_frame }
  end
  cl.connect_opts = {
    pool = opts.pool or format("petrel:%s:%s:%s", unix and ("unix:" .. unix) or
      (host .. ":" .. port), tname, pname),
    pool_size = opts.pool_size or (opts.backlog and 30) or nil,
    backlog = opts.backlog,
  }
  local mux = opts.multiplexed
  if mux then
    local prefix = (mux == true and svc.name or tostring(mux)) .. ":"
    for k in pairs(svc.functions) do cl.wire_names[k] = prefix .. k end
  end
  cl.conn_mt = {
    __index = function(me, k)
      local v = Conn[k]
      if v ~= nil then return v end
      return method(rawget(me, "cl"), k)
    end,
  }
  return cl
end

M.ClientMT = {
  __index = function(cl, k)
    local v = Client[k]
    if v ~= nil then return v end
    v = method(cl, k)
    if v then rawset(cl, k, v) end
    return v
  end,
}

-- client:call(name, ...) -> result | nil, err: one call on a pooled
-- connection. A pooled connection the server had closed while it sat idle
-- (nothing of the reply arrived) is retried once on another connection,
-- as petrel.client does.
function Client:call(name, ...)
  local fn = self.functions[name]
  if not fn then error("petrel.resty: no function '" .. tostring(name) .. "'", 2) end
  local req, seqid = encode_call(self, fn, name, ...)
  for attempt = 1, 2 do
    local sock, err = open(self)
    if not sock then return nil, err end
    local res, quiet, dirty
    res, err, quiet, dirty = exchange(self, sock, fn, name, req, seqid)
    if not quiet or attempt == 2 then
      if res ~= nil or type(err) == "table" then -- the connection is in step
        if dirty then
          sock:close()
        else
          sock:setkeepalive(self.keepalive_timeout, self.pool_size)
        end
      end
      return res, err
    end
  end
end

-- client:connect() -> conn | nil, err: one connection (from the pool when
-- one is idle) for several calls in this request; give it back with
-- conn:setkeepalive() or conn:close().
function Client:connect()
  local sock, err = open(self)
  if not sock then return nil, err end
  return setmetatable({ sock = sock, cl = self }, self.conn_mt)
end

-- client:settimeouts(connect_ms, send_ms, read_ms): the timeouts of every
-- later call of this client (per connection: conn:settimeouts).
function Client:settimeouts(c, s, r)
  self.connect_timeout = c or self.connect_timeout
  self.send_timeout = s or self.send_timeout
  self.read_timeout = r or self.read_timeout
  return true
end

-- client:close(): nothing to do (the pool belongs to nginx); for code
-- written against petrel.client.
function Client:close() return true end

return M

-- petrel.rpc: Thrift RPC over the petrel loop — messages (Binary strict
-- and non-strict, Compact, JSON envelopes), transports (framed, unframed
-- "buffered", Apache's THeader, Kitex's TTHeader: the core's framers),
-- multiplexed services, per-call context, and servers with coroutine
-- handlers. Clients are in petrel.client, petrel.serve's worker processes
-- in petrel.supervisor. Interoperates with Apache Thrift and Kitex.
local core = require "petrel.core"
local schema = require "petrel.schema"
local loopmod = require "petrel.loop"
local options = require "petrel.options"

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

-- C methods a server calls for every call, taken once (a method call on a
-- userdata looks its name up through the metatable's __index each time):
-- of types (TAppEx's are every compiled type's), messages, framers, and
-- the C loop (set by the first server: c_*)
local type_view, type_decode, type_encode_message =
  TAppEx.view, TAppEx.decode, TAppEx.encode_message
local msg_header, msg_expire
do
  local m = core.message()
  msg_header, msg_expire = m.header, m.expire
end
local fr_next = core.framer({ transport = "framed" }).next
local c_now, c_input, c_output, c_send_later, c_consumed
M.UNKNOWN, M.UNKNOWN_METHOD, M.INVALID_MESSAGE_TYPE, M.WRONG_METHOD_NAME = 0, 1, 2, 3
M.BAD_SEQUENCE_ID, M.MISSING_RESULT, M.INTERNAL_ERROR, M.PROTOCOL_ERROR = 4, 5, 6, 7
M.INVALID_TRANSFORM, M.INVALID_PROTOCOL = 8, 9
local APP_NAMES = { [0] = "UNKNOWN", "UNKNOWN_METHOD", "INVALID_MESSAGE_TYPE",
  "WRONG_METHOD_NAME", "BAD_SEQUENCE_ID", "MISSING_RESULT", "INTERNAL_ERROR",
  "PROTOCOL_ERROR", "INVALID_TRANSFORM", "INVALID_PROTOCOL", "UNSUPPORTED_CLIENT_TYPE" }

-- Errors given to callers: transport errors are strings; Thrift errors are
-- tables with kind = "application" (TApplicationException: type, message)
-- or kind = "exception" (a declared exception: name, type, value).
local ErrMT = {}
ErrMT.__index = ErrMT
ErrMT.__tostring = function(e)
  if e.kind == "application" then
    return string.format("TApplicationException %s (%d): %s",
      APP_NAMES[e.type or 0] or "?", e.type or 0, e.message or "")
  end
  return string.format("%s (%s)", e.type or "exception", e.name or "?")
end
local function app_error(t, msg)
  return setmetatable({ kind = "application", type = t, message = msg }, ErrMT)
end
M.app_error = app_error

-- Raise a declared exception from a handler: error(petrel.throw("oops", v)).
-- name: the throws-field name ("oops") or the exception's type name
-- ("Xception"); anything the method does not declare is a handler error.
function M.throw(name, value)
  if type(name) ~= "string" then
    error("petrel.throw: exception name expected (the throws-field or the type name), got "
      .. type(name), 2)
  end
  return setmetatable({ kind = "exception", name = name, value = value }, ErrMT)
end

-- The throws entry of fn that `name` means: its field name, or its type's
-- name (qualified or not). nil if fn declares no such exception.
local function find_throw(fn, name)
  local throws = fn.throws
  for i = 1, #throws do
    if throws[i].name == name then return throws[i] end
  end
  for i = 1, #throws do
    local t = throws[i].type
    if t == name or t:match("[^.]+$") == name then return throws[i] end
  end
end

-- What fn declares, for messages: "err (Xception), other (Other)".
local function declared(fn)
  local t = {}
  for i, x in ipairs(fn.throws) do t[i] = x.name .. " (" .. x.type .. ")" end
  return #t > 0 and ("declared: " .. table.concat(t, ", ")) or "it declares no exceptions"
end

-- Readable text for an error value of any type: strings as they are,
-- tables through __tostring or as a short literal, others by tostring.
local function render(v, depth)
  local t = type(v)
  if t == "string" then return v end
  if t ~= "table" then return tostring(v) end
  local mt = getmetatable(v)
  if mt and mt.__tostring then return tostring(v) end
  depth = depth or 0
  if depth >= 2 then return "{...}" end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) and (type(a) == "number" or type(a) == "string") then return a < b end
    return type(a) < type(b)
  end)
  local parts = {}
  for i, k in ipairs(keys) do
    if i > 12 then parts[#parts + 1] = "..."; break end
    local x = v[k]
    local vs = type(x) == "string" and string.format("%q", x) or render(x, depth + 1)
    if type(k) == "string" and k:match("^[%a_][%w_]*$") then
      parts[#parts + 1] = k .. " = " .. vs
    else
      parts[#parts + 1] = "[" .. (type(k) == "string" and string.format("%q", k) or tostring(k))
        .. "] = " .. vs
    end
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end
M.render = render

-- msg without the "file:line: " that error() put before it.
local function strip_position(msg)
  local rest = msg:match("^[^%s:][^:\n]*:%d+: (.*)$")
  return rest or msg
end

-- The default logger: one line on stderr (looked up at each call, so a
-- redirected io.stderr is used).
local function stderr_logger(line)
  io.stderr:write("petrel: ", line, "\n")
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
local DEC = { binary = nil, compact = { protocol = "compact" }, json = { protocol = "json" } }
M.DEC = DEC
M.PROTOCOLS = { binary = true, compact = true, json = true }
-- Transports: the names a framer (core.framer) takes. "header" is Apache's
-- THeader, "framed-header" a THeader frame inside a frame (Apache's
-- clients with --transport framed --protocol header), "ttheader" Kitex's
-- TTHeader, "ttheader-framed" Kitex's TTHeaderFramed (the payload inside
-- the TTHeader carries its own frame length).
M.TRANSPORTS = { "framed", "buffered", "header", "framed-header", "ttheader", "ttheader-framed" }
-- Transports with a header (replies are written through the framer).
local HEADERED = { header = true, ["framed-header"] = true, ttheader = true,
  ["ttheader-framed"] = true, ["framed-ttheader"] = true }
M.HEADERED = HEADERED

-- Kitex's integer keys of TTHeader (petrel/transmeta.lua)
M.transmeta = require "petrel.transmeta"

-- Framing of a connection's input: yields complete messages. mode: a
-- transport name (M.TRANSPORTS) or "auto" (server side: decided from the
-- first bytes by the core's detection, which waits until they tell:
-- framed or not, THeader or TTHeader or none, Binary, Compact or JSON; an
-- HTTP or TLS peer is named as such). Returns next() -> msg [, headers [,
-- acl_token]] | nil (need more) | false, err [, seqid] (seqid: only that
-- frame was refused), mode() -> the transport (nil while undecided), and
-- the framer. (Servers call their framer themselves: Server:on_data.)
local function new_reader(loop, id, mode, max_frame, fopts)
  local inb = loop.c:input(id)
  local o = { transport = mode, max_frame = max_frame }
  if fopts then for k, v in pairs(fopts) do o[k] = v end end
  local fr = core.framer(o)
  return function() return fr:next(inb) end, function() return fr:transport() end, fr
end
M._reader = new_reader -- for the specs

-- ---- per-call context ----------------------------------------------------------

-- The call a handler coroutine is running (weak: a finished call's entry
-- goes with its coroutine).
local CURRENT = setmetatable({}, { __mode = "k" })
local co_running, co_create, co_resume, co_yield =
  coroutine.running, coroutine.create, coroutine.resume, coroutine.yield

local Ctx = {}
Ctx.__index = Ctx
-- ms left until the caller's deadline, nil when it sent none
function Ctx:remaining()
  if not self.deadline then return nil end
  local left = self.deadline - self._loop:now()
  return left > 0 and left or 0
end

-- petrel.context(): the call the running handler serves, nil outside one.
-- Made at its first call in a handler: the header frame's entries are
-- decoded then (job.info: their bytes, as the framer gave them), not for
-- calls whose handlers never ask.
function M.context()
  local job = CURRENT[co_running()]
  if not job then return nil end
  local c = job.ctx
  if c then return c end
  local conn = job.conn
  local headers, acl
  if job.info then headers, acl = conn.fr:info(job.info) else headers = {} end
  c = setmetatable({
    service = job.svc.service.name, method = job.name, seqid = job.seqid,
    peer = conn.peer, transport = conn.transport or conn.fr:transport(), protocol = job.proto,
    headers = headers, acl_token = acl, deadline = job.deadline,
    reply_headers = {}, oneway = job.fn.oneway or job.mtype == ONEWAY,
    _loop = conn.server.loop,
  }, Ctx)
  job.ctx = c
  return c
end

-- ---- server ----------------------------------------------------------------

local Server = {}
Server.__index = Server

-- The options petrel.server takes, and their checks (petrel.serve takes
-- these and SERVE_OPTIONS).
local SERVER_OPTIONS = {
  service = options.service, handler = options.table, loop = options.loop,
  host = options.string, port = options.port, unix = options.string,
  transport = options.oneof("auto", "framed", "buffered", "header", "framed-header",
    "ttheader", "ttheader-framed", "udp"),
  -- TMultiplexedProtocol: { Name = { service =, handler = } ... }; calls
  -- named "Name:method" go to Name (service / handler: for calls that
  -- name no service)
  services = options.table,
  -- transforms taken in header frames: { "zlib" } (default), "zstd" opt-in
  transforms = options.table,
  max_frame = options.int(1), idle_timeout = options.ms, out_cap = options.int(1),
  write_timeout = options.ms, backlog = options.int(0), reuseport = options.bool,
  keepalive = options.bool, nodelay = options.bool, sndbuf = options.int(1),
  rcvbuf = options.int(1), logger = options.func_or_false, debug = options.bool,
  lazy = function(v)
    if type(v) == "boolean" then return true end
    if type(v) ~= "table" then return "true, false or a table of method names" end
    for k, x in pairs(v) do
      if type(k) ~= "string" or type(x) ~= "boolean" then
        return "true, false or a table { method = true | false }"
      end
    end
    return true
  end,
  -- service registry (petrel.etcd): see Server:_register
  registry = options.registry, service_name = options.string, weight = options.int(1),
  tags = options.table, advertise = options.string, deregister_wait = options.ms,
  -- transport = "udp" only (petrel.udp)
  protocol = options.protocol, max_datagram = loopmod.UDP_OPTIONS.max_datagram,
}
M.SERVER_OPTIONS = SERVER_OPTIONS
local UDP_ONLY = { protocol = true, max_datagram = true }

-- The handler table against the service: a name the service lacks (a typo)
-- or a value that is not a function raises; the functions without a
-- handler are returned (sorted).
local function check_handler(who, svc, handler, level)
  for k, v in pairs(handler) do
    if not svc.functions[k] then
      local names = {}
      for name in pairs(svc.functions) do names[#names + 1] = name end
      table.sort(names)
      error(string.format("%s: handler '%s' is not a function of service %s (it has: %s)",
        who, tostring(k), svc.name, table.concat(names, ", ")), level + 1)
    end
    if type(v) ~= "function" then
      error(string.format("%s: handler '%s' must be a function, got %s", who, k, type(v)),
        level + 1)
    end
  end
  local missing = {}
  for name in pairs(svc.functions) do
    if handler[name] == nil then missing[#missing + 1] = name end
  end
  table.sort(missing)
  return missing
end

M._check_handler = check_handler

-- petrel.server{ service = ns.Echo, handler = { echo = function(req) ... end },
--   host = "127.0.0.1", port = 9090 | unix = "/path", loop = ...,
--   transport = "auto" | "framed" | "buffered", max_frame = bytes,
--   idle_timeout = ms, out_cap = bytes (default 4 MiB: a conn whose unsent
--   replies are over it is not read until they drained), write_timeout = ms
--   (a peer whose unread replies stay over out_cap this long is dropped;
--   default 10000), backlog = n, reuseport = bool, keepalive, nodelay,
--   sndbuf, rcvbuf, logger = function(line, info) | false (handler errors;
--   default: a line on stderr), debug = bool (peers get file:line too),
--   lazy = true | { method = true, ... } (those handlers get message views,
--   T:view, instead of decoded tables: nothing is decoded until read; the
--   views expire when the handler returns unless v:retain() was called;
--   a view returned, or placed in the result, is sent as its bytes) }
-- transport = "udp": a service of oneway methods over datagrams, one
-- message per datagram (petrel.udp): host, port, reuseport, rcvbuf,
-- protocol = "binary" | "compact" (the socket's), max_datagram = bytes (longer ones
-- are cut, counted and logged; default 65536), logger, debug.
-- Options are checked here: unknown keys and bad values raise.
-- The services a server hosts: { [name] = { service =, handler =, missing
-- = {...} } } and the default one (opts.service / opts.handler), checked.
local function server_services(who, opts, level)
  local by_name, default
  if opts.services then
    by_name = {}
    for name, e in pairs(opts.services) do
      if type(name) ~= "string" or type(e) ~= "table" or options.service(e.service) ~= true
        or type(e.handler) ~= "table" then
        error(string.format("%s: services[%s] must be { service = <compiled service>, "
          .. "handler = { ... } }", who, tostring(name)), level + 1)
      end
      by_name[name] = { service = e.service, handler = e.handler,
        missing = check_handler(who .. ": services." .. name, e.service, e.handler, level + 1) }
    end
  end
  if opts.service or not opts.services then
    if not opts.service then error(who .. ": option 'service' (a compiled service) is required", level + 1) end
    if not opts.handler then error(who .. ": option 'handler' (a table of functions) is required", level + 1) end
    default = { service = opts.service, handler = opts.handler,
      missing = check_handler(who, opts.service, opts.handler, level + 1) }
  end
  return by_name, default
end
M._server_services = server_services

function M.server(opts, level)
  level = (level or 1) + 1
  options.check("petrel.server", SERVER_OPTIONS, opts, level)
  if opts.transport == "udp" then
    local srv, err = require("petrel.udp").server(opts, level + 1)
    return srv, err
  end
  for k in pairs(UDP_ONLY) do
    if opts[k] ~= nil then
      error(string.format('petrel.server: option \'%s\' is for transport = "udp"', k), level)
    end
  end
  local services, default = server_services("petrel.server", opts, level)
  local missing = default and default.missing or {}
  local accept = opts.transforms or { "zlib" }
  -- a transform this build lacks raises now, not at the first frame
  core.framer { transport = "framed", accept = accept }
  M._check_advertise("petrel.server", opts, level)
  local logger = opts.logger
  if logger == nil then logger = stderr_logger end
  local self = setmetatable({
    loop = opts.loop or loopmod.default(),
    -- the default service, else (only multiplexed ones) the first, for logs
    service = opts.service or services[M._service_name(opts)].service,
    handler = opts.handler,
    default = default,   -- calls that name no service
    services = services, -- multiplexed: name -> { service, handler }
    accept = accept,
    transport = opts.transport or "auto",
    max_frame = opts.max_frame or DEFAULT_MAX_FRAME,
    idle_timeout = opts.idle_timeout,
    out_cap = opts.out_cap or 4 * 1024 * 1024,
    write_timeout = opts.write_timeout or 10000,
    conns = {},
    nconns = 0,
    inflight = 0,
    counters = { connections = 0, calls = 0, errors = 0, bytes_in = 0, oneway = 0, expired = 0 },
    jobs = {},       -- recycled call jobs
    result_tab = {}, -- the result struct of every reply
    logger = logger or nil,
    debug = opts.debug or false,
    missing = missing, -- functions without a handler (calls get UNKNOWN_METHOD)
    unix = opts.unix,
    lazy = opts.lazy,   -- true | { method = bool } | nil
    msgs = {},          -- lazy servers: recycled messages
    idle = {},          -- parked worker coroutines (Server:_run)
  }, Server)
  if type(opts.lazy) == "table" then
    -- names of functions of the services served (multiplexed ones too)
    for k in pairs(opts.lazy) do
      local found = default and default.service.functions[k]
      for _, e in pairs(services or {}) do found = found or e.service.functions[k] end
      if not found then
        error(("petrel.server: lazy names '%s', not a function of service %s"):format(k,
          self.service.name), level)
      end
    end
  end
  if #missing > 0 then
    self:_log(string.format("%s: no handler for %s (calls to them get UNKNOWN_METHOD)",
      self.service.name, table.concat(missing, ", ")), { kind = "missing", missing = missing })
  end
  for name, e in pairs(services or {}) do
    if #e.missing > 0 then
      self:_log(string.format("%s: no handler for %s (calls to them get UNKNOWN_METHOD)",
        name, table.concat(e.missing, ", ")), { kind = "missing", missing = e.missing })
    end
  end
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
    on_data = function(_, id, n) return Server.on_data(self, id, n) end,
    on_closed = function(_, id, err) return self:on_closed(id, err) end,
  }
  self.loop:attach(lid, self.h)
  if not c_now then
    local c = self.loop.c
    c_now, c_input, c_output, c_send_later, c_consumed =
      c.now, c.input, c.output, c.send_later, c.consumed
  end
  if opts.registry then self:_register(opts) end
  return self
end

-- ---- registry: register after listening, leave before draining --------------

-- A wildcard listening address registers nothing clients can reach:
-- raise unless 'advertise' says what to register (checked before listening).
function M._check_advertise(who, opts, level)
  local host = opts.host or "127.0.0.1"
  if opts.registry and not opts.advertise and not opts.unix and (host == "" or host == "*"
    or host == "0.0.0.0" or host == "::" or host == "[::]") then
    error(string.format("%s: listening on '%s' registers no address clients can use; set "
      .. "'advertise' (\"10.0.0.5:9090\")", who, host), level + 1)
  end
end

-- The name a server registers under by default: its service's, or (only
-- multiplexed services) the first of their names.
function M._service_name(opts)
  if opts.service then return opts.service.name end
  local names = {}
  for name in pairs(opts.services or {}) do names[#names + 1] = name end
  table.sort(names)
  return names[1]
end

-- The arguments of registry:register for a server listening on host:port
-- (or on opts.unix).
function M._registration_args(opts, host, port, loop)
  local a = { service = opts.service_name or M._service_name(opts), weight = opts.weight,
    tags = opts.tags, loop = loop }
  if opts.advertise then
    a.address = opts.advertise
  elseif opts.unix then
    a.unix = opts.unix
  else
    a.address = (host:find(":", 1, true) and not host:find("^%[")) and
      ("[" .. host .. "]:" .. port) or (host .. ":" .. port)
  end
  return a
end

function Server:_register(opts)
  local a = M._registration_args(opts, opts.host or "127.0.0.1", self.port, self.loop)
  self.deregister_wait = opts.deregister_wait or 1000
  self.registration = opts.registry:register(a)
end

-- Shutdown with a registration: deregister first, wait deregister_wait ms
-- (clients drop the instance meanwhile; calls still arriving are served),
-- then stop accepting and drain as usual.
function Server:_leave(done)
  self.leaving = true
  local reg = self.registration
  self.loop:spawn(function()
    local ok, err = reg:deregister(math.max(self.deregister_wait, 1000))
    if not ok then self:_log("deregister: " .. tostring(err), { kind = "registry", error = err }) end
    if self.deregister_wait > 0 then self.loop:sleep(self.deregister_wait) end
    self.registration, self.leaving = nil, false
    self:shutdown(done)
  end)
end

function Server:on_accept(id)
  if self.closing then self.loop.c:close(id); return end
  -- the peer's address, for logs (unix peers are unnamed: the path)
  local peer = self.loop.c:info(id)
  if not peer or peer == "unix:" then peer = self.unix and ("unix:" .. self.unix) or "?" end
  local conn = { id = id, server = self, busy = 0, peer = peer }
  -- the connection's framer (no closures per connection: 10,000 idle
  -- connections cost what their tables and framers hold)
  local fo = self.framer_opts
  if not fo then
    fo = { transport = self.transport, max_frame = self.max_frame, accept = self.accept,
      echo = true, raw_info = true }
    self.framer_opts = fo
  end
  conn.fr = core.framer(fo)
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
-- conn.wf: true (framed), false (unframed) or the framer (header frames);
-- rh: the reply's header entries (header frames only).
local function send_reply(self, conn, name, mtype, seqid, T, value, proto, rh)
  if conn.dropped then return end
  local loop = self.loop
  -- the connection's output buffer, kept from its first reply (the same
  -- buffer for the connection's life; once the core closed it, send_later
  -- below fails and nothing reaches the peer)
  local out = conn.out
  if not out then
    out = c_output(loop.c, conn.id)
    if not out then return end
    conn.out = out
  end
  type_encode_message(T, value, out, name, mtype, seqid, conn.wf, proto, rh)
  local r = c_send_later(loop.c, conn.id)
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

-- Log through the server's logger (one line; info carries the parts).
function Server:_log(line, info)
  local logger = self.logger
  if not logger then return end
  line = line:gsub("\n", "\\n")
  local ok, err = pcall(logger, line, info)
  if not ok then stderr_logger("logger failed: " .. tostring(err) .. "; it was given: " .. line) end
end

-- A failed call: logged with method, peer and message; full is what the
-- log says (with the handler's file:line), peer_msg what the peer is told.
function Server:_call_error(conn, fn, name, kind, full, raw, svc)
  self.counters.errors = self.counters.errors + 1
  local peer = conn.peer or "unknown peer"
  local oneway = fn.oneway
  local sname = (svc or self).service.name
  self:_log(string.format("%s.%s%s from %s: %s", sname, name,
    oneway and " (oneway)" or "", peer, full), { kind = kind, service = sname,
    method = name, peer = peer, message = full, error = raw, oneway = oneway })
end

local function is_err(v) return type(v) == "table" and getmetatable(v) == ErrMT end

-- A call's coroutine: run the handler, reply (or not, for oneway).
local run_reply
local function run_call(self, conn, job, co)
  CURRENT[co] = job
  local ok, res, res2
  local n = job.n
  if n == 1 then -- most methods take one argument: no unpack call
    ok, res, res2 = pcall(job.h, job[1])
  else
    ok, res, res2 = pcall(job.h, unpack(job, 1, n))
  end
  CURRENT[co] = nil
  local m = job.msg
  if not m then return run_reply(self, conn, job, ok, res, res2) end
  -- lazy: the reply is written (views in it linked or copied) before the
  -- call's message expires; a retained message is left to its views
  job.msg = nil
  run_reply(self, conn, job, ok, res, res2)
  if msg_expire(m) then
    local msgs = self.msgs
    if #msgs < 64 then msgs[#msgs + 1] = m end
  end
end

function run_reply(self, conn, job, ok, res, res2)
  local fn, name, mtype, seqid, proto = job.fn, job.name, job.mtype, job.seqid, job.proto
  local svc, ctx = job.svc, job.ctx
  local rh = ctx and next(ctx.reply_headers) ~= nil and ctx.reply_headers or nil
  for i = 1, job.n do job[i] = nil end
  -- what this call brought is let go (h, fn, name, proto and svc are the
  -- server's own, overwritten by the next call)
  job.ctx, job.info, job.deadline, job.conn = nil, nil, nil, nil
  local pool = self.jobs
  if #pool < 64 then pool[#pool + 1] = job end
  conn.busy = conn.busy - 1
  self.inflight = self.inflight - 1
  if ok and res == nil and is_err(res2) then
    ok, res = false, res2 -- return nil, petrel.throw(...)
  end
  local oneway = fn.oneway or mtype == ONEWAY
  if ok then
    if oneway then
      self.counters.oneway = self.counters.oneway + 1
      if self.closing then self:_maybe_finish() end
      return
    end
    -- the result struct is written at once (encode does not yield): one
    -- table per server serves every reply
    local r = self.result_tab
    r.success = res
    local ok2, e2 = pcall(send_reply, self, conn, name, REPLY, seqid, fn.result, r, proto, rh)
    r.success = nil
    if not ok2 then
      local m = "cannot encode the result: " .. tostring(e2)
      self:_call_error(conn, fn, name, "encode", m, e2, svc)
      send_reply(self, conn, name, EXCEPTION, seqid, TAppEx, { message = m, type = M.INTERNAL_ERROR }, proto)
    end
    if self.closing then self:_maybe_finish() end
    return
  end
  if oneway then self.counters.oneway = self.counters.oneway + 1 end
  local t, full, peer_msg = M.INTERNAL_ERROR, nil, nil
  if is_err(res) and res.kind == "exception" then
    local th = find_throw(fn, res.name)
    if th and not oneway then
      local r = self.result_tab
      r[th.name] = res.value
      local ok2, e2 = pcall(send_reply, self, conn, name, REPLY, seqid, fn.result, r, proto, rh)
      r[th.name] = nil
      if ok2 then return self:_maybe_finish() end
      full = string.format("cannot encode exception %s (%s): %s", th.name, th.type, tostring(e2))
      self:_call_error(conn, fn, name, "encode", full, res, svc)
    else
      full = string.format("undeclared exception '%s' thrown by %s (%s)", res.name, name,
        declared(fn))
      self:_call_error(conn, fn, name, "undeclared", full, res, svc)
    end
    peer_msg = full
  elseif is_err(res) and res.kind == "application" then
    -- a TApplicationException the handler chose to raise: sent as it is
    self.counters.errors = self.counters.errors + 1
    t, peer_msg = res.type or M.INTERNAL_ERROR, res.message or ""
  else
    full = render(res)
    self:_call_error(conn, fn, name, "handler", full, res, svc)
    peer_msg = (self.debug or type(res) ~= "string") and full or strip_position(full)
  end
  if not oneway then
    send_reply(self, conn, name, EXCEPTION, seqid, TAppEx, { message = peer_msg, type = t }, proto)
  end
  self:_maybe_finish()
end

-- The server's workers: coroutines that run calls (run_call) and park in
-- self.idle between them. loop:spawn does the same for any function; a
-- server resumes its own to save spawn's layers (varargs, a pcall, the
-- status check) on every call. A worker blocked in its handler is resumed
-- by the loop like any of its coroutines (loop.cos); an error outside the
-- handler's pcall ends the worker and goes to loop.on_error.
local function worker_body(self, co)
  local conn, job = co_yield()
  while true do
    run_call(self, conn, job, co)
    local idle = self.idle
    if #idle >= 64 then
      self.loop.cos[co] = nil
      return
    end
    idle[#idle + 1] = co
    conn, job = co_yield()
  end
end

-- Run job (of conn) in a worker, at once.
local function run(self, conn, job)
  local idle = self.idle
  local co = idle[#idle]
  if co then
    idle[#idle] = nil
  else
    co = co_create(worker_body)
    self.loop.cos[co] = true
    co_resume(co, self, co)
  end
  local ok, err = co_resume(co, conn, job)
  if not ok then
    self.loop.cos[co] = nil
    self.loop.on_error(err)
  end
end

-- A pooled job carries a call to its coroutine: the arguments in
-- declaration order, then what the reply needs (no closure per call).
-- args: a table, or a view (lazy: its reads may raise -> nil, err).
local function fill_args(job, args, names, n)
  for i = 1, n do job[i] = args[names[i]] end
end
local function take_job(self, fn, args, lazy)
  local names = argnames_cache[fn] or argnames(fn)
  local nargs = #names
  local pool = self.jobs
  local job = pool[#pool]
  if job then pool[#pool] = nil else job = {} end
  if lazy then
    local ok, e = pcall(fill_args, job, args, names, nargs)
    if not ok then
      for i = 1, nargs do job[i] = nil end
      pool[#pool + 1] = job
      return nil, e
    end
  else
    fill_args(job, args, names, nargs)
  end
  job.n = nargs
  return job
end

-- A lazy server's message m done with before a handler got it.
local function drop_msg(self, m)
  if msg_expire(m) and #self.msgs < 64 then self.msgs[#self.msgs + 1] = m end
end

-- One call: msg (envelope and struct: a string, str true, or on a lazy
-- server a message, core.message), its header frame's info blocks (their
-- bytes: decoded if the handler asks, petrel.context) and deadline entry
-- (header transports: what the framer's fr:next gave), the time its bytes
-- were taken (loop ms; nil where frames carry no deadline).
-- Returns true when a lazy handler took the message (it expires when the
-- handler is done: run_call); a message not taken is done with by the
-- caller (drop_msg).
local function dispatch(self, conn, msg, info, timeout, now, str)
  local name, mtype, seqid, pos, proto
  if str then
    name, mtype, seqid, pos, proto = parse_header(msg, 1, self.max_frame)
  else
    name, mtype, seqid, pos, proto = msg_header(msg, self.max_frame)
  end
  if not name then
    self.counters.errors = self.counters.errors + 1
    self:_drop(conn)
    return false
  end
  -- the service: the default one, or (multiplexed) the one the name names
  -- ("Service:method"; the reply carries the method's bare name, as
  -- Apache's TMultiplexedProcessor answers)
  local svc = self.default
  local fn = svc and svc.service.functions[name]
  if not fn and self.services then
    local i = name:find(":", 1, true)
    local e = i and self.services[name:sub(1, i - 1)]
    if e then
      svc, name = e, name:sub(i + 1)
      fn = e.service.functions[name]
    end
  end
  self.counters.calls = self.counters.calls + 1
  if mtype ~= CALL and mtype ~= ONEWAY then
    self.counters.errors = self.counters.errors + 1
    send_reply(self, conn, name, EXCEPTION, seqid, TAppEx,
      { message = "invalid message type " .. tostring(mtype), type = M.INVALID_MESSAGE_TYPE }, proto)
    return false
  end
  if not fn then
    self.counters.errors = self.counters.errors + 1
    if mtype == ONEWAY then return false end
    send_reply(self, conn, name, EXCEPTION, seqid, TAppEx,
      { message = "Invalid method name: '" .. name .. "'", type = M.UNKNOWN_METHOD }, proto)
    return false
  end
  -- lazy methods get views of the message (Binary and Compact; a JSON
  -- call is decoded)
  local per = self.lazy
  local lazy = not str and proto ~= "json" and (per == true or (per and per[name])) or false
  local args, err
  if lazy then
    args, err = type_view(fn.args, msg, pos, DEC[proto])
  else
    args, err = type_decode(fn.args, msg, pos, DEC[proto])
  end
  local job
  if args and lazy then
    -- an argument that cannot be read (bad bytes) is a protocol error
    job, err = take_job(self, fn, args, true)
    if not job then args = nil end
  end
  if not args then
    self.counters.errors = self.counters.errors + 1
    if mtype == ONEWAY then return false end
    send_reply(self, conn, name, EXCEPTION, seqid, TAppEx,
      { message = "cannot decode arguments: " .. tostring(err), type = M.PROTOCOL_ERROR }, proto)
    return false
  end
  -- a caller that sent its deadline and has given up by now: its work is
  -- not started. timeout: the value of the header frame's TTHeader
  -- RPCTimeout entry (ms, as Kitex clients send it) or else its
  -- client_timeout entry (ms, as fbthrift clients send it), as the
  -- framer gives it (an integer, or the string when not plain digits)
  local deadline
  if timeout then
    local ms = tonumber(timeout)
    if ms and ms > 0 then deadline = (now or c_now(self.loop.c)) + ms end
  end
  local h = svc.handler[name]
  local why, etype
  if deadline and c_now(self.loop.c) >= deadline then
    self.counters.expired = self.counters.expired + 1
    why = string.format("deadline exceeded before %s started (%s ms)", name, tostring(timeout))
    etype = M.INTERNAL_ERROR
  elseif not h then
    self.counters.errors = self.counters.errors + 1
    why, etype = "no handler for '" .. name .. "'", M.UNKNOWN_METHOD
  end
  if why then
    if job then
      for i = 1, job.n do job[i] = nil end
      self.jobs[#self.jobs + 1] = job
    end
    if mtype == ONEWAY then return false end
    send_reply(self, conn, name, EXCEPTION, seqid, TAppEx, { message = why, type = etype }, proto)
    return false
  end
  job = job or take_job(self, fn, args)
  job.h, job.fn, job.name, job.mtype, job.seqid = h, fn, name, mtype, seqid
  job.proto = proto -- the reply answers in the call's protocol
  job.svc, job.conn, job.info, job.deadline = svc, conn, info, deadline
  if lazy then job.msg = msg end
  conn.busy = conn.busy + 1
  self.inflight = self.inflight + 1
  run(self, conn, job)
  return lazy
end

function Server:on_data(id, n)
  local conn = self.conns[id]
  if not conn or conn.dropped then return end
  self.counters.bytes_in = self.counters.bytes_in + (n or 0)
  if self.idle_timeout then self:_arm_idle(conn) end
  local c = self.loop.c
  -- when these bytes were taken: a header frame's deadline counts from
  -- then (read only where frames can carry one: conn.wf is true for framed
  -- and false for unframed connections, the framer for header transports,
  -- nil while undecided)
  local wf, now = conn.wf, nil
  if wf ~= true and wf ~= false then now = c_now(c) end
  -- the connection's input buffer, kept (the same one for its life)
  local inb = conn.inb
  if not inb then
    inb = c_input(c, id)
    conn.inb = inb
  end
  local fr, msgs = conn.fr, self.lazy and self.msgs
  while not conn.dropped do
    local msg, a, b, str
    if msgs then
      -- lazy: the message goes into a pooled message (core.message),
      -- holding its bytes where they lie in the input
      local m = msgs[#msgs]
      if m then msgs[#msgs] = nil else m = core.message() end
      msg, a, b = fr_next(fr, inb, m)
      if msg ~= m then
        msgs[#msgs + 1] = m
        str = type(msg) == "string"
      end
    else
      msg, a, b = fr_next(fr, inb)
      str = true
    end
    if msg == nil then break end
    if msg == false then
      self.counters.errors = self.counters.errors + 1
      if not b then
        self:_drop(conn, a)
        break
      end
      -- one header frame refused (a transform or protocol id this server
      -- does not take): the caller is told, the connection goes on
      self:_note_transport(conn)
      send_reply(self, conn, "", EXCEPTION, b, TAppEx, { message = a,
        type = a:find("protocol id", 1, true) and M.INVALID_PROTOCOL or M.INVALID_TRANSFORM })
    else
      if not conn.transport then self:_note_transport(conn) end
      -- a message a lazy handler did not take is done with here
      if not dispatch(self, conn, msg, a, b, now, str) and not str then drop_msg(self, msg) end
      -- the framer takes the messages it gives out of the input: when
      -- none is left, there is no next one to ask for
      if #inb == 0 then break end
    end
  end
  if not conn.dropped then c_consumed(c, id) end
end

-- The connection's transport is known: how replies are framed.
function Server:_note_transport(conn)
  local t = conn.fr:transport()
  conn.transport = t
  if HEADERED[t] then conn.wf = conn.fr else conn.wf = t == "framed" end
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
  if self.closing or self.leaving then return end
  if self.registration then return self:_leave(done) end
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
  local reg = self.registration
  if reg then
    s.registry = { key = reg.key, registered = reg.registered, lease = reg.lease,
      last_error = reg.last_error }
  end
  return s
end

-- Serve until stop() or shutdown completes.
function Server:serve()
  return self.loop:run(function() return self.closing and self.inflight == 0 and not self.on_finished end)
end

-- ---- replies ------------------------------------------------------------------

-- A lazy client's result struct: a view of the reply (its string), the
-- success value or exception read from it (a view when a struct or a
-- container); bad bytes in what it reads -> nil, err.
local function view_result(fn, msg, pos, dopts)
  local res, err = fn.result:view(msg, pos, dopts)
  if not res then return nil, err end
  local ok, e = pcall(function()
    local out = {}
    out.success = res.success
    for _, t in ipairs(fn.throws) do out[t.name] = res[t.name] end
    res = out
  end)
  if not ok then return nil, tostring(e) end
  return res
end

-- The result of a reply message (envelope at 1, the struct at pos) for
-- petrel.client and petrel.resty: value | nil, err. proto: "binary",
-- "compact" or "json"; lazy: struct and container results come as views
-- (Binary and Compact; a JSON reply is decoded).
function M.decode_reply(fn, name, msg, mtype, pos, proto, lazy)
  local dopts = DEC[proto]
  if mtype == EXCEPTION then
    local ex = TAppEx:decode(msg, pos, dopts)
    if not ex then return nil, app_error(M.PROTOCOL_ERROR, "undecodable exception") end
    return nil, app_error(ex.type, ex.message)
  end
  if mtype ~= REPLY then
    return nil, app_error(M.INVALID_MESSAGE_TYPE, "unexpected message type " .. tostring(mtype))
  end
  local res, derr
  if lazy and proto ~= "json" then -- views read Binary and Compact
    res, derr = view_result(fn, msg, pos, dopts)
  else
    res, derr = fn.result:decode(msg, pos, dopts)
  end
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

-- ---- clients and worker processes (their own modules) ----------------------

-- Shared with petrel.client.
M._ErrMT, M._TAppEx, M._argnames, M._new_reader = ErrMT, TAppEx, argnames, new_reader
M.DEFAULT_MAX_FRAME = DEFAULT_MAX_FRAME

function M.client(opts) return require("petrel.client").client(opts) end
function M.serve(opts) return require("petrel.supervisor").serve(opts) end

return M

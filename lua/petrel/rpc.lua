-- petrel.rpc: Thrift RPC over the petrel loop — messages (strict and
-- non-strict binary envelopes), framed and unframed ("buffered")
-- transports, and servers with coroutine handlers. Clients are in
-- petrel.client, petrel.serve's worker processes in petrel.supervisor.
-- Interoperates with Apache Thrift.
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
M.UNKNOWN, M.UNKNOWN_METHOD, M.INVALID_MESSAGE_TYPE, M.WRONG_METHOD_NAME = 0, 1, 2, 3
M.BAD_SEQUENCE_ID, M.MISSING_RESULT, M.INTERNAL_ERROR, M.PROTOCOL_ERROR = 4, 5, 6, 7
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
local DEC = { binary = nil, compact = { protocol = "compact" } }
M.DEC = DEC
M.PROTOCOLS = { binary = true, compact = true }

-- Framing of a connection's input: yields complete message strings.
-- mode "framed" | "buffered" | "auto" (server side: decided from the first
-- bytes by core.detect, which waits until they tell: framed or not, Binary
-- or Compact; an HTTP or TLS peer is named as such). Returns a function
-- next() -> msg | nil (need more) | false, err, and mode() -> the mode.
-- With take (lazy servers: take(inb, n) -> a message holding the next n
-- bytes, consumed from inb without a copy where they lie in one block),
-- next() yields messages (core.message) instead of strings.
local function new_reader(loop, id, mode, max_frame, take)
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
      if take then
        if #inb < 4 then return nil end
        local len = inb:peek_u32()
        if len == 0 or len > max_frame then
          return false, ("frame of %d bytes (limit %d)"):format(len, max_frame)
        end
        if #inb - 4 < len then return nil end
        inb:skip(4)
        return take(inb, len)
      end
      return inb:read_frame(max_frame)
    end
    -- buffered (unframed): an incremental scanner finds where the message
    -- ends, looking at each byte once however the bytes arrive.
    if not scan then scan = core.scanner(max_frame) end
    local n, err = scan:feed(inb)
    if n == nil then return nil end
    if n == false then return false, err end
    if take then return take(inb, n) end
    return inb:read(n)
  end, function() return mode end
end
M._reader = new_reader -- for the specs

-- ---- server ----------------------------------------------------------------

local Server = {}
Server.__index = Server

-- The options petrel.server takes, and their checks (petrel.serve takes
-- these and SERVE_OPTIONS).
local SERVER_OPTIONS = {
  service = options.service, handler = options.table, loop = options.loop,
  host = options.string, port = options.port, unix = options.string,
  transport = options.oneof("auto", "framed", "buffered"),
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
}
M.SERVER_OPTIONS = SERVER_OPTIONS

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
-- Options are checked here: unknown keys and bad values raise.
function M.server(opts, level)
  level = (level or 1) + 1
  options.check("petrel.server", SERVER_OPTIONS, opts, level)
  if not opts.service then error("petrel.server: option 'service' (a compiled service) is required", level) end
  if not opts.handler then error("petrel.server: option 'handler' (a table of functions) is required", level) end
  local missing = check_handler("petrel.server", opts.service, opts.handler, level)
  M._check_advertise("petrel.server", opts, level)
  local logger = opts.logger
  if logger == nil then logger = stderr_logger end
  local self = setmetatable({
    loop = opts.loop or loopmod.default(),
    service = opts.service,
    handler = opts.handler,
    transport = opts.transport or "auto",
    max_frame = opts.max_frame or DEFAULT_MAX_FRAME,
    idle_timeout = opts.idle_timeout,
    out_cap = opts.out_cap or 4 * 1024 * 1024,
    write_timeout = opts.write_timeout or 10000,
    conns = {},
    nconns = 0,
    inflight = 0,
    counters = { connections = 0, calls = 0, errors = 0, bytes_in = 0, oneway = 0 },
    jobs = {},       -- recycled call jobs
    result_tab = {}, -- the result struct of every reply
    logger = logger or nil,
    debug = opts.debug or false,
    missing = missing, -- functions without a handler (calls get UNKNOWN_METHOD)
    unix = opts.unix,
    lazy = opts.lazy,   -- true | { method = bool } | nil
    msgs = {},          -- lazy servers: recycled messages
  }, Server)
  if opts.lazy then
    local svc = opts.service
    if type(opts.lazy) == "table" then
      for k in pairs(opts.lazy) do
        if not svc.functions[k] then
          error(("petrel.server: lazy names '%s', not a function of service %s"):format(k, svc.name), level)
        end
      end
    end
  end
  if #missing > 0 then
    self:_log(string.format("%s: no handler for %s (calls to them get UNKNOWN_METHOD)",
      self.service.name, table.concat(missing, ", ")), { kind = "missing", missing = missing })
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
    on_data = function(_, id, n) return self:on_data(id, n) end,
    on_closed = function(_, id, err) return self:on_closed(id, err) end,
  }
  self.loop:attach(lid, self.h)
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

-- The arguments of registry:register for a server listening on host:port
-- (or on opts.unix).
function M._registration_args(opts, host, port, loop)
  local a = { service = opts.service_name or opts.service.name, weight = opts.weight,
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
  local take
  if self.lazy then
    local msgs = self.msgs
    take = function(inb, n)
      local m = msgs[#msgs]
      if m then msgs[#msgs] = nil else m = core.message() end
      return m:take(inb, n)
    end
  end
  conn.next, conn.mode = new_reader(self.loop, id, self.transport, self.max_frame, take)
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
function Server:_call_error(conn, fn, name, kind, full, raw)
  self.counters.errors = self.counters.errors + 1
  local peer = conn.peer or "unknown peer"
  local oneway = fn.oneway
  self:_log(string.format("%s.%s%s from %s: %s", self.service.name, name,
    oneway and " (oneway)" or "", peer, full), { kind = kind, service = self.service.name,
    method = name, peer = peer, message = full, error = raw, oneway = oneway })
end

local function is_err(v) return type(v) == "table" and getmetatable(v) == ErrMT end

-- A call's coroutine: run the handler, reply (or not, for oneway).
local run_reply
local function run_call(self, conn, job)
  local ok, res, res2 = pcall(job.h, unpack(job, 1, job.n))
  local m = job.msg
  if not m then return run_reply(self, conn, job, ok, res, res2) end
  -- lazy: the reply is written (views in it linked or copied) before the
  -- call's message expires; a retained message is left to its views
  job.msg = nil
  run_reply(self, conn, job, ok, res, res2)
  if m:expire() then
    local msgs = self.msgs
    if #msgs < 64 then msgs[#msgs + 1] = m end
  end
end

function run_reply(self, conn, job, ok, res, res2)
  local fn, name, mtype, seqid, proto = job.fn, job.name, job.mtype, job.seqid, job.proto
  for i = 1, job.n do job[i] = nil end
  job.h, job.fn, job.name, job.proto = nil, nil, nil, nil
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
      return self:_maybe_finish()
    end
    -- the result struct is written at once (encode does not yield): one
    -- table per server serves every reply
    local r = self.result_tab
    r.success = res
    local ok2, e2 = pcall(send_reply, self, conn, name, REPLY, seqid, fn.result, r, proto)
    r.success = nil
    if not ok2 then
      local m = "cannot encode the result: " .. tostring(e2)
      self:_call_error(conn, fn, name, "encode", m, e2)
      send_reply(self, conn, name, EXCEPTION, seqid, TAppEx, { message = m, type = M.INTERNAL_ERROR }, proto)
    end
    return self:_maybe_finish()
  end
  if oneway then self.counters.oneway = self.counters.oneway + 1 end
  local t, full, peer_msg = M.INTERNAL_ERROR, nil, nil
  if is_err(res) and res.kind == "exception" then
    local th = find_throw(fn, res.name)
    if th and not oneway then
      local r = self.result_tab
      r[th.name] = res.value
      local ok2, e2 = pcall(send_reply, self, conn, name, REPLY, seqid, fn.result, r, proto)
      r[th.name] = nil
      if ok2 then return self:_maybe_finish() end
      full = string.format("cannot encode exception %s (%s): %s", th.name, th.type, tostring(e2))
      self:_call_error(conn, fn, name, "encode", full, res)
    else
      full = string.format("undeclared exception '%s' thrown by %s (%s)", res.name, name,
        declared(fn))
      self:_call_error(conn, fn, name, "undeclared", full, res)
    end
    peer_msg = full
  elseif is_err(res) and res.kind == "application" then
    -- a TApplicationException the handler chose to raise: sent as it is
    self.counters.errors = self.counters.errors + 1
    t, peer_msg = res.type or M.INTERNAL_ERROR, res.message or ""
  else
    full = render(res)
    self:_call_error(conn, fn, name, "handler", full, res)
    peer_msg = (self.debug or type(res) ~= "string") and full or strip_position(full)
  end
  if not oneway then
    send_reply(self, conn, name, EXCEPTION, seqid, TAppEx, { message = peer_msg, type = t }, proto)
  end
  self:_maybe_finish()
end

-- A pooled job carries a call to its coroutine: the arguments in
-- declaration order, then what the reply needs (no closure per call).
-- args: a table, or a view (lazy: its reads may raise -> nil, err).
local function fill_args(job, args, names, n)
  for i = 1, n do job[i] = args[names[i]] end
end
local function take_job(self, fn, args, lazy)
  local names = argnames(fn)
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
local function start_job(self, conn, job, h, fn, name, mtype, seqid, proto)
  job.h, job.fn, job.name, job.mtype, job.seqid = h, fn, name, mtype, seqid
  job.proto = proto -- the reply answers in the call's protocol
  conn.busy = conn.busy + 1
  self.inflight = self.inflight + 1
  self.loop:spawn(run_call, self, conn, job)
end

-- A lazy server's message m done with before a handler got it.
local view_decode = core.view_methods.decode
local function drop_msg(self, m)
  if m:expire() and #self.msgs < 64 then self.msgs[#self.msgs + 1] = m end
end

function Server:_call(conn, msg)
  local name, mtype, seqid, pos, proto
  local lazy = type(msg) ~= "string"
  if lazy then
    name, mtype, seqid, pos, proto = msg:header(self.max_frame)
  else
    name, mtype, seqid, pos, proto = parse_header(msg, 1, self.max_frame)
  end
  if lazy then
    -- every return below but the handler's spawn ends with the message
    local m = msg
    local fn = name and self.service.functions[name]
    local per = self.lazy
    if name and fn and (per == true or per[name]) and (mtype == CALL or mtype == ONEWAY) then
      return self:_call_lazy(conn, m, name, mtype, seqid, pos, proto, fn)
    end
    -- not lazy for this method: decoded from the message as usual
    local args, err
    if name and fn and (mtype == CALL or mtype == ONEWAY) then
      local v
      v, err = fn.args:view(m, pos, DEC[proto])
      if v then args, err = view_decode(v) end
      if not args then args = false end
    end
    local r = self:_call_decoded(conn, name, mtype, seqid, proto, fn, args, err)
    drop_msg(self, m)
    return r
  end
  local fn = name and self.service.functions[name]
  local args, err
  if name and fn and (mtype == CALL or mtype == ONEWAY) then
    args, err = fn.args:decode(msg, pos, DEC[proto])
    if not args then args = false end
  end
  return self:_call_decoded(conn, name, mtype, seqid, proto, fn, args, err)
end

-- A lazy call: the arguments as views of the message, which expires when
-- the handler is done (run_call).
function Server:_call_lazy(conn, m, name, mtype, seqid, pos, proto, fn)
  self.counters.calls = self.counters.calls + 1
  local h = self.handler[name]
  local args, err
  if h then args, err = fn.args:view(m, pos, DEC[proto]) end
  if not h or not args then
    self.counters.errors = self.counters.errors + 1
    drop_msg(self, m)
    if mtype == ONEWAY then return end
    if not h then
      return send_reply(self, conn, name, EXCEPTION, seqid, TAppEx,
        { message = "no handler for '" .. name .. "'", type = M.UNKNOWN_METHOD }, proto)
    end
    return send_reply(self, conn, name, EXCEPTION, seqid, TAppEx,
      { message = "cannot decode arguments: " .. tostring(err), type = M.PROTOCOL_ERROR }, proto)
  end
  -- an argument that cannot be read (bad bytes) is a protocol error
  local job, e = take_job(self, fn, args, true)
  if not job then
    self.counters.errors = self.counters.errors + 1
    drop_msg(self, m)
    if mtype == ONEWAY then return end
    return send_reply(self, conn, name, EXCEPTION, seqid, TAppEx,
      { message = "cannot decode arguments: " .. tostring(e), type = M.PROTOCOL_ERROR }, proto)
  end
  job.msg = m
  start_job(self, conn, job, h, fn, name, mtype, seqid, proto)
end

-- A call with its arguments decoded (args false: they did not decode, err
-- says why; name nil: the envelope is bad).
function Server:_call_decoded(conn, name, mtype, seqid, proto, fn, args, err)
  if not name then
    self.counters.errors = self.counters.errors + 1
    return self:_drop(conn)
  end
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
  start_job(self, conn, take_job(self, fn, args), h, fn, name, mtype, seqid, proto)
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

-- ---- clients and worker processes (their own modules) ----------------------

-- Shared with petrel.client.
M._ErrMT, M._TAppEx, M._argnames, M._new_reader = ErrMT, TAppEx, argnames, new_reader
M.DEFAULT_MAX_FRAME = DEFAULT_MAX_FRAME

function M.client(opts) return require("petrel.client").client(opts) end
function M.serve(opts) return require("petrel.supervisor").serve(opts) end

return M

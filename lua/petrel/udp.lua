-- petrel.udp: Thrift over UDP — servers of oneway methods and clients that
-- send oneway calls, one unframed message per datagram (as Jaeger's agent
-- takes spans: port 6831 Compact, 6832 Binary). The protocol is the
-- server's (or the client's), one per socket; a datagram carries no reply,
-- so only oneway methods are served and called.
--
-- Reached through petrel.server / petrel.serve / petrel.client with
-- transport = "udp" (rpc.lua and client.lua check the options first).
-- Outside data never raises here: a datagram that is cut, malformed, of
-- another protocol, for an unknown or non-oneway method or with bytes
-- after its message is counted (malformed, errors) and logged (at most a
-- line a second), and the next one is read.
local core = require "petrel.core"
local loopmod = require "petrel.loop"
local rpc = require "petrel.rpc"

local M = {}

local CALL, ONEWAY = rpc.CALL, rpc.ONEWAY
local unpack = table.unpack or unpack
local header = core.msg_header

-- The codec's message functions take the protocol by name (decode options
-- { protocol = name }, encode_message's last argument); Binary needs none.
-- Which names are accepted is options.protocol's list.
local function decode_opts(protocol)
  if protocol == "binary" then return nil end
  return { protocol = protocol }
end

-- The longest message a datagram carries (IPv4: 65535 - 20 - 8).
local MAX_MESSAGE = 65507

-- petrel.server options with no meaning for datagrams, and why.
local STREAM_ONLY = {
  unix = "unix sockets are streams here", max_frame = "a datagram is one message (see max_datagram)",
  idle_timeout = "there are no connections", out_cap = "nothing is sent back",
  write_timeout = "nothing is sent back", backlog = "there is nothing to accept",
  keepalive = "there are no connections", nodelay = "there are no connections",
  sndbuf = "nothing is sent back",
  lazy = "arguments are decoded (message views are for stream servers)",
  services = "one service per socket (multiplexing names calls in streams)",
  transforms = "header frames are a stream transport",
}

local function stderr_logger(line)
  io.stderr:write("petrel: ", line, "\n")
end

-- ---- server ----------------------------------------------------------------

local Server = {}
Server.__index = Server
M.Server = Server

-- petrel.server's transport = "udp" (rpc.lua checked the options; level:
-- where errors point, from here).
function M.server(opts, level)
  level = level or 2
  local keys = {}
  for k in pairs(opts) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if STREAM_ONLY[k] then
      error(string.format('petrel.server: option \'%s\' does not apply to transport = "udp" (%s)',
        k, STREAM_ONLY[k]), level)
    end
  end
  local svc, handler = opts.service, opts.handler
  if not svc then error("petrel.server: option 'service' (a compiled service) is required", level) end
  if not handler then error("petrel.server: option 'handler' (a table of functions) is required", level) end
  rpc._check_handler("petrel.server", svc, handler, level)
  -- a datagram carries no reply: every method served must be oneway
  local names, served = {}, {}
  for name in pairs(handler) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    if not svc.functions[name].oneway then
      error(string.format('petrel.server: %s.%s is not oneway: over transport = "udp" a '
        .. "datagram carries no reply, so only oneway methods can be served", svc.name, name), level)
    end
    served[#served + 1] = name
  end
  if #served == 0 then
    error(string.format('petrel.server: no handler for a oneway method of %s: over transport '
      .. '= "udp" only oneway methods are served', svc.name), level)
  end
  local logger = opts.logger
  if logger == nil then logger = stderr_logger end
  local protocol = opts.protocol or "binary"
  local self = setmetatable({
    loop = opts.loop or loopmod.default(),
    service = svc,
    handler = handler,
    protocol = protocol,
    dec = decode_opts(protocol),
    transport = "udp",
    counters = { datagrams = 0, calls = 0, oneway = 0, errors = 0, malformed = 0, bytes_in = 0 },
    inflight = 0,
    logger = logger or nil,
    debug = opts.debug or false,
    quiet = 0, -- malformed datagrams not logged since the last line
  }, Server)
  local u, err = self.loop:udp { host = opts.host or "127.0.0.1", port = opts.port or 0,
    rcvbuf = opts.rcvbuf, reuseport = opts.reuseport, max_datagram = opts.max_datagram,
    handler = function(data, peer, _, from)
      if data then return self:_datagram(data, peer) end
      -- cut at max_datagram (from: its sender) or a socket error
      self.counters.datagrams = self.counters.datagrams + 1
      if from then return self:_bad("malformed", from, peer) end
      self.counters.errors = self.counters.errors + 1
    end }
  if not u then return nil, err end
  self.udp = u
  self.port = u.port
  return self
end

-- Log through the server's logger (one line; info carries the parts).
function Server:_log(line, info)
  local logger = self.logger
  if not logger then return end
  line = line:gsub("\n", "\\n")
  local ok, err = pcall(logger, line, info)
  if not ok then stderr_logger("logger failed: " .. tostring(err) .. "; it was given: " .. line) end
end

-- A datagram that is not a call we can make: counted, and logged at most
-- once a second (the line says how many were not).
function Server:_bad(kind, peer, why)
  local c = self.counters
  if kind == "malformed" then c.malformed = c.malformed + 1 else c.errors = c.errors + 1 end
  local now = self.loop:now()
  if self.logged_at and now - self.logged_at < 1000 then
    self.quiet = self.quiet + 1
    return
  end
  local more = self.quiet > 0 and string.format(" (and %d more since the last line)", self.quiet) or ""
  self.logged_at, self.quiet = now, 0
  self:_log(string.format("%s over udp: %s datagram from %s: %s%s", self.service.name, kind,
    peer or "?", why, more), { kind = kind, service = self.service.name, peer = peer, message = why })
end

local function run_call(self, h, fn, name, args, peer)
  local names = rpc._argnames(fn)
  local n = #names
  local vals = {}
  for i = 1, n do vals[i] = args[names[i]] end
  local ok, err = pcall(h, unpack(vals, 1, n))
  self.inflight = self.inflight - 1
  self.counters.oneway = self.counters.oneway + 1
  if not ok then
    self.counters.errors = self.counters.errors + 1
    local msg = rpc.render(err)
    self:_log(string.format("%s.%s (oneway) from %s: %s", self.service.name, name, peer, msg),
      { kind = "handler", service = self.service.name, method = name, peer = peer,
        message = msg, error = err, oneway = true })
  end
  self:_maybe_finish()
end

-- One datagram: one message.
function Server:_datagram(data, peer)
  local c = self.counters
  c.datagrams = c.datagrams + 1
  if self.closing then return end
  c.bytes_in = c.bytes_in + #data
  local name, mtype, _, pos, wire = header(data, 1, 65536)
  if not name then
    return self:_bad("malformed", peer, name == false and ("bad envelope: " .. tostring(mtype))
      or "truncated envelope")
  end
  if wire and wire ~= self.protocol then
    return self:_bad("malformed", peer, string.format("a %s message on a %s socket", wire,
      self.protocol))
  end
  if mtype ~= ONEWAY and mtype ~= CALL then
    return self:_bad("malformed", peer, "message type " .. tostring(mtype) .. " (not a call)")
  end
  local fn = self.service.functions[name]
  if not fn then return self:_bad("unknown", peer, "no method '" .. name .. "'") end
  if not fn.oneway then
    return self:_bad("unanswerable", peer, name .. " is not oneway (no reply over udp)")
  end
  local args, nxt = fn.args:decode(data, pos, self.dec)
  if not args then return self:_bad("malformed", peer, "cannot decode arguments: " .. tostring(nxt)) end
  if nxt <= #data then
    return self:_bad("malformed", peer, string.format("%d bytes after the message", #data - nxt + 1))
  end
  local h = self.handler[name]
  if not h then return self:_bad("unknown", peer, "no handler for '" .. name .. "'") end
  c.calls = c.calls + 1
  self.inflight = self.inflight + 1
  self.loop:spawn(run_call, self, h, fn, name, args, peer)
end

function Server:_maybe_finish()
  if self.closing and self.inflight == 0 and self.on_finished then
    local f = self.on_finished
    self.on_finished = nil
    f()
  end
end

-- Stop reading; done() once the calls in flight are over.
function Server:shutdown(done)
  if self.closing then return end
  self.closing = true
  self.udp:close(false)
  self.on_finished = function() if done then done() end end
  self:_maybe_finish()
end

function Server:stats()
  local s = {}
  for k, v in pairs(self.counters) do s[k] = v end
  s.inflight = self.inflight
  s.open = self.closing and 0 or 1
  s.udp = not self.closing and self.udp:stats() or nil
  s.loop = self.loop:stats()
  s.pool = core.pool_stats()
  return s
end

-- Serve until stop() or shutdown completes.
function Server:serve()
  return self.loop:run(function() return self.closing and self.inflight == 0 and not self.on_finished end)
end

-- ---- client ------------------------------------------------------------------

local Client = {}
Client.__index = Client

-- petrel.client options with no meaning for datagrams.
local CLIENT_STREAM_ONLY = {
  unix = true, timeout = true, connect_timeout = true, pool_size = true,
  keepalive_timeout = true, multiplex = true, max_frame = true, max_conns = true,
  backlog = true, nodelay = true, keepalive = true, rcvbuf = true, lazy = true,
  multiplexed = true, headers = true, transforms = true, acl_token = true,
}

-- The state of a petrel.client with transport = "udp" (client.lua makes
-- the proxy): st:call(fn, name, ...) sends one oneway call.
function M.client_state(opts, level)
  level = (level or 1) + 1
  local keys = {}
  for k in pairs(opts) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if CLIENT_STREAM_ONLY[k] then
      error(string.format('petrel.client: option \'%s\' does not apply to transport = "udp" '
        .. "(a datagram is sent and forgotten)", k), level)
    end
  end
  if not opts.port then error("petrel.client: option 'port' is required", level) end
  if opts.protocol == "json" then
    error('petrel.client: transport = "udp" takes protocol "binary" or "compact"', level)
  end
  local host = opts.host or "127.0.0.1"
  local st = setmetatable({
    udp = true,
    service = opts.service,
    loop = opts.loop or loopmod.default(),
    host = host,
    port = opts.port,
    protocol = opts.protocol or "binary",
    sndbuf = opts.sndbuf,
    peer = (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. opts.port,
    seq = 0,
    args = {},
    buf = core.buffer(),
    sent = 0,
    failed = 0,
  }, Client)
  return st
end

-- The socket, connected to the server at the first call.
function Client:_socket()
  local u = self.sock
  if u and not u.closed then return u end
  local err
  u, err = self.loop:udp { connect = self.peer, sndbuf = self.sndbuf }
  if not u then return nil, "udp " .. self.peer .. ": " .. tostring(err) end
  self.sock = u
  return u
end

-- One oneway call: true once the datagram is handed to the kernel (a
-- datagram has no acknowledgement: the server may still not get it) |
-- nil, err. Bad arguments and non-oneway methods raise.
function Client:call(fn, name, ...)
  if not fn.oneway then
    error(string.format('petrel.client: %s.%s is not oneway: over transport = "udp" a call '
      .. "gets no reply", self.service.name, name), 3)
  end
  local seqid = self.seq % 0x7fffffff + 1
  self.seq = seqid
  local names = rpc._argnames(fn)
  local args = self.args -- reused: encoding does not yield
  for i = 1, #names do args[names[i]] = (select(i, ...)) end
  local buf = self.buf
  local ok, err = pcall(fn.args.encode_message, fn.args, args, buf, name, ONEWAY, seqid, false,
    self.protocol)
  for i = 1, #names do args[names[i]] = nil end
  if not ok then
    buf:clear()
    error("petrel.client: " .. name .. ": " .. tostring(err), 3)
  end
  local n = #buf
  if n > MAX_MESSAGE then
    buf:clear()
    self.failed = self.failed + 1
    return nil, string.format("%s: message of %d bytes does not fit a datagram (at most %d)",
      name, n, MAX_MESSAGE)
  end
  local u, uerr = self:_socket()
  if not u then
    buf:clear()
    self.failed = self.failed + 1
    return nil, uerr
  end
  ok, err = u:send(buf)
  buf:clear()
  if not ok then
    self.failed = self.failed + 1
    return nil, "send to " .. self.peer .. ": " .. tostring(err)
  end
  self.sent = self.sent + 1
  return true
end

function Client:close()
  if self.sock then
    self.sock:close(true)
    self.sock = nil
  end
end

-- sent / failed calls, the peer, and the socket's counters once it exists
-- (send_errors: datagrams the kernel refused, e.g. after the server's port
-- answered "unreachable")
function Client:stats()
  return { sent = self.sent, failed = self.failed, peer = self.peer, transport = "udp",
    protocol = self.protocol, udp = self.sock and self.sock:stats() or nil }
end

return M

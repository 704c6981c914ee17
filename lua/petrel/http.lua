-- petrel.http: a small HTTP/1.1 client on the petrel loop, enough for
-- etcd's v3 JSON gateway: requests with a body, keep-alive connections
-- reused per host, and streaming responses (chunked) delivered piece by
-- piece. Responses are parsed by Debian's http_parser through
-- petrel.core.http_response (csrc/pt_http.c); a petrel built without it
-- fails here with "HTTP support not compiled in".
--
-- Calls are blocking-style: inside a loop coroutine they yield, outside
-- one they run the loop until done. Failures are nil, err with the phase
-- and the peer ("connect 127.0.0.1:2379: Connection refused", "read from
-- 127.0.0.1:2379: timeout after 3000 ms").
local core = require "petrel.core"

local M = {}

M.available = core.http_available

local MAX_IDLE = 4          -- idle keep-alive connections kept per host
local IN_CAP = 1024 * 1024  -- input buffered before reading pauses

-- Parse "http://host:port", "host:port", "[v6]:port" -> host, port | nil, err
function M.parse_endpoint(ep)
  if type(ep) ~= "string" then return nil, "endpoint must be a string, got " .. type(ep) end
  local scheme, rest = ep:match("^(%a[%w+.-]*)://(.*)$")
  if scheme and scheme:lower() ~= "http" then
    return nil, "endpoint '" .. ep .. "': only http:// is supported (no TLS)"
  end
  rest = (rest or ep):gsub("/+$", "")
  local host, port = rest:match("^%[([^%]]+)%]:(%d+)$")
  if not host then host, port = rest:match("^([^:/]+):(%d+)$") end
  port = tonumber(port)
  if not host or not port or port < 1 or port > 65535 then
    return nil, "endpoint '" .. ep .. "': host:port expected (http://127.0.0.1:2379)"
  end
  return host, port
end

local function peer_text(host, port)
  if host:find(":", 1, true) then return "[" .. host .. "]:" .. port end
  return host .. ":" .. port
end

-- ---- connections ---------------------------------------------------------------

local Conn = {}
Conn.__index = Conn

-- Open a connection to host:port and wait until it is up (at most
-- timeout ms): conn | nil, err.
local function connect(agent, host, port, timeout)
  local loop = agent.loop
  local peer = peer_text(host, port)
  local parser, perr = core.http_response { max_body = agent.max_body }
  if not parser then return nil, perr end
  local id, err = loop.c:connect(host, port, timeout, agent.sockopts)
  if not id then return nil, "connect " .. peer .. ": " .. tostring(err) end
  local c = setmetatable({ id = id, agent = agent, loop = loop, peer = peer,
    key = peer, parser = parser, body = core.buffer() }, Conn)
  loop:attach(id, c)
  loop.c:caps(id, IN_CAP, 0)
  local w = loop:waiter()
  c.waiter = w
  local ok, e = loop:await(w, timeout)
  c.waiter = nil
  if not ok then
    c:close()
    if e == "timeout" then e = "timeout after " .. timeout .. " ms" end
    return nil, "connect " .. peer .. ": " .. tostring(e)
  end
  c.inb = loop.c:input(id)
  return c
end

function Conn:on_connected(_, err)
  local w = self.waiter
  if w then
    if err == 0 then w:done(true) else w:done(nil, core.strerror(err)) end
  end
end

-- The response's bytes: feed the parser; wake the waiter at the end of the
-- headers (streams), when body bytes arrive (streams) and at the end.
function Conn:on_data()
  if self.closed then return end
  local inb = self.inb
  if not inb then inb = self.loop.c:input(self.id); self.inb = inb end
  local done, err = self.parser:feed(inb, self.body)
  self.loop.c:consumed(self.id)
  if done == nil then return self:fail("read from " .. self.peer .. ": " .. tostring(err)) end
  self.got_bytes = true
  if done then self.done = true end
  self:_progress()
end

function Conn:on_closed(_, err)
  if self.closed then return end
  self.closed = true
  self.loop.conns[self.id] = nil
  if self.idle_at then return self.agent:_drop_idle(self) end
  if self.busy and not self.done then
    -- a response delimited by the close ends here; anything else was cut
    local ok, perr = self.parser:eof(self.body)
    if ok then
      self.done = true
    else
      local why = (err and err ~= 0) and core.strerror(err) or perr
      self.failed = "read from " .. self.peer .. ": " .. tostring(why)
    end
  elseif self.busy then
    self.failed = self.failed or ("read from " .. self.peer .. ": connection closed")
  end
  self:_progress()
end

-- Something happened: tell whoever waits on this connection.
function Conn:_progress()
  local s = self.stream
  if s then return s:_progress() end
  local w = self.waiter
  if w and (self.done or self.failed) then
    self.waiter = nil
    w:done(self.failed == nil, self.failed)
  end
end

function Conn:fail(msg)
  if not self.failed then self.failed = msg end
  self:close()
  self:_progress()
end

function Conn:close()
  if self.idle_at then self.agent:_drop_idle(self) end
  if not self.closed then
    self.closed = true
    self.loop:close(self.id)
  end
end

-- ---- agents ---------------------------------------------------------------------

local Agent = {}
Agent.__index = Agent

-- http.agent(loop [, opts]) -> agent. opts: max_body (bytes of one
-- response, default 64 MiB), sockopts (petrel loop socket options).
function M.agent(loop, opts)
  opts = opts or {}
  return setmetatable({ loop = loop, idle = {}, max_body = opts.max_body,
    sockopts = opts.sockopts or { nodelay = true, keepalive = true } }, Agent)
end

function Agent:_drop_idle(c)
  local list = self.idle[c.key]
  if not list then return end
  for i = #list, 1, -1 do
    if list[i] == c then table.remove(list, i) end
  end
  c.idle_at = nil
end

-- An idle connection to peer, or nil.
function Agent:_take(key)
  local list = self.idle[key]
  while list and #list > 0 do
    local c = table.remove(list)
    c.idle_at = nil
    if not c.closed then return c end
  end
end

function Agent:_put(c)
  if self.closing then return c:close() end
  local list = self.idle[c.key]
  if not list then list = {}; self.idle[c.key] = list end
  if #list >= MAX_IDLE then return c:close() end
  c.idle_at = self.loop:now()
  list[#list + 1] = c
end

local function request_text(method, host, port, path, body, headers)
  local t = { method, " ", path, " HTTP/1.1\r\nHost: ", peer_text(host, port), "\r\n" }
  if headers then
    for k, v in pairs(headers) do t[#t + 1] = k .. ": " .. v .. "\r\n" end
  end
  if body then
    t[#t + 1] = "Content-Type: application/json\r\nContent-Length: " .. #body .. "\r\n\r\n"
    t[#t + 1] = body
  else
    t[#t + 1] = "\r\n"
  end
  return table.concat(t)
end

-- Write the request on c: true | nil, err.
local function send(c, text)
  local loop = c.loop
  local out = not c.closed and loop.c:output(c.id)
  if not out then return nil, "write to " .. c.peer .. ": connection closed" end
  out:write(text)
  local r, err = loop.c:send(c.id)
  if not r then return nil, "write to " .. c.peer .. ": " .. tostring(err) end
  return true
end

-- One request on a connection that is ready: status, body, headers |
-- nil, err, unanswered (the connection failed before any response byte).
local function exchange(c, text, timeout)
  local loop = c.loop
  c.busy, c.done, c.failed, c.got_bytes = true, false, nil, false
  c.parser:reset()
  c.body:clear()
  local ok, err = send(c, text)
  if not ok then
    c:close()
    return nil, err, true
  end
  local w = loop:waiter()
  c.waiter = w
  if not c.done and not c.failed then
    ok, err = loop:await(w, timeout)
  else
    ok, err = c.failed == nil, c.failed
  end
  c.waiter = nil
  c.busy = false
  if not ok then
    local unanswered = not c.got_bytes
    c:close()
    if err == "timeout" then err = "read from " .. c.peer .. ": timeout after " .. timeout .. " ms" end
    return nil, err, unanswered
  end
  local status, headers = c.parser:status(), c.parser:headers()
  local body = c.body:read()
  if c.parser:keep_alive() and not c.closed and #c.inb == 0 then
    c.agent:_put(c)
  else
    c:close()
  end
  return status, body, headers
end

-- agent:request(host, port, method, path [, body [, headers [, timeout_ms]]])
-- -> status, body, headers | nil, err. A reused keep-alive connection that
-- fails before any response byte (the server closed it meanwhile) is
-- replaced by a fresh one, once.
function Agent:request(host, port, method, path, body, headers, timeout)
  timeout = timeout or 5000
  local text = request_text(method, host, port, path, body, headers)
  local c = self:_take(peer_text(host, port))
  if c then
    local status, rbody, rheaders = exchange(c, text, timeout)
    if status then return status, rbody, rheaders end
    -- rheaders: unanswered. Anything else is this request's failure.
    if not rheaders then return nil, rbody end
  end
  local err
  c, err = connect(self, host, port, timeout)
  if not c then return nil, err end
  local status, rbody, rheaders = exchange(c, text, timeout)
  if not status then return nil, rbody end
  return status, rbody, rheaders
end

-- ---- streams ----------------------------------------------------------------------

local Stream = {}
Stream.__index = Stream

-- agent:stream(host, port, method, path, body, handlers [, timeout_ms])
-- -> stream | nil, err (also: status ~= 200, err being the body).
-- Waits (at most timeout ms) for the response's header section on a
-- connection of its own; then handlers.data(body_buffer) runs from the
-- loop each time body bytes arrive (it consumes what it can use and
-- leaves the rest in the buffer) and handlers.done(err) once when the
-- response ends (err nil: the server ended it) or fails. Neither may
-- block. stream:close() ends it without calling done.
function Agent:stream(host, port, method, path, body, handlers, timeout)
  timeout = timeout or 5000
  local c, err = connect(self, host, port, timeout)
  if not c then return nil, err end
  local s = setmetatable({ conn = c, handlers = handlers, peer = c.peer }, Stream)
  c.stream = s
  c.busy, c.done, c.failed = true, false, nil
  local ok
  ok, err = send(c, request_text(method, host, port, path, body, nil))
  if not ok then
    c:close()
    return nil, err
  end
  local w = self.loop:waiter()
  s.opened = w
  ok, err = self.loop:await(w, timeout)
  s.opened = nil
  if not ok then
    c:close()
    s.closed = true
    if err == "timeout" then err = "read from " .. c.peer .. ": timeout after " .. timeout .. " ms" end
    return nil, err
  end
  local status = c.parser:status()
  if status ~= 200 then
    -- the body says why; wait for the rest of it (bounded)
    if not c.done and not c.failed then
      local w2 = self.loop:waiter()
      s.finished = w2
      self.loop:await(w2, timeout)
    end
    local text = c.body:read()
    c:close()
    s.closed = true
    return nil, text, status
  end
  s.status = status
  -- bytes that came with the headers
  if #c.body > 0 or c.done or c.failed then
    self.loop:after(0, function() s:_progress() end)
  end
  return s
end

function Stream:_progress()
  if self.closed then return end
  local c = self.conn
  if self.opened then
    if c.parser:status() or c.failed then self.opened:done(c.failed == nil, c.failed) end
    return
  end
  if self.finished then
    if c.done or c.failed then self.finished:done(true) end
    return
  end
  if #c.body > 0 and self.handlers.data then self.handlers.data(c.body) end
  if self.closed then return end
  if c.done or c.failed then
    self.closed = true
    c:close()
    if self.handlers.done then self.handlers.done(c.failed) end
  end
end

function Stream:close()
  if self.closed then return end
  self.closed = true
  self.conn:close()
end

-- Close every idle connection, and those of requests still running when
-- they end (later requests work, on connections of their own).
function Agent:close()
  self.closing = true
  for _, list in pairs(self.idle) do
    for i = #list, 1, -1 do
      local c = list[i]
      list[i] = nil
      c.idle_at = nil
      c:close()
    end
  end
end

return M

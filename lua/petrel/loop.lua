-- petrel.loop: the Lua scheduler over the C event loop (petrel.core.loop).
--
-- The C loop hands back completion batches (accepted, data, drained,
-- closed, connected, timer); this module dispatches them to per-connection
-- handlers and resumes coroutines. Request handlers run in coroutines; a
-- blocking-style call (client call, sleep) made inside one yields to the
-- loop, and made outside any loop coroutine (a script, the REPL) runs the
-- loop until it completes. Millisecond timeouts; failures are nil, err.
local core = require "petrel.core"

local EV = core.loop_events
local E_ACCEPTED, E_DATA, E_DRAINED = EV.accepted, EV.data, EV.drained
local E_CLOSED, E_CONNECTED, E_TIMER = EV.closed, EV.connected, EV.timer

local unpack = table.unpack or unpack
local co_running, co_yield, co_resume, co_create, co_status =
  coroutine.running, coroutine.yield, coroutine.resume, coroutine.create, coroutine.status

local Loop = {}
Loop.__index = Loop

local M = {}

-- petrel.loop([opts]) -> a new loop. opts go to the C loop (pool, in_cap,
-- out_cap, close_timeout, max_events, no_spin).
function M.new(opts)
  local c, err = core.loop(opts)
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
    elseif t == E_ACCEPTED then
      local h = conns[args[i]]
      if h then h:on_accept(id) else self.c:close(id) end
    elseif t == E_CLOSED then
      local h = conns[id]
      conns[id] = nil
      if h and h.on_closed then h:on_closed(id, errs[i]) end
    elseif t == E_DRAINED then
      local h = conns[id]
      if h and h.on_drained then h:on_drained(id) end
    elseif t == E_CONNECTED then
      local h = conns[id]
      if errs[i] ~= 0 then conns[id] = nil end
      if h and h.on_connected then h:on_connected(id, errs[i]) end
    elseif t == E_TIMER then
      local f = self.timers[id]
      self.timers[id] = nil
      if f then f() end
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

-- Register a handler table for a connection or listener id.
function Loop:attach(id, h) self.conns[id] = h end

function Loop:close(id, flush)
  self.conns[id] = nil
  return self.c:close(id, flush)
end

function Loop:free()
  self.c:free()
end

M.Loop = Loop
return M

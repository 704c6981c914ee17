-- petrel.breaker: a per-instance circuit breaker and a retry budget (the
-- ideas of Kitex's circuitbreak and retry packages). Time is in seconds
-- (petrel.clock()), passed in by the caller, so tests drive it by hand.
--
-- Breaker: calls are counted in a sliding window (buckets); it opens when
-- `consecutive` calls in a row failed, or when the window holds at least
-- min_calls calls of which at least error_rate failed. Open, it refuses
-- calls for `cooldown` seconds (doubled at each trip in a row, up to
-- max_cooldown); then it is half-open: at most `probes` calls at once go
-- through, and `probes` successes close it while one failure opens it
-- again.
--
-- Budget: at most ratio retries per call over the window (plus a floor of
-- min_per_sec retries per second, so a quiet client can still retry):
-- retries never multiply the load on a struggling service.
local M = {}

local floor = math.floor

local CLOSED, OPEN, HALF = "closed", "open", "half-open"
M.CLOSED, M.OPEN, M.HALF = CLOSED, OPEN, HALF

-- A windowed counter of (calls, failures): nb buckets of width w seconds.
-- cur is the bucket of the slot ending at next_t: until then a count is
-- one increment (hot paths inline it: if now >= win.next_t then
-- rotate(win, now) end; win.calls[win.cur] = win.calls[win.cur] + 1).
local function window_new(seconds, nb)
  local b = { w = seconds / nb, nb = nb, slot = {}, calls = {}, fails = {}, cur = 1,
    next_t = -1 }
  for i = 1, nb do b.slot[i], b.calls[i], b.fails[i] = -1, 0, 0 end
  return b
end

-- Make the bucket of time now current (cleared when it last served an
-- older slot).
local function rotate(win, now)
  local s = floor(now / win.w)
  local i = s % win.nb + 1
  if win.slot[i] ~= s then
    win.slot[i], win.calls[i], win.fails[i] = s, 0, 0
  end
  win.cur, win.next_t = i, (s + 1) * win.w
end
M.rotate = rotate

-- The bucket for time now.
local function bucket(win, now)
  if now >= win.next_t then rotate(win, now) end
  return win.cur
end

local function window_sums(win, now)
  local s = floor(now / win.w)
  local calls, fails = 0, 0
  for i = 1, win.nb do
    if win.slot[i] > s - win.nb then
      calls = calls + win.calls[i]
      fails = fails + win.fails[i]
    end
  end
  return calls, fails
end

local function window_reset(win)
  for i = 1, win.nb do win.slot[i], win.calls[i], win.fails[i] = -1, 0, 0 end
  win.next_t = -1
end

-- ---- breaker ---------------------------------------------------------------------

local Breaker = {}
Breaker.__index = Breaker

-- breaker.new{ window = 10 (s), buckets = 10, min_calls = 20,
--   error_rate = 0.5, consecutive = 5, cooldown = 1 (s), max_cooldown =
--   30 (s), probes = 2 }
function M.new(o)
  o = o or {}
  return setmetatable({
    state = CLOSED,
    win = window_new(o.window or 10, o.buckets or 10),
    min_calls = o.min_calls or 20,
    error_rate = o.error_rate or 0.5,
    consecutive = o.consecutive or 5,
    cooldown = o.cooldown or 1,
    max_cooldown = o.max_cooldown or 30,
    probes = o.probes or 2,
    run = 0,          -- failures in a row
    trips = 0,        -- opens in a row (cooldown doubling)
    half_ok = 0, half_inflight = 0,
    opened = 0, open_until = 0,
  }, Breaker)
end

-- May a call go through now? (open -> half-open once the cooldown passed)
function Breaker:allow(now)
  local st = self.state
  if st == CLOSED then return true end
  if st == OPEN then
    if now < self.open_until then return false end
    self:half_open()
  end
  return self.half_inflight < self.probes
end

function Breaker:half_open()
  self.state = HALF
  self.half_ok, self.half_inflight = 0, 0
end

-- A call is starting (counts as a probe when half-open).
function Breaker:start()
  if self.state == HALF then self.half_inflight = self.half_inflight + 1 end
end

function Breaker:_open(now)
  self.state = OPEN
  self.trips = self.trips + 1
  self.opened = self.opened + 1
  local cd = self.cooldown * 2 ^ (self.trips - 1)
  if cd > self.max_cooldown then cd = self.max_cooldown end
  self.open_until = now + cd
  self.half_inflight = 0
  return cd
end

-- A call ended: ok true/false. Returns the new state and, when it just
-- opened, the cooldown in seconds.
function Breaker:record(ok, now, started_half)
  local win = self.win
  local i = bucket(win, now)
  win.calls[i] = win.calls[i] + 1
  local st = self.state
  if started_half and st == HALF and self.half_inflight > 0 then
    self.half_inflight = self.half_inflight - 1
  end
  if ok then
    self.run = 0
    if st == HALF then
      self.half_ok = self.half_ok + 1
      if self.half_ok >= self.probes then
        self.state, self.trips = CLOSED, 0
        window_reset(win)
      end
    end
    return self.state
  end
  win.fails[i] = win.fails[i] + 1
  self.run = self.run + 1
  if st == HALF then return OPEN, self:_open(now) end
  if st == OPEN then return OPEN end
  if self.run >= self.consecutive then return OPEN, self:_open(now) end
  local calls, fails = window_sums(win, now)
  if calls >= self.min_calls and fails >= self.error_rate * calls then
    return OPEN, self:_open(now)
  end
  return CLOSED
end

-- Force closed (an instance re-admitted, or reset by the user).
function Breaker:reset()
  self.state, self.run, self.trips = CLOSED, 0, 0
  self.half_ok, self.half_inflight = 0, 0
  window_reset(self.win)
end

function Breaker:stats(now)
  local calls, fails = window_sums(self.win, now)
  return { state = self.state, window_calls = calls, window_errors = fails,
    opened = self.opened, open_for = self.state == OPEN and math.max(0, self.open_until - now)
      or nil }
end

-- ---- retry budget ---------------------------------------------------------------------

local Budget = {}
Budget.__index = Budget

-- breaker.budget{ ratio = 0.1, min_per_sec = 10, window = 10 (s) }
function M.budget(o)
  o = o or {}
  return setmetatable({ win = window_new(o.window or 10, 10), ratio = o.ratio or 0.1,
    floor = (o.min_per_sec or 10) * (o.window or 10), denied = 0 }, Budget)
end

-- A call (first attempt) was made.
function Budget:deposit(now)
  local win = self.win
  local i = bucket(win, now)
  win.calls[i] = win.calls[i] + 1
end

-- May this call be retried? Counts the retry when it may.
function Budget:try(now)
  local win = self.win
  local calls, retries = window_sums(win, now)
  if retries + 1 > self.floor + self.ratio * calls then
    self.denied = self.denied + 1
    return false
  end
  local i = bucket(win, now)
  win.fails[i] = win.fails[i] + 1
  return true
end

function Budget:stats(now)
  local calls, retries = window_sums(self.win, now)
  return { window_calls = calls, window_retries = retries, denied = self.denied }
end

return M

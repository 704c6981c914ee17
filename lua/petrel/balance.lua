-- petrel.balance: picking an instance for a call (client-side load
-- balancing), as Kitex's loadbalance package does.
--
--   local b = balance.new("wrr" | "p2c" | "chash", opts)
--   b:update(instances)              -- after every change of the list
--   local inst = b:pick(key, tried, any)
--
-- An instance is a table with at least address (unique), weight (>= 1),
-- inflight (calls in progress) and ok (may take calls now: not ejected,
-- breaker not open); the balancers only read them. pick skips instances
-- that are not ok and those in the array `tried` (a retry goes elsewhere
-- while it can); with `any` it ignores ok (when every instance is down,
-- trying one beats failing at once). nil when nothing fits.
--
--   wrr    smooth weighted round robin (nginx's): over a period of
--          sum(weights) picks each instance gets its weight's share, spread
--          out, not in bursts. Each client starts at a random point.
--   p2c    power of two choices: two random instances, the one with fewer
--          calls in flight per unit of weight.
--   chash  consistent hashing on a per-call key, ketama-style: each
--          instance owns weight * vnodes points of a 32-bit ring
--          (MurmurHash3 of "address#i"); a key goes to the owner of the
--          first point at or after its hash. Every client builds the same
--          ring from the same list, so a key maps to the same instance
--          everywhere, and adding an instance moves only the keys it takes
--          over (about 1/n). bounded_load = c (> 1) caps an instance at
--          ceil(c * average calls in flight) and walks on past it
--          (consistent hashing with bounded loads, Mirrokni et al.).
local core = require "petrel.core"

local hash32 = core.hash32
local random = math.random
local floor, ceil = math.floor, math.ceil

local M = {}

local function tried_has(tried, inst)
  if not tried then return false end
  for i = 1, #tried do
    if tried[i] == inst then return true end
  end
  return false
end
M._tried_has = tried_has

-- Any fitting instance, scanning from a rotating start (the fallback when
-- the policy's own choice does not fit).
local function scan(self, tried, any)
  local list = self.list
  local n = #list
  if n == 0 then return nil end
  local start = self.scan_at % n
  self.scan_at = self.scan_at + 1
  for k = 0, n - 1 do
    local inst = list[(start + k) % n + 1]
    if (any or inst.ok) and not tried_has(tried, inst) then return inst end
  end
  if tried then
    -- everything fitting was tried already: a second go beats failing
    for k = 0, n - 1 do
      local inst = list[(start + k) % n + 1]
      if any or inst.ok then return inst end
    end
  end
  return nil
end

local function gcd(a, b)
  while b ~= 0 do a, b = b, a % b end
  return a
end

-- ---- weighted round robin ---------------------------------------------------------

local WRR = {}
WRR.__index = WRR

local MAX_SCHEDULE = 4096

-- The smooth WRR order of one period: each round every instance gains its
-- weight, the richest is picked and pays the total.
local function schedule(list)
  local n = #list
  local g = 0
  for i = 1, n do g = gcd(list[i].weight, g) end
  local w, total = {}, 0
  for i = 1, n do
    w[i] = list[i].weight / g
    total = total + w[i]
  end
  local seq, cur = {}, {}
  for i = 1, n do cur[i] = 0 end
  local len = math.min(total, MAX_SCHEDULE)
  for k = 1, len do
    local best
    for i = 1, n do
      cur[i] = cur[i] + w[i]
      if not best or cur[i] > cur[best] then best = i end
    end
    cur[best] = cur[best] - total
    seq[k] = list[best]
  end
  return seq
end

function WRR:update(list)
  self.list = list
  self.seq = #list > 0 and schedule(list) or {}
  self.at = #self.seq > 0 and random(0, #self.seq - 1) or 0
end

function WRR:pick(_, tried, any)
  local seq = self.seq
  local n = #seq
  if n == 0 then return nil end
  -- the schedule's next entries first (a down instance's turn passes on)
  local at = self.at
  local tries = #self.list + 1
  if tries > n then tries = n end
  for _ = 1, tries do
    at = at % n + 1
    local inst = seq[at]
    if (any or inst.ok) and (not tried or not tried_has(tried, inst)) then
      self.at = at
      return inst
    end
  end
  self.at = at
  return scan(self, tried, any)
end

-- ---- power of two choices ------------------------------------------------------------

local P2C = {}
P2C.__index = P2C

function P2C:update(list) self.list = list end

local function load_of(inst) return (inst.inflight + 1) / inst.weight end

function P2C:pick(_, tried, any)
  local list = self.list
  local n = #list
  if n == 0 then return nil end
  if n == 1 then
    local inst = list[1]
    if (any or inst.ok) and not tried_has(tried, inst) then return inst end
    return scan(self, tried, any)
  end
  local i = random(1, n)
  local j = random(1, n - 1)
  if j >= i then j = j + 1 end
  local a, b = list[i], list[j]
  local okA = (any or a.ok) and not tried_has(tried, a)
  local okB = (any or b.ok) and not tried_has(tried, b)
  if okA and okB then
    local la, lb = load_of(a), load_of(b)
    if la < lb or (la == lb and random(2) == 1) then return a end
    return b
  end
  if okA then return a end
  if okB then return b end
  return scan(self, tried, any)
end

-- ---- consistent hashing -----------------------------------------------------------------

local CHash = {}
CHash.__index = CHash

-- The key as ring text for keys the core's ring:find does not take
-- (integral numbers past +-2^53, floats, booleans...): tostring.
local function key_text(key)
  if type(key) == "number" and key == floor(key) and key > -2 ^ 53 and key < 2 ^ 53 then
    return string.format("%d", key)
  end
  return tostring(key)
end

-- Index of the first ring point at or past key's hash (1 when the hash is
-- past the last point: the ring wraps). Strings and integral numbers are
-- hashed by the core (a number's text is its decimal digits, the same on
-- both runtimes); other keys by their tostring text.
local function locate(self, key)
  local ring = self.ring
  return ring:find(key) or ring:find(key_text(key))
end

function CHash:update(list)
  self.list = list
  local pts = {}
  for _, inst in ipairs(list) do
    local n = inst.weight * self.vnodes
    local base = inst.address .. "#"
    for v = 0, n - 1 do
      pts[#pts + 1] = { hash32(base .. v), inst }
    end
  end
  -- ties (rare) broken by address, so every client orders them alike
  table.sort(pts, function(x, y)
    if x[1] ~= y[1] then return x[1] < y[1] end
    return x[2].address < y[2].address
  end)
  local hashes, owners = {}, {}
  for i, p in ipairs(pts) do
    hashes[i], owners[i] = p[1], p[2]
  end
  -- the points in the core: a lookup is one call (hash, slot table, a
  -- short walk)
  self.ring, self.owners = core.ring(hashes), owners
end

-- The instance owning key on the ring, whatever its state (for tests and
-- for users who want to know where a key lives).
function CHash:owner(key)
  if #self.owners == 0 then return nil end
  return self.owners[locate(self, key)]
end

function CHash:pick(key, tried, any)
  local owners = self.owners
  local n = #owners
  if n == 0 then return nil end
  if key == nil then return scan(self, tried, any) end
  local i = locate(self, key)
  local cap
  local c = self.bounded_load
  if c then
    local total, live = 0, 0
    for _, inst in ipairs(self.list) do
      if inst.ok then
        total = total + inst.inflight
        live = live + 1
      end
    end
    if live > 0 then cap = ceil(c * (total + 1) / live) end
  end
  -- walk the ring past instances that do not fit; each distinct instance
  -- is looked at once
  local seen = 0
  local last
  for _ = 1, n do
    local inst = owners[i]
    if inst ~= last then
      last = inst
      if (any or inst.ok) and (not tried or not tried_has(tried, inst))
        and (not cap or inst.inflight < cap) then
        return inst
      end
      seen = seen + 1
      if seen > #self.list * 4 then break end
    end
    i = i % n + 1
  end
  -- everything is over its cap: the key's own fitting owner after all
  if cap then
    i = locate(self, key)
    for _ = 1, n do
      local inst = owners[i]
      if (any or inst.ok) and not tried_has(tried, inst) then return inst end
      i = i % n + 1
    end
  end
  return scan(self, tried, any)
end

-- ---- constructor ---------------------------------------------------------------------------

M.KINDS = { wrr = WRR, p2c = P2C, chash = CHash }

-- balance.new(kind [, { vnodes = 40, bounded_load = c }]) -> balancer
function M.new(kind, opts)
  local mt = M.KINDS[kind or "wrr"]
  if not mt then error("petrel.balance: unknown balancer '" .. tostring(kind) .. "'", 2) end
  opts = opts or {}
  local b = setmetatable({ kind = kind or "wrr", list = {}, scan_at = random(0, 1023),
    vnodes = opts.vnodes or 40, bounded_load = opts.bounded_load }, mt)
  b:update({})
  return b
end

return M

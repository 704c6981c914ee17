-- bench/buffer.lua — petrel.buffer against plain-Lua ways of building and
-- draining a byte stream, and no-copy against copying writes.
-- Run: make bench-buffer (Lua 5.4 and LuaJIT), or
--      LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="build/lua5.4/?.so;;" lua5.4 bench/buffer.lua
-- Times are CPU time (os.clock), best of several runs; ratios compare rows
-- of the same run.
local petrel = require "petrel"

local runtime = jit and jit.version or _VERSION
local clock = os.clock

-- Best time per call of f over `reps` runs, each at least `min_t` seconds.
local function measure(f, min_t, reps)
  min_t, reps = min_t or 0.05, reps or 5
  local n = 1
  while true do
    local t0 = clock()
    for _ = 1, n do f() end
    local dt = clock() - t0
    if dt >= min_t then break end
    n = n * 2
  end
  local best = math.huge
  for _ = 1, reps do
    local t0 = clock()
    for _ = 1, n do f() end
    local dt = (clock() - t0) / n
    if dt < best then best = dt end
  end
  return best
end

local PIECE = 1024
local piece = string.rep("p", PIECE - 1) .. "\n"
local out = {} -- drained pieces land here, so no runtime can drop the reads

local function via_buffer(total)
  local pieces = math.floor(total / PIECE)
  local b = petrel.buffer()
  return function()
    local got = 0
    for _ = 1, pieces do b:write(piece) end
    for i = 1, pieces do
      local s = b:read(PIECE)
      out[i] = s
      got = got + #s
    end
    assert(got == total)
  end
end

local function via_concat(total)
  local pieces = math.floor(total / PIECE)
  return function()
    local t = {}
    for i = 1, pieces do t[i] = piece end
    local s = table.concat(t)
    local pos, got = 1, 0
    for i = 1, pieces do
      local p = s:sub(pos, pos + PIECE - 1)
      out[i] = p
      got = got + #p
      pos = pos + PIECE
    end
    assert(got == total)
  end
end

local function via_strcat(total)
  local pieces = math.floor(total / PIECE)
  return function()
    local s = ""
    for _ = 1, pieces do s = s .. piece end
    local got = 0
    for i = 1, pieces do
      local p = s:sub(1, PIECE)
      out[i] = p
      got = got + #p
      s = s:sub(PIECE + 1)
    end
    assert(got == total)
  end
end

local rows = {}
local function row(name, size, secs, base)
  rows[#rows + 1] = { name, size, secs, base }
end

local function fmt_size(n)
  if n >= 1048576 then return math.floor(n / 1048576) .. " MiB" end
  return math.floor(n / 1024) .. " KiB"
end

for _, total in ipairs({ 65536, 4194304 }) do
  local reps = total > 1048576 and 2 or 5
  local tb = measure(via_buffer(total), 0.05, reps)
  local tc = measure(via_concat(total), 0.05, reps)
  local ts
  if total > 1048576 then -- quadratic: one timed run is plenty
    local f = via_strcat(total)
    local t0 = clock(); f(); ts = clock() - t0
  else
    ts = measure(via_strcat(total), 0.01, reps)
  end
  row("petrel.buffer write+read", total, tb, tb)
  row("table.concat + string.sub", total, tc, tb)
  row("s = s .. piece; s:sub()", total, ts, tb)
end

-- No-copy vs copying writes of one large string (write, then clear).
local nocopy_rows = {}
for _, size in ipairs({ 65536, 16777216 }) do
  local s = string.rep("z", size)
  local linked = petrel.buffer()                       -- default: link >= 4 KiB
  local copied = petrel.buffer({ nocopy = 2 ^ 40 })   -- never link
  local tl = measure(function() linked:write(s); linked:clear() end)
  local tc = measure(function() copied:write(s); copied:clear() end, 0.05,
    size > 1048576 and 3 or 5)
  nocopy_rows[#nocopy_rows + 1] = { size, tl, tc }
end

local function ns(t) return string.format("%.0f", t * 1e9) end
local function mbs(bytes, t) return string.format("%.0f", bytes / t / 1e6) end

print(string.format("## petrel.buffer (%s)", runtime))
print()
print("Build and drain a stream in 1 KiB pieces (time per whole stream):")
print()
print("| method | stream | µs | MB/s | time vs petrel |")
print("|---|---:|---:|---:|---:|")
for _, r in ipairs(rows) do
  print(string.format("| %s | %s | %.1f | %s | %.2fx |", r[1], fmt_size(r[2]),
    r[3] * 1e6, mbs(r[2], r[3]), r[3] / r[4]))
end
print()
print("One large string written into a buffer, then cleared:")
print()
print("| size | no-copy write (ns) | copying write (ns) | copy / no-copy |")
print("|---:|---:|---:|---:|")
for _, r in ipairs(nocopy_rows) do
  print(string.format("| %s | %s | %s | %.0fx |", fmt_size(r[1]), ns(r[2]), ns(r[3]),
    r[3] / r[2]))
end
local flat = nocopy_rows[2][2] / nocopy_rows[1][2]
print()
print(string.format("no-copy 16 MiB / 64 KiB time ratio: %.2f (1.00 = size-independent)", flat))

-- bench/codec.lua — petrel's Thrift Binary codec against its peers, in one
-- run: petrel on Lua 5.4 and LuaJIT, the Lua floor (a schema-less C decoder
-- building the same tables, and a C walk reading every value), lua-cjson on
-- the JSON twins, Apache Thrift Python with its C accelerator, and Apache
-- Thrift C++ (templates, TBinaryProtocolT<TMemoryBuffer>).
--
--   make bench-codec          (builds the peers, pins to core 1, ~3 min)
--   lua5.4 bench/codec.lua --rows      one runtime's petrel rows only
--
-- Every row is "peer workload op ns_per_op bytes"; the table is built from
-- the rows of this one run, so ratios compare like with like.
local DATA = os.getenv("PETREL_DATA") or "bench/data"
local WORKLOADS = {
  { "small", "Request" }, { "medium", "Request" }, { "large", "Request" },
  { "mytest", "MyTest" }, { "blob", "Blob" }, { "vectors", "Vectors" },
}
local TARGET = tonumber(os.getenv("PETREL_TARGET_SEC") or "0.25")

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Jobs of one workload are timed in interleaved rounds (CPU time, best
-- round per job), so petrel and the floor see the same machine: on these
-- shared cores, noise comes in bursts that a job-after-job order would
-- give to one of them only.
local ROUNDS = tonumber(os.getenv("PETREL_ROUNDS") or "5")

local function calibrate(f)
  local n = 1
  while true do
    local t0 = os.clock()
    for _ = 1, n do f() end
    local dt = os.clock() - t0
    if dt >= TARGET / ROUNDS or n >= 1e7 then return n end
    n = n * 2
  end
end

local function measure_all(jobs)
  for _, j in ipairs(jobs) do
    j.n = calibrate(j.f)
    j.best = math.huge
  end
  for _ = 1, ROUNDS do
    for _, j in ipairs(jobs) do
      collectgarbage("collect")
      local t0 = os.clock()
      local f = j.f
      for _ = 1, j.n do f() end
      local dt = (os.clock() - t0) / j.n
      if dt < j.best then j.best = dt end
    end
  end
end

local function rows_for_this_runtime()
  local petrel = require "petrel"
  local W = require "bench.workload"
  local rt = jit and "jit" or "5.4"
  local out = {}
  local floor = not jit and require "petrel_floor"
  for _, w in ipairs(WORKLOADS) do
    local name, T = w[1], W[w[2]]
    local bytes = slurp(DATA .. "/" .. name .. ".bin")
    local v = assert(T:decode(bytes))
    assert(T:encode(v) == bytes, name .. ": re-encode differs")
    local jobs = {}
    local function job(peer, op, f) jobs[#jobs + 1] = { peer = peer, op = op, f = f } end
    job("petrel-" .. rt, "decode", function() T:decode(bytes) end)
    job("petrel-" .. rt, "encode", function() T:encode(v) end)
    local buf = petrel.buffer()
    job("petrel-" .. rt .. "-buf", "encode", function() T:encode(v, buf); buf:clear() end)
    -- the alternative strategy: BLength first (a sizing pass), then write
    job("petrel-" .. rt .. "-blength", "encode",
      function() T:size(v); T:encode(v, buf); buf:clear() end)
    if name == "mytest" or name == "vectors" then
      local o = { typed = true }
      local vt = T:decode(bytes, 1, o)
      job("petrel-" .. rt .. "-typed", "decode", function() T:decode(bytes, 1, o) end)
      job("petrel-" .. rt .. "-typed", "encode", function() T:encode(vt) end)
    end
    if floor then
      job("floor", "decode", function() floor.decode(bytes) end)
      job("floor", "encode", function() floor.walk(v) end)
      if name == "blob" then
        job("memcpy", "decode", function() floor.memcpy(1048576) end)
      end
    end
    measure_all(jobs)
    for _, j in ipairs(jobs) do
      out[#out + 1] = string.format("%s %s %s %.1f %d", j.peer, name, j.op, j.best * 1e9, #bytes)
      io.stderr:write(out[#out], "\n")
    end
  end
  return out
end

if arg and arg[1] == "--rows" then
  for _, l in ipairs(rows_for_this_runtime()) do print(l) end
  return
end

-- ---- the whole comparison -------------------------------------------------

local function run(cmd)
  io.stderr:write("## ", cmd, "\n")
  local p = assert(io.popen(cmd, "r"))
  local s = p:read("*a")
  local ok = p:close()
  if not ok then io.stderr:write("   (failed: ", cmd, ")\n") end
  return s
end

local env = 'LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="build/lua5.4/?.so;;" '
  .. 'LUA_CPATH="build/luajit/?.so;;" PETREL_DATA="' .. DATA .. '" '
local pin = "taskset -c 1 "
local outputs = {
  run(env .. pin .. "lua5.4 bench/codec.lua --rows"),
  run(env .. pin .. "luajit bench/codec.lua --rows"),
  run(pin .. "build/peers/cpp_codec " .. DATA),
  run(pin .. "/usr/bin/python3 bench/peers/py_codec.py --data " .. DATA),
  run(env .. pin .. "lua5.4 bench/peers/cjson_codec.lua " .. DATA),
  run(env .. pin .. "luajit bench/peers/cjson_codec.lua " .. DATA),
}

local R = {}
for _, s in ipairs(outputs) do
  for peer, w, op, ns, bytes in s:gmatch("(%S+) (%S+) (%a+) ([%d%.]+) (%d+)") do
    R[peer] = R[peer] or {}
    R[peer][w] = R[peer][w] or {}
    R[peer][w][op] = { ns = tonumber(ns), bytes = tonumber(bytes) }
  end
end

local function get(peer, w, op)
  return R[peer] and R[peer][w] and R[peer][w][op]
end

local function fmt_ns(ns)
  if ns >= 1e6 then return string.format("%.2f ms", ns / 1e6) end
  if ns >= 1e3 then return string.format("%.1f µs", ns / 1e3) end
  return string.format("%.0f ns", ns)
end

local PEERS = {
  { "petrel-5.4", "petrel Lua 5.4" }, { "petrel-5.4-typed", "petrel 5.4 typed arrays" },
  { "petrel-5.4-buf", "petrel 5.4 into buffer" },
  { "petrel-5.4-blength", "petrel 5.4 BLength pass + write" },
  { "petrel-jit", "petrel LuaJIT" }, { "petrel-jit-typed", "petrel LuaJIT typed arrays" },
  { "petrel-jit-buf", "petrel LuaJIT into buffer" },
  { "floor", "Lua floor (C, 5.4)" }, { "memcpy", "memcpy 1 MiB" },
  { "py", "Python + C accelerator" }, { "cpp", "C++ (TBinaryProtocolT)" },
  { "cjson-5.4", "lua-cjson 5.4 (JSON)" }, { "cjson-jit", "lua-cjson LuaJIT (JSON)" },
}

print("## Thrift Binary codec (bench/codec.lua, one run, pinned to one core)")
print()
print("Time per message (CPU time; petrel and the floor: best of " .. ROUNDS .. " interleaved rounds); MB/s of the Thrift bytes (of the JSON text for cjson).")
print("Floor: decode = schema-less C decoder building the same tables; encode = C walk reading every value.")
for _, w in ipairs(WORKLOADS) do
  local name = w[1]
  print()
  print(string.format("### %s (%s, %d bytes)", name, w[2], (get("petrel-5.4", name, "decode") or { bytes = 0 }).bytes))
  print()
  print("| codec | decode | MB/s | encode | MB/s |")
  print("|---|---:|---:|---:|---:|")
  for _, p in ipairs(PEERS) do
    local d, e = get(p[1], name, "decode"), get(p[1], name, "encode")
    if d or e then
      local function cell(x)
        if not x then return "", "" end
        return fmt_ns(x.ns), string.format("%.0f", x.bytes / x.ns * 1e3)
      end
      local dn, dm = cell(d)
      local en, em = cell(e)
      print(string.format("| %s | %s | %s | %s | %s |", p[2], dn, dm, en, em))
    end
  end
end

-- Ratios against the targets of the codec issue.
local function ratio(a, b)
  if not a or not b then return "n/a" end
  return string.format("%.2f", a.ns / b.ns)
end
print()
print("### Ratios (time / time; < 1 means petrel is faster)")
print()
print("| workload | dec 5.4/floor | dec 5.4/py | dec 5.4/C++ | enc 5.4/walk | enc py/5.4 (speedup) | enc 5.4/C++ | dec jit/5.4 | enc jit/5.4 |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for _, w in ipairs(WORKLOADS) do
  local n = w[1]
  local pd, pe = get("petrel-5.4", n, "decode"), get("petrel-5.4", n, "encode")
  print(string.format("| %s | %s | %s | %s | %s | %s | %s | %s | %s |", n,
    ratio(pd, get("floor", n, "decode")), ratio(pd, get("py", n, "decode")),
    ratio(pd, get("cpp", n, "decode")), ratio(pe, get("floor", n, "encode")),
    ratio(get("py", n, "encode"), pe), ratio(pe, get("cpp", n, "encode")),
    ratio(get("petrel-jit", n, "decode"), pd), ratio(get("petrel-jit", n, "encode"), pe)))
end
print()
print("| typed arrays | dec 5.4/C++ | enc 5.4/C++ | dec jit/C++ | enc jit/C++ |")
print("|---|---:|---:|---:|---:|")
for _, n in ipairs({ "mytest", "vectors" }) do
  print(string.format("| %s | %s | %s | %s | %s |", n,
    ratio(get("petrel-5.4-typed", n, "decode"), get("cpp", n, "decode")),
    ratio(get("petrel-5.4-typed", n, "encode"), get("cpp", n, "encode")),
    ratio(get("petrel-jit-typed", n, "decode"), get("cpp", n, "decode")),
    ratio(get("petrel-jit-typed", n, "encode"), get("cpp", n, "encode"))))
end
local bd, mc = get("petrel-5.4", "blob", "decode"), get("memcpy", "blob", "decode")
print()
print(string.format("blob: decode / 1 MiB memcpy = %s; encode into a buffer (no copy) = %s",
  ratio(bd, mc), get("petrel-5.4-buf", "blob", "encode") and fmt_ns(get("petrel-5.4-buf", "blob", "encode").ns) or "n/a"))

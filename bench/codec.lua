-- bench/codec.lua — petrel's Thrift codec, Binary and Compact, against its
-- peers, in one run: petrel on Lua 5.4 and LuaJIT, the Lua floor (a
-- schema-less C decoder building the same tables, and a C walk reading
-- every value), lua-cjson on the JSON twins, Apache Thrift Python with its
-- C accelerator (TBinaryProtocolAccelerated, TCompactProtocolAccelerated),
-- and Apache Thrift C++ (templates: TBinaryProtocolT, TCompactProtocolT
-- over TMemoryBuffer).
--
--   make bench-codec          (builds the peers, pins to core 1, ~4 min)
--   lua5.4 bench/codec.lua --rows      one runtime's petrel rows only
--   make bench-view           the message-view rows and their table only
--                             (petrel and the C++ decode; ~1 min)
--
-- Every peer is timed the same way: CPU time of its process; each job
-- calibrates its iteration count to PEER_TARGET_SEC, then one timed run;
-- the whole set of peers runs PETREL_ROUNDS times (default 5) in
-- interleaved rounds (every peer once per round, one after the other), and
-- each row keeps its best round. So machine noise, which comes in bursts
-- on these shared cores, lands on every peer alike.
--
-- Every row is "peer workload op ns_per_op bytes"; the tables are built
-- from the rows of this one run, so ratios compare like with like.
local DATA = os.getenv("PETREL_DATA") or "bench/data"
local WORKLOADS = {
  { "small", "Request" }, { "medium", "Request" }, { "large", "Request" },
  { "mytest", "MyTest" }, { "blob", "Blob" }, { "vectors", "Vectors" },
}
-- PETREL_WORKLOADS=medium,large: only those (and, with PETREL_VIEW_ONLY=1,
-- only the petrel rows and the C++ peer: make bench-view)
local only = os.getenv("PETREL_WORKLOADS")
if only and only ~= "" then
  local keep = {}
  for _, w in ipairs(WORKLOADS) do
    if ("," .. only .. ","):find("," .. w[1] .. ",", 1, true) then keep[#keep + 1] = w end
  end
  WORKLOADS = keep
end
local VIEW_ONLY = os.getenv("PETREL_VIEW_ONLY") == "1"
local TARGET = tonumber(os.getenv("PEER_TARGET_SEC") or "0.1")
local ROUNDS = tonumber(os.getenv("PETREL_ROUNDS") or "5")

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- The shared timing rule (as bench/peers/*: calibrate, then one run of
-- about TARGET seconds of CPU time per job and round).
local function calibrate(f)
  local n = 1
  while true do
    local t0 = os.clock()
    for _ = 1, n do f() end
    local dt = os.clock() - t0
    if dt >= TARGET / 8 or n >= 1e7 then return math.max(1, math.floor(n * TARGET / dt)) end
    n = n * ((dt < TARGET / 80) and 10 or 2)
  end
end

local function measure_all(jobs)
  for _, j in ipairs(jobs) do
    if j.setup then j.setup() end
    j.n = calibrate(j.f)
    collectgarbage("collect")
    local t0 = os.clock()
    local f = j.f
    for _ = 1, j.n do f() end
    j.best = (os.clock() - t0) / j.n
    if j.teardown then j.teardown() end
  end
end

local function rows_for_this_runtime()
  local petrel = require "petrel"
  local W = require "bench.workload"
  local rt = jit and "jit" or "5.4"
  local out = {}
  local floor = not jit and require "petrel_floor"
  local C = { protocol = "compact" }
  for _, w in ipairs(WORKLOADS) do
    local name, T = w[1], W[w[2]]
    local bytes = slurp(DATA .. "/" .. name .. ".bin")
    local v = assert(T:decode(bytes))
    assert(T:encode(v) == bytes, name .. ": re-encode differs")
    local cbytes = T:encode(v, C)
    assert(T:encode(assert(T:decode(cbytes, 1, C)), C) == cbytes, name .. ": compact re-encode differs")
    local jobs = {}
    local function job(peer, op, f, size) jobs[#jobs + 1] = { peer = peer, op = op, f = f, size = size or #bytes } end
    local p = "petrel-" .. rt
    job(p, "decode", function() T:decode(bytes) end)
    job(p, "encode", function() T:encode(v) end)
    job(p .. "-compact", "decode", function() T:decode(cbytes, 1, C) end, #cbytes)
    job(p .. "-compact", "encode", function() T:encode(v, C) end, #cbytes)
    local buf = petrel.buffer()
    job(p .. "-buf", "encode", function() T:encode(v, buf); buf:clear() end)
    if rt == "5.4" then
      -- the alternative strategy: BLength first (a sizing pass), then write
      job(p .. "-blength", "encode", function() T:size(v); T:encode(v, buf); buf:clear() end)
    end
    if name == "mytest" or name == "vectors" then
      local o, oc = { typed = true }, { typed = true, protocol = "compact" }
      local vt = T:decode(bytes, 1, o)
      job(p .. "-typed", "decode", function() T:decode(bytes, 1, o) end)
      job(p .. "-typed", "encode", function() T:encode(vt) end)
      job(p .. "-compact-typed", "decode", function() T:decode(cbytes, 1, oc) end, #cbytes)
      job(p .. "-compact-typed", "encode", function() T:encode(vt, C) end, #cbytes)
      if rt == "5.4" then
        -- the Compact varint kernels: the SIMD path against its scalar twin
        job(p .. "-compact-typed-scalar", "decode", function()
          petrel.simd(true); T:decode(cbytes, 1, oc); petrel.simd(false)
        end, #cbytes)
        job(p .. "-compact-typed-scalar", "encode", function()
          petrel.simd(true); T:encode(vt, C); petrel.simd(false)
        end, #cbytes)
      end
    end
    if name == "medium" or name == "large" then
      -- message views (T:view): a fresh view of the bytes each time, then
      -- 3 scalar fields read (the first, and two after the item list, so
      -- the struct's level is indexed to its end); and 100 random
      -- v.items[i].title (the list's element index built once per view)
      local function reads(view, o)
        return function()
          local x = view(T, bytes, 1, o)
          return x.user_id, x.shard, x.priority
        end
      end
      local idx, nitems = {}, #v.items
      math.randomseed(7)
      for i = 1, 100 do idx[i] = math.random(1, nitems) end
      local function items(b, o)
        return function()
          local its = T:view(b, 1, o).items
          local t
          for i = 1, 100 do t = its[idx[i]].title end
          return t
        end
      end
      job(p, "viewread", reads(T.view))
      job(p, "viewitems", items(bytes))
      job(p .. "-compact", "viewread", function()
        local x = T:view(cbytes, 1, C)
        return x.user_id, x.shard, x.priority
      end, #cbytes)
      job(p .. "-compact", "viewitems", items(cbytes, C), #cbytes)
      -- LuaJIT: the views' metamethods through the FFI (petrel.ffi.views:
      -- true = v[k] and #v; the default "len" = #v only, the rows above)
      -- and through the C API (false), in this same process
      local pf = jit and petrel.ffi and require "petrel.ffi"
      if pf then
        for _, m in ipairs({ { "-ffi", true }, { "-capi", false } }) do
          local function mark()
            jobs[#jobs].setup = function() pf.views(m[2]) end
            jobs[#jobs].teardown = function() pf.views("len") end
          end
          job(p .. m[1], "viewread", reads(T.view)); mark()
          job(p .. m[1], "viewitems", items(bytes)); mark()
          job(p .. m[1] .. "-compact", "viewread", function()
            local x = T:view(cbytes, 1, C)
            return x.user_id, x.shard, x.priority
          end, #cbytes); mark()
          job(p .. m[1] .. "-compact", "viewitems", items(cbytes, C), #cbytes); mark()
        end
        -- warm views, 100 reads per call: scalars only (the trace compiler
        -- keeps the loop), and items[i].title (each element a new view)
        local wv = T:view(bytes)
        local wits = wv.items
        local nw = #wits
        for _, m in ipairs({ { "", "len" }, { "-ffi", true }, { "-capi", false } }) do
          job(p .. m[1], "warmscalars", function()
            local a, b, c
            for i = 1, 100 do a, b, c = wv.query, wv.shard, wv.priority end
            return a, b, c
          end)
          jobs[#jobs].setup = function() pf.views(m[2]) end
          jobs[#jobs].teardown = function() pf.views("len") end
          job(p .. m[1], "warmlen", function()
            local n
            for _ = 1, 100 do n = #wits end
            return n
          end)
          jobs[#jobs].setup = function() pf.views(m[2]) end
          jobs[#jobs].teardown = function() pf.views("len") end
          job(p .. m[1], "warmitems", function()
            local t
            for i = 1, 100 do t = wits[idx[i] % nw + 1].title end
            return t
          end)
          jobs[#jobs].setup = function() pf.views(m[2]) end
          jobs[#jobs].teardown = function() pf.views("len") end
        end
      end
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
      out[#out + 1] = string.format("%s %s %s %.1f %d", j.peer, name, j.op, j.best * 1e9, j.size)
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
  .. 'PEER_TARGET_SEC=' .. TARGET .. ' PEER_ROUNDS=1 '
local pin = "taskset -c 1 "
local names = {}
for _, w in ipairs(WORKLOADS) do names[#names + 1] = w[1] end
env = env .. 'PETREL_WORKLOADS=' .. table.concat(names, ",") .. " "
local peers = {
  env .. pin .. "lua5.4 bench/codec.lua --rows",
  env .. pin .. "luajit bench/codec.lua --rows",
  env .. pin .. "build/peers/cpp_codec " .. DATA .. " " .. table.concat(names, " "),
}
if not VIEW_ONLY then
  peers[#peers + 1] = env .. pin .. "/usr/bin/python3 bench/peers/py_codec.py --data " .. DATA
  peers[#peers + 1] = env .. pin .. "lua5.4 bench/peers/cjson_codec.lua " .. DATA
  peers[#peers + 1] = env .. pin .. "luajit bench/peers/cjson_codec.lua " .. DATA
end

-- R[peer][workload][op] = { ns = best, bytes =, all = {every round} }
local R = {}
for round = 1, ROUNDS do
  io.stderr:write(("# round %d of %d\n"):format(round, ROUNDS))
  for _, cmd in ipairs(peers) do
    for peer, w, op, ns, bytes in run(cmd):gmatch("(%S+) (%S+) (%a+) ([%d%.]+) (%d+)") do
      R[peer] = R[peer] or {}
      R[peer][w] = R[peer][w] or {}
      local r = R[peer][w][op]
      if not r then
        r = { ns = math.huge, bytes = tonumber(bytes), all = {} }
        R[peer][w][op] = r
      end
      r.all[#r.all + 1] = tonumber(ns)
      if tonumber(ns) < r.ns then r.ns = tonumber(ns) end
    end
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
  { "petrel-5.4-compact", "petrel 5.4 Compact" },
  { "petrel-5.4-compact-typed", "petrel 5.4 Compact typed arrays" },
  { "petrel-5.4-compact-typed-scalar", "petrel 5.4 Compact typed, scalar kernels" },
  { "petrel-jit", "petrel LuaJIT" }, { "petrel-jit-typed", "petrel LuaJIT typed arrays" },
  { "petrel-jit-buf", "petrel LuaJIT into buffer" },
  { "petrel-jit-compact", "petrel LuaJIT Compact" },
  { "petrel-jit-compact-typed", "petrel LuaJIT Compact typed arrays" },
  { "floor", "Lua floor (C, 5.4)" }, { "memcpy", "memcpy 1 MiB" },
  { "py", "Python + C accelerator" }, { "py-compact", "Python + C accelerator, Compact" },
  { "cpp", "C++ (TBinaryProtocolT)" }, { "cpp-compact", "C++ (TCompactProtocolT)" },
  { "cjson-5.4", "lua-cjson 5.4 (JSON)" }, { "cjson-jit", "lua-cjson LuaJIT (JSON)" },
}

print("## Thrift codec, Binary and Compact (bench/codec.lua, one run, pinned to one core)")
print()
print(("Time per message: CPU time, best of %d interleaved rounds for every peer (each round runs every peer once); MB/s of the Thrift bytes (of the Compact bytes on Compact rows; of the JSON text for cjson)."):format(ROUNDS))
print("Floor: decode = schema-less C decoder building the same tables; encode = C walk reading every value.")
for _, w in ipairs(WORKLOADS) do
  local name = w[1]
  local b = get("petrel-5.4", name, "decode")
  local c = get("petrel-5.4-compact", name, "decode")
  print()
  print(string.format("### %s (%s, %d bytes; Compact %d bytes)", name, w[2], b and b.bytes or 0, c and c.bytes or 0))
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

local function ratio(a, b)
  if not a or not b then return "n/a" end
  return string.format("%.2f", a.ns / b.ns)
end
print()
print("### Binary ratios (time / time; < 1 means petrel is faster)")
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

-- The Compact targets of the protocol-layer issue, beside the figures.
local function verdict(x, op, limit)
  if not x then return "n/a" end
  local ok = (op == "<=" and x <= limit) or (op == ">=" and x >= limit)
  return string.format("%.2f %s", x, ok and "ok" or "MISSED")
end
local function r(a, b) return a and b and a.ns / b.ns or nil end
print()
print("### Compact against the targets (ratios from this run; target in the header)")
print()
print("| workload | dec Compact/Binary 5.4 (≤1.2) | enc Compact/Binary 5.4 (≤1.2) | dec Compact/Binary jit (≤1.2) | enc Compact/Binary jit (≤1.2) | dec py-Compact/5.4 speedup (≥1.2) | enc py-Compact/5.4 speedup (≥1.8 small, ≥1.5 medium) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for _, w in ipairs(WORKLOADS) do
  local n = w[1]
  local cd, ce = get("petrel-5.4-compact", n, "decode"), get("petrel-5.4-compact", n, "encode")
  local enc_target = n == "small" and 1.8 or 1.5
  print(string.format("| %s | %s | %s | %s | %s | %s | %s |", n,
    verdict(r(cd, get("petrel-5.4", n, "decode")), "<=", 1.2),
    verdict(r(ce, get("petrel-5.4", n, "encode")), "<=", 1.2),
    verdict(r(get("petrel-jit-compact", n, "decode"), get("petrel-jit", n, "decode")), "<=", 1.2),
    verdict(r(get("petrel-jit-compact", n, "encode"), get("petrel-jit", n, "encode")), "<=", 1.2),
    verdict(r(get("py-compact", n, "decode"), cd), ">=", 1.2),
    verdict(r(get("py-compact", n, "encode"), ce), ">=", enc_target)))
end
print()
print("| typed Compact lists | dec 5.4 / C++ TCompactProtocolT (≤1.0) | dec jit / C++ (≤1.0) | enc 5.4 / C++ | dec SIMD / scalar 5.4 | enc SIMD / scalar 5.4 |")
print("|---|---:|---:|---:|---:|---:|")
for _, n in ipairs({ "mytest", "vectors" }) do
  local cd = get("petrel-5.4-compact-typed", n, "decode")
  print(string.format("| %s | %s | %s | %s | %s | %s |", n,
    verdict(r(cd, get("cpp-compact", n, "decode")), "<=", 1.0),
    verdict(r(get("petrel-jit-compact-typed", n, "decode"), get("cpp-compact", n, "decode")), "<=", 1.0),
    ratio(get("petrel-5.4-compact-typed", n, "encode"), get("cpp-compact", n, "encode")),
    ratio(cd, get("petrel-5.4-compact-typed-scalar", n, "decode")),
    ratio(get("petrel-5.4-compact-typed", n, "encode"), get("petrel-5.4-compact-typed-scalar", n, "encode"))))
end
print()
print("### Message views against the targets (decode time / view time; a fresh view each time)")
print()
print("| workload | runtime | 3 fields: decode/view (≥10) | 3 fields: C++ decode/view (>1) | 100 items[i].title: decode/view (≥20 on large) | Compact 3 fields: decode/view | Compact items: decode/view |")
print("|---|---|---:|---:|---:|---:|---:|")
for _, n in ipairs({ "medium", "large" }) do
  for _, rt in ipairs({ "5.4", "jit" }) do
    local p = "petrel-" .. rt
    local d, dc = get(p, n, "decode"), get(p .. "-compact", n, "decode")
    print(string.format("| %s | %s | %s | %s | %s | %s | %s |", n, rt,
      verdict(r(d, get(p, n, "viewread")), ">=", 10),
      verdict(r(get("cpp", n, "decode"), get(p, n, "viewread")), ">=", 1.0),
      n == "large" and verdict(r(d, get(p, n, "viewitems")), ">=", 20)
        or ratio(d, get(p, n, "viewitems")), -- (the target is for large)
      ratio(dc, get(p .. "-compact", n, "viewread")) ,
      ratio(dc, get(p .. "-compact", n, "viewitems"))))
  end
end
print()
print("### LuaJIT views: FFI and C API metamethods (this run, one process; time / time)")
print()
print("petrel-jit = the default (#v through the FFI, v[k] through the C API); FFI = petrel.ffi.views(true) (v[k] of struct views and scalar lists through the FFI too); C API = views(false).")
print()
print("| workload | row | default | FFI | C API | C API / FFI (>1: FFI faster) | C API / default |")
print("|---|---|---:|---:|---:|---:|---:|")
for _, n in ipairs({ "medium", "large" }) do
  for _, row in ipairs({ { "", "viewread", "3 fields" }, { "", "viewitems", "100 items[i].title" },
    { "-compact", "viewread", "Compact 3 fields" }, { "-compact", "viewitems", "Compact items" } }) do
    local dflt = get("petrel-jit" .. row[1], n, row[2])
    local f = get("petrel-jit-ffi" .. row[1], n, row[2])
    local c = get("petrel-jit-capi" .. row[1], n, row[2])
    print(string.format("| %s | %s | %s | %s | %s | %s | %s |", n, row[3],
      dflt and fmt_ns(dflt.ns) or "n/a", f and fmt_ns(f.ns) or "n/a", c and fmt_ns(c.ns) or "n/a",
      ratio(c, f), ratio(c, dflt)))
  end
end
for _, n in ipairs({ "medium", "large" }) do
  for _, row in ipairs({ { "warmscalars", "warm view: 100 x 3 scalar fields" },
    { "warmlen", "warm view: 100 x #v.items" },
    { "warmitems", "warm view: 100 items[i].title" } }) do
    local dflt, f, c = get("petrel-jit", n, row[1]), get("petrel-jit-ffi", n, row[1]),
      get("petrel-jit-capi", n, row[1])
    print(string.format("| %s | %s | %s | %s | %s | %s | %s |", n, row[2],
      dflt and fmt_ns(dflt.ns) or "n/a", f and fmt_ns(f.ns) or "n/a", c and fmt_ns(c.ns) or "n/a",
      ratio(c, f), ratio(c, dflt)))
  end
end
print()
print("| workload | runtime | 3 fields: decode/view (≥10) | 3 fields: C++ decode/view (>1) | 100 items[i].title: decode/view (≥20 on large) |")
print("|---|---|---:|---:|---:|")
for _, n in ipairs({ "medium", "large" }) do
  for _, m in ipairs({ { "-ffi", "jit FFI" }, { "-capi", "jit C API" } }) do
    local d = get("petrel-jit", n, "decode")
    local p = "petrel-jit" .. m[1]
    print(string.format("| %s | %s | %s | %s | %s |", n, m[2],
      verdict(r(d, get(p, n, "viewread")), ">=", 10),
      verdict(r(get("cpp", n, "decode"), get(p, n, "viewread")), ">=", 1.0),
      n == "large" and verdict(r(d, get(p, n, "viewitems")), ">=", 20) or ratio(d, get(p, n, "viewitems"))))
  end
end
local bd, mc = get("petrel-5.4", "blob", "decode"), get("memcpy", "blob", "decode")
if not VIEW_ONLY then
  print()
  print(string.format("blob: decode / 1 MiB memcpy = %s; encode into a buffer (no copy) = %s",
    ratio(bd, mc), get("petrel-5.4-buf", "blob", "encode") and fmt_ns(get("petrel-5.4-buf", "blob", "encode").ns) or "n/a"))
end

-- spread: how far the rounds of each petrel row lie from its best
local worst, wname = 0, ""
for peer, ws in pairs(R) do
  for w, ops in pairs(ws) do
    for op, x in pairs(ops) do
      table.sort(x.all)
      local med = x.all[math.floor((#x.all + 1) / 2)]
      local spread = med / x.ns - 1
      if peer:find("^petrel") and spread > worst then worst, wname = spread, peer .. " " .. w .. " " .. op end
    end
  end
end
print(string.format("spread: the median round of a petrel row is at most %.0f%% above its best (%s)", worst * 100, wname))

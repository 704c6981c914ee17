-- The views' LuaJIT FFI path (lua/petrel/ffi.lua over lpt_vf_* in
-- csrc/lua/lpt_view.c) against their C API path and against decode.
--
-- Every read goes through v[k] and #v, the metamethods the FFI path
-- replaces. On LuaJIT each check runs in every mode of petrel.ffi.views:
-- true (v[k] of struct views and scalar lists and #v through the FFI),
-- "len" (the default: #v only) and false (the C API), on fresh views of
-- the same bytes, and the modes must give the same values and the same
-- errors (message, path, offset), which must agree with decode. On Lua 5.4
-- there is no FFI: the same checks run once, on the C API path, against
-- decode (what is covered there is the C API's agreement with decode and
-- its errors; the FFI comparison needs LuaJIT, and the LuaJIT run checks
-- that the FFI path is in place, so it cannot pass without it).
local petrel = require "petrel"
local core = require "petrel.core"
local W = require "bench.workload"
local canon = require "support.canon"
local slurp = require "support.slurp"

local V = petrel.view
local is_jit = jit ~= nil
local C = { protocol = "compact" }
local DATA = "bench/data/"
local pf = is_jit and os.getenv("PETREL_NO_FFI") ~= "1" and require "petrel.ffi" or nil
local MODES = pf and { true, "len", false } or { "C API" }

local A = petrel.schema {
  E = petrel.enum { A = 1, B = 2, Z = -7 },
  In = petrel.struct { {1, "n", "i32"}, {2, "s", "string", "optional"} },
  All = petrel.struct { {1, "b", "bool"}, {2, "y", "byte"}, {3, "h", "i16"},
    {4, "i", "i32"}, {5, "l", "i64"}, {6, "d", "double"}, {7, "s", "string"},
    {8, "bin", "binary"}, {9, "u", "uuid"}, {10, "e", "E"}, {11, "in", "In"},
    {12, "ls", "list<string>"}, {13, "st", "set<i64>"}, {14, "lb", "list<bool>"},
    {15, "ld", "list<double>"}, {16, "li", "list<In>"}, {17, "m", "map<string,i32>"},
    {18, "r", "i32", "required"}, {19, "dv", "i16", default = 5},
    {20, "lh", "list<i16>"}, {21, "le", "list<E>"}, {22, "t", "bool"},
    {23, "ll", "list<list<i32>>"}, {24, "opt", "string", "optional"} },
}

local function norm(v)
  local t = type(v)
  if t == "number" then
    if v ~= v then return "nan" end
    if v == math.floor(v) and math.abs(v) < 2 ^ 63 then return string.format("%d", v) end
    return string.format("%.17g", v)
  end
  if t == "cdata" then return (tostring(v):gsub("U?LL$", "")) end
  if t == "string" then return string.format("%q", v) end
  if t ~= "table" then return tostring(v) end
  local p = {}
  for k, x in pairs(v) do
    if k ~= petrel.unknown then p[#p + 1] = norm(k) .. "=" .. norm(x) end
  end
  table.sort(p)
  return "{" .. table.concat(p, ",") .. "}"
end

-- Read everything of view x through v[k] and #v (maps through V.pairs,
-- which has no FFI path; their values are read as the rest). Returns the
-- value as plain tables, and appends every access (path = result or
-- error) to log. ns: the schema namespace.
local function read(ns, x, path, log, budget)
  budget.n = budget.n - 1
  if budget.n < 0 then return nil end
  local function get(k, where)
    local ok, r = pcall(function() return x[k] end)
    log[#log + 1] = where .. (ok and (V.is(r) and " = view " .. V.type(r) or " = " .. norm(r))
      or " ! " .. tostring(r))
    if not ok then return nil end
    if V.is(r) then return read(ns, r, where, log, budget) end
    return r
  end
  local ok, n = pcall(function() return #x end)
  log[#log + 1] = path .. " # " .. (ok and tostring(n) or "! " .. tostring(n))
  if not ok then return nil end
  local ty = V.type(x)
  if ty:find("^list<") or ty:find("^set<") then
    local out = {}
    for i = 1, n do out[i] = get(i, path .. "[" .. i .. "]") end
    get(n + 1, path .. "[" .. (n + 1) .. "]")
    get(0, path .. "[0]")
    get(1.5, path .. "[1.5]")
    get("decode", path .. ".decode") -- a method of a list view
    return out
  elseif ty:find("^map<") then
    local out = {}
    local okp, e = pcall(function()
      for k, v in V.pairs(x) do
        out[k] = V.is(v) and read(ns, v, path .. "[" .. norm(k) .. "]", log, budget) or v
      end
    end)
    if not okp then log[#log + 1] = path .. " pairs ! " .. tostring(e) end
    return out
  end
  local T = ns[ty]
  local out = {}
  for _, f in ipairs(T:fields()) do out[f.name] = get(f.name, path .. "." .. f.name) end
  get("nope", path .. ".nope")
  get("has", path .. ".has") -- a method
  get(1, path .. "[1]")
  return out
end

-- The reads of a fresh view of bytes, in each mode: the same log in all.
local function each_mode(ns, T, bytes, o, root)
  local first, val
  for _, mode in ipairs(MODES) do
    if pf then pf.views(mode) end
    local v = T:view(bytes, 1, o)
    local log = {}
    local ok, r = pcall(read, ns, v, root, log, { n = 5000 })
    assert(ok, r)
    if not first then
      first, val = log, r
    else
      for i = 1, math.max(#first, #log) do
        if first[i] ~= log[i] then
          error(("mode %s differs from mode %s at access %d:\n  %s\n  %s"):format(
            tostring(mode), tostring(MODES[1]), i, tostring(first[i]), tostring(log[i])))
        end
      end
    end
  end
  if pf then pf.views("len") end
  return val, first
end

describe("views: the FFI path and the C API path", function()
  teardown(function() if pf then pf.views("len") end end)

  it(is_jit and "LuaJIT: the FFI path is in place (petrel.ffi.views)" or
    "Lua 5.4: no FFI; the C API path is checked against decode", function()
    if is_jit and os.getenv("PETREL_NO_FFI") ~= "1" then
      assert.is_true(petrel.ffi)
      assert.equal("len", pf.views_mode)
      assert.is_function(pf.view_ffi.index)
      -- switching really changes the metamethods (debug sees past __metatable)
      local v = W.Request:view(W.Request:encode { user_id = 1 })
      pf.views(true)
      assert.equal(pf.view_ffi.index, debug.getmetatable(v).__index)
      pf.views(false)
      assert.equal(pf.view_c.index, debug.getmetatable(v).__index)
      pf.views("len")
      assert.equal(pf.view_ffi.len, debug.getmetatable(v).__len)
    else
      assert.is_false(petrel.ffi) -- Lua 5.4, or LuaJIT with PETREL_NO_FFI=1
    end
  end)

  for _, w in ipairs({ { "small", "Request" }, { "medium", "Request" }, { "large", "Request" },
    { "mytest", "MyTest" }, { "blob", "Blob" }, { "vectors", "Vectors" } }) do
    local name, tname = w[1], w[2]
    it("agree with decode on the canonical " .. name .. " message, Binary and Compact", function()
      local T = W[tname]
      local bytes = slurp(DATA .. name .. ".bin")
      local d = assert(T:decode(bytes))
      if name == "large" then
        -- large: the scalars of the top level and of 200 items, every mode
        for _, mode in ipairs(MODES) do
          if pf then pf.views(mode) end
          local v = T:view(bytes)
          assert.equal(norm(d.user_id), norm(v.user_id))
          assert.equal(d.query, v.query)
          assert.equal(d.shard, v.shard)
          assert.equal(d.priority, v.priority)
          assert.equal(#d.items, #v.items)
          assert.equal(#d.item_ids, #v.item_ids)
          for i = 1, #d.items, 131 do
            local it = v.items[i]
            assert.equal(d.items[i].title, it.title)
            assert.equal(norm(d.items[i].score), norm(it.score))
            assert.equal(d.items[i].active, it.active)
            assert.equal(d.items[i].rank, it.rank)
            assert.equal(#d.items[i].tags, #it.tags)
            assert.equal(d.items[i].tags[1], it.tags[1])
            assert.equal(norm(d.item_ids[i]), norm(v.item_ids[i]))
          end
        end
        if pf then pf.views("len") end
        return
      end
      if #bytes > 100000 then
        -- mytest, blob, vectors: every field, long lists by a sample
        for _, o in ipairs({ {}, C }) do
          local b = T:encode(d, o)
          for _, mode in ipairs(MODES) do
            if pf then pf.views(mode) end
            local v = T:view(b, 1, o)
            for _, f in ipairs(T:fields()) do
              local x, dx = v[f.name], d[f.name]
              if V.is(x) and V.type(x):find("^list<") then
                assert.equal(#dx, #x)
                for i = 1, #dx, 97 do assert.equal(norm(dx[i]), norm(x[i])) end
                assert.equal(norm(dx[#dx]), norm(x[#dx]))
                assert.is_nil(x[#dx + 1])
              elseif V.is(x) then
                assert.equal(norm(dx), norm(assert(V.decode(x))))
              else
                assert.equal(norm(dx), norm(x))
              end
            end
          end
        end
        if pf then pf.views("len") end
        return
      end
      for _, o in ipairs({ {}, C }) do
        local b = T:encode(d, o)
        local dd = assert(T:decode(b, 1, o))
        local got = each_mode(W, T, b, o, tname)
        assert.equal(norm(dd), norm(got))
      end
    end)
  end

  it("agree with decode on random values, Binary and Compact", function()
    local seed = 5
    local function rnd(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return math.floor(seed / 65536) % n
    end
    for i = 1, 40 do
      local val = canon.random(A._defs, "All", rnd)
      for _, o in ipairs({ {}, C }) do
        local bytes = A.All:encode(val, o)
        local d = assert(A.All:decode(bytes, 1, o))
        local got = each_mode(A, A.All, bytes, o, "All #" .. i)
        assert.equal(norm(d), norm(got))
      end
    end
    -- integers at the edges of what a Lua number holds (i64 beyond 2^53
    -- leave the FFI path: int64 cdata on LuaJIT)
    for _, l in ipairs({ 0, 1, -1, 2 ^ 53, -2 ^ 53, 2 ^ 53 + 2, math.maxinteger or 2 ^ 62 }) do
      local bytes = A.All:encode { r = 1, l = l, s = "", d = 0 / 0 }
      local d = A.All:decode(bytes)
      local got = each_mode(A, A.All, bytes, {}, "All")
      assert.equal(norm(d), norm(got))
    end
  end)

  it("every truncation and random corruption: the same errors (path, offset) in every mode", function()
    local seed = 13
    local function rnd(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return math.floor(seed / 65536) % n
    end
    local small = slurp(DATA .. "small.bin")
    local cases = { { W, W.Request, small, {}, "Request" },
      { W, W.Request, W.Request:encode(W.Request:decode(small), C), C, "Request" } }
    local val = canon.random(A._defs, "All", function(n) return n > 3 and 3 or n - 1 end)
    cases[#cases + 1] = { A, A.All, A.All:encode(val), {}, "All" }
    cases[#cases + 1] = { A, A.All, A.All:encode(val, C), C, "All" }
    local errors = 0
    for _, cs in ipairs(cases) do
      local ns, T, bytes, o, root = cs[1], cs[2], cs[3], cs[4], cs[5]
      for n = 0, #bytes - 1, (#bytes > 600 and 7 or 1) do -- truncations
        local _, log = each_mode(ns, T, bytes:sub(1, n), o, root)
        for _, l in ipairs(log) do
          local e = l:match(" ! (.*)$")
          if e then
            errors = errors + 1
            assert(e:find("^" .. root) and e:find(" at offset %d+$"), e)
          end
        end
      end
      for _ = 1, 80 do -- corruption
        local b = { bytes:byte(1, -1) }
        for _ = 1, 1 + rnd(3) do
          b[1 + rnd(#b)] = rnd(4) == 0 and 0xff or rnd(256)
        end
        each_mode(ns, T, string.char((table.unpack or unpack)(b)), o, root)
      end
    end
    assert.is_true(errors > 100)
  end)

  it("expired and released views are refused in every mode, reading nothing", function()
    local bytes = slurp(DATA .. "small.bin")
    local d = W.Request:decode(bytes)
    for _, mode in ipairs(MODES) do
      if pf then pf.views(mode) end
      -- released
      local v = W.Request:view(bytes)
      local its, ids = v.items, v.item_ids
      local it = its[1]
      assert.equal(d.query, v.query)
      assert.equal(#d.items, #its)
      V.release(v)
      for _, f in ipairs({ function() return v.query end, function() return v.shard end,
        function() return #its end, function() return #ids end, function() return ids[1] end,
        function() return it.title end, function() return its[1] end,
        function() return v.nope end, function() return v.items end }) do
        assert.error_matches(f, "view expired")
      end
      -- expired with their message (as a server expires a handler's views)
      local inb = petrel.buffer()
      W.Echo.functions.echo.args:encode_message({ req = d }, inb, "echo", 1, 7, true)
      local m = core.message()
      assert.equal(m, core.take_frame(inb, 1e6, m))
      local args = W.Echo.functions.echo.args:view(m, (select(4, m:header())))
      local req = args.req
      local tags = req.items[1].tags
      assert.equal(d.items[1].tags[1], tags[1])
      assert.equal(d.user_id, req.user_id)
      assert.is_true(m:expire())
      assert.error_matches(function() return req.query end, "view expired")
      assert.error_matches(function() return #tags end, "view expired")
      assert.error_matches(function() return tags[1] end, "view expired")
      -- the message takes new bytes: the old views stay expired
      W.Echo.functions.echo.args:encode_message({ req = { query = "other" } }, inb, "echo", 1, 8, true)
      assert.equal(m, core.take_frame(inb, 1e6, m))
      assert.error_matches(function() return req.query end, "view expired")
      assert.error_matches(function() return tags[1] end, "view expired")
      local again = W.Echo.functions.echo.args:view(m, (select(4, m:header())))
      assert.equal("other", again.req.query)
      assert.is_true(m:expire())
    end
    if pf then pf.views("len") end
  end)
end)

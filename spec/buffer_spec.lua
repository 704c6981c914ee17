-- petrel.buffer: every method, on Lua 5.4 and LuaJIT.
local petrel = require "petrel"

local is_jit = jit ~= nil
local I64 = is_jit and function(s) return loadstring("return " .. s .. "LL")() end
  or function(s) return math.tointeger(load("return " .. s)()) end

-- 1-based deterministic byte patterns
local function pattern(n, seed)
  local t = {}
  for i = 1, n do t[i] = string.char((i * 31 + seed) % 256) end
  return table.concat(t)
end

describe("petrel.buffer", function()
  it("starts empty or from a string", function()
    local b = petrel.buffer()
    assert.equal(0, #b)
    assert.equal("", tostring(b))
    local c = petrel.buffer("abc")
    assert.equal(3, #c)
    assert.equal(3, c:len())
    assert.equal("abc", tostring(c))
    assert.equal(3, #c) -- tostring does not consume
  end)

  it("writes strings and numbers, chaining", function()
    local b = petrel.buffer()
    assert.equal(b, b:write("a", "bc"):write(12))
    assert.equal("abc12", b:read())
    assert.has_error(function() b:write({}) end)
    assert.has_error(function() b:write(true) end)
  end)

  it("reads, peeks and skips, with nil, err when short", function()
    local b = petrel.buffer("hello world")
    assert.equal("hello", b:peek(5))
    assert.equal(11, #b)
    assert.equal("hello", b:read(5))
    assert.equal(b, b:skip(1))
    local s, err = b:read(6)
    assert.is_nil(s)
    assert.matches("need 6 bytes, have 5", err)
    assert.equal(5, #b)
    assert.is_nil((b:skip(6)))
    assert.is_nil((b:peek(6)))
    assert.equal("world", b:peek())
    assert.equal("", b:read(0))
    assert.equal("world", b:read())
    assert.equal("", b:read())
    assert.has_error(function() b:read(-1) end)
    assert.has_error(function() b:read(1.5) end)
  end)

  it("reads across node boundaries", function()
    local b = petrel.buffer({ block = 128 })
    local src = pattern(5000, 3)
    for i = 1, #src, 100 do b:write(src:sub(i, i + 99)) end
    assert.is_true(b:nodes() > 30)
    assert.equal(src:sub(1, 1000), b:peek(1000))
    assert.equal(src:sub(1, 777), b:read(777))
    assert.equal(src:sub(778), b:read())
  end)

  it("finds delimiters like string.find (plain), across nodes", function()
    local b = petrel.buffer({ block = 64 })
    local s = string.rep("x", 62) .. "\r\n" .. string.rep("y", 70) .. "\r\nend"
    for i = 1, #s, 7 do b:write(s:sub(i, i + 6)) end
    assert.same({ s:find("\r\n", 1, true) }, { b:find("\r\n") })
    assert.same({ s:find("\r\n", 65, true) }, { b:find("\r\n", 65) })
    assert.same({ s:find("y\r\ne", 1, true) }, { b:find("y\r\ne") })
    assert.is_nil(b:find("zz"))
    assert.same({ s:find("end", -3, true) }, { b:find("end", -3) })
    assert.same({ 1, 0 }, { b:find("") })
    assert.is_nil(b:find("x", #s + 2))
  end)

  it("reads and writes big-endian integers and doubles", function()
    local b = petrel.buffer()
    b:write_u8(255):write_i8(-1):write_u16(65535):write_i16(-32768)
    b:write_u32(4294967295):write_i32(-2147483648)
    b:write_i64(I64("-9223372036854775807") - 1):write_i64(I64("9007199254740993"))
    b:write_u64(I64("-1")):write_double(-1.5)
    assert.equal(2 + 4 + 8 + 24 + 8, #b)
    assert.equal(255, b:peek_u8())
    assert.equal(255, b:read_u8())
    assert.equal(-1, b:read_i8())
    assert.equal(0xffff, b:peek_u16(0))
    assert.equal(-32768, b:peek_i16(2))
    assert.equal(65535, b:read_u16())
    assert.equal(-32768, b:read_i16())
    assert.equal(4294967295, b:read_u32())
    assert.equal(-2147483648, b:read_i32())
    assert.equal(I64("-9223372036854775807") - 1, b:read_i64())
    local big = b:read_i64()
    assert.equal(I64("9007199254740993"), big)
    if is_jit then
      assert.equal("cdata", type(big)) -- exact: int64 cdata above 2^53
    else
      assert.equal("integer", math.type(big))
    end
    local u = b:read_u64()
    if is_jit then assert.equal(loadstring("return 18446744073709551615ULL")(), u) else assert.equal(-1, u) end
    assert.equal(-1.5, b:read_double())
    assert.is_nil((b:read_u8()))
    assert.has_error(function() b:write_u8(256) end)
    assert.has_error(function() b:write_i8(-129) end)
    assert.has_error(function() b:write_u16(-1) end)
    assert.has_error(function() b:write_i32(2147483648) end)
    assert.has_error(function() b:write_u32(1.5) end)
    assert.has_error(function() b:write_i64("x") end)
    -- small values stay plain numbers on LuaJIT
    b:write_i64(-5)
    local v = b:read_i64()
    assert.equal(-5, v)
    assert.equal("number", type(v))
  end)

  it("peeks integers at an offset across nodes", function()
    local b = petrel.buffer({ block = 64 })
    b:write(string.rep("a", 62))
    b:write_u32(0x01020304)
    assert.equal(0x01020304, b:peek_u32(62))
    assert.is_nil((b:peek_u32(63)))
    assert.equal(66, #b)
  end)

  it("slices into a buffer that shares the bytes", function()
    local b = petrel.buffer({ block = 128 })
    local src = pattern(1000, 5)
    b:write(src)
    local s = b:slice(600)
    assert.equal(600, #s)
    assert.equal(400, #b)
    assert.equal(src:sub(1, 600), tostring(s))
    assert.equal(src:sub(601), b:read())
    assert.is_nil((b:slice(1)))
    s:write("more")
    assert.equal(src:sub(1, 600) .. "more", s:read())
  end)

  it("appends another buffer by moving its nodes", function()
    local a, b = petrel.buffer("abc"), petrel.buffer("def")
    assert.equal(a, a:append(b))
    assert.equal(0, #b)
    assert.equal("abcdef", tostring(a))
    b:write("x")
    assert.equal("x", b:read())
    assert.has_error(function() a:append("str") end)
  end)

  it("reserves space and commits part of it", function()
    local b = petrel.buffer("x")
    local p = b:reserve(100)
    assert.equal("userdata", type(p))
    if is_jit then
      local ffi = require "ffi"
      ffi.copy(ffi.cast("char *", p), "hello", 5)
      b:commit(5)
      assert.equal("xhello", b:read())
    else
      b:commit(0)
      assert.equal("x", b:read())
    end
    b:reserve(10)
    assert.has_error(function() b:commit(11) end)
    b:write("y") -- a write cancels the reservation
    assert.has_error(function() b:commit(1) end)
    assert.equal("y", b:read())
  end)

  it("clears, closes, and supports __close on 5.4", function()
    local b = petrel.buffer("abc")
    assert.equal(b, b:clear())
    assert.equal(0, #b)
    b:write("d"):close()
    assert.equal(0, #b)
    b:write("e")
    assert.equal("e", b:read())
    if not is_jit and _VERSION == "Lua 5.4" then
      local f = load([[
        local petrel, big = ...
        -- no collection in between: it would free other tests' buffers
        collectgarbage("collect")
        collectgarbage("stop")
        local before = petrel.pool_stats().bytes_in_use
        do
          local b <close> = petrel.buffer()
          b:write(big)
          assert(petrel.pool_stats().bytes_in_use > before)
        end
        local grew = petrel.pool_stats().bytes_in_use - before
        collectgarbage("restart")
        return grew
      ]])
      assert.equal(0, f(petrel, string.rep("z", 3000)))
    end
  end)

  it("rejects non-buffers as self", function()
    local b = petrel.buffer()
    assert.has_error(function() b.read({}) end)
    assert.has_error(function() b.read(io.stdout) end)
  end)

  describe("no-copy strings", function()
    it("links long strings and keeps them alive until consumed", function()
      collectgarbage("collect")
      local before = petrel.pool_stats()
      local b = petrel.buffer()
      do
        local s = pattern(1048576, 9)
        b:write("hdr", s) -- 1 MiB: linked, not copied
      end
      collectgarbage("collect")
      collectgarbage("collect")
      local st = petrel.pool_stats()
      assert.equal(before.nocopy_blocks + 1, st.nocopy_blocks)
      assert.equal(before.anchored + 1, st.anchored)
      local mem_alive = collectgarbage("count")
      -- the string's bytes are still valid after Lua dropped it
      assert.equal("hdr", b:read(3))
      assert.equal(pattern(1048576, 9), b:read())
      st = petrel.pool_stats()
      assert.equal(before.nocopy_blocks, st.nocopy_blocks)
      assert.equal(before.anchored, st.anchored)
      collectgarbage("collect")
      collectgarbage("collect")
      -- consumed: the anchor is gone, so the collector took the 1 MiB string
      assert.is_true(collectgarbage("count") < mem_alive - 900)
    end)

    it("copies short strings, honours the threshold and link()", function()
      local b = petrel.buffer({ nocopy = 16 })
      local n0 = petrel.pool_stats().nocopy_blocks
      b:write("short")
      assert.equal(n0, petrel.pool_stats().nocopy_blocks)
      b:write(string.rep("L", 16))
      assert.equal(n0 + 1, petrel.pool_stats().nocopy_blocks)
      b:link("tiny")
      assert.equal(n0 + 2, petrel.pool_stats().nocopy_blocks)
      assert.equal("short" .. string.rep("L", 16) .. "tiny", b:read())
      assert.equal(n0, petrel.pool_stats().nocopy_blocks)
    end)

    it("survives slices sharing the linked bytes", function()
      local b = petrel.buffer()
      b:write(pattern(10000, 1))
      local s = b:slice(5000)
      b:skip(5000)
      collectgarbage("collect")
      assert.equal(pattern(10000, 1):sub(1, 5000), s:read())
    end)

    it("frees linked nodes when a buffer is collected", function()
      local n0 = petrel.pool_stats().anchored
      do
        local b = petrel.buffer()
        b:write(pattern(8192, 2))
      end
      collectgarbage("collect")
      collectgarbage("collect")
      assert.equal(n0, petrel.pool_stats().anchored)
    end)
  end)

  describe("pools", function()
    it("serve a steady write-then-consume loop with no new misses", function()
      local pool = petrel.pool()
      local b = petrel.buffer({ pool = pool })
      local piece = pattern(1024, 4)
      local misses
      for round = 1, 40 do
        for _ = 1, 64 do b:write(piece) end
        b:skip(#b - 100)
        if round == 10 then misses = pool:stats().misses end
      end
      local st = pool:stats()
      assert.is_true(misses > 0)
      assert.equal(misses, st.misses)
      assert.is_true(st.hits > 0)
    end)

    it("report per-class statistics", function()
      local pool = petrel.pool({ idle_cap = 1048576 })
      local b = petrel.buffer({ pool = pool })
      b:write(string.rep("a", 100))
      local st = pool:stats()
      assert.equal(16, #st.classes)
      assert.equal(128, st.classes[1].size)
      local in_use = 0
      for _, c in ipairs(st.classes) do in_use = in_use + c.in_use end
      assert.equal(1, in_use)
      assert.equal(st.blocks_in_use, in_use)
      assert.equal(1048576, st.idle_cap)
      assert.equal(1, st.buffers)
      b:read()
      b:clear()
      st = pool:stats()
      assert.equal(0, st.bytes_in_use)
      assert.is_true(st.bytes_idle > 0)
      pool:trim()
      assert.equal(0, pool:stats().bytes_idle)
      pool:set_idle_cap(0)
      b:write(string.rep("b", 9000)):clear()
      assert.equal(0, pool:stats().bytes_idle)
      assert.is_true(petrel.default_pool():stats().buffers >= 0)
    end)

    it("put blocks above the largest class outside the pool", function()
      local pool = petrel.pool()
      local b = petrel.buffer({ pool = pool, nocopy = 1073741824 })
      b:write(string.rep("h", 5 * 1024 * 1024))
      local st = pool:stats()
      assert.equal(1, st.huge_blocks)
      b:clear()
      assert.equal(0, pool:stats().huge_blocks)
    end)
  end)

  if jit then
    it("LuaJIT: FFI fast paths are active and agree with the C API methods", function()
      assert.is_true(petrel.ffi)
      local C = require("petrel.ffi").c
      local a, b = petrel.buffer({ block = 128 }), petrel.buffer({ block = 128 })
      local seed = 5
      local function rnd(n)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return math.floor(seed / 65536) % n
      end
      for i = 1, 3000 do
        local op, n = rnd(4), rnd(300)
        if op == 0 then
          local s = pattern(n, i)
          a:write(s)
          C.write(b, s)
        elseif op == 1 then
          local x, e1 = a:read(n)
          local y, e2 = C.read(b, n)
          assert.equal(y, x)
          assert.equal(e2, e1)
        elseif op == 2 then
          assert.equal(C.peek(b, n), a:peek(n))
        else
          local x = a:skip(n)
          local y = C.skip(b, n)
          assert.equal(y == nil, x == nil)
        end
        assert.equal(C.len(b), #a)
      end
      -- fallbacks keep the C API's checks
      assert.has_error(function() a:read(-1) end)
      assert.has_error(function() a:read(1.5) end)
      assert.has_error(function() a.read({}, 1) end)
      assert.has_error(function() a:write({}) end)
    end)
  end

  describe("randomized model", function()
    it("matches a plain string through thousands of operations", function()
      local seed = 12345
      local function rnd(n)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return math.floor(seed / 65536) % n
      end
      local b = petrel.buffer({ block = 256, nocopy = 600 })
      local model = ""
      local links = {}
      for i = 1, 64 do links[i] = pattern(600 + i * 37, i) end
      local crossed = 0
      for it = 1, 6000 do
        local op = rnd(8)
        local n = rnd(1500)
        if op == 0 or op == 1 then -- copying write
          local s = pattern(n % 500, it)
          b:write(s)
          model = model .. s
        elseif op == 2 then -- no-copy write
          local s = links[rnd(64) + 1]
          b:write(s)
          model = model .. s
        elseif op == 3 then -- read
          n = math.min(n, #model)
          if b:nodes() > 1 and n > 0 then crossed = crossed + 1 end
          assert.equal(model:sub(1, n), b:read(n))
          model = model:sub(n + 1)
        elseif op == 4 then -- peek
          n = math.min(n, #model)
          assert.equal(model:sub(1, n), b:peek(n))
        elseif op == 5 then -- skip
          n = math.min(n, #model)
          b:skip(n)
          model = model:sub(n + 1)
        elseif op == 6 then -- slice
          n = math.min(n, #model)
          local s = b:slice(n)
          assert.equal(model:sub(1, n), tostring(s))
          model = model:sub(n + 1)
        else -- find a needle from the model
          if #model > 4 then
            local at = rnd(#model - 3) + 1
            local needle = model:sub(at, at + 2)
            assert.same({ model:find(needle, 1, true) }, { b:find(needle) })
          end
        end
        assert.equal(#model, #b)
      end
      assert.equal(model, b:read())
      assert.is_true(crossed > 100)
    end)
  end)
end)

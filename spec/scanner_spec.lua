-- The incremental message scanner that finds message ends on unframed
-- (Apache "buffered") transports, whatever pieces the bytes arrive in.
local petrel = require "petrel"
local core = require "petrel.core"

local DATA = "bench/data/"

local slurp = require "support.slurp"

local function be32(n)
  local f = math.floor
  return string.char(f(n / 16777216) % 256, f(n / 65536) % 256, f(n / 256) % 256, n % 256)
end

local function strict(name, body, seqid)
  return "\128\1\0\1" .. be32(#name) .. name .. be32(seqid or 7) .. body
end
local function nonstrict(name, body)
  return be32(#name) .. name .. "\1" .. be32(9) .. body
end

-- feed msg into a fresh buffer in pieces of the sizes next_size() gives;
-- returns the scanner's answer after each piece
local function feed_pieces(msg, next_size, max)
  local sc = core.scanner(max or 64 * 1024 * 1024)
  local b = petrel.buffer()
  local answers, pos = {}, 1
  while pos <= #msg do
    local k = math.min(next_size(), #msg - pos + 1)
    b:write(msg:sub(pos, pos + k - 1))
    pos = pos + k
    local n, err = sc:feed(b)
    answers[#answers + 1] = { n, err, pos - 1 }
  end
  return answers
end

describe("message scanner", function()
  local bodies = {}
  for _, w in ipairs({ "small", "medium", "mytest", "blob", "vectors" }) do
    bodies[w] = slurp(DATA .. w .. ".bin")
  end

  it("finds the end of every workload message, strict and non-strict, fed at once", function()
    for w, body in pairs(bodies) do
      for _, msg in ipairs({ strict("echo", body), nonstrict("echo", body) }) do
        local sc = core.scanner(64 * 1024 * 1024)
        local b = petrel.buffer(msg .. strict("next", bodies.small))
        assert.equal(#msg, sc:feed(b), w)
        b:skip(#msg)
        assert.equal(#b, sc:feed(b), w) -- starts over for the next message
      end
    end
  end)

  it("answers nil until the last piece, then the length, in random pieces", function()
    math.randomseed(42)
    for w, body in pairs(bodies) do
      local msg = strict("m", body)
      local limit = #msg > 100000 and 70000 or 300
      local answers = feed_pieces(msg, function() return math.random(1, limit) end)
      for i = 1, #answers - 1 do
        assert.is_nil(answers[i][1], w .. " piece " .. i .. ": " .. tostring(answers[i][2]))
      end
      assert.equal(#msg, answers[#answers][1], w)
    end
  end)

  it("byte by byte", function()
    local msg = nonstrict("echo", bodies.small)
    local answers = feed_pieces(msg, function() return 1 end)
    assert.equal(#msg, #answers)
    for i = 1, #answers - 1 do assert.is_nil(answers[i][1]) end
    assert.equal(#msg, answers[#answers][1])
  end)

  it("agrees with the codec on an empty body and empty names", function()
    for _, msg in ipairs({ strict("", "\0"), nonstrict("", "\0"), strict("x", "\11\0\1" .. be32(0) .. "\0") }) do
      local sc = core.scanner(1024)
      assert.equal(#msg, sc:feed(petrel.buffer(msg)))
    end
  end)

  it("refuses malformed and oversized messages early, with the offset", function()
    local rows = {
      { "bad version", "\128\2\0\1" .. be32(1) .. "x" .. be32(1) .. "\0", "bad protocol version" },
      { "bad field type", strict("x", "\99\0\1"), "bad field type" },
      { "negative string", strict("x", "\11\0\1\255\255\255\255"), "negative length" },
      { "negative count", strict("x", "\15\0\1\8\255\255\255\255"), "negative count" },
      { "bad element type", strict("x", "\15\0\1\99\0\0\0\1"), "bad element type" },
      { "bad map types", strict("x", "\13\0\1\11\99\0\0\0\1"), "bad map key or value type" },
      { "huge list", strict("x", "\15\0\1\10\127\255\255\255"), "message too large" },
      { "huge struct list", strict("x", "\15\0\1\12\127\255\255\255"), "message too large" },
      { "huge string", strict("x", "\11\0\1\127\255\255\255"), "message too large" },
      { "huge name", "\128\1\0\1\127\255\255\255", "message too large" },
      { "huge non-strict name", "\0\255\255\255", "message too large" },
    }
    for _, r in ipairs(rows) do
      local sc = core.scanner(1024 * 1024)
      local n, err = sc:feed(petrel.buffer(r[2]))
      assert.is_false(n, r[1])
      assert.matches(r[3], err, 1, true)
      assert.matches("at offset %d+", err)
      -- a failed scanner stays failed
      assert.is_false((sc:feed(petrel.buffer(r[2]))))
    end
  end)

  it("caps nesting depth", function()
    local deep = string.rep("\12\0\1", 100) .. string.rep("\0", 101)
    local n, err = core.scanner(1024, 64):feed(petrel.buffer(strict("x", deep)))
    assert.is_false(n)
    assert.matches("nesting too deep", err)
    local ok = string.rep("\12\0\1", 10) .. string.rep("\0", 11)
    local msg = strict("x", ok)
    assert.equal(#msg, core.scanner(1024, 64):feed(petrel.buffer(msg)))
  end)

  it("stops at max_bytes while the message goes on", function()
    local msg = strict("m", bodies.medium)
    local sc = core.scanner(#msg - 1)
    local b = petrel.buffer()
    local n, err
    for i = 1, #msg, 4096 do
      b:write(msg:sub(i, i + 4095))
      n, err = sc:feed(b)
      if n ~= nil then break end
    end
    assert.is_false(n)
    assert.matches("message too large", err)
  end)

  it("gives the same error and offset however the bytes are split (fuzz regression)", function()
    -- max_bytes falls inside the 4-byte name length at offset 4: refused
    -- there, not wherever the piece that crosses max_bytes happens to end
    local msg = strict("echo", bodies.small)
    for _, size in ipairs({ 1, 2, 3, 5, #msg }) do
      local answers = feed_pieces(msg, function() return size end, 6)
      local last
      for _, a in ipairs(answers) do
        if a[1] ~= nil then last = a; break end
      end
      assert.is_false(last[1], "pieces of " .. size)
      assert.equal("message too large at offset 4", last[2], "pieces of " .. size)
    end
  end)

  it("every proper prefix of a valid message is incomplete, never malformed", function()
    local msg = strict("echo", bodies.small)
    for cut = 0, #msg - 1 do
      local n = core.scanner(1048576):feed(petrel.buffer(msg:sub(1, cut)))
      assert.is_nil(n, "prefix " .. cut)
    end
  end)
end)

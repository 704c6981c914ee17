-- petrel.cli.walk: Thrift Binary bytes without an IDL, for looking at
-- captures (petrel decode --schemaless). Finds what the bytes hold (a
-- framed or unframed message, several in a row, or a bare struct) and
-- shows every field's id, wire type and value:
--
--   message call "echo" seqid 1 (framed, 1005 bytes)
--   struct {
--     1: struct {
--       1: i64 = 7
--       3: list<string> (2) ["a", "b"]
--     }
--   }
--
-- Every count and length is checked against the bytes left before it is
-- used, nesting is capped (64), and a walk that meets bad bytes shows what
-- it read so far and says where it stopped (offset, 0-based).
local petrel = require "petrel"
local core = require "petrel.core"

local M = {}

local T = { [2] = "bool", [3] = "byte", [4] = "double", [6] = "i16", [8] = "i32", [10] = "i64",
  [11] = "string", [12] = "struct", [13] = "map", [14] = "set", [15] = "list", [16] = "uuid" }
-- the fewest bytes a value of each type takes (for counts against the bytes left)
local MIN = { [2] = 1, [3] = 1, [4] = 8, [6] = 2, [8] = 4, [10] = 8, [11] = 4, [12] = 1,
  [13] = 6, [14] = 5, [15] = 5, [16] = 16 }
local MTYPES = { [1] = "call", [2] = "reply", [3] = "exception", [4] = "oneway" }
local SHOW = 64     -- container elements shown, then "... N more" (all are walked)
local MAX_DEPTH = 64

local Stop = {}

-- A walker over bytes s: off is 0-based.
local function walker(s)
  local w = { s = s, n = #s, b = petrel.buffer(s), lines = {} }
  function w.fail(off, fmt, ...)
    error(setmetatable({ msg = string.format("offset %d: " .. fmt, off, ...) }, Stop), 0)
  end
  function w.need(off, k, what)
    if off + k > w.n then
      w.fail(off, "%s needs %d bytes, %d left", what, k, w.n - off)
    end
  end
  function w.u8(off) w.need(off, 1, "a byte"); return s:byte(off + 1) end
  function w.i16(off) w.need(off, 2, "an i16"); return w.b:peek_i16(off) end
  function w.i32(off) w.need(off, 4, "an i32"); return w.b:peek_i32(off) end
  function w.i64(off) w.need(off, 8, "an i64"); return w.b:peek_i64(off) end
  function w.dbl(off) w.need(off, 8, "a double"); return w.b:peek_double(off) end
  function w.line(ind, text) w.lines[#w.lines + 1] = string.rep("  ", ind) .. text end
  return w
end

local function quote(v)
  return petrel.dump(v, { bytes = 120 })
end

local function tname(t)
  return T[t] or ("type " .. t)
end

local value

-- A container's header checked against the bytes left: count, element size.
local function check_count(w, off, count, et, what)
  if count < 0 then w.fail(off, "%s with a negative count (%d)", what, count) end
  local min = MIN[et]
  if not min then w.fail(off, "%s of unknown element type %d", what, et) end
  local left = w.n - off
  if count * min > left then
    w.fail(off, "%s of %d elements cannot fit in the %d bytes left", what, count, left)
  end
end

local SCALAR = { [2] = true, [3] = true, [4] = true, [6] = true, [8] = true, [10] = true,
  [11] = true, [16] = true }

-- The text of a scalar value of type t at off, and the offset after it.
local function scalar(w, t, off)
  if t == 2 then return tostring(w.u8(off) ~= 0), off + 1 end
  if t == 3 then
    local v = w.u8(off)
    return tostring(v >= 128 and v - 256 or v), off + 1
  end
  if t == 6 then return tostring(w.i16(off)), off + 2 end
  if t == 8 then return tostring(w.i32(off)), off + 4 end
  if t == 10 then return (petrel.dump(w.i64(off)):gsub("LL$", "")), off + 8 end
  if t == 4 then return petrel.dump(w.dbl(off)), off + 8 end
  if t == 16 then
    w.need(off, 16, "a uuid")
    local h = w.s:sub(off + 1, off + 16):gsub(".", function(c) return string.format("%02x", c:byte()) end)
    return h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-" .. h:sub(13, 16) .. "-" .. h:sub(17, 20)
      .. "-" .. h:sub(21), off + 16
  end
  -- 11: string or binary
  local len = w.i32(off)
  if len < 0 then w.fail(off, "a string of negative length %d", len) end
  w.need(off + 4, len, "a string of " .. len .. " bytes")
  return quote(w.s:sub(off + 5, off + 4 + len)), off + 4 + len
end

-- Walk (and count) the rest of a container without showing it.
local WIDTH = { [2] = 1, [3] = 1, [4] = 8, [6] = 2, [8] = 4, [10] = 8, [16] = 16 }
local function walk_quiet(w, types, count, off, ind, depth)
  local width = 0
  for _, t in ipairs(types) do width = WIDTH[t] and width + WIDTH[t] or nil; if not width then break end end
  if width then -- fixed-size elements: their room was checked already
    w.need(off, count * width, "the rest of a container")
    return off + count * width
  end
  local save = #w.lines
  for _ = 1, count do
    for _, t in ipairs(types) do off = value(w, t, off, ind, "", depth) end
  end
  for k = #w.lines, save + 1, -1 do w.lines[k] = nil end
  return off
end

-- Show (and walk) the value of type t at off; returns the next offset.
-- head: what goes before it on its line ("3: ", "").
function value(w, t, off, ind, head, depth)
  if depth > MAX_DEPTH then w.fail(off, "nesting deeper than %d", MAX_DEPTH) end
  if SCALAR[t] then
    local text, nxt = scalar(w, t, off)
    if t == 11 then
      w.line(ind, head .. "string (" .. (nxt - off - 4) .. ") = " .. text)
    else
      w.line(ind, head .. T[t] .. " = " .. text)
    end
    return nxt
  elseif t == 12 then
    w.line(ind, head .. "struct {")
    off = M.fields(w, off, ind + 1, depth + 1)
    w.line(ind, "}")
    return off
  elseif t == 13 then
    local kt, vt = w.u8(off), w.u8(off + 1)
    local count = w.i32(off + 2)
    local what = "map<" .. tname(kt) .. "," .. tname(vt) .. ">"
    if count < 0 then w.fail(off, "%s with a negative count (%d)", what, count) end
    if count > 0 then
      if not MIN[kt] or not MIN[vt] then w.fail(off, "%s: unknown element type", what) end
      if count * (MIN[kt] + MIN[vt]) > w.n - off - 6 then
        w.fail(off, "%s of %d entries cannot fit in the %d bytes left", what, count, w.n - off - 6)
      end
    end
    w.line(ind, head .. what .. " (" .. count .. ") {")
    off = off + 6
    for i = 1, count do
      if i > SHOW then
        off = walk_quiet(w, { kt, vt }, count - i + 1, off, ind + 1, depth + 1)
        w.line(ind + 1, "... " .. (count - SHOW) .. " more")
        break
      end
      if SCALAR[kt] and SCALAR[vt] then
        local ktext, vtext
        ktext, off = scalar(w, kt, off)
        vtext, off = scalar(w, vt, off)
        w.line(ind + 1, ktext .. " => " .. vtext)
      elseif SCALAR[kt] then
        local ktext
        ktext, off = scalar(w, kt, off)
        off = value(w, vt, off, ind + 1, ktext .. " => ", depth + 1)
      else
        w.line(ind + 1, "key:")
        off = value(w, kt, off, ind + 2, "", depth + 1)
        w.line(ind + 1, "value:")
        off = value(w, vt, off, ind + 2, "", depth + 1)
      end
    end
    w.line(ind, "}")
    return off
  elseif t == 14 or t == 15 then
    local et = w.u8(off)
    local count = w.i32(off + 1)
    local what = T[t] .. "<" .. tname(et) .. ">"
    check_count(w, off + 5, count, et, what)
    off = off + 5
    if SCALAR[et] then -- on one line
      local parts = {}
      for i = 1, count do
        if i > SHOW then
          off = walk_quiet(w, { et }, count - i + 1, off, ind, depth + 1)
          parts[#parts + 1] = "... " .. (count - SHOW) .. " more"
          break
        end
        parts[i], off = scalar(w, et, off)
      end
      w.line(ind, head .. what .. " (" .. count .. ") [" .. table.concat(parts, ", ") .. "]")
      return off
    end
    w.line(ind, head .. what .. " (" .. count .. ") [")
    for i = 1, count do
      if i > SHOW then
        off = walk_quiet(w, { et }, count - i + 1, off, ind + 1, depth + 1)
        w.line(ind + 1, "... " .. (count - SHOW) .. " more")
        break
      end
      off = value(w, et, off, ind + 1, "", depth + 1)
    end
    w.line(ind, "]")
    return off
  end
  w.fail(off, "unknown type %d", t)
end

-- The fields of a struct at off (up to its STOP): the offset after it.
function M.fields(w, off, ind, depth)
  while true do
    local t = w.u8(off)
    if t == 0 then return off + 1 end
    local id = w.i16(off + 1)
    if not T[t] then w.fail(off, "field %d has unknown type %d", id, t) end
    off = value(w, t, off + 3, ind, id .. ": ", depth)
  end
end

-- A message envelope at off: name, type, seqid, body offset | nil
local function envelope(w, off)
  if w.n - off < 8 then return nil end
  local v = w.b:peek_u32(off)
  if v >= 0x80000000 then
    if math.floor(v / 65536) ~= 0x8001 then return nil end
    local nlen = w.b:peek_u32(off + 4)
    if nlen > w.n - off - 12 then return nil end
    return w.s:sub(off + 9, off + 8 + nlen), v % 256, w.b:peek_i32(off + 8 + nlen), off + 12 + nlen
  end
  -- non-strict: a short printable name, a message type, a seqid
  local nlen = v
  if nlen == 0 or nlen > 256 or nlen > w.n - off - 9 then return nil end
  local name = w.s:sub(off + 5, off + 4 + nlen)
  if not name:match("^[%w_%.:]+$") then return nil end
  local mt = w.s:byte(off + 5 + nlen)
  if not MTYPES[mt] then return nil end
  return name, mt, w.b:peek_i32(off + 5 + nlen), off + 9 + nlen
end

-- Text describing bytes s | nil, err, the text of what was read before.
function M.describe(s, o)
  o = o or {}
  local w = walker(s)
  local ok, err = pcall(function()
    local off = 0
    local any = false
    while off < w.n do
      local framed_len
      if w.n - off >= 4 then
        local len = w.b:peek_u32(off)
        if len >= 9 and len <= w.n - off - 4 and envelope(w, off + 4) then framed_len = len end
      end
      local at = framed_len and off + 4 or off
      local name, mt, seq, body = envelope(w, at)
      if name then
        w.line(0, string.format("message %s %s seqid %d%s", MTYPES[mt] or ("type " .. mt),
          quote(name), seq, framed_len and (" (framed, " .. framed_len .. " bytes)") or ""))
        w.line(0, "struct {")
        local e = M.fields(w, body, 1, 1)
        w.line(0, "}")
        if framed_len and e ~= off + 4 + framed_len then
          w.line(0, string.format("(%d bytes after the struct in the frame)", off + 4 + framed_len - e))
          e = off + 4 + framed_len
        end
        off = e
      elseif not any then
        w.line(0, "struct {")
        off = M.fields(w, off, 1, 1)
        w.line(0, "}")
        if off < w.n then
          w.line(0, string.format("(%d more bytes after the struct, offset %d on)", w.n - off, off))
          off = w.n
        end
      else
        w.fail(off, "not a Thrift Binary message (%d bytes left)", w.n - off)
      end
      any = true
    end
    if not any then w.fail(0, "no bytes") end
  end)
  local text = table.concat(w.lines, "\n") .. (#w.lines > 0 and "\n" or "")
  if not ok then
    if getmetatable(err) ~= Stop then error(err, 0) end
    return nil, err.msg, text
  end
  local _ = core
  return text
end

return M

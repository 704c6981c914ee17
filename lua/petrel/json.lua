-- petrel.json: JSON for the etcd gateway, through lua-cjson when it is
-- installed (Debian: lua-cjson), else a small pure-Lua codec with the
-- same contract, so petrel.etcd works either way (PETREL_JSON=lua forces
-- the pure-Lua one; json.backend says which is in use).
--
--   json.encode(v) -> text        raises on values JSON cannot hold
--   json.decode(text) -> v | nil, err
--   json.null                     what JSON null decodes to
--
-- Objects become tables with string keys, arrays sequences; integral
-- numbers come back as Lua numbers (floats under cjson on 5.4: callers
-- that need integers convert). Nesting is capped at MAX_DEPTH both ways.
local M = {}

local MAX_DEPTH = 64

local cjson
if os.getenv("PETREL_JSON") ~= "lua" then
  local ok, lib = pcall(require, "cjson.safe")
  if ok and type(lib) == "table" and lib.new then
    cjson = lib.new()
    cjson.decode_max_depth(MAX_DEPTH)
    cjson.encode_max_depth(MAX_DEPTH)
  end
end

-- ---- the pure-Lua codec ------------------------------------------------------

local null = setmetatable({}, { __tostring = function() return "null" end })

local byte, char, sub, find, format = string.byte, string.char, string.sub, string.find,
  string.format
local concat = table.concat

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function esc_char(c)
  return ESC[c] or format("\\u%04x", byte(c))
end

local function is_array(t)
  local n = #t
  if n == 0 then return false end
  local count = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then return false end
    count = count + 1
  end
  return count == n
end

local function encode_value(v, out, depth)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = '"' .. v:gsub('[%c"\\]', esc_char) .. '"'
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      error("json.encode: cannot encode number " .. tostring(v), 0)
    end
    if v % 1 == 0 and v >= -2^53 and v <= 2^53 then
      out[#out + 1] = format("%d", v)
    else
      out[#out + 1] = format("%.17g", v)
    end
  elseif t == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif v == null or v == M.null then
    out[#out + 1] = "null"
  elseif t == "table" then
    if depth >= MAX_DEPTH then error("json.encode: nesting deeper than " .. MAX_DEPTH, 0) end
    if is_array(v) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode_value(v[i], out, depth + 1)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" then
          error("json.encode: object keys must be strings, got " .. type(k), 0)
        end
        keys[#keys + 1] = k
      end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        encode_value(k, out, depth + 1)
        out[#out + 1] = ":"
        encode_value(v[k], out, depth + 1)
      end
      out[#out + 1] = "}"
    end
  else
    error("json.encode: cannot encode a " .. t, 0)
  end
end

local function lua_encode(v)
  local out = {}
  encode_value(v, out, 0)
  return concat(out)
end

-- The decoder: a cursor over s; every error names the character position.
-- (arithmetic only: LuaJIT has no integer operators)
local floor = math.floor
local function utf8_char(cp)
  if cp < 0x80 then return char(cp) end
  if cp < 0x800 then return char(0xC0 + floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then
    return char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return char(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64,
    0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
end

local function derr(msg, pos)
  error({ json = msg .. " at character " .. pos }, 0)
end

local function skip_ws(s, pos)
  local _, e = find(s, "^[ \t\r\n]*", pos)
  return e + 1
end

local decode_value

local ESCAPES = { [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f", [110] = "\n",
  [114] = "\r", [116] = "\t" }

local function decode_string(s, pos)
  -- pos is at the opening quote
  local parts, i = {}, pos + 1
  while true do
    local a, b = find(s, '^[^"\\%c]*', i)
    if b >= a then parts[#parts + 1] = sub(s, a, b) end
    i = b + 1
    local c = byte(s, i)
    if c == 34 then return concat(parts), i + 1 end
    if c == nil then derr("unterminated string", pos) end
    if c ~= 92 then derr("control character in string", i) end
    local e = byte(s, i + 1)
    if e == 117 then
      local hex = sub(s, i + 2, i + 5)
      if not hex:match("^%x%x%x%x$") then derr("bad \\u escape", i) end
      local cp = tonumber(hex, 16)
      i = i + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local lo = sub(s, i, i + 5):match("^\\u(%x%x%x%x)$")
        local lv = lo and tonumber(lo, 16)
        if not lv or lv < 0xDC00 or lv > 0xDFFF then derr("unpaired surrogate", i) end
        cp = 0x10000 + (cp - 0xD800) * 0x400 + (lv - 0xDC00)
        i = i + 6
      elseif cp >= 0xDC00 and cp <= 0xDFFF then
        derr("unpaired surrogate", i)
      end
      parts[#parts + 1] = utf8_char(cp)
    else
      local r = e and ESCAPES[e]
      if not r then derr("bad escape", i) end
      parts[#parts + 1] = r
      i = i + 2
    end
  end
end

local function decode_number(s, pos)
  local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
  if not num or not num:match("^-?%d+%.?%d*$") and not num:match("^-?%d+%.?%d*[eE][-+]?%d+$")
    or num:match("^-?0%d") or num:match("%.$") or num:match("%.[eE]") then
    derr("bad number", pos)
  end
  local v = tonumber(num)
  if math.tointeger and not num:find("[.eE]") then v = math.tointeger(v) or v end
  return v, pos + #num
end

function decode_value(s, pos, depth)
  pos = skip_ws(s, pos)
  local c = byte(s, pos)
  if c == 123 then -- {
    if depth >= MAX_DEPTH then derr("nesting deeper than " .. MAX_DEPTH, pos) end
    local obj = {}
    pos = skip_ws(s, pos + 1)
    if byte(s, pos) == 125 then return obj, pos + 1 end
    while true do
      if byte(s, pos) ~= 34 then derr("object key expected", pos) end
      local k
      k, pos = decode_string(s, pos)
      pos = skip_ws(s, pos)
      if byte(s, pos) ~= 58 then derr("':' expected", pos) end
      local v
      v, pos = decode_value(s, pos + 1, depth + 1)
      obj[k] = v
      pos = skip_ws(s, pos)
      local d = byte(s, pos)
      if d == 125 then return obj, pos + 1 end
      if d ~= 44 then derr("',' or '}' expected", pos) end
      pos = skip_ws(s, pos + 1)
    end
  elseif c == 91 then -- [
    if depth >= MAX_DEPTH then derr("nesting deeper than " .. MAX_DEPTH, pos) end
    local arr, n = {}, 0
    pos = skip_ws(s, pos + 1)
    if byte(s, pos) == 93 then return arr, pos + 1 end
    while true do
      local v
      v, pos = decode_value(s, pos, depth + 1)
      n = n + 1
      arr[n] = v
      pos = skip_ws(s, pos)
      local d = byte(s, pos)
      if d == 93 then return arr, pos + 1 end
      if d ~= 44 then derr("',' or ']' expected", pos) end
      pos = pos + 1
    end
  elseif c == 34 then
    return decode_string(s, pos)
  elseif c == 116 and sub(s, pos, pos + 3) == "true" then
    return true, pos + 4
  elseif c == 102 and sub(s, pos, pos + 4) == "false" then
    return false, pos + 5
  elseif c == 110 and sub(s, pos, pos + 3) == "null" then
    return null, pos + 4
  elseif c == 45 or (c and c >= 48 and c <= 57) then
    return decode_number(s, pos)
  elseif c == nil then
    derr("unexpected end of text", pos)
  end
  derr("unexpected character '" .. char(c) .. "'", pos)
end

local function lua_decode(s)
  if type(s) ~= "string" then return nil, "json.decode: string expected, got " .. type(s) end
  local ok, v, pos = pcall(decode_value, s, 1, 0)
  if not ok then
    if type(v) == "table" and v.json then return nil, v.json end
    error(v, 0)
  end
  pos = skip_ws(s, pos)
  if pos <= #s then return nil, "trailing text at character " .. pos end
  return v
end

-- ---- the public face ----------------------------------------------------------

if cjson then
  M.backend = "cjson"
  M.null = cjson.null
  function M.encode(v)
    local s, err = cjson.encode(v)
    if not s then error("json.encode: " .. tostring(err), 2) end
    return s
  end
  function M.decode(s)
    if type(s) ~= "string" then return nil, "json.decode: string expected, got " .. type(s) end
    return cjson.decode(s)
  end
else
  M.backend = "lua"
  M.null = null
  M.encode = lua_encode
  M.decode = lua_decode
end

-- Both codecs, for tests that compare them.
M._lua = { encode = lua_encode, decode = lua_decode, null = null }

return M

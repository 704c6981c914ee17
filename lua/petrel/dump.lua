-- petrel.dump and petrel.hex: readable text of decoded values and of raw
-- bytes, for scripts, the demo and interactive use.
--
-- petrel.dump(v [, opts]) -> string
--   Lua-like text of any value. Decoded containers show the kind the
--   decoder marked them with: list{...}, set{...}, map{[k] = v, ...};
--   structs (and other tables) as {name = value, ...} with sorted keys;
--   typed arrays as array("i64", {...}); message views (T:view) as
--   view(Type){...}, read lazily through the view; int64 cdata on LuaJIT as
--   tostring gives it (123LL, 123ULL); strings quoted and escaped (bytes
--   outside printable ASCII as \xNN; valid UTF-8 kept unless
--   opts.utf8 == false). A table that fits in opts.width stays on one line.
--   opts (all optional):
--     width  = 80   line width
--     indent = 2    spaces per level
--     depth  = 8    levels shown; deeper tables print as list{ ...N items }
--     items  = 32   entries shown per table, then "... N more"
--     bytes  = 200  bytes shown per string, then ...(N bytes)
--     utf8   = true keep valid UTF-8 sequences unescaped
--
-- petrel.hex(s [, opts]) -> string
--   A hex dump (hexdump -C layout) of a string or of a petrel.buffer's
--   readable bytes (not consumed): "00000000  80 01 00 01 ...  |....|".
--   opts: width = 16 (bytes per line), max = 4096 (bytes shown; the rest
--   is counted on a last line; false: no limit), offset = 0 (first label).
local core = require "petrel.core"

local M = {}

local LIST, SET, MAP = core.list, core.set, core.map
local ARRAY_MT = getmetatable(core.array("i8", 0))
local BUFFER_MT = getmetatable(core.buffer())
local UNKNOWN = core.unknown
local mtype = math.type
local fmt, concat, sort = string.format, table.concat, table.sort

local DEFAULTS = { width = 80, indent = 2, depth = 8, items = 32, bytes = 200, utf8 = true }

-- ---- scalars -----------------------------------------------------------------

local ESC = { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

-- Length of the valid UTF-8 sequence starting at i of s (2-4), or nil.
local function utf8_len(s, i)
  local c = s:byte(i)
  local n, lo
  if c >= 0xc2 and c <= 0xdf then n, lo = 2, 0x80
  elseif c >= 0xe0 and c <= 0xef then n, lo = 3, (c == 0xe0 and 0xa0 or 0x80)
  elseif c >= 0xf0 and c <= 0xf4 then n, lo = 4, (c == 0xf0 and 0x90 or 0x80)
  else return nil end
  local hi = (c == 0xed and 0x9f) or (c == 0xf4 and 0x8f) or 0xbf
  for k = 1, n - 1 do
    local d = s:byte(i + k)
    if not d then return nil end
    if k == 1 then
      if d < lo or d > hi then return nil end
    elseif d < 0x80 or d > 0xbf then
      return nil
    end
  end
  return n
end

local function quote(s, o)
  local n = #s
  local cut = n > o.bytes
  local src = cut and s:sub(1, o.bytes) or s
  local out, i, len = {}, 1, #src
  while i <= len do
    local j = src:find('[%z\1-\31\\"\127-\255]', i)
    if not j then
      out[#out + 1] = src:sub(i)
      break
    end
    if j > i then out[#out + 1] = src:sub(i, j - 1) end
    local ch = src:sub(j, j)
    local b = ch:byte()
    local u = o.utf8 and b >= 0x80 and utf8_len(src, j)
    if u then
      out[#out + 1] = src:sub(j, j + u - 1)
      i = j + u
    else
      out[#out + 1] = ESC[ch] or fmt("\\x%02x", b)
      i = j + 1
    end
  end
  local q = '"' .. concat(out) .. '"'
  if cut then q = q .. fmt("...(%d bytes)", n) end
  return q
end

local function number(x)
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" end
  if x == -math.huge then return "-inf" end
  if mtype and mtype(x) == "integer" then return fmt("%d", x) end
  local s
  for p = 15, 17 do
    s = fmt("%." .. p .. "g", x)
    if tonumber(s) == x then break end
  end
  -- Lua 5.4 tells floats from integers: keep the difference visible
  if mtype and not s:find("[%.eni]") then s = s .. ".0" end
  return s
end

local IDENT = "^[%a_][%w_]*$"
local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local
  nil not or repeat return then true until while]]):gmatch("%a+") do KEYWORDS[w] = true end

-- ---- keys --------------------------------------------------------------------

local KEY_RANK = { number = 1, cdata = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  local ra, rb = KEY_RANK[ta] or 4, KEY_RANK[tb] or 4
  if ra ~= rb then return ra < rb end
  if ra == 1 then
    if a ~= a then return false end -- NaN keys cannot exist; stay total anyway
    return a < b
  end
  if ra == 2 then return a < b end
  if ra == 3 then return (a and 1 or 0) < (b and 1 or 0) end
  return tostring(a) < tostring(b)
end

-- ---- values ------------------------------------------------------------------

local render

local function scalar(v, o)
  local t = type(v)
  if t == "string" then return quote(v, o) end
  if t == "number" then return number(v) end
  if t == "boolean" or t == "nil" then return tostring(v) end
  if t == "cdata" then return tostring(v) end -- 123LL, 123ULL, cdata<...>
  if t == "userdata" then
    local mt = getmetatable(v)
    if mt == BUFFER_MT then return fmt("buffer(%d bytes)", #v) end
    if v == UNKNOWN then return "petrel.unknown" end
  end
  return "<" .. t .. ">"
end

-- Joins rendered parts on one line when they fit, else one per line; with
-- pack (elements of a list, set or array), as many per line as fit.
local function join(open, parts, close, level, col, o, pack)
  local one = open .. concat(parts, ", ") .. close
  local multi = one:find("\n", 1, true)
  if col + #one <= o.width and not multi then return one end
  local pad = string.rep(" ", (level + 1) * o.indent)
  local lines, line = { open }, nil
  for i, p in ipairs(parts) do
    local piece = p .. (i < #parts and "," or "")
    if pack and not multi and line and #line + #piece <= o.width then -- #line counts its \n
      line = line .. " " .. piece
    else
      if line then lines[#lines + 1] = line end
      line = "\n" .. pad .. piece
    end
  end
  if line then lines[#lines + 1] = line end
  lines[#lines + 1] = "\n" .. string.rep(" ", level * o.indent) .. close
  return concat(lines)
end

local function key_text(k, o)
  if type(k) == "string" and k:find(IDENT) and not KEYWORDS[k] then return k end
  if k == UNKNOWN then return "[petrel.unknown]" end
  return "[" .. scalar(k, o) .. "]"
end

local function array_text(a, level, col, o)
  local n = #a
  local head = fmt('array("%s", ', a:kind())
  if level >= o.depth then return head .. fmt("{ ...%d items })", n) end
  local parts = {}
  for i = 1, math.min(n, o.items) do parts[i] = scalar(a[i], o) end
  if n > o.items then parts[#parts + 1] = fmt("... %d more", n - o.items) end
  return head .. join("{", parts, "})", level, col + #head, o, true)
end

-- A message view (petrel.view): read through the view, lazily (only the
-- entries shown are read); the outermost one says it is a view and of
-- what type: view(Request){user_id = 1, ...}. Struct fields come in id
-- order, map entries in wire order.
local VIEW = core.view_methods
local INSIDE = { view = true } -- views within a view: no "view(...)" again
local function view_text(v, level, col, o, outer)
  local ty = VIEW.type(v)
  local head = outer and ("view(" .. ty .. ")") or ""
  if VIEW.expired(v) then return "view(" .. ty .. ")<expired>" end
  local kind = ty:match("^(%a+)<") or "struct"
  if kind ~= "struct" and not outer then head = kind end
  local ok, err = pcall(function()
    local n = kind == "struct" and 0 or #v
    if level >= o.depth and (kind == "struct" or n > 0) then
      head = head .. (kind == "struct" and "{ ... }" or fmt("{ ...%d items }", n))
      return
    end
    local parts, shown = {}, 0
    local inner = (level + 1) * o.indent
    for k, x in VIEW.pairs(v) do
      if shown == o.items then break end
      shown = shown + 1
      if kind == "list" or kind == "set" then
        parts[shown] = render(x, level + 1, inner, o, INSIDE)
      else
        local kt = key_text(k, o) .. " = "
        parts[shown] = kt .. render(x, level + 1, inner + #kt, o, INSIDE)
      end
    end
    if kind ~= "struct" and n > shown then parts[#parts + 1] = fmt("... %d more", n - shown) end
    head = join(head .. "{", parts, "}", level, col, o, kind == "list" or kind == "set")
  end)
  if not ok then return head .. "<error: " .. tostring(err) .. ">" end
  return head
end

local function table_text(v, level, col, o, seen)
  local mt = getmetatable(v)
  local kind = (mt == LIST and "list") or (mt == SET and "set") or (mt == MAP and "map") or ""
  local keys, n = {}, 0
  for k in pairs(v) do
    n = n + 1
    keys[n] = k
  end
  if level >= o.depth and n > 0 then return kind .. fmt("{ ...%d items }", n) end
  if seen[v] then return "<cycle>" end
  seen[v] = true
  -- the sequence 1..seq is shown without keys (never for maps)
  local seq = 0
  if kind ~= "map" then
    while rawget(v, seq + 1) ~= nil do seq = seq + 1 end
  end
  local rest = {}
  for i = 1, n do
    local k = keys[i]
    if not (mtype and mtype(k) == "integer" or type(k) == "number" and k % 1 == 0)
      or k < 1 or k > seq then
      rest[#rest + 1] = k
    end
  end
  sort(rest, key_less)
  local parts, shown = {}, 0
  local inner = (level + 1) * o.indent
  for i = 1, seq do
    if shown == o.items then break end
    shown = shown + 1
    parts[shown] = render(rawget(v, i), level + 1, inner, o, seen)
  end
  for _, k in ipairs(rest) do
    if shown == o.items then break end
    shown = shown + 1
    local kt = key_text(k, o) .. " = "
    parts[shown] = kt .. render(rawget(v, k), level + 1, inner + #kt, o, seen)
  end
  if n > shown then parts[#parts + 1] = fmt("... %d more", n - shown) end
  seen[v] = nil
  return join(kind .. "{", parts, "}", level, col, o, #rest == 0)
end

function render(v, level, col, o, seen)
  local t = type(v)
  if t == "table" then return table_text(v, level, col, o, seen) end
  if t == "userdata" and getmetatable(v) == ARRAY_MT then return array_text(v, level, col, o) end
  if t == "userdata" and getmetatable(v) == "petrel.view" then
    return view_text(v, level, col, o, seen.view == nil)
  end
  return scalar(v, o)
end

local function options(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("petrel.dump: options table expected, got " .. type(opts)
      .. " (a call returning several values, like decode, goes in parentheses)", 3)
  end
  local o = {}
  for k, d in pairs(DEFAULTS) do
    local x = opts and opts[k]
    if x == nil then x = d end
    if k ~= "utf8" and (type(x) ~= "number" or x < 0) then
      error("petrel.dump: option " .. k .. " must be a non-negative number", 3)
    end
    o[k] = x
  end
  return o
end

function M.dump(v, opts)
  return render(v, 0, 0, options(opts), {})
end

-- ---- hex ---------------------------------------------------------------------

function M.hex(s, opts)
  if getmetatable(s) == BUFFER_MT then s = tostring(s) end
  if type(s) ~= "string" then
    error("petrel.hex: string or buffer expected, got " .. type(s), 2)
  end
  opts = opts or {}
  local width = opts.width or 16
  local max = opts.max
  if max == nil then max = 4096 end
  local base = opts.offset or 0
  if type(width) ~= "number" or width < 1 or width % 1 ~= 0 then
    error("petrel.hex: width must be a positive integer", 2)
  end
  local n = #s
  local shown = (max and max < n) and max or n
  local lines = {}
  local half = width > 8 and width % 2 == 0 and math.floor(width / 2) or nil
  for off = 0, shown - 1, width do
    local chunk = s:sub(off + 1, math.min(off + width, shown))
    local hx = {}
    for i = 1, #chunk do
      hx[#hx + 1] = fmt("%02x", chunk:byte(i))
      if half and i == half then hx[#hx + 1] = "" end
    end
    local cols = width * 3 - 1 + (half and 1 or 0)
    local text = chunk:gsub("[^\32-\126]", ".")
    lines[#lines + 1] = fmt("%08x  %-" .. cols .. "s  |%s|", base + off, concat(hx, " "), text)
  end
  if shown < n then lines[#lines + 1] = fmt("... %d more bytes", n - shown) end
  return concat(lines, "\n")
end

return M

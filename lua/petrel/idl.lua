-- petrel.idl: run-time Thrift IDL loader, pure Lua (Lua 5.4 and LuaJIT).
-- Parses Apache Thrift IDL text into the normalized schema tables described
-- in docs/schema.md. Hand-written lexer + recursive-descent parser, then a
-- resolution pass (type references, const values, semantic checks).
--
--   M.parse(text, opts) -> result | nil, "FILE:LINE:COL: message"
--   M.load(path, opts)  -> result | nil, "FILE:LINE:COL: message"
--   opts: name (file name in messages), path (for relative includes),
--         include_dirs (list of directories searched after the file's own),
--         allow_neg_keys (keep explicit field ids <= 0 as written, as
--         Apache's --allow-neg-keys; by default they get implicit ids).
local M = {}

local sfind, ssub, sbyte, sformat = string.find, string.sub, string.byte, string.format
local sgsub, schar = string.gsub, string.char
local concat = table.concat
local type, tostring, tonumber, pairs, ipairs = type, tostring, tonumber, pairs, ipairs
local setmetatable, getmetatable, pcall, error = setmetatable, getmetatable, pcall, error

local is_jit = type(jit) == "table"
local math_type = math.type -- nil on LuaJIT
local ZERO64 = is_jit and (loadstring or load)("return 0LL")() or nil

-- Errors ------------------------------------------------------------------

local Fail = {} -- metatable marking loader errors (vs. internal bugs)

-- Raise a positioned loader error in file F at byte offset pos.
local function fail(F, pos, fmt, ...)
  error(setmetatable({ F = F, pos = pos, msg = sformat(fmt, ...) }, Fail), 0)
end

-- 1-based line and column of byte offset pos in text.
local function line_col(text, pos)
  local line, start, p = 1, 1, 1
  while true do
    local nl = sfind(text, "\n", p, true)
    if not nl or nl >= pos then break end
    line, start, p = line + 1, nl + 1, nl + 1
  end
  return line, pos - start + 1
end

-- "FILE:LINE:COL: msg" for file F at pos.
local function where(F, pos, msg)
  local line, col = line_col(F.text or "", pos or 1)
  return sformat("%s:%d:%d: %s", F.name, line, col, msg)
end

-- Sets -----------------------------------------------------------------------

local function set(list)
  local t = {}
  for _, v in ipairs(list) do t[v] = true end
  return t
end

local KEYWORDS = set {
  "include", "cpp_include", "namespace", "typedef", "const", "enum", "senum",
  "struct", "union", "exception", "service", "extends", "throws", "oneway",
  "async", "void", "required", "optional", "bool", "byte", "i8", "i16", "i32",
  "i64", "double", "string", "binary", "uuid", "slist", "map", "list", "set",
  "cpp_type", "xsd_all", "xsd_optional", "xsd_nillable", "xsd_attrs",
}
local BASE_TYPES = set {
  "bool", "byte", "i8", "i16", "i32", "i64", "double", "string", "binary",
  "uuid", "slist",
}
local TYPE_KINDS = set { "struct", "union", "exception", "enum", "typedef" }
local DEF_KW = set {
  "const", "typedef", "enum", "senum", "struct", "union", "exception", "service",
}
local HEADER_KW = set { "include", "cpp_include", "namespace" }
-- keywords that Apache 0.17 does not reserve: usable as field, function,
-- argument, enum value and annotation names
local NAME_KW = set { "uuid" }
-- keywords usable as field (and argument, throws) names, as in Apache's
-- grammar since 0.18 (THRIFT-5626, FieldName): every keyword but the xsd_*
-- ones that may follow a field name, senum and slist; cpp_type too (Apache
-- keeps it out until THRIFT-5627; here it is a name unless a string
-- literal follows it)
local FIELD_NAME_KW = set {
  "namespace", "cpp_include", "include", "void", "bool", "byte", "i8", "i16",
  "i32", "i64", "double", "string", "binary", "uuid", "map", "list", "set",
  "oneway", "async", "typedef", "struct", "union", "exception", "extends",
  "throws", "service", "enum", "const", "required", "optional", "cpp_type",
}
-- pre-0.9 namespace declarations -> the scope to use with 'namespace'
local OLD_NS = {
  cpp_namespace = "cpp", java_package = "java", cocoa_prefix = "cocoa",
  csharp_namespace = "csharp", delphi_namespace = "delphi", php_namespace = "php",
  py_module = "py", perl_package = "perl", ruby_namespace = "rb",
  smalltalk_category = "st", smalltalk_prefix = "st", xsd_namespace = "xsd",
}
-- single-character punctuation tokens
local SYMS = {}
for c in ("{}[]<>(),;:=*&"):gmatch(".") do SYMS[sbyte(c)] = c end

local INT_RANGE = {
  byte = { -128, 127 }, i8 = { -128, 127 }, i16 = { -32768, 32767 },
  i32 = { -2147483648, 2147483647 },
}

-- Integers -------------------------------------------------------------------

-- Integer value of unsigned digit string d in base (10 or 16), negated if
-- neg; nil if outside the i64 range. Exact on both runtimes (LuaJIT: int64
-- cdata beyond 2^53).
local function make_int(d, base, neg)
  d = sgsub(d, "^0+", "")
  if d == "" then return 0 end
  if base == 16 then
    if #d > 16 or (#d == 16 and sbyte(d, 1) > 55) then return nil end -- > '7'
  else
    local lim = neg and "9223372036854775808" or "9223372036854775807"
    if #d > 19 or (#d == 19 and d > lim) then return nil end
  end
  local small = base == 16 and #d <= 13 or base == 10 and #d <= 15
  if small or not is_jit then
    local v
    if small then v = tonumber(d, base)
    elseif base == 16 then v = tonumber(d, 16) -- 5.4: integer (wraps only at 2^63)
    else v = math.tointeger(tonumber((neg and "-" or "") .. d)); neg = false end
    if neg then v = -v end
    return v
  end
  local v = ZERO64 -- LuaJIT, large: accumulate as int64 (negative side)
  for i = 1, #d do v = v * base - tonumber(ssub(d, i, i), 16) end
  if not neg then v = -v end
  return v
end

-- True if v is an integer value (Lua integer, integral number, int64 cdata).
local function is_int(v)
  if math_type then return math_type(v) == "integer" end
  if type(v) == "number" then return v == math.floor(v) and v == v end
  return type(v) == "cdata"
end

-- Decimal text of integer value v (no "LL" suffix on LuaJIT).
local function int_text(v)
  if type(v) == "cdata" then return (sgsub(tostring(v), "[UL]+$", "")) end
  return sformat("%d", v)
end

-- Lexer ----------------------------------------------------------------------

-- Doc comment text, cleaned as Apache's compiler does (clean_up_doctext):
-- the first line loses its leading blanks; if every other non-blank line
-- starts with the same blanks and a '*', that prefix goes; then the common
-- leading blanks of those lines; trailing blanks of every line. Leading and
-- trailing blank lines are dropped. nil if no text is left.
local function clean_doc(raw)
  local lines = {}
  for line in (sgsub(raw, "\r", "") .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
  lines[1] = sgsub(lines[1], "^[ \t]+", "")
  local star, n = nil, #lines
  for j = 2, n do
    local p = sfind(lines[j], "[^ \t]")
    if not p then
      lines[j] = ""
    elseif sbyte(lines[j], p) ~= 42 or (star and p ~= star) then
      star = false
      break
    else
      star = p
    end
  end
  if star then
    for j = 2, n do lines[j] = ssub(lines[j], star + 1) end
  end
  local indent
  for j = 2, n do
    local p = sfind(lines[j], "[^ \t]")
    if p and (not indent or p < indent) then indent = p end
  end
  for j = 1, n do
    if j > 1 and indent then lines[j] = ssub(lines[j], indent) end
    lines[j] = sgsub(lines[j], "[ \t]+$", "")
  end
  local a, b = 1, n
  while a <= b and lines[a] == "" do a = a + 1 end
  while b >= a and lines[b] == "" do b = b - 1 end
  if a > b then return nil end
  return concat(lines, "\n", a, b)
end

local ESCAPES = { n = "\n", r = "\r", t = "\t", ['"'] = '"', ["'"] = "'", ["\\"] = "\\" }

-- String literal starting at pos (quote char q). Returns value, next pos.
local function lex_string(F, s, pos, q)
  local pat = q == 34 and '["\\\n]' or "['\\\n]"
  local p, parts = pos + 1, nil
  while true do
    local a = sfind(s, pat, p)
    if not a then fail(F, pos, "unterminated string literal") end
    local ch = sbyte(s, a)
    if ch == q then
      if not parts then return ssub(s, pos + 1, a - 1), a + 1 end
      parts[#parts + 1] = ssub(s, p, a - 1)
      return concat(parts), a + 1
    elseif ch == 10 then
      fail(F, pos, "unterminated string literal (end of line)")
    end
    local e = ssub(s, a + 1, a + 1)
    local rep = ESCAPES[e]
    if not rep then
      fail(F, a, "bad escape sequence '\\%s' in string literal", e == "\n" and "\\n" or e)
    end
    parts = parts or {}
    parts[#parts + 1] = ssub(s, p, a - 1)
    parts[#parts + 1] = rep
    p = a + 2
  end
end

-- Number at pos. Returns token type ("int"|"dbl"), value, next pos.
local function lex_number(F, s, pos)
  local _, e, sign, hex = sfind(s, "^([+-]?)0x(%x+)", pos)
  if e then
    local v = make_int(hex, 16, sign == "-")
    if v == nil then fail(F, pos, "integer constant %s out of range", ssub(s, pos, e)) end
    return "int", v, e + 1
  end
  local _, e1, isign, digits = sfind(s, "^([+-]?)(%d*)", pos)
  local e2, dbl = e1, false
  local _, ef = sfind(s, "^%.%d+", e1 + 1)
  if ef then e2, dbl = ef, true end
  if digits == "" and not dbl then
    fail(F, pos, "unexpected character '%s'", ssub(s, pos, pos))
  end
  local _, ee = sfind(s, "^[eE][+-]?%d+", e2 + 1)
  if ee then e2, dbl = ee, true end
  if dbl then
    local text = ssub(s, pos, e2)
    local d = tonumber(text)
    if d == nil then -- LuaJIT rejects huge exponents; strtod gives inf or 0
      local m, x = text:match("^([^eE]*)[eE]([+-]?%d+)$")
      m, x = tonumber(m), tonumber(x)
      if m == 0 then d = m
      elseif x > 0 then d = m > 0 and math.huge or -math.huge
      else d = m > 0 and 0.0 or -0.0 end
    end
    return "dbl", d, e2 + 1
  end
  local v = make_int(digits, 10, isign == "-")
  if v == nil then fail(F, pos, "integer constant %s out of range", ssub(s, pos, e2)) end
  return "int", v, e2 + 1
end

-- Tokenize F.text into parallel arrays F.tt (type), F.tv (value), F.tp
-- (byte offset), F.td (doc comment preceding the token, sparse).
local function lex(F)
  local s = F.text
  local tt, tv, tp, td = {}, {}, {}, {}
  local n, pos = 0, 1
  local doc, doc_slash = nil, false -- pending doc comment; from '///'?
  local function push(t, v, p)
    n = n + 1
    tt[n], tv[n], tp[n] = t, v, p
    if doc then td[n] = clean_doc(doc); doc = nil end
  end
  while true do
    pos = sfind(s, "%S", pos)
    if not pos then break end
    local c = sbyte(s, pos)
    if (c >= 97 and c <= 122) or (c >= 65 and c <= 90) or c == 95 then
      local _, e = sfind(s, "^[%w_%.]*", pos + 1)
      local word = ssub(s, pos, e)
      if sbyte(word, -1) == 46 or sfind(word, "..", 1, true) then
        fail(F, pos, "malformed identifier '%s'", word)
      end
      if KEYWORDS[word] then push("kw", word, pos)
      elseif word == "true" then push("int", 1, pos)
      elseif word == "false" then push("int", 0, pos)
      else push("id", word, pos) end
      pos = e + 1
    elseif (c >= 48 and c <= 57) or c == 43 or c == 45 or c == 46 then
      local t, v, np = lex_number(F, s, pos)
      push(t, v, pos)
      pos = np
    elseif c == 34 or c == 39 then
      local v, np = lex_string(F, s, pos, c)
      push("str", v, pos)
      pos = np
    elseif c == 47 then -- '/'
      local c2 = sbyte(s, pos + 1)
      if c2 == 47 then
        local eol = sfind(s, "\n", pos, true) or #s + 1
        if sbyte(s, pos + 2) == 47 and sbyte(s, pos + 3) ~= 47 then
          local text = ssub(s, pos + 3, eol - 1)
          if doc and doc_slash then doc = doc .. "\n" .. text else doc = text end
          doc_slash = true
        end
        pos = eol
      elseif c2 == 42 then
        local a = sfind(s, "*/", pos + 2, true)
        if not a then fail(F, pos, "unterminated comment") end
        if sbyte(s, pos + 2) == 42 and a > pos + 2 then
          doc, doc_slash = ssub(s, pos + 3, a - 1), false
        end
        pos = a + 2
      else
        fail(F, pos, "unexpected character '/'")
      end
    elseif c == 35 then -- '#'
      pos = sfind(s, "\n", pos, true) or #s + 1
    elseif SYMS[c] then
      push(SYMS[c], SYMS[c], pos)
      pos = pos + 1
    else
      fail(F, pos, "unexpected character '%s'", c < 32 and sformat("\\%d", c) or schar(c))
    end
  end
  doc = nil
  push("eof", nil, #s + 1)
  F.tt, F.tv, F.tp, F.td = tt, tv, tp, td
end

-- Parser helpers -------------------------------------------------------------
-- The parser state is the file object F itself; F.i is the current token.

-- Human description of token i for error messages.
local function describe(F, i)
  local t, v = F.tt[i], F.tv[i]
  if t == "eof" then return "end of file"
  elseif t == "id" then return "identifier '" .. v .. "'"
  elseif t == "kw" then return "keyword '" .. v .. "'"
  elseif t == "int" then return "number " .. int_text(v)
  elseif t == "dbl" then return "number " .. tostring(v)
  elseif t == "str" then return "string literal"
  end
  return "'" .. t .. "'"
end

-- Fail at the current token: "expected WHAT, got <token>".
local function expected(F, what)
  fail(F, F.tp[F.i], "expected %s, got %s", what, describe(F, F.i))
end

-- Consume symbol sym or fail with "expected 'sym' CONTEXT".
local function expect(F, sym, context)
  if F.tt[F.i] ~= sym then
    expected(F, "'" .. sym .. "'" .. (context and (" " .. context) or ""))
  end
  F.i = F.i + 1
end

-- Consume sym if it is the current token; returns true if it was.
local function accept(F, sym)
  if F.tt[F.i] == sym then F.i = F.i + 1; return true end
  return false
end

-- Consume keyword kw if current; returns true if it was.
local function accept_kw(F, kw)
  if F.tt[F.i] == "kw" and F.tv[F.i] == kw then F.i = F.i + 1; return true end
  return false
end

-- Skip an optional ',' or ';'.
local function separator(F)
  local t = F.tt[F.i]
  if t == "," or t == ";" then F.i = F.i + 1 end
end

-- True if token i can be a name: an identifier, or a keyword in NAME_KW.
local function is_name(F, i)
  local t = F.tt[i]
  return t == "id" or (t == "kw" and NAME_KW[F.tv[i]] == true)
end

-- Identifier (name, pos) or fail with "expected WHAT". Dots allowed if dotted;
-- NAME_KW keywords allowed unless strict.
local function ident(F, what, dotted, strict)
  local i = F.i
  if F.tt[i] ~= "id" and (strict or not is_name(F, i)) then expected(F, what) end
  local v = F.tv[i]
  if not dotted and sfind(v, ".", 1, true) then
    fail(F, F.tp[i], "%s '%s' may not contain '.'", what, v)
  end
  F.i = i + 1
  return v, F.tp[i]
end

-- String literal value or fail.
local function literal(F, what)
  local i = F.i
  if F.tt[i] ~= "str" then expected(F, what) end
  F.i = i + 1
  return F.tv[i], F.tp[i]
end

-- Optional annotation list "( key = "value", key2 )" -> table or nil.
local function annotations(F)
  if not accept(F, "(") then return nil end
  local ann = {}
  while not accept(F, ")") do
    if not is_name(F, F.i) then expected(F, "annotation name or ')'") end
    local key = ident(F, "annotation name", true)
    if accept(F, "=") then
      ann[key] = literal(F, "string literal as value of annotation '" .. key .. "'")
    else
      ann[key] = "1"
    end
    separator(F)
  end
  return ann
end

-- Optional `cpp_type "literal"` (tolerated, ignored). cpp_type without a
-- literal after it is left alone: it is a field name.
local function cpp_type(F)
  if F.tt[F.i] == "kw" and F.tv[F.i] == "cpp_type" and F.tt[F.i + 1] == "str" then
    F.i = F.i + 2
  end
end

-- Type ----------------------------------------------------------------------
-- Type AST: { k = "base", name } | { k = "list"|"set", elem } |
--           { k = "map", key, val } | { k = "ref", name, pos }; .ann = top
--           level annotations; .pos = first token.

local parse_type

-- '<' T '>' for list/set; context names the container for messages.
local function elem_type(F, what, depth)
  expect(F, "<", "after '" .. what .. "'")
  local t = parse_type(F, what .. " element type", depth + 1)
  expect(F, ">", "after " .. what .. " element type")
  return t
end

-- Parse a field type; what = description for "expected ..." messages.
function parse_type(F, what, depth)
  depth = depth or 0
  if depth > 100 then fail(F, F.tp[F.i], "types nested too deeply") end
  local i = F.i
  local t, v, pos = F.tt[i], F.tv[i], F.tp[i]
  local node
  if t == "id" then
    F.i = i + 1
    return { k = "ref", name = v, pos = pos }
  elseif t ~= "kw" then
    expected(F, what)
  elseif BASE_TYPES[v] then
    F.i = i + 1
    node = { k = "base", name = v == "slist" and "string" or v, pos = pos }
  elseif v == "list" then
    F.i = i + 1
    node = { k = "list", elem = elem_type(F, "list", depth), pos = pos }
    cpp_type(F)
  elseif v == "set" then
    F.i = i + 1
    cpp_type(F)
    node = { k = "set", elem = elem_type(F, "set", depth), pos = pos }
  elseif v == "map" then
    F.i = i + 1
    cpp_type(F)
    expect(F, "<", "after 'map'")
    local kt = parse_type(F, "map key type", depth + 1)
    expect(F, ",", "after map key type")
    local vt = parse_type(F, "map value type", depth + 1)
    expect(F, ">", "after map value type")
    node = { k = "map", key = kt, val = vt, pos = pos }
  else
    expected(F, what)
  end
  node.ann = annotations(F)
  return node
end

-- Const values ---------------------------------------------------------------
-- Value AST: { k = "int"|"dbl"|"str", v } | { k = "id", name } |
--            { k = "list", items } | { k = "map", keys, vals }; .pos.

local function parse_value(F, depth)
  depth = depth or 0
  if depth > 100 then fail(F, F.tp[F.i], "constant nested too deeply") end
  local i = F.i
  local t, v, pos = F.tt[i], F.tv[i], F.tp[i]
  if t == "int" or t == "dbl" or t == "str" then
    F.i = i + 1
    return { k = t, v = v, pos = pos }
  elseif t == "id" then
    F.i = i + 1
    return { k = "id", name = v, pos = pos }
  elseif t == "[" then
    F.i = i + 1
    local items = {}
    while not accept(F, "]") do
      if F.tt[F.i] == "eof" then expected(F, "']' to close list constant") end
      items[#items + 1] = parse_value(F, depth + 1)
      separator(F)
    end
    return { k = "list", items = items, pos = pos }
  elseif t == "{" then
    F.i = i + 1
    local keys, vals = {}, {}
    while not accept(F, "}") do
      if F.tt[F.i] == "eof" then expected(F, "'}' to close map constant") end
      keys[#keys + 1] = parse_value(F, depth + 1)
      expect(F, ":", "after map constant key")
      vals[#vals + 1] = parse_value(F, depth + 1)
      separator(F)
    end
    return { k = "map", keys = keys, vals = vals, pos = pos }
  end
  expected(F, "constant value")
end

-- Fields ---------------------------------------------------------------------
-- Field AST: { id, name, pos, type (AST), required, value (AST)|nil, ann, doc }

-- Parse one field; state.next_id is the next implicit (negative) id.
local function parse_field(F, state)
  local i0 = F.i
  local doc, pos = F.td[i0], F.tp[i0]
  local id
  local t = F.tt[i0]
  if (t == "int" or t == "dbl" or t == "str" or t == "id") and F.tt[i0 + 1] == ":" then
    if t ~= "int" then fail(F, pos, "bad field id: expected an integer before ':'") end
    id = F.tv[i0]
    F.i = i0 + 2
    if id <= 0 and not F.neg_keys then
      -- as Apache does without --allow-neg-keys: the next implicit id
      id = state.next_id
      state.next_id = id - 1
    else
      if id < -32768 or id > 32767 then
        fail(F, pos, "bad field id %s: must be within -32768..32767", int_text(id))
      end
      id = tonumber(id)
      if id <= 0 then state.next_id = id - 1 end
    end
  elseif t == "int" then
    F.i = i0 + 1
    expected(F, "':' after field id")
  else
    id = state.next_id
    state.next_id = id - 1
  end
  local required = "default"
  if accept_kw(F, "required") then required = "required"
  elseif accept_kw(F, "optional") then required = "optional" end
  local ty = parse_type(F, "field type")
  accept(F, "&")
  local name
  if F.tt[F.i] == "kw" and FIELD_NAME_KW[F.tv[F.i]] then
    name = F.tv[F.i]
    F.i = F.i + 1
  else
    if not is_name(F, F.i) then
      if ty.k == "ref" and (F.tt[F.i] == "," or F.tt[F.i] == ";" or F.tt[F.i] == "}"
          or F.tt[F.i] == ")" or F.tt[F.i] == "=") then
        expected(F, "field name after type '" .. ty.name .. "' (is the field type missing?)")
      end
      expected(F, "field name")
    end
    name = ident(F, "field name")
  end
  local value
  if accept(F, "=") then value = parse_value(F) end
  accept_kw(F, "xsd_optional")
  accept_kw(F, "xsd_nillable")
  if accept_kw(F, "xsd_attrs") then
    expect(F, "{", "after xsd_attrs")
    local st = { next_id = -1, ids = {}, names = {} }
    while not accept(F, "}") do parse_field(F, st) end
  end
  local ann = annotations(F)
  separator(F)
  local f = { id = id, name = name, pos = pos, type = ty, required = required,
              value = value, ann = ann, doc = doc }
  if state.ids[id] then
    fail(F, pos, "duplicate field id %d ('%s' and '%s')", id, state.ids[id].name, name)
  end
  if state.names[name] then
    fail(F, pos, "duplicate field name '%s'", name)
  end
  state.ids[id], state.names[name] = f, f
  return f
end

-- Fields up to closer ('}' or ')'); returns the list.
local function parse_fields(F, closer, context)
  local list = {}
  local state = { next_id = -1, ids = {}, names = {} }
  while not accept(F, closer) do
    local t = F.tt[F.i]
    if t ~= "int" and t ~= "dbl" and t ~= "id" and t ~= "kw" then
      expected(F, "'" .. closer .. "' to close " .. context)
    end
    list[#list + 1] = parse_field(F, state)
  end
  return list
end

-- Definitions ----------------------------------------------------------------
-- Definition AST ("rec"): { kind, name, pos, doc, ann, ... }

-- Definition name after the keyword.
local function def_name(F, what)
  return ident(F, what .. " name", false, true)
end

local parsers = {}

-- struct / union / exception NAME [xsd_all] { fields } [annotations]
local function parse_struct(F, rec)
  rec.name, rec.pos = def_name(F, rec.kind)
  if rec.kind ~= "exception" then accept_kw(F, "xsd_all") end
  expect(F, "{", "after " .. rec.kind .. " name")
  rec.fields = parse_fields(F, "}", rec.kind .. " '" .. rec.name .. "'")
  rec.ann = annotations(F)
end
parsers.struct, parsers.union, parsers.exception = parse_struct, parse_struct, parse_struct

-- enum NAME { A [= int] [annotations] [,;] ... } [annotations]
function parsers.enum(F, rec)
  rec.name, rec.pos = def_name(F, "enum")
  expect(F, "{", "after enum name")
  local values, order, vann, vdoc = {}, {}, nil, nil
  local nextv = 0
  while not accept(F, "}") do
    if not is_name(F, F.i) then expected(F, "enum value name or '}'") end
    local doc = F.td[F.i]
    local name, pos = ident(F, "enum value name")
    local v = nextv
    if accept(F, "=") then
      if F.tt[F.i] ~= "int" then expected(F, "integer value for enum value '" .. name .. "'") end
      v = F.tv[F.i]
      if not is_int(v) or v < -2147483648 or v > 2147483647 then
        fail(F, F.tp[F.i], "enum value %s = %s out of i32 range", name,
          is_int(v) and int_text(v) or tostring(v))
      end
      v = tonumber(v)
      F.i = F.i + 1
    end
    if v > 2147483647 then fail(F, pos, "enum value %s = %s out of i32 range", name, int_text(v)) end
    if values[name] then fail(F, pos, "duplicate enum value '%s' in enum '%s'", name, rec.name) end
    values[name] = v
    order[#order + 1] = name
    nextv = v + 1
    local ann = annotations(F)
    if ann then vann = vann or {}; vann[name] = ann end
    if doc then vdoc = vdoc or {}; vdoc[name] = doc end
    separator(F)
  end
  rec.values, rec.order, rec.value_annotations, rec.value_docs = values, order, vann, vdoc
  rec.ann = annotations(F)
end

-- senum NAME { "a", "b" } (legacy string enum): a typedef of string.
function parsers.senum(F, rec)
  rec.name, rec.pos = def_name(F, "senum")
  expect(F, "{", "after senum name")
  local vals = {}
  while not accept(F, "}") do
    vals[#vals + 1] = literal(F, "string literal or '}' in senum")
    separator(F)
  end
  rec.kind, rec.type, rec.senum = "typedef", { k = "base", name = "string" }, vals
  rec.ann = annotations(F)
end

-- typedef TYPE NAME [annotations] [,;]
function parsers.typedef(F, rec)
  rec.type = parse_type(F, "type after 'typedef'")
  rec.name, rec.pos = def_name(F, "typedef")
  rec.ann = annotations(F)
  separator(F)
end

-- const TYPE NAME = VALUE [,;]
function parsers.const(F, rec)
  rec.type = parse_type(F, "type after 'const'")
  rec.name, rec.pos = def_name(F, "const")
  expect(F, "=", "after const name")
  rec.value = parse_value(F)
  separator(F)
end

-- One service function.
local function parse_function(F)
  local i0 = F.i
  local fn = { doc = F.td[i0], pos = F.tp[i0], oneway = false }
  if accept_kw(F, "oneway") or accept_kw(F, "async") then fn.oneway = true end
  if accept_kw(F, "void") then
    fn.result = { k = "base", name = "void", pos = F.tp[F.i - 1] }
  else
    fn.result = parse_type(F, "function return type or '}'")
  end
  fn.name, fn.name_pos = ident(F, "function name")
  expect(F, "(", "after function name '" .. fn.name .. "'")
  fn.args = parse_fields(F, ")", "argument list of '" .. fn.name .. "'")
  if accept_kw(F, "throws") then
    expect(F, "(", "after 'throws'")
    fn.throws = parse_fields(F, ")", "throws list of '" .. fn.name .. "'")
  end
  fn.ann = annotations(F)
  separator(F)
  return fn
end

-- service NAME [extends NAME] { functions } [annotations]
function parsers.service(F, rec)
  rec.name, rec.pos = def_name(F, "service")
  if accept_kw(F, "extends") then
    rec.extends, rec.extends_pos = ident(F, "service name after 'extends'", true)
  end
  expect(F, "{", "after service name")
  rec.functions = {}
  while not accept(F, "}") do
    rec.functions[#rec.functions + 1] = parse_function(F)
  end
  rec.ann = annotations(F)
end

-- Program: headers, then definitions. Fills F.recs (list), F.incl (list of
-- {path, pos}), F.namespaces.
local function parse_program(F)
  F.i = 1
  local tt, tv = F.tt, F.tv
  F.recs, F.incl, F.namespaces, F.cpp_includes = {}, {}, {}, {}
  local seen_def = false
  while tt[F.i] ~= "eof" do
    local i = F.i
    local t, v = tt[i], tv[i]
    if t == "kw" and HEADER_KW[v] then
      if seen_def then
        fail(F, F.tp[i], "'%s' must come before all definitions", v)
      end
      F.i = i + 1
      if v == "include" then
        local path, pos = literal(F, "file name string after 'include'")
        F.incl[#F.incl + 1] = { path = path, pos = pos }
      elseif v == "cpp_include" then
        F.cpp_includes[#F.cpp_includes + 1] = literal(F, "string after 'cpp_include'")
      else
        local lang
        if accept(F, "*") then lang = "*" else lang = ident(F, "namespace scope", true) end
        F.namespaces[lang] = ident(F, "namespace name", true)
        annotations(F)
      end
      separator(F)
    elseif t == "kw" and DEF_KW[v] then
      seen_def = true
      F.i = i + 1
      local rec = { kind = v, doc = F.td[i], kpos = F.tp[i] }
      parsers[v](F, rec)
      F.recs[#F.recs + 1] = rec
    elseif t == "id" and OLD_NS[v] then
      fail(F, F.tp[i], "'%s' is not supported (Apache dropped it): write 'namespace %s'", v, OLD_NS[v])
    else
      expected(F, "definition (struct, union, exception, enum, typedef, const or service)")
    end
  end
end

-- Resolution -------------------------------------------------------------------
-- F.scope[name] = rec for this file's definitions; F.incs[alias] = included F;
-- F.prefix = "" for the top file, "alias." for included ones.

-- Look up a (possibly "alias.Name") definition visible from F: file, rec.
local function lookup(F, name)
  local dot = sfind(name, ".", 1, true)
  if not dot then
    local rec = F.scope[name]
    if rec then return F, rec end
    return nil
  end
  local inc = F.incs[ssub(name, 1, dot - 1)]
  local rest = ssub(name, dot + 1)
  if inc and not sfind(rest, ".", 1, true) then
    local rec = inc.scope[rest]
    if rec then return inc, rec end
  end
  return nil
end

-- Qualified name of type reference t (a ref AST) in F; fails if unknown.
local function qualify_type(F, t)
  local G, R = lookup(F, t.name)
  if not R then fail(F, t.pos, "unknown type '%s'", t.name) end
  if not TYPE_KINDS[R.kind] then
    fail(F, t.pos, "'%s' is a %s, not a type", t.name, R.kind)
  end
  return G.prefix .. R.name
end

-- Normalized type string of type AST t in F (no spaces).
local function type_string(F, t)
  local k = t.k
  if k == "base" then return t.name
  elseif k == "ref" then return qualify_type(F, t)
  elseif k == "map" then
    return "map<" .. type_string(F, t.key) .. "," .. type_string(F, t.val) .. ">"
  end
  return k .. "<" .. type_string(F, t.elem) .. ">"
end

-- Follow type AST t (in file F) through typedefs to a non-typedef: returns
-- F2, t2 where t2 is base/container AST, or F2, rec for a struct-like/enum.
local function true_type(F, t)
  local F0, t0 = F, t
  local seen = {}
  while true do
    if t.k ~= "ref" then return F, t, nil end
    local G, R = lookup(F, t.name)
    if not R then fail(F, t.pos, "unknown type '%s'", t.name) end
    if R.kind ~= "typedef" then return G, nil, R end
    if seen[R] then fail(F0, t0.pos, "typedef cycle involving '%s'", t0.name) end
    seen[R] = true
    F, t = G, R.type
  end
end

local resolve_ident

-- Short name of type AST t for messages.
local function type_label(t)
  if t.k == "base" or t.k == "ref" then return t.name end
  return t.k
end

local VKIND = { int = "integer", dbl = "number", str = "string literal",
                id = "identifier", list = "list", map = "map" }

-- Canonical text of a converted value, to find equal set elements and map
-- keys (tables compare by identity in Lua; so do LuaJIT's int64 cdata).
local function value_key(v)
  local tv = type(v)
  if tv == "table" then
    local keys = {}
    for key, x in pairs(v) do keys[#keys + 1] = value_key(key) .. "=" .. value_key(x) end
    table.sort(keys)
    return "{" .. concat(keys, ",") .. "}"
  elseif tv == "string" then
    return sformat("%q", v)
  elseif tv == "cdata" or (tv == "number" and is_int(v)) then
    return int_text(v)
  end
  return tostring(v)
end

local const_as

-- Lua value of value AST v (written in file VF) for type AST t (in file TF).
-- ctx describes the owner for messages ("const 'X'").
local function convert(TF, t, VF, v, ctx)
  local F2, bt, R = true_type(TF, t)
  local function bad(what)
    fail(VF, v.pos, "bad value for %s: expected %s, got %s", ctx,
      what or type_label(t), v.k == "id" and ("'" .. v.name .. "'") or VKIND[v.k])
  end
  local val, vk = v.v, v.k
  local enum = R and R.kind == "enum" and R
  if vk == "id" then
    -- like Apache, X.NAME for an enum type is NAME of that enum, whatever X
    local last = v.name:match("%.([^.]+)$")
    if enum and last and enum.values[last] ~= nil then return enum.values[last] end
    -- a bare NAME of the enum, unless a const (older Apache accepted it)
    if enum and not last and enum.values[v.name] ~= nil
        and not (VF.scope[v.name] and VF.scope[v.name].kind == "const") then
      return enum.values[v.name]
    end
    local CF, rec, ival = resolve_ident(VF, v.name, v.pos)
    -- a const: its value converted for this type (Apache copies the value);
    -- a misfit is reported here, where the const is named
    if rec then
      local ok, r = pcall(const_as, CF, rec, TF, t, ctx)
      if ok then return r end
      if getmetatable(r) == Fail and not r.cycle then
        if not r.via then
          r.via = true
          r.msg = sformat("%s (in the value of const '%s', line %d of %s)", r.msg, rec.name,
            (line_col(r.F.text, r.pos)), r.F.name)
        end
        r.F, r.pos = VF, v.pos
      end
      error(r, 0)
    end
    val, vk = ival, "int"
  end
  if enum then
    if vk ~= "int" then bad("value of enum " .. enum.name) end
    if not enum.byval then
      enum.byval = {}
      for _, x in pairs(enum.values) do enum.byval[x] = true end
    end
    if not enum.byval[tonumber(val)] then
      fail(VF, v.pos, "bad value for %s: %s is not a value of enum %s", ctx, int_text(val), enum.name)
    end
    return tonumber(val)
  elseif R then -- struct / union / exception literal
    if vk ~= "map" then bad("map literal for " .. R.kind .. " " .. R.name) end
    local out = {}
    for j, key in ipairs(v.keys) do
      if key.k ~= "str" then
        fail(VF, key.pos, "bad value for %s: field names of %s '%s' must be string literals",
          ctx, R.kind, R.name)
      end
      local field
      for _, f in ipairs(R.fields) do if f.name == key.v then field = f; break end end
      if not field then
        fail(VF, key.pos, "bad value for %s: no field '%s' in %s '%s'", ctx, key.v, R.kind, R.name)
      end
      out[key.v] = convert(F2, field.type, VF, v.vals[j], ctx .. " field '" .. key.v .. "'")
    end
    return out
  end
  local k = bt.k
  if k == "base" then
    local name = bt.name
    local range = INT_RANGE[name]
    if range or name == "i64" then
      if vk ~= "int" then bad(name) end
      if range and (type(val) ~= "number" or val < range[1] or val > range[2]) then
        fail(VF, v.pos, "bad value for %s: %s out of %s range", ctx, int_text(val), name)
      end
      return val
    elseif name == "double" then
      if vk ~= "int" and vk ~= "dbl" then bad("double") end
      return tonumber(val) * 1.0 -- a float; keeps -0.0
    elseif name == "bool" then
      -- as Apache's generators: true if the integer is positive
      if vk ~= "int" then bad("bool (true, false or an integer)") end
      return val > 0
    end
    -- string, binary, uuid
    if vk ~= "str" then bad(name) end
    if name == "uuid" then
      -- 36-char text form, lowercase; "{...}" accepted as newer Apache does
      local u = val:match("^{(.*)}$") or val
      if not sfind(u, "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$") then
        fail(VF, v.pos, "bad value for %s: malformed uuid '%s'", ctx, val)
      end
      return u:lower()
    end
    return val
  elseif k == "list" or k == "set" then
    -- an empty map literal is an empty list (Apache accepts it)
    if vk == "map" and #v.keys == 0 then return {} end
    if vk ~= "list" then bad(k .. " literal [...]") end
    local out, seen = {}, k == "set" and {} or nil
    for _, item in ipairs(v.items) do
      local x = convert(F2, bt.elem, VF, item, ctx)
      if seen then -- a set keeps the first of equal elements
        local key = value_key(x)
        if not seen[key] then seen[key] = true; out[#out + 1] = x end
      else
        out[#out + 1] = x
      end
    end
    return out
  end
  -- map; an empty list literal is an empty map (Apache accepts it)
  if vk == "list" and #v.items == 0 then return {} end
  if vk ~= "map" then bad("map literal {...}") end
  local out, keys = {}, {}
  for j, key in ipairs(v.keys) do
    local kv = convert(F2, bt.key, VF, key, ctx)
    local ck = value_key(kv) -- equal keys: the last value wins
    if keys[ck] == nil then keys[ck] = kv else kv = keys[ck] end
    out[kv] = convert(F2, bt.val, VF, v.vals[j], ctx)
  end
  return out
end

-- Value of const rec (in F) converted for type AST t of file TF; once per
-- target type (a chain of consts naming each other twice stays linear).
function const_as(F, rec, TF, t, ctx)
  if rec.busy then
    error(setmetatable({ F = F, pos = rec.pos, cycle = true,
      msg = sformat("const '%s' refers to itself", rec.name) }, Fail), 0)
  end
  local key = type_string(TF, t)
  rec.as = rec.as or {}
  if rec.as[key] == nil then
    rec.busy = true
    rec.as[key] = convert(TF, t, F, rec.value, ctx)
    rec.busy = false
  end
  return rec.as[key]
end

-- Value of const rec (in F), converting it on first use.
local function const_value(F, rec)
  if not rec.done then
    rec.result = const_as(F, rec, F, rec.type, "const '" .. rec.name .. "'")
    rec.done = true
  end
  return rec.result
end

-- Resolve identifier name (in F): file and rec of a const, or nil, nil and
-- the value of an enum value (Enum.NAME, alias.Enum.NAME).
function resolve_ident(F, name, pos)
  local parts, n = {}, 0
  for p in name:gmatch("[^.]+") do n = n + 1; parts[n] = p end
  local R
  if n == 1 then
    R = F.scope[name]
    if R and R.kind == "const" then return F, R end
  elseif n == 2 then
    local inc = F.incs[parts[1]]
    R = inc and inc.scope[parts[2]]
    if R and R.kind == "const" then return inc, R end
    R = F.scope[parts[1]]
    if R and R.kind == "enum" and R.values[parts[2]] then return nil, nil, R.values[parts[2]] end
  elseif n == 3 then
    local inc = F.incs[parts[1]]
    R = inc and inc.scope[parts[2]]
    if R and R.kind == "enum" and R.values[parts[3]] then return nil, nil, R.values[parts[3]] end
  end
  fail(F, pos, "unknown constant or enum value '%s'", name)
end

-- Output field table for field AST f of file F.
local function out_field(F, f)
  return { id = f.id, name = f.name, type = type_string(F, f.type),
           required = f.required, annotations = f.ann, doc = f.doc,
           type_annotations = f.type.ann }
end

-- Output field list; force_optional for union members (as Apache does).
local function out_fields(F, fields, force_optional)
  local out = {}
  for j, f in ipairs(fields) do
    out[j] = out_field(F, f)
    if force_optional then out[j].required = "optional" end
  end
  return out
end

-- Fill field defaults of out (list) from field ASTs.
local function fill_defaults(F, out, fields, owner)
  for j, f in ipairs(fields) do
    if f.value then
      out[j].default = convert(F, f.type, F, f.value,
        "default of field '" .. f.name .. "' in " .. owner)
    end
  end
end

-- True if type AST t (in F) is an exception (through typedefs).
local function is_exception(F, t)
  local _, _, R = true_type(F, t)
  return R ~= nil and R.kind == "exception"
end

-- Build the output service def for rec.
local function out_service(F, rec)
  local def = { kind = "service", functions = {}, order = {},
                annotations = rec.ann, doc = rec.doc }
  if rec.extends then
    local G, R = lookup(F, rec.extends)
    if not R then fail(F, rec.extends_pos, "unknown service '%s' in extends", rec.extends) end
    if R.kind ~= "service" then
      fail(F, rec.extends_pos, "'%s' is a %s, not a service", rec.extends, R.kind)
    end
    def.extends = G.prefix .. R.name
  end
  for _, fn in ipairs(rec.functions) do
    if def.functions[fn.name] then
      fail(F, fn.name_pos, "duplicate function '%s' in service '%s'", fn.name, rec.name)
    end
    local throws = out_fields(F, fn.throws or {})
    for _, x in ipairs(fn.throws or {}) do
      if not is_exception(F, x.type) then
        fail(F, x.type.pos, "throws clause of '%s' may only list exceptions, '%s' is not one",
          fn.name, type_label(x.type))
      end
    end
    if fn.oneway then
      if fn.result.name ~= "void" then
        fail(F, fn.result.pos, "oneway function '%s' must return void", fn.name)
      end
      if fn.throws and #fn.throws > 0 then
        fail(F, fn.throws[1].pos, "oneway function '%s' may not throw exceptions", fn.name)
      end
    end
    local f = { args = out_fields(F, fn.args), throws = throws, oneway = fn.oneway,
                result = fn.result.name == "void" and fn.result.k == "base" and "void"
                  or type_string(F, fn.result),
                annotations = fn.ann, doc = fn.doc }
    def.functions[fn.name] = f
    def.order[#def.order + 1] = fn.name
    fn.out = f
  end
  -- as Apache: no cycle of extends, no function redefined from an ancestor
  local seen, G, P = { [rec] = true }, F, rec
  while P.extends do
    local G2, R2 = lookup(G, P.extends)
    if not R2 or R2.kind ~= "service" then break end
    if seen[R2] then
      fail(F, rec.extends_pos, "service '%s' extends itself (through '%s')", rec.name, P.name)
    end
    seen[R2] = true
    for _, fn in ipairs(rec.functions) do
      for _, pf in ipairs(R2.functions) do
        if pf.name == fn.name then
          fail(F, fn.name_pos, "function '%s' is already defined in service '%s', which '%s' extends",
            fn.name, G2.prefix .. R2.name, rec.name)
        end
      end
    end
    G, P = G2, R2
  end
  return def
end

-- Build the output def for rec (values filled later by fill_values).
local function out_def(F, rec)
  local kind = rec.kind
  if kind == "struct" or kind == "union" or kind == "exception" then
    return { kind = kind, fields = out_fields(F, rec.fields, kind == "union"),
             annotations = rec.ann, doc = rec.doc }
  elseif kind == "enum" then
    return { kind = "enum", values = rec.values, order = rec.order, annotations = rec.ann,
             doc = rec.doc, value_annotations = rec.value_annotations,
             value_docs = rec.value_docs }
  elseif kind == "typedef" then
    return { kind = "typedef", type = type_string(F, rec.type), annotations = rec.ann,
             doc = rec.doc, type_annotations = rec.type.ann, senum = rec.senum }
  elseif kind == "const" then
    return { kind = "const", type = type_string(F, rec.type), doc = rec.doc }
  end
  return out_service(F, rec)
end

-- Convert const values and field defaults of rec into def.
local function fill_values(F, rec, def)
  local kind = rec.kind
  if kind == "const" then
    def.value = const_value(F, rec)
  elseif kind == "struct" or kind == "union" or kind == "exception" then
    fill_defaults(F, def.fields, rec.fields, kind .. " '" .. rec.name .. "'")
    if kind == "union" then
      local n = 0
      for _, f in ipairs(rec.fields) do
        if f.value then
          n = n + 1
          if n > 1 then fail(F, f.pos, "union '%s' may give a default to one field only", rec.name) end
        end
      end
    end
  elseif kind == "service" then
    for _, fn in ipairs(rec.functions) do
      fill_defaults(F, fn.out.args, fn.args, "function '" .. fn.name .. "'")
    end
  end
end

-- Resolve a parsed file whose includes are loaded; add its defs to S.defs.
local function resolve_file(S, F)
  F.scope = {}
  for _, rec in ipairs(F.recs) do
    local prev = F.scope[rec.name]
    if prev then
      fail(F, rec.pos, "duplicate definition '%s' (first defined at line %d)",
        rec.name, (line_col(F.text, prev.pos)))
    end
    F.scope[rec.name] = rec
  end
  local defs = {}
  for j, rec in ipairs(F.recs) do
    -- check typedef cycles early with a position
    if rec.kind == "typedef" then true_type(F, rec.type) end
    defs[j] = out_def(F, rec)
  end
  for j, rec in ipairs(F.recs) do fill_values(F, rec, defs[j]) end
  for j, rec in ipairs(F.recs) do S.defs[F.prefix .. rec.name] = defs[j] end
end

-- Files and includes ---------------------------------------------------------

-- Collapse "." and "x/.." segments of a '/' path.
local function normpath(p)
  local abs = ssub(p, 1, 1) == "/"
  local out = {}
  for seg in p:gmatch("[^/]+") do
    if seg == "." then -- skip
    elseif seg == ".." and #out > 0 and out[#out] ~= ".." then out[#out] = nil
    else out[#out + 1] = seg end
  end
  local r = concat(out, "/")
  if abs then return "/" .. r end
  return r == "" and "." or r
end

-- Directory part of path ("." if none).
local function dirname(p)
  local d = p:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  return d == "" and "/" or d
end

-- Absolute-ish key for "load each file once" (cwd from $PWD when known).
local function file_key(p)
  if ssub(p, 1, 1) ~= "/" then
    local cwd = os.getenv("PWD")
    if cwd then p = cwd .. "/" .. p end
  end
  return normpath(p)
end

-- Read a whole file; nil if it cannot be opened.
local function read_file(path)
  local fh = io.open(path, "rb")
  if not fh then return nil end
  local text = fh:read("*a")
  fh:close()
  return text
end

-- Join directory and relative path.
local function join(dir, p)
  if ssub(p, 1, 1) == "/" or dir == "." or dir == "" then return p end
  if ssub(dir, -1) == "/" then return dir .. p end
  return dir .. "/" .. p
end

local process_file

-- Find and load include inc of F (recursively); returns the included file.
local function load_include(S, F, inc)
  local candidates = {}
  if ssub(inc.path, 1, 1) == "/" then
    candidates[1] = inc.path
  else
    candidates[1] = join(F.dir, inc.path)
    for _, d in ipairs(S.include_dirs) do candidates[#candidates + 1] = join(d, inc.path) end
  end
  local path, text
  for _, c in ipairs(candidates) do
    c = normpath(c)
    text = read_file(c)
    if text then path = c; break end
  end
  if not text then
    fail(F, inc.pos, "cannot find include file '%s' (searched: %s)", inc.path,
      concat(candidates, ", "))
  end
  local key = file_key(path)
  if S.loading[key] then
    local names = {}
    for j = S.loading[key], #S.stack do names[#names + 1] = S.stack[j].name end
    names[#names + 1] = path
    fail(F, inc.pos, "include cycle: %s", concat(names, " -> "))
  end
  local G = S.files[key]
  if G then return G end
  local alias = path:match("([^/]*)$"):gsub("%.[^.]*$", "")
  local other = S.aliases[alias]
  if other then
    fail(F, inc.pos, "included file '%s' has the same name '%s' as '%s'", path, alias, other.name)
  end
  G = { name = path, text = text, dir = dirname(path), key = key,
        alias = alias, prefix = alias .. "." }
  S.aliases[alias] = G
  process_file(S, G)
  S.files[key] = G
  return G
end

-- Lex, parse, load includes and resolve file F.
function process_file(S, F)
  S.current = F
  F.neg_keys = S.neg_keys
  lex(F)
  parse_program(F)
  if F.key then
    S.loading[F.key] = #S.stack + 1
  end
  S.stack[#S.stack + 1] = F
  F.incs = {}
  for _, inc in ipairs(F.incl) do
    local G = load_include(S, F, inc)
    F.incs[G.alias] = G
  end
  S.stack[#S.stack] = nil
  if F.key then S.loading[F.key] = nil end
  S.current = F
  resolve_file(S, F)
end

-- Turn a caught error into the "FILE:LINE:COL: message" string.
local function format_error(S, e)
  if getmetatable(e) == Fail then return where(e.F, e.pos, e.msg) end
  local F = S.current
  if F then
    local pos = F.tp and F.i and F.tp[F.i] or 1
    return where(F, pos, "internal error: " .. tostring(e))
  end
  return "<idl>:1:1: internal error: " .. tostring(e)
end

-- Parse text as the top-level file; see the module header.
local function parse_top(S, text, opts)
  local path = opts.path
  local F = { name = opts.name or path or "<string>", text = text,
              dir = path and dirname(path) or ".", key = path and file_key(path),
              prefix = "" }
  S.include_dirs = opts.include_dirs or {}
  S.neg_keys = opts.allow_neg_keys and true or false
  process_file(S, F)
  local res = { types = {}, consts = {}, services = {}, defs = S.defs,
                namespaces = F.namespaces, includes = {}, file = path }
  for _, inc in ipairs(F.incl) do res.includes[#res.includes + 1] = inc.path end
  res.cpp_includes = F.cpp_includes
  for name, def in pairs(S.defs) do
    if def.kind == "const" then res.consts[name] = def
    elseif def.kind == "service" then res.services[name] = def
    else res.types[name] = def end
  end
  return res
end

-- Public: parse IDL text. Returns result or nil, "FILE:LINE:COL: msg".
function M.parse(text, opts)
  opts = opts or {}
  local S = { defs = {}, files = {}, loading = {}, stack = {}, aliases = {} }
  if type(text) ~= "string" then
    return nil, (opts.name or "<string>") .. ":1:1: IDL text must be a string"
  end
  local ok, res = pcall(parse_top, S, text, opts)
  if ok then return res end
  return nil, format_error(S, res)
end

-- Public: read and parse the IDL file at path.
function M.load(path, opts)
  opts = opts or {}
  if type(path) ~= "string" then return nil, "<idl>:1:1: path must be a string" end
  local text = read_file(path)
  if not text then
    return nil, sformat("%s:1:1: cannot open file", opts.name or path)
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.path = path
  o.name = opts.name or path
  return M.parse(text, o)
end

return M

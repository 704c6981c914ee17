-- petrel.cli.util: what the `petrel` commands share: failures with exit
-- codes, optional libraries (lua-cjson, lua-readline), inputs (a file, -
-- for stdin, @file, hex or base64), addresses, loading IDL, finding a
-- method, the options passed through to petrel.client and petrel.server,
-- and printing values as JSON or as Lua.
local petrel = require "petrel"
local core = require "petrel.core"

local M = {}

-- Exit codes: 0 ok, 1 the work failed (a call, a decode, a server),
-- 2 usage (bad command line, unknown method, arguments that do not fit).
M.OK, M.FAILED, M.USAGE = 0, 1, 2

local Fail = {}
Fail.__index = Fail
Fail.__tostring = function(f) return f.msg end

-- Raise a failure the command line reports on stderr with its exit code.
function M.fail(code, fmt, ...)
  local msg = select("#", ...) > 0 and string.format(fmt, ...) or fmt
  error(setmetatable({ code = code, msg = msg }, Fail), 0)
end
function M.usage(...) M.fail(M.USAGE, ...) end
function M.failed(...) M.fail(M.FAILED, ...) end
function M.is_fail(e) return getmetatable(e) == Fail end

-- The runtime's name, for messages about missing packages.
M.runtime = jit and "LuaJIT" or _VERSION

-- ---- optional libraries --------------------------------------------------

local cjson_mod, cjson_err
-- lua-cjson, or nil and why not (JSON input and output need it).
function M.cjson()
  if cjson_mod == nil and cjson_err == nil then
    local ok, m = pcall(require, "cjson")
    if ok then cjson_mod = m.new and m.new() or m else cjson_err = tostring(m) end
  end
  return cjson_mod, cjson_mod == nil and
    ("lua-cjson is not installed for " .. M.runtime .. " (Debian: apt-get install lua-cjson)")
    or nil
end

-- ---- inputs ----------------------------------------------------------------

local function read_all(f) return f:read(jit and "*a" or "a") end

-- The bytes of a file, "-" (stdin) or nil (stdin).
function M.read_input(path)
  if path == nil or path == "-" then return read_all(io.stdin) end
  local f, err = io.open(path, "rb")
  if not f then M.failed("%s", err) end
  local s = read_all(f)
  f:close()
  return s
end

-- A command-line value: "@file" is the file's contents, "-" stdin, else
-- the text itself.
function M.arg_text(s)
  if s == "-" then return read_all(io.stdin) end
  if s:sub(1, 1) == "@" then return M.read_input(s:sub(2)) end
  return s
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64_INV = {}
for i = 1, 64 do B64_INV[B64:byte(i)] = i - 1 end
B64_INV[("-"):byte()] = 62 -- the URL alphabet too
B64_INV[("_"):byte()] = 63

function M.base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1, c2 = math.floor(n / 262144) % 64, math.floor(n / 4096) % 64
    local c3, c4 = math.floor(n / 64) % 64, n % 64
    out[#out + 1] = B64:sub(c1 + 1, c1 + 1) .. B64:sub(c2 + 1, c2 + 1) ..
      (b and B64:sub(c3 + 1, c3 + 1) or "=") .. (c and B64:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

-- base64 (standard or URL alphabet, padding optional, whitespace ignored)
-- -> bytes | nil, err
function M.unbase64(s)
  s = s:gsub("%s", ""):gsub("=+$", "")
  local out, bits, n = {}, 0, 0
  for i = 1, #s do
    local v = B64_INV[s:byte(i)]
    if not v then return nil, string.format("not base64 (byte %d: %q)", i, s:sub(i, i)) end
    bits = bits * 64 + v
    n = n + 6
    if n >= 8 then
      n = n - 8
      local byte = math.floor(bits / 2 ^ n)
      out[#out + 1] = string.char(byte)
      bits = bits - byte * 2 ^ n
    end
  end
  if n >= 6 then return nil, "not base64 (a lone character at the end)" end
  return table.concat(out)
end

-- hex text (whitespace, "0x" and hexdump -C offsets/ascii ignored) -> bytes
-- | nil, err
function M.unhex(s)
  local lines = {}
  for line in (s .. "\n"):gmatch("([^\n]*)\n") do
    -- hexdump -C / petrel.hex lines: offset, bytes, |ascii|
    local body = line:match("^%x%x%x%x%x%x%x%x  (.-)%s*|.*|%s*$")
    if body then line = body end
    if line:match("^%.%.%. %d+ more bytes") then line = "" end
    lines[#lines + 1] = line
  end
  local t = table.concat(lines, " "):gsub("0[xX](%x%x)", "%1"):gsub("[%s:,]", "")
  if #t % 2 == 1 then return nil, "odd number of hex digits" end
  local bad = t:find("[^%x]")
  if bad then return nil, string.format("not hex (%q at digit %d)", t:sub(bad, bad), bad) end
  return (t:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

-- bytes of input text in format "raw" | "hex" | "base64"
function M.decode_format(s, format)
  if format == "raw" or format == nil then return s end
  local out, err
  if format == "hex" then out, err = M.unhex(s) else out, err = M.unbase64(s) end
  if not out then M.failed("input: %s", err) end
  return out
end

-- ---- addresses ---------------------------------------------------------------

-- "HOST:PORT", ":PORT", "PORT", "[::1]:PORT", "unix:/path" -> { host =,
-- port = } | { unix = }
function M.address(s)
  if s:sub(1, 5) == "unix:" then
    if #s == 5 then M.usage("address %q: unix:PATH expected", s) end
    return { unix = s:sub(6), text = s }
  end
  local host, port = s:match("^%[(.+)%]:(%d+)$")
  if not host then host, port = s:match("^([^:]*):(%d+)$") end
  if not host and s:match("^%d+$") then host, port = "", s end
  port = tonumber(port)
  if not host or not port or port < 1 or port > 65535 then
    M.usage("address %q: HOST:PORT, :PORT or unix:PATH expected", s)
  end
  if host == "" then host = "127.0.0.1" end
  return { host = host, port = port, text = (host:find(":") and "[" .. host .. "]" or host) .. ":" .. port }
end

-- ---- IDL ------------------------------------------------------------------------

-- petrel.load with the include dirs; failures exit 1 with the loader's
-- message (file:line:column).
function M.load_idl(path, includes)
  local f = io.open(path, "rb")
  if not f then M.failed("cannot open %s", path) end
  f:close()
  local ns, err = petrel.load(path, { include_dirs = includes })
  if not ns then M.failed("%s", err) end
  return ns
end

-- Service names of ns, sorted.
function M.services(ns)
  local t = {}
  for name in pairs(ns._services or {}) do t[#t + 1] = name end
  table.sort(t)
  return t
end

-- "Service.method" (or "method" when one service has it) -> service,
-- function entry, method name, service name.
function M.find_method(ns, spec)
  local sname, mname = spec:match("^(.+)%.([^.]+)$")
  local svcs = ns._services or {}
  if not sname then
    mname = spec
    local found
    for _, n in ipairs(M.services(ns)) do
      if svcs[n].functions[mname] then
        if found then
          M.usage("method %q is in several services (%s, %s): say Service.%s", spec, found, n, mname)
        end
        found = n
      end
    end
    if not found then
      M.usage("no method %q in %s (services: %s)", spec, "the IDL",
        table.concat(M.services(ns), ", "))
    end
    sname = found
  end
  local svc = svcs[sname]
  if not svc then
    M.usage("no service %q (services: %s)", sname,
      #M.services(ns) > 0 and table.concat(M.services(ns), ", ") or "none")
  end
  local fn = svc.functions[mname]
  if not fn then
    M.usage("service %s has no method %q (methods: %s)", sname, mname,
      table.concat(svc.order, ", "))
  end
  return svc, fn, mname, sname
end

-- ---- options passed through to petrel.client / petrel.server ----------------------

-- The values a petrel option check accepts, read from the check itself
-- ("one of "framed", "buffered"" -> {"framed", "buffered"}), so the
-- command line lists what the library takes, from one place.
function M.choices(check)
  if type(check) ~= "function" then return nil end
  local ok, want = pcall(check, {})
  if not ok or type(want) ~= "string" then return nil end
  local list = {}
  for v in want:gmatch('"([^"]*)"') do list[#list + 1] = v end
  return #list > 0 and list or nil
end

-- What this petrel speaks, for --help and for checks: transports and
-- protocols of the client and the server, from their option tables
-- (other protocols appear here as soon as the library takes them).
function M.speaks()
  local client = require "petrel.client"
  local rpc = require "petrel.rpc"
  local co, so = client.CLIENT_OPTIONS, rpc.SERVER_OPTIONS
  return {
    client_transports = M.choices(co.transport) or { "framed", "buffered" },
    server_transports = M.choices(so.transport) or { "auto", "framed", "buffered" },
    protocols = M.choices(co.protocol) or { "binary" },
    -- a server without a protocol option detects each connection's
    server_protocols = M.choices(so.protocol) or M.choices(co.protocol) or { "binary" },
    server_detects_protocol = so.protocol == nil,
    client_options = co,
    server_options = so,
  }
end

-- Options for petrel.client / petrel.server from the command line: each
-- given pass-through value goes to the library unchanged under its own
-- name when the library has that option; where it has not, the value it
-- would mean anyway (binary, no multiplexing, no headers) is dropped and
-- any other is refused with a clear message.
-- detected: options the library works out by itself where it has no
-- option for them (a server answers each connection in the protocol it
-- detects): a value it knows (lists) is dropped, not refused.
local IMPLIED = { protocol = "binary" }
function M.pass_through(out, spec, given, who, detected)
  for k, v in pairs(given) do
    local known = false
    for _, x in ipairs(detected and detected[k] or {}) do if x == v then known = true end end
    if v ~= nil and not known then
      if spec[k] then
        out[k] = v
      elseif IMPLIED[k] ~= v then
        M.usage("%s: this petrel has no %s option yet (%s)", who, k,
          k == "protocol" and "it speaks binary only" or "not supported here")
      end
    end
  end
  return out
end

-- "Name: value" header lines -> { Name = "value" }
function M.headers(list)
  if not list or #list == 0 then return nil end
  local t = {}
  for _, h in ipairs(list) do
    local k, v = h:match("^%s*([^:]+):%s*(.-)%s*$")
    if not k then M.usage("header %q: 'Name: value' expected", h) end
    t[k] = v
  end
  return t
end

-- ---- output -------------------------------------------------------------------------

-- Write a line (or text) on stdout.
function M.out(s)
  io.stdout:write(s, "\n")
  io.stdout:flush()
end

function M.err(s)
  io.stderr:write(s, "\n")
  io.stderr:flush()
end

-- Print value v of type node (values.lua) as JSON, or as Lua text with
-- petrel.dump when asked or when lua-cjson is missing (said on stderr).
function M.show(conv, node, v, o)
  if not o.lua then
    local cj, why = M.cjson()
    if cj then
      M.out(conv:json(node, v, { compact = o.compact }))
      return
    end
    if not o.quiet_fallback then M.err("petrel: " .. why .. "; showing Lua values instead of JSON") end
  end
  M.out(petrel.dump(v))
end

-- Is fd a terminal?
function M.isatty(fd) return core.isatty(fd) end

return M

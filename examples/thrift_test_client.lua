-- examples/thrift_test_client.lua: a petrel client making the checks of
-- Apache Thrift's cross-language test client (test/py/TestClient.py of 0.17:
-- 22 checks, the same values and criteria, each on a fresh connection), and
-- a few more, against any ThriftTest server (spec/thrift/thrift_test.thrift),
-- for example Apache's Python test server (tools/crossserver.py here):
--
--   /usr/bin/python3 tools/crossserver.py --port 9090 --protocol binary --transport framed
--   lua5.4 examples/thrift_test_client.lua --port 9090 --protocol binary --transport framed
--
-- Options (Apache's names; "--name value" or "--name=value"):
--   --host ADDR         server address (default 127.0.0.1)
--   --port N            server port (default 9090)
--   --domain-socket P   connect to a unix socket instead
--   --transport T       buffered (default) | framed
--   --protocol P        binary (default), accel, compact, accelc, json, header,
--                       multi, multia, multic, multiac, multih, multij
--   --timeout S         seconds per call (default 10)
--   --apache-only       only Apache's 22 checks (not the extra ones)
--   --backend B         epoll | uring | auto (default: $PETREL_BACKEND or epoll)
--   --quiet, -q         print failures and the summary only
--   CHECK ...           run only these checks
-- Prints "ok NAME" or "FAIL NAME: why" per check and a summary
-- "thrift_test_client: N/M passed (A/22 of Apache's checks, ...)"; exits 0 when all passed, 1 when
-- one failed, 2 on bad usage.
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")
  .. "/thrift_test_common.lua")
common.setup_paths()
local petrel = require "petrel"

local opts, names, usage = common.cli("thrift_test_client",
  "[--host ADDR] [--port N | --domain-socket PATH] [--transport buffered|framed]\n" ..
  "  [--protocol NAME] [--timeout S] [--apache-only] [--backend B] [-q] [CHECK ...]", {
    host = "string", port = "number", ["domain-socket"] = "string", transport = "string",
    protocol = "string", timeout = "number", ["apache-only"] = "flag", backend = "string",
    quiet = "flag", verbose = "flag",
  }, { ["-q"] = "quiet", ["-v"] = "verbose" }, common.TRANSPORTS, "buffered")
local proto_name, transport = opts.protocol, opts.transport
local proto = common.protocol(proto_name)

local ns = assert(petrel.load(common.IDL))
local loop = assert(petrel.loop(opts.backend and { backend = opts.backend } or nil))
local timeout_ms = math.floor((opts.timeout or 10) * 1000)

-- ---- values -------------------------------------------------------------

-- i64 values beyond 2^53: int64 cdata on LuaJIT, integers on Lua 5.4.
local I64_MAX, I64_MIN, SEVEN_FF
if jit then
  local ffi = require "ffi"
  I64_MIN = ffi.new("int64_t", -2 ^ 63)
  I64_MAX = -(I64_MIN + 1)
  SEVEN_FF = ffi.new("int64_t", 2 ^ 56) - 1
else
  I64_MAX, I64_MIN = math.maxinteger, math.mininteger
  SEVEN_FF = math.tointeger(2 ^ 56) - 1
end

-- A text that equal values share: integers whatever their representation
-- (Lua integer, float, int64 cdata), tables by sorted keys.
local function ctext(v)
  local t = type(v)
  if t == "number" then
    if math.type and math.type(v) == "integer" then return string.format("i%d", v) end
    if v == math.floor(v) and v > -2 ^ 63 and v < 2 ^ 63 then return string.format("i%.0f", v) end
    return string.format("f%.17g", v)
  elseif t == "cdata" then
    return "i" .. tostring(v):gsub("U?LL$", "")
  elseif t == "string" then
    return string.format("%q", v)
  elseif t == "table" then
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = ctext(k) .. "=" .. ctext(x) end
    table.sort(parts)
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return tostring(v)
end

-- Set elements sorted, so sets compare whatever their wire order.
local function as_set(arr)
  if type(arr) ~= "table" then return arr end
  local out = {}
  for i = 1, #arr do out[i] = arr[i] end
  table.sort(out, function(a, b) return ctext(a) < ctext(b) end)
  return out
end

local Fail = {}
local function fail(msg) error(setmetatable({ msg = msg }, Fail), 0) end

local function show(v)
  if type(v) == "table" and not getmetatable(v) then return ctext(v) end
  return tostring(v)
end

-- expect(what, got, err, want): got must equal want (err: the call's error)
local function expect(what, got, err, want)
  if got == nil and err ~= nil then fail(what .. ": " .. show(err)) end
  if ctext(got) ~= ctext(want) then
    fail(string.format("%s: got %s, want %s", what, show(got), show(want)))
  end
end

-- ---- connections ----------------------------------------------------------

local function new_client(service, service_name)
  local o = { loop = loop, service = service, transport = transport, timeout = timeout_ms,
    connect_timeout = timeout_ms, host = opts.host or "127.0.0.1", port = opts.port or 9090,
    unix = opts["domain-socket"] }
  for k, v in pairs(common.client_opts(proto, service_name, transport)) do o[k] = v end
  return petrel.client(o)
end

-- One connection per check (as each of Apache's test methods opens one):
-- a ThriftTest client, and a SecondService client when multiplexed.
local function session()
  local s = { client = new_client(ns.ThriftTest, "ThriftTest") }
  if proto.multiplexed then s.client2 = new_client(ns.SecondService, "SecondService") end
  return s
end

-- ---- the checks -----------------------------------------------------------
-- apache = true: one of Apache's TestClient.py checks (same values, same
-- criteria; the test strings are petrel's own).

local STR_ESCAPES = 'tab\t lf\n cr\r bs\b ff\f quote" backslash\\\\ slash/ {}[]:, ペトレル'
local STR_SCRIPTS = [[Ελληνικά · Русский · Українська · Српски · עברית · العربية ·
  فارسی · हिन्दी · বাংলা · தமிழ் · ಕನ್ನಡ · ไทย · ລາວ · ქართული · Հայերեն ·
  한국어 · 日本語 · 中文 · 粵語 · Tiếng Việt · Türkçe · Íslenska · Føroyskt ·
  Čeština · Ærøskøbing · Ñandú · ᏣᎳᎩ · Ṁìng-dĕ̤ng-ngṳ̄ (combining marks) ·
  𝄞 𐍈 😀 (outside the BMP) · ∮ E⋅da = Q · ½ ≠ 0.5̅]]

local function xtruct(s, b, i, l)
  return { string_thing = s, byte_thing = b, i32_thing = i, i64_thing = l }
end

local CHECKS = {}
local function check(name, apache, fn)
  CHECKS[#CHECKS + 1] = { name = name, apache = apache, fn = fn }
end

local function echo(c, method, values)
  for _, v in ipairs(values) do
    local got, e = c[method](c, v)
    expect(method .. "(" .. show(v):sub(1, 40) .. ")", got, e, v)
  end
end

check("testVoid", true, function(s)
  local r, e = s.client:testVoid()
  expect("testVoid()", r, e, true)
end)

check("testString", true, function(s)
  echo(s.client, "testString", { string.rep("Python", 20), "", STR_ESCAPES, STR_SCRIPTS })
end)

check("testMultiplexed", true, function(s)
  -- passes without a call unless the protocol is multiplexed (as Apache's)
  if s.client2 then
    local r, e = s.client2:secondtestString("foobar")
    expect("secondtestString", r, e, 'testString("foobar")')
  end
end)

check("testBool", true, function(s)
  local r, e = s.client:testBool(true)
  expect("testBool(true)", r, e, true)
  r, e = s.client:testBool(false)
  if e ~= nil then fail("testBool(false): " .. show(e)) end
  expect("testBool(false)", r, e, false)
end)

check("testByte", true, function(s) echo(s.client, "testByte", { 63, -127 }) end)
check("testI32", true, function(s) echo(s.client, "testI32", { -1, 0 }) end)
check("testI64", true, function(s) echo(s.client, "testI64", { 1, -34359738368 }) end)
check("testDouble", true, function(s)
  echo(s.client, "testDouble", { -5.235098235, 0, -1, -0.000341012439638598279 })
end)

check("testBinary", true, function(s)
  local b = {}
  for i = 0, 255 do b[#b + 1] = string.char(i) end
  echo(s.client, "testBinary", { table.concat(b) })
end)

check("testStruct", true, function(s)
  echo(s.client, "testStruct", { xtruct("Zero", 1, -3, -5) })
end)

check("testNest", true, function(s)
  echo(s.client, "testNest", { { byte_thing = 0, struct_thing = xtruct("Zero", 1, -3, -5),
    i32_thing = 0 } })
end)

check("testMap", true, function(s)
  echo(s.client, "testMap", { { [0] = 1, [1] = 2, [2] = 3, [3] = 4, [-1] = -2 } })
end)

check("testSet", true, function(s)
  local r, e = s.client:testSet({ 8, 1, 42 })
  expect("testSet", as_set(r), e, as_set({ 8, 1, 42 }))
end)

check("testList", true, function(s) echo(s.client, "testList", { { 1, 4, 9, -42 } }) end)
check("testEnum", true, function(s) echo(s.client, "testEnum", { ns.Numberz.FIVE }) end)
check("testTypedef", true, function(s) echo(s.client, "testTypedef", { SEVEN_FF }) end)

check("testMapMap", true, function(s)
  local r, e = s.client:testMapMap(42)
  expect("testMapMap(42)", r, e, { [-4] = { [-4] = -4, [-3] = -3, [-2] = -2, [-1] = -1 },
    [4] = { [1] = 1, [2] = 2, [3] = 3, [4] = 4 } })
end)

check("testMulti", true, function(s)
  local r, e = s.client:testMulti(74, 0xff00ff, 0xffffffffd0d0, { [0] = "abc" },
    ns.Numberz.FIVE, 0xf0f0f0)
  expect("testMulti", r, e, xtruct("Hello2", 74, 0xff00ff, 0xffffffffd0d0))
end)

-- A declared exception: nil, err with err.kind == "exception".
local function expect_exception(what, r, e, field, want)
  if r ~= nil or type(e) ~= "table" or e.kind ~= "exception" then
    fail(string.format("%s: got %s, %s; want exception %s", what, show(r), show(e), field))
  end
  if e.name ~= field then fail(what .. ": exception field " .. tostring(e.name) .. ", want " .. field) end
  expect(what, e.value, nil, want)
end

check("testException", true, function(s)
  local c = s.client
  local r, e = c:testException("Safe")
  expect('testException("Safe")', r, e, true)
  r, e = c:testException("Xception")
  expect_exception('testException("Xception")', r, e, "err1",
    { errorCode = 1001, message = "Xception" })
  r, e = c:testException("TException")
  if r ~= nil or e == nil then
    fail('testException("TException") returned ' .. show(r))
  end
  if type(e) ~= "table" or e.kind ~= "application" then
    fail('testException("TException"): ' .. show(e) .. ", want a TApplicationException")
  end
  r, e = c:testException("success")
  expect('testException("success")', r, e, true)
end)

check("testMultiException", true, function(s)
  local c = s.client
  local r, e = c:testMultiException("Xception", "ignore")
  expect_exception('testMultiException("Xception")', r, e, "err1",
    { errorCode = 1001, message = "This is an Xception" })
  r, e = c:testMultiException("Xception2", "ignore")
  expect_exception('testMultiException("Xception2")', r, e, "err2",
    { errorCode = 2002, struct_thing = { string_thing = "This is an Xception2" } })
  r, e = c:testMultiException("success", "foobar")
  expect('testMultiException("success")', r, e, { string_thing = "foobar" })
end)

check("testOneway", true, function(s)
  local t0 = loop:now()
  local r, e = s.client:testOneway(1)
  expect("testOneway(1)", r, e, true)
  local took = loop:now() - t0
  if took >= 3000 then fail(string.format("the oneway call took %d ms", took)) end
end)

check("testOnewayThenNormal", true, function(s)
  local r, e = s.client:testOneway(1)
  expect("testOneway(1)", r, e, true)
  r, e = s.client:testString("Python")
  expect("testString", r, e, "Python")
end)

-- more than Apache's Python client checks: the remaining methods and limits

check("testInsanity", false, function(s)
  local arg = { userMap = { [ns.Numberz.FIVE] = 5, [ns.Numberz.EIGHT] = 8 },
    xtructs = { xtruct("Goodbye4", 4, 4, 4), xtruct("Hello2", 2, 2, 2) } }
  local r, e = s.client:testInsanity(arg)
  local N = ns.Numberz
  expect("testInsanity", r, e, { [1] = { [N.TWO] = arg, [N.THREE] = arg }, [2] = { [N.SIX] = {} } })
end)

check("testStringMap", false, function(s)
  echo(s.client, "testStringMap", { { a = "2", b = "blah", some = "thing", [""] = "",
    ["ключ"] = STR_ESCAPES }, {} })
end)

check("testLimits", false, function(s)
  local c = s.client
  echo(c, "testByte", { 127, -128, 0 })
  echo(c, "testI32", { 2147483647, -2147483648 })
  echo(c, "testI64", { I64_MAX, I64_MIN, 2 ^ 53, -(2 ^ 53) })
  echo(c, "testDouble", { 1e300, -1e-300, 5e-324, 2 ^ 53 + 2, 0.1, math.huge, -math.huge })
  echo(c, "testBinary", { "", "\0", string.rep("\255\0", 40000) })
  echo(c, "testString", { string.rep("x", 100000) })
end)

check("testEmptyContainers", false, function(s)
  local c = s.client
  echo(c, "testList", { {} })
  echo(c, "testMap", { {} })
  local r, e = c:testSet({})
  expect("testSet({})", r, e, {})
  echo(c, "testStruct", { {} })
end)

-- ---- running --------------------------------------------------------------

local want = {}
for _, n in ipairs(names) do
  local found = false
  for _, c in ipairs(CHECKS) do if c.name == n then found = true end end
  if not found then usage("unknown check " .. n) end
  want[n] = true
end

local passed, ran = 0, 0
local apache, apache_ok, more, more_ok = 0, 0, 0, 0
for _, c in ipairs(CHECKS) do
  if (#names == 0 or want[c.name]) and (c.apache or not opts["apache-only"]) then
    ran = ran + 1
    if c.apache then apache = apache + 1 else more = more + 1 end
    local t0 = loop:now()
    local okc, s = pcall(session)
    local e = s
    if okc then
      okc, e = pcall(c.fn, s)
      s.client:close()
      if s.client2 then s.client2:close() end
    end
    if okc then
      passed = passed + 1
      if c.apache then apache_ok = apache_ok + 1 else more_ok = more_ok + 1 end
      if not opts.quiet then print(string.format("ok %s (%.3f s)", c.name, (loop:now() - t0) / 1000)) end
    else
      local why = getmetatable(e) == Fail and e.msg or ("error: " .. tostring(e))
      print(string.format("FAIL %s: %s", c.name, why))
    end
    io.stdout:flush()
  end
end
local where = opts["domain-socket"] and ("unix:" .. opts["domain-socket"])
  or string.format("%s:%d", opts.host or "127.0.0.1", opts.port or 9090)
print(string.format("thrift_test_client: %d/%d passed (%d/%d of Apache's checks, %d/%d more; " ..
  "protocol %s, transport %s, %s, %s, %s)", passed, ran, apache_ok, apache, more_ok, more,
  proto_name, transport, where, jit and jit.version or _VERSION, (loop:backend())))
loop:free()
os.exit(ran > 0 and passed == ran and 0 or 1)

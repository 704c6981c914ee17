-- The petrel command line (bin/petrel), driven as a subprocess on the
-- runtime busted runs (lua5.4 or luajit: `luajit bin/petrel` runs it on
-- LuaJIT): every command, against Apache Thrift's Python library (a
-- server for `petrel call`, messages for `petrel decode`, a client for
-- `petrel serve --mock`), the C floor server for `petrel bench`, and the
-- REPL in a tmux pseudo-terminal serving another process while its prompt
-- waits. Everything talks to 127.0.0.1 or unix sockets, every process is
-- bounded by `timeout` and stopped by pid.
local cjson = require "cjson"
local net = require "support.net"
local petrel_mod = require "petrel"

local RT = jit and "luajit" or "lua5.4"
local PETREL = RT .. " bin/petrel"
local PY = "/usr/bin/python3"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local TMP = os.tmpname()
os.remove(TMP)
assert(os.execute("mkdir -p " .. q(TMP)))

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function spit(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Run a shell command (bounded), stdin from `input`: exit code, stdout, stderr.
local n_run = 0
local function sh(cmd, input)
  n_run = n_run + 1
  local base = TMP .. "/run" .. n_run
  spit(base .. ".in", input or "")
  local p = io.popen(string.format("timeout 120 %s < %s > %s 2> %s; echo $?", cmd,
    q(base .. ".in"), q(base .. ".out"), q(base .. ".err")))
  local code = tonumber(p:read("*a"))
  p:close()
  return code, slurp(base .. ".out"), slurp(base .. ".err")
end

local function petrel(args, input) return sh(PETREL .. " " .. args, input) end

-- A background process: pid, output file (stdout and stderr).
local function bg(cmd)
  n_run = n_run + 1
  local out = TMP .. "/bg" .. n_run
  local p = assert(io.popen("(exec timeout 300 " .. cmd .. ") > " .. q(out) .. " 2>&1 & echo $!"))
  local pid = tonumber(p:read("*l"))
  p:close()
  return pid, out
end

local function alive(pid)
  local ok = os.execute("kill -0 " .. pid .. " 2>/dev/null")
  return ok == true or ok == 0
end

local loop = petrel_mod.loop()

-- Poll pred() every 20 ms for up to ms (default 30 s): its last value.
local function wait_for(pred, ms)
  local deadline = loop:now() + (ms or 30000)
  local v = pred()
  while not v and loop:now() < deadline do
    loop:sleep(20)
    v = pred()
  end
  return v
end

local function stop(pid)
  if not pid then return end
  os.execute("kill " .. pid .. " 2>/dev/null")
  wait_for(function() return not alive(pid) end, 10000)
end

-- `petrel serve ...` in the background, once it says where it listens:
-- pid, port, output file.
local function serve(args)
  local pid, out = bg(PETREL .. " serve " .. args)
  local port = wait_for(function()
    return slurp(out):match("petrel serve: %S+ on [^%s]-:(%d+)")
  end)
  assert(port, "petrel serve did not start: " .. slurp(out))
  return pid, tonumber(port), out
end

local CALC = "spec/thrift/calc.thrift"
local WORKLOAD = "bench/workload.thrift"

describe("petrel command line (" .. RT .. ")", function()
  lazy_teardown(function() os.execute("rm -rf " .. q(TMP)) end)

  it("has --help for every command, a version, and exit code 2 for usage errors", function()
    local code, out = petrel("--help")
    assert.equal(0, code)
    assert.truthy(out:find("^Usage: petrel"))
    for _, cmd in ipairs({ "call", "serve", "decode", "encode", "bench", "repl", "idl",
      "idl check", "idl dump" }) do
      code, out = petrel(cmd .. " --help")
      assert.equal(0, code, cmd)
      assert.truthy(out:find("^Usage: petrel " .. cmd), out)
    end
    code, out = petrel("--version")
    assert.equal(0, code)
    assert.truthy(out:find("^petrel scm on " .. (jit and "LuaJIT" or "Lua 5.4")), out)
    local err
    code, out, err = petrel("frobnicate")
    assert.equal(2, code)
    assert.equal("", out)
    assert.truthy(err:find("unknown command 'frobnicate'"), err)
    code, _, err = petrel("call " .. CALC)
    assert.equal(2, code)
    assert.truthy(err:find("Usage: petrel call"), err)
    code, _, err = petrel("call " .. CALC .. " notanaddress Calc.add 1 2")
    assert.equal(2, code)
    assert.truthy(err:find('address "notanaddress"'), err)
    code, _, err = petrel("bench :1 " .. CALC .. " Calc.add 1 2 --conns 0")
    assert.equal(2, code)
    assert.truthy(err:find("conns"), err)
  end)

  it("checks IDL files (errors with line and column) and dumps the normalized schema", function()
    local code, out, err = petrel("idl check " .. CALC .. " " .. WORKLOAD)
    assert.equal(0, code, err)
    assert.truthy(out:find(CALC .. ": ok (1 struct, 1 exception, 1 service)", 1, true), out)
    spit(TMP .. "/bad.thrift", "struct Bad {\n  1: lst x\n}\n")
    code, out, err = petrel("idl check " .. TMP .. "/bad.thrift")
    assert.equal(1, code)
    assert.truthy(err:find("bad.thrift:2:6: unknown type 'lst'", 1, true), err)
    code, out = petrel("idl dump " .. CALC)
    assert.equal(0, code)
    local d = cjson.decode(out)
    assert.equal("i32", d.Calc.functions.add.result)
    assert.equal("Oops", d.Calc.functions.fail.throws[1].type)
    assert.equal("map<string,double>", d.Item.fields[4].type)
    code, out = petrel("idl dump --lua " .. CALC)
    assert.equal(0, code)
    assert.truthy(out:find('result = "i32"', 1, true), out)
  end)

  describe("call, against Apache Thrift's Python server", function()
    local pids, ports = {}, {}
    lazy_setup(function()
      for _, tr in ipairs({ "framed", "buffered", "compact" }) do
        local port = net.dead_port(loop)
        local pid, out = bg(string.format("%s tools/pyrpc.py serve --service calc --port %d "
          .. "--transport %s --protocol %s --duration 250", PY, port,
          tr == "compact" and "framed" or tr, tr == "compact" and "compact" or "accel"))
        pids[#pids + 1] = pid
        assert(wait_for(function() return slurp(out):find("ready") end), slurp(out))
        ports[tr] = port
      end
    end)
    lazy_teardown(function() for _, pid in ipairs(pids) do stop(pid) end end)

    it("calls methods with JSON and Lua arguments over both transports, Binary and Compact", function()
      for tr, port in pairs(ports) do
        local flags = tr == "compact" and " -p compact" or (" -t " .. tr)
        local code, out, err = petrel("call " .. CALC .. " :" .. port .. " Calc.add 40 2" .. flags)
        assert.equal(0, code, err)
        assert.equal("42\n", out)
        -- an object of argument names, an i64 beyond 2^53, UTF-8, a map
        local item = '{"id": -9007199254740993, "name": "é", "nums": [1, -2, 3], "attrs": {"x": 1.5}}'
        code, out, err = petrel("call " .. CALC .. " 127.0.0.1:" .. port .. " echo " ..
          q('{"it": ' .. item .. '}') .. flags .. " --compact")
        assert.equal(0, code, err)
        assert.equal('{"id":-9007199254740993,"name":"é","nums":[1,-2,3],"attrs":{"x":1.5}}\n', out)
        -- the argument's value alone, as a Lua table literal, --lua output
        code, out, err = petrel("call " .. CALC .. " :" .. port .. " Calc.echo --lua " ..
          q('{id = 5, name = "n", nums = {7}}') .. flags)
        assert.equal(0, code, err)
        assert.equal('{id = 5, name = "n", nums = list{7}}\n', out)
        -- positional JSON array; a list result; void and oneway
        code, out = petrel("call " .. CALC .. " :" .. port .. " Calc.many " .. q('[2, "p"]') ..
          flags .. " --compact")
        assert.equal(0, code)
        assert.equal('[{"id":0,"name":"p0","nums":[]},{"id":1,"name":"p1","nums":[0]}]\n', out)
        code, out = petrel("call " .. CALC .. " :" .. port .. " Calc.ping" .. flags)
        assert.equal(0, code)
        assert.equal("null\n", out)
        code, out = petrel("call " .. CALC .. " :" .. port .. " Calc.note '\"hi\"'" .. flags)
        assert.equal(0, code)
        assert.equal("null\n", out)
      end
    end)

    it("prints declared exceptions with their fields and exits 1", function()
      local code, out, err = petrel("call " .. CALC .. " :" .. ports.framed .. " Calc.fail 7 --compact")
      assert.equal(1, code)
      assert.equal('{"oops":{"message":"failed with 7","code":7}}\n', out)
      assert.truthy(err:find("Calc.fail threw oops (Oops)", 1, true), err)
    end)

    it("reports transport failures (exit 1) and arguments that do not fit (exit 2)", function()
      local code, out, err = petrel("call " .. CALC .. " :" .. net.dead_port(loop) .. " Calc.add 1 2")
      assert.equal(1, code)
      assert.equal("", out)
      assert.truthy(err:find("connect 127.0.0.1:%d+: Connection refused"), err)
      local port = ports.framed
      code, _, err = petrel("call " .. CALC .. " :" .. port .. " Calc.nosuch")
      assert.equal(2, code)
      assert.truthy(err:find('service Calc has no method "nosuch" (methods: add, echo', 1, true), err)
      code, _, err = petrel("call " .. CALC .. " :" .. port .. " Calc.add '\"x\"' 2")
      assert.equal(2, code)
      assert.truthy(err:find('a: an integer (i32) expected, got "x"', 1, true), err)
      code, _, err = petrel("call " .. CALC .. " :" .. port .. " Calc.echo " ..
        q('{"it": {"id": 1, "nmae": "x"}}'))
      assert.equal(2, code)
      assert.truthy(err:find('it: Item has no field "nmae" (fields: id, name, nums, attrs)', 1, true), err)
      code, _, err = petrel("call " .. CALC .. " :" .. port .. " Calc.add 1 2 3")
      assert.equal(2, code)
      assert.truthy(err:find("Calc.add takes 2 arguments (a, b), got 3", 1, true), err)
      code, _, err = petrel("call " .. CALC .. " :" .. port .. " Calc.add 1 2 --protocol nosuch")
      assert.equal(2, code)
      assert.truthy(err:find("protocol", 1, true), err)
    end)
  end)

  describe("decode and encode", function()
    local msgs = {}
    lazy_setup(function()
      local code, out, err = sh(PY .. " tools/pymsg.py")
      assert(code == 0, err)
      for name, hex in out:gmatch("(%S+) (%x+)") do msgs[name] = hex end
    end)

    it("decodes structs Apache's Python library wrote (bench/data) and encodes them back byte for byte", function()
      for _, w in ipairs({ { "small", "Request" }, { "medium", "Request" }, { "mytest", "MyTest" },
        { "blob", "Blob" } }) do
        local code, json, err = petrel("decode " .. WORKLOAD .. " " .. w[2] .. " bench/data/" .. w[1] .. ".bin")
        assert.equal(0, code, err)
        spit(TMP .. "/" .. w[1] .. ".json", json)
        local bytes
        code, bytes, err = petrel("encode " .. WORKLOAD .. " " .. w[2] .. " @" .. TMP .. "/" .. w[1] .. ".json")
        assert.equal(0, code, err)
        assert.is_true(bytes == slurp("bench/data/" .. w[1] .. ".bin"), w[1])
      end
      -- exact i64 values in the JSON, not doubles
      local json = slurp(TMP .. "/small.json")
      assert.truthy(json:find('"user_id": -7340032000123456789', 1, true))
      assert.truthy(json:find("9007199254740993,", 1, true))
      -- stdin, hex and base64 input; Lua output
      local code, out = petrel("decode " .. WORKLOAD .. " Request - --lua", slurp("bench/data/small.bin"))
      assert.equal(0, code)
      assert.truthy(out:find("user_id = -7340032000123456789", 1, true), out)
      local hex = petrel_mod.hex(slurp("bench/data/small.bin"), { max = false })
      code, out = petrel("decode " .. WORKLOAD .. " Request -f hex --compact", hex)
      assert.equal(0, code)
      assert.equal(json:gsub("%s", ""), out:gsub("%s", ""))
      local b64
      code, b64 = petrel("encode " .. WORKLOAD .. " Request @" .. TMP .. "/small.json -f base64")
      assert.equal(0, code)
      code, out = petrel("decode " .. WORKLOAD .. " Request -f base64 --compact", b64)
      assert.equal(0, code)
      assert.equal(json:gsub("%s", ""), out:gsub("%s", ""))
    end)

    it("decodes whole messages Apache's Python library wrote, framed or not", function()
      local function dec(hex)
        local code, out, err = petrel("decode " .. CALC .. " --message -f hex --compact", hex)
        assert.equal(0, code, err)
        return out
      end
      assert.equal('{"type":"call","name":"echo","method":"Calc.echo","seqid":7,"framed":true,'
        .. '"args":{"it":{"id":-9007199254740993,"name":"é","nums":[1,-2,3],"attrs":{"x":1.5}}}}\n',
        dec(msgs.call_echo))
      assert.equal('{"type":"reply","name":"fail","method":"Calc.fail","seqid":8,'
        .. '"result":{"oops":{"message":"failed with 7","code":7}}}\n', dec(msgs.reply_fail))
      assert.equal('{"type":"reply","name":"add","method":"Calc.add","seqid":9,"result":{"success":42}}\n',
        dec(msgs.reply_add))
      assert.equal('{"type":"exception","name":"nope","seqid":10,"exception":{"message":"nope","type":1}}\n',
        dec(msgs.app_error))
      -- a capture of several messages in a row
      local out = dec(msgs.reply_add .. msgs.call_echo .. msgs.app_error)
      local n = select(2, out:gsub("\n", ""))
      assert.equal(3, n)
      -- Compact: the envelope says so
      assert.equal('{"type":"call","name":"add","method":"Calc.add","seqid":11,"protocol":"compact",'
        .. '"args":{"a":40,"b":2}}\n', dec(msgs.compact_add))
      local code, hex = petrel("encode " .. CALC .. " Calc.add '[40, 2]' -p compact --seqid 11 -f hex")
      assert.equal(0, code)
      assert.equal(msgs.compact_add, (hex:gsub("^%x+  ", ""):gsub("|.*", ""):gsub("%s", "")))
    end)

    it("walks any Binary bytes without an IDL, and says where bad bytes are", function()
      local code, out, err = petrel("decode --schemaless -f hex", msgs.call_echo)
      assert.equal(0, code, err)
      assert.equal([[
message call "echo" seqid 7 (framed, 83 bytes)
struct {
  1: struct {
    1: i64 = -9007199254740993
    2: string (2) = "é"
    3: list<i32> (3) [1, -2, 3]
    4: map<string,double> (1) {
      "x" => 1.5
    }
  }
}
]], out)
      code, out, err = petrel("decode --schemaless bench/data/small.bin")
      assert.equal(0, code, err)
      assert.truthy(out:find("1: i64 = -7340032000123456789", 1, true), out)
      assert.truthy(out:find("6: set<i32> (4) [1, 2, 4, 7]", 1, true), out)
      -- cut short: what was read, then where it stopped
      code, out, err = petrel("decode --schemaless", slurp("bench/data/small.bin"):sub(1, 100))
      assert.equal(1, code)
      assert.truthy(out:find("1: i64 = -7340032000123456789", 1, true), out)
      assert.truthy(err:find("stopped at offset 70: list<i64> of 20 elements cannot fit in the 30 bytes left", 1, true), err)
      -- typed decode errors: field path and offset
      code, out, err = petrel("decode " .. WORKLOAD .. " Request", slurp("bench/data/small.bin"):sub(1, 100))
      assert.equal(1, code)
      assert.truthy(err:find("Request.item_ids: 20 elements cannot fit in the 30 bytes left at offset 70", 1, true), err)
      code, out, err = petrel("decode " .. CALC .. " Nope", "")
      assert.equal(2, code)
      assert.truthy(err:find('no type "Nope"', 1, true), err)
    end)

    it("encodes call messages that decode back", function()
      local code, hex = petrel("encode " .. CALC .. " Calc.add '{\"a\": 40, \"b\": 2}' -f hex --seqid 9")
      assert.equal(0, code)
      assert.truthy(hex:find("80 01 00 01 00 00 00 03  61 64 64 00 00 00 09", 1, true), hex)
      local bin
      code, bin = petrel("encode " .. CALC .. " Calc.add '[40, 2]' --framed")
      assert.equal(0, code)
      assert.equal(34, #bin)
      local out, err
      code, out, err = petrel("decode " .. CALC .. " --message --compact", bin)
      assert.equal(0, code, err)
      assert.equal('{"type":"call","name":"add","method":"Calc.add","seqid":1,"framed":true,'
        .. '"args":{"a":40,"b":2}}\n', out)
      code, out, err = petrel("encode " .. CALC .. " Item '{\"id\": \"x\"}'")
      assert.equal(2, code)
      assert.truthy(err:find('Item.id: an i64 (a number, or a string of digits) expected, got "x"', 1, true), err)
    end)
  end)

  describe("serve", function()
    it("answers Apache's Python client with canned mock answers", function()
      -- exactly what tools/pyrpc.py call checks, as canned answers
      spit(TMP .. "/answers.json", [[{
        "add": 42,
        "echo": {"id": -9007199254740993, "name": "é", "nums": [1, -2, 3], "attrs": {"x": 1.5}},
        "Calc.notes": 2,
        "fail": {"$throw": "Oops", "value": {"message": "failed with 7", "code": 7}},
        "many": [{"id": 0, "name": "n0", "nums": []}, {"id": 1, "name": "n1", "nums": [0]},
                 {"id": 2, "name": "n2", "nums": [0, 1]}]
      }]])
      for _, tr in ipairs({ "framed", "buffered", "compact" }) do
        local pid, port, log = serve(CALC .. " --mock " .. TMP .. "/answers.json --port 0")
        local code, out, err = sh(string.format("%s tools/pyrpc.py call --service calc --port %d "
          .. "--transport %s --protocol %s", PY, port, tr == "compact" and "framed" or tr,
          tr == "compact" and "compact" or "accel"))
        stop(pid)
        assert.equal(0, code, out .. err .. slurp(log))
        assert.is_nil(out:find("FAIL"), out)
        assert.equal(6, select(2, out:gsub("ok ", "")), out)
      end
    end)

    it("answers with values built from defaults, on a unix socket too", function()
      local path = TMP .. "/mock.sock"
      local pid, out = bg(PETREL .. " serve " .. CALC .. " --mock --unix " .. path)
      assert(wait_for(function() return slurp(out):find("on unix:") end), slurp(out))
      local code, res, err = petrel("call " .. CALC .. " unix:" .. path .. " Calc.add 1 2")
      assert.equal(0, code, err)
      assert.equal("0\n", res)
      code, res = petrel("call " .. CALC .. " unix:" .. path .. " Calc.echo '{}' --compact")
      assert.equal(0, code)
      assert.equal('{"id":0,"name":"","nums":[]}\n', res)
      stop(pid)
    end)

    it("serves a handler file and reloads it when it changes", function()
      local h = TMP .. "/handler.lua"
      spit(h, "return { add = function(a, b) return a + b end }\n")
      local pid, port, log = serve(CALC .. " --handler " .. h .. " --port 0 --reload 100")
      local code, out = petrel("call " .. CALC .. " :" .. port .. " Calc.add 40 2")
      assert.equal(0, code)
      assert.equal("42\n", out)
      spit(h, "return { add = function(a, b) return a * b end }\n")
      assert.truthy(wait_for(function()
        local _, o = petrel("call " .. CALC .. " :" .. port .. " Calc.add 40 2")
        return o == "80\n"
      end))
      -- a broken file: said on stderr, the previous functions stay
      spit(h, "return { add = function(a, b) return a - b end, nosuch = function() end }\n")
      assert.truthy(wait_for(function() return slurp(log):find("keeping the previous handler") end))
      code, out = petrel("call " .. CALC .. " :" .. port .. " Calc.add 40 2")
      assert.equal("80\n", out)
      assert.truthy(slurp(log):find("handler 'nosuch' is not a function of service Calc", 1, true))
      stop(pid)
      assert.is_false(alive(pid))
    end)
  end)

  describe("bench", function()
    local floor_pid, floor_port, floor
    lazy_setup(function()
      floor = TMP .. "/c_epoll_echo"
      local code, _, err = sh("cc -O2 -o " .. q(floor) .. " bench/peers/c_epoll_echo.c")
      assert(code == 0, err)
      floor_port = net.dead_port(loop)
      local out
      floor_pid, out = bg(floor .. " --port " .. floor_port .. " --thrift --duration 250")
      assert(wait_for(function() return slurp(out):find("listening") end), slurp(out))
      local c
      c, _, err = petrel("decode " .. WORKLOAD .. " Request bench/data/small.bin --compact")
      assert(c == 0, err)
    end)
    lazy_teardown(function() stop(floor_pid) end)

    it("drives the C floor server and reports calls/s and percentiles", function()
      local _, req = petrel("decode " .. WORKLOAD .. " Request bench/data/small.bin --compact")
      spit(TMP .. "/req.json", req)
      local code, out, err = petrel("bench :" .. floor_port .. " " .. WORKLOAD ..
        " Echo.echo @" .. TMP .. "/req.json -c 4 -d 1 --warmup 0.2 --json")
      assert.equal(0, code, err)
      local r = cjson.decode(out)
      assert.equal("Echo.echo", r.method)
      assert.is_true(r.calls > 50, out)
      assert.equal(0, r.errors)
      assert.equal(1005, r.request_bytes)
      assert.is_true(r.min_us > 0 and r.min_us <= r.p50_us and r.p50_us <= r.p90_us and
        r.p90_us <= r.p99_us and r.p99_us <= r.p999_us and r.p999_us <= r.max_us, out)
      assert.is_true(math.abs(r.secs - 1) < 0.05, out)
      -- text output, pipelining, a rate
      code, out, err = petrel("bench 127.0.0.1:" .. floor_port .. " " .. WORKLOAD ..
        " Echo.echo @" .. TMP .. "/req.json -c 2 --depth 8 -d 1 --warmup 0 --rate 500")
      assert.equal(0, code, err)
      assert.truthy(out:find("2 connections x 8 in flight, 500 calls/s for 1 s", 1, true), out)
      local calls = tonumber(out:match("calls +(%d+) in"))
      assert.is_true(calls > 100 and calls <= 505, out)
      assert.truthy(out:find("latency    p50 ", 1, true), out)
      -- both ways of moving bytes (direct recv/send on the loop's readiness,
      -- the loop's connections), pipelined
      for _, io in ipairs({ "direct", "loop" }) do
        code, out, err = petrel("bench :" .. floor_port .. " " .. WORKLOAD .. " Echo.echo @" ..
          TMP .. "/req.json -c 3 --depth 16 -d 0.5 --warmup 0.1 --io " .. io .. " --json")
        assert.equal(0, code, err)
        r = cjson.decode(out)
        assert.is_true(r.calls > 100, io .. ": " .. out)
        assert.equal(0, r.errors, io .. ": " .. out)
        assert.is_true(r.sent >= r.calls, out)
      end
    end)

    it("drives a petrel server over the buffered transport, and fails on refused connects", function()
      local pid, port = serve(CALC .. " --mock --port 0")
      local code, out, err = petrel("bench :" .. port .. " " .. CALC ..
        " Calc.add 1 2 -c 2 -d 0.5 --warmup 0 -t buffered --json")
      stop(pid)
      assert.equal(0, code, err)
      local r = cjson.decode(out)
      assert.is_true(r.calls > 20, out)
      assert.equal(0, r.errors)
      code, out, err = petrel("bench :" .. net.dead_port(loop) .. " " .. CALC .. " Calc.add 1 2 -d 0.2")
      assert.equal(1, code)
      assert.truthy(err:find("Connection refused", 1, true), err)
    end)
  end)

  describe("repl", function()
    it("evaluates lines from a pipe, printing values", function()
      local code, out, err = petrel("repl " .. CALC, "1 + 1\nx = {a = 1}\nx\ncalc.Calc.order[1]\n"
        .. "for i = 1,\n2 do io.write(i, ' ') end print()\n:help\nerror('boom')\n")
      assert.equal(0, code, err)
      assert.truthy(out:find('^2\n{a = 1}\n"add"\n1 2 \npetrel repl:'), out)
      assert.truthy(out:find("stdin:1: boom", 1, true), out)
    end)

    it("keeps the loop running while the prompt waits (a pseudo-terminal in tmux)", function()
      if not os.execute("command -v tmux > /dev/null") then
        pending("SKIP: tmux is not installed (tools/deps.sh installs it)")
        return
      end
      local sock = TMP .. "/tmux.sock"
      local home = TMP .. "/home"
      os.execute("mkdir -p " .. q(home))
      local function tmux(args) return sh("tmux -S " .. q(sock) .. " " .. args) end
      local function screen()
        local _, out = tmux("capture-pane -p -S -200")
        return out
      end
      local function type_line(s) tmux("send-keys -t repl -l " .. q(s)); tmux("send-keys -t repl Enter") end
      local code, _, err = tmux("new-session -d -s repl -x 200 -y 50 " ..
        q("cd " .. q(io.popen("pwd"):read("*l")) .. " && HOME=" .. q(home) .. " exec " .. PETREL ..
          " repl " .. CALC))
      assert.equal(0, code, err)
      local ok, e = pcall(function()
        assert.truthy(wait_for(function() return screen():find("petrel repl %(") end), screen())
        type_line("srv = petrel.server { service = calc.Calc, port = 0, logger = false, " ..
          "handler = { add = function(a, b) return a + b end } }")
        type_line("print('PORT=' .. srv.port)")
        type_line("ticks = 0; local function tick() ticks = ticks + 1; petrel.default_loop():after(20, tick) end; tick()")
        local port = wait_for(function() return screen():match("PORT=(%d+)") end)
        assert.truthy(port, screen())
        -- the prompt is idle; other processes call the server started there
        for _ = 1, 3 do
          local c, out, err2 = petrel("call " .. CALC .. " :" .. port .. " Calc.add 40 2")
          assert.equal(0, c, err2)
          assert.equal("42\n", out)
        end
        local c, out = sh(PY .. " -c " .. q(
          "import socket,struct\n" ..
          "s=socket.create_connection(('127.0.0.1'," .. port .. "),timeout=30)\n" ..
          "m=bytes.fromhex('80010001000000036164640000000108000100000028080002000000020" .. "0')\n" ..
          "s.sendall(struct.pack('!i',len(m))+m)\n" ..
          "b=b''\n" ..
          "while len(b)<4 or len(b)<4+struct.unpack('!i',b[:4])[0]: b+=s.recv(4096)\n" ..
          "print(b[-5:].hex())\n"))
        assert.equal(0, c, out)
        assert.equal("0000002a00\n", out) -- i32 42, then the struct's stop
        -- timers fire while nobody types: the 20 ms timer's count before
        -- and after 1.5 s at an idle prompt (a count over the calls above
        -- would depend on how fast they ran); 5 of the 75 ticks due, so a
        -- busy machine that keeps the REPL off the CPU a while still passes
        type_line("print('TICKS1=' .. ticks, 'CALLS=' .. srv:stats().calls)")
        local t1, calls = nil, nil
        assert.truthy(wait_for(function()
          t1, calls = screen():match("TICKS1=(%d+)%s+CALLS=(%d+)")
          return t1
        end), screen())
        assert.equal(4, tonumber(calls))
        os.execute("sleep 1.5")
        type_line("print('TICKS2=' .. ticks)")
        local t2 = wait_for(function() return screen():match("TICKS2=(%d+)") end)
        assert.truthy(t2, screen())
        assert.is_true(tonumber(t2) - tonumber(t1) >= 5, screen())
        type_line(":quit")
        assert.truthy(wait_for(function()
          local gone = tmux("has-session -t repl")
          return gone ~= 0
        end))
      end)
      tmux("kill-server")
      assert(ok, e)
    end)
  end)
end)

-- examples/thrift_test_server.lua: petrel serving ThriftTest, the service of
-- Apache Thrift's cross-language tests (spec/thrift/thrift_test.thrift), with
-- the handlers Apache's test servers have and their command-line options, so
-- that Apache's test clients (test/py/TestClient.py, or tools/crossclient.py
-- here) can be run against petrel:
--
--   lua5.4 examples/thrift_test_server.lua --port 9090 --protocol binary --transport framed
--   /usr/bin/python3 tools/crossclient.py --port 9090 --protocol binary --transport framed
--
-- Options (Apache's names; "--name value" or "--name=value"):
--   --port N            TCP port (default 9090; 0 picks a free one)
--   --host ADDR         address to listen on (default 127.0.0.1)
--   --domain-socket P   listen on a unix socket instead
--   --transport T       buffered | framed | auto (default auto: petrel detects
--                       framed or unframed per connection; header rows
--                       always detect, as a THeader frame has its own length)
--   --protocol P        one of Apache's protocol names (binary, accel, compact,
--                       accelc, json, header, multi, multia, multic, multiac,
--                       multih, multij; default binary). The server detects
--                       the protocol of each connection; multi* also hosts
--                       SecondService.
--   --workers N, -n N   worker processes (SO_REUSEPORT; needs a fixed port)
--   --server-type T     accepted for compatibility (simple, threaded,
--                       thread-pool, nonblocking): petrel has one server
--   --backend B         epoll | uring | auto (default: $PETREL_BACKEND or epoll)
--   --verbose, -v       log every call on stderr;  --quiet, -q  no ready line
-- Prints "thrift_test_server: ready on HOST:PORT (...)" once listening;
-- serves until SIGTERM or SIGINT, then finishes the calls in flight and exits.
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")
  .. "/thrift_test_common.lua")
common.setup_paths()
local petrel = require "petrel"

local opts, pos, usage = common.cli("thrift_test_server",
  "[--port N | --domain-socket PATH] [--host ADDR] [--transport buffered|framed|auto]\n" ..
  "  [--protocol NAME] [--workers N] [--backend B] [-v|-q]", {
    port = "number", host = "string", ["domain-socket"] = "string", transport = "string",
    protocol = "string", workers = "number", ["server-type"] = "string", backend = "string",
    verbose = "flag", quiet = "flag",
    -- Apache's servers take these too; petrel's limits are max_frame and
    -- the codec's own checks
    ["string-limit"] = "number", ["container-limit"] = "number",
  }, { ["-n"] = "workers", ["-v"] = "verbose", ["-q"] = "quiet" },
  { "buffered", "framed", "auto" }, "auto")
if #pos > 0 then usage("unexpected argument " .. pos[1]) end
if opts["server-type"] then
  local ok, err = common.choice("server type", opts["server-type"],
    { "simple", "threaded", "thread-pool", "nonblocking" })
  if not ok then usage(err) end
end
local proto_name, transport = opts.protocol, opts.transport
local proto = common.protocol(proto_name)

local ns = assert(petrel.load(common.IDL))
local loop
if opts.backend then
  loop = assert(petrel.loop { backend = opts.backend })
end

local function log(fmt, ...)
  if opts.verbose then io.stderr:write(string.format(fmt, ...), "\n") end
end

-- ThriftTest as Apache's test servers implement it.
local handler = {
  testVoid = function() log("testVoid()") end,
  testString = function(s) log("testString(%q)", s); return s end,
  testBool = function(b) log("testBool(%s)", tostring(b)); return b end,
  testByte = function(v) log("testByte(%s)", tostring(v)); return v end,
  testI32 = function(v) log("testI32(%s)", tostring(v)); return v end,
  testI64 = function(v) log("testI64(%s)", tostring(v)); return v end,
  testDouble = function(v) log("testDouble(%s)", tostring(v)); return v end,
  testBinary = function(v) log("testBinary(%d bytes)", #v); return v end,
  testStruct = function(v) log("testStruct()"); return v end,
  testNest = function(v) log("testNest()"); return v end,
  testMap = function(v) log("testMap()"); return v end,
  testStringMap = function(v) log("testStringMap()"); return v end,
  testSet = function(v) log("testSet()"); return v end,
  testList = function(v) log("testList()"); return v end,
  testEnum = function(v) log("testEnum(%s)", tostring(v)); return v end,
  testTypedef = function(v) log("testTypedef(%s)", tostring(v)); return v end,
  testMapMap = function(hello)
    log("testMapMap(%s)", tostring(hello))
    return { [-4] = { [-4] = -4, [-3] = -3, [-2] = -2, [-1] = -1 },
             [4] = { [1] = 1, [2] = 2, [3] = 3, [4] = 4 } }
  end,
  testInsanity = function(argument)
    log("testInsanity()")
    local N = ns.Numberz
    return { [1] = { [N.TWO] = argument, [N.THREE] = argument },
             [2] = { [N.SIX] = {} } }
  end,
  testMulti = function(arg0, arg1, arg2)
    log("testMulti(%s, %s, %s)", tostring(arg0), tostring(arg1), tostring(arg2))
    return { string_thing = "Hello2", byte_thing = arg0, i32_thing = arg1, i64_thing = arg2 }
  end,
  testException = function(arg)
    log("testException(%q)", arg)
    if arg == "Xception" then
      error(petrel.throw("err1", { errorCode = 1001, message = arg }))
    elseif arg == "TException" then
      -- not declared: the caller gets a TApplicationException
      error("This is a TException", 0)
    end
  end,
  testMultiException = function(arg0, arg1)
    log("testMultiException(%q, %q)", arg0, arg1)
    if arg0 == "Xception" then
      error(petrel.throw("err1", { errorCode = 1001, message = "This is an Xception" }))
    elseif arg0 == "Xception2" then
      error(petrel.throw("err2", { errorCode = 2002,
        struct_thing = { string_thing = "This is an Xception2" } }))
    end
    return { string_thing = arg1 }
  end,
  testOneway = function(seconds)
    log("testOneway(%d): sleeping", seconds)
    -- yields to the loop: the connection's other calls go on meanwhile
    petrel.sleep(seconds * 1000)
    log("testOneway(%d): done", seconds)
  end,
}

local second_handler = {
  secondtestString = function(s) return 'testString("' .. s .. '")' end,
}

local server_opts = {
  service = ns.ThriftTest, handler = handler, loop = loop,
  host = opts.host or "127.0.0.1", port = opts.port or 9090, unix = opts["domain-socket"],
  transport = transport, workers = opts.workers,
  on_ready = function(srv)
    if opts.quiet then return end
    local where = opts["domain-socket"] and ("unix:" .. opts["domain-socket"])
      or string.format("%s:%d", opts.host or "127.0.0.1", srv.port)
    print(string.format("thrift_test_server: ready on %s (protocol %s, transport %s, %s, %s, pid %d)",
      where, proto_name, srv.transport or transport, jit and jit.version or _VERSION,
      (srv.loop:backend()), petrel.core.getpid()))
    io.stdout:flush()
  end,
}
for k, v in pairs(common.server_opts(proto, {
  ThriftTest = { service = ns.ThriftTest, handler = handler },
  SecondService = { service = ns.SecondService, handler = second_handler },
})) do server_opts[k] = v end

local done, serr = petrel.serve(server_opts)
if not done then
  io.stderr:write("thrift_test_server: ", tostring(serr), "\n")
  os.exit(1)
end

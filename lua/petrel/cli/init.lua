-- petrel.cli: the `petrel` command (bin/petrel): call, serve, decode,
-- encode, bench, idl check|dump, repl. Arguments are parsed with
-- lua-argparse; each command is a module petrel.cli.<name> with
-- run(args) -> exit code. Exit codes: 0 ok, 1 the work failed, 2 usage.
-- Errors go to stderr. docs/cli.md describes every command.
local util = require "petrel.cli.util"

local M = {}

local function need_argparse()
  local ok, argparse = pcall(require, "argparse")
  if ok then return argparse end
  util.failed("lua-argparse is not installed for %s (Debian: apt-get install lua-argparse; "
    .. "LuaRocks: luarocks install argparse)", util.runtime)
end

-- Options every networked command shares.
local function conn_options(cmd, sp, client)
  cmd:option("-t --transport",
    "Transport: " .. table.concat(client and sp.client_transports or sp.server_transports, ", ")
      .. "."):argname("NAME")
  cmd:option("-p --protocol", "Protocol: " .. table.concat(
    client and sp.protocols or sp.server_protocols, ", ") ..
    ((not client and sp.server_detects_protocol) and " (the server answers each connection "
      .. "in the one it detects)" or "") .. "."):argname("NAME")
  cmd:option("-I --include", "Directory searched for IDL includes (repeatable)."):count("*"):argname("DIR")
    :argname("DIR")
  cmd:option("--backend", "Loop back end: epoll, uring or auto.")
    :choices({ "epoll", "uring", "auto" })
end

local function build()
  local argparse = need_argparse()
  local sp = util.speaks()
  local p = argparse("petrel", "Thrift from the command line: call, serve, decode, encode, "
    .. "load-test and explore services from their IDL, with no code generation.")
    :command_target("command")
    :help_description_margin(34)
    :help_max_width(100)
    :epilog("Exit codes: 0 ok, 1 failed (a call, a decode, a server), 2 usage.\n"
      .. "`petrel COMMAND --help` describes a command.")
  p:flag("--version", "Print petrel's version and exit."):action(function()
    print(require("petrel")._VERSION .. " on " .. util.runtime)
    os.exit(0)
  end)

  -- call
  local c = p:command("call", "Call one method of a service and print the result.")
  c:argument("idl", "The service's .thrift file.")
  c:argument("address", "HOST:PORT, :PORT or unix:PATH.")
  c:argument("method", "Service.method (or method when only one service has it).")
  c:argument("args", "Arguments: one JSON object of argument names, one JSON array in order, "
    .. "or one value per argument (JSON or Lua literals); @FILE reads a file, - stdin. "
    .. "None: no arguments."):args("*")
  conn_options(c, sp, true)
  c:option("-m --multiplexed", "Service name for a multiplexed server (TMultiplexedProtocol).")
    :argname("NAME")
  c:option("-H --header", "Header 'Name: value' (THeader transports; repeatable)."):count("*")
    :argname("HDR")
  c:option("--timeout", "Milliseconds for the call (0: none).", "5000"):convert(tonumber)
  c:option("--connect-timeout", "Milliseconds to connect.", "3000"):convert(tonumber)
  c:flag("--lua", "Take ARGS as Lua and print the result as Lua (petrel.dump) instead of JSON.")
  c:flag("--compact", "JSON on one line.")
  c:epilog("Example: petrel call calc.thrift :9090 Calc.add 40 2\n"
    .. "         petrel call calc.thrift localhost:9090 Calc.echo '{\"it\": {\"id\": 1}}'")

  -- serve
  local s = p:command("serve", "Serve an IDL's service from a Lua handler file or with mock answers.")
  s:argument("idl", "The .thrift file.")
  s:argument("service", "Service to serve (needed when the IDL has several)."):args("?")
  s:option("--handler", "Lua file returning a table of functions (reloaded when it changes).")
  s:option("--mock", "Answer every call with a value built from defaults, or from this JSON "
    .. "file of canned answers ({\"method\": result, ...}); '-' or no file: defaults only.")
    :args("?")
  s:option("--host", "Address to listen on.", "127.0.0.1")
  s:option("--port", "Port (0: any free one; printed).", "9090"):convert(tonumber)
  s:option("--unix", "Listen on a unix socket at this path instead.")
  s:option("--workers", "Worker processes (SO_REUSEPORT; needs a fixed port).", "1"):convert(tonumber)
  conn_options(s, sp, false)
  s:option("--reload", "Milliseconds between checks of the handler file (0: never).", "1000")
    :convert(tonumber)
  s:flag("--debug", "Send handler errors to peers with file:line.")
  s:epilog("Example: petrel serve calc.thrift --mock --port 9090\n"
    .. "         petrel serve calc.thrift Calc --handler calc_handler.lua --port 0")

  -- decode
  local d = p:command("decode", "Decode Thrift bytes: a struct, a whole message, or any bytes "
    .. "without an IDL.")
  d:argument("idl", "The .thrift file (not with --schemaless)."):args("?")
  d:argument("rest", "TYPE [FILE|-] (a struct, or Service.method_args / _result), or with "
    .. "--message just [FILE|-]; no FILE: stdin."):args("*")
  d:flag("--message", "The input is a whole message (envelope, framed or not): finds the "
    .. "method's arguments or result.")
  d:flag("--schemaless", "Walk the bytes without an IDL: field ids, types and values.")
  d:option("-f --format", "Input bytes as raw, hex or base64.", "raw"):choices({ "raw", "hex", "base64" })
    :argname("FMT")
  d:option("-p --protocol", "Protocol: " .. table.concat(sp.protocols, ", ") .. "."):argname("NAME")
  d:option("-I --include", "Directory searched for IDL includes (repeatable)."):count("*"):argname("DIR")
  d:flag("--lua", "Print Lua (petrel.dump) instead of JSON.")
  d:flag("--compact", "JSON on one line.")
  d:epilog("Examples: petrel decode calc.thrift Item item.bin\n"
    .. "          petrel decode calc.thrift --message -f hex capture.hex\n"
    .. "          petrel decode --schemaless capture.bin")

  -- encode
  local e = p:command("encode", "Encode a value (JSON or Lua) of an IDL type into Thrift bytes.")
  e:argument("idl", "The .thrift file.")
  e:argument("type", "A struct, or Service.method (a whole CALL message of its arguments).")
  e:argument("value", "The value: JSON or a Lua literal; @FILE, - stdin (default).")
    :args("?")
  e:option("-f --format", "Output bytes as raw, hex or base64 (default: raw, hex on a terminal).")
    :choices({ "raw", "hex", "base64" }):argname("FMT")
  e:option("-p --protocol", "Protocol: " .. table.concat(sp.protocols, ", ") .. "."):argname("NAME")
  e:option("-I --include", "Directory searched for IDL includes (repeatable)."):count("*"):argname("DIR")
  e:flag("--framed", "With Service.method: put a frame length before the message.")
  e:option("--seqid", "With Service.method: the message's sequence id.", "1"):convert(tonumber)
  e:flag("--lua", "Take the value as Lua.")

  -- bench
  local b = p:command("bench", "Load-test a method: calls/s and latency percentiles.")
  b:argument("address", "HOST:PORT, :PORT or unix:PATH.")
  b:argument("idl", "The service's .thrift file.")
  b:argument("method", "Service.method.")
  b:argument("args", "Arguments, as for `petrel call`."):args("*")
  b:option("-c --conns", "Connections.", "10"):convert(tonumber):argname("N")
  b:option("--depth", "Calls in flight per connection (1: ping-pong; more: pipelining).", "1")
    :convert(tonumber)
  b:option("-d --duration", "Seconds measured.", "5"):convert(tonumber):argname("S")
  b:option("--warmup", "Seconds before measuring.", "1"):convert(tonumber)
  b:option("-r --rate", "Calls per second over all connections (0: as fast as the server "
    .. "answers); latency then counts from when each call was due.", "0"):convert(tonumber)
    :argname("N")
  b:option("--connect-timeout", "Milliseconds to connect.", "3000"):convert(tonumber)
  b:option("-t --transport", "Transport: framed, buffered."):argname("NAME")
  b:option("-p --protocol", "Protocol: binary."):argname("NAME")
  b:option("-I --include", "Directory searched for IDL includes (repeatable)."):count("*"):argname("DIR")
  b:option("--backend", "Loop back end of the load generator: epoll, uring or auto.")
    :choices({ "epoll", "uring", "auto" })
  b:option("--io", "How connections move bytes: direct (own recv/send on the loop's "
    .. "readiness), loop (the loop's connections and buffers) or auto (direct on epoll, "
    .. "loop on io_uring).", "auto"):choices({ "auto", "direct", "loop" })
  b:flag("--json", "Print the results as one JSON object.")
  b:flag("--lua", "Take ARGS as Lua.")
  b:flag("--quiet", "No progress line.")
  b:epilog("Example: petrel bench :9090 bench/workload.thrift Echo.echo @request.json -c 100 -d 10")

  -- idl
  local i = p:command("idl", "Check an IDL file, or print its normalized schema.")
  i:command_target("idl_command")
  local ic = i:command("check", "Parse and compile; report errors with line and column.")
  ic:argument("files", "The .thrift files."):args("+")
  ic:option("-I --include", "Directory searched for includes (repeatable)."):count("*"):argname("DIR")
  local id = i:command("dump", "Print the normalized schema (the tables petrel compiles).")
  id:argument("file", "The .thrift file.")
  id:option("-I --include", "Directory searched for includes (repeatable)."):count("*"):argname("DIR")
  id:flag("--lua", "Print Lua (petrel.dump) instead of JSON.")
  id:flag("--compact", "JSON on one line.")

  -- repl
  local r = p:command("repl", "A Lua prompt with petrel and the IDLs loaded; the loop keeps "
    .. "running while the prompt waits.")
  r:argument("idls", "IDL files to load (each as a global named after the file)."):args("*")
  r:option("-I --include", "Directory searched for IDL includes (repeatable)."):count("*"):argname("DIR")
  r:option("--backend", "Back end of the default loop: epoll, uring or auto.")
    :choices({ "epoll", "uring", "auto" })
  r:flag("--plain", "No line editing (lua-readline), plain lines from stdin.")

  -- usage errors exit 2 with the failing command's usage
  p.error = function(parser, msg)
    util.usage("%s\n\nError: %s", parser:get_usage(), msg)
  end
  return p
end

local COMMANDS = { call = "call", serve = "serve", decode = "codec", encode = "codec",
  bench = "bench", idl = "idl", repl = "repl" }

-- Run the command line argv (a list of strings): the exit code.
function M.main(argv)
  local ok, code = xpcall(function()
    local p = build()
    local args = p:parse(argv)
    local mod = require("petrel.cli." .. COMMANDS[args.command])
    return mod.run(args) or util.OK
  end, function(e)
    if util.is_fail(e) then return e end
    return { code = util.FAILED, msg = "internal error: " .. tostring(e) .. "\n" .. debug.traceback("", 2) }
  end)
  if ok then return code end
  local e = code
  local cmd = argv[1] and COMMANDS[argv[1]] and (" " .. argv[1]) or ""
  if e.msg:find("^Usage:") then
    util.err(e.msg)
  else
    util.err("petrel" .. cmd .. ": " .. e.msg)
  end
  return e.code
end

return M

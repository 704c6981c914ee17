-- petrel bench ADDRESS IDL Service.method [ARGS...]: a load test with the
-- core's load generator (pt_bench.c, on the petrel loop): connections,
-- calls in flight per connection, duration, warm-up, a rate. Prints
-- calls/s and the latency percentiles; a live progress line while it runs
-- when stdout is a terminal; --json for scripts.
local petrel = require "petrel"
local core = require "petrel.core"
local util = require "petrel.cli.util"
local values = require "petrel.cli.values"

local M = {}

local function us(x)
  if x >= 1e6 then return string.format("%.2f s", x / 1e6) end
  if x >= 1e4 then return string.format("%.1f ms", x / 1e3) end
  if x >= 1e3 then return string.format("%.2f ms", x / 1e3) end
  return string.format("%.0f us", x)
end

-- The request message, as it goes on the wire.
local function request(args, conv, fn, sname, mname, framed)
  local argv = require("petrel.cli.call").arguments(conv, sname, mname, fn, args.args,
    { lua = args.lua })
  local t = {}
  for i, f in ipairs(conv:args(sname, mname).fields) do t[f.name] = argv[i] end
  local buf = petrel.buffer()
  local ok, err = pcall(fn.args.encode_message, fn.args, t, buf, mname, 1, 0, framed)
  if not ok then util.usage("%s", tostring(err)) end
  return tostring(buf)
end

local function r3(x) return math.floor(x * 1000 + 0.5) / 1000 end

local function fields(s)
  return {
    calls = s.calls, errors = s.errors + s.app_errors + s.exceptions,
    exceptions = s.exceptions, app_errors = s.app_errors, bad_replies = s.errors,
    calls_per_s = math.floor(s.calls_per_s + 0.5),
    p50_us = r3(s.p50_us), p90_us = r3(s.p90_us), p99_us = r3(s.p99_us), p999_us = r3(s.p999_us),
    min_us = r3(s.min_us), mean_us = r3(s.mean_us), max_us = r3(s.max_us), secs = r3(s.elapsed),
    cpu_pct = s.elapsed > 0 and math.floor(100 * s.cpu / s.elapsed + 0.5) or 0,
    connect_errors = s.connect_errors, late = s.late, sent = s.sent,
  }
end

function M.run(args)
  if args.conns < 1 or args.depth < 1 or args.duration <= 0 or args.warmup < 0 or args.rate < 0 then
    util.usage("conns and depth must be >= 1, duration > 0, warmup and rate >= 0")
  end
  if args.protocol and args.protocol ~= "binary" then
    util.usage("bench: the load generator speaks Binary only (protocol %q)", args.protocol)
  end
  local transport = args.transport or "framed"
  if transport ~= "framed" and transport ~= "buffered" then
    util.usage("bench: transport framed or buffered, not %q", transport)
  end
  local addr = util.address(args.address)
  local ns = util.load_idl(args.idl, args.include)
  local svc, fn, mname, sname = util.find_method(ns, args.method)
  if fn.oneway then util.usage("%s.%s is oneway: there are no replies to time", sname, mname) end
  local conv = values.new(ns)
  local req = request(args, conv, fn, sname, mname, transport == "framed")
  local b, err = core.bench {
    host = addr.host, port = addr.port, unix = addr.unix, request = req,
    framed = transport == "framed", conns = args.conns, depth = args.depth,
    rate = args.rate, duration = args.duration, warmup = args.warmup,
    connect_timeout = args.connect_timeout, backend = args.backend,
    io = args.io,
  }
  if not b then util.usage("bench: %s", err) end
  local _ = svc
  local tty = not args.json and not args.quiet and util.isatty(1)
  local total = args.warmup + args.duration
  local t0 = core.clock()
  local last_calls, last_t = 0, nil
  local failed
  while true do
    local more, e = b:run(tty and 250 or 1000)
    if more == nil then failed = e; break end
    if tty then
      local s = b:stats()
      local now = core.clock()
      local rate = 0
      if s.phase == "measuring" and last_t then rate = (s.calls - last_calls) / (now - last_t) end
      last_calls, last_t = s.calls, now
      local line = string.format("\r[%4.1f/%g s] %-10s %8.0f calls/s  p50 %s  p99 %s  errors %d  ",
        math.min(now - t0, total), total, s.phase, s.phase == "measuring" and rate or 0,
        us(s.p50_us), us(s.p99_us), s.errors + s.app_errors + s.exceptions)
      io.stdout:write(line)
      io.stdout:flush()
    end
    if not more then break end
  end
  if tty then io.stdout:write("\r" .. string.rep(" ", 78) .. "\r") end
  local s = b:stats()
  local firsterr = b:error()
  b:free()
  if failed and s.calls == 0 then util.failed("%s", failed) end
  local f = fields(s)
  f.method, f.address, f.conns, f.depth = sname .. "." .. mname, addr.text, args.conns, args.depth
  f.rate, f.transport, f.request_bytes = args.rate, transport, #req
  f.first_error = firsterr
  if args.json then
    util.out(values.any_json(f, { compact = true }))
  else
    local lines = {
      string.format("petrel bench: %s on %s, %d connection%s x %d in flight, %s%g s (+%g s warm-up)",
        f.method, f.address, args.conns, args.conns == 1 and "" or "s", args.depth,
        args.rate > 0 and (string.format("%g calls/s for ", args.rate)) or "", args.duration, args.warmup),
      string.format("  calls      %d in %.2f s: %d calls/s", s.calls, s.elapsed, f.calls_per_s),
      string.format("  errors     %d (exceptions %d, TApplicationExceptions %d, bad replies or lost "
        .. "connections %d)", f.errors, s.exceptions, s.app_errors, s.errors),
      string.format("  latency    p50 %s  p90 %s  p99 %s  p99.9 %s", us(s.p50_us), us(s.p90_us),
        us(s.p99_us), us(s.p999_us)),
      string.format("             min %s  mean %s  max %s", us(s.min_us), us(s.mean_us), us(s.max_us)),
      string.format("  generator  %d%% of a core (%s back end), %d-byte requests", f.cpu_pct,
        args.backend or os.getenv("PETREL_BACKEND") or "epoll", #req),
    }
    if args.rate > 0 and s.late > 0 then
      lines[#lines + 1] = string.format("  late       %d calls started over 1 ms after their time "
        .. "(their wait counts in their latency)", s.late)
    end
    if s.connect_errors > 0 then
      lines[#lines + 1] = string.format("  connects   %d failed", s.connect_errors)
    end
    if firsterr then lines[#lines + 1] = "  first error: " .. firsterr end
    util.out(table.concat(lines, "\n"))
  end
  if failed then util.failed("%s", failed) end
  return (f.errors > 0 or s.calls == 0) and util.FAILED or util.OK
end

return M

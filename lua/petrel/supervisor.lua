-- petrel.supervisor: petrel.serve — one server until SIGTERM/SIGINT, or
-- N forked worker processes sharing a port (SO_REUSEPORT) under a parent
-- that forwards the signals and waits for them.
local core = require "petrel.core"
local loopmod = require "petrel.loop"
local rpc = require "petrel.rpc"
local options = require "petrel.options"

local M = {}

-- petrel.serve's own options; the rest are petrel.server's.
local SERVE_ONLY = {
  workers = options.int(1), gc = options.oneof("generational", "incremental"),
  on_ready = options.func, drain_timeout = options.ms,
}
local SERVE_OPTIONS = {}
for k, v in pairs(rpc.SERVER_OPTIONS) do SERVE_OPTIONS[k] = v end
for k, v in pairs(SERVE_ONLY) do SERVE_OPTIONS[k] = v end

-- petrel.serve{ <server options>, workers = N }: serve until SIGTERM or
-- SIGINT, then stop accepting, let in-flight calls finish and return.
-- With workers > 1 the process forks N workers, each with its own loop and
-- its own listening socket on the same port (SO_REUSEPORT); the parent
-- forwards SIGTERM/SIGINT to them and returns when all have exited.
function M.serve(opts)
  options.check("petrel.serve", SERVE_OPTIONS, opts, 2)
  local sopts = {}
  for k, v in pairs(opts) do
    if not SERVE_ONLY[k] then sopts[k] = v end
  end
  if type(opts.service) == "table" and type(opts.handler) == "table" then
    rpc._check_handler("petrel.serve", opts.service, opts.handler, 2) -- before forking
  end
  rpc._check_advertise("petrel.serve", opts, 2)
  local workers = opts.workers or 1
  -- opts.gc = "generational" switches Lua 5.4's collector (process-wide)
  if opts.gc == "generational" and _VERSION == "Lua 5.4" and not jit then
    collectgarbage("generational")
  end
  if workers <= 1 then
    local srv, err = rpc.server(sopts)
    if not srv then return nil, err end
    local loop = srv.loop
    loop.c:trap("TERM", "INT")
    if opts.on_ready then opts.on_ready(srv) end
    loop:run(function()
      for _ = 1, #core.signals() do srv:shutdown() end
      return srv.closing and srv.inflight == 0 and not srv.on_finished
    end)
    -- the last replies leave while their connections close (a send may
    -- still be queued, or in the kernel's hands under io_uring)
    local deadline = loop:now() + (opts.drain_timeout or 5000)
    while loop.c:stats().conns_open > 0 and loop:now() < deadline do loop:step(20) end
    return true
  end
  if not opts.port or opts.port == 0 then
    return nil, "petrel.serve: workers need a fixed port"
  end
  local pids = {}
  for _ = 1, workers do
    local pid, err = core.fork()
    if not pid then return nil, err end
    if pid == 0 then
      loopmod.reset_default()
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      o.workers, o.reuseport, o.loop = 1, true, loopmod.default()
      o.registry = nil -- the parent registers the shared port
      local ok, res, e = pcall(M.serve, o)
      if not ok or not res then io.stderr:write("petrel worker: ", tostring(e or res), "\n") end
      core._exit(ok and res and 0 or 1)
    end
    pids[#pids + 1] = pid
  end
  -- with a registry the parent keeps the entry (on the registry's loop)
  local loop = opts.registry and opts.registry.loop and opts.registry:loop()
    or assert(loopmod.new())
  loop.c:trap("TERM", "INT", "CHLD")
  local registration = opts.registry and M._register_workers(opts, loop)
  local alive = #pids
  while alive > 0 do
    loop:step(500)
    for _, sig in ipairs(core.signals()) do
      if sig == "TERM" or sig == "INT" then
        if registration then
          -- leave the registry before the workers drain
          local reg = registration
          registration = nil
          local wait = opts.deregister_wait or 1000
          reg:deregister(math.max(wait, 1000))
          if wait > 0 then loop:sleep(wait) end
        end
        for _, p in ipairs(pids) do core.kill(p, "TERM") end
      end
    end
    while true do
      local p = core.wait(-1, true)
      if not p or p == 0 then break end
      alive = alive - 1
    end
  end
  if not opts.registry then loop:free() end
  return true
end

-- Register the workers' shared port once one of them accepts (probed for
-- at most 5 s): the registration.
function M._register_workers(opts, loop)
  local host = opts.host or "127.0.0.1"
  local deadline = loop:now() + 5000
  while loop:now() < deadline do
    local id = loop.c:connect(host == "::" and "::1" or (host == "0.0.0.0" and "127.0.0.1" or host),
      opts.port, 1000)
    if id then
      local w = loop:waiter()
      loop:attach(id, { on_connected = function(_, _, err) w:done(err == 0) end })
      local up = loop:await(w, 1000)
      loop:close(id)
      if up then break end
    end
    loop:sleep(20)
  end
  return opts.registry:register(rpc._registration_args(opts, host, opts.port, loop))
end

return M

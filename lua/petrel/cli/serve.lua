-- petrel serve IDL [Service] --handler FILE.lua | --mock [FILE.json]:
-- serve until SIGTERM or SIGINT (petrel.serve). Prints one line on stdout
-- once listening: "petrel serve: Calc on 127.0.0.1:40111 (mock)".
--
-- --handler: FILE.lua returns a table of functions (the handler of
-- petrel.server). It is read again every --reload ms; when its contents
-- changed, the new table replaces the old one's functions in place (calls
-- already running finish with the old ones); a file that fails to load or
-- names a function the service lacks is reported on stderr and the old
-- functions stay.
--
-- --mock: each method answers a value built from the IDL's defaults
-- (values.lua, Conv:mock), or the canned answer for it in a JSON file:
--   { "add": 42, "Calc.echo": {"id": 1}, "fail": {"$throw": "oops",
--     "value": {"message": "no", "code": 7}} }
-- keyed by method or Service.method; {"$throw": NAME, "value": {...}}
-- raises the declared exception NAME (field or type name).
local petrel = require "petrel"
local util = require "petrel.cli.util"
local values = require "petrel.cli.values"

local M = {}

local function pick_service(ns, name)
  local svcs = util.services(ns)
  if name then
    if not ns._services[name] then
      util.usage("no service %q in the IDL (services: %s)", name, table.concat(svcs, ", "))
    end
    return ns._services[name], name
  end
  if #svcs == 0 then util.usage("the IDL has no service") end
  if #svcs > 1 then
    -- the one no other extends, if there is exactly one
    util.usage("the IDL has several services (%s): name one", table.concat(svcs, ", "))
  end
  return ns._services[svcs[1]], svcs[1]
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read(jit and "*a" or "a")
  f:close()
  return s
end

-- Load a handler file: table | nil, err
local function load_handler(path)
  local src = read(path)
  if not src then return nil, "cannot read " .. path end
  local chunk, err = (loadstring or load)(src, "@" .. path)
  if not chunk then return nil, err end
  local ok, h = pcall(chunk)
  if not ok then return nil, tostring(h) end
  if type(h) ~= "table" then
    return nil, path .. " must return a table of functions (got " .. type(h) .. ")"
  end
  return h, nil, src
end

local function mock_handler(ns, svc, sname, file)
  local conv = values.new(ns)
  local canned = {}
  if file and file ~= "-" then
    local text = util.read_input(file)
    local v = values.decode_json(text)
    if type(v) ~= "table" then util.usage("%s: a JSON object of canned answers expected", file) end
    canned = v
  end
  local h = {}
  for _, mname in ipairs(svc.order) do
    local fn = svc.functions[mname]
    local answer = canned[sname .. "." .. mname]
    if answer == nil then answer = canned[mname] end
    local value, throw
    if type(answer) == "table" and answer["$throw"] ~= nil then
      local rnode = conv:result(sname, mname)
      local want = answer["$throw"]
      local field
      for _, f in ipairs(rnode.fields) do
        if f.id ~= 0 and (f.name == want or f.type == want or f.type:match("[^.]+$") == want) then
          field = f
        end
      end
      if not field then
        util.usage("canned answer for %s: %s declares no exception %q", mname, mname, tostring(want))
      end
      throw = { name = field.name, value = conv:from(conv:type(field.type), answer.value or {},
        mname .. " $throw") }
    elseif answer ~= nil and fn.result_type ~= "void" then
      value = conv:from(conv:type(fn.result_type), answer, mname)
    elseif fn.result_type ~= "void" and not fn.oneway then
      value = conv:mock(conv:type(fn.result_type))
    end
    if throw then
      h[mname] = function() error(petrel.throw(throw.name, throw.value)) end
    else
      h[mname] = function() return value end
    end
  end
  return h
end

-- Swap the functions of live (the server's handler table) for those of new.
local function swap(live, new)
  for k in pairs(live) do live[k] = nil end
  for k, v in pairs(new) do live[k] = v end
end

function M.run(args)
  if (args.handler ~= nil) == (args.mock ~= nil) then
    util.usage("give --handler FILE.lua or --mock [FILE.json] (one of them)")
  end
  local ns = util.load_idl(args.idl, args.include)
  local svc, sname = pick_service(ns, args.service)
  local handler, what, src
  if args.handler then
    local err
    handler, err, src = load_handler(args.handler)
    if not handler then util.failed("%s", err) end
    local ok, e = pcall(require("petrel.rpc")._check_handler, "petrel serve", svc, handler, 1)
    if not ok then util.failed("%s: %s", args.handler, tostring(e):gsub("^[^:]*:%d+: ", "")) end
    what = "handler " .. args.handler
  else
    -- argparse gives --mock as a list of its 0 or 1 values
    local file = type(args.mock) == "table" and args.mock[1] or nil
    handler = mock_handler(ns, svc, sname, file)
    what = "mock" .. (file and file ~= "-" and (" answers from " .. file) or "")
  end
  local opts = { service = svc, handler = handler, workers = args.workers, debug = args.debug or nil }
  if args.unix then opts.unix = args.unix else opts.host, opts.port = args.host, args.port end
  if args.workers and args.workers > 1 and (not args.port or args.port == 0) and not args.unix then
    util.usage("--workers needs a fixed --port")
  end
  local sp = util.speaks()
  util.pass_through(opts, sp.server_options, { transport = args.transport,
    protocol = args.protocol }, "petrel serve",
    sp.server_detects_protocol and { protocol = sp.server_protocols } or nil)
  if args.backend then
    require("petrel.loop").reset_default()
    opts.loop = assert(petrel.loop { backend = args.backend })
  end
  local function announce(port)
    local where = args.unix and ("unix:" .. args.unix) or
      ((args.host:find(":") and "[" .. args.host .. "]" or args.host) .. ":" .. port)
    util.out(string.format("petrel serve: %s on %s (%s%s)", sname, where, what,
      (args.workers or 1) > 1 and (", " .. args.workers .. " workers") or ""))
  end
  -- one line once listening (with workers: before they start, once)
  if (args.workers or 1) > 1 then announce(args.port) end
  opts.on_ready = function(srv)
    if (args.workers or 1) <= 1 then announce(srv.port) end
    -- the handler file, read again while serving
    if args.handler and (args.reload or 0) > 0 then
      local loop = srv.loop
      local function check()
        local now = read(args.handler)
        if now and now ~= src then
          src = now
          local h, err = load_handler(args.handler)
          if h then
            local ok, e = pcall(require("petrel.rpc")._check_handler, "petrel serve", svc, h, 1)
            if ok then
              swap(handler, h)
              util.err("petrel serve: reloaded " .. args.handler)
            else
              util.err("petrel serve: " .. args.handler .. ": " ..
                tostring(e):gsub("^[^:]*:%d+: ", "") .. " (keeping the previous handler)")
            end
          else
            util.err("petrel serve: " .. tostring(err) .. " (keeping the previous handler)")
          end
        end
        loop:after(args.reload, check)
      end
      loop:after(args.reload, check)
    end
  end
  local ok, res, err = pcall(petrel.serve, opts)
  if not ok then util.usage("%s", tostring(res):gsub("^[^:]*:%d+: ", "")) end
  if not res then util.failed("%s", tostring(err)) end
  return util.OK
end

return M

-- petrel call IDL ADDRESS Service.method [ARGS...]: one RPC, the result
-- printed as JSON (or Lua with --lua); declared exceptions printed with
-- their fields (stdout) and named on stderr, exit 1; transport errors and
-- TApplicationExceptions on stderr, exit 1.
local petrel = require "petrel"
local util = require "petrel.cli.util"
local values = require "petrel.cli.values"

local M = {}

-- The argument values of fn from the command line's ARGS (a list of
-- strings): one object of names, one array in order, or one value per
-- argument. Returns the list of values in declaration order.
function M.arguments(conv, sname, mname, fn, list, o)
  local node = conv:args(sname, mname)
  local fields = node.fields
  local names = {}
  for i, f in ipairs(fields) do names[i] = f.name end
  local parsed, kinds = {}, {}
  for i, a in ipairs(list) do
    parsed[i], kinds[i] = values.parse_value(util.arg_text(a), { lua = o.lua })
  end
  local byname
  if #parsed == 1 and type(parsed[1]) == "table" and #fields ~= 1 then
    local v = parsed[1]
    if #v > 0 or next(v) == nil then -- an array: arguments in order
      if #v > #fields then
        util.usage("%s.%s takes %d arguments (%s), got %d", sname, mname, #fields,
          table.concat(names, ", "), #v)
      end
      parsed = {}
      for i = 1, #fields do parsed[i] = v[i] end
      for i = 1, #fields do kinds[i] = kinds[1] end
    else
      byname = v
    end
  elseif #parsed == 1 and #fields == 1 and type(parsed[1]) == "table" and #parsed[1] == 0 then
    -- one argument: an object naming it, or the argument's value itself
    local v = parsed[1]
    local only = fields[1].name
    local named = v[only] ~= nil
    for k in pairs(v) do if k ~= only then named = false end end
    if named then byname = v end
  end
  local out = {}
  if byname then
    local kind = kinds[1]
    for k in pairs(byname) do
      local found = false
      for _, n in ipairs(names) do if n == k then found = true end end
      if not found then
        util.usage("%s.%s has no argument %q (arguments: %s)", sname, mname, tostring(k),
          #names > 0 and table.concat(names, ", ") or "none")
      end
    end
    for i, f in ipairs(fields) do
      local x = byname[f.name]
      out[i] = kind == "json" and conv:from(conv:type(f.type), x, f.name) or x
    end
    return out
  end
  if #parsed > #fields then
    util.usage("%s.%s takes %d argument%s (%s), got %d", sname, mname, #fields,
      #fields == 1 and "" or "s", table.concat(names, ", "), #parsed)
  end
  for i, f in ipairs(fields) do
    local x = parsed[i]
    out[i] = kinds[i] == "json" and conv:from(conv:type(f.type), x, f.name) or x
  end
  return out
end

local function client_options(args, addr, svc)
  local sp = util.speaks()
  local o = { service = svc, timeout = args.timeout, connect_timeout = args.connect_timeout }
  if addr.unix then o.unix = addr.unix else o.host, o.port = addr.host, addr.port end
  if args.backend then
    o.loop = assert(petrel.loop { backend = args.backend })
  end
  util.pass_through(o, sp.client_options, {
    transport = args.transport, protocol = args.protocol, multiplexed = args.multiplexed,
    headers = util.headers(args.header),
  }, "petrel call")
  return o
end

function M.run(args)
  local ns = util.load_idl(args.idl, args.include)
  local addr = util.address(args.address)
  local svc, fn, mname, sname = util.find_method(ns, args.method)
  local conv = values.new(ns)
  local argv = M.arguments(conv, sname, mname, fn, args.args, args)
  local okc, c = pcall(petrel.client, client_options(args, addr, svc))
  if not okc then util.usage("%s", tostring(c):gsub("^[^:]*:%d+: ", "")) end
  local unpack = table.unpack or unpack
  local okr, res, err = pcall(petrel.call, c, mname, unpack(argv, 1, #conv:args(sname, mname).fields))
  if not okr then util.usage("%s", tostring(res):gsub("^[^:]*:%d+: ", "")) end
  petrel.close(c)
  local o = { lua = args.lua, compact = args.compact }
  if res == nil then
    if type(err) == "table" and err.kind == "exception" then
      local rnode = conv:result(sname, mname)
      local etype
      for _, f in ipairs(rnode.fields) do if f.name == err.name then etype = f.type end end
      util.err(string.format("petrel call: %s.%s threw %s (%s)", sname, mname, err.name, err.type))
      if etype then
        util.show(conv, { kind = "struct", name = "exception", fields = {
          { name = err.name, type = etype } } }, { [err.name] = err.value }, o)
      else
        util.out(petrel.dump(err.value))
      end
      return util.FAILED
    end
    util.failed("%s", tostring(err))
  end
  if fn.oneway or fn.result_type == "void" then
    util.out(args.lua and "nil" or "null")
    return util.OK
  end
  util.show(conv, conv:type(fn.result_type), res, o)
  return util.OK
end

return M

-- petrel decode / petrel encode: Thrift bytes and values of an IDL's types.
--
--   decode IDL TYPE [FILE|-]        one struct (TYPE: a struct, union or
--                                   exception, or Service.method_args /
--                                   Service.method_result)
--   decode IDL --message [FILE|-]   whole messages (envelope, framed or
--                                   not; a capture of several in a row too):
--                                   each one's arguments or result
--   decode --schemaless [FILE|-]    any Thrift Binary bytes, no IDL
--   encode IDL TYPE [VALUE]         a struct, or with Service.method a CALL
--                                   message of its arguments
-- Input bytes raw, hex or base64 (-f); output JSON or --lua. Decode errors
-- name the field path and the byte offset (exit 1).
local petrel = require "petrel"
local core = require "petrel.core"
local util = require "petrel.cli.util"
local values = require "petrel.cli.values"

local M = {}

local MTYPES = { [1] = "call", [2] = "reply", [3] = "exception", [4] = "oneway" }

-- The compiled type and the node of TYPE: a struct name, or
-- Service.method_args / _result.
local function find_type(ns, conv, name)
  local T = ns[name]
  if type(T) == "userdata" or (type(T) == "table" and type(T.decode) == "function") then
    local node = conv:struct(name)
    if node then return T, node end
  end
  local sname, mname, part = name:match("^(.+)%.([^.]+)_(args)$")
  if not sname then sname, mname, part = name:match("^(.+)%.([^.]+)_(result)$") end
  if sname and ns._services and ns._services[sname] then
    local fn = ns._services[sname].functions[mname]
    if fn then
      if part == "args" then return fn.args, conv:args(sname, mname) end
      if fn.result then return fn.result, conv:result(sname, mname) end
      util.usage("%s.%s is oneway: it has no result", sname, mname)
    end
  end
  local names = {}
  for k, d in pairs(conv.defs) do
    if d.kind == "struct" or d.kind == "union" or d.kind == "exception" then names[#names + 1] = k end
  end
  table.sort(names)
  util.usage("no type %q in the IDL (structs: %s; or Service.method_args / _result)", name,
    #names > 0 and table.concat(names, ", ") or "none")
end

local function protocol_opts(args, what)
  local p = args.protocol
  if not p or p == "binary" then return nil end
  for _, q in ipairs(util.speaks().protocols) do
    if q == p then return { protocol = p } end
  end
  util.usage("%s: protocol %q is not one this petrel speaks (%s)", what, p,
    table.concat(util.speaks().protocols, ", "))
end

local function show(args, conv, node, v)
  util.show(conv, node, v, { lua = args.lua, compact = args.compact })
end

-- The method of a message name ("add", or "Calc:add" when multiplexed):
-- service name, function, method name; or nil.
local function method_of(ns, name)
  local prefix, m = name:match("^([^:]+):(.+)$")
  local svcs = ns._services or {}
  if prefix and svcs[prefix] and svcs[prefix].functions[m] then
    return prefix, svcs[prefix].functions[m], m
  end
  m = m or name
  for _, sname in ipairs(util.services(ns)) do
    local fn = svcs[sname].functions[m]
    if fn then return sname, fn, m end
  end
end

local function be32(s, i)
  local a, b, c, d = s:byte(i, i + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

-- Every message in bytes: framed ones one frame at a time, unframed ones
-- back to back.
local function decode_messages(args, ns, conv, bytes)
  if args.protocol then protocol_opts(args, "--message") end -- known? (the envelope tells)
  local pos, n, count = 1, #bytes, 0
  local results = {}
  while pos <= n do
    local framed, body, base = false, bytes, pos
    local b1 = bytes:byte(pos)
    if n - pos + 1 >= 4 and b1 ~= 0x80 and b1 ~= 0x82 then -- not a Binary or Compact envelope
      local len = be32(bytes, pos)
      if len <= n - pos - 3 and len >= 9 then
        framed = true
        body = bytes:sub(pos + 4, pos + 3 + len)
        base = pos + 4
      end
    end
    local p0 = framed and 1 or pos
    local name, mtype, seqid, p, proto = core.msg_header(body, p0)
    if name == nil then
      util.failed("message at offset %d: truncated envelope (%d bytes left)", pos - 1, n - pos + 1)
    elseif name == false then
      util.failed("message at offset %d: %s", pos - 1, tostring(mtype))
    end
    local msg = { type = MTYPES[mtype] or tostring(mtype), name = name, seqid = seqid,
      framed = framed or nil, protocol = proto ~= nil and proto ~= "binary" and proto or nil }
    local T, node, key
    if mtype == 3 then
      T = require("petrel.rpc")._TAppEx
      node = { kind = "struct", name = "TApplicationException", fields = {
        { id = 1, name = "message", type = "string" }, { id = 2, name = "type", type = "i32" } } }
      key = "exception"
    else
      local sname, fn, m = method_of(ns, name)
      if not fn then
        util.failed("message at offset %d: no method %q in the IDL (services: %s)", pos - 1,
          name, table.concat(util.services(ns), ", "))
      end
      msg.method = sname .. "." .. m
      if mtype == 1 or mtype == 4 then
        T, node, key = fn.args, conv:args(sname, m), "args"
      else
        if not fn.result then util.failed("%s is oneway: a reply to it makes no sense", msg.method) end
        T, node, key = fn.result, conv:result(sname, m), "result"
      end
    end
    local v, nxt
    if msg.protocol then v, nxt = T:decode(body, p, { protocol = msg.protocol })
    else v, nxt = T:decode(body, p) end
    if v == nil then
      local off = tonumber(tostring(nxt):match("at offset (%d+)"))
      local where = off and (" (offset %d in the input)"):format(off + base - 1) or ""
      util.failed("message %q at offset %d: %s%s", name, pos - 1, tostring(nxt), where)
    end
    msg[key] = v
    msg._node, msg._key = node, key
    results[#results + 1] = msg
    count = count + 1
    if framed then
      if nxt ~= #body + 1 then
        util.err(string.format("petrel decode: message %q: %d bytes after its struct in the frame",
          name, #body + 1 - nxt))
      end
      pos = pos + 4 + #body
    else
      pos = nxt
    end
  end
  if count == 0 then util.failed("no message in the input") end
  for _, msg in ipairs(results) do
    local node, key = msg._node, msg._key
    msg._node, msg._key = nil, nil
    if args.lua or not util.cjson() then
      util.show(conv, nil, msg, { lua = true, quiet_fallback = args.lua })
    else
      local head = {}
      for _, k in ipairs({ "type", "name", "method", "seqid", "framed", "protocol" }) do
        if msg[k] ~= nil then
          head[#head + 1] = values.any_json(k) .. (args.compact and ":" or ": ") .. values.any_json(msg[k])
        end
      end
      local inner = conv:json(node, msg[key], { compact = args.compact })
      if not args.compact then inner = inner:gsub("\n", "\n  ") end
      local sep = args.compact and "," or ",\n  "
      util.out((args.compact and "{" or "{\n  ") .. table.concat(head, sep) .. sep ..
        values.any_json(key) .. (args.compact and ":" or ": ") .. inner .. (args.compact and "}" or "\n}"))
    end
  end
  return util.OK
end

function M.decode(args)
  local rest = args.rest or {}
  if args.schemaless then
    local file = args.idl or rest[1]
    if (args.idl and rest[1]) or #rest > 1 then util.usage("--schemaless takes one input: [FILE|-]") end
    local bytes = util.decode_format(util.read_input(file), args.format)
    local walk = require "petrel.cli.walk"
    local text, err, before = walk.describe(bytes)
    if not text then
      io.stdout:write(before)
      io.stdout:flush()
      util.failed("stopped at %s", err)
    end
    io.stdout:write(text)
    io.stdout:flush()
    return util.OK
  end
  if not args.idl then util.usage("an IDL file is needed (or --schemaless)") end
  local ns = util.load_idl(args.idl, args.include)
  local conv = values.new(ns)
  if args.message then
    if #rest > 1 then util.usage("--message takes one input: [FILE|-]") end
    local bytes = util.decode_format(util.read_input(rest[1]), args.format)
    return decode_messages(args, ns, conv, bytes)
  end
  if #rest < 1 or #rest > 2 then util.usage("decode IDL TYPE [FILE|-] (or --message, --schemaless)") end
  local T, node = find_type(ns, conv, rest[1])
  local bytes = util.decode_format(util.read_input(rest[2]), args.format)
  local v, nxt = T:decode(bytes, 1, protocol_opts(args, "decode"))
  if v == nil then util.failed("%s", tostring(nxt)) end
  if nxt <= #bytes then
    util.err(string.format("petrel decode: %d bytes after the struct (offset %d on)", #bytes - nxt + 1, nxt - 1))
  end
  show(args, conv, node, v)
  return util.OK
end

function M.encode(args)
  local ns = util.load_idl(args.idl, args.include)
  local conv = values.new(ns)
  local text = util.arg_text(args.value or "-")
  local out
  local popts = protocol_opts(args, "encode")
  if not ns[args.type] and args.type:find("%.") and not args.type:find("_args$")
    and not args.type:find("_result$") then
    -- Service.method: a CALL (or ONEWAY) message
    local svc, fn, mname, sname = util.find_method(ns, args.type)
    local argv = require("petrel.cli.call").arguments(conv, sname, mname, fn, { text },
      { lua = args.lua })
    local t = {}
    for i, f in ipairs(conv:args(sname, mname).fields) do t[f.name] = argv[i] end
    local buf = petrel.buffer()
    local ok, err
    if popts then
      ok, err = pcall(fn.args.encode_message, fn.args, t, buf, mname,
        fn.oneway and 4 or 1, args.seqid or 1, args.framed or false, popts.protocol)
    else
      ok, err = pcall(fn.args.encode_message, fn.args, t, buf, mname,
        fn.oneway and 4 or 1, args.seqid or 1, args.framed)
    end
    if not ok then util.usage("%s", tostring(err)) end
    out = tostring(buf)
    local _ = svc
  else
    if args.framed then util.usage("--framed is for messages (Service.method)") end
    local T, node = find_type(ns, conv, args.type)
    local v, kind = values.parse_value(text, { lua = args.lua })
    if kind == "json" then v = conv:from(node, v, node.name) end
    local ok, res
    if popts then ok, res = pcall(T.encode, T, v, popts) else ok, res = pcall(T.encode, T, v) end
    if not ok then util.usage("%s", tostring(res)) end
    out = res
  end
  local format = args.format or (util.isatty(1) and "hex" or "raw")
  if format == "hex" then
    util.out(petrel.hex(out, { max = false }))
  elseif format == "base64" then
    util.out(util.base64(out))
  else
    io.stdout:write(out)
    io.stdout:flush()
  end
  return util.OK
end

function M.run(args)
  if args.command == "encode" then return M.encode(args) end
  return M.decode(args)
end

return M

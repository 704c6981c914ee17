-- petrel idl check FILE... | petrel idl dump FILE: parse and compile IDL
-- files (errors with file:line:column, exit 1), or print the normalized
-- schema tables petrel compiles (docs/schema.md) as JSON or Lua.
local petrel = require "petrel"
local util = require "petrel.cli.util"
local values = require "petrel.cli.values"

local M = {}

local function summary(ns)
  local count = {}
  for _, d in pairs(ns._idl.defs) do count[d.kind] = (count[d.kind] or 0) + 1 end
  local parts = {}
  for _, k in ipairs({ "struct", "union", "exception", "enum", "typedef", "const", "service" }) do
    if count[k] then
      parts[#parts + 1] = count[k] .. " " .. k .. (count[k] == 1 and "" or (k == "typedef" and "s" or
        (k:sub(-1) == "s" and "es" or "s")))
    end
  end
  return #parts > 0 and table.concat(parts, ", ") or "no definitions"
end

local function load(path, includes)
  local f = io.open(path, "rb")
  if not f then return nil, "cannot open " .. path end
  f:close()
  return petrel.load(path, { include_dirs = includes })
end

function M.run(args)
  if args.idl_command == "check" then
    local bad = 0
    for _, path in ipairs(args.files) do
      local ns, err = load(path, args.include)
      if ns then
        util.out(path .. ": ok (" .. summary(ns) .. ")")
      else
        bad = bad + 1
        util.err(tostring(err))
      end
    end
    return bad > 0 and util.FAILED or util.OK
  end
  local ns, err = load(args.file, args.include)
  if not ns then util.failed("%s", tostring(err)) end
  local defs = ns._idl.defs
  if args.lua or not util.cjson() then
    if not args.lua then util.err("petrel idl: " .. select(2, util.cjson()) .. "; showing Lua") end
    util.out(petrel.dump(defs, { depth = 64, items = 100000 }))
  else
    util.out(values.any_json(defs, { compact = args.compact }))
  end
  return util.OK
end

return M

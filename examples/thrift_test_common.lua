-- examples/thrift_test_common.lua: what the ThriftTest cross-test server and
-- client (examples/thrift_test_server.lua, examples/thrift_test_client.lua)
-- share: finding petrel from a checkout, the IDL, Apache's command-line
-- conventions, and the table of Apache's protocol names.
local M = {}

-- Where this file lives, and the repository around it.
local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
M.root = here .. "/.."

-- Make `require "petrel"` work from a checkout (lua/ and the module built
-- into $PETREL_BUILD or build/ for the running interpreter); an installed
-- petrel (LuaRocks) is found as usual.
function M.setup_paths()
  local build = os.getenv("PETREL_BUILD") or "build"
  if build:sub(1, 1) ~= "/" then build = M.root .. "/" .. build end
  local rt = jit and "luajit" or "lua5.4"
  package.path = M.root .. "/lua/?.lua;" .. M.root .. "/lua/?/init.lua;" .. package.path
  package.cpath = build .. "/" .. rt .. "/?.so;" .. package.cpath
end

M.IDL = M.root .. "/spec/thrift/thrift_test.thrift"

-- Apache's --protocol names (test/tests.json, TestClient.py) and what each
-- asks of petrel. ready = petrel passes Apache's cross tests with it on both
-- sides today: spec/crosstest_spec.lua runs every ready row; the others are
-- tried (and their results printed) by tools/crossmatrix.lua. Adding a
-- protocol to petrel = setting ready on its rows.
--   protocol     petrel's name for the wire protocol (binary | compact | json)
--   header       Apache's THeader transport around the protocol
--   multiplexed  calls name their service ("ThriftTest:testVoid"), and the
--                server hosts SecondService beside ThriftTest
M.PROTOCOLS = {
  { name = "binary",  protocol = "binary", ready = true },
  { name = "accel",   protocol = "binary", ready = true },  -- Python's C codec; same bytes
  { name = "compact", protocol = "compact", ready = true },
  { name = "accelc",  protocol = "compact", ready = true },
  { name = "json",    protocol = "json", ready = true },
  { name = "header",  protocol = "binary", header = true, ready = true },
  { name = "multi",   protocol = "binary", multiplexed = true, ready = true },
  { name = "multia",  protocol = "binary", multiplexed = true, ready = true },
  { name = "multic",  protocol = "compact", multiplexed = true, ready = true },
  { name = "multiac", protocol = "compact", multiplexed = true, ready = true },
  { name = "multih",  protocol = "binary", header = true, multiplexed = true, ready = true },
  { name = "multij",  protocol = "json", multiplexed = true, ready = true },
}
M.TRANSPORTS = { "buffered", "framed" }

function M.protocol(name)
  for _, p in ipairs(M.PROTOCOLS) do
    if p.name == name then return p end
  end
end

-- The petrel client options a row asks for, for a client of `service_name`
-- over `transport` (Apache's --transport: buffered or framed). A header
-- row speaks THeader: over "buffered" a THeader frame is all there is
-- (transport = "header"); over "framed" Apache's clients and servers put
-- each THeader frame inside a frame (transport = "framed-header").
function M.client_opts(p, service_name, transport)
  local o = {}
  if p.protocol ~= "binary" then o.protocol = p.protocol end
  if p.header then o.transport = transport == "framed" and "framed-header" or "header" end
  if p.multiplexed then o.multiplexed = service_name end
  return o
end

-- The petrel server options a row asks for. Servers detect the protocol
-- and transport of each connection; a multiplexed row also hosts
-- SecondService (services: name -> { service =, handler = }), keeping
-- ThriftTest as the default for callers that name no service, as Apache's
-- TMultiplexedProcessor.registerDefault does.
-- A header row detects the transport too: a THeader frame carries its own
-- length whatever transport the client wraps it in (Apache's
-- THeaderTransport reads it so under any transport factory).
function M.server_opts(p, services)
  local o = {}
  if p.multiplexed then o.services = services end
  if p.header then o.transport = "auto" end
  return o
end

-- Parse Apache-style options: "--name value", "--name=value", flags.
-- spec: { name = "string" | "number" | "flag" }, aliases: { ["-n"] = "workers" }.
-- Returns opts, positional | nil, err.
function M.parse_args(argv, spec, aliases)
  local opts, pos = {}, {}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    local name, value = a:match("^%-%-([%w%-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w%-]+)$") end
    if not name and aliases and aliases[a] then name = aliases[a] end
    if name then
      local kind = spec[name]
      if not kind then return nil, "unknown option --" .. name end
      if kind == "flag" then
        if value then return nil, "--" .. name .. " takes no value" end
        opts[name] = true
      else
        if not value then
          i = i + 1
          value = argv[i]
          if value == nil then return nil, "--" .. name .. " needs a value" end
        end
        if kind == "number" then
          local n = tonumber(value)
          if not n then return nil, "--" .. name .. ": a number expected, got " .. value end
          value = n
        end
        opts[name] = value
      end
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return nil, "unknown option " .. a
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return opts, pos
end

-- Checked choice of an option among names.
function M.choice(what, value, list)
  for _, v in ipairs(list) do
    if (type(v) == "table" and v.name or v) == value then return value end
  end
  local names = {}
  for i, v in ipairs(list) do names[i] = type(v) == "table" and v.name or v end
  return nil, string.format("unknown %s %q (one of: %s)", what, tostring(value),
    table.concat(names, ", "))
end

-- A script's command line (the global arg), checked: opts (protocol and
-- transport filled in), positional arguments, and a function that prints
-- the error and the usage and exits 2.
function M.cli(name, usage, spec, aliases, transports, default_transport)
  local function die(err)
    io.stderr:write(name, ": ", err, "\nusage: ", name, ".lua ", usage, "\n")
    os.exit(2)
  end
  spec.ssl, spec.zlib, spec.http = spec.ssl or "flag", spec.zlib or "flag", spec.http or "string"
  local opts, pos = M.parse_args(arg, spec, aliases)
  if not opts then die(pos) end
  for _, o in ipairs({ "ssl", "zlib", "http" }) do
    -- Apache's cross tests have these; petrel does not (yet)
    if opts[o] then die("--" .. o .. ": petrel has no " .. o:upper() .. " transport") end
  end
  opts.protocol = opts.protocol or "binary"
  local ok, err = M.choice("protocol", opts.protocol, M.PROTOCOLS)
  if not ok then die(err) end
  opts.transport = opts.transport or default_transport
  ok, err = M.choice("transport", opts.transport, transports)
  if not ok then die(err) end
  return opts, pos, die
end

return M

-- examples/nginx/gateway.lua: an HTTP endpoint that takes JSON, calls a
-- Thrift service through petrel.resty and returns JSON (nginx.conf next to
-- this file wires it up).
--
--   POST /rpc/<function>   body: a JSON object of the function's arguments
--   200 {"result": ...}                 the call's result (null for void)
--   422 {"exception": name, "value": {...}}   a declared Thrift exception
--   502 {"error": "..."}                the upstream failed (connection,
--                                       timeout, TApplicationException)
--   400 / 404 {"error": "..."}          bad JSON, arguments the IDL refuses,
--                                       unknown function
local petrel = require "petrel"
local resty = require "petrel.resty"
local cjson = require "cjson.safe"

local M = {}
local service, client
local argnames = {} -- function -> its argument names in IDL order

-- init_by_lua: load and compile the IDL once, in the master, before the
-- workers fork: every worker shares the compiled schema.
function M.init(idl_path, service_name)
  local ns = assert(petrel.load(idl_path))
  service = assert(ns[service_name], "no service " .. service_name)
  for name, fn in pairs(service.functions) do
    local names = {}
    for i, f in ipairs(fn.args:fields()) do names[i] = f.name end
    argnames[name] = names
  end
end

-- init_worker_by_lua: one client per worker; its calls share nginx's
-- keepalive pool for the upstream.
function M.connect(opts)
  opts.service = service
  client = resty.client(opts)
end

local function reply(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  local s, err = cjson.encode(body)
  ngx.say(s or cjson.encode({ error = "cannot encode the result as JSON: " .. tostring(err) }))
  return ngx.exit(status)
end

-- content_by_lua: one call per request.
function M.serve(name)
  local names = argnames[name]
  if not names then return reply(404, { error = "no function " .. name }) end
  ngx.req.read_body()
  local args = cjson.decode(ngx.req.get_body_data() or "{}")
  if type(args) ~= "table" then return reply(400, { error = "a JSON object of arguments expected" }) end
  local vals = {}
  for i, arg in ipairs(names) do
    local v = args[arg]
    if v == cjson.null then v = nil end
    vals[i] = v
  end
  -- arguments the IDL refuses raise (misuse); the rest is nil, err
  local ok, res, err = pcall(client.call, client, name, unpack(vals, 1, #names))
  if not ok then return reply(400, { error = tostring(res) }) end
  if res == nil then
    if type(err) == "table" and err.kind == "exception" then
      return reply(422, { exception = err.name, value = err.value })
    end
    return reply(502, { error = tostring(err) })
  end
  if service.functions[name].result_type == "void" then res = cjson.null end
  return reply(200, { result = res })
end

return M

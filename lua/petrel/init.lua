-- petrel: fast Thrift RPC and networking for Lua 5.4 and LuaJIT.
-- The C core (petrel.core) provides buffers, pools and codecs; this module
-- is the public face: `local petrel = require "petrel"`.
local core = require "petrel.core"
local schema = require "petrel.schema"

-- LuaJIT: FFI fast paths for the hot buffer methods (see petrel/ffi.lua)
local ffi_active = false
if jit then
  local ok, f = pcall(require, "petrel.ffi")
  ffi_active = ok and f.install() or false
end

local petrel = {
  _VERSION = "petrel scm",
  ffi = ffi_active, -- true when LuaJIT's FFI fast paths are in use
  core = core,
  -- buffers and pools
  buffer = core.buffer,
  pool = core.pool,
  pool_stats = core.pool_stats,
  default_pool = core.default_pool,
  clock = core.clock, -- monotonic seconds
  -- schemas and the codec
  struct = schema.struct,
  union = schema.union,
  exception = schema.exception,
  enum = schema.enum,
  typedef = schema.typedef,
  const = schema.const,
  service = schema.service,
  schema = schema.compile,
  export = schema.export,
  adopt = schema.adopt,
  array = core.array,
  list = core.list, -- metatables marking decoded containers
  set = core.set,
  map = core.map,
  simd = core.simd,
  unknown = core.unknown, -- key of kept unknown fields (decode {unknown=true})
}

-- ---- event loop and RPC (loaded on first use) --------------------------------
-- readable text of values and bytes (petrel/dump.lua)
local dump = require "petrel.dump"
petrel.dump = dump.dump
petrel.hex = dump.hex

-- Message views (T:view): their methods, also reachable as functions
-- (petrel.view.decode(v) when the struct has a field named decode).
petrel.view = core.view_methods
petrel.view.tostring = function(v, opts) return dump.dump(v, opts) end

local function rpc() return require "petrel.rpc" end
local function loopmod() return require "petrel.loop" end

function petrel.loop(opts) return loopmod().new(opts) end
function petrel.default_loop() return loopmod().default() end
function petrel.server(opts) return rpc().server(opts) end
function petrel.client(opts) return require("petrel.client").client(opts) end
function petrel.serve(opts) return rpc().serve(opts) end
function petrel.throw(name, value) return rpc().throw(name, value) end
-- petrel.etcd{ endpoints = {...} }: an etcd client and service registry
-- (petrel/etcd.lua; servers take it as `registry`, clients resolve with it)
function petrel.etcd(opts) return require("petrel.etcd").new(opts) end

-- Clients: a client's own keys are its service's functions only, so its
-- operations are here (c:close() and c:call() also work when the service
-- has no function of that name).
local function client() return require "petrel.client" end
function petrel.close(c) return client().close(c) end
function petrel.call(c, name, ...) return client().call(c, name, ...) end
function petrel.configure(c, opts) return client().configure(c, opts) end
-- petrel.with(c, { key =, timeout = }): c's calls with a hash key and a
-- deadline of their own (clients over many instances, petrel/cluster.lua)
function petrel.with(c, opts) return require("petrel.cluster").with(c, opts) end
-- petrel.stats(client) -> { open, idle, waiting, inflight, ... };
-- petrel.stats(server) is server:stats()
function petrel.stats(x)
  if client().is_client(x) then return client().stats(x) end
  if type(x) == "table" and type(x.stats) == "function" then return x:stats() end
  error("petrel.stats: a client or a server expected", 2)
end

-- petrel.assert(v, err, ...): like assert, but only nil fails, so a call
-- returning false (a bool result) passes: petrel.assert(c:is_ready()).
-- Raises tostring(err) (Thrift errors are tables).
function petrel.assert(v, ...)
  if v == nil then
    local err = ...
    error(err ~= nil and tostring(err) or "assertion failed!", 2)
  end
  return v, ...
end
-- run the default loop until stop() (or until fn() is true)
function petrel.run(fn) return loopmod().default():run(fn) end
function petrel.sleep(ms) return loopmod().default():sleep(ms) end
function petrel.spawn(fn, ...) return loopmod().default():spawn(fn, ...) end

-- petrel.load(path_or_text [, opts]) -> namespace | nil, err
-- Loads Thrift IDL at run time (no code generation). opts.include_dirs:
-- list of directories searched for includes; opts.text = true treats the
-- first argument as IDL text (opts.name names it in messages). The
-- namespace also carries the loader's result as ns._idl (normalized
-- schema tables in ns._idl.defs).
function petrel.load(src, opts)
  local idl = require "petrel.idl"
  opts = opts or {}
  local res, err
  if opts.text then
    res, err = idl.parse(src, opts)
  else
    res, err = idl.load(src, opts)
  end
  if not res then return nil, err end
  local ok, ns = pcall(schema.compile, res.defs)
  if not ok then return nil, (opts.name or src) .. ": " .. tostring(ns) end
  ns._idl = res
  return ns
end

return petrel

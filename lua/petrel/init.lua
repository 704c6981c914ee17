-- petrel: fast Thrift RPC and networking for Lua 5.4 and LuaJIT.
-- The C core (petrel.core) provides buffers, pools and codecs; this module
-- is the public face: `local petrel = require "petrel"`.
local core = require "petrel.core"
local schema = require "petrel.schema"

local petrel = {
  _VERSION = "petrel scm",
  core = core,
  -- buffers and pools
  buffer = core.buffer,
  pool = core.pool,
  pool_stats = core.pool_stats,
  default_pool = core.default_pool,
  -- schemas and the codec
  struct = schema.struct,
  union = schema.union,
  exception = schema.exception,
  enum = schema.enum,
  typedef = schema.typedef,
  const = schema.const,
  service = schema.service,
  schema = schema.compile,
  array = core.array,
  list = core.list, -- metatables marking decoded containers
  set = core.set,
  map = core.map,
  simd = core.simd,
  unknown = core.unknown, -- key of kept unknown fields (decode {unknown=true})
}

return petrel

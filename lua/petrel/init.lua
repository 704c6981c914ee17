-- petrel: fast Thrift RPC and networking for Lua 5.4 and LuaJIT.
-- The C core (petrel.core) provides buffers, pools and codecs; this module
-- is the public face: `local petrel = require "petrel"`.
local core = require "petrel.core"

local petrel = {
  _VERSION = "petrel scm",
  core = core,
  buffer = core.buffer,
  pool = core.pool,
  pool_stats = core.pool_stats,
  default_pool = core.default_pool,
}

return petrel

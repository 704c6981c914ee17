-- bench/memory_schema.lua — the service of bench/memory_server.lua, shared
-- with its driver bench/memory.lua: echo for the load, stats for the
-- server's own figures.
local petrel = require "petrel"

return petrel.schema {
  Stats = petrel.struct {
    {1, "rss_kb", "i64"},        -- VmRSS after a full garbage collection
    {2, "conns", "i64"},         -- connections the server has open
    {3, "bytes_in", "i64"},      -- bytes the loop has read
    {4, "pool_in_use", "i64"},   -- bytes of pool blocks in use
    {5, "pool_idle", "i64"},     -- bytes of idle pool blocks
    {6, "hits", "i64"},          -- pool gets served from a free list
    {7, "misses", "i64"},        -- pool gets that allocated
    {8, "classes", "string"},    -- "size x in_use" of the classes in use
    {9, "lua_kb", "i64"},        -- the Lua heap
    {10, "backend", "string"},
    {11, "misses_by_class", "string"}, -- "size:misses" of every class
  },
  Mem = petrel.service {
    echo = { args = { {1, "s", "binary"} }, result = "binary" },
    stats = { args = {}, result = "Stats" },
    stop = { args = {}, oneway = true },
  },
}

-- petrel.ffi: LuaJIT fast paths for petrel.buffer. Classic Lua C API calls
-- stop LuaJIT's trace compiler; FFI calls into the same C core are
-- compiled. This module replaces the hot buffer methods (write of short
-- strings, read, peek, skip, #) with FFI versions that keep the exact
-- semantics of the C API ones and fall back to them for everything else
-- (no-copy links, numbers, bad arguments, errors). Loaded by petrel on
-- LuaJIT; PETREL_NO_FFI=1 in the environment keeps the C API methods.
local ffi = require "ffi"
local core = require "petrel.core"

local M = {}

ffi.cdef [[
typedef struct petrel_pt_buf {
  void *pool;
  void *head, *tail;
  size_t len;
  size_t block_size;
  size_t nocopy_min;
  size_t reserved;
  void *resv_from;
  void *scratch;
  int lean;
} petrel_pt_buf;
int pt_buf_append(petrel_pt_buf *b, const void *src, size_t n);
const char *pt_buf_peek(petrel_pt_buf *b, size_t n);
int pt_buf_skip(petrel_pt_buf *b, size_t n);
]]

-- Install the fast paths; returns true when they are in place.
function M.install()
  if os.getenv("PETREL_NO_FFI") == "1" then return false end
  -- the cdef must mirror this build's struct
  local size, off_len, off_nocopy = core._buf_layout()
  if ffi.sizeof("petrel_pt_buf") ~= size or ffi.offsetof("petrel_pt_buf", "len") ~= off_len
    or ffi.offsetof("petrel_pt_buf", "nocopy_min") ~= off_nocopy then
    return false
  end
  local path = package.searchpath("petrel.core", package.cpath)
  if not path then return false end
  local ok, C = pcall(ffi.load, path)
  if not ok then return false end

  local MT = getmetatable(core.buffer())
  local methods = MT.__index
  local c_write, c_read, c_peek, c_skip, c_len =
    methods.write, methods.read, methods.peek, methods.skip, methods.len
  -- the C API versions, kept for fallbacks and for the specs' comparison
  M.c = { write = c_write, read = c_read, peek = c_peek, skip = c_skip, len = c_len }
  local cast, bufp, ffistring = ffi.cast, ffi.typeof("petrel_pt_buf *"), ffi.string
  local type, getmetatable, select, floor = type, getmetatable, select, math.floor
  local format = string.format

  -- the buffer behind self, or nil when self is not a live petrel.buffer
  local function buf(self)
    if getmetatable(self) ~= MT then return nil end
    local b = cast(bufp, self)
    if b.pool == nil then return nil end
    return b
  end

  local function short(b, n)
    return nil, format("not enough data: need %d bytes, have %d", n, tonumber(b.len))
  end

  methods.write = function(self, ...)
    local b = buf(self)
    if b then
      local n = select("#", ...)
      if n == 1 then
        local s = ...
        if type(s) == "string" and #s < b.nocopy_min then
          if C.pt_buf_append(b, s, #s) ~= 0 then error("out of memory", 2) end
          return self
        end
      end
    end
    return c_write(self, ...)
  end

  methods.read = function(self, n)
    local b = buf(self)
    if b and type(n) == "number" and n >= 0 and n == floor(n) then
      if n > b.len then return short(b, n) end
      local p = C.pt_buf_peek(b, n)
      if p == nil then return c_read(self, n) end
      local s = ffistring(p, n)
      C.pt_buf_skip(b, n)
      return s
    end
    return c_read(self, n)
  end

  methods.peek = function(self, n)
    local b = buf(self)
    if b and type(n) == "number" and n >= 0 and n == floor(n) then
      if n > b.len then return short(b, n) end
      local p = C.pt_buf_peek(b, n)
      if p == nil then return c_peek(self, n) end
      return ffistring(p, n)
    end
    return c_peek(self, n)
  end

  methods.skip = function(self, n)
    local b = buf(self)
    if b and type(n) == "number" and n >= 0 and n == floor(n) then
      if n > b.len then return short(b, n) end
      C.pt_buf_skip(b, n)
      return self
    end
    return c_skip(self, n)
  end

  methods.len = function(self)
    local b = buf(self)
    if b then return tonumber(b.len) end
    return c_len(self)
  end
  MT.__len = methods.len
  M.active = true
  return true
end

return M

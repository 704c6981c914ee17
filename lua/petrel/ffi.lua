-- petrel.ffi: LuaJIT fast paths for petrel.buffer. Classic Lua C API calls
-- stop LuaJIT's trace compiler; FFI calls into the same C core are
-- compiled. This module replaces the hot buffer methods (write of short
-- strings, read, peek, skip, #) with FFI versions that keep the exact
-- semantics of the C API ones and fall back to them for everything else
-- (no-copy links, numbers, bad arguments, errors). It also has an FFI
-- path for message views (T:view): #v, and (M.views(true)) v.field and
-- v[i] for scalar values (numbers, booleans, strings), falling back to the
-- C API for everything else (nested values, which are new userdata;
-- expired or released views; bad bytes; defaults; enum names; UUIDs; i64
-- beyond 2^53; maps; methods of a list view not yet opened). Loaded by petrel on
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
typedef struct { double d; const char *p; int32_t n; } petrel_vfout;
int lpt_vf_field(void *v, const char *s, size_t n, petrel_vfout *o);
int lpt_vf_elem(void *v, double i, petrel_vfout *o);
double lpt_vf_len(void *v);
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
  M.install_views(C)
  M.active = true
  return true
end

-- The views' FFI path. Results of lpt_vf_* (csrc/lua/lpt_view.c):
local FALLBACK, NIL, NUM, FALSE, TRUE, STR, METHOD = 0, 1, 2, 3, 4, 5, 6

function M.install_views(C)
  -- two metatables (csrc/lua/lpt_view.c, view_mt_of): VMT for views of
  -- structs and of lists of scalars, VMT2 for views whose v[k] gives a
  -- view (lists of structs, lists, maps) or looks up a key (maps). VMT2
  -- keeps the C API __index: making a view needs the C API, and calling
  -- it from a Lua metamethod costs more than the C metamethod alone
  -- (v.items[i].title: bench-view's FFI and C API rows).
  local reg = debug.getregistry()
  local VMT, VMT2 = reg["petrel.view"], reg["petrel.view2"]
  if type(VMT) ~= "table" or type(VMT2) ~= "table" then return false end
  local c_index, c_len = VMT.__index, VMT.__len
  local methods = core.view_methods
  local ffistring = ffi.string
  local out = ffi.new("petrel_vfout") -- read right after each call; nothing runs between
  local type, rawget = type, rawget
  local field, elem, vlen = C.lpt_vf_field, C.lpt_vf_elem, C.lpt_vf_len

  -- __index is only reached for petrel.view userdata (its metatable is
  -- hidden), so self is one; the FFI passes a userdata to a void *
  -- parameter as its payload (no cdata made); the C functions check the
  -- view's generation.
  local function index(self, k)
    local tk = type(k)
    local r
    if tk == "string" then
      r = field(self, k, #k, out)
    elseif tk == "number" then
      r = elem(self, k, out)
    else
      return c_index(self, k)
    end
    if r == STR then return ffistring(out.p, out.n) end
    if r == NUM then return out.d end
    if r == NIL then return nil end
    if r == TRUE then return true end
    if r == FALSE then return false end
    if r == METHOD then return rawget(methods, k) end
    return c_index(self, k)
  end

  local function len(self)
    local n = vlen(self)
    if n >= 0 then return n end
    return c_len(self)
  end

  M.view_c = { index = c_index, len = c_len }
  M.view_ffi = { index = index, len = len }
  -- petrel.ffi.views(mode): which of the views' metamethods go through
  -- the FFI. "len" (the default): #v only; true: also v[k] of struct views
  -- and of lists of scalars; false: none (the C API ones). Measured (bench
  -- bench-view, docs/views.md): #v is 8x faster through the FFI wherever
  -- it is; a scalar read is 3x faster in code the trace compiler compiles,
  -- but 2x slower in a loop that also makes nested views (v.items[i].title:
  -- the C API call that makes the view stops the trace, and an FFI call
  -- outside a trace costs more than a C API one), so v[k] stays on the C
  -- API unless asked.
  function M.views(mode)
    VMT.__index = mode == true and index or c_index
    local l = mode and len or c_len
    VMT.__len, VMT2.__len = l, l
    M.views_mode = mode
  end
  M.views("len")
  return true
end

return M

-- examples/parquet_footer.lua — read the footer of a Parquet file: the
-- FileMetaData struct in Thrift Compact, at the end of the file before a
-- 4-byte little-endian length and the magic "PAR1". The schema comes from
-- parquet-format's parquet.thrift, loaded at run time (no code generation).
--
--   lua5.4 examples/parquet_footer.lua path/to/parquet.thrift data.parquet
--
-- (The specs run it with a Parquet-shaped schema written for petrel's tests,
-- spec/thrift/parquet_shaped.thrift, on a file written by Apache's Python
-- library: tools/pyfixtures.py.)
local petrel = require "petrel"

local idl_path, file = arg[1], arg[2]
if not (idl_path and file) then
  io.stderr:write("usage: parquet_footer.lua parquet.thrift FILE.parquet\n")
  os.exit(2)
end

local ns = assert(petrel.load(idl_path))
local f = assert(io.open(file, "rb"))
local data = f:read("*a")
f:close()

assert(#data >= 12 and data:sub(1, 4) == "PAR1" and data:sub(-4) == "PAR1",
  file .. ": not a Parquet file (no PAR1 magic)")
local b1, b2, b3, b4 = data:byte(-8, -5)
local len = b1 + b2 * 256 + b3 * 65536 + b4 * 16777216
local start = #data - 8 - len + 1
assert(start > 4, file .. ": footer length " .. len .. " does not fit the file")
local meta = assert(ns.FileMetaData:decode(data, start,
  { protocol = "compact", enum_names = true }))

local function s(v) -- an integer on both runtimes (LuaJIT: number or int64 cdata)
  if type(v) == "number" and v == math.floor(v) then return ("%.0f"):format(v) end
  return (tostring(v):gsub("U?LL$", ""))
end
print(("version %s, %s rows, %d row groups, footer %d bytes"):format(s(meta.version),
  s(meta.num_rows), #meta.row_groups, len))
if meta.created_by then print("created by " .. meta.created_by) end
print("schema:")
for _, el in ipairs(meta.schema) do
  local parts = { "  " .. el.name }
  if el.num_children then parts[#parts + 1] = "(" .. el.num_children .. " children)" end
  if el.type then parts[#parts + 1] = tostring(el.type) end
  if el.repetition_type then parts[#parts + 1] = tostring(el.repetition_type) end
  if el.converted_type then parts[#parts + 1] = tostring(el.converted_type) end
  print(table.concat(parts, " "))
end
for i, rg in ipairs(meta.row_groups) do
  print(("row group %d: %s rows, %s bytes"):format(i, s(rg.num_rows), s(rg.total_byte_size)))
  for _, col in ipairs(rg.columns) do
    local md = col.meta_data
    if md then
      print(("  %s: %s %s, %s values, data page at %s"):format(table.concat(md.path_in_schema, "."),
        tostring(md.type), tostring(md.codec), s(md.num_values), s(md.data_page_offset)))
    end
  end
end
for _, kv in ipairs(meta.key_value_metadata or {}) do
  print(("key/value: %s = %s"):format(kv.key, kv.value or ""))
end

-- The whole contents of a file (binary), or an error. Shared by the specs.
return function(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

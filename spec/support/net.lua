-- Helpers of the network specs: driving a loop until something happens,
-- this process's open fds, a port where connecting is refused.
local core = require "petrel.core"

local M = {}

-- Run loop until pred() is true or ms (default 10000) pass; returns pred().
function M.run_until(loop, pred, ms)
  local deadline = loop:now() + (ms or 10000)
  while not pred() and loop:now() < deadline do loop:step(10) end
  return pred()
end

-- Open fds of this process (/proc/self in a shell would be the shell's).
function M.fd_count()
  local n = 0
  local p = io.popen("ls /proc/" .. core.getpid() .. "/fd 2>/dev/null")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

-- A free TCP port: bound by petrel, then released (connecting is refused).
function M.dead_port(loop)
  local lid = assert(loop.c:listen("127.0.0.1", 0))
  local port = loop.c:port(lid)
  loop.c:close(lid)
  return port
end

-- Options given to make(opts) that must raise: rows of { key, value,
-- pattern } over base (a fresh copy each), or { opts, pattern }; every
-- message starts with who .. ": ".
function M.bad_options(make, who, base, rows)
  for _, row in ipairs(rows) do
    local opts, pattern = row[1], row[2]
    if type(opts) ~= "table" then
      opts, pattern = {}, row[3]
      for k, v in pairs(base) do opts[k] = v end
      opts[row[1]] = row[2]
    end
    local ok, err = pcall(make, opts)
    assert(not ok, "no error for " .. pattern)
    err = tostring(err)
    assert(err:find("^" .. who:gsub("%.", "%%.") .. ": "), err)
    assert(err:find(pattern), "'" .. err .. "' lacks " .. pattern)
  end
end

return M

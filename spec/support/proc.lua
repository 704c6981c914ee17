-- Helpers of the specs that start other processes (Apache's Python peers,
-- node, petrel's command line): start one in the background, ask whether
-- it lives, stop it, run one to its end, read what it wrote.
local M = {}

-- Start shell command cmd in the background, its output (stdout and
-- stderr) going to out (default: a fresh temporary file): pid, out.
function M.bg(cmd, out)
  out = out or os.tmpname()
  local p = assert(io.popen("(exec " .. cmd .. ") > '" .. out .. "' 2>&1 & echo $!"))
  local pid = tonumber(p:read("*l"))
  p:close()
  return pid, out
end

-- Whether process pid still runs.
function M.alive(pid)
  local ok = os.execute("kill -0 " .. pid .. " 2>/dev/null")
  return ok == true or ok == 0
end

-- Send SIGTERM to pid (one this spec started).
function M.kill(pid) os.execute("kill " .. pid .. " 2>/dev/null") end

-- Run shell command cmd to its end: its output (stdout and stderr), and
-- whether it exited 0 (the status is echoed: LuaJIT's popen close does
-- not give it).
function M.run(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"<exit $?>\""))
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.-)<exit (%d+)>%s*$")
  return body or out, code == "0"
end

-- The bytes of the file at path, "" when it cannot be read.
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

return M

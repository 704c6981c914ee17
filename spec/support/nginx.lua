-- Debian's nginx with the Lua module (lua-nginx-module, OpenResty's LuaJIT)
-- as a real component of specs and benches: a temporary prefix, a config
-- written there, `nginx -p prefix -c nginx.conf` in the foreground (daemon
-- off) started in the background and stopped by its pid; HTTP/1.0 requests
-- over petrel's own loop, so the same loop can serve Thrift upstreams in
-- this process while nginx calls them.
local petrel = require "petrel"
local core = require "petrel.core"

local M = {}

M.MODULES = "/usr/lib/nginx/modules"

local function sh_ok(cmd)
  local a, _, c = os.execute(cmd)
  return a == true or a == 0 or c == 0 and a ~= nil and a ~= false
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end
M.read_file = read_file

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end
M.write_file = write_file

-- A fresh private directory: /tmp/petrel-<tag>-XXXXXX.
function M.tmpdir(tag)
  local p = assert(io.popen("mktemp -d /tmp/petrel-" .. (tag or "nginx") .. "-XXXXXX"))
  local d = p:read("*l")
  p:close()
  assert(d and #d > 0, "mktemp failed")
  return d
end

-- Start a shell command in the background: pid (of the command itself).
function M.bg(cmd, out)
  out = out or "/dev/null"
  local p = assert(io.popen("(exec " .. cmd .. ") > '" .. out .. "' 2>&1 & echo $!"))
  local pid = tonumber(p:read("*l"))
  p:close()
  return pid
end

function M.alive(pid)
  -- a zombie (exited, not yet reaped by the shell) counts as gone
  local st = read_file("/proc/" .. pid .. "/stat")
  if st == "" then return false end
  return not st:match("^%d+ %b() Z")
end

-- A port on 127.0.0.1 that nobody listens on once this returns (bound by
-- the loop, then released, for a process that needs a port number).
function M.free_port(loop)
  local l = assert(loop.c:listen("127.0.0.1", 0))
  local p = loop.c:port(l)
  loop.c:close(l)
  return p
end

-- Run the loop until pred() or ms; returns pred()'s value.
function M.run_until(loop, pred, ms)
  local deadline = loop:now() + (ms or 10000)
  while not pred() and loop:now() < deadline do loop:step(20) end
  return pred()
end

-- The resident set of a process in KiB (VmRSS), or nil.
function M.rss_kb(pid)
  local s = read_file("/proc/" .. pid .. "/status")
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- One HTTP/1.0 exchange on the loop: status, headers (lower-case names),
-- body | nil, err. addr is "unix:/path" or a port on 127.0.0.1.
function M.http(loop, addr, method, path, body, timeout_ms)
  local id, err
  if type(addr) == "string" then
    id, err = loop.c:connect(addr, nil, timeout_ms or 10000)
  else
    id, err = loop.c:connect("127.0.0.1", addr, timeout_ms or 10000)
  end
  if not id then return nil, err end
  local w = loop:waiter()
  local parts = {}
  local req = string.format("%s %s HTTP/1.0\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s",
    method, path, body and #body or 0, body or "")
  loop:attach(id, {
    on_connected = function(_, cid, e)
      if e ~= 0 then return w:done(nil, core.strerror(e)) end
      loop.c:output(cid):write(req)
      loop.c:send(cid)
    end,
    on_data = function(_, cid)
      parts[#parts + 1] = loop.c:input(cid):read()
      loop.c:consumed(cid)
    end,
    on_closed = function(_, _, e)
      if e and e ~= 0 and #parts == 0 then return w:done(nil, core.strerror(e)) end
      w:done(table.concat(parts))
    end,
  })
  local raw, e = loop:await(w, timeout_ms or 30000)
  if not raw then
    loop:close(id)
    return nil, e
  end
  local head, rest = raw:match("^(.-)\r\n\r\n(.*)$")
  if not head then return nil, "bad HTTP reply: " .. raw:sub(1, 200) end
  local status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
  local headers = {}
  for k, v in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do headers[k:lower()] = v end
  return status, headers, rest
end

local Nginx = {}
Nginx.__index = Nginx

-- M.start{ loop = petrel loop, http = "..." (the text inside http {}),
-- main = extra main-context lines, prefix = dir (default: a new tmpdir),
-- port = n (listen on 127.0.0.1:n; default a unix socket in the prefix),
-- workers = n (1), taskset = cpu list } -> nginx object.
-- The config gets: both modules loaded, the workers, daemon off, logs and
-- temp paths in the prefix, and `listen` for the server the caller writes
-- as ${LISTEN}. ${PREFIX} and ${ROOT} are replaced in the given text.
-- Or conf = a whole configuration (used as it is; `user root;` is added
-- when running as root; its pid file must be <prefix>/nginx.pid), addr =
-- where it listens, nginx_prefix = nginx's -p (default the prefix).
-- lifetime = seconds after which nginx is stopped whatever happens (900).
function M.start(o)
  local loop = o.loop
  local prefix = o.prefix or M.tmpdir("nginx")
  local root = o.root or assert(io.popen("pwd")):read("*l")
  local self = setmetatable({ loop = loop, prefix = prefix, root = root }, Nginx)
  local listen
  if o.port then
    listen = "127.0.0.1:" .. o.port
    self.addr = o.port
  else
    listen = "unix:" .. prefix .. "/http.sock"
    self.addr = "unix:" .. prefix .. "/http.sock"
  end
  os.execute("mkdir -p '" .. prefix .. "/tmp'")
  local user = (io.popen("id -u"):read("*l") == "0") and "user root;\n" or ""
  local conf = o.conf and (user .. o.conf) or table.concat({
    "load_module " .. M.MODULES .. "/ndk_http_module.so;",
    "load_module " .. M.MODULES .. "/ngx_http_lua_module.so;",
    user .. "worker_processes " .. (o.workers or 1) .. ";",
    "daemon off;",
    "master_process on;",
    "pid ${PREFIX}/nginx.pid;",
    "error_log ${PREFIX}/error.log " .. (o.log_level or "warn") .. ";",
    o.main or "",
    "events { worker_connections " .. (o.worker_connections or 4096) .. "; }",
    "http {",
    "  access_log off;",
    "  client_body_temp_path ${PREFIX}/tmp/body;",
    "  proxy_temp_path ${PREFIX}/tmp/proxy;",
    "  fastcgi_temp_path ${PREFIX}/tmp/fastcgi;",
    "  uwsgi_temp_path ${PREFIX}/tmp/uwsgi;",
    "  scgi_temp_path ${PREFIX}/tmp/scgi;",
    o.http,
    "}",
    "",
  }, "\n")
  if o.conf then
    self.addr = o.addr
  else
    conf = conf:gsub("%${LISTEN}", listen):gsub("%${PREFIX}", prefix):gsub("%${ROOT}", root)
  end
  write_file(prefix .. "/nginx.conf", conf)
  -- under timeout: nginx stops by itself even if whoever started it dies
  -- (timeout passes our TERM on to the master)
  self.pid = M.bg(string.format("timeout %d %snginx -p '%s' -c '%s/nginx.conf' -e '%s/error.log'",
    o.lifetime or 900, o.taskset and ("taskset -c " .. o.taskset .. " ") or "", o.nginx_prefix or prefix,
    prefix, prefix), prefix .. "/stdout.log")
  -- ready once a request gets an answer (any status)
  local ready = M.run_until(loop, function()
    if not M.alive(self.pid) then return true end
    local st = M.http(loop, self.addr, "GET", "/__ping", nil, 2000)
    return st ~= nil
  end, o.start_timeout or 30000)
  if not ready or not M.alive(self.pid) then
    local log = self:log()
    self:stop()
    error("nginx did not start:\n" .. log, 2)
  end
  self.master = tonumber((read_file(prefix .. "/nginx.pid"):match("%d+")))
  return self
end

function Nginx:log()
  return read_file(self.prefix .. "/error.log") .. read_file(self.prefix .. "/stdout.log")
end

function Nginx:request(method, path, body, timeout_ms)
  return M.http(self.loop, self.addr, method, path, body, timeout_ms)
end

-- The worker processes' pids (children of the master), read from /proc
-- (no ps: procps hangs under the ASan runtime that make asan preloads).
function Nginx:workers()
  local out = {}
  local m = assert(self.master, "nginx: no master pid")
  local kids = read_file(string.format("/proc/%d/task/%d/children", m, m))
  for pid in kids:gmatch("%d+") do out[#out + 1] = tonumber(pid) end
  return out
end

-- Stop nginx (TERM, passed on to the master, then KILL after 10 s), wait for it,
-- and remove the prefix unless keep is true.
function Nginx:stop(keep)
  if self.pid and M.alive(self.pid) then
    os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
    local loop = self.loop
    if not M.run_until(loop, function() return not M.alive(self.pid) end, 10000) then
      if self.master then
        for _, w in ipairs(self:workers()) do os.execute("kill -KILL " .. w .. " 2>/dev/null") end
        os.execute("kill -KILL " .. self.master .. " 2>/dev/null")
      end
      os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
    end
  end
  self.pid = nil
  if not keep and self.prefix:match("^/tmp/petrel%-") then
    os.execute("rm -rf '" .. self.prefix .. "'")
  end
end

M.sh_ok = sh_ok
M.petrel = petrel
return M

-- bench/udp.lua (make bench-udp): 512-byte datagrams into a Lua handler.
--
-- A C sender (bench/udp_peer.c send: sendmmsg, 64 at a time, as fast as it
-- can for UDP_SECONDS, default 2) pinned to core 1 sends to a receiver
-- pinned to core 0: the minimal C loop (udp_peer recv: a blocking recvmmsg
-- of 64) or petrel (bench/udp_recv.lua: loop:udp, each datagram handed to
-- Lua, on Lua 5.4 and LuaJIT, epoll and io_uring, through u:recv() in a
-- coroutine or a handler). Every receiver is timed by the same rule: from
-- the end of its first batch to the end of its last, datagrams of the
-- batches after the first; the same 4 MiB receive buffer. Rows run in
-- interleaved rounds (UDP_ROUNDS, default 3); the table gives each row's
-- best datagrams/s with the spread over rounds, the ratio to the C loop's
-- best, the loss (datagrams the sender sent that the receiver did not get:
-- the kernel dropped them when the receive buffer was full) and the
-- receiver's CPU time per datagram.
--   UDP_ROWS="c petrel-5.4-epoll ..." limits the rows.
local BUILD = os.getenv("PETREL_BUILD") or "build"
local SECONDS = tonumber(os.getenv("UDP_SECONDS") or "2")
local ROUNDS = tonumber(os.getenv("UDP_ROUNDS") or "3")
local SIZE = 512
local RCVBUF = 4 * 1024 * 1024
local PEER = BUILD .. "/bench/udp_peer"

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = BUILD .. "/lua5.4/?.so;" .. package.cpath
local petrel = require "petrel"
local loop = assert(petrel.loop())

local function lua_cmd(rt, mode, backend)
  local cpath = rt == "luajit" and "LUA_CPATH" or "LUA_CPATH_5_4"
  return string.format("env LUA_PATH='lua/?.lua;lua/?/init.lua;;' %s='%s/%s/?.so;;' %s "
    .. "bench/udp_recv.lua %s %s %d", cpath, BUILD, rt, rt, mode, backend, RCVBUF)
end

local ROWS = {
  { name = "C recvmmsg loop", key = "c", cmd = PEER .. " recv 0 " .. RCVBUF },
  { name = "petrel Lua 5.4 epoll, u:recv()", key = "petrel-5.4-epoll", cmd = lua_cmd("lua5.4", "recv", "epoll") },
  { name = "petrel Lua 5.4 epoll, handler", key = "petrel-5.4-epoll-handler", cmd = lua_cmd("lua5.4", "handler", "epoll") },
  { name = "petrel Lua 5.4 io_uring, u:recv()", key = "petrel-5.4-uring", cmd = lua_cmd("lua5.4", "recv", "uring"), uring = true },
  { name = "petrel LuaJIT epoll, u:recv()", key = "petrel-jit-epoll", cmd = lua_cmd("luajit", "recv", "epoll") },
  { name = "petrel LuaJIT io_uring, u:recv()", key = "petrel-jit-uring", cmd = lua_cmd("luajit", "recv", "uring"), uring = true },
}

local only = os.getenv("UDP_ROWS")
if only then
  local keep = {}
  for k in only:gmatch("%S+") do keep[k] = true end
  local rows = {}
  for _, r in ipairs(ROWS) do if keep[r.key] or r.key == "c" then rows[#rows + 1] = r end end
  ROWS = rows
end

local probe = petrel.loop { backend = "uring" }
if probe then probe:free() end
local uring_ok = probe ~= nil

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function bg(cmd)
  local out = os.tmpname()
  local p = assert(io.popen("(exec " .. cmd .. ") > " .. out .. " 2>&1 & echo $!"))
  local pid = tonumber(p:read("*l"))
  p:close()
  return pid, out
end

local function wait_for(path, pat, ms)
  local deadline = loop:now() + ms
  while loop:now() < deadline do
    local m = read_file(path):match(pat)
    if m then return m end
    loop:sleep(20)
  end
end

-- One measurement of row r: { rate, loss, cpu_ns, got, sent } | nil, why
local function measure(r)
  local pid, out = bg("taskset -c 0 " .. r.cmd)
  local port = wait_for(out, "port (%d+)", 10000)
  if not port then
    os.execute("kill " .. pid .. " 2>/dev/null")
    local why = read_file(out)
    os.remove(out)
    return nil, "receiver did not start: " .. why
  end
  local p = io.popen("taskset -c 1 " .. PEER .. " send " .. port .. " " .. SECONDS .. " " .. SIZE)
  local sent = tonumber((p:read("*a")):match("sent (%d+)"))
  p:close()
  local res = wait_for(out, "result ([^\n]+)\n", 30000)
  os.execute("kill " .. pid .. " 2>/dev/null")
  os.remove(out)
  if not res or not sent then return nil, "no result" end
  local got, counted, secs, cpu = res:match("(%d+) (%d+) ([%d.]+) ([%d.]+)")
  got, counted, secs, cpu = tonumber(got), tonumber(counted), tonumber(secs), tonumber(cpu)
  if secs <= 0 then return nil, "too few datagrams" end
  return { rate = counted / secs, loss = 1 - got / sent, cpu_ns = cpu / counted * 1e9, got = got,
    sent = sent, send_rate = sent / SECONDS }
end

local results = {}
for _, r in ipairs(ROWS) do results[r.key] = {} end
for round = 1, ROUNDS do
  -- interleaved: each round in another order
  for i = 0, #ROWS - 1 do
    local r = ROWS[(i + round - 1) % #ROWS + 1]
    if r.uring and not uring_ok then
      r.skip = "io_uring is not available here"
    else
      local m, why = measure(r)
      if m then
        local t = results[r.key]
        t[#t + 1] = m
        io.stderr:write(string.format("round %d %-36s %10.0f dgrams/s  loss %5.1f%%  %6.0f ns cpu/dgram"
          .. "  (sender %.0f/s)\n", round, r.name, m.rate, m.loss * 100, m.cpu_ns, m.send_rate))
      else
        io.stderr:write(string.format("round %d %s: %s\n", round, r.name, why))
      end
    end
  end
end

local function best(t, f, lower)
  local b
  for _, m in ipairs(t) do
    if not b or (lower and m[f] < b[f]) or (not lower and m[f] > b[f]) then b = m end
  end
  return b
end

local function spread(t, f)
  local lo, hi
  for _, m in ipairs(t) do
    lo = (not lo or m[f] < lo) and m[f] or lo
    hi = (not hi or m[f] > hi) and m[f] or hi
  end
  return lo, hi
end

local c = best(results.c or {}, "rate")
print(string.format("\nUDP receive, %d-byte datagrams, sender (C sendmmsg) on core 1, receiver on core 0, "
  .. "%d rounds of %g s, %d MiB receive buffer\n", SIZE, ROUNDS, SECONDS, RCVBUF >> 20))
print("| receiver | datagrams/s (best) | spread over rounds | vs C loop | loss (best round) | CPU ns/datagram (best) | sender datagrams/s |")
print("|---|---:|---:|---:|---:|---:|---:|")
for _, r in ipairs(ROWS) do
  local t = results[r.key]
  if #t == 0 then
    print(string.format("| %s | skipped: %s | | | | | |", r.name, r.skip or "no result"))
  else
    local b = best(t, "rate")
    local lo, hi = spread(t, "rate")
    local cb = best(t, "cpu_ns", true)
    print(string.format("| %s | %.0f | %.0f-%.0f | %s | %.1f%% | %.0f | %.0f |", r.name, b.rate, lo, hi,
      c and string.format("%.2fx", b.rate / c.rate) or "-", b.loss * 100, cb.cpu_ns, b.send_rate))
  end
end
print("\ntarget: a Lua handler >= 0.70x the C loop's datagrams/s")

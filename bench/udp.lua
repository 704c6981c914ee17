-- bench/udp.lua (make bench-udp): 512-byte datagrams into a Lua handler.
--
-- Receivers, each pinned to core 0: the minimal C loop (bench/udp_peer.c
-- recv: a blocking recvmmsg of 64) and petrel (bench/udp_recv.lua:
-- loop:udp, each datagram handed to Lua, on Lua 5.4 and LuaJIT, epoll and
-- io_uring, through u:recv() in a coroutine or a handler). The sender
-- (udp_peer.c: sendmmsg, 64 at a time) is pinned to core 1. Two ways:
--   burst   the receiver is stopped (SIGSTOP) while the sender queues
--           UDP_BURST datagrams (default 100,000) in its receive buffer
--           (128 MiB: none is dropped), then continued: how fast it drains
--           them is its own capacity, whatever the sender's speed;
--   stream  the sender sends for UDP_SECONDS (default 2) as fast as it can
--           while the receiver reads (4 MiB receive buffer): its rate, and
--           the loss (what the kernel dropped because the receiver fell
--           behind). On loopback the sender does the kernel's delivery
--           work too, so it can be the slower side: then every receiver
--           shows the sender's rate, and the burst rows are the comparison.
-- Every receiver is timed by one rule: from the end of its first batch to
-- the end of its last, counting the datagrams of the batches after the
-- first. Rows run in interleaved rounds (UDP_ROUNDS, default 3); the tables
-- give each row's best datagrams/s with the spread over rounds, the ratio
-- to the C loop's best, and the receiver's CPU time per datagram (best).
--   UDP_ROWS="petrel-5.4-epoll ..." limits the rows (the C loop always
--   runs); UDP_MODES="burst" or "stream" one way only.
local BUILD = os.getenv("PETREL_BUILD") or "build"
local SECONDS = tonumber(os.getenv("UDP_SECONDS") or "2")
local ROUNDS = tonumber(os.getenv("UDP_ROUNDS") or "3")
local BURST = tonumber(os.getenv("UDP_BURST") or "100000")
local MODES = {}
for m in (os.getenv("UDP_MODES") or "burst stream"):gmatch("%S+") do MODES[#MODES + 1] = m end
local SIZE = 512
local RCVBUF = { stream = 4 * 1024 * 1024, burst = 128 * 1024 * 1024 }
local PEER = BUILD .. "/bench/udp_peer"

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = BUILD .. "/lua5.4/?.so;" .. package.cpath
local petrel = require "petrel"
local loop = assert(petrel.loop())

local function lua_cmd(rt, mode, backend)
  local cpath = rt == "luajit" and "LUA_CPATH" or "LUA_CPATH_5_4"
  return string.format("env LUA_PATH='lua/?.lua;lua/?/init.lua;;' %s='%s/%s/?.so;;' %s "
    .. "bench/udp_recv.lua %s %s", cpath, BUILD, rt, rt, mode, backend)
end

local ROWS = {
  { name = "C recvmmsg loop", key = "c", cmd = PEER .. " recv 0" },
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

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

-- One measurement of row r in mode: { rate, loss, cpu_ns, sent } | nil, why
local function measure(r, mode)
  local pid, out = bg("taskset -c 0 " .. r.cmd .. " " .. RCVBUF[mode])
  local port = wait_for(out, "port (%d+)", 10000)
  if not port then
    os.execute("kill " .. pid .. " 2>/dev/null")
    local why = read_file(out)
    os.remove(out)
    return nil, "receiver did not start: " .. why
  end
  local sent
  if mode == "burst" then
    os.execute("kill -STOP " .. pid)
    sent = tonumber(sh("taskset -c 1 " .. PEER .. " burst " .. port .. " " .. BURST .. " " .. SIZE)
      :match("sent (%d+)"))
    os.execute("kill -CONT " .. pid)
  else
    sent = tonumber(sh("taskset -c 1 " .. PEER .. " send " .. port .. " " .. SECONDS .. " " .. SIZE)
      :match("sent (%d+)"))
  end
  local res = wait_for(out, "result ([^\n]+)\n", 60000)
  os.execute("kill " .. pid .. " 2>/dev/null")
  os.remove(out)
  if not res or not sent then return nil, "no result" end
  local got, counted, secs, cpu = res:match("(%d+) (%d+) ([%d.]+) ([%d.]+)")
  got, counted, secs, cpu = tonumber(got), tonumber(counted), tonumber(secs), tonumber(cpu)
  if secs <= 0 or counted == 0 then return nil, "too few datagrams" end
  return { rate = counted / secs, loss = 1 - got / sent, cpu_ns = cpu / counted * 1e9,
    sent = sent, send_rate = sent / SECONDS }
end

local results = {}
for _, mode in ipairs(MODES) do
  results[mode] = {}
  for _, r in ipairs(ROWS) do results[mode][r.key] = {} end
end
for round = 1, ROUNDS do
  -- interleaved: each round in another order
  for _, mode in ipairs(MODES) do
    for i = 0, #ROWS - 1 do
      local r = ROWS[(i + round - 1) % #ROWS + 1]
      if r.uring and not uring_ok then
        r.skip = "io_uring is not available here"
      else
        local m, why = measure(r, mode)
        if m then
          local t = results[mode][r.key]
          t[#t + 1] = m
          io.stderr:write(string.format("round %d %-6s %-36s %10.0f dgrams/s  loss %5.1f%%  "
            .. "%6.0f ns cpu/dgram\n", round, mode, r.name, m.rate, m.loss * 100, m.cpu_ns))
        else
          io.stderr:write(string.format("round %d %s %s: %s\n", round, mode, r.name, why))
        end
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

for _, mode in ipairs(MODES) do
  local res = results[mode]
  local c = best(res.c, "rate")
  if mode == "burst" then
    print(string.format("\nUDP receive, burst: %d datagrams of %d bytes queued while the receiver "
      .. "was stopped, then drained (receiver on core 0); %d rounds\n", BURST, SIZE, ROUNDS))
  else
    print(string.format("\nUDP receive, stream: %d-byte datagrams from a C sendmmsg sender on core 1 "
      .. "for %g s, receiver on core 0, 4 MiB receive buffer; %d rounds\n", SIZE, SECONDS, ROUNDS))
  end
  print("| receiver | datagrams/s (best) | spread over rounds | vs C loop | CPU ns/datagram (best) | vs C loop (CPU) | loss (best round) |")
  print("|---|---:|---:|---:|---:|---:|---:|")
  local cc = best(res.c, "cpu_ns", true)
  for _, r in ipairs(ROWS) do
    local t = res[r.key]
    if #t == 0 then
      print(string.format("| %s | skipped: %s | | | | | |", r.name, r.skip or "no result"))
    else
      local b = best(t, "rate")
      local lo, hi = spread(t, "rate")
      local cb = best(t, "cpu_ns", true)
      print(string.format("| %s | %.0f | %.0f-%.0f | %s | %.0f | %s | %.1f%% |", r.name, b.rate, lo, hi,
        c and string.format("%.2fx", b.rate / c.rate) or "-", cb.cpu_ns,
        cc and string.format("%.2fx", cc.cpu_ns / cb.cpu_ns) or "-", b.loss * 100))
    end
  end
  if mode == "stream" then
    local s = best(res.c, "send_rate")
    if s then print(string.format("\nthe sender sent at most %.0f datagrams/s", s.send_rate)) end
  end
end
print("\ntarget: a Lua handler >= 0.70x the C loop's datagrams/s")

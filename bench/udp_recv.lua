-- bench/udp_recv.lua — petrel's receiver in the UDP bench (bench/udp.lua):
-- a loop:udp socket on 127.0.0.1, every datagram handed to Lua. Prints
-- "port P", then once no datagram came for 300 ms "result RECEIVED
-- COUNTED SECONDS CPU_SECONDS" by udp_peer.c's timing rule (the clock runs
-- from the end of the first batch to the end of the last).
--   lua bench/udp_recv.lua MODE BACKEND RCVBUF
-- MODE recv: a coroutine calls u:recv() in a loop (the cosocket way);
-- MODE handler: loop:udp{ handler = ... } (called per datagram).
local petrel = require "petrel"
local core = require "petrel.core"

local mode, backend, rcvbuf = arg[1] or "recv", arg[2] or "epoll", tonumber(arg[3] or "4194304")
local loop = assert(petrel.loop { backend = backend })
local clock = core.clock
local n, bytes = 0, 0
local u
if mode == "handler" then
  u = assert(loop:udp { port = 0, rcvbuf = rcvbuf, handler = function(data)
    n = n + 1
    bytes = bytes + #data
  end })
else
  u = assert(loop:udp { port = 0, rcvbuf = rcvbuf })
  loop:spawn(function()
    while true do
      local data = u:recv()
      if not data then return end
      n = n + 1
      bytes = bytes + #data
    end
  end)
end
io.write("port ", u.port, "\n")
io.stdout:flush()
local t0, t1, c0, first, seen = nil, nil, nil, 0, 0
local quiet_since = clock()
while true do
  loop:step(50)
  local now = clock()
  if n ~= seen then
    seen, t1, quiet_since = n, now, now
    if not t0 then t0, c0, first = now, os.clock(), n end
  elseif (t0 and now - quiet_since > 0.3) or now - quiet_since > 20 then
    break
  end
end
local c1 = os.clock()
io.write(string.format("result %d %d %.6f %.6f\n", n, n - first, (t1 or 0) - (t0 or 0), c1 - (c0 or c1)))
if os.getenv("UDP_DEBUG") then
  local st = loop:stats()
  io.stderr:write(string.format("debug: dgrams_in %d ring_enobufs %d ring_cqes %d readv %d kernel_drops %d rd_paused %d\n",
    st.dgrams_in, st.ring_enobufs, st.ring_cqes, st.readv_calls, u:stats().kernel_drops, st.rd_paused))
end

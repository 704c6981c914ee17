-- The loop back ends a network spec runs on: { {name=, opts=} ... }.
-- epoll always; io_uring when the kernel (or sandbox) allows a ring, else
-- the second return value says why, so the spec can report a LOUD pending
-- (counted as skipped by busted) instead of passing quietly.
local core = require "petrel.core"

local list = { { name = "epoll", opts = { backend = "epoll" } } }
local probe, why = core.loop { backend = "uring" }
if probe then
  probe:free()
  list[#list + 1] = { name = "io_uring", opts = { backend = "uring" } }
  why = nil
end
return function() return list, why end

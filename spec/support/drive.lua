-- Poll a core loop until handler(type, id, err, arg) returns true for some
-- completion of a batch, or ms (default 5000) pass. Shared by the loop specs.
return function(loop, handler, ms)
  local deadline = loop:now() + (ms or 5000)
  while loop:now() < deadline do
    local n, ty, id, er, arg = loop:poll(20)
    assert(n, ty)
    local stop = false
    for i = 1, n do
      if handler(ty[i], id[i], er[i], arg[i]) then stop = true end
    end
    if stop then return true end
  end
  return false
end

#!/usr/bin/env bash
# Install petrel with luarocks into a scratch tree for both runtimes and
# check that `require "petrel"` loads from that tree alone (no system or
# checkout paths); then once more for Lua 5.4 as on a machine without
# liburing-dev (a liburing.h that refuses to compile stands in front of the
# system's): the rock must build with epoll only and say so.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
for v in 5.4 5.1; do
  lua=lua5.4; extra=()
  if [ $v = 5.1 ]; then lua=luajit; extra=(LUA_INCDIR=/usr/include/luajit-2.1); fi
  luarocks --lua-version=$v --tree="$tree/$v" make rockspec/petrel-scm-1.rockspec \
    "${extra[@]}" >"$tree/log-$v" 2>&1 || { cat "$tree/log-$v"; exit 1; }
  lp="$tree/$v/share/lua/$v/?.lua;$tree/$v/share/lua/$v/?/init.lua"
  cp="$tree/$v/lib/lua/$v/?.so"
  (cd / && LUA_PATH="$lp" LUA_PATH_5_4="$lp" LUA_CPATH="$cp" LUA_CPATH_5_4="$cp" T="$tree" \
    $lua -e 'local p = require "petrel"
      local where = package.searchpath("petrel.core", package.cpath)
      assert(where:sub(1, #os.getenv("T")) == os.getenv("T"), where)
      print("rock '"$v"' (" .. (jit and jit.version or _VERSION) .. "): " .. tostring(p.buffer("ok")) .. " from " .. where)')
  # the command LuaRocks installed (bin/petrel behind its wrapper), run from
  # elsewhere: it must find the tree's modules
  help=$(cd / && "$tree/$v/bin/petrel" --help) || { echo "petrel --help failed ($v)"; exit 1; }
  grep -q '^Usage: petrel' <<<"$help" || { echo "petrel --help ($v): $help"; exit 1; }
  version=$(cd / && "$tree/$v/bin/petrel" --version)
  echo "rock $v: $tree/$v/bin/petrel --help: $(head -1 <<<"$help") ($version)"
  (cd / && "$tree/$v/bin/petrel" call --help) | grep -q '^Usage: petrel call' ||
    { echo "petrel call --help failed ($v)"; exit 1; }
done

shadow="$tree/no-liburing"
mkdir -p "$shadow"
echo '#error "liburing-dev is not installed here"' > "$shadow/liburing.h"
luarocks --lua-version=5.4 --tree="$tree/nouring" make rockspec/petrel-scm-1.rockspec \
  CC="cc -I$shadow" >"$tree/log-nouring" 2>&1 || { cat "$tree/log-nouring"; exit 1; }
so="$tree/nouring/lib/lua/5.4/petrel/core.so"
if ldd "$so" | grep -q liburing; then echo "rock without liburing-dev links liburing"; exit 1; fi
lp="$tree/nouring/share/lua/5.4/?.lua;$tree/nouring/share/lua/5.4/?/init.lua"
cp="$tree/nouring/lib/lua/5.4/?.so"
(cd / && LUA_PATH_5_4="$lp" LUA_CPATH_5_4="$cp" lua5.4 -e '
  local core = require "petrel.core"
  local l, err = core.loop { backend = "uring" }
  assert(not l and err == "io_uring was not compiled in", tostring(err))
  local a = assert(core.loop { backend = "auto" })
  print("rock 5.4 without liburing-dev: backend auto -> " .. table.concat({ a:backend() }, ": "))')

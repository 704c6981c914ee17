#!/usr/bin/env bash
# Install petrel with luarocks into a scratch tree for both runtimes and
# check that `require "petrel"` loads from that tree alone (no system or
# checkout paths).
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
done

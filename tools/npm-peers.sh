#!/usr/bin/env bash
# Node.js peers of the specs, installed into build/npm with npm's ordinary
# client, each pinned: the npm jaeger-client (a Jaeger tracer whose UDP
# sender speaks Thrift Binary to the agent's port 6832; spec/udp_spec.lua)
# and the npm thrift package (Apache Thrift's Node.js library: framed,
# buffered and header transports, binary, compact and JSON protocols,
# multiplexing; tools/node_thrift_peer.js, spec/node_spec.lua). Safe to run
# repeatedly: nothing is fetched when the pinned versions are there.
# Installs Debian's nodejs and npm first where there is no npm (needs root
# or sudo, as tools/deps.sh).
#   tools/npm-peers.sh          install what is missing; prints nothing then
#   tools/npm-peers.sh --check  exit 0 when both are installed, 1 when not
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build/npm
pins=(jaeger-client@3.19.0 thrift@0.17.0)
# the pins whose package is missing or at another version
missing=()
for p in "${pins[@]}"; do
  name=${p%@*} want=${p##*@}
  have=$(node -e "console.log(require('./$dir/node_modules/$name/package.json').version)" 2>/dev/null || true)
  [ "$have" = "$want" ] || missing+=("$p")
done
if [ "${1:-}" = "--check" ]; then [ ${#missing[@]} -eq 0 ]; exit; fi
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{"name":"petrel-npm-peers","private":true}' > "$dir/package.json"
echo "npm-peers: installing ${missing[*]} into $dir"
# every pin at once, so that npm keeps each at its version (jaeger-client
# depends on an older thrift, which npm nests under it)
npm install --prefix "$dir" --no-audit --no-fund --loglevel=error --save-exact "${pins[@]}" >/dev/null

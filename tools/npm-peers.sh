#!/usr/bin/env bash
# Node.js peers of the specs: the npm jaeger-client (a Jaeger tracer whose
# UDP sender speaks Thrift Binary to the agent's port 6832), installed into
# build/npm with npm's ordinary client. Safe to run repeatedly: nothing is
# fetched when the pinned version is there. Installs Debian's nodejs and
# npm first where there is no npm (needs root or sudo, as tools/deps.sh).
#   tools/npm-peers.sh          install if missing; prints nothing then
#   tools/npm-peers.sh --check  exit 0 when installed, 1 when not
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build/npm
want=3.19.0
have=$(node -e "console.log(require('./$dir/node_modules/jaeger-client/package.json').version)" 2>/dev/null || true)
if [ "${1:-}" = "--check" ]; then [ "$have" = "$want" ]; exit; fi
[ "$have" = "$want" ] && exit 0
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{"name":"petrel-npm-peers","private":true}' > "$dir/package.json"
echo "npm-peers: installing jaeger-client@$want into $dir"
npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "jaeger-client@$want" >/dev/null

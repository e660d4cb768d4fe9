#!/usr/bin/env bash
# The one gate: what CI runs (.ci/run) and what the README shows as the test command.
# Installs what it needs itself, then runs fmt, clippy and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
  else
    echo "test.sh: missing ${need_apt[*]} and not root to install them" >&2
    exit 1
  fi
fi
# tests/wss_client.rs runs scripts/wss_client.py: python3 with the `websockets` package.
# Debian 12's system python refuses plain `pip install` (PEP 668), so the apt package first.
if ! python3 -c 'import websockets' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 &&
    [ "$(command -v python3)" = /usr/bin/python3 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-websockets >/dev/null 2>&1 ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-websockets; }
  fi
  python3 -c 'import websockets' >/dev/null 2>&1 ||
    python3 -m pip install -q websockets ||
    python3 -m pip install -q --break-system-packages websockets || {
    echo "test.sh: cannot install the python3 websockets package (tests/wss_client.rs needs it)" >&2
    exit 1
  }
fi
# Expected values that tests say come from nginx are re-recorded with a real nginx and compared
# (scripts/check-nginx-recordings.sh). Debian's nginx and curl are installed where we are root.
if ! command -v nginx >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx curl >/dev/null 2>&1 ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx curl >/dev/null; }
  fi
fi
if command -v nginx >/dev/null 2>&1 && command -v curl >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "== nginx recordings"
  bash scripts/check-nginx-recordings.sh
else
  echo "== nginx recordings: skipped (needs nginx, curl and root; scripts/check-nginx-recordings.sh)"
fi

rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy

echo "== cargo fmt --check"
cargo fmt --all -- --check
# `--features load`: the load tool (src/bin/ringproxy-load) and the tests that need its binary.
echo "== cargo clippy"
cargo clippy --locked --all-targets --features load -- -D warnings
echo "== cargo test"
cargo test --locked --features load

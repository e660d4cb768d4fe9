#!/usr/bin/env bash
# The README's run command: build, start the bundled echo backend and ringproxy on
# config/examples/websocket.conf, drive a WebSocket session and plain requests through it,
# then stop both. Ports: 9001 (backend) and 8080 (proxy) on 127.0.0.1; override with
# DEMO_PROXY_PORT / DEMO_BACKEND_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."

proxy_port=${DEMO_PROXY_PORT:-8080}
backend_port=${DEMO_BACKEND_PORT:-9001}

echo "== building (release)"
cargo build --release --locked --features load --bins

run=$(mktemp -d)
mkdir -p "$run/logs"
sed -e "s/127.0.0.1:9001/127.0.0.1:$backend_port/" -e "s/127.0.0.1:8080/127.0.0.1:$proxy_port/" \
  config/examples/websocket.conf > "$run/ringproxy.conf"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT INT TERM

echo "== echo backend on 127.0.0.1:$backend_port"
target/release/ringproxy-load echo --listen "127.0.0.1:$backend_port" > "$run/echo.out" &
pids+=($!)

echo "== ringproxy -t"
target/release/ringproxy -p "$run" -c ringproxy.conf -t
echo "== ringproxy on 127.0.0.1:$proxy_port"
target/release/ringproxy -p "$run" -c ringproxy.conf &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$run/logs/ringproxy.pid" ] && break; sleep 0.1; done
[ -s "$run/logs/ringproxy.pid" ] || { echo "ringproxy did not start:"; cat "$run/logs/error.log"; exit 1; }

echo "== a plain request through the proxy (the backend shows what it received)"
python3 - "$proxy_port" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"GET /demo/headers HTTP/1.1\r\nHost: demo.local\r\nConnection: close\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.decode(errors="replace"))
PY

echo "== WebSocket round trips through the proxy: 20 connections, 64-byte messages, 3 s"
target/release/ringproxy-load rtt --url "ws://127.0.0.1:$proxy_port/chat" --connections 20 --size 64 --duration 3s
echo "== WebSocket 1 MiB messages: 2 connections, 2 s"
target/release/ringproxy-load bulk --url "ws://127.0.0.1:$proxy_port/bulk" --size 1m --connections 2 --duration 2s
echo "== done; ringproxy's error log:"
cat "$run/logs/error.log"

#!/usr/bin/env bash
# Regenerates tests/data/nginx_upstream_requests/: the exact request heads REAL nginx sends to a
# backend for the seed configurations (tests/data/seed-configs, or $SEEDS), which
# tests/nginx_upstream_requests.rs replays through src/proxy/request.rs and compares byte for byte.
#
# For each seed, the configuration is copied to a throwaway prefix, its backend addresses
# (127.0.0.1:9001, 127.0.0.1:9002) are pointed at a capture backend (Python, below) and its listen
# ports 8080/8020 at free ports. Each client request in the case list is sent raw to nginx; the
# capture backend records the head nginx forwards (up to and including the blank line) and answers
# 200. Output per case: `<case>.client` (the bytes the client sent) and `<case>.nginx` (the head
# nginx sent upstream). `ports` lists the substituted ports (`8080=N`, `8020=N`, `9001=N`).
#
# Needs: nginx (1.22 as shipped by Debian), python3, root (nginx's workers switch user).
# Usage: scripts/gen-nginx-upstream-requests.sh
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${SEEDS:-tests/data/seed-configs}
out=tests/data/nginx_upstream_requests
rm -rf "$out"; mkdir -p "$out"
nginx -v 2>&1 | sed 's/^nginx version: //' > "$out/nginx-version"
prefix=$(mktemp -d)
trap 'kill "${ngx_pid:-}" 2>/dev/null || true; rm -rf "$prefix"' EXIT

read -r p8080 p8020 p9001 < <(python3 - <<'PY'
import socket
ss=[socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1",0))
print(*[s.getsockname()[1] for s in ss])
PY
)
printf '8080=%s\n8020=%s\n9001=%s\n' "$p8080" "$p8020" "$p9001" > "$out/ports"

# seed file | case name | port | request (python bytes literal; PORT is replaced)
cases=$(cat <<'EOF2'
000-websocket-location.conf|000-ws|8080|WS /websocket?room=1
000-websocket-location.conf|000-get|8080|GET /websocket/a%20b/../c?x=1
000-websocket-location.conf|000-post|8080|POST /websocket
000-websocket-location.conf|000-chunked|8080|CHUNKED /websocket
001-chat-map.conf|001-ws|8080|WS /chat/room?id=7
001-chat-map.conf|001-get|8080|GET /chat/x
001-chat-map.conf|001-post|8080|POST /chat/
001-chat-map.conf|001-chunked|8080|CHUNKED /chat/
002-cluster.conf|002-ws|8020|WS /
002-cluster.conf|002-get|8080|GET /some//path?q=%41
002-cluster.conf|002-post|8020|POST /p
002-cluster.conf|002-chunked|8080|CHUNKED /c
003-nginx.conf|003-api-ws|8080|WS /api/v1/a%20b?x=1
003-nginx.conf|003-api-get|8080|GET /api/items?x=1
003-nginx.conf|003-api-post|8080|POST /api
003-nginx.conf|003-api-chunked|8080|CHUNKED /api/
003-nginx.conf|003-capture-ws|8080|WS /capture
003-nginx.conf|003-capture-get|8080|GET /capture/x?y
004-hash-consistent.conf|004-ws|8080|WS /ws?x=1
004-hash-consistent.conf|004-get|8080|GET /a%20b/c?x=1
004-hash-consistent.conf|004-post|8080|POST /
004-hash-consistent.conf|004-chunked|8080|CHUNKED /up
EOF2
)

for seed in $(echo "$cases" | cut -d'|' -f1 | uniq); do
  rm -rf "$prefix/conf"; mkdir -p "$prefix/conf" "$prefix/logs"
  cp -r "$seeds"/. "$prefix/conf/"
  for f in "$prefix/conf/$seed" "$prefix"/conf/conf.d/*.conf; do
    sed -i -e "s/127\.0\.0\.1:9001/127.0.0.1:$p9001/g; s/127\.0\.0\.1:9002/127.0.0.1:$p9001/g" \
      -e "s/listen \(\s*\)8080/listen \1$p8080/; s/listen \(\s*\)8020/listen \1$p8020/" "$f"
  done
  nginx -p "$prefix/" -c "$prefix/conf/$seed" \
    -g "daemon off; pid $prefix/nginx.pid; error_log $prefix/logs/error.log;" &
  ngx_pid=$!
  echo "$cases" | grep "^$seed|" | grep -v placeholder | \
    P8080=$p8080 P8020=$p8020 P9001=$p9001 OUT=$out python3 -c '
import os, socket, sys, time
ports = {"8080": int(os.environ["P8080"]), "8020": int(os.environ["P8020"])}
out = os.environ["OUT"]
backend = socket.socket(); backend.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
backend.bind(("127.0.0.1", int(os.environ["P9001"]))); backend.listen(16); backend.settimeout(5)

def request(kind, target, port):
    host = "Ws.Example.COM:%d" % port
    if kind == "WS":
        return ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nPragma: no-cache\r\n"
            "Cache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
            "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\nUpgrade: websocket\r\n"
            "Origin: http://ws.example.com:%d\r\nSec-WebSocket-Version: 13\r\n"
            "Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n"
            "Cookie: session=abc123; theme=dark\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
            % (target, host, port)).encode()
    if kind == "GET":
        return ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n"
            "X-Forwarded-For: 203.0.113.7\r\nConnection: keep-alive, X-Drop-Me\r\nKeep-Alive: 300\r\n"
            "X-Drop-Me: 1\r\nTE: trailers\r\nX-Forwarded-For: 198.51.100.2, 10.0.0.1\r\n"
            "Cookie: a=1\r\nCookie: b=2\r\nX-Custom:  spaced value\r\n\r\n" % (target, host)).encode()
    if kind == "POST":
        return ("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            "Content-Length: 13\r\nExpect: 100-continue\r\nUpgrade: h2c\r\n\r\n{\"a\":\"hello\"}"
            % (target, host)).encode()
    if kind == "CHUNKED":
        return ("POST %s HTTP/1.0\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n".replace("HTTP/1.0", "HTTP/1.1")
            % (target, host) + "Content-Type: text/plain\r\nProxy-Authorization: Basic eDp5\r\n\r\n"
            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").encode()
    raise SystemExit("unknown kind " + kind)

def connect(port):
    for _ in range(100):
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nginx did not start on %d" % port)

for line in sys.stdin:
    seed, name, port, spec = line.rstrip("\n").split("|")
    kind, target = spec.split(" ", 1)
    p = ports[port]
    req = request(kind, target, p)
    c = connect(p)
    c.sendall(req)
    b, _ = backend.accept(); b.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = b.recv(65536)
        if not chunk: break
        data += chunk
    head = data[: data.find(b"\r\n\r\n") + 4]
    b.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    b.close()
    c.recv(65536); c.close()
    open(os.path.join(out, name + ".client"), "wb").write(req)
    open(os.path.join(out, name + ".nginx"), "wb").write(head)
    print(name, "captured", len(head), "bytes")
'
  kill "$ngx_pid"; wait "$ngx_pid" 2>/dev/null || true; ngx_pid=
done

#!/usr/bin/env bash
# Regenerates tests/data/nginx_routes.txt: which server and location REAL nginx picks for each
# request, which tests/route_nginx_table.rs replays against src/route.rs.
#
# Starts one throwaway nginx on tests/data/nginx_routes.conf (127.0.0.1:18931, 127.0.0.2:18931,
# 127.0.0.1:18932; every location answers its own id), sends every request below with
# `curl --path-as-is` (the path exactly as written, Host as given, `-` for none: an HTTP/1.0
# request without Host), and records one line per request:
#   <local address> <host|-> <target> => <status> <body, or the Location path of a 301>
# Stops that nginx by its own pid. Needs: nginx, curl.
# Usage: scripts/gen-nginx-route-table.sh
set -euo pipefail
cd "$(dirname "$0")/.."

conf=$PWD/tests/data/nginx_routes.conf
out=tests/data/nginx_routes.txt
version=$(nginx -v 2>&1 | sed 's/^nginx version: //')
prefix=$(mktemp -d)
mkdir -p "$prefix/logs"
globals="pid $prefix/nginx.pid; error_log $prefix/logs/error.log;"

nginx -p "$prefix" -c "$conf" -g "$globals" -t -q
nginx -p "$prefix" -c "$conf" -g "$globals"
stop() {
  if [ -s "$prefix/nginx.pid" ]; then kill -QUIT "$(cat "$prefix/nginx.pid")" 2>/dev/null || true; fi
  sleep 0.2
  rm -rf "$prefix"
}
trap stop EXIT
for _ in $(seq 50); do [ -s "$prefix/nginx.pid" ] && break; sleep 0.1; done

# <local address> <host|-> <target>
requests=$(cat <<'REQ'
127.0.0.1:18931 a.test /
127.0.0.1:18931 a.test /index.html
127.0.0.1:18931 a.test /exact
127.0.0.1:18931 a.test /exact/
127.0.0.1:18931 a.test /exactly
127.0.0.1:18931 a.test /exac
127.0.0.1:18931 a.test /docs
127.0.0.1:18931 a.test /docs/
127.0.0.1:18931 a.test /docs/x
127.0.0.1:18931 a.test /docs/api/
127.0.0.1:18931 a.test /docs/api/v1
127.0.0.1:18931 a.test /docs/api/v1.txt
127.0.0.1:18931 a.test /docs/readme.txt
127.0.0.1:18931 a.test /docs/index.php
127.0.0.1:18931 a.test /static/
127.0.0.1:18931 a.test /static/x.php
127.0.0.1:18931 a.test /static/x.png
127.0.0.1:18931 a.test /static/deep/
127.0.0.1:18931 a.test /static/deep/x.php
127.0.0.1:18931 a.test /static/deeper
127.0.0.1:18931 a.test /x.php
127.0.0.1:18931 a.test /x.PHP
127.0.0.1:18931 a.test /x.png
127.0.0.1:18931 a.test /x.PNG
127.0.0.1:18931 a.test /x.Png
127.0.0.1:18931 a.test /x.JPG
127.0.0.1:18931 a.test /app/
127.0.0.1:18931 a.test /app
127.0.0.1:18931 a.test /app/x
127.0.0.1:18931 a.test /app/x.php
127.0.0.1:18931 a.test /app/x.png
127.0.0.1:18931 a.test /app/admin/
127.0.0.1:18931 a.test /app/admin/x.php
127.0.0.1:18931 a.test /app/raw/
127.0.0.1:18931 a.test /app/raw/x.php
127.0.0.1:18931 a.test /app/raw/x.png
127.0.0.1:18931 a.test /app/exact.php
127.0.0.1:18931 a.test /app/exact.php5
127.0.0.1:18931 a.test /lib/
127.0.0.1:18931 a.test /lib/x.php
127.0.0.1:18931 a.test /lib/x.png
127.0.0.1:18931 a.test /users/42/edit
127.0.0.1:18931 a.test /users/42/Edit
127.0.0.1:18931 a.test /users/x/edit
127.0.0.1:18931 a.test /nest/
127.0.0.1:18931 a.test /nest/a.txt
127.0.0.1:18931 a.test /nest/a.php
127.0.0.1:18931 a.test /px
127.0.0.1:18931 a.test /px?a=1
127.0.0.1:18931 a.test /px/
127.0.0.1:18931 a.test /pxy
127.0.0.1:18931 a.test /eqpx
127.0.0.1:18931 a.test /pxshadow
127.0.0.1:18931 a.test /pxshadow/
127.0.0.1:18931 a.test /@named
127.0.0.1:18931 a.test /Case/
127.0.0.1:18931 a.test /case/
127.0.0.1:18931 a.test /first
127.0.0.1:18931 a.test /firsx
127.0.0.1:18931 a.test /fir
127.0.0.1:18931 a.test /cyc
127.0.0.1:18931 a.test /cycxxxxx
127.0.0.1:18931 a.test /cyd
127.0.0.1:18931 a.test /norm//a
127.0.0.1:18931 a.test /norm/./a
127.0.0.1:18931 a.test /norm/b/../a
127.0.0.1:18931 a.test /norm/%61%2Fb
127.0.0.1:18931 a.test /x/../norm/c
127.0.0.1:18931 a.test /norm/../../x
127.0.0.1:18931 a.test /norm/%zz
127.0.0.1:18931 a.test /%2e%2e/x.php
127.0.0.1:18931 a.test /a/%2e%2e/x.php
127.0.0.1:18931 a.test //exact
127.0.0.1:18931 a.test /static/../x.php
127.0.0.1:18931 a.test /docs%2Fapi%2F
127.0.0.1:18931 a.test /x.php?y=.png
127.0.0.1:18931 b.test /
127.0.0.1:18931 B.TEST /
127.0.0.1:18931 b.test. /
127.0.0.1:18931 b.test:8080 /
127.0.0.1:18931 x.b.test /
127.0.0.1:18931 x.y.b.test /
127.0.0.1:18931 bare.test /
127.0.0.1:18931 q.bare.test /
127.0.0.1:18931 z.wild.test /
127.0.0.1:18931 wild.test /
127.0.0.1:18931 x.deep.wild.test /
127.0.0.1:18931 deep.wild.test /
127.0.0.1:18931 exact.wild.test /
127.0.0.1:18931 www.trail.com /
127.0.0.1:18931 www.trail.co.uk /
127.0.0.1:18931 www.trail /
127.0.0.1:18931 www.trail.long.org /
127.0.0.1:18931 www.trail.long /
127.0.0.1:18931 www.trail.test /
127.0.0.1:18931 abc.rx.test /
127.0.0.1:18931 abc.rx.test /re/zz
127.0.0.1:18931 ABC.RX.TEST /
127.0.0.1:18931 ab1.rx.test /
127.0.0.1:18931 up.test /
127.0.0.1:18931 UP.test /
127.0.0.1:18931 unknown.test /
127.0.0.1:18931 unknown.test /x.php
127.0.0.1:18931 - /
127.0.0.1:18931 nolocation.test /
127.0.0.1:18931 two.test /
127.0.0.2:18931 two.test /
127.0.0.2:18931 a.test /
127.0.0.2:18931 - /
127.0.0.1:18932 m.test //a//b
127.0.0.1:18932 n.test //a//b
127.0.0.1:18932 n.test /a/./b/../c
127.0.0.1:18932 - //x
REQ
)

{
  echo "# Produced by scripts/gen-nginx-route-table.sh with $version ($(uname -m)) on"
  echo "# tests/data/nginx_routes.conf: curl --path-as-is -H 'Host: <host>' http://<address><target>"
  echo "# (host '-': HTTP/1.0 without Host). <address> <host> <target> => <status> <answer>,"
  echo "# the answer being the body, or the path of the Location header for a 301, or '-'."
  while read -r addr host target; do
    if [ "$host" = - ]; then hdr=(--http1.0 -H 'Host:'); else hdr=(-H "Host: $host"); fi
    resp=$(curl -s --path-as-is "${hdr[@]}" -o "$prefix/body" \
      -w '%{http_code} %{redirect_url}' "http://$addr$target")
    code=${resp%% *}
    redirect=${resp#* }
    if [ "$code" = 301 ]; then
      answer=$(printf '%s' "$redirect" | sed -E 's#^[a-z]+://[^/]+##')
    elif [ "$code" = 200 ]; then
      answer=$(cat "$prefix/body")
    else
      answer=-
    fi
    echo "$addr $host $target => $code $answer"
  done <<<"$requests"
} >"$out"
echo "$out: $(grep -vc '^#' "$out") requests"

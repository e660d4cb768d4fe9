#!/usr/bin/env bash
# Regenerates tests/data/nginx_balancer/*.txt: the peers REAL nginx picks, which
# tests/balancer_nginx_table.rs replays against src/upstream/balancer/.
#
# One throwaway nginx (worker_processes 1, so round-robin state is one sequence) serves
# backends on 127.0.0.1:19001-19004, 127.0.0.1:19011-19013 and 127.0.0.2-4:80, each answering
# its own "$server_addr:$server_port", and proxies /<table>/ to one upstream per table.
# 127.0.0.1:19005 has no listener: the *_dead tables show nginx's retries (proxy_next_upstream
# error, max_fails/fail_timeout) on a refused connection.
# Each output file starts with the upstream's `server` lines (parsed by the test) and then
# holds "<key> <answering backend address> <$upstream_addr: every peer tried, comma-separated>"
# lines, with "<n>" instead of a key for round robin and the client address for ip_hash. The
# ip_hash tables' client addresses (IPv4 and IPv6, several sharing a /24) reach nginx in
# X-Real-IP, which the realip module makes the connection's address, the one ip_hash hashes.
#
# Needs: nginx with the realip module (Debian's: apt-get install -y nginx), curl, root (binds
# port 80 on 127.0.0.2-4).
# Usage: scripts/gen-nginx-hash-table.sh [nkeys]   (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."

nkeys=${1:-300}
out=tests/data/nginx_balancer
mkdir -p "$out"
version=$(nginx -v 2>&1 | sed 's/^nginx version: //')
prefix=$(mktemp -d)
conf="$prefix/nginx.conf"
mkdir -p "$prefix/logs"

# table name -> "balancing directive|server line;server line;..."
declare -A tables=(
  [chash_ports]='hash $arg_k consistent|127.0.0.1:19001 weight=1;127.0.0.1:19002 weight=2;127.0.0.1:19003 weight=1;127.0.0.1:19004 weight=3'
  [chash_noport]='hash $arg_k consistent|127.0.0.2;127.0.0.3 weight=2;127.0.0.4'
  [chash_hostname]='hash $arg_k consistent|localhost:19011;localhost:19012;localhost:19013'
  [chash_down]='hash $arg_k consistent|127.0.0.1:19001 weight=1;127.0.0.1:19002 weight=2 down;127.0.0.1:19003 weight=1;127.0.0.1:19004 weight=3'
  [hash]='hash $arg_k|127.0.0.1:19001 weight=1;127.0.0.1:19002 weight=2;127.0.0.1:19003 weight=1;127.0.0.1:19004 weight=3'
  [hash_down]='hash $arg_k|127.0.0.1:19001 weight=1;127.0.0.1:19002 weight=2 down;127.0.0.1:19003 weight=1;127.0.0.1:19004 weight=3'
  [chash_dead]='hash $arg_k consistent|127.0.0.1:19001;127.0.0.1:19005 weight=2;127.0.0.1:19003;127.0.0.1:19004 weight=3'
  [hash_dead]='hash $arg_k|127.0.0.1:19001;127.0.0.1:19005 weight=2;127.0.0.1:19003;127.0.0.1:19004 weight=3'
  [rr_dead]='|127.0.0.1:19001;127.0.0.1:19005 weight=3 max_fails=3;127.0.0.1:19003 weight=2'
  [rr_5_1_1]='|127.0.0.1:19001 weight=5;127.0.0.1:19002;127.0.0.1:19003'
  [rr_1_2_1_3]='|127.0.0.1:19001 weight=1;127.0.0.1:19002 weight=2;127.0.0.1:19003 weight=1;127.0.0.1:19004 weight=3'
  [iphash]='ip_hash|127.0.0.1:19001 weight=1;127.0.0.1:19002 weight=2;127.0.0.1:19003 weight=1;127.0.0.1:19004 weight=3'
  [iphash_down]='ip_hash|127.0.0.1:19001;127.0.0.1:19002 weight=2 down;127.0.0.1:19003;127.0.0.1:19004 weight=3'
  [iphash_dead]='ip_hash|127.0.0.1:19001;127.0.0.1:19005 weight=2;127.0.0.1:19003;127.0.0.1:19004 weight=3'
)

# ip_hash clients: spread IPv4 networks, twenty hosts of one /24, IPv6 addresses.
clients=()
for i in $(seq 0 149); do
  clients+=("10.$((i % 5)).$((i * 37 % 256)).$((i * 101 % 256))")
done
for i in $(seq 1 20); do clients+=("192.168.1.$i"); done
for i in $(seq 0 99); do
  clients+=("2001:db8:$((i % 7))::$(printf %x $((i * 4099 % 65536)))")
done

{
  echo "worker_processes 1;"
  echo "pid $prefix/nginx.pid;"
  echo "error_log $prefix/logs/error.log warn;"
  echo "events { worker_connections 256; }"
  echo "http {"
  echo "  access_log off;"
  for b in 127.0.0.1:19001 127.0.0.1:19002 127.0.0.1:19003 127.0.0.1:19004 \
           127.0.0.1:19011 127.0.0.1:19012 127.0.0.1:19013 \
           127.0.0.2:80 127.0.0.3:80 127.0.0.4:80; do
    echo "  server { listen $b; return 200 \"\$server_addr:\$server_port\"; }"
  done
  for t in "${!tables[@]}"; do
    spec=${tables[$t]}
    method=${spec%%|*}
    echo "  upstream $t {"
    [ -n "$method" ] && echo "    $method;"
    IFS=';' read -ra servers <<<"${spec#*|}"
    for s in "${servers[@]}"; do echo "    server $s;"; done
    echo "  }"
  done
  echo "  server {"
  echo "    listen 127.0.0.1:19000;"
  echo "    set_real_ip_from 127.0.0.1;"
  echo "    real_ip_header X-Real-IP;"
  for t in "${!tables[@]}"; do
    echo "    location /$t/ { proxy_pass http://$t; add_header X-Up \$upstream_addr always; }"
  done
  echo "  }"
  echo "}"
} >"$conf"

nginx -p "$prefix" -c "$conf" -t -q
nginx -p "$prefix" -c "$conf"
stop() { nginx -p "$prefix" -c "$conf" -s stop 2>/dev/null || true; rm -rf "$prefix"; }
trap stop EXIT

for t in $(printf '%s\n' "${!tables[@]}" | sort); do
  spec=${tables[$t]}
  method=${spec%%|*}
  IFS=';' read -ra servers <<<"${spec#*|}"
  file="$out/$t.txt"
  {
    echo "# Produced by scripts/gen-nginx-hash-table.sh with $version ($(uname -m))."
    echo "# upstream $t { ${method:+$method; }server ...; } proxied by proxy_pass, worker_processes 1."
    for s in "${servers[@]}"; do echo "server $s"; done
  } >"$file"
  urls=()
  if [[ $t == rr_* ]]; then
    n=$((${#servers[@]} * 7))
    for i in $(seq 0 $((n - 1))); do urls+=("http://127.0.0.1:19000/$t/"); done
    mapfile -t answers < <(curl -sf -w ' %header{x-up}\n' "${urls[@]}" | sed 's/, /,/g')
    for i in "${!answers[@]}"; do echo "$i ${answers[$i]}"; done >>"$file"
  elif [[ $t == iphash* ]]; then
    # One curl for the whole table, as for the others: the run must stay well inside the dead
    # peer's fail_timeout (10s), which the replay assumes never expires.
    args=()
    for c in "${clients[@]}"; do
      args+=(-sf -H "X-Real-IP: $c" -w ' %header{x-up}\n' "http://127.0.0.1:19000/$t/" --next)
    done
    mapfile -t answers < <(curl "${args[@]}" | sed 's/, /,/g')
    [ "${#answers[@]}" = "${#clients[@]}" ] || { echo "$t: ${#answers[@]} answers" >&2; exit 1; }
    for i in "${!answers[@]}"; do echo "${clients[$i]} ${answers[$i]}"; done >>"$file"
  else
    for i in $(seq 0 $((nkeys - 1))); do urls+=("http://127.0.0.1:19000/$t/?k=key$i"); done
    mapfile -t answers < <(curl -sf -w ' %header{x-up}\n' "${urls[@]}" | sed 's/, /,/g')
    for i in "${!answers[@]}"; do echo "key$i ${answers[$i]}"; done >>"$file"
  fi
  echo "$file: $(grep -vc '^#\|^server ' "$file") picks"
done

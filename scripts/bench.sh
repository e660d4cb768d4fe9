#!/usr/bin/env bash
# Side-by-side WebSocket load runs: the echo backend directly (the ceiling), nginx, HAProxy and
# ringproxy, configured equivalently, interleaved and repeated, with the proxies' CPU and memory
# sampled from /proc. Raw runs go to target/bench/results.jsonl; `ringproxy-load report` turns
# them into medians (CSV), a README-ready markdown table and a PNG chart of the ratios to nginx.
#
# The wss-* scenarios terminate TLS in the proxy (1 worker; certificate from `ringproxy-load
# cert`, ECDSA P-256 unless --cert-type rsa) and proxy plain WebSocket to the echo backend;
# "direct" is then the echo backend's own rustls TLS mode. The upstream-tls-* scenarios are the
# other way round: plain WebSocket in, TLS to the echo backend's TLS mode (no direct runs).
#
#   scripts/bench.sh [--quick] [--workers 1|all|both] [--repeats N] [--hold N]
#                    [--targets direct,nginx,haproxy,ringproxy] [--scenarios LIST]
#                    [--cert-type ecdsa|rsa] [--client-threads N]
#                    [--echo-threads N] [--load PATH] [--ringproxy PATH] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
COMMAND="scripts/bench.sh"
if [ $# -gt 0 ]; then COMMAND+="$(printf " %q" "$@")"; fi

usage() {
  cat <<'EOF'
usage: scripts/bench.sh [options]
  --quick           short durations, 1 repeat, 1 worker (finishes in under 3 minutes)
  --workers W       1, all or both (default: both; 1 with --quick)
  --repeats N       interleaved repeats, medians reported (default: 3; 1 with --quick)
  --hold N          idle WebSockets held for the memory scenario (default: 9000)
  --targets LIST    comma-separated subset of direct,nginx,haproxy,ringproxy (default: all)
  --scenarios LIST  comma-separated subset of rtt-64,rtt-4k,handshake,bulk-64k,bulk-1m,push,
                    hold,wss-handshake,wss-rtt-64,wss-hold,upstream-tls-handshake,
                    upstream-tls-rtt-64
                    and rtt-64|rtt-4k|bulk-64k|bulk-1m with :copy or :splice (ringproxy only)
                    (default: all; bulk-1m and rtt-4k:* not with --quick)
  --cert-type T     ecdsa (P-256, default) or rsa (2048) for the TLS scenarios
  --client-threads N  --threads for the load clients (default: the load tool's)
  --echo-threads N  --threads for the echo backend (default: the load tool's)
  --load PATH       load tool used for echo and clients (default: target/release/ringproxy-load)
  --ringproxy PATH  ringproxy binary to measure (default: target/release/ringproxy)
  --no-build        do not run cargo build (use the binaries already in target/release)
  -h, --help        this text
EOF
}

QUICK=0
WORKERS=""
REPEATS=""
HOLD=9000
TARGETS="direct,nginx,haproxy,ringproxy"
SCENARIO_LIST=""
CERT_TYPE=ecdsa
LOAD=""
RINGPROXY_BIN=""
BUILD=1
CLIENT_THREADS=()
ECHO_THREADS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --workers) WORKERS=${2:?--workers needs 1, all or both}; shift ;;
    --repeats) REPEATS=${2:?--repeats needs a number}; shift ;;
    --hold) HOLD=${2:?--hold needs a number}; shift ;;
    --targets) TARGETS=${2:?--targets needs a list}; shift ;;
    --scenarios) SCENARIO_LIST=${2:?--scenarios needs a list}; shift ;;
    --cert-type) CERT_TYPE=${2:?--cert-type needs ecdsa or rsa}; shift ;;
    --load) LOAD=${2:?--load needs a path}; shift ;;
    --ringproxy) RINGPROXY_BIN=${2:?--ringproxy needs a path}; shift ;;
    --client-threads) CLIENT_THREADS=(--threads "${2:?--client-threads needs a number}"); shift ;;
    --echo-threads) ECHO_THREADS=(--threads "${2:?--echo-threads needs a number}"); shift ;;
    --no-build) BUILD=0 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ "$QUICK" = 1 ]; then
  : "${WORKERS:=1}" "${REPEATS:=1}"
  RTT_D=1s RTT_W=200ms HS_D=1s BULK_D=1s PUSH_D=2s PUSH_N=500 HOLD_IDLE=2s
  SCENARIOS=(rtt-64 rtt-4k handshake bulk-64k push hold rtt-64:copy rtt-64:splice bulk-64k:copy bulk-64k:splice
    wss-handshake wss-rtt-64 wss-hold upstream-tls-handshake upstream-tls-rtt-64)
else
  : "${WORKERS:=both}" "${REPEATS:=3}"
  RTT_D=2s RTT_W=500ms HS_D=1500ms BULK_D=1500ms PUSH_D=2s PUSH_N=2000 HOLD_IDLE=2s
  SCENARIOS=(rtt-64 rtt-4k handshake bulk-64k bulk-1m push hold
    rtt-64:copy rtt-64:splice rtt-4k:copy rtt-4k:splice bulk-64k:copy bulk-64k:splice
    bulk-1m:copy bulk-1m:splice
    wss-handshake wss-rtt-64 wss-hold upstream-tls-handshake upstream-tls-rtt-64)
fi
if [ -n "$SCENARIO_LIST" ]; then
  IFS=, read -r -a SCENARIOS <<<"$SCENARIO_LIST"
  for sc in "${SCENARIOS[@]}"; do
    case "$sc" in
      rtt-64 | rtt-4k | handshake | bulk-64k | bulk-1m | push | hold) ;;
      rtt-64:* | rtt-4k:* | bulk-64k:* | bulk-1m:*)
        case "${sc#*:}" in copy | splice) ;; *) die "unknown path in $sc (copy or splice)" ;; esac ;;
      wss-handshake | wss-rtt-64 | wss-hold | upstream-tls-handshake | upstream-tls-rtt-64) ;;
      *) die "unknown scenario $sc" ;;
    esac
  done
fi
# SCENARIO:PATH runs ringproxy alone with `proxy_splice PATH` (copy = off, splice = on), to
# compare its two tunnel forwarding paths side by side with the default (auto) runs above.
SPLICE_MODE=
case "$CERT_TYPE" in ecdsa | rsa) ;; *) die "--cert-type must be ecdsa or rsa" ;; esac
tls_mode() { # $1 = scenario: plain, front (TLS from the client) or upstream (TLS to the backend)
  case "$1" in wss-*) echo front ;; upstream-tls-*) echo upstream ;; *) echo plain ;; esac
}
WANT_TLS=0 WANT_FRONT=0 WANT_UPSTREAM=0
for sc in "${SCENARIOS[@]}"; do
  case "$(tls_mode "$sc")" in
    front) WANT_TLS=1 WANT_FRONT=1 ;;
    upstream) WANT_TLS=1 WANT_UPSTREAM=1 ;;
  esac
done
case "$WORKERS" in
  1) WORKER_SETS=(1) ;;
  all) WORKER_SETS=(all) ;;
  both) WORKER_SETS=(1 all) ;;
  *) die "--workers must be 1, all or both" ;;
esac
[[ "$REPEATS" =~ ^[1-9][0-9]*$ ]] || die "--repeats must be a positive integer"
[[ "$HOLD" =~ ^[1-9][0-9]*$ ]] || die "--hold must be a positive integer"
IFS=, read -r -a WANT <<<"$TARGETS"
for t in "${WANT[@]}"; do
  case "$t" in direct | nginx | haproxy | ringproxy) ;; *) die "unknown target $t" ;; esac
done
wants() { [[ ",$TARGETS," == *",$1,"* ]]; }
NCPU=$(nproc)
CLK_TCK=$(getconf CLK_TCK)
HOLD_OPEN_RATE=5000

# ---------------------------------------------------------------- file descriptors
# 9,000 proxied connections: 9,000 client fds in the load tool, 18,000 in the proxy (one worker
# can end up with all of them), 9,000 in the echo backend. Every process inherits our limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
if [ $((2 * HOLD + 512)) -gt "$NOFILE" ]; then
  die "--hold $HOLD needs $((2 * HOLD + 512)) fds in the proxy but ulimit -n is $NOFILE"
fi
WORKER_CONNECTIONS=$((NOFILE - 256))
HAPROXY_MAXCONN=$(((NOFILE - 512) / 2))

# ---------------------------------------------------------------- build and install
if [ "$BUILD" = 1 ]; then
  log "cargo build --release --locked --features load"
  cargo build --release --locked --features load
fi
: "${LOAD:=$ROOT/target/release/ringproxy-load}"
REPORT_BIN=$ROOT/target/release/ringproxy-load
: "${RINGPROXY_BIN:=$ROOT/target/release/ringproxy}"
[ -x "$LOAD" ] || die "load tool $LOAD not found (build it, or pass --load)"

install_pkg() { # $1 = command, $2 = Debian package
  command -v "$1" >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || die "$1 is missing; install the $2 package (apt-get install -y $2)"
  log "installing $2"
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  # The package may start its own service on the default port: we run our own instances.
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now "$2" >/dev/null 2>&1 || true
  fi
  if command -v service >/dev/null 2>&1; then service "$2" stop >/dev/null 2>&1 || true; fi
  command -v "$1" >/dev/null 2>&1 || die "installing $2 did not provide $1"
}
PATH=$PATH:/usr/sbin:/sbin
wants nginx && install_pkg nginx nginx
wants haproxy && install_pkg haproxy haproxy
# The chart's text needs a font (the report still writes the tables without one).
if ! ls /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get install -y -qq fonts-dejavu-core >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq fonts-dejavu-core >/dev/null 2>&1; } ||
    log "note: could not install fonts-dejavu-core; the PNG chart will be skipped"
fi

# ---------------------------------------------------------------- run directory, cleanup
RUN_DIR=$ROOT/target/bench/run-$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN_DIR"
RESULTS=$RUN_DIR/results.jsonl
: >"$RESULTS"
log "run directory $RUN_DIR"

STARTED=() # pids of everything we started (process-group leaders are not assumed)

descendants() { # $1 = pid: prints pid and all its descendants
  local p c
  for p in "$@"; do
    [ -d "/proc/$p" ] || continue
    echo "$p"
    for c in $(pgrep -P "$p" 2>/dev/null || true); do descendants "$c"; done
  done
}

stop_pids() { # TERM the given pids and their descendants, KILL what is left after 5 s
  local all p i
  all=$(descendants "$@" | sort -u)
  [ -n "$all" ] || return 0
  for p in $all; do kill -TERM "$p" 2>/dev/null || true; done
  for i in $(seq 50); do
    local alive=0
    for p in $all; do [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
    [ "$i" = 50 ] && for p in $all; do kill -KILL "$p" 2>/dev/null || true; done
  done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ ${#STARTED[@]} -gt 0 ]; then stop_pids "${STARTED[@]}"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget() { # remove $1 from STARTED
  local keep=() p
  for p in "${STARTED[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  STARTED=("${keep[@]+"${keep[@]}"}")
}

# ---------------------------------------------------------------- ports and readiness
PORT_LO=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range)
port_in_use() { # $1 = port: listed as a local port in /proc/net/tcp{,6}?
  local hex
  hex=$(printf ':%04X ' "$1")
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '{print $2" "}' | grep -q -- "$hex"
}
USED_PORTS=" "
free_port() { # below the ephemeral range, so client connections cannot take it meanwhile
  local p
  while :; do
    p=$((10000 + RANDOM % (PORT_LO - 10000)))
    [[ "$USED_PORTS" == *" $p "* ]] && continue
    port_in_use "$p" && continue
    USED_PORTS="$USED_PORTS$p "
    echo "$p"
    return
  done
}
listening() { # $1 = port: a LISTEN (0A) socket on it?
  local hex
  hex=$(printf ':%04X' "$1")
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v h="$hex" '$2 ~ h"$" && $4 == "0A" {f=1} END {exit !f}'
}
wait_listen() { # $1 = pid, $2 = port, $3 = what: waits up to 10 s
  local i
  for i in $(seq 100); do
    listening "$2" && return 0
    [ -d "/proc/$1" ] || { log "$3 exited before listening on $2"; return 1; }
    sleep 0.1
  done
  log "$3 is not listening on $2 after 10 s"
  return 1
}

# ---------------------------------------------------------------- /proc sampling
cpu_ticks() { # utime+stime of $1 and its descendants, in clock ticks
  local p sum=0 rest
  for p in $(descendants "$1"); do
    rest=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    # after "pid (comm) ": state is field 1, utime 12, stime 13
    sum=$((sum + $(awk '{print $12 + $13}' <<<"$rest")))
  done
  echo "$sum"
}
rss_kib() { # VmRSS of $1 and its descendants, in KiB
  local p sum=0 v
  for p in $(descendants "$1"); do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

# ---------------------------------------------------------------- echo backend
ECHO_OUT=$RUN_DIR/echo.out
"$LOAD" echo --listen 127.0.0.1:0 --push-rate 10 "${ECHO_THREADS[@]+"${ECHO_THREADS[@]}"}" >"$ECHO_OUT" 2>"$RUN_DIR/echo.err" &
ECHO_PID=$!
STARTED+=("$ECHO_PID")
for _ in $(seq 100); do
  grep -q '^listening on ' "$ECHO_OUT" 2>/dev/null && break
  [ -d "/proc/$ECHO_PID" ] || die "echo backend exited: $(tail -3 "$RUN_DIR/echo.err")"
  sleep 0.1
done
ECHO_ADDR=$(awk '/^listening on / {print $3; exit}' "$ECHO_OUT")
[ -n "$ECHO_ADDR" ] || die "echo backend did not report its address"
log "echo backend on $ECHO_ADDR (pid $ECHO_PID)"

# ---------------------------------------------------------------- TLS certificate, TLS echo
# One self-signed certificate for 127.0.0.1 and localhost, trusted by the client as its own CA.
TLS_DIR=$RUN_DIR/tls
TLS_CERT=$TLS_DIR/cert.pem
TLS_KEY=$TLS_DIR/key.pem
ECHO_TLS_ADDR=""
if [ "$WANT_TLS" = 1 ]; then
  "$LOAD" cert --name 127.0.0.1 --name localhost --type "$CERT_TYPE" --out "$TLS_DIR" >/dev/null ||
    die "ringproxy-load cert failed"
  cat "$TLS_CERT" "$TLS_KEY" >"$TLS_DIR/haproxy.pem" # HAProxy wants both in one file
  # The TLS echo is direct's wss target and the upstream-tls-* scenarios' backend.
  if wants direct || [ "$WANT_UPSTREAM" = 1 ]; then
    "$LOAD" echo --listen 127.0.0.1:0 --tls-cert "$TLS_CERT" --tls-key "$TLS_KEY" \
      "${ECHO_THREADS[@]+"${ECHO_THREADS[@]}"}" >"$RUN_DIR/echo-tls.out" 2>"$RUN_DIR/echo-tls.err" &
    ECHO_TLS_PID=$!
    STARTED+=("$ECHO_TLS_PID")
    for _ in $(seq 100); do
      grep -q '^listening on ' "$RUN_DIR/echo-tls.out" 2>/dev/null && break
      [ -d "/proc/$ECHO_TLS_PID" ] || die "TLS echo backend exited: $(tail -3 "$RUN_DIR/echo-tls.err")"
      sleep 0.1
    done
    ECHO_TLS_ADDR=$(awk '/^listening on / {print $3; exit}' "$RUN_DIR/echo-tls.out")
    [ -n "$ECHO_TLS_ADDR" ] || die "TLS echo backend did not report its address"
    log "TLS echo backend on $ECHO_TLS_ADDR (pid $ECHO_TLS_PID), $CERT_TYPE certificate"
  fi
fi

# ---------------------------------------------------------------- proxy configurations
# $1 = target, $2 = workers (1|all), $3 = listen port, $4 = config dir. Prints the config path.
workers_n() { if [ "$1" = all ]; then echo "$NCPU"; else echo 1; fi; }

write_nginx_conf() { # nginx's and ringproxy's (same language); $5 = 1 for nginx-only directives
  # $6 = front: the listener terminates TLS (listen ... ssl, ssl_certificate), as for wss-*;
  # upstream: proxy_pass https:// to the TLS echo backend (no verification, nginx's default).
  local w=$1 port=$2 dir=$3 file=$4 nginx_only=$5 tls=${6:-plain} user_line="" listen_ssl="" ssl_lines=""
  local backend=$ECHO_ADDR scheme=http
  if [ "$nginx_only" = 1 ] && [ "$(id -u)" = 0 ]; then
    user_line="user $(id -un) $(id -gn);"
  fi
  [ "$nginx_only" = 0 ] || mkdir -p "$dir/tmp"
  [ "$tls" = upstream ] && backend=$ECHO_TLS_ADDR scheme=https
  if [ "$tls" = front ]; then
    listen_ssl=" ssl"
    ssl_lines=$'\n'"        ssl_certificate $TLS_CERT;"$'\n'"        ssl_certificate_key $TLS_KEY;"
  fi
  {
    cat <<EOF
# generated by scripts/bench.sh
$user_line
worker_processes $(workers_n "$w");
error_log $dir/error.log warn;
pid $dir/proxy.pid;
daemon off;
worker_rlimit_nofile $NOFILE;
events {
    worker_connections $WORKER_CONNECTIONS;
}
http {
    access_log off;
EOF
    [ "$nginx_only" = 1 ] && cat <<EOF
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
EOF
    cat <<EOF
    upstream echo {
        server $backend;
    }
    server {
        listen 127.0.0.1:$port${listen_ssl} backlog=4096;${ssl_lines}
        location / {
            proxy_pass $scheme://echo;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host \$http_host; # as sent, port included, like HAProxy
            proxy_connect_timeout 5s;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;$([ -n "$SPLICE_MODE" ] && printf '\n            proxy_splice %s;' "$SPLICE_MODE")
        }
    }
}
EOF
  } >"$file"
}

write_haproxy_conf() { # $5 = front: the bind terminates TLS; upstream: TLS to the server
  local w=$1 port=$2 dir=$3 file=$4 tls=${5:-plain} bind_ssl="" server="echo $ECHO_ADDR"
  [ "$tls" = front ] && bind_ssl=" ssl crt $TLS_DIR/haproxy.pem"
  [ "$tls" = upstream ] && server="echo $ECHO_TLS_ADDR ssl verify none"
  cat >"$file" <<EOF
# generated by scripts/bench.sh; no log lines, so no access log; HAProxy's alerts and
# warnings go to stderr, which the script sends to $dir/error.log
global
    nbthread $(workers_n "$w")
    maxconn $HAPROXY_MAXCONN
    pidfile $dir/proxy.pid

defaults
    mode http
    timeout connect 5s
    timeout client 3600s
    timeout server 3600s
    timeout tunnel 3600s
    timeout http-request 10s

frontend fe
    bind 127.0.0.1:$port$bind_ssl
    backlog 4096
    maxconn $HAPROXY_MAXCONN
    default_backend echo

backend echo
    server $server
EOF
}

declare -A PROXY_PID PROXY_PORT
start_proxy() { # $1 = target, $2 = workers, $3 = TLS mode (tls_mode); sets PROXY_PID/PROXY_PORT[$1]
  local t=$1 w=$2 tls=${3:-plain} port dir conf pid
  port=$(free_port)
  dir=$RUN_DIR/$t-w$w
  mkdir -p "$dir"
  conf=$dir/$t.conf
  rm -f "$dir/proxy.pid"
  case "$t" in
    nginx)
      write_nginx_conf "$w" "$port" "$dir" "$conf" 1 "$tls"
      nginx -t -q -c "$conf" -p "$dir" -e "$dir/error.log" 2>>"$dir/stderr.log" ||
        { log "nginx -t rejected $conf: $(tail -2 "$dir/stderr.log" | tr '\n' ' ')"; return 1; }
      nginx -c "$conf" -p "$dir" -e "$dir/error.log" >>"$dir/stdout.log" 2>>"$dir/stderr.log" &
      ;;
    haproxy)
      write_haproxy_conf "$w" "$port" "$dir" "$conf" "$tls"
      haproxy -c -q -f "$conf" >>"$dir/error.log" 2>&1 ||
        { log "haproxy -c rejected $conf: $(tail -2 "$dir/error.log" | tr '\n' ' ')"; return 1; }
      haproxy -db -f "$conf" >>"$dir/stdout.log" 2>>"$dir/error.log" &
      ;;
    ringproxy)
      write_nginx_conf "$w" "$port" "$dir" "$conf" 0 "$tls"
      "$RINGPROXY_BIN" -c "$conf" -p "$dir" >>"$dir/stdout.log" 2>>"$dir/error.log" &
      ;;
  esac
  pid=$!
  STARTED+=("$pid")
  PROXY_PID[$t]=$pid
  PROXY_PORT[$t]=$port
  if ! wait_listen "$pid" "$port" "$t"; then
    log "$t error log: $(tail -3 "$dir/error.log" 2>/dev/null | tr '\n' ' ')"
    stop_proxy "$t"
    return 1
  fi
  # nginx answers on the master's socket before every worker is up: wait for them.
  if [ "$t" = nginx ]; then
    local want i
    want=$(workers_n "$w")
    for i in $(seq 50); do
      [ "$(pgrep -P "$pid" | wc -l)" -ge "$want" ] && break
      sleep 0.1
    done
  fi
}
stop_proxy() {
  local pid=${PROXY_PID[$1]:-}
  [ -n "$pid" ] || return 0
  stop_pids "$pid"
  forget "$pid"
  unset "PROXY_PID[$1]"
}

# ---------------------------------------------------------------- one run
json_str() { # JSON string literal
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/ }
  s=${s//$'\n'/ }
  printf '"%s"' "$s"
}

# client arguments of a scenario: $1 = scenario label, $2 = base url
scenario_args() {
  local base=$2
  case "$1" in
    rtt-64) echo "rtt --url $base/ --connections 50 --size 64 --duration $RTT_D --warmup $RTT_W" ;;
    rtt-4k) echo "rtt --url $base/ --connections 50 --size 4096 --duration $RTT_D --warmup $RTT_W" ;;
    handshake) echo "handshake --url $base/ --connections 50 --duration $HS_D" ;;
    bulk-64k) echo "bulk --url $base/ --connections 4 --size 65536 --duration $BULK_D" ;;
    bulk-1m) echo "bulk --url $base/ --connections 4 --size 1048576 --duration $BULK_D" ;;
    push) echo "push --url $base/push --connections $PUSH_N --duration $PUSH_D" ;;
    hold) echo "hold --url $base/ --connections $HOLD --idle $HOLD_IDLE --open-rate $HOLD_OPEN_RATE" ;;
    # Each op: TCP connect, full TLS handshake (no resumption), upgrade, one 16 B echo, close.
    wss-handshake) echo "handshake --url $base/ --ca $TLS_CERT --connections 50 --duration $HS_D" ;;
    wss-rtt-64) echo "rtt --url $base/ --ca $TLS_CERT --connections 50 --size 64 --duration $RTT_D --warmup $RTT_W" ;;
    # Idle wss connections (each opened with a full TLS handshake), held like `hold`.
    wss-hold) echo "hold --url $base/ --ca $TLS_CERT --connections $HOLD --idle $HOLD_IDLE --open-rate $HOLD_OPEN_RATE" ;;
    upstream-tls-handshake) echo "handshake --url $base/ --connections 50 --duration $HS_D" ;;
    upstream-tls-rtt-64) echo "rtt --url $base/ --connections 50 --size 64 --duration $RTT_D --warmup $RTT_W" ;;
  esac
}
json_num() { # $1 = key, $2 = one-line JSON object: the key's numeric value, or nothing
  grep -o "\"$1\": *-\{0,1\}[0-9][0-9.eE+-]*" <<<"$2" | head -1 | sed 's/^[^:]*: *//' || true
}
seconds_of() { # 500ms / 3s -> seconds (awk float)
  awk -v d="$1" 'BEGIN { if (d ~ /ms$/) { sub(/ms$/, "", d); print d / 1000 } else { sub(/s$/, "", d); print d + 0 } }'
}

is_hold() { [ "$1" = hold ] || [ "$1" = wss-hold ]; } # $1 = scenario: a memory scenario?

# $1 = target, $2 = workers (or -), $3 = scenario label, $4 = repeat. Appends to $RESULTS.
run_one() {
  local t=$1 w=$2 sc=$3 rep=$4 base pid="" out err args line
  local cpu0=0 cpu1=0 rss0="" rss1="" extra timeout_s
  local scheme=ws direct_addr=$ECHO_ADDR
  [ "$(tls_mode "$sc")" = front ] && scheme=wss direct_addr=$ECHO_TLS_ADDR
  if [ "$t" = direct ]; then
    base=$scheme://$direct_addr
  else
    base=$scheme://127.0.0.1:${PROXY_PORT[$t]}
    pid=${PROXY_PID[$t]}
  fi
  out=$RUN_DIR/$t-w$w-$sc-r$rep.out
  err=$RUN_DIR/$t-w$w-$sc-r$rep.err
  read -r -a args <<<"$(scenario_args "${sc%%:*}" "$base")"
  args+=("${CLIENT_THREADS[@]+"${CLIENT_THREADS[@]}"}")
  timeout_s=120
  [ -n "$pid" ] && cpu0=$(cpu_ticks "$pid") && rss0=$(rss_kib "$pid")
  if is_hold "$sc"; then
    timeout --kill-after=5 "$timeout_s" "$LOAD" "${args[@]}" --json >"$out" 2>"$err" &
    local lp=$! i
    STARTED+=("$lp")
    for i in $(seq $((timeout_s * 10))); do
      grep -q '^hold: established' "$err" 2>/dev/null && break
      [ -d "/proc/$lp" ] || break
      sleep 0.1
    done
    if grep -q '^hold: established' "$err" && [ -n "$pid" ]; then
      sleep 1 # let the proxy settle (lazy allocations, freed handshake buffers)
      rss1=$(rss_kib "$pid")
    fi
    wait "$lp" || log "$t $sc: load tool exited with $?"
    forget "$lp"
  else
    timeout --kill-after=5 "$timeout_s" "$LOAD" "${args[@]}" --json >"$out" 2>"$err" ||
      log "$t $sc: load tool exited with $?"
  fi
  [ -n "$pid" ] && cpu1=$(cpu_ticks "$pid")
  line=$(grep '^{' "$out" | tail -1 || true)
  if [[ "$line" != "{"*"}" ]]; then
    log "$t w$w $sc r$rep: no JSON result ($(tail -2 "$err" | tr '\n' ' '))"
    return 1
  fi
  # Proxy CPU per operation. The window also covers the warmup, which runs at the measured
  # rate, so it counts ops * (duration + warmup) / duration operations.
  local warm=0
  [[ "$sc" == *rtt-* ]] && warm=$(seconds_of "$RTT_W")
  local wjson=null
  [ "$t" = direct ] || wjson=$(json_str "$w")
  extra=$(printf ',"target":%s,"workers":%s,"label":%s,"repeat":%d,"upstream_tls":%s' \
    "$(json_str "$t")" "$wjson" "$(json_str "$sc")" "$rep" \
    "$([ "$(tls_mode "$sc")" = upstream ] && echo true || echo false)")
  if [ -n "$pid" ]; then
    extra+=$(awk -v c0="$cpu0" -v c1="$cpu1" -v sc="$sc" -v hz="$CLK_TCK" -v warm="$warm" \
      -v ops="$(json_num ops "$line")" -v dur="$(json_num duration_s "$line")" \
      -v hold="$(is_hold "$sc" && echo 1 || echo 0)" \
      'BEGIN {
         cpu = (c1 - c0) / hz; printf ",\"cpu_s\":%.3f", cpu
         if (ops > 0 && dur > 0 && hold == 0) printf ",\"cpu_us_per_op\":%.3f", cpu * 1e6 / (ops * (dur + warm) / dur)
         else printf ",\"cpu_us_per_op\":null"
       }')
  else
    extra+=',"cpu_s":null,"cpu_us_per_op":null'
  fi
  if is_hold "$sc" && [ -n "$rss1" ]; then
    extra+=$(awk -v a="$rss0" -v b="$rss1" -v n="$HOLD" \
      'BEGIN { printf ",\"rss_before_kib\":%d,\"rss_holding_kib\":%d,\"rss_kib_per_conn\":%.3f", a, b, (b - a) / n }')
  else
    extra+=$(printf ',"rss_before_kib":%s,"rss_holding_kib":null,"rss_kib_per_conn":null' "${rss0:-null}")
  fi
  printf '%s%s}\n' "${line%\}}" "$extra" >>"$RESULTS"
  log "$t w$w $sc r$rep: $(grep -o '"ops_per_s": *[^,]*' <<<"$line")$(grep -o ',"cpu_us_per_op":[^,]*' <<<"$extra")$(grep -o ',"rss_kib_per_conn":[^,}]*' <<<"$extra")"
}

# ---------------------------------------------------------------- ringproxy probes
# A ringproxy that cannot proxy a WebSocket echo (or, for the TLS scenarios, cannot terminate
# or originate TLS yet) has those runs skipped with a note, never faked.
probe_ringproxy() { # $1 = TLS mode; sets PROBE_WHY when it fails
  local mode=$1 url ca=() probe=$RUN_DIR/ringproxy-probe-$1.out line
  PROBE_WHY="it did not start (see $RUN_DIR/ringproxy-w1/error.log)"
  [ -x "$RINGPROXY_BIN" ] || { PROBE_WHY="$RINGPROXY_BIN is missing"; return 1; }
  start_proxy ringproxy 1 "$mode" || return 1
  url=ws://127.0.0.1:${PROXY_PORT[ringproxy]}/
  [ "$mode" = front ] && url=wss://127.0.0.1:${PROXY_PORT[ringproxy]}/ ca=(--ca "$TLS_CERT")
  timeout 20 "$LOAD" rtt --url "$url" "${ca[@]+"${ca[@]}"}" --connections 1 --size 64 \
    --duration 500ms --json >"$probe" 2>"${probe%.out}.err" || true
  stop_proxy ringproxy
  line=$(grep '^{' "$probe" | tail -1 || true)
  if awk -v ops="$(json_num ops "$line")" -v err="$(json_num errors "$line")" \
    'BEGIN { exit !(ops > 0 && err == 0 && err != "") }'; then
    return 0
  fi
  PROBE_WHY="it did not proxy a WebSocket echo in the probe run ($(tail -1 "${probe%.out}.err" 2>/dev/null | cut -c1-160))"
  return 1
}
append_note() { if [ -n "$NOTES" ]; then NOTES+="; $1"; else NOTES=$1; fi; }
TARGET_LIST=()
NOTES=""
RINGPROXY_FRONT=0 RINGPROXY_UPSTREAM=0
for t in direct nginx haproxy ringproxy; do wants "$t" && TARGET_LIST+=("$t"); done
if wants ringproxy; then
  if ! probe_ringproxy plain; then
    append_note "ringproxy skipped: $PROBE_WHY"
    log "note: ringproxy skipped: $PROBE_WHY"
    keep=()
    for t in "${TARGET_LIST[@]}"; do [ "$t" = ringproxy ] || keep+=("$t"); done
    TARGET_LIST=("${keep[@]}")
  else
    for mode in front upstream; do
      want=$WANT_FRONT label="wss-*"
      [ "$mode" = upstream ] && want=$WANT_UPSTREAM label="upstream-tls-*"
      [ "$want" = 1 ] || continue
      if probe_ringproxy "$mode"; then
        if [ "$mode" = front ]; then RINGPROXY_FRONT=1; else RINGPROXY_UPSTREAM=1; fi
      else
        append_note "ringproxy's $label runs skipped: $PROBE_WHY"
        log "note: ringproxy $label skipped: $PROBE_WHY"
      fi
    done
  fi
fi
[ ${#TARGET_LIST[@]} -gt 0 ] || die "no targets left"
if [ "$WANT_FRONT" = 1 ]; then
  append_note "wss rows: TLS terminated by the target (1 worker, $CERT_TYPE certificate; the client offers X25519 and P-256, no post-quantum hybrid) and plain WebSocket to the echo backend; direct is the echo backend's own rustls TLS; a wss handshake is a fresh TCP connection, a full TLS handshake (no resumption), the upgrade, one 16 B echo and the close handshake"
fi
if [ "$WANT_UPSTREAM" = 1 ]; then
  append_note "TLS-to-backend rows: plain WebSocket in, TLS to the echo backend's rustls TLS mode without verification (1 worker; proxies may resume their backend TLS sessions, as nginx and HAProxy do by default)"
fi

# ---------------------------------------------------------------- meta
nginx_v=$(command -v nginx >/dev/null && nginx -v 2>&1 | head -1 || echo none)
haproxy_v=$(command -v haproxy >/dev/null && haproxy -v 2>&1 | head -1 || echo none)
model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
[ -n "$model" ] || model=$(lscpu 2>/dev/null | awk -F': +' '/^Model name/ {print $2; exit}')
{
  printf '{"kind":"meta","command":%s,"date":%s,"nproc":%d,"cpu_model":%s,"kernel":%s' \
    "$(json_str "$COMMAND")" "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")" "$NCPU" \
    "$(json_str "${model:-unknown}")" "$(json_str "$(uname -sr)")"
  printf ',"nginx_version":%s,"haproxy_version":%s,"git_commit":%s,"load_tool":%s' \
    "$(json_str "$nginx_v")" "$(json_str "$haproxy_v")" \
    "$(json_str "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)")" "$(json_str "$LOAD")"
  printf ',"repeats":%d,"workers":%s,"hold":%d,"quick":%s,"ulimit_n":%d,"notes":%s}\n' \
    "$REPEATS" "$(json_str "$WORKERS")" "$HOLD" "$([ "$QUICK" = 1 ] && echo true || echo false)" \
    "$NOFILE" "$(json_str "$NOTES")"
} >>"$RESULTS"

# ---------------------------------------------------------------- the runs
# Each (repeat, workers, scenario) starts fresh proxies, so the hold's RSS is not inflated or
# hidden by what an earlier scenario left in the allocator, then runs the targets interleaved.
log "targets: ${TARGET_LIST[*]}; workers: ${WORKER_SETS[*]}; repeats: $REPEATS; scenarios: ${SCENARIOS[*]}"
# The TLS scenarios run with 1 worker only, without direct for upstream-tls-*, and without
# ringproxy if its probe for that TLS mode failed.
runs_in() { # $1 = target, $2 = scenario, $3 = workers (- for direct)
  local mode
  mode=$(tls_mode "$2")
  [ "$mode" = plain ] && return 0
  [ "$1" = direct ] && { [ "$mode" = front ]; return; }
  [ "$3" = 1 ] || return 1
  [ "$1" = ringproxy ] && [ "$mode" = front ] && [ "$RINGPROXY_FRONT" = 0 ] && return 1
  [ "$1" = ringproxy ] && [ "$mode" = upstream ] && [ "$RINGPROXY_UPSTREAM" = 0 ] && return 1
  return 0
}
for rep in $(seq "$REPEATS"); do
  for sc in "${SCENARIOS[@]}"; do
    direct_done=0
    tls=$(tls_mode "$sc")
    SPLICE_MODE=
    if [[ "$sc" == *:* ]]; then
      wants ringproxy || continue
      case "${sc#*:}" in copy) SPLICE_MODE=off ;; splice) SPLICE_MODE=on ;; esac
    fi
    for w in "${WORKER_SETS[@]}"; do
      for t in "${TARGET_LIST[@]}"; do
        [ "$t" = direct ] && continue
        [[ "$sc" == *:* && "$t" != ringproxy ]] && continue
        runs_in "$t" "$sc" "$w" || continue
        start_proxy "$t" "$w" "$tls" || log "$t w$w: did not start; its runs are missing"
      done
      for t in "${TARGET_LIST[@]}"; do
        [[ "$sc" == *:* && "$t" != ringproxy ]] && continue
        if [ "$t" = direct ]; then
          [ "$direct_done" = 1 ] && continue
          direct_done=1
          runs_in direct "$sc" - || continue
          run_one direct - "$sc" "$rep" || true
        elif [ -n "${PROXY_PID[$t]:-}" ]; then
          run_one "$t" "$w" "$sc" "$rep" || true
        fi
      done
      for t in "${TARGET_LIST[@]}"; do [ "$t" = direct ] || stop_proxy "$t"; done
    done
  done
done

# ---------------------------------------------------------------- report
if ! grep -qv '"kind":"meta"' "$RESULTS"; then
  die "no run produced a result${NOTES:+ ($NOTES)}; see $RUN_DIR"
fi
cp "$RESULTS" "$ROOT/target/bench/results.jsonl"
"$REPORT_BIN" report --input "$ROOT/target/bench/results.jsonl" --out-dir "$ROOT/target/bench/"
log "done: target/bench/results.md, medians.csv, ratios.png (raw runs in $RUN_DIR)"

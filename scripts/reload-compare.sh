#!/usr/bin/env bash
# Reload, drain and binary upgrade under load, side by side: nginx and ringproxy get the same
# configuration text (only nginx's temp paths, `user`, and `daemon on` for its USR2 differ), the
# same echo backends and the same load tool (ringproxy-load `tunnels` and `handshake`), on
# 127.0.0.1. Each scenario prints what was measured; a markdown table goes to
# target/reload-compare/results.md.
#
#   reload  N live tunnels (plain and wss) exchanging numbered messages plus a handshake churn
#           (plain and wss) while R reloads change a location, the upstream group, timeouts and
#           the certificate (alternating A/B): drops, lost messages, failed handshakes, and
#           whether a new TLS handshake after each reload got the new certificate; then a broken
#           configuration is reloaded, which must change nothing.
#   storm   a WebSocket handshake storm on a kept address while R reloads add and remove a second
#           listen address: refused, reset and failed handshakes.
#   quit    QUIT with N tunnels: how many got Close 1001, other closes or drops, and when
#           relative to the signal (worker_shutdown_timeout 10s for both).
#   usr2    USR2, then WINCH and QUIT to the old process (nginx's documented sequence) under a
#           handshake storm and N plain tunnels: refused/reset handshakes, tunnels surviving.
#
#   scripts/reload-compare.sh [--quick] [--targets nginx,ringproxy] [--scenarios LIST]
#                             [--load PATH] [--ringproxy PATH] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
COMMAND="scripts/reload-compare.sh"
if [ $# -gt 0 ]; then COMMAND+="$(printf " %q" "$@")"; fi

usage() {
  sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
}

QUICK=0
TARGETS="nginx,ringproxy"
SCENARIOS="reload,storm,quit,usr2"
LOAD=""
RINGPROXY_BIN=""
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --targets) TARGETS=${2:?--targets needs a list}; shift ;;
    --scenarios) SCENARIOS=${2:?--scenarios needs a list}; shift ;;
    --load) LOAD=${2:?--load needs a path}; shift ;;
    --ringproxy) RINGPROXY_BIN=${2:?--ringproxy needs a path}; shift ;;
    --no-build) BUILD=0 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "reload-compare.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
IFS=, read -r -a WANT <<<"$TARGETS"
for t in "${WANT[@]}"; do
  case "$t" in nginx | ringproxy) ;; *) echo "unknown target $t" >&2; exit 2 ;; esac
done
IFS=, read -r -a SCEN <<<"$SCENARIOS"
for s in "${SCEN[@]}"; do
  case "$s" in reload | storm | quit | usr2) ;; *) echo "unknown scenario $s" >&2; exit 2 ;; esac
done

log() { printf '[reload-compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
now_ms() { date +%s%3N; }

if [ "$QUICK" = 1 ]; then
  TUNNELS=500 WSS_TUNNELS=100 RELOADS=5 TUNNEL_D=25s QUIT_N=300 USR2_N=200 STORM_D=12s USR2_D=25s
else
  TUNNELS=5000 WSS_TUNNELS=500 RELOADS=20 TUNNEL_D=70s QUIT_N=2000 USR2_N=2000 STORM_D=30s USR2_D=40s
fi
SHUTDOWN_TIMEOUT=10

# ---------------------------------------------------------------- binaries and tools
for tool in curl jq openssl ss; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done
if [[ ",$TARGETS," == *",nginx,"* ]] && ! command -v nginx >/dev/null; then
  [ "$(id -u)" = 0 ] || die "nginx is not installed (apt-get install nginx, as root)"
  log "installing nginx"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null; } ||
    die "apt-get install nginx failed"
  # The package starts a system nginx on port 80; this script needs none.
  systemctl stop nginx 2>/dev/null || service nginx stop 2>/dev/null || true
fi
NGINX_BIN=$(command -v nginx || true)
if [ "$BUILD" = 1 ] && { [ -z "$LOAD" ] || [ -z "$RINGPROXY_BIN" ]; }; then
  log "building release binaries (--features load)"
  cargo build --release --features load --bin ringproxy --bin ringproxy-load >&2 ||
    die "cargo build failed"
fi
LOAD=$(realpath "${LOAD:-target/release/ringproxy-load}")
RINGPROXY_BIN=$(realpath "${RINGPROXY_BIN:-target/release/ringproxy}")
[ -x "$LOAD" ] || die "no load tool at $LOAD"
[ -x "$RINGPROXY_BIN" ] || die "no ringproxy at $RINGPROXY_BIN"

# 5,500 tunnels: as many descriptors in the client and in the echo, twice that in the proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[ "$NOFILE" -ge 15000 ] || log "warning: ulimit -n is $NOFILE; the full run needs about 15000 per process"

OUT=$ROOT/target/reload-compare
RUN_DIR=$OUT/run-$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN_DIR"
RESULTS=$RUN_DIR/results.tsv
: >"$RESULTS"

# ---------------------------------------------------------------- cleanup
STARTED=()     # pids this script started (clients, echo backends, ringproxy)
PID_FILES=()   # nginx daemonizes: its masters are found through their pid files
cleanup() {
  local p f all=""
  for f in "${PID_FILES[@]+"${PID_FILES[@]}"}"; do
    for p in "$f" "$f.oldbin"; do
      [ -s "$p" ] && all+=" $(cat "$p")"
    done
  done
  for p in "${STARTED[@]+"${STARTED[@]}"}"; do all+=" $p"; done
  for p in $all; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for p in $all; do [ -d "/proc/$p" ] && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in $all; do kill -KILL "$p" 2>/dev/null || true; done
  trap - EXIT INT TERM
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------- backends and certificates
start_echo() { # $1 = name; sets ECHO_ADDR (not in a subshell: its pid must reach STARTED)
  "$LOAD" echo --listen 127.0.0.1:0 >"$RUN_DIR/$1.out" 2>"$RUN_DIR/$1.err" &
  local pid=$!
  STARTED+=("$pid")
  for _ in $(seq 100); do
    grep -q '^listening on ' "$RUN_DIR/$1.out" 2>/dev/null && break
    [ -d "/proc/$pid" ] || die "$1 exited: $(tail -3 "$RUN_DIR/$1.err")"
    sleep 0.1
  done
  ECHO_ADDR=$(awk '/^listening on / {print $3; exit}' "$RUN_DIR/$1.out")
}
start_echo echo1
ECHO1=$ECHO_ADDR
start_echo echo2
ECHO2=$ECHO_ADDR
[ -n "$ECHO1" ] && [ -n "$ECHO2" ] || die "the echo backends did not start"
log "echo backends on $ECHO1 and $ECHO2"
TLS=$RUN_DIR/tls
for c in a b; do
  "$LOAD" cert --name 127.0.0.1 --name localhost --out "$TLS/$c" >/dev/null || die "cert failed"
done
cat "$TLS/a/cert.pem" "$TLS/b/cert.pem" >"$TLS/ca.pem"
fingerprint() { openssl x509 -noout -fingerprint -sha256 -in "$1" | cut -d= -f2; }
FP_A=$(fingerprint "$TLS/a/cert.pem")
FP_B=$(fingerprint "$TLS/b/cert.pem")

# ---------------------------------------------------------------- configuration
# conf TARGET DIR GEN PORT TLS_PORT EXTRA_PORT SHUTDOWN: generation GEN (location /gen answers
# it; odd ones add the second backend with weight 2, every third balances by hash; timeouts
# grow; certificate A in even ones, B in odd ones). GEN "broken" adds an unknown directive.
conf() {
  local t=$1 dir=$2 gen=$3 port=$4 tls_port=$5 extra=$6 shutdown=$7
  local n=${gen//[!0-9]/}
  n=${n:-0}
  local cert=a second="" balance="" extra_listen="" broken="" shut=""
  [ $((n % 2)) = 1 ] && cert=b second="server $ECHO2 weight=2;"
  [ $((n % 3)) = 0 ] && balance='hash $remote_port;'
  [ -n "$extra" ] && extra_listen="listen 127.0.0.1:$extra backlog=4096;"
  [ "$gen" = broken ] && broken="proxy_get_header X-Broken 1;"
  [ -n "$shutdown" ] && shut="worker_shutdown_timeout ${shutdown}s;"
  if [ "$t" = nginx ]; then
    [ "$(id -u)" = 0 ] && echo "user $(id -un) $(id -gn);"
    echo "daemon on;"
  else
    echo "daemon off;"
  fi
  cat <<EOF
worker_processes 2;
worker_rlimit_nofile $NOFILE;
error_log $dir/error.log notice;
pid $dir/proxy.pid;
$shut
events { worker_connections 16000; }
http {
    access_log off;
EOF
  [ "$t" = nginx ] && cat <<EOF
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
EOF
  cat <<EOF
    upstream echo { $balance server $ECHO1; $second }
    server {
        listen 127.0.0.1:$port backlog=4096;
        listen 127.0.0.1:$tls_port ssl backlog=4096;
        $extra_listen
        ssl_certificate $TLS/$cert/cert.pem;
        ssl_certificate_key $TLS/$cert/key.pem;
        location /gen { return 200 "$n"; }
        location / {
            $broken
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_connect_timeout 5s;
            proxy_read_timeout $((600 + n))s;
            proxy_send_timeout $((300 + n))s;
        }
    }
}
EOF
}

# ---------------------------------------------------------------- proxy control
# start_proxy TARGET DIR: the configuration is DIR/proxy.conf; sets MASTER.
start_proxy() {
  local t=$1 dir=$2
  mkdir -p "$dir/tmp"
  if [ "$t" = nginx ]; then
    PID_FILES+=("$dir/proxy.pid")
    "$NGINX_BIN" -t -q -c "$dir/proxy.conf" -p "$dir" -e "$dir/error.log" 2>>"$dir/stderr.log" ||
      die "nginx -t rejected $dir/proxy.conf: $(tail -2 "$dir/stderr.log")"
    # Absolute path: USR2 executes argv[0].
    "$NGINX_BIN" -c "$dir/proxy.conf" -p "$dir" -e "$dir/error.log" >>"$dir/stdout.log" 2>>"$dir/stderr.log" ||
      die "nginx did not start: $(tail -2 "$dir/stderr.log")"
  else
    "$RINGPROXY_BIN" -c "$dir/proxy.conf" -p "$dir" -e "$dir/error.log" \
      >>"$dir/stdout.log" 2>>"$dir/stderr.log" &
    STARTED+=("$!")
  fi
  for _ in $(seq 150); do
    [ -s "$dir/proxy.pid" ] && break
    sleep 0.1
  done
  [ -s "$dir/proxy.pid" ] || die "$t wrote no pid file: $(tail -3 "$dir/error.log" "$dir/stderr.log" 2>/dev/null)"
  MASTER=$(cat "$dir/proxy.pid")
  # Both workers up (nginx's master answers before they are).
  if [ "$t" = nginx ]; then
    for _ in $(seq 100); do
      [ "$(pgrep -P "$MASTER" | wc -l)" -ge 2 ] && break
      sleep 0.1
    done
  fi
}

stop_proxy() { # $1 = DIR: TERM every master named by its pid files, then wait (KILL after 10 s)
  local dir=$1 p pids=""
  for f in "$dir/proxy.pid" "$dir/proxy.pid.oldbin"; do [ -s "$f" ] && pids+=" $(cat "$f")"; done
  for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 100); do
    local alive=0
    for p in $pids; do [ -d "/proc/$p" ] && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
}

gen_of() { curl -s --max-time 2 "http://127.0.0.1:$1/gen" 2>/dev/null || true; }
cert_fp() { # SHA-256 fingerprint of the certificate a new handshake on port $1 gets
  openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null |
    openssl x509 -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2
}
wait_gen() { # port gen: polls /gen until it answers gen (20 s at most)
  for _ in $(seq 400); do
    [ "$(gen_of "$1")" = "$2" ] && return 0
    sleep 0.05
  done
  return 1
}

# start_client NAME ARGS...: the load tool in the background, JSON to NAME.json; sets CLIENT
start_client() {
  local name=$1
  shift
  timeout --kill-after=5 300 "$LOAD" "$@" --json >"$SDIR/$name.json" 2>"$SDIR/$name.err" &
  CLIENT=$!
  STARTED+=("$CLIENT")
}
wait_established() { # NAME PID: until the tunnels client says all have tried to open (120 s)
  for _ in $(seq 1200); do
    grep -q '^tunnels: established' "$SDIR/$1.err" 2>/dev/null && {
      grep '^tunnels: established' "$SDIR/$1.err" | head -1 >&2
      return 0
    }
    [ -d "/proc/$2" ] || return 1
    sleep 0.1
  done
  return 1
}
j() { jq -r "$2 // \"-\"" "$SDIR/$1.json" 2>/dev/null || echo "?"; }
jsum() { # field client... : sum of a field over the clients' reports
  local f=$1 sum=0 v
  shift
  for c in "$@"; do
    v=$(jq -r ".$f // 0" "$SDIR/$c.json" 2>/dev/null || echo 0)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
secs_after() { # unix_ms signal_ms: seconds, one decimal
  [ "$1" = "-" ] || [ "$1" = "null" ] && { echo "-"; return; }
  awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (a - b) / 1000 }'
}
row() { # scenario target tunnels survived dropped lost close1001 failed refused reset notes
  printf '%s\t' "$@" | sed 's/\t$//' >>"$RESULTS"
  echo >>"$RESULTS"
  printf '  %-7s %-9s tunnels %s survived %s dropped %s lost %s close-1001 %s failed-handshakes %s refused %s reset %s | %s\n' "$@" >&2
}

# ---------------------------------------------------------------- scenarios
scenario_reload() {
  local t=$1 port tls_port i
  port=$(free_port) tls_port=$(free_port)
  conf "$t" "$SDIR" 0 "$port" "$tls_port" "" "" >"$SDIR/proxy.conf"
  start_proxy "$t" "$SDIR"
  start_client tunnels tunnels --url "ws://127.0.0.1:$port/" --connections "$TUNNELS" \
    --duration "$TUNNEL_D" --interval 1s --threads 2
  local c1=$CLIENT
  start_client wss-tunnels tunnels --url "wss://127.0.0.1:$tls_port/" --ca "$TLS/ca.pem" \
    --connections "$WSS_TUNNELS" --duration "$TUNNEL_D" --interval 1s
  local c2=$CLIENT
  wait_established tunnels "$c1" || log "$t: the plain tunnels client ended early"
  wait_established wss-tunnels "$c2" || log "$t: the wss tunnels client ended early"
  start_client churn handshake --url "ws://127.0.0.1:$port/" --connections 4 --duration "$TUNNEL_D"
  local c3=$CLIENT
  start_client wss-churn handshake --url "wss://127.0.0.1:$tls_port/" --ca "$TLS/ca.pem" \
    --connections 2 --duration "$TUNNEL_D"
  local c4=$CLIENT
  local not_applied=0 stale_cert=0 wrong_cert=0 want
  for i in $(seq "$RELOADS"); do
    conf "$t" "$SDIR" "$i" "$port" "$tls_port" "" "" >"$SDIR/proxy.conf"
    kill -HUP "$MASTER"
    wait_gen "$port" "$i" || { not_applied=$((not_applied + 1)); log "$t: reload $i not seen on /gen"; }
    want=$FP_A
    [ $((i % 2)) = 1 ] && want=$FP_B
    # nginx's old workers may still accept for a moment after a new one answered /gen: count
    # handshakes that got the old certificate, retry for 5 s, then count a wrong one.
    local ok=0
    for _ in $(seq 50); do
      if [ "$(cert_fp "$tls_port")" = "$want" ]; then ok=1; break; fi
      stale_cert=$((stale_cert + 1))
      sleep 0.1
    done
    [ "$ok" = 1 ] || wrong_cert=$((wrong_cert + 1))
    sleep 0.5
  done
  # A broken configuration: nothing may change (generation, certificate, tunnels).
  local errors_before broken_ok=yes
  errors_before=$(grep -c 'emerg' "$SDIR/error.log" 2>/dev/null || true)
  conf "$t" "$SDIR" broken "$port" "$tls_port" "" "" >"$SDIR/proxy.conf"
  kill -HUP "$MASTER"
  for _ in $(seq 100); do
    [ "$(grep -c 'emerg' "$SDIR/error.log" 2>/dev/null || true)" -gt "${errors_before:-0}" ] && break
    sleep 0.1
  done
  [ "$(grep -c 'emerg' "$SDIR/error.log" 2>/dev/null || true)" -gt "${errors_before:-0}" ] ||
    broken_ok="no [emerg] logged"
  sleep 1
  [ "$(gen_of "$port")" = "$RELOADS" ] || broken_ok="no (/gen: $(gen_of "$port"))"
  want=$FP_A
  [ $((RELOADS % 2)) = 1 ] && want=$FP_B
  [ "$(cert_fp "$tls_port")" = "$want" ] || broken_ok="no (certificate changed)"
  [ -d "/proc/$MASTER" ] || broken_ok="no (the process exited)"
  for c in "$c1" "$c2" "$c3" "$c4"; do wait "$c" || true; done
  local est survived dropped lost failed refused reset
  est=$(jsum established tunnels wss-tunnels)
  survived=$(jsum survived tunnels wss-tunnels)
  dropped=$(( $(jsum dropped tunnels wss-tunnels) + $(jsum closed_1001 tunnels wss-tunnels) + $(jsum closed_other tunnels wss-tunnels) ))
  lost=$(jsum lost tunnels wss-tunnels)
  failed=$(jsum failed_opens tunnels wss-tunnels churn wss-churn)
  refused=$(jsum refused tunnels wss-tunnels churn wss-churn)
  reset=$(jsum reset tunnels wss-tunnels churn wss-churn)
  local hs
  hs=$(( $(jsum ops churn wss-churn) ))
  row reload "$t" "$est of $((TUNNELS + WSS_TUNNELS)) ($WSS_TUNNELS wss)" "$survived" "$dropped" "$lost" "-" \
    "$failed / $hs" "$refused" "$reset" \
    "$RELOADS reloads, $not_applied not applied; new certificate after each: $((RELOADS - wrong_cert))/$RELOADS (old one first on $stale_cert handshakes); broken config changed nothing: $broken_ok; messages echoed $(jsum ops tunnels wss-tunnels)"
  stop_proxy "$SDIR"
}

scenario_storm() {
  local t=$1 port tls_port extra i
  port=$(free_port) tls_port=$(free_port) extra=$(free_port)
  conf "$t" "$SDIR" 0 "$port" "$tls_port" "" "" >"$SDIR/proxy.conf"
  start_proxy "$t" "$SDIR"
  start_client storm handshake --url "ws://127.0.0.1:$port/" --connections 16 --duration "$STORM_D" --threads 2
  local c=$CLIENT added_ok=0 removed_ok=0 add=0 removed=0
  sleep 1
  for i in $(seq "$RELOADS"); do
    local with=""
    [ $((i % 2)) = 1 ] && with=$extra
    conf "$t" "$SDIR" "$i" "$port" "$tls_port" "$with" "" >"$SDIR/proxy.conf"
    kill -HUP "$MASTER"
    wait_gen "$port" "$i" || log "$t: reload $i not seen on /gen"
    if [ -n "$with" ]; then
      add=$((add + 1))
      wait_gen "$extra" "$i" && added_ok=$((added_ok + 1))
    else
      removed=$((removed + 1))
      for _ in $(seq 100); do
        curl -s --max-time 1 "http://127.0.0.1:$extra/gen" >/dev/null 2>&1 || { removed_ok=$((removed_ok + 1)); break; }
        sleep 0.05
      done
    fi
    sleep 0.2
  done
  wait "$c" || true
  row storm "$t" "-" "-" "-" "-" "-" \
    "$(j storm .failed_opens) / $(j storm .ops)" "$(j storm .refused)" "$(j storm .reset)" \
    "$RELOADS reloads on the kept address; extra address served after $added_ok/$add adds, refused after $removed_ok/$removed removals; errors $(j storm .errors)"
  stop_proxy "$SDIR"
}

scenario_quit() {
  local t=$1 port tls_port
  port=$(free_port) tls_port=$(free_port)
  conf "$t" "$SDIR" 0 "$port" "$tls_port" "" "$SHUTDOWN_TIMEOUT" >"$SDIR/proxy.conf"
  start_proxy "$t" "$SDIR"
  start_client quit tunnels --url "ws://127.0.0.1:$port/" --connections "$QUIT_N" \
    --duration 60s --interval 250ms --threads 2
  local c=$CLIENT
  wait_established quit "$c" || log "$t: the tunnels client ended early"
  sleep 1
  local sig exited="did not exit in 40 s"
  sig=$(now_ms)
  kill -QUIT "$MASTER"
  for _ in $(seq 400); do
    [ -d "/proc/$MASTER" ] || { exited="exited after $(secs_after "$(now_ms)" "$sig") s"; break; }
    sleep 0.1
  done
  # Tunnels still open once the process has gone are ended by the client's own deadline.
  wait "$c" || true
  local closes="$(j quit .closed_1001)"
  if [ "$closes" != 0 ] && [ "$closes" != "-" ]; then
    closes+=" at $(secs_after "$(j quit .close_first_unix_ms)" "$sig")-$(secs_after "$(j quit .close_last_unix_ms)" "$sig") s"
  fi
  local drops="$(j quit .dropped)"
  if [ "$drops" != 0 ] && [ "$drops" != "-" ]; then
    drops+=" at $(secs_after "$(j quit .drop_first_unix_ms)" "$sig")-$(secs_after "$(j quit .drop_last_unix_ms)" "$sig") s"
  fi
  row quit "$t" "$(j quit .established) of $QUIT_N" "$(j quit .survived)" "$drops" "$(j quit .lost)" "$closes" \
    "$(j quit .failed_opens)" "$(j quit .refused)" "$(j quit .reset)" \
    "QUIT at 0 s, worker_shutdown_timeout ${SHUTDOWN_TIMEOUT}s; process $exited; other close codes $(j quit .closed_other); times exact to 0.25 s"
  stop_proxy "$SDIR"
}

scenario_usr2() {
  local t=$1 port tls_port
  port=$(free_port) tls_port=$(free_port)
  conf "$t" "$SDIR" 0 "$port" "$tls_port" "" "" >"$SDIR/proxy.conf"
  start_proxy "$t" "$SDIR"
  local old=$MASTER
  start_client tunnels tunnels --url "ws://127.0.0.1:$port/" --connections "$USR2_N" \
    --duration "$USR2_D" --interval 1s --threads 2
  local c1=$CLIENT
  wait_established tunnels "$c1" || log "$t: the tunnels client ended early"
  start_client storm handshake --url "ws://127.0.0.1:$port/" --connections 16 --duration "$USR2_D" --threads 2
  local c2=$CLIENT
  sleep 2
  local sig new="" old_exit="did not exit in 30 s"
  sig=$(now_ms)
  kill -USR2 "$old"
  for _ in $(seq 200); do
    if [ -s "$SDIR/proxy.pid.oldbin" ] && [ -s "$SDIR/proxy.pid" ] && [ "$(cat "$SDIR/proxy.pid")" != "$old" ]; then
      new=$(cat "$SDIR/proxy.pid")
      break
    fi
    sleep 0.1
  done
  if [ -z "$new" ]; then
    log "$t: USR2 started no new process"
    old_exit="no new process"
  else
    # The new binary's workers up before the old ones stop accepting.
    sleep 1
    kill -WINCH "$old"
    sleep 1
    kill -QUIT "$old"
    for _ in $(seq 300); do
      [ -d "/proc/$old" ] || { old_exit="exited after $(secs_after "$(now_ms)" "$sig") s"; break; }
      sleep 0.1
    done
  fi
  wait "$c1" "$c2" || true
  MASTER=${new:-$old}
  local closes="$(j tunnels .closed_1001)"
  if [ "$closes" != 0 ] && [ "$closes" != "-" ]; then
    closes+=" at $(secs_after "$(j tunnels .close_first_unix_ms)" "$sig")-$(secs_after "$(j tunnels .close_last_unix_ms)" "$sig") s"
  fi
  row usr2 "$t" "$(j tunnels .established) of $USR2_N" "$(j tunnels .survived)" "$(j tunnels .dropped)" "$(j tunnels .lost)" "$closes" \
    "$(j storm .failed_opens) / $(j storm .ops)" "$(j storm .refused)" "$(j storm .reset)" \
    "USR2 at 0 s, WINCH +1 s, QUIT +2 s to the old process: $old_exit; handshakes: errors $(j storm .errors)"
  stop_proxy "$SDIR"
  [ -d "/proc/$old" ] && kill -TERM "$old" 2>/dev/null || true
}

# ---------------------------------------------------------------- run
log "$( [ "$QUICK" = 1 ] && echo quick || echo full ) run: targets $TARGETS, scenarios $SCENARIOS; output in $RUN_DIR"
for s in "${SCEN[@]}"; do
  for t in "${WANT[@]}"; do
    SDIR=$RUN_DIR/$s-$t
    mkdir -p "$SDIR"
    log "$s: $t"
    "scenario_$s" "$t"
  done
done

# ---------------------------------------------------------------- table
MD=$RUN_DIR/results.md
{
  echo "| scenario | target | tunnels | survived | dropped | lost messages | Close 1001 (s after the signal) | failed / completed handshakes | refused | reset | notes |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  while IFS=$'\t' read -r -a f; do
    printf '| %s ' "${f[@]}"
    echo "|"
  done <"$RESULTS"
  echo
  echo "Made with \`$COMMAND\` ($(git rev-parse --short HEAD 2>/dev/null || echo unknown)); $("$NGINX_BIN" -v 2>&1 | head -1 || true); $(nproc) CPUs. Counts are measured by ringproxy-load (\`tunnels\`: numbered echoes every 1 s, or 0.25 s for quit; \`handshake\`: connect, upgrade, one echo, close). \"dropped\" counts tunnels that ended without the client asking: by a drop, or for reload by any Close."
} >"$MD"
mkdir -p "$OUT"
cp "$MD" "$OUT/results.md"
cat "$MD"

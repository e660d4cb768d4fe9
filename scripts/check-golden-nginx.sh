#!/usr/bin/env bash
# Re-checks the golden error messages against real nginx: runs `nginx -t` on every
# tests/data/bad/*.conf (except those in ringproxy-only.txt, which nginx accepts and ringproxy
# refuses on purpose) and compares nginx's [emerg] message with the .expected file.
# Needs nginx (apt-get install -y nginx). scripts/check-nginx-recordings.sh runs it, from
# scripts/test.sh where nginx is installed or installable.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nginx >/dev/null || { echo "nginx is not installed" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp tests/data/bad/*.conf "$dir/"
fail=0
for f in "$dir"/*.conf; do
  name=$(basename "$f" .conf)
  grep -qx "$name" tests/data/bad/ringproxy-only.txt && continue
  out=$(nginx -p "$dir" -c "$f" -t 2>&1 || true)
  got=$(printf '%s\n' "$out" | grep '\[emerg\]' | head -n1 | sed -E 's/^.*\[emerg\] ([0-9]+#[0-9]+: )?//')
  want=$(sed -e "s#\$DIR#$dir#g" -e 's/^ringproxy: \[emerg\] //' "tests/data/bad/$name.expected")
  if [ "$got" != "$want" ]; then
    echo "DIFF $name"; echo "  nginx:     $got"; echo "  ringproxy: $want"; fail=1
  fi
done
[ "$fail" = 0 ] && echo "all golden messages match $(nginx -v 2>&1)"
exit "$fail"

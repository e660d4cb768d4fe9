#!/usr/bin/env bash
# Re-records, with the nginx installed on this machine, every expected value the tests say comes
# from nginx, and fails if any differs from what the repository holds:
#   - tests/data/bad/*.expected            (scripts/check-golden-nginx.sh: `nginx -t` messages)
#   - tests/data/nginx_routes.txt          (scripts/gen-nginx-route-table.sh)
#   - tests/data/nginx_balancer/           (scripts/gen-nginx-hash-table.sh)
#   - tests/data/nginx_upstream_requests/  (scripts/gen-nginx-upstream-requests.sh; the ports
#     each run picked are replaced by their names before comparing)
# The generators run in a scratch copy of scripts/ and tests/data/, so the repository is not
# touched. scripts/test.sh runs this where nginx is installed or installable (root with apt).
# Needs: nginx 1.22 (Debian 12's), curl, python3, root (the balancer table binds 127.0.0.2-4:80).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
for tool in nginx curl python3; do
  command -v "$tool" >/dev/null || { echo "check-nginx-recordings: $tool is not installed" >&2; exit 1; }
done

bash scripts/check-golden-nginx.sh

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/tests"
cp -r scripts "$scratch/"
cp -r tests/data "$scratch/tests/"
for gen in gen-nginx-route-table.sh gen-nginx-hash-table.sh gen-nginx-upstream-requests.sh; do
  (cd "$scratch" && bash "scripts/$gen" >"$scratch/$gen.log" 2>&1) || {
    echo "check-nginx-recordings: $gen failed:" >&2; cat "$scratch/$gen.log" >&2; exit 1; }
done

# Port numbers differ from run to run: name them (8080=N in `ports` -> PORT8080) in both trees.
name_ports() {
  local dir=$1 ports=$1/ports
  local args=()
  while IFS== read -r name num; do args+=(-e "s/\b$num\b/PORT$name/g"); done <"$ports"
  for f in "$dir"/*.client "$dir"/*.nginx; do sed -i "${args[@]}" "$f"; done
  rm "$ports"
}
mine=$(mktemp -d "$scratch/repo.XXXX")
cp -r "$repo/tests/data/nginx_upstream_requests" "$mine/"
name_ports "$mine/nginx_upstream_requests"
name_ports "$scratch/tests/data/nginx_upstream_requests"

fail=0
diff -u "$repo/tests/data/nginx_routes.txt" "$scratch/tests/data/nginx_routes.txt" || fail=1
diff -ru "$repo/tests/data/nginx_balancer" "$scratch/tests/data/nginx_balancer" || fail=1
diff -ru "$mine/nginx_upstream_requests" "$scratch/tests/data/nginx_upstream_requests" || fail=1
if [ "$fail" = 0 ]; then
  echo "all recordings match $(nginx -v 2>&1)"
else
  echo "check-nginx-recordings: the recordings above differ from $(nginx -v 2>&1)" >&2
fi
exit "$fail"

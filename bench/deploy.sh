#!/usr/bin/env bash
# Deploy benchmark: cold deploy of the blog fixture, warm redeploy after a
# template-only change, and the daemon's idle RSS. Prints figures; asserts
# nothing. Needs what the tests need (bash tests/setup.sh, as root).
#   bash bench/deploy.sh            # 3 warm redeploys
#   WARM=5 bash bench/deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WARM=${WARM:-3}
cargo build --release --quiet --bin paas
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/paas
work=$(mktemp -d /tmp/paas-bench.XXXXXX)
data=$work/data
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(port); ADMIN=$(port)
app=bench-$RANDOM
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
  docker rm -f $(docker ps -aq --filter "label=paas.app=$app") >/dev/null 2>&1 || true
  docker network rm "paas-$app" >/dev/null 2>&1 || true
  docker rmi $(docker images --format "{{.Repository}}:{{.Tag}}" "paas/$app") >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
PAAS_LOG=warn "$BIN" serve --data-dir "$data" --http 127.0.0.1:$HTTP --admin 127.0.0.1:$ADMIN --https off \
  --domain localhost --build-network host >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ -f "$data/admin.token" ] && break; sleep 0.1; done
sleep 1
rss() { awk '/VmRSS/ {print $2/1024 " MiB"}' /proc/$pid/status; }
echo "daemon RSS idle at start:       $(rss)"
token=$(cat "$data/admin.token")
cp -r tests/fixtures/blog "$work/proj"
cd "$work/proj"
git init -q --initial-branch=main
git -c user.name=b -c user.email=b@b add -A
git -c user.name=b -c user.email=b@b commit -qm v1
remote=http://paas:$token@127.0.0.1:$ADMIN/$app.git
# Cold: the base layers exist, the app's dependency layer may be cached by
# earlier runs; clear the builder cache of this app's layers for honesty.
docker builder prune -af >/dev/null 2>&1 || true
t0=$(date +%s.%N)
git push -q "$remote" main >"$work/push1.log" 2>&1 || { cat "$work/push1.log"; exit 1; }
t1=$(date +%s.%N)
printf 'cold deploy (push to live):     %.2f s\n' "$(echo "$t1 - $t0" | bc)"
for i in $(seq 2 $((WARM + 1))); do
  sed -i "s/Notes v[0-9]*/Notes v$i/" $(grep -rl "Notes v" --include=*.html .)
  git -c user.name=b -c user.email=b@b commit -qam "v$i"
  t0=$(date +%s.%N)
  git push -q "$remote" main >"$work/push$i.log" 2>&1 || { cat "$work/push$i.log"; exit 1; }
  t1=$(date +%s.%N)
  printf 'warm redeploy %d (template):    %.2f s\n' "$i" "$(echo "$t1 - $t0" | bc)"
  curl -s -H "Host: $app.localhost" "http://127.0.0.1:$HTTP/" | grep -q "Notes v$i" || echo "  (new page not served!)"
done
sleep 2
echo "daemon RSS idle after deploys:  $(rss)"
curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$ADMIN/api/apps/$app/releases" |
  python3 -c 'import json,sys; [print("  v%d %s %s" % (r["version"], r["status"], " ".join("%s=%.1fs" % (k, v/1000) for k, v in r["timings"]))) for r in json.load(sys.stdin)]'

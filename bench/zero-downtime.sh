#!/usr/bin/env bash
# Zero-downtime benchmark: wrk at 32 connections on the blog fixture's host
# while paas runs 5 pushes (template changes), one rollback and one restart.
# Prints wrk's figures (requests, non-2xx answers, socket errors, p50/p99),
# each operation's wall time, and for each release the time from "healthy"
# to the first answer it served (from the daemon's log). Asserts nothing.
# Needs what the tests need (bash tests/setup.sh, as root) and wrk.
#   bash bench/zero-downtime.sh
#   PUSHES=3 CONNS=16 bash bench/zero-downtime.sh
#   PAAS_BIN=target/debug/paas bash bench/zero-downtime.sh   # skip the release build
set -euo pipefail
cd "$(dirname "$0")/.."
PUSHES=${PUSHES:-5}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
if [ -n "${PAAS_BIN:-}" ]; then
  BIN=$(realpath "$PAAS_BIN")
else
  cargo build --release --quiet --bin paas
  BIN=$CARGO_TARGET_DIR/release/paas
fi
work=$(mktemp -d /tmp/paas-zd-bench.XXXXXX)
data=$work/data
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(port); ADMIN=$(port)
app=zdbench-$RANDOM
cleanup() {
  [ -n "${wrk_pid:-}" ] && kill "$wrk_pid" 2>/dev/null || true
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
  docker rm -f $(docker ps -aq --filter "label=paas.app=$app") >/dev/null 2>&1 || true
  docker network rm "paas-$app" >/dev/null 2>&1 || true
  docker rmi $(docker images --format "{{.Repository}}:{{.Tag}}" "paas/$app") >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
PAAS_LOG=warn,paas::deploy=info "$BIN" serve --data-dir "$data" --http 127.0.0.1:$HTTP --admin 127.0.0.1:$ADMIN --https off \
  --domain localhost --build-network host --drain-timeout 10 >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ -f "$data/admin.token" ] && break; sleep 0.1; done
sleep 1
token=$(cat "$data/admin.token")
api() { curl -s -X "$1" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  ${3:+-d "$3"} "http://127.0.0.1:$ADMIN$2"; }
# The answer into a file, so only the timing reaches timed's caller.
api_to() { local out=$1; shift; api "$@" >"$out"; }
cp -r tests/fixtures/blog "$work/proj"
cd "$work/proj"
git init -q --initial-branch=main
git -c user.name=b -c user.email=b@b add -A
git -c user.name=b -c user.email=b@b commit -qm v1
remote=http://paas:$token@127.0.0.1:$ADMIN/$app.git
git push -q "$remote" main >"$work/push1.log" 2>&1 || { cat "$work/push1.log"; exit 1; }
echo "v1 live; wrk -c$CONNS -t$THREADS on $app.localhost during $PUSHES pushes, a rollback and a restart"

# wrk runs for a fixed time: long enough for every operation, then stopped
# with SIGINT, on which it prints its summary.
wrk -t"$THREADS" -c"$CONNS" -d3600s --latency -H "Host: $app.localhost" \
  "http://127.0.0.1:$HTTP/" >"$work/wrk.txt" 2>&1 &
wrk_pid=$!
sleep 3
timed() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
for i in $(seq 2 $((PUSHES + 1))); do
  sed -i "s/Notes v[0-9]*/Notes v$i/" $(grep -rl "Notes v" --include=*.html .)
  git -c user.name=b -c user.email=b@b commit -qam "v$i"
  s=$(timed git push -q "$remote" main 2>"$work/push$i.log") || { cat "$work/push$i.log"; exit 1; }
  printf 'push v%d:   %6.1f s\n' "$i" "$s"
done
s=$(timed api_to "$work/rollback.json" POST "/api/apps/$app/rollback" '{}')
printf 'rollback:  %6.1f s  %s\n' "$s" "$(python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print(v.get("message") or v.get("error"))' "$work/rollback.json")"
s=$(timed api_to "$work/restart.json" POST "/api/apps/$app/restart" '{}')
printf 'restart:   %6.1f s  %s\n' "$s" "$(python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print(v.get("message") or v.get("error"))' "$work/restart.json")"
sleep 3
kill -INT "$wrk_pid"
wait "$wrk_pid" || true
wrk_pid=
echo "---- wrk"
cat "$work/wrk.txt"
echo "---- summary"
awk '/requests in/ {print "requests:         " $1}
     /Non-2xx/ {print "non-2xx answers:  " $NF}
     /Socket errors/ {print "socket errors:   " substr($0, index($0, ":") + 1)}
     /^ +50%/ {print "p50:              " $2}
     /^ +99%/ {print "p99:              " $2}' "$work/wrk.txt"
grep -q "Non-2xx" "$work/wrk.txt" || echo "non-2xx answers:  0"
grep -q "Socket errors" "$work/wrk.txt" || echo "socket errors:    0"
echo "healthy -> first answer served by the new release (ms), per release:"
grep "first answer from the new release" "$work/daemon.log" |
  sed -E 's/.*release=([0-9]+).*ms=([0-9.]+).*/  v\1: \2/' || echo "  (none logged)"

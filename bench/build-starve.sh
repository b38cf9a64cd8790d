#!/usr/bin/env bash
# Builds must not starve live apps: a live app's latency under light load
# (wrk -c4) while idle, then while another app cold-builds (psycopg2 from
# source: pip and gcc on every CPU the build may use), printed side by
# side. The issue's goal: p99 during the build <= 2x the idle p99.
# Asserts nothing. Needs what the tests need (bash tests/setup.sh, as root) and wrk.
#   bash bench/build-starve.sh
#   SECS=30 BUILD_CPUS=1 bash bench/build-starve.sh
#   PAAS_BIN=target/debug/paas bash bench/build-starve.sh   # skip the release build
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-20}
CONNS=${CONNS:-4}
BUILD_CPUS=${BUILD_CPUS:-1}
BUILD_MEMORY_MB=${BUILD_MEMORY_MB:-768}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
if [ -n "${PAAS_BIN:-}" ]; then
  BIN=$(realpath "$PAAS_BIN")
else
  cargo build --release --quiet --bin paas
  BIN=$CARGO_TARGET_DIR/release/paas
fi
work=$(mktemp -d /tmp/paas-starve-bench.XXXXXX)
data=$work/data
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(port); ADMIN=$(port)
live=starve-live-$RANDOM
cold=starve-cold-$RANDOM
cleanup() {
  [ -n "${push_pid:-}" ] && kill "$push_pid" 2>/dev/null || true
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
  # The cold app's dependency image is this run's own (its requirements
  # carry a line of their own): removed too, by the key its release names.
  key=$(docker image inspect --format '{{index .Config.Labels "paas.deps"}}' "paas/$cold:v1" 2>/dev/null || true)
  for app in "$live" "$cold"; do
    docker rm -f $(docker ps -aq --filter "label=paas.app=$app") >/dev/null 2>&1 || true
    docker network rm "paas-$app" >/dev/null 2>&1 || true
    docker rmi $(docker images --format "{{.Repository}}:{{.Tag}}" "paas/$app") >/dev/null 2>&1 || true
  done
  if [ -n "$key" ]; then
    docker rmi $(docker images --format "{{.Repository}}:{{.Tag}}" --filter "label=paas.deps=$key" paas-deps) >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
PAAS_LOG=warn "$BIN" serve --data-dir "$data" --http 127.0.0.1:$HTTP --admin 127.0.0.1:$ADMIN \
  --domain localhost --build-network host --build-cpus "$BUILD_CPUS" \
  --build-memory-mb "$BUILD_MEMORY_MB" >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ -f "$data/admin.token" ] && break; sleep 0.1; done
sleep 1
token=$(cat "$data/admin.token")
project() { # fixture dir → a git checkout in $work/$2
  cp -r "tests/fixtures/$1" "$work/$2"
  (cd "$work/$2" && git init -q --initial-branch=main && git -c user.name=b -c user.email=b@b add -A \
    && git -c user.name=b -c user.email=b@b commit -qm v1)
}
project blog live
# A requirement line of its own: no cached dependency layer fits it.
project psycopg2-source cold
(cd "$work/cold" && echo "# cold build $RANDOM$RANDOM" >>requirements.txt \
  && git -c user.name=b -c user.email=b@b commit -qam cold)
(cd "$work/live" && git push -q "http://paas:$token@127.0.0.1:$ADMIN/$live.git" main) \
  >"$work/push-live.log" 2>&1 || { cat "$work/push-live.log"; exit 1; }
echo "$live is live; wrk -t1 -c$CONNS -d${SECS}s --latency on it, idle, then during $cold's cold build (build-cpus $BUILD_CPUS, build-memory-mb $BUILD_MEMORY_MB, $(nproc) CPUs here)"
load() { wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -H "Host: $live.localhost" "http://127.0.0.1:$HTTP/" >"$work/$1.txt" 2>&1; }
# Warm the app up, then measure idle.
wrk -t1 -c"$CONNS" -d3s -H "Host: $live.localhost" "http://127.0.0.1:$HTTP/" >/dev/null 2>&1
load idle
t0=$(date +%s.%N)
(cd "$work/cold" && git push "http://paas:$token@127.0.0.1:$ADMIN/$cold.git" main) \
  >"$work/push-cold.log" 2>&1 &
push_pid=$!
# Into the build proper (its first step runs), then measure.
for _ in $(seq 1 300); do
  grep -q "Building image" "$work/push-cold.log" && break
  sleep 0.1
done
sleep 2
load build
building=yes
if ! kill -0 "$push_pid" 2>/dev/null; then building="NO: the build ended before wrk did; raise nothing, lower SECS"; fi
wait "$push_pid" && ok=ok || ok=FAILED
push_pid=
t1=$(date +%s.%N)
python3 - "$work/idle.txt" "$work/build.txt" <<'PY'
import re, sys
def read(path):
    text = open(path).read()
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    lat = {}
    for p, v, u in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        lat[p] = float(v) * unit[u]
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: (.*)", text)
    return lat, float(rps.group(1)) if rps else 0.0, int(errs.group(1)) if errs else 0, sock.group(1) if sock else "none"
(il, irps, ierr, isock), (bl, brps, berr, bsock) = read(sys.argv[1]), read(sys.argv[2])
print(f"{'':16}{'idle':>12}{'cold build':>14}{'ratio':>8}")
for p in ("50", "90", "99"):
    i, b = il.get(p, 0), bl.get(p, 0)
    print(f"p{p} latency ms  {i:12.2f}{b:14.2f}{(b / i if i else 0):8.2f}")
print(f"requests/s      {irps:12.1f}{brps:14.1f}{(brps / irps if irps else 0):8.2f}")
print(f"non-2xx         {ierr:12d}{berr:14d}")
print(f"socket errors   {isock:>12}  {bsock}")
PY
printf 'cold push of %s: %s in %.0f s; building during the whole measurement: %s\n' "$cold" "$ok" "$(echo "$t1 - $t0" | bc)" "$building"
[ "$ok" = ok ] || tail -20 "$work/push-cold.log"

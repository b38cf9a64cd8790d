#!/usr/bin/env bash
# Memory of the whole stack (issue 13: "the daemon, 3 small apps and
# PostgreSQL on a 1 GB VPS"). In one run: a fresh paas daemon (its own data
# dir and ports, --https off), three small apps pushed from the repository's
# own fixtures with the daemon's default limits, one of them on PostgreSQL
# made the way a user makes it (`paas apps:create`, `paas pg:create`, then
# `git push`); each answers 200 and serves a few requests, then everything
# settles for SETTLE seconds (default 30) and one sample is taken. Prints a
# table of:
#   - the daemon: VmRSS (/proc/PID/status) and PSS (/proc/PID/smaps_rollup);
#   - each app container and the PostgreSQL server: memory use as the engine
#     counts it (`docker stats`: the cgroup's usage minus its inactive file
#     cache), and its memory limit;
#   - the total, and what the containers' limits add up to;
#   - the Docker engine's own processes (dockerd, containerd and the shims
#     of these containers), PSS from /proc/PID/smaps_rollup; dockerd and
#     containerd also serve whatever else uses the engine on this machine.
# Asserts nothing; prints figures. Needs what the tests need (bash
# tests/setup.sh, as root: the base images python:3.11-slim and postgres:17).
#
#   bash bench/memory.sh
#   PAAS_BIN=target/release/paas SETTLE=60 bash bench/memory.sh
#   MEMORY_MB=256 bash bench/memory.sh   # the daemon's --memory-mb (default 512)
#
# The apps: tests/fixtures/blog (on PostgreSQL), tests/fixtures/uploads and
# tests/fixtures/procfile-app (a web process and a worker). Dependencies come
# from the package index pip is configured with (or paas-deps images already
# built for the same requirements).
{
set -euo pipefail
cd "$(dirname "$0")/.."
SETTLE=${SETTLE:-30}
VPS_MIB=1024
APPS=(blog uploads procfile-app)
PG_APP=blog # the fixture whose app gets PostgreSQL

fail() {
  echo "bench/memory.sh: $*" >&2
  exit 1
}
note() { echo "  .. $*" >&2; }

# ---- preconditions -----------------------------------------------------------
for tool in git curl python3 docker; do
  command -v $tool >/dev/null || fail "$tool is not installed: install it (bash tests/setup.sh installs what the tests need)."
done
docker info >/dev/null 2>&1 || fail "the Docker engine is not reachable: start it (or set DOCKER_HOST)."
for image in python:3.11-slim postgres:17; do
  docker image inspect "$image" >/dev/null 2>&1 || fail "the image $image is missing: run bash tests/setup.sh as root."
done
for f in "${APPS[@]}"; do
  [ -d "tests/fixtures/$f" ] || fail "the fixture tests/fixtures/$f is missing: run this from a full checkout of paas."
done

limits=()
if [ -n "${MEMORY_MB:-}" ]; then
  [[ $MEMORY_MB =~ ^[0-9]+$ ]] || fail "MEMORY_MB=$MEMORY_MB is not a number of MiB: give one such as 256."
  limits=(--memory-mb "$MEMORY_MB")
fi

# The paas binary: PAAS_BIN, else a release build if there is a fresh one,
# else a debug build (as bench/deploy.sh).
newest_src=$(find server/src buildpacks Cargo.toml Cargo.lock -type f -printf '%T@\n' | sort -n | tail -n1)
target=${CARGO_TARGET_DIR:-$PWD/target}
if [ -n "${PAAS_BIN:-}" ]; then
  [ -x "$PAAS_BIN" ] || fail "PAAS_BIN=$PAAS_BIN is not an executable file: point it at a paas binary (cargo build --release --bin paas)."
  BIN=$(realpath "$PAAS_BIN")
  kind="given by PAAS_BIN"
elif [ -x "$target/release/paas" ] && [ "$(stat -c %Y "$target/release/paas")" -ge "${newest_src%.*}" ]; then
  BIN=$target/release/paas
  kind="release build"
else
  command -v cargo >/dev/null || fail "no fresh release build at $target/release/paas and no cargo to build one: set PAAS_BIN to a paas binary."
  CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build --quiet --bin paas || fail "cargo build failed: see above."
  BIN=$target/debug/paas
  kind="debug build (no fresh release build)"
fi
"$BIN" --version >/dev/null 2>&1 || fail "$BIN does not run: rebuild it (cargo build --bin paas)."
commit=$(git log -1 --format=%h -- server buildpacks Cargo.toml Cargo.lock)$(git diff --quiet HEAD -- server buildpacks Cargo.toml Cargo.lock || echo "+uncommitted")

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# git reading no system or user configuration: no credential helper stores
# the token, no insteadOf rewrites the remote.
git_() { GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_TERMINAL_PROMPT=0 git -c user.name=bench -c user.email=bench@localhost "$@"; }

# ---- cleanup -----------------------------------------------------------------
work=$(mktemp -d /tmp/paas-memory-bench.XXXXXX)
run=mem$RANDOM
pid=""
pg_server=""
cleanup() {
  set +e
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  # The server first: it sits on the PostgreSQL app's network.
  if [ -n "$pg_server" ]; then
    net=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$pg_server" 2>/dev/null)
    docker rm -f -v "$pg_server" >/dev/null 2>&1
    for n in $net; do case $n in paas_postgres_*) docker network rm "$n" >/dev/null 2>&1 ;; esac; done
  fi
  for f in "${APPS[@]}"; do
    a=$run-$f
    ids=$(docker ps -aq --filter "label=paas.app=$a")
    [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1
    docker network rm "paas-$a" >/dev/null 2>&1
    # By tag, never by id: an identical build elsewhere shares the id.
    tags=$(docker images --format '{{.Repository}}:{{.Tag}}' "paas/$a")
    [ -n "$tags" ] && docker rmi $tags >/dev/null 2>&1
  done
  rm -rf "$work"
}
trap cleanup EXIT

# ---- the daemon --------------------------------------------------------------
data=$work/data
HTTP=$(port)
ADMIN=$(port)
PAAS_LOG=info "$BIN" serve --data-dir "$data" --http 127.0.0.1:$HTTP --admin 127.0.0.1:$ADMIN --https off \
  --domain localhost --build-network host "${limits[@]}" >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ -f "$data/admin.token" ] && break; sleep 0.1; done
[ -f "$data/admin.token" ] || fail "the paas daemon did not start: $(tail -n3 "$work/daemon.log")"
token=$(cat "$data/admin.token")
for _ in $(seq 1 50); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$ADMIN/api/apps")" = 200 ] && break
  sleep 0.1
done
# The CLI as a user runs it, with a home of its own (no saved login).
mkdir -p "$work/home"
cli() {
  (cd "$work/home" && HOME=$work/home XDG_CONFIG_HOME=$work/home/.config PAAS_DATA_DIR=$work/home/data \
    PAAS_URL=http://127.0.0.1:$ADMIN PAAS_TOKEN=$token "$BIN" "$@")
}
kib() { awk -v k="$2" '$1 == k":" {print $2}' "$1"; }
sleep 1
idle_rss=$(kib /proc/$pid/status VmRSS)

echo "paas: $kind $BIN, code of commit $commit (HEAD $(git rev-parse --short HEAD)); its own data dir and ports; ${MEMORY_MB:+--memory-mb $MEMORY_MB, }otherwise default limits"
echo "machine: $(nproc) cores, $(free -m | awk '/Mem:/ {print $2}') MiB, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r), Docker $(docker version --format '{{.Server.Version}}') (cgroup v$(docker info --format '{{.CgroupVersion}}'), $(docker info --format '{{.Driver}}')), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"

# ---- the apps ----------------------------------------------------------------
get() { # APP: status of GET / through the proxy
  curl -s -o /dev/null -m 10 -w '%{http_code}' -H "Host: $1.localhost" "http://127.0.0.1:$HTTP/" || true
}
for f in "${APPS[@]}"; do
  a=$run-$f
  cp -r "tests/fixtures/$f" "$work/$f"
  (cd "$work/$f" && git_ init -q --initial-branch=main && git_ add -A && git_ commit -qm "$f fixture")
  if [ "$f" = "$PG_APP" ]; then
    cli apps:create "$a" >"$work/$f-create.log" 2>&1 || fail "paas apps:create $a failed: $(tail -n3 "$work/$f-create.log")"
    cli pg:create -a "$a" >"$work/$f-pg.log" 2>&1 || fail "paas pg:create -a $a failed: $(tail -n3 "$work/$f-pg.log")"
    pg_server=$(cli pg:info -a "$a" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["server"])') ||
      fail "paas pg:info -a $a did not name the PostgreSQL server."
  fi
  t0=$(date +%s)
  (cd "$work/$f" && git_ push "http://paas:$token@127.0.0.1:$ADMIN/$a.git" main) >"$work/$f-push.log" 2>&1 ||
    fail "the push of $f failed: $(grep -v '^\s*$' "$work/$f-push.log" | tail -n3)"
  code=""
  for _ in $(seq 1 120); do
    code=$(get "$a")
    [ "$code" = 200 ] && break
    sleep 0.5
  done
  [ "$code" = 200 ] || fail "$a does not answer 200 on / after its push (last status $code): see its push output, $(grep -v '^\s*$' "$work/$f-push.log" | tail -n2)"
  note "$a live after $(($(date +%s) - t0)) s"
done
[ -n "$pg_server" ] && [ "$(docker inspect -f '{{.State.Running}}' "$pg_server" 2>/dev/null)" = true ] ||
  fail "the PostgreSQL server container is not running after pg:create."
# Each app serves some requests (every gunicorn worker gets some), then all settle.
for f in "${APPS[@]}"; do
  for _ in $(seq 1 40); do [ "$(get "$run-$f")" = 200 ] || fail "$run-$f stopped answering 200 on /."; done
done
note "settling for $SETTLE s"
sleep "$SETTLE"

# ---- the sample --------------------------------------------------------------
rows=$work/rows.tsv # what, kind, bytes, limit bytes (0: none)
: >"$rows"
rss=$(kib /proc/$pid/status VmRSS)
hwm=$(kib /proc/$pid/status VmHWM)
pss=$(kib /proc/$pid/smaps_rollup Pss)
printf 'paas daemon (proxy, API, builds)\tdaemon\t%d\t0\n' $((rss * 1024)) >>"$rows"
containers=()
for f in "${APPS[@]}"; do
  for id in $(docker ps -q --filter "label=paas.app=$run-$f"); do
    containers+=("$id")
  done
done
containers+=("$(docker inspect -f '{{.Id}}' "$pg_server")")
[ ${#containers[@]} -ge 4 ] || fail "fewer containers than expected are running: $(docker ps --filter "label=paas.app" --format '{{.Names}}' | grep "$run" | tr '\n' ' ')"
docker stats --no-stream --no-trunc --format '{{.ID}}\t{{.MemUsage}}' "${containers[@]}" >"$work/stats.tsv"
shims=()
for id in "${containers[@]}"; do
  IFS='|' read -r name app proc limit cpid < <(docker inspect -f '{{.Name}}|{{index .Config.Labels "paas.app"}}|{{index .Config.Labels "paas.process"}}|{{.HostConfig.Memory}}|{{.State.Pid}}' "$id")
  usage=$(awk -F'\t' -v id="$id" 'index($1, id) == 1 || index(id, $1) == 1 {split($2, u, " / "); print u[1]}' "$work/stats.tsv")
  bytes=$(python3 -c '
import re, sys
m = re.match(r"([0-9.]+)\s*([KMGT]?i?B)$", sys.argv[1].strip())
if not m: sys.exit("cannot read docker stats memory " + repr(sys.argv[1]))
mult = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}[m[2]]
print(int(float(m[1]) * mult))' "$usage") || fail "docker stats gave no memory figure for ${name#/}."
  if [ "$id" = "${containers[-1]}" ]; then
    what="PostgreSQL server (postgres:17)"
  else
    what="app ${app#"$run"-}, ${proc:-web}"
  fi
  printf '%s\tcontainer\t%s\t%s\n' "$what" "$bytes" "$limit" >>"$rows"
  shim=$(ps -o ppid= -p "$cpid" 2>/dev/null | tr -d ' ' || true)
  if [ -n "$shim" ]; then shims+=("$shim"); fi
done

engine_pss() { # PID...: their PSS summed, KiB (the shims share their code pages)
  local t=0 p k
  for p in "$@"; do
    k=$(kib /proc/$p/smaps_rollup Pss 2>/dev/null) || continue
    t=$((t + ${k:-0}))
  done
  echo $t
}
dockerd_kib=$(engine_pss $(pidof dockerd))
containerd_kib=$(engine_pss $(pidof containerd))
shims_kib=$(engine_pss "${shims[@]}")
cgv=$(docker info --format '{{.CgroupVersion}}')
cache_stat=inactive_file
[ "$cgv" = 1 ] && cache_stat=total_inactive_file

python3 - "$rows" "$pss" "$hwm" "$idle_rss" "$dockerd_kib" "$containerd_kib" "$shims_kib" "${#shims[@]}" "$VPS_MIB" "$cgv" "$cache_stat" <<'EOF'
import sys
rows_file, pss, hwm, idle, dockerd, containerd, shims, nshims, vps, cgv, cache_stat = sys.argv[1:]
mib = lambda b: b / 1048576
rows = []
for line in open(rows_file):
    what, kind, b, limit = line.rstrip("\n").split("\t")
    rows.append((what, kind, int(b), int(limit)))
print()
W = 50
print(f"{'':{W}} {'memory':>10}  {'limit':>9}")
for what, kind, b, limit in rows:
    lim = f"{mib(limit):.0f} MiB" if limit else "none"
    print(f"{what:{W}} {mib(b):6.1f} MiB  {lim:>9}")
total = sum(r[2] for r in rows)
limits = sum(r[3] for r in rows if r[1] == "container")
engine = (int(dockerd) + int(containerd) + int(shims)) * 1024
print(f"{'total: daemon + ' + str(len(rows) - 1) + ' containers':{W}} {mib(total):6.1f} MiB")
print("the Docker engine's processes, PSS (dockerd and containerd serve everything else on this engine too):")
print(f"{'  dockerd':{W}} {int(dockerd) / 1024:6.1f} MiB")
print(f"{'  containerd':{W}} {int(containerd) / 1024:6.1f} MiB")
print(f"{'  ' + nshims + ' containerd shims (one per container above)':{W}} {int(shims) / 1024:6.1f} MiB")
print(f"{'total with the engine':{W}} {mib(total + engine):6.1f} MiB")
print()
print(f"daemon: VmRSS {mib(rows[0][2]):.1f} MiB, PSS {int(pss) / 1024:.1f} MiB, peak VmHWM {int(hwm) / 1024:.1f} MiB (VmRSS {int(idle) / 1024:.1f} MiB idle at start)")
print(f"containers: docker stats, i.e. the cgroup's usage minus its {cache_stat} (cgroup v{cgv})")
print(f"containers' memory limits add up to {mib(limits):.0f} MiB (the daemon has none)")
left = int(vps) - mib(total + engine)
print(f"a {vps} MiB VPS: {mib(total + engine):.0f} MiB used with the engine, {left:.0f} MiB left for the kernel, the system and page cache")
EOF
exit
}

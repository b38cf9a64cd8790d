#!/usr/bin/env bash
# Push memory benchmark: the daemon's resident memory after a push of a
# repository with about 50 MB of files (incompressible random data in a few
# files, plus the small blog fixture), and the push's wall time. Prints
# VmRSS (resident now) and VmHWM (the peak) from /proc/PID/status; asserts
# nothing. Needs what the tests need (bash tests/setup.sh, as root).
#
# Give several binaries to compare them in the same run, alternating
# (A B A B …), each on a fresh data dir:
#   bash bench/push-memory.sh                        # release build, MB=50 ROUNDS=1
#   BINS="/tmp/paas-before target/debug/paas" ROUNDS=2 bash bench/push-memory.sh
#
# Measured 2026-11-30 (debug builds, a 2-core machine under heavy load, so
# the push times say nothing): before git2 (736d144: the hook POSTed the
# `git archive` tar, held in memory, unpacked, and a second in-memory tar
# for the build) idle 29.3 MiB, after the push VmRSS 33.7 MiB, peak VmHWM
# 182.7 MiB; with git2 (tree written blob by blob, context streamed from a
# file) idle 29.5 MiB, after 35.8 MiB, peak 43.6 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${MB:-50}
FILES=${FILES:-5}
ROUNDS=${ROUNDS:-1}
if [ -z "${BINS:-}" ]; then
  cargo build --release --quiet --bin paas
  BINS=${CARGO_TARGET_DIR:-$PWD/target}/release/paas
fi
work=$(mktemp -d /tmp/paas-bench.XXXXXX)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
apps=()
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  for app in "${apps[@]}"; do
    docker rm -f $(docker ps -aq --filter "label=paas.app=$app") >/dev/null 2>&1 || true
    docker network rm "paas-$app" >/dev/null 2>&1 || true
    docker rmi $(docker images --format "{{.Repository}}:{{.Tag}}" "paas/$app") >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
git_c() { git -c user.name=b -c user.email=b@b "$@"; }

# One project, pushed to every daemon: the blog plus $MB MB of random bytes.
cp -r tests/fixtures/blog "$work/proj"
mkdir -p "$work/proj/assets"
per=$((MB / FILES))
for i in $(seq 1 "$FILES"); do
  head -c "$((per * 1024 * 1024))" /dev/urandom >"$work/proj/assets/blob-$i.bin"
done
(cd "$work/proj" && git init -q --initial-branch=main && git_c add -A && git_c commit -qm "blog with ${MB} MB of data")
echo "repository: $(du -sh --exclude=.git "$work/proj" | cut -f1) of files, $(du -sh "$work/proj/.git" | cut -f1) in .git"

status() { awk -v k="$1" '$1 == k":" {printf "%.1f MiB", $2/1024}' /proc/$pid/status; }
for round in $(seq 1 "$ROUNDS"); do
  for bin in $BINS; do
    data=$work/data-$round-$(basename "$bin")-$RANDOM
    HTTP=$(port); ADMIN=$(port)
    PAAS_LOG=warn "$bin" serve --data-dir "$data" --http 127.0.0.1:$HTTP --admin 127.0.0.1:$ADMIN --https off \
      --domain localhost --build-network host >"$work/daemon.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do [ -f "$data/admin.token" ] && break; sleep 0.1; done
    sleep 1
    token=$(cat "$data/admin.token")
    app=benchmem$RANDOM
    apps+=("$app")
    idle_rss=$(status VmRSS)
    sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    start=$(date +%s.%N)
    if ! (cd "$work/proj" && git push -q "http://paas:$token@127.0.0.1:$ADMIN/$app.git" main >"$work/push.log" 2>&1); then
      echo "push to $bin failed:" >&2; tail -n 20 "$work/push.log" >&2; tail -n 20 "$work/daemon.log" >&2; exit 1
    fi
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    printf '%-40s round %d: idle %s, after the push VmRSS %s, peak VmHWM %s, push %.1f s\n' \
      "$bin" "$round" "$idle_rss" "$(status VmRSS)" "$(status VmHWM)" "$secs"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    docker rm -f $(docker ps -aq --filter "label=paas.app=$app") >/dev/null 2>&1 || true
  done
done

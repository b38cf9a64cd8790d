#!/usr/bin/env bash
# Fuzzing on stable Rust: runs every property test (`fn fuzz_*` in the
# `mod props` of the modules that parse outside input) again and again with
# fresh random seeds and a large case count, for a fixed time per test, then
# prints a table: test, its properties, executions, seconds, findings.
#   bash bench/fuzz.sh                      30 s per test, 2000 cases per run
#   FUZZ_SECONDS=5 bash bench/fuzz.sh       a short budget
#   FUZZ_CASES=500 FUZZ_FILTER=proxy bash bench/fuzz.sh
# Executions are counted by the tests themselves (`crate::fuzz::check` adds
# each property's inputs tried, shrinking included, to $PAAS_FUZZ_COUNTS).
# A finding is a failed run: its message and the minimal failing input
# proptest shrank it to. Exits 1 when there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-30}
cases=${FUZZ_CASES:-2000}
filter=${FUZZ_FILTER:-}

build=$(cargo test --lib --no-run 2>&1) || { echo "$build"; exit 1; }
bin=$(echo "$build" | grep -o 'target/[a-z]*/deps/paas-[0-9a-f]*' | head -1)
[ -x "$bin" ] || { echo "no test binary in: $build"; exit 1; }
mapfile -t tests < <("$bin" --list 2>/dev/null | sed -n 's/: test$//p' | grep '::fuzz_' | grep -e "$filter")
[ ${#tests[@]} -gt 0 ] || { echo "no fuzz_ test matches '$filter'"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fuzzing ${#tests[@]} tests, ${seconds}s each, $cases cases per run (binary $bin)"
rows=()
found=0
for t in "${tests[@]}"; do
  counts="$work/counts"
  : >"$counts"
  : >"$work/findings"
  start=$(date +%s.%N)
  runs=0
  # A first short run measures the pace; each next run gets the cases that
  # fit the time left (at most $cases), so slow properties keep the budget.
  n=$((cases < 50 ? cases : 50))
  while :; do
    now=$(date +%s.%N)
    awk -v a="$start" -v b="$now" -v s="$seconds" 'BEGIN { exit !(b - a < s) }' || break
    runs=$((runs + 1))
    t0=$(date +%s.%N)
    ok=1
    PAAS_FUZZ_COUNTS="$counts" PROPTEST_CASES="$n" RUST_BACKTRACE=0 \
      "$bin" --exact "$t" --test-threads 1 -q >"$work/out" 2>&1 || ok=0
    t1=$(date +%s.%N)
    n=$(awk -v n="$n" -v a="$t0" -v b="$t1" -v st="$start" -v s="$seconds" -v max="$cases" 'BEGIN {
      d = b - a; if (d < 0.05) d = 0.05; left = s - (b - st);
      m = int(n / d * left); if (m > max) m = max; if (m < 10) m = 10; print m }')
    if [ "$ok" = 0 ]; then
      # The property's message and the shrunk input (fuzz::check's panic).
      finding=$(sed -n '/panicked at/{n;p}; /^minimal failing input/p' "$work/out" | head -c 600)
      [ -n "$finding" ] || finding=$(tail -n 5 "$work/out")
      grep -qxF "$(echo "$finding" | head -1)" "$work/findings" 2>/dev/null || {
        echo "$finding" | head -1 >>"$work/findings"
        printf '\nFINDING in %s:\n%s\n' "$t" "$finding"
      }
      found=1
      # The same finding again and again teaches nothing: stop after three.
      [ "$(wc -l <"$work/findings")" -ge 3 ] && break
    fi
  done
  elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  execs=$(awk -F'\t' '{ n += $2 } END { print n + 0 }' "$counts")
  props=$(cut -f1 "$counts" | sort -u | paste -sd, -)
  nfind=$(wc -l <"$work/findings")
  rows+=("$(printf '%-52s %-42s %10s %6s %5s %8s' "$t" "${props:--}" "$execs" "$runs" "$elapsed" "$nfind")")
done

echo
printf '%-52s %-42s %10s %6s %5s %8s\n' test properties executions runs secs findings
for r in "${rows[@]}"; do echo "$r"; done
total=$(printf '%s\n' "${rows[@]}" | awk '{ n += $(NF-3) } END { print n }')
echo "total executions: $total"
exit $found

#!/usr/bin/env bash
# The import graph of server/src: modules, `crate::` edges, and cycles.
#   bench/layers.sh          this tree
#   bench/layers.sh REV      the tree at git revision REV (e.g. 736d144), for a before/after
# The check itself is the unit test `layers::no_module_imports_in_a_cycle`
# (run by `cargo test`); this script runs it with --nocapture to print its report.
set -euo pipefail
cd "$(dirname "$0")/.."
src=""
if [ $# -gt 0 ]; then
  src=$(mktemp -d)
  trap 'rm -rf "$src"' EXIT
  git archive "$1" server/src | tar -x -C "$src"
  src="$src/server/src"
fi
out=$(PAAS_LAYERS_SRC="${src:-$PWD/server/src}" cargo test --lib no_module_imports_in_a_cycle -- --nocapture 2>&1 || true)
echo "$out" | sed -n '/^modules:/,/^$/p'
echo "$out" | grep -q "test result: ok" && echo "no cycle" || { echo "cycles found"; exit 1; }

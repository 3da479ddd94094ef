#!/usr/bin/env bash
# Builds the word-count bench at two commits and runs them back to back, alternating, so
# that their figures come from the same machine under the same conditions (compare ratios,
# not absolute numbers; see BENCHMARKS.md).
#
#   scripts/bench-compare.sh OLD_REV [NEW_REV] [-- BENCH_ARGS...]
#
#   ROUNDS=2 (default)  how many old/new pairs to run
#   BENCH_TARGET_DIR    cargo target dir shared by both builds (default target/bench-compare);
#                       dependencies (RocksDB...) are built once for both
#
# Example: scripts/bench-compare.sh fe8f7e1 HEAD -- --lines 100000
set -euo pipefail
cd "$(dirname "$0")/.."

old=${1:?usage: scripts/bench-compare.sh OLD_REV [NEW_REV] [-- BENCH_ARGS...]}
shift
new=HEAD
if [[ $# -gt 0 && $1 != "--" ]]; then
  new=$1
  shift
fi
[[ ${1:-} == "--" ]] && shift
rounds=${ROUNDS:-2}
target=${BENCH_TARGET_DIR:-$PWD/target/bench-compare}
work=$(mktemp -d)
trap 'git worktree remove --force "$work/old" 2>/dev/null || true;
      git worktree remove --force "$work/new" 2>/dev/null || true; rm -rf "$work"' EXIT

build() { # rev name
  local rev=$1 name=$2
  git worktree add -q --detach "$work/$name" "$rev"
  # The worktrees sit side by side with the same relative layout, so their workspace
  # crates share artifact names: copy each bench binary out right after its build.
  local exe
  exe=$(cd "$work/$name" && CARGO_TARGET_DIR=$target cargo bench -p examples --bench word_count \
    --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="word_count" and m.get("executable"):
        print(m["executable"])' | tail -1)
  [[ -x $exe ]] || { echo "build of $rev failed" >&2; exit 1; }
  cp "$exe" "$work/$name.bench"
  echo "[bench-compare] built $name = $(git rev-parse --short "$rev")" >&2
}

build "$old" old
build "$new" new
echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "old = $(git rev-parse --short "$old"), new = $(git rev-parse --short "$new"), args: $*"
for ((i = 1; i <= rounds; i++)); do
  for name in old new; do
    echo "=== round $i: $name"
    "$work/$name.bench" --bench "$@"
  done
done

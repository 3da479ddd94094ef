#!/usr/bin/env bash
# The fault-injection soak (chaos/): a local cluster of `broker serve` processes (3 controllers,
# 3 brokers) behind fault-injecting TCP proxies, a client workload (idempotent acks=all
# producer, transactional producers, a consumer group), seeded random SIGKILLs, SIGSTOPs and
# network partitions, then a checker. See docs/TESTING.md, "Fault-injection soak".
#
#   scripts/soak.sh [--faults N] [--seed S] [--quick] [--no-coordinator-faults] [--keep]
#
# --faults N   faults to inject (default 100; 15 with --quick)
# --seed S     replay a fault schedule (the seed is printed at the start and in the summary)
# --quick      the bounded CI form: 15 short faults, about 2 minutes after the build
# --no-coordinator-faults   never fault the group/transaction coordinators' nodes
# --keep       keep the nodes' directories (logs, data) and print where they are
#
# Builds `broker` and `chaos` (debug profile, CARGO_TARGET_DIR or target/), copies both to a
# private directory (other builds may overwrite target/debug while the soak runs), runs the
# soak in its own process group and, on exit or interruption, kills that group and removes the
# temporary directory. Exit status: 0 no anomaly, 1 anomalies, 2 the soak could not run.
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
keep=0
while (($#)); do
  case $1 in
    --faults | --seed)
      [[ $# -ge 2 ]] || { echo "$1 needs a value" >&2; exit 2; }
      args+=("$1" "$2")
      shift 2
      ;;
    --quick | --no-coordinator-faults)
      args+=("$1")
      shift
      ;;
    --keep)
      keep=1
      shift
      ;;
    -h | --help)
      sed -n '2,18p' "$0"
      exit 0
      ;;
    *)
      echo "unknown option $1 (see --help)" >&2
      exit 2
      ;;
  esac
done

cargo build -p broker-cli -p chaos
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d "${TMPDIR:-/tmp}/soak.XXXXXX")
cp "$target/debug/broker" "$target/debug/chaos" "$work/"
mkdir "$work/cluster"
pgid=
cleanup() {
  if [[ -n $pgid ]] && kill -0 -- "-$pgid" 2>/dev/null; then
    # The soak's own process group: the chaos driver and the nodes it started (if the driver
    # died without stopping them).
    kill -TERM -- "-$pgid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 -- "-$pgid" 2>/dev/null || break
      sleep 0.1
    done
    kill -CONT -- "-$pgid" 2>/dev/null || true
    kill -KILL -- "-$pgid" 2>/dev/null || true
  fi
  if ((keep)); then
    echo "kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
# setsid: a new process group led by chaos, so that cleanup reaches every node it started.
setsid "$work/chaos" --broker "$work/broker" --dir "$work/cluster" "${args[@]}" &
pgid=$!
status=0
wait "$pgid" || status=$?
echo "wall: $(($(date +%s) - start)) s, exit status $status"
exit "$status"

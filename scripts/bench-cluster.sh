#!/usr/bin/env bash
# Word count against `broker serve` (a separate process) with the wire backend: words/s with 1
# and 2 instances, the failover time (SIGKILL of one instance -> the survivor owns every task
# again) with and without a standby replica, and the same word count on the embedded backend,
# all in one run on one machine (compare ratios; see BENCHMARKS.md).
#
#   scripts/bench-cluster.sh [LINES] [RUNS]      defaults: 200000 lines, 3 runs per figure
#
# Uses the binaries `cargo test --workspace` / `cargo build` leave in target/debug (the dev
# profile: dependencies optimised, our crates at opt-level 1); PROFILE=release uses
# target/release (build them with `cargo build --release -p broker-cli -p examples
# --example word-count` first). Each figure is the median of RUNS runs.
set -euo pipefail
cd "$(dirname "$0")/.."

lines=${1:-200000}
runs=${2:-3}
profile=${PROFILE:-debug}
broker=target/$profile/broker
wc=target/$profile/examples/word-count
for b in "$broker" "$wc"; do
  [[ -x $b ]] || { echo "missing $b: build it first (see the header of this script)" >&2; exit 1; }
done
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
# Waits (at most SECS seconds) until the shell condition COND holds; fails the run otherwise.
wait_until() { # secs cond...
  local secs=$1 deadline
  shift
  deadline=$(($(date +%s) + secs))
  until eval "$*"; do
    if (($(date +%s) >= deadline)); then
      echo "timed out after ${secs}s waiting for: $*" >&2
      exit 1
    fi
    sleep 0.05
  done
}
# Waits (at most SECS seconds) for the background process PID to exit, and reaps it.
wait_exit() { # secs pid
  wait_until "$1" "[[ ! -e /proc/$2 ]] || [[ \$(awk '{ print \$3 }' /proc/$2/stat 2>/dev/null) == Z ]]"
  wait "$2"
}
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# Seeded text: LINES lines of 1-12 words from a skewed 500-word vocabulary.
python3 - "$lines" >"$work/input.txt" <<'EOF'
import random, sys
rng = random.Random(42)
for _ in range(int(sys.argv[1])):
    print(" ".join("w%d" % (rng.randrange(500) ** 2 // 500) for _ in range(rng.randint(1, 12))))
EOF
words=$(wc -w <"$work/input.txt")
echo "input: $lines lines, $words words; profile $profile; $(nproc) cores"

serve() { # dir: starts a broker there and sets ADDR (its address)
  "$broker" serve --listen 127.0.0.1:0 --data-dir "$1" --config group.initial.rebalance.delay.ms=0 \
    >"$1.out" 2>/dev/null &
  BROKER_PID=$!
  pids+=("$BROKER_PID")
  local i
  for i in $(seq 100); do
    if grep -q "listening on" "$1.out" 2>/dev/null; then
      ADDR=$(sed -n 's/^listening on //p' "$1.out" | head -1)
      return
    fi
    sleep 0.1
  done
  echo "broker did not start" >&2
  exit 1
}

instance() { # name addr extra...: starts an instance, sets PID; output in $work/<name>.out
  local name=$1 addr=$2
  shift 2
  "$wc" --bootstrap-server "$addr" --application-id bench --data-dir "$work/$name" \
    --session-timeout-ms 6000 --commit-interval-ms 1000 "$@" >"$work/$name.out" 2>/dev/null &
  PID=$!
  pids+=("$PID")
}

setup_topics() { # dir: a broker with the input produced; sets ADDR
  mkdir -p "$1"
  serve "$1/broker"
  "$broker" topics create --bootstrap-server "$ADDR" --topic text-lines --partitions 8 >/dev/null
  "$broker" topics create --bootstrap-server "$ADDR" --topic word-counts --partitions 8 >/dev/null
  "$broker" produce --bootstrap-server "$ADDR" --topic text-lines <"$work/input.txt" >/dev/null
}

# Words/s with N instances: the input is produced first, then N instances start together and
# stop after 3 s without progress; the time is start -> last progress (exit - 3 s).
throughput() { # n
  local n=$1 run start end i pid
  for run in $(seq "$runs"); do
    setup_topics "$work/tp-$n-$run"
    start=$(now)
    local ps=()
    for i in $(seq "$n"); do
      instance "tp-$n-$run-$i" "$ADDR" --until-idle 3
      ps+=("$PID")
    done
    for pid in "${ps[@]}"; do wait_exit 600 "$pid"; done
    end=$(now)
    kill "$BROKER_PID"
    wait "$BROKER_PID" || true
    echo "$words / ($end - $start - 3)" | bc -l >>"$work/tp-$n"
  done
  median <"$work/tp-$n"
}

# Failover: two instances process the input; one is SIGKILLed; the time until the survivor
# prints its next assignment (session timeout + rebalance + restoration) and the changelog
# records it restored. acceptable.recovery.lag=0: only a warm copy counts as caught up (with
# the default 10 000, a small changelog makes every instance "caught up" and placement ignores
# the standby).
failover() { # standbys
  local sb=$1 run a b t0 t1
  for run in $(seq "$runs"); do
    setup_topics "$work/fo-$sb-$run"
    instance "fo-$sb-$run-a" "$ADDR" --standby-replicas "$sb" --config acceptable.recovery.lag=0 --until-idle 4
    a=$PID
    instance "fo-$sb-$run-b" "$ADDR" --standby-replicas "$sb" --config acceptable.recovery.lag=0
    b=$PID
    # Both running with their share, and the input processed (a stops once idle).
    wait_exit 600 "$a"
    sleep 2
    local before
    before=$(grep -c "tasks owned" "$work/fo-$sb-$run-b.out" || true)
    # Restart a, let it settle, then kill it.
    instance "fo-$sb-$run-a2" "$ADDR" --standby-replicas "$sb" --config acceptable.recovery.lag=0
    a=$PID
    wait_until 120 '[[ $(grep -c "tasks owned" "$work/fo-$sb-$run-b.out" || true) -gt $before ]]'
    wait_until 120 'grep -q "tasks owned" "$work/fo-$sb-$run-a2.out" 2>/dev/null'
    sleep 8 # standbys catch up
    before=$(grep -c "tasks owned" "$work/fo-$sb-$run-b.out")
    t0=$(now)
    kill -9 "$a"
    wait_until 120 '[[ $(grep -c "tasks owned" "$work/fo-$sb-$run-b.out" || true) -gt $before ]]'
    t1=$(now)
    kill -INT "$b"
    wait "$b" || true
    kill "$BROKER_PID"
    wait "$BROKER_PID" || true
    local restored
    restored=$(sed -n 's/^restored \([0-9]*\) changelog records.*/\1/p' "$work/fo-$sb-$run-b.out")
    echo "$(echo "$t1 - $t0" | bc -l) $restored" >>"$work/fo-$sb"
  done
  sort -g "$work/fo-$sb" | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }'
}

embedded() {
  local run start end
  for run in $(seq "$runs"); do
    start=$(now)
    "$wc" --input "$work/input.txt" --data-dir "$work/emb-$run" --top 1 >/dev/null
    end=$(now)
    echo "$words / ($end - $start)" | bc -l >>"$work/emb"
  done
  median <"$work/emb"
}

printf 'embedded backend, 1 instance: %.0f words/s\n' "$(embedded)"
printf 'broker serve, 1 instance:     %.0f words/s\n' "$(throughput 1)"
printf 'broker serve, 2 instances:    %.0f words/s\n' "$(throughput 2)"
read -r t r <<<"$(failover 0)"
printf 'failover without standby:     %.1f s, %s changelog records restored by the survivor\n' "$t" "$r"
read -r t r <<<"$(failover 1)"
printf 'failover with 1 standby:      %.1f s, %s changelog records restored by the survivor\n' "$t" "$r"

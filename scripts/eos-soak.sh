#!/usr/bin/env bash
# The long form of the exactly-once system test (tests/tests/eos_system.rs, `eos_soak`):
# `broker serve` and EOS_INSTANCES application instances as processes, EOS_APP_KILLS SIGKILLs
# of random instances and EOS_BROKER_KILLS SIGKILLs of the broker at random times while input
# flows at EOS_RATE records/s; then every output is verified record by record and aborted
# transactions must have been seen. Usage:
#   scripts/eos-soak.sh [app kills (20)] [broker kills (5)] [instances (3)] [rate (200)]
# EOS_SEED=<seed> repeats a run (the seed is printed); EOS_KEEP=1 keeps its data directory.
set -euo pipefail
cd "$(dirname "$0")/.."
export EOS_APP_KILLS="${1:-20}" EOS_BROKER_KILLS="${2:-5}" EOS_INSTANCES="${3:-3}" EOS_RATE="${4:-200}"
# The test spawns target/<profile>/broker: build it first.
cargo build -p broker-cli
start=$(date +%s)
cargo test -p tests --test eos_system -- --ignored --exact eos_soak --nocapture 2>&1 |
  grep -E "EOS_SEED|^data:|^kill |^driver:|^outcome:|EOS soak|panicked|^\[app[0-9]+\] error|test eos_soak|test result" |
  grep -v "^\[app[0-9]*\] test result"
echo "wall: $(( $(date +%s) - start )) s"

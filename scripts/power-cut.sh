#!/usr/bin/env bash
# A long power-cut campaign on durable-fs's page-cache simulator (the CI run is the short form
# of the same tests). Usage: scripts/power-cut.sh [log cases per policy] [broker cases]
# Prints the seeds; replay a failure with POWER_CUT_SEED=<seed> and the same counts.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_CASES="${1:-20000}"
BROKER_CASES="${2:-3000}"
POWER_CUT_CASES="$LOG_CASES" BROKER_POWER_CUT_CASES="$BROKER_CASES" \
  cargo test -p broker-embedded --test power_cut --test broker_power_cut -- --nocapture 2>&1 |
  grep -E "campaign|coverage|checked|test |case seed|panicked"
cargo test -p state-store --test checkpoint_power_cut -- --nocapture 2>&1 |
  grep -E "campaign|test |seed|panicked"
cargo test -p durable-fs --features sim 2>&1 | grep -E "test result"

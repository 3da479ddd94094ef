#!/usr/bin/env bash
# Transactions with kafka-python (>= 2.2) and KafkaJS against the broker: a transactional
# producer commits one transaction and aborts another; read_committed consumers must see
# only the committed records, read_uncommitted ones all of them.
# Usage: [BROKER=path/to/broker] scripts/client-transactions.sh
# Needs python3 (with venv), node and npm, and network access to PyPI and the npm registry.
# Everything (venv, node_modules, broker data) lives in a temporary directory removed on exit;
# the repository is left untouched. Bounded: 300 s overall.
set -euo pipefail
if [ -z "${CLIENT_TXN_BOUNDED:-}" ]; then
  export CLIENT_TXN_BOUNDED=1
  exec timeout 300 "$0" "$@"
fi
cd "$(dirname "$0")/.."
HERE="$PWD/scripts/client-transactions"
BROKER="${BROKER:-target/debug/broker}"
[ -x "$BROKER" ] || { echo "FAIL: broker binary $BROKER not found (cargo build -p broker-cli)"; exit 1; }

TMP="$(mktemp -d)"
BROKER_PID=""
# shellcheck disable=SC2329 # invoked by the EXIT trap
cleanup() {
  if [ -n "$BROKER_PID" ]; then
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$TMP/data"
"$BROKER" serve --listen 127.0.0.1:0 --data-dir "$TMP/data" >"$TMP/broker.out" 2>"$TMP/broker.err" &
BROKER_PID=$!
ADDR=""
for _ in $(seq 100); do
  ADDR="$(sed -n '1s/^listening on //p' "$TMP/broker.out")"
  [ -n "$ADDR" ] && break
  kill -0 "$BROKER_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$ADDR" ]; then
  echo "FAIL: broker did not start"; cat "$TMP/broker.err"; exit 1
fi
echo "broker $BROKER on $ADDR"

echo "installing kafka-python and kafkajs into $TMP"
python3 -m venv "$TMP/venv"
timeout 180 "$TMP/venv/bin/pip" install -q 'kafka-python>=2.2' >"$TMP/pip.log" 2>&1 ||
  { cat "$TMP/pip.log"; echo "FAIL: pip install kafka-python"; exit 1; }
timeout 180 npm install --prefix "$TMP/npm" --no-save --no-audit --no-fund kafkajs \
  >"$TMP/npm.log" 2>&1 || { cat "$TMP/npm.log"; echo "FAIL: npm install kafkajs"; exit 1; }
export NODE_PATH="$TMP/npm/node_modules"
echo "$("$TMP/venv/bin/python" --version), kafka-python $("$TMP/venv/bin/python" -c \
  'import kafka; print(kafka.__version__)'); node $(node --version), kafkajs $(node -p \
  'require("kafkajs/package.json").version')"

status=0
start=$(date +%s)
timeout 150 "$TMP/venv/bin/python" "$HERE/txn_check.py" "$ADDR" || status=1
echo "kafka-python check: $(($(date +%s) - start)) s"
start=$(date +%s)
timeout 150 node "$HERE/txn_check.js" "$ADDR" || status=1
echo "kafkajs check: $(($(date +%s) - start)) s"

if ! kill -0 "$BROKER_PID" 2>/dev/null; then
  echo "FAIL: the broker exited during the run"; tail -20 "$TMP/broker.err"; status=1
fi
if [ "$status" -eq 0 ]; then
  echo "PASS: kafka-python and kafkajs transactions"
else
  echo "FAIL: see above (broker log tail follows)"; tail -20 "$TMP/broker.err"
fi
exit "$status"

#!/usr/bin/env bash
# Runs a selection of librdkafka's own integration test suite against our broker: the gate CI
# runs (./dev test). Rules (docs/TESTING.md, "librdkafka test suite"):
#   - every selected test must pass: a failure, a time-out, or a selected test of which no
#     broker sub-test ran fails the gate;
#   - whenever the test-runner reports a skip inside a selected test (a test row SKIPPED with
#     a reason, or a sub-test's "SKIP:" line), it must match an entry of EXPECTED_SKIPS below
#     (test, text, reason), or the gate fails;
#   - tests not selected are listed in NOT_RUN (NOT_RUN_CLUSTER for the cluster pass) with the
#     reason, printed on every run.
#
#   scripts/librdkafka-tests.sh                 build (if needed), run the four passes, summarise
#   scripts/librdkafka-tests.sh 0012 0113/v_commit noautocreate:0045 cluster:0103/basic
#                                               only these (N/SUB: SUBTESTS=SUB; PASS:N runs N in
#                                               that pass: noautocreate, cluster or
#                                               cluster-noautocreate; plain N: the default pass)
#   scripts/librdkafka-tests.sh --no-cluster    only the two single-broker passes
#   scripts/librdkafka-tests.sh --all           also try every NOT_RUN test (to re-check the list)
#                                               and every NOT_RUN_CLUSTER one in the cluster pass
#   scripts/librdkafka-tests.sh --build-only    only build librdkafka and its test-runner
#   scripts/librdkafka-tests.sh --list          print the selection, NOT_RUN and EXPECTED_SKIPS
#
# The librdkafka source is the one the `rdkafka-sys` crate bundles (already in the cargo
# registry once the workspace has been built, so no network is needed). It is copied to
# target/librdkafka-tests/<version>/, configured with the fewest dependencies (no SSL, SASL,
# zstd, curl; RapidJSON when its headers are installed, for 0053 and 0110) and built once
# (libs plus tests/test-runner, 2 to 4.5 minutes on 2 cores); later runs reuse the build
# unless RapidJSON appeared or disappeared since.
#
# Four passes, each against its own broker or cluster (`broker serve`, debug build) on free
# 127.0.0.1 ports in a temporary data directory, with the settings of librdkafka's test
# scenario (tests/scenarios/*.json) the pass runs:
#   default       one broker, auto.create.topics.enable=true, num.partitions=4  (SELECTED)
#   noautocreate  one broker, auto.create.topics.enable=false, num.partitions=4
#                 (SELECTED_NOAUTOCREATE, run with TEST_SCENARIO=noautocreate, which is what
#                 makes the runner run the tests and sub-tests declared for that scenario)
#   cluster       three combined broker+controller nodes (KRaft quorum of 3), the default
#                 scenario with its replication factor 3 (default.replication.factor,
#                 offsets/transaction-state topics 3, min.insync.replicas=2)  (SELECTED_CLUSTER)
#   cluster-noautocreate  the same cluster with auto.create.topics.enable=false, scenario
#                 noautocreate  (SELECTED_CLUSTER_NOAUTOCREATE)
# The test-runner's test.conf lists every broker of the pass in bootstrap.servers.
# Each test runs as `TESTS=<n> [SUBTESTS=<s>] test-runner -L` (broker tests only; not quick
# mode `-Q`, which turns most tests' sub-tests into no-ops), four at a time (they mostly
# wait), the longest first, each under its own time bound. 0045, 0052 and 0077 get
# KAFKA_PATH=scripts/kafka-path, whose bin/kafka-topics.sh maps kafka-topics.sh's options onto
# `broker topics`; 0052 runs with TEST_KAFKA_VERSION=4.0.0 (see KAFKA_VERSION).
# Exit status: 0 when every selected test passed and every skip was expected.
#
# Environment: LIBRDKAFKA_TESTS_BROKER (a `broker` binary to use instead of building it;
# copied into the work directory, so a rebuild during the run does not change it),
# LIBRDKAFKA_TEST_TIMEOUT (seconds per test, default 120; some tests have their
# own bound in TIMEOUTS), LIBRDKAFKA_TESTS_JOBS (tests at a time, default 3),
# LIBRDKAFKA_TESTS_KEEP_LOGS=1 to keep the logs directory on success.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

log() { printf '[librdkafka-tests] %s\n' "$*" >&2; }

# The Kafka version librdkafka's tests assume the broker to be. We implement the classic
# consumer-group protocol, idempotent producers, headers, timestamps, admin topic/config APIs
# and ApiVersions v3 as Kafka 3.x does, without transactions (handled in NOT_RUN).
export TEST_KAFKA_VERSION=${TEST_KAFKA_VERSION:-3.4.0}
per_test_timeout=${LIBRDKAFKA_TEST_TIMEOUT:-120}
jobs=${LIBRDKAFKA_TESTS_JOBS:-3}

# Tests run against the broker (LONG_FIRST first, then in this order). Numbers as in
# librdkafka's tests/test.c; a number runs every broker (non-local) test of that number in the
# pass's scenario; N/S runs only its sub-tests whose name contains S (SUBTESTS=S).
SELECTED=(
  0001 # multiobj: several producer instances
  0002 # unkpart: producing to an unknown partition fails cleanly
  0003 # msgmaxsize: message.max.bytes limits
  0005 # order: per-partition ordering of produced messages
  0007 # autotopic: topic auto-creation on produce
  0008 # reqacks: acks=0/1/-1
  0011 # produce_batch: batch producer API, partitioners
  0012 # produce_consume: produce, then consume with the legacy consumer
  0013 # null_msgs: null keys and values
  0014 # reconsume_191: re-consume from stored offsets
  0015 # offsets_seek: seek in a consumer
  0016 # client_swname: client.software.name in ApiVersions v3
  0017 # compression: gzip, snappy, lz4 batches
  0018 # cgrp_term: consumer group termination
  0019 # list_groups: ListGroups / DescribeGroups
  0020 # destroy_hang: destroy while in a group
  0021 # rkt_destroy: topic handle destruction
  0022 # consume_batch
  0026 # consume_pause: pause/resume in a group
  0029 # assign_offset: assign() with explicit offsets
  0030 # offset_commit: sync/async commits, OffsetFetch
  0031 # get_offsets: ListOffsets / query_watermark_offsets
  0033 # regex_subscribe
  0034 # offset_reset: auto.offset.reset
  0035 # api_version: ApiVersions
  0036 # partial_fetch
  0039 # event_dr: delivery reports as events
  0040 # io_event
  0041 # fetch_max_bytes
  0042 # many_topics
  0044 # partition_cnt: CreatePartitions while producing
  0045 # subscribe_update: metadata-driven re-subscription
  0048 # partitioner
  0049 # consume_conn_close: connections cut under a consumer (sockem)
  0050 # subscribe_adds
  0051 # assign_adds
  0052 # msg_timestamps: CreateTime/LogAppendTime topics (created with kafka-topics.sh: KAFKA_PATH shim)
  0053 # stats: statistics JSON checked against librdkafka's schema (RapidJSON)
  0054 # offset_time: offsetsForTimes
  0056 # balanced_group_mt
  0057 # invalid_topic
  0059 # bsearch: offsets by timestamp
  0060 # op_prio
  0063 # clusterid
  0064 # interceptors
  0065 # yield
  0067 # empty_topic
  0068 # produce_timeout (sockem delays)
  0069 # consumer_add_parts
  0070 # null_empty
  0073 # headers
  0075 # retry: request retries over delayed connections (sockem)
  0076 # produce_retry (sockem)
  0077 # compaction: compacted topics (created with kafka-topics.sh: KAFKA_PATH shim)
  0082 # fetch_max_bytes (C++)
  0083 # cb_event
  0084 # destroy_flags
  0085 # headers (C++)
  0086 # purge_remote
  0088 # produce_metadata_timeout (sockem)
  0089 # max_poll_interval
  0090 # idempotence
  0091 # max_poll_interval_timeout
  0093 # holb_consumer
  0094 # idempotence_msg_timeout: idempotent producer with message timeouts (sockem)
  0099 # commit_metadata
  0102 # static_group_rebalance
  0110 # batch_size: produce batch sizes read from the statistics JSON (RapidJSON)
  0112 # assign_unknown_part
  # cooperative_rebalance (KIP-429), two slices (SUBTESTS=) of its 25 sub-tests, ~60 s:
  # 0113/b_subscribe_with_cb_test: out of the CI selection since 2026-12-02 (see [0113] below)
  0113/v_commit_during_rebalance    # commits while the group rebalances (3)
  0113/x_incremental_rebalances     # three consumers joining one by one (1)
  0114 # sticky_partitioning
  0118 # commit_rebalance
  0122 # buffer_cleaning_after_rebalance
  0123 # connections_max_idle
  0125 # immediate_flush
  0127 # fetch_queue_backoff
  0130 # store_offsets
  0132 # strategy_ordering
  0140 # commit_metadata
  # transactions (issue 15's broker half)
  0061 # consumer_lag: lag over transactional and non-transactional producers
  0103/misuse # transactions: API misuse (timeouts over the maximum, wrong sequences)
  0103/fenc   # transactions: a second producer with the same transactional.id fences the first
  0103/local  # transactions: client-side checks against a live broker
  0129 # fetch_aborted_msgs: aborted transactional records skipped by read_committed
  0137 # barrier_batch_consume: consume around transaction markers
)

# Retention checks: once an hour instead of Kafka's 5 minutes. 0052 produces records stamped
# in January 1970; a retention pass that happens to fall between its produce and its consume
# (the broker's first pass comes 5 minutes after start) deletes them by `retention.ms`, as
# Kafka's would, and the test times out (seen once in a CI check). No selected test relies on
# retention running.
retention_check_ms=3600000

# The second pass: broker with auto.create.topics.enable=false, TEST_SCENARIO=noautocreate.
# The runner runs only the tests (and sub-tests) declared for that scenario.
SELECTED_NOAUTOCREATE=(
  0045 # subscribe_update_topic_remove, subscribe_update_non_exist_and_partchange (KAFKA_PATH shim)
)

# The third pass: a cluster of three combined broker+controller nodes with the default
# scenario's replication factor 3. First the tests that need several brokers or replication
# (a single broker refuses replication factor 3 with INVALID_REPLICATION_FACTOR, as Kafka
# does), then a core set re-run on the cluster: producers, groups and transactions with
# partitions, leaders and coordinators spread over three brokers.
SELECTED_CLUSTER=(
  # transactions on topics of replication factor 3 (0103's sub-tests; the single-broker pass
  # runs only misuse, fenc and local), coordinators on the leaders of __transaction_state and
  # __consumer_offsets partitions, markers to other brokers' partitions (WriteTxnMarkers)
  0103/do_test_basic_producer_txn            # commits and aborts, with and without compression
  0103/do_test_consumer_producer_txn         # consume-transform-produce with sendOffsetsToTransaction
  0103/do_test_fenced_txn                    # fencing by a second producer, with produce after fencing
  0103/do_test_empty_txn                     # empty transactions, with and without offsets, commit and abort
  0103/do_test_wmark_isolation_level         # high watermark vs last stable offset by isolation.level
  0103/do_test_txn_abort_control_message     # committed offset past an aborted record and its marker
  0129 # fetch_aborted_msgs
  0137/control_msgs # consume_batch around transaction markers
  # producers: acks, idempotence and retries with partitions led by three brokers
  0001 # multiobj
  0005 # order
  0008 # reqacks: acks=0/1/-1 with three replicas (min.insync.replicas=2)
  0011 # produce_batch: cleanup.policy=compact set through IncrementalAlterConfigs, forwarded to the controller, enforced by the leaders
  0012 # produce_consume
  0022 # consume_batch
  0040 # io_event
  0042 # many_topics
  0044 # partition_cnt: CreatePartitions through the controller while producing
  0086 # purge_remote
  0088 # produce_metadata_timeout (sockem)
  0090 # idempotence
  # offsets and metadata across brokers
  0029 # assign_offset
  0031 # get_offsets
  0034 # offset_reset
  0054 # offset_time
  0063 # clusterid: the same cluster id from every broker
  0082 # fetch_max_bytes
  # consumer groups: the coordinator on one broker, the partitions led by all three
  0018 # cgrp_term
  0019 # list_groups: ListGroups asks every broker
  0030 # offset_commit
  0049 # consume_conn_close (sockem cuts connections to the brokers)
  0056 # balanced_group_mt
  0061 # consumer_lag, with and without transactions
  0069 # consumer_add_parts
  0099 # commit_metadata
  0102 # static_group_rebalance
  0112 # assign_unknown_part
  0113/x_incremental_rebalances
  0118 # commit_rebalance
  0130 # store_offsets
  0137/store_offset # commits of a replication-factor-1 topic led by a broker other than the coordinator
)

# Tests of the cluster pass not run (until the reason is fixed), with the reason printed;
# --all runs them too. Evidence in docs/TESTING.md ("librdkafka test suite", cluster pass).
declare -A NOT_RUN_CLUSTER=(
  [0045]="its test 0045_subscribe_many_updates creates 100 topics (4 partitions, replication factor 3) and waits 5 s to see them in Metadata: the brokers create their local replicas one topic at a time after deleting the previous sub-test's 100 (6.5 s from the controller's record to the last local replica on the loaded 2-core machine), and the topics appear in Metadata only then; failed 1 run in 4 (the noautocreate cluster pass runs 0045's other sub-tests)"
)

# The fourth pass: the same cluster with auto.create.topics.enable=false (scenario noautocreate).
SELECTED_CLUSTER_NOAUTOCREATE=(
  0107 # topic_recreate: replication-factor-3 topic deleted and re-created while produced to
  0111 # delay_create_topics: a producer waiting for a replication-factor-3 topic created late
  0045 # subscribe_update_topic_remove, subscribe_update_non_exist_and_partchange (KAFKA_PATH shim)
)

# The longest tests (over 40 s each on 2 cores), launched first so that the slots stay busy to
# the end: about 6 minutes of wall time for 21 minutes of tests, four at a time.
LONG_FIRST=(0077 0089 0076 0091 0026 0094 0102 0122 0113/v_commit_during_rebalance 0033)

# Tests whose own time bound differs from LIBRDKAFKA_TEST_TIMEOUT (seconds).
declare -A TIMEOUTS=(
  [0077]=240
)

# Tests given KAFKA_PATH (our kafka-topics.sh shim) and BROKERS.
declare -A NEEDS_KAFKA_PATH=([0045]=1 [0052]=1 [0077]=1)

# Tests run with another TEST_KAFKA_VERSION, and why.
declare -A KAFKA_VERSION=(
  # Like Kafka 4.0, the broker serves only message format v2 (record batches), not the v0/v1
  # message sets of clients without ApiVersions (api.version.request=false,
  # broker.version.fallback=0.9.0): as 4.0, 0052 then leaves out its 0.9.0 variants (which
  # fail: the broker closes the connection on Produce v0/v1). CreateTime/LogAppendTime,
  # plain and gzip, all run.
  [0052]=4.0.0
)

# Skips the test-runner may report inside a selected test: "test|text|reason", where text is
# matched (as a fixed string) against the skipped row ("<name> <reason>") or the sub-test
# "SKIP:" line. Anything skipped that matches no entry fails the gate.
EXPECTED_SKIPS=(
)

# Tests not run, with the reason printed. Local-only tests (librdkafka's mock cluster, no
# broker involved) are excluded by `-L` and not listed here.
declare -A NOT_RUN=(
  [0098]="transactions consumer side: needs Java (a Java producer drives it)"
  [0103]="transactions as a whole: its sub-test do_test_fatal_idempo_error_without_kip360 needs DeleteRecords, which the broker lacks; the others run in slices (single broker: misuse, fenc, local; cluster: those that create topics with replication factor 3)"
  [0101]="fetch from follower (KIP-392): the brokers have no broker.rack (nor a replica selector), so on the three-node cluster the test skips itself: 'unexpected broker.rack configuration: skipping test'"
  [0097]="SSL certificate verification: no SSL listener"
  [0115]="producer ACL authorization errors: no ACLs"
  [0119]="consumer ACL authorization errors: no ACLs"
  [0126]="OAUTHBEARER/OIDC: no SASL"
  [0135]="SASL credentials: no SASL"
  [0142]="SASL re-authentication (KIP-368): no SASL"
  [0150]="client telemetry (KIP-714) against librdkafka's mock cluster, not the broker (not flagged local; runs over 2 minutes); the broker has no GetTelemetrySubscriptions"
  [0038]="performance test: minutes of load, not a compatibility check"
  [0079]="fork test: a local test flagged by librdkafka as a known issue (hangs), filtered by the test-runner"
  [0139]="offset validation against librdkafka's mock cluster: does not involve the broker (passes, 87 s)"
  [0028]="flagged as a known librdkafka issue (#529), filtered by test-runner"
  [0047]="flagged as a known librdkafka issue, filtered by test-runner"
  [0081]="Admin API test: topic compression.type other than producer (we store batches as produced), DeleteRecords, ACLs, DescribeCluster and other Admin APIs we lack"
  [0092]="mixed message format versions (message.format.version, MsgVersion 0/1 message sets): only record batch v2 is served"
  [0109]="its unauthorized-topic sub-tests deny a topic with kafka-acls.sh: no ACLs (its four other sub-tests pass)"
  [0113]="cooperative rebalancing, 25 sub-tests in 9.5 minutes: CI runs two slices (see SELECTED); all of it by hand: LIBRDKAFKA_TEST_TIMEOUT=900 scripts/librdkafka-tests.sh 0113. The slice b_subscribe_with_cb_test left CI on 2026-12-02: in one full parallel run its 'don't close consumer' step timed out (the partition never came back to the remaining member within 90 s after the other was destroyed without close); alone it passes in 26 s. An open broker flake, in issue 14's closing note"
  [0153]="client-generated member ids belong to the KIP-848 consumer protocol; skipped by the runner under the classic protocol"
  [0055]="librdkafka skips the whole test when CI is set (it measures latency); by hand it passes, its transactional sub-test included (2026-12-02)"
  [8000]="manual test (idles, for debugging by hand)"
  [8001]="manual test against librdkafka's mock cluster"
)

all=0
build_only=0
list_only=0
no_cluster=0
only=()
for arg in "$@"; do
  case "$arg" in
    --all) all=1 ;;
    --no-cluster) no_cluster=1 ;;
    --build-only) build_only=1 ;;
    --list) list_only=1 ;;
    -h | --help)
      awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
      exit 0
      ;;
    *)
      if [[ "$arg" =~ ^((noautocreate|cluster|cluster-noautocreate):)?[0-9]{4}(/[A-Za-z0-9_:.-]+)?$ ]]; then
        only+=("$arg")
      else
        log "unknown argument: $arg (tests: N, N/SUBTESTS or PASS:N[/SUBTESTS] with PASS noautocreate, cluster or cluster-noautocreate; SUBTESTS of [A-Za-z0-9_:.-])"
        exit 2
      fi
      ;;
  esac
done

if ((list_only)); then
  echo "default pass:"
  printf '  %s\n' "${SELECTED[@]}"
  echo "noautocreate pass:"
  printf '  %s\n' "${SELECTED_NOAUTOCREATE[@]}"
  echo "cluster pass (3 nodes):"
  printf '  %s\n' "${SELECTED_CLUSTER[@]}"
  echo "cluster-noautocreate pass (3 nodes):"
  printf '  %s\n' "${SELECTED_CLUSTER_NOAUTOCREATE[@]}"
  echo "not run on the cluster:"
  for t in $(printf '%s\n' "${!NOT_RUN_CLUSTER[@]}" | sort); do
    printf '  %s  %s\n' "$t" "${NOT_RUN_CLUSTER[$t]}"
  done
  echo "expected skips inside selected tests (test|text|reason):"
  if ((${#EXPECTED_SKIPS[@]})); then printf '  %s\n' "${EXPECTED_SKIPS[@]}"; fi
  echo "not run:"
  for t in $(printf '%s\n' "${!NOT_RUN[@]}" | sort); do
    printf '  %s  %s\n' "$t" "${NOT_RUN[$t]}"
  done
  exit 0
fi

# --- locate and build librdkafka's test-runner ---------------------------------------------

rdkafka_sys_version=$(awk '/^name = "rdkafka-sys"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
if [[ -z "$rdkafka_sys_version" ]]; then
  log "ERROR: rdkafka-sys not found in Cargo.lock"
  exit 1
fi
src=""
for d in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"rdkafka-sys-${rdkafka_sys_version}"/librdkafka; do
  [[ -d "$d/tests" ]] && src=$d && break
done
if [[ -z "$src" ]]; then
  # The source arrives with the first cargo build of the workspace (rdkafka is a dependency
  # of the tests); this script never downloads anything.
  log "ERROR: librdkafka source of rdkafka-sys ${rdkafka_sys_version} not found in the cargo registry;"
  log "build the workspace first (cargo test --workspace --no-run)"
  exit 1
fi

target_dir=${CARGO_TARGET_DIR:-$repo/target}
build_root="$target_dir/librdkafka-tests/$rdkafka_sys_version"
build="$build_root/src"
runner="$build/tests/test-runner"
# The build is keyed on what librdkafka's configure detects that changes which tests can run:
# RapidJSON (0053's and 0110's statistics checks are compiled in only when configure finds
# its headers). A runner built before rapidjson-dev was installed is rebuilt.
if [[ -f /usr/include/rapidjson/schema.h || -f /usr/local/include/rapidjson/schema.h ]]; then
  build_key="rapidjson=yes"
else
  build_key="rapidjson=no"
fi
if [[ ! -x "$runner" || "$(cat "$build_root/.built" 2>/dev/null)" != "$build_key" ]]; then
  log "building librdkafka ${rdkafka_sys_version} and its test-runner in $build_root ($build_key)"
  start=$SECONDS
  rm -rf "$build_root"
  mkdir -p "$build_root"
  cp -a "$src" "$build"
  (
    cd "$build"
    # mklove's configure; --no-download: never fetch anything.
    ./configure --no-download --disable-ssl --disable-gssapi --disable-zstd --disable-curl \
      --disable-lz4-ext --disable-regex-ext --disable-syslog >"$build_root/configure.log" 2>&1
    nice make -j2 libs >"$build_root/build.log" 2>&1
    nice make -j2 -C tests test-runner >>"$build_root/build.log" 2>&1
  ) || {
    log "ERROR: build failed; see $build_root/configure.log and $build_root/build.log"
    tail -20 "$build_root/build.log" >&2 || true
    exit 1
  }
  echo "$build_key" >"$build_root/.built"
  log "built in $((SECONDS - start)) s"
fi
if ((build_only)); then
  exit 0
fi

# --- the broker ------------------------------------------------------------------------------

if [[ -n "${LIBRDKAFKA_TESTS_BROKER:-}" ]]; then
  built_bin=$LIBRDKAFKA_TESTS_BROKER
else
  log "building the broker"
  cargo build -q -p broker-cli --bin broker
  built_bin="$target_dir/debug/broker"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/librdkafka-tests.XXXXXX")
broker_pids=()
declare -A running=() started=() run_id=() run_pass=()
# Stops the pass's broker or cluster nodes: SIGTERM, then SIGKILL after 15 s (a cluster node's
# controlled shutdown waits at most 10 s for the controller).
stop_broker() {
  local pid alive
  ((${#broker_pids[@]})) || return 0
  for pid in "${broker_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 1 150); do
    alive=0
    for pid in "${broker_pids[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then alive=1; fi
    done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${broker_pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  broker_pids=()
}
# Do all of the pass's broker processes run?
broker_alive() {
  local pid
  ((${#broker_pids[@]})) || return 1
  for pid in "${broker_pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || return 1
  done
}
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
  local pid
  # Running tests: their subshells and, below them, `timeout` (in a process group of its own).
  for pid in "${!running[@]}"; do
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  done
  stop_broker
  if [[ "${keep_logs:-0}" == 1 ]]; then
    log "logs kept in $work/logs"
    rm -rf "$work/data" "$work/broker"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work/logs"
# A private copy: other builds may replace target/debug/broker while the passes run.
cp "$built_bin" "$work/broker"
broker_bin="$work/broker"

# Prints n distinct free TCP ports on 127.0.0.1 (bound together, then released).
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# Starts three combined broker+controller nodes (node ids 1-3, a KRaft quorum of three) on
# free ports, with the scenario's settings and replication factor 3, and waits until every
# broker is registered. Sets bootstrap (all brokers) and controllers.
start_cluster() {
  local pass=$1 autocreate=$2 ports=() cid id dir voters="" status=""
  read -r -a ports < <(free_ports 6)
  for id in 1 2 3; do
    voters+="${voters:+,}$id@127.0.0.1:${ports[id + 2]}"
  done
  cid=$("$broker_bin" storage random-uuid)
  bootstrap="" controllers=""
  for id in 1 2 3; do
    dir="$work/data/node-$id"
    mkdir -p "$dir"
    printf '%s\n' "# librdkafka-tests.sh, pass $pass: node $id of 3 (combined broker and controller)" \
      "node.id=$id" \
      "process.roles=broker,controller" \
      "controller.quorum.voters=$voters" \
      "listeners=PLAINTEXT://127.0.0.1:${ports[id - 1]},CONTROLLER://127.0.0.1:${ports[id + 2]}" \
      "advertised.listeners=PLAINTEXT://127.0.0.1:${ports[id - 1]}" \
      "inter.broker.listener.name=PLAINTEXT" \
      "controller.listener.names=CONTROLLER" \
      "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" \
      "log.dirs=$dir/data" \
      "num.partitions=4" \
      "auto.create.topics.enable=$autocreate" \
      "default.replication.factor=3" \
      "min.insync.replicas=2" \
      "offsets.topic.replication.factor=3" \
      "transaction.state.log.replication.factor=3" \
      "log.retention.check.interval.ms=$retention_check_ms" >"$dir/server.properties"
    "$broker_bin" serve --config-file "$dir/server.properties" --cluster-id "$cid" \
      >"$work/logs/$pass-node-$id.log" 2>&1 &
    broker_pids+=("$!")
    bootstrap+="${bootstrap:+,}127.0.0.1:${ports[id - 1]}"
    controllers+="${controllers:+,}127.0.0.1:${ports[id + 2]}"
  done
  # Up to 90 s for the quorum to elect a leader and the three brokers to register.
  for _ in $(seq 1 90); do
    broker_alive || break
    status=$("$broker_bin" cluster status --bootstrap-server "$bootstrap" \
      --controllers "$controllers" --timeout-ms 1000 2>&1 || true)
    grep -q '^brokers: 3 registered' <<<"$status" && return 0
    sleep 1
  done
  log "ERROR: the cluster of pass $pass did not come up; last status:"
  printf '%s\n' "$status" >&2
  for id in 1 2 3; do
    log "node $id's log ends with:"
    tail -5 "$work/logs/$pass-node-$id.log" >&2 || true
  done
  exit 1
}

# Starts the pass's broker (one, or a cluster of three) with the settings of librdkafka's test
# scenario it runs (tests/scenarios/*.json) and writes the test-runner's configuration file.
# Sets scenario (the TEST_SCENARIO of the pass).
start_broker() {
  local pass=$1 autocreate nodes=1
  case "$pass" in
    default) scenario=default autocreate=true ;;
    noautocreate) scenario=noautocreate autocreate=false ;;
    cluster) scenario=default autocreate=true nodes=3 ;;
    cluster-noautocreate) scenario=noautocreate autocreate=false nodes=3 ;;
    *)
      log "ERROR: unknown pass $pass"
      exit 1
      ;;
  esac
  rm -rf "$work/data"
  if ((nodes == 3)); then
    start_cluster "$pass" "$autocreate"
  else
    "$broker_bin" serve --data-dir "$work/data" --listen 127.0.0.1:0 \
      --config num.partitions=4 --config "auto.create.topics.enable=$autocreate" \
      --config "log.retention.check.interval.ms=$retention_check_ms" \
      >"$work/logs/broker-$pass.out" 2>>"$work/logs/broker-$pass.err" &
    broker_pids=("$!")
    bootstrap=""
    for _ in $(seq 1 100); do
      bootstrap=$(sed -n 's/^listening on \([0-9.:]*\).*/\1/p' "$work/logs/broker-$pass.out" | head -1)
      [[ -n "$bootstrap" ]] && break
      broker_alive || break
      sleep 0.1
    done
    if [[ -z "$bootstrap" ]]; then
      log "ERROR: the broker did not start; stderr:"
      cat "$work/logs/broker-$pass.err" >&2
      exit 1
    fi
  fi
  printf '%s\n' "bootstrap.servers=$bootstrap" \
    "# Random topic names: every test gets fresh topics on the shared broker." \
    "test.topic.random=true" >"$work/test.conf"
  export RDKAFKA_TEST_CONF="$work/test.conf"
  log "pass $pass: $nodes broker(s) on $bootstrap (scenario $scenario, auto.create.topics.enable=$autocreate, TEST_KAFKA_VERSION=$TEST_KAFKA_VERSION)"
}

# --- run ----------------------------------------------------------------------------------

default_run=() noautocreate_run=() cluster_run=() cluster_noautocreate_run=()
if ((${#only[@]})); then
  for t in "${only[@]}"; do
    case "$t" in
      noautocreate:*) noautocreate_run+=("${t#*:}") ;;
      cluster:*) cluster_run+=("${t#*:}") ;;
      cluster-noautocreate:*) cluster_noautocreate_run+=("${t#*:}") ;;
      *) default_run+=("$t") ;;
    esac
  done
else
  default_run=("${SELECTED[@]}")
  noautocreate_run=("${SELECTED_NOAUTOCREATE[@]}")
  if ! ((no_cluster)); then
    cluster_run=("${SELECTED_CLUSTER[@]}")
    cluster_noautocreate_run=("${SELECTED_CLUSTER_NOAUTOCREATE[@]}")
  fi
  if ((all)); then
    while read -r t; do default_run+=("$t"); done < <(printf '%s\n' "${!NOT_RUN[@]}" | sort)
    if ! ((no_cluster)); then
      while read -r t; do cluster_run+=("$t"); done < <(printf '%s\n' "${!NOT_RUN_CLUSTER[@]}" | sort)
    fi
  fi
fi

passed=() failed=() unexpected=()
expected_seen=0
strip_ansi() { sed 's/\x1b\[[0-9;]*m//g'; }

# Runs one test (id "<n>" or "<n>/<subtests>") of the current pass (its scenario set by
# start_broker) in the background (timeout puts it in its own process group, so the cleanup
# can stop it); its exit status lands in logs/<key>.rc.
launch() {
  local id=$1 pass=$2 n sub="" key bound
  n=${id%%/*}
  [[ "$id" == */* ]] && sub=${id#*/}
  key="$pass-${id//[^A-Za-z0-9_.-]/_}"
  bound=${TIMEOUTS[$n]:-$per_test_timeout}
  (
    cd "$build/tests"
    vars=(TESTS="$n" TEST_SCENARIO="$scenario" LD_LIBRARY_PATH="$build/src:$build/src-cpp"
      TEST_KAFKA_VERSION="${KAFKA_VERSION[$n]:-$TEST_KAFKA_VERSION}")
    if [[ -n "$sub" ]]; then vars+=(SUBTESTS="$sub"); fi
    if [[ -n "${NEEDS_KAFKA_PATH[$n]:-}" ]]; then
      vars+=(KAFKA_PATH="$repo/scripts/kafka-path" BROKERS="$bootstrap" BROKER_BIN="$broker_bin")
    fi
    rc=0
    env "${vars[@]}" timeout -k 5 "$bound" ./test-runner -L >"$work/logs/$key.log" 2>&1 || rc=$?
    echo "$rc" >"$work/logs/$key.rc"
  ) 2>/dev/null & # (bash's "Aborted" notices of crashed runners: the verdict says it)
  running[$!]=$key
  run_id[$key]=$id
  run_pass[$key]=$pass
  started[$key]=$SECONDS
}

# Is this skip (a SKIPPED row's "<name> <reason>", or a sub-test's "SKIP:" line) of test n
# on EXPECTED_SKIPS? Prints the listed reason if so.
expected_skip() {
  local n=$1 text=$2 entry et pat reason
  for entry in "${EXPECTED_SKIPS[@]}"; do
    IFS='|' read -r et pat reason <<<"$entry"
    if [[ "$et" == "$n" ]] && grep -qF -- "$pat" <<<"$text"; then
      echo "$reason"
      return 0
    fi
  done
  return 1
}

# Prints one finished test's verdict and records it.
report() {
  local key=$1 id n pass label rc out rows reason secs bound line name state text why
  local skips_ok=() skips_bad=()
  id=${run_id[$key]}
  n=${id%%/*}
  pass=${run_pass[$key]}
  label=$id
  [[ "$pass" == default ]] || label="$pass:$id"
  bound=${TIMEOUTS[$n]:-$per_test_timeout}
  rc=$(cat "$work/logs/$key.rc" 2>/dev/null || echo 255)
  out="$work/logs/$key.log"
  secs=$((SECONDS - started[$key]))
  # The runner's summary table: "| 0012_produce_consume | PASSED | 1.234s |[ reason]".
  rows=$(strip_ansi <"$out" | grep -E "^\| ${n}_" || true)
  # Skips the runner reported: rows SKIPPED or NOT_STARTED with a reason, and sub-tests that
  # said "SKIP:". Not skips of a broker test: rows without a reason (the runner's silent
  # filters: tests of the other scenario) and the local tests that -L leaves out ("Filtered
  # due to negative test flags").
  while IFS= read -r line; do
    [[ -n "$line" ]] || continue
    grep -q "| Filtered due to negative test flags *$" <<<"$line" && continue
    name=$(awk -F'|' '{ gsub(/ /, "", $2); print $2 }' <<<"$line")
    state=$(awk -F'|' '{ gsub(/ /, "", $3); print $3 }' <<<"$line")
    text=$(sed -E 's/^\|[^|]*\|[^|]*\|[^|]*\| *//' <<<"$line")
    if [[ "$state" == SKIPPED || "$state" == NOT_STARTED ]] && [[ -n "${text// /}" ]]; then
      if why=$(expected_skip "$n" "$name $text"); then
        skips_ok+=("$name: $text ($why)")
      else
        skips_bad+=("$name: $text")
      fi
    fi
  done <<<"$rows"
  while IFS= read -r line; do
    [[ -n "$line" ]] || continue
    if why=$(expected_skip "$n" "$line"); then
      skips_ok+=("$line ($why)")
    else
      skips_bad+=("$line")
    fi
  done < <(strip_ansi <"$out" | grep -oE '\[ [^]]*: SKIP: [^]]*\]' | sort -u || true)

  if ((rc == 124 || rc == 137)); then
    printf 'FAIL     %s  (timed out after %ss)\n' "$label" "$bound"
    failed+=("$label")
  elif ((rc != 0)); then
    reason=$(strip_ansi <"$out" | grep -A1 -m1 -E '^### Test "[0-9]' | tail -1 || true)
    printf 'FAIL     %s  (%ss) %s\n' "$label" "$secs" "${reason:-exit status $rc}"
    failed+=("$label")
  elif ((${#skips_bad[@]})); then
    printf 'FAIL     %s  (%ss) skipped by the test-runner, not on EXPECTED_SKIPS:\n' "$label" "$secs"
    printf '           %s\n' "${skips_bad[@]}"
    failed+=("$label")
    unexpected+=("$label")
  elif ! grep -q "| *PASSED *|" <<<"$rows"; then
    printf 'FAIL     %s  (%ss) no broker sub-test passed (all filtered by the scenario, -L or SUBTESTS, or skipped)\n' "$label" "$secs"
    failed+=("$label")
  else
    printf 'PASS     %s  (%ss)\n' "$label" "$secs"
    passed+=("$label")
  fi
  if ((${#skips_ok[@]})); then
    printf '           expected skip: %s\n' "${skips_ok[@]}"
    expected_seen=$((expected_seen + ${#skips_ok[@]}))
  fi
}

# Waits for one running test to finish and reports it.
reap_one() {
  local pid key
  wait -n 2>/dev/null || true
  for pid in "${!running[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      key=${running[$pid]}
      unset "running[$pid]"
      wait "$pid" 2>/dev/null || true
      report "$key"
    fi
  done
}

# Runs a list of tests against a fresh broker (or cluster) of the pass.
run_pass() {
  local pass=$1 t pass_start=$SECONDS
  shift
  (($#)) || return 0
  # LONG_FIRST ones first, in that order, then the others in the order given.
  local ordered=() l
  for l in "${LONG_FIRST[@]}"; do
    for t in "$@"; do [[ "$t" == "$l" ]] && ordered+=("$t"); done
  done
  for t in "$@"; do
    [[ " ${LONG_FIRST[*]} " == *" $t "* ]] || ordered+=("$t")
  done
  start_broker "$pass"
  for t in "${ordered[@]}"; do
    while ((${#running[@]} >= jobs)); do
      reap_one
    done
    if ! broker_alive; then
      log "a broker process of pass $pass died before test $t; restarting (its output is in the logs)"
      while ((${#running[@]} > 0)); do
        reap_one
      done
      failed+=("broker-died-before-$pass:$t")
      stop_broker
      start_broker "$pass"
    fi
    launch "$t" "$pass"
  done
  while ((${#running[@]} > 0)); do
    reap_one
  done
  if ! broker_alive; then
    log "a broker process died during the $pass pass"
    failed+=("broker-died-$pass")
  fi
  if [[ "$pass" == cluster* ]]; then
    # The cluster's state at the end (quorum, brokers, every partition's leader, replicas
    # and ISR), for the logs.
    "$broker_bin" cluster status --bootstrap-server "$bootstrap" --controllers "$controllers" \
      >"$work/logs/$pass-status.txt" 2>&1 || true
  fi
  stop_broker
  log "pass $pass: $# tests in $((SECONDS - pass_start)) s"
}

gate_start=$SECONDS
run_pass default "${default_run[@]}"
run_pass noautocreate "${noautocreate_run[@]}"
run_pass cluster "${cluster_run[@]}"
run_pass cluster-noautocreate "${cluster_noautocreate_run[@]}"

if ((${#only[@]} == 0)) && ! ((all)); then
  for t in $(printf '%s\n' "${!NOT_RUN[@]}" | sort); do
    printf 'NOT RUN  %s  %s\n' "$t" "${NOT_RUN[$t]}"
  done
  if ! ((no_cluster)); then
    for t in $(printf '%s\n' "${!NOT_RUN_CLUSTER[@]}" | sort); do
      printf 'NOT RUN  cluster:%s  %s\n' "$t" "${NOT_RUN_CLUSTER[$t]}"
    done
  fi
fi

total=$((${#default_run[@]} + ${#noautocreate_run[@]} + ${#cluster_run[@]} + ${#cluster_noautocreate_run[@]}))
echo
echo "librdkafka test suite (librdkafka ${rdkafka_sys_version#*+}, TEST_KAFKA_VERSION=$TEST_KAFKA_VERSION, $build_key):"
echo "  selected: $total (one broker: ${#default_run[@]} default scenario, ${#noautocreate_run[@]} noautocreate;" \
  "three-node cluster: ${#cluster_run[@]} default scenario, ${#cluster_noautocreate_run[@]} noautocreate)"
echo "  passed:   ${#passed[@]}"
echo "  failed:   ${#failed[@]}${failed:+ (${failed[*]})}"
echo "  skips:    $expected_seen expected (EXPECTED_SKIPS), ${#unexpected[@]} tests with unexpected ones${unexpected:+ (${unexpected[*]})}"
echo "  not run:  ${#NOT_RUN[@]} (NOT_RUN) + ${#NOT_RUN_CLUSTER[@]} on the cluster (NOT_RUN_CLUSTER), reasons above"
echo "  time:     $((SECONDS - gate_start)) s of tests"
echo "  logs:     $work/logs (kept when something fails)"

status=0
if ((${#failed[@]} > 0 || ${#passed[@]} != total)); then
  log "ERROR: ${#passed[@]} of $total selected tests passed; all must"
  status=1
fi
if ((status != 0)) || [[ "${LIBRDKAFKA_TESTS_KEEP_LOGS:-0}" == 1 ]]; then
  keep_logs=1
fi
exit "$status"

#!/usr/bin/env bash
# A minimal stand-in for Apache Kafka's bin/kafka-topics.sh, for librdkafka's test suite
# (scripts/librdkafka-tests.sh sets KAFKA_PATH to the directory above this one). It maps the
# options librdkafka's tests pass (0052, 0077) onto our `broker topics` CLI:
#
#   --bootstrap-server H:P --create --topic T [--partitions N] [--replication-factor N] [--config K=V]...
#   --bootstrap-server H:P --delete --topic T
#   --bootstrap-server H:P --alter  --topic T --partitions N
#   --bootstrap-server H:P --list | --describe [--topic T]
#
# Anything else (e.g. --zookeeper) is refused with exit status 2, so a test that needs more
# fails loudly instead of passing by accident. The broker binary is $BROKER_BIN, or `broker`
# on PATH.
set -euo pipefail
broker=${BROKER_BIN:-broker}
action="" topic="" bootstrap="" partitions="" rf=""
configs=()
die() { echo "kafka-topics.sh (shim): $*" >&2; exit 2; }
while (($#)); do
  case "$1" in
    --bootstrap-server) bootstrap=${2:?}; shift ;;
    --create | --delete | --alter | --list | --describe)
      [[ -z "$action" ]] || die "more than one action: $action $1"
      action=${1#--} ;;
    --topic) topic=${2:?}; shift ;;
    --partitions) partitions=${2:?}; shift ;;
    --replication-factor) rf=${2:?}; shift ;;
    --config) configs+=(--config "${2:?}"); shift ;;
    *) die "unsupported option: $1" ;;
  esac
  shift
done
[[ -n "$bootstrap" ]] || die "--bootstrap-server is required"
[[ -n "$action" ]] || die "no action (--create, --delete, --alter, --list, --describe)"
args=(topics "$action" --bootstrap-server "$bootstrap")
case "$action" in
  create)
    [[ -n "$topic" ]] || die "--create needs --topic"
    args+=(--topic "$topic" --partitions "${partitions:-1}" --replication-factor "${rf:-1}" "${configs[@]}")
    ;;
  delete)
    [[ -n "$topic" ]] || die "--delete needs --topic"
    args+=(--topic "$topic")
    ;;
  alter)
    [[ -n "$topic" && -n "$partitions" ]] || die "--alter: only --topic T --partitions N is supported"
    ((${#configs[@]} == 0)) || die "--alter --config: use kafka-configs.sh (not provided)"
    args+=(--topic "$topic" --partitions "$partitions")
    ;;
  list) ;;
  describe) [[ -z "$topic" ]] || args+=(--topic "$topic") ;;
esac
exec "$broker" "${args[@]}"

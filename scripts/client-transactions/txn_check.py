"""kafka-python transactions against the broker: usage: txn_check.py BOOTSTRAP [TOPIC]

A transactional producer commits N records spread over 3 partitions and aborts M more;
a read_committed consumer must see exactly the N committed values, a read_uncommitted
consumer all N+M. Prints PASS/FAIL lines and exits non-zero on any failure.
"""
import os
import signal
import sys
import time

import kafka
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

N, M, PARTITIONS = 30, 12, 3
OVERALL_TIMEOUT_S = 120

bootstrap = sys.argv[1]
topic = sys.argv[2] if len(sys.argv) > 2 else "kpy-txn-%d" % int(time.time())
failures = []


def check(ok, what):
    print("%s kafka-python: %s" % ("PASS" if ok else "FAIL", what), flush=True)
    if not ok:
        failures.append(what)


def watchdog(_sig, _frame):
    print("FAIL kafka-python: overall timeout (%ds) expired" % OVERALL_TIMEOUT_S, flush=True)
    os._exit(2)


signal.signal(signal.SIGALRM, watchdog)
signal.alarm(OVERALL_TIMEOUT_S)
print("kafka-python %s, topic %s" % (kafka.__version__, topic), flush=True)


def step(what, fn):
    t = time.monotonic()
    try:
        result = fn()
    except Exception as e:  # report which API failed and how
        check(False, "%s raised %s: %s" % (what, type(e).__name__, e))
        raise SystemExit(1)
    print("  %s took %.0f ms" % (what, (time.monotonic() - t) * 1000), flush=True)
    return result


admin = step("KafkaAdminClient()", lambda: KafkaAdminClient(
    bootstrap_servers=bootstrap, request_timeout_ms=10000))
step("create_topics", lambda: admin.create_topics(
    [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)], timeout_ms=10000))
admin.close()
check(True, "topic %s created with %d partitions" % (topic, PARTITIONS))

producer = step("KafkaProducer(transactional_id)", lambda: KafkaProducer(
    bootstrap_servers=bootstrap, transactional_id="kpy-txn-check-%d" % os.getpid(),
    max_block_ms=20000, request_timeout_ms=10000))
step("init_transactions", producer.init_transactions)

committed = [("c-%d" % i).encode() for i in range(N)]
aborted = [("a-%d" % i).encode() for i in range(M)]


def send_all(values):
    futures = [producer.send(topic, value=v, partition=i % PARTITIONS)
               for i, v in enumerate(values)]
    producer.flush(timeout=20)
    for f in futures:
        f.get(timeout=10)


step("begin_transaction (1)", producer.begin_transaction)
step("send %d records" % N, lambda: send_all(committed))
step("commit_transaction", producer.commit_transaction)
check(True, "committed a transaction of %d records over %d partitions" % (N, PARTITIONS))

step("begin_transaction (2)", producer.begin_transaction)
step("send %d records" % M, lambda: send_all(aborted))
step("abort_transaction", producer.abort_transaction)
check(True, "aborted a transaction of %d records" % M)
producer.close(timeout=10)


def read_all(isolation, expect):
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False,
        auto_offset_reset="earliest", request_timeout_ms=10000)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    values = []
    deadline = time.monotonic() + 20
    # Read until the expected count, then 2 s more to catch anything extra.
    extra_until = None
    while time.monotonic() < deadline:
        for recs in consumer.poll(timeout_ms=500).values():
            values.extend(r.value for r in recs)
        if len(values) >= expect and extra_until is None:
            extra_until = time.monotonic() + 2
        if extra_until is not None and time.monotonic() >= extra_until:
            break
    end = consumer.end_offsets(tps)
    consumer.close()
    return values, end


t = time.monotonic()
values, end = read_all("read_committed", N)
check(sorted(values) == sorted(committed),
      "read_committed saw %d records (want exactly the %d committed values) in %.1f s; "
      "end offsets %s" % (len(values), N, time.monotonic() - t,
                          {tp.partition: o for tp, o in end.items()}))
t = time.monotonic()
values, _ = read_all("read_uncommitted", N + M)
check(sorted(values) == sorted(committed + aborted),
      "read_uncommitted saw %d records (want %d) in %.1f s" % (len(values), N + M,
                                                                time.monotonic() - t))

signal.alarm(0)
if failures:
    print("FAIL kafka-python: %d check(s) failed" % len(failures), flush=True)
    sys.exit(1)
print("PASS kafka-python: all checks", flush=True)

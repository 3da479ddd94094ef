// KafkaJS transactions against the broker: usage: node txn_check.js BOOTSTRAP [TOPIC]
// (needs `kafkajs` resolvable, e.g. NODE_PATH=<dir>/node_modules).
//
// A transactional producer commits N records spread over 3 partitions and aborts M more;
// a read_committed consumer (readUncommitted: false) must see exactly the N committed values,
// a read_uncommitted one all N+M. Prints PASS/FAIL lines, exits non-zero on any failure.
'use strict';
const { Kafka, logLevel } = require('kafkajs');
const kafkajsVersion = require('kafkajs/package.json').version;

const N = 30, M = 12, PARTITIONS = 3;
const OVERALL_TIMEOUT_MS = 120000;
const bootstrap = process.argv[2];
const topic = process.argv[3] || `kjs-txn-${Date.now()}`;
const failures = [];

function check(ok, what) {
  console.log(`${ok ? 'PASS' : 'FAIL'} kafkajs: ${what}`);
  if (!ok) failures.push(what);
}

setTimeout(() => {
  console.log(`FAIL kafkajs: overall timeout (${OVERALL_TIMEOUT_MS / 1000}s) expired`);
  process.exit(2);
}, OVERALL_TIMEOUT_MS).unref();

async function step(what, fn) {
  const t = Date.now();
  try {
    const r = await fn();
    console.log(`  ${what} took ${Date.now() - t} ms`);
    return r;
  } catch (e) {
    check(false, `${what} threw ${e.name}: ${e.message}${e.type ? ` (${e.type})` : ''}`);
    throw e;
  }
}

const kafka = new Kafka({
  clientId: 'txn-check',
  brokers: [bootstrap],
  logLevel: logLevel.ERROR,
  connectionTimeout: 5000,
  requestTimeout: 10000,
  retry: { retries: 5 },
});

const sameValues = (a, b) => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());

async function readAll(readUncommitted, expect) {
  const consumer = kafka.consumer({
    groupId: `txn-check-${readUncommitted ? 'uncommitted' : 'committed'}-${Date.now()}`,
    readUncommitted,
    sessionTimeout: 10000,
    rebalanceTimeout: 10000,
    heartbeatInterval: 1000,
    maxWaitTimeInMs: 500,
  });
  const values = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ message }) => { values.push(message.value.toString()); },
    });
    // Wait for the expected count (at most 30 s), then 2 s more to catch anything extra.
    const deadline = Date.now() + 30000;
    while (values.length < expect && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 2000));
  } finally {
    await consumer.disconnect();
  }
  return values;
}

async function main() {
  console.log(`kafkajs ${kafkajsVersion}, topic ${topic}`);
  const admin = kafka.admin();
  await step('admin.connect', () => admin.connect());
  await step('admin.createTopics', () => admin.createTopics({
    topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
    waitForLeaders: true, timeout: 10000,
  }));
  await admin.disconnect();
  check(true, `topic ${topic} created with ${PARTITIONS} partitions`);

  const producer = kafka.producer({
    transactionalId: `kjs-txn-check-${process.pid}`,
    idempotent: true,
    maxInFlightRequests: 1,
    transactionTimeout: 30000,
  });
  await step('producer.connect', () => producer.connect());

  const committed = Array.from({ length: N }, (_, i) => `c-${i}`);
  const aborted = Array.from({ length: M }, (_, i) => `a-${i}`);
  const messages = (vals) => vals.map((value, i) => ({ value, partition: i % PARTITIONS }));

  let txn = await step('producer.transaction (1)', () => producer.transaction());
  await step(`txn.send ${N} records`, () => txn.send({ topic, messages: messages(committed) }));
  await step('txn.commit', () => txn.commit());
  check(true, `committed a transaction of ${N} records over ${PARTITIONS} partitions`);

  txn = await step('producer.transaction (2)', () => producer.transaction());
  await step(`txn.send ${M} records`, () => txn.send({ topic, messages: messages(aborted) }));
  await step('txn.abort', () => txn.abort());
  check(true, `aborted a transaction of ${M} records`);
  await producer.disconnect();

  let t = Date.now();
  let values = await readAll(false, N);
  check(sameValues(values, committed),
    `read_committed saw ${values.length} records (want exactly the ${N} committed values) ` +
    `in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  t = Date.now();
  values = await readAll(true, N + M);
  check(sameValues(values, committed.concat(aborted)),
    `read_uncommitted saw ${values.length} records (want ${N + M}) ` +
    `in ${((Date.now() - t) / 1000).toFixed(1)} s`);
}

main().then(
  () => {
    if (failures.length) {
      console.log(`FAIL kafkajs: ${failures.length} check(s) failed`);
      process.exit(1);
    }
    console.log('PASS kafkajs: all checks');
    process.exit(0);
  },
  (e) => {
    if (!failures.length) check(false, `${e.name}: ${e.message}`);
    console.log(`FAIL kafkajs: ${failures.length} check(s) failed`);
    process.exit(1);
  },
);

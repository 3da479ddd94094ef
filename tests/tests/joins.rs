#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A stream-stream join on the real runtime and the embedded broker, with two stream
//! threads: the join buffers' changelogs are created as Kafka creates them
//! (`cleanup.policy=delete`, `retention.ms` = size + grace + 1 day); after a clean close
//! and the loss of the local state, the restarted application restores both buffers from
//! their changelogs, so records of the second run join records of the first.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use broker_embedded::{
    decode_fetched, partition_for_key, Broker, BrokerConfig, IsolationLevel, NewTopic,
    ProduceRecord,
};
use streams_core::{EmbeddedCluster, StreamsApp, StreamsConfig, StreamsState, StringSerde};
use streams_dsl::{Consumed, JoinWindows, Produced, StreamJoined, StreamsBuilder};

const WAIT: Duration = Duration::from_secs(90);
const APP: &str = "join-app";
const LEFT: &str = "orders";
const RIGHT: &str = "payments";
const OUTPUT: &str = "paid-orders";
const LEFT_OUTPUT: &str = "orders-with-payments";
const PARTITIONS: u32 = 2;
const MINUTE: i64 = 60_000;
const DIFF: i64 = 10 * MINUTE;
const GRACE: i64 = 5 * MINUTE;

fn topology() -> streams_core::Topology {
    let builder = StreamsBuilder::new();
    let orders = builder.stream(LEFT, Consumed::with(StringSerde, StringSerde));
    let payments = builder.stream(RIGHT, Consumed::with(StringSerde, StringSerde));
    // A left join of the same streams: its unmatched orders wait in the shared outer-join
    // store, which is restored too.
    orders
        .clone()
        .left_join(
            &payments,
            |o: &String, p: Option<&String>| format!("{o}+{}", p.map_or("null", |p| p.as_str())),
            JoinWindows::of_time_difference_and_grace(
                Duration::from_millis(DIFF as u64),
                Duration::from_millis(GRACE as u64),
            )
            .unwrap(),
            StreamJoined::with(StringSerde, StringSerde, StringSerde).with_store_name("lbuf"),
        )
        .to(LEFT_OUTPUT, Produced::with(StringSerde, StringSerde));
    orders
        .join(
            &payments,
            |o: &String, p: &String| format!("{o}+{p}"),
            JoinWindows::of_time_difference_and_grace(
                Duration::from_millis(DIFF as u64),
                Duration::from_millis(GRACE as u64),
            )
            .unwrap(),
            StreamJoined::with(StringSerde, StringSerde, StringSerde).with_store_name("buf"),
        )
        .to(OUTPUT, Produced::with(StringSerde, StringSerde));
    builder.build().unwrap()
}

fn start(broker: &Broker, state_dir: &Path) -> StreamsApp {
    let config = StreamsConfig::new(APP)
        .state_dir(state_dir)
        .num_stream_threads(2)
        .commit_interval(Duration::from_millis(100));
    let mut app =
        StreamsApp::new(topology(), config, EmbeddedCluster::new(broker.clone())).unwrap();
    app.start().unwrap();
    assert!(
        app.wait_for_state(StreamsState::Running, WAIT),
        "{:?}",
        app.errors()
    );
    app
}

/// One record: (is an order, key, value, timestamp).
type In = (bool, String, String, i64);

fn produce(broker: &Broker, records: &[In]) {
    for (left, key, value, ts) in records {
        let p = i32::try_from(partition_for_key(key.as_bytes(), PARTITIONS).unwrap()).unwrap();
        let record = ProduceRecord::new(key.clone().into_bytes(), value.clone().into_bytes())
            .with_timestamp(*ts);
        broker
            .produce(if *left { LEFT } else { RIGHT }, p, &[record])
            .unwrap();
    }
}

/// Every output record as (key, value, timestamp), counted.
fn output(broker: &Broker) -> BTreeMap<(String, String, i64), usize> {
    read(broker, OUTPUT)
}

fn read(broker: &Broker, topic: &str) -> BTreeMap<(String, String, i64), usize> {
    let mut out = BTreeMap::new();
    for p in 0..PARTITIONS as i32 {
        let mut offset = 0;
        loop {
            let data = broker
                .read_partition(topic, p, offset, 4 << 20, IsolationLevel::ReadCommitted)
                .unwrap();
            let records = decode_fetched(topic, &data.records, offset).unwrap();
            let Some(last) = records.last() else { break };
            offset = last.offset + 1;
            for r in records {
                let k = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                *out.entry((k, v, r.timestamp)).or_insert(0) += 1;
            }
        }
    }
    out
}

/// An inner join's results do not depend on the processing order as long as every
/// record is within retention: one per pair within the time difference.
fn expected(records: &[In]) -> BTreeMap<(String, String, i64), usize> {
    let mut out = BTreeMap::new();
    for (l, lk, lv, lt) in records.iter().filter(|r| r.0) {
        for (_, rk, rv, rt) in records.iter().filter(|r| !r.0) {
            debug_assert!(*l);
            if lk == rk && (lt - rt).abs() <= DIFF {
                *out.entry((lk.clone(), format!("{lv}+{rv}"), *lt.max(rt)))
                    .or_insert(0) += 1;
            }
        }
    }
    out
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Orders and payments of 5 customers over 3 minutes (all within the time difference
/// and retention of each other).
fn records(round: u64, n: usize) -> Vec<In> {
    let mut x = 0x9E37_79B9_7F4A_7C15_u64 ^ round;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let left = x.is_multiple_of(2);
            (
                left,
                format!("customer-{}", (x >> 3) % 5),
                format!("{}{round}.{i}", if left { "o" } else { "p" }),
                ((x >> 8) % (3 * MINUTE as u64)) as i64,
            )
        })
        .collect()
}

#[test]
fn join_buffers_are_restored_from_their_changelogs_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = BrokerConfig::new(dir.path().join("broker"));
    c.group_initial_rebalance_delay = Duration::ZERO;
    let broker = Broker::open(c).unwrap();
    for t in [LEFT, RIGHT, OUTPUT, LEFT_OUTPUT] {
        broker.create_topic(NewTopic::new(t, PARTITIONS)).unwrap();
    }
    let state = dir.path().join("state");

    let first = records(1, 120);
    let mut app = start(&broker, &state);
    // An order nobody pays: its window (10 min + 5 min grace) is still open at the end.
    let lonely = (true, "customer-9".to_owned(), "lonely".to_owned(), 0);
    produce(&broker, std::slice::from_ref(&lonely));
    produce(&broker, &first);
    wait_for("the first results", || output(&broker) == expected(&first));
    let lonely_result = ("customer-9".to_owned(), "lonely+null".to_owned(), 0);
    app.close();
    assert!(!read(&broker, LEFT_OUTPUT).contains_key(&lonely_result));

    // The buffers' changelogs, as Kafka creates them.
    for store in ["buf-this-join-store", "buf-other-join-store"] {
        let changelog = broker
            .describe_topic(&format!("{APP}-{store}-changelog"))
            .unwrap();
        let config: BTreeMap<_, _> = changelog
            .configs
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(config["cleanup.policy"], "delete");
        assert_eq!(
            config["retention.ms"],
            (2 * DIFF + GRACE + 86_400_000).to_string()
        );
        assert_eq!(changelog.partitions.len(), PARTITIONS as usize);
    }

    // Lose the local state: both buffers come back from their changelogs.
    std::fs::remove_dir_all(&state).unwrap();
    let mut app = start(&broker, &state);
    let second = records(2, 120);
    produce(&broker, &second);
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    wait_for("the results over both runs", || {
        output(&broker) == expected(&all)
    });
    assert_eq!(app.dropped_records(), 0);
    app.close();
}

/// Co-partitioning, as Kafka's `CopartitionedTopicsEnforcer`: joined topics with
/// different partition counts stop the application at start with an error naming both
/// topics and counts; after a key change, the repartition topic takes the partition count
/// of the other side's topic.
#[test]
fn joined_topics_must_be_copartitioned_and_repartition_topics_follow() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = BrokerConfig::new(dir.path().join("broker"));
    c.group_initial_rebalance_delay = Duration::ZERO;
    let broker = Broker::open(c).unwrap();
    broker.create_topic(NewTopic::new(LEFT, 3)).unwrap();
    broker.create_topic(NewTopic::new(RIGHT, 2)).unwrap();
    broker.create_topic(NewTopic::new(OUTPUT, 2)).unwrap();
    broker.create_topic(NewTopic::new(LEFT_OUTPUT, 2)).unwrap();
    let config = StreamsConfig::new(APP).state_dir(dir.path().join("state"));
    let mut app = StreamsApp::new(
        topology(),
        config.clone(),
        EmbeddedCluster::new(broker.clone()),
    )
    .unwrap();
    let err = app.start().unwrap_err().to_string();
    assert!(
        err.contains("orders: 3") && err.contains("payments: 2"),
        "{err}"
    );

    // The orders re-keyed by their value: read back through a repartition topic with the
    // payments' 2 partitions.
    let builder = StreamsBuilder::new();
    let orders = builder
        .stream(LEFT, Consumed::with(StringSerde, StringSerde))
        .select_key(|_k: &String, v: &String| v.clone());
    let payments = builder.stream(RIGHT, Consumed::with(StringSerde, StringSerde));
    orders
        .join(
            &payments,
            |o: &String, p: &String| format!("{o}+{p}"),
            JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(DIFF as u64))
                .unwrap(),
            StreamJoined::with(StringSerde, StringSerde, StringSerde),
        )
        .to(OUTPUT, Produced::with(StringSerde, StringSerde));
    let mut app = StreamsApp::new(
        builder.build().unwrap(),
        config.state_dir(dir.path().join("state2")),
        EmbeddedCluster::new(broker.clone()),
    )
    .unwrap();
    app.start().unwrap();
    assert!(
        app.wait_for_state(StreamsState::Running, WAIT),
        "{:?}",
        app.errors()
    );
    let repartition = broker
        .describe_topic(&format!("{APP}-KSTREAM-KEY-SELECT-0000000001-repartition"))
        .unwrap();
    assert_eq!(repartition.partitions.len(), 2);
    // An order keyed "x" with value "customer-1" meets the payment of customer-1.
    broker
        .produce(
            LEFT,
            0,
            &[ProduceRecord::new(b"x".to_vec(), b"customer-1".to_vec()).with_timestamp(5)],
        )
        .unwrap();
    produce(&broker, &[(false, "customer-1".into(), "p".into(), 7)]);
    wait_for("the joined record", || {
        output(&broker).contains_key(&("customer-1".to_owned(), "customer-1+p".to_owned(), 7))
    });
    app.close();
}

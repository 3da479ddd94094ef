#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A stream-stream join on the real runtime and the embedded broker, with two stream
//! threads: the join buffers' changelogs are created as Kafka creates them
//! (`cleanup.policy=delete`, `retention.ms` = size + grace + 1 day); after a clean close
//! and the loss of the local state, the restarted application restores both buffers from
//! their changelogs, so records of the second run join records of the first.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use broker_embedded::Broker;
use common::{produce_keyed, read_topic, text, timed, topic_configs, wait_for, Env, XorShift};
use streams_core::{EmbeddedCluster, StreamsApp, StreamsConfig, StringSerde};
use streams_dsl::{Consumed, JoinWindows, Produced, StreamJoined, StreamsBuilder};

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
    let config = common::config(APP, state_dir).num_stream_threads(2);
    common::start_running(topology(), config, broker)
}

/// One record: (is an order, key, value, timestamp).
type In = (bool, String, String, i64);

fn produce(broker: &Broker, records: &[In]) {
    for (left, key, value, ts) in records {
        let topic = if *left { LEFT } else { RIGHT };
        produce_keyed(broker, topic, PARTITIONS, &[timed(key, value, *ts)]);
    }
}

/// Every output record as (key, value, timestamp), counted.
fn output(broker: &Broker) -> BTreeMap<(String, String, i64), usize> {
    read(broker, OUTPUT)
}

fn read(broker: &Broker, topic: &str) -> BTreeMap<(String, String, i64), usize> {
    let mut out = BTreeMap::new();
    for r in read_topic(broker, topic) {
        let (k, v) = (text(&r.key).unwrap(), text(&r.value).unwrap());
        *out.entry((k, v, r.timestamp)).or_insert(0) += 1;
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

/// Orders and payments of 5 customers over 3 minutes (all within the time difference
/// and retention of each other).
fn records(round: u64, n: usize) -> Vec<In> {
    let mut rng = XorShift::new(round);
    (0..n)
        .map(|i| {
            let x = rng.next();
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
    let env = Env::new(&[
        (LEFT, PARTITIONS),
        (RIGHT, PARTITIONS),
        (OUTPUT, PARTITIONS),
        (LEFT_OUTPUT, PARTITIONS),
    ]);
    let broker = &env.broker;
    let state = env.state_dir();

    let first = records(1, 120);
    let mut app = start(broker, &state);
    // An order nobody pays: its window (10 min + 5 min grace) is still open at the end.
    let lonely = (true, "customer-9".to_owned(), "lonely".to_owned(), 0);
    produce(broker, std::slice::from_ref(&lonely));
    produce(broker, &first);
    wait_for("the first results", || output(broker) == expected(&first));
    let lonely_result = ("customer-9".to_owned(), "lonely+null".to_owned(), 0);
    app.close();
    assert!(!read(broker, LEFT_OUTPUT).contains_key(&lonely_result));

    // The buffers' changelogs, as Kafka creates them.
    for store in ["buf-this-join-store", "buf-other-join-store"] {
        let changelog = format!("{APP}-{store}-changelog");
        let config = topic_configs(broker, &changelog);
        assert_eq!(config["cleanup.policy"], "delete");
        assert_eq!(
            config["retention.ms"],
            (2 * DIFF + GRACE + 86_400_000).to_string()
        );
        assert_eq!(
            broker.describe_topic(&changelog).unwrap().partitions.len(),
            PARTITIONS as usize
        );
    }

    // Lose the local state: both buffers come back from their changelogs.
    std::fs::remove_dir_all(&state).unwrap();
    let mut app = start(broker, &state);
    let second = records(2, 120);
    produce(broker, &second);
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    wait_for("the results over both runs", || {
        output(broker) == expected(&all)
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
    let env = Env::new(&[(LEFT, 3), (RIGHT, 2), (OUTPUT, 2), (LEFT_OUTPUT, 2)]);
    let broker = &env.broker;
    let config = StreamsConfig::new(APP).state_dir(env.state_dir());
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
    let mut app = common::start_running(
        builder.build().unwrap(),
        config.state_dir(env.path().join("state2")),
        broker,
    );
    let repartition = broker
        .describe_topic(&format!("{APP}-KSTREAM-KEY-SELECT-0000000001-repartition"))
        .unwrap();
    assert_eq!(repartition.partitions.len(), 2);
    // An order keyed "x" with value "customer-1" meets the payment of customer-1.
    broker
        .produce(LEFT, 0, &[timed("x", "customer-1", 5)])
        .unwrap();
    produce(broker, &[(false, "customer-1".into(), "p".into(), 7)]);
    wait_for("the joined record", || {
        output(broker).contains_key(&("customer-1".to_owned(), "customer-1+p".to_owned(), 7))
    });
    app.close();
}

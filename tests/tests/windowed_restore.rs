#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A windowed count (`windowed_by(TimeWindows)`) on the real runtime and the embedded
//! broker: its changelog topic is created as Kafka creates windowed changelogs
//! (`cleanup.policy=compact,delete`, `retention.ms` = retention + 1 day); after a clean
//! close and the loss of the local state, the restarted application restores its windows
//! from the changelog and keeps counting in them; a record for a closed window is dropped
//! and counted in `StreamsApp::dropped_records`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use broker_embedded::{
    decode_fetched, partition_for_key, Broker, BrokerConfig, IsolationLevel, NewTopic,
    ProduceRecord,
};
use streams_core::{
    EmbeddedCluster, Serde, StreamsApp, StreamsConfig, StreamsState, StringSerde, TimeWindowedSerde,
};
use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder, TimeWindows};

const WAIT: Duration = Duration::from_secs(90);
const APP: &str = "windowed-app";
const INPUT: &str = "clicks";
const OUTPUT: &str = "clicks-per-minute";
const STORE: &str = "per-minute";
const PARTITIONS: u32 = 2;
const MINUTE: i64 = 60_000;
/// Grace: ten minutes (retention = size + grace = 11 minutes).
const GRACE: i64 = 10 * MINUTE;

fn topology() -> streams_core::Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream(INPUT, Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::default())
        .windowed_by(
            TimeWindows::of_size_and_grace(
                Duration::from_millis(MINUTE as u64),
                Duration::from_millis(GRACE as u64),
            )
            .unwrap(),
        )
        .count(Materialized::as_store(STORE))
        .to_stream()
        .map_values(|n: Option<i64>| n.unwrap_or(0))
        .to(OUTPUT, Produced::default());
    builder.build().unwrap()
}

fn start(broker: &Broker, state_dir: &Path) -> StreamsApp {
    let config = StreamsConfig::new(APP)
        .state_dir(state_dir)
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

/// Produces `(key, timestamp)` clicks to the partition Java's partitioner picks.
fn produce(broker: &Broker, clicks: &[(String, i64)]) {
    for (key, ts) in clicks {
        let p = i32::try_from(partition_for_key(key.as_bytes(), PARTITIONS).unwrap()).unwrap();
        let record =
            ProduceRecord::new(key.clone().into_bytes(), b"click".to_vec()).with_timestamp(*ts);
        broker.produce(INPUT, p, &[record]).unwrap();
    }
}

/// The latest count per (key, window start) on the output topic.
fn latest(broker: &Broker) -> BTreeMap<(String, i64), i64> {
    let serde = TimeWindowedSerde::new(StringSerde, Duration::from_millis(MINUTE as u64));
    let mut out = BTreeMap::new();
    for p in 0..PARTITIONS as i32 {
        let mut offset = 0;
        loop {
            let data = broker
                .read_partition(OUTPUT, p, offset, 4 << 20, IsolationLevel::ReadCommitted)
                .unwrap();
            let records = decode_fetched(OUTPUT, &data.records, offset).unwrap();
            let Some(last) = records.last() else { break };
            offset = last.offset + 1;
            for r in records {
                let key = serde.deserialize(OUTPUT, r.key.as_deref()).unwrap();
                let value: [u8; 8] = r.value.as_deref().unwrap().try_into().unwrap();
                assert_eq!(key.window.end - key.window.start, MINUTE);
                out.insert((key.key, key.window.start), i64::from_be_bytes(value));
            }
        }
    }
    out
}

fn expected(clicks: &[(String, i64)]) -> BTreeMap<(String, i64), i64> {
    let mut m = BTreeMap::new();
    for (k, ts) in clicks {
        *m.entry((k.clone(), ts / MINUTE * MINUTE)).or_insert(0) += 1;
    }
    m
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Clicks of 6 users over the first 4 minutes (all within grace of each other).
fn clicks(round: u64, n: usize) -> Vec<(String, i64)> {
    let mut x = 0x9E37_79B9_7F4A_7C15_u64 ^ round;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (
                format!("user-{}", x % 6),
                ((x >> 8) % (4 * MINUTE as u64)) as i64,
            )
        })
        .collect()
}

#[test]
fn windowed_counts_are_restored_from_the_changelog_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = BrokerConfig::new(dir.path().join("broker"));
    c.group_initial_rebalance_delay = Duration::ZERO;
    let broker = Broker::open(c).unwrap();
    broker
        .create_topic(NewTopic::new(INPUT, PARTITIONS))
        .unwrap();
    broker
        .create_topic(NewTopic::new(OUTPUT, PARTITIONS))
        .unwrap();
    let state = dir.path().join("state");

    let first = clicks(1, 300);
    let mut app = start(&broker, &state);
    produce(&broker, &first);
    wait_for("the first counts", || latest(&broker) == expected(&first));
    assert_eq!(app.dropped_records(), 0);
    app.close();

    // The changelog, as Kafka creates a windowed store's.
    let changelog = broker
        .describe_topic(&format!("{APP}-{STORE}-changelog"))
        .unwrap();
    let config: BTreeMap<_, _> = changelog
        .configs
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(config["cleanup.policy"], "compact,delete");
    assert_eq!(
        config["retention.ms"],
        (MINUTE + GRACE + 86_400_000).to_string()
    );
    assert_eq!(changelog.partitions.len(), PARTITIONS as usize);

    // Lose the local state: the windows come back from the changelog.
    std::fs::remove_dir_all(&state).unwrap();
    let mut app = start(&broker, &state);
    let second = clicks(2, 300);
    produce(&broker, &second);
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    wait_for("the counts over both runs", || {
        latest(&broker) == expected(&all)
    });

    // A record far ahead, then one for a window closed long ago (same key, same task).
    let late = vec![
        ("user-0".to_owned(), 10 * 60 * MINUTE),
        ("user-0".to_owned(), 30_000),
    ];
    produce(&broker, &late);
    wait_for("the late record to be dropped", || {
        app.dropped_records() == 1
    });
    let mut with_ahead = expected(&all);
    with_ahead.insert(("user-0".to_owned(), 10 * 60 * MINUTE), 1);
    wait_for("the record ahead", || latest(&broker) == with_ahead);
    assert_eq!(app.dropped_records(), 1);
    app.close();
}

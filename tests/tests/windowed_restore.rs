#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A windowed count (`windowed_by(TimeWindows)`) on the real runtime and the embedded
//! broker, with 2 stream threads: its changelog topic is created as Kafka creates windowed
//! changelogs (`cleanup.policy=compact,delete`, `retention.ms` = retention + 1 day); after a clean
//! close and the loss of the local state, the restarted application restores its windows
//! from the changelog and keeps counting in them; a record for a closed window is dropped
//! and counted in `StreamsApp::dropped_records`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use broker_embedded::Broker;
use common::{read_topic, topic_configs, wait_for, Env, XorShift};
use streams_core::{Serde, StreamsApp, StringSerde, TimeWindowedSerde};
use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder, TimeWindows};

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
    common::start_running(
        topology(),
        common::config(APP, state_dir).num_stream_threads(2),
        broker,
    )
}

/// Produces `(key, timestamp)` clicks to the partition Java's partitioner picks.
fn produce(broker: &Broker, clicks: &[(String, i64)]) {
    common::produce_events(broker, INPUT, PARTITIONS, "click", clicks);
}

/// The latest count per (key, window start) on the output topic.
fn latest(broker: &Broker) -> BTreeMap<(String, i64), i64> {
    let serde = TimeWindowedSerde::new(StringSerde, Duration::from_millis(MINUTE as u64));
    common::latest_by_key(&read_topic(broker, OUTPUT), |r| {
        let key = serde.deserialize(OUTPUT, r.key.as_deref()).unwrap();
        assert_eq!(key.window.end - key.window.start, MINUTE);
        let count = common::be_i64(r.value.as_deref().unwrap());
        ((key.key, key.window.start), count)
    })
}

fn expected(clicks: &[(String, i64)]) -> BTreeMap<(String, i64), i64> {
    common::counts_per_window(clicks, MINUTE)
}

/// Clicks of 6 users over the first 4 minutes (all within grace of each other).
fn clicks(round: u64, n: usize) -> Vec<(String, i64)> {
    let mut rng = XorShift::new(round);
    (0..n)
        .map(|_| {
            let x = rng.next();
            (
                format!("user-{}", x % 6),
                ((x >> 8) % (4 * MINUTE as u64)) as i64,
            )
        })
        .collect()
}

#[test]
fn windowed_counts_are_restored_from_the_changelog_after_a_restart() {
    let env = Env::new(&[(INPUT, PARTITIONS), (OUTPUT, PARTITIONS)]);
    let broker = &env.broker;
    let state = env.state_dir();

    let first = clicks(1, 300);
    let mut app = start(broker, &state);
    produce(broker, &first);
    wait_for("the first counts", || latest(broker) == expected(&first));
    assert_eq!(app.dropped_records(), 0);
    app.close();

    // The changelog, as Kafka creates a windowed store's.
    let changelog = format!("{APP}-{STORE}-changelog");
    let config = topic_configs(broker, &changelog);
    assert_eq!(config["cleanup.policy"], "compact,delete");
    assert_eq!(
        config["retention.ms"],
        (MINUTE + GRACE + 86_400_000).to_string()
    );
    assert_eq!(
        broker.describe_topic(&changelog).unwrap().partitions.len(),
        PARTITIONS as usize
    );

    // Lose the local state: the windows come back from the changelog.
    std::fs::remove_dir_all(&state).unwrap();
    let mut app = start(broker, &state);
    let second = clicks(2, 300);
    produce(broker, &second);
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    wait_for("the counts over both runs", || {
        latest(broker) == expected(&all)
    });

    // A record far ahead, then one for a window closed long ago (same key, same task).
    let late = vec![
        ("user-0".to_owned(), 10 * 60 * MINUTE),
        ("user-0".to_owned(), 30_000),
    ];
    produce(broker, &late);
    wait_for("the late record to be dropped", || {
        app.dropped_records() == 1
    });
    let mut with_ahead = expected(&all);
    with_ahead.insert(("user-0".to_owned(), 10 * 60 * MINUTE), 1);
    wait_for("the record ahead", || latest(broker) == with_ahead);
    assert_eq!(app.dropped_records(), 1);
    app.close();
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Sliding-window counts (`windowed_by(SlidingWindows)`) on the real runtime: the embedded
//! broker, two stream threads, two partitions, and a restart in the middle that loses the
//! local state. One count emits every update, the other only final results
//! (`EmitStrategy::on_window_close`). After the restart both stores come back from their
//! changelogs; the updates' latest value per key and window is the sliding-window
//! definition's count over both runs, and every closed window is emitted exactly once with
//! that count — the emit-on-close bookkeeping (Kafka's `lastEmitWindowCloseTime`) survives
//! the restart in the committed offsets' metadata, so the windows emitted before it are
//! not emitted again (their store keeps them for an hour, so they would be).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use broker_embedded::Broker;
use common::{partition_of, read_topic, topic_configs, wait_for, Env, XorShift};
use streams_core::{Serde, StreamsApp, StringSerde, TimeWindowedSerde};
use streams_dsl::{
    Consumed, EmitStrategy, Grouped, Materialized, Produced, SlidingWindows, StreamsBuilder,
};

const APP: &str = "sliding-app";
const INPUT: &str = "clicks";
const UPDATES: &str = "sliding-updates";
const FINALS: &str = "sliding-finals";
const PARTITIONS: u32 = 2;
const MINUTE: i64 = 60_000;
/// Time difference: one minute; grace: five minutes (more than the spread of a phase's
/// timestamps, so no record is late).
const TD: i64 = MINUTE;
const GRACE: i64 = 5 * MINUTE;

fn topology() -> streams_core::Topology {
    let builder = StreamsBuilder::new();
    let clicks = builder.stream(INPUT, Consumed::with(StringSerde, StringSerde));
    let windows = SlidingWindows::of_time_difference_and_grace(
        Duration::from_millis(TD as u64),
        Duration::from_millis(GRACE as u64),
    )
    .unwrap();
    clicks
        .clone()
        .group_by_key(Grouped::default())
        .windowed_by(windows)
        .count(Materialized::as_store("updates-store"))
        .to_stream()
        .map_values(|n: Option<i64>| n.unwrap_or(0))
        .to(UPDATES, Produced::default());
    clicks
        .group_by_key(Grouped::default())
        .windowed_by(windows)
        .emit_strategy(EmitStrategy::on_window_close())
        .count(Materialized::as_store("finals-store").with_retention(Duration::from_secs(3600)))
        .to_stream()
        .map_values(|n: Option<i64>| n.unwrap_or(0))
        .to(FINALS, Produced::default());
    builder.build().unwrap()
}

fn start(broker: &Broker, state_dir: &Path) -> StreamsApp {
    let config = common::config(APP, state_dir)
        .num_stream_threads(2)
        // Look for closed windows after every record (the default waits a second of wall
        // clock between looks, which only delays the emits).
        .emit_interval_windowed_aggregation(Duration::ZERO);
    common::start_running(topology(), config, broker)
}

/// Produces `(key, timestamp)` clicks, each to the partition Java's partitioner picks.
fn produce(broker: &Broker, clicks: &[(String, i64)]) {
    common::produce_events(broker, INPUT, PARTITIONS, "click", clicks);
}

/// Every (key, window start, count) on `topic`, in partition and offset order.
fn read(broker: &Broker, topic: &str) -> Vec<(String, i64, i64)> {
    let serde = TimeWindowedSerde::new(StringSerde, Duration::from_millis(TD as u64));
    read_topic(broker, topic)
        .iter()
        .map(|r| {
            let key = serde.deserialize(topic, r.key.as_deref()).unwrap();
            assert_eq!(key.window.end - key.window.start, TD);
            let count = common::be_i64(r.value.as_deref().unwrap());
            (key.key, key.window.start, count)
        })
        .collect()
}

/// The latest count per (key, window start).
fn latest(records: &[(String, i64, i64)]) -> BTreeMap<(String, i64), i64> {
    records
        .iter()
        .map(|(k, s, v)| ((k.clone(), *s), *v))
        .collect()
}

/// Kafka's sliding windows of each key, by definition (no record is late): the left
/// window `[ts - d, ts]` of every record and the right window `[ts + 1, ts + 1 + d]` of
/// every record with a later one within `d`; each counts the records in it.
fn definition(clicks: &[(String, i64)]) -> BTreeMap<(String, i64), i64> {
    let mut starts = BTreeSet::new();
    for (k, ts) in clicks {
        starts.insert((k.clone(), (ts - TD).max(0)));
        if clicks
            .iter()
            .any(|(k2, t2)| k2 == k && *t2 > *ts && *t2 <= ts + 1 + TD)
        {
            starts.insert((k.clone(), ts + 1));
        }
    }
    starts
        .into_iter()
        .map(|(k, s)| {
            let n = clicks
                .iter()
                .filter(|(k2, t)| *k2 == k && *t >= s && *t <= s + TD)
                .count();
            ((k, s), i64::try_from(n).unwrap())
        })
        .collect()
}

const USERS: u64 = 6;

/// Clicks of 6 users in `[from, from + 4 minutes)`, in random order, then one click of
/// every user at `from + 20 minutes`, which moves every partition's stream time far enough
/// (close time = 20 − 5 grace = 15 minutes past `from`) to close all the earlier windows.
fn phase(round: u64, n: usize, from: i64) -> Vec<(String, i64)> {
    let mut rng = XorShift::new(round);
    let mut out: Vec<(String, i64)> = (0..n)
        .map(|_| {
            let x = rng.next();
            (
                format!("user-{}", x % USERS),
                from + ((x >> 8) % (4 * MINUTE as u64)) as i64,
            )
        })
        .collect();
    out.extend((0..USERS).map(|u| (format!("user-{u}"), from + 20 * MINUTE)));
    out
}

/// The windows whose end is before the close time (stream time − grace) of the partition
/// of their key: what emit-on-close has emitted once every record is processed.
fn closed(
    windows: &BTreeMap<(String, i64), i64>,
    clicks: &[(String, i64)],
) -> BTreeMap<(String, i64), i64> {
    let partition = |k: &str| partition_of(k.as_bytes(), PARTITIONS);
    let mut stream_time = BTreeMap::new();
    for (k, ts) in clicks {
        let t = stream_time.entry(partition(k)).or_insert(*ts);
        *t = (*t).max(*ts);
    }
    windows
        .iter()
        .filter(|((k, s), _)| s + TD < stream_time[&partition(k)] - GRACE)
        .map(|(w, n)| (w.clone(), *n))
        .collect()
}

/// Each window at most once on the final-results topic.
fn once(records: &[(String, i64, i64)]) -> BTreeMap<(String, i64), i64> {
    let mut m = BTreeMap::new();
    for (k, s, v) in records {
        assert!(
            m.insert((k.clone(), *s), *v).is_none(),
            "window {k}@{s} emitted twice"
        );
    }
    m
}

#[test]
fn sliding_counts_and_final_results_survive_a_restart() {
    let env = Env::new(&[
        (INPUT, PARTITIONS),
        (UPDATES, PARTITIONS),
        (FINALS, PARTITIONS),
    ]);
    let broker = &env.broker;
    let state = env.state_dir();

    let first = phase(1, 200, 0);
    let mut app = start(broker, &state);
    produce(broker, &first);
    let windows = definition(&first);
    wait_for("the first updates", || {
        latest(&read(broker, UPDATES)) == windows
    });
    wait_for("the first final results", || {
        once(&read(broker, FINALS)) == closed(&windows, &first)
    });
    assert_eq!(app.dropped_records(), 0);
    app.close();

    // The committed offsets carry Kafka Streams' metadata (`TopicPartitionMetadata`):
    // base64 of magic 2, the partition time (the partition's largest timestamp, 20 min) and
    // the processor metadata, here the on-close count's last emitted close time under its
    // store name (20 min − 5 min grace).
    for p in 0..PARTITIONS as i32 {
        let tp = broker_embedded::TopicPartition::new(INPUT, p);
        let committed = broker.committed_offset(APP, &tp).unwrap();
        let raw = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            &committed.metadata,
        )
        .unwrap();
        let mut expected = vec![2u8];
        expected.extend_from_slice(&(20 * MINUTE).to_be_bytes());
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&12i32.to_be_bytes());
        expected.extend_from_slice(b"finals-store");
        expected.extend_from_slice(&(15 * MINUTE).to_be_bytes());
        assert_eq!(raw, expected, "partition {p}");
    }

    // The sliding store's changelog, as Kafka creates it: retention 2 × 1 min + 5 min grace
    // plus a day.
    let config = topic_configs(broker, &format!("{APP}-updates-store-changelog"));
    assert_eq!(config["cleanup.policy"], "compact,delete");
    assert_eq!(
        config["retention.ms"],
        (2 * TD + GRACE + 86_400_000).to_string()
    );

    // Lose the local state: both stores come back from their changelogs.
    std::fs::remove_dir_all(&state).unwrap();
    let mut app = start(broker, &state);
    let second = phase(2, 200, 20 * MINUTE);
    produce(broker, &second);
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    let windows = definition(&all);
    wait_for("the updates over both runs", || {
        latest(&read(broker, UPDATES)) == windows
    });
    let expected = closed(&windows, &all);
    assert!(expected.len() > closed(&definition(&first), &first).len());
    wait_for("the final results over both runs", || {
        once(&read(broker, FINALS)) == expected
    });
    assert_eq!(app.dropped_records(), 0);
    app.close();
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Standby replicas (`num.standby.replicas = 1`) with two instances of a keyed count
//! (`group_by_key().count()`, one sub-topology of four stateful tasks; two stream threads
//! per instance) on one broker: every stateful task has its standby
//! on the other instance, the standbys follow the changelogs to their ends, and when one
//! instance closes the other takes its tasks over restoring only what its standbys had not
//! applied yet, with exact counts. The closed instance's standby stores hold exactly the
//! changelog's content up to their checkpoint, and a restart restores only what came after
//! that checkpoint.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use broker_embedded::{Broker, ProduceRecord};
use common::{partition_of, read_partition, wait_for, Env, XorShift};
use examples::word_count::{read_counts, OUTPUT_TOPIC};
use state_store::{
    Direction, KeyValueStore, OffsetCheckpoint, RocksDbConfig, RocksDbKeyValueStore,
    RocksDbResources, StateStore,
};
use streams_core::{StreamsApp, StreamsState, StringSerde, TaskId, TopicPartition};
use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};

const PARTITIONS: u32 = 4;
const APPLICATION_ID: &str = "standby-count";
const INPUT_TOPIC: &str = "standby-input";
const STORE: &str = "counts";

/// Keys `w<n>`: the records to count.
fn keys(seed: u64, n: usize) -> Vec<String> {
    let mut rng = XorShift::new(seed.wrapping_mul(0x0100_0000_01B3) | 1);
    (0..n).map(|_| format!("w{}", rng.next() % 300)).collect()
}

fn produce(broker: &Broker, keys: &[String]) {
    let mut by_partition: BTreeMap<i32, Vec<ProduceRecord>> = BTreeMap::new();
    for k in keys {
        by_partition
            .entry(partition_of(k.as_bytes(), PARTITIONS))
            .or_default()
            .push(ProduceRecord::new(k.clone(), "x"));
    }
    for (p, records) in by_partition {
        for chunk in records.chunks(200) {
            broker.produce(INPUT_TOPIC, p, chunk).unwrap();
        }
    }
}

fn truth(parts: &[&[String]]) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for k in parts.iter().copied().flatten() {
        *counts.entry(k.clone()).or_insert(0) += 1;
    }
    counts
}

fn topology() -> streams_core::Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream(INPUT_TOPIC, Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .count(Materialized::as_store(STORE))
        .to_stream()
        .to(
            OUTPUT_TOPIC,
            Produced::with(StringSerde, streams_core::Nullable(streams_core::I64Serde)),
        );
    builder.build().unwrap()
}

fn start_app(broker: &Broker, state_dir: &Path) -> StreamsApp {
    let config = common::config(APPLICATION_ID, state_dir)
        .num_stream_threads(2)
        .num_standby_replicas(1)
        // Every count update reaches the changelog: a large changelog against a small tail.
        .cache_max_bytes(0);
    common::start_app(topology(), config, broker)
}

fn changelog() -> String {
    format!("{APPLICATION_ID}-{STORE}-changelog")
}

/// Every task; each has the count store.
fn stateful() -> BTreeSet<TaskId> {
    (0..PARTITIONS as i32)
        .map(|p| TaskId {
            subtopology: 0,
            partition: p,
        })
        .collect()
}

fn all_tasks() -> BTreeSet<TaskId> {
    stateful()
}

/// The changelog partition of a stateful task.
fn changelog_of(task: TaskId) -> TopicPartition {
    TopicPartition::new(changelog(), task.partition)
}

fn ends(env: &Env) -> BTreeMap<i32, i64> {
    (0..PARTITIONS as i32)
        .map(|p| (p, env.end(&changelog(), p)))
        .collect()
}

/// True once every standby of `app` applied its changelog partition to its end.
fn standbys_caught_up(env: &Env, app: &StreamsApp) -> bool {
    let offsets = app.standby_changelog_offsets();
    app.standby_tasks().iter().all(|t| {
        let end = env.end(&changelog(), t.partition);
        end == 0 || offsets.get(&changelog_of(*t)) == Some(&(end - 1))
    })
}

/// The checkpointed changelog offset of `task` in `state_dir`.
fn checkpointed(state_dir: &Path, task: TaskId) -> Option<i64> {
    let path = state_dir
        .join(APPLICATION_ID)
        .join(task.to_string())
        .join(".checkpoint");
    OffsetCheckpoint::new(path)
        .read()
        .unwrap()
        .get(&changelog_of(task))
        .copied()
}

/// The count store of `task` in `state_dir` (closed), as key -> value without the 8-byte
/// timestamp a timestamped store keeps in front.
fn store_contents(state_dir: &Path, task: TaskId) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let path = state_dir
        .join(APPLICATION_ID)
        .join(task.to_string())
        .join("rocksdb")
        .join(STORE);
    let resources = RocksDbResources::new(RocksDbConfig::default()).unwrap();
    let mut store = RocksDbKeyValueStore::open(STORE, path, &resources).unwrap();
    let contents = store
        .all(Direction::Forward)
        .unwrap()
        .map(Result::unwrap)
        .map(|(k, v)| (k, v[8..].to_vec()))
        .collect();
    store.close().unwrap();
    contents
}

/// The changelog partition of `task` up to offset `last` (inclusive), latest value per key.
fn changelog_contents(broker: &Broker, task: TaskId, last: i64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    for r in read_partition(broker, &changelog(), task.partition, 0) {
        if r.offset > last {
            break;
        }
        let key = r.key.unwrap().to_vec();
        match r.value {
            Some(v) => out.insert(key, v.to_vec()),
            None => out.remove(&key),
        };
    }
    out
}

#[test]
fn standbys_follow_the_changelogs_and_a_takeover_restores_only_the_tail() {
    let env = Env::new(&[(INPUT_TOPIC, PARTITIONS), (OUTPUT_TOPIC, PARTITIONS)]);
    let broker = &env.broker;
    let (state_a, state_b) = (env.path().join("state-a"), env.path().join("state-b"));
    let first = keys(1, 6_000);
    let second = keys(2, 6_000);
    let burst = keys(3, 60);
    let third = keys(4, 2_000);
    let fourth = keys(5, 2_000);

    // Alone, `a` has no other instance for standbys.
    let mut a = start_app(broker, &state_a);
    common::wait_running(&a, common::WAIT);
    produce(broker, &first);
    assert!(a.wait_until_caught_up(common::WAIT).unwrap());
    assert!(a.standby_tasks().is_empty());

    // `b` joins: each instance keeps a standby of every stateful task the other runs.
    let mut b = start_app(broker, &state_b);
    wait_for(
        "the tasks to split with standbys on the other instance",
        || {
            let (ta, tb) = (a.active_tasks(), b.active_tasks());
            a.state() == StreamsState::Running
                && b.state() == StreamsState::Running
                && ta.is_disjoint(&tb)
                && ta.union(&tb).copied().collect::<BTreeSet<_>>() == all_tasks()
                && a.standby_tasks() == tb.intersection(&stateful()).copied().collect()
                && b.standby_tasks() == ta.intersection(&stateful()).copied().collect()
        },
    );
    let (a_standbys, b_standbys) = (a.standby_tasks(), b.standby_tasks());
    eprintln!("standbys: a {a_standbys:?}, b {b_standbys:?}");
    assert!(!a_standbys.is_empty() && !b_standbys.is_empty());

    produce(broker, &second);
    assert!(a.wait_until_caught_up(common::WAIT).unwrap());
    assert_eq!(read_counts(broker).unwrap(), truth(&[&first, &second]));
    wait_for("the standbys to reach the changelog ends", || {
        standbys_caught_up(&env, &a) && standbys_caught_up(&env, &b)
    });
    assert!(b.standby_updated_records() > 0 && a.standby_updated_records() > 0);
    let caught_up = ends(&env);
    let total: i64 = caught_up.values().sum();

    // A few records the standbys may not have applied, then `a` closes: `b` takes over.
    let b_restored_before = b.restored_records();
    produce(broker, &burst);
    a.close();
    assert!(a.errors().is_empty(), "{:?}", a.errors());
    wait_for("b to take over every task", || {
        b.state() == StreamsState::Running && b.active_tasks() == all_tasks()
    });
    assert!(
        b.standby_tasks().is_empty(),
        "no other instance for standbys"
    );
    assert!(b.wait_until_caught_up(common::WAIT).unwrap());
    let after_burst = ends(&env);
    let tail: i64 = after_burst.iter().map(|(p, end)| end - caught_up[p]).sum();
    let restored = b.restored_records() - b_restored_before;
    eprintln!("takeover restored {restored} records; tail {tail}; changelogs hold {total}");
    assert!(
        restored <= u64::try_from(tail).unwrap(),
        "the takeover restores at most what was written after the standbys caught up"
    );
    assert!(restored * 10 < u64::try_from(total).unwrap());

    produce(broker, &third);
    assert!(b.wait_until_caught_up(common::WAIT).unwrap());
    assert_eq!(
        read_counts(broker).unwrap(),
        truth(&[&first, &second, &burst, &third])
    );

    // `a`'s standbys closed cleanly with `a`: their checkpoints and stores are on disk and
    // hold exactly the changelog's content up to the checkpointed offset.
    for task in &a_standbys {
        let checkpoint = checkpointed(&state_a, *task).expect("a standby checkpoint");
        assert!(
            checkpoint >= caught_up[&task.partition] - 1,
            "task {task}: standby checkpoint {checkpoint} below the caught-up end"
        );
        let stored = store_contents(&state_a, *task);
        assert!(!stored.is_empty());
        assert_eq!(
            stored,
            changelog_contents(broker, *task, checkpoint),
            "task {task}"
        );
    }

    // `b` closes; `a` restarts alone on its state: every stateful task restores from its
    // checkpoint (a's former standbys from the standby checkpoint) only.
    b.close();
    assert!(b.errors().is_empty(), "{:?}", b.errors());
    let checkpoints: BTreeMap<TaskId, i64> = stateful()
        .into_iter()
        .map(|t| (t, checkpointed(&state_a, t).unwrap_or(-1)))
        .collect();
    let ends_now = ends(&env);
    let behind: i64 = checkpoints
        .iter()
        .map(|(t, c)| ends_now[&t.partition] - 1 - c)
        .sum();
    let mut a = start_app(broker, &state_a);
    wait_for("a to run every task again", || {
        a.state() == StreamsState::Running && a.active_tasks() == all_tasks()
    });
    let total_now: i64 = ends_now.values().sum();
    eprintln!(
        "restart restored {} records; {behind} behind the checkpoints; changelogs hold {total_now}",
        a.restored_records()
    );
    assert!(a.restored_records() <= u64::try_from(behind).unwrap());
    assert!(a.restored_records() < u64::try_from(total_now).unwrap() / 2);
    produce(broker, &fourth);
    assert!(a.wait_until_caught_up(common::WAIT).unwrap());
    assert_eq!(
        read_counts(broker).unwrap(),
        truth(&[&first, &second, &burst, &third, &fourth])
    );
    a.close();
    assert!(a.errors().is_empty(), "{:?}", a.errors());
}

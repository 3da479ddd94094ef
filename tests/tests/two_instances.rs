#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Two instances of the word-count application (same `application.id`, each with its own
//! `EmbeddedCluster` over one `Broker` and its own state directory) share the tasks through
//! the broker's group coordinator: they own disjoint tasks that together cover the topology,
//! count every record exactly once, and when one closes the other takes over its tasks and
//! keeps counting correctly.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use broker_embedded::{Broker, ProduceRecord};
use common::{join_lines, Env, Patience, XorShift, WAIT};
use examples::word_count::{
    self, direct_count, read_counts, APPLICATION_ID, INPUT_TOPIC, OUTPUT_TOPIC,
};
use streams_core::{StreamsApp, StreamsState, TaskId};

const PARTITIONS: u32 = 4;

fn lines(seed: u64, n: usize) -> Vec<String> {
    const VOCAB: &[&str] = &[
        "the", "quick", "brown", "fox", "kafka", "streams", "tópico", "ÑANDÚ", "straße", "log",
        "broker", "offset", "commit", "über", "a", "b", "42",
    ];
    let mut rng = XorShift::new(seed.wrapping_mul(0x0100_0000_01B3));
    let mut next = move || rng.next();
    (0..n)
        .map(|_| {
            let k = next() % 8;
            (0..k)
                .map(|_| {
                    if next() % 4 == 0 {
                        format!("w{}", next() % 200)
                    } else {
                        VOCAB[(next() % VOCAB.len() as u64) as usize].to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn produce(broker: &Broker, lines: &[String]) {
    for (i, chunk) in lines.chunks(200).enumerate() {
        let records: Vec<ProduceRecord> = chunk
            .iter()
            .map(|l| ProduceRecord::value_only(bytes::Bytes::copy_from_slice(l.as_bytes())))
            .collect();
        let p = i32::try_from(i as u32 % PARTITIONS).unwrap();
        broker.produce(INPUT_TOPIC, p, &records).unwrap();
    }
}

fn start_app(broker: &Broker, state_dir: &Path) -> StreamsApp {
    let config = common::config(APPLICATION_ID, state_dir);
    common::start_app(word_count::topology().unwrap(), config, broker)
}

/// Waits until `check` holds, or fails with `what` after [`WAIT`].
fn wait_for(what: &str, check: impl FnMut() -> bool) {
    Patience::new(WAIT, Duration::from_millis(20)).wait_for(what, check);
}

#[test]
fn two_instances_share_the_tasks_and_one_takes_over_when_the_other_closes() {
    let seed = std::env::var("TWO_INSTANCES_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_secs())
        });
    eprintln!("two_instances seed: {seed} (set TWO_INSTANCES_SEED to repeat)");
    let env = Env::new(&[(INPUT_TOPIC, PARTITIONS), (OUTPUT_TOPIC, PARTITIONS)]);
    let broker = &env.broker;

    let first = lines(seed, 3_000);
    let second = lines(seed.wrapping_add(1), 3_000);
    let third = lines(seed.wrapping_add(2), 2_000);

    let mut a = start_app(broker, &env.path().join("state-a"));
    assert!(
        a.wait_for_state(StreamsState::Running, WAIT),
        "{:?}",
        a.errors()
    );
    produce(broker, &first);
    let mut b = start_app(broker, &env.path().join("state-b"));

    // Word count has two sub-topologies (split by the repartition topic): 2 x 4 tasks.
    let all: BTreeSet<TaskId> = (0..2u32)
        .flat_map(|s| {
            (0..PARTITIONS as i32).map(move |p| TaskId {
                subtopology: s,
                partition: p,
            })
        })
        .collect();
    wait_for("the two instances to split the tasks", || {
        let (ta, tb) = (a.active_tasks(), b.active_tasks());
        a.state() == StreamsState::Running
            && b.state() == StreamsState::Running
            && !ta.is_empty()
            && !tb.is_empty()
            && ta.is_disjoint(&tb)
            && ta.union(&tb).copied().collect::<BTreeSet<_>>() == all
    });
    let (ta, tb) = (a.active_tasks(), b.active_tasks());
    eprintln!("instance a runs {ta:?}, instance b runs {tb:?}");
    assert_eq!(ta.len(), 4, "balanced: {ta:?} / {tb:?}");
    // Different instances, different process ids in the group.
    assert_ne!(a.process_id(), b.process_id());
    let group = broker
        .group_coordinator()
        .describe(APPLICATION_ID)
        .expect("the application's group exists on the broker");
    assert_eq!(group.members.len(), 2);
    assert_eq!(group.protocol, streams_core::STREAMS_PROTOCOL);

    produce(broker, &second);
    assert!(a.wait_until_caught_up(WAIT).unwrap());
    assert_eq!(
        read_counts(broker).unwrap(),
        direct_count(&join_lines(&[&first, &second])),
        "both instances together count every record exactly once"
    );
    // Both did some of the work: each task's input partition was consumed by its owner.
    assert!(a.processed_records() > 0 && b.processed_records() > 0);

    // A closes cleanly (final commit, leaves the group): B takes over every task.
    a.close();
    assert_eq!(a.state(), StreamsState::NotRunning);
    assert!(a.errors().is_empty(), "{:?}", a.errors());
    assert!(a.active_tasks().is_empty());
    wait_for("b to take over every task", || {
        b.state() == StreamsState::Running && b.active_tasks() == all
    });
    produce(broker, &third);
    assert!(b.wait_until_caught_up(WAIT).unwrap());
    let truth = direct_count(&join_lines(&[&first, &second, &third]));
    assert_eq!(read_counts(broker).unwrap(), truth);

    b.close();
    assert!(b.errors().is_empty(), "{:?}", b.errors());
    assert_eq!(read_counts(broker).unwrap(), truth);
    let group = broker.group_coordinator().describe(APPLICATION_ID).unwrap();
    assert!(group.members.is_empty(), "both instances left the group");
    broker.shutdown().unwrap();
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `topology.optimization=reuse.ktable.source.topics` on the real runtime and the embedded
//! broker (Kafka's `TableSourceNode#reuseSourceTopicForChangeLog`): a source table
//! re-grouped and counted keeps no `<application.id>-<store>-changelog` for the table (the
//! count's store still has one); the table's store is checkpointed against its source
//! topic and restored from it, up to the committed offset (Kafka's `StoreChangelogReader`
//! for source changelogs), after a restart with and without local state, so that later
//! updates subtract each row from the group it was in before.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use broker_embedded::{
    decode_fetched, partition_for_key, Broker, BrokerConfig, IsolationLevel, NewTopic,
    ProduceRecord,
};
use streams_core::{
    EmbeddedCluster, I64Serde, Nullable, StreamsApp, StreamsConfig, StreamsState, StringSerde,
};
use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};

const WAIT: Duration = Duration::from_secs(90);
const APP: &str = "reuse-app";
const INPUT: &str = "users";
const OUTPUT: &str = "users-per-region";
const PARTITIONS: u32 = 2;

fn topology() -> streams_core::Topology {
    let builder = StreamsBuilder::new();
    builder
        .table(
            INPUT,
            Consumed::with(StringSerde, StringSerde),
            Materialized::as_store("users-store"),
        )
        .group_by(
            |_user: &String, region: &String| (region.clone(), region.clone()),
            Grouped::with(StringSerde, StringSerde),
        )
        .count(Materialized::as_store("region-counts"))
        .to_stream()
        .to(OUTPUT, Produced::with(StringSerde, Nullable(I64Serde)));
    builder.build().unwrap()
}

fn start(broker: &Broker, state_dir: &Path) -> StreamsApp {
    let config = StreamsConfig::new(APP)
        .state_dir(state_dir)
        .commit_interval(Duration::from_millis(100))
        .topology_optimization("reuse.ktable.source.topics")
        .unwrap();
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

/// Produces `(user, region)` updates (`None`: the user is deleted).
fn produce(broker: &Broker, updates: &[(String, Option<String>)]) {
    for (user, region) in updates {
        let p = i32::try_from(partition_for_key(user.as_bytes(), PARTITIONS).unwrap()).unwrap();
        let record = ProduceRecord {
            key: Some(user.clone().into_bytes().into()),
            value: region.clone().map(|r| r.into_bytes().into()),
            ..ProduceRecord::default()
        };
        broker.produce(INPUT, p, &[record]).unwrap();
    }
}

/// The latest count per region on the output topic.
fn latest(broker: &Broker) -> BTreeMap<String, i64> {
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
                let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                let value: [u8; 8] = r.value.as_deref().unwrap().try_into().unwrap();
                out.insert(key, i64::from_be_bytes(value));
            }
        }
    }
    out
}

/// Users per region after `updates`, with 0 for a region every user left.
fn expected(updates: &[(String, Option<String>)]) -> BTreeMap<String, i64> {
    let mut users = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (user, region) in updates {
        if let Some(r) = region {
            out.entry(r.clone()).or_insert(0);
            users.insert(user.clone(), r.clone());
        } else {
            users.remove(user);
        }
    }
    for r in users.values() {
        *out.get_mut(r).unwrap() += 1;
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

/// `n` updates of 20 users over 5 regions, one in seven a delete.
fn updates(round: u64, n: usize) -> Vec<(String, Option<String>)> {
    let mut x = 0x9E37_79B9_7F4A_7C15_u64 ^ round;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let region = (!x.is_multiple_of(7)).then(|| format!("region-{}", (x >> 8) % 5));
            (format!("user-{}", (x >> 16) % 20), region)
        })
        .collect()
}

#[test]
fn source_table_is_restored_from_its_topic() {
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

    let first = updates(1, 200);
    let mut app = start(&broker, &state);
    produce(&broker, &first);
    wait_for("the first counts", || latest(&broker) == expected(&first));
    app.close();

    let topics = broker.list_topics();
    assert!(
        !topics.contains(&format!("{APP}-users-store-changelog")),
        "{topics:?}"
    );
    assert!(
        topics.contains(&format!("{APP}-region-counts-changelog")),
        "{topics:?}"
    );
    // The table's task checkpoints its store against the source topic.
    let mut checkpointed = 0;
    for p in 0..PARTITIONS {
        let file = state.join(APP).join(format!("0_{p}")).join(".checkpoint");
        let text = std::fs::read_to_string(&file).unwrap();
        if text
            .lines()
            .any(|l| l.starts_with(&format!("{INPUT} {p} ")))
        {
            checkpointed += 1;
        }
    }
    assert_eq!(
        checkpointed, PARTITIONS,
        "every table task checkpoints its source partition"
    );

    // Restart from the checkpoints, with updates made while stopped.
    let second = updates(2, 100);
    produce(&broker, &second);
    let mut app = start(&broker, &state);
    let both: Vec<_> = first.iter().chain(&second).cloned().collect();
    wait_for("the counts after a restart", || {
        latest(&broker) == expected(&both)
    });
    app.close();

    // Lose the local state: the table comes back from its source topic.
    std::fs::remove_dir_all(&state).unwrap();
    let mut app = start(&broker, &state);
    let third = updates(3, 200);
    produce(&broker, &third);
    let all: Vec<_> = both.iter().chain(&third).cloned().collect();
    wait_for("the counts over all runs", || {
        latest(&broker) == expected(&all)
    });
    assert_eq!(app.dropped_records(), 0);
    app.close();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
}

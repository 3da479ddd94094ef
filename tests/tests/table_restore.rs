#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A source table (`StreamsBuilder::table`) re-grouped and counted (`group_by` + `count`)
//! on the real runtime and the embedded broker: the table's store and the count's store are
//! change-logged to `<application.id>-<store>-changelog`, and after a clean close and the
//! loss of the local state the restarted application restores both, so that later updates
//! subtract each row from the group it was in before the restart.

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
const APP: &str = "table-app";
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
fn table_and_grouped_count_are_restored_after_a_restart() {
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

    for store in ["users-store", "region-counts"] {
        let changelog = broker
            .describe_topic(&format!("{APP}-{store}-changelog"))
            .unwrap();
        let config: BTreeMap<_, _> = changelog
            .configs
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(config["cleanup.policy"], "compact", "{store}");
    }
    assert!(broker
        .describe_topic(&format!("{APP}-region-counts-repartition"))
        .is_ok());

    // Lose the local state: the table and the counts come back from their changelogs, so
    // moves after the restart are subtracted from the right regions.
    std::fs::remove_dir_all(&state).unwrap();
    let mut app = start(&broker, &state);
    let second = updates(2, 200);
    produce(&broker, &second);
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    wait_for("the counts over both runs", || {
        latest(&broker) == expected(&all)
    });
    assert_eq!(app.dropped_records(), 0);
    app.close();
}

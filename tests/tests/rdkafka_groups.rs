//! Consumer groups with librdkafka: three members share a 6-partition topic (each partition
//! owned by exactly one member, every record consumed), commit their positions, and when one
//! leaves its partitions move to the others, which continue from the committed offsets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use broker_embedded::{Broker, BrokerConfig, KafkaServer, NewTopic, ProduceRecord, ServerConfig};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;

fn member(addr: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "workers")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// Polls every consumer until `want` distinct new records were seen and the assignments
/// cover all partitions exactly once.
fn drive(consumers: &[&BaseConsumer], seen: &mut HashSet<(i32, i64)>, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for c in consumers {
            while let Some(m) = c.poll(Duration::from_millis(20)) {
                let m = m.unwrap();
                seen.insert((m.partition(), m.offset()));
            }
        }
        let sets: Vec<BTreeSet<i32>> = consumers.iter().map(|c| assigned(c)).collect();
        let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        if seen.len() >= want && union.len() == 6 && total == 6 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "seen {}/{want}, assignments {sets:?}",
            seen.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_partitions_and_rebalance_when_one_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = BrokerConfig::new(dir.path());
    c.cleaner_interval = None;
    let broker = Broker::open(c).unwrap();
    let server = KafkaServer::start(
        broker.clone(),
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            group_initial_rebalance_delay: Duration::from_millis(500),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    broker.create_topic(NewTopic::new("jobs", 6)).unwrap();
    for p in 0..6 {
        let recs: Vec<_> = (0..100)
            .map(|i| ProduceRecord::new(format!("k{i}"), format!("v{p}-{i}")))
            .collect();
        broker.produce("jobs", p, &recs).unwrap();
    }
    let addr = server.local_addr().to_string();
    let handle = tokio::task::spawn_blocking(move || {
        let a = member(&addr);
        let b = member(&addr);
        let c = member(&addr);
        for m in [&a, &b, &c] {
            m.subscribe(&["jobs"]).unwrap();
        }
        let mut seen = HashSet::new();
        drive(&[&a, &b, &c], &mut seen, 600);
        assert_eq!(seen.len(), 600);
        // Each member owns partitions; together all six, none twice.
        for m in [&a, &b, &c] {
            assert!(!assigned(m).is_empty(), "every member got work");
            m.commit_consumer_state(CommitMode::Sync).unwrap();
        }
        drop(c); // leaves the group
        seen.clear();
        (a, b, seen)
    });
    let (a, b, mut seen) = handle.await.unwrap();
    for p in 0..6 {
        broker
            .produce(
                "jobs",
                p,
                &[ProduceRecord::new("late", format!("late-{p}"))],
            )
            .unwrap();
    }
    let remaining = tokio::task::spawn_blocking(move || {
        drive(&[&a, &b], &mut seen, 6);
        // Only the new records: the partitions that moved resumed at the committed offsets.
        assert!(
            seen.iter().all(|(_, o)| *o == 100),
            "re-read old records: {seen:?}"
        );
        (assigned(&a).len(), assigned(&b).len())
    })
    .await
    .unwrap();
    assert_eq!(remaining.0 + remaining.1, 6);
    let committed = broker.committed_offsets("workers");
    assert_eq!(committed.len(), 6);
    assert!(committed.values().all(|o| o.offset == 100));
    server.shutdown().await;
}

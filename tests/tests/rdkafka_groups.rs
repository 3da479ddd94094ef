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
    c.group_initial_rebalance_delay = Duration::from_millis(500);
    let broker = Broker::open(c).unwrap();
    let server = KafkaServer::start(
        broker.clone(),
        ServerConfig {
            listen: "127.0.0.1:0".into(),
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

/// One rebalance callback: ("assign" | "revoke", partitions).
type RebalanceEvent = (&'static str, BTreeSet<i32>);

/// Records the rebalance callbacks a consumer sees.
#[derive(Clone, Default)]
struct Rebalances(std::sync::Arc<std::sync::Mutex<Vec<RebalanceEvent>>>);

impl rdkafka::ClientContext for Rebalances {}

impl rdkafka::consumer::ConsumerContext for Rebalances {
    fn pre_rebalance(
        &self,
        _consumer: &BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        let (kind, tpl) = match rebalance {
            rdkafka::consumer::Rebalance::Assign(tpl) => ("assign", *tpl),
            rdkafka::consumer::Rebalance::Revoke(tpl) => ("revoke", *tpl),
            rdkafka::consumer::Rebalance::Error(_) => return,
        };
        let parts = tpl.elements().iter().map(|e| e.partition()).collect();
        self.0.lock().unwrap().push((kind, parts));
    }
}

impl Rebalances {
    fn events(&self) -> Vec<RebalanceEvent> {
        self.0.lock().unwrap().clone()
    }
}

fn static_member(addr: &str, instance: &str, events: &Rebalances) -> BaseConsumer<Rebalances> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "static-group")
        .set("group.instance.id", instance)
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "300")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create_with_context(events.clone())
        .unwrap()
}

fn assigned_ctx(c: &BaseConsumer<Rebalances>) -> BTreeSet<i32> {
    c.assignment()
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// (state, [(member id, instance id)]) of a group, through DescribeGroups.
fn describe(c: &BaseConsumer<Rebalances>, group: &str) -> (String, Vec<(String, String)>) {
    let list = c
        .fetch_group_list(Some(group), Duration::from_secs(5))
        .unwrap();
    let g = &list.groups()[0];
    let mut members: Vec<(String, String)> = g
        .members()
        .iter()
        .map(|m| (m.id().to_string(), m.client_id().to_string()))
        .collect();
    members.sort();
    (g.state().to_string(), members)
}

/// Polls every consumer for `for_how_long`.
fn poll_all(cs: &[&BaseConsumer<Rebalances>], for_how_long: Duration) {
    let until = Instant::now() + for_how_long;
    while Instant::now() < until {
        for c in cs {
            if let Some(m) = c.poll(Duration::from_millis(20)) {
                m.unwrap();
            }
        }
    }
}

/// Static membership (KIP-345) with librdkafka: a member with `group.instance.id` that is
/// closed and recreated within the session timeout gets its partitions back without a
/// rebalance: the other member sees no revoke or assign, and the group stays Stable with the
/// same two members (the restarted one under a new member id). Both members restart in turn,
/// so the group leader's restart is covered whichever member leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_restart_gets_its_assignment_back_without_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = BrokerConfig::new(dir.path());
    c.cleaner_interval = None;
    c.group_initial_rebalance_delay = Duration::from_millis(300);
    let broker = Broker::open(c).unwrap();
    let server = KafkaServer::start(
        broker.clone(),
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    broker.create_topic(NewTopic::new("static", 4)).unwrap();
    let addr = server.local_addr().to_string();
    tokio::task::spawn_blocking(move || {
        let instances = ["instance-a", "instance-b"];
        let mut events = [Rebalances::default(), Rebalances::default()];
        let mut members: Vec<BaseConsumer<Rebalances>> = instances
            .iter()
            .zip(&events)
            .map(|(i, e)| static_member(&addr, i, e))
            .collect();
        for m in &members {
            m.subscribe(&["static"]).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            poll_all(&[&members[0], &members[1]], Duration::from_millis(100));
            let (sa, sb) = (assigned_ctx(&members[0]), assigned_ctx(&members[1]));
            if sa.len() + sb.len() == 4 && !sa.is_empty() && !sb.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no stable assignment: {sa:?} {sb:?}"
            );
        }
        // Let the group settle (no rebalance in flight), then take the reference state.
        poll_all(&[&members[0], &members[1]], Duration::from_secs(1));
        let parts = [assigned_ctx(&members[0]), assigned_ctx(&members[1])];
        for (restarted, other) in [(0, 1), (1, 0)] {
            let other_before = events[other].events();
            let (state, group_before) = describe(&members[other], "static-group");
            assert_eq!(state, "Stable");
            assert_eq!(group_before.len(), 2);

            // Closing a static member sends no LeaveGroup; the new instance joins with the
            // same group.instance.id.
            events[restarted] = Rebalances::default();
            members[restarted] = static_member(&addr, instances[restarted], &events[restarted]);
            members[restarted].subscribe(&["static"]).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while assigned_ctx(&members[restarted]) != parts[restarted] {
                poll_all(&[&members[0], &members[1]], Duration::from_millis(100));
                assert!(
                    Instant::now() < deadline,
                    "restarted {} did not get {:?} back: {:?}",
                    instances[restarted],
                    parts[restarted],
                    assigned_ctx(&members[restarted])
                );
            }
            // Several heartbeat intervals: a rebalance, if any, would reach the other by now.
            poll_all(&[&members[0], &members[1]], Duration::from_secs(3));
            assert_eq!(
                events[other].events(),
                other_before,
                "{} saw a rebalance when {} restarted",
                instances[other],
                instances[restarted]
            );
            assert_eq!(assigned_ctx(&members[other]), parts[other]);
            assert_eq!(assigned_ctx(&members[restarted]), parts[restarted]);
            assert_eq!(
                events[restarted].events(),
                vec![("assign", parts[restarted].clone())],
                "the restarted member got its old partitions in one assignment"
            );
            let (state, group_after) = describe(&members[other], "static-group");
            assert_eq!(state, "Stable");
            assert_eq!(group_after.len(), 2, "{group_after:?}");
            // The other member kept its member id; the restarted one has a new one.
            let kept = group_after
                .iter()
                .filter(|m| group_before.contains(m))
                .count();
            assert_eq!(kept, 1, "before {group_before:?}, after {group_after:?}");
        }
    })
    .await
    .unwrap();
    server.shutdown().await;
}

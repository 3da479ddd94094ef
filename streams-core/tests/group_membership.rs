#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The embedded consumer as a member of the broker's group coordinator: two consumers from
//! two `EmbeddedCluster`s share the tasks (eager: the first revokes everything, commits, and
//! rejoins), and a commit by a member the group no longer knows is a typed error that leaves
//! the committed offsets alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_embedded::{Broker, BrokerConfig, NewTopic};
use streams_core::{
    AssignmentEvent, AssignmentSpec, Cluster, ClusterConsumer, EmbeddedCluster, IsolationLevel,
    OffsetReset, StreamsError, Subscription, TaskId, TopicPartition,
};

const GROUP: &str = "membership";

fn subscription(process: u64) -> Subscription {
    let tasks: BTreeMap<TaskId, Vec<TopicPartition>> = (0..4)
        .map(|p| {
            (
                TaskId {
                    subtopology: 0,
                    partition: p,
                },
                vec![TopicPartition::new("in", p)],
            )
        })
        .collect();
    Subscription {
        topics: vec![("in".to_owned(), OffsetReset::Earliest)],
        process_id: uuid::Uuid::from_u64_pair(0, process),
        endpoint: None,
        task_offset_sums: Arc::new(|owned: &BTreeSet<TaskId>| {
            owned
                .iter()
                .map(|t| (*t, streams_core::LATEST_OFFSET))
                .collect()
        }),
        assignment: AssignmentSpec::new(tasks),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(20),
    }
}

/// Polls until an `Assigned` event arrives (committing on `Revoked`, as the runtime does, and
/// checking that everything `held` is revoked); returns the partitions.
fn poll_until_assigned(
    c: &mut dyn ClusterConsumer,
    mut held: Vec<TopicPartition>,
    commit_on_revoke: i64,
) -> Vec<TopicPartition> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no assignment within 60 s");
        let r = c.poll(Duration::from_millis(100), 100).unwrap();
        for e in r.events {
            match e {
                AssignmentEvent::Assigned(tps) => return tps,
                AssignmentEvent::Revoked(tps) => {
                    assert_eq!(tps, held, "eager: every held partition is revoked");
                    let offsets = tps
                        .iter()
                        .map(|tp| (tp.clone(), commit_on_revoke))
                        .collect();
                    c.commit(&offsets).unwrap();
                    held.clear();
                }
                AssignmentEvent::Lost(tps) => panic!("unexpectedly lost {tps:?}"),
                AssignmentEvent::Standby(_) | AssignmentEvent::PartitionsByHost { .. } => {}
            }
        }
    }
}

#[test]
fn consumers_of_two_clusters_share_one_group_and_stale_members_cannot_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path().join("log"));
    config.group_initial_rebalance_delay = Duration::ZERO;
    let broker = Broker::open(config).unwrap();
    broker.create_topic(NewTopic::new("in", 4)).unwrap();

    let mut c1 = EmbeddedCluster::new(broker.clone())
        .consumer(GROUP, "c1", IsolationLevel::ReadUncommitted)
        .unwrap();
    c1.subscribe(subscription(1)).unwrap();
    let all = poll_until_assigned(c1.as_mut(), Vec::new(), 0);
    assert_eq!(all.len(), 4);
    let tp0 = TopicPartition::new("in", 0);
    c1.commit(&[(tp0.clone(), 1)].into_iter().collect())
        .unwrap();

    // A consumer of another EmbeddedCluster joins the same group: the old per-cluster
    // groups would have given each consumer every partition.
    let mut c2 = EmbeddedCluster::new(broker.clone())
        .consumer(GROUP, "c2", IsolationLevel::ReadUncommitted)
        .unwrap();
    c2.subscribe(subscription(2)).unwrap();
    let (mine1, mine2) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            // c1 learns of the rebalance from its heartbeat, revokes (committing 2), rejoins.
            let mut held = all.clone();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                assert!(Instant::now() < deadline);
                let r = c1.poll(Duration::from_millis(100), 100).unwrap();
                for e in r.events {
                    match e {
                        AssignmentEvent::Revoked(tps) => {
                            assert_eq!(tps, held);
                            c1.commit(&[(tp0.clone(), 2)].into_iter().collect())
                                .unwrap();
                            held.clear();
                        }
                        AssignmentEvent::Assigned(tps) => return tps,
                        AssignmentEvent::Lost(tps) => panic!("lost {tps:?}"),
                        AssignmentEvent::Standby(_) | AssignmentEvent::PartitionsByHost { .. } => {}
                    }
                }
            }
        });
        let mine2 = poll_until_assigned(c2.as_mut(), Vec::new(), 0);
        (h.join().unwrap(), mine2)
    });
    let union: BTreeSet<_> = mine1.iter().chain(mine2.iter()).cloned().collect();
    assert_eq!(union.len(), 4, "{mine1:?} / {mine2:?}");
    assert_eq!(mine1.len(), 2, "sticky and balanced: {mine1:?} / {mine2:?}");
    let committed = |tp: &TopicPartition| {
        broker
            .committed_offset(
                GROUP,
                &broker_embedded::TopicPartition::new(tp.topic.clone(), tp.partition),
            )
            .map(|o| o.offset)
    };
    assert_eq!(
        committed(&tp0),
        Some(2),
        "the revocation commit went through"
    );

    // c1 is removed from the group behind its back (as a session timeout would): its next
    // commit is refused with a typed error, and nothing is written.
    let groups = broker.group_coordinator();
    let c1_id = groups
        .describe(GROUP)
        .unwrap()
        .members
        .into_iter()
        .find(|m| m.client_id == "c1")
        .unwrap()
        .member_id;
    groups.leave(GROUP, &c1_id, None).unwrap();
    let tp = mine1[0].clone();
    let err = c1
        .commit(&[(tp.clone(), 99)].into_iter().collect())
        .unwrap_err();
    assert!(matches!(err, StreamsError::TaskMigrated(_)), "{err}");
    assert_ne!(committed(&tp), Some(99));

    // c2 takes everything after the rebalance; c1 rejoins as a new member and shares again.
    std::thread::scope(|s| {
        let h = s.spawn(|| poll_until_assigned(c1.as_mut(), Vec::new(), 0));
        let mut got2 = poll_until_assigned(c2.as_mut(), mine2.clone(), 0);
        let got1 = h.join().unwrap();
        // c2 may get an intermediate assignment (alone) before c1 rejoins: wait for the
        // final one, with both members.
        let deadline = Instant::now() + Duration::from_secs(60);
        while got1.len() + got2.len() != 4 {
            assert!(Instant::now() < deadline, "{got1:?} / {got2:?}");
            got2 = poll_until_assigned(c2.as_mut(), got2.clone(), 0);
        }
        assert_eq!(got1.len(), 2, "{got1:?} / {got2:?}");
    });
    c1.close().unwrap();
    c2.close().unwrap();
    assert!(groups.describe(GROUP).unwrap().members.is_empty());
    broker.shutdown().unwrap();
}

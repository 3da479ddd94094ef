//! Property test: after any random sequence of registrations, heartbeats, session expiries,
//! fences, AlterPartitions, topic creations/deletions, partition additions and elections, every
//! partition satisfies the replication invariants, epochs never go backwards, and the image
//! rebuilt from the log equals both the live image and the image restored from a snapshot.
//! (On failure proptest prints the minimal failing sequence and its seed.)

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    create_partitions_request, CreatePartitionsRequest, DeleteTopicsRequest, ElectLeadersRequest,
    TopicName,
};
use proptest::prelude::*;
use uuid::Uuid;

use super::controller::tests::{s, Harness};
use super::*;

const BROKERS: i32 = 5;

#[derive(Debug, Clone)]
enum Op {
    Register(i32),
    Heartbeat {
        broker: i32,
        want_fence: bool,
        want_shut_down: bool,
        lagging: bool,
    },
    Advance(u64),
    HeartbeatAll,
    Fence(i32),
    Unregister(i32),
    AlterPartition {
        topic: usize,
        partition: usize,
        keep: Vec<bool>,
        stale: u8,
    },
    CreateTopic {
        partitions: i32,
        rf: i16,
        unclean: bool,
    },
    DeleteTopic(usize),
    AddPartitions {
        topic: usize,
        more: i32,
    },
    Elect {
        unclean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..BROKERS).prop_map(Op::Register),
        6 => (0..BROKERS, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(broker, f, sd, lagging)| Op::Heartbeat {
                broker,
                // Keep fencing and shutdown requests rarer than plain heartbeats.
                want_fence: f && sd,
                want_shut_down: sd && !f && lagging,
                lagging: lagging && f,
            }
        ),
        3 => (0u64..4000).prop_map(Op::Advance),
        3 => Just(Op::HeartbeatAll),
        1 => (0..BROKERS).prop_map(Op::Fence),
        1 => (0..BROKERS).prop_map(Op::Unregister),
        6 => (0usize..4, 0usize..6, prop::collection::vec(any::<bool>(), 5), 0u8..6).prop_map(
            |(topic, partition, keep, stale)| Op::AlterPartition { topic, partition, keep, stale }
        ),
        2 => (1i32..5, 1i16..5, any::<bool>())
            .prop_map(|(partitions, rf, unclean)| Op::CreateTopic { partitions, rf, unclean }),
        1 => (0usize..4).prop_map(Op::DeleteTopic),
        1 => (0usize..4, 1i32..3).prop_map(|(topic, more)| Op::AddPartitions { topic, more }),
        1 => any::<bool>().prop_map(|unclean| Op::Elect { unclean }),
    ]
}

fn nth_topic(h: &Harness, i: usize) -> Option<(Uuid, String)> {
    let topics = h.image().topics();
    if topics.is_empty() {
        return None;
    }
    topics
        .values()
        .nth(i % topics.len())
        .map(|t| (t.id, t.name.clone()))
}

fn run(h: &mut Harness, op: &Op, topic_seq: &mut u32) {
    match op {
        Op::Register(b) => {
            h.register(*b);
        }
        Op::Heartbeat {
            broker,
            want_fence,
            want_shut_down,
            lagging,
        } => {
            if h.image().broker(*broker).is_none() {
                return;
            }
            let mut req = h.heartbeat_req(*broker, *want_fence, *want_shut_down);
            if *lagging {
                req.current_metadata_offset = 0;
            }
            let (records, _) = h.state.broker_heartbeat(&req, h.next, h.now);
            h.commit(records);
        }
        Op::Advance(ms) => {
            h.now += ms;
            // Tick until quiet (tick returns one batch of related changes at a time).
            for _ in 0..(2 * BROKERS + 2) {
                let records = h.state.tick(h.now);
                if records.is_empty() {
                    break;
                }
                h.commit(records);
            }
        }
        Op::HeartbeatAll => {
            let ids: Vec<i32> = h.image().brokers().keys().copied().collect();
            for b in ids {
                let req = h.heartbeat_req(b, false, false);
                let (records, _) = h.state.broker_heartbeat(&req, h.next, h.now);
                h.commit(records);
            }
        }
        Op::Fence(b) => {
            let records = h.state.fence_broker(*b);
            h.commit(records);
        }
        Op::Unregister(b) => {
            if let Ok(records) = h.state.unregister_broker(*b) {
                h.commit(records);
            }
        }
        Op::AlterPartition {
            topic,
            partition,
            keep,
            stale,
        } => {
            let Some((tid, _)) = nth_topic(h, *topic) else {
                return;
            };
            let Some(t) = h.image().topic(&tid) else {
                return;
            };
            let n = t.partitions.len();
            let index = i32::try_from(partition % n).unwrap();
            let p = t.partitions[&index].clone();
            // The ISR the leader proposes: a subset of the replicas that keeps the leader
            // (sometimes not, to exercise INVALID_REQUEST).
            let isr: Vec<i32> = p
                .replicas
                .iter()
                .enumerate()
                .filter(|(i, r)| **r == p.leader && *stale != 5 || keep[*i % keep.len()])
                .map(|(_, r)| *r)
                .collect();
            let sender = if *stale == 4 { p.replicas[0] } else { p.leader };
            if sender < 0 || h.image().broker(sender).is_none() {
                return;
            }
            let (le, pe) = match stale {
                1 => (p.leader_epoch - 1, p.partition_epoch),
                2 => (p.leader_epoch, p.partition_epoch - 1),
                3 => (p.leader_epoch + 1, p.partition_epoch),
                _ => (p.leader_epoch, p.partition_epoch),
            };
            let req = h.alter_partition_req(sender, tid, index, le, pe, &isr);
            let (records, _) = h.state.alter_partition(&req);
            h.commit(records);
        }
        Op::CreateTopic {
            partitions,
            rf,
            unclean,
        } => {
            *topic_seq += 1;
            let name = format!("topic-{topic_seq}");
            let configs: Vec<(&str, &str)> = if *unclean {
                vec![("unclean.leader.election.enable", "true")]
            } else {
                vec![]
            };
            h.create_topic_with(&name, *partitions, *rf, &configs);
        }
        Op::DeleteTopic(i) => {
            let Some((_, name)) = nth_topic(h, *i) else {
                return;
            };
            let req = DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s(&name))]);
            let (records, _) = h.state.delete_topics(&req);
            h.commit(records);
        }
        Op::AddPartitions { topic, more } => {
            let Some((tid, name)) = nth_topic(h, *topic) else {
                return;
            };
            let current = i32::try_from(
                h.image()
                    .topic(&tid)
                    .map(|t| t.partitions.len())
                    .unwrap_or(0),
            )
            .unwrap();
            let req = CreatePartitionsRequest::default().with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(TopicName(s(&name)))
                    .with_count(current + more)
                    .with_assignments(None),
            ]);
            let (records, _) = h.state.create_partitions(&req);
            h.commit(records);
        }
        Op::Elect { unclean } => {
            let req = ElectLeadersRequest::default()
                .with_election_type(i8::from(*unclean))
                .with_topic_partitions(None);
            let (records, _) = h.state.elect_leaders(&req);
            h.commit(records);
        }
    }
}

type Epochs = BTreeMap<(Uuid, i32), (i32, i32)>;

fn check_invariants(
    h: &Harness,
    epochs: &mut Epochs,
    step: usize,
    op: &Op,
) -> Result<(), TestCaseError> {
    let image = h.image();
    for (tid, index, p) in image.partitions() {
        let ctx = format!("step {step} ({op:?}) partition {tid}-{index}: {p:?}");
        let mut sorted = p.replicas.clone();
        sorted.sort_unstable();
        sorted.dedup();
        prop_assert_eq!(
            sorted.len(),
            p.replicas.len(),
            "duplicate replicas; {}",
            &ctx
        );
        prop_assert!(!p.isr.is_empty(), "empty ISR; {}", &ctx);
        prop_assert!(
            p.isr.iter().all(|r| p.replicas.contains(r)),
            "ISR not within replicas; {}",
            &ctx
        );
        let mut isr = p.isr.clone();
        isr.sort_unstable();
        isr.dedup();
        prop_assert_eq!(isr.len(), p.isr.len(), "duplicate ISR members; {}", &ctx);
        if p.leader != NO_LEADER {
            prop_assert!(p.isr.contains(&p.leader), "leader not in ISR; {}", &ctx);
            let b = image.broker(p.leader);
            prop_assert!(b.is_some(), "leader not registered; {}", &ctx);
            prop_assert!(b.is_some_and(|b| !b.fenced), "fenced leader; {}", &ctx);
            prop_assert!(
                b.is_some_and(|b| !b.in_controlled_shutdown),
                "leader in controlled shutdown; {}",
                &ctx
            );
        }
        if let Some((le, pe)) = epochs.insert((tid, index), (p.leader_epoch, p.partition_epoch)) {
            prop_assert!(
                p.leader_epoch >= le,
                "leader epoch went back from {}; {}",
                le,
                &ctx
            );
            prop_assert!(
                p.partition_epoch >= pe,
                "partition epoch went back from {}; {}",
                pe,
                &ctx
            );
        }
    }
    // Deleted topics never come back under the same id.
    epochs.retain(|(tid, _), _| image.topic(tid).is_some());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn controller_decisions_keep_replication_invariants(
        seed in any::<u64>(),
        unclean_default in any::<bool>(),
        initial_brokers in 1..=BROKERS,
        ops in prop::collection::vec(op(), 1..150),
    ) {
        let config = ControllerConfig {
            unclean_leader_election_enable: unclean_default,
            leader_imbalance_check_interval_ms: 3000,
            ..ControllerConfig::default()
        };
        let mut h = Harness::new(config, seed);
        let mut epochs = Epochs::new();
        let mut topic_seq = 0;
        // Start from a running cluster: some brokers registered and unfenced, one topic.
        for b in 0..initial_brokers {
            h.register_and_unfence(b);
        }
        let rf = i16::try_from(initial_brokers.min(3)).unwrap_or(1);
        run(&mut h, &Op::CreateTopic { partitions: 3, rf, unclean: false }, &mut topic_seq);
        prop_assert_eq!(h.image().topics().len(), 1);
        for (step, op) in ops.iter().enumerate() {
            run(&mut h, op, &mut topic_seq);
            check_invariants(&h, &mut epochs, step, op)?;
        }
        // Replay of the log, and a snapshot round trip, give the same image.
        let mut replayed = MetadataImage::new();
        for (index, records) in &h.log {
            replayed.apply_entry(*index, records);
        }
        prop_assert_eq!(&replayed, h.image());
        let snapshot = h.image().to_snapshot().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let restored = MetadataImage::from_snapshot(&snapshot).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&restored, h.image());
        // A snapshot taken midway plus the rest of the log gives the same image too.
        let mid = h.log.len() / 2;
        let mut partial = MetadataImage::new();
        for (index, records) in &h.log[..mid] {
            partial.apply_entry(*index, records);
        }
        let partial_snapshot = partial.to_snapshot().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut resumed = MetadataImage::from_snapshot(&partial_snapshot).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (index, records) in &h.log[mid..] {
            resumed.apply_entry(*index, records);
        }
        prop_assert_eq!(&resumed, h.image());
    }
}

//! Unit tests of the controller decisions, driven through a small in-test "log": decisions are
//! committed at consecutive log indexes and applied, as the Raft quorum will do.

use std::collections::HashMap;

use kafka_protocol::messages::{
    alter_partition_request, broker_registration_request, create_partitions_request,
    create_topics_request, delete_topics_request, elect_leaders_request,
    AllocateProducerIdsRequest, AlterPartitionRequest, BrokerHeartbeatRequest, BrokerId,
    BrokerRegistrationRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, ElectLeadersRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::*;

pub(crate) const CLUSTER: &str = "test-cluster-id-0000";

/// A controller plus a log: every decision's records are committed at the next index.
pub(crate) struct Harness {
    pub(crate) state: ControllerState,
    pub(crate) next: u64,
    pub(crate) now: u64,
    pub(crate) incarnations: HashMap<i32, Uuid>,
    pub(crate) log: Vec<(u64, Vec<MetadataRecord>)>,
}

pub(crate) fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Harness {
    pub(crate) fn new(config: ControllerConfig, seed: u64) -> Self {
        let config = ControllerConfig {
            cluster_id: CLUSTER.to_string(),
            ..config
        };
        Self {
            state: ControllerState::with_seed(config, MetadataImage::new(), 0, seed),
            next: 1,
            now: 0,
            incarnations: HashMap::new(),
            log: Vec::new(),
        }
    }

    pub(crate) fn commit(&mut self, records: Vec<MetadataRecord>) {
        if records.is_empty() {
            return;
        }
        let index = self.next;
        self.next += 1;
        self.state.apply_entry(index, &records);
        self.log.push((index, records));
    }

    pub(crate) fn image(&self) -> &MetadataImage {
        self.state.image()
    }

    pub(crate) fn registration(&self, id: i32, incarnation: Uuid) -> BrokerRegistrationRequest {
        BrokerRegistrationRequest::default()
            .with_broker_id(BrokerId(id))
            .with_cluster_id(s(CLUSTER))
            .with_incarnation_id(incarnation)
            .with_listeners(vec![broker_registration_request::Listener::default()
                .with_name(s("PLAINTEXT"))
                .with_host(s("127.0.0.1"))
                .with_port(9092 + u16::try_from(id).unwrap())])
    }

    /// Register broker `id` with a new incarnation; returns the response.
    pub(crate) fn register(&mut self, id: i32) -> BrokerRegistrationResponse {
        let inc = Uuid::new_v4();
        self.incarnations.insert(id, inc);
        let req = self.registration(id, inc);
        let (records, resp) = self.state.register_broker(&req, self.next, self.now);
        self.commit(records);
        resp
    }

    pub(crate) fn epoch(&self, id: i32) -> i64 {
        self.image().broker(id).map(|b| b.epoch).unwrap_or(-1)
    }

    pub(crate) fn heartbeat_req(
        &self,
        id: i32,
        want_fence: bool,
        want_shut_down: bool,
    ) -> BrokerHeartbeatRequest {
        BrokerHeartbeatRequest::default()
            .with_broker_id(BrokerId(id))
            .with_broker_epoch(self.epoch(id))
            .with_current_metadata_offset(i64::try_from(self.image().offset()).unwrap())
            .with_want_fence(want_fence)
            .with_want_shut_down(want_shut_down)
    }

    pub(crate) fn heartbeat(
        &mut self,
        id: i32,
        want_fence: bool,
        want_shut_down: bool,
    ) -> BrokerHeartbeatResponse {
        let req = self.heartbeat_req(id, want_fence, want_shut_down);
        let (records, resp) = self.state.broker_heartbeat(&req, self.next, self.now);
        self.commit(records);
        resp
    }

    pub(crate) fn register_and_unfence(&mut self, id: i32) {
        let resp = self.register(id);
        assert_eq!(resp.error_code, 0);
        let hb = self.heartbeat(id, false, false);
        assert_eq!(hb.error_code, 0);
        assert!(!hb.is_fenced, "broker {id} should be unfenced");
    }

    pub(crate) fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        rf: i16,
    ) -> create_topics_response::CreatableTopicResult {
        self.create_topic_with(name, partitions, rf, &[])
    }

    pub(crate) fn create_topic_with(
        &mut self,
        name: &str,
        partitions: i32,
        rf: i16,
        configs: &[(&str, &str)],
    ) -> create_topics_response::CreatableTopicResult {
        let req = CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s(name)))
                .with_num_partitions(partitions)
                .with_replication_factor(rf)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            create_topics_request::CreatableTopicConfig::default()
                                .with_name(s(k))
                                .with_value(Some(s(v)))
                        })
                        .collect(),
                ),
        ]);
        let (records, mut resp) = self.state.create_topics(&req);
        self.commit(records);
        resp.topics.remove(0)
    }

    pub(crate) fn topic_id(&self, name: &str) -> Uuid {
        self.image().topic_id(name).unwrap()
    }

    pub(crate) fn partition(&self, name: &str, p: i32) -> PartitionRegistration {
        self.image()
            .partition(&self.topic_id(name), p)
            .unwrap()
            .clone()
    }

    pub(crate) fn alter_partition_req(
        &self,
        broker: i32,
        topic_id: Uuid,
        p: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[i32],
    ) -> AlterPartitionRequest {
        AlterPartitionRequest::default()
            .with_broker_id(BrokerId(broker))
            .with_broker_epoch(self.epoch(broker))
            .with_topics(vec![alter_partition_request::TopicData::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![
                    alter_partition_request::PartitionData::default()
                        .with_partition_index(p)
                        .with_leader_epoch(leader_epoch)
                        .with_partition_epoch(partition_epoch)
                        .with_new_isr_with_epochs(
                            isr.iter()
                                .map(|b| {
                                    alter_partition_request::BrokerState::default()
                                        .with_broker_id(BrokerId(*b))
                                        .with_broker_epoch(self.epoch(*b))
                                })
                                .collect(),
                        ),
                ])])
    }
}

fn cluster(n: i32, config: ControllerConfig) -> Harness {
    let mut h = Harness::new(config, 7);
    for id in 0..n {
        h.register_and_unfence(id);
    }
    h
}

#[test]
fn registration_assigns_the_log_index_as_epoch_and_starts_fenced() {
    let mut h = Harness::new(ControllerConfig::default(), 1);
    h.commit(vec![MetadataRecord::Config {
        resource_type: ConfigResourceType::Broker,
        resource_name: String::new(),
        name: "x".into(),
        value: Some("y".into()),
    }]);
    let resp = h.register(3);
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.broker_epoch, 2, "registered at log index 2");
    let b = h.image().broker(3).unwrap();
    assert_eq!(b.epoch, 2);
    assert_eq!(b.registration_offset, 2);
    assert!(b.fenced);
    assert_eq!(b.endpoint("PLAINTEXT").unwrap().port, 9095);

    // Another cluster id is refused.
    let req = h
        .registration(4, Uuid::new_v4())
        .with_cluster_id(s("other"));
    let (records, resp) = h.state.register_broker(&req, h.next, h.now);
    assert!(records.is_empty());
    assert_eq!(resp.error_code, ResponseError::InconsistentClusterId.code());
}

#[test]
fn re_registration_with_a_new_incarnation() {
    let mut h = cluster(2, ControllerConfig::default());
    h.create_topic("t", 2, 2);
    let old_epoch = h.epoch(0);
    // Same incarnation: amended, epoch and fencing state kept.
    let req = h.registration(0, h.incarnations[&0]);
    let (records, resp) = h.state.register_broker(&req, h.next, h.now);
    assert_eq!(resp.broker_epoch, old_epoch);
    h.commit(records);
    assert!(!h.image().broker(0).unwrap().fenced);
    assert_eq!(h.epoch(0), old_epoch);

    // A new incarnation while the old session is valid: DUPLICATE_BROKER_REGISTRATION.
    h.now = 5_000;
    let req = h.registration(0, Uuid::new_v4());
    let (records, resp) = h.state.register_broker(&req, h.next, h.now);
    assert!(records.is_empty());
    assert_eq!(
        resp.error_code,
        ResponseError::DuplicateBrokerRegistration.code()
    );

    // After the session expired (not yet fenced by tick), the new incarnation is accepted with
    // a new epoch, starts fenced, and the old incarnation's leaderships move away.
    h.heartbeat(1, false, false);
    h.now = 9_500;
    h.heartbeat(1, false, false);
    let req = h.registration(0, Uuid::new_v4());
    let (records, resp) = h.state.register_broker(&req, h.next, h.now);
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.broker_epoch, i64::try_from(h.next).unwrap());
    h.commit(records);
    assert!(h.epoch(0) > old_epoch);
    assert!(h.image().broker(0).unwrap().fenced);
    for p in 0..2 {
        let part = h.partition("t", p);
        assert_eq!(part.leader, 1, "{part:?}");
        assert_eq!(part.isr, vec![1]);
    }
    // A heartbeat with the old epoch is stale.
    let stale = h
        .heartbeat_req(0, false, false)
        .with_broker_epoch(old_epoch);
    let (records, resp) = h.state.broker_heartbeat(&stale, h.next, h.now);
    assert!(records.is_empty());
    assert_eq!(resp.error_code, ResponseError::StaleBrokerEpoch.code());
}

#[test]
fn unfence_waits_for_the_registration_offset() {
    let mut h = Harness::new(ControllerConfig::default(), 2);
    h.register(1);
    let reg_offset = i64::try_from(h.image().broker(1).unwrap().registration_offset).unwrap();
    let req = h
        .heartbeat_req(1, false, false)
        .with_current_metadata_offset(reg_offset - 1);
    let (records, resp) = h.state.broker_heartbeat(&req, h.next, h.now);
    assert!(records.is_empty());
    assert!(resp.is_fenced);
    assert!(!resp.is_caught_up);
    // want_fence keeps it fenced even when caught up.
    let resp = h.heartbeat(1, true, false);
    assert!(resp.is_fenced && resp.is_caught_up);
    let resp = h.heartbeat(1, false, false);
    assert!(!resp.is_fenced);
    assert!(resp.is_caught_up);
    assert!(!h.image().broker(1).unwrap().fenced);
}

#[test]
fn heartbeat_timeout_fences_and_moves_leadership() {
    let mut h = cluster(3, ControllerConfig::default());
    h.create_topic("t", 6, 3);
    let led_by_0: Vec<i32> = (0..6)
        .filter(|p| h.partition("t", *p).leader == 0)
        .collect();
    assert!(!led_by_0.is_empty());
    let before: Vec<PartitionRegistration> = (0..6).map(|p| h.partition("t", p)).collect();
    // Brokers 1 and 2 keep heartbeating; 0 goes silent.
    for step in 1..=10u64 {
        h.now = step * 1000;
        h.heartbeat(1, false, false);
        h.heartbeat(2, false, false);
        let records = h.state.tick(h.now);
        if h.now <= 9000 {
            assert!(
                !records
                    .iter()
                    .any(|r| matches!(r, MetadataRecord::FenceBroker { .. })),
                "no fencing before the session timeout (now {})",
                h.now
            );
        }
        h.commit(records);
    }
    assert!(h.image().broker(0).unwrap().fenced);
    for p in 0..6 {
        let part = h.partition("t", p);
        assert_ne!(part.leader, 0);
        assert!(!part.isr.contains(&0), "{part:?}");
        if led_by_0.contains(&p) {
            assert_eq!(part.leader_epoch, before[p as usize].leader_epoch + 1);
        } else {
            assert_eq!(part.leader_epoch, before[p as usize].leader_epoch);
        }
        assert!(part.partition_epoch > before[p as usize].partition_epoch);
    }
}

#[test]
fn last_isr_member_fenced_leaves_partition_leaderless_until_it_returns() {
    let mut h = cluster(2, ControllerConfig::default());
    h.create_topic("t", 1, 2);
    let leader = h.partition("t", 0).leader;
    let other = 1 - leader;
    // Shrink the ISR to the leader alone.
    let p = h.partition("t", 0);
    let req = h.alter_partition_req(
        leader,
        h.topic_id("t"),
        0,
        p.leader_epoch,
        p.partition_epoch,
        &[leader],
    );
    let (records, resp) = h.state.alter_partition(&req);
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
    h.commit(records);
    // Fence the leader: it stays the only ISR member, the partition has no leader.
    let records = h.state.fence_broker(leader);
    h.commit(records);
    let p = h.partition("t", 0);
    assert_eq!(p.leader, NO_LEADER);
    assert_eq!(p.isr, vec![leader]);
    assert!(!h.image().broker(other).unwrap().fenced);
    // The old leader comes back (re-registers, catches up): it leads again.
    h.now = 20_000;
    h.heartbeat(other, false, false);
    h.register_and_unfence(leader);
    let p = h.partition("t", 0);
    assert_eq!(p.leader, leader);
    assert_eq!(p.isr, vec![leader]);
}

#[test]
fn controlled_shutdown_moves_leadership_then_allows_shutdown() {
    let mut h = cluster(3, ControllerConfig::default());
    h.create_topic("t", 6, 3);
    let victim = 1;
    assert!(h.image().has_leaderships(victim));
    let resp = h.heartbeat(victim, false, true);
    assert!(!resp.is_fenced);
    assert!(!resp.should_shut_down, "leaderships must move first");
    let b = h.image().broker(victim).unwrap();
    assert!(b.in_controlled_shutdown && !b.fenced);
    assert!(!h.image().has_leaderships(victim));
    for p in 0..6 {
        assert!(!h.partition("t", p).isr.contains(&victim));
    }
    // The others have not yet reported the offset of the shutdown records.
    let resp = h.heartbeat(victim, false, true);
    assert!(!resp.should_shut_down);
    // Once every active broker caught up, the broker may shut down (and is fenced).
    h.heartbeat(0, false, false);
    h.heartbeat(2, false, false);
    let resp = h.heartbeat(victim, false, true);
    assert!(resp.should_shut_down);
    assert!(resp.is_fenced);
    assert!(h.image().broker(victim).unwrap().fenced);
}

#[test]
fn shutdown_without_leaderships_is_immediate() {
    let mut h = cluster(2, ControllerConfig::default());
    let resp = h.heartbeat(0, false, true);
    assert!(resp.should_shut_down);
    assert!(h.image().broker(0).unwrap().fenced);
}

#[test]
fn alter_partition_errors_and_success() {
    let mut h = cluster(3, ControllerConfig::default());
    h.create_topic("t", 1, 3);
    let tid = h.topic_id("t");
    let p = h.partition("t", 0);
    let leader = p.leader;
    let follower = p.replicas.iter().copied().find(|r| *r != leader).unwrap();
    let shrunk: Vec<i32> = p.isr.iter().copied().filter(|r| *r != follower).collect();
    let code = |h: &mut Harness, req: AlterPartitionRequest| {
        let (records, resp) = h.state.alter_partition(&req);
        assert!(records.is_empty(), "no records on error");
        (
            resp.error_code,
            resp.topics.first().map(|t| t.partitions[0].error_code),
        )
    };

    // Stale broker epoch: top-level error.
    let req = h
        .alter_partition_req(leader, tid, 0, p.leader_epoch, p.partition_epoch, &shrunk)
        .with_broker_epoch(h.epoch(leader) - 1);
    assert_eq!(
        code(&mut h, req),
        (ResponseError::StaleBrokerEpoch.code(), None)
    );
    // Unknown topic id.
    let req = h.alter_partition_req(
        leader,
        Uuid::new_v4(),
        0,
        p.leader_epoch,
        p.partition_epoch,
        &shrunk,
    );
    assert_eq!(
        code(&mut h, req).1,
        Some(ResponseError::UnknownTopicId.code())
    );
    // Unknown partition.
    let req = h.alter_partition_req(leader, tid, 9, p.leader_epoch, p.partition_epoch, &shrunk);
    assert_eq!(
        code(&mut h, req).1,
        Some(ResponseError::UnknownTopicOrPartition.code())
    );
    // Old leader epoch.
    let mut h2_p = p.clone();
    h2_p.leader_epoch -= 1;
    let req = h.alter_partition_req(
        leader,
        tid,
        0,
        h2_p.leader_epoch,
        p.partition_epoch,
        &shrunk,
    );
    assert_eq!(
        code(&mut h, req).1,
        Some(ResponseError::FencedLeaderEpoch.code())
    );
    // Newer epochs than ours: NOT_CONTROLLER.
    let req = h.alter_partition_req(
        leader,
        tid,
        0,
        p.leader_epoch + 1,
        p.partition_epoch,
        &shrunk,
    );
    assert_eq!(
        code(&mut h, req).1,
        Some(ResponseError::NotController.code())
    );
    // Not the leader: INVALID_REQUEST (as Kafka).
    let req = h.alter_partition_req(follower, tid, 0, p.leader_epoch, p.partition_epoch, &shrunk);
    assert_eq!(
        code(&mut h, req).1,
        Some(ResponseError::InvalidRequest.code())
    );
    // ISR without the leader, or with a non-replica: INVALID_REQUEST.
    let req = h.alter_partition_req(
        leader,
        tid,
        0,
        p.leader_epoch,
        p.partition_epoch,
        &[follower],
    );
    assert_eq!(
        code(&mut h, req).1,
        Some(ResponseError::InvalidRequest.code())
    );
    let req = h.alter_partition_req(
        leader,
        tid,
        0,
        p.leader_epoch,
        p.partition_epoch,
        &[leader, 42],
    );
    assert_eq!(
        code(&mut h, req).1,
        Some(ResponseError::InvalidRequest.code())
    );

    // Success: shrink.
    let req = h.alter_partition_req(leader, tid, 0, p.leader_epoch, p.partition_epoch, &shrunk);
    let (records, resp) = h.state.alter_partition(&req);
    assert_eq!(records.len(), 1);
    let pr = &resp.topics[0].partitions[0];
    assert_eq!(pr.error_code, 0);
    assert_eq!(pr.leader_id.0, leader);
    assert_eq!(
        pr.leader_epoch, p.leader_epoch,
        "an ISR change keeps the leader epoch"
    );
    assert_eq!(pr.partition_epoch, p.partition_epoch + 1);
    assert_eq!(pr.isr.iter().map(|b| b.0).collect::<Vec<_>>(), shrunk);
    h.commit(records);
    assert_eq!(h.partition("t", 0).isr, shrunk);

    // The same request again: its partition epoch is now stale.
    assert_eq!(
        code(&mut h, req).1,
        Some(ResponseError::InvalidUpdateVersion.code())
    );

    // Expanding with a fenced replica: INELIGIBLE_REPLICA.
    let p = h.partition("t", 0);
    let records = h.state.fence_broker(follower);
    h.commit(records);
    let mut expanded = shrunk.clone();
    expanded.push(follower);
    let req = h.alter_partition_req(leader, tid, 0, p.leader_epoch, p.partition_epoch, &expanded);
    assert_eq!(
        code(&mut h, req).1,
        Some(ResponseError::IneligibleReplica.code())
    );
    // A wrong broker epoch for an ISR member: INELIGIBLE_REPLICA.
    let mut req = h.alter_partition_req(leader, tid, 0, p.leader_epoch, p.partition_epoch, &shrunk);
    req.topics[0].partitions[0].new_isr_with_epochs[1].broker_epoch = 12345;
    assert_eq!(
        code(&mut h, req).1,
        Some(ResponseError::IneligibleReplica.code())
    );
}

#[test]
fn create_topics_places_evenly_and_validates() {
    let mut h = cluster(3, ControllerConfig::default());
    let r = h.create_topic("even", 30, 3);
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.num_partitions, 30);
    assert_eq!(r.replication_factor, 3);
    let mut leaders = HashMap::new();
    for p in 0..30 {
        let part = h.partition("even", p);
        assert_eq!(part.isr, part.replicas);
        assert_eq!(part.leader, part.replicas[0]);
        assert_eq!((part.leader_epoch, part.partition_epoch), (0, 0));
        *leaders.entry(part.leader).or_insert(0) += 1;
    }
    assert_eq!(
        leaders.values().copied().collect::<Vec<_>>(),
        vec![10, 10, 10],
        "{leaders:?}"
    );
    let id = h.topic_id("even");
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(r.topic_id, id);

    // RF too large.
    let r = h.create_topic("big", 1, 4);
    assert_eq!(r.error_code, ResponseError::InvalidReplicationFactor.code());
    assert_eq!(
        r.error_message.as_ref().map(|m| m.as_str()),
        Some("Unable to replicate the partition 4 time(s): The target replication factor of 4 cannot be reached because only 3 broker(s) are registered.")
    );
    assert!(h.image().topic_id("big").is_none());
    // Already exists.
    let r = h.create_topic("even", 1, 1);
    assert_eq!(r.error_code, ResponseError::TopicAlreadyExists.code());
    assert_eq!(
        r.error_message.as_ref().map(|m| m.as_str()),
        Some("Topic 'even' already exists.")
    );
    // RF 0, bad partitions, bad name, bad min.insync.replicas.
    assert_eq!(
        h.create_topic("z", 1, 0).error_code,
        ResponseError::InvalidReplicationFactor.code()
    );
    assert_eq!(
        h.create_topic("z", 0, 1).error_code,
        ResponseError::InvalidPartitions.code()
    );
    assert_eq!(
        h.create_topic("a/b", 1, 1).error_code,
        ResponseError::InvalidTopicException.code()
    );
    let r = h.create_topic_with("z", 1, 1, &[("min.insync.replicas", "0")]);
    assert_eq!(r.error_code, ResponseError::InvalidConfig.code());
    assert!(h.image().topic_id("z").is_none());
    let r = h.create_topic_with("z", 1, 1, &[("min.insync.replicas", "2")]);
    assert_eq!(r.error_code, 0);
    assert_eq!(h.state.effective_min_isr("z"), 2);
    assert_eq!(h.state.effective_min_isr("even"), 1);

    // -1 → defaults.
    let mut h = cluster(
        3,
        ControllerConfig {
            default_replication_factor: 2,
            num_partitions: 4,
            ..ControllerConfig::default()
        },
    );
    let r = h.create_topic("d", -1, -1);
    assert_eq!(
        (r.error_code, r.num_partitions, r.replication_factor),
        (0, 4, 2)
    );

    // validate_only: a result, no records.
    let req = CreateTopicsRequest::default()
        .with_validate_only(true)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(TopicName(s("v")))
            .with_num_partitions(2)
            .with_replication_factor(3)]);
    let (records, resp) = h.state.create_topics(&req);
    assert!(records.is_empty());
    assert_eq!(resp.topics[0].error_code, 0);
    assert_eq!(resp.topics[0].num_partitions, 2);
}

#[test]
fn create_topics_with_manual_assignment() {
    let mut h = cluster(3, ControllerConfig::default());
    let assign = |p: i32, brokers: &[i32]| {
        create_topics_request::CreatableReplicaAssignment::default()
            .with_partition_index(p)
            .with_broker_ids(brokers.iter().map(|b| BrokerId(*b)).collect())
    };
    let req = |assignments| {
        CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s("m")))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_assignments(assignments),
        ])
    };
    let (records, resp) = h
        .state
        .create_topics(&req(vec![assign(0, &[2, 0]), assign(1, &[0, 5])]));
    assert!(records.is_empty());
    assert_eq!(
        resp.topics[0].error_code,
        ResponseError::InvalidReplicaAssignment.code()
    );
    let (records, resp) = h
        .state
        .create_topics(&req(vec![assign(0, &[2, 0]), assign(2, &[0, 1])]));
    assert!(records.is_empty());
    assert_eq!(
        resp.topics[0].error_code,
        ResponseError::InvalidReplicaAssignment.code()
    );
    let (records, resp) = h
        .state
        .create_topics(&req(vec![assign(0, &[2, 0]), assign(1, &[0, 1, 2])]));
    assert!(records.is_empty());
    assert_eq!(
        resp.topics[0].error_code,
        ResponseError::InvalidReplicaAssignment.code()
    );
    let (records, resp) = h
        .state
        .create_topics(&req(vec![assign(0, &[2, 0]), assign(1, &[0, 1])]));
    assert_eq!(resp.topics[0].error_code, 0);
    h.commit(records);
    assert_eq!(h.partition("m", 0).replicas, vec![2, 0]);
    assert_eq!(h.partition("m", 0).leader, 2);
    assert_eq!(h.partition("m", 1).leader, 0);
}

#[test]
fn delete_topics_by_name_and_id() {
    let mut h = cluster(1, ControllerConfig::default());
    h.create_topic_with("a", 2, 1, &[("min.insync.replicas", "1")]);
    h.create_topic("b", 1, 1);
    let b_id = h.topic_id("b");
    let req = DeleteTopicsRequest::default()
        .with_topic_names(vec![TopicName(s("a")), TopicName(s("nope"))])
        .with_topics(vec![
            delete_topics_request::DeleteTopicState::default().with_topic_id(b_id),
            delete_topics_request::DeleteTopicState::default().with_topic_id(Uuid::new_v4()),
        ]);
    let (records, resp) = h.state.delete_topics(&req);
    let codes: Vec<i16> = resp.responses.iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        vec![
            0,
            ResponseError::UnknownTopicOrPartition.code(),
            0,
            ResponseError::UnknownTopicId.code()
        ]
    );
    assert_eq!(
        resp.responses[2].name.as_ref().map(|n| n.0.as_str()),
        Some("b")
    );
    h.commit(records);
    assert!(h.image().topics().is_empty());
    assert!(h.image().topic_config("a", "min.insync.replicas").is_none());
    // The name can be reused, with a new id.
    h.create_topic("b", 1, 1);
    assert_ne!(h.topic_id("b"), b_id);
}

#[test]
fn create_partitions_adds_and_validates() {
    let mut h = cluster(3, ControllerConfig::default());
    h.create_topic("t", 2, 2);
    let req = |count: i32| {
        CreatePartitionsRequest::default().with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(TopicName(s("t")))
                .with_count(count)
                .with_assignments(None),
        ])
    };
    let (records, resp) = h.state.create_partitions(&req(2));
    assert!(records.is_empty());
    assert_eq!(
        resp.results[0].error_code,
        ResponseError::InvalidPartitions.code()
    );
    assert_eq!(
        resp.results[0].error_message.as_ref().map(|m| m.as_str()),
        Some("Topic already has 2 partition(s).")
    );
    let (_, resp) = h.state.create_partitions(&req(1));
    assert_eq!(
        resp.results[0].error_code,
        ResponseError::InvalidPartitions.code()
    );
    let (records, resp) = h.state.create_partitions(&req(5));
    assert_eq!(resp.results[0].error_code, 0);
    h.commit(records);
    assert_eq!(h.image().topic_by_name("t").unwrap().partitions.len(), 5);
    for p in 2..5 {
        assert_eq!(h.partition("t", p).replicas.len(), 2);
    }
    let unknown = CreatePartitionsRequest::default().with_topics(vec![
        create_partitions_request::CreatePartitionsTopic::default()
            .with_name(TopicName(s("x")))
            .with_count(3)
            .with_assignments(None),
    ]);
    let (_, resp) = h.state.create_partitions(&unknown);
    assert_eq!(
        resp.results[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    // Manual assignments must match the count and the replication factor.
    let manual = |sets: Vec<Vec<i32>>| {
        CreatePartitionsRequest::default().with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(TopicName(s("t")))
                .with_count(6)
                .with_assignments(Some(
                    sets.into_iter()
                        .map(|b| {
                            create_partitions_request::CreatePartitionsAssignment::default()
                                .with_broker_ids(b.into_iter().map(BrokerId).collect())
                        })
                        .collect(),
                )),
        ])
    };
    let (_, resp) = h.state.create_partitions(&manual(vec![vec![0]]));
    assert_eq!(
        resp.results[0].error_code,
        ResponseError::InvalidReplicaAssignment.code()
    );
    let (records, resp) = h.state.create_partitions(&manual(vec![vec![2, 1]]));
    assert_eq!(resp.results[0].error_code, 0);
    h.commit(records);
    assert_eq!(h.partition("t", 5).replicas, vec![2, 1]);
}

#[test]
fn elect_preferred_leaders_and_auto_rebalance() {
    let config = ControllerConfig {
        auto_leader_rebalance_enable: false,
        ..ControllerConfig::default()
    };
    let mut h = cluster(2, config);
    h.create_topic("t", 2, 2);
    // Broker 0 shuts down uncleanly (fenced): its partitions move to 1.
    let records = h.state.fence_broker(0);
    h.commit(records);
    for p in 0..2 {
        assert_eq!(h.partition("t", p).leader, 1);
    }
    // It comes back and rejoins the ISRs.
    h.now = 1000;
    h.heartbeat(1, false, false);
    h.register_and_unfence(0);
    for p in 0..2 {
        let part = h.partition("t", p);
        let mut isr = part.isr.clone();
        isr.push(0);
        let req = h.alter_partition_req(
            1,
            h.topic_id("t"),
            p,
            part.leader_epoch,
            part.partition_epoch,
            &isr,
        );
        let (records, resp) = h.state.alter_partition(&req);
        assert_eq!(resp.topics[0].partitions[0].error_code, 0);
        h.commit(records);
    }
    let preferred_0: Vec<i32> = (0..2)
        .filter(|p| h.partition("t", *p).replicas[0] == 0)
        .collect();
    assert_eq!(preferred_0.len(), 1);
    // No automatic rebalance when disabled.
    assert!(h.state.tick(h.now).is_empty());
    // ElectLeaders (preferred, all partitions): only the partition needing it is reported.
    let req = ElectLeadersRequest::default()
        .with_election_type(0)
        .with_topic_partitions(None);
    let (records, resp) = h.state.elect_leaders(&req);
    assert_eq!(records.len(), 1);
    assert_eq!(resp.replica_election_results.len(), 1);
    assert_eq!(resp.replica_election_results[0].partition_result.len(), 1);
    assert_eq!(
        resp.replica_election_results[0].partition_result[0].error_code,
        0
    );
    h.commit(records);
    assert_eq!(h.partition("t", preferred_0[0]).leader, 0);
    // Asking again for that partition: ELECTION_NOT_NEEDED.
    let req = ElectLeadersRequest::default()
        .with_election_type(0)
        .with_topic_partitions(Some(vec![elect_leaders_request::TopicPartitions::default(
        )
        .with_topic(TopicName(s("t")))
        .with_partitions(vec![preferred_0[0]])]));
    let (records, resp) = h.state.elect_leaders(&req);
    assert!(records.is_empty());
    assert_eq!(
        resp.replica_election_results[0].partition_result[0].error_code,
        ResponseError::ElectionNotNeeded.code()
    );
}

#[test]
fn automatic_preferred_leader_rebalance() {
    let mut h = cluster(2, ControllerConfig::default());
    h.create_topic("t", 4, 2);
    let records = h.state.fence_broker(0);
    h.commit(records);
    h.now = 1000;
    h.heartbeat(1, false, false);
    h.register_and_unfence(0);
    // Not in the ISR yet: nothing to rebalance.
    assert!(h.state.tick(h.now).is_empty());
    for p in 0..4 {
        let part = h.partition("t", p);
        let req = h.alter_partition_req(
            1,
            h.topic_id("t"),
            p,
            part.leader_epoch,
            part.partition_epoch,
            &[1, 0],
        );
        let (records, _) = h.state.alter_partition(&req);
        h.commit(records);
    }
    h.now = 1000 + 300_000;
    h.heartbeat(0, false, false);
    h.heartbeat(1, false, false);
    let records = h.state.tick(h.now);
    assert!(!records.is_empty());
    h.commit(records);
    for p in 0..4 {
        let part = h.partition("t", p);
        assert_eq!(part.leader, part.replicas[0]);
    }
}

#[test]
fn unclean_election_only_when_enabled() {
    for (topic_config, default, expect_unclean) in [
        (None, false, false),
        (None, true, true),
        (Some("true"), false, true),
        (Some("false"), true, false),
    ] {
        let config = ControllerConfig {
            unclean_leader_election_enable: default,
            auto_leader_rebalance_enable: false,
            ..ControllerConfig::default()
        };
        let mut h = cluster(2, config);
        let configs: Vec<(&str, &str)> = topic_config
            .map(|v| vec![("unclean.leader.election.enable", v)])
            .unwrap_or_default();
        h.create_topic_with("t", 1, 2, &configs);
        let p = h.partition("t", 0);
        let (leader, follower) = (p.leader, 1 - p.leader);
        // The follower drops out of the ISR, then the leader dies.
        let req = h.alter_partition_req(
            leader,
            h.topic_id("t"),
            0,
            p.leader_epoch,
            p.partition_epoch,
            &[leader],
        );
        let (records, _) = h.state.alter_partition(&req);
        h.commit(records);
        let records = h.state.fence_broker(leader);
        h.commit(records);
        let p = h.partition("t", 0);
        if expect_unclean {
            assert_eq!(p.leader, follower, "case {topic_config:?}/{default}");
            assert_eq!(p.isr, vec![follower]);
        } else {
            assert_eq!(p.leader, NO_LEADER, "case {topic_config:?}/{default}");
            assert_eq!(p.isr, vec![leader]);
            assert!(h.state.tick(h.now).is_empty());
            // An explicit unclean election still works.
            let req = ElectLeadersRequest::default()
                .with_election_type(1)
                .with_topic_partitions(Some(vec![
                    elect_leaders_request::TopicPartitions::default()
                        .with_topic(TopicName(s("t")))
                        .with_partitions(vec![0]),
                ]));
            let (records, resp) = h.state.elect_leaders(&req);
            assert_eq!(
                resp.replica_election_results[0].partition_result[0].error_code,
                0
            );
            h.commit(records);
            assert_eq!(h.partition("t", 0).leader, follower);
        }
    }
}

#[test]
fn producer_ids_and_describe_cluster() {
    let mut h = cluster(2, ControllerConfig::default());
    let req = AllocateProducerIdsRequest::default()
        .with_broker_id(BrokerId(1))
        .with_broker_epoch(h.epoch(1));
    let (records, resp) = h.state.allocate_producer_ids(&req);
    assert_eq!(
        (
            resp.error_code,
            resp.producer_id_start.0,
            resp.producer_id_len
        ),
        (0, 0, 1000)
    );
    h.commit(records);
    let (records, resp) = h.state.allocate_producer_ids(&req);
    assert_eq!(resp.producer_id_start.0, 1000);
    h.commit(records);
    assert_eq!(h.image().next_producer_id(), 2000);
    let (records, resp) = h
        .state
        .allocate_producer_ids(&req.clone().with_broker_epoch(-5));
    assert!(records.is_empty());
    assert_eq!(resp.error_code, ResponseError::StaleBrokerEpoch.code());

    let records = h.state.fence_broker(0);
    h.commit(records);
    let req = DescribeClusterRequest::default().with_endpoint_type(1);
    let resp = h.state.describe_cluster(&req, "PLAINTEXT", 3000);
    assert_eq!(resp.cluster_id.as_str(), CLUSTER);
    assert_eq!(resp.controller_id.0, 3000);
    assert_eq!(resp.brokers.len(), 1);
    assert_eq!(
        (resp.brokers[0].broker_id.0, resp.brokers[0].port),
        (1, 9093)
    );
    let resp = h.state.describe_cluster(
        &req.clone().with_include_fenced_brokers(true),
        "PLAINTEXT",
        3000,
    );
    assert_eq!(resp.brokers.len(), 2);
    assert!(h
        .state
        .describe_cluster(&req, "OTHER", 3000)
        .brokers
        .is_empty());
}

#[test]
fn snapshot_round_trip_and_replay_agree() {
    let mut h = cluster(3, ControllerConfig::default());
    h.create_topic_with("t", 3, 3, &[("min.insync.replicas", "2")]);
    let records = h.state.fence_broker(2);
    h.commit(records);
    let snapshot = h.image().to_snapshot().unwrap();
    let restored = MetadataImage::from_snapshot(&snapshot).unwrap();
    assert_eq!(&restored, h.image());
    let mut replayed = MetadataImage::new();
    for (index, records) in &h.log {
        replayed.apply_entry(*index, records);
    }
    assert_eq!(&replayed, h.image());
    assert!(MetadataImage::from_snapshot(b"not json").is_err());
}

#[test]
fn records_that_do_not_fit_are_ignored() {
    let mut image = MetadataImage::new();
    let bogus = Uuid::new_v4();
    image.apply_entry(
        1,
        &[
            MetadataRecord::PartitionChange {
                topic_id: bogus,
                partition: 0,
                isr: Some(vec![1]),
                leader: Some(1),
            },
            MetadataRecord::Partition {
                topic_id: bogus,
                partition: 0,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
            },
            MetadataRecord::RemoveTopic { topic_id: bogus },
            MetadataRecord::FenceBroker { id: 3, epoch: 1 },
            MetadataRecord::UnregisterBroker {
                broker_id: 3,
                broker_epoch: 1,
            },
        ],
    );
    assert_eq!(image.offset(), 1);
    assert!(image.topics().is_empty() && image.brokers().is_empty());
}

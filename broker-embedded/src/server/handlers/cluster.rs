//! The handlers' cluster mode (a server started with [`crate::ClusterHooks`]): Metadata from
//! the cluster view, topic administration forwarded to the controller, and Produce, Fetch and
//! ListOffsets through the replica manager (leadership and leader-epoch checks, acks=all,
//! replica fetches). Single-node servers never reach this file.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::elect_leaders_response::{
    PartitionResult as ElectPartitionResult, ReplicaElectionResult,
};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    TopicName,
};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::debug;

use super::produce_fetch::{null_key_record_errors, timestamp_record_errors};
use super::transactions::verify_transactional_produce;
use super::{s, Context};
use crate::server::{ClusterHooks, TopicInfo};
use crate::{AppendOrigin, TopicPartition};

fn metadata_topic(t: &TopicInfo, live: &[i32]) -> MetadataResponseTopic {
    let mut mt = MetadataResponseTopic::default();
    mt.name = Some(TopicName(s(t.name.clone())));
    mt.topic_id = t.topic_id;
    mt.is_internal = t.internal;
    mt.partitions = t
        .partitions
        .iter()
        .map(|p| {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = p.partition;
            mp.leader_epoch = p.leader_epoch;
            mp.replica_nodes = p.replicas.iter().map(|r| BrokerId(*r)).collect();
            mp.isr_nodes = p.isr.iter().map(|r| BrokerId(*r)).collect();
            mp.offline_replicas = p.offline_replicas.iter().map(|r| BrokerId(*r)).collect();
            if p.leader >= 0 && live.contains(&p.leader) {
                mp.leader_id = BrokerId(p.leader);
            } else {
                mp.leader_id = BrokerId(-1);
                mp.error_code = ResponseError::LeaderNotAvailable.code();
            }
            mp
        })
        .collect();
    mt
}

/// Metadata from the cluster view: the unfenced brokers with an endpoint on this listener,
/// partitions with leader epochs, replicas, ISR and offline replicas; leaderless partitions
/// (or leaders not reachable on this listener) get LEADER_NOT_AVAILABLE. Unknown topics are
/// created through the controller when allowed, answered LEADER_NOT_AVAILABLE meanwhile (as
/// Kafka does).
pub(super) async fn metadata(
    ctx: &Context,
    hooks: &ClusterHooks,
    r: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let view = &hooks.view;
    let mut resp = MetadataResponse::default();
    let mut live = Vec::new();
    for b in view.brokers().into_iter().filter(|b| !b.fenced) {
        let Some(e) = b
            .endpoints
            .iter()
            .find(|e| e.listener == hooks.listener_name)
        else {
            continue;
        };
        let mut mb = MetadataResponseBroker::default();
        mb.node_id = BrokerId(b.id);
        mb.host = s(e.host.clone());
        mb.port = e.port;
        mb.rack = b.rack.clone().map(s);
        live.push(b.id);
        resp.brokers.push(mb);
    }
    resp.cluster_id = Some(s(view.cluster_id()));
    resp.controller_id = BrokerId(view.controller_id());
    let allow_create = (version < 4 || r.allow_auto_topic_creation)
        && ctx.broker.config().auto_create_topics_enable;
    resp.topics = match r.topics {
        None => view
            .topics()
            .iter()
            .map(|t| metadata_topic(t, &live))
            .collect(),
        Some(requested) => {
            let mut out = Vec::new();
            let mut to_create = Vec::new();
            for t in requested {
                let Some(name) = t.name.map(|n| n.0.as_str().to_string()) else {
                    let mut mt = MetadataResponseTopic::default();
                    mt.topic_id = t.topic_id;
                    match view.topic_by_id(t.topic_id) {
                        Some(info) => out.push(metadata_topic(&info, &live)),
                        None => {
                            mt.error_code = ResponseError::UnknownTopicId.code();
                            out.push(mt);
                        }
                    }
                    continue;
                };
                let mut mt = MetadataResponseTopic::default();
                mt.name = Some(TopicName(s(name.clone())));
                mt.is_internal = name.starts_with("__");
                if crate::validate_topic_name(&name).is_err() {
                    mt.error_code = ResponseError::InvalidTopicException.code();
                    out.push(mt);
                    continue;
                }
                match view.topic(&name) {
                    Some(info) => out.push(metadata_topic(&info, &live)),
                    None if allow_create && hooks.admin.is_some() => {
                        mt.error_code = ResponseError::LeaderNotAvailable.code();
                        to_create.push(name);
                        out.push(mt);
                    }
                    None => {
                        mt.error_code = ResponseError::UnknownTopicOrPartition.code();
                        out.push(mt);
                    }
                }
            }
            if let (Some(admin), false) = (&hooks.admin, to_create.is_empty()) {
                let mut req = CreateTopicsRequest::default();
                req.timeout_ms = 30_000;
                req.topics = to_create
                    .iter()
                    .map(|n| {
                        let mut c = CreatableTopic::default();
                        c.name = TopicName(s(n.clone()));
                        c.num_partitions = -1;
                        c.replication_factor = -1;
                        c
                    })
                    .collect();
                let created = admin.create_topics(req).await;
                for t in created.topics {
                    debug!(
                        topic = t.name.0.as_str(),
                        error_code = t.error_code,
                        "auto-created topic through the controller"
                    );
                }
            }
            out
        }
    };
    resp
}

/// CreateTopics through the controller (NOT_CONTROLLER per topic without an admin).
pub(super) async fn create_topics(
    hooks: &ClusterHooks,
    r: CreateTopicsRequest,
) -> CreateTopicsResponse {
    match &hooks.admin {
        Some(admin) => admin.create_topics(r).await,
        None => {
            let mut resp = CreateTopicsResponse::default();
            resp.topics = r
                .topics
                .into_iter()
                .map(|t| {
                    let mut res = CreatableTopicResult::default();
                    res.name = t.name;
                    res.num_partitions = -1;
                    res.replication_factor = -1;
                    res.error_code = ResponseError::NotController.code();
                    res
                })
                .collect();
            resp
        }
    }
}

/// DeleteTopics through the controller (NOT_CONTROLLER per topic without an admin).
pub(super) async fn delete_topics(
    hooks: &ClusterHooks,
    r: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    match &hooks.admin {
        Some(admin) => admin.delete_topics(r).await,
        None => {
            let mut resp = DeleteTopicsResponse::default();
            let names: Vec<_> = r
                .topic_names
                .iter()
                .cloned()
                .chain(r.topics.iter().filter_map(|t| t.name.clone()))
                .collect();
            resp.responses = names
                .into_iter()
                .map(|n| {
                    let mut res = DeletableTopicResult::default();
                    res.name = Some(n);
                    res.error_code = ResponseError::NotController.code();
                    res
                })
                .collect();
            resp
        }
    }
}

/// CreatePartitions through the controller (NOT_CONTROLLER per topic without an admin).
pub(super) async fn create_partitions(
    hooks: &ClusterHooks,
    r: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    match &hooks.admin {
        Some(admin) => admin.create_partitions(r).await,
        None => {
            let mut resp = CreatePartitionsResponse::default();
            resp.results = r
                .topics
                .into_iter()
                .map(|t| {
                    let mut res = CreatePartitionsTopicResult::default();
                    res.name = t.name;
                    res.error_code = ResponseError::NotController.code();
                    res
                })
                .collect();
            resp
        }
    }
}

/// DescribeCluster (KIP-700) from the cluster view: the unfenced brokers with an endpoint on
/// this listener, the cluster id and the broker named as controller. Only the brokers endpoint
/// type (1) is served, as by Kafka's brokers (UNSUPPORTED_ENDPOINT_TYPE otherwise).
pub(super) fn describe_cluster(
    hooks: &ClusterHooks,
    r: &kafka_protocol::messages::DescribeClusterRequest,
) -> kafka_protocol::messages::DescribeClusterResponse {
    use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    use kafka_protocol::messages::DescribeClusterResponse;
    let mut resp = DescribeClusterResponse::default()
        .with_endpoint_type(r.endpoint_type)
        .with_cluster_id(StrBytes::from_string(hooks.view.cluster_id()))
        .with_controller_id(BrokerId(hooks.view.controller_id()));
    if r.endpoint_type != 1 {
        return resp
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(StrBytes::from_string(format!(
                "unsupported endpoint type {}",
                r.endpoint_type
            ))));
    }
    resp.brokers = hooks
        .view
        .brokers()
        .into_iter()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            b.endpoints
                .iter()
                .find(|e| e.listener == hooks.listener_name)
                .map(|e| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.id))
                        .with_host(StrBytes::from_string(e.host.clone()))
                        .with_port(e.port)
                        .with_rack(b.rack.clone().map(StrBytes::from_string))
                })
        })
        .collect();
    resp
}

/// ElectLeaders, forwarded to the controller; without one every partition gets NOT_CONTROLLER.
pub(super) async fn elect_leaders(
    hooks: &ClusterHooks,
    r: ElectLeadersRequest,
) -> ElectLeadersResponse {
    match &hooks.admin {
        Some(admin) => admin.elect_leaders(r).await,
        None => {
            let mut resp = ElectLeadersResponse::default();
            resp.replica_election_results = r
                .topic_partitions
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    let mut res = ReplicaElectionResult::default();
                    res.topic = t.topic;
                    res.partition_result = t
                        .partitions
                        .into_iter()
                        .map(|p| {
                            let mut pr = ElectPartitionResult::default();
                            pr.partition_id = p;
                            pr.error_code = ResponseError::NotController.code();
                            pr
                        })
                        .collect();
                    res
                })
                .collect();
            resp
        }
    }
}

/// The error for a partition this broker does not replicate: NOT_LEADER_OR_FOLLOWER when the
/// cluster knows the partition, else UNKNOWN_TOPIC_OR_PARTITION.
fn not_here(hooks: &ClusterHooks, tp: &TopicPartition) -> i16 {
    let known = hooks
        .view
        .topic(&tp.topic)
        .is_some_and(|t| t.partitions.iter().any(|p| p.partition == tp.partition));
    if known {
        ResponseError::NotLeaderOrFollower.code()
    } else {
        ResponseError::UnknownTopicOrPartition.code()
    }
}

/// Produce as a partition leader: NOT_LEADER_OR_FOLLOWER off the leader, NOT_ENOUGH_REPLICAS
/// for acks=all below `min.insync.replicas`, the append stamped with the leader epoch, then
/// (acks=all) a wait for the ISR bounded by the request's timeout.
pub(super) async fn produce(
    ctx: &Context,
    hooks: &ClusterHooks,
    r: ProduceRequest,
) -> Option<ProduceResponse> {
    let rm = &hooks.replicas;
    let acks = r.acks;
    let bad_acks = !matches!(acks, -1..=1);
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(u64::try_from(r.timeout_ms.max(0)).unwrap_or(0));
    let mut resp = ProduceResponse::default();
    // (topic index, partition index, tp, leader epoch, required offset, min ISR)
    let mut waits = Vec::new();
    for topic in r.topic_data {
        let name = topic.name.0.as_str().to_string();
        let mut tr = TopicProduceResponse::default();
        tr.name = topic.name.clone();
        for p in topic.partition_data {
            let mut pr = PartitionProduceResponse::default();
            pr.index = p.index;
            pr.base_offset = -1;
            pr.log_append_time_ms = -1;
            pr.log_start_offset = -1;
            let tp = TopicPartition::new(name.clone(), p.index);
            let sent = p.records.clone();
            let result = if bad_acks {
                Err(ResponseError::InvalidRequiredAcks.code())
            } else if rm.replica_log(&tp).is_none() {
                Err(not_here(hooks, &tp))
            } else {
                match p.records {
                    None => Err(ResponseError::CorruptMessage.code()),
                    Some(records) => {
                        let refused = r.transactional_id.as_ref().and_then(|id| {
                            verify_transactional_produce(
                                ctx,
                                id.0.as_str(),
                                &name,
                                p.index,
                                &records,
                            )
                        });
                        match refused {
                            Some(code) => Err(code),
                            None => {
                                let min_isr =
                                    ctx.broker.min_insync_replicas(&name, p.index).unwrap_or(1);
                                let mut buf = records.to_vec();
                                rm.append_as_leader_with_cause(
                                    &tp,
                                    &mut buf,
                                    AppendOrigin::Client,
                                    acks,
                                    min_isr,
                                )
                                .map(|(epoch, info)| (epoch, info, min_isr))
                                .map_err(|(code, cause)| {
                                    // KIP-467: name the records refused for their timestamps.
                                    if let Some(e) = cause {
                                        pr.record_errors = timestamp_record_errors(&e);
                                        if !pr.record_errors.is_empty() {
                                            pr.error_message = Some(s(e.to_string()));
                                        }
                                    }
                                    code
                                })
                            }
                        }
                    }
                }
            };
            match result {
                Ok((epoch, info, min_isr)) => {
                    ctx.broker.notify_appended();
                    pr.base_offset = info.base_offset;
                    pr.log_append_time_ms = info.log_append_time;
                    pr.log_start_offset = info.log_start_offset;
                    if acks == -1 {
                        waits.push((
                            resp.responses.len(),
                            tr.partition_responses.len(),
                            tp,
                            epoch,
                            info.last_offset + 1,
                            min_isr,
                        ));
                    }
                }
                Err(code) => {
                    debug!(topic = name, partition = p.index, code, "produce rejected");
                    pr.error_code = code;
                    // KIP-467: name the records refused for null keys on a compacted topic.
                    let compacted = ctx
                        .broker
                        .partition_log(&name, p.index)
                        .is_ok_and(|l| l.config().cleanup_policy.compact);
                    if code == ResponseError::InvalidRecord.code() && compacted {
                        if let Some(sent) = &sent {
                            pr.record_errors = null_key_record_errors(sent);
                            if !pr.record_errors.is_empty() {
                                pr.error_message = Some(s(
                                    "a compacted topic does not accept records without a key",
                                ));
                            }
                        }
                    }
                }
            }
            tr.partition_responses.push(pr);
        }
        resp.responses.push(tr);
    }
    for (ti, pi, tp, epoch, required, min_isr) in waits {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let code = rm.wait_for_acks(&tp, epoch, required, min_isr, left).await;
        if let Some(pr) = resp
            .responses
            .get_mut(ti)
            .and_then(|t| t.partition_responses.get_mut(pi))
        {
            pr.error_code = code;
        }
    }
    if acks == 0 {
        return None;
    }
    Some(resp)
}

/// Fetch in cluster mode: replica fetches (replica id ≥ 0, or `replica_state` in v15+) go to
/// the leader-side replica path; consumers' partitions are checked for leadership and leader
/// epoch first (errors carry `current_leader`), and the rest are read as in single-node mode.
pub(super) async fn fetch(
    ctx: &Context,
    hooks: &ClusterHooks,
    mut r: FetchRequest,
) -> FetchResponse {
    let rm = &hooks.replicas;
    if r.replica_id.0 >= 0 || r.replica_state.replica_id.0 >= 0 {
        return rm.handle_replica_fetch(r).await;
    }
    let mut refused: Vec<(TopicName, PartitionData)> = Vec::new();
    for t in &mut r.topics {
        let name = t.topic.0.as_str().to_string();
        t.partitions.retain(|p| {
            let tp = TopicPartition::new(name.clone(), p.partition);
            let epoch = (p.current_leader_epoch >= 0).then_some(p.current_leader_epoch);
            let check = match rm.replica_log(&tp) {
                None => Err(not_here(hooks, &tp)),
                Some(_) => rm.check_leader(&tp, epoch, true),
            };
            match check {
                Ok(()) => true,
                Err(code) => {
                    let mut pd = PartitionData::default();
                    pd.partition_index = p.partition;
                    pd.error_code = code;
                    pd.high_watermark = -1;
                    pd.last_stable_offset = -1;
                    pd.log_start_offset = -1;
                    pd.preferred_read_replica = BrokerId(-1);
                    pd.records = Some(Bytes::new());
                    if let Some(info) = hooks.view.topic(&tp.topic).and_then(|ti| {
                        ti.partitions
                            .into_iter()
                            .find(|q| q.partition == tp.partition)
                    }) {
                        pd.current_leader.leader_id = BrokerId(info.leader);
                        pd.current_leader.leader_epoch = info.leader_epoch;
                    }
                    refused.push((t.topic.clone(), pd));
                    false
                }
            }
        });
    }
    let any_left = r.topics.iter().any(|t| !t.partitions.is_empty());
    let mut resp = if any_left || refused.is_empty() {
        if !refused.is_empty() {
            // Answer the refused partitions at once (Kafka completes a fetch with errors).
            r.max_wait_ms = 0;
        }
        super::produce_fetch::fetch(ctx, r).await
    } else {
        FetchResponse::default()
    };
    for (topic, pd) in refused {
        match resp.responses.iter_mut().find(|t| t.topic == topic) {
            Some(t) => t.partitions.push(pd),
            None => {
                let mut t = FetchableTopicResponse::default();
                t.topic = topic;
                t.partitions.push(pd);
                resp.responses.push(t);
            }
        }
    }
    resp
}

/// ListOffsets in cluster mode: from a follower (replica id ≥ 0) the leader's log start / log
/// end offsets; from consumers after the leadership and leader-epoch checks, as in
/// single-node mode, with the leader epoch for the latest offset.
pub(super) fn list_offsets(
    ctx: &Context,
    hooks: &ClusterHooks,
    mut r: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let rm = &hooks.replicas;
    let from_replica = r.replica_id.0 >= 0;
    let mut refused: Vec<(TopicName, ListOffsetsPartitionResponse)> = Vec::new();
    let mut replica_answers: Vec<(TopicName, ListOffsetsPartitionResponse)> = Vec::new();
    for t in &mut r.topics {
        let name = t.name.0.as_str().to_string();
        t.partitions.retain(|p| {
            let tp = TopicPartition::new(name.clone(), p.partition_index);
            let epoch = (p.current_leader_epoch >= 0).then_some(p.current_leader_epoch);
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            pr.leader_epoch = -1;
            let check = match rm.replica_log(&tp) {
                None => Err(not_here(hooks, &tp)),
                Some(_) => rm.check_leader(&tp, epoch, true),
            };
            if let Err(code) = check {
                pr.error_code = code;
                refused.push((t.name.clone(), pr));
                return false;
            }
            if from_replica {
                if let Some(log) = rm.replica_log(&tp) {
                    match p.timestamp {
                        -2 => pr.offset = log.log_start_offset(),
                        -1 => pr.offset = log.log_end_offset(),
                        _ => pr.error_code = ResponseError::InvalidRequest.code(),
                    }
                    pr.leader_epoch = rm.current_leader(&tp).map_or(-1, |(_, e)| e);
                }
                replica_answers.push((t.name.clone(), pr));
                return false;
            }
            true
        });
    }
    let mut resp = super::produce_fetch::list_offsets(ctx, r.clone());
    for t in &mut resp.topics {
        let Some(req) = r.topics.iter().find(|q| q.name == t.name) else {
            continue;
        };
        for p in &mut t.partitions {
            let latest = req
                .partitions
                .iter()
                .any(|q| q.partition_index == p.partition_index && q.timestamp == -1);
            let tp = TopicPartition::new(t.name.0.as_str(), p.partition_index);
            p.leader_epoch = match rm.current_leader(&tp) {
                Some((_, e)) if latest && p.error_code == 0 => e,
                _ => -1,
            };
        }
    }
    for (name, pr) in refused.into_iter().chain(replica_answers) {
        match resp.topics.iter_mut().find(|t| t.name == name) {
            Some(t) => t.partitions.push(pr),
            None => {
                let mut t = ListOffsetsTopicResponse::default();
                t.name = name;
                t.partitions.push(pr);
                resp.topics.push(t);
            }
        }
    }
    resp
}

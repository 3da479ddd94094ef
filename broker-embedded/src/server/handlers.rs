//! One function per Kafka API: decode-free business logic from request structs to response
//! structs. Per-partition and per-resource failures become Kafka error codes in the response;
//! nothing here can fail the connection.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use kafka_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    alter_configs_response, delete_groups_response, describe_groups_response,
    incremental_alter_configs_response, join_group_response, leave_group_response,
    list_groups_response, offset_commit_response, offset_delete_response, offset_fetch_response,
    produce_response, AlterConfigsRequest, AlterConfigsResponse, ApiKey, ApiVersionsRequest,
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest,
    DeleteGroupsResponse, DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    DescribeGroupsResponse, FetchRequest, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, InitProducerIdRequest, InitProducerIdResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, ProduceRequest, ProducerId, RequestHeader, RequestKind, ResponseKind,
    SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::{debug, info};

use super::group::{GroupCoordinator, JoinRequest, JoinResult, OffsetDeleteScope, SyncResult};
use super::{Endpoint, ServerConfig};
use crate::{
    AlterConfigOp, AppendOrigin, Broker, BrokerError, ConfigSource, FetchData, IsolationLevel,
    NewTopic, OffsetSpec, TOPIC_CONFIG_KEYS,
};
use std::net::SocketAddr;

pub(crate) struct Context {
    pub(crate) groups: std::sync::Arc<GroupCoordinator>,
    pub(crate) broker: Broker,
    pub(crate) endpoint: Endpoint,
    pub(crate) config: ServerConfig,
    pub(crate) connections: AtomicUsize,
}

/// The versions implemented, per API; `None` = not implemented (never advertised).
pub(crate) fn supported_versions(api: ApiKey) -> Option<(i16, i16)> {
    Some(match api {
        ApiKey::Produce => (3, 9),
        ApiKey::Fetch => (4, 12),
        ApiKey::ListOffsets => (1, 6),
        ApiKey::Metadata => (1, 12),
        ApiKey::ApiVersions => (0, 3),
        ApiKey::CreateTopics => (2, 7),
        ApiKey::DeleteTopics => (1, 6),
        ApiKey::DescribeConfigs => (1, 4),
        ApiKey::AlterConfigs => (0, 2),
        ApiKey::CreatePartitions => (0, 3),
        ApiKey::IncrementalAlterConfigs => (0, 1),
        ApiKey::InitProducerId => (0, 4),
        ApiKey::FindCoordinator => (0, 3),
        ApiKey::OffsetCommit => (2, 8),
        ApiKey::OffsetFetch => (1, 7),
        ApiKey::JoinGroup => (0, 7),
        ApiKey::SyncGroup => (0, 5),
        ApiKey::Heartbeat => (0, 4),
        ApiKey::LeaveGroup => (0, 4),
        ApiKey::DescribeGroups => (0, 5),
        ApiKey::ListGroups => (0, 4),
        ApiKey::DeleteGroups => (0, 2),
        ApiKey::OffsetDelete => (0, 0),
        _ => return None,
    })
}

const ADVERTISED: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::Metadata,
    ApiKey::ApiVersions,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::DescribeConfigs,
    ApiKey::AlterConfigs,
    ApiKey::CreatePartitions,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::InitProducerId,
    ApiKey::FindCoordinator,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::DescribeGroups,
    ApiKey::ListGroups,
    ApiKey::DeleteGroups,
    ApiKey::OffsetDelete,
];

pub(crate) fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error_code;
    r.api_keys = ADVERTISED
        .iter()
        .filter_map(|api| {
            let (min, max) = supported_versions(*api)?;
            let mut v = ApiVersion::default();
            v.api_key = *api as i16;
            v.min_version = min;
            v.max_version = max;
            Some(v)
        })
        .collect();
    r
}

fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

fn err_code(e: &BrokerError) -> i16 {
    e.kafka_error().code()
}

/// Dispatches one decoded request. `None` means "send no response" (acks=0 produce).
pub(crate) async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    peer: SocketAddr,
    request: RequestKind,
) -> Option<ResponseKind> {
    let version = header.request_api_version;
    let mut response = dispatch(ctx, request, header, peer, version).await?;
    fit_to_version(&mut response, version);
    Some(response)
}

/// Resets fields that the negotiated version does not carry to their defaults. The encoder
/// refuses non-default values in fields a version lacks (unless Kafka marks them ignorable),
/// and older clients (e.g. librdkafka 2.0 asking for ListOffsets v2) must still get answers.
fn fit_to_version(response: &mut ResponseKind, v: i16) {
    match response {
        ResponseKind::Metadata(r) => {
            if v < 2 {
                r.cluster_id = None;
            }
            for t in &mut r.topics {
                if v < 10 {
                    t.topic_id = uuid::Uuid::nil();
                }
                for p in &mut t.partitions {
                    if v < 7 {
                        p.leader_epoch = -1;
                    }
                    if v < 5 {
                        p.offline_replicas.clear();
                    }
                }
            }
        }
        ResponseKind::ListOffsets(r) => {
            for t in &mut r.topics {
                for p in &mut t.partitions {
                    if v < 4 {
                        p.leader_epoch = -1;
                    }
                }
            }
        }
        ResponseKind::Produce(r) => {
            for t in &mut r.responses {
                for p in &mut t.partition_responses {
                    if v < 5 {
                        p.log_start_offset = -1;
                    }
                    if v < 8 {
                        p.error_message = None;
                        p.record_errors.clear();
                    }
                }
            }
        }
        ResponseKind::Fetch(r) => {
            for t in &mut r.responses {
                for p in &mut t.partitions {
                    if v < 5 {
                        p.log_start_offset = -1;
                    }
                    if v < 11 {
                        p.preferred_read_replica = BrokerId(-1);
                    }
                }
            }
        }
        ResponseKind::CreateTopics(r) => {
            for t in &mut r.topics {
                if v < 7 {
                    t.topic_id = uuid::Uuid::nil();
                }
                if v < 5 {
                    t.num_partitions = -1;
                    t.replication_factor = -1;
                    t.configs = Some(Vec::new());
                    t.topic_config_error_code = 0;
                }
            }
        }
        ResponseKind::DeleteTopics(r) => {
            for t in &mut r.responses {
                if v < 5 {
                    t.error_message = None;
                }
                if v < 6 {
                    t.topic_id = uuid::Uuid::nil();
                }
            }
        }
        ResponseKind::FindCoordinator(r) if v < 1 => r.error_message = None,
        ResponseKind::JoinGroup(r) => {
            if v < 7 {
                r.protocol_type = None;
                if r.protocol_name.is_none() {
                    r.protocol_name = Some(StrBytes::default());
                }
            }
            if v < 5 {
                for m in &mut r.members {
                    m.group_instance_id = None;
                }
            }
        }
        ResponseKind::SyncGroup(r) if v < 5 => {
            r.protocol_type = None;
            r.protocol_name = None;
        }
        ResponseKind::DescribeGroups(r) if v < 4 => {
            for g in &mut r.groups {
                for m in &mut g.members {
                    m.group_instance_id = None;
                }
            }
        }
        ResponseKind::ListGroups(r) if v < 4 => {
            for g in &mut r.groups {
                g.group_state = StrBytes::default();
            }
        }
        ResponseKind::OffsetFetch(r) => {
            for t in &mut r.topics {
                for p in &mut t.partitions {
                    if v < 5 {
                        p.committed_leader_epoch = -1;
                    }
                }
            }
        }
        ResponseKind::DescribeConfigs(r) => {
            for res in &mut r.results {
                for c in &mut res.configs {
                    if v < 3 {
                        c.config_type = 0;
                        c.documentation = Some(StrBytes::default());
                    }
                }
            }
        }
        _ => {}
    }
}

/// Runs an admin handler whose file-system work (creating or deleting partition directories,
/// fsyncing topic metadata: tens of milliseconds per topic) would otherwise hold a runtime
/// worker for seconds on a large request, and with it every connection task queued there:
/// heartbeats would stall until sessions time out. On the multi-threaded runtime the worker's
/// other tasks move to another thread meanwhile (`block_in_place`).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

async fn dispatch(
    ctx: &Context,
    request: RequestKind,
    header: &RequestHeader,
    peer: SocketAddr,
    version: i16,
) -> Option<ResponseKind> {
    Some(match request {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions(&r)),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata(ctx, r, version)),
        RequestKind::Produce(r) => return produce(ctx, r).map(ResponseKind::Produce),
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch(ctx, r).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets(ctx, r)),
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(blocking(|| create_topics(ctx, r)))
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(blocking(|| delete_topics(ctx, r, version)))
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(blocking(|| create_partitions(ctx, r)))
        }
        RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(describe_configs(ctx, r)),
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(blocking(|| alter_configs(ctx, r)))
        }
        RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(init_producer_id(ctx, &r)),
        RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(find_coordinator(ctx, &r)),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(offset_commit(ctx, r)),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(offset_fetch(ctx, r)),
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(join_group(ctx, r, header, peer, version).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(sync_group(ctx, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat(ctx, &r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(leave_group(ctx, r, version)),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(describe_groups(ctx, r)),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups(ctx, &r)),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(delete_groups(ctx, r)),
        RequestKind::OffsetDelete(r) => ResponseKind::OffsetDelete(offset_delete(ctx, r)),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(blocking(|| incremental_alter_configs(ctx, r)))
        }
        other => {
            // Unreachable in practice: versions outside `supported_versions` close the
            // connection before decoding. Answering nothing would hang the client, so log.
            debug!(request = ?std::mem::discriminant(&other), "request for an unadvertised API");
            return None;
        }
    })
}

/// InitProducerId for idempotent producers (no transactional id): as Kafka does, always a new
/// producer id with epoch 0 (the per-partition sequence state lives in each partition log).
/// Transactional ids need the transaction coordinator, which does not exist yet.
fn init_producer_id(ctx: &Context, r: &InitProducerIdRequest) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if r.transactional_id.is_some() {
        resp.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return resp;
    }
    match ctx.broker.allocate_producer_id() {
        Ok(id) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Err(e) => resp.error_code = err_code(&e),
    }
    resp
}

/// FindCoordinator for consumer groups: this broker coordinates every group. Transaction
/// coordinators do not exist yet.
fn find_coordinator(ctx: &Context, r: &FindCoordinatorRequest) -> FindCoordinatorResponse {
    let mut resp = FindCoordinatorResponse::default();
    if r.key_type != 0 {
        resp.error_code = ResponseError::CoordinatorNotAvailable.code();
        resp.error_message = Some(s("transactions are not supported yet"));
        resp.node_id = BrokerId(-1);
        resp.port = -1;
        return resp;
    }
    resp.node_id = BrokerId(ctx.broker.config().node_id);
    resp.host = s(ctx.endpoint.host.clone());
    resp.port = ctx.endpoint.port;
    resp
}

/// Largest commit metadata accepted (Kafka's `offset.metadata.max.bytes`).
const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// OffsetCommit: members commit with their generation (checked by the group coordinator);
/// consumers with manual assignment make "simple" commits (generation -1, no member id) to
/// groups without active members.
fn offset_commit(ctx: &Context, r: OffsetCommitRequest) -> OffsetCommitResponse {
    let b = &ctx.broker;
    let group = r.group_id.0.as_str().to_string();
    let group_error = if group.is_empty() {
        Some(ResponseError::InvalidGroupId.code())
    } else {
        ctx.groups.check_commit(
            &group,
            r.generation_id_or_member_epoch,
            r.member_id.as_str(),
            r.group_instance_id.as_ref().map(|i| i.as_str()),
        )
    };
    let now = crate::broker::now_ms();
    let mut resp = OffsetCommitResponse::default();
    let mut to_commit = Vec::new();
    let mut slots = Vec::new();
    for t in r.topics {
        let name = t.name.0.as_str().to_string();
        let mut tr = offset_commit_response::OffsetCommitResponseTopic::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = offset_commit_response::OffsetCommitResponsePartition::default();
            pr.partition_index = p.partition_index;
            let metadata = p
                .committed_metadata
                .map(|m| m.as_str().to_string())
                .unwrap_or_default();
            let exists = b
                .partition_count(&name)
                .is_ok_and(|n| p.partition_index >= 0 && (p.partition_index as u32) < n);
            pr.error_code = if let Some(code) = group_error {
                code
            } else if !exists {
                ResponseError::UnknownTopicOrPartition.code()
            } else if metadata.len() > OFFSET_METADATA_MAX_BYTES {
                ResponseError::OffsetMetadataTooLarge.code()
            } else {
                to_commit.push((
                    crate::TopicPartition::new(name.clone(), p.partition_index),
                    crate::OffsetAndMetadata {
                        offset: p.committed_offset,
                        leader_epoch: (p.committed_leader_epoch >= 0)
                            .then_some(p.committed_leader_epoch),
                        metadata,
                        commit_timestamp: now,
                    },
                ));
                slots.push((resp.topics.len(), tr.partitions.len()));
                0
            };
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    if let Err(e) = b.commit_offsets(&group, &to_commit) {
        let code = err_code(&e);
        for (t, p) in slots {
            resp.topics[t].partitions[p].error_code = code;
        }
    }
    resp
}

/// OffsetFetch: the committed offsets of a group (all of them when `topics` is null).
fn offset_fetch(ctx: &Context, r: OffsetFetchRequest) -> OffsetFetchResponse {
    let b = &ctx.broker;
    let group = r.group_id.0.as_str().to_string();
    let mut resp = OffsetFetchResponse::default();
    if group.is_empty() {
        resp.error_code = ResponseError::InvalidGroupId.code();
        return resp;
    }
    let committed = b.committed_offsets(&group);
    let wanted: Vec<(TopicName, Vec<i32>)> = match r.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for tp in committed.keys() {
                by_topic
                    .entry(tp.topic.clone())
                    .or_default()
                    .push(tp.partition);
            }
            by_topic
                .into_iter()
                .map(|(t, ps)| (TopicName(s(t)), ps))
                .collect()
        }
    };
    for (name, partitions) in wanted {
        let mut tr = offset_fetch_response::OffsetFetchResponseTopic::default();
        tr.name = name.clone();
        for p in partitions {
            let mut pr = offset_fetch_response::OffsetFetchResponsePartition::default();
            pr.partition_index = p;
            match committed.get(&crate::TopicPartition::new(name.0.as_str(), p)) {
                Some(om) => {
                    pr.committed_offset = om.offset;
                    pr.committed_leader_epoch = om.leader_epoch.unwrap_or(-1);
                    pr.metadata = Some(s(om.metadata.clone()));
                }
                None => {
                    pr.committed_offset = -1;
                    pr.committed_leader_epoch = -1;
                    pr.metadata = Some(s(""));
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

async fn join_group(
    ctx: &Context,
    r: JoinGroupRequest,
    header: &RequestHeader,
    peer: SocketAddr,
    version: i16,
) -> JoinGroupResponse {
    let rebalance_ms = if version >= 1 {
        r.rebalance_timeout_ms
    } else {
        r.session_timeout_ms
    };
    let rebalance_timeout = Duration::from_millis(rebalance_ms.max(0) as u64);
    let rx = ctx.groups.join(JoinRequest {
        group: r.group_id.0.as_str().to_string(),
        member_id: r.member_id.as_str().to_string(),
        instance_id: r.group_instance_id.map(|i| i.as_str().to_string()),
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.as_str().to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", peer.ip()),
        protocol_type: r.protocol_type.as_str().to_string(),
        protocols: r
            .protocols
            .into_iter()
            .map(|p| (p.name.as_str().to_string(), p.metadata))
            .collect(),
        session_timeout: Duration::from_millis(r.session_timeout_ms.max(0) as u64),
        rebalance_timeout,
        require_known_member_id: version >= 4,
    });
    let result = match tokio::time::timeout(rebalance_timeout + Duration::from_secs(5), rx).await {
        Ok(Ok(res)) => res,
        Ok(Err(_)) => JoinResult {
            error: ResponseError::UnknownMemberId.code(),
            ..JoinResult::default()
        },
        Err(_) => JoinResult {
            error: ResponseError::RebalanceInProgress.code(),
            ..JoinResult::default()
        },
    };
    let mut resp = JoinGroupResponse::default();
    resp.error_code = result.error;
    resp.generation_id = if result.error == 0 {
        result.generation
    } else {
        -1
    };
    resp.protocol_type = result.protocol_type.map(s);
    resp.protocol_name = Some(s(result.protocol.unwrap_or_default()));
    resp.leader = s(result.leader);
    resp.member_id = s(result.member_id);
    resp.members = result
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut m = join_group_response::JoinGroupResponseMember::default();
            m.member_id = s(id);
            m.group_instance_id = instance.map(s);
            m.metadata = metadata;
            m
        })
        .collect();
    resp
}

async fn sync_group(ctx: &Context, r: SyncGroupRequest) -> SyncGroupResponse {
    let rx = ctx.groups.sync(
        r.group_id.0.as_str(),
        r.generation_id,
        r.member_id.as_str(),
        r.group_instance_id.as_ref().map(|i| i.as_str()),
        r.assignments
            .into_iter()
            .map(|a| (a.member_id.as_str().to_string(), a.assignment))
            .collect(),
    );
    let result = match tokio::time::timeout(Duration::from_secs(300), rx).await {
        Ok(Ok(res)) => res,
        Ok(Err(_)) => SyncResult {
            error: ResponseError::UnknownMemberId.code(),
            ..SyncResult::default()
        },
        Err(_) => SyncResult {
            error: ResponseError::RebalanceInProgress.code(),
            ..SyncResult::default()
        },
    };
    let mut resp = SyncGroupResponse::default();
    resp.error_code = result.error;
    resp.protocol_type = result.protocol_type.map(s);
    resp.protocol_name = result.protocol.map(s);
    resp.assignment = result.assignment;
    resp
}

fn heartbeat(ctx: &Context, r: &HeartbeatRequest) -> HeartbeatResponse {
    let mut resp = HeartbeatResponse::default();
    resp.error_code = ctx.groups.heartbeat(
        r.group_id.0.as_str(),
        r.generation_id,
        r.member_id.as_str(),
        r.group_instance_id.as_ref().map(|i| i.as_str()),
    );
    resp
}

fn leave_group(ctx: &Context, r: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group = r.group_id.0.as_str();
    let mut resp = LeaveGroupResponse::default();
    if version < 3 {
        resp.error_code = ctx.groups.leave(group, r.member_id.as_str(), None);
        return resp;
    }
    for m in r.members {
        let mut mr = leave_group_response::MemberResponse::default();
        mr.error_code = ctx.groups.leave(
            group,
            m.member_id.as_str(),
            m.group_instance_id.as_ref().map(|i| i.as_str()),
        );
        mr.member_id = m.member_id;
        mr.group_instance_id = m.group_instance_id;
        resp.members.push(mr);
    }
    resp
}

fn describe_groups(ctx: &Context, r: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let mut resp = DescribeGroupsResponse::default();
    for g in r.groups {
        let name = g.0.as_str().to_string();
        let mut d = describe_groups_response::DescribedGroup::default();
        d.group_id = g;
        match ctx.groups.describe(&name) {
            Some(desc) => {
                d.group_state = s(desc.state.name());
                d.protocol_type = s(desc.protocol_type);
                d.protocol_data = s(desc.protocol);
                d.members = desc
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut dm = describe_groups_response::DescribedGroupMember::default();
                        dm.member_id = s(m.member_id);
                        dm.group_instance_id = m.instance_id.map(s);
                        dm.client_id = s(m.client_id);
                        dm.client_host = s(m.client_host);
                        dm.member_metadata = m.metadata;
                        dm.member_assignment = m.assignment;
                        dm
                    })
                    .collect();
            }
            None if !ctx.broker.committed_offsets(&name).is_empty() => {
                d.group_state = s("Empty");
                d.protocol_type = s("consumer");
            }
            None => d.group_state = s("Dead"),
        }
        resp.groups.push(d);
    }
    resp
}

fn list_groups(ctx: &Context, r: &ListGroupsRequest) -> ListGroupsResponse {
    let mut seen = BTreeMap::new();
    for (name, state, ptype) in ctx.groups.list() {
        seen.insert(name, (state.name().to_string(), ptype));
    }
    for name in ctx.broker.groups_with_offsets() {
        seen.entry(name)
            .or_insert_with(|| ("Empty".to_string(), "consumer".to_string()));
    }
    let mut resp = ListGroupsResponse::default();
    for (name, (state, ptype)) in seen {
        if !r.states_filter.is_empty() && !r.states_filter.iter().any(|f| f.as_str() == state) {
            continue;
        }
        let mut lg = list_groups_response::ListedGroup::default();
        lg.group_id = GroupId(s(name));
        lg.protocol_type = s(ptype);
        lg.group_state = s(state);
        resp.groups.push(lg);
    }
    resp
}

/// DeleteGroups: a group without active members is forgotten and its committed offsets are
/// deleted (tombstones in `__consumer_offsets`).
fn delete_groups(ctx: &Context, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut resp = DeleteGroupsResponse::default();
    for g in r.groups_names {
        let name = g.0.as_str().to_string();
        let mut res = delete_groups_response::DeletableGroupResult::default();
        res.group_id = g;
        let known =
            ctx.groups.describe(&name).is_some() || !ctx.broker.committed_offsets(&name).is_empty();
        res.error_code = if !known {
            ResponseError::GroupIdNotFound.code()
        } else {
            match ctx.groups.forget(&name) {
                Err(code) => code,
                Ok(()) => match ctx.broker.delete_group_offsets(&name) {
                    Ok(_) => 0,
                    Err(e) => err_code(&e),
                },
            }
        };
        resp.results.push(res);
    }
    resp
}

/// OffsetDelete (Kafka protocol: OffsetDelete v0, KIP-496): deletes a group's committed
/// offsets of some partitions, as Kafka's `GroupCoordinator.handleDeleteOffsets` does. A group
/// with neither members nor committed offsets is GROUP_ID_NOT_FOUND; in a group without active
/// members every offset may go; in an active consumer group the partitions of topics a member
/// subscribes to get GROUP_SUBSCRIBED_TO_TOPIC and the others are deleted; an active group of
/// another protocol type is NON_EMPTY_GROUP. Unknown partitions get UNKNOWN_TOPIC_OR_PARTITION.
fn offset_delete(ctx: &Context, r: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let b = &ctx.broker;
    let group = r.group_id.0.as_str().to_string();
    let mut resp = OffsetDeleteResponse::default();
    if group.is_empty() {
        resp.error_code = ResponseError::InvalidGroupId.code();
        return resp;
    }
    let scope = ctx.groups.offset_delete_scope(&group);
    let known = ctx.groups.describe(&group).is_some() || !b.committed_offsets(&group).is_empty();
    if !known {
        resp.error_code = ResponseError::GroupIdNotFound.code();
        return resp;
    }
    if scope == OffsetDeleteScope::NonConsumer {
        resp.error_code = ResponseError::NonEmptyGroup.code();
        return resp;
    }
    let mut to_delete = Vec::new();
    for t in r.topics {
        let name = t.name.0.as_str().to_string();
        let mut tr = offset_delete_response::OffsetDeleteResponseTopic::default();
        tr.name = t.name;
        let subscribed = matches!(&scope, OffsetDeleteScope::Subscribed(s) if s.contains(&name));
        let count = b.partition_count(&name).ok();
        for p in t.partitions {
            let mut pr = offset_delete_response::OffsetDeleteResponsePartition::default();
            pr.partition_index = p.partition_index;
            let exists =
                count.is_some_and(|n| p.partition_index >= 0 && (p.partition_index as u32) < n);
            pr.error_code = if !exists {
                ResponseError::UnknownTopicOrPartition.code()
            } else if subscribed {
                ResponseError::GroupSubscribedToTopic.code()
            } else {
                to_delete.push(crate::TopicPartition::new(name.clone(), p.partition_index));
                0
            };
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    match b.delete_offsets(&group, &to_delete) {
        Ok(n) => info!(group, deleted = n, "offsets deleted"),
        Err(e) => {
            // Nothing was deleted: the whole request failed.
            resp.error_code = err_code(&e);
            resp.topics.clear();
        }
    }
    resp
}

fn api_versions(_r: &ApiVersionsRequest) -> ApiVersionsResponse {
    api_versions_response(0)
}

/// Creates a topic on first use when the broker allows it (`auto.create.topics.enable`).
fn auto_create(ctx: &Context, name: &str) -> Result<(), BrokerError> {
    let b = &ctx.broker;
    if b.topic_exists(name) {
        return Ok(());
    }
    if !b.config().auto_create_topics_enable {
        return Err(BrokerError::UnknownTopicOrPartition {
            topic: name.to_string(),
            partition: -1,
        });
    }
    match b.create_topic(NewTopic::new(name, b.config().num_partitions.max(1))) {
        Ok(_) => {
            info!(topic = name, "auto-created topic");
            Ok(())
        }
        Err(BrokerError::TopicAlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn topic_metadata(ctx: &Context, name: &str, error: Option<i16>) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(s(name)));
    t.is_internal = name.starts_with("__");
    if let Some(code) = error {
        t.error_code = code;
        return t;
    }
    match ctx.broker.describe_topic(name) {
        Ok(d) => {
            t.topic_id = d.topic_id;
            t.partitions = d
                .partitions
                .iter()
                .map(|p| {
                    let mut mp = MetadataResponsePartition::default();
                    mp.partition_index = p.partition;
                    mp.leader_id = BrokerId(p.leader);
                    mp.leader_epoch = 0;
                    mp.replica_nodes = p.replicas.iter().map(|r| BrokerId(*r)).collect();
                    mp.isr_nodes = p.isr.iter().map(|r| BrokerId(*r)).collect();
                    mp
                })
                .collect();
        }
        Err(e) => t.error_code = err_code(&e),
    }
    t
}

fn metadata(ctx: &Context, r: MetadataRequest, version: i16) -> MetadataResponse {
    let b = &ctx.broker;
    let mut resp = MetadataResponse::default();
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = BrokerId(b.config().node_id);
    broker.host = s(ctx.endpoint.host.clone());
    broker.port = ctx.endpoint.port;
    resp.brokers = vec![broker];
    resp.cluster_id = Some(s(b.cluster_id()));
    resp.controller_id = BrokerId(b.config().node_id);
    let allow_create = version < 4 || r.allow_auto_topic_creation;
    resp.topics = match r.topics {
        None => b
            .list_topics()
            .iter()
            .map(|t| topic_metadata(ctx, t, None))
            .collect(),
        Some(requested) => requested
            .into_iter()
            .map(|t| {
                let Some(name) = t.name.map(|n| n.0.as_str().to_string()) else {
                    let mut mt = MetadataResponseTopic::default();
                    mt.topic_id = t.topic_id;
                    mt.error_code = ResponseError::UnknownTopicId.code();
                    return mt;
                };
                if let Err(reason) = crate::validate_topic_name(&name) {
                    debug!(topic = name, %reason, "metadata for an invalid topic name");
                    return topic_metadata(
                        ctx,
                        &name,
                        Some(ResponseError::InvalidTopicException.code()),
                    );
                }
                if !b.topic_exists(&name) {
                    let created = if allow_create {
                        auto_create(ctx, &name)
                    } else {
                        Err(BrokerError::UnknownTopicOrPartition {
                            topic: name.clone(),
                            partition: -1,
                        })
                    };
                    if let Err(e) = created {
                        return topic_metadata(ctx, &name, Some(err_code(&e)));
                    }
                }
                topic_metadata(ctx, &name, None)
            })
            .collect(),
    };
    resp
}

fn produce(ctx: &Context, r: ProduceRequest) -> Option<ProduceResponse> {
    let b = &ctx.broker;
    let acks = r.acks;
    let bad_acks = !matches!(acks, -1..=1);
    let mut resp = ProduceResponse::default();
    for topic in r.topic_data {
        let name = topic.name.0.as_str().to_string();
        let mut tr = TopicProduceResponse::default();
        tr.name = topic.name.clone();
        let topic_ok = if bad_acks {
            Err(ResponseError::InvalidRequiredAcks.code())
        } else {
            auto_create(ctx, &name).map_err(|e| err_code(&e))
        };
        for p in topic.partition_data {
            let mut pr = PartitionProduceResponse::default();
            pr.index = p.index;
            pr.base_offset = -1;
            pr.log_append_time_ms = -1;
            pr.log_start_offset = -1;
            let result = match (&topic_ok, p.records) {
                (Err(code), _) => Err((*code, None)),
                (Ok(()), None) => Err((
                    ResponseError::CorruptMessage.code(),
                    Some("no records".to_string()),
                )),
                (Ok(()), Some(records)) => {
                    let mut buf = records.to_vec();
                    b.append_batches(&name, p.index, &mut buf, AppendOrigin::Client)
                        .map_err(|e| {
                            if matches!(&e, BrokerError::InvalidRecord(m) if m.contains("null key"))
                            {
                                pr.record_errors = null_key_record_errors(&records);
                            }
                            (err_code(&e), Some(e.to_string()))
                        })
                }
            };
            match result {
                Ok(info) => {
                    pr.base_offset = info.base_offset;
                    pr.log_append_time_ms = info.log_append_time;
                    pr.log_start_offset = info.log_start_offset;
                }
                Err((code, message)) => {
                    debug!(
                        topic = name,
                        partition = p.index,
                        code,
                        ?message,
                        "produce rejected"
                    );
                    pr.error_code = code;
                    pr.error_message = message.map(s);
                }
            }
            tr.partition_responses.push(pr);
        }
        resp.responses.push(tr);
    }
    if acks == 0 {
        return None;
    }
    Some(resp)
}

struct FetchSlot {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
}

/// KIP-467: which records of a batch refused for null keys on a compacted topic were at
/// fault (Produce v8+ `record_errors`), so that clients fail those with INVALID_RECORD and the
/// others of the batch with their "invalid different record" error, as against Kafka.
fn null_key_record_errors(records: &[u8]) -> Vec<produce_response::BatchIndexAndErrorMessage> {
    let mut out = Vec::new();
    let mut index = 0i32;
    for batch in crate::record::BatchIter::new(records) {
        let Ok(batch) = batch else { break };
        let Ok(decoded) = crate::record::decode_records(batch.bytes) else {
            break;
        };
        for r in decoded {
            if r.key.is_none() {
                let mut e = produce_response::BatchIndexAndErrorMessage::default();
                e.batch_index = index;
                e.batch_index_error_message =
                    Some(s("compacted topic cannot accept a record without a key"));
                out.push(e);
            }
            index += 1;
        }
    }
    out
}

fn read_partition(
    b: &Broker,
    slot: &FetchSlot,
    max_bytes: usize,
    isolation: IsolationLevel,
    first: bool,
) -> Result<FetchData, BrokerError> {
    b.read_partition_with(
        &slot.topic,
        slot.partition,
        slot.offset,
        max_bytes,
        isolation,
        first,
    )
}

async fn fetch(ctx: &Context, r: FetchRequest) -> FetchResponse {
    let b = &ctx.broker;
    let isolation = if r.isolation_level == 1 {
        IsolationLevel::ReadCommitted
    } else {
        IsolationLevel::ReadUncommitted
    };
    let slots: Vec<(TopicName, Vec<FetchSlot>)> = r
        .topics
        .iter()
        .map(|t| {
            let name = t.topic.0.as_str().to_string();
            let slots = t
                .partitions
                .iter()
                .map(|p| FetchSlot {
                    topic: name.clone(),
                    partition: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                })
                .collect();
            (t.topic.clone(), slots)
        })
        .collect();
    let min_bytes = r.min_bytes.max(0) as usize;
    let response_max = if r.max_bytes <= 0 {
        usize::MAX
    } else {
        r.max_bytes as usize
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(r.max_wait_ms.max(0) as u64);
    loop {
        let notified = b.appended_anywhere();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let mut total = 0usize;
        let mut any_error = false;
        let mut resp = FetchResponse::default();
        for (topic_name, topic_slots) in &slots {
            let mut tr = FetchableTopicResponse::default();
            tr.topic = topic_name.clone();
            for slot in topic_slots {
                let mut pd = PartitionData::default();
                pd.partition_index = slot.partition;
                pd.high_watermark = -1;
                pd.last_stable_offset = -1;
                pd.log_start_offset = -1;
                pd.preferred_read_replica = BrokerId(-1);
                // KIP-74: both limits hold (the response's too for the first partition);
                // they are soft only in that the first batch of the first non-empty partition
                // is returned even if larger (`first` below).
                let budget = slot.max_bytes.min(response_max.saturating_sub(total));
                if budget == 0 && total > 0 {
                    // Out of response budget: report offsets only.
                    if let Ok(o) = b.partition_offsets(&slot.topic, slot.partition) {
                        pd.high_watermark = o.high_watermark;
                        pd.last_stable_offset = o.last_stable_offset;
                        pd.log_start_offset = o.log_start_offset;
                    }
                    pd.records = Some(Bytes::new());
                    tr.partitions.push(pd);
                    continue;
                }
                match read_partition(b, slot, budget.max(1), isolation, total == 0) {
                    Ok(data) => {
                        pd.high_watermark = data.high_watermark;
                        pd.last_stable_offset = data.last_stable_offset;
                        pd.log_start_offset = data.log_start_offset;
                        if isolation == IsolationLevel::ReadCommitted {
                            pd.aborted_transactions = Some(Vec::new());
                        }
                        total += data.records.len();
                        pd.records = Some(data.records);
                    }
                    Err(e) => {
                        any_error = true;
                        pd.error_code = err_code(&e);
                        if let Ok(o) = b.partition_offsets(&slot.topic, slot.partition) {
                            pd.high_watermark = o.high_watermark;
                            pd.last_stable_offset = o.last_stable_offset;
                            pd.log_start_offset = o.log_start_offset;
                        }
                        pd.records = Some(Bytes::new());
                    }
                }
                tr.partitions.push(pd);
            }
            resp.responses.push(tr);
        }
        let now = tokio::time::Instant::now();
        if any_error || total >= min_bytes.max(1) || now >= deadline || b.is_closed() {
            return resp;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            // Deadline reached: one last read so the response carries what arrived.
            continue;
        }
    }
}

fn list_offsets(ctx: &Context, r: ListOffsetsRequest) -> ListOffsetsResponse {
    let b = &ctx.broker;
    let committed = r.isolation_level == 1;
    let mut resp = ListOffsetsResponse::default();
    for t in r.topics {
        let name = t.name.0.as_str().to_string();
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            pr.leader_epoch = 0;
            let spec = match p.timestamp {
                -2 => Ok(OffsetSpec::Earliest),
                -1 => Ok(OffsetSpec::Latest),
                ts if ts >= 0 => Ok(OffsetSpec::Timestamp(ts)),
                _ => Err(ResponseError::InvalidRequest.code()),
            };
            let result = spec.and_then(|spec| {
                if committed && spec == OffsetSpec::Latest {
                    return b
                        .partition_offsets(&name, p.partition_index)
                        .map(|o| {
                            Some(crate::ListedOffset {
                                offset: o.last_stable_offset,
                                timestamp: -1,
                            })
                        })
                        .map_err(|e| err_code(&e));
                }
                b.list_offsets(&name, p.partition_index, spec)
                    .map_err(|e| err_code(&e))
            });
            match result {
                Ok(Some(lo)) => {
                    pr.offset = lo.offset;
                    pr.timestamp = lo.timestamp;
                }
                Ok(None) => {}
                Err(code) => pr.error_code = code,
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

fn config_type(key: &str) -> i8 {
    // Kafka's ConfigEntry.ConfigType ids: BOOLEAN 1, STRING 2, INT 3, LONG 5, DOUBLE 6, LIST 7.
    match key {
        "cleanup.policy" => 7,
        "compression.type" | "message.timestamp.type" => 2,
        "min.cleanable.dirty.ratio" => 6,
        "index.interval.bytes"
        | "max.message.bytes"
        | "min.insync.replicas"
        | "segment.bytes"
        | "segment.index.bytes" => 3,
        _ => 5,
    }
}

fn create_topics(ctx: &Context, r: CreateTopicsRequest) -> CreateTopicsResponse {
    let b = &ctx.broker;
    let mut resp = CreateTopicsResponse::default();
    for t in r.topics {
        let name = t.name.0.as_str().to_string();
        let mut res = CreatableTopicResult::default();
        res.name = t.name.clone();
        res.num_partitions = -1;
        res.replication_factor = -1;
        let mut new = NewTopic::new(name.clone(), 0);
        new.partitions = if t.num_partitions == -1 {
            if t.assignments.is_empty() {
                b.config().num_partitions
            } else {
                t.assignments.len() as u32
            }
        } else {
            t.num_partitions.max(0) as u32
        };
        new.replication_factor = if t.replication_factor == -1 && !t.assignments.is_empty() {
            t.assignments[0].broker_ids.len() as i16
        } else {
            t.replication_factor
        };
        let mut bad_assignment = None;
        for a in &t.assignments {
            if a.broker_ids.iter().any(|id| id.0 != b.config().node_id) {
                bad_assignment = Some(format!(
                    "partition {} is assigned to a broker that does not exist",
                    a.partition_index
                ));
            }
        }
        for c in &t.configs {
            if let Some(v) = &c.value {
                new.configs
                    .insert(c.name.as_str().to_string(), v.as_str().to_string());
            }
        }
        let outcome = if let Some(msg) = bad_assignment {
            Err((ResponseError::InvalidReplicaAssignment.code(), msg))
        } else if r.validate_only {
            b.validate_new_topic(&new)
                .map(|_| uuid::Uuid::nil())
                .map_err(|e| (err_code(&e), e.to_string()))
        } else {
            b.create_topic(new.clone())
                .map_err(|e| (err_code(&e), e.to_string()))
        };
        match outcome {
            Ok(id) => {
                res.topic_id = id;
                res.num_partitions = new.partitions as i32;
                res.replication_factor = if new.replication_factor == -1 {
                    1
                } else {
                    new.replication_factor
                };
                if let Ok(d) = b.describe_topic(&name) {
                    res.configs = Some(
                        d.configs
                            .into_iter()
                            .map(|c| {
                                let mut cc = CreatableTopicConfigs::default();
                                cc.name = s(c.name);
                                cc.value = Some(s(c.value));
                                cc.config_source = if c.source == ConfigSource::TopicOverride {
                                    1
                                } else {
                                    5
                                };
                                cc
                            })
                            .collect(),
                    );
                }
            }
            Err((code, msg)) => {
                res.error_code = code;
                res.error_message = Some(s(msg));
            }
        }
        resp.topics.push(res);
    }
    resp
}

fn delete_topics(ctx: &Context, r: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let b = &ctx.broker;
    let mut resp = DeleteTopicsResponse::default();
    let names: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        r.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.as_str().to_string()), t.topic_id))
            .collect()
    } else {
        r.topic_names
            .into_iter()
            .map(|n| (Some(n.0.as_str().to_string()), uuid::Uuid::nil()))
            .collect()
    };
    for (name, id) in names {
        let mut res = DeletableTopicResult::default();
        res.topic_id = id;
        let name = name.or_else(|| {
            b.list_topics()
                .into_iter()
                .find(|t| b.topic_id(t).is_ok_and(|tid| tid == id))
        });
        match name {
            None => res.error_code = ResponseError::UnknownTopicId.code(),
            Some(name) => {
                res.name = Some(TopicName(s(name.clone())));
                if let Ok(tid) = b.topic_id(&name) {
                    res.topic_id = tid;
                }
                if let Err(e) = b.delete_topic(&name) {
                    res.error_code = err_code(&e);
                    res.error_message = Some(s(e.to_string()));
                }
            }
        }
        resp.responses.push(res);
    }
    resp
}

fn create_partitions(ctx: &Context, r: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let b = &ctx.broker;
    let mut resp = CreatePartitionsResponse::default();
    for t in r.topics {
        let name = t.name.0.as_str().to_string();
        let mut res = CreatePartitionsTopicResult::default();
        res.name = t.name.clone();
        let outcome = if t.count <= 0 {
            Err(BrokerError::InvalidPartitions(format!(
                "{} is not a valid partition count",
                t.count
            )))
        } else if r.validate_only {
            b.partition_count(&name).and_then(|n| {
                if (t.count as u32) > n {
                    Ok(())
                } else {
                    Err(BrokerError::InvalidPartitions(format!(
                        "topic `{name}` has {n} partitions; the new count must be larger"
                    )))
                }
            })
        } else {
            b.create_partitions(&name, t.count as u32)
        };
        if let Err(e) = outcome {
            res.error_code = err_code(&e);
            res.error_message = Some(s(e.to_string()));
        }
        resp.results.push(res);
    }
    resp
}

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

fn describe_configs(ctx: &Context, r: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let b = &ctx.broker;
    let mut resp = DescribeConfigsResponse::default();
    for res in r.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let name = res.resource_name.as_str().to_string();
        match res.resource_type {
            RESOURCE_TOPIC => match b.describe_topic(&name) {
                Ok(d) => {
                    out.configs = d
                        .configs
                        .into_iter()
                        .filter(|c| {
                            // Kafka: a null or empty key list means every config.
                            res.configuration_keys.as_ref().is_none_or(|keys| {
                                keys.is_empty() || keys.iter().any(|k| k.as_str() == c.name)
                            })
                        })
                        .map(|c| {
                            let mut e = DescribeConfigsResourceResult::default();
                            e.config_type = config_type(&c.name);
                            e.name = s(c.name);
                            e.value = Some(s(c.value));
                            e.config_source = if c.source == ConfigSource::TopicOverride {
                                1
                            } else {
                                5
                            };
                            e
                        })
                        .collect();
                }
                Err(e) => {
                    out.error_code = err_code(&e);
                    out.error_message = Some(s(e.to_string()));
                }
            },
            RESOURCE_BROKER => {
                if name.parse::<i32>().ok() != Some(b.config().node_id) && !name.is_empty() {
                    out.error_code = ResponseError::InvalidRequest.code();
                    out.error_message = Some(s(format!("broker `{name}` is not this broker")));
                }
                // Broker-level settings are not exposed as configs yet: an empty list.
            }
            other => {
                out.error_code = ResponseError::InvalidRequest.code();
                out.error_message = Some(s(format!("resource type {other} is not supported")));
            }
        }
        resp.results.push(out);
    }
    resp
}

fn alter_configs(ctx: &Context, r: AlterConfigsRequest) -> AlterConfigsResponse {
    let b = &ctx.broker;
    let mut resp = AlterConfigsResponse::default();
    for res in r.resources {
        let mut out = alter_configs_response::AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let name = res.resource_name.as_str().to_string();
        let outcome = if res.resource_type != RESOURCE_TOPIC {
            Err((
                ResponseError::InvalidRequest.code(),
                "only topic configs can be altered".to_string(),
            ))
        } else {
            let configs: BTreeMap<String, String> = res
                .configs
                .iter()
                .filter_map(|c| {
                    Some((
                        c.name.as_str().to_string(),
                        c.value.as_ref()?.as_str().to_string(),
                    ))
                })
                .collect();
            if r.validate_only {
                b.partition_count(&name)
                    .and_then(|_| {
                        b.config()
                            .log_defaults
                            .resolve(&configs)
                            .map(|_| ())
                            .map_err(Into::into)
                    })
                    .map_err(|e| (err_code(&e), e.to_string()))
            } else {
                b.set_topic_configs(&name, configs)
                    .map_err(|e| (err_code(&e), e.to_string()))
            }
        };
        if let Err((code, msg)) = outcome {
            out.error_code = code;
            out.error_message = Some(s(msg));
        }
        resp.responses.push(out);
    }
    resp
}

fn incremental_alter_configs(
    ctx: &Context,
    r: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let b = &ctx.broker;
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in r.resources {
        let mut out = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let name = res.resource_name.as_str().to_string();
        let outcome = (|| -> Result<(), (i16, String)> {
            if res.resource_type != RESOURCE_TOPIC {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    "only topic configs can be altered".into(),
                ));
            }
            let current = b
                .describe_topic(&name)
                .map_err(|e| (err_code(&e), e.to_string()))?;
            let mut ops = Vec::new();
            for c in &res.configs {
                let key = c.name.as_str().to_string();
                let value = c.value.as_ref().map(|v| v.as_str().to_string());
                let op = match c.config_operation {
                    0 => AlterConfigOp::Set(key.clone(), value.unwrap_or_default()),
                    1 => AlterConfigOp::Delete(key.clone()),
                    2 | 3 => {
                        if !TOPIC_CONFIG_KEYS.contains(&key.as_str()) {
                            return Err((
                                ResponseError::InvalidConfig.code(),
                                format!("unknown topic config `{key}`"),
                            ));
                        }
                        if config_type(&key) != 7 {
                            return Err((ResponseError::InvalidConfig.code(), format!("`{key}` is not a list; APPEND and SUBTRACT apply to lists only")));
                        }
                        let existing = current
                            .configs
                            .iter()
                            .find(|e| e.name == key)
                            .map(|e| e.value.clone())
                            .unwrap_or_default();
                        let mut items: Vec<String> = existing
                            .split(',')
                            .filter(|x| !x.is_empty())
                            .map(str::to_string)
                            .collect();
                        for v in value
                            .unwrap_or_default()
                            .split(',')
                            .map(str::trim)
                            .filter(|x| !x.is_empty())
                        {
                            if c.config_operation == 2 {
                                if !items.iter().any(|i| i == v) {
                                    items.push(v.to_string());
                                }
                            } else {
                                items.retain(|i| i != v);
                            }
                        }
                        AlterConfigOp::Set(key.clone(), items.join(","))
                    }
                    other => {
                        return Err((
                            ResponseError::InvalidRequest.code(),
                            format!("unknown config operation {other}"),
                        ))
                    }
                };
                ops.push(op);
            }
            if r.validate_only {
                let mut configs: BTreeMap<String, String> = current
                    .configs
                    .iter()
                    .filter(|c| c.source == ConfigSource::TopicOverride)
                    .map(|c| (c.name.clone(), c.value.clone()))
                    .collect();
                for op in &ops {
                    match op {
                        AlterConfigOp::Set(k, v) => {
                            configs.insert(k.clone(), v.clone());
                        }
                        AlterConfigOp::Delete(k) => {
                            configs.remove(k);
                        }
                    }
                }
                return b
                    .config()
                    .log_defaults
                    .resolve(&configs)
                    .map(|_| ())
                    .map_err(|e| {
                        let e: BrokerError = e.into();
                        (err_code(&e), e.to_string())
                    });
            }
            b.alter_topic_configs(&name, &ops)
                .map_err(|e| (err_code(&e), e.to_string()))
        })();
        if let Err((code, msg)) = outcome {
            out.error_code = code;
            out.error_message = Some(s(msg));
        }
        resp.responses.push(out);
    }
    resp
}

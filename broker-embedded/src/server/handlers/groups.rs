//! Consumer-group membership APIs, answered by the group coordinator: FindCoordinator,
//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, DescribeGroups, ListGroups, DeleteGroups.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use kafka_protocol::messages::{
    delete_groups_response, describe_groups_response, join_group_response, leave_group_response,
    list_groups_response, BrokerId, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, RequestHeader,
    SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::ResponseError;

use super::{blocking, err_code, groups, not_coordinator, s, Context};
use crate::CoordinatorKind;
use crate::GroupError;

/// FindCoordinator (versions 0-3, one key): a single broker coordinates every consumer group
/// (key type 0) and every transactional id (key type 1); in a cluster the key's partition
/// leader does (see `cluster_coordinator`).
pub(super) fn find_coordinator(
    ctx: &Context,
    r: &FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let mut resp = FindCoordinatorResponse::default();
    // Key type 0: a group; 1: a transactional id. This broker coordinates both.
    if !matches!(r.key_type, 0 | 1) {
        resp.error_code = ResponseError::InvalidRequest.code();
        resp.error_message = Some(s(format!("unknown coordinator key type {}", r.key_type)));
        resp.node_id = BrokerId(-1);
        resp.port = -1;
        return resp;
    }
    if let Some(cluster) = &ctx.cluster {
        return cluster_coordinator(ctx, cluster, r, resp);
    }
    resp.node_id = BrokerId(ctx.broker.config().node_id);
    resp.host = s(ctx.endpoint.host.clone());
    resp.port = ctx.endpoint.port;
    resp
}

/// A cluster node's answer: the coordinator of a key is the leader of its partition of
/// `__consumer_offsets` (groups) or `__transaction_state` (transactional ids), Kafka's
/// `abs(key.hashCode) % partitions`, so that every broker names the same one and it moves with
/// the partition's leadership. COORDINATOR_NOT_AVAILABLE while the topic does not exist (its
/// creation is asked of the controller, as Kafka does), the partition has no leader, or the
/// leader has no endpoint on this listener.
fn cluster_coordinator(
    ctx: &Context,
    cluster: &crate::ClusterHooks,
    r: &FindCoordinatorRequest,
    mut resp: FindCoordinatorResponse,
) -> FindCoordinatorResponse {
    let kind = if r.key_type == 0 {
        CoordinatorKind::Group
    } else {
        CoordinatorKind::Transaction
    };
    let partition = ctx.broker.coordinator_partition_for(kind, r.key.as_str());
    let leader = match cluster.view.topic(kind.topic()) {
        None => {
            if let Some(admin) = &cluster.admin {
                admin.create_internal_topic(kind.topic());
            }
            None
        }
        Some(t) => t
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .map(|p| p.leader)
            .filter(|l| *l >= 0),
    };
    let endpoint = leader.and_then(|id| {
        cluster
            .view
            .brokers()
            .into_iter()
            .filter(|b| b.id == id && !b.fenced)
            .find_map(|b| {
                b.endpoints
                    .iter()
                    .find(|e| e.listener == cluster.listener_name)
                    .map(|e| (b.id, e.host.clone(), e.port))
            })
    });
    match endpoint {
        Some((id, host, port)) => {
            resp.node_id = BrokerId(id);
            resp.host = s(host);
            resp.port = port;
        }
        None => {
            resp.error_code = ResponseError::CoordinatorNotAvailable.code();
            resp.node_id = BrokerId(-1);
            resp.port = -1;
        }
    }
    resp
}

pub(super) async fn join_group(
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
    let member_id = r.member_id.as_str().to_string();
    if let Some(code) = not_coordinator(ctx, CoordinatorKind::Group, r.group_id.0.as_str()) {
        let mut resp = JoinGroupResponse::default();
        resp.error_code = code;
        resp.generation_id = -1;
        resp.protocol_name = Some(s(""));
        resp.member_id = r.member_id;
        return resp;
    }
    let request = crate::JoinGroupRequest {
        group_id: r.group_id.0.as_str().to_string(),
        member_id: member_id.clone(),
        group_instance_id: r.group_instance_id.map(|i| i.as_str().to_string()),
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
    };
    // Off the async workers: the group's metadata write may wait for replication.
    let pending = blocking(|| groups(ctx).join(request));
    let result = tokio::time::timeout(rebalance_timeout + Duration::from_secs(5), pending)
        .await
        .unwrap_or(Err(GroupError::RebalanceInProgress));
    let mut resp = JoinGroupResponse::default();
    match result {
        Ok(joined) => {
            resp.generation_id = joined.generation_id;
            resp.protocol_type = joined.protocol_type.map(s);
            resp.protocol_name = Some(s(joined.protocol_name.unwrap_or_default()));
            resp.leader = s(joined.leader);
            resp.member_id = s(joined.member_id);
            resp.members = joined
                .members
                .into_iter()
                .map(|m| {
                    let mut jm = join_group_response::JoinGroupResponseMember::default();
                    jm.member_id = s(m.member_id);
                    jm.group_instance_id = m.group_instance_id.map(s);
                    jm.metadata = m.metadata;
                    jm
                })
                .collect();
        }
        Err(e) => {
            resp.error_code = e.code();
            resp.generation_id = -1;
            resp.protocol_name = Some(s(""));
            resp.member_id = s(match e {
                GroupError::MemberIdRequired { member_id } => member_id,
                _ => member_id,
            });
        }
    }
    resp
}

pub(super) async fn sync_group(ctx: &Context, r: SyncGroupRequest) -> SyncGroupResponse {
    if let Some(code) = not_coordinator(ctx, CoordinatorKind::Group, r.group_id.0.as_str()) {
        let mut resp = SyncGroupResponse::default();
        resp.error_code = code;
        return resp;
    }
    let request = crate::SyncGroupRequest {
        group_id: r.group_id.0.as_str().to_string(),
        generation_id: r.generation_id,
        member_id: r.member_id.as_str().to_string(),
        group_instance_id: r.group_instance_id.map(|i| i.as_str().to_string()),
        assignments: r
            .assignments
            .into_iter()
            .map(|a| (a.member_id.as_str().to_string(), a.assignment))
            .collect(),
    };
    // Off the async workers: the group's metadata write may wait for replication.
    let pending = blocking(|| groups(ctx).sync(request));
    let result = tokio::time::timeout(Duration::from_secs(300), pending)
        .await
        .unwrap_or(Err(GroupError::RebalanceInProgress));
    let mut resp = SyncGroupResponse::default();
    match result {
        Ok(synced) => {
            resp.protocol_type = synced.protocol_type.map(s);
            resp.protocol_name = synced.protocol_name.map(s);
            resp.assignment = synced.assignment;
        }
        Err(e) => resp.error_code = e.code(),
    }
    resp
}

/// The error code of a coordinator result (0 for success).
fn code(result: Result<(), GroupError>) -> i16 {
    result.err().map_or(0, |e| e.code())
}

pub(super) fn heartbeat(ctx: &Context, r: &HeartbeatRequest) -> HeartbeatResponse {
    let mut resp = HeartbeatResponse::default();
    if let Some(code) = not_coordinator(ctx, CoordinatorKind::Group, r.group_id.0.as_str()) {
        resp.error_code = code;
        return resp;
    }
    resp.error_code = code(groups(ctx).heartbeat(
        r.group_id.0.as_str(),
        r.generation_id,
        r.member_id.as_str(),
        r.group_instance_id.as_ref().map(|i| i.as_str()),
    ));
    resp
}

pub(super) fn leave_group(ctx: &Context, r: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group = r.group_id.0.as_str();
    let mut resp = LeaveGroupResponse::default();
    if let Some(code) = not_coordinator(ctx, CoordinatorKind::Group, group) {
        resp.error_code = code;
        return resp;
    }
    if version < 3 {
        resp.error_code = code(groups(ctx).leave(group, r.member_id.as_str(), None));
        return resp;
    }
    for m in r.members {
        let mut mr = leave_group_response::MemberResponse::default();
        mr.error_code = code(groups(ctx).leave(
            group,
            m.member_id.as_str(),
            m.group_instance_id.as_ref().map(|i| i.as_str()),
        ));
        mr.member_id = m.member_id;
        mr.group_instance_id = m.group_instance_id;
        resp.members.push(mr);
    }
    resp
}

pub(super) fn describe_groups(ctx: &Context, r: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let mut resp = DescribeGroupsResponse::default();
    for g in r.groups {
        let name = g.0.as_str().to_string();
        let mut d = describe_groups_response::DescribedGroup::default();
        d.group_id = g;
        if let Some(code) = not_coordinator(ctx, CoordinatorKind::Group, &name) {
            d.error_code = code;
            d.group_state = s("");
            resp.groups.push(d);
            continue;
        }
        match groups(ctx).describe(&name) {
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

pub(super) fn list_groups(ctx: &Context, r: &ListGroupsRequest) -> ListGroupsResponse {
    let mut seen = BTreeMap::new();
    for g in groups(ctx).list() {
        seen.insert(g.group_id, (g.state.name().to_string(), g.protocol_type));
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
pub(super) fn delete_groups(ctx: &Context, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut resp = DeleteGroupsResponse::default();
    for g in r.groups_names {
        let name = g.0.as_str().to_string();
        let mut res = delete_groups_response::DeletableGroupResult::default();
        res.group_id = g;
        if let Some(code) = not_coordinator(ctx, CoordinatorKind::Group, &name) {
            res.error_code = code;
            resp.results.push(res);
            continue;
        }
        let known = groups(ctx).describe(&name).is_some()
            || !ctx.broker.committed_offsets(&name).is_empty();
        res.error_code = if !known {
            ResponseError::GroupIdNotFound.code()
        } else {
            match groups(ctx).forget(&name) {
                Err(e) => e.code(),
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

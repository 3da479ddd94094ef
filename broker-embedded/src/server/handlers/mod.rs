//! One function per Kafka API: decode-free business logic from request structs to response
//! structs. Per-partition and per-resource failures become Kafka error codes in the response;
//! nothing here can fail the connection.
//!
//! The handlers live with their API family: `versions` (what is implemented and advertised,
//! ApiVersions, and fitting responses to the negotiated version), `topics` (Metadata and
//! topic admin), `produce_fetch` (Produce, Fetch, ListOffsets), `leader_epochs`
//! (OffsetForLeaderEpoch), `groups`
//! (FindCoordinator and the group membership APIs), `offsets` (OffsetCommit, OffsetFetch,
//! OffsetDelete), `transactions` (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn,
//! TxnOffsetCommit, EndTxn, DescribeTransactions, ListTransactions, DescribeProducers) and
//! `configs`
//! (DescribeConfigs, AlterConfigs, IncrementalAlterConfigs). This
//! file holds the shared context and the dispatch.

mod cluster;
mod configs;
mod groups;
mod leader_epochs;
mod offsets;
mod produce_fetch;
mod topics;
mod transactions;
mod versions;

pub(crate) use versions::{
    api_versions_response_for, cluster_supported_versions, supported_versions,
};

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;

use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use configs::{
    alter_configs, alter_configs_in_cluster, describe_configs, incremental_alter_configs,
    incremental_alter_configs_in_cluster,
};
use groups::{
    delete_groups, describe_groups, find_coordinator, heartbeat, join_group, leave_group,
    list_groups, sync_group,
};
use leader_epochs::offset_for_leader_epoch;
use offsets::{offset_commit, offset_delete, offset_fetch};
use produce_fetch::{fetch, list_offsets, produce};
use topics::{create_partitions, create_topics, delete_topics, metadata};
use transactions::{
    add_offsets_to_txn, add_partitions_to_txn, describe_producers, describe_transactions, end_txn,
    init_producer_id, list_transactions, txn_offset_commit, write_txn_markers,
};
use versions::{api_versions, fit_to_version};

use super::{Endpoint, ServerConfig};
use crate::{Broker, BrokerError};

pub(crate) struct Context {
    pub(crate) broker: Broker,
    pub(crate) endpoint: Endpoint,
    pub(crate) config: ServerConfig,
    pub(crate) connections: AtomicUsize,
    /// Set when the broker is one node of a cluster.
    pub(crate) cluster: Option<super::ClusterHooks>,
}

fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// The group coordinator of the broker behind the server.
fn groups(ctx: &Context) -> &crate::GroupCoordinator {
    ctx.broker.group_coordinator()
}

fn err_code(e: &BrokerError) -> i16 {
    e.kafka_error().code()
}

/// The error for a request about `key` when this broker is not its coordinator now
/// (NOT_COORDINATOR, or COORDINATOR_LOAD_IN_PROGRESS while its partition loads; never on a
/// single broker).
fn not_coordinator(ctx: &Context, kind: crate::CoordinatorKind, key: &str) -> Option<i16> {
    ctx.broker
        .coordinates(kind, key)
        .err()
        .map(|e| err_code(&e))
}

/// The number of partitions of `topic`: from the cluster's metadata on a node of a cluster
/// (the coordinator of a group need not host the topics it commits offsets for), else from
/// the local broker.
fn partition_count(ctx: &Context, topic: &str) -> Option<u32> {
    match &ctx.cluster {
        Some(c) => c
            .view
            .topic(topic)
            .and_then(|t| u32::try_from(t.partitions.len()).ok()),
        None => ctx.broker.partition_count(topic).ok(),
    }
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
    let request = match &ctx.cluster {
        Some(hooks) => match dispatch_cluster(ctx, hooks, request, version).await {
            Ok(response) => return response,
            Err(request) => request,
        },
        None => request,
    };
    Some(match request {
        RequestKind::ApiVersions(r) => {
            ResponseKind::ApiVersions(api_versions(&r, ctx.cluster.is_some()))
        }
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata(ctx, r, version)),
        RequestKind::Produce(r) => return produce(ctx, r).map(ResponseKind::Produce),
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch(ctx, r).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets(ctx, r)),
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch(ctx, r))
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(blocking(|| create_topics(ctx, r)))
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(blocking(|| delete_topics(ctx, r, version)))
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(blocking(|| create_partitions(ctx, r)))
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(describe_configs(ctx, None, r))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(blocking(|| alter_configs(ctx, r)))
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(blocking(|| init_producer_id(ctx, &r, version)))
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(blocking(|| add_partitions_to_txn(ctx, r, version)))
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(blocking(|| add_offsets_to_txn(ctx, &r, version)))
        }
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(blocking(|| txn_offset_commit(ctx, r)))
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(blocking(|| end_txn(ctx, &r, version))),
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(describe_transactions(ctx, r))
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(describe_producers(ctx, r))
        }
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(list_transactions(ctx, &r))
        }
        RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(find_coordinator(ctx, &r)),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(blocking(|| offset_commit(ctx, r)))
        }
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(offset_fetch(ctx, r)),
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(join_group(ctx, r, header, peer, version).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(sync_group(ctx, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(blocking(|| heartbeat(ctx, &r))),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(blocking(|| leave_group(ctx, r, version)))
        }
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(describe_groups(ctx, r)),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups(ctx, &r)),
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(blocking(|| delete_groups(ctx, r)))
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(blocking(|| offset_delete(ctx, r)))
        }
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

/// The requests answered differently when the broker is one node of a cluster; any other
/// request is handed back.
async fn dispatch_cluster(
    ctx: &Context,
    hooks: &super::ClusterHooks,
    request: RequestKind,
    version: i16,
) -> Result<Option<ResponseKind>, RequestKind> {
    Ok(Some(match request {
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(cluster::metadata(ctx, hooks, r, version).await)
        }
        RequestKind::Produce(r) => {
            return Ok(cluster::produce(ctx, hooks, r)
                .await
                .map(ResponseKind::Produce))
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(cluster::fetch(ctx, hooks, r).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(cluster::list_offsets(ctx, hooks, r))
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(cluster::create_topics(hooks, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(cluster::delete_topics(hooks, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(cluster::create_partitions(hooks, r).await)
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(cluster::elect_leaders(hooks, r).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(cluster::describe_cluster(hooks, &r))
        }
        RequestKind::WriteTxnMarkers(r) => {
            ResponseKind::WriteTxnMarkers(blocking(|| write_txn_markers(ctx, r)))
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(describe_configs(ctx, Some(hooks), r))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(alter_configs_in_cluster(hooks, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            incremental_alter_configs_in_cluster(hooks, r).await,
        ),
        other => return Err(other),
    }))
}

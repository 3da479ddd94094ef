//! Committed offsets over the wire: OffsetCommit (member and "simple" commits), OffsetFetch
//! and OffsetDelete, stored through the `Broker`'s durable `__consumer_offsets` store.

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    offset_commit_response, offset_delete_response, offset_fetch_response, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};
use kafka_protocol::ResponseError;
use tracing::info;

use super::{err_code, groups, not_coordinator, partition_count, s, Context};
use crate::group::OffsetDeleteScope;
use crate::{CommitMember, GroupError};

/// Largest commit metadata accepted (Kafka's `offset.metadata.max.bytes`).
const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// OffsetCommit: members commit with their generation (checked by the group coordinator);
/// consumers with manual assignment make "simple" commits (generation -1, no member id) to
/// groups without active members.
pub(super) fn offset_commit(ctx: &Context, r: OffsetCommitRequest) -> OffsetCommitResponse {
    let b = &ctx.broker;
    let group = r.group_id.0.as_str().to_string();
    let member = CommitMember {
        generation_id: r.generation_id_or_member_epoch,
        member_id: r.member_id.as_str().to_string(),
        group_instance_id: r.group_instance_id.as_ref().map(|i| i.as_str().to_string()),
    };
    let now = crate::broker::now_ms();
    let mut resp = OffsetCommitResponse::default();
    let refused = not_coordinator(ctx, crate::CoordinatorKind::Group, &group);
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
            let exists = partition_count(ctx, &name)
                .is_some_and(|n| p.partition_index >= 0 && (p.partition_index as u32) < n);
            pr.error_code = if let Some(code) = refused {
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
    if refused.is_some() {
        return resp;
    }
    match b.commit_group_offsets(&group, &member, &to_commit) {
        Ok(()) => {}
        Err(GroupError::Storage(e)) => {
            let code = err_code(&e);
            for (t, p) in slots {
                resp.topics[t].partitions[p].error_code = code;
            }
        }
        Err(e) => {
            // The group refused the member: every partition gets its error.
            let code = e.code();
            for p in resp.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                p.error_code = code;
            }
        }
    }
    resp
}

/// OffsetFetch: the committed offsets of a group (all of them when `topics` is null).
pub(super) fn offset_fetch(ctx: &Context, r: OffsetFetchRequest) -> OffsetFetchResponse {
    let b = &ctx.broker;
    let group = r.group_id.0.as_str().to_string();
    let mut resp = OffsetFetchResponse::default();
    if group.is_empty() {
        resp.error_code = ResponseError::InvalidGroupId.code();
        return resp;
    }
    if let Some(code) = not_coordinator(ctx, crate::CoordinatorKind::Group, &group) {
        resp.error_code = code;
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
            let tp = crate::TopicPartition::new(name.0.as_str(), p);
            if r.require_stable && b.has_pending_txn_offset(&group, &tp) {
                // KIP-447: an offset committed in an open transaction is not stable yet.
                pr.committed_offset = -1;
                pr.committed_leader_epoch = -1;
                pr.metadata = Some(s(""));
                pr.error_code = ResponseError::UnstableOffsetCommit.code();
                tr.partitions.push(pr);
                continue;
            }
            match committed.get(&tp) {
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

/// OffsetDelete (Kafka protocol: OffsetDelete v0, KIP-496): deletes a group's committed
/// offsets of some partitions, as Kafka's `GroupCoordinator.handleDeleteOffsets` does. A group
/// with neither members nor committed offsets is GROUP_ID_NOT_FOUND; in a group without active
/// members every offset may go; in an active consumer group the partitions of topics a member
/// subscribes to get GROUP_SUBSCRIBED_TO_TOPIC and the others are deleted; an active group of
/// another protocol type is NON_EMPTY_GROUP. Unknown partitions get UNKNOWN_TOPIC_OR_PARTITION.
pub(super) fn offset_delete(ctx: &Context, r: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let b = &ctx.broker;
    let group = r.group_id.0.as_str().to_string();
    let mut resp = OffsetDeleteResponse::default();
    if group.is_empty() {
        resp.error_code = ResponseError::InvalidGroupId.code();
        return resp;
    }
    if let Some(code) = not_coordinator(ctx, crate::CoordinatorKind::Group, &group) {
        resp.error_code = code;
        return resp;
    }
    let scope = groups(ctx).offset_delete_scope(&group);
    let known = groups(ctx).describe(&group).is_some() || !b.committed_offsets(&group).is_empty();
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
        let count = partition_count(ctx, &name);
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

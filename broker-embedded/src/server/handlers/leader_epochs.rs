//! OffsetForLeaderEpoch (API 23, KIP-101/KIP-279/KIP-320): for each partition, the end offset
//! of the largest leader epoch at or below the requested one, from the partition's
//! leader-epoch cache. Followers use it to find where their log diverges from the leader's;
//! consumers to validate their position after a leader change.

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use super::Context;
use crate::log::PartitionLog;

/// The leader epoch every partition has in single-node mode (what Metadata answers).
const SINGLE_NODE_LEADER_EPOCH: i32 = 0;

/// The leadership check of OffsetForLeaderEpoch for one partition (Kafka's
/// `Partition.getLocalLog`): the partition's log when this broker may answer for it, else the
/// error. `current_leader_epoch` is the client's view (-1: none): older than the local leader
/// epoch is FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH.
///
/// Single-node mode: this broker leads every partition at leader epoch 0. As a Kafka leader
/// records its epoch at the log end when it takes over, epoch 0 is recorded in a cache that
/// has no entry yet. (A cluster node answers from its replica manager instead.)
fn local_leader_log(
    ctx: &Context,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
) -> Result<Arc<PartitionLog>, ResponseError> {
    let log = ctx
        .broker
        .partition_log(topic, partition)
        .map_err(|e| e.kafka_error())?;
    let leader_epoch = SINGLE_NODE_LEADER_EPOCH;
    if current_leader_epoch >= 0 {
        if current_leader_epoch < leader_epoch {
            return Err(ResponseError::FencedLeaderEpoch);
        }
        if current_leader_epoch > leader_epoch {
            return Err(ResponseError::UnknownLeaderEpoch);
        }
    }
    if log.latest_epoch().is_none() {
        let leo = log.log_end_offset();
        log.assign_epoch_start_offset(leader_epoch, leo)
            .map_err(|e| e.kafka_error())?;
    }
    Ok(log)
}

pub(super) fn offset_for_leader_epoch(
    ctx: &Context,
    r: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut resp = OffsetForLeaderEpochResponse::default();
    for t in r.topics {
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = t.topic.clone();
        for p in t.partitions {
            let mut pr = EpochEndOffset::default();
            pr.partition = p.partition;
            if let Some(cluster) = &ctx.cluster {
                // A cluster node answers from the partition's replica state: leadership and
                // epochs are the controller's (only the debugging replica id -2 may ask a
                // follower, as in Kafka).
                let tp = crate::TopicPartition::new(t.topic.0.as_str(), p.partition);
                let current = (p.current_leader_epoch >= 0).then_some(p.current_leader_epoch);
                match cluster.replicas.last_offset_for_leader_epoch(
                    &tp,
                    current,
                    p.leader_epoch,
                    r.replica_id.0 != -2,
                ) {
                    Ok((epoch, end_offset)) => {
                        pr.leader_epoch = epoch;
                        pr.end_offset = end_offset;
                    }
                    Err(code) => pr.error_code = code,
                }
                tr.partitions.push(pr);
                continue;
            }
            match local_leader_log(ctx, t.topic.0.as_str(), p.partition, p.current_leader_epoch) {
                Ok(log) => {
                    if let Some((epoch, end_offset)) = log.end_offset_for_epoch(p.leader_epoch) {
                        pr.leader_epoch = epoch;
                        pr.end_offset = end_offset;
                    }
                }
                Err(e) => pr.error_code = e.code(),
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

//! The transaction APIs (thin clients of the broker's `TransactionCoordinator`):
//! InitProducerId with a transactional id, AddPartitionsToTxn (v0-v3, one transaction from a
//! client), AddOffsetsToTxn, TxnOffsetCommit, EndTxn, DescribeTransactions, ListTransactions,
//! and the KIP-890 part 1 check of transactional produce requests. PRODUCER_FENCED becomes
//! INVALID_PRODUCER_EPOCH for request versions that predate it, as Kafka's `KafkaApis` does.

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_producers_response::{
    self, PartitionResponse, TopicResponse,
};
use kafka_protocol::messages::describe_transactions_response::{self, TopicData};
use kafka_protocol::messages::list_transactions_response;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeProducersRequest, DescribeProducersResponse,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse,
    InitProducerIdRequest, InitProducerIdResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::ResponseError;
use tracing::debug;

use super::{blocking, err_code, not_coordinator, partition_count, s, Context};
use crate::broker::now_ms;
use crate::CoordinatorKind;
use crate::{
    CommitMember, OffsetAndMetadata, ProducerIdAndEpoch, TopicPartition, TxnError, TxnState,
    OFFSETS_TOPIC,
};

/// PRODUCER_FENCED for versions that know it, INVALID_PRODUCER_EPOCH before.
fn fenced_compat(code: i16, version: i16, first_with_fenced: i16) -> i16 {
    if code == ResponseError::ProducerFenced.code() && version < first_with_fenced {
        ResponseError::InvalidProducerEpoch.code()
    } else {
        code
    }
}

fn txn_code(e: &TxnError) -> i16 {
    e.kafka_error().code()
}

/// InitProducerId: idempotent producers get a fresh producer id (epoch 0), as Kafka; a
/// transactional id goes to the transaction coordinator.
pub(super) fn init_producer_id(
    ctx: &Context,
    r: &InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    let Some(id) = r.transactional_id.as_ref() else {
        match ctx.broker.allocate_producer_id() {
            Ok(id) => {
                resp.producer_id = ProducerId(id);
                resp.producer_epoch = 0;
            }
            Err(e) => resp.error_code = err_code(&e),
        }
        return resp;
    };
    let expected = match (r.producer_id.0, r.producer_epoch) {
        (-1, -1) => None,
        (-1, _) | (_, -1) => {
            resp.error_code = ResponseError::InvalidRequest.code();
            return resp;
        }
        (producer_id, producer_epoch) => Some(ProducerIdAndEpoch {
            producer_id,
            producer_epoch,
        }),
    };
    if let Some(code) = not_coordinator(ctx, CoordinatorKind::Transaction, id.0.as_str()) {
        resp.error_code = code;
        return resp;
    }
    let result = blocking(|| {
        ctx.broker.transaction_coordinator().init_producer_id(
            id.0.as_str(),
            r.transaction_timeout_ms,
            expected,
            now_ms(),
        )
    });
    match result {
        Ok(p) => {
            resp.producer_id = ProducerId(p.producer_id);
            resp.producer_epoch = p.producer_epoch;
        }
        Err(e) => {
            debug!(transactional_id = %id.0.as_str(), error = %e, "InitProducerId refused");
            resp.error_code = fenced_compat(txn_code(&e), version, 4);
        }
    }
    resp
}

/// AddPartitionsToTxn v0-v3: every partition must exist, else the whole request fails
/// (UNKNOWN_TOPIC_OR_PARTITION for those, OPERATION_NOT_ATTEMPTED for the others).
pub(super) fn add_partitions_to_txn(
    ctx: &Context,
    r: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let b = &ctx.broker;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    let refused = not_coordinator(
        ctx,
        CoordinatorKind::Transaction,
        r.v3_and_below_transactional_id.0.as_str(),
    );
    for t in &r.v3_and_below_topics {
        let count = partition_count(ctx, t.name.0.as_str());
        for p in &t.partitions {
            let tp = TopicPartition::new(t.name.0.as_str(), *p);
            if count.is_some_and(|n| *p >= 0 && (*p as u32) < n) {
                known.push(tp);
            } else {
                unknown.push(tp);
            }
        }
    }
    let mut codes: Vec<(TopicPartition, i16)> = Vec::new();
    if let Some(code) = refused {
        codes.extend(known.into_iter().chain(unknown).map(|tp| (tp, code)));
    } else if unknown.is_empty() {
        let result = blocking(|| {
            b.transaction_coordinator().add_partitions(
                r.v3_and_below_transactional_id.0.as_str(),
                r.v3_and_below_producer_id.0,
                r.v3_and_below_producer_epoch,
                &known,
                now_ms(),
            )
        });
        let code = match result {
            Ok(()) => 0,
            Err(e) => {
                debug!(error = %e, "AddPartitionsToTxn refused");
                fenced_compat(txn_code(&e), version, 2)
            }
        };
        codes.extend(known.into_iter().map(|tp| (tp, code)));
    } else {
        codes.extend(
            unknown
                .into_iter()
                .map(|tp| (tp, ResponseError::UnknownTopicOrPartition.code())),
        );
        codes.extend(
            known
                .into_iter()
                .map(|tp| (tp, ResponseError::OperationNotAttempted.code())),
        );
    }
    let mut resp = AddPartitionsToTxnResponse::default();
    for (tp, code) in codes {
        let pos = resp
            .results_by_topic_v3_and_below
            .iter()
            .position(|t| t.name.0.as_str() == tp.topic);
        let i = match pos {
            Some(i) => i,
            None => {
                let mut t = AddPartitionsToTxnTopicResult::default();
                t.name = TopicName(s(tp.topic.clone()));
                resp.results_by_topic_v3_and_below.push(t);
                resp.results_by_topic_v3_and_below.len() - 1
            }
        };
        let mut pr = AddPartitionsToTxnPartitionResult::default();
        pr.partition_index = tp.partition;
        pr.partition_error_code = code;
        resp.results_by_topic_v3_and_below[i]
            .results_by_partition
            .push(pr);
    }
    resp
}

/// AddOffsetsToTxn: adds the group's `__consumer_offsets` partition to the transaction.
pub(super) fn add_offsets_to_txn(
    ctx: &Context,
    r: &AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let b = &ctx.broker;
    let tp = TopicPartition::new(
        OFFSETS_TOPIC,
        b.offsets_partition_for(r.group_id.0.as_str()),
    );
    let result: Result<(), i16> = blocking(|| {
        if let Some(code) = not_coordinator(
            ctx,
            CoordinatorKind::Transaction,
            r.transactional_id.0.as_str(),
        ) {
            return Err(code);
        }
        if ctx.cluster.is_none() {
            b.ensure_offsets_topic().map_err(|e| err_code(&e))?;
        }
        b.transaction_coordinator()
            .add_partitions(
                r.transactional_id.0.as_str(),
                r.producer_id.0,
                r.producer_epoch,
                &[tp],
                now_ms(),
            )
            .map_err(|e| txn_code(&e))
    });
    let mut resp = AddOffsetsToTxnResponse::default();
    if let Err(code) = result {
        resp.error_code = fenced_compat(code, version, 2);
    }
    resp
}

/// TxnOffsetCommit: offsets committed inside a transaction, visible once it commits.
pub(super) fn txn_offset_commit(
    ctx: &Context,
    r: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let b = &ctx.broker;
    let group = r.group_id.0.as_str().to_string();
    let member = CommitMember {
        generation_id: r.generation_id,
        member_id: r.member_id.as_str().to_string(),
        group_instance_id: r.group_instance_id.as_ref().map(|i| i.as_str().to_string()),
    };
    let now = now_ms();
    let mut offsets = Vec::new();
    let mut codes: Vec<(TopicName, i32, Option<i16>)> = Vec::new();
    let refused = not_coordinator(ctx, CoordinatorKind::Group, &group);
    for t in r.topics {
        let count = partition_count(ctx, t.name.0.as_str());
        for p in t.partitions {
            let exists =
                count.is_some_and(|n| p.partition_index >= 0 && (p.partition_index as u32) < n);
            if let Some(code) = refused {
                codes.push((t.name.clone(), p.partition_index, Some(code)));
            } else if exists {
                offsets.push((
                    TopicPartition::new(t.name.0.as_str(), p.partition_index),
                    OffsetAndMetadata {
                        offset: p.committed_offset,
                        leader_epoch: (p.committed_leader_epoch >= 0)
                            .then_some(p.committed_leader_epoch),
                        metadata: p
                            .committed_metadata
                            .map(|m| m.as_str().to_string())
                            .unwrap_or_default(),
                        commit_timestamp: now,
                    },
                ));
                codes.push((t.name.clone(), p.partition_index, None));
            } else {
                codes.push((
                    t.name.clone(),
                    p.partition_index,
                    Some(ResponseError::UnknownTopicOrPartition.code()),
                ));
            }
        }
    }
    let result = if offsets.is_empty() {
        Ok(())
    } else {
        blocking(|| {
            b.commit_txn_offsets(
                r.transactional_id.0.as_str(),
                &group,
                r.producer_id.0,
                r.producer_epoch,
                &member,
                &offsets,
            )
        })
    };
    let code = match &result {
        Ok(()) => 0,
        Err(e) => {
            debug!(group, error = %e, "TxnOffsetCommit refused");
            let code = e.kafka_error().code();
            // Old clients know neither PRODUCER_FENCED here nor TRANSACTION_ABORTABLE.
            if code == ResponseError::ProducerFenced.code() {
                ResponseError::InvalidProducerEpoch.code()
            } else if code == ResponseError::TransactionAbortable.code() {
                ResponseError::InvalidTxnState.code()
            } else {
                code
            }
        }
    };
    let mut resp = TxnOffsetCommitResponse::default();
    for (name, partition, own) in codes {
        let pos = resp.topics.iter().position(|t| t.name == name);
        let i = match pos {
            Some(i) => i,
            None => {
                let mut t = TxnOffsetCommitResponseTopic::default();
                t.name = name;
                resp.topics.push(t);
                resp.topics.len() - 1
            }
        };
        let mut pr = TxnOffsetCommitResponsePartition::default();
        pr.partition_index = partition;
        pr.error_code = own.unwrap_or(code);
        resp.topics[i].partitions.push(pr);
    }
    resp
}

/// EndTxn: commit or abort.
pub(super) fn end_txn(ctx: &Context, r: &EndTxnRequest, version: i16) -> EndTxnResponse {
    if let Some(code) = not_coordinator(
        ctx,
        CoordinatorKind::Transaction,
        r.transactional_id.0.as_str(),
    ) {
        let mut resp = EndTxnResponse::default();
        resp.producer_id = ProducerId(-1);
        resp.producer_epoch = -1;
        resp.error_code = code;
        return resp;
    }
    let result = blocking(|| {
        ctx.broker.transaction_coordinator().end_txn(
            r.transactional_id.0.as_str(),
            r.producer_id.0,
            r.producer_epoch,
            r.committed,
            now_ms(),
        )
    });
    let mut resp = EndTxnResponse::default();
    match result {
        Ok(p) => {
            resp.producer_id = ProducerId(p.producer_id);
            resp.producer_epoch = p.producer_epoch;
        }
        Err(e) => {
            debug!(transactional_id = %r.transactional_id.0.as_str(), error = %e, "EndTxn refused");
            resp.producer_id = ProducerId(-1);
            resp.producer_epoch = -1;
            resp.error_code = fenced_compat(txn_code(&e), version, 2);
        }
    }
    resp
}

/// WriteTxnMarkers (a transaction coordinator on another broker of the cluster ends a
/// transaction on partitions this broker leads): each marker is appended as leader and
/// answered once the in-sync replicas have it. Per partition: NOT_LEADER_OR_FOLLOWER where
/// this broker does not lead, UNKNOWN_TOPIC_OR_PARTITION for a missing partition, the log's
/// INVALID_PRODUCER_EPOCH / TRANSACTION_COORDINATOR_FENCED checks; the coordinator retries
/// the retriable ones.
pub(super) fn write_txn_markers(
    ctx: &Context,
    r: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let mut resp = WriteTxnMarkersResponse::default();
    for m in r.markers {
        let mut mr = WritableTxnMarkerResult::default();
        mr.producer_id = m.producer_id;
        for t in m.topics {
            let mut tr = WritableTxnMarkerTopicResult::default();
            tr.name = t.name.clone();
            for p in t.partition_indexes {
                let tp = TopicPartition::new(t.name.0.as_str(), p);
                let result = ctx.broker.write_txn_marker_as_leader(
                    &tp,
                    m.producer_id.0,
                    m.producer_epoch,
                    m.coordinator_epoch,
                    m.transaction_result,
                );
                let mut pr = WritableTxnMarkerPartitionResult::default();
                pr.partition_index = p;
                pr.error_code = match result {
                    Ok(()) => 0,
                    // The append's own error, not what a coordinator client would get.
                    Err(crate::BrokerError::CoordinatorWrite { code }) => code,
                    Err(e) => {
                        debug!(partition = %tp, error = %e, "transaction marker refused");
                        err_code(&e)
                    }
                };
                tr.partitions.push(pr);
            }
            mr.topics.push(tr);
        }
        resp.markers.push(mr);
    }
    resp
}

/// DescribeTransactions.
pub(super) fn describe_transactions(
    ctx: &Context,
    r: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut resp = DescribeTransactionsResponse::default();
    for id in r.transactional_ids {
        let mut st = describe_transactions_response::TransactionState::default();
        st.transactional_id = id.clone();
        st.producer_id = ProducerId(-1);
        st.producer_epoch = -1;
        st.transaction_start_time_ms = -1;
        if let Some(code) = not_coordinator(ctx, CoordinatorKind::Transaction, id.0.as_str()) {
            st.error_code = code;
            st.transaction_state = s("");
            resp.transaction_states.push(st);
            continue;
        }
        match ctx.broker.transaction_coordinator().describe(id.0.as_str()) {
            Ok(d) => {
                st.transaction_state = s(d.state.name());
                st.transaction_timeout_ms = d.timeout_ms;
                st.transaction_start_time_ms = d.start_ms;
                st.producer_id = ProducerId(d.producer_id);
                st.producer_epoch = d.producer_epoch;
                for tp in d.partitions {
                    match st
                        .topics
                        .iter_mut()
                        .find(|t| t.topic.0.as_str() == tp.topic)
                    {
                        Some(t) => t.partitions.push(tp.partition),
                        None => {
                            let mut t = TopicData::default();
                            t.topic = TopicName(s(tp.topic));
                            t.partitions.push(tp.partition);
                            st.topics.push(t);
                        }
                    }
                }
            }
            Err(e) => st.error_code = txn_code(&e),
        }
        resp.transaction_states.push(st);
    }
    resp
}

/// ListTransactions (v0-v1: state, producer-id and duration filters).
pub(super) fn list_transactions(
    ctx: &Context,
    r: &ListTransactionsRequest,
) -> ListTransactionsResponse {
    let mut resp = ListTransactionsResponse::default();
    let mut states = Vec::new();
    for name in &r.state_filters {
        match TxnState::from_name(name.as_str()) {
            Some(st) => states.push(st),
            None => resp.unknown_state_filters.push(name.clone()),
        }
    }
    if !r.state_filters.is_empty() && states.is_empty() {
        return resp;
    }
    let pids: Vec<i64> = r.producer_id_filters.iter().map(|p| p.0).collect();
    for l in ctx
        .broker
        .transaction_coordinator()
        .list(&pids, &states, r.duration_filter, now_ms())
    {
        let mut st = list_transactions_response::TransactionState::default();
        st.transactional_id = TransactionalId(s(l.transactional_id));
        st.producer_id = ProducerId(l.producer_id);
        st.transaction_state = s(l.state.name());
        resp.transaction_states.push(st);
    }
    resp
}

/// KIP-890 part 1: a transactional batch must go to a partition of the producer's ongoing
/// transaction. Returns the error code for the partition (as Kafka answers produce
/// versions without KIP-890's new errors), or `None` when the write may proceed.
pub(super) fn verify_transactional_produce(
    ctx: &Context,
    transactional_id: &str,
    topic: &str,
    partition: i32,
    records: &[u8],
) -> Option<i16> {
    let first = crate::record::BatchIter::new(records).next()?.ok()?;
    if !first.header.is_transactional() || first.header.producer_id < 0 {
        return None;
    }
    // Checked where the transaction coordinator is; in a cluster it may be another broker
    // (Kafka asks it with AddPartitionsToTxn v4, which this broker does not send yet).
    if ctx
        .broker
        .coordinates(CoordinatorKind::Transaction, transactional_id)
        .is_err()
    {
        return None;
    }
    let result = ctx.broker.transaction_coordinator().verify_partition(
        transactional_id,
        first.header.producer_id,
        first.header.producer_epoch,
        &TopicPartition::new(topic, partition),
    );
    let e = result.err()?;
    debug!(transactional_id, topic, partition, error = %e, "transactional produce refused");
    Some(match e.kafka_error() {
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch.code(),
        ResponseError::TransactionAbortable => ResponseError::InvalidTxnState.code(),
        ResponseError::ConcurrentTransactions
        | ResponseError::CoordinatorLoadInProgress
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::NotCoordinator => ResponseError::NotEnoughReplicas.code(),
        other => other.code(),
    })
}

/// DescribeProducers: the producer state of each partition (Kafka's `ProducerStateManager`
/// view: epoch, last sequence and timestamp, coordinator epoch of the last marker, first
/// offset of the open transaction).
pub(super) fn describe_producers(
    ctx: &Context,
    r: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let mut resp = DescribeProducersResponse::default();
    for t in r.topics {
        let mut tr = TopicResponse::default();
        tr.name = t.name.clone();
        for p in t.partition_indexes {
            let mut pr = PartitionResponse::default();
            pr.partition_index = p;
            match ctx
                .broker
                .active_producers(&TopicPartition::new(t.name.0.as_str(), p))
            {
                Ok(producers) => {
                    for (id, e) in producers {
                        let mut ps = describe_producers_response::ProducerState::default();
                        ps.producer_id = ProducerId(id);
                        ps.producer_epoch = i32::from(e.epoch);
                        ps.last_sequence = e.batches.back().map_or(-1, |b| b.last_seq);
                        ps.last_timestamp = e.last_timestamp;
                        ps.coordinator_epoch = e.coordinator_epoch;
                        ps.current_txn_start_offset = e.current_txn_first_offset.unwrap_or(-1);
                        pr.active_producers.push(ps);
                    }
                }
                Err(e) => {
                    pr.error_code = err_code(&e);
                    pr.error_message = Some(s(e.to_string()));
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

//! The data path: Produce (with KIP-467 record errors), Fetch (long-polled, KIP-74 size
//! rules, read_committed) and ListOffsets.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchResponse, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    produce_response, BrokerId, FetchRequest, ListOffsetsRequest, ProduceRequest, ProducerId,
    TopicName,
};
use kafka_protocol::ResponseError;
use tracing::debug;

use super::topics::auto_create;
use super::transactions::verify_transactional_produce;
use super::{err_code, s, Context};
use crate::{AppendOrigin, Broker, BrokerError, FetchData, IsolationLevel, OffsetSpec};

pub(super) fn produce(ctx: &Context, r: ProduceRequest) -> Option<ProduceResponse> {
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
                    let refused = r.transactional_id.as_ref().and_then(|id| {
                        verify_transactional_produce(ctx, id.0.as_str(), &name, p.index, &records)
                    });
                    if let Some(code) = refused {
                        pr.error_code = code;
                        if code == ResponseError::InvalidTxnState.code() {
                            pr.error_message =
                                Some(s("Partition was not added to the transaction"));
                        }
                        tr.partition_responses.push(pr);
                        continue;
                    }
                    let mut buf = records.to_vec();
                    b.append_batches(&name, p.index, &mut buf, AppendOrigin::Client)
                        .map_err(|e| {
                            if matches!(&e, BrokerError::InvalidRecord(m) if m.contains("null key"))
                            {
                                pr.record_errors = null_key_record_errors(&records);
                            }
                            if matches!(&e, BrokerError::InvalidTimestamp { .. }) {
                                pr.record_errors = timestamp_record_errors(&e);
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
/// KIP-467's per-record errors of a batch refused for timestamps out of the topic's window
/// (none for any other error).
pub(super) fn timestamp_record_errors(
    e: &BrokerError,
) -> Vec<produce_response::BatchIndexAndErrorMessage> {
    let BrokerError::InvalidTimestamp { records, min, max } = e else {
        return Vec::new();
    };
    let (min, max) = (*min, *max);
    records
        .iter()
        .map(|&(index, timestamp)| {
            let mut e = produce_response::BatchIndexAndErrorMessage::default();
            e.batch_index = index;
            e.batch_index_error_message = Some(s(crate::error::timestamp_message(
                (index, timestamp),
                min,
                max,
            )));
            e
        })
        .collect()
}

pub(super) fn null_key_record_errors(
    records: &[u8],
) -> Vec<produce_response::BatchIndexAndErrorMessage> {
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

pub(super) async fn fetch(ctx: &Context, r: FetchRequest) -> FetchResponse {
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
                // Kafka answers null unless read_committed.
                pd.aborted_transactions = None;
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
                            pd.aborted_transactions = Some(
                                data.aborted_transactions
                                    .iter()
                                    .map(|a| {
                                        let mut t = AbortedTransaction::default();
                                        t.producer_id = ProducerId(a.producer_id);
                                        t.first_offset = a.first_offset;
                                        t
                                    })
                                    .collect(),
                            );
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

pub(super) fn list_offsets(ctx: &Context, r: ListOffsetsRequest) -> ListOffsetsResponse {
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
                let found = b
                    .list_offsets(&name, p.partition_index, spec)
                    .map_err(|e| err_code(&e))?;
                if committed && matches!(spec, OffsetSpec::Timestamp(_)) {
                    // Kafka: under read_committed only offsets below the last stable offset
                    // are found by timestamp.
                    let lso = b
                        .partition_offsets(&name, p.partition_index)
                        .map_err(|e| err_code(&e))?
                        .last_stable_offset;
                    return Ok(found.filter(|lo| lo.offset < lso));
                }
                Ok(found)
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

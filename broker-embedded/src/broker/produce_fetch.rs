//! Data in and out of partitions on the [`Broker`]: appending client batches and in-process
//! records, reads and long-polling fetches, offset look-ups (ListOffsets), per-partition
//! producer state, and decoding fetched batches into records.

use std::path::PathBuf;

use bytes::Bytes;

use super::types::{FetchOptions, ListedOffset, OffsetSpec, ProduceRecord};
use super::{now_ms, Broker};
use crate::error::{BrokerError, Result};
use crate::log::txn::{control_record_of_batch, ControlRecord};
use crate::log::{AppendInfo, AppendOrigin, FetchData, IsolationLevel, LogOffsets};
use crate::record::{encode_batch, BatchIter, BatchSpec, Record};

impl Broker {
    /// Appends raw record batches (as a Produce request carries them) to one partition. The
    /// buffer is rewritten in place with the assigned offsets.
    pub fn append_batches(
        &self,
        topic: &str,
        partition: i32,
        batches: &mut [u8],
        origin: AppendOrigin,
    ) -> Result<AppendInfo> {
        let info = self
            .log(topic, partition)?
            .append(batches, origin, now_ms())?;
        self.inner.any_append.notify_waiters();
        Ok(info)
    }

    /// Encodes `records` into one batch and appends it to `partition`.
    pub fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: &[ProduceRecord],
    ) -> Result<AppendInfo> {
        let log = self.log(topic, partition)?;
        let mut batch = encode_produce_batch(records)?;
        let info = log.append(&mut batch, AppendOrigin::Client, now_ms())?;
        self.inner.any_append.notify_waiters();
        Ok(info)
    }

    /// Reads whole batches from `offset` without waiting (one partition of a Fetch).
    pub fn read_partition(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        isolation: IsolationLevel,
    ) -> Result<FetchData> {
        self.read_partition_with(topic, partition, offset, max_bytes, isolation, true)
    }

    /// Reads and decodes the records of a partition from `offset` as a consumer with
    /// `isolation` sees them (read_committed: up to the last stable offset, records of
    /// aborted transactions dropped; control batches always skipped). Records before
    /// `offset` in the first batch are left out. [`RecordsRead::next_offset`] is where the next
    /// read starts: past the last batch read, markers and aborted records included, so a
    /// stretch without any record to return still makes progress.
    pub fn read_records(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        isolation: IsolationLevel,
    ) -> Result<RecordsRead> {
        let data = self.read_partition(topic, partition, offset, max_bytes, isolation)?;
        let records = match isolation {
            IsolationLevel::ReadCommitted => decode_fetched_committed(topic, &data, offset)?,
            IsolationLevel::ReadUncommitted => decode_fetched_shared(topic, &data.records, offset)?,
        };
        let next_offset = BatchIter::new(&data.records)
            .filter_map(std::result::Result::ok)
            .last()
            .map(|b| b.header.next_offset())
            .filter(|&next| next > offset);
        Ok(RecordsRead {
            records: records.into_iter().filter(|r| r.offset >= offset).collect(),
            next_offset,
        })
    }

    /// As [`Broker::read_partition`]; with `min_one_batch = false` a first batch larger than
    /// `max_bytes` is left out (KIP-74: only the first partition of a response may exceed).
    pub fn read_partition_with(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        isolation: IsolationLevel,
        min_one_batch: bool,
    ) -> Result<FetchData> {
        self.log(topic, partition)?
            .read_with(offset, max_bytes, isolation, min_one_batch)
    }

    /// Reads from `offset` waiting up to `options.max_wait` for `options.min_bytes`, like a
    /// Fetch request for one partition. Returns whole batches as stored.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        options: FetchOptions,
    ) -> Result<FetchData> {
        let log = self.log(topic, partition)?;
        let deadline = tokio::time::Instant::now() + options.max_wait;
        loop {
            let notified = log.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let data = log.read(offset, options.max_bytes, options.isolation)?;
            if data.records.len() >= options.min_bytes.max(1)
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(data);
            }
            self.check_open()?;
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return log.read(offset, options.max_bytes, options.isolation);
            }
        }
    }

    /// Like [`Broker::fetch`], decoded: the data records at or after `offset` (control
    /// records skipped), verifying every batch's CRC. Under read_committed the records of
    /// aborted transactions are dropped, as Kafka's consumer does.
    pub async fn fetch_records(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        options: FetchOptions,
    ) -> Result<Vec<Record>> {
        let data = self.fetch(topic, partition, offset, options).await?;
        match options.isolation {
            IsolationLevel::ReadUncommitted => decode_fetched(topic, &data.records, offset),
            IsolationLevel::ReadCommitted => decode_fetched_committed(topic, &data, offset),
        }
    }

    /// Looks up an offset (Kafka's ListOffsets). Timestamp lookups return `None` when no
    /// record is that recent.
    pub fn list_offsets(
        &self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<Option<ListedOffset>> {
        let log = self.log(topic, partition)?;
        let offsets = log.offsets();
        Ok(match spec {
            OffsetSpec::Earliest => Some(ListedOffset {
                offset: offsets.log_start_offset,
                timestamp: -1,
            }),
            OffsetSpec::Latest => Some(ListedOffset {
                offset: offsets.high_watermark,
                timestamp: -1,
            }),
            OffsetSpec::Timestamp(ts) => log
                .offset_for_timestamp(ts)?
                .map(|(offset, timestamp)| ListedOffset { offset, timestamp }),
        })
    }

    /// What a partition remembers about an idempotent or transactional producer.
    pub fn producer_state(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
    ) -> Result<Option<crate::log::ProducerEntry>> {
        Ok(self.log(topic, partition)?.producer_entry(producer_id))
    }

    /// Offsets and size of one partition.
    pub fn partition_offsets(&self, topic: &str, partition: i32) -> Result<LogOffsets> {
        Ok(self.log(topic, partition)?.offsets())
    }
}

/// What [`Broker::read_records`] read.
#[derive(Debug, Clone, Default)]
pub struct RecordsRead {
    /// The records, in offset order.
    pub records: Vec<Record>,
    /// Where the next read starts; `None` when nothing was read (the end of what
    /// `isolation` may see).
    pub next_offset: Option<i64>,
}

/// Encodes records for the in-process produce path (CreateTime, no producer id).
pub(super) fn encode_produce_batch(records: &[ProduceRecord]) -> Result<Vec<u8>> {
    if records.is_empty() {
        return Err(BrokerError::InvalidBatch(
            crate::record::RecordError::InvalidBatch("no records to produce".into()),
        ));
    }
    let now = now_ms();
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            offset: i as i64,
            timestamp: r.timestamp.unwrap_or(now),
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
        })
        .collect();
    encode_batch(&BatchSpec::default(), &recs).map_err(BrokerError::InvalidBatch)
}

/// As [`decode_fetched`], without copying keys and values out of `bytes` (uncompressed
/// batches; compressed ones are decompressed once).
pub fn decode_fetched_shared(topic: &str, bytes: &Bytes, from_offset: i64) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for item in BatchIter::new(bytes) {
        let b = item.map_err(|(pos, source)| BrokerError::Corrupt {
            path: PathBuf::from(topic),
            position: pos as u64,
            source,
        })?;
        if b.header.is_control() || b.header.last_offset() < from_offset {
            continue;
        }
        let records =
            crate::record::decode_records_shared(&bytes.slice_ref(b.bytes)).map_err(|source| {
                BrokerError::Corrupt {
                    path: PathBuf::from(topic),
                    position: b.position as u64,
                    source,
                }
            })?;
        out.extend(records.into_iter().filter(|r| r.offset >= from_offset));
    }
    Ok(out)
}

/// Decodes a read_committed read into the committed records at or after `from_offset`: as
/// Kafka's consumer, the batches of a producer listed in `data.aborted_transactions` are
/// dropped from the entry's first offset until that producer's ABORT marker; control batches
/// are skipped.
pub fn decode_fetched_committed(
    topic: &str,
    data: &FetchData,
    from_offset: i64,
) -> Result<Vec<Record>> {
    if data.aborted_transactions.is_empty() {
        return decode_fetched_shared(topic, &data.records, from_offset);
    }
    let mut pending: Vec<(i64, i64)> = data
        .aborted_transactions
        .iter()
        .map(|a| (a.first_offset, a.producer_id))
        .collect();
    pending.sort_unstable();
    let mut pending = std::collections::VecDeque::from(pending);
    let mut aborted = std::collections::HashSet::new();
    let mut out = Vec::new();
    for item in BatchIter::new(&data.records) {
        let b = item.map_err(|(pos, source)| BrokerError::Corrupt {
            path: PathBuf::from(topic),
            position: pos as u64,
            source,
        })?;
        let h = &b.header;
        while pending
            .front()
            .is_some_and(|(first, _)| *first <= h.last_offset())
        {
            if let Some((_, pid)) = pending.pop_front() {
                aborted.insert(pid);
            }
        }
        if h.is_control() {
            if h.is_transactional() && aborted.contains(&h.producer_id) {
                let batch = &data.records.slice_ref(b.bytes);
                if let Ok(ControlRecord::EndTxn(m)) = control_record_of_batch(batch) {
                    if !m.commit {
                        aborted.remove(&h.producer_id);
                    }
                }
            }
            continue;
        }
        if h.is_transactional() && aborted.contains(&h.producer_id) {
            continue;
        }
        if h.last_offset() < from_offset {
            continue;
        }
        let records = crate::record::decode_records_shared(&data.records.slice_ref(b.bytes))
            .map_err(|source| BrokerError::Corrupt {
                path: PathBuf::from(topic),
                position: b.position as u64,
                source,
            })?;
        out.extend(records.into_iter().filter(|r| r.offset >= from_offset));
    }
    Ok(out)
}

/// Decodes fetched batches into records at or after `from_offset`, skipping control batches.
pub fn decode_fetched(topic: &str, bytes: &[u8], from_offset: i64) -> Result<Vec<Record>> {
    // One copy of the buffer; the records then share it.
    decode_fetched_shared(topic, &Bytes::copy_from_slice(bytes), from_offset)
}

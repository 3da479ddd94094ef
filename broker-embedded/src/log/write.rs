//! The write path of a [`PartitionLog`]: validating and appending batches (offset
//! assignment, LogAppendTime, idempotent-producer checks), rolling segments, flushing
//! (fsync outside the partition lock, the recovery point) and closing.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use tracing::debug;

use super::producer_state::SequenceCheck;
use super::segment::Segment;
use super::txn::{control_record_of_batch, EndTxnMarker};
use super::{partition_dir_name, AppendInfo, AppendOrigin, LogInner, PartitionLog};
use crate::error::{BrokerError, Result};
use crate::fsutil::sync_dir;
use crate::record::{
    self, encode_batch, set_base_offset, set_log_append_time, set_partition_leader_epoch,
    BatchHeader, BatchIter, BatchSpec, Record, TimestampType, NO_SEQUENCE,
};

impl PartitionLog {
    /// Validates and appends one or more record batches, assigning offsets (rewriting each
    /// batch's base offset in place, and its timestamps under LogAppendTime). Batches are
    /// stamped with the partition's current leader epoch: the latest epoch of the leader-epoch
    /// cache, 0 when it has none (single-node mode).
    pub fn append(
        &self,
        batches: &mut [u8],
        origin: AppendOrigin,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        self.append_checked(batches, origin, now_ms, None, None)
    }

    /// [`PartitionLog::append`] as the leader of `leader_epoch`: every batch's
    /// `partitionLeaderEpoch` is stamped with it, and the leader-epoch cache records the
    /// epoch's start offset on its first batch.
    pub fn append_with_epoch(
        &self,
        batches: &mut [u8],
        origin: AppendOrigin,
        now_ms: i64,
        leader_epoch: i32,
    ) -> Result<AppendInfo> {
        self.append_checked(batches, origin, now_ms, None, Some(leader_epoch))
    }

    /// Appends an end-transaction marker for `producer_id` (a control batch with one COMMIT or
    /// ABORT record, as Kafka's coordinator writes through WriteTxnMarkers), completing the
    /// producer's open transaction on this partition. Kafka's checks apply: an older producer
    /// epoch is refused with INVALID_PRODUCER_EPOCH and an older coordinator epoch with
    /// TRANSACTION_COORDINATOR_FENCED. `leader_epoch` is stamped on the batch (the epoch
    /// cache's latest when `None`).
    pub(crate) fn append_txn_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        now_ms: i64,
        leader_epoch: Option<i32>,
    ) -> Result<AppendInfo> {
        let marker = EndTxnMarker {
            commit,
            coordinator_epoch,
        };
        let spec = BatchSpec {
            control: true,
            transactional: true,
            producer_id,
            producer_epoch,
            base_sequence: NO_SEQUENCE,
            ..BatchSpec::default()
        };
        let rec = Record {
            offset: 0,
            timestamp: now_ms,
            key: Some(Bytes::copy_from_slice(&marker.key())),
            value: Some(Bytes::copy_from_slice(&marker.value())),
            headers: Vec::new(),
        };
        let mut batch = encode_batch(&spec, &[rec]).map_err(BrokerError::InvalidBatch)?;
        self.append_checked(
            &mut batch,
            AppendOrigin::Internal,
            now_ms,
            Some((producer_id, producer_epoch, coordinator_epoch)),
            leader_epoch,
        )
    }

    /// [`PartitionLog::append`], with the marker checks for `(producer id, producer epoch,
    /// coordinator epoch)` made under the partition lock, stamping `leader_epoch` (the
    /// cache's latest epoch, or 0, when `None`).
    fn append_checked(
        &self,
        batches: &mut [u8],
        origin: AppendOrigin,
        now_ms: i64,
        marker: Option<(i64, i16, i32)>,
        leader_epoch: Option<i32>,
    ) -> Result<AppendInfo> {
        let config = self.config();
        let require_keys = config.cleanup_policy.compact;
        let mut ranges = Vec::new();
        let mut controls = Vec::new();
        for item in BatchIter::new(batches) {
            let b = item.map_err(|(_, e)| BrokerError::InvalidBatch(e))?;
            if b.bytes.len() > config.max_message_bytes {
                return Err(BrokerError::MessageTooLarge {
                    size: b.bytes.len(),
                    max: config.max_message_bytes,
                });
            }
            if origin == AppendOrigin::Client {
                if b.header.is_control() {
                    return Err(BrokerError::InvalidRecord(
                        "clients may not write control batches".into(),
                    ));
                }
                if !ranges.is_empty() {
                    // Kafka: produce requests v3+ carry exactly one batch per partition.
                    return Err(BrokerError::InvalidRecord(
                        "a produce request must carry exactly one record batch per partition"
                            .into(),
                    ));
                }
            }
            record::validate_records(b.bytes, origin == AppendOrigin::Client, require_keys)
                .map_err(|e| match e {
                    record::RecordError::InvalidRecord(msg) if msg.contains("null key") => {
                        BrokerError::InvalidRecord(msg)
                    }
                    other => BrokerError::InvalidBatch(other),
                })?;
            if origin == AppendOrigin::Client && !b.header.is_control() {
                check_timestamp_window(b.bytes, &config, now_ms)?;
            }
            controls.push(if b.header.is_control() && b.header.has_producer_id() {
                Some(control_record_of_batch(b.bytes).map_err(BrokerError::InvalidBatch)?)
            } else {
                None
            });
            ranges.push((b.position, b.bytes.len()));
        }
        if ranges.is_empty() {
            return Err(BrokerError::InvalidBatch(
                record::RecordError::InvalidBatch("the request holds no record batch".into()),
            ));
        }
        let log_append = config.message_timestamp_type == TimestampType::LogAppendTime;

        let mut inner = self.inner.lock();
        if inner.deleted {
            return Err(BrokerError::UnknownTopicOrPartition {
                topic: self.topic.clone(),
                partition: self.partition,
            });
        }
        if let Some((producer_id, producer_epoch, coordinator_epoch)) = marker {
            inner
                .producers
                .check_marker(producer_id, producer_epoch, coordinator_epoch)?;
        }
        if origin == AppendOrigin::Client {
            for &(pos, len) in &ranges {
                let h = BatchHeader::parse(&batches[pos..pos + len])
                    .map_err(BrokerError::InvalidBatch)?;
                if let SequenceCheck::Duplicate(meta) = inner.producers.check(&h)? {
                    if ranges.len() == 1 {
                        return Ok(AppendInfo {
                            base_offset: meta.first_offset,
                            last_offset: meta.last_offset,
                            log_append_time: -1,
                            log_start_offset: inner.log_start_offset,
                            duplicate: true,
                        });
                    }
                    return Err(BrokerError::InvalidBatch(
                        record::RecordError::InvalidBatch(
                            "a retried batch cannot share a request with new batches".into(),
                        ),
                    ));
                }
            }
        }
        let leader_epoch = leader_epoch
            .unwrap_or_else(|| inner.epochs.latest().map_or(0, |e| e.epoch))
            .max(0);
        let base_offset = inner.next_offset;
        let mut offset = base_offset;
        let mut record_count: u64 = 0;
        for (&(pos, len), control) in ranges.iter().zip(controls) {
            let bytes = &mut batches[pos..pos + len];
            set_base_offset(bytes, offset);
            set_partition_leader_epoch(bytes, leader_epoch);
            if log_append {
                set_log_append_time(bytes, now_ms).map_err(BrokerError::InvalidBatch)?;
            }
            let h = BatchHeader::parse(bytes).map_err(BrokerError::InvalidBatch)?;
            // The epoch's start is checkpointed before its first batch is written (Kafka's
            // order): after a crash the file may name an epoch the log lacks, which recovery
            // truncates, but never lacks one the log holds.
            inner.epochs.assign(leader_epoch, h.base_offset)?;
            self.maybe_roll(&mut inner, &h)?;
            let active = inner.active()?;
            active.append(bytes, &h)?;
            let segment_base = active.base_offset;
            inner.apply_batch(segment_base, &h, control);
            offset = h.next_offset();
            inner.next_offset = offset;
            record_count += u64::from(h.record_count.max(0) as u32);
        }
        if !inner.replicated {
            inner.high_watermark = offset;
        }
        inner.unflushed_messages += record_count;
        if inner.unflushed_messages >= inner.config.flush_messages {
            Self::flush_locked(&mut inner)?;
        }
        let info = AppendInfo {
            base_offset,
            last_offset: offset - 1,
            log_append_time: if log_append { now_ms } else { -1 },
            log_start_offset: inner.log_start_offset,
            duplicate: false,
        };
        drop(inner);
        self.appended.notify_waiters();
        Ok(info)
    }

    pub(super) fn maybe_roll(&self, inner: &mut LogInner, h: &BatchHeader) -> Result<()> {
        let config = Arc::clone(&inner.config);
        let active = inner.active()?;
        if active.is_empty() {
            return Ok(());
        }
        let size_full = active.size() + h.size() as u64 > config.segment_bytes;
        let time_due = active
            .first_batch_timestamp()
            .is_some_and(|t| h.max_timestamp.saturating_sub(t) > config.segment_ms);
        let index_full = active.offset_index_bytes() + 8 > config.segment_index_bytes;
        let offset_overflow = h.last_offset() - active.base_offset > i64::from(i32::MAX);
        if size_full || time_due || index_full || offset_overflow {
            self.roll_locked(inner, h.base_offset)?;
        }
        Ok(())
    }

    pub(super) fn roll_locked(&self, inner: &mut LogInner, new_base: i64) -> Result<()> {
        let active = inner.active()?;
        active.seal()?;
        // The sealed segment is made durable before the new one can be: otherwise a power cut
        // could keep records of the new segment and lose older ones of this one, leaving a
        // hole instead of a shorter log. (Kafka schedules this flush right after the roll;
        // here it is part of the roll, and costs nothing when every batch is flushed anyway.)
        if active.is_unflushed() {
            active.flush()?;
        }
        let seg = Segment::create(
            &self.storage,
            &self.dir,
            new_base,
            inner.config.index_interval_bytes,
        )?;
        inner.segments.insert(new_base, seg);
        sync_dir(&*self.storage, &self.dir)?;
        inner.producers.write_snapshot(new_base)?;
        inner.producers.prune_snapshots(3);
        debug!(partition = %partition_dir_name(&self.topic, self.partition), new_base, "rolled a new segment");
        Ok(())
    }

    /// Rolls a new active segment now (if the active one holds data).
    pub fn roll(&self) -> Result<()> {
        let mut inner = self.inner.lock();
        let next = inner.next_offset;
        if inner.active()?.is_empty() {
            return Ok(());
        }
        self.roll_locked(&mut inner, next)
    }

    pub(super) fn flush_locked(inner: &mut LogInner) -> Result<()> {
        // Every segment not wholly below the recovery point is synced, including ones whose
        // background fsync (in `flush`) may still be running.
        let rp = inner.recovery_point;
        for seg in inner.segments.values_mut() {
            if seg.is_unflushed() || seg.next_offset() > rp {
                seg.flush()?;
            }
        }
        inner.recovery_point = inner.next_offset;
        inner.unflushed_messages = 0;
        inner.last_flush = Instant::now();
        Ok(())
    }

    /// fsyncs everything appended so far. The fsync runs outside the partition lock, so
    /// appends continue meanwhile; the recovery point advances once it completes.
    pub fn flush(&self) -> Result<()> {
        let (files, target, truncations) = {
            let mut inner = self.inner.lock();
            let mut files = Vec::new();
            for seg in inner.segments.values_mut() {
                if seg.is_unflushed() {
                    files.push((seg.file(), seg.log_path().to_path_buf()));
                    seg.mark_flushed();
                }
                seg.persist_indexes(false)?;
            }
            inner.unflushed_messages = 0;
            inner.last_flush = Instant::now();
            (files, inner.next_offset, inner.truncations)
        };
        let mut failed = None;
        for (f, path) in &files {
            if let Err(e) = f.sync_data() {
                failed = Some(BrokerError::io(path, e));
                break;
            }
        }
        let mut inner = self.inner.lock();
        if let Some(e) = failed {
            // Nothing is known to be durable: mark the segments dirty again.
            for seg in inner.segments.values_mut() {
                if files.iter().any(|(_, p)| p == seg.log_path()) {
                    seg.mark_unflushed();
                }
            }
            return Err(e);
        }
        // A truncation meanwhile replaced data below `target`: what was synced is not what
        // the log now holds there.
        if inner.truncations == truncations {
            inner.recovery_point = inner.recovery_point.max(target);
        }
        Ok(())
    }

    /// Flushes if `flush.ms` has elapsed since the last flush and data is pending.
    pub(crate) fn flush_if_due(&self) -> Result<()> {
        let due = {
            let inner = self.inner.lock();
            let pending = inner.recovery_point < inner.next_offset;
            let ms = inner.config.flush_ms;
            // Sealed segments are flushed soon after a roll whatever the policy (Kafka
            // flushes a segment when it rolls), so the recovery point keeps advancing.
            let sealed_dirty = inner
                .segments
                .values()
                .rev()
                .skip(1)
                .any(Segment::is_unflushed);
            sealed_dirty
                || (pending
                    && ms != i64::MAX
                    && inner.last_flush.elapsed().as_millis() as i64 >= ms)
        };
        if due {
            self.flush()?;
        }
        Ok(())
    }

    /// Flushes everything, seals the active segment's indexes and snapshots producer state:
    /// after this, opening the log with `clean = true` needs no scan.
    pub fn close(&self) -> Result<()> {
        let mut inner = self.inner.lock();
        if inner.deleted {
            return Ok(());
        }
        inner.active()?.seal()?;
        Self::flush_locked(&mut inner)?;
        for seg in inner.segments.values_mut() {
            seg.persist_indexes(true)?;
        }
        let next = inner.next_offset;
        inner.producers.write_snapshot(next)?;
        inner.producers.prune_snapshots(3);
        Ok(())
    }
}

/// Kafka's `LogValidator.validateTimestamp`: on a CreateTime topic with
/// `message.timestamp.before.max.ms` / `message.timestamp.after.max.ms` set, every record's
/// timestamp (other than -1, none) must lie within `[now - before, now + after]`; otherwise the
/// batch is refused and each offending record named. Nothing is decoded when neither bound is
/// set (the default).
fn check_timestamp_window(
    batch: &[u8],
    config: &crate::config::LogConfig,
    now_ms: i64,
) -> Result<()> {
    let (before, after) = (
        config.message_timestamp_before_max_ms,
        config.message_timestamp_after_max_ms,
    );
    if config.message_timestamp_type != TimestampType::CreateTime
        || (before == i64::MAX && after == i64::MAX)
    {
        return Ok(());
    }
    let min = now_ms.saturating_sub(before);
    let max = now_ms.saturating_add(after);
    let records = record::decode_records(batch).map_err(BrokerError::InvalidBatch)?;
    let refused: Vec<(i32, i64)> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.timestamp != -1 && (r.timestamp < min || r.timestamp > max))
        .map(|(i, r)| (i32::try_from(i).unwrap_or(i32::MAX), r.timestamp))
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(BrokerError::InvalidTimestamp {
            records: refused,
            min,
            max,
        })
    }
}

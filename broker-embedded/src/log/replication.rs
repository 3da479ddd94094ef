//! Replication primitives of a [`PartitionLog`]: appends as a follower (offsets, timestamps
//! and epochs as the leader wrote them), the leader-epoch cache (recovery, Kafka's
//! `endOffsetFor`), truncation (to an offset, or fully to start over at an offset), and the
//! high watermark, kept separate from the log end offset in replicated mode.
//!
//! Kafka's follower append (`UnifiedLog.appendAsFollower`) assigns no offsets, skips the
//! record-size limit (the leader accepted the batches under its own configuration), requires
//! monotonic offsets and checks CRCs; producer state and the transaction index are updated as
//! on the leader, without the sequence checks, so a follower that becomes leader has the same
//! idempotence and transaction state.

use tracing::info;

use super::epoch::{CheckpointState, EpochEntry};
use super::segment::Segment;
use super::txn::{control_record_of_batch, ControlRecord};
use super::{AppendInfo, FetchData, LogInner, PartitionLog, UNDEFINED_EPOCH_OFFSET};
use crate::error::{BrokerError, Result};
use crate::fsutil::sync_dir;
use crate::record::{BatchHeader, BatchIter, BATCH_HEADER_LEN};

impl PartitionLog {
    /// Appends batches fetched from the leader, keeping their offsets, timestamps and leader
    /// epochs. The first batch's base offset must equal the log end offset
    /// ([`BrokerError::UnexpectedAppendOffset`] otherwise); later batches must follow their
    /// predecessor (on a compacted topic, with gaps allowed as the leader's compaction left
    /// them). Producer state, the aborted-transaction index and the leader-epoch cache are
    /// updated as on the leader.
    pub fn append_as_follower(&self, batches: &[u8]) -> Result<AppendInfo> {
        let compact = self.config().cleanup_policy.compact;
        let mut parsed: Vec<(usize, usize, BatchHeader, Option<ControlRecord>)> = Vec::new();
        let mut expected_next: Option<i64> = None;
        for item in BatchIter::new(batches) {
            let b = item.map_err(|(_, e)| BrokerError::InvalidBatch(e))?;
            let h = b.header;
            if let Some(next) = expected_next {
                if h.base_offset < next || (!compact && h.base_offset != next) {
                    return Err(BrokerError::InvalidBatch(
                        crate::record::RecordError::InvalidBatch(format!(
                            "out of order offsets in a follower append: batch at {} after {}",
                            h.base_offset,
                            next - 1
                        )),
                    ));
                }
            }
            expected_next = Some(h.next_offset());
            let control = if h.is_control() && h.has_producer_id() {
                Some(control_record_of_batch(b.bytes).map_err(BrokerError::InvalidBatch)?)
            } else {
                None
            };
            parsed.push((b.position, b.bytes.len(), h, control));
        }
        let Some(&(_, _, first, _)) = parsed.first() else {
            return Err(BrokerError::InvalidBatch(
                crate::record::RecordError::InvalidBatch(
                    "a follower append holds no record batch".into(),
                ),
            ));
        };

        let mut inner = self.inner.lock();
        if inner.deleted {
            return Err(BrokerError::UnknownTopicOrPartition {
                topic: self.topic.clone(),
                partition: self.partition,
            });
        }
        let leo = inner.next_offset;
        if first.base_offset < leo || (!compact && first.base_offset != leo) {
            return Err(BrokerError::UnexpectedAppendOffset {
                topic: self.topic.clone(),
                partition: self.partition,
                first_offset: first.base_offset,
                log_end_offset: leo,
            });
        }
        // A gap (compaction on the leader) above the cleaner checkpoint would read as a corrupt
        // base offset to recovery, which requires contiguity there: the checkpoint first moves
        // past the last gap (those offsets were compacted, by the leader).
        let mut expected = leo;
        let mut past_last_gap = None;
        for (_, _, h, _) in &parsed {
            if h.base_offset != expected {
                past_last_gap = Some(h.next_offset());
            }
            expected = h.next_offset();
        }
        if let Some(end) = past_last_gap.filter(|e| *e > inner.first_dirty_offset) {
            let text = super::encode_cleaner_checkpoint(&self.topic, self.partition, end);
            crate::fsutil::write_atomic(
                &*self.storage,
                &self.dir.join(super::CLEANER_CHECKPOINT_FILE),
                text.as_bytes(),
            )?;
            inner.first_dirty_offset = end;
        }
        let mut record_count: u64 = 0;
        let mut last_offset = leo - 1;
        for (pos, len, h, control) in parsed {
            let bytes = &batches[pos..pos + len];
            inner
                .epochs
                .assign(h.partition_leader_epoch, h.base_offset)?;
            self.maybe_roll(&mut inner, &h)?;
            let active = inner.active()?;
            active.append(bytes, &h)?;
            let segment_base = active.base_offset;
            inner.apply_batch(segment_base, &h, control);
            inner.next_offset = h.next_offset();
            last_offset = h.last_offset();
            record_count += u64::from(h.record_count.max(0) as u32);
        }
        if !inner.replicated {
            inner.high_watermark = inner.next_offset;
        }
        inner.unflushed_messages += record_count;
        if inner.unflushed_messages >= inner.config.flush_messages {
            Self::flush_locked(&mut inner)?;
        }
        let info = AppendInfo {
            base_offset: first.base_offset,
            last_offset,
            log_append_time: -1,
            log_start_offset: inner.log_start_offset,
            duplicate: false,
        };
        drop(inner);
        self.appended.notify_waiters();
        Ok(info)
    }

    /// At open: the leader-epoch cache is rebuilt from the batches' `partitionLeaderEpoch`
    /// when its checkpoint is missing or damaged (`unusable`), and in any case cut to the log's
    /// offsets (after an unclean shutdown the file may name epochs whose batches were lost).
    /// A missing file is only written once there is an entry to record.
    pub(super) fn recover_epoch_cache(&self, unusable: Option<CheckpointState>) -> Result<()> {
        let rebuild = unusable.is_some();
        let log_start = self.inner.lock().log_start_offset;
        let mut rebuilt = Vec::new();
        if rebuild {
            for v in self.segment_views_from(log_start) {
                let mut pos = 0;
                while pos + BATCH_HEADER_LEN as u64 <= v.size {
                    let h = v.header_at(pos)?;
                    rebuilt.push((h.partition_leader_epoch, h.base_offset));
                    pos += h.size() as u64;
                }
            }
        }
        let mut inner = self.inner.lock();
        let mut changed = matches!(unusable, Some(CheckpointState::Damaged(_)));
        for (epoch, offset) in rebuilt {
            changed |= inner.epochs.assign_in_memory(epoch, offset);
        }
        let leo = inner.next_offset;
        let start = inner.log_start_offset;
        changed |= inner.epochs.truncate_from_end_in_memory(leo);
        changed |= inner.epochs.truncate_from_start_in_memory(start);
        if changed {
            inner.epochs.write()?;
        }
        Ok(())
    }

    /// Records that `epoch` starts at `start_offset` (Kafka's `maybeAssignEpochStartOffset`,
    /// which a new leader calls with its epoch and log end offset), writing the checkpoint.
    pub fn assign_epoch_start_offset(&self, epoch: i32, start_offset: i64) -> Result<()> {
        self.inner.lock().epochs.assign(epoch, start_offset)?;
        Ok(())
    }

    /// The latest leader epoch in the cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.inner.lock().epochs.latest().map(|e| e.epoch)
    }

    /// The leader-epoch cache's entries, ascending.
    pub fn epoch_entries(&self) -> Vec<EpochEntry> {
        self.inner.lock().epochs.entries().to_vec()
    }

    /// Kafka's `endOffsetForEpoch`: `(epoch, end offset)` for the largest epoch at or below
    /// `leader_epoch` (its end offset is the start of the next epoch, or the log end offset for
    /// the latest epoch); `None` when undefined (an unknown newer epoch, an undefined one, an
    /// empty cache).
    pub fn end_offset_for_epoch(&self, leader_epoch: i32) -> Option<(i32, i64)> {
        let inner = self.inner.lock();
        let (epoch, offset) = inner.epochs.end_offset_for(leader_epoch, inner.next_offset);
        (offset != UNDEFINED_EPOCH_OFFSET).then_some((epoch, offset))
    }

    /// The leader epoch that wrote `offset`, if the cache knows it.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.inner.lock().epochs.epoch_for_offset(offset)
    }

    /// The high watermark (the log end offset unless replicated).
    pub fn high_watermark(&self) -> i64 {
        self.inner.lock().high_watermark()
    }

    /// The log end offset (the offset the next record gets).
    pub fn log_end_offset(&self) -> i64 {
        self.inner.lock().next_offset
    }

    /// Whether the high watermark is driven by replication.
    pub fn is_replicated(&self) -> bool {
        self.inner.lock().replicated
    }

    /// Switches replicated mode. Turning it on keeps the current high watermark (restored
    /// from the `replication-offset-checkpoint`, or the log end offset of single-node
    /// operation); turning it off makes the high watermark the log end offset again.
    pub fn set_replicated(&self, replicated: bool) {
        let mut inner = self.inner.lock();
        inner.replicated = replicated;
        if !replicated {
            inner.high_watermark = inner.next_offset;
        }
        drop(inner);
        self.appended.notify_waiters();
    }

    /// Advances the high watermark (Kafka's `maybeIncrementHighWatermark`/`updateHighWatermark`
    /// for a follower): clamped to `[log start, log end]`, never moved backwards (only
    /// truncation lowers it). Returns the high watermark after the call. Waiting fetches are
    /// woken when it moves. Ignored (returns the log end offset) unless replicated.
    pub fn set_high_watermark(&self, hw: i64) -> i64 {
        let mut inner = self.inner.lock();
        let clamped = hw.clamp(inner.log_start_offset, inner.next_offset);
        let moved = inner.replicated && clamped > inner.high_watermark;
        if moved {
            inner.high_watermark = clamped;
        }
        let now = inner.high_watermark();
        drop(inner);
        if moved {
            self.appended.notify_waiters();
        }
        now
    }

    /// Sets the high watermark read from the `replication-offset-checkpoint` at open, clamped
    /// to `[log start, log end]` (may move it backwards: this initialises it).
    pub fn restore_high_watermark(&self, hw: i64) {
        let mut inner = self.inner.lock();
        inner.high_watermark = hw.clamp(inner.log_start_offset, inner.next_offset);
    }

    /// Reads for a follower replica: whole batches from `fetch_offset` up to the log end
    /// offset (not the high watermark), `max_bytes` a soft limit as in [`PartitionLog::read`].
    pub fn read_for_replica(&self, fetch_offset: i64, max_bytes: usize) -> Result<FetchData> {
        self.read_bounded(
            fetch_offset,
            max_bytes,
            super::read::ReadBound::LogEnd,
            true,
        )
    }

    /// Kafka's `truncateTo`: removes every record at or above `offset` (whole batches: a batch
    /// holding `offset` goes entirely), with their index entries, aborted-transaction entries,
    /// producer-state snapshots and leader epochs; producer state is rebuilt from what is
    /// kept, the high watermark and recovery point are lowered to the new log end offset.
    /// Returns whether anything was removed. At or beyond the log end, only the epoch cache is
    /// cut (an epoch assigned at the log end without data).
    pub fn truncate_to(&self, offset: i64) -> Result<bool> {
        if offset < 0 {
            return Err(BrokerError::InvalidRecord(format!(
                "cannot truncate {}-{} to a negative offset {offset}",
                self.topic, self.partition
            )));
        }
        let _no_cleaner = self.cleaning.lock();
        let mut inner = self.inner.lock();
        if inner.deleted {
            return Err(BrokerError::UnknownTopicOrPartition {
                topic: self.topic.clone(),
                partition: self.partition,
            });
        }
        if offset >= inner.next_offset {
            let leo = inner.next_offset;
            if inner.epochs.truncate_from_end_in_memory(leo) {
                inner.epochs.write()?;
            }
            return Ok(false);
        }
        let first_base = inner.segments.keys().next().copied().unwrap_or(0);
        if first_base > offset {
            drop(inner);
            drop(_no_cleaner);
            self.truncate_fully_and_start_at(offset)?;
            return Ok(true);
        }
        info!(partition = %super::partition_dir_name(&self.topic, self.partition), offset, log_end_offset = inner.next_offset, "truncating the log");
        let doomed: Vec<i64> = inner
            .segments
            .range(offset + 1..)
            .map(|(b, _)| *b)
            .collect();
        let mut removed: Vec<Segment> = Vec::new();
        for b in doomed {
            if let Some(seg) = inner.segments.remove(&b) {
                removed.push(seg);
            }
        }
        // Newest first, each removal made durable before the next: a power cut in between
        // leaves a longer prefix of the old log (which the replica truncates again), never a
        // log with a hole.
        for seg in removed.iter().rev() {
            seg.delete_files()
                .map_err(|e| BrokerError::io(seg.log_path(), e))?;
            sync_dir(&*self.storage, &self.dir)?;
        }
        let new_end = inner.active()?.truncate_to(offset)?;
        self.after_truncation(&mut inner, new_end)?;
        Ok(true)
    }

    /// Kafka's `truncateFullyAndStartAt`: deletes every segment and starts an empty log at
    /// `offset` (log start, log end and high watermark all become `offset`); producer state,
    /// its snapshots and the leader-epoch cache are cleared.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<()> {
        if offset < 0 {
            return Err(BrokerError::InvalidRecord(format!(
                "cannot start {}-{} at a negative offset {offset}",
                self.topic, self.partition
            )));
        }
        let _no_cleaner = self.cleaning.lock();
        let mut inner = self.inner.lock();
        if inner.deleted {
            return Err(BrokerError::UnknownTopicOrPartition {
                topic: self.topic.clone(),
                partition: self.partition,
            });
        }
        info!(partition = %super::partition_dir_name(&self.topic, self.partition), offset, "truncating the whole log and starting at a new offset");
        let old = std::mem::take(&mut inner.segments);
        for seg in old.values() {
            seg.delete_files()
                .map_err(|e| BrokerError::io(seg.log_path(), e))?;
        }
        let seg = Segment::create(
            &self.storage,
            &self.dir,
            offset,
            inner.config.index_interval_bytes,
        )?;
        inner.segments.insert(offset, seg);
        sync_dir(&*self.storage, &self.dir)?;
        inner.log_start_offset = offset;
        inner.epochs.clear();
        inner.epochs.write()?;
        inner.producers.clear_and_delete_snapshots();
        inner.high_watermark = offset;
        self.after_truncation(&mut inner, offset)?;
        Ok(())
    }

    /// Common bookkeeping once the segments end at `new_end`.
    fn after_truncation(&self, inner: &mut LogInner, new_end: i64) -> Result<()> {
        inner.truncations += 1;
        inner.next_offset = new_end;
        inner.log_start_offset = inner.log_start_offset.min(new_end);
        inner.recovery_point = inner.recovery_point.min(new_end);
        inner.high_watermark = inner.high_watermark.clamp(inner.log_start_offset, new_end);
        if !inner.replicated {
            inner.high_watermark = new_end;
        }
        if inner.epochs.truncate_from_end_in_memory(new_end) {
            inner.epochs.write()?;
        }
        if inner.first_dirty_offset > new_end {
            inner.first_dirty_offset = new_end;
            let text = super::encode_cleaner_checkpoint(&self.topic, self.partition, new_end);
            crate::fsutil::write_atomic(
                &*self.storage,
                &self.dir.join(super::CLEANER_CHECKPOINT_FILE),
                text.as_bytes(),
            )?;
        }
        // Producer state: the newest snapshot at or below the new end (newer ones describe
        // removed data and are deleted), then a replay of the kept batches after it.
        let from = inner.producers.load(new_end, new_end)?;
        let start = inner.log_start_offset;
        if from < new_end {
            self.replay_locked(inner, from.max(start))?;
        }
        Ok(())
    }
}

//! Log compaction (`cleanup.policy=compact`): keep the latest record per key in the sealed
//! segments, drop tombstones once their delete horizon has passed.
//!
//! The pass works on a snapshot of the sealed segments (immutable files), without holding the
//! partition lock: appends continue meanwhile. Each changed segment is written to
//! `<base>.log.cleaned`, fsynced, and swapped in under the lock only if the original is still
//! in place (retention may have deleted it meanwhile). The active segment is never touched.
//!
//! Transactions, as Kafka's cleaner: only segments wholly below the last stable offset are
//! cleaned, and records of aborted transactions (known from the `.txnindex` entries) are
//! removed and never shadow a committed value. Unlike Kafka, transaction markers are always
//! kept (Kafka drops a marker once its transaction has no data left and the delete horizon
//! has passed); they cost one small batch per transaction and partition.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tracing::info;

use super::segment::{ScanReader, Segment};
use super::txn::{control_record_of_batch, ControlRecord};
use super::{PartitionLog, SegmentView};
use crate::config::LogConfig;
use crate::error::{BrokerError, Result};
use crate::record::{decode_records, encode_batch, BatchHeader, BatchSpec, BATCH_HEADER_LEN};

/// What one cleaner pass did to one partition (or, summed, to a broker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanerStats {
    /// Segments deleted by retention.
    pub segments_deleted: usize,
    /// Segments rewritten by compaction.
    pub segments_cleaned: usize,
    /// Records removed by compaction (superseded values and expired tombstones).
    pub records_removed: u64,
    /// Bytes of the rewritten segments before compaction.
    pub bytes_before: u64,
    /// Bytes of the rewritten segments after compaction.
    pub bytes_after: u64,
}

impl std::ops::AddAssign for CleanerStats {
    fn add_assign(&mut self, o: Self) {
        self.segments_deleted += o.segments_deleted;
        self.segments_cleaned += o.segments_cleaned;
        self.records_removed += o.records_removed;
        self.bytes_before += o.bytes_before;
        self.bytes_after += o.bytes_after;
    }
}

/// Calls `f(position, header, batch bytes)` for every batch of a segment view, in order.
pub(crate) fn for_each_batch(
    v: &SegmentView,
    mut f: impl FnMut(u64, &BatchHeader, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut reader = ScanReader::new(&*v.file, v.size);
    let mut pos = 0u64;
    let mut buf = Vec::new();
    while pos + BATCH_HEADER_LEN as u64 <= v.size {
        buf.clear();
        buf.extend_from_slice(
            reader
                .bytes(pos, BATCH_HEADER_LEN)
                .map_err(|e| BrokerError::io(&v.path, e))?,
        );
        let corrupt = |source| BrokerError::Corrupt {
            path: v.path.clone(),
            position: pos,
            source,
        };
        let h = BatchHeader::parse(&buf).map_err(corrupt)?;
        if pos + h.size() as u64 > v.size {
            break;
        }
        buf.clear();
        buf.extend_from_slice(
            reader
                .bytes(pos, h.size())
                .map_err(|e| BrokerError::io(&v.path, e))?,
        );
        f(pos, &h, &buf)?;
        pos += h.size() as u64;
    }
    Ok(())
}

/// Tells, batch by batch in offset order, which transactional batches belong to aborted
/// transactions, from the `.txnindex` entries of the range (as Kafka's consumer and cleaner
/// do): a producer is aborted from an entry's first offset until its ABORT marker.
struct AbortedTracker {
    pending: std::collections::VecDeque<(i64, i64)>,
    active: std::collections::HashSet<i64>,
}

impl AbortedTracker {
    fn new(aborted: &[super::AbortedTxn]) -> Self {
        let mut pending: Vec<(i64, i64)> = aborted
            .iter()
            .map(|a| (a.first_offset, a.producer_id))
            .collect();
        pending.sort_unstable();
        Self {
            pending: pending.into(),
            active: std::collections::HashSet::new(),
        }
    }

    /// True for a data batch of an aborted transaction; an ABORT marker ends its producer's
    /// aborted range (and is itself not "aborted data").
    fn batch_is_aborted(&mut self, h: &BatchHeader, batch: &[u8]) -> bool {
        while self
            .pending
            .front()
            .is_some_and(|(first, _)| *first <= h.last_offset())
        {
            if let Some((_, pid)) = self.pending.pop_front() {
                self.active.insert(pid);
            }
        }
        if !h.is_transactional() || !self.active.contains(&h.producer_id) {
            return false;
        }
        if h.is_control() {
            if let Ok(ControlRecord::EndTxn(m)) = control_record_of_batch(batch) {
                if !m.commit {
                    self.active.remove(&h.producer_id);
                }
            }
            return false;
        }
        true
    }
}

impl PartitionLog {
    pub(crate) fn first_dirty_offset(&self) -> i64 {
        self.inner.lock().first_dirty_offset
    }

    pub(crate) fn set_first_dirty_offset(&self, offset: i64) {
        let mut inner = self.inner.lock();
        inner.first_dirty_offset = inner.first_dirty_offset.max(offset);
    }

    fn write_cleaner_checkpoint(&self, offset: i64) -> Result<()> {
        let text = super::encode_cleaner_checkpoint(self.topic(), self.partition(), offset);
        crate::fsutil::write_atomic(
            &**self.storage(),
            &self.dir().join(super::CLEANER_CHECKPOINT_FILE),
            text.as_bytes(),
        )
    }

    /// Views of the sealed (non-active) segments, for the cleaner.
    pub(crate) fn sealed_segment_views(&self) -> (Vec<SegmentView>, Arc<LogConfig>) {
        let inner = self.inner.lock();
        let n = inner.segments.len().saturating_sub(1);
        let views = inner
            .segments
            .values()
            .take(n)
            .map(|s| SegmentView {
                base_offset: s.base_offset,
                file: s.file(),
                size: s.size(),
                next_offset: s.next_offset(),
                max_timestamp: s.max_timestamp(),
                path: s.log_path().to_path_buf(),
            })
            .collect();
        (views, Arc::clone(&inner.config))
    }

    /// Runs one compaction pass at `now_ms`. Without `force`, logs whose dirty ratio is below
    /// `min.cleanable.dirty.ratio` are skipped, unless their oldest dirty cleanable segment is
    /// older than `max.compaction.lag.ms` (its newest record, so a segment is due at the latest
    /// `max.compaction.lag.ms` after its last write).
    pub fn compact(&self, now_ms: i64, force: bool) -> Result<CleanerStats> {
        let _one_pass_at_a_time = self.cleaning.lock();
        let (views, config) = self.sealed_segment_views();
        let mut stats = CleanerStats::default();
        if !config.cleanup_policy.compact || views.is_empty() {
            return Ok(stats);
        }
        let lag = config.min_compaction_lag_ms;
        // As Kafka's first uncleanable offset: nothing at or after the last stable offset (an
        // open transaction's data, whose fate is unknown) is cleaned.
        let lso = self.offsets().last_stable_offset;
        let cleanable: Vec<SegmentView> = views
            .into_iter()
            .take_while(|v| now_ms.saturating_sub(v.max_timestamp) >= lag && v.next_offset <= lso)
            .collect();
        if cleanable.is_empty() {
            return Ok(stats);
        }
        if !force {
            let first_dirty = self.first_dirty_offset();
            let total: u64 = cleanable.iter().map(|v| v.size).sum();
            let dirty: u64 = cleanable
                .iter()
                .filter(|v| v.next_offset > first_dirty)
                .map(|v| v.size)
                .sum();
            let overdue = cleanable.iter().any(|v| {
                v.next_offset > first_dirty
                    && now_ms.saturating_sub(v.max_timestamp) >= config.max_compaction_lag_ms
            });
            if total == 0
                || ((dirty as f64 / total as f64) < config.min_cleanable_dirty_ratio && !overdue)
            {
                return Ok(stats);
            }
        }

        // Pass 1: the latest offset of every key in the cleanable range.
        // Records of aborted transactions neither enter the key map nor survive cleaning
        // (Kafka's cleaner); the markers are kept.
        let first_base = cleanable.first().map_or(0, |v| v.base_offset);
        let upto = cleanable.last().map_or(0, |v| v.next_offset);
        let aborted = self.collect_aborted_txns(first_base, upto);
        let mut tracker = AbortedTracker::new(&aborted);
        let mut latest: HashMap<Bytes, i64> = HashMap::new();
        for v in &cleanable {
            for_each_batch(v, |pos, h, batch| {
                if tracker.batch_is_aborted(h, batch) || h.is_control() {
                    return Ok(());
                }
                let records = decode_records(batch).map_err(|source| BrokerError::Corrupt {
                    path: v.path.clone(),
                    position: pos,
                    source,
                })?;
                for r in records {
                    if let Some(k) = r.key {
                        latest.insert(k, r.offset);
                    }
                }
                Ok(())
            })?;
        }

        // Pass 2: rewrite the segments that change.
        let mut clean_tracker = AbortedTracker::new(&aborted);
        let mut cleaned: Vec<(SegmentView, Segment, u64)> = Vec::new();
        for v in &cleanable {
            let mut out = Segment::create_cleaned(
                self.storage(),
                self.dir(),
                v.base_offset,
                config.index_interval_bytes,
            )?;
            let mut changed = false;
            let mut removed = 0u64;
            for_each_batch(v, |pos, h, batch| {
                if clean_tracker.batch_is_aborted(h, batch) {
                    changed = true;
                    removed += u64::from(h.record_count.max(0) as u32);
                    return Ok(());
                }
                if h.is_control() {
                    return out.append(batch, h);
                }
                let records = decode_records(batch).map_err(|source| BrokerError::Corrupt {
                    path: v.path.clone(),
                    position: pos,
                    source,
                })?;
                let old_horizon = h.has_delete_horizon().then_some(h.base_timestamp);
                let total = records.len();
                let kept: Vec<_> = records
                    .into_iter()
                    .filter(|r| {
                        let latest_for_key = r
                            .key
                            .as_ref()
                            .is_some_and(|k| latest.get(k) == Some(&r.offset));
                        let expired_tombstone =
                            r.value.is_none() && old_horizon.is_some_and(|hz| now_ms >= hz);
                        latest_for_key && !expired_tombstone
                    })
                    .collect();
                removed += (total - kept.len()) as u64;
                let has_tombstone = kept.iter().any(|r| r.value.is_none());
                let horizon = match old_horizon {
                    Some(hz) => Some(hz),
                    None if has_tombstone => {
                        Some(now_ms.saturating_add(config.delete_retention_ms))
                    }
                    None => None,
                };
                if kept.len() == total && horizon == old_horizon {
                    return out.append(batch, h);
                }
                changed = true;
                if kept.is_empty() {
                    return Ok(());
                }
                let spec = BatchSpec {
                    base_offset: h.base_offset,
                    compression: h.compression().map_err(BrokerError::InvalidBatch)?,
                    timestamp_type: h.timestamp_type(),
                    transactional: h.is_transactional(),
                    control: false,
                    producer_id: h.producer_id,
                    producer_epoch: h.producer_epoch,
                    base_sequence: h.base_sequence,
                    partition_leader_epoch: h.partition_leader_epoch,
                    last_offset_delta: Some(h.last_offset_delta),
                    delete_horizon_ms: horizon,
                };
                let bytes = encode_batch(&spec, &kept).map_err(BrokerError::InvalidBatch)?;
                let nh = BatchHeader::parse(&bytes).map_err(BrokerError::InvalidBatch)?;
                out.append(&bytes, &nh)
            })?;
            if changed {
                out.seal()?;
                out.flush()?;
                out.set_next_offset(v.next_offset);
                cleaned.push((v.clone(), out, removed));
            } else {
                let _ = out.delete_files();
            }
        }
        if upto > self.first_dirty_offset() {
            // Durable before any swap is: recovery accepts offset gaps only below it.
            self.write_cleaner_checkpoint(upto)?;
        }
        self.swap_cleaned(cleaned, &mut stats)?;
        self.set_first_dirty_offset(upto);
        if stats.segments_cleaned > 0 {
            info!(
                topic = self.topic(),
                partition = self.partition(),
                segments = stats.segments_cleaned,
                records_removed = stats.records_removed,
                bytes_before = stats.bytes_before,
                bytes_after = stats.bytes_after,
                "compacted"
            );
        }
        Ok(stats)
    }

    fn swap_cleaned(
        &self,
        cleaned: Vec<(SegmentView, Segment, u64)>,
        stats: &mut CleanerStats,
    ) -> Result<()> {
        let mut inner = self.inner.lock();
        for (v, out, removed) in cleaned {
            let same = inner
                .segments
                .get(&v.base_offset)
                .is_some_and(|s| Arc::ptr_eq(&s.file(), &v.file));
            if same && !inner.deleted {
                let after = out.size();
                if let Some(seg) = inner.segments.get_mut(&v.base_offset) {
                    seg.replace_with(out)?;
                }
                stats.segments_cleaned += 1;
                stats.records_removed += removed;
                stats.bytes_before += v.size;
                stats.bytes_after += after;
            } else {
                let _ = out.delete_files();
            }
        }
        Ok(())
    }
}

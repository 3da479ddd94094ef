//! The partition log: an ordered set of segments in one `<topic>-<partition>/` directory.
//!
//! Concurrency: one mutex per partition guards the segment map and offsets. Appends hold it
//! while writing; reads hold it only to snapshot positions and file handles, then read with
//! `pread` outside it (a segment deleted or replaced meanwhile stays readable through its open
//! handle). The cleaner reads sealed segments without the lock and swaps results in under it.

mod cleaner;
pub(crate) mod index;
pub(crate) mod producer_state;
pub(crate) mod segment;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tracing::{debug, info, warn};

pub use cleaner::CleanerStats;
pub use producer_state::{BatchMetadata, ProducerEntry, MAX_REMEMBERED_BATCHES};
use producer_state::{ProducerStateManager, SequenceCheck};
use segment::{read_at, Segment};

use crate::config::LogConfig;
use crate::error::{BrokerError, Result};
use crate::fsutil::sync_dir;
use crate::record::{
    self, decode_records, set_base_offset, set_log_append_time, BatchHeader, BatchIter,
    TimestampType, BATCH_HEADER_LEN,
};

/// Who is appending: client batches get full validation (sequential offset deltas, producer
/// sequence checks); the broker's own internal writes skip the producer checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A producer (in-process or over the wire).
    Client,
    /// The broker itself (offsets topic, transaction markers).
    Internal,
}

/// Which records a read may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Everything up to the high watermark.
    #[default]
    ReadUncommitted,
    /// Only up to the last stable offset (no open transactions).
    ReadCommitted,
}

/// Result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first appended record.
    pub base_offset: i64,
    /// Offset of the last appended record.
    pub last_offset: i64,
    /// The broker's timestamp when the topic uses LogAppendTime, else -1.
    pub log_append_time: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
    /// True when the batch was a retry of one already in the log (nothing was written).
    pub duplicate: bool,
}

/// Bytes returned by a read, plus the partition's offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchData {
    /// Whole record batches, as stored (may be empty).
    pub records: Bytes,
    /// High watermark (offset after the last committed-to-all-replicas record).
    pub high_watermark: i64,
    /// Last stable offset (first offset of the oldest open transaction, or the high watermark).
    pub last_stable_offset: i64,
    /// First offset still in the log.
    pub log_start_offset: i64,
}

/// Offsets and size of a partition log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOffsets {
    /// First offset in the log.
    pub log_start_offset: i64,
    /// Offset the next record gets (log end offset).
    pub log_end_offset: i64,
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset.
    pub last_stable_offset: i64,
    /// Bytes in all segments.
    pub size_bytes: u64,
    /// Number of segments.
    pub segments: usize,
}

struct LogInner {
    config: Arc<LogConfig>,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    next_offset: i64,
    recovery_point: i64,
    unflushed_messages: u64,
    last_flush: Instant,
    producers: ProducerStateManager,
    deleted: bool,
    /// Offsets below this were compacted by the last cleaner pass (the cleaner checkpoint).
    first_dirty_offset: i64,
}

impl LogInner {
    fn active(&mut self) -> Result<&mut Segment> {
        self.segments
            .values_mut()
            .next_back()
            .ok_or_else(|| BrokerError::Metadata {
                path: PathBuf::new(),
                reason: "partition log has no segment".into(),
            })
    }

    fn high_watermark(&self) -> i64 {
        self.next_offset
    }

    fn last_stable_offset(&self) -> i64 {
        self.producers
            .first_unstable_offset()
            .map_or(self.high_watermark(), |o| o.min(self.high_watermark()))
    }
}

/// A read-only view of one segment taken under the lock.
#[derive(Clone)]
pub(crate) struct SegmentView {
    pub(crate) base_offset: i64,
    pub(crate) file: Arc<File>,
    pub(crate) size: u64,
    pub(crate) next_offset: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) path: PathBuf,
}

impl SegmentView {
    /// Reads and parses the batch header at byte `pos`.
    fn header_at(&self, pos: u64) -> Result<BatchHeader> {
        let hb = read_at(&self.file, pos, BATCH_HEADER_LEN)
            .map_err(|e| BrokerError::io(&self.path, e))?;
        BatchHeader::parse(&hb).map_err(|source| BrokerError::Corrupt {
            path: self.path.clone(),
            position: pos,
            source,
        })
    }
}

/// One partition's durable log.
pub struct PartitionLog {
    topic: String,
    partition: i32,
    dir: PathBuf,
    inner: Mutex<LogInner>,
    /// Woken on every append, for fetches that wait for data.
    pub(crate) appended: tokio::sync::Notify,
    /// Serialises cleaner passes (background and on demand) on this partition.
    pub(crate) cleaning: Mutex<()>,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("dir", &self.dir)
            .finish()
    }
}

pub(crate) fn partition_dir_name(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir`. `clean` says the previous shutdown was
    /// clean; otherwise every segment from the one holding `recovery_point` on is validated.
    pub fn open(
        dir: PathBuf,
        topic: &str,
        partition: i32,
        config: Arc<LogConfig>,
        clean: bool,
        recovery_point: i64,
    ) -> Result<Self> {
        fs::create_dir_all(&dir).map_err(|e| BrokerError::io(&dir, e))?;
        let mut bases = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| BrokerError::io(&dir, e))? {
            let entry = entry.map_err(|e| BrokerError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".cleaned") || name.ends_with(".tmp") {
                // Leftovers of an interrupted compaction or atomic write.
                let _ = fs::remove_file(entry.path());
            } else if let Some(stem) = name.strip_suffix(".log") {
                match stem.parse::<i64>() {
                    Ok(b) if b >= 0 => bases.push(b),
                    _ => {
                        warn!(file = %entry.path().display(), "ignoring a .log file with an unexpected name")
                    }
                }
            }
        }
        bases.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut truncated_at: Option<usize> = None;
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            let trusted = if clean {
                true
            } else {
                next_base.is_some_and(|n| n <= recovery_point)
            };
            let (seg, truncation) =
                Segment::open(&dir, base, config.index_interval_bytes, trusted)?;
            segments.insert(base, seg);
            if truncation.is_some() {
                truncated_at = Some(i);
                break;
            }
        }
        if let Some(i) = truncated_at {
            for &base in &bases[i + 1..] {
                warn!(
                    partition = %partition_dir_name(topic, partition),
                    segment = base,
                    "deleting a segment that follows a truncated one"
                );
                let (seg, _) = Segment::open(&dir, base, config.index_interval_bytes, true)?;
                seg.delete_files().map_err(|e| BrokerError::io(&dir, e))?;
            }
        }
        // Drop empty segments that are not the last one (left by crashes during a roll).
        let empties: Vec<i64> = segments
            .iter()
            .rev()
            .skip(1)
            .filter(|(_, s)| s.is_empty())
            .map(|(b, _)| *b)
            .collect();
        for b in empties {
            if let Some(s) = segments.remove(&b) {
                let _ = s.delete_files();
            }
        }
        if segments.is_empty() {
            let seg = Segment::create(&dir, 0, config.index_interval_bytes)?;
            segments.insert(0, seg);
            sync_dir(&dir)?;
        }
        let next_offset = segments
            .values()
            .next_back()
            .map_or(0, |s| s.next_offset().max(s.base_offset));
        let log_start_offset = segments.keys().next().copied().unwrap_or(0);
        let mut producers = ProducerStateManager::new(&dir);
        let replay_from = producers.load(next_offset)?;
        let log = Self {
            topic: topic.to_string(),
            partition,
            dir,
            inner: Mutex::new(LogInner {
                config,
                segments,
                log_start_offset,
                next_offset,
                recovery_point: if clean {
                    next_offset
                } else {
                    recovery_point.min(next_offset)
                },
                unflushed_messages: 0,
                last_flush: Instant::now(),
                producers,
                deleted: false,
                first_dirty_offset: 0,
            }),
            appended: tokio::sync::Notify::new(),
            cleaning: Mutex::new(()),
        };
        if replay_from < next_offset {
            log.replay_producer_state(replay_from.max(log_start_offset))?;
        }
        debug!(partition = %partition_dir_name(topic, partition), log_start_offset, next_offset, "opened partition log");
        Ok(log)
    }

    fn replay_producer_state(&self, from: i64) -> Result<()> {
        let views = self.segment_views_from(from);
        let mut inner = self.inner.lock();
        for v in views {
            let mut pos = 0;
            while pos + BATCH_HEADER_LEN as u64 <= v.size {
                let h = v.header_at(pos)?;
                if h.last_offset() >= from {
                    inner.producers.update(&h);
                }
                pos += h.size() as u64;
            }
        }
        Ok(())
    }

    /// Topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Partition number.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Replaces the log's configuration (takes effect for the next append and cleaner pass).
    pub fn set_config(&self, config: Arc<LogConfig>) {
        self.inner.lock().config = config;
    }

    /// The current configuration.
    pub fn config(&self) -> Arc<LogConfig> {
        Arc::clone(&self.inner.lock().config)
    }

    /// Current offsets and size.
    pub fn offsets(&self) -> LogOffsets {
        let inner = self.inner.lock();
        LogOffsets {
            log_start_offset: inner.log_start_offset,
            log_end_offset: inner.next_offset,
            high_watermark: inner.high_watermark(),
            last_stable_offset: inner.last_stable_offset(),
            size_bytes: inner.segments.values().map(Segment::size).sum(),
            segments: inner.segments.len(),
        }
    }

    /// Offset up to which data is known to be on disk.
    pub fn recovery_point(&self) -> i64 {
        self.inner.lock().recovery_point
    }

    /// Validates and appends one or more record batches, assigning offsets (rewriting each
    /// batch's base offset in place, and its timestamps under LogAppendTime).
    pub fn append(
        &self,
        batches: &mut [u8],
        origin: AppendOrigin,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        let config = self.config();
        let require_keys = config.cleanup_policy.compact;
        let mut ranges = Vec::new();
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
                if b.header.is_transactional() {
                    return Err(BrokerError::InvalidRecord(
                        "transactional batches are not supported yet".into(),
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
        let base_offset = inner.next_offset;
        let mut offset = base_offset;
        let mut record_count: u64 = 0;
        for &(pos, len) in &ranges {
            let bytes = &mut batches[pos..pos + len];
            set_base_offset(bytes, offset);
            if log_append {
                set_log_append_time(bytes, now_ms).map_err(BrokerError::InvalidBatch)?;
            }
            let h = BatchHeader::parse(bytes).map_err(BrokerError::InvalidBatch)?;
            self.maybe_roll(&mut inner, &h)?;
            inner.active()?.append(bytes, &h)?;
            inner.producers.update(&h);
            offset = h.next_offset();
            inner.next_offset = offset;
            record_count += u64::from(h.record_count.max(0) as u32);
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

    fn maybe_roll(&self, inner: &mut LogInner, h: &BatchHeader) -> Result<()> {
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

    fn roll_locked(&self, inner: &mut LogInner, new_base: i64) -> Result<()> {
        inner.active()?.seal()?;
        let seg = Segment::create(&self.dir, new_base, inner.config.index_interval_bytes)?;
        inner.segments.insert(new_base, seg);
        sync_dir(&self.dir)?;
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

    fn flush_locked(inner: &mut LogInner) -> Result<()> {
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
        let (files, target) = {
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
            (files, inner.next_offset)
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
        inner.recovery_point = inner.recovery_point.max(target);
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

    /// Marks the log deleted: later appends and reads fail with UNKNOWN_TOPIC_OR_PARTITION.
    pub(crate) fn mark_deleted(&self) {
        self.inner.lock().deleted = true;
        self.appended.notify_waiters();
    }

    fn out_of_range(&self, inner: &LogInner, offset: i64) -> BrokerError {
        BrokerError::OffsetOutOfRange {
            topic: self.topic.clone(),
            partition: self.partition,
            offset,
            log_start_offset: inner.log_start_offset,
            log_end_offset: inner.next_offset,
        }
    }

    fn segment_views_from(&self, offset: i64) -> Vec<SegmentView> {
        let inner = self.inner.lock();
        Self::views_locked(&inner, offset)
    }

    fn views_locked(inner: &LogInner, offset: i64) -> Vec<SegmentView> {
        let start = inner
            .segments
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        inner
            .segments
            .range(start..)
            .map(|(_, s)| SegmentView {
                base_offset: s.base_offset,
                file: s.file(),
                size: s.size(),
                next_offset: s.next_offset(),
                max_timestamp: s.max_timestamp(),
                path: s.log_path().to_path_buf(),
            })
            .collect()
    }

    /// Reads whole batches starting with the one containing `fetch_offset`, up to `max_bytes`
    /// (a soft limit: the first batch is returned even if larger, as KIP-74 requires).
    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        isolation: IsolationLevel,
    ) -> Result<FetchData> {
        self.read_with(fetch_offset, max_bytes, isolation, true)
    }

    /// As [`PartitionLog::read`]; with `min_one_batch = false` a first batch larger than
    /// `max_bytes` is not returned (the later partitions of a Fetch response, KIP-74).
    pub fn read_with(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        isolation: IsolationLevel,
        min_one_batch: bool,
    ) -> Result<FetchData> {
        let (views, first_pos, upper, mut data) = {
            let inner = self.inner.lock();
            if inner.deleted {
                return Err(BrokerError::UnknownTopicOrPartition {
                    topic: self.topic.clone(),
                    partition: self.partition,
                });
            }
            if fetch_offset < inner.log_start_offset || fetch_offset > inner.next_offset {
                return Err(self.out_of_range(&inner, fetch_offset));
            }
            let upper = match isolation {
                IsolationLevel::ReadUncommitted => inner.high_watermark(),
                IsolationLevel::ReadCommitted => inner.last_stable_offset(),
            };
            let data = FetchData {
                records: Bytes::new(),
                high_watermark: inner.high_watermark(),
                last_stable_offset: inner.last_stable_offset(),
                log_start_offset: inner.log_start_offset,
            };
            if fetch_offset >= upper {
                return Ok(data);
            }
            let views = Self::views_locked(&inner, fetch_offset);
            let first_pos = inner
                .segments
                .range(..=fetch_offset)
                .next_back()
                .map_or(0, |(_, s)| s.position_for(fetch_offset));
            (views, first_pos, upper, data)
        };
        for (i, v) in views.iter().enumerate() {
            let mut pos = if i == 0 { first_pos } else { 0 };
            while pos + BATCH_HEADER_LEN as u64 <= v.size {
                let h = v.header_at(pos)?;
                if h.base_offset >= upper {
                    return Ok(data);
                }
                if h.last_offset() < fetch_offset {
                    pos += h.size() as u64;
                    continue;
                }
                let available = v.size - pos;
                if !min_one_batch && h.size() > max_bytes {
                    return Ok(data);
                }
                let want = (h.size() as u64).max((max_bytes as u64).min(available));
                if want > available {
                    return Err(BrokerError::Corrupt {
                        path: v.path.clone(),
                        position: pos,
                        source: record::RecordError::Truncated {
                            needed: h.size(),
                            available: available as usize,
                        },
                    });
                }
                let mut buf = read_at(&v.file, pos, want as usize)
                    .map_err(|e| BrokerError::io(&v.path, e))?;
                let mut end = 0usize;
                while end + BATCH_HEADER_LEN <= buf.len() {
                    let Ok(bh) = BatchHeader::parse(&buf[end..]) else {
                        break;
                    };
                    if bh.base_offset >= upper || end + bh.size() > buf.len() {
                        break;
                    }
                    end += bh.size();
                }
                buf.truncate(end);
                data.records = Bytes::from(buf);
                return Ok(data);
            }
        }
        Ok(data)
    }

    /// The first record (offset, timestamp) whose timestamp is `>= target`, or `None`.
    pub fn offset_for_timestamp(&self, target: i64) -> Result<Option<(i64, i64)>> {
        let (views, start_offset, first_pos, log_start, upper) = {
            let inner = self.inner.lock();
            let Some(seg) = inner
                .segments
                .values()
                .find(|s| s.max_timestamp() >= target)
            else {
                return Ok(None);
            };
            let start = seg.offset_for_time_scan(target);
            (
                Self::views_locked(&inner, seg.base_offset),
                start,
                seg.position_for(start),
                inner.log_start_offset,
                inner.high_watermark(),
            )
        };
        for (i, v) in views.iter().enumerate() {
            let mut pos = if i == 0 { first_pos } else { 0 };
            while pos + BATCH_HEADER_LEN as u64 <= v.size {
                let h = v.header_at(pos)?;
                if h.base_offset >= upper {
                    return Ok(None);
                }
                if h.max_timestamp >= target && h.last_offset() >= start_offset && !h.is_control() {
                    let batch =
                        read_at(&v.file, pos, h.size()).map_err(|e| BrokerError::io(&v.path, e))?;
                    let records =
                        decode_records(&batch).map_err(|source| BrokerError::Corrupt {
                            path: v.path.clone(),
                            position: pos,
                            source,
                        })?;
                    if let Some(r) = records
                        .iter()
                        .find(|r| r.timestamp >= target && r.offset >= log_start.max(start_offset))
                    {
                        return Ok(Some((r.offset, r.timestamp)));
                    }
                }
                pos += h.size() as u64;
            }
        }
        Ok(None)
    }

    /// What this partition remembers about an idempotent/transactional producer.
    pub fn producer_entry(&self, producer_id: i64) -> Option<ProducerEntry> {
        self.inner.lock().producers.entry(producer_id).cloned()
    }

    pub(crate) fn first_dirty_offset(&self) -> i64 {
        self.inner.lock().first_dirty_offset
    }

    pub(crate) fn set_first_dirty_offset(&self, offset: i64) {
        let mut inner = self.inner.lock();
        inner.first_dirty_offset = inner.first_dirty_offset.max(offset);
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

    /// Deletes segments past `retention.ms` (by their newest record) and beyond
    /// `retention.bytes` (oldest first). An expired active segment is rolled first so that it
    /// can go too. Returns how many segments were deleted.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize> {
        let mut removed = Vec::new();
        {
            let mut inner = self.inner.lock();
            if inner.deleted || !inner.config.cleanup_policy.delete {
                return Ok(0);
            }
            let config = Arc::clone(&inner.config);
            if config.retention_ms >= 0 {
                while let Some((&base, seg)) = inner.segments.iter().next() {
                    let empty_sealed = seg.is_empty() && inner.segments.len() > 1;
                    let expired = empty_sealed
                        || (!seg.is_empty()
                            && seg.max_timestamp() >= 0
                            && now_ms.saturating_sub(seg.max_timestamp()) > config.retention_ms);
                    if !expired {
                        break;
                    }
                    if inner.segments.len() == 1 {
                        let next = inner.next_offset;
                        self.roll_locked(&mut inner, next)?;
                    }
                    if let Some(seg) = inner.segments.remove(&base) {
                        removed.push(seg);
                    }
                }
            }
            if config.retention_bytes >= 0 {
                let mut total: u64 = inner.segments.values().map(Segment::size).sum();
                while inner.segments.len() > 1 {
                    let Some((&base, seg)) = inner.segments.iter().next() else {
                        break;
                    };
                    let excess = total.saturating_sub(config.retention_bytes as u64);
                    // Empty sealed segments (left by compaction) go; otherwise Kafka's rule.
                    if seg.size() > 0 && excess < seg.size() {
                        break;
                    }
                    total -= seg.size();
                    if let Some(seg) = inner.segments.remove(&base) {
                        removed.push(seg);
                    }
                }
            }
            if !removed.is_empty() {
                let first = inner
                    .segments
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or(inner.next_offset);
                inner.log_start_offset = inner.log_start_offset.max(first);
            }
        }
        for seg in &removed {
            info!(segment = %seg.log_path().display(), bytes = seg.size(), "retention deleted a segment");
            seg.delete_files()
                .map_err(|e| BrokerError::io(seg.log_path(), e))?;
        }
        Ok(removed.len())
    }
}

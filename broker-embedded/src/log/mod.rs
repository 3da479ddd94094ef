//! The partition log: an ordered set of segments in one `<topic>-<partition>/` directory.
//!
//! Concurrency: one mutex per partition guards the segment map and offsets. Appends hold it
//! while writing; reads hold it only to snapshot positions and file handles, then read with
//! `pread` outside it (a segment deleted or replaced meanwhile stays readable through its open
//! handle). The cleaner reads sealed segments without the lock and swaps results in under it.
//!
//! `PartitionLog` is split by concern: this file holds its state, opening and recovery, and
//! accessors; `write` the append path, segment rolls, flushes and close; `read` reads,
//! fetch bounds and timestamp look-ups; `retention` deletion of old segments; `cleaner`
//! compaction; `txn` transaction markers and the aborted-transaction index. `segment`,
//! `index` and `producer_state` are the parts a log is made of.

mod cleaner;
pub(crate) mod epoch;
pub(crate) mod index;
pub(crate) mod producer_state;
pub(crate) mod read;
mod replication;
mod retention;
pub(crate) mod segment;
pub(crate) mod txn;
mod write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use durable_fs::{OsStorage, Storage, StorageFile};
use parking_lot::Mutex;
use tracing::{debug, warn};

pub use cleaner::CleanerStats;
use epoch::{CheckpointState, LeaderEpochCache};
pub use epoch::{EpochEntry, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
use producer_state::ProducerStateManager;
pub use producer_state::{BatchMetadata, ProducerEntry, MAX_REMEMBERED_BATCHES};
use segment::{read_at, Segment};
pub use txn::AbortedTxn;
use txn::{control_record_of_batch, ControlRecord};

use crate::config::LogConfig;
use crate::error::{BrokerError, Result};
use crate::fsutil::sync_dir;
use crate::record::{BatchHeader, BATCH_HEADER_LEN};

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
    /// For read_committed reads: the aborted transactions overlapping the returned batches
    /// (Kafka's Fetch `aborted_transactions`: a consumer drops the records of a producer from
    /// an entry's first offset up to that producer's abort marker). Empty for
    /// read_uncommitted.
    pub aborted_transactions: Vec<AbortedTxn>,
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
    /// The leader-epoch cache (`leader-epoch-checkpoint`).
    epochs: LeaderEpochCache,
    /// Replicated mode: the high watermark is set by replication
    /// ([`PartitionLog::set_high_watermark`]). Off (single node): it is the log end offset.
    replicated: bool,
    /// The high watermark in replicated mode (kept equal to the log end offset otherwise).
    high_watermark: i64,
    /// Truncations so far: a background flush that overlapped one does not advance the
    /// recovery point.
    truncations: u64,
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
        if self.replicated {
            self.high_watermark
        } else {
            self.next_offset
        }
    }

    /// Kafka's last stable offset: the first offset of the oldest open transaction (never
    /// below the log start offset), else the high watermark.
    fn last_stable_offset(&self) -> i64 {
        self.producers
            .first_unstable_offset()
            .map_or(self.high_watermark(), |o| {
                o.max(self.log_start_offset).min(self.high_watermark())
            })
    }

    /// Applies an appended (or replayed) batch of the segment based at `segment_base` to the
    /// producer state; a marker that completes an aborted transaction adds it to that
    /// segment's `.txnindex` with the last stable offset right after the marker (Kafka's
    /// `ProducerStateManager.lastStableOffset(completedTxn)`).
    fn apply_batch(
        &mut self,
        segment_base: i64,
        h: &BatchHeader,
        control: Option<ControlRecord>,
    ) -> Option<txn::CompletedTxn> {
        let completed = self.producers.update(h, control)?;
        if completed.aborted {
            let lso = self
                .producers
                .first_unstable_offset()
                .unwrap_or(completed.last_offset + 1);
            if let Some(seg) = self.segments.get_mut(&segment_base) {
                seg.add_aborted_txn(AbortedTxn {
                    producer_id: completed.producer_id,
                    first_offset: completed.first_offset,
                    last_offset: completed.last_offset,
                    last_stable_offset: lso,
                });
            }
        }
        Some(completed)
    }
}

/// A read-only view of one segment taken under the lock.
#[derive(Clone)]
pub(crate) struct SegmentView {
    pub(crate) base_offset: i64,
    pub(crate) file: Arc<dyn StorageFile>,
    pub(crate) size: u64,
    pub(crate) next_offset: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) path: PathBuf,
}

impl SegmentView {
    /// Reads and parses the batch header at byte `pos`.
    fn header_at(&self, pos: u64) -> Result<BatchHeader> {
        let hb = read_at(&*self.file, pos, BATCH_HEADER_LEN)
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
    storage: Arc<dyn Storage>,
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

/// The partition's cleaner checkpoint: the offset below which compaction has run (Kafka keeps
/// the same value per data directory in `cleaner-offset-checkpoint`). Kafka's text format
/// (`0`, `1`, `<topic> <partition> <offset>`) plus a `crc32c <hex>` line over the lines
/// before it: recovery trusts this value to tell compaction gaps from corruption, so a
/// damaged file must be recognised.
pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// What the cleaner checkpoint file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CleanerCheckpoint {
    /// No file: the log was never compacted by this version of the broker.
    Missing,
    /// The file exists but fails its checksum or does not parse.
    Damaged,
    /// Compaction has run below this offset.
    At(i64),
}

pub(crate) fn encode_cleaner_checkpoint(topic: &str, partition: i32, offset: i64) -> String {
    let body = format!("0\n1\n{topic} {partition} {offset}\n");
    let crc = crc32c::crc32c(body.as_bytes());
    format!("{body}crc32c {crc:08x}\n")
}

fn read_cleaner_checkpoint(storage: &dyn Storage, dir: &Path) -> CleanerCheckpoint {
    let bytes = match storage.read(&dir.join(CLEANER_CHECKPOINT_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return CleanerCheckpoint::Missing,
        Err(_) => return CleanerCheckpoint::Damaged,
    };
    let parse = || -> Option<i64> {
        let text = std::str::from_utf8(&bytes).ok()?;
        let crc_at = text.rfind("crc32c ")?;
        let (body, crc_line) = text.split_at(crc_at);
        let crc = u32::from_str_radix(crc_line.trim_start_matches("crc32c ").trim(), 16).ok()?;
        if crc32c::crc32c(body.as_bytes()) != crc {
            return None;
        }
        let mut lines = body.lines();
        if lines.next()? != "0" || lines.next()? != "1" {
            return None;
        }
        let offset = lines
            .next()?
            .split_whitespace()
            .nth(2)?
            .parse::<i64>()
            .ok()?;
        (offset >= 0).then_some(offset)
    };
    parse().map_or(CleanerCheckpoint::Damaged, CleanerCheckpoint::At)
}

pub(crate) fn partition_dir_name(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir` on the real file system. `clean` says the
    /// previous shutdown was clean; otherwise every segment from the one holding
    /// `recovery_point` on is validated.
    pub fn open(
        dir: PathBuf,
        topic: &str,
        partition: i32,
        config: Arc<LogConfig>,
        clean: bool,
        recovery_point: i64,
    ) -> Result<Self> {
        Self::open_with_storage(
            OsStorage::shared(),
            dir,
            topic,
            partition,
            config,
            clean,
            recovery_point,
        )
    }

    /// [`PartitionLog::open`] on the given storage (for instance a power-cut simulator).
    pub fn open_with_storage(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        topic: &str,
        partition: i32,
        config: Arc<LogConfig>,
        clean: bool,
        recovery_point: i64,
    ) -> Result<Self> {
        durable_fs::create_dir_all_durable(&*storage, &dir)
            .map_err(|e| BrokerError::io(&dir, e))?;
        let cleaner_checkpoint = read_cleaner_checkpoint(&*storage, &dir);
        // Offsets at or above the cleaner checkpoint were never compacted, so batches there
        // must be contiguous. Without a checkpoint, a compacted log may have gaps anywhere
        // (a data directory from before the checkpoint existed); with a damaged one, any log
        // may.
        let contiguous_from = match cleaner_checkpoint {
            CleanerCheckpoint::At(o) => o,
            CleanerCheckpoint::Missing if !config.cleanup_policy.compact => 0,
            CleanerCheckpoint::Missing => i64::MAX,
            CleanerCheckpoint::Damaged => {
                warn!(dir = %dir.display(), "damaged cleaner checkpoint: recovery cannot tell compaction gaps from corrupt base offsets");
                i64::MAX
            }
        };
        let mut bases = Vec::new();
        for name in storage
            .read_dir(&dir)
            .map_err(|e| BrokerError::io(&dir, e))?
        {
            let path = dir.join(&name);
            if name.ends_with(".cleaned") || name.ends_with(".tmp") {
                // Leftovers of an interrupted compaction or atomic write.
                let _ = storage.remove_file(&path);
            } else if let Some(stem) = name.strip_suffix(".log") {
                match stem.parse::<i64>() {
                    Ok(b) if b >= 0 => bases.push(b),
                    _ => {
                        warn!(file = %path.display(), "ignoring a .log file with an unexpected name")
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
            let (seg, truncation) = Segment::open(
                &storage,
                &dir,
                base,
                config.index_interval_bytes,
                trusted,
                contiguous_from,
            )?;
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
                let (seg, _) = Segment::open(
                    &storage,
                    &dir,
                    base,
                    config.index_interval_bytes,
                    true,
                    i64::MAX,
                )?;
                seg.delete_files().map_err(|e| BrokerError::io(&dir, e))?;
            }
        }
        // Drop empty segments that are neither the last one (left by crashes during a roll)
        // nor the first one: a segment that compaction emptied still holds the log start
        // offset, which must not move past records that were compacted, not deleted.
        let first_base = segments.keys().next().copied();
        let empties: Vec<i64> = segments
            .iter()
            .rev()
            .skip(1)
            .filter(|(b, s)| s.is_empty() && Some(**b) != first_base)
            .map(|(b, _)| *b)
            .collect();
        for b in empties {
            if let Some(s) = segments.remove(&b) {
                let _ = s.delete_files();
            }
        }
        if segments.is_empty() {
            let seg = Segment::create(&storage, &dir, 0, config.index_interval_bytes)?;
            segments.insert(0, seg);
            sync_dir(&*storage, &dir)?;
        }
        let next_offset = segments
            .values()
            .next_back()
            .map_or(0, |s| s.next_offset().max(s.base_offset));
        let log_start_offset = segments.keys().next().copied().unwrap_or(0);
        // Segments whose `.txnindex` must be rebuilt need a replay over all their batches, so
        // the producer state starts from a snapshot at or below the first of them.
        let replay_floor = segments
            .values()
            .find(|s| s.txn_index_stale())
            .map_or(next_offset, |s| s.base_offset);
        let mut producers = ProducerStateManager::new(Arc::clone(&storage), &dir);
        let replay_from = producers.load(next_offset, replay_floor)?;
        let (epochs, epochs_state) = match LeaderEpochCache::load(Arc::clone(&storage), &dir) {
            Ok(c) => (c, None),
            Err((c, state)) => {
                if let CheckpointState::Damaged(reason) = &state {
                    warn!(dir = %dir.display(), %reason, "rebuilding the leader-epoch cache from the log");
                }
                (c, Some(state))
            }
        };
        let log = Self {
            topic: topic.to_string(),
            partition,
            dir,
            storage,
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
                first_dirty_offset: match cleaner_checkpoint {
                    CleanerCheckpoint::At(o) => o,
                    CleanerCheckpoint::Missing | CleanerCheckpoint::Damaged => 0,
                },
                epochs,
                replicated: false,
                high_watermark: next_offset,
                truncations: 0,
            }),
            appended: tokio::sync::Notify::new(),
            cleaning: Mutex::new(()),
        };
        if replay_from < next_offset {
            log.replay_producer_state(replay_from.max(log_start_offset))?;
        }
        log.recover_epoch_cache(epochs_state)?;
        if replay_floor < next_offset {
            // The replay above rebuilt the `.txnindex` entries. A newer snapshot may know more
            // (the batches of a producer that compaction removed since it was taken): the
            // producer state comes from the newest one, as on any open.
            let mut newest = ProducerStateManager::new(Arc::clone(&log.storage), &log.dir);
            let newest_from = newest.load(next_offset, next_offset)?;
            if newest_from > replay_from {
                log.inner.lock().producers = newest;
                if newest_from < next_offset {
                    log.replay_producer_state(newest_from.max(log_start_offset))?;
                }
            }
        }
        {
            let mut inner = log.inner.lock();
            for seg in inner.segments.values_mut() {
                if seg.txn_index_stale() {
                    seg.persist_indexes(true)?;
                    seg.mark_txn_index_rebuilt();
                }
            }
        }
        debug!(partition = %partition_dir_name(topic, partition), log_start_offset, next_offset, "opened partition log");
        Ok(log)
    }

    /// Rebuilds producer state (and the `.txnindex` entries of the batches' segments) from
    /// the batches at or after `from`.
    fn replay_producer_state(&self, from: i64) -> Result<()> {
        let mut inner = self.inner.lock();
        self.replay_locked(&mut inner, from)
    }

    /// [`PartitionLog::replay_producer_state`] with the partition lock held.
    fn replay_locked(&self, inner: &mut LogInner, from: i64) -> Result<()> {
        let views = Self::views_locked(inner, from);
        for v in views {
            let mut pos = 0;
            while pos + BATCH_HEADER_LEN as u64 <= v.size {
                let h = v.header_at(pos)?;
                if h.last_offset() >= from {
                    let control = if h.is_control() && h.has_producer_id() {
                        let batch = read_at(&*v.file, pos, h.size())
                            .map_err(|e| BrokerError::io(&v.path, e))?;
                        Some(control_record_of_batch(&batch).unwrap_or_else(|e| {
                            warn!(segment = %v.path.display(), position = pos, error = %e, "ignoring an unreadable control record");
                            ControlRecord::Other
                        }))
                    } else {
                        None
                    };
                    inner.apply_batch(v.base_offset, &h, control);
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

    /// The storage the log's files live on.
    pub(crate) fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
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

    /// What this partition remembers about an idempotent/transactional producer.
    pub fn producer_entry(&self, producer_id: i64) -> Option<ProducerEntry> {
        self.inner.lock().producers.entry(producer_id).cloned()
    }

    /// Every producer the partition remembers, by producer id (Kafka's DescribeProducers).
    pub fn active_producers(&self) -> Vec<(i64, ProducerEntry)> {
        let mut out: Vec<(i64, ProducerEntry)> = self
            .inner
            .lock()
            .producers
            .entries()
            .map(|(id, e)| (id, e.clone()))
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }

    /// Marks the log deleted: later appends and reads fail with UNKNOWN_TOPIC_OR_PARTITION.
    pub(crate) fn mark_deleted(&self) {
        self.inner.lock().deleted = true;
        self.appended.notify_waiters();
    }
}

//! One log segment: a `.log` file of concatenated record batches plus its sparse indexes and
//! its aborted-transaction index (`.txnindex`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable_fs::{remove_if_exists, OpenMode, Storage, StorageFile};
use tracing::warn;

use super::index::{Index, OffsetEntry, TimeEntry};
use super::txn::{AbortedTxn, TxnIndex};
use crate::error::{BrokerError, Result};
use crate::record::{BatchHeader, RecordError, BATCH_HEADER_LEN, NO_TIMESTAMP};

/// `<base offset, 20 digits>.<ext>`, Kafka's segment file naming.
pub(crate) fn segment_file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// What a recovery scan found wrong and cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Truncation {
    pub(crate) valid_bytes: u64,
    pub(crate) removed_bytes: u64,
    pub(crate) reason: String,
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    storage: Arc<dyn Storage>,
    log_path: PathBuf,
    file: Arc<dyn StorageFile>,
    size: u64,
    next_offset: i64,
    offset_index: Index<OffsetEntry>,
    time_index: Index<TimeEntry>,
    txn_index: TxnIndex,
    /// The `.txnindex` was reset (segment recovered, or its file unusable) and must be rebuilt
    /// by a producer-state replay over this segment.
    txn_index_stale: bool,
    bytes_since_index: u64,
    max_timestamp: i64,
    first_batch_timestamp: Option<i64>,
    index_interval: u64,
    unflushed: bool,
}

/// Reads exactly `len` bytes at `pos`.
pub(crate) fn read_at(file: &dyn StorageFile, pos: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, pos)?;
    Ok(buf)
}

/// Sequential reads through a window of the file, for recovery scans (few, large reads).
pub(crate) struct ScanReader<'a> {
    file: &'a dyn StorageFile,
    file_len: u64,
    window: Vec<u8>,
    window_start: u64,
}

impl<'a> ScanReader<'a> {
    const WINDOW: u64 = 1 << 20;

    pub(crate) fn new(file: &'a dyn StorageFile, file_len: u64) -> Self {
        Self {
            file,
            file_len,
            window: Vec::new(),
            window_start: 0,
        }
    }

    /// The `len` bytes at `pos` (the caller checked they are within the file).
    pub(crate) fn bytes(&mut self, pos: u64, len: usize) -> io::Result<&[u8]> {
        let end = pos + len as u64;
        let in_window =
            pos >= self.window_start && end <= self.window_start + self.window.len() as u64;
        if !in_window {
            let want = (len as u64)
                .max(Self::WINDOW)
                .min(self.file_len.saturating_sub(pos));
            if want < len as u64 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            self.window.resize(want as usize, 0);
            self.file.read_exact_at(&mut self.window, pos)?;
            self.window_start = pos;
        }
        let from = (pos - self.window_start) as usize;
        Ok(&self.window[from..from + len])
    }
}

impl Segment {
    /// Creates an empty segment (truncating leftovers with the same name).
    pub(crate) fn create(
        storage: &Arc<dyn Storage>,
        dir: &Path,
        base_offset: i64,
        index_interval: u64,
    ) -> Result<Self> {
        let log_path = dir.join(segment_file_name(base_offset, "log"));
        let file = storage
            .open(&log_path, OpenMode::Truncate)
            .map_err(|e| BrokerError::io(&log_path, e))?;
        let mut seg = Self::with_file(storage, dir, base_offset, log_path, file, index_interval);
        seg.offset_index
            .set_path(dir.join(segment_file_name(base_offset, "index")));
        seg.time_index
            .set_path(dir.join(segment_file_name(base_offset, "timeindex")));
        // A leftover `.txnindex` of an earlier segment with this name is removed on flush.
        seg.txn_index = TxnIndex::reset(dir.join(segment_file_name(base_offset, "txnindex")));
        Ok(seg)
    }

    fn with_file(
        storage: &Arc<dyn Storage>,
        dir: &Path,
        base_offset: i64,
        log_path: PathBuf,
        file: Arc<dyn StorageFile>,
        index_interval: u64,
    ) -> Self {
        Self {
            base_offset,
            storage: Arc::clone(storage),
            log_path,
            file,
            size: 0,
            next_offset: base_offset,
            offset_index: Index::empty(dir.join(segment_file_name(base_offset, "index"))),
            time_index: Index::empty(dir.join(segment_file_name(base_offset, "timeindex"))),
            txn_index: TxnIndex::empty(dir.join(segment_file_name(base_offset, "txnindex"))),
            txn_index_stale: false,
            bytes_since_index: 0,
            max_timestamp: NO_TIMESTAMP,
            first_batch_timestamp: None,
            index_interval,
            unflushed: false,
        }
    }

    /// Opens an existing segment. With `trusted` (clean shutdown, or wholly below the recovery
    /// point) the indexes are loaded and only checked for consistency; otherwise every batch is
    /// validated (CRC included), the indexes rebuilt and a corrupt or torn tail truncated.
    ///
    /// From `contiguous_from` on (the cleaner checkpoint: nothing at or above it was ever
    /// compacted) every batch must start exactly where the previous one ended, so a corrupt
    /// base offset (outside the CRC) is caught; below it, compaction may have left gaps.
    pub(crate) fn open(
        storage: &Arc<dyn Storage>,
        dir: &Path,
        base_offset: i64,
        index_interval: u64,
        trusted: bool,
        contiguous_from: i64,
    ) -> Result<(Self, Option<Truncation>)> {
        let log_path = dir.join(segment_file_name(base_offset, "log"));
        let file = storage
            .open(&log_path, OpenMode::Existing)
            .map_err(|e| BrokerError::io(&log_path, e))?;
        let file_len = file.len().map_err(|e| BrokerError::io(&log_path, e))?;
        let mut seg = Self::with_file(
            storage,
            dir,
            base_offset,
            log_path.clone(),
            file,
            index_interval,
        );
        seg.size = file_len;
        if trusted {
            let oi = Index::<OffsetEntry>::load(
                &**storage,
                dir.join(segment_file_name(base_offset, "index")),
            )
            .map_err(|e| BrokerError::io(&log_path, e))?;
            let ti = Index::<TimeEntry>::load(
                &**storage,
                dir.join(segment_file_name(base_offset, "timeindex")),
            )
            .map_err(|e| BrokerError::io(&log_path, e))?;
            match (oi, ti) {
                (Some(oi), Some(ti)) if oi.is_consistent(file_len) && ti.is_consistent() => {
                    let tail_start = oi.entries().last().map_or(0, |e| u64::from(e.position));
                    seg.max_timestamp = ti.last().map_or(NO_TIMESTAMP, |e| e.timestamp);
                    seg.offset_index = oi;
                    seg.time_index = ti;
                    let tail_ok = seg
                        .scan_from(tail_start, false, false, contiguous_from)?
                        .is_none();
                    let limit = seg.next_offset - seg.base_offset;
                    let within = |rel: Option<u32>| rel.is_none_or(|r| i64::from(r) < limit);
                    if tail_ok
                        && within(seg.offset_index.last().map(|e| e.relative_offset))
                        && within(seg.time_index.last().map(|e| e.relative_offset))
                    {
                        let txn_path = seg.txn_index_path();
                        match TxnIndex::load(&**storage, txn_path, base_offset, seg.next_offset)
                            .map_err(|e| BrokerError::io(seg.txn_index_path(), e))?
                        {
                            Ok(ti) => seg.txn_index = ti,
                            Err(damage) => {
                                warn!(segment = %log_path.display(), %damage, "unusable transaction index; rebuilding it from the log");
                                seg.txn_index = TxnIndex::reset(seg.txn_index_path());
                                seg.txn_index_stale = true;
                            }
                        }
                        return Ok((seg, None));
                    }
                    warn!(segment = %log_path.display(), "indexes disagree with the log; rebuilding them with a full scan");
                    seg.size = file_len;
                }
                _ => {
                    warn!(segment = %log_path.display(), "index files missing or inconsistent; rebuilding them from the log");
                }
            }
        }
        let truncation = seg.scan_from(0, true, true, contiguous_from)?;
        // As Kafka's segment recovery, the transaction index is rebuilt from the batches (by
        // the partition's producer-state replay, which knows the open transactions).
        seg.txn_index = TxnIndex::reset(seg.txn_index_path());
        seg.txn_index_stale = true;
        Ok((seg, truncation))
    }

    /// Walks the batches from `start` to the end of the file, validating each one. With
    /// `rebuild`, the indexes are rebuilt from scratch; otherwise only positions after the
    /// existing index entries are added. Truncates at the first invalid batch.
    fn scan_from(
        &mut self,
        start: u64,
        rebuild: bool,
        truncate: bool,
        contiguous_from: i64,
    ) -> Result<Option<Truncation>> {
        if rebuild {
            self.offset_index = Index::empty(self.offset_index_path());
            self.time_index = Index::empty(self.time_index_path());
            self.offset_index.set_path(self.offset_index_path());
            self.time_index.set_path(self.time_index_path());
            self.max_timestamp = NO_TIMESTAMP;
            self.bytes_since_index = 0;
        }
        let file_len = self.size;
        let file = Arc::clone(&self.file);
        let mut reader = ScanReader::new(&*file, file_len);
        let mut pos = start;
        let mut header_buf = [0u8; BATCH_HEADER_LEN];
        let mut batch = Vec::new();
        let mut failure: Option<String> = None;
        let mut first_ts = None;
        while pos < file_len {
            let remaining = file_len - pos;
            if remaining < BATCH_HEADER_LEN as u64 {
                failure = Some(format!("torn batch header ({remaining} bytes)"));
                break;
            }
            header_buf.copy_from_slice(
                reader
                    .bytes(pos, BATCH_HEADER_LEN)
                    .map_err(|e| BrokerError::io(&self.log_path, e))?,
            );
            let header = match BatchHeader::parse(&header_buf) {
                Ok(h) => h,
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            };
            let size = header.size() as u64;
            if size > remaining {
                failure = Some(
                    RecordError::Truncated {
                        needed: header.size(),
                        available: remaining as usize,
                    }
                    .to_string(),
                );
                break;
            }
            let expected = if pos == 0 {
                self.base_offset
            } else {
                self.next_offset
            };
            let must_follow = expected >= contiguous_from;
            if header.base_offset < self.base_offset
                || header.last_offset() - self.base_offset > i64::from(u32::MAX)
                || (pos > 0 && header.base_offset < self.next_offset)
                || (must_follow && header.base_offset != expected)
            {
                failure = Some(format!(
                    "batch offsets {}..={} do not follow {} in segment {}",
                    header.base_offset,
                    header.last_offset(),
                    self.next_offset,
                    self.base_offset
                ));
                break;
            }
            batch.clear();
            batch.extend_from_slice(
                reader
                    .bytes(pos, size as usize)
                    .map_err(|e| BrokerError::io(&self.log_path, e))?,
            );
            if let Err(e) = BatchHeader::parse_and_validate(&batch) {
                failure = Some(e.to_string());
                break;
            }
            if first_ts.is_none() && pos == 0 {
                first_ts = Some(header.max_timestamp);
            }
            let already_indexed = !rebuild
                && self
                    .offset_index
                    .last()
                    .is_some_and(|e| u64::from(e.position) >= pos);
            self.track(&header, pos, already_indexed);
            pos += size;
        }
        if first_ts.is_some() {
            self.first_batch_timestamp = first_ts;
        } else if self.first_batch_timestamp.is_none() && pos > 0 {
            // Trusted open with a tail scan: the first batch was not re-read.
            self.first_batch_timestamp = self.read_first_timestamp();
        }
        if let (Some(reason), false) = (&failure, truncate) {
            // Dry run (trusted open): report, leave the file alone; the caller rebuilds.
            return Ok(Some(Truncation {
                valid_bytes: pos,
                removed_bytes: file_len - pos,
                reason: reason.clone(),
            }));
        }
        self.size = pos;
        if let Some(reason) = failure {
            let removed = file_len - pos;
            warn!(
                segment = %self.log_path.display(),
                valid_bytes = pos,
                removed_bytes = removed,
                %reason,
                "truncating a corrupt or torn segment tail at the last valid batch"
            );
            self.file
                .set_len(pos)
                .map_err(|e| BrokerError::io(&self.log_path, e))?;
            self.file
                .sync_all()
                .map_err(|e| BrokerError::io(&self.log_path, e))?;
            self.offset_index
                .truncate_while(|e| u64::from(e.position) < pos);
            self.txn_index.truncate_to(self.next_offset);
            let next_rel = self.next_offset - self.base_offset;
            self.time_index
                .truncate_while(|e| i64::from(e.relative_offset) < next_rel);
            self.persist_indexes(true)?;
            return Ok(Some(Truncation {
                valid_bytes: pos,
                removed_bytes: removed,
                reason,
            }));
        }
        if rebuild {
            self.persist_indexes(true)?;
        }
        Ok(None)
    }

    fn read_first_timestamp(&self) -> Option<i64> {
        let buf = read_at(&*self.file, 0, BATCH_HEADER_LEN).ok()?;
        BatchHeader::parse(&buf).ok().map(|h| h.max_timestamp)
    }

    fn offset_index_path(&self) -> PathBuf {
        self.log_path.with_extension("index")
    }

    fn time_index_path(&self) -> PathBuf {
        self.log_path.with_extension("timeindex")
    }

    fn txn_index_path(&self) -> PathBuf {
        self.log_path.with_extension("txnindex")
    }

    /// Whether the `.txnindex` awaits a rebuild by a producer-state replay.
    pub(crate) fn txn_index_stale(&self) -> bool {
        self.txn_index_stale
    }

    /// The replay has rebuilt the `.txnindex`.
    pub(crate) fn mark_txn_index_rebuilt(&mut self) {
        self.txn_index_stale = false;
    }

    /// Records an aborted transaction whose marker is in this segment (skipped if already
    /// indexed).
    pub(crate) fn add_aborted_txn(&mut self, e: AbortedTxn) {
        self.txn_index.append(e);
    }

    /// Kafka's `collectAbortedTxns` over this segment's index; true when complete.
    pub(crate) fn collect_aborted_txns(
        &self,
        fetch_offset: i64,
        upper_bound: i64,
        out: &mut Vec<AbortedTxn>,
    ) -> bool {
        self.txn_index.collect(fetch_offset, upper_bound, out)
    }

    /// Updates offsets, timestamps and (every `index.interval.bytes`) the indexes for a batch
    /// written at `pos`.
    fn track(&mut self, header: &BatchHeader, pos: u64, already_indexed: bool) {
        self.next_offset = header.next_offset();
        if self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(header.max_timestamp);
        }
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
        }
        self.bytes_since_index += header.size() as u64;
        if self.bytes_since_index >= self.index_interval || pos == 0 {
            self.bytes_since_index = 0;
            if already_indexed {
                return;
            }
            let rel = (header.last_offset() - self.base_offset) as u32;
            self.offset_index.push(OffsetEntry {
                relative_offset: rel,
                position: pos as u32,
            });
            self.maybe_index_time(rel);
        }
    }

    fn maybe_index_time(&mut self, rel: u32) {
        let newer = self
            .time_index
            .last()
            .is_none_or(|e| self.max_timestamp > e.timestamp && rel >= e.relative_offset);
        if newer && self.max_timestamp != NO_TIMESTAMP {
            self.time_index.push(TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset: rel,
            });
        }
    }

    /// Appends one validated batch whose base offset has been assigned.
    pub(crate) fn append(&mut self, batch: &[u8], header: &BatchHeader) -> Result<()> {
        let pos = self.size;
        self.file
            .write_all_at(batch, pos)
            .map_err(|e| BrokerError::io(&self.log_path, e))?;
        self.size += batch.len() as u64;
        self.unflushed = true;
        self.track(header, pos, false);
        Ok(())
    }

    /// fsyncs the log file and writes (and fsyncs) pending index entries.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.unflushed {
            self.file
                .sync_data()
                .map_err(|e| BrokerError::io(&self.log_path, e))?;
            self.unflushed = false;
        }
        self.persist_indexes(true)
    }

    /// Writes pending index entries (without fsync unless `sync`).
    pub(crate) fn persist_indexes(&mut self, sync: bool) -> Result<()> {
        self.offset_index
            .flush(&*self.storage, sync)
            .map_err(|e| BrokerError::io(self.offset_index_path(), e))?;
        self.time_index
            .flush(&*self.storage, sync)
            .map_err(|e| BrokerError::io(self.time_index_path(), e))?;
        self.txn_index
            .flush(&*self.storage, sync)
            .map_err(|e| BrokerError::io(self.txn_index.path(), e))
    }

    /// Called when the segment stops being the active one: records its final max timestamp
    /// in the time index (as Kafka does on roll) and persists the indexes.
    pub(crate) fn seal(&mut self) -> Result<()> {
        if self.next_offset > self.base_offset {
            let rel = (self.next_offset - 1 - self.base_offset) as u32;
            self.maybe_index_time(rel);
        }
        self.persist_indexes(false)
    }

    pub(crate) fn file(&self) -> Arc<dyn StorageFile> {
        Arc::clone(&self.file)
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    pub(crate) fn first_batch_timestamp(&self) -> Option<i64> {
        self.first_batch_timestamp
    }

    pub(crate) fn offset_index_bytes(&self) -> u64 {
        self.offset_index.len_bytes()
    }

    pub(crate) fn is_unflushed(&self) -> bool {
        self.unflushed
    }

    pub(crate) fn mark_flushed(&mut self) {
        self.unflushed = false;
    }

    pub(crate) fn mark_unflushed(&mut self) {
        self.unflushed = true;
    }

    /// Byte position from which a scan for `offset` should start.
    pub(crate) fn position_for(&self, offset: i64) -> u64 {
        let rel = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        u64::from(self.offset_index.lookup(rel))
    }

    /// First relative offset whose records may have a timestamp `>= target`.
    pub(crate) fn offset_for_time_scan(&self, target: i64) -> i64 {
        match self.time_index.lookup_before(target) {
            Some(rel) => self.base_offset + i64::from(rel) + 1,
            None => self.base_offset,
        }
    }

    /// Removes the segment's files.
    pub(crate) fn delete_files(&self) -> io::Result<()> {
        remove_if_exists(&*self.storage, &self.log_path)?;
        self.offset_index.delete_file(&*self.storage)?;
        self.time_index.delete_file(&*self.storage)?;
        self.txn_index.delete_file(&*self.storage)
    }

    /// Replaces this segment's files by a cleaned copy: the old indexes are removed first (a
    /// crash in between leaves a segment without indexes, which is rebuilt on open), then the
    /// cleaned log is renamed over the old one and the new indexes written.
    pub(crate) fn replace_with(&mut self, mut cleaned: Segment) -> Result<()> {
        self.offset_index
            .delete_file(&*self.storage)
            .map_err(|e| BrokerError::io(self.offset_index_path(), e))?;
        self.time_index
            .delete_file(&*self.storage)
            .map_err(|e| BrokerError::io(self.time_index_path(), e))?;
        self.storage
            .rename(&cleaned.log_path, &self.log_path)
            .map_err(|e| BrokerError::io(&self.log_path, e))?;
        crate::fsutil::sync_dir(&*self.storage, durable_fs::parent_dir(&self.log_path))?;
        cleaned.log_path = self.log_path.clone();
        cleaned
            .offset_index
            .set_path(self.log_path.with_extension("index"));
        cleaned
            .time_index
            .set_path(self.log_path.with_extension("timeindex"));
        // The cleaner keeps transaction markers, so the aborted-transaction entries still
        // describe the cleaned segment; its `.txnindex` file is left as it is.
        std::mem::swap(&mut cleaned.txn_index, &mut self.txn_index);
        cleaned.txn_index_stale = self.txn_index_stale;
        cleaned.persist_indexes(true)?;
        *self = cleaned;
        Ok(())
    }

    /// A new segment written to `<base>.log.cleaned`, used by the compactor.
    pub(crate) fn create_cleaned(
        storage: &Arc<dyn Storage>,
        dir: &Path,
        base_offset: i64,
        index_interval: u64,
    ) -> Result<Self> {
        let log_path = dir.join(segment_file_name(base_offset, "log.cleaned"));
        let file = storage
            .open(&log_path, OpenMode::Truncate)
            .map_err(|e| BrokerError::io(&log_path, e))?;
        let mut seg = Self::with_file(storage, dir, base_offset, log_path, file, index_interval);
        // Index files are only written once the cleaned segment replaces the original.
        seg.offset_index
            .set_path(dir.join(segment_file_name(base_offset, "index.cleaned")));
        seg.time_index
            .set_path(dir.join(segment_file_name(base_offset, "timeindex.cleaned")));
        // Never the original's `.txnindex` (deleting an unused cleaned copy must not remove
        // it); the original's index moves to the cleaned segment on `replace_with`.
        seg.txn_index =
            TxnIndex::empty(dir.join(segment_file_name(base_offset, "txnindex.cleaned")));
        Ok(seg)
    }

    /// Removes every batch whose last offset is at or above `offset` (log truncation): the
    /// file is cut at the first such batch and fsynced, the offset and time indexes are
    /// rebuilt by a scan of what remains, and aborted-transaction entries whose marker is cut
    /// are dropped. Returns the segment's new next offset.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<i64> {
        let mut pos = self.position_for(offset);
        while pos + BATCH_HEADER_LEN as u64 <= self.size {
            let hb = read_at(&*self.file, pos, BATCH_HEADER_LEN)
                .map_err(|e| BrokerError::io(&self.log_path, e))?;
            let h = BatchHeader::parse(&hb).map_err(|source| BrokerError::Corrupt {
                path: self.log_path.clone(),
                position: pos,
                source,
            })?;
            if h.last_offset() >= offset {
                break;
            }
            pos += h.size() as u64;
        }
        let cut = pos.min(self.size);
        self.file
            .set_len(cut)
            .map_err(|e| BrokerError::io(&self.log_path, e))?;
        self.file
            .sync_all()
            .map_err(|e| BrokerError::io(&self.log_path, e))?;
        self.unflushed = false;
        self.size = cut;
        self.next_offset = self.base_offset;
        self.first_batch_timestamp = None;
        // A full scan of the kept batches rebuilds the indexes and timestamps exactly as
        // appends built them (no contiguity requirement: compaction may have left gaps).
        if let Some(t) = self.scan_from(0, true, true, i64::MAX)? {
            warn!(segment = %self.log_path.display(), reason = %t.reason, "truncation found a damaged batch below the truncation point");
        }
        self.txn_index.truncate_to(self.next_offset);
        self.persist_indexes(true)?;
        Ok(self.next_offset)
    }

    /// For a cleaned segment: keep the original's next offset (trailing records may be gone).
    pub(crate) fn set_next_offset(&mut self, next: i64) {
        self.next_offset = self.next_offset.max(next);
    }
}

//! The leader-epoch cache of a partition (Kafka's `LeaderEpochFileCache`): for each leader
//! epoch that wrote to the log, the offset of its first batch, kept in the partition
//! directory's `leader-epoch-checkpoint` file.
//!
//! File format (Kafka's `LeaderEpochCheckpointFile`, a text checkpoint): a version line `0`,
//! a count line, then one `<epoch> <start offset>` line per entry, ascending. The file is
//! rewritten atomically (temporary file, fsync, rename, directory fsync) whenever the entries
//! change. Entries are strictly increasing in both epoch and start offset.
//!
//! Kafka writes the file synchronously when an epoch is assigned and in the background after a
//! truncation; here every change is written synchronously (changes are rare: leader changes,
//! truncations, retention moving the log start), so the file never lags the cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable_fs::Storage;
use tracing::warn;

use crate::error::Result;
use crate::fsutil::write_atomic;

/// Name of the checkpoint file in the partition directory.
pub(crate) const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// Kafka's `UNDEFINED_EPOCH`.
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's `UNDEFINED_EPOCH_OFFSET`.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// One cache entry: `epoch` started writing at `start_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// Leader epoch.
    pub epoch: i32,
    /// Offset of the first batch written in that epoch.
    pub start_offset: i64,
}

/// The cache and its checkpoint file.
#[derive(Debug)]
pub(crate) struct LeaderEpochCache {
    storage: Arc<dyn Storage>,
    path: PathBuf,
    /// Ascending in epoch and start offset.
    entries: Vec<EpochEntry>,
}

/// Why a checkpoint file could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CheckpointState {
    /// No file.
    Missing,
    /// The file does not parse or its entries are not monotonic.
    Damaged(String),
}

/// Encodes entries in Kafka's checkpoint text format.
pub(crate) fn encode_checkpoint(entries: &[EpochEntry]) -> String {
    let mut text = format!("0\n{}\n", entries.len());
    for e in entries {
        text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
    }
    text
}

/// Parses Kafka's checkpoint text format (version 0), checking the count and monotonicity.
pub(crate) fn parse_checkpoint(text: &str) -> std::result::Result<Vec<EpochEntry>, String> {
    let mut lines = text.lines();
    let version = lines.next().ok_or("empty file")?.trim();
    if version != "0" {
        return Err(format!("unsupported version {version:?}"));
    }
    let count: usize = lines
        .next()
        .ok_or("no count line")?
        .trim()
        .parse()
        .map_err(|e| format!("bad count: {e}"))?;
    let mut out: Vec<EpochEntry> = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let line = lines.next().ok_or("fewer entries than the count")?;
        let mut parts = line.split_whitespace();
        let (Some(e), Some(o), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("malformed entry {line:?}"));
        };
        let epoch: i32 = e.parse().map_err(|_| format!("bad epoch in {line:?}"))?;
        let start_offset: i64 = o.parse().map_err(|_| format!("bad offset in {line:?}"))?;
        if epoch < 0 || start_offset < 0 {
            return Err(format!("negative entry {line:?}"));
        }
        if out
            .last()
            .is_some_and(|p| p.epoch >= epoch || p.start_offset >= start_offset)
        {
            return Err(format!("entry {line:?} is not after the previous one"));
        }
        out.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err("more entries than the count".into());
    }
    Ok(out)
}

impl LeaderEpochCache {
    /// Loads the cache from `dir`'s checkpoint file.
    pub(crate) fn load(
        storage: Arc<dyn Storage>,
        dir: &Path,
    ) -> std::result::Result<Self, (Self, CheckpointState)> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT_FILE);
        let empty = |storage: Arc<dyn Storage>, path: PathBuf| Self {
            storage,
            path,
            entries: Vec::new(),
        };
        let bytes = match storage.read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err((empty(storage, path), CheckpointState::Missing))
            }
            Err(e) => {
                return Err((
                    empty(storage, path),
                    CheckpointState::Damaged(e.to_string()),
                ))
            }
        };
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|e| e.to_string())
            .and_then(parse_checkpoint);
        match parsed {
            Ok(entries) => Ok(Self {
                storage,
                path,
                entries,
            }),
            Err(reason) => {
                warn!(file = %path.display(), %reason, "damaged leader-epoch checkpoint");
                Err((empty(storage, path), CheckpointState::Damaged(reason)))
            }
        }
    }

    /// The entries, ascending.
    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The latest entry.
    pub(crate) fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Writes the checkpoint file atomically.
    pub(crate) fn write(&self) -> Result<()> {
        write_atomic(
            &*self.storage,
            &self.path,
            encode_checkpoint(&self.entries).as_bytes(),
        )
    }

    /// Kafka's `assign` without the write: records that `epoch` starts at `start_offset`,
    /// first removing entries that would break monotonicity (an epoch at or above `epoch`, or
    /// a start offset at or above `start_offset`). Negative values are ignored (batches of
    /// clients that no leader stamped). Returns whether the cache changed.
    pub(crate) fn assign_in_memory(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        let needed = self
            .entries
            .last()
            .is_none_or(|l| l.epoch != epoch || start_offset < l.start_offset);
        if !needed {
            return false;
        }
        while self
            .entries
            .last()
            .is_some_and(|l| l.epoch >= epoch || l.start_offset >= start_offset)
        {
            self.entries.pop();
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// [`LeaderEpochCache::assign_in_memory`], writing the file when the cache changed.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<bool> {
        let changed = self.assign_in_memory(epoch, start_offset);
        if changed {
            self.write()?;
        }
        Ok(changed)
    }

    /// Kafka's `truncateFromEnd`: removes the entries starting at or after `end_offset`.
    /// Returns whether the cache changed.
    pub(crate) fn truncate_from_end_in_memory(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        while self
            .entries
            .last()
            .is_some_and(|l| l.start_offset >= end_offset)
        {
            self.entries.pop();
        }
        before != self.entries.len()
    }

    /// Kafka's `truncateFromStart`: removes the entries starting at or before `start_offset`
    /// and re-adds the last of them starting at `start_offset` (so the epoch of the new first
    /// offset stays known). Returns whether the cache changed.
    pub(crate) fn truncate_from_start_in_memory(&mut self, start_offset: i64) -> bool {
        let n = self
            .entries
            .iter()
            .take_while(|e| e.start_offset <= start_offset)
            .count();
        if n == 0 {
            return false;
        }
        let last = self.entries[n - 1];
        if n == 1 && last.start_offset == start_offset {
            return false;
        }
        self.entries.drain(..n);
        self.entries.insert(
            0,
            EpochEntry {
                epoch: last.epoch,
                start_offset,
            },
        );
        true
    }

    /// Removes every entry.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// Kafka's `endOffsetFor`: the largest epoch at or below `requested` and its end offset
    /// (the start offset of the next epoch, or `log_end_offset` when `requested` is the
    /// latest epoch). `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)` for an undefined or unknown
    /// newer epoch; for an epoch older than every entry, `(requested, first start offset)`.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        if requested == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        if self.latest().is_some_and(|l| l.epoch == requested) {
            return (requested, log_end_offset);
        }
        let higher = self.entries.iter().find(|e| e.epoch > requested);
        let Some(higher) = higher else {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        };
        match self.entries.iter().rev().find(|e| e.epoch <= requested) {
            None => (requested, higher.start_offset),
            Some(floor) => (floor.epoch, higher.start_offset),
        }
    }

    /// Kafka's `epochForOffset`: the epoch that wrote `offset`, if known.
    pub(crate) fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let mut previous = None;
        for e in &self.entries {
            if e.start_offset == offset {
                return Some(e.epoch);
            }
            if e.start_offset > offset {
                return previous;
            }
            previous = Some(e.epoch);
        }
        previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path) -> LeaderEpochCache {
        match LeaderEpochCache::load(durable_fs::OsStorage::shared(), dir) {
            Ok(c) | Err((c, _)) => c,
        }
    }

    fn e(epoch: i32, start_offset: i64) -> EpochEntry {
        EpochEntry {
            epoch,
            start_offset,
        }
    }

    #[test]
    fn assign_keeps_entries_monotonic_and_writes_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cache(dir.path());
        assert!(c.assign(2, 0).unwrap());
        assert!(
            !c.assign(2, 5).unwrap(),
            "same epoch, later offset: no change"
        );
        assert!(c.assign(4, 10).unwrap());
        assert!(c.assign(6, 20).unwrap());
        assert_eq!(c.entries(), &[e(2, 0), e(4, 10), e(6, 20)]);
        let text = std::fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE)).unwrap();
        assert_eq!(text, "0\n3\n2 0\n4 10\n6 20\n");
        // Same epoch at an earlier offset moves its start back.
        assert!(c.assign(6, 15).unwrap());
        assert_eq!(c.entries(), &[e(2, 0), e(4, 10), e(6, 15)]);
        // A lower epoch at a later offset removes the newer conflicting entries.
        assert!(c.assign(5, 12).unwrap());
        assert_eq!(c.entries(), &[e(2, 0), e(4, 10), e(5, 12)]);
        // An offset at or below an earlier entry's start removes it.
        assert!(c.assign(7, 10).unwrap());
        assert_eq!(c.entries(), &[e(2, 0), e(7, 10)]);
        assert!(!c.assign(-1, 30).unwrap(), "unstamped batches are ignored");
        let back = cache(dir.path());
        assert_eq!(back.entries(), c.entries());
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cache(dir.path());
        assert_eq!(c.end_offset_for(0, 10), (-1, -1), "empty cache");
        c.assign(2, 5).unwrap();
        c.assign(4, 10).unwrap();
        c.assign(7, 20).unwrap();
        let leo = 30;
        assert_eq!(c.end_offset_for(UNDEFINED_EPOCH, leo), (-1, -1));
        assert_eq!(c.end_offset_for(7, leo), (7, 30), "latest epoch: LEO");
        assert_eq!(c.end_offset_for(8, leo), (-1, -1), "newer than any");
        assert_eq!(c.end_offset_for(4, leo), (4, 20));
        assert_eq!(c.end_offset_for(5, leo), (4, 20), "floor epoch");
        assert_eq!(c.end_offset_for(3, leo), (2, 10));
        assert_eq!(c.end_offset_for(1, leo), (1, 5), "below every epoch");
        assert_eq!(c.epoch_for_offset(4), None);
        assert_eq!(c.epoch_for_offset(5), Some(2));
        assert_eq!(c.epoch_for_offset(19), Some(4));
        assert_eq!(c.epoch_for_offset(99), Some(7));
    }

    #[test]
    fn truncation_from_both_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cache(dir.path());
        c.assign(1, 0).unwrap();
        c.assign(2, 10).unwrap();
        c.assign(3, 20).unwrap();
        assert!(!c.truncate_from_end_in_memory(21));
        assert!(c.truncate_from_end_in_memory(20));
        assert_eq!(c.entries(), &[e(1, 0), e(2, 10)]);
        assert!(c.truncate_from_start_in_memory(15));
        assert_eq!(c.entries(), &[e(2, 15)]);
        assert!(!c.truncate_from_start_in_memory(15));
        assert!(!c.truncate_from_start_in_memory(3));
        c.clear();
        assert!(c.entries().is_empty());
    }

    #[test]
    fn damaged_files_are_reported() {
        for bad in [
            "1\n0\n",
            "0\n2\n1 0\n",
            "0\n2\n1 5\n1 6\n",
            "0\n2\n2 5\n3 5\n",
            "0\n1\n1 x\n",
            "0\n1\n1 1\n2 2\n",
            "",
        ] {
            assert!(parse_checkpoint(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_checkpoint("0\n2\n0 0\n3  17\n").unwrap(),
            vec![e(0, 0), e(3, 17)]
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE), "0\n3\n1 1\n").unwrap();
        assert!(matches!(
            LeaderEpochCache::load(durable_fs::OsStorage::shared(), dir.path()),
            Err((_, CheckpointState::Damaged(_)))
        ));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            LeaderEpochCache::load(durable_fs::OsStorage::shared(), empty.path()),
            Err((_, CheckpointState::Missing))
        ));
    }
}

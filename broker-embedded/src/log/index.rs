//! Sparse offset and time indexes of one segment, in Kafka's on-disk format.
//!
//! `.index`: 8-byte entries `relative offset i32 | file position i32` (big-endian), strictly
//! increasing in both. `.timeindex`: 12-byte entries `timestamp i64 | relative offset i32`,
//! monotonic. Entries live in memory and are appended to the files on flush; the files carry no
//! checksum, so after an unclean shutdown they are validated and rebuilt from the log.

use std::io;
use std::path::PathBuf;

use durable_fs::{remove_if_exists, OpenMode, Storage};

/// An offset-index entry: the batch whose last offset is `base + relative_offset` starts at
/// byte `position` of the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

/// A time-index entry: every record at or below `base + relative_offset` has a timestamp of at
/// most `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp: i64,
    pub(crate) relative_offset: u32,
}

/// A sparse index held in memory and mirrored to a file.
#[derive(Debug)]
pub(crate) struct Index<E> {
    path: PathBuf,
    entries: Vec<E>,
    /// How many entries are in the file already.
    persisted: usize,
}

pub(crate) trait IndexEntry: Copy + std::fmt::Debug {
    const SIZE: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(b: &[u8]) -> Self;
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        Self {
            timestamp: i64::from_be_bytes(ts),
            relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

impl<E: IndexEntry> Index<E> {
    /// An empty index whose file is created (or truncated) on the next flush.
    pub(crate) fn empty(path: PathBuf) -> Self {
        Self {
            path,
            entries: Vec::new(),
            persisted: 0,
        }
    }

    /// Reads the index file. Returns `Ok(None)` if it is missing or its size is not a multiple
    /// of the entry size; entry-level consistency is checked by the caller.
    pub(crate) fn load(storage: &dyn Storage, path: PathBuf) -> io::Result<Option<Self>> {
        let bytes = match storage.read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if bytes.len() % E::SIZE != 0 {
            return Ok(None);
        }
        let entries: Vec<E> = bytes.chunks_exact(E::SIZE).map(E::decode).collect();
        let persisted = entries.len();
        Ok(Some(Self {
            path,
            entries,
            persisted,
        }))
    }

    pub(crate) fn entries(&self) -> &[E] {
        &self.entries
    }

    pub(crate) fn push(&mut self, entry: E) {
        self.entries.push(entry);
    }

    pub(crate) fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    pub(crate) fn len_bytes(&self) -> u64 {
        (self.entries.len() * E::SIZE) as u64
    }

    /// Keeps only the entries for which `keep` holds (a prefix), rewriting the file on the
    /// next flush.
    pub(crate) fn truncate_while(&mut self, keep: impl Fn(&E) -> bool) {
        let n = self.entries.iter().take_while(|e| keep(e)).count();
        if n < self.entries.len() {
            self.entries.truncate(n);
            self.persisted = usize::MAX; // force a rewrite
        }
    }

    /// Appends unpersisted entries to the file (or rewrites it) and optionally fsyncs it. A
    /// rewrite goes through a temporary file renamed over the index; with `sync` the rename is
    /// made durable too.
    pub(crate) fn flush(&mut self, storage: &dyn Storage, sync: bool) -> io::Result<()> {
        if self.persisted == self.entries.len() && !sync {
            return Ok(());
        }
        if self.persisted > self.entries.len() {
            let mut buf = Vec::with_capacity(self.entries.len() * E::SIZE);
            for e in &self.entries {
                e.encode(&mut buf);
            }
            let tmp = self.path.with_extension("index-rewrite.tmp");
            {
                let f = storage.open(&tmp, OpenMode::Truncate)?;
                f.write_all_at(&buf, 0)?;
                f.sync_data()?;
            }
            storage.rename(&tmp, &self.path)?;
            if sync {
                storage.sync_dir(durable_fs::parent_dir(&self.path))?;
            }
        } else {
            let f = storage.open(&self.path, OpenMode::Create)?;
            let end = (self.persisted * E::SIZE) as u64;
            if self.persisted < self.entries.len() {
                let mut buf = Vec::with_capacity((self.entries.len() - self.persisted) * E::SIZE);
                for e in &self.entries[self.persisted..] {
                    e.encode(&mut buf);
                }
                f.write_all_at(&buf, end)?;
            }
            if f.len()? > (self.entries.len() * E::SIZE) as u64 {
                // Leftover bytes of an older, longer file: the entries in memory are the truth.
                f.set_len((self.entries.len() * E::SIZE) as u64)?;
            }
            if sync {
                f.sync_data()?;
            }
        }
        self.persisted = self.entries.len();
        Ok(())
    }

    /// Deletes the file (the in-memory entries stay until the value is dropped).
    pub(crate) fn delete_file(&self, storage: &dyn Storage) -> io::Result<()> {
        remove_if_exists(storage, &self.path)
    }

    pub(crate) fn set_path(&mut self, path: PathBuf) {
        self.path = path;
        self.persisted = usize::MAX;
    }
}

impl Index<OffsetEntry> {
    /// Position of the indexed batch with the greatest relative offset `<= target`, or 0.
    pub(crate) fn lookup(&self, relative_target: u32) -> u32 {
        let i = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_target);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].position
        }
    }

    /// True if entries strictly increase in offset and position and stay below `log_size`.
    pub(crate) fn is_consistent(&self, log_size: u64) -> bool {
        self.entries
            .windows(2)
            .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position)
            && self
                .entries
                .last()
                .is_none_or(|e| u64::from(e.position) < log_size)
    }
}

impl Index<TimeEntry> {
    /// Relative offset below which every record's timestamp is `< target` (the greatest entry
    /// with a timestamp `< target`), or `None` when the first entry is already `>= target`.
    pub(crate) fn lookup_before(&self, target: i64) -> Option<u32> {
        let i = self.entries.partition_point(|e| e.timestamp < target);
        if i == 0 {
            None
        } else {
            Some(self.entries[i - 1].relative_offset)
        }
    }

    /// True if timestamps and offsets are monotonic.
    pub(crate) fn is_consistent(&self) -> bool {
        self.entries.windows(2).all(|w| {
            w[0].timestamp <= w[1].timestamp && w[0].relative_offset <= w[1].relative_offset
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = Index::<OffsetEntry>::empty(dir.path().join("0.index"));
        assert_eq!(idx.lookup(5), 0);
        for (o, p) in [(3, 100), (10, 500), (20, 900)] {
            idx.push(OffsetEntry {
                relative_offset: o,
                position: p,
            });
        }
        assert_eq!(idx.lookup(2), 0);
        assert_eq!(idx.lookup(3), 100);
        assert_eq!(idx.lookup(15), 500);
        assert_eq!(idx.lookup(99), 900);
        idx.flush(&durable_fs::OsStorage, true).unwrap();
        let loaded = Index::<OffsetEntry>::load(&durable_fs::OsStorage, dir.path().join("0.index"))
            .unwrap()
            .unwrap();
        assert_eq!(loaded.entries(), idx.entries());
        assert!(loaded.is_consistent(1000));
        assert!(!loaded.is_consistent(900));
        idx.truncate_while(|e| e.position < 600);
        idx.flush(&durable_fs::OsStorage, false).unwrap();
        let loaded = Index::<OffsetEntry>::load(&durable_fs::OsStorage, dir.path().join("0.index"))
            .unwrap()
            .unwrap();
        assert_eq!(loaded.entries().len(), 2);
    }

    #[test]
    fn torn_index_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.index");
        std::fs::write(&p, [0u8; 11]).unwrap();
        assert!(Index::<OffsetEntry>::load(&durable_fs::OsStorage, p)
            .unwrap()
            .is_none());
        assert!(
            Index::<OffsetEntry>::load(&durable_fs::OsStorage, dir.path().join("missing"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn time_lookup_before() {
        let mut idx = Index::<TimeEntry>::empty(PathBuf::from("/nonexistent"));
        idx.push(TimeEntry {
            timestamp: 100,
            relative_offset: 4,
        });
        idx.push(TimeEntry {
            timestamp: 200,
            relative_offset: 9,
        });
        assert_eq!(idx.lookup_before(100), None);
        assert_eq!(idx.lookup_before(101), Some(4));
        assert_eq!(idx.lookup_before(1000), Some(9));
        assert!(idx.is_consistent());
    }
}

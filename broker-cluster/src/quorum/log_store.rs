//! The Raft log and vote, persisted through [`durable_fs::Storage`].
//!
//! Layout in the quorum directory:
//! - `<first index, 20 digits>.raftlog`: append-only log segments. Each entry is framed as
//!   `[u32 length][u32 crc32c of the payload][payload = the entry as JSON]` (big-endian). A
//!   segment is rolled when it passes [`SEGMENT_BYTES`]. Every append is fsynced before openraft
//!   is told it is durable; a new segment's directory entry is synced too.
//! - `raft-vote.json`: the last vote, written atomically ([`durable_fs::write_atomic`]).
//! - `raft-purged.json`: the last purged log id, written atomically before segments are deleted.
//!
//! Recovery reads the segments in order and stops at the first frame that is torn, fails its
//! checksum or does not continue the index sequence: the segment is truncated there (and
//! synced) and later segments are deleted. Only the tail of the active segment can be torn,
//! since an append is acknowledged only after its fsync.
//!
//! The entries not yet purged are also kept in memory (the metadata log is purged at every
//! snapshot, so it stays small); reads never touch the disk.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable_fs::{OpenMode, Storage, StorageFile};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError};
use parking_lot::Mutex;
use tracing::{debug, warn};

use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// A segment is rolled once it holds at least this many bytes.
pub(crate) const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Frames claiming a larger payload are treated as corrupt.
const MAX_ENTRY_BYTES: usize = 256 * 1024 * 1024;
const SEGMENT_SUFFIX: &str = ".raftlog";
const VOTE_FILE: &str = "raft-vote.json";
const PURGED_FILE: &str = "raft-purged.json";
const FRAME_HEADER: usize = 8;

#[derive(Debug)]
struct Segment {
    file: Arc<dyn StorageFile>,
    len: u64,
}

#[derive(Debug)]
struct LogInner {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    entries: BTreeMap<u64, Entry>,
    /// Entry index → (segment base index, byte position of its frame).
    positions: BTreeMap<u64, (u64, u64)>,
    segments: BTreeMap<u64, Segment>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
}

/// The Raft log store (also its own log reader: clones share the same state).
#[derive(Debug, Clone)]
pub(crate) struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

fn segment_name(base: u64) -> String {
    format!("{base:020}{SEGMENT_SUFFIX}")
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Encodes one entry as a log frame.
pub(crate) fn encode_frame(entry: &Entry) -> io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(entry).map_err(io_err)?;
    let len = u32::try_from(payload.len()).map_err(io_err)?;
    let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Decodes the frame at `pos`; `None` when it is torn, corrupt or undecodable.
fn decode_frame(bytes: &[u8], pos: usize) -> Option<(Entry, usize)> {
    let header = bytes.get(pos..pos.checked_add(FRAME_HEADER)?)?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_ENTRY_BYTES {
        return None;
    }
    let start = pos + FRAME_HEADER;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    let entry: Entry = serde_json::from_slice(payload).ok()?;
    Some((entry, start + len))
}

impl LogInner {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn recover(&mut self) -> io::Result<()> {
        if let Some(bytes) = read_optional(&*self.storage, &self.path(VOTE_FILE))? {
            self.vote = Some(serde_json::from_slice(&bytes).map_err(io_err)?);
        }
        if let Some(bytes) = read_optional(&*self.storage, &self.path(PURGED_FILE))? {
            self.last_purged = Some(serde_json::from_slice(&bytes).map_err(io_err)?);
        }
        let mut bases: Vec<u64> = self
            .storage
            .read_dir(&self.dir)?
            .into_iter()
            .filter_map(|name| name.strip_suffix(SEGMENT_SUFFIX)?.parse::<u64>().ok())
            .collect();
        bases.sort_unstable();
        let purged_index = self.last_purged.map(|l| l.index);
        let mut expected: Option<u64> = None;
        let mut broken = false;
        for base in bases {
            let path = self.path(&segment_name(base));
            if broken {
                warn!(path = %path.display(), "removing a Raft log segment after a torn or corrupt one");
                self.storage.remove_file(&path)?;
                continue;
            }
            let file = self.storage.open(&path, OpenMode::Existing)?;
            let len = file.len()?;
            let mut bytes = vec![0u8; usize::try_from(len).map_err(io_err)?];
            file.read_exact_at(&mut bytes, 0)?;
            let mut pos = 0usize;
            while pos < bytes.len() {
                let Some((entry, next)) = decode_frame(&bytes, pos) else {
                    broken = true;
                    break;
                };
                let index = entry.log_id.index;
                let continues = match expected {
                    None => index == base,
                    Some(e) => index == e,
                };
                if !continues {
                    broken = true;
                    break;
                }
                expected = Some(index + 1);
                if purged_index.is_none_or(|p| index > p) {
                    self.positions.insert(index, (base, pos as u64));
                    self.entries.insert(index, entry);
                }
                pos = next;
            }
            if broken {
                warn!(path = %path.display(), valid_bytes = pos, file_bytes = len, "truncating the Raft log at a torn or corrupt entry");
                file.set_len(pos as u64)?;
                file.sync_all()?;
            }
            self.segments.insert(
                base,
                Segment {
                    file,
                    len: pos as u64,
                },
            );
        }
        if broken {
            self.storage.sync_dir(&self.dir)?;
        }
        debug!(entries = self.entries.len(), segments = self.segments.len(), last_purged = ?self.last_purged, "Raft log recovered");
        Ok(())
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(self.last_purged)
    }

    /// Appends and syncs.
    #[cfg(test)]
    fn append_entries(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        match self.write_entries(entries)? {
            Some(file) => file.sync_data(),
            None => Ok(()),
        }
    }

    /// Writes `entries` (readable at once) and returns the active segment, which the caller
    /// must sync before telling openraft the entries are durable. Earlier segments closed by a
    /// roll are synced here.
    fn write_entries(&mut self, entries: Vec<Entry>) -> io::Result<Option<Arc<dyn StorageFile>>> {
        for entry in entries {
            let index = entry.log_id.index;
            let frame = encode_frame(&entry)?;
            let roll = match self.segments.iter().next_back() {
                None => true,
                Some((_, seg)) => seg.len >= SEGMENT_BYTES,
            };
            if roll {
                // The segment being closed is synced now: only the active one is synced at
                // the end of the append.
                if let Some((_, seg)) = self.segments.iter().next_back() {
                    seg.file.sync_data()?;
                }
                let path = self.path(&segment_name(index));
                let file = self.storage.open(&path, OpenMode::Truncate)?;
                file.sync_all()?;
                self.storage.sync_dir(&self.dir)?;
                self.segments.insert(index, Segment { file, len: 0 });
            }
            let Some((&base, seg)) = self.segments.iter_mut().next_back() else {
                return Err(io_err("no active Raft log segment"));
            };
            seg.file.write_all_at(&frame, seg.len)?;
            self.positions.insert(index, (base, seg.len));
            seg.len += frame.len() as u64;
            self.entries.insert(index, entry);
        }
        Ok(self
            .segments
            .values()
            .next_back()
            .map(|seg| Arc::clone(&seg.file)))
    }

    fn truncate(&mut self, from: u64) -> io::Result<()> {
        let Some(&(base, pos)) = self.positions.get(&from) else {
            // Nothing stored at or after `from` (entries before the purge point are gone).
            let _ = self.entries.split_off(&from);
            let _ = self.positions.split_off(&from);
            return Ok(());
        };
        if let Some(seg) = self.segments.get_mut(&base) {
            seg.file.set_len(pos)?;
            seg.file.sync_all()?;
            seg.len = pos;
        }
        let later: Vec<u64> = self
            .segments
            .range(base.saturating_add(1)..)
            .map(|(b, _)| *b)
            .collect();
        for b in &later {
            self.segments.remove(b);
            self.storage.remove_file(&self.path(&segment_name(*b)))?;
        }
        if !later.is_empty() {
            self.storage.sync_dir(&self.dir)?;
        }
        let _ = self.entries.split_off(&from);
        let _ = self.positions.split_off(&from);
        Ok(())
    }

    fn purge(&mut self, upto: LogId) -> io::Result<()> {
        let bytes = serde_json::to_vec(&upto).map_err(io_err)?;
        durable_fs::write_atomic(&*self.storage, &self.path(PURGED_FILE), &bytes)?;
        self.last_purged = Some(upto);
        let bases: Vec<u64> = self.segments.keys().copied().collect();
        let last_entry = self.entries.keys().next_back().copied();
        let mut removed = false;
        for (i, base) in bases.iter().enumerate() {
            // The last index a segment holds: one before the next segment's base, or the last
            // entry for the active segment.
            let last_in_segment = match bases.get(i + 1) {
                Some(next) => Some(next.saturating_sub(1)),
                None => last_entry.filter(|l| l >= base),
            };
            let fully_purged = match last_in_segment {
                Some(last) => last <= upto.index,
                // An empty active segment whose base is not after the purge point.
                None => *base <= upto.index,
            };
            if !fully_purged {
                break;
            }
            self.segments.remove(base);
            self.storage.remove_file(&self.path(&segment_name(*base)))?;
            removed = true;
        }
        if removed {
            self.storage.sync_dir(&self.dir)?;
        }
        let keep_from = upto.index.saturating_add(1);
        self.entries = self.entries.split_off(&keep_from);
        self.positions = self.positions.split_off(&keep_from);
        Ok(())
    }
}

/// Runs file I/O off the async workers.
async fn blocking(f: impl FnOnce() -> io::Result<()> + Send + 'static) -> io::Result<()> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("storage task: {e}"))))
}

fn read_optional(storage: &dyn Storage, path: &Path) -> io::Result<Option<Vec<u8>>> {
    if !storage.exists(path) {
        return Ok(None);
    }
    storage.read(path).map(Some)
}

impl LogStore {
    /// Opens (recovering) the log in `dir`, which must exist.
    pub(crate) fn open(storage: Arc<dyn Storage>, dir: PathBuf) -> io::Result<Self> {
        let mut inner = LogInner {
            storage,
            dir,
            entries: BTreeMap::new(),
            positions: BTreeMap::new(),
            segments: BTreeMap::new(),
            last_purged: None,
            vote: None,
        };
        inner.recover()?;
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    /// The index of the last entry (or of the purge point), if any.
    #[cfg(test)]
    pub(crate) fn last_index(&self) -> Option<u64> {
        self.inner.lock().last_log_id().map(|l| l.index)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.inner.lock();
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.inner.lock();
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: inner.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        let inner = Arc::clone(&self.inner);
        let vote = *vote;
        blocking(move || {
            let mut inner = inner.lock();
            durable_fs::write_atomic(&*inner.storage, &inner.path(VOTE_FILE), &bytes)?;
            inner.vote = Some(vote);
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.inner.lock().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let inner = Arc::clone(&self.inner);
        // The file I/O runs off the async workers; the fsync runs outside the lock, so
        // replication reads of the log do not wait for it (openraft serializes log writes).
        let result = tokio::task::spawn_blocking(move || {
            let active = inner.lock().write_entries(entries)?;
            match active {
                Some(file) => file.sync_data(),
                None => Ok(()),
            }
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("log append task: {e}"))));
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageIOError::write_logs(&e);
                callback.log_io_completed(Err(e));
                Err(err.into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.lock().truncate(log_id.index))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.lock().purge(log_id))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::types::CommandData;
    use durable_fs::sim::SimStorage;
    use openraft::testing::log_id;
    use openraft::EntryPayload;

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: log_id(1, 0, index),
            payload: EntryPayload::Normal(CommandData(
                serde_json::json!({ "n": index, "pad": "x".repeat((index % 7) as usize * 40) }),
            )),
        }
    }

    fn dir() -> PathBuf {
        PathBuf::from("/data/__cluster_metadata-0")
    }

    fn open(sim: &SimStorage) -> io::Result<LogStore> {
        let storage = sim.shared();
        durable_fs::create_dir_all_durable(&*storage, &dir())?;
        LogStore::open(storage, dir())
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        store.inner.lock().entries.keys().copied().collect()
    }

    fn check_payloads(store: &LogStore) {
        for (i, e) in store.inner.lock().entries.iter() {
            assert_eq!(e, &entry(*i), "entry {i} recovered intact");
        }
    }

    #[test]
    fn acknowledged_appends_survive_a_power_cut_and_a_torn_tail_is_cut_off() {
        for seed in 0..40u64 {
            let sim = SimStorage::new();
            let store = open(&sim).unwrap();
            for i in 1..=10 {
                store.inner.lock().append_entries(vec![entry(i)]).unwrap();
            }
            // Strike somewhere inside the next appends.
            sim.arm_power_cut(1 + seed % 5, seed);
            let mut acknowledged = 10;
            for i in 11..=20 {
                if store.inner.lock().append_entries(vec![entry(i)]).is_err() {
                    break;
                }
                acknowledged = i;
            }
            assert!(sim.armed_cut_struck(), "seed {seed}: the cut struck");
            drop(store);
            let store = open(&sim).unwrap();
            let got = indexes(&store);
            let expected_prefix: Vec<u64> = (1..=acknowledged).collect();
            assert!(
                got.len() >= expected_prefix.len(),
                "seed {seed}: lost acknowledged entries: {got:?}"
            );
            assert_eq!(
                &got[..expected_prefix.len()],
                &expected_prefix[..],
                "seed {seed}"
            );
            assert_eq!(
                got,
                (1..=got.len() as u64).collect::<Vec<_>>(),
                "seed {seed}: contiguous"
            );
            check_payloads(&store);
            // The log goes on after recovery and survives another restart.
            let next = store.last_index().unwrap() + 1;
            store
                .inner
                .lock()
                .append_entries(vec![entry(next)])
                .unwrap();
            drop(store);
            sim.power_cut(seed);
            let store = open(&sim).unwrap();
            assert_eq!(store.last_index(), Some(next), "seed {seed}");
            check_payloads(&store);
        }
    }

    #[test]
    fn garbage_after_the_last_frame_is_truncated() {
        let sim = SimStorage::new();
        let store = open(&sim).unwrap();
        store
            .inner
            .lock()
            .append_entries((1..=5).map(entry).collect())
            .unwrap();
        drop(store);
        let storage = sim.shared();
        let path = dir().join(segment_name(1));
        let file = storage.open(&path, OpenMode::Existing).unwrap();
        let len = file.len().unwrap();
        // A frame header promising more bytes than follow, then a frame with a bad checksum.
        let torn = encode_frame(&entry(6)).unwrap();
        file.write_all_at(&torn[..torn.len() / 2], len).unwrap();
        file.sync_all().unwrap();
        let store = open(&sim).unwrap();
        assert_eq!(indexes(&store), vec![1, 2, 3, 4, 5]);
        assert_eq!(
            sim.shared()
                .open(&path, OpenMode::Existing)
                .unwrap()
                .len()
                .unwrap(),
            len
        );
        drop(store);

        let file = storage.open(&path, OpenMode::Existing).unwrap();
        let mut bad = encode_frame(&entry(6)).unwrap();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        file.write_all_at(&bad, len).unwrap();
        file.sync_all().unwrap();
        let store = open(&sim).unwrap();
        assert_eq!(indexes(&store), vec![1, 2, 3, 4, 5]);
        check_payloads(&store);
    }

    #[test]
    fn truncate_purge_and_segment_rolls_recover() {
        let sim = SimStorage::new();
        let store = open(&sim).unwrap();
        // Large entries so that segments roll.
        let big = |i: u64| Entry {
            log_id: log_id(1, 0, i),
            payload: EntryPayload::Normal(CommandData(
                serde_json::json!({ "n": i, "pad": "y".repeat(1 << 20) }),
            )),
        };
        store
            .inner
            .lock()
            .append_entries((1..=30).map(big).collect())
            .unwrap();
        let segments = store.inner.lock().segments.len();
        assert!(segments >= 3, "{segments} segments");
        store.inner.lock().truncate(25).unwrap();
        store.inner.lock().purge(log_id(1, 0, 12)).unwrap();
        assert_eq!(indexes(&store), (13..=24).collect::<Vec<_>>());
        drop(store);
        sim.power_cut_losing_all_unsynced();
        let store = open(&sim).unwrap();
        assert_eq!(indexes(&store), (13..=24).collect::<Vec<_>>());
        assert_eq!(store.inner.lock().last_purged, Some(log_id(1, 0, 12)));
        // Purging everything, then appending after the purge point.
        store.inner.lock().purge(log_id(1, 0, 40)).unwrap();
        assert!(indexes(&store).is_empty());
        assert_eq!(store.last_index(), Some(40));
        store.inner.lock().append_entries(vec![entry(41)]).unwrap();
        drop(store);
        sim.power_cut_losing_all_unsynced();
        let store = open(&sim).unwrap();
        assert_eq!(indexes(&store), vec![41]);
    }

    #[test]
    fn vote_is_persisted() {
        let sim = SimStorage::new();
        let mut store = open(&sim).unwrap();
        let vote = Vote::new(3, 2);
        futures_block(store.save_vote(&vote)).unwrap();
        drop(store);
        sim.power_cut_losing_all_unsynced();
        let mut store = open(&sim).unwrap();
        assert_eq!(futures_block(store.read_vote()).unwrap(), Some(vote));
    }

    fn futures_block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }
}

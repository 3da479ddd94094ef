//! The partition side of Kafka transactions: end-transaction markers (control records), the
//! aborted-transaction entries of a segment's `.txnindex`, and the index itself.
//!
//! Control record (Kafka's `ControlRecordType` / `EndTransactionMarker`): the key is
//! `version i16 (0) | type i16` (0 = ABORT, 1 = COMMIT), the value `version i16 (0) |
//! coordinator_epoch i32`. A marker batch has the control and transactional attribute bits set
//! and holds exactly one such record.
//!
//! `.txnindex` (Kafka's `TransactionIndex`): 34-byte entries `version i16 (0) | producerId i64 |
//! firstOffset i64 | lastOffset i64 | lastStableOffset i64`, one per aborted transaction whose
//! marker is in the segment, in marker order. The file is created with its first entry (a
//! segment without aborted transactions has none) and carries no checksum; it is validated on
//! open and rebuilt from the log by a producer-state replay when unusable.

use std::io;
use std::path::{Path, PathBuf};

use durable_fs::{remove_if_exists, OpenMode, Storage};

use crate::record::{decode_records, RecordError};

/// Version of the control record key Kafka writes.
pub(crate) const CONTROL_KEY_VERSION: i16 = 0;
/// Version of the end-transaction marker value Kafka writes.
pub(crate) const END_TXN_MARKER_VERSION: i16 = 0;
/// Control record type of an abort marker.
pub(crate) const CONTROL_TYPE_ABORT: i16 = 0;
/// Control record type of a commit marker.
pub(crate) const CONTROL_TYPE_COMMIT: i16 = 1;

/// An end-transaction marker as carried by a control batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndTxnMarker {
    /// True for COMMIT, false for ABORT.
    pub(crate) commit: bool,
    /// Epoch of the transaction coordinator that wrote it.
    pub(crate) coordinator_epoch: i32,
}

/// What a control batch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ControlRecord {
    /// A transaction marker.
    EndTxn(EndTxnMarker),
    /// Another control type (KRaft's), or an empty control batch left by compaction: no effect
    /// on producer state.
    Other,
}

impl EndTxnMarker {
    /// The control record key: `version i16 | type i16`.
    pub(crate) fn key(&self) -> [u8; 4] {
        let ty = if self.commit {
            CONTROL_TYPE_COMMIT
        } else {
            CONTROL_TYPE_ABORT
        };
        let mut k = [0u8; 4];
        k[..2].copy_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
        k[2..].copy_from_slice(&ty.to_be_bytes());
        k
    }

    /// The marker value: `version i16 | coordinator_epoch i32`.
    pub(crate) fn value(&self) -> [u8; 6] {
        let mut v = [0u8; 6];
        v[..2].copy_from_slice(&END_TXN_MARKER_VERSION.to_be_bytes());
        v[2..].copy_from_slice(&self.coordinator_epoch.to_be_bytes());
        v
    }
}

/// Parses a control record's key and value as Kafka does: a key shorter than 4 bytes or with a
/// negative version is invalid; an unknown type is `Other`; a marker value shorter than 6
/// bytes or with a negative version is invalid (newer versions are read as version 0).
pub(crate) fn parse_control_record(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<ControlRecord, RecordError> {
    let key = key.unwrap_or_default();
    if key.len() < 4 {
        return Err(RecordError::InvalidRecord(format!(
            "control record key has {} bytes, at least 4 expected",
            key.len()
        )));
    }
    let version = i16::from_be_bytes([key[0], key[1]]);
    if version < 0 {
        return Err(RecordError::InvalidRecord(format!(
            "invalid control record key version {version}"
        )));
    }
    let commit = match i16::from_be_bytes([key[2], key[3]]) {
        CONTROL_TYPE_ABORT => false,
        CONTROL_TYPE_COMMIT => true,
        _ => return Ok(ControlRecord::Other),
    };
    let value = value.unwrap_or_default();
    if value.len() < 6 {
        return Err(RecordError::InvalidRecord(format!(
            "end transaction marker value has {} bytes, at least 6 expected",
            value.len()
        )));
    }
    let version = i16::from_be_bytes([value[0], value[1]]);
    if version < 0 {
        return Err(RecordError::InvalidRecord(format!(
            "invalid end transaction marker version {version}"
        )));
    }
    Ok(ControlRecord::EndTxn(EndTxnMarker {
        commit,
        coordinator_epoch: i32::from_be_bytes([value[2], value[3], value[4], value[5]]),
    }))
}

/// Reads the control record of a whole control batch (`Other` when it holds no record).
pub(crate) fn control_record_of_batch(batch: &[u8]) -> Result<ControlRecord, RecordError> {
    let records = decode_records(batch)?;
    match records.first() {
        None => Ok(ControlRecord::Other),
        Some(r) => parse_control_record(r.key.as_deref(), r.value.as_deref()),
    }
}

/// A transaction completed by a marker (Kafka's `CompletedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompletedTxn {
    pub(crate) producer_id: i64,
    pub(crate) first_offset: i64,
    /// Offset of the marker.
    pub(crate) last_offset: i64,
    pub(crate) aborted: bool,
}

/// One `.txnindex` entry (Kafka's `AbortedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// Producer id of the aborted transaction.
    pub producer_id: i64,
    /// Offset of its first record in this partition.
    pub first_offset: i64,
    /// Offset of its abort marker.
    pub last_offset: i64,
    /// The last stable offset right after the marker was written.
    pub last_stable_offset: i64,
}

/// Size of one `.txnindex` entry.
pub(crate) const ABORTED_TXN_SIZE: usize = 34;
/// The only entry version Kafka writes.
pub(crate) const ABORTED_TXN_VERSION: i16 = 0;

impl AbortedTxn {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&ABORTED_TXN_VERSION.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.first_offset.to_be_bytes());
        out.extend_from_slice(&self.last_offset.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.to_be_bytes());
    }

    /// Decodes one 34-byte entry; `None` for another version.
    pub(crate) fn decode(b: &[u8; ABORTED_TXN_SIZE]) -> Option<Self> {
        let i64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            i64::from_be_bytes(a)
        };
        if i16::from_be_bytes([b[0], b[1]]) != ABORTED_TXN_VERSION {
            return None;
        }
        Some(Self {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        })
    }
}

/// Why a `.txnindex` file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TxnIndexDamage {
    /// Its size is not a multiple of the entry size.
    TornEntry(u64),
    /// An entry has an unknown version.
    UnknownVersion(usize),
    /// Entries are not in marker order, or one describes offsets outside the segment.
    OutOfOrder(usize),
}

impl std::fmt::Display for TxnIndexDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TornEntry(len) => write!(f, "{len} bytes is not a whole number of entries"),
            Self::UnknownVersion(i) => write!(f, "entry {i} has an unknown version"),
            Self::OutOfOrder(i) => write!(f, "entry {i} is out of order or out of range"),
        }
    }
}

/// A segment's aborted-transaction index, held in memory and mirrored to its file.
#[derive(Debug)]
pub(crate) struct TxnIndex {
    path: PathBuf,
    entries: Vec<AbortedTxn>,
    /// Entries already in the file; `usize::MAX` forces a rewrite.
    persisted: usize,
}

impl TxnIndex {
    /// An empty index (no file until its first entry).
    pub(crate) fn empty(path: PathBuf) -> Self {
        Self {
            path,
            entries: Vec::new(),
            persisted: 0,
        }
    }

    /// An empty index that replaces whatever file exists at `path` on the next flush.
    pub(crate) fn reset(path: PathBuf) -> Self {
        Self {
            path,
            entries: Vec::new(),
            persisted: usize::MAX,
        }
    }

    /// Parses index bytes and checks them against the segment's offsets `[base, next)`.
    pub(crate) fn parse(
        bytes: &[u8],
        base_offset: i64,
        next_offset: i64,
    ) -> Result<Vec<AbortedTxn>, TxnIndexDamage> {
        if !bytes.len().is_multiple_of(ABORTED_TXN_SIZE) {
            return Err(TxnIndexDamage::TornEntry(bytes.len() as u64));
        }
        let mut out: Vec<AbortedTxn> = Vec::with_capacity(bytes.len() / ABORTED_TXN_SIZE);
        for (i, chunk) in bytes.chunks_exact(ABORTED_TXN_SIZE).enumerate() {
            let mut a = [0u8; ABORTED_TXN_SIZE];
            a.copy_from_slice(chunk);
            let e = AbortedTxn::decode(&a).ok_or(TxnIndexDamage::UnknownVersion(i))?;
            let ordered = out.last().is_none_or(|p| p.last_offset < e.last_offset);
            if !ordered
                || e.first_offset > e.last_offset
                || e.last_offset < base_offset
                || e.last_offset >= next_offset
            {
                return Err(TxnIndexDamage::OutOfOrder(i));
            }
            out.push(e);
        }
        Ok(out)
    }

    /// Loads the file at `path` (missing = no aborted transactions).
    pub(crate) fn load(
        storage: &dyn Storage,
        path: PathBuf,
        base_offset: i64,
        next_offset: i64,
    ) -> io::Result<Result<Self, TxnIndexDamage>> {
        let bytes = match storage.read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ok(Self::empty(path))),
            Err(e) => return Err(e),
        };
        Ok(
            Self::parse(&bytes, base_offset, next_offset).map(|entries| Self {
                path,
                persisted: entries.len(),
                entries,
            }),
        )
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an entry; an entry whose marker is not after the last one is already there
    /// (a replay over indexed data) and is skipped. Returns whether it was added.
    pub(crate) fn append(&mut self, e: AbortedTxn) -> bool {
        if self
            .entries
            .last()
            .is_some_and(|l| l.last_offset >= e.last_offset)
        {
            return false;
        }
        self.entries.push(e);
        true
    }

    /// Drops entries whose marker is at or after `offset` (log truncation).
    pub(crate) fn truncate_to(&mut self, offset: i64) {
        let n = self.entries.partition_point(|e| e.last_offset < offset);
        if n < self.entries.len() {
            self.entries.truncate(n);
            self.persisted = usize::MAX;
        }
    }

    /// Kafka's `collectAbortedTxns`: the entries that overlap `[fetch_offset, upper_bound)`,
    /// and whether the search is complete (an entry's last stable offset reached the bound, so
    /// later segments cannot hold more).
    pub(crate) fn collect(
        &self,
        fetch_offset: i64,
        upper_bound: i64,
        out: &mut Vec<AbortedTxn>,
    ) -> bool {
        for e in &self.entries {
            if e.last_offset >= fetch_offset && e.first_offset < upper_bound {
                out.push(*e);
            }
            if e.last_stable_offset >= upper_bound {
                return true;
            }
        }
        false
    }

    /// Writes pending entries (appending, or rewriting through a temporary file after a
    /// truncation or reset). Without entries no file is created, and a reset or truncation to
    /// nothing removes the file. Written entries are always made durable (aborts are rare, and
    /// unlike the offset indexes a lost entry could not be detected in a segment below the
    /// recovery point); `sync` also fsyncs when nothing is pending.
    pub(crate) fn flush(&mut self, storage: &dyn Storage, sync: bool) -> io::Result<()> {
        if self.persisted == usize::MAX {
            if self.entries.is_empty() {
                if storage.exists(&self.path) {
                    storage.remove_file(&self.path)?;
                    storage.sync_dir(durable_fs::parent_dir(&self.path))?;
                }
            } else {
                let mut buf = Vec::with_capacity(self.entries.len() * ABORTED_TXN_SIZE);
                for e in &self.entries {
                    e.encode(&mut buf);
                }
                let tmp = self.path.with_extension("txnindex-rewrite.tmp");
                {
                    let f = storage.open(&tmp, OpenMode::Truncate)?;
                    f.write_all_at(&buf, 0)?;
                    f.sync_data()?;
                }
                storage.rename(&tmp, &self.path)?;
                storage.sync_dir(durable_fs::parent_dir(&self.path))?;
            }
            self.persisted = self.entries.len();
            return Ok(());
        }
        if self.entries.is_empty() || (self.persisted == self.entries.len() && !sync) {
            return Ok(());
        }
        let created = self.persisted == 0 && !storage.exists(&self.path);
        let f = storage.open(&self.path, OpenMode::Create)?;
        if self.persisted < self.entries.len() {
            let mut buf =
                Vec::with_capacity((self.entries.len() - self.persisted) * ABORTED_TXN_SIZE);
            for e in &self.entries[self.persisted..] {
                e.encode(&mut buf);
            }
            f.write_all_at(&buf, (self.persisted * ABORTED_TXN_SIZE) as u64)?;
        }
        f.sync_data()?;
        if created {
            storage.sync_dir(durable_fs::parent_dir(&self.path))?;
        }
        self.persisted = self.entries.len();
        Ok(())
    }

    /// Deletes the file.
    pub(crate) fn delete_file(&self, storage: &dyn Storage) -> io::Result<()> {
        remove_if_exists(storage, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_key_and_value_match_kafkas_layout() {
        let m = EndTxnMarker {
            commit: true,
            coordinator_epoch: 7,
        };
        assert_eq!(m.key(), [0, 0, 0, 1]);
        assert_eq!(m.value(), [0, 0, 0, 0, 0, 7]);
        let a = EndTxnMarker {
            commit: false,
            coordinator_epoch: -1,
        };
        assert_eq!(a.key(), [0, 0, 0, 0]);
        assert_eq!(a.value(), [0, 0, 0xff, 0xff, 0xff, 0xff]);
        for m in [m, a] {
            assert_eq!(
                parse_control_record(Some(&m.key()), Some(&m.value())),
                Ok(ControlRecord::EndTxn(m))
            );
        }
    }

    #[test]
    fn control_record_parsing_follows_kafkas_rules() {
        // Unknown types are ignored, short keys and values and negative versions refused,
        // newer value versions read as version 0.
        assert_eq!(
            parse_control_record(Some(&[0, 0, 0, 2]), None),
            Ok(ControlRecord::Other)
        );
        assert!(parse_control_record(Some(&[0, 0, 0]), Some(&[0; 6])).is_err());
        assert!(parse_control_record(None, Some(&[0; 6])).is_err());
        assert!(parse_control_record(Some(&[0xff, 0xff, 0, 1]), Some(&[0; 6])).is_err());
        assert!(parse_control_record(Some(&[0, 0, 0, 1]), Some(&[0; 5])).is_err());
        assert!(parse_control_record(Some(&[0, 0, 0, 1]), Some(&[0x80, 0, 0, 0, 0, 1])).is_err());
        assert_eq!(
            parse_control_record(Some(&[0, 0, 0, 0]), Some(&[0, 3, 0, 0, 0, 9, 1, 2])),
            Ok(ControlRecord::EndTxn(EndTxnMarker {
                commit: false,
                coordinator_epoch: 9
            }))
        );
    }

    fn entry(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn aborted_txn_encoding_is_34_bytes_big_endian() {
        let e = entry(0x0102, 5, 9, 10);
        let mut buf = Vec::new();
        e.encode(&mut buf);
        assert_eq!(buf.len(), ABORTED_TXN_SIZE);
        assert_eq!(&buf[..2], &[0, 0]);
        assert_eq!(&buf[2..10], &0x0102i64.to_be_bytes());
        assert_eq!(&buf[26..34], &10i64.to_be_bytes());
        let mut a = [0u8; ABORTED_TXN_SIZE];
        a.copy_from_slice(&buf);
        assert_eq!(AbortedTxn::decode(&a), Some(e));
        a[1] = 1;
        assert_eq!(AbortedTxn::decode(&a), None);
    }

    #[test]
    fn txn_index_round_trips_through_storage_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let storage = durable_fs::OsStorage::shared();
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut idx = TxnIndex::empty(path.clone());
        idx.flush(&*storage, true).unwrap();
        assert!(!path.exists(), "no file without entries");
        assert!(idx.append(entry(1, 0, 4, 5)));
        assert!(idx.append(entry(2, 3, 8, 9)));
        assert!(!idx.append(entry(2, 3, 8, 9)), "replayed entry is skipped");
        idx.flush(&*storage, true).unwrap();
        assert!(idx.append(entry(3, 10, 12, 13)));
        idx.flush(&*storage, false).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * 34);
        let loaded = TxnIndex::load(&*storage, path.clone(), 0, 20)
            .unwrap()
            .unwrap();
        assert_eq!(loaded.entries(), idx.entries());

        // Truncation rewrites the file.
        idx.truncate_to(8);
        idx.flush(&*storage, true).unwrap();
        let loaded = TxnIndex::load(&*storage, path.clone(), 0, 20)
            .unwrap()
            .unwrap();
        assert_eq!(loaded.entries(), &[entry(1, 0, 4, 5)]);

        // Damage: torn entry, unknown version, entries beyond the segment, disorder.
        let mut bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..20]).unwrap();
        assert_eq!(
            TxnIndex::load(&*storage, path.clone(), 0, 20)
                .unwrap()
                .err(),
            Some(TxnIndexDamage::TornEntry(20))
        );
        bytes[1] = 9;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            TxnIndex::load(&*storage, path.clone(), 0, 20)
                .unwrap()
                .err(),
            Some(TxnIndexDamage::UnknownVersion(0))
        );
        bytes[1] = 0;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            TxnIndex::load(&*storage, path.clone(), 0, 4).unwrap().err(),
            Some(TxnIndexDamage::OutOfOrder(0))
        );
        let mut twice = bytes.clone();
        twice.extend_from_slice(&bytes);
        std::fs::write(&path, &twice).unwrap();
        assert_eq!(
            TxnIndex::load(&*storage, path.clone(), 0, 20)
                .unwrap()
                .err(),
            Some(TxnIndexDamage::OutOfOrder(1))
        );

        // Truncation to nothing removes the file.
        let mut idx = TxnIndex::load(&*storage, path.clone(), 0, 20)
            .map(|r| r.unwrap_or_else(|_| TxnIndex::reset(path.clone())))
            .unwrap();
        idx.truncate_to(0);
        idx.flush(&*storage, true).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn collect_stops_once_an_entry_reaches_the_upper_bound() {
        let mut idx = TxnIndex::empty(PathBuf::from("x.txnindex"));
        idx.append(entry(1, 0, 4, 2));
        idx.append(entry(2, 2, 6, 7));
        idx.append(entry(3, 8, 9, 10));
        let mut out = Vec::new();
        // [5, 7): entry 1 ended before, entry 2 overlaps and its LSO 7 reaches the bound.
        assert!(idx.collect(5, 7, &mut out));
        assert_eq!(out, vec![entry(2, 2, 6, 7)]);
        out.clear();
        assert!(!idx.collect(0, 100, &mut out));
        assert_eq!(out.len(), 3);
    }
}

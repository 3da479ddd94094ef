//! Per-partition idempotent/transactional producer state, as Kafka keeps it: for each producer
//! id, its epoch, the metadata of its last five batches (so a retried batch is recognised and
//! answered with its original offsets), and the first offset of its open transaction.
//!
//! The state is snapshotted to `<offset, 20 digits>.snapshot` files in the partition directory
//! (at segment rolls and on clean shutdown) and rebuilt on open from the newest snapshot at or
//! below the log end plus a replay of the batches after it. Like Kafka's snapshot, it keeps
//! each producer's coordinator epoch and open transaction's first offset.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable_fs::Storage;

use tracing::warn;

use super::txn::{CompletedTxn, ControlRecord};
use crate::error::{BrokerError, Result};
use crate::record::BatchHeader;

/// Batches remembered per producer for duplicate detection (Kafka's
/// `max.in.flight.requests.per.connection` limit for idempotence is 5).
pub const MAX_REMEMBERED_BATCHES: usize = 5;

/// Version 2 added the coordinator epoch; version 1 files are still read.
const SNAPSHOT_VERSION: i16 = 2;

/// Sequence and offset range of one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence of the first record.
    pub first_seq: i32,
    /// Sequence of the last record.
    pub last_seq: i32,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
}

/// What the partition remembers about one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    /// Current epoch.
    pub epoch: i16,
    /// Epoch of the transaction coordinator that wrote this producer's last marker (-1: none).
    pub coordinator_epoch: i32,
    /// Last batches, oldest first.
    pub batches: VecDeque<BatchMetadata>,
    /// First offset of the producer's open transaction, if any.
    pub current_txn_first_offset: Option<i64>,
    /// Timestamp of the last append.
    pub last_timestamp: i64,
}

/// Outcome of checking a producer batch before appending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// New data: append it.
    Append,
    /// A retry of a batch already in the log: answer with its original offsets.
    Duplicate(BatchMetadata),
}

#[derive(Debug)]
pub(crate) struct ProducerStateManager {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    producers: HashMap<i64, ProducerEntry>,
}

fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.snapshot"))
}

impl ProducerStateManager {
    pub(crate) fn new(storage: Arc<dyn Storage>, dir: &Path) -> Self {
        Self {
            storage,
            dir: dir.to_path_buf(),
            producers: HashMap::new(),
        }
    }

    pub(crate) fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer the partition remembers (DescribeProducers).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(id, e)| (*id, e))
    }

    /// Kafka's sequence rules for a batch from a client.
    pub(crate) fn check(&self, h: &BatchHeader) -> Result<SequenceCheck> {
        if !h.has_producer_id() {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // Unknown producer (new, or its state expired): accept any starting sequence.
            return Ok(SequenceCheck::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(BrokerError::InvalidProducerEpoch {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: entry.epoch,
            });
        }
        if h.is_control() {
            return Ok(SequenceCheck::Append);
        }
        if entry.current_txn_first_offset.is_some() && !h.is_transactional() {
            return Err(BrokerError::InvalidTxnState(format!(
                "expected a transactional write from producer {} (its transaction is open)",
                h.producer_id
            )));
        }
        if h.producer_epoch > entry.epoch {
            if h.base_sequence != 0 {
                return Err(BrokerError::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    expected: 0,
                    received: h.base_sequence,
                });
            }
            return Ok(SequenceCheck::Append);
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == h.last_sequence())
        {
            return Ok(SequenceCheck::Duplicate(*dup));
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |b| next_sequence(b.last_seq));
        if h.base_sequence != expected {
            return Err(BrokerError::OutOfOrderSequence {
                producer_id: h.producer_id,
                expected,
                received: h.base_sequence,
            });
        }
        Ok(SequenceCheck::Append)
    }

    /// Kafka's checks for an end-transaction marker from the coordinator: an older producer
    /// epoch is INVALID_PRODUCER_EPOCH, an older coordinator epoch
    /// TRANSACTION_COORDINATOR_FENCED.
    pub(crate) fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<()> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if producer_epoch < entry.epoch {
            return Err(BrokerError::InvalidProducerEpoch {
                producer_id,
                epoch: producer_epoch,
                current: entry.epoch,
            });
        }
        if entry.coordinator_epoch > coordinator_epoch {
            return Err(BrokerError::TransactionCoordinatorFenced {
                producer_id,
                coordinator_epoch,
                current: entry.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Records an appended batch (base offset already assigned). `control` is the record of a
    /// control batch. Returns the transaction a marker completed, if the producer had one open
    /// (Kafka emits none for a marker without transactional data before it).
    pub(crate) fn update(
        &mut self,
        h: &BatchHeader,
        control: Option<ControlRecord>,
    ) -> Option<CompletedTxn> {
        if !h.has_producer_id() {
            return None;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                coordinator_epoch: -1,
                batches: VecDeque::new(),
                current_txn_first_offset: None,
                last_timestamp: h.max_timestamp,
            });
        if h.producer_epoch > entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = entry.last_timestamp.max(h.max_timestamp);
        if h.is_control() {
            let Some(ControlRecord::EndTxn(marker)) = control else {
                return None;
            };
            entry.coordinator_epoch = marker.coordinator_epoch;
            return entry
                .current_txn_first_offset
                .take()
                .map(|first_offset| CompletedTxn {
                    producer_id: h.producer_id,
                    first_offset,
                    last_offset: h.base_offset,
                    aborted: !marker.commit,
                });
        }
        if h.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(h.base_offset);
        }
        if h.base_sequence >= 0 {
            if entry.batches.len() == MAX_REMEMBERED_BATCHES {
                entry.batches.pop_front();
            }
            entry.batches.push_back(BatchMetadata {
                first_seq: h.base_sequence,
                last_seq: h.last_sequence(),
                first_offset: h.base_offset,
                last_offset: h.last_offset(),
                max_timestamp: h.max_timestamp,
            });
        }
        None
    }

    /// Offset of the oldest open transaction (the last stable offset bound), if any.
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        self.producers
            .values()
            .filter_map(|e| e.current_txn_first_offset)
            .min()
    }

    /// Writes the state as of `offset` atomically.
    pub(crate) fn write_snapshot(&self, offset: i64) -> Result<()> {
        let mut body = Vec::with_capacity(16 + self.producers.len() * 64);
        body.extend_from_slice(&(self.producers.len() as i32).to_be_bytes());
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(e) = self.producers.get(&id) else {
                continue;
            };
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            body.extend_from_slice(&e.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
            body.extend_from_slice(&e.last_timestamp.to_be_bytes());
            body.push(e.batches.len() as u8);
            for b in &e.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.first_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
                body.extend_from_slice(&b.max_timestamp.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(body.len() + 6);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        let path = snapshot_path(&self.dir, offset);
        crate::fsutil::write_atomic(&*self.storage, &path, &out)
    }

    fn read_snapshot(
        storage: &dyn Storage,
        path: &Path,
    ) -> std::result::Result<HashMap<i64, ProducerEntry>, String> {
        let bytes = storage.read(path).map_err(|e| e.to_string())?;
        let mut r = Cursor { b: &bytes, pos: 0 };
        let version = i16::from_be_bytes(r.take::<2>()?);
        if version != 1 && version != SNAPSHOT_VERSION {
            return Err(format!("unknown snapshot version {version}"));
        }
        let crc = u32::from_be_bytes(r.take::<4>()?);
        if crc32c::crc32c(&bytes[6..]) != crc {
            return Err("snapshot CRC mismatch".into());
        }
        let count = i32::from_be_bytes(r.take::<4>()?);
        let mut map = HashMap::new();
        for _ in 0..count.max(0) {
            let id = i64::from_be_bytes(r.take::<8>()?);
            let epoch = i16::from_be_bytes(r.take::<2>()?);
            let coordinator_epoch = if version >= 2 {
                i32::from_be_bytes(r.take::<4>()?)
            } else {
                -1
            };
            let txn = i64::from_be_bytes(r.take::<8>()?);
            let last_timestamp = i64::from_be_bytes(r.take::<8>()?);
            let n = r.take::<1>()?[0] as usize;
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMetadata {
                    first_seq: i32::from_be_bytes(r.take::<4>()?),
                    last_seq: i32::from_be_bytes(r.take::<4>()?),
                    first_offset: i64::from_be_bytes(r.take::<8>()?),
                    last_offset: i64::from_be_bytes(r.take::<8>()?),
                    max_timestamp: i64::from_be_bytes(r.take::<8>()?),
                });
            }
            map.insert(
                id,
                ProducerEntry {
                    epoch,
                    coordinator_epoch,
                    batches,
                    current_txn_first_offset: (txn >= 0).then_some(txn),
                    last_timestamp,
                },
            );
        }
        Ok(map)
    }

    /// Snapshot offsets present in the directory, ascending.
    pub(crate) fn list_snapshots(storage: &dyn Storage, dir: &Path) -> io::Result<Vec<i64>> {
        let mut out = Vec::new();
        for name in storage.read_dir(dir)? {
            if let Some(stem) = name.strip_suffix(".snapshot") {
                if let Ok(o) = stem.parse::<i64>() {
                    out.push(o);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Loads the newest readable snapshot at or below `at_most` (itself at most `log_end`),
    /// deleting ones above `log_end` (they describe truncated data) and unreadable ones.
    /// Returns the offset replay must start from.
    pub(crate) fn load(&mut self, log_end: i64, at_most: i64) -> Result<i64> {
        let snaps = Self::list_snapshots(&*self.storage, &self.dir)
            .map_err(|e| BrokerError::io(&self.dir, e))?;
        let mut from = 0;
        self.producers.clear();
        for &o in snaps.iter().rev() {
            let path = snapshot_path(&self.dir, o);
            if o > log_end {
                let _ = self.storage.remove_file(&path);
                continue;
            }
            if o > at_most {
                continue;
            }
            match Self::read_snapshot(&*self.storage, &path) {
                Ok(map) => {
                    self.producers = map;
                    from = o;
                    break;
                }
                Err(reason) => {
                    warn!(snapshot = %path.display(), %reason, "ignoring unreadable producer-state snapshot");
                    let _ = self.storage.remove_file(&path);
                }
            }
        }
        Ok(from)
    }

    /// Forgets every producer and deletes every snapshot (the log starts over).
    pub(crate) fn clear_and_delete_snapshots(&mut self) {
        self.producers.clear();
        if let Ok(snaps) = Self::list_snapshots(&*self.storage, &self.dir) {
            for o in snaps {
                let _ = self.storage.remove_file(&snapshot_path(&self.dir, o));
            }
        }
    }

    /// Keeps the newest `keep` snapshots.
    pub(crate) fn prune_snapshots(&self, keep: usize) {
        if let Ok(snaps) = Self::list_snapshots(&*self.storage, &self.dir) {
            let n = snaps.len().saturating_sub(keep);
            for o in &snaps[..n] {
                let _ = self.storage.remove_file(&snapshot_path(&self.dir, *o));
            }
        }
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let slice = self
            .b
            .get(self.pos..self.pos + N)
            .ok_or_else(|| "truncated snapshot".to_string())?;
        let mut a = [0u8; N];
        a.copy_from_slice(slice);
        self.pos += N;
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::log::txn::EndTxnMarker;
    use crate::record::{encode_batch, set_base_offset, BatchSpec, Record};
    use bytes::Bytes;

    fn header(pid: i64, epoch: i16, seq: i32, base: i64, txn: bool, control: bool) -> BatchHeader {
        let spec = BatchSpec {
            transactional: txn,
            control,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: if control { -1 } else { seq },
            ..BatchSpec::default()
        };
        let rec = Record {
            offset: 0,
            timestamp: 10,
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: Vec::new(),
        };
        let mut b = encode_batch(&spec, &[rec]).unwrap();
        set_base_offset(&mut b, base);
        BatchHeader::parse(&b).unwrap()
    }

    fn end(commit: bool, coordinator_epoch: i32) -> Option<ControlRecord> {
        Some(ControlRecord::EndTxn(EndTxnMarker {
            commit,
            coordinator_epoch,
        }))
    }

    #[test]
    fn first_unstable_offset_follows_open_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let storage = durable_fs::OsStorage::shared();
        let mut m = ProducerStateManager::new(Arc::clone(&storage), dir.path());
        assert_eq!(m.first_unstable_offset(), None);
        m.update(&header(1, 0, 0, 0, false, false), None);
        assert_eq!(m.first_unstable_offset(), None, "idempotent only");
        m.update(&header(2, 0, 0, 1, true, false), None);
        m.update(&header(3, 0, 0, 2, true, false), None);
        m.update(&header(2, 0, 1, 3, true, false), None);
        assert_eq!(m.first_unstable_offset(), Some(1));
        // A plain batch from a producer with an open transaction is refused.
        let err = m.check(&header(3, 0, 1, 4, false, false)).unwrap_err();
        assert!(matches!(err, BrokerError::InvalidTxnState(_)));

        let done = m.update(&header(2, 0, 0, 4, true, true), end(false, 5));
        assert_eq!(
            done,
            Some(CompletedTxn {
                producer_id: 2,
                first_offset: 1,
                last_offset: 4,
                aborted: true
            })
        );
        assert_eq!(m.first_unstable_offset(), Some(2));
        // A second marker finds no open transaction.
        assert_eq!(
            m.update(&header(2, 0, 0, 5, true, true), end(true, 5)),
            None
        );
        assert!(m.check_marker(2, 0, 4).is_err(), "older coordinator epoch");
        assert!(m.check_marker(2, 0, 5).is_ok());

        // Snapshots keep the open transaction and the coordinator epoch.
        m.write_snapshot(6).unwrap();
        let mut back = ProducerStateManager::new(Arc::clone(&storage), dir.path());
        assert_eq!(back.load(6, 6).unwrap(), 6);
        assert_eq!(back.first_unstable_offset(), Some(2));
        assert_eq!(back.entry(2).unwrap().coordinator_epoch, 5);
        assert_eq!(back.entry(2), m.entry(2));
        assert_eq!(back.entry(3), m.entry(3));
        // A snapshot above `at_most` is skipped but kept.
        let mut older = ProducerStateManager::new(Arc::clone(&storage), dir.path());
        assert_eq!(older.load(6, 5).unwrap(), 0);
        assert!(snapshot_path(dir.path(), 6).exists());

        let done = m.update(&header(3, 1, 0, 7, true, true), end(true, 5));
        assert_eq!(done.map(|c| (c.first_offset, c.aborted)), Some((2, false)));
        assert_eq!(m.first_unstable_offset(), None);
        assert_eq!(m.entry(3).unwrap().epoch, 1, "a marker may bump the epoch");
        let err = m.check(&header(3, 0, 1, 8, true, false)).unwrap_err();
        assert!(matches!(err, BrokerError::InvalidProducerEpoch { .. }));
    }

    #[test]
    fn version_1_snapshots_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let storage = durable_fs::OsStorage::shared();
        // One producer: id 9, epoch 2, open transaction at 4, last timestamp 10, no batches.
        let mut body = Vec::new();
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&9i64.to_be_bytes());
        body.extend_from_slice(&2i16.to_be_bytes());
        body.extend_from_slice(&4i64.to_be_bytes());
        body.extend_from_slice(&10i64.to_be_bytes());
        body.push(0);
        let mut file = Vec::new();
        file.extend_from_slice(&1i16.to_be_bytes());
        file.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        file.extend_from_slice(&body);
        std::fs::write(snapshot_path(dir.path(), 5), file).unwrap();
        let mut m = ProducerStateManager::new(storage, dir.path());
        assert_eq!(m.load(5, 5).unwrap(), 5);
        let e = m.entry(9).unwrap();
        assert_eq!(
            (e.epoch, e.coordinator_epoch, e.current_txn_first_offset),
            (2, -1, Some(4))
        );
    }
}

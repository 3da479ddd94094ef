//! The Raft state machine: the [`ReplicatedState`] in memory, snapshots persisted through
//! [`durable_fs::Storage`].
//!
//! The snapshot file `raft-snapshot.bin` in the quorum directory is written atomically
//! ([`durable_fs::write_atomic`]): `"RQS1"`, `[u32 metadata length][metadata JSON]`,
//! `[u32 crc32c of the data][data = ReplicatedState::to_snapshot]` (big-endian). At start the
//! state is the snapshot's; the entries after it are applied again once the leader tells the
//! commit index (the commit index is not persisted).

use std::io::{self, Cursor};
use std::path::PathBuf;
use std::sync::Arc;

use durable_fs::Storage;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, Snapshot, StorageIOError};
use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::{error, info};

use super::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use super::{Applied, ReplicatedState};

const SNAPSHOT_FILE: &str = "raft-snapshot.bin";
const MAGIC: &[u8; 4] = b"RQS1";

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

#[derive(Debug, Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Arc<Vec<u8>>,
}

impl StoredSnapshot {
    fn to_openraft(&self) -> Snapshot<TypeConfig> {
        Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(self.data.as_ref().clone())),
        }
    }
}

fn encode_snapshot_file(meta: &SnapshotMeta, data: &[u8]) -> io::Result<Vec<u8>> {
    let meta_json = serde_json::to_vec(meta).map_err(invalid)?;
    let meta_len = u32::try_from(meta_json.len()).map_err(invalid)?;
    let mut out = Vec::with_capacity(16 + meta_json.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&meta_len.to_be_bytes());
    out.extend_from_slice(&meta_json);
    out.extend_from_slice(&crc32c::crc32c(data).to_be_bytes());
    out.extend_from_slice(data);
    Ok(out)
}

fn decode_snapshot_file(bytes: &[u8]) -> io::Result<(SnapshotMeta, Vec<u8>)> {
    let bad = || invalid("truncated or malformed Raft snapshot file");
    if bytes.get(..4) != Some(MAGIC.as_slice()) {
        return Err(bad());
    }
    let len_bytes = bytes.get(4..8).ok_or_else(bad)?;
    let meta_len =
        u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
    let meta_end = 8usize.checked_add(meta_len).ok_or_else(bad)?;
    let meta: SnapshotMeta =
        serde_json::from_slice(bytes.get(8..meta_end).ok_or_else(bad)?).map_err(invalid)?;
    let crc_bytes = bytes.get(meta_end..meta_end + 4).ok_or_else(bad)?;
    let crc = u32::from_be_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let data = bytes.get(meta_end + 4..).ok_or_else(bad)?;
    if crc32c::crc32c(data) != crc {
        return Err(invalid("Raft snapshot data fails its checksum"));
    }
    Ok((meta, data.to_vec()))
}

#[derive(Debug)]
struct SmInner<S> {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    state: Arc<S>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshot: Option<StoredSnapshot>,
    snapshot_seq: u64,
}

impl<S: ReplicatedState> SmInner<S> {
    fn publish(&self, tx: &watch::Sender<Applied<S>>) {
        tx.send_replace(Applied {
            log_index: self.last_applied.map(|l| l.index),
            state: Arc::clone(&self.state),
        });
    }

    fn write_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()> {
        let bytes = encode_snapshot_file(meta, data)?;
        durable_fs::write_atomic(&*self.storage, &self.dir.join(SNAPSHOT_FILE), &bytes)
    }
}

/// The state machine store; clones share the same state.
#[derive(Debug)]
pub(crate) struct StateMachineStore<S> {
    inner: Arc<Mutex<SmInner<S>>>,
    applied_tx: Arc<watch::Sender<Applied<S>>>,
}

impl<S> Clone for StateMachineStore<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            applied_tx: Arc::clone(&self.applied_tx),
        }
    }
}

impl<S: ReplicatedState> StateMachineStore<S> {
    /// Opens the state machine in `dir` (which must exist), restoring the last snapshot.
    pub(crate) fn open(storage: Arc<dyn Storage>, dir: PathBuf) -> io::Result<Self> {
        let path = dir.join(SNAPSHOT_FILE);
        let mut inner = SmInner {
            storage: Arc::clone(&storage),
            dir,
            state: Arc::new(S::default()),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
            snapshot_seq: 0,
        };
        if storage.exists(&path) {
            let bytes = storage.read(&path)?;
            let (meta, data) = decode_snapshot_file(&bytes)?;
            let state = S::from_snapshot(&data).map_err(invalid)?;
            info!(last_log_id = ?meta.last_log_id, "restored the Raft state from its snapshot");
            inner.state = Arc::new(state);
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership.clone();
            inner.snapshot = Some(StoredSnapshot {
                meta,
                data: Arc::new(data),
            });
        }
        let (tx, _) = watch::channel(Applied {
            log_index: inner.last_applied.map(|l| l.index),
            state: Arc::clone(&inner.state),
        });
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
            applied_tx: Arc::new(tx),
        })
    }

    /// A receiver of every applied state.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Applied<S>> {
        self.applied_tx.subscribe()
    }
}

/// Builds snapshots from a view of the state machine.
#[derive(Debug)]
pub(crate) struct SnapshotBuilder<S> {
    store: StateMachineStore<S>,
}

impl<S: ReplicatedState> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (state, last_applied, membership, seq) = {
            let mut inner = self.store.inner.lock();
            inner.snapshot_seq += 1;
            (
                Arc::clone(&inner.state),
                inner.last_applied,
                inner.membership.clone(),
                inner.snapshot_seq,
            )
        };
        let data = state
            .to_snapshot()
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta,
            data: Arc::new(data),
        };
        let mut inner = self.store.inner.lock();
        let newer_exists = inner
            .snapshot
            .as_ref()
            .is_some_and(|s| s.meta.last_log_id > stored.meta.last_log_id);
        if !newer_exists {
            inner
                .write_snapshot(&stored.meta, &stored.data)
                .map_err(|e| StorageIOError::write_snapshot(Some(stored.meta.signature()), &e))?;
            info!(last_log_id = ?stored.meta.last_log_id, bytes = stored.data.len(), "wrote a Raft snapshot");
            inner.snapshot = Some(stored.clone());
        }
        Ok(stored.to_openraft())
    }
}

impl<S: ReplicatedState> RaftStateMachine<TypeConfig> for StateMachineStore<S> {
    type SnapshotBuilder = SnapshotBuilder<S>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let inner = self.inner.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.inner.lock();
        let mut results = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(data) => match serde_json::from_value::<S::Command>(data.0) {
                    Ok(command) => {
                        Arc::make_mut(&mut inner.state).apply(entry.log_id.index, &command)
                    }
                    // Every replica skips the same entry the same way, so they stay identical.
                    Err(e) => {
                        error!(index = entry.log_id.index, error = %e, "skipping a Raft entry whose command does not decode")
                    }
                },
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), m);
                }
            }
            results.push(());
        }
        inner.publish(&self.applied_tx);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let state = S::from_snapshot(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let mut inner = self.inner.lock();
        inner
            .write_snapshot(meta, &data)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        info!(last_log_id = ?meta.last_log_id, "installed a Raft snapshot from the leader");
        inner.state = Arc::new(state);
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.snapshot = Some(StoredSnapshot {
            meta: meta.clone(),
            data: Arc::new(data),
        });
        inner.publish(&self.applied_tx);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self
            .inner
            .lock()
            .snapshot
            .as_ref()
            .map(StoredSnapshot::to_openraft))
    }
}

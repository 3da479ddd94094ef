//! `.checkpoint` files (Kafka Streams' `OffsetCheckpoint` text format) and task state
//! directories with unclean-shutdown detection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable_fs::{OpenMode, OsStorage, Storage};

use crate::error::{Result, StoreError};
use crate::restore::TopicPartition;
use crate::store::StateStore;

/// File name of a task's checkpoint, as in Kafka Streams.
pub const CHECKPOINT_FILE_NAME: &str = ".checkpoint";
/// File name of the marker present while a task's stores are open (removed by a clean
/// close): finding it on start means the previous run stopped uncleanly.
pub const DIRTY_MARKER_FILE_NAME: &str = ".running";
/// Version written on the first line of a checkpoint file.
const CHECKPOINT_VERSION: i32 = 0;

/// A checkpoint file mapping changelog partitions to the offset of the last changelog
/// record the local stores reflect. Text format, as Kafka Streams writes it:
///
/// ```text
/// 0
/// <number of entries>
/// <topic> <partition> <offset>
/// ...
/// ```
#[derive(Debug, Clone)]
pub struct OffsetCheckpoint {
    storage: Arc<dyn Storage>,
    path: PathBuf,
}

impl PartialEq for OffsetCheckpoint {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl Eq for OffsetCheckpoint {}

fn fsync_dir(storage: &dyn Storage, dir: &Path) -> Result<()> {
    storage.sync_dir(dir).map_err(|e| StoreError::io(dir, e))
}

impl OffsetCheckpoint {
    /// The checkpoint at `path` on the real file system.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_storage(OsStorage::shared(), path)
    }

    /// The checkpoint at `path` on `storage` (the storage seam of `durable-fs`; tests use its
    /// power-cut simulator).
    pub fn with_storage(storage: Arc<dyn Storage>, path: impl Into<PathBuf>) -> Self {
        OffsetCheckpoint {
            storage,
            path: path.into(),
        }
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file exists.
    pub fn exists(&self) -> bool {
        self.storage.exists(&self.path)
    }

    /// Reads the offsets; a missing file reads as empty.
    pub fn read(&self) -> Result<BTreeMap<TopicPartition, i64>> {
        let text = match self.storage.read(&self.path) {
            Ok(bytes) => String::from_utf8(bytes)
                .map_err(|_| self.corrupt(1, "the file is not UTF-8 text"))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(StoreError::io(&self.path, e)),
        };
        self.parse(&text)
    }

    fn corrupt(&self, line: usize, detail: impl Into<String>) -> StoreError {
        StoreError::CorruptCheckpoint {
            path: self.path.clone(),
            line,
            detail: detail.into(),
        }
    }

    fn parse(&self, text: &str) -> Result<BTreeMap<TopicPartition, i64>> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
        let (n, version) = lines.next().ok_or_else(|| self.corrupt(1, "empty file"))?;
        let version: i32 = version
            .parse()
            .map_err(|_| self.corrupt(n, format!("bad version `{version}`")))?;
        if version != CHECKPOINT_VERSION {
            return Err(self.corrupt(n, format!("unsupported version {version}")));
        }
        let (n, count) = lines
            .next()
            .ok_or_else(|| self.corrupt(2, "missing entry count"))?;
        let count: usize = count
            .parse()
            .map_err(|_| self.corrupt(n, format!("bad entry count `{count}`")))?;
        let mut out = BTreeMap::new();
        for _ in 0..count {
            let (n, line) = lines
                .next()
                .ok_or_else(|| self.corrupt(out.len() + 3, "fewer entries than announced"))?;
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [topic, partition, offset] = fields.as_slice() else {
                return Err(self.corrupt(
                    n,
                    format!("expected `topic partition offset`, got `{line}`"),
                ));
            };
            let partition: i32 = partition
                .parse()
                .map_err(|_| self.corrupt(n, format!("bad partition `{partition}`")))?;
            let offset: i64 = offset
                .parse()
                .map_err(|_| self.corrupt(n, format!("bad offset `{offset}`")))?;
            out.insert(TopicPartition::new(*topic, partition), offset);
        }
        if let Some((n, extra)) = lines.find(|(_, l)| !l.is_empty()) {
            return Err(self.corrupt(n, format!("more entries than announced: `{extra}`")));
        }
        Ok(out)
    }

    /// Writes the offsets atomically: to a temporary file, fsynced, renamed over the
    /// checkpoint, then the directory fsynced. A crash leaves the old or the new file,
    /// never a torn one.
    pub fn write(&self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
        let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", offsets.len());
        for (tp, offset) in offsets {
            if tp.topic.is_empty() || tp.topic.chars().any(char::is_whitespace) {
                return Err(StoreError::InvalidArgument(format!(
                    "topic name `{}` cannot be written to a checkpoint",
                    tp.topic
                )));
            }
            text.push_str(&format!("{} {} {offset}\n", tp.topic, tp.partition));
        }
        let dir = self
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        durable_fs::create_dir_all_durable(&*self.storage, &dir)
            .map_err(|e| StoreError::io(&dir, e))?;
        durable_fs::write_atomic(&*self.storage, &self.path, text.as_bytes())
            .map_err(|e| StoreError::io(&self.path, e))
    }

    /// Deletes the file (a missing file is not an error). Under exactly-once the runtime
    /// deletes the checkpoint once processing starts, so a crash leaves none.
    pub fn delete(&self) -> Result<()> {
        match self.storage.remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(&self.path, e)),
        }
    }
}

/// How a task's state directory was left by the previous run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviousShutdown {
    /// Nothing there: first run of this task on this machine.
    Fresh,
    /// Closed cleanly: stores were flushed and the checkpoint written.
    Clean,
    /// The marker of a run in progress was still there, or stores exist without a
    /// checkpoint: the stores may hold writes beyond (or lack writes before) any
    /// checkpoint. Under exactly-once the runtime wipes them and restores.
    Unclean,
}

/// What [`TaskDirectory::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStartState {
    /// How the previous run ended.
    pub previous_shutdown: PreviousShutdown,
    /// The checkpointed offsets (empty without a checkpoint).
    pub checkpoint: BTreeMap<TopicPartition, i64>,
}

fn check_name(kind: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\\')
        || name.contains('\0')
    {
        return Err(StoreError::InvalidArgument(format!(
            "{kind} `{name}` cannot be used as a directory name"
        )));
    }
    Ok(())
}

/// The state directory of one task: `<state.dir>/<application.id>/<task id>/`, holding
/// `rocksdb/<store>` directories and the task's `.checkpoint`.
///
/// The checkpoint and the in-progress marker go through the storage seam (`durable-fs`); the
/// RocksDB stores under `rocksdb/` are RocksDB's own files.
#[derive(Debug, Clone)]
pub struct TaskDirectory {
    storage: Arc<dyn Storage>,
    path: PathBuf,
}

impl PartialEq for TaskDirectory {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl Eq for TaskDirectory {}

impl TaskDirectory {
    /// The directory of task `task_id` (e.g. `0_1`) of `application_id` under `state_dir`.
    /// Nothing is created until [`TaskDirectory::open`].
    pub fn new(state_dir: impl AsRef<Path>, application_id: &str, task_id: &str) -> Result<Self> {
        Self::with_storage(OsStorage::shared(), state_dir, application_id, task_id)
    }

    /// [`TaskDirectory::new`] on `storage` (the storage seam of `durable-fs`).
    pub fn with_storage(
        storage: Arc<dyn Storage>,
        state_dir: impl AsRef<Path>,
        application_id: &str,
        task_id: &str,
    ) -> Result<Self> {
        check_name("application id", application_id)?;
        check_name("task id", task_id)?;
        Ok(TaskDirectory {
            storage,
            path: state_dir.as_ref().join(application_id).join(task_id),
        })
    }

    /// The task directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Directory of a persistent store: `<task dir>/rocksdb/<store>`.
    pub fn store_path(&self, store: &str) -> Result<PathBuf> {
        check_name("store name", store)?;
        Ok(self.path.join("rocksdb").join(store))
    }

    /// The task's checkpoint file.
    pub fn checkpoint(&self) -> OffsetCheckpoint {
        OffsetCheckpoint::with_storage(
            Arc::clone(&self.storage),
            self.path.join(CHECKPOINT_FILE_NAME),
        )
    }

    fn marker(&self) -> PathBuf {
        self.path.join(DIRTY_MARKER_FILE_NAME)
    }

    fn has_stores(&self) -> Result<bool> {
        let dir = self.path.join("rocksdb");
        match self.storage.read_dir(&dir) {
            Ok(entries) => Ok(!entries.is_empty()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io(dir, e)),
        }
    }

    /// Prepares the directory for a run: reports how the previous run ended and what it
    /// checkpointed, then writes the in-progress marker (removed by
    /// [`TaskDirectory::close_clean`]).
    pub fn open(&self) -> Result<TaskStartState> {
        let storage = &*self.storage;
        durable_fs::create_dir_all_durable(storage, &self.path)
            .map_err(|e| StoreError::io(&self.path, e))?;
        let checkpoint = self.checkpoint();
        let offsets = checkpoint.read()?;
        let previous_shutdown = if storage.exists(&self.marker()) {
            PreviousShutdown::Unclean
        } else if checkpoint.exists() {
            PreviousShutdown::Clean
        } else if self.has_stores()? {
            PreviousShutdown::Unclean
        } else {
            PreviousShutdown::Fresh
        };
        let marker = self.marker();
        storage
            .open(&marker, OpenMode::Truncate)
            .and_then(|f| f.sync_all())
            .map_err(|e| StoreError::io(&marker, e))?;
        fsync_dir(storage, &self.path)?;
        if previous_shutdown == PreviousShutdown::Unclean {
            tracing::warn!(task_dir = %self.path.display(), "task state was not closed cleanly");
        }
        Ok(TaskStartState {
            previous_shutdown,
            checkpoint: offsets,
        })
    }

    /// Flushes every store, then writes the checkpoint: the order that keeps a checkpoint
    /// from claiming more than the stores hold (required when RocksDB runs without WAL).
    /// `offsets` are the offsets of the last changelog records written (and flushed to the
    /// changelog) for each store's changelog partition.
    pub fn checkpoint_stores(
        &self,
        stores: &mut [&mut dyn StateStore],
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<()> {
        for store in stores.iter_mut() {
            store.flush()?;
        }
        self.checkpoint().write(offsets)
    }

    /// Closes the task's state cleanly: flushes, checkpoints, closes every store, then
    /// removes the in-progress marker.
    pub fn close_clean(
        &self,
        stores: &mut [&mut dyn StateStore],
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<()> {
        self.checkpoint_stores(stores, offsets)?;
        for store in stores.iter_mut() {
            store.close()?;
        }
        let marker = self.marker();
        match self.storage.remove_file(&marker) {
            Ok(()) => fsync_dir(&*self.storage, &self.path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(marker, e)),
        }
    }

    /// Deletes every persistent store of the task and its checkpoint, so that the stores
    /// are rebuilt from their changelogs. The stores must be closed.
    pub fn wipe_stores(&self) -> Result<()> {
        let dir = self.path.join("rocksdb");
        match self.storage.remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(dir, e)),
        }
        self.checkpoint().delete()
    }
}

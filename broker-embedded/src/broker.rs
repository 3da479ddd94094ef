//! The in-process broker handle: topics, partition logs, committed offsets, producer ids,
//! background flushing and cleaning, and clean shutdown.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::config::{validate_topic_name, BrokerConfig, LogConfig};
use crate::error::{BrokerError, Result};
use crate::fsutil::{sync_dir, write_atomic};
use crate::log::{
    partition_dir_name, AppendInfo, AppendOrigin, CleanerStats, FetchData, IsolationLevel,
    LogOffsets, PartitionLog,
};
use crate::offsets::{self, OffsetAndMetadata, TopicPartition, OFFSETS_TOPIC};
use crate::partitioner::{java_abs, java_string_hash};
use crate::record::{decode_records, encode_batch, BatchIter, BatchSpec, Header, Record};

const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
const RECOVERY_CHECKPOINT_FILE: &str = "recovery-point-offset-checkpoint";
const LOCK_FILE: &str = ".lock";
const META_DIR: &str = "meta";
const TOPICS_FILE: &str = "topics.json";
const PRODUCER_ID_FILE: &str = "producer-id-block";
const PRODUCER_ID_BLOCK: i64 = 1000;

/// Milliseconds since the Unix epoch, from the system clock.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Topic name (Kafka's naming rules).
    pub name: String,
    /// Number of partitions (at least 1).
    pub partitions: u32,
    /// Replication factor; -1 takes the broker default (1 on a single node).
    pub replication_factor: i16,
    /// Topic config overrides.
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic with `partitions` partitions, the default replication factor and no overrides.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: BTreeMap::new(),
        }
    }

    /// Adds a config override.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.insert(key.into(), value.into());
        self
    }

    /// Sets the replication factor.
    pub fn replication_factor(mut self, rf: i16) -> Self {
        self.replication_factor = rf;
        self
    }
}

/// Where a described config value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    TopicOverride,
    /// The broker default.
    Default,
}

/// One config of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Key.
    pub name: String,
    /// Effective value.
    pub value: String,
    /// Override or default.
    pub source: ConfigSource,
}

/// A partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// Partition number.
    pub partition: i32,
    /// Leader node id.
    pub leader: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
    /// Offsets and size.
    pub offsets: LogOffsets,
}

/// Everything known about a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Name.
    pub name: String,
    /// Topic id (stable across restarts, new if the topic is re-created).
    pub topic_id: Uuid,
    /// Internal topics start with `__`.
    pub internal: bool,
    /// Replication factor.
    pub replication_factor: i16,
    /// Partitions.
    pub partitions: Vec<PartitionDescription>,
    /// All topic configs with their effective values.
    pub configs: Vec<ConfigEntry>,
}

/// An incremental config change (Kafka's IncrementalAlterConfigs SET and DELETE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    /// Set an override.
    Set(String, String),
    /// Remove an override (back to the default).
    Delete(String),
}

/// A record to produce through the in-process handle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProduceRecord {
    /// Key (`None` = null key).
    pub key: Option<Bytes>,
    /// Value (`None` = tombstone).
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
    /// Timestamp (CreateTime); `None` uses the current time.
    pub timestamp: Option<i64>,
}

impl ProduceRecord {
    /// A record with a key and a value.
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Self {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// A record without a key.
    pub fn value_only(value: impl Into<Bytes>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// Sets the timestamp.
    pub fn with_timestamp(mut self, ts: i64) -> Self {
        self.timestamp = Some(ts);
        self
    }
}

/// Which offset [`Broker::list_offsets`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark (the offset the next record gets).
    Latest,
    /// The first record with a timestamp at or after this one.
    Timestamp(i64),
}

/// An offset found by [`Broker::list_offsets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset.
    pub offset: i64,
    /// The record's timestamp for timestamp lookups, else -1.
    pub timestamp: i64,
}

/// Options of a fetch (Kafka's Fetch request fields for one partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    /// Soft byte limit (the first batch is returned even if larger).
    pub max_bytes: usize,
    /// Return as soon as this many bytes are available.
    pub min_bytes: usize,
    /// How long to wait for `min_bytes`.
    pub max_wait: Duration,
    /// Read committed or uncommitted data.
    pub isolation: IsolationLevel,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            min_bytes: 1,
            max_wait: Duration::from_millis(500),
            isolation: IsolationLevel::ReadUncommitted,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TopicRecord {
    name: String,
    id: Uuid,
    partitions: u32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MetadataFile {
    version: u32,
    topics: Vec<TopicRecord>,
}

struct Topic {
    record: RwLock<TopicRecord>,
    logs: RwLock<Vec<Arc<PartitionLog>>>,
}

struct ProducerIdAllocator {
    path: PathBuf,
    next: i64,
    block_end: i64,
}

struct Stop {
    stopped: Mutex<bool>,
    cv: Condvar,
}

impl Stop {
    /// Sleeps up to `d`; returns true if shutdown was requested.
    fn wait(&self, d: Duration) -> bool {
        let mut stopped = self.stopped.lock();
        if !*stopped {
            self.cv.wait_for(&mut stopped, d);
        }
        *stopped
    }
}

struct Inner {
    config: BrokerConfig,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    meta_lock: Mutex<()>,
    producer_ids: Mutex<ProducerIdAllocator>,
    committed: RwLock<HashMap<String, BTreeMap<TopicPartition, OffsetAndMetadata>>>,
    offsets_lock: Mutex<()>,
    closed: AtomicBool,
    cluster_id: String,
    /// Woken after every append to any partition (for fetches spanning partitions).
    any_append: tokio::sync::Notify,
    stop: Arc<Stop>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    _lock_file: File,
}

/// A handle on an embedded broker: cheap to clone, `Send + Sync`.
///
/// # Contract
/// - **Ordering**: within a partition, records get strictly increasing offsets in the order
///   appends return; an append is all-or-nothing for the batches it carries.
/// - **Durability**: an append returns after the data is written to the OS; whether it was
///   fsynced first depends on the topic's `flush.messages`/`flush.ms` (see
///   [`crate::FlushPolicy`]). Either way it survives a crash of this process.
/// - **Visibility**: a record is readable by [`Broker::fetch`] as soon as its append returns.
/// - **Errors**: every failure is a [`BrokerError`] with a Kafka error code; bad input never
///   panics and never corrupts the log.
/// - **Shutdown**: [`Broker::shutdown`] (or dropping the last handle) flushes everything and
///   marks the data directory clean so the next open needs no recovery scan.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
    /// Shared by every user-held clone: when the last one goes, the broker shuts down on the
    /// dropping thread (background threads hold handles without it).
    _guard: Option<Arc<ShutdownOnDrop>>,
}

struct ShutdownOnDrop(Arc<Inner>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown() {
            error!(error = %e, "broker shutdown on drop failed; the next open will run recovery");
        }
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("data_dir", &self.inner.config.data_dir)
            .finish()
    }
}

fn read_recovery_points(path: &Path) -> HashMap<(String, i32), i64> {
    let mut out = HashMap::new();
    let Ok(text) = fs::read_to_string(path) else {
        return out;
    };
    for line in text.lines().skip(2) {
        let mut parts = line.split_whitespace();
        if let (Some(t), Some(p), Some(o)) = (parts.next(), parts.next(), parts.next()) {
            if let (Ok(p), Ok(o)) = (p.parse(), o.parse()) {
                out.insert((t.to_string(), p), o);
            }
        }
    }
    out
}

impl Broker {
    /// Opens (or creates) a broker in `config.data_dir`, recovering every partition log, and
    /// starts the background flusher and cleaner threads.
    pub fn open(config: BrokerConfig) -> Result<Self> {
        let dir = config.data_dir.clone();
        fs::create_dir_all(dir.join(META_DIR)).map_err(|e| BrokerError::io(&dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| BrokerError::io(&lock_path, e))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(BrokerError::DataDirLocked(dir)),
            Err(fs::TryLockError::Error(e)) => return Err(BrokerError::io(&lock_path, e)),
        }
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = marker.exists();
        if !clean {
            info!(data_dir = %dir.display(), "no clean-shutdown marker: validating logs from their recovery points");
        }
        let recovery_points = read_recovery_points(&dir.join(RECOVERY_CHECKPOINT_FILE));
        let meta_path = dir.join(META_DIR).join(TOPICS_FILE);
        let meta: MetadataFile = match fs::read(&meta_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| BrokerError::Metadata {
                path: meta_path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MetadataFile::default(),
            Err(e) => return Err(BrokerError::io(&meta_path, e)),
        };
        // Finish interrupted topic deletions.
        for entry in fs::read_dir(&dir)
            .map_err(|e| BrokerError::io(&dir, e))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().ends_with("-delete") {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let mut topics = BTreeMap::new();
        let started = Instant::now();
        for rec in meta.topics {
            let log_config = Arc::new(config.log_defaults.resolve(&rec.configs)?);
            let mut logs = Vec::with_capacity(rec.partitions as usize);
            for p in 0..rec.partitions as i32 {
                let pdir = dir.join(partition_dir_name(&rec.name, p));
                let rp = recovery_points
                    .get(&(rec.name.clone(), p))
                    .copied()
                    .unwrap_or(0);
                let log =
                    PartitionLog::open(pdir, &rec.name, p, Arc::clone(&log_config), clean, rp)?;
                logs.push(Arc::new(log));
            }
            topics.insert(
                rec.name.clone(),
                Arc::new(Topic {
                    record: RwLock::new(rec),
                    logs: RwLock::new(logs),
                }),
            );
        }
        if clean {
            fs::remove_file(&marker).map_err(|e| BrokerError::io(&marker, e))?;
            sync_dir(&dir)?;
        }
        info!(data_dir = %dir.display(), topics = topics.len(), clean, elapsed_ms = started.elapsed().as_millis() as u64, "broker log opened");

        let pid_path = dir.join(META_DIR).join(PRODUCER_ID_FILE);
        let next_pid = match fs::read_to_string(&pid_path) {
            Ok(s) => s.trim().parse::<i64>().map_err(|e| BrokerError::Metadata {
                path: pid_path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(BrokerError::io(&pid_path, e)),
        };

        let cluster_path = dir.join(META_DIR).join("cluster-id");
        let cluster_id = match fs::read_to_string(&cluster_path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            Ok(_) | Err(_) => {
                use base64::Engine;
                let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(Uuid::new_v4().as_bytes());
                write_atomic(&cluster_path, id.as_bytes())?;
                id
            }
        };

        let inner = Arc::new(Inner {
            config,
            cluster_id,
            any_append: tokio::sync::Notify::new(),
            topics: RwLock::new(topics),
            meta_lock: Mutex::new(()),
            producer_ids: Mutex::new(ProducerIdAllocator {
                path: pid_path,
                next: next_pid,
                block_end: next_pid,
            }),
            committed: RwLock::new(HashMap::new()),
            offsets_lock: Mutex::new(()),
            closed: AtomicBool::new(false),
            stop: Arc::new(Stop {
                stopped: Mutex::new(false),
                cv: Condvar::new(),
            }),
            threads: Mutex::new(Vec::new()),
            _lock_file: lock_file,
        });
        let guard = Some(Arc::new(ShutdownOnDrop(Arc::clone(&inner))));
        let broker = Self {
            inner,
            _guard: guard,
        };
        broker.load_committed_offsets()?;
        broker.start_background_threads()?;
        Ok(broker)
    }

    fn start_background_threads(&self) -> Result<()> {
        let weak = Arc::downgrade(&self.inner);
        let stop = Arc::clone(&self.inner.stop);
        let ckpt_every = self.inner.config.recovery_checkpoint_interval;
        let flusher = thread::Builder::new()
            .name("broker-flusher".into())
            .spawn(move || flusher_loop(weak, stop, ckpt_every))
            .map_err(|e| BrokerError::io("<thread>", e))?;
        let mut threads = vec![flusher];
        if let Some(every) = self.inner.config.cleaner_interval {
            let weak = Arc::downgrade(&self.inner);
            let stop = Arc::clone(&self.inner.stop);
            threads.push(
                thread::Builder::new()
                    .name("broker-cleaner".into())
                    .spawn(move || cleaner_loop(weak, stop, every))
                    .map_err(|e| BrokerError::io("<thread>", e))?,
            );
        }
        *self.inner.threads.lock() = threads;
        Ok(())
    }

    /// The broker's configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// The cluster id (persisted in the data directory, Kafka's base64url UUID format).
    pub fn cluster_id(&self) -> &str {
        &self.inner.cluster_id
    }

    /// A future that completes at the next append to any partition. Create it *before*
    /// checking for data, then await it, so that no append is missed.
    pub fn appended_anywhere(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.any_append.notified()
    }

    /// The topic id of a topic.
    pub fn topic_id(&self, name: &str) -> Result<Uuid> {
        Ok(self.topic(name)?.record.read().id)
    }

    /// Whether the broker has been shut down.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(BrokerError::Closed)
        } else {
            Ok(())
        }
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.check_open()?;
        self.inner.topics.read().get(name).cloned().ok_or_else(|| {
            BrokerError::UnknownTopicOrPartition {
                topic: name.to_string(),
                partition: -1,
            }
        })
    }

    fn log(&self, topic: &str, partition: i32) -> Result<Arc<PartitionLog>> {
        let t = self.topic(topic)?;
        let logs = t.logs.read();
        usize::try_from(partition)
            .ok()
            .and_then(|p| logs.get(p))
            .cloned()
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition {
                topic: topic.to_string(),
                partition,
            })
    }

    fn persist_metadata(&self) -> Result<()> {
        let topics = self.inner.topics.read();
        let file = MetadataFile {
            version: 1,
            topics: topics.values().map(|t| t.record.read().clone()).collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| BrokerError::Metadata {
            path: self.inner.config.data_dir.join(META_DIR),
            reason: e.to_string(),
        })?;
        write_atomic(
            &self.inner.config.data_dir.join(META_DIR).join(TOPICS_FILE),
            &bytes,
        )
    }

    fn write_partition_metadata(dir: &Path, id: Uuid) -> Result<()> {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes());
        write_atomic(
            &dir.join("partition.metadata"),
            format!("version: 0\ntopic_id: {encoded}\n").as_bytes(),
        )
    }

    /// Checks everything [`Broker::create_topic`] checks, without creating anything
    /// (CreateTopics with `validate_only`).
    pub fn validate_new_topic(&self, new: &NewTopic) -> Result<()> {
        self.check_open()?;
        validate_topic_name(&new.name).map_err(BrokerError::InvalidTopic)?;
        if new.partitions == 0 {
            return Err(BrokerError::InvalidPartitions(
                "a topic needs at least one partition".into(),
            ));
        }
        if new.partitions > 100_000 {
            return Err(BrokerError::InvalidPartitions(format!(
                "{} partitions is more than this broker supports (100000)",
                new.partitions
            )));
        }
        let rf = if new.replication_factor == -1 {
            1
        } else {
            new.replication_factor
        };
        if rf != 1 {
            return Err(BrokerError::InvalidReplicationFactor {
                requested: i32::from(new.replication_factor),
                available: 1,
            });
        }
        self.inner.config.log_defaults.resolve(&new.configs)?;
        let topics = self.inner.topics.read();
        if topics.contains_key(&new.name) {
            return Err(BrokerError::TopicAlreadyExists(new.name.clone()));
        }
        let norm = new.name.replace('.', "_");
        if let Some(other) = topics.keys().find(|t| t.replace('.', "_") == norm) {
            return Err(BrokerError::InvalidTopic(format!(
                "topic `{}` collides with existing topic `{other}` ('.' and '_' are interchangeable in metric names)",
                new.name
            )));
        }
        Ok(())
    }

    /// Creates a topic. Errors: illegal name, a name that exists (or collides with one after
    /// Kafka's `.`/`_` normalisation), zero partitions, a replication factor above the number
    /// of brokers, unknown or ill-typed configs.
    pub fn create_topic(&self, new: NewTopic) -> Result<Uuid> {
        self.validate_new_topic(&new)?;
        let rf = if new.replication_factor == -1 {
            1
        } else {
            new.replication_factor
        };
        let log_config = Arc::new(self.inner.config.log_defaults.resolve(&new.configs)?);
        let _guard = self.inner.meta_lock.lock();
        {
            let topics = self.inner.topics.read();
            if topics.contains_key(&new.name) {
                return Err(BrokerError::TopicAlreadyExists(new.name));
            }
            let norm = new.name.replace('.', "_");
            if let Some(other) = topics.keys().find(|t| t.replace('.', "_") == norm) {
                return Err(BrokerError::InvalidTopic(format!(
                    "topic `{}` collides with existing topic `{other}` ('.' and '_' are interchangeable in metric names)",
                    new.name
                )));
            }
        }
        let id = Uuid::new_v4();
        let mut logs = Vec::with_capacity(new.partitions as usize);
        for p in 0..new.partitions as i32 {
            let pdir = self
                .inner
                .config
                .data_dir
                .join(partition_dir_name(&new.name, p));
            if pdir.exists() {
                warn!(dir = %pdir.display(), "removing a stale directory of a topic that no longer exists");
                fs::remove_dir_all(&pdir).map_err(|e| BrokerError::io(&pdir, e))?;
            }
            let log =
                PartitionLog::open(pdir.clone(), &new.name, p, Arc::clone(&log_config), true, 0)?;
            Self::write_partition_metadata(&pdir, id)?;
            logs.push(Arc::new(log));
        }
        sync_dir(&self.inner.config.data_dir)?;
        let record = TopicRecord {
            name: new.name.clone(),
            id,
            partitions: new.partitions,
            replication_factor: rf,
            configs: new.configs,
        };
        self.inner.topics.write().insert(
            new.name.clone(),
            Arc::new(Topic {
                record: RwLock::new(record),
                logs: RwLock::new(logs),
            }),
        );
        self.persist_metadata()?;
        // A re-created topic must not inherit an old recovery point for its partitions.
        self.write_recovery_checkpoint()?;
        info!(topic = %new.name, partitions = new.partitions, %id, "created topic");
        Ok(id)
    }

    /// Deletes a topic and its data.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        self.check_open()?;
        let _guard = self.inner.meta_lock.lock();
        let topic = self.inner.topics.write().remove(name).ok_or_else(|| {
            BrokerError::UnknownTopicOrPartition {
                topic: name.to_string(),
                partition: -1,
            }
        })?;
        self.persist_metadata()?;
        let id = topic.record.read().id;
        for log in topic.logs.read().iter() {
            log.mark_deleted();
            let doomed = self.inner.config.data_dir.join(format!(
                "{}.{}-delete",
                partition_dir_name(name, log.partition()),
                id.simple()
            ));
            fs::rename(log.dir(), &doomed).map_err(|e| BrokerError::io(log.dir(), e))?;
            fs::remove_dir_all(&doomed).map_err(|e| BrokerError::io(&doomed, e))?;
        }
        self.write_recovery_checkpoint()?;
        info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Grows a topic to `total` partitions (Kafka's CreatePartitions; shrinking is an error).
    pub fn create_partitions(&self, name: &str, total: u32) -> Result<()> {
        let topic = self.topic(name)?;
        let _guard = self.inner.meta_lock.lock();
        let current = topic.record.read().partitions;
        if total > 100_000 {
            return Err(BrokerError::InvalidPartitions(format!(
                "{total} partitions is more than this broker supports (100000)"
            )));
        }
        if total <= current {
            return Err(BrokerError::InvalidPartitions(format!(
                "topic `{name}` has {current} partitions; the new count must be larger, not {total}"
            )));
        }
        let (id, configs) = {
            let r = topic.record.read();
            (r.id, r.configs.clone())
        };
        let log_config = Arc::new(self.inner.config.log_defaults.resolve(&configs)?);
        let mut new_logs = Vec::new();
        for p in current as i32..total as i32 {
            let pdir = self.inner.config.data_dir.join(partition_dir_name(name, p));
            if pdir.exists() {
                fs::remove_dir_all(&pdir).map_err(|e| BrokerError::io(&pdir, e))?;
            }
            let log = PartitionLog::open(pdir.clone(), name, p, Arc::clone(&log_config), true, 0)?;
            Self::write_partition_metadata(&pdir, id)?;
            new_logs.push(Arc::new(log));
        }
        topic.logs.write().extend(new_logs);
        topic.record.write().partitions = total;
        self.persist_metadata()
    }

    /// Topic names, sorted (internal topics included).
    pub fn list_topics(&self) -> Vec<String> {
        self.inner.topics.read().keys().cloned().collect()
    }

    /// Whether a topic exists.
    pub fn topic_exists(&self, name: &str) -> bool {
        self.inner.topics.read().contains_key(name)
    }

    /// Number of partitions of a topic.
    pub fn partition_count(&self, name: &str) -> Result<u32> {
        Ok(self.topic(name)?.record.read().partitions)
    }

    /// Describes a topic: id, partitions with offsets, and every config with its source.
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let topic = self.topic(name)?;
        let record = topic.record.read().clone();
        let resolved = self.inner.config.log_defaults.resolve(&record.configs)?;
        let node = self.inner.config.node_id;
        let partitions = topic
            .logs
            .read()
            .iter()
            .map(|l| PartitionDescription {
                partition: l.partition(),
                leader: node,
                replicas: vec![node],
                isr: vec![node],
                offsets: l.offsets(),
            })
            .collect();
        let configs = crate::config::TOPIC_CONFIG_KEYS
            .iter()
            .map(|k| ConfigEntry {
                name: (*k).to_string(),
                value: resolved.get(k).unwrap_or_default(),
                source: if record.configs.contains_key(*k) {
                    ConfigSource::TopicOverride
                } else {
                    ConfigSource::Default
                },
            })
            .collect();
        Ok(TopicDescription {
            name: record.name.clone(),
            topic_id: record.id,
            internal: record.name.starts_with("__"),
            replication_factor: record.replication_factor,
            partitions,
            configs,
        })
    }

    /// Applies incremental config changes to a topic (all validated before any is applied).
    pub fn alter_topic_configs(&self, name: &str, ops: &[AlterConfigOp]) -> Result<()> {
        let topic = self.topic(name)?;
        let _guard = self.inner.meta_lock.lock();
        let mut configs = topic.record.read().configs.clone();
        for op in ops {
            match op {
                AlterConfigOp::Set(k, v) => {
                    configs.insert(k.clone(), v.clone());
                }
                AlterConfigOp::Delete(k) => {
                    if !crate::config::TOPIC_CONFIG_KEYS.contains(&k.as_str()) {
                        return Err(crate::config::ConfigError::UnknownKey(k.clone()).into());
                    }
                    configs.remove(k);
                }
            }
        }
        self.replace_configs_locked(&topic, configs)
    }

    /// Replaces all of a topic's overrides (Kafka's legacy AlterConfigs semantics).
    pub fn set_topic_configs(&self, name: &str, configs: BTreeMap<String, String>) -> Result<()> {
        let topic = self.topic(name)?;
        let _guard = self.inner.meta_lock.lock();
        self.replace_configs_locked(&topic, configs)
    }

    fn replace_configs_locked(
        &self,
        topic: &Topic,
        configs: BTreeMap<String, String>,
    ) -> Result<()> {
        let resolved: LogConfig = self.inner.config.log_defaults.resolve(&configs)?;
        let resolved = Arc::new(resolved);
        topic.record.write().configs = configs;
        for log in topic.logs.read().iter() {
            log.set_config(Arc::clone(&resolved));
        }
        self.persist_metadata()
    }

    /// Appends raw record batches (as a Produce request carries them) to one partition. The
    /// buffer is rewritten in place with the assigned offsets.
    pub fn append_batches(
        &self,
        topic: &str,
        partition: i32,
        batches: &mut [u8],
        origin: AppendOrigin,
    ) -> Result<AppendInfo> {
        let info = self
            .log(topic, partition)?
            .append(batches, origin, now_ms())?;
        self.inner.any_append.notify_waiters();
        Ok(info)
    }

    /// Encodes `records` into one batch and appends it to `partition`.
    pub fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: &[ProduceRecord],
    ) -> Result<AppendInfo> {
        let log = self.log(topic, partition)?;
        let mut batch = encode_produce_batch(records)?;
        let info = log.append(&mut batch, AppendOrigin::Client, now_ms())?;
        self.inner.any_append.notify_waiters();
        Ok(info)
    }

    /// Reads whole batches from `offset` without waiting (one partition of a Fetch).
    pub fn read_partition(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        isolation: IsolationLevel,
    ) -> Result<FetchData> {
        self.read_partition_with(topic, partition, offset, max_bytes, isolation, true)
    }

    /// As [`Broker::read_partition`]; with `min_one_batch = false` a first batch larger than
    /// `max_bytes` is left out (KIP-74: only the first partition of a response may exceed).
    pub fn read_partition_with(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        isolation: IsolationLevel,
        min_one_batch: bool,
    ) -> Result<FetchData> {
        self.log(topic, partition)?
            .read_with(offset, max_bytes, isolation, min_one_batch)
    }

    /// Reads from `offset` waiting up to `options.max_wait` for `options.min_bytes`, like a
    /// Fetch request for one partition. Returns whole batches as stored.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        options: FetchOptions,
    ) -> Result<FetchData> {
        let log = self.log(topic, partition)?;
        let deadline = tokio::time::Instant::now() + options.max_wait;
        loop {
            let notified = log.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let data = log.read(offset, options.max_bytes, options.isolation)?;
            if data.records.len() >= options.min_bytes.max(1)
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(data);
            }
            self.check_open()?;
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return log.read(offset, options.max_bytes, options.isolation);
            }
        }
    }

    /// Like [`Broker::fetch`], decoded: the data records at or after `offset` (control
    /// records skipped), verifying every batch's CRC.
    pub async fn fetch_records(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        options: FetchOptions,
    ) -> Result<Vec<Record>> {
        let data = self.fetch(topic, partition, offset, options).await?;
        decode_fetched(topic, &data.records, offset)
    }

    /// Looks up an offset (Kafka's ListOffsets). Timestamp lookups return `None` when no
    /// record is that recent.
    pub fn list_offsets(
        &self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<Option<ListedOffset>> {
        let log = self.log(topic, partition)?;
        let offsets = log.offsets();
        Ok(match spec {
            OffsetSpec::Earliest => Some(ListedOffset {
                offset: offsets.log_start_offset,
                timestamp: -1,
            }),
            OffsetSpec::Latest => Some(ListedOffset {
                offset: offsets.high_watermark,
                timestamp: -1,
            }),
            OffsetSpec::Timestamp(ts) => log
                .offset_for_timestamp(ts)?
                .map(|(offset, timestamp)| ListedOffset { offset, timestamp }),
        })
    }

    /// What a partition remembers about an idempotent or transactional producer.
    pub fn producer_state(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
    ) -> Result<Option<crate::log::ProducerEntry>> {
        Ok(self.log(topic, partition)?.producer_entry(producer_id))
    }

    /// Offsets and size of one partition.
    pub fn partition_offsets(&self, topic: &str, partition: i32) -> Result<LogOffsets> {
        Ok(self.log(topic, partition)?.offsets())
    }

    fn offsets_partition_for(&self, group: &str) -> i32 {
        let n = self.inner.config.offsets_topic_num_partitions.max(1) as i32;
        java_abs(java_string_hash(group)) % n
    }

    fn ensure_offsets_topic(&self) -> Result<()> {
        if self.topic_exists(OFFSETS_TOPIC) {
            return Ok(());
        }
        let new = NewTopic::new(
            OFFSETS_TOPIC,
            self.inner.config.offsets_topic_num_partitions.max(1),
        )
        .config("cleanup.policy", "compact")
        .config(
            "segment.bytes",
            self.inner.config.offsets_topic_segment_bytes.to_string(),
        );
        match self.create_topic(new) {
            Ok(_) | Err(BrokerError::TopicAlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Durably commits offsets for a consumer group (one atomic batch in the group's
    /// `__consumer_offsets` partition), then updates the cache.
    pub fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<()> {
        self.check_open()?;
        if offsets.is_empty() {
            return Ok(());
        }
        self.ensure_offsets_topic()?;
        let mut records = Vec::with_capacity(offsets.len());
        for (tp, om) in offsets {
            let key = offsets::encode_key(group, tp).ok_or_else(|| {
                BrokerError::InvalidRecord("group id or topic name longer than 32767 bytes".into())
            })?;
            let value = offsets::encode_value(om).ok_or_else(|| {
                BrokerError::InvalidRecord("offset metadata longer than 32767 bytes".into())
            })?;
            records.push(ProduceRecord {
                key: Some(key),
                value: Some(value),
                headers: Vec::new(),
                timestamp: Some(om.commit_timestamp),
            });
        }
        let partition = self.offsets_partition_for(group);
        let _guard = self.inner.offsets_lock.lock();
        let log = self.log(OFFSETS_TOPIC, partition)?;
        let mut batch = encode_produce_batch(&records)?;
        log.append(&mut batch, AppendOrigin::Internal, now_ms())?;
        let mut committed = self.inner.committed.write();
        let entry = committed.entry(group.to_string()).or_default();
        for (tp, om) in offsets {
            entry.insert(tp.clone(), om.clone());
        }
        Ok(())
    }

    /// The committed offset of one partition for a group.
    pub fn committed_offset(&self, group: &str, tp: &TopicPartition) -> Option<OffsetAndMetadata> {
        self.inner
            .committed
            .read()
            .get(group)
            .and_then(|m| m.get(tp))
            .cloned()
    }

    /// Every committed offset of a group.
    pub fn committed_offsets(&self, group: &str) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        self.inner
            .committed
            .read()
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// Groups that have committed offsets.
    pub fn groups_with_offsets(&self) -> Vec<String> {
        let mut g: Vec<_> = self.inner.committed.read().keys().cloned().collect();
        g.sort();
        g
    }

    /// Deletes all of a group's committed offsets (tombstones in `__consumer_offsets`).
    pub fn delete_group_offsets(&self, group: &str) -> Result<usize> {
        let tps: Vec<TopicPartition> = self.committed_offsets(group).into_keys().collect();
        self.delete_offsets(group, &tps)
    }

    /// Deletes a group's committed offsets of the given partitions (one batch of tombstones
    /// in `__consumer_offsets`; Kafka's OffsetDelete). Partitions without a committed offset
    /// are ignored. Returns how many offsets were deleted.
    pub fn delete_offsets(&self, group: &str, partitions: &[TopicPartition]) -> Result<usize> {
        self.check_open()?;
        let committed = self.committed_offsets(group);
        let tps: Vec<&TopicPartition> = partitions
            .iter()
            .filter(|tp| committed.contains_key(*tp))
            .collect();
        if tps.is_empty() {
            return Ok(0);
        }
        let mut records = Vec::with_capacity(tps.len());
        for tp in &tps {
            if let Some(key) = offsets::encode_key(group, tp) {
                records.push(ProduceRecord {
                    key: Some(key),
                    ..ProduceRecord::default()
                });
            }
        }
        let partition = self.offsets_partition_for(group);
        let _guard = self.inner.offsets_lock.lock();
        let log = self.log(OFFSETS_TOPIC, partition)?;
        let mut batch = encode_produce_batch(&records)?;
        log.append(&mut batch, AppendOrigin::Internal, now_ms())?;
        let mut all = self.inner.committed.write();
        if let Some(m) = all.get_mut(group) {
            for tp in &tps {
                m.remove(*tp);
            }
            if m.is_empty() {
                all.remove(group);
            }
        }
        Ok(tps.len())
    }

    fn load_committed_offsets(&self) -> Result<()> {
        let Ok(topic) = self.topic(OFFSETS_TOPIC) else {
            return Ok(());
        };
        let logs: Vec<_> = topic.logs.read().clone();
        let mut committed: HashMap<String, BTreeMap<TopicPartition, OffsetAndMetadata>> =
            HashMap::new();
        let mut skipped = 0usize;
        for log in logs {
            let mut offset = log.offsets().log_start_offset;
            loop {
                let data = log.read(offset, 4 << 20, IsolationLevel::ReadCommitted)?;
                if data.records.is_empty() {
                    break;
                }
                for item in BatchIter::new(&data.records) {
                    let b = item.map_err(|(pos, source)| BrokerError::Corrupt {
                        path: log.dir().to_path_buf(),
                        position: pos as u64,
                        source,
                    })?;
                    offset = offset.max(b.header.next_offset());
                    if b.header.is_control() {
                        continue;
                    }
                    let records =
                        decode_records(b.bytes).map_err(|source| BrokerError::Corrupt {
                            path: log.dir().to_path_buf(),
                            position: 0,
                            source,
                        })?;
                    for r in records {
                        let Some((group, tp)) = r.key.as_deref().and_then(offsets::decode_key)
                        else {
                            skipped += 1;
                            continue;
                        };
                        match r.value.as_deref() {
                            None => {
                                if let Some(m) = committed.get_mut(&group) {
                                    m.remove(&tp);
                                }
                            }
                            Some(v) => match offsets::decode_value(v) {
                                Some(om) => {
                                    committed.entry(group).or_default().insert(tp, om);
                                }
                                None => skipped += 1,
                            },
                        }
                    }
                }
            }
        }
        committed.retain(|_, m| !m.is_empty());
        if skipped > 0 {
            warn!(skipped, "skipped undecodable records in {OFFSETS_TOPIC}");
        }
        debug!(groups = committed.len(), "loaded committed offsets");
        *self.inner.committed.write() = committed;
        Ok(())
    }

    /// Hands out a new producer id. Ids are reserved durably in blocks of 1000 before use, so
    /// an id is never handed out twice, across restarts and crashes.
    pub fn allocate_producer_id(&self) -> Result<i64> {
        self.check_open()?;
        let mut a = self.inner.producer_ids.lock();
        if a.next >= a.block_end {
            let end = a.next + PRODUCER_ID_BLOCK;
            write_atomic(&a.path, end.to_string().as_bytes())?;
            a.block_end = end;
        }
        let id = a.next;
        a.next += 1;
        Ok(id)
    }

    fn all_logs(&self) -> Vec<Arc<PartitionLog>> {
        self.inner
            .topics
            .read()
            .values()
            .flat_map(|t| t.logs.read().clone())
            .collect()
    }

    /// Runs retention and compaction on every partition now (compaction forced, ignoring
    /// `min.cleanable.dirty.ratio`), at the current time. Deterministic for tests.
    pub fn run_cleaner_pass(&self) -> Result<CleanerStats> {
        self.run_cleaner_pass_at(now_ms(), true)
    }

    /// As [`Broker::run_cleaner_pass`], as if the clock read `now_ms`.
    pub fn run_cleaner_pass_at(&self, now_ms: i64, force: bool) -> Result<CleanerStats> {
        self.check_open()?;
        let mut stats = CleanerStats::default();
        for log in self.all_logs() {
            stats.segments_deleted += log.apply_retention(now_ms)?;
            stats += log.compact(now_ms, force)?;
        }
        Ok(stats)
    }

    /// Rolls the active segment of a partition (tests and tools).
    pub fn roll_segment(&self, topic: &str, partition: i32) -> Result<()> {
        self.log(topic, partition)?.roll()
    }

    /// fsyncs every partition and writes the recovery-point checkpoint.
    pub fn flush(&self) -> Result<()> {
        self.check_open()?;
        for log in self.all_logs() {
            log.flush()?;
        }
        self.write_recovery_checkpoint()
    }

    fn write_recovery_checkpoint(&self) -> Result<()> {
        let logs = self.all_logs();
        let mut text = format!("0\n{}\n", logs.len());
        for log in &logs {
            text.push_str(&format!(
                "{} {} {}\n",
                log.topic(),
                log.partition(),
                log.recovery_point()
            ));
        }
        write_atomic(
            &self.inner.config.data_dir.join(RECOVERY_CHECKPOINT_FILE),
            text.as_bytes(),
        )
    }

    /// Stops background work, flushes and closes every log and marks the data directory
    /// clean. Later calls on any clone fail with [`BrokerError::Closed`]. Idempotent.
    pub fn shutdown(&self) -> Result<()> {
        self.inner.shutdown()
    }
}

impl Inner {
    fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        {
            *self.stop.stopped.lock() = true;
            self.stop.cv.notify_all();
        }
        let me = thread::current().id();
        for h in self.threads.lock().drain(..) {
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
        let logs: Vec<Arc<PartitionLog>> = self
            .topics
            .read()
            .values()
            .flat_map(|t| t.logs.read().clone())
            .collect();
        let mut text = format!("0\n{}\n", logs.len());
        self.any_append.notify_waiters();
        for log in &logs {
            log.close()?;
            log.appended.notify_waiters();
            text.push_str(&format!(
                "{} {} {}\n",
                log.topic(),
                log.partition(),
                log.recovery_point()
            ));
        }
        write_atomic(
            &self.config.data_dir.join(RECOVERY_CHECKPOINT_FILE),
            text.as_bytes(),
        )?;
        write_atomic(&self.config.data_dir.join(CLEAN_SHUTDOWN_FILE), b"")?;
        info!(data_dir = %self.config.data_dir.display(), "broker shut down cleanly");
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            error!(error = %e, "broker shutdown on drop failed; the next open will run recovery");
        }
    }
}

fn flusher_loop(weak: Weak<Inner>, stop: Arc<Stop>, checkpoint_every: Duration) {
    let mut last_checkpoint = Instant::now();
    loop {
        if stop.wait(Duration::from_millis(50)) {
            return;
        }
        let Some(inner) = weak.upgrade() else { return };
        let broker = Broker {
            inner,
            _guard: None,
        };
        for log in broker.all_logs() {
            if let Err(e) = log.flush_if_due() {
                error!(topic = log.topic(), partition = log.partition(), error = %e, "background flush failed");
            }
        }
        if last_checkpoint.elapsed() >= checkpoint_every {
            last_checkpoint = Instant::now();
            if let Err(e) = broker.write_recovery_checkpoint() {
                error!(error = %e, "writing the recovery-point checkpoint failed");
            }
        }
    }
}

fn cleaner_loop(weak: Weak<Inner>, stop: Arc<Stop>, every: Duration) {
    loop {
        if stop.wait(every) {
            return;
        }
        let Some(inner) = weak.upgrade() else { return };
        let broker = Broker {
            inner,
            _guard: None,
        };
        match broker.run_cleaner_pass_at(now_ms(), false) {
            Ok(s) if s != CleanerStats::default() => debug!(?s, "cleaner pass"),
            Ok(_) | Err(BrokerError::Closed) => {}
            Err(e) => error!(error = %e, "cleaner pass failed"),
        }
    }
}

/// Encodes records for the in-process produce path (CreateTime, no producer id).
fn encode_produce_batch(records: &[ProduceRecord]) -> Result<Vec<u8>> {
    if records.is_empty() {
        return Err(BrokerError::InvalidBatch(
            crate::record::RecordError::InvalidBatch("no records to produce".into()),
        ));
    }
    let now = now_ms();
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            offset: i as i64,
            timestamp: r.timestamp.unwrap_or(now),
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
        })
        .collect();
    encode_batch(&BatchSpec::default(), &recs).map_err(BrokerError::InvalidBatch)
}

/// As [`decode_fetched`], without copying keys and values out of `bytes` (uncompressed
/// batches; compressed ones are decompressed once).
pub fn decode_fetched_shared(topic: &str, bytes: &Bytes, from_offset: i64) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for item in BatchIter::new(bytes) {
        let b = item.map_err(|(pos, source)| BrokerError::Corrupt {
            path: PathBuf::from(topic),
            position: pos as u64,
            source,
        })?;
        if b.header.is_control() || b.header.last_offset() < from_offset {
            continue;
        }
        let records =
            crate::record::decode_records_shared(&bytes.slice_ref(b.bytes)).map_err(|source| {
                BrokerError::Corrupt {
                    path: PathBuf::from(topic),
                    position: b.position as u64,
                    source,
                }
            })?;
        out.extend(records.into_iter().filter(|r| r.offset >= from_offset));
    }
    Ok(out)
}

/// Decodes fetched batches into records at or after `from_offset`, skipping control batches.
pub fn decode_fetched(topic: &str, bytes: &[u8], from_offset: i64) -> Result<Vec<Record>> {
    // One copy of the buffer; the records then share it.
    decode_fetched_shared(topic, &Bytes::copy_from_slice(bytes), from_offset)
}

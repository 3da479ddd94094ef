//! The in-process broker handle: topics, partition logs, committed offsets, producer ids,
//! background flushing and cleaning, and clean shutdown.
//!
//! One file per concern: `types` (the values the API takes and returns), `topics` (topic
//! lifecycle, configs and `meta/topics.json`), `produce_fetch` (appends, reads, offset
//! look-ups), `committed_offsets` (`__consumer_offsets`, and commits checked by the group
//! coordinator), `producer_ids` (the durable producer-id allocator), `txn_markers` (transaction markers
//! written for the coordinator) and `background`
//! (flusher, cleaner and group-coordinator threads, recovery-point checkpoints). This file holds the handle itself: opening a data directory, the shared
//! state, and shutdown.

mod background;
mod committed_offsets;
mod coordination;
mod produce_fetch;
mod producer_ids;
mod topics;
mod transactions;
mod txn_markers;
mod txn_producer;
mod types;

pub use coordination::{CoordinatorKind, CoordinatorLease};
pub use produce_fetch::{
    decode_fetched, decode_fetched_committed, decode_fetched_shared, RecordsRead,
};
pub use producer_ids::{ProducerIdBlock, ProducerIdBlockSource};
pub use transactions::{TxnOffsetCommitError, TRANSACTION_STATE_TOPIC};
pub use txn_producer::{TransactionalProducer, TxnProducerError, TxnProducerResult};
pub use types::{
    AlterConfigOp, ConfigEntry, ConfigSource, FetchOptions, ListedOffset, NewTopic, OffsetSpec,
    PartitionDescription, ProduceRecord, TopicDescription,
};

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use durable_fs::{LockGuard, OsStorage, Storage};
use parking_lot::{Condvar, Mutex, RwLock};
use tracing::{error, info};
use uuid::Uuid;

use background::{read_recovery_points, Stop};
use producer_ids::ProducerIdAllocator;
use topics::{MetadataFile, Topic};

use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::fsutil::{sync_dir, write_atomic};
use crate::group::GroupCoordinator;
use crate::log::{partition_dir_name, PartitionLog};
use crate::offsets::{OffsetAndMetadata, TopicPartition};
use crate::txn::TransactionCoordinator;
use transactions::{BrokerTxnBackend, PendingTxnOffsets};

const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
const RECOVERY_CHECKPOINT_FILE: &str = "recovery-point-offset-checkpoint";
/// Kafka's per-data-directory checkpoint of every partition's high watermark.
const REPLICATION_CHECKPOINT_FILE: &str = "replication-offset-checkpoint";
const LOCK_FILE: &str = ".lock";
const META_DIR: &str = "meta";
const TOPICS_FILE: &str = "topics.json";
const PRODUCER_ID_FILE: &str = "producer-id-block";

/// Milliseconds since the Unix epoch, from the system clock.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct Inner {
    config: BrokerConfig,
    /// Where every durable file lives (the real file system, or a simulator in tests).
    storage: Arc<dyn Storage>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    meta_lock: Mutex<()>,
    producer_ids: Mutex<ProducerIdAllocator>,
    committed: RwLock<HashMap<String, BTreeMap<TopicPartition, OffsetAndMetadata>>>,
    /// The classic group coordinator (timers ticked by the `broker-groups` thread).
    groups: Arc<GroupCoordinator>,
    /// The transaction coordinator (timeouts and marker retries ticked by the
    /// `broker-transactions` thread).
    txn: Arc<TransactionCoordinator>,
    /// Offsets committed in transactions not yet completed.
    pending_txn_offsets: Mutex<PendingTxnOffsets>,
    /// Which coordinator partitions this broker owns and how their records are written.
    coordination: coordination::Coordination,
    offsets_lock: Mutex<()>,
    closed: AtomicBool,
    cluster_id: String,
    /// Woken after every append to any partition (for fetches spanning partitions).
    any_append: tokio::sync::Notify,
    stop: Arc<Stop>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    _lock: Box<dyn LockGuard>,
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

impl Broker {
    /// Opens (or creates) a broker in `config.data_dir`, recovering every partition log, and
    /// starts the background flusher and cleaner threads.
    pub fn open(config: BrokerConfig) -> Result<Self> {
        Self::open_with_storage(config, OsStorage::shared())
    }

    /// [`Broker::open`] with every durable file on `storage` (for instance
    /// `durable_fs::sim::SimStorage`, to test recovery from simulated power cuts).
    pub fn open_with_storage(config: BrokerConfig, storage: Arc<dyn Storage>) -> Result<Self> {
        let dir = config.data_dir.clone();
        let fresh = !storage.exists(&dir.join(META_DIR));
        durable_fs::create_dir_all_durable(&*storage, &dir.join(META_DIR))
            .map_err(|e| BrokerError::io(&dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = match storage.try_lock(&lock_path) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(BrokerError::DataDirLocked(dir))
            }
            Err(e) => return Err(BrokerError::io(&lock_path, e)),
        };
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = storage.exists(&marker);
        if !clean && !fresh {
            info!(data_dir = %dir.display(), "no clean-shutdown marker: validating logs from their recovery points");
        }
        let recovery_points = read_recovery_points(&*storage, &dir.join(RECOVERY_CHECKPOINT_FILE));
        let high_watermarks =
            read_recovery_points(&*storage, &dir.join(REPLICATION_CHECKPOINT_FILE));
        let meta_path = dir.join(META_DIR).join(TOPICS_FILE);
        let meta: MetadataFile = match storage.read(&meta_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| BrokerError::Metadata {
                path: meta_path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MetadataFile::default(),
            Err(e) => return Err(BrokerError::io(&meta_path, e)),
        };
        // Finish interrupted topic deletions.
        for name in storage
            .read_dir(&dir)
            .map_err(|e| BrokerError::io(&dir, e))?
        {
            if name.ends_with("-delete") {
                let _ = storage.remove_dir_all(&dir.join(name));
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
                let log = PartitionLog::open_with_storage(
                    Arc::clone(&storage),
                    pdir,
                    &rec.name,
                    p,
                    Arc::clone(&log_config),
                    clean,
                    rp,
                )?;
                if let Some(hw) = high_watermarks.get(&(rec.name.clone(), p)) {
                    log.restore_high_watermark(*hw);
                }
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
            storage
                .remove_file(&marker)
                .map_err(|e| BrokerError::io(&marker, e))?;
            sync_dir(&*storage, &dir)?;
        }
        info!(data_dir = %dir.display(), topics = topics.len(), clean, elapsed_ms = started.elapsed().as_millis() as u64, "broker log opened");

        let pid_path = dir.join(META_DIR).join(PRODUCER_ID_FILE);
        let next_pid = match storage.read(&pid_path) {
            Ok(s) => String::from_utf8_lossy(&s)
                .trim()
                .parse::<i64>()
                .map_err(|e| BrokerError::Metadata {
                    path: pid_path.clone(),
                    reason: e.to_string(),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(BrokerError::io(&pid_path, e)),
        };

        let cluster_path = dir.join(META_DIR).join("cluster-id");
        let cluster_id = match storage.read(&cluster_path).map(String::from_utf8) {
            Ok(Ok(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Ok(_) | Err(_) => {
                use base64::Engine;
                let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(Uuid::new_v4().as_bytes());
                write_atomic(&*storage, &cluster_path, id.as_bytes())?;
                id
            }
        };

        let groups = Arc::new(GroupCoordinator::new(config.group_initial_rebalance_delay));
        let max_txn_timeout_ms =
            i32::try_from(config.transaction_max_timeout.as_millis()).unwrap_or(i32::MAX);
        let inner = Arc::new_cyclic(|weak| Inner {
            txn: Arc::new(TransactionCoordinator::new(
                max_txn_timeout_ms,
                Box::new(BrokerTxnBackend(weak.clone())),
                Box::new(BrokerTxnBackend(weak.clone())),
            )),
            pending_txn_offsets: Mutex::new(PendingTxnOffsets::new()),
            coordination: coordination::Coordination::default(),
            config,
            storage,
            cluster_id,
            any_append: tokio::sync::Notify::new(),
            topics: RwLock::new(topics),
            meta_lock: Mutex::new(()),
            producer_ids: Mutex::new(ProducerIdAllocator {
                path: pid_path,
                next: next_pid,
                block_end: next_pid,
                source: None,
                prefetched: None,
                requesting: false,
                block_size: 0,
            }),
            committed: RwLock::new(HashMap::new()),
            groups,
            offsets_lock: Mutex::new(()),
            closed: AtomicBool::new(false),
            stop: Arc::new(Stop {
                stopped: Mutex::new(false),
                cv: Condvar::new(),
            }),
            threads: Mutex::new(Vec::new()),
            _lock: lock,
        });
        let weak = Arc::downgrade(&inner);
        inner.groups.set_store(Box::new(move |group, metadata| {
            let inner = weak.upgrade().ok_or(BrokerError::Closed)?;
            Broker {
                inner,
                _guard: None,
            }
            .store_group_metadata(group, metadata)
        }));
        let guard = Some(Arc::new(ShutdownOnDrop(Arc::clone(&inner))));
        let broker = Self {
            inner,
            _guard: guard,
        };
        if !broker.inner.config.elected_coordinators {
            broker.load_committed_offsets()?;
            broker.load_transaction_state()?;
            // Transactions prepared before a stop get their markers now (and are retried by
            // the background thread if that fails).
            broker.inner.txn.complete_prepared(now_ms());
        }
        broker.start_background_threads()?;
        Ok(broker)
    }

    /// The broker's configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// The broker's group coordinator: JoinGroup, SyncGroup, Heartbeat, LeaveGroup and
    /// group descriptions for in-process members and wire clients alike. Offset commits of
    /// members go through [`Broker::commit_group_offsets`].
    pub fn group_coordinator(&self) -> &GroupCoordinator {
        &self.inner.groups
    }

    /// The cluster id (persisted in the data directory, Kafka's base64url UUID format).
    pub fn cluster_id(&self) -> &str {
        &self.inner.cluster_id
    }

    /// Wakes fetches waiting in [`Broker::appended_anywhere`] (an append made through the
    /// replica manager rather than the broker).
    pub(crate) fn notify_appended(&self) {
        self.inner.any_append.notify_waiters();
    }

    /// The topic's `min.insync.replicas`, when the topic exists locally.
    pub(crate) fn min_insync_replicas(&self, topic: &str, partition: i32) -> Option<i32> {
        self.log(topic, partition)
            .ok()
            .map(|l| i32::try_from(l.config().min_insync_replicas).unwrap_or(i32::MAX))
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

    /// The log of one partition (for the replication layer: follower appends, truncation,
    /// the high watermark and the leader-epoch cache).
    pub fn partition_log(&self, topic: &str, partition: i32) -> Result<Arc<PartitionLog>> {
        self.log(topic, partition)
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

    pub(super) fn all_logs(&self) -> Vec<Arc<PartitionLog>> {
        self.inner
            .topics
            .read()
            .values()
            .flat_map(|t| t.logs.read().clone())
            .collect()
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
        self.any_append.notify_waiters();
        for log in &logs {
            log.close()?;
            log.appended.notify_waiters();
        }
        background::write_offset_checkpoints(&*self.storage, &self.config.data_dir, &logs)?;
        write_atomic(
            &*self.storage,
            &self.config.data_dir.join(CLEAN_SHUTDOWN_FILE),
            b"",
        )?;
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

//! `StreamsApp`: runs a topology with N stream threads against a cluster (Kafka's
//! `KafkaStreams`), and the stream thread loop with its commit cycle.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::record::ProducedRecord;
use parking_lot::{Condvar, Mutex};
use state_store::{RocksDbConfig, RocksDbResources, StoreMetrics, TopicPartition};

use crate::assignment::{AssignmentSpec, EndOffsetsFn, HostInfo, HostPartitions, LATEST_OFFSET};
use crate::assignor::HighAvailabilityTaskAssignor;
use crate::client::{
    AssignmentEvent, ChangelogSource, Cluster, ClusterConsumer, ClusterProducer,
    ConsumerGroupMetadata, InternalTopicSpec, IsolationLevel, Subscription, TaskOffsetSumsFn,
};
use crate::collector::{default_partition, OutgoingRecord, RecordCollector, SharedCollector};
use crate::config::{StreamsConfig, UncaughtErrorPolicy};
use crate::error::{ClusterErrorKind, Result, StreamsError};
use crate::global::GlobalState;
use crate::task::{SystemClock, Task, TaskId, TaskInputs, TaskSettings};
use crate::task_manager::{OffsetsWithMetadata, TaskManager};
use crate::topology::{NodeKind, OffsetReset, SinkTopic, SourceTopics, Subtopology, Topology};

mod process_id;
mod query;
mod thread;
mod topics;

use thread::run_thread;
pub(crate) use topics::prepare_topics;

/// The life cycle of a [`StreamsApp`] (Kafka's `KafkaStreams.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamsState {
    /// Built, not started.
    Created,
    /// Threads are (re)joining, getting tasks, or restoring state.
    Rebalancing,
    /// Every thread is processing its tasks.
    Running,
    /// `close` was called; threads are committing and closing their tasks.
    PendingShutdown,
    /// Stopped cleanly.
    NotRunning,
    /// Stopped because of an error (see [`StreamsApp::errors`]).
    Error,
}

impl StreamsState {
    fn can_move_to(self, next: StreamsState) -> bool {
        use StreamsState::*;
        matches!(
            (self, next),
            (Created, Rebalancing)
                | (Created, PendingShutdown)
                | (Rebalancing, Running)
                | (Running, Rebalancing)
                | (Rebalancing, PendingShutdown)
                | (Running, PendingShutdown)
                | (Rebalancing, Error)
                | (Running, Error)
                | (PendingShutdown, NotRunning)
                | (PendingShutdown, Error)
                | (Error, PendingShutdown)
        )
    }
}

/// Receives state changes: `(new, old)`, as Kafka's `StateListener`.
pub type StateListener = Box<dyn Fn(StreamsState, StreamsState) + Send + Sync>;

/// Per sub-topology facts resolved at start.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedSubtopology {
    pub(crate) sub: Subtopology,
    /// Physical source topic -> source node.
    pub(crate) inputs: BTreeMap<String, usize>,
    pub(crate) partitions: i32,
}

/// Per standby task, the offset of the last record applied per changelog partition.
type StandbyOffsets = BTreeMap<TaskId, BTreeMap<TopicPartition, i64>>;

struct AppShared {
    config: StreamsConfig,
    topology: Arc<Topology>,
    cluster: Arc<dyn Cluster>,
    state: Mutex<StreamsState>,
    state_changed: Condvar,
    listener: Mutex<Option<StateListener>>,
    shutdown: AtomicBool,
    /// The errors that stopped stream threads, oldest first.
    errors: Mutex<Vec<Arc<StreamsError>>>,
    /// Per thread: true once it has its assignment and restored its tasks.
    thread_running: Mutex<BTreeMap<usize, bool>>,
    processed: AtomicU64,
    /// Records dropped by the tasks of every thread (shared with their `TaskSettings`).
    dropped: Arc<AtomicU64>,
    resolved: Mutex<Vec<ResolvedSubtopology>>,
    /// This instance's process id in the group's subscriptions.
    process_id: uuid::Uuid,
    /// Per thread: the active tasks it runs.
    active_tasks: Mutex<BTreeMap<usize, BTreeSet<TaskId>>>,
    /// Per thread: the standby tasks it keeps up to date.
    standby_tasks: Mutex<BTreeMap<usize, BTreeSet<TaskId>>>,
    /// Per thread and standby task: the position of the standby in its changelog partitions.
    standby_offsets: Mutex<BTreeMap<usize, StandbyOffsets>>,
    /// Changelog records applied by restoring active tasks, over every thread.
    restored_records: AtomicU64,
    /// Changelog records applied by standby tasks, over every thread.
    standby_records: AtomicU64,
    /// The global stores, opened and restored by `start` before any stream thread runs.
    globals: Mutex<Arc<GlobalState>>,
    /// The stores of initialized tasks, readable by interactive queries.
    queryable: Arc<crate::query::QueryableStores>,
    /// Which instance holds which partitions and stores (Kafka's `StreamsMetadataState`).
    metadata: Mutex<crate::query::metadata::StreamsMetadataState>,
    /// Per thread: the active tasks of its last assignment (kept across revocations, so a
    /// rejoining thread does not report another thread's tasks as its own state).
    last_assigned: Mutex<BTreeMap<usize, BTreeSet<TaskId>>>,
    /// Which stream thread holds each task directory open (as an active or standby task):
    /// Kafka's `StateDirectory` task locks. A thread opens a task only once no other thread
    /// of the instance holds it; `task_dir_released` wakes threads waiting for one.
    task_dir_owners: Mutex<BTreeMap<TaskId, usize>>,
    /// Signalled when a thread releases task directories.
    task_dir_released: Condvar,
    /// The group's interactive-query metadata of the last assignment: endpoint -> input
    /// partitions of its active tasks, and of its standby tasks (written, with `metadata`,
    /// only by `on_partitions_by_host`).
    partitions_by_host: Mutex<(HostPartitions, HostPartitions)>,
}

impl AppShared {
    fn set_state(&self, next: StreamsState) -> bool {
        let old = {
            let mut s = self.state.lock();
            if *s == next || !s.can_move_to(next) {
                return false;
            }
            std::mem::replace(&mut *s, next)
        };
        tracing::info!(application = %self.config.application_id, from = ?old, to = ?next, "state change");
        if let Some(l) = self.listener.lock().as_ref() {
            l(next, old);
        }
        self.state_changed.notify_all();
        true
    }

    /// Claims task `id`'s directory for `thread` if no other thread holds it. Returns false
    /// when another thread does.
    fn try_claim_task_dir(&self, id: TaskId, thread: usize) -> bool {
        let mut owners = self.task_dir_owners.lock();
        match owners.get(&id) {
            Some(owner) if *owner != thread => false,
            _ => {
                owners.insert(id, thread);
                true
            }
        }
    }

    /// Claims task `id`'s directory for `thread`, waiting up to `timeout` for another thread
    /// of the instance to release it (during a rebalance, until that thread has handled the
    /// same rebalance and closed its copy of the task). Returns false on timeout.
    fn claim_task_dir(&self, id: TaskId, thread: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut owners = self.task_dir_owners.lock();
        loop {
            match owners.get(&id) {
                Some(owner) if *owner != thread => {
                    if self
                        .task_dir_released
                        .wait_until(&mut owners, deadline)
                        .timed_out()
                    {
                        return false;
                    }
                }
                _ => {
                    owners.insert(id, thread);
                    return true;
                }
            }
        }
    }

    /// Releases the task directories `thread` claimed but no longer holds open (`held`).
    fn release_task_dirs(&self, thread: usize, held: &BTreeSet<TaskId>) {
        let mut owners = self.task_dir_owners.lock();
        let before = owners.len();
        owners.retain(|id, owner| *owner != thread || held.contains(id));
        if owners.len() != before {
            self.task_dir_released.notify_all();
        }
    }

    fn thread_state(&self, thread: usize, running: bool) {
        let all_running = {
            let mut t = self.thread_running.lock();
            t.insert(thread, running);
            !t.is_empty() && t.values().all(|r| *r)
        };
        if all_running {
            self.set_state(StreamsState::Running);
        } else {
            self.set_state(StreamsState::Rebalancing);
        }
    }
}

/// A running streams application (Kafka's `KafkaStreams`): threads sharing the tasks of a
/// topology, committing every `commit.interval.ms`.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use broker_embedded::{Broker, BrokerConfig, NewTopic, ProduceRecord};
/// use streams_core::{EmbeddedCluster, Sink, Source, StreamsApp, StreamsConfig, StreamsState, Topology};
///
/// let dir = tempfile::tempdir()?;
/// let broker = Broker::open(BrokerConfig::new(dir.path().join("log")))?;
/// broker.create_topic(NewTopic::new("in", 2))?;
/// broker.create_topic(NewTopic::new("out", 2))?;
/// broker.produce("in", 0, &[ProduceRecord::new("k", "v")])?;
///
/// let mut topology = Topology::new();
/// topology.add_source(Source::<String, String>::new("source", ["in"]))?;
/// topology.add_sink(Sink::<String, String>::new("sink", "out"), &["source"])?;
/// let config = StreamsConfig::new("copy")
///     .state_dir(dir.path().join("state"))
///     .commit_interval(Duration::from_millis(100));
/// let mut app = StreamsApp::new(topology, config, EmbeddedCluster::new(broker.clone()))?;
/// app.start()?;
/// assert!(app.wait_for_state(StreamsState::Running, Duration::from_secs(30)));
/// assert!(app.wait_until_caught_up(Duration::from_secs(30))?);
/// app.close();
/// assert_eq!(app.state(), StreamsState::NotRunning);
/// let out = broker.read_partition("out", 0, 0, 1 << 20, broker_embedded::IsolationLevel::ReadCommitted)?;
/// assert_eq!(broker_embedded::decode_fetched("out", &out.records, 0)?.len(), 1);
/// # Ok(()) }
/// ```
pub struct StreamsApp {
    shared: Arc<AppShared>,
    threads: Vec<JoinHandle<()>>,
    /// The global thread (only with global stores) and its stop flag.
    global_thread: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl std::fmt::Debug for StreamsApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsApp")
            .field("application_id", &self.shared.config.application_id)
            .field("state", &self.state())
            .finish()
    }
}

impl StreamsApp {
    /// An application running `topology` on `cluster`. Validates the topology and config.
    pub fn new(topology: Topology, config: StreamsConfig, cluster: impl Cluster) -> Result<Self> {
        config.validate_application_id()?;
        config.validate_guarantee()?;
        topology.subtopologies()?;
        // As Kafka: a process id kept in the state directory when there is local state.
        let process_id = if topology.stores().any(|s| s.is_persistent()) {
            process_id::load_or_create(&config.state_dir.join(&config.application_id))?
        } else {
            uuid::Uuid::new_v4()
        };
        let mut topology = topology;
        topology.apply_optimizations(&config);
        let this_host = config
            .application_server
            .clone()
            .unwrap_or_else(HostInfo::unavailable);
        let metadata =
            crate::query::metadata::StreamsMetadataState::new(this_host, Default::default());
        Ok(StreamsApp {
            shared: Arc::new(AppShared {
                config,
                topology: Arc::new(topology),
                cluster: Arc::new(cluster),
                state: Mutex::new(StreamsState::Created),
                state_changed: Condvar::new(),
                listener: Mutex::new(None),
                shutdown: AtomicBool::new(false),
                errors: Mutex::new(Vec::new()),
                thread_running: Mutex::new(BTreeMap::new()),
                processed: AtomicU64::new(0),
                dropped: Arc::new(AtomicU64::new(0)),
                resolved: Mutex::new(Vec::new()),
                process_id,
                active_tasks: Mutex::new(BTreeMap::new()),
                standby_tasks: Mutex::new(BTreeMap::new()),
                standby_offsets: Mutex::new(BTreeMap::new()),
                restored_records: AtomicU64::new(0),
                standby_records: AtomicU64::new(0),
                globals: Mutex::new(Arc::new(GlobalState::empty())),
                queryable: Arc::default(),
                metadata: Mutex::new(metadata),
                last_assigned: Mutex::new(BTreeMap::new()),
                task_dir_owners: Mutex::new(BTreeMap::new()),
                task_dir_released: Condvar::new(),
                partitions_by_host: Mutex::new((BTreeMap::new(), BTreeMap::new())),
            }),
            threads: Vec::new(),
            global_thread: None,
        })
    }

    /// Calls `listener(new, old)` on every state change.
    pub fn set_state_listener(
        &self,
        listener: impl Fn(StreamsState, StreamsState) + Send + Sync + 'static,
    ) {
        *self.shared.listener.lock() = Some(Box::new(listener));
    }

    /// The current state.
    pub fn state(&self) -> StreamsState {
        *self.shared.state.lock()
    }

    /// Errors that stopped threads, oldest first, as messages.
    pub fn errors(&self) -> Vec<String> {
        self.shared
            .errors
            .lock()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Errors that stopped threads, oldest first, as the typed errors the threads failed
    /// with (what Kafka hands its `StreamsUncaughtExceptionHandler`), e.g.
    /// [`StreamsError::Deserialization`] with the record's topic, partition and offset.
    pub fn thread_errors(&self) -> Vec<Arc<StreamsError>> {
        self.shared.errors.lock().clone()
    }

    /// The active tasks this instance runs now, over all its stream threads (Kafka's
    /// `KafkaStreams.metadataForLocalThreads` active tasks). Empty during a rebalance.
    pub fn active_tasks(&self) -> BTreeSet<TaskId> {
        self.shared
            .active_tasks
            .lock()
            .values()
            .flatten()
            .copied()
            .collect()
    }

    /// The standby tasks (warm-up replicas included) this instance's stream threads keep up
    /// to date now: those the group assigned to it at the last rebalance
    /// (`AssignmentEvent::Standby`), once their thread opened them (Kafka's
    /// `KafkaStreams.metadataForLocalThreads` standby tasks).
    pub fn standby_tasks(&self) -> BTreeSet<TaskId> {
        self.shared
            .standby_tasks
            .lock()
            .values()
            .flatten()
            .copied()
            .collect()
    }

    /// Where the standby tasks of this instance are: per changelog partition they follow,
    /// the offset of the last record applied (the changelog's end minus one once caught
    /// up). Partitions a standby has applied nothing of yet are missing.
    pub fn standby_changelog_offsets(&self) -> BTreeMap<TopicPartition, i64> {
        self.shared
            .standby_offsets
            .lock()
            .values()
            .flat_map(|m| m.values())
            .flat_map(|m| m.iter().map(|(tp, o)| (tp.clone(), *o)))
            .collect()
    }

    /// Changelog records applied so far by restoring active tasks before they process
    /// (from their checkpoint, or a promoted standby's position, to the changelog's end):
    /// Kafka's `restore-total`, summed over the instance.
    pub fn restored_records(&self) -> u64 {
        self.shared.restored_records.load(Ordering::Relaxed)
    }

    /// Changelog records applied so far by standby tasks (Kafka's standby
    /// `update-total`, summed over the instance).
    pub fn standby_updated_records(&self) -> u64 {
        self.shared.standby_records.load(Ordering::Relaxed)
    }

    /// The interactive-query metadata of the last assignment (Kafka's `partitionsByHost`):
    /// every instance with an `application.server` endpoint, with the input partitions of
    /// its active tasks.
    pub fn partitions_by_host(&self) -> HostPartitions {
        self.shared.partitions_by_host.lock().0.clone()
    }

    /// Like [`StreamsApp::partitions_by_host`], for standby tasks (Kafka's
    /// `standbyPartitionsByHost`).
    pub fn standby_partitions_by_host(&self) -> HostPartitions {
        self.shared.partitions_by_host.lock().1.clone()
    }

    /// This instance's process id (sent in its group subscriptions).
    pub fn process_id(&self) -> uuid::Uuid {
        self.shared.process_id
    }

    /// Records processed by all tasks so far.
    pub fn processed_records(&self) -> u64 {
        self.shared.processed.load(Ordering::Relaxed)
    }

    /// Records the tasks dropped on purpose so far (Kafka's `dropped-records-total`, summed
    /// over the instance's tasks), each also logged with a warning: records skipped by the
    /// `LogAndContinue` deserialization handler or the invalid-timestamp policy, records
    /// whose key is null at a repartition sink, and null keys or values at an aggregation.
    pub fn dropped_records(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits until the state is `state` (true) or `timeout` passes (false). Returns false
    /// at once if the application reached ERROR or NOT_RUNNING instead.
    pub fn wait_for_state(&self, state: StreamsState, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.shared.state.lock();
        loop {
            if *s == state {
                return true;
            }
            if matches!(*s, StreamsState::Error | StreamsState::NotRunning) {
                return false;
            }
            if self
                .shared
                .state_changed
                .wait_until(&mut s, deadline)
                .timed_out()
            {
                return *s == state;
            }
        }
    }

    /// Validates the topology against the cluster, creates internal topics and starts the
    /// stream threads. Fails (state unchanged) on missing source topics, mismatched
    /// partition counts or unusable internal topics.
    pub fn start(&mut self) -> Result<()> {
        if self.state() != StreamsState::Created {
            return Err(StreamsError::IllegalState(format!(
                "start() called in state {:?}; an application starts once",
                self.state()
            )));
        }
        let resolved = prepare_topics(
            &self.shared.topology,
            &self.shared.config,
            self.shared.cluster.as_ref(),
        )?;
        *self.shared.resolved.lock() = resolved;
        let topics = self.shared.store_topics();
        self.shared.metadata.lock().set_topics(topics);
        let dir = self
            .shared
            .config
            .state_dir
            .join(&self.shared.config.application_id);
        std::fs::create_dir_all(&dir).map_err(|e| StreamsError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        let rocksdb = RocksDbResources::new(RocksDbConfig::default())?;
        self.start_global(&rocksdb)?;
        self.shared.set_state(StreamsState::Rebalancing);
        if self.shared.resolved.lock().is_empty() {
            // Only global stores: no stream thread, as Kafka creates none for a topology
            // without non-global sources; the global thread is all there is to run.
            self.shared.set_state(StreamsState::Running);
            return Ok(());
        }
        let n = self.shared.config.num_stream_threads;
        // Create every consumer (and so every group member) before any thread polls, so
        // the first rebalance already spreads the tasks over all threads.
        let mut consumers = Vec::new();
        for i in 0..n {
            let client_id = format!(
                "{}-StreamThread-{}",
                self.shared.config.client_id_value(),
                i + 1
            );
            let (consumer, producer) = thread::clients(&self.shared, i, &client_id)?;
            consumers.push((client_id, consumer, producer));
        }
        for (i, (client_id, consumer, producer)) in consumers.into_iter().enumerate() {
            self.shared.thread_running.lock().insert(i, false);
            let shared = Arc::clone(&self.shared);
            let rocksdb = rocksdb.clone();
            // One metrics sink per thread: a shared one made every store operation of every
            // thread contend on the same atomics (6% of the word-count profile).
            let metrics = Arc::new(StoreMetrics::new());
            let handle = std::thread::Builder::new()
                .name(client_id.clone())
                .spawn(move || {
                    run_thread(shared, i, client_id, consumer, producer, rocksdb, metrics)
                })
                .map_err(|e| StreamsError::Io {
                    path: "stream thread".into(),
                    source: e,
                })?;
            self.threads.push(handle);
        }
        Ok(())
    }

    /// Opens the global stores, restores them to the end of their topics (Kafka's
    /// `GlobalStreamThread#start` waits for this before any stream thread starts) and
    /// starts the global thread that keeps them up to date.
    fn start_global(&mut self, rocksdb: &RocksDbResources) -> Result<()> {
        let shared = &self.shared;
        let config = &shared.config;
        let globals = GlobalState::open(
            &shared.topology,
            &config.application_id,
            &config.serdes,
            config.deserialization.clone(),
            Some(&config.state_dir),
            Some(rocksdb),
            Arc::new(StoreMetrics::new()),
            Arc::clone(&shared.dropped),
        )?;
        if globals.is_empty() {
            return Ok(());
        }
        globals.set_partitions(|t| shared.cluster.partitions(t))?;
        let mut reader = shared.cluster.changelog_source()?;
        globals.restore(reader.as_mut())?;
        globals.checkpoint()?;
        let globals = Arc::new(globals);
        *shared.globals.lock() = Arc::clone(&globals);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread_shared = Arc::clone(shared);
        let name = format!("{}-GlobalStreamThread", config.application_id);
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || run_global_thread(&thread_shared, &globals, reader, &thread_stop))
            .map_err(|e| StreamsError::Io {
                path: "global stream thread".into(),
                source: e,
            })?;
        self.global_thread = Some((stop, handle));
        Ok(())
    }

    /// True when every input partition (source and repartition topics) has its committed
    /// offset at its end: everything produced so far has been processed and committed.
    pub fn is_caught_up(&self) -> Result<bool> {
        let resolved = self.shared.resolved.lock().clone();
        let group = &self.shared.config.application_id;
        for r in &resolved {
            for topic in r.inputs.keys() {
                for p in 0..r.partitions {
                    let tp = TopicPartition::new(topic.clone(), p);
                    let end = self.shared.cluster.end_offset(&tp)?;
                    let committed = self
                        .shared
                        .cluster
                        .committed_offset(group, &tp)?
                        .unwrap_or(0);
                    if committed < end {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    /// Waits until [`StreamsApp::is_caught_up`] holds twice in a row (so records produced
    /// by the last commit to repartition topics are covered), or `timeout` passes.
    pub fn wait_until_caught_up(&self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut streak = 0;
        while Instant::now() < deadline {
            if matches!(self.state(), StreamsState::Error | StreamsState::NotRunning) {
                return Err(StreamsError::IllegalState(format!(
                    "the application stopped: {}",
                    self.errors().join("; ")
                )));
            }
            if self.is_caught_up()? {
                streak += 1;
                if streak >= 2 {
                    return Ok(true);
                }
            } else {
                streak = 0;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(false)
    }

    /// Stops the threads after a final commit and closes every task cleanly. Idempotent.
    pub fn close(&mut self) {
        if self.state() == StreamsState::Created {
            self.shared.set_state(StreamsState::PendingShutdown);
            self.shared.set_state(StreamsState::NotRunning);
            return;
        }
        let errored = self.state() == StreamsState::Error;
        self.shared.set_state(StreamsState::PendingShutdown);
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                self.shared
                    .errors
                    .lock()
                    .push(Arc::new(StreamsError::IllegalState(
                        "a stream thread panicked".into(),
                    )));
            }
        }
        // The global stores stay open until the stream threads have closed their tasks.
        if let Some((stop, handle)) = self.global_thread.take() {
            stop.store(true, Ordering::SeqCst);
            if handle.join().is_err() {
                self.shared
                    .errors
                    .lock()
                    .push(Arc::new(StreamsError::IllegalState(
                        "the global stream thread panicked".into(),
                    )));
            }
        }
        if errored {
            self.shared.set_state(StreamsState::Error);
        } else {
            self.shared.set_state(StreamsState::NotRunning);
        }
    }
}

impl Drop for StreamsApp {
    fn drop(&mut self) {
        if !self.threads.is_empty() || self.global_thread.is_some() {
            self.close();
        }
    }
}

/// The global thread (Kafka's `GlobalStreamThread`): reads what is new in the global
/// topics and applies it, checkpoints every `commit.interval.ms`, and closes the global
/// stores cleanly when stopped. An error stops the application (state ERROR), as a dead
/// global thread does in Kafka.
fn run_global_thread(
    shared: &Arc<AppShared>,
    globals: &GlobalState,
    mut reader: Box<dyn crate::client::ChangelogSource>,
    stop: &AtomicBool,
) {
    let mut last_checkpoint = Instant::now();
    let result = (|| -> Result<()> {
        while !stop.load(Ordering::SeqCst) {
            if globals.poll(reader.as_mut())? == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
            if last_checkpoint.elapsed() >= shared.config.commit_interval_value() {
                globals.checkpoint()?;
                last_checkpoint = Instant::now();
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        tracing::error!(error = %e, "global stream thread failed");
        shared.errors.lock().push(Arc::new(e));
        shared.set_state(StreamsState::Error);
        shared.shutdown.store(true, Ordering::SeqCst);
    }
    if let Err(e) = globals.close() {
        tracing::error!(error = %e, "closing the global stores failed");
        shared.errors.lock().push(Arc::new(e));
    }
}

/// A stream thread's group subscription: the input topics with their reset policies, its
/// endpoint, how it reports its tasks' offset sums, and what the leader needs to assign:
/// every task with its input and changelog partitions, the [`HighAvailabilityTaskAssignor`]
/// with the `StreamsConfig` settings, and changelog end offsets read from the cluster.
fn subscription(shared: &Arc<AppShared>, thread: usize) -> Subscription {
    let mut topics = Vec::new();
    let mut tasks = BTreeMap::new();
    let mut changelogs = BTreeMap::new();
    let app = &shared.config.application_id;
    for r in shared.resolved.lock().iter() {
        for (topic, &node) in &r.inputs {
            let reset = match &shared.topology.nodes[node].kind {
                NodeKind::Source { offset_reset, .. } => *offset_reset,
                _ => OffsetReset::Earliest,
            };
            topics.push((topic.clone(), reset));
        }
        let changelog_topics = changelog_topics(&shared.topology, app, &r.sub);
        for p in 0..r.partitions {
            let id = TaskId {
                subtopology: u32::try_from(r.sub.id).unwrap_or(u32::MAX),
                partition: p,
            };
            let tps: Vec<TopicPartition> = r
                .inputs
                .keys()
                .map(|t| TopicPartition::new(t.clone(), p))
                .collect();
            tasks.insert(id, tps);
            if !changelog_topics.is_empty() {
                changelogs.insert(
                    id,
                    changelog_topics
                        .iter()
                        .map(|t| TopicPartition::new(t.clone(), p))
                        .collect(),
                );
            }
        }
    }
    let cluster = Arc::clone(&shared.cluster);
    let end_offsets: EndOffsetsFn = Arc::new(move |tps: &[TopicPartition]| {
        tps.iter()
            .map(|tp| Ok((tp.clone(), cluster.end_offset(tp)?)))
            .collect()
    });
    Subscription {
        topics,
        process_id: shared.process_id,
        endpoint: shared.config.application_server.clone(),
        task_offset_sums: task_offset_sums(shared, thread),
        assignment: AssignmentSpec {
            tasks,
            changelogs,
            assignor: Arc::new(HighAvailabilityTaskAssignor),
            config: shared.config.assignor.clone(),
            end_offsets,
        },
        session_timeout: shared.config.session_timeout,
        rebalance_timeout: shared.config.max_poll_interval,
    }
}

/// The changelog topics of a sub-topology's stores (what makes its tasks stateful): each
/// logged store's `<app>-<store>-changelog`, or the source topic a table's store restores
/// from under `reuse.ktable.source.topics`.
fn changelog_topics(topology: &Topology, app: &str, sub: &Subtopology) -> Vec<String> {
    let mut out = Vec::new();
    for name in &sub.stores {
        let Some(spec) = topology.stores.get(name) else {
            continue;
        };
        if spec.is_logging() {
            out.push(crate::names::changelog_topic(app, name));
        } else if let Some(topic) = topology.source_changelogs.get(name) {
            out.push(topology.physical_topic_name(app, topic));
        }
    }
    out
}

/// How stream thread `thread` reports its tasks' offset sums when it joins (Kafka's
/// `TaskManager.getTaskOffsetSums`): [`LATEST_OFFSET`] for the active tasks its consumer
/// owned, the sum of the current changelog positions of the standby tasks it holds, and for
/// every other task directory under `<state.dir>/<application.id>/` — except the tasks
/// another thread of this instance holds open or was last assigned as active, which that
/// thread reports — the sum of the offsets in its `.checkpoint` (a task without a readable
/// or non-empty checkpoint is left out).
fn task_offset_sums(shared: &Arc<AppShared>, thread: usize) -> TaskOffsetSumsFn {
    let shared = Arc::downgrade(shared);
    Arc::new(move |active: &BTreeSet<TaskId>| {
        let mut sums: BTreeMap<TaskId, i64> = active.iter().map(|t| (*t, LATEST_OFFSET)).collect();
        let Some(shared) = shared.upgrade() else {
            return sums;
        };
        // The standbys this thread holds: their live changelog positions (Kafka reports an
        // owned standby's in-memory offsets, a task it does not own from its checkpoint).
        if let Some(standbys) = shared.standby_offsets.lock().get(&thread) {
            for (task, offsets) in standbys {
                sums.entry(*task)
                    .or_insert_with(|| offset_sum(offsets.values()));
            }
        }
        // Tasks other threads of the instance hold (or held as active) are theirs to report.
        let mut others: BTreeSet<TaskId> = shared
            .last_assigned
            .lock()
            .iter()
            .filter(|(i, _)| **i != thread)
            .flat_map(|(_, ts)| ts.iter().copied())
            .collect();
        others.extend(
            shared
                .task_dir_owners
                .lock()
                .iter()
                .filter(|(_, owner)| **owner != thread)
                .map(|(t, _)| *t),
        );
        let config = &shared.config;
        let dir = config.state_dir.join(&config.application_id);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return sums;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(task) = name.to_str().and_then(parse_task_id) else {
                continue;
            };
            if sums.contains_key(&task) || others.contains(&task) {
                continue;
            }
            let Some(name) = name.to_str() else { continue };
            let offsets =
                state_store::TaskDirectory::new(&config.state_dir, &config.application_id, name)
                    .and_then(|d| d.checkpoint().read());
            match offsets {
                Ok(offsets) if !offsets.is_empty() => {
                    sums.insert(task, offset_sum(offsets.values()));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(task = %task, error = %e, "unreadable checkpoint; the task's state is not reported");
                }
            }
        }
        sums
    })
}

/// The sum of a task's changelog offsets (negative ones skipped; `i64::MAX` on overflow).
fn offset_sum<'a>(offsets: impl Iterator<Item = &'a i64>) -> i64 {
    offsets
        .filter(|o| **o >= 0)
        .try_fold(0i64, |acc, o| acc.checked_add(*o))
        .unwrap_or(i64::MAX)
}

/// A task directory name `<subtopology>_<partition>`.
fn parse_task_id(name: &str) -> Option<TaskId> {
    let (sub, partition) = name.split_once('_')?;
    Some(TaskId {
        subtopology: sub.parse().ok()?,
        partition: partition.parse().ok()?,
    })
}

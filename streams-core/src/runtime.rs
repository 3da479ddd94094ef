//! `StreamsApp`: runs a topology with N stream threads against a cluster (Kafka's
//! `KafkaStreams`), and the stream thread loop with its commit cycle.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use broker_embedded::ProduceRecord;
use parking_lot::{Condvar, Mutex};
use state_store::{RocksDbConfig, RocksDbResources, StoreMetrics, TopicPartition};

use crate::assignment::{AssignmentSpec, StickyTaskAssignor};
use crate::client::{
    AssignmentEvent, Cluster, ClusterConsumer, ClusterProducer, InternalTopicSpec, Subscription,
};
use crate::collector::{default_partition, OutgoingRecord, RecordCollector, SharedCollector};
use crate::config::{StreamsConfig, UncaughtErrorPolicy};
use crate::error::{Result, StreamsError};
use crate::task::{SystemClock, Task, TaskId, TaskInputs, TaskSettings};
use crate::task_manager::TaskManager;
use crate::topology::{NodeKind, OffsetReset, SinkTopic, SourceTopics, Subtopology, Topology};

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

struct AppShared {
    config: StreamsConfig,
    topology: Arc<Topology>,
    cluster: Arc<dyn Cluster>,
    state: Mutex<StreamsState>,
    state_changed: Condvar,
    listener: Mutex<Option<StateListener>>,
    shutdown: AtomicBool,
    errors: Mutex<Vec<String>>,
    /// Per thread: true once it has its assignment and restored its tasks.
    thread_running: Mutex<BTreeMap<usize, bool>>,
    processed: AtomicU64,
    resolved: Mutex<Vec<ResolvedSubtopology>>,
    /// This instance's process id in the group's subscriptions.
    process_id: uuid::Uuid,
    /// Per thread: the active tasks it runs.
    active_tasks: Mutex<BTreeMap<usize, BTreeSet<TaskId>>>,
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
        topology.subtopologies()?;
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
                resolved: Mutex::new(Vec::new()),
                process_id: uuid::Uuid::new_v4(),
                active_tasks: Mutex::new(BTreeMap::new()),
            }),
            threads: Vec::new(),
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

    /// Errors that stopped threads, oldest first.
    pub fn errors(&self) -> Vec<String> {
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

    /// This instance's process id (sent in its group subscriptions).
    pub fn process_id(&self) -> uuid::Uuid {
        self.shared.process_id
    }

    /// Records processed by all tasks so far.
    pub fn processed_records(&self) -> u64 {
        self.shared.processed.load(Ordering::Relaxed)
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
        self.shared.set_state(StreamsState::Rebalancing);
        let n = self.shared.config.num_stream_threads;
        // Create every consumer (and so every group member) before any thread polls, so
        // the first rebalance already spreads the tasks over all threads.
        let mut consumers = Vec::new();
        for i in 0..n {
            let client_id = format!(
                "{}-StreamThread-{}",
                self.shared.config.application_id,
                i + 1
            );
            let mut consumer = self
                .shared
                .cluster
                .consumer(&self.shared.config.application_id, &client_id)?;
            consumer.subscribe(subscription(&self.shared))?;
            let producer = self.shared.cluster.producer(&client_id)?;
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
                    .push("a stream thread panicked".into());
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
        if !self.threads.is_empty() {
            self.close();
        }
    }
}

/// A stream thread's group subscription: the input topics with their reset policies, and
/// every task with its input partitions for the leader's [`StickyTaskAssignor`].
fn subscription(shared: &AppShared) -> Subscription {
    let mut topics = Vec::new();
    let mut tasks = BTreeMap::new();
    for r in shared.resolved.lock().iter() {
        for (topic, &node) in &r.inputs {
            let reset = match &shared.topology.nodes[node].kind {
                NodeKind::Source { offset_reset, .. } => *offset_reset,
                _ => OffsetReset::Earliest,
            };
            topics.push((topic.clone(), reset));
        }
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
        }
    }
    Subscription {
        topics,
        process_id: shared.process_id,
        assignment: AssignmentSpec {
            tasks,
            assignor: Arc::new(StickyTaskAssignor),
        },
        session_timeout: shared.config.session_timeout,
        rebalance_timeout: shared.config.max_poll_interval,
    }
}

/// Resolves source topics, checks co-partitioning, sizes and creates internal topics.
pub(crate) fn prepare_topics(
    topology: &Topology,
    config: &StreamsConfig,
    cluster: &dyn Cluster,
) -> Result<Vec<ResolvedSubtopology>> {
    let app = &config.application_id;
    let subs = topology.subtopologies()?;
    let all_topics = cluster.topic_names()?;
    let mut resolved = Vec::new();
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    for sub in &subs {
        let mut inputs = BTreeMap::new();
        for &i in &sub.nodes {
            let node = &topology.nodes[i];
            if let NodeKind::Source { topics, .. } = &node.kind {
                let names: Vec<String> = match topics {
                    SourceTopics::Names(n) => n
                        .iter()
                        .map(|t| topology.physical_topic_name(app, t))
                        .collect(),
                    SourceTopics::Pattern(re) => all_topics
                        .iter()
                        .filter(|t| re.is_match(t) && !t.starts_with("__"))
                        .cloned()
                        .collect(),
                };
                for t in names {
                    if let Some(other) = claimed.insert(t.clone(), node.name.clone()) {
                        return Err(StreamsError::Topology(
                            crate::error::TopologyError::InvalidSource {
                                node: node.name.clone(),
                                reason: format!("topic `{t}` is also read by source `{other}`"),
                            },
                        ));
                    }
                    inputs.insert(t, i);
                }
            }
        }
        resolved.push(ResolvedSubtopology {
            sub: sub.clone(),
            inputs,
            partitions: 0,
        });
    }
    // Partition counts of repartition topics: fixed, or those of the sub-topology writing
    // to them (its own inputs' count), iterated until every count is known.
    let mut counts: BTreeMap<String, i32> = BTreeMap::new();
    for (name, t) in &topology.internal_topics {
        if let Some(n) = t.partitions {
            counts.insert(topology.physical_topic_name(app, name), n);
        }
    }
    for _round in 0..=subs.len() {
        for r in &resolved {
            let mut max = 0;
            let mut known = true;
            for t in r.inputs.keys() {
                let is_internal = topology
                    .internal_topics
                    .keys()
                    .any(|n| &topology.physical_topic_name(app, n) == t);
                match (counts.get(t), is_internal) {
                    (Some(&n), _) => max = max.max(n),
                    (None, true) => known = false,
                    (None, false) => match cluster.partitions(t)? {
                        Some(n) => {
                            counts.insert(t.clone(), n);
                            max = max.max(n);
                        }
                        None => return Err(StreamsError::MissingSourceTopic(t.clone())),
                    },
                }
            }
            if !known || max == 0 {
                continue;
            }
            for &i in &r.sub.nodes {
                if let NodeKind::Sink {
                    topic: SinkTopic::Fixed(t),
                    ..
                } = &topology.nodes[i].kind
                {
                    if topology.is_internal_topic(t) {
                        counts
                            .entry(topology.physical_topic_name(app, t))
                            .or_insert(max);
                    }
                }
            }
        }
    }
    for r in &mut resolved {
        let mut per_topic = Vec::new();
        for t in r.inputs.keys() {
            let n = counts.get(t).copied().ok_or_else(|| StreamsError::InternalTopic {
                topic: t.clone(),
                reason: "its partition count cannot be derived (no upstream sub-topology with known inputs)".into(),
            })?;
            per_topic.push((t.clone(), n));
        }
        let distinct: BTreeSet<i32> = per_topic.iter().map(|(_, n)| *n).collect();
        if distinct.len() > 1 {
            return Err(StreamsError::NotCopartitioned {
                subtopology: r.sub.id,
                counts: per_topic
                    .iter()
                    .map(|(t, n)| format!("{t}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        r.partitions = distinct.into_iter().next().unwrap_or(0);
    }
    // Create repartition topics and changelogs (or check the existing ones).
    let mut wanted = Vec::new();
    for name in topology.internal_topics.keys() {
        let physical = topology.physical_topic_name(app, name);
        let Some(&n) = counts.get(&physical) else {
            continue;
        };
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_owned(), "delete".to_owned());
        configs.insert("retention.ms".to_owned(), "-1".to_owned());
        configs.insert("segment.bytes".to_owned(), (50 << 20).to_string());
        wanted.push(InternalTopicSpec {
            name: physical,
            partitions: n,
            replication_factor: config.replication_factor,
            configs,
        });
    }
    for r in &resolved {
        for store in &r.sub.stores {
            let Some(spec) = topology.stores.get(store) else {
                continue;
            };
            if !spec.is_logging() {
                continue;
            }
            wanted.push(InternalTopicSpec {
                name: crate::names::changelog_topic(app, store),
                partitions: r.partitions,
                replication_factor: config.replication_factor,
                configs: spec.changelog_config(),
            });
        }
    }
    for spec in wanted {
        match cluster.partitions(&spec.name)? {
            Some(n) if n != spec.partitions => {
                return Err(StreamsError::InternalTopic {
                    topic: spec.name,
                    reason: format!(
                        "it has {n} partitions, the topology needs {}",
                        spec.partitions
                    ),
                })
            }
            Some(_) => {}
            None => {
                tracing::info!(topic = %spec.name, partitions = spec.partitions, "creating internal topic");
                cluster.create_topic(&spec)?;
            }
        }
    }
    Ok(resolved)
}

/// The record collector of a stream thread: buffers per partition, sends batches.
struct ClusterCollector {
    producer: Box<dyn ClusterProducer>,
    cluster: Arc<dyn Cluster>,
    pending: BTreeMap<TopicPartition, Vec<ProduceRecord>>,
    partitions: HashMap<String, i32>,
    round_robin: HashMap<String, i32>,
    produced: BTreeMap<TopicPartition, i64>,
}

const BATCH_RECORDS: usize = 2000;

/// Buffered records above which a partition is paused (Kafka's
/// `buffered.records.per.partition`).
const BUFFERED_RECORDS_PER_PARTITION: usize = 1000;

/// Records a task processes before the thread moves on (to the next task, to polling, to
/// punctuating and committing): bounds the latency one busy task adds to the others.
const PROCESS_BUDGET: usize = 200;

impl RecordCollector for ClusterCollector {
    fn partition_count(&mut self, topic: &str) -> Result<i32> {
        if let Some(&n) = self.partitions.get(topic) {
            return Ok(n);
        }
        let n = self
            .cluster
            .partitions(topic)?
            .ok_or_else(|| StreamsError::Cluster(format!("topic `{topic}` does not exist")))?;
        self.partitions.insert(topic.to_owned(), n);
        Ok(n)
    }

    fn send(&mut self, r: OutgoingRecord) -> Result<()> {
        let partition = match r.partition {
            Some(p) => p,
            None => {
                let n = self.partition_count(&r.topic)?;
                match &r.key {
                    Some(k) => default_partition(k, n),
                    None => {
                        let next = self.round_robin.entry(r.topic.clone()).or_insert(0);
                        *next = (*next + 1) % n.max(1);
                        *next
                    }
                }
            }
        };
        let tp = TopicPartition::new(r.topic, partition);
        let batch = self.pending.entry(tp.clone()).or_default();
        batch.push(ProduceRecord {
            key: r.key.map(bytes::Bytes::from),
            value: r.value.map(bytes::Bytes::from),
            headers: r.headers,
            timestamp: Some(r.timestamp),
        });
        if batch.len() >= BATCH_RECORDS {
            let records = std::mem::take(batch);
            self.producer.send(&tp, records)?;
        }
        Ok(())
    }

    fn send_pending(&mut self) -> Result<()> {
        for (tp, records) in std::mem::take(&mut self.pending) {
            self.producer.send(&tp, records)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.send_pending()?;
        for (tp, o) in self.producer.flush()? {
            let e = self.produced.entry(tp).or_insert(o);
            *e = (*e).max(o);
        }
        Ok(())
    }

    fn produced_offsets(&self) -> &BTreeMap<TopicPartition, i64> {
        &self.produced
    }
}

struct StreamThread {
    shared: Arc<AppShared>,
    index: usize,
    consumer: Box<dyn ClusterConsumer>,
    tasks: TaskManager,
    settings: Arc<TaskSettings>,
    rocksdb: RocksDbResources,
    metrics: Arc<StoreMetrics>,
    last_commit: Instant,
}

fn run_thread(
    shared: Arc<AppShared>,
    index: usize,
    client_id: String,
    consumer: Box<dyn ClusterConsumer>,
    producer: Box<dyn ClusterProducer>,
    rocksdb: RocksDbResources,
    metrics: Arc<StoreMetrics>,
) {
    let span = tracing::info_span!("stream_thread", thread = %client_id);
    let _g = span.enter();
    let mut consumer = Some(consumer);
    let mut producer = Some(producer);
    loop {
        let (c, p) = match (consumer.take(), producer.take()) {
            (Some(c), Some(p)) => (c, p),
            _ => {
                // A replacement thread: new consumer and producer.
                let made = shared
                    .cluster
                    .consumer(&shared.config.application_id, &client_id)
                    .and_then(|mut c| {
                        c.subscribe(subscription(&shared))?;
                        Ok(c)
                    })
                    .and_then(|c| Ok((c, shared.cluster.producer(&client_id)?)));
                match made {
                    Ok(x) => x,
                    Err(e) => {
                        fail(&shared, index, &e, UncaughtErrorPolicy::ShutdownClient);
                        return;
                    }
                }
            }
        };
        let mut thread = StreamThread::new(
            Arc::clone(&shared),
            index,
            c,
            p,
            rocksdb.clone(),
            Arc::clone(&metrics),
        );
        match thread.run() {
            Ok(()) => {
                shared.thread_running.lock().remove(&index);
                return;
            }
            Err(e) => {
                thread.close_dirty();
                let policy = shared.config.uncaught;
                fail(&shared, index, &e, policy);
                if policy != UncaughtErrorPolicy::ReplaceThread
                    || shared.shutdown.load(Ordering::SeqCst)
                {
                    return;
                }
                tracing::warn!("replacing the failed stream thread");
            }
        }
    }
}

fn fail(shared: &AppShared, index: usize, e: &StreamsError, policy: UncaughtErrorPolicy) {
    tracing::error!(error = %e, ?policy, "stream thread failed");
    shared.errors.lock().push(e.to_string());
    match policy {
        UncaughtErrorPolicy::ReplaceThread => {
            shared.thread_state(index, false);
        }
        UncaughtErrorPolicy::ShutdownThread => {
            let none_left = {
                let mut t = shared.thread_running.lock();
                t.remove(&index);
                t.is_empty()
            };
            if none_left {
                shared.set_state(StreamsState::Error);
            }
        }
        UncaughtErrorPolicy::ShutdownClient => {
            shared.thread_running.lock().remove(&index);
            shared.set_state(StreamsState::Error);
            shared.shutdown.store(true, Ordering::SeqCst);
        }
    }
}

impl StreamThread {
    fn new(
        shared: Arc<AppShared>,
        index: usize,
        consumer: Box<dyn ClusterConsumer>,
        producer: Box<dyn ClusterProducer>,
        rocksdb: RocksDbResources,
        metrics: Arc<StoreMetrics>,
    ) -> Self {
        let c = &shared.config;
        let settings = Arc::new(TaskSettings {
            application_id: c.application_id.clone(),
            deserialization: c.deserialization.clone(),
            invalid_timestamps: c.invalid_timestamps,
            // One record-cache budget per thread (Kafka's ThreadCache), shared by the
            // stores of all the thread's tasks.
            cache: state_store::ThreadCache::new(c.cache_max_bytes / c.num_stream_threads.max(1)),
            serdes: c.serdes.clone(),
            wipe_unclean: false,
        });
        let collector: SharedCollector = Arc::new(Mutex::new(Box::new(ClusterCollector {
            producer,
            cluster: Arc::clone(&shared.cluster),
            pending: BTreeMap::new(),
            partitions: HashMap::new(),
            round_robin: HashMap::new(),
            produced: BTreeMap::new(),
        })));
        StreamThread {
            shared,
            index,
            consumer,
            tasks: TaskManager::new(collector),
            settings,
            rocksdb,
            metrics,
            last_commit: Instant::now(),
        }
    }

    fn run(&mut self) -> Result<()> {
        let config = self.shared.config.clone();
        while !self.shared.shutdown.load(Ordering::SeqCst) {
            // Backpressure as Kafka's buffered.records.per.partition: a partition whose
            // buffer is full is not fetched until its task catches up.
            self.consumer.resume(&self.tasks.input_partitions());
            self.consumer
                .pause(&self.tasks.full_partitions(BUFFERED_RECORDS_PER_PARTITION));
            let timeout = if self.tasks.has_buffered() {
                Duration::ZERO
            } else {
                config.poll
            };
            let poll = self.consumer.poll(timeout, config.max_poll_records)?;
            for event in poll.events {
                match event {
                    AssignmentEvent::Revoked(tps) => self.on_revoked(&tps)?,
                    AssignmentEvent::Assigned(tps) => self.on_assigned(&tps)?,
                    AssignmentEvent::Lost(_) => self.on_lost(),
                }
            }
            for (tp, records) in poll.records {
                self.tasks.add_records(&tp, records);
            }
            let processed = self
                .tasks
                .process(PROCESS_BUDGET.min(config.max_poll_records))?;
            self.shared
                .processed
                .fetch_add(processed, Ordering::Relaxed);
            self.tasks.collector().lock().send_pending()?;
            self.tasks.punctuate_wall_clock()?;
            if self.tasks.commit_requested() || self.last_commit.elapsed() >= config.commit_interval
            {
                self.commit()?;
            }
        }
        self.commit()?;
        let closed = self.tasks.close_clean();
        self.set_active_tasks();
        closed?;
        self.consumer.close()
    }

    /// The commit, through the task manager (the one commit sequence of the runtime). A
    /// commit the group refuses (the tasks migrated to another member: this thread fell out
    /// of the group or its generation) closes every task dirty, as Kafka Streams handles a
    /// `TaskMigratedException`; the consumer rejoins at the next poll.
    fn commit(&mut self) -> Result<()> {
        let consumer = &mut self.consumer;
        match self.tasks.commit(&mut |offsets| consumer.commit(offsets)) {
            Ok(()) => {}
            Err(StreamsError::TaskMigrated(reason)) => {
                tracing::warn!(%reason, "tasks migrated: closing them without committing");
                self.on_lost();
            }
            Err(e) => return Err(e),
        }
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Publishes this thread's active tasks (for [`StreamsApp::active_tasks`]).
    fn set_active_tasks(&self) {
        let ids: BTreeSet<TaskId> = self.tasks.ids().into_iter().collect();
        let mut all = self.shared.active_tasks.lock();
        if ids.is_empty() {
            all.remove(&self.index);
        } else {
            all.insert(self.index, ids);
        }
    }

    fn on_revoked(&mut self, _tps: &[TopicPartition]) -> Result<()> {
        self.shared.thread_state(self.index, false);
        self.commit()?;
        let closed = self.tasks.close_clean();
        self.set_active_tasks();
        closed
    }

    /// The partitions went to another member without a commit: close the tasks dirty (their
    /// uncommitted work is redone by the new owner).
    fn on_lost(&mut self) {
        self.shared.thread_state(self.index, false);
        self.tasks.close_dirty();
        self.set_active_tasks();
    }

    fn close_dirty(&mut self) {
        self.tasks.close_dirty();
        self.set_active_tasks();
        let _ = self.consumer.close();
    }

    fn on_assigned(&mut self, tps: &[TopicPartition]) -> Result<()> {
        let resolved = self.shared.resolved.lock().clone();
        let mut ids = BTreeSet::new();
        for tp in tps {
            if let Some(r) = resolved.iter().find(|r| r.inputs.contains_key(&tp.topic)) {
                ids.insert((
                    TaskId {
                        subtopology: u32::try_from(r.sub.id).unwrap_or(u32::MAX),
                        partition: tp.partition,
                    },
                    r.sub.id,
                ));
            }
        }
        let settings = Arc::clone(&self.settings);
        let mut source = self.shared.cluster.changelog_source()?;
        for (id, sub) in ids {
            let Some(r) = resolved.iter().find(|r| r.sub.id == sub) else {
                continue;
            };
            let _span = tracing::info_span!("task", task = %id).entered();
            let (shared, collector) = (&self.shared, self.tasks.collector().clone());
            let (rocksdb, metrics) = (&self.rocksdb, &self.metrics);
            let make = || {
                Task::new(
                    &shared.topology,
                    &r.sub,
                    id,
                    &TaskInputs {
                        topics: r.inputs.clone(),
                    },
                    Arc::clone(&settings),
                    Arc::clone(&collector),
                    Arc::new(SystemClock),
                    Some(&shared.config.state_dir),
                    Some(rocksdb),
                    Arc::clone(metrics),
                )
            };
            self.tasks.add(&make, source.as_mut())?;
        }
        tracing::info!(tasks = ?self.tasks.ids().iter().map(ToString::to_string).collect::<Vec<_>>(), "tasks assigned");
        self.set_active_tasks();
        self.shared.thread_state(self.index, true);
        Ok(())
    }
}

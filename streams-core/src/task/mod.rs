//! Tasks: one per (sub-topology, partition). A task owns its processor instances and state
//! stores, buffers the records of its input partitions, picks the next record by timestamp
//! across them, and takes part in the commit cycle.

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
#[cfg(feature = "test-utils")]
use std::sync::atomic::AtomicI64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::record::ConsumedRecord as RawRecord;
use state_store::{
    LoggingRestoreListener, PreviousShutdown, Restorer, RocksDbResources, StateStore, StoreMetrics,
    TaskDirectory, TopicPartition,
};

use crate::collector::{CollectorChangelog, OutgoingRecord, SharedCollector};
use crate::config::{DeserializationHandler, InvalidTimestampPolicy};
use crate::error::{Result, StreamsError};
use crate::processor::{
    ErasedFlushListener, ErasedProcessor, FlushListener, PunctuationType, ScheduleId,
};
use crate::record::{Header, InFlight, Record, RecordMetadata};
use crate::serde::SerdeRegistry;
use crate::sink::ErasedSink;
use crate::source::{Filled, SourceHead};
use crate::store::{open_store, OpenStore, StoreEnv, StoreHost};
use crate::topology::{NodeKind, Subtopology, Topology};

mod commit;
mod context;
mod input;
pub(crate) mod offset_metadata;
mod standby;

/// Identifies a task: sub-topology and partition, printed `<subtopology>_<partition>` as in
/// Kafka Streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    /// The sub-topology.
    pub subtopology: u32,
    /// The partition of the sub-topology's input topics.
    pub partition: i32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// A source of the current time in milliseconds.
pub(crate) trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The system clock.
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told (the test driver's).
#[cfg(feature = "test-utils")]
#[derive(Default)]
pub(crate) struct MockClock(pub(crate) AtomicI64);

#[cfg(feature = "test-utils")]
impl Clock for MockClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub(crate) enum NodeInstance {
    Source,
    Processor(Box<dyn ErasedProcessor>),
    Sink(Box<dyn ErasedSink>),
}

pub(crate) struct NodeInfo {
    pub(crate) name: String,
    pub(crate) children: Vec<usize>,
    pub(crate) stores: Vec<String>,
}

struct Schedule {
    id: ScheduleId,
    node: usize,
    interval: i64,
    kind: PunctuationType,
    next: Option<i64>,
}

/// Names of topics as the cluster knows them.
#[derive(Debug, Clone)]
pub(crate) struct TopicNames {
    pub(crate) application_id: String,
    pub(crate) internal: std::collections::BTreeSet<String>,
}

impl TopicNames {
    pub(crate) fn physical(&self, topic: &str) -> String {
        if self.internal.contains(topic) {
            crate::names::internal_topic(&self.application_id, topic)
        } else {
            topic.to_owned()
        }
    }
}

/// What processors reach through their context: the nodes, stores and collector of a task.
pub(crate) struct TaskContext {
    pub(crate) task_id: TaskId,
    pub(crate) application_id: Arc<str>,
    info: Arc<Vec<NodeInfo>>,
    nodes: Vec<Option<NodeInstance>>,
    pub(crate) stores: BTreeMap<String, OpenStore>,
    pub(crate) collector: SharedCollector,
    pub(crate) metadata: Option<RecordMetadata>,
    pub(crate) stream_time: i64,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) emit_interval_ms: i64,
    /// Kafka's `ProcessorMetadata`: values processors keep with the committed offsets
    /// (restored from them when the task starts).
    pub(crate) processor_metadata: BTreeMap<String, i64>,
    schedules: Vec<Schedule>,
    next_schedule: u64,
    pub(crate) commit_requested: bool,
    topics: Arc<TopicNames>,
    pub(crate) serdes: SerdeRegistry,
    /// Per cached store, the processor that owns its cache flushes and its listener.
    flush_listeners: BTreeMap<String, FlushListener>,
    /// Records dropped by this task (shared with the application's total).
    dropped: Arc<AtomicU64>,
    /// See `TaskSettings::outer_join_emit_interval_ms`.
    pub(crate) outer_join_emit_interval_ms: i64,
    /// The global stores (read-only here).
    pub(crate) globals: Arc<crate::global::GlobalState>,
}

/// One input partition's buffered records.
struct PartitionQueue {
    partition: TopicPartition,
    /// Topic name as the topology names it (for record metadata).
    source: usize,
    raw: VecDeque<RawRecord>,
    /// The next record, deserialized (empty when `head_offset` is `None`).
    head: Box<dyn SourceHead>,
    /// Offset of the record in `head`.
    head_offset: Option<i64>,
    partition_time: i64,
    /// When an empty, caught-up partition stops holding the task back.
    idle_deadline: Option<i64>,
}

/// Records of a partition on the broker that the consumer has not fetched (`None`: unknown).
pub(crate) type FetchedLag<'a> = dyn Fn(&TopicPartition) -> Option<i64> + 'a;

/// Settings a task needs from the application config.
#[derive(Clone)]
pub(crate) struct TaskSettings {
    pub(crate) application_id: String,
    pub(crate) deserialization: DeserializationHandler,
    pub(crate) invalid_timestamps: InvalidTimestampPolicy,
    /// The record-cache budget shared by all the stores of the thread's tasks.
    pub(crate) cache: state_store::ThreadCache,
    pub(crate) serdes: SerdeRegistry,
    /// Exactly-once (`exactly_once_v2`): local state found after an unclean shutdown is
    /// wiped and restored (it may hold writes of an aborted transaction), and checkpoints
    /// are written only when a task is closed cleanly, as Kafka Streams does under EOS.
    pub(crate) exactly_once: bool,
    /// `max.task.idle.ms` (-1: never wait for empty partitions).
    pub(crate) max_task_idle_ms: i64,
    /// The outer-join emit interval (ms) processors read through
    /// `ProcessorContext::outer_join_emit_interval_ms`.
    pub(crate) outer_join_emit_interval_ms: i64,
    /// Kafka's `__emit.interval.ms.kstreams.windowed.aggregation__` in ms (1000 in an
    /// application, 0 in the test driver unless configured).
    pub(crate) emit_interval_ms: i64,
    /// Records dropped by the tasks (skipped as undeserializable or with an invalid
    /// timestamp, null keys at a repartition sink, null keys or values at an aggregation):
    /// Kafka's `dropped-records-total`, summed over the application instance.
    pub(crate) dropped: Arc<AtomicU64>,
    /// The application instance's global stores, read by every task.
    pub(crate) globals: Arc<crate::global::GlobalState>,
}

/// Changelog records written since the last checkpoint above which a commit also flushes
/// the stores and writes a checkpoint (Kafka Streams' `OFFSET_DELTA_THRESHOLD_FOR_CHECKPOINT`).
const CHECKPOINT_DELTA: i64 = 10_000;

/// Counters of one task.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TaskCounters {
    pub(crate) processed: u64,
    pub(crate) skipped_deserialization: u64,
    pub(crate) skipped_timestamp: u64,
    /// Records whose null key or value the source's types cannot hold.
    pub(crate) skipped_null: u64,
    /// Records processed while an empty partition's `max.task.idle.ms` had run out (Kafka's
    /// enforced processing).
    pub(crate) enforced_processing: u64,
    /// Checkpoints written while running (not counting the one at a clean close).
    pub(crate) checkpoints: u64,
    /// Changelog records applied by restoration (before processing).
    pub(crate) restored: u64,
    /// Changelog records applied while a standby.
    pub(crate) standby_updates: u64,
}

pub(crate) struct Task {
    pub(crate) id: TaskId,
    ctx: TaskContext,
    queues: Vec<PartitionQueue>,
    /// Next offset to commit per input partition.
    consumed: BTreeMap<TopicPartition, i64>,
    committed: BTreeMap<TopicPartition, i64>,
    dir: Option<TaskDirectory>,
    changelogs: BTreeMap<String, TopicPartition>,
    /// The changelogs that are source topics of this task (source tables under
    /// `topology.optimization=reuse.ktable.source.topics`): their offsets follow the
    /// committed input offsets, not produced records.
    source_changelogs: std::collections::BTreeSet<TopicPartition>,
    /// Where restoring a source-topic changelog stops (the committed input offset, as
    /// Kafka's `StoreChangelogReader` bounds it), instead of the partition's end.
    restore_limits: BTreeMap<TopicPartition, i64>,
    /// Offset of the last changelog record each store reflects.
    store_offsets: BTreeMap<TopicPartition, i64>,
    /// `store_offsets` at the last checkpoint.
    checkpointed: BTreeMap<TopicPartition, i64>,
    /// Offsets of a checkpoint waiting for its stores' background flush.
    pending_checkpoint: Option<BTreeMap<TopicPartition, i64>>,
    settings: Arc<TaskSettings>,
    pub(crate) counters: TaskCounters,
    initialized: bool,
    closed: bool,
    /// A standby task: never processes, follows its changelogs (`standby.rs`).
    standby: bool,
    /// A standby's next offset to read per changelog partition.
    standby_next: BTreeMap<TopicPartition, i64>,
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task").field("id", &self.id).finish()
    }
}

/// Where a task's source topics map to its source nodes.
pub(crate) struct TaskInputs {
    /// Physical topic -> source node, for the topics this task reads.
    pub(crate) topics: BTreeMap<String, usize>,
}

impl Task {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        topology: &Topology,
        sub: &Subtopology,
        id: TaskId,
        inputs: &TaskInputs,
        settings: Arc<TaskSettings>,
        collector: SharedCollector,
        clock: Arc<dyn Clock>,
        state_dir: Option<&std::path::Path>,
        rocksdb: Option<&RocksDbResources>,
        metrics: Arc<StoreMetrics>,
    ) -> Result<Task> {
        let topics = Arc::new(TopicNames {
            application_id: settings.application_id.clone(),
            internal: topology.internal_topics.keys().cloned().collect(),
        });
        let mut nodes: Vec<Option<NodeInstance>> = Vec::with_capacity(topology.nodes.len());
        let mut info = Vec::with_capacity(topology.nodes.len());
        let mut sources = BTreeMap::new();
        for (i, def) in topology.nodes.iter().enumerate() {
            let in_task = sub.nodes.contains(&i);
            let mut stores = Vec::new();
            let instance = match &def.kind {
                NodeKind::Source { make, .. } if in_task => {
                    sources.insert(i, make(&settings.serdes)?);
                    Some(NodeInstance::Source)
                }
                NodeKind::Processor { make, stores: s } => {
                    stores.clone_from(s);
                    in_task.then(|| NodeInstance::Processor(make()))
                }
                NodeKind::Sink { make, .. } if in_task => {
                    Some(NodeInstance::Sink(make(&settings.serdes)?))
                }
                _ => None,
            };
            nodes.push(instance);
            info.push(NodeInfo {
                name: def.name.clone(),
                children: def.children.clone(),
                stores,
            });
        }
        let dir = match state_dir {
            Some(d) if !sub.stores.is_empty() => Some(TaskDirectory::new(
                d,
                &settings.application_id,
                &id.to_string(),
            )?),
            _ => None,
        };
        let mut changelogs = BTreeMap::new();
        let mut source_changelogs = std::collections::BTreeSet::new();
        let mut store_offsets = BTreeMap::new();
        let mut opened = BTreeMap::new();
        if let Some(dir) = &dir {
            let start = dir.open()?;
            if start.previous_shutdown == PreviousShutdown::Unclean && settings.exactly_once {
                dir.wipe_stores()?;
            } else {
                store_offsets = start.checkpoint;
            }
        }
        let env = StoreEnv {
            dir: dir.as_ref(),
            rocksdb,
            cache: settings.cache.clone(),
            metrics,
            application_id: &settings.application_id,
        };
        for name in &sub.stores {
            let Some(spec) = topology.stores.get(name) else {
                continue;
            };
            if let Some(topic) = topology
                .source_changelogs
                .get(name)
                .filter(|_| !spec.is_logging())
            {
                let tp = TopicPartition::new(
                    topology.physical_topic_name(&settings.application_id, topic),
                    id.partition,
                );
                changelogs.insert(name.clone(), tp.clone());
                source_changelogs.insert(tp);
            }
            let sink = if spec.is_logging() {
                let tp = TopicPartition::new(
                    crate::names::changelog_topic(&settings.application_id, name),
                    id.partition,
                );
                changelogs.insert(name.clone(), tp.clone());
                Some(Box::new(CollectorChangelog {
                    collector: collector.clone(),
                    partition: tp,
                }) as Box<dyn state_store::ChangelogSink>)
            } else {
                None
            };
            opened.insert(name.clone(), open_store(spec, &env, sink)?);
        }
        // A checkpoint entry for a changelog this task no longer has is stale.
        store_offsets.retain(|tp, _| changelogs.values().any(|c| c == tp));
        let mut queues = Vec::new();
        for (topic, &source) in &inputs.topics {
            let Some(deserializer) = sources.get(&source) else {
                return Err(StreamsError::IllegalState(format!(
                    "topic `{topic}` maps to node {source}, which is not a source of task {id}"
                )));
            };
            queues.push(PartitionQueue {
                partition: TopicPartition::new(topic.clone(), id.partition),
                source,
                raw: VecDeque::new(),
                head: deserializer.new_head(),
                head_offset: None,
                partition_time: -1,
                idle_deadline: None,
            });
        }
        Ok(Task {
            id,
            ctx: TaskContext {
                task_id: id,
                application_id: Arc::from(settings.application_id.as_str()),
                info: Arc::new(info),
                nodes,
                stores: opened,
                collector,
                metadata: None,
                stream_time: -1,
                clock,
                emit_interval_ms: settings.emit_interval_ms,
                processor_metadata: BTreeMap::new(),
                schedules: Vec::new(),
                next_schedule: 0,
                commit_requested: false,
                topics,
                serdes: settings.serdes.clone(),
                flush_listeners: BTreeMap::new(),
                dropped: Arc::clone(&settings.dropped),
                outer_join_emit_interval_ms: settings.outer_join_emit_interval_ms,
                globals: Arc::clone(&settings.globals),
            },
            queues,
            consumed: BTreeMap::new(),
            committed: BTreeMap::new(),
            dir,
            changelogs,
            source_changelogs,
            restore_limits: BTreeMap::new(),
            checkpointed: store_offsets.clone(),
            pending_checkpoint: None,
            store_offsets,
            settings,
            counters: TaskCounters::default(),
            initialized: false,
            closed: false,
            standby: false,
            standby_next: BTreeMap::new(),
        })
    }

    /// Input partitions of this task.
    /// The changelog partitions of this task's stores.
    pub(crate) fn changelog_partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.changelogs.values()
    }

    pub(crate) fn input_partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.queues.iter().map(|q| &q.partition)
    }

    /// The changelog partitions of this task that are its own source partitions (source
    /// tables reusing their topic as changelog).
    pub(crate) fn source_changelog_partitions(&self) -> Vec<TopicPartition> {
        self.source_changelogs.iter().cloned().collect()
    }

    /// Restores source-topic changelog `tp` only up to `offset` (exclusive): the committed
    /// input offset; what follows is processed again from there.
    pub(crate) fn limit_restore(&mut self, tp: TopicPartition, offset: i64) {
        self.restore_limits.insert(tp, offset);
    }

    /// Replays every logged store's changelog from its checkpoint to the end.
    pub(crate) fn restore(
        &mut self,
        reader: &mut dyn crate::client::ChangelogSource,
    ) -> Result<()> {
        let restorer = Restorer::default();
        for (store, tp) in &self.changelogs {
            let Some(open) = self.ctx.stores.get_mut(store) else {
                continue;
            };
            let (log_start, mut end) = reader.offsets(tp)?;
            if let Some(&limit) = self.restore_limits.get(tp) {
                end = end.min(limit);
            }
            let source_topic = self.source_changelogs.contains(tp);
            let checkpoint = self.store_offsets.get(tp).copied();
            check_checkpoint(self.id, store, tp, checkpoint, log_start, end)?;
            let start = Restorer::start_offset(checkpoint, log_start);
            if start >= end {
                continue;
            }
            tracing::info!(task = %self.id, store, changelog = %tp, from = start, to = end, "restoring");
            let mut next = start;
            let mut records = Vec::new();
            while next < end {
                // Nothing more to read before `end`: the rest are transaction markers or
                // aborted records, which a read_committed read skips.
                let (last, batch) = read_changelog(reader, tp, next, source_topic)?
                    .unwrap_or((end - 1, Vec::new()));
                next = last + 1;
                records.extend(batch.into_iter().filter(|r| r.offset < end));
                if records.len() >= 50_000 || next >= end {
                    open.convert_restored(&mut records);
                    let progress = restorer.restore(
                        open.store.get_mut().restorable(),
                        tp,
                        start,
                        end,
                        std::mem::take(&mut records).into_iter().map(Ok),
                        &mut LoggingRestoreListener,
                    )?;
                    self.counters.restored += progress.records_restored;
                    if let Some(last) = progress.last_restored_offset {
                        self.store_offsets.insert(tp.clone(), last);
                    }
                }
            }
        }
        Ok(())
    }

    /// Calls `init` on every processor (once, after restoration).
    pub(crate) fn initialize(&mut self) -> Result<()> {
        if self.initialized {
            return Ok(());
        }
        for node in 0..self.ctx.nodes.len() {
            self.ctx.with_processor(node, |p, ctx| p.init(ctx, node))?;
        }
        self.initialized = true;
        Ok(())
    }

    /// Processes the buffered record with the lowest timestamp. Returns false if nothing
    /// was buffered.
    /// `fetched_lag` tells how many records of an input partition the consumer has not
    /// fetched yet (`None`: unknown), for `max.task.idle.ms`.
    pub(crate) fn process_one(&mut self, fetched_lag: &FetchedLag<'_>) -> Result<bool> {
        self.fill_heads()?;
        let now = self.ctx.clock.now_ms();
        if !self.ready_to_process(now, fetched_lag) {
            return Ok(false);
        }
        let mut best: Option<(usize, i64)> = None;
        for (i, q) in self.queues.iter().enumerate() {
            if q.head_offset.is_none() {
                continue;
            }
            if let Some(ts) = q.head.timestamp() {
                if best.is_none_or(|(_, b)| ts < b) {
                    best = Some((i, ts));
                }
            }
        }
        let Some((qi, ts)) = best else {
            return Ok(false);
        };
        let q = &mut self.queues[qi];
        let Some(offset) = q.head_offset.take() else {
            return Ok(false);
        };
        let source = q.source;
        self.ctx.stream_time = self.ctx.stream_time.max(ts);
        for s in self.ctx.stores.values() {
            s.timestamp.set(ts);
        }
        let metadata = match self.ctx.metadata.take() {
            // Reuse the topic name's allocation when the partition did not change.
            Some(mut m) if m.topic == q.partition.topic => {
                m.partition = q.partition.partition;
                m.offset = offset;
                m
            }
            _ => RecordMetadata {
                topic: q.partition.topic.clone(),
                partition: q.partition.partition,
                offset,
            },
        };
        self.ctx.metadata = Some(metadata);
        self.queues[qi].head.forward(&mut self.ctx, source)?;
        let q = &self.queues[qi];
        match self.consumed.get_mut(&q.partition) {
            Some(o) => *o = offset + 1,
            None => {
                self.consumed.insert(q.partition.clone(), offset + 1);
            }
        }
        self.counters.processed += 1;
        let now = self.ctx.stream_time;
        self.ctx.punctuate(PunctuationType::StreamTime, now)?;
        Ok(true)
    }

    /// Fires due wall-clock punctuations.
    pub(crate) fn punctuate_wall_clock(&mut self) -> Result<usize> {
        let now = self.ctx.clock.now_ms();
        self.ctx.punctuate(PunctuationType::WallClockTime, now)
    }

    /// True once a processor asked for a commit (cleared by [`Task::post_commit`]).
    pub(crate) fn commit_requested(&self) -> bool {
        self.ctx.commit_requested
    }

    /// Closes the task. `clean` after a final commit: closes processors, checkpoints and
    /// marks the state clean. Otherwise (an error) only closes the stores.
    pub(crate) fn close(&mut self, clean: bool) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let mut first_error = None;
        if self.initialized {
            for node in 0..self.ctx.nodes.len() {
                if let Err(e) = self.ctx.with_processor(node, |p, ctx| p.close(ctx, node)) {
                    first_error.get_or_insert(e);
                }
            }
        }
        if clean {
            self.update_store_offsets();
            let offsets = self.checkpoint_offsets();
            if let Some(dir) = &self.dir {
                let mut stores: Vec<&mut dyn StateStore> = self
                    .ctx
                    .stores
                    .values_mut()
                    .map(|s| s.store.get_mut().state())
                    .collect();
                if let Err(e) = dir.close_clean(&mut stores, &offsets) {
                    first_error.get_or_insert(e.into());
                }
                return first_error.map_or(Ok(()), Err);
            }
        }
        for s in self.ctx.stores.values_mut() {
            if clean {
                if let Err(e) = s.store.get_mut().state().flush() {
                    first_error.get_or_insert(e.into());
                }
            }
            if let Err(e) = s.store.get_mut().state().close() {
                first_error.get_or_insert(e.into());
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Closes the task's stores without flushing them and deletes their local state and
    /// checkpoint, so that a new instance of the task restores everything from the
    /// changelogs (what Kafka Streams does on a `TaskCorruptedException`).
    pub(crate) fn close_and_wipe(&mut self) -> Result<()> {
        self.closed = true;
        for s in self.ctx.stores.values_mut() {
            s.store.get_mut().state().close()?;
        }
        if let Some(dir) = &self.dir {
            dir.wipe_stores()?;
        }
        Ok(())
    }

    /// The task's key-value, window and session stores, shared with interactive queries.
    pub(crate) fn queryable_stores(&self) -> Vec<(String, crate::store::SharedTaskStore)> {
        self.ctx
            .stores
            .iter()
            .filter(|(_, s)| !matches!(s.spec.kind(), crate::store::StoreKind::TimeOrderedBuffer))
            .map(|(name, s)| (name.clone(), s.store.shared()))
            .collect()
    }

    /// Gives back the locks this thread holds on the task's stores (see
    /// `StoreSlot`), so that interactive queries can read them while the thread polls.
    pub(crate) fn release_store_locks(&mut self) {
        for s in self.ctx.stores.values_mut() {
            s.store.release();
        }
    }

    /// A store of this task (the test driver's store inspection).
    #[cfg(feature = "test-utils")]
    pub(crate) fn open_store(&self, name: &str) -> Option<&OpenStore> {
        self.ctx.stores.get(name)
    }

    /// The task's stream time.
    #[cfg_attr(not(feature = "test-utils"), allow(dead_code))]
    pub(crate) fn stream_time(&self) -> i64 {
        self.ctx.stream_time
    }
}

/// Checks a store's checkpointed offset against its changelog partition: a checkpoint that
/// claims more than the changelog holds (it was deleted or recreated), or below its log
/// start (the changelog lost records after it), means the local state cannot be caught up,
/// only rebuilt ([`StreamsError::TaskCorrupted`]).
fn check_checkpoint(
    task: TaskId,
    store: &str,
    tp: &TopicPartition,
    checkpoint: Option<i64>,
    log_start: i64,
    end: i64,
) -> Result<()> {
    let Some(c) = checkpoint else {
        return Ok(());
    };
    let reason = if c >= end {
        format!("store `{store}` is checkpointed at offset {c} but {tp} ends at {end}")
    } else if c.saturating_add(1) < log_start {
        format!("store `{store}` is checkpointed at offset {c} but {tp} starts at {log_start}")
    } else {
        return Ok(());
    };
    Err(StreamsError::TaskCorrupted {
        task: task.to_string(),
        reason,
    })
}

/// One read of changelog `tp` from `from`: the offset of the last record read (`None` at the
/// end) and the records to apply. A source topic used as changelog may hold null keys, which
/// a table source skips: they are read past but not applied.
fn read_changelog(
    reader: &mut dyn crate::client::ChangelogSource,
    tp: &TopicPartition,
    from: i64,
    source_topic: bool,
) -> Result<Option<(i64, Vec<state_store::ChangelogRecord>)>> {
    if source_topic {
        let batch = reader.read_consumed(tp, from)?;
        let Some(last) = batch.last().map(|r| r.offset) else {
            return Ok(None);
        };
        let records = batch
            .into_iter()
            .filter_map(|r| {
                let key = r.key?.to_vec();
                Some(state_store::ChangelogRecord {
                    offset: r.offset,
                    key,
                    value: r.value.map(|v| v.to_vec()),
                    timestamp: r.timestamp,
                })
            })
            .collect();
        Ok(Some((last, records)))
    } else {
        let batch = reader.read(tp, from)?;
        Ok(batch.last().map(|r| r.offset).map(|last| (last, batch)))
    }
}

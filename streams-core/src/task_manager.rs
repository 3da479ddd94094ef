//! The task manager: the tasks of one stream thread (or of the test driver), and the one
//! place where their life-cycle steps happen, in Kafka Streams' order.
//!
//! - **Restore**: a new task replays its changelogs; if its local state is corrupted
//!   ([`StreamsError::TaskCorrupted`]: a checkpoint beyond the changelog's end or below its
//!   start), its stores are wiped and it is rebuilt from the changelogs, with a warning.
//! - **Process**: up to a budget of records per task, sending what each task produced right
//!   after it, so downstream sub-topologies see records without waiting for the others.
//! - **Commit** ([`TaskManager::commit`]): flush the caches of every task (forwarding what they
//!   emit) → flush the producer and wait for acknowledgements → commit the consumed offsets
//!   → record them and write checkpoints. Both [`StreamsApp`](crate::StreamsApp)'s stream
//!   threads and the `TopologyTestDriver` commit through this function; exactly-once will
//!   wrap the producer flush and the offset commit into one transaction here.
//! - **Close**: clean (after a final commit: processors closed, checkpoints written) or
//!   dirty (after an error: stores closed, no checkpoint).
//! - **Standby tasks** (Kafka's `StandbyTask`): kept apart from the active tasks; created
//!   with their checkpoint checked against the changelogs (corrupted state wiped), updated
//!   from their changelogs between processing rounds ([`TaskManager::update_standbys`]),
//!   checkpointed at commits by the active tasks' rule, closed cleanly (checkpoint kept)
//!   when the assignment no longer has them. A task that becomes active on this thread is
//!   first closed as a standby, then created as an active task from the same directory, so
//!   its restoration covers only what the standby had not applied yet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::query::QueryableStores;
use crate::record::ConsumedRecord as RawRecord;
use state_store::TopicPartition;

use crate::client::ChangelogSource;
use crate::collector::SharedCollector;
use crate::error::{Result, StreamsError};
use crate::task::{FetchedLag, Task, TaskId};

/// The tasks of one stream thread and the order of their life-cycle steps.
pub(crate) struct TaskManager {
    tasks: BTreeMap<TaskId, Task>,
    /// Standby tasks: stores following their changelogs, never processing.
    standbys: BTreeMap<TaskId, Task>,
    collector: SharedCollector,
    /// Where initialized tasks register their stores for interactive queries (the
    /// application's; none in the test driver).
    queryable: Option<Arc<QueryableStores>>,
}

/// Input offsets to commit with Kafka's commit metadata (`TopicPartitionMetadata`).
pub(crate) type OffsetsWithMetadata = BTreeMap<TopicPartition, (i64, String)>;

impl TaskManager {
    /// No tasks yet; their records go to `collector`.
    pub(crate) fn new(collector: SharedCollector) -> Self {
        TaskManager {
            tasks: BTreeMap::new(),
            standbys: BTreeMap::new(),
            collector,
            queryable: None,
        }
    }

    /// Registers the stores of every task this manager initializes in `registry` (and
    /// removes them before closing the task), for interactive queries.
    pub(crate) fn with_queryable_stores(mut self, registry: Arc<QueryableStores>) -> Self {
        self.queryable = Some(registry);
        self
    }

    /// Gives back this thread's locks on every task's stores (before a poll), so that
    /// interactive queries can read them meanwhile.
    pub(crate) fn release_store_locks(&mut self) {
        for task in self.tasks.values_mut().chain(self.standbys.values_mut()) {
            task.release_store_locks();
        }
    }

    fn register(&self, task: &Task, standby: bool) {
        if let Some(registry) = &self.queryable {
            registry.register_task(task.id, standby, task.queryable_stores());
        }
    }

    fn unregister(&self, task: TaskId, standby: bool) {
        if let Some(registry) = &self.queryable {
            registry.unregister_task(task, standby);
        }
    }

    /// The collector the tasks write to.
    pub(crate) fn collector(&self) -> &SharedCollector {
        &self.collector
    }

    /// The tasks, by id.
    #[cfg_attr(not(feature = "test-utils"), allow(dead_code))]
    pub(crate) fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values()
    }

    /// One task.
    #[cfg_attr(not(feature = "test-utils"), allow(dead_code))]
    pub(crate) fn task(&self, id: &TaskId) -> Option<&Task> {
        self.tasks.get(id)
    }

    /// The ids of the tasks.
    pub(crate) fn ids(&self) -> Vec<TaskId> {
        self.tasks.keys().copied().collect()
    }

    /// Creates task `id` with `make`, restores its stores from `changelogs` and initializes
    /// its processors. Corrupted local state is wiped and restored from scratch once.
    /// Returns how many changelog records the restoration applied. A standby of the same
    /// task held by this manager is closed first (checkpoint written), so the active task
    /// opens the same state and restores only from the standby's position on.
    pub(crate) fn add(
        &mut self,
        id: TaskId,
        make: &dyn Fn() -> Result<Task>,
        changelogs: &mut dyn ChangelogSource,
    ) -> Result<u64> {
        if let Some(mut standby) = self.standbys.remove(&id) {
            tracing::info!(task = %id, "standby task becomes active");
            self.unregister(id, true);
            standby.close(true)?;
        }
        let mut task = make()?;
        match task.restore(changelogs) {
            Ok(()) => {}
            Err(StreamsError::TaskCorrupted { task: id, reason }) => {
                tracing::warn!(task = %id, %reason,
                    "local state is corrupted; wiping it and restoring from the changelogs");
                task.close_and_wipe()?;
                task = make()?;
                task.restore(changelogs)?;
            }
            Err(e) => return Err(e),
        }
        task.initialize()?;
        self.register(&task, false);
        let restored = task.counters.restored;
        self.tasks.insert(task.id, task);
        Ok(restored)
    }

    /// Creates standby task `id` with `make` (a task without input partitions):
    /// its checkpoint is checked against the changelogs (corrupted local state is wiped and
    /// the standby starts from the changelogs' start); it applies changelog records from
    /// [`TaskManager::update_standbys`] on. An active task of the same id is refused.
    pub(crate) fn add_standby(
        &mut self,
        id: TaskId,
        make: &dyn Fn() -> Result<Task>,
        changelogs: &mut dyn ChangelogSource,
    ) -> Result<()> {
        if self.tasks.contains_key(&id) || self.standbys.contains_key(&id) {
            return Err(StreamsError::IllegalState(format!(
                "task {id} is already open on this thread"
            )));
        }
        let mut task = make()?;
        task.make_standby();
        match task.check_local_state(changelogs) {
            Ok(()) => {}
            Err(StreamsError::TaskCorrupted { task: id, reason }) => {
                tracing::warn!(task = %id, %reason,
                    "standby state is corrupted; wiping it and following the changelogs from their start");
                task.close_and_wipe()?;
                task = make()?;
                task.make_standby();
                task.check_local_state(changelogs)?;
            }
            Err(e) => {
                let _ = task.close(false);
                return Err(e);
            }
        }
        // Standby stores are queryable with `enable_stale_stores` (Kafka's stale reads).
        self.register(&task, true);
        self.standbys.insert(task.id, task);
        Ok(())
    }

    /// The ids of the standby tasks.
    pub(crate) fn standby_ids(&self) -> Vec<TaskId> {
        self.standbys.keys().copied().collect()
    }

    /// Per standby task and changelog partition, the offset of the last record applied.
    pub(crate) fn standby_offsets(&self) -> BTreeMap<TaskId, BTreeMap<TopicPartition, i64>> {
        self.standbys
            .iter()
            .map(|(id, t)| (*id, t.changelog_offsets().clone()))
            .collect()
    }

    /// A standby task.
    #[cfg(test)]
    pub(crate) fn standby(&self, id: &TaskId) -> Option<&Task> {
        self.standbys.get(id)
    }

    /// Applies what is new in the changelogs of every standby task (one read per changelog
    /// partition). Returns how many records were applied. A standby whose position fell
    /// below its changelog's start is closed and wiped (it is missing from
    /// [`TaskManager::standby_ids`] afterwards; the caller creates it again).
    /// The changelog partitions the standby tasks follow.
    pub(crate) fn standby_changelog_partitions(&self) -> BTreeSet<TopicPartition> {
        self.standbys
            .values()
            .flat_map(|t| t.changelog_partitions())
            .cloned()
            .collect()
    }

    pub(crate) fn update_standbys(&mut self, changelogs: &mut dyn ChangelogSource) -> Result<u64> {
        let mut applied = 0;
        let mut corrupted = Vec::new();
        for (id, task) in &mut self.standbys {
            match task.update_standby(changelogs) {
                Ok(n) => applied += n,
                Err(StreamsError::TaskCorrupted { reason, .. }) => {
                    tracing::warn!(task = %id, %reason, "standby state is corrupted; wiping it");
                    corrupted.push(*id);
                }
                Err(e) => return Err(e),
            }
        }
        for id in corrupted {
            if let Some(mut task) = self.standbys.remove(&id) {
                self.unregister(id, true);
                task.close_and_wipe()?;
            }
        }
        Ok(applied)
    }

    /// Sets where standbys stop applying source-topic changelogs (the committed offsets of
    /// those source partitions, from `committed`), as Kafka limits standbys of source-topic
    /// changelogs.
    pub(crate) fn limit_standbys(
        &mut self,
        committed: &mut dyn FnMut(&TopicPartition) -> Result<Option<i64>>,
    ) -> Result<()> {
        for task in self.standbys.values_mut() {
            for tp in task.source_changelog_partitions() {
                if let Some(o) = committed(&tp)? {
                    task.limit_restore(tp, o);
                }
            }
        }
        Ok(())
    }

    /// Closes standby task `id` cleanly (checkpoint written, state kept on disk).
    pub(crate) fn close_standby(&mut self, id: &TaskId) -> Result<()> {
        match self.standbys.remove(id) {
            Some(mut task) => {
                self.unregister(*id, true);
                task.close(true)
            }
            None => Ok(()),
        }
    }

    /// Closes every standby task cleanly. Returns the first error; every standby is closed
    /// regardless.
    pub(crate) fn close_standbys_clean(&mut self) -> Result<()> {
        let mut first = None;
        for (id, mut task) in std::mem::take(&mut self.standbys) {
            self.unregister(id, true);
            if let Err(e) = task.close(true) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Closes every standby task without a checkpoint (after a failure of the thread).
    pub(crate) fn close_standbys_dirty(&mut self) {
        for (id, mut task) in std::mem::take(&mut self.standbys) {
            self.unregister(id, true);
            if let Err(e) = task.close(false) {
                tracing::warn!(task = %task.id, error = %e, "error closing a standby task after a failure");
            }
        }
    }

    /// Adds a task without stores to restore (the test driver's), initializing it.
    #[cfg(feature = "test-utils")]
    pub(crate) fn add_initialized(&mut self, mut task: Task) -> Result<()> {
        task.initialize()?;
        self.tasks.insert(task.id, task);
        Ok(())
    }

    /// Buffers records fetched for `partition` in the task that reads it. Returns false if
    /// no task reads it.
    pub(crate) fn add_records(
        &mut self,
        partition: &TopicPartition,
        records: Vec<RawRecord>,
    ) -> bool {
        match self
            .tasks
            .values_mut()
            .find(|t| t.input_partitions().any(|p| p == partition))
        {
            Some(task) => {
                task.add_records(partition, records);
                true
            }
            None => false,
        }
    }

    /// Every input partition of every task.
    pub(crate) fn input_partitions(&self) -> Vec<TopicPartition> {
        self.tasks
            .values()
            .flat_map(|t| t.input_partitions().cloned())
            .collect()
    }

    /// Input partitions with at least `limit` records buffered.
    pub(crate) fn full_partitions(&self, limit: usize) -> Vec<TopicPartition> {
        self.tasks
            .values()
            .flat_map(|t| t.full_partitions(limit))
            .collect()
    }

    /// True if any task has buffered records.
    pub(crate) fn has_buffered(&self) -> bool {
        self.tasks.values().any(|t| t.buffered() > 0)
    }

    /// Processes up to `budget` records per task, sending what each task produced right
    /// after it; `fetched_lag` tells how many records of a partition the consumer has not
    /// fetched yet (for `max.task.idle.ms`). Returns how many records were processed.
    pub(crate) fn process(&mut self, budget: usize, fetched_lag: &FetchedLag<'_>) -> Result<u64> {
        let mut processed = 0u64;
        for task in self.tasks.values_mut() {
            let mut n = 0;
            while n < budget && task.process_one(fetched_lag)? {
                n += 1;
            }
            processed += n as u64;
            if n > 0 {
                self.collector.lock().send_pending()?;
            }
        }
        Ok(processed)
    }

    /// Processes one record of task `id` (every partition's records fetched: the test
    /// driver's). Returns false if it had none ready.
    #[cfg(feature = "test-utils")]
    pub(crate) fn process_one(&mut self, id: TaskId) -> Result<bool> {
        match self.tasks.get_mut(&id) {
            // The driver feeds every record at once: no partition has unfetched records.
            Some(task) => task.process_one(&|_| Some(0)),
            None => Ok(false),
        }
    }

    /// Fires due wall-clock punctuations of every task.
    pub(crate) fn punctuate_wall_clock(&mut self) -> Result<()> {
        for task in self.tasks.values_mut() {
            task.punctuate_wall_clock()?;
        }
        Ok(())
    }

    /// True once a processor asked for a commit.
    pub(crate) fn commit_requested(&self) -> bool {
        self.tasks.values().any(Task::commit_requested)
    }

    /// The commit: flush every task's caches (forwarding what they emit, in topology
    /// order) → send the produced records and wait for their acknowledgements →
    /// `commit_offsets` with the next offset to read of every input partition that moved →
    /// record them in the tasks and write checkpoints when due.
    pub(crate) fn commit(
        &mut self,
        position: &dyn Fn(&TopicPartition) -> Option<i64>,
        commit_offsets: &mut dyn FnMut(&OffsetsWithMetadata) -> Result<()>,
    ) -> Result<()> {
        for task in self.tasks.values_mut() {
            task.prepare_commit()?;
        }
        self.collector.lock().flush()?;
        let mut with_metadata = BTreeMap::new();
        for task in self.tasks.values() {
            with_metadata.extend(task.offsets_to_commit(position));
        }
        commit_offsets(&with_metadata)?;
        let offsets: BTreeMap<TopicPartition, i64> = with_metadata
            .into_iter()
            .map(|(tp, (o, _))| (tp, o))
            .collect();
        for task in self.tasks.values_mut() {
            task.post_commit(&offsets)?;
        }
        // Standbys commit nothing; their checkpoints follow the same rule.
        let none = BTreeMap::new();
        for task in self.standbys.values_mut() {
            task.post_commit(&none)?;
        }
        Ok(())
    }

    /// Closes every task cleanly (call after a final [`TaskManager::commit`]): processors'
    /// `close`, stores flushed and checkpointed, state marked clean. Returns the first
    /// error; every task is closed regardless.
    pub(crate) fn close_clean(&mut self) -> Result<()> {
        let mut first = None;
        for (_, mut task) in std::mem::take(&mut self.tasks) {
            self.unregister(task.id, false);
            if let Err(e) = task.close(true) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Closes every task after a failure: stores closed, no checkpoint (the next start
    /// restores what was not checkpointed).
    pub(crate) fn close_dirty(&mut self) {
        for (_, mut task) in std::mem::take(&mut self.tasks) {
            self.unregister(task.id, false);
            if let Err(e) = task.close(false) {
                tracing::warn!(task = %task.id, error = %e, "error closing a task after a failure");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;
    use state_store::{
        ChangelogRecord, Direction, RocksDbConfig, RocksDbResources, StoreMetrics, TopicPartition,
    };

    use super::*;
    use crate::collector::{OutgoingRecord, RecordCollector};
    use crate::config::DeserializationHandler;
    use crate::serde::SerdeRegistry;
    use crate::store::TaskStore;
    use crate::task::{SystemClock, TaskInputs, TaskSettings};
    use crate::{
        InvalidTimestampPolicy, Processor, ProcessorContext, Record, Source, StoreBuilder, Topology,
    };

    const APP: &str = "corrupt-test";
    const STORE: &str = "kv";

    struct Nothing;
    impl Processor<String, String> for Nothing {
        fn process(
            &mut self,
            _: &mut ProcessorContext<'_, String, String>,
            _: Record<String, String>,
        ) -> Result<()> {
            Ok(())
        }
    }

    /// A collector that accepts nothing: these tests only restore.
    struct NoCollector(BTreeMap<TopicPartition, i64>);
    impl RecordCollector for NoCollector {
        fn partition_count(&mut self, _: &str) -> Result<i32> {
            Ok(1)
        }
        fn send(&mut self, _: OutgoingRecord) -> Result<()> {
            Err(StreamsError::IllegalState(
                "nothing is sent while restoring".into(),
            ))
        }
        fn send_pending(&mut self) -> Result<()> {
            Ok(())
        }
        fn flush(&mut self) -> Result<()> {
            Ok(())
        }
        fn produced_offsets(&self) -> &BTreeMap<TopicPartition, i64> {
            &self.0
        }
    }

    /// A changelog partition with a log start and records from it on.
    struct Changelog {
        log_start: i64,
        records: Vec<ChangelogRecord>,
    }

    impl Changelog {
        /// Records `key<i> = value<i>-<tag>` at offsets `from..to`.
        fn new(from: i64, to: i64, tag: &str) -> Self {
            let records = (from..to)
                .map(|o| ChangelogRecord {
                    offset: o,
                    key: format!("key{o}").into_bytes(),
                    value: Some(format!("value{o}-{tag}").into_bytes()),
                    timestamp: o,
                })
                .collect();
            Changelog {
                log_start: from,
                records,
            }
        }
    }

    impl ChangelogSource for Changelog {
        fn offsets(&mut self, _: &TopicPartition) -> Result<(i64, i64)> {
            let end = self.records.last().map_or(self.log_start, |r| r.offset + 1);
            Ok((self.log_start, end))
        }
        fn read(&mut self, _: &TopicPartition, from: i64) -> Result<Vec<ChangelogRecord>> {
            Ok(self
                .records
                .iter()
                .filter(|r| r.offset >= from)
                .take(3)
                .cloned()
                .collect())
        }
    }

    struct Fixture {
        topology: Topology,
        state: tempfile::TempDir,
        rocksdb: RocksDbResources,
    }

    impl Fixture {
        fn new() -> Self {
            let mut topology = Topology::new();
            topology
                .add_source(Source::<String, String>::new("in", ["input"]))
                .unwrap();
            topology.add_processor("p", || Nothing, &["in"]).unwrap();
            topology
                .add_state_store(StoreBuilder::key_value(STORE), &["p"])
                .unwrap();
            Fixture {
                topology,
                state: tempfile::tempdir().unwrap(),
                rocksdb: RocksDbResources::new(RocksDbConfig::default()).unwrap(),
            }
        }

        /// Restores the task from `changelog` (through the task manager), returns the
        /// store's contents and closes the task cleanly (writing its checkpoint).
        fn run(&self, changelog: &mut Changelog) -> Vec<(String, String)> {
            let mut tasks = self.start(changelog);
            let id = TaskId {
                subtopology: 0,
                partition: 0,
            };
            let Some(TaskStore::KeyValue(store)) = tasks
                .task(&id)
                .and_then(|t| t.open_store(STORE))
                .map(|s| s.store.get())
            else {
                panic!("no key-value store {STORE}");
            };
            let contents = store
                .all(Direction::Forward)
                .unwrap()
                .map(Result::unwrap)
                .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
                .collect();
            tasks.close_clean().unwrap();
            contents
        }

        /// The task, restored from `changelog`, in a task manager.
        fn start(&self, changelog: &mut Changelog) -> TaskManager {
            self.with_make(|tasks, make| {
                tasks.add(task_id(), make, changelog).unwrap();
            })
        }

        /// A task manager and the task's constructor, handed to `f`.
        fn with_make(
            &self,
            f: impl FnOnce(&mut TaskManager, &dyn Fn() -> Result<Task>),
        ) -> TaskManager {
            let sub = self.topology.subtopologies().unwrap().remove(0);
            let collector: SharedCollector =
                Arc::new(Mutex::new(Box::new(NoCollector(BTreeMap::new()))));
            let settings = Arc::new(TaskSettings {
                application_id: APP.into(),
                deserialization: DeserializationHandler::Fail,
                invalid_timestamps: InvalidTimestampPolicy::Fail,
                cache: state_store::ThreadCache::new(0),
                serdes: SerdeRegistry::with_builtins(),
                exactly_once: false,
                max_task_idle_ms: 0,
                outer_join_emit_interval_ms: 0,
                emit_interval_ms: 0,
                dropped: Default::default(),
                globals: Arc::new(crate::global::GlobalState::empty()),
            });
            let id = TaskId {
                subtopology: 0,
                partition: 0,
            };
            let make = || {
                Task::new(
                    &self.topology,
                    &sub,
                    id,
                    &TaskInputs {
                        topics: BTreeMap::from([("input".to_owned(), 0)]),
                    },
                    Arc::clone(&settings),
                    Arc::clone(&collector),
                    Arc::new(SystemClock),
                    Some(self.state.path()),
                    Some(&self.rocksdb),
                    Arc::new(StoreMetrics::new()),
                )
            };
            let mut tasks = TaskManager::new(Arc::clone(&collector));
            f(&mut tasks, &make);
            tasks
        }
    }

    fn task_id() -> TaskId {
        TaskId {
            subtopology: 0,
            partition: 0,
        }
    }

    /// The contents of a key-value store of `task`.
    fn contents(task: &Task) -> Vec<(String, String)> {
        let Some(TaskStore::KeyValue(store)) = task.open_store(STORE).map(|s| s.store.get()) else {
            panic!("no key-value store {STORE}");
        };
        store
            .all(Direction::Forward)
            .unwrap()
            .map(Result::unwrap)
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    }

    fn checkpoint_of(f: &Fixture) -> BTreeMap<TopicPartition, i64> {
        state_store::TaskDirectory::new(f.state.path(), APP, "0_0")
            .unwrap()
            .checkpoint()
            .read()
            .unwrap()
    }

    /// Updates the standbys until nothing is left to apply; returns the records applied.
    fn update_to_end(tasks: &mut TaskManager, changelog: &mut Changelog) -> u64 {
        let mut total = 0;
        loop {
            let n = tasks.update_standbys(changelog).unwrap();
            if n == 0 {
                return total;
            }
            total += n;
        }
    }

    #[test]
    fn a_standby_follows_its_changelog_and_checkpoints_when_closed() {
        let f = Fixture::new();
        let mut changelog = Changelog::new(0, 10, "a");
        let mut tasks = f.with_make(|tasks, make| {
            tasks.add_standby(task_id(), make, &mut changelog).unwrap();
        });
        assert_eq!(tasks.standby_ids(), vec![task_id()]);
        assert!(tasks.ids().is_empty(), "a standby is not an active task");
        // The test changelog hands out 3 records per read: one read per update call.
        assert_eq!(tasks.update_standbys(&mut changelog).unwrap(), 3);
        assert_eq!(update_to_end(&mut tasks, &mut changelog), 7);
        let standby = tasks.standby(&task_id()).unwrap();
        assert!(standby.is_standby());
        assert_eq!(contents(standby), expected(&changelog));
        assert_eq!(standby.counters.standby_updates, 10);
        // New records keep arriving: the standby keeps following.
        let mut grown = Changelog::new(0, 14, "a");
        assert_eq!(update_to_end(&mut tasks, &mut grown), 4);
        assert_eq!(
            contents(tasks.standby(&task_id()).unwrap()),
            expected(&grown)
        );
        tasks.close_standby(&task_id()).unwrap();
        assert!(tasks.standby_ids().is_empty());
        let tp = TopicPartition::new(crate::names::changelog_topic(APP, STORE), 0);
        assert_eq!(checkpoint_of(&f), BTreeMap::from([(tp, 13)]));
    }

    #[test]
    fn promoting_a_standby_restores_only_what_it_had_not_applied() {
        let f = Fixture::new();
        let mut changelog = Changelog::new(0, 10, "a");
        let mut restored = 0;
        let tasks = f.with_make(|tasks, make| {
            tasks.add_standby(task_id(), make, &mut changelog).unwrap();
            update_to_end(tasks, &mut changelog);
            // The active copy wrote 5 more records before it failed over.
            let mut grown = Changelog::new(0, 15, "a");
            restored = tasks.add(task_id(), make, &mut grown).unwrap();
        });
        assert_eq!(restored, 5, "only the tail after the standby's position");
        assert!(tasks.standby_ids().is_empty());
        assert_eq!(
            contents(tasks.task(&task_id()).unwrap()),
            expected(&Changelog::new(0, 15, "a"))
        );
    }

    #[test]
    fn a_standby_with_a_checkpoint_beyond_the_changelog_starts_over() {
        let f = Fixture::new();
        first_run(&f);
        let mut recreated = Changelog::new(0, 4, "b");
        let mut tasks = f.with_make(|tasks, make| {
            tasks.add_standby(task_id(), make, &mut recreated).unwrap();
        });
        update_to_end(&mut tasks, &mut recreated);
        assert_eq!(
            contents(tasks.standby(&task_id()).unwrap()),
            expected(&recreated)
        );
        tasks.close_standbys_clean().unwrap();
    }

    fn expected(changelog: &Changelog) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = changelog
            .records
            .iter()
            .map(|r| {
                (
                    String::from_utf8(r.key.clone()).unwrap(),
                    String::from_utf8(r.value.clone().unwrap()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// First run: offsets 0..10 restored and checkpointed at 9.
    fn first_run(f: &Fixture) {
        let mut first = Changelog::new(0, 10, "a");
        assert_eq!(f.run(&mut first), expected(&first));
    }

    #[test]
    fn checkpoint_within_the_changelog_restores_only_the_tail() {
        let f = Fixture::new();
        first_run(&f);
        // The same changelog with 5 more records: values of 0..10 tagged "b" in the
        // changelog must NOT be re-read (the checkpoint covers them), so they stay "a".
        let mut next = Changelog::new(0, 15, "b");
        let got = f.run(&mut next);
        let want: Vec<(String, String)> = {
            let mut v = expected(&Changelog::new(0, 10, "a"));
            v.extend(expected(&Changelog::new(10, 15, "b")));
            v.sort();
            v
        };
        assert_eq!(got, want);
    }

    #[test]
    fn checkpoint_beyond_the_changelog_end_wipes_and_restores() {
        let f = Fixture::new();
        first_run(&f);
        // The changelog was deleted and recreated with 4 records: checkpoint 9 >= end 4.
        let mut recreated = Changelog::new(0, 4, "b");
        assert_eq!(f.run(&mut recreated), expected(&recreated));
    }

    #[test]
    fn changelog_deleted_and_recreated_empty_wipes_the_store() {
        let f = Fixture::new();
        first_run(&f);
        let mut empty = Changelog::new(0, 0, "b");
        assert_eq!(f.run(&mut empty), Vec::new());
    }

    #[test]
    fn checkpoint_below_the_log_start_wipes_and_restores() {
        let f = Fixture::new();
        first_run(&f);
        // Retention removed offsets 0..20 and the log now holds 20..30: offsets 10..20
        // were never seen by the store, so it must be rebuilt from 20.
        let mut moved = Changelog::new(20, 30, "b");
        assert_eq!(f.run(&mut moved), expected(&moved));
    }

    /// More than 10,000 changelog records since the last checkpoint: a commit starts a
    /// background flush and a later commit writes the checkpoint once it is durable, while
    /// the task stays open.
    #[test]
    fn a_running_task_checkpoints_after_a_background_flush() {
        let f = Fixture::new();
        let mut changelog = Changelog::new(0, 20_001, "a");
        let mut tasks = f.start(&mut changelog);
        let checkpoint = state_store::TaskDirectory::new(f.state.path(), APP, "0_0")
            .unwrap()
            .checkpoint();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let written = loop {
            tasks.commit(&|_| None, &mut |_| Ok(())).unwrap();
            let written = checkpoint.read().unwrap();
            if !written.is_empty() {
                break written;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint was written"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let tp = TopicPartition::new(crate::names::changelog_topic(APP, STORE), 0);
        assert_eq!(written, BTreeMap::from([(tp, 20_000)]));
        let id = TaskId {
            subtopology: 0,
            partition: 0,
        };
        assert_eq!(tasks.task(&id).unwrap().counters.checkpoints, 1);
        tasks.close_clean().unwrap();
    }
}

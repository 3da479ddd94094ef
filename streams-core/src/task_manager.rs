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

use std::collections::BTreeMap;
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
        for task in self.tasks.values_mut() {
            task.release_store_locks();
        }
    }

    fn unregister(&self, task: TaskId) {
        if let Some(registry) = &self.queryable {
            registry.unregister_task(task, false);
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

    /// Creates a task with `make`, restores its stores from `changelogs` and initializes
    /// its processors. Corrupted local state is wiped and restored from scratch once.
    pub(crate) fn add(
        &mut self,
        make: &dyn Fn() -> Result<Task>,
        changelogs: &mut dyn ChangelogSource,
    ) -> Result<()> {
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
        if let Some(registry) = &self.queryable {
            registry.register_task(task.id, false, task.queryable_stores());
        }
        self.tasks.insert(task.id, task);
        Ok(())
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
        commit_offsets: &mut dyn FnMut(&OffsetsWithMetadata) -> Result<()>,
    ) -> Result<()> {
        for task in self.tasks.values_mut() {
            task.prepare_commit()?;
        }
        self.collector.lock().flush()?;
        let mut with_metadata = BTreeMap::new();
        for task in self.tasks.values() {
            with_metadata.extend(task.offsets_to_commit());
        }
        commit_offsets(&with_metadata)?;
        let offsets: BTreeMap<TopicPartition, i64> = with_metadata
            .into_iter()
            .map(|(tp, (o, _))| (tp, o))
            .collect();
        for task in self.tasks.values_mut() {
            task.post_commit(&offsets)?;
        }
        Ok(())
    }

    /// Closes every task cleanly (call after a final [`TaskManager::commit`]): processors'
    /// `close`, stores flushed and checkpointed, state marked clean. Returns the first
    /// error; every task is closed regardless.
    pub(crate) fn close_clean(&mut self) -> Result<()> {
        let mut first = None;
        for (_, mut task) in std::mem::take(&mut self.tasks) {
            self.unregister(task.id);
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
            self.unregister(task.id);
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
            let sub = self.topology.subtopologies().unwrap().remove(0);
            let collector: SharedCollector =
                Arc::new(Mutex::new(Box::new(NoCollector(BTreeMap::new()))));
            let settings = Arc::new(TaskSettings {
                application_id: APP.into(),
                deserialization: DeserializationHandler::Fail,
                invalid_timestamps: InvalidTimestampPolicy::Fail,
                cache: state_store::ThreadCache::new(0),
                serdes: SerdeRegistry::with_builtins(),
                wipe_unclean: false,
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
            tasks.add(&make, changelog).unwrap();
            tasks
        }
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
            tasks.commit(&mut |_| Ok(())).unwrap();
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

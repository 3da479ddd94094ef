//! The stream thread: its record collector, its poll → process → punctuate → commit
//! loop over a `TaskManager`, rebalances, and what happens when it fails.

use super::*;

/// The record collector of a stream thread: buffers per partition, sends batches.
struct ClusterCollector {
    producer: Box<dyn ClusterProducer>,
    cluster: Arc<dyn Cluster>,
    pending: BTreeMap<TopicPartition, Vec<ProducedRecord>>,
    partitions: HashMap<String, i32>,
    round_robin: HashMap<String, i32>,
    produced: BTreeMap<TopicPartition, i64>,
    /// Under exactly-once: how to make the thread's transactional producer again.
    transactional: Option<TransactionalIdentity>,
    /// A transaction is open on the producer.
    in_transaction: bool,
}

/// What a stream thread's transactional producer is made from.
#[derive(Debug, Clone)]
struct TransactionalIdentity {
    client_id: String,
    transactional_id: String,
    timeout: Duration,
}

impl ClusterCollector {
    /// Sends records, beginning a transaction first under exactly-once (Kafka's
    /// `StreamsProducer#maybeBeginTransaction`).
    fn produce(&mut self, tp: &TopicPartition, records: Vec<ProducedRecord>) -> Result<()> {
        self.maybe_begin()?;
        self.producer.send(tp, records)
    }

    fn maybe_begin(&mut self) -> Result<()> {
        if self.transactional.is_some() && !self.in_transaction {
            self.producer.begin_transaction()?;
            self.in_transaction = true;
        }
        Ok(())
    }
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
        let n = self.cluster.partitions(topic)?.ok_or_else(|| {
            StreamsError::cluster_fatal(format!("topic `{topic}` does not exist"))
        })?;
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
        batch.push(ProducedRecord {
            key: r.key.map(bytes::Bytes::from),
            value: r.value.map(bytes::Bytes::from),
            headers: r.headers,
            timestamp: r.timestamp,
        });
        if batch.len() >= BATCH_RECORDS {
            let records = std::mem::take(batch);
            self.produce(&tp, records)?;
        }
        Ok(())
    }

    fn send_pending(&mut self) -> Result<()> {
        for (tp, records) in std::mem::take(&mut self.pending) {
            self.produce(&tp, records)?;
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

    fn commit_transaction(
        &mut self,
        offsets: &OffsetsWithMetadata,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        if self.transactional.is_none() {
            return Err(StreamsError::IllegalState(
                "commit_transaction without exactly-once".into(),
            ));
        }
        self.send_pending()?;
        if !offsets.is_empty() {
            self.maybe_begin()?;
            self.producer.send_offsets_to_transaction(offsets, group)?;
        }
        if self.in_transaction {
            self.producer.commit_transaction()?;
            self.in_transaction = false;
        }
        Ok(())
    }

    fn abort_transaction(&mut self, fenced: bool) -> Result<()> {
        let Some(identity) = self.transactional.clone() else {
            return Err(StreamsError::IllegalState(
                "abort_transaction without exactly-once".into(),
            ));
        };
        self.pending.clear();
        let was_open = std::mem::replace(&mut self.in_transaction, false);
        // Offsets written in the aborted transaction are not in the changelogs' committed
        // data; what the stores restore from decides their offsets from here on.
        self.produced.clear();
        let aborted = match (fenced, was_open) {
            (true, _) => Err(StreamsError::cluster(
                ClusterErrorKind::Fenced,
                "the producer was fenced",
            )),
            (false, true) => self.producer.abort_transaction(),
            (false, false) => Ok(()),
        };
        if let Err(e) = aborted {
            // A fenced (or broken) producer cannot abort: a new one with the same
            // transactional id bumps the epoch, which aborts the open transaction on the
            // coordinator (Kafka Streams' `reInitializeProducer`).
            tracing::warn!(error = %e, transactional_id = %identity.transactional_id,
                "initializing a new transactional producer");
            self.producer = self.cluster.transactional_producer(
                &identity.client_id,
                &identity.transactional_id,
                identity.timeout,
            )?;
        }
        Ok(())
    }
}

struct StreamThread {
    shared: Arc<AppShared>,
    index: usize,
    consumer: Box<dyn ClusterConsumer>,
    tasks: TaskManager,
    settings: Arc<TaskSettings>,
    /// The settings of standby tasks: no record cache (they only apply changelogs).
    standby_settings: Arc<TaskSettings>,
    /// The standby tasks of the current assignment this thread should hold.
    standby_wanted: BTreeSet<TaskId>,
    /// Reads the standbys' changelogs (created with the first standby).
    standby_reader: Option<Box<dyn ChangelogSource>>,
    /// The last standby update applied records: more may be waiting, so do not block in
    /// the next poll.
    standby_busy: bool,
    rocksdb: RocksDbResources,
    metrics: Arc<StoreMetrics>,
    last_commit: Instant,
    /// `processing.guarantee = exactly_once_v2`.
    exactly_once: bool,
    /// The input partitions of the current assignment.
    assigned: Vec<TopicPartition>,
    /// Exactly-once recoveries since the last successful commit (for their backoff).
    recoveries: u32,
}

pub(super) fn run_thread(
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
                match clients(&shared, index, &client_id) {
                    Ok(x) => x,
                    Err(e) => {
                        fail(&shared, index, e, UncaughtErrorPolicy::ShutdownClient);
                        return;
                    }
                }
            }
        };
        let transactional = match transactional_identity(&shared, index, &client_id) {
            Ok(t) => t,
            Err(e) => {
                fail(&shared, index, e, UncaughtErrorPolicy::ShutdownClient);
                return;
            }
        };
        let mut thread = StreamThread::new(
            Arc::clone(&shared),
            index,
            c,
            p,
            transactional,
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
                fail(&shared, index, e, policy);
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

/// The consumer (subscribed) and producer of stream thread `index`. Under exactly-once the
/// consumer reads `read_committed` and the producer is transactional with Kafka Streams'
/// `transactional.id` for the thread, `<application.id>-<process id>-<thread number>`:
/// creating it fences the thread's previous incarnation (before a crash or in a replaced
/// thread) and aborts its open transaction.
pub(super) fn clients(
    shared: &Arc<AppShared>,
    index: usize,
    client_id: &str,
) -> Result<(Box<dyn ClusterConsumer>, Box<dyn ClusterProducer>)> {
    let config = &shared.config;
    let eos = config.processing_guarantee.is_exactly_once();
    let isolation = if eos {
        IsolationLevel::ReadCommitted
    } else {
        IsolationLevel::ReadUncommitted
    };
    let mut consumer = shared
        .cluster
        .consumer(&config.application_id, client_id, isolation)?;
    consumer.subscribe(subscription(shared, index))?;
    let producer = match transactional_identity(shared, index, client_id)? {
        Some(t) => {
            shared
                .cluster
                .transactional_producer(&t.client_id, &t.transactional_id, t.timeout)?
        }
        None => shared.cluster.producer(client_id)?,
    };
    Ok((consumer, producer))
}

/// Under exactly-once, the identity of thread `index`'s transactional producer.
fn transactional_identity(
    shared: &AppShared,
    index: usize,
    client_id: &str,
) -> Result<Option<TransactionalIdentity>> {
    let config = &shared.config;
    if !config.processing_guarantee.is_exactly_once() {
        return Ok(None);
    }
    Ok(Some(TransactionalIdentity {
        client_id: client_id.to_owned(),
        transactional_id: format!(
            "{}-{}-{}",
            config.application_id,
            shared.process_id,
            index + 1
        ),
        timeout: config.transaction_timeout()?,
    }))
}

fn fail(shared: &AppShared, index: usize, e: StreamsError, policy: UncaughtErrorPolicy) {
    tracing::error!(error = %e, ?policy, "stream thread failed");
    shared.errors.lock().push(Arc::new(e));
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
        transactional: Option<TransactionalIdentity>,
        rocksdb: RocksDbResources,
        metrics: Arc<StoreMetrics>,
    ) -> Self {
        let c = &shared.config;
        let exactly_once = transactional.is_some();
        let settings = Arc::new(TaskSettings {
            application_id: c.application_id.clone(),
            deserialization: c.deserialization.clone(),
            invalid_timestamps: c.invalid_timestamps,
            // One record-cache budget per thread (Kafka's ThreadCache), shared by the
            // stores of all the thread's tasks.
            cache: state_store::ThreadCache::new(c.cache_max_bytes / c.num_stream_threads.max(1)),
            serdes: c.serdes.clone(),
            exactly_once,
            max_task_idle_ms: c.max_task_idle_ms,
            outer_join_emit_interval_ms: c.outer_join_emit_interval_ms.unwrap_or(1_000),
            emit_interval_ms: c.emit_interval_windowed_aggregation_ms.unwrap_or(1000),
            dropped: Arc::clone(&shared.dropped),
            globals: Arc::clone(&shared.globals.lock()),
        });
        let standby_settings = Arc::new(TaskSettings {
            cache: state_store::ThreadCache::new(0),
            ..(*settings).clone()
        });
        let collector: SharedCollector = Arc::new(Mutex::new(Box::new(ClusterCollector {
            producer,
            cluster: Arc::clone(&shared.cluster),
            pending: BTreeMap::new(),
            partitions: HashMap::new(),
            round_robin: HashMap::new(),
            produced: BTreeMap::new(),
            transactional,
            in_transaction: false,
        })));
        let tasks =
            TaskManager::new(collector).with_queryable_stores(Arc::clone(&shared.queryable));
        StreamThread {
            shared,
            index,
            consumer,
            tasks,
            settings,
            standby_settings,
            standby_wanted: BTreeSet::new(),
            standby_reader: None,
            standby_busy: false,
            rocksdb,
            metrics,
            last_commit: Instant::now(),
            exactly_once,
            assigned: Vec::new(),
            recoveries: 0,
        }
    }

    fn run(&mut self) -> Result<()> {
        let config = self.shared.config.clone();
        while !self.shared.shutdown.load(Ordering::SeqCst) {
            match self.run_once(&config) {
                Ok(()) => {}
                Err(e)
                    if self.exactly_once && e.cluster_kind() == Some(ClusterErrorKind::Fenced) =>
                {
                    self.on_fenced(&e)?;
                }
                Err(e) if self.exactly_once && recoverable_under_eos(&e) => {
                    self.recover_after_abort(&e)?;
                }
                Err(e) => return Err(e),
            }
        }
        self.commit()?;
        let closed = self.tasks.close_clean();
        let standbys_closed = self.tasks.close_standbys_clean();
        self.set_active_tasks();
        self.set_standby_tasks();
        closed?;
        standbys_closed?;
        self.consumer.close()
    }

    /// One loop of the thread: poll, handle assignment changes, process, punctuate, and
    /// commit when due.
    fn run_once(&mut self, config: &StreamsConfig) -> Result<()> {
        {
            // Backpressure as Kafka's buffered.records.per.partition: a partition whose
            // buffer is full is not fetched until its task catches up.
            self.consumer.resume(&self.tasks.input_partitions());
            self.consumer
                .pause(&self.tasks.full_partitions(BUFFERED_RECORDS_PER_PARTITION));
            // Interactive queries read the stores between loops (and while the poll waits).
            self.tasks.release_store_locks();
            let timeout = if self.tasks.has_buffered() || self.standby_busy {
                Duration::ZERO
            } else {
                config.poll
            };
            let poll = self.consumer.poll(timeout, config.max_poll_records)?;
            // The standbys of the new generation come right after its partitions: close
            // the standbys it drops first, so that another thread of this instance taking
            // one of them over as active finds its directory free.
            if let Some(kept) = poll.events.iter().rev().find_map(|e| match e {
                AssignmentEvent::Standby(tasks) => Some(tasks),
                _ => None,
            }) {
                self.close_standbys_except(&kept.keys().copied().collect())?;
            }
            let mut events = poll.events;
            // The group's interactive-query metadata of the new generation is published
            // before `on_assigned` reports RUNNING, so a query right after RUNNING sees it.
            if let Some(at) = events
                .iter()
                .rposition(|e| matches!(e, AssignmentEvent::PartitionsByHost { .. }))
            {
                if let AssignmentEvent::PartitionsByHost { active, standby } = events.remove(at) {
                    self.shared.on_partitions_by_host(active, standby);
                }
            }
            for event in events {
                match event {
                    AssignmentEvent::Revoked(tps) => self.on_revoked(&tps)?,
                    AssignmentEvent::Assigned(tps) => self.on_assigned(&tps)?,
                    AssignmentEvent::Lost(_) => self.on_lost()?,
                    AssignmentEvent::Standby(tasks) => {
                        self.on_standby(tasks.into_keys().collect())?;
                    }
                    AssignmentEvent::PartitionsByHost { active, standby } => {
                        self.shared.on_partitions_by_host(active, standby);
                    }
                }
            }
            for (tp, records) in poll.records {
                self.tasks.add_records(&tp, records);
            }
            let consumer = &self.consumer;
            let processed = self
                .tasks
                .process(PROCESS_BUDGET.min(config.max_poll_records), &|tp| {
                    consumer.fetched_lag(tp)
                })?;
            self.shared
                .processed
                .fetch_add(processed, Ordering::Relaxed);
            self.tasks.collector().lock().send_pending()?;
            self.update_standbys()?;
            self.tasks.punctuate_wall_clock()?;
            if self.tasks.commit_requested()
                || self.last_commit.elapsed() >= config.commit_interval_value()
            {
                self.commit()?;
            }
        }
        Ok(())
    }

    /// Exactly-once after the producer was fenced (another producer took the thread's
    /// `transactional.id`, or the coordinator aborted a transaction that ran past its
    /// timeout): as Kafka Streams handles the `TaskMigratedException` it raises, a new
    /// producer is made (its initialization aborts what was open), every active task is
    /// closed dirty and the consumer rejoins the group; the tasks come back through the
    /// assignment and restore their wiped state from the changelogs.
    fn on_fenced(&mut self, cause: &StreamsError) -> Result<()> {
        tracing::warn!(error = %cause,
            "exactly-once: producer fenced; closing the tasks dirty, rejoining the group with a new producer");
        self.tasks.collector().lock().abort_transaction(true)?;
        self.on_lost()?;
        self.consumer.enforce_rebalance();
        Ok(())
    }

    /// Exactly-once after an error that leaves the thread's partitions with it (a failed
    /// produce or commit): the open transaction is aborted, and since the
    /// stores already hold its writes, every active task is closed dirty (its state is wiped
    /// when it is opened again and restored from the committed changelogs), the consumer goes
    /// back to the committed offsets and the tasks are opened again — Kafka Streams' handling
    /// of a `TaskCorruptedException` under EOS.
    fn recover_after_abort(&mut self, cause: &StreamsError) -> Result<()> {
        tracing::warn!(error = %cause, recoveries = self.recoveries,
            "exactly-once: aborting the transaction, wiping the tasks' state and processing again from the committed offsets");
        if self.recoveries > 0 {
            // The cause persists (a broker away, a partition without leader): back off
            // exponentially, from 100 ms up to 5 s, instead of restoring in a tight loop.
            let backoff = Duration::from_millis(100)
                .saturating_mul(1 << self.recoveries.min(6))
                .min(Duration::from_secs(5));
            std::thread::sleep(backoff);
        }
        self.recoveries = self.recoveries.saturating_add(1);
        self.tasks.collector().lock().abort_transaction(false)?;
        self.shared.thread_state(self.index, false);
        self.tasks.close_dirty();
        self.set_active_tasks();
        self.consumer.reset_to_committed()?;
        let assigned = self.assigned.clone();
        self.on_assigned(&assigned)?;
        self.last_commit = Instant::now();
        Ok(())
    }

    /// The commit, through the task manager (the one commit sequence of the runtime). A
    /// commit the group refuses (the tasks migrated to another member: this thread fell out
    /// of the group or its generation) closes every task dirty, as Kafka Streams handles a
    /// `TaskMigratedException`; the consumer rejoins at the next poll.
    fn commit(&mut self) -> Result<()> {
        if !self.standby_wanted.is_empty() {
            // Standbys of source-topic changelogs follow the committed offsets (Kafka
            // refreshes these limits every commit interval).
            let (cluster, group) = (&self.shared.cluster, &self.shared.config.application_id);
            self.tasks
                .limit_standbys(&mut |tp| cluster.committed_offset(group, tp))?;
        }
        let positions: BTreeMap<TopicPartition, i64> = self
            .tasks
            .input_partitions()
            .into_iter()
            .filter_map(|tp| self.consumer.position(&tp).map(|p| (tp, p)))
            .collect();
        let position = |tp: &TopicPartition| positions.get(tp).copied();
        let result = if self.exactly_once {
            // Outputs, changelog records and input offsets in one transaction.
            let collector = Arc::clone(self.tasks.collector());
            let group = self.consumer.group_metadata();
            self.tasks.commit(&position, &mut |offsets| {
                collector.lock().commit_transaction(offsets, &group)
            })
        } else {
            let consumer = &mut self.consumer;
            self.tasks.commit(&position, &mut |offsets| {
                consumer.commit_with_metadata(offsets)
            })
        };
        match result {
            Ok(()) => self.recoveries = 0,
            Err(StreamsError::TaskMigrated(reason)) => {
                tracing::warn!(%reason, "tasks migrated: closing them without committing");
                self.on_lost()?;
                // Under exactly-once the refusal came through the producer's offset commit,
                // so the consumer may not know yet that the group moved on.
                self.consumer.enforce_rebalance();
            }
            Err(e) => return Err(e),
        }
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Publishes this thread's active tasks (for [`StreamsApp::active_tasks`]) and releases
    /// the task directories it no longer holds.
    fn set_active_tasks(&self) {
        let ids: BTreeSet<TaskId> = self.tasks.ids().into_iter().collect();
        {
            let mut all = self.shared.active_tasks.lock();
            if ids.is_empty() {
                all.remove(&self.index);
            } else {
                all.insert(self.index, ids);
            }
        }
        self.release_task_dirs();
    }

    /// Releases the task directories this thread claimed and no longer holds open.
    fn release_task_dirs(&self) {
        let held: BTreeSet<TaskId> = self
            .tasks
            .ids()
            .into_iter()
            .chain(self.tasks.standby_ids())
            .collect();
        self.shared.release_task_dirs(self.index, &held);
    }

    fn on_revoked(&mut self, _tps: &[TopicPartition]) -> Result<()> {
        self.shared.thread_state(self.index, false);
        self.commit()?;
        let closed = self.tasks.close_clean();
        self.assigned.clear();
        self.set_active_tasks();
        closed
    }

    /// The partitions went to another member without a commit: close the tasks dirty (their
    /// uncommitted work is redone by the new owner). Under exactly-once the open transaction
    /// is aborted first.
    fn on_lost(&mut self) -> Result<()> {
        self.shared.thread_state(self.index, false);
        let aborted = if self.exactly_once {
            self.tasks.collector().lock().abort_transaction(false)
        } else {
            Ok(())
        };
        self.tasks.close_dirty();
        self.assigned.clear();
        self.set_active_tasks();
        aborted
    }

    fn close_dirty(&mut self) {
        if self.exactly_once {
            if let Err(e) = self.tasks.collector().lock().abort_transaction(false) {
                tracing::warn!(error = %e, "aborting the transaction of a failed thread");
            }
        }
        self.tasks.close_dirty();
        self.tasks.close_standbys_dirty();
        self.standby_wanted.clear();
        self.set_active_tasks();
        self.set_standby_tasks();
        let _ = self.consumer.close();
    }

    fn on_assigned(&mut self, tps: &[TopicPartition]) -> Result<()> {
        self.assigned = tps.to_vec();
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
        self.shared
            .last_assigned
            .lock()
            .insert(self.index, ids.iter().map(|(id, _)| *id).collect());
        let settings = Arc::clone(&self.settings);
        let mut source = self.shared.cluster.changelog_source()?;
        for (id, sub) in ids {
            let Some(r) = resolved.iter().find(|r| r.sub.id == sub) else {
                continue;
            };
            let _span = tracing::info_span!("task", task = %id).entered();
            let (shared, collector) = (&self.shared, self.tasks.collector().clone());
            let (rocksdb, metrics) = (&self.rocksdb, &self.metrics);
            // Kafka's StreamTask.initializeTaskTime: the processor metadata committed with
            // the task's input offsets, merged (largest value per key).
            let mut processor_metadata = BTreeMap::new();
            for topic in r.inputs.keys() {
                let tp = TopicPartition::new(topic.clone(), id.partition);
                let committed = shared
                    .cluster
                    .committed_metadata(&shared.config.application_id, &tp)?;
                if let Some(encoded) = committed {
                    let (_, m) = crate::task::offset_metadata::decode(&encoded);
                    for (k, v) in m {
                        let e = processor_metadata.entry(k).or_insert(v);
                        *e = (*e).max(v);
                    }
                }
            }
            let make = || {
                let mut task = Task::new(
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
                )?;
                task.set_processor_metadata(processor_metadata.clone());
                // A source table reusing its topic as changelog restores up to the
                // committed offset only; processing resumes there.
                for tp in task.source_changelog_partitions() {
                    let committed = shared
                        .cluster
                        .committed_offset(&shared.config.application_id, &tp)?
                        .unwrap_or(0);
                    task.limit_restore(tp, committed);
                }
                Ok(task)
            };
            // Another thread of this instance may still hold the task as standby (until it
            // handles this rebalance): wait for it, as Kafka waits for the task's lock.
            if !self
                .shared
                .claim_task_dir(id, self.index, self.shared.config.max_poll_interval)
            {
                return Err(StreamsError::IllegalState(format!(
                    "task {id}: another stream thread of this instance kept its state \
                     directory for max.poll.interval.ms"
                )));
            }
            let restored = match self.tasks.add(id, &make, source.as_mut()) {
                Ok(r) => r,
                Err(e) => {
                    self.set_active_tasks();
                    return Err(e);
                }
            };
            self.shared
                .restored_records
                .fetch_add(restored, Ordering::Relaxed);
        }
        tracing::info!(tasks = ?self.tasks.ids().iter().map(ToString::to_string).collect::<Vec<_>>(), "tasks assigned");
        self.set_active_tasks();
        self.set_standby_tasks();
        self.shared.thread_state(self.index, true);
        Ok(())
    }

    /// Publishes this thread's standby tasks (for [`StreamsApp::standby_tasks`]).
    fn set_standby_tasks(&self) {
        let ids: BTreeSet<TaskId> = self.tasks.standby_ids().into_iter().collect();
        {
            let mut all = self.shared.standby_tasks.lock();
            if ids.is_empty() {
                all.remove(&self.index);
            } else {
                all.insert(self.index, ids);
            }
        }
        self.set_standby_offsets();
        self.release_task_dirs();
    }

    /// Publishes where this thread's standbys are (for
    /// [`StreamsApp::standby_changelog_offsets`]).
    fn set_standby_offsets(&self) {
        let offsets = self.tasks.standby_offsets();
        let mut all = self.shared.standby_offsets.lock();
        if offsets.is_empty() {
            all.remove(&self.index);
        } else {
            all.insert(self.index, offsets);
        }
    }

    /// The member's standby tasks from now on: standbys not in `ids` close cleanly (state
    /// and checkpoint kept), new ones open. Tasks active on this thread, and tasks without
    /// changelogs (nothing to keep warm), get no standby.
    fn on_standby(&mut self, ids: BTreeSet<TaskId>) -> Result<()> {
        let active: BTreeSet<TaskId> = self.tasks.ids().into_iter().collect();
        let resolved = self.shared.resolved.lock().clone();
        let topology = &self.shared.topology;
        self.standby_wanted = ids
            .into_iter()
            .filter(|id| !active.contains(id))
            .filter(|id| {
                resolved
                    .iter()
                    .find(|r| r.sub.id == id.subtopology as usize)
                    .is_some_and(|r| {
                        r.sub.stores.iter().any(|s| {
                            topology.stores.get(s).is_some_and(|spec| spec.is_logging())
                                || topology.source_changelogs.contains_key(s)
                        })
                    })
            })
            .collect();
        let wanted = self.standby_wanted.clone();
        let closed = self.close_standbys_except(&wanted);
        let opened = self.open_standbys();
        self.set_standby_tasks();
        closed?;
        opened
    }

    /// Closes cleanly the standby tasks not in `kept` (checkpoint written, state kept) and
    /// releases their directories. Returns the first error; every one is closed regardless.
    fn close_standbys_except(&mut self, kept: &BTreeSet<TaskId>) -> Result<()> {
        let mut first = None;
        let mut any = false;
        for id in self.tasks.standby_ids() {
            if !kept.contains(&id) {
                any = true;
                if let Err(e) = self.tasks.close_standby(&id) {
                    first.get_or_insert(e);
                }
            }
        }
        if any {
            self.set_standby_tasks();
        }
        first.map_or(Ok(()), Err)
    }

    /// Opens the wanted standby tasks that are not open (new in the assignment, or wiped
    /// after their state fell behind the changelog's start).
    fn open_standbys(&mut self) -> Result<()> {
        let open: BTreeSet<TaskId> = self.tasks.standby_ids().into_iter().collect();
        let missing: Vec<TaskId> = self.standby_wanted.difference(&open).copied().collect();
        if missing.is_empty() {
            return Ok(());
        }
        let resolved = self.shared.resolved.lock().clone();
        let reader = match &mut self.standby_reader {
            Some(r) => r,
            None => self
                .standby_reader
                .insert(self.shared.cluster.standby_source()?),
        };
        for id in missing {
            let Some(r) = resolved
                .iter()
                .find(|r| r.sub.id == id.subtopology as usize)
            else {
                continue;
            };
            if !self.shared.try_claim_task_dir(id, self.index) {
                // Another thread of this instance still holds it (it has not handled the
                // rebalance yet): opened at a later round of `update_standbys`.
                tracing::debug!(task = %id, "standby task directory busy; opening it later");
                continue;
            }
            let _span = tracing::info_span!("standby", task = %id).entered();
            let (shared, collector) = (&self.shared, self.tasks.collector().clone());
            let (settings, rocksdb, metrics) =
                (&self.standby_settings, &self.rocksdb, &self.metrics);
            let make = || {
                let mut task = Task::new(
                    &shared.topology,
                    &r.sub,
                    id,
                    &TaskInputs {
                        topics: BTreeMap::new(),
                    },
                    Arc::clone(settings),
                    Arc::clone(&collector),
                    Arc::new(SystemClock),
                    Some(&shared.config.state_dir),
                    Some(rocksdb),
                    Arc::clone(metrics),
                )?;
                for tp in task.source_changelog_partitions() {
                    let committed = shared
                        .cluster
                        .committed_offset(&shared.config.application_id, &tp)?
                        .unwrap_or(0);
                    task.limit_restore(tp, committed);
                }
                Ok(task)
            };
            if let Err(e) = self.tasks.add_standby(id, &make, reader.as_mut()) {
                self.release_task_dirs();
                return Err(e);
            }
        }
        tracing::info!(standby_tasks = ?self.tasks.standby_ids().iter().map(ToString::to_string).collect::<Vec<_>>(), "standby tasks open");
        Ok(())
    }

    /// One round of standby updates (after a processing round, so active tasks are not
    /// starved): applies what is new in every standby's changelogs.
    fn update_standbys(&mut self) -> Result<()> {
        if self.standby_wanted.is_empty() {
            self.standby_busy = false;
            return Ok(());
        }
        let Some(reader) = self.standby_reader.as_mut() else {
            return Ok(());
        };
        reader.retain(&self.tasks.standby_changelog_partitions());
        let applied = self.tasks.update_standbys(reader.as_mut())?;
        self.standby_busy = applied > 0;
        if applied > 0 {
            self.shared
                .standby_records
                .fetch_add(applied, Ordering::Relaxed);
            self.set_standby_offsets();
        }
        if self.tasks.standby_ids().len() < self.standby_wanted.len() {
            self.open_standbys()?;
            self.set_standby_tasks();
        }
        Ok(())
    }
}

/// Errors after which an exactly-once thread aborts its transaction and goes on with its
/// tasks restored (Kafka Streams' `TaskCorruptedException`): the cluster failed a produce
/// or commit with a retriable error. (A fenced producer rejoins instead, `on_fenced`.) A
/// processing error, a bad record or a config error still stops the thread.
fn recoverable_under_eos(e: &StreamsError) -> bool {
    e.cluster_kind() == Some(ClusterErrorKind::Retriable)
}

//! `TopologyTestDriver`: runs a topology synchronously, without a broker, for tests.
//!
//! Every topic has one partition, so each sub-topology runs as a single task (`<id>_0`).
//! Piping a record into an input topic processes it completely before the call returns:
//! records written to topics the topology itself reads (repartition topics) are processed
//! too, then the driver commits (flushing caches), as Kafka's `TopologyTestDriver` does
//! after every input record. Stores are the real ones (RocksDB under a temporary
//! directory unless declared in-memory), so their behaviour matches production.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::record::ConsumedRecord as RawRecord;
use parking_lot::Mutex;
use state_store::{RocksDbConfig, RocksDbResources, StoreMetrics, TopicPartition};

use crate::collector::{OutgoingRecord, RecordCollector, SharedCollector};
use crate::config::StreamsConfig;
use crate::error::{Result, StreamsError};
use crate::global::GlobalState;
use crate::record::{Header, Record};
use crate::serde::{Serde, SharedSerde};
use crate::store::TaskStore;
use crate::task::{Clock, MockClock, Task, TaskId, TaskInputs, TaskSettings};
use crate::task_manager::TaskManager;
use crate::topology::{NodeKind, SourceTopics, Topology};

/// Everything produced, by topic.
#[derive(Default)]
struct Produced {
    topics: BTreeMap<String, VecDeque<RawRecord>>,
    /// Records for topics the topology reads, waiting to be fed back.
    feedback: VecDeque<(String, RawRecord)>,
    next_offset: BTreeMap<String, i64>,
}

struct DriverCollector {
    produced: Arc<Mutex<Produced>>,
    internal_inputs: Vec<String>,
    acked: BTreeMap<TopicPartition, i64>,
}

impl RecordCollector for DriverCollector {
    fn partition_count(&mut self, _topic: &str) -> Result<i32> {
        Ok(1)
    }

    fn send(&mut self, r: OutgoingRecord) -> Result<()> {
        if let Some(p) = r.partition.filter(|&p| p != 0) {
            return Err(StreamsError::cluster_fatal(format!(
                "the test driver has one partition per topic; a record was sent to {}-{p}",
                r.topic
            )));
        }
        let mut produced = self.produced.lock();
        let offset = {
            let next = produced.next_offset.entry(r.topic.clone()).or_insert(0);
            *next += 1;
            *next - 1
        };
        let raw = RawRecord {
            offset,
            timestamp: r.timestamp,
            key: r.key.map(bytes::Bytes::from),
            value: r.value.map(bytes::Bytes::from),
            headers: r.headers,
        };
        self.acked
            .insert(TopicPartition::new(r.topic.clone(), 0), offset);
        if self.internal_inputs.contains(&r.topic) {
            produced.feedback.push_back((r.topic.clone(), raw.clone()));
        }
        produced.topics.entry(r.topic).or_default().push_back(raw);
        Ok(())
    }

    fn send_pending(&mut self) -> Result<()> {
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn produced_offsets(&self) -> &BTreeMap<TopicPartition, i64> {
        &self.acked
    }
}

struct DriverInner {
    config: StreamsConfig,
    topology: Arc<Topology>,
    tasks: TaskManager,
    /// Physical input topic -> task.
    inputs: BTreeMap<String, TaskId>,
    produced: Arc<Mutex<Produced>>,
    clock: Arc<MockClock>,
    input_offsets: BTreeMap<String, i64>,
    /// Records dropped by the tasks (shared with their settings).
    dropped: Arc<std::sync::atomic::AtomicU64>,
    globals: Arc<GlobalState>,
    _state: tempfile::TempDir,
}

impl DriverInner {
    fn pipe(&mut self, topic: &str, mut raw: RawRecord) -> Result<()> {
        let offset = self.input_offsets.entry(topic.to_owned()).or_insert(0);
        raw.offset = *offset;
        *offset += 1;
        self.feed(topic, raw)?;
        self.run()
    }

    fn feed(&mut self, topic: &str, raw: RawRecord) -> Result<()> {
        let tp = TopicPartition::new(topic.to_owned(), 0);
        if let Some(store) = self.globals.store_of_topic(topic) {
            return self.globals.apply(store, &tp, &raw);
        }
        if !self.inputs.contains_key(topic) || !self.tasks.add_records(&tp, vec![raw]) {
            return Err(StreamsError::IllegalState(format!(
                "topic `{topic}` is not read by the topology"
            )));
        }
        Ok(())
    }

    /// Feeds records written to topics the topology reads back to their tasks. Returns
    /// true if there were any.
    fn feed_back(&mut self) -> Result<bool> {
        let feedback: Vec<(String, RawRecord)> = self.produced.lock().feedback.drain(..).collect();
        let any = !feedback.is_empty();
        for (topic, raw) in feedback {
            self.feed(&topic, raw)?;
        }
        Ok(any)
    }

    /// Processes until no task has input and nothing is waiting to be fed back,
    /// committing (so flushing every cache) after each record, as Kafka's
    /// `TopologyTestDriver` does.
    fn run(&mut self) -> Result<()> {
        loop {
            self.commit()?;
            let mut progressed = self.feed_back()?;
            for id in self.tasks.ids() {
                while self.tasks.process_one(id)? {
                    progressed = true;
                    self.commit()?;
                    self.feed_back()?;
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    /// The task manager's commit; the driver has no group, so offsets are only recorded.
    fn commit(&mut self) -> Result<()> {
        self.tasks.commit(&|_| None, &mut |_offsets| Ok(()))
    }
}

/// Runs a topology without a broker. See the [module docs](self).
///
/// ```
/// use streams_core::{Processor, ProcessorContext, Record, Result, Sink, Source, StreamsConfig,
///     StringSerde, Topology, TopologyTestDriver};
///
/// struct Upper;
/// impl Processor<String, String> for Upper {
///     fn process(&mut self, ctx: &mut ProcessorContext<'_, String, String>, r: Record<String, String>) -> Result<()> {
///         let v = r.value.to_uppercase();
///         ctx.forward(r.with_value(v))
///     }
/// }
///
/// let mut topology = Topology::new();
/// topology.add_source(Source::<String, String>::new("in", ["words"]))?;
/// topology.add_processor("upper", || Upper, &["in"])?;
/// topology.add_sink(Sink::<String, String>::new("out", "shouted"), &["upper"])?;
///
/// let driver = TopologyTestDriver::new(topology, StreamsConfig::new("test"))?;
/// let input = driver.create_input_topic("words", StringSerde, StringSerde)?;
/// let output = driver.create_output_topic("shouted", StringSerde, StringSerde);
/// input.pipe_input("k".to_owned(), "hello".to_owned())?;
/// assert_eq!(output.read_key_value()?, ("k".to_owned(), "HELLO".to_owned()));
/// assert!(output.is_empty());
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct TopologyTestDriver {
    inner: Rc<RefCell<DriverInner>>,
}

impl std::fmt::Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyTestDriver").finish_non_exhaustive()
    }
}

impl TopologyTestDriver {
    /// A driver for `topology`, with the wall clock starting at the current time.
    pub fn new(topology: Topology, config: StreamsConfig) -> Result<Self> {
        let now = crate::task::SystemClock.now_ms();
        Self::with_wall_clock(topology, config, now)
    }

    /// A driver whose mocked wall clock starts at `start_ms`.
    pub fn with_wall_clock(
        topology: Topology,
        config: StreamsConfig,
        start_ms: i64,
    ) -> Result<Self> {
        config.validate_application_id()?;
        let state = tempfile::tempdir().map_err(|e| StreamsError::Io {
            path: "temporary state directory".into(),
            source: e,
        })?;
        let subs = topology.subtopologies()?;
        let mut topology = topology;
        topology.apply_optimizations(&config);
        let app = config.application_id.clone();
        let mut inputs = BTreeMap::new();
        let mut per_sub: BTreeMap<usize, BTreeMap<String, usize>> = BTreeMap::new();
        for sub in &subs {
            for &i in &sub.nodes {
                if let NodeKind::Source { topics, .. } = &topology.nodes[i].kind {
                    match topics {
                        SourceTopics::Names(names) => {
                            for t in names {
                                let physical = topology.physical_topic_name(&app, t);
                                inputs.insert(
                                    physical.clone(),
                                    TaskId {
                                        subtopology: sub.id as u32,
                                        partition: 0,
                                    },
                                );
                                per_sub.entry(sub.id).or_default().insert(physical, i);
                            }
                        }
                        SourceTopics::Pattern(_) => {
                            return Err(StreamsError::IllegalState(
                                "the test driver does not support pattern sources".into(),
                            ))
                        }
                    }
                }
            }
        }
        let rocksdb = RocksDbResources::new(RocksDbConfig {
            block_cache_bytes: 8 << 20,
            write_buffer_manager_bytes: 8 << 20,
            write_buffer_size: 4 << 20,
            ..RocksDbConfig::default()
        })?;
        let metrics = Arc::new(StoreMetrics::new());
        let dropped: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        // Global stores: one partition per topic, empty at start; records piped into (or
        // written by the topology to) a global topic update them at once, as Kafka's
        // driver does (`processGlobalRecord`).
        let globals = GlobalState::open(
            &topology,
            &app,
            &config.serdes,
            config.deserialization.clone(),
            Some(state.path()),
            Some(&rocksdb),
            Arc::clone(&metrics),
            Arc::clone(&dropped),
        )?;
        globals.set_partitions(|_| Ok(Some(1)))?;
        let globals = Arc::new(globals);
        let produced = Arc::new(Mutex::new(Produced::default()));
        let collector: SharedCollector = Arc::new(Mutex::new(Box::new(DriverCollector {
            produced: Arc::clone(&produced),
            internal_inputs: inputs
                .keys()
                .cloned()
                .chain(topology.globals.iter().map(|g| g.topic.clone()))
                .collect(),
            acked: BTreeMap::new(),
        })));
        let clock = Arc::new(MockClock::default());
        clock.0.store(start_ms, Ordering::Relaxed);
        let settings = Arc::new(TaskSettings {
            application_id: app,
            deserialization: config.deserialization.clone(),
            invalid_timestamps: config.invalid_timestamps,
            cache: state_store::ThreadCache::new(config.cache_max_bytes),
            serdes: config.serdes.clone(),
            exactly_once: false,
            max_task_idle_ms: config.max_task_idle_ms,
            outer_join_emit_interval_ms: config.outer_join_emit_interval_ms.unwrap_or(0),
            emit_interval_ms: config.emit_interval_windowed_aggregation_ms.unwrap_or(0),
            dropped,
            globals: Arc::clone(&globals),
        });
        let mut tasks = TaskManager::new(Arc::clone(&collector));
        for sub in &subs {
            let id = TaskId {
                subtopology: sub.id as u32,
                partition: 0,
            };
            let task = Task::new(
                &topology,
                sub,
                id,
                &TaskInputs {
                    topics: per_sub.remove(&sub.id).unwrap_or_default(),
                },
                Arc::clone(&settings),
                Arc::clone(&collector),
                clock.clone(),
                Some(state.path()),
                Some(&rocksdb),
                Arc::clone(&metrics),
            )?;
            tasks.add_initialized(task)?;
        }
        Ok(TopologyTestDriver {
            inner: Rc::new(RefCell::new(DriverInner {
                config,
                topology: Arc::new(topology),
                tasks,
                inputs,
                produced,
                clock,
                input_offsets: BTreeMap::new(),
                dropped: Arc::clone(&settings.dropped),
                globals,
                _state: state,
            })),
        })
    }

    fn physical(&self, topic: &str) -> String {
        let inner = self.inner.borrow();
        inner
            .topology
            .physical_topic_name(&inner.config.application_id, topic)
    }

    /// An input topic of the topology, typed with these serdes. Fails if no source reads it.
    pub fn create_input_topic<K: 'static, V: 'static>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> Result<TestInputTopic<K, V>> {
        let physical = self.physical(topic);
        let known = {
            let inner = self.inner.borrow();
            inner.inputs.contains_key(&physical)
                || inner.globals.store_of_topic(&physical).is_some()
        };
        if !known {
            return Err(StreamsError::IllegalState(format!(
                "topic `{topic}` is not read by the topology"
            )));
        }
        Ok(TestInputTopic {
            inner: Rc::clone(&self.inner),
            topic: physical,
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
            time: RefCell::new(0),
            auto_advance: Duration::ZERO,
        })
    }

    /// An output topic, typed with these serdes (any topic the topology writes, including
    /// internal ones, named as the topology names them).
    pub fn create_output_topic<K: 'static, V: 'static>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> TestOutputTopic<K, V> {
        TestOutputTopic {
            inner: Rc::clone(&self.inner),
            topic: self.physical(topic),
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
        }
    }

    /// Moves the mocked wall clock forward, fires due wall-clock punctuations, processes
    /// what they produce and commits.
    pub fn advance_wall_clock_time(&self, by: Duration) -> Result<()> {
        let mut inner = self.inner.borrow_mut();
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        inner.clock.0.fetch_add(ms, Ordering::Relaxed);
        inner.tasks.punctuate_wall_clock()?;
        inner.run()
    }

    /// The store `name` (from the task that owns it) with the default serdes of `K` and
    /// `V`, its changelog topic name (what store serdes see) and its kind.
    fn with_store<K: 'static, V: 'static, T>(
        &self,
        name: &str,
        read: impl FnOnce(&TaskStore, &StoreCodec<K, V>) -> Result<T>,
    ) -> Result<T> {
        let inner = self.inner.borrow();
        let codec = StoreCodec {
            key: inner
                .config
                .serdes
                .get::<K>()
                .ok_or_else(|| missing::<K>(name))?,
            value: inner
                .config
                .serdes
                .get::<V>()
                .ok_or_else(|| missing::<V>(name))?,
            topic: crate::names::changelog_topic(&inner.config.application_id, name),
            store: name.to_owned(),
            timestamped: false,
        };
        if let Some(global) = inner.globals.store(name) {
            let open = global.open.lock();
            let codec = StoreCodec {
                timestamped: open.spec.kind().is_timestamped(),
                topic: global.topic.clone(),
                ..codec
            };
            return read(open.store.get(), &codec);
        }
        let open = inner
            .tasks
            .tasks()
            .find_map(|t| t.open_store(name))
            .ok_or_else(|| StreamsError::IllegalState(format!("no store named `{name}`")))?;
        let timestamped = open.spec.kind().is_timestamped();
        let codec = StoreCodec {
            timestamped,
            ..codec
        };
        read(open.store.get(), &codec)
    }

    /// Reads the whole key-value store `name` (from the task that owns it, or the global
    /// store of that name), deserialized
    /// with the default serdes of `K` and `V`, in key-byte order. For a timestamped store
    /// the values without their timestamps.
    pub fn read_key_value_store<K: 'static, V: 'static>(&self, name: &str) -> Result<Vec<(K, V)>> {
        self.with_store::<K, V, _>(name, |store, codec| {
            let TaskStore::KeyValue(store) = store else {
                return Err(StreamsError::IllegalState(format!(
                    "store `{name}` is not a key-value store"
                )));
            };
            store
                .all(state_store::Direction::Forward)?
                .map(|e| {
                    let (k, v) = e?;
                    Ok((codec.key(&k)?, codec.value(&v)?))
                })
                .collect()
        })
    }

    /// Reads every retained window of window store `name`: (key, window start, value), in
    /// key-byte then window-start order.
    pub fn read_window_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<Vec<(K, i64, V)>> {
        self.with_store::<K, V, _>(name, |store, codec| {
            let TaskStore::Window(store) = store else {
                return Err(StreamsError::IllegalState(format!(
                    "store `{name}` is not a window store"
                )));
            };
            store
                .fetch_all(i64::MIN, i64::MAX)?
                .iter()
                .map(|e| Ok((codec.key(&e.key)?, e.window_start, codec.value(&e.value)?)))
                .collect()
        })
    }

    /// Reads every retained session of session store `name`: (key, start, end, value).
    pub fn read_session_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<Vec<(K, i64, i64, V)>> {
        self.with_store::<K, V, _>(name, |store, codec| {
            let TaskStore::Session(store) = store else {
                return Err(StreamsError::IllegalState(format!(
                    "store `{name}` is not a session store"
                )));
            };
            // Every key sorts at or below 4 KiB of 0xff bytes (a session store has no
            // unbounded scan; keys that long are not realistic).
            store
                .fetch_key_range(&[], &[0xff; 4096])?
                .iter()
                .map(|e| Ok((codec.key(&e.key)?, e.start, e.end, codec.value(&e.value)?)))
                .collect()
        })
    }

    /// The stream time of task `<subtopology>_0`.
    pub fn stream_time(&self, subtopology: u32) -> Option<i64> {
        self.inner
            .borrow()
            .tasks
            .task(&TaskId {
                subtopology,
                partition: 0,
            })
            .map(Task::stream_time)
    }

    /// Records the tasks dropped on purpose, as
    /// [`StreamsApp::dropped_records`](crate::StreamsApp::dropped_records) counts them
    /// (skipped input, null keys at a repartition sink, null keys or values at an
    /// aggregation).
    pub fn dropped_records(&self) -> u64 {
        self.inner.borrow().dropped.load(Ordering::Relaxed)
    }

    /// Records skipped because they could not be deserialized, over all tasks.
    pub fn skipped_records(&self) -> u64 {
        self.inner
            .borrow()
            .tasks
            .tasks()
            .map(|t| t.counters.skipped_deserialization + t.counters.skipped_timestamp)
            .sum()
    }

    /// Everything written to `topic` so far (raw), without consuming it.
    pub fn produced_count(&self, topic: &str) -> usize {
        let physical = self.physical(topic);
        self.inner
            .borrow()
            .produced
            .lock()
            .next_offset
            .get(&physical)
            .map_or(0, |n| usize::try_from(*n).unwrap_or(0))
    }

    /// Closes every task cleanly (processors' `close`, final flush).
    pub fn close(self) -> Result<()> {
        let mut inner = self.inner.borrow_mut();
        inner.run()?;
        inner.tasks.close_clean()?;
        inner.globals.close()
    }
}

/// Default serdes of a store being read by the driver.
struct StoreCodec<K, V> {
    key: SharedSerde<K>,
    value: SharedSerde<V>,
    topic: String,
    store: String,
    timestamped: bool,
}

impl<K: 'static, V: 'static> StoreCodec<K, V> {
    fn error(&self, what: &str, source: crate::error::SerdeError) -> StreamsError {
        StreamsError::Serde {
            what: format!("{what} of store `{}`", self.store),
            topic: self.topic.clone(),
            source,
        }
    }

    fn key(&self, bytes: &[u8]) -> Result<K> {
        self.key
            .deserialize(&self.topic, Some(bytes))
            .map_err(|e| self.error("key", e))
    }

    fn value(&self, bytes: &[u8]) -> Result<V> {
        let raw = match (self.timestamped, bytes.split_first_chunk::<8>()) {
            (false, _) => bytes,
            (true, Some((_, raw))) => raw,
            (true, None) => {
                return Err(self.error(
                    "value",
                    crate::error::SerdeError::new("a timestamped value shorter than 8 bytes"),
                ))
            }
        };
        self.value
            .deserialize(&self.topic, Some(raw))
            .map_err(|e| self.error("value", e))
    }
}

fn missing<T>(node: &str) -> StreamsError {
    StreamsError::MissingSerde {
        what: "store key or value",
        type_name: std::any::type_name::<T>(),
        node: node.to_owned(),
    }
}

/// An input topic of a [`TopologyTestDriver`].
pub struct TestInputTopic<K, V> {
    inner: Rc<RefCell<DriverInner>>,
    topic: String,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
    time: RefCell<i64>,
    auto_advance: Duration,
}

impl<K, V> std::fmt::Debug for TestInputTopic<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestInputTopic")
            .field("topic", &self.topic)
            .finish()
    }
}

impl<K: 'static, V: 'static> TestInputTopic<K, V> {
    /// Records piped without a timestamp get the topic's current time, which then advances
    /// by `step`.
    pub fn with_auto_advance(mut self, start_ms: i64, step: Duration) -> Self {
        *self.time.borrow_mut() = start_ms;
        self.auto_advance = step;
        self
    }

    /// Moves the topic's current time forward.
    pub fn advance_time(&self, by: Duration) {
        *self.time.borrow_mut() += i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
    }

    fn next_time(&self) -> i64 {
        let mut t = self.time.borrow_mut();
        let now = *t;
        *t += i64::try_from(self.auto_advance.as_millis()).unwrap_or(0);
        now
    }

    /// Pipes a record with the topic's current time, and processes it fully.
    pub fn pipe_input(&self, key: K, value: V) -> Result<()> {
        let ts = self.next_time();
        self.pipe_input_with_timestamp(key, value, ts)
    }

    /// Pipes a record with timestamp `timestamp_ms`, and processes it fully.
    pub fn pipe_input_with_timestamp(&self, key: K, value: V, timestamp_ms: i64) -> Result<()> {
        self.pipe_record(Record::new(key, value, timestamp_ms))
    }

    /// Pipes a record (with its headers), and processes it fully.
    pub fn pipe_record(&self, record: Record<K, V>) -> Result<()> {
        let serde_err = |what: &str, source| StreamsError::Serde {
            what: what.into(),
            topic: self.topic.clone(),
            source,
        };
        let key = self
            .key_serde
            .serialize(&self.topic, &record.key)
            .map_err(|e| serde_err("key", e))?;
        let value = self
            .value_serde
            .serialize(&self.topic, &record.value)
            .map_err(|e| serde_err("value", e))?;
        self.pipe_raw(key, value, record.timestamp, record.headers)
    }

    /// Pipes raw bytes (e.g. a malformed record, to test error handling).
    pub fn pipe_raw(
        &self,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        timestamp_ms: i64,
        headers: Vec<Header>,
    ) -> Result<()> {
        self.inner.borrow_mut().pipe(
            &self.topic,
            RawRecord {
                offset: 0,
                timestamp: timestamp_ms,
                key: key.map(bytes::Bytes::from),
                value: value.map(bytes::Bytes::from),
                headers,
            },
        )
    }

    /// Pipes each `(key, value)` with the topic's current time.
    pub fn pipe_key_values(&self, records: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        for (k, v) in records {
            self.pipe_input(k, v)?;
        }
        Ok(())
    }
}

/// An output topic of a [`TopologyTestDriver`]. Reading consumes records.
pub struct TestOutputTopic<K, V> {
    inner: Rc<RefCell<DriverInner>>,
    topic: String,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
}

impl<K, V> std::fmt::Debug for TestOutputTopic<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestOutputTopic")
            .field("topic", &self.topic)
            .finish()
    }
}

impl<K: 'static, V: 'static> TestOutputTopic<K, V> {
    /// Reads the next record (fails if there is none).
    pub fn read_record(&self) -> Result<Record<K, V>> {
        let raw = {
            let inner = self.inner.borrow();
            let mut produced = inner.produced.lock();
            produced
                .topics
                .get_mut(&self.topic)
                .and_then(VecDeque::pop_front)
        }
        .ok_or_else(|| {
            StreamsError::IllegalState(format!("no record left in topic `{}`", self.topic))
        })?;
        let serde_err = |what: &str, source| StreamsError::Serde {
            what: what.into(),
            topic: self.topic.clone(),
            source,
        };
        Ok(Record {
            key: self
                .key_serde
                .deserialize(&self.topic, raw.key.as_deref())
                .map_err(|e| serde_err("key", e))?,
            value: self
                .value_serde
                .deserialize(&self.topic, raw.value.as_deref())
                .map_err(|e| serde_err("value", e))?,
            timestamp: raw.timestamp,
            headers: raw.headers,
        })
    }

    /// Reads the next record's key and value.
    pub fn read_key_value(&self) -> Result<(K, V)> {
        self.read_record().map(|r| (r.key, r.value))
    }

    /// Reads the next record's value.
    pub fn read_value(&self) -> Result<V> {
        self.read_record().map(|r| r.value)
    }

    /// Reads every remaining record.
    pub fn read_records_to_vec(&self) -> Result<Vec<Record<K, V>>> {
        let mut out = Vec::new();
        while !self.is_empty() {
            out.push(self.read_record()?);
        }
        Ok(out)
    }

    /// Reads every remaining record's value (Kafka's `readValuesToList`).
    ///
    /// ```
    /// use streams_core::{Sink, Source, StreamsConfig, StringSerde, Topology, TopologyTestDriver};
    /// let mut topology = Topology::new();
    /// topology.add_source(Source::<String, String>::new("in", ["a"]))?;
    /// topology.add_sink(Sink::<String, String>::new("out", "b"), &["in"])?;
    /// let config = StreamsConfig::new("doc").default_serde(StringSerde);
    /// let driver = TopologyTestDriver::new(topology, config)?;
    /// let input = driver.create_input_topic("a", StringSerde, StringSerde)?;
    /// input.pipe_input("k".into(), "x".into())?;
    /// input.pipe_input("k".into(), "y".into())?;
    /// assert_eq!(driver.create_output_topic("b", StringSerde, StringSerde).read_values_to_vec()?, ["x", "y"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn read_values_to_vec(&self) -> Result<Vec<V>> {
        Ok(self
            .read_records_to_vec()?
            .into_iter()
            .map(|r| r.value)
            .collect())
    }

    /// Reads every remaining record as `(key, value)`.
    pub fn read_key_values_to_vec(&self) -> Result<Vec<(K, V)>> {
        Ok(self
            .read_records_to_vec()?
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect())
    }

    /// Reads every remaining record, keeping the last value per key (a table's view).
    pub fn read_key_values_to_map(&self) -> Result<BTreeMap<K, V>>
    where
        K: Ord,
    {
        Ok(self.read_key_values_to_vec()?.into_iter().collect())
    }

    /// Records not read yet.
    pub fn queue_size(&self) -> usize {
        let inner = self.inner.borrow();
        let produced = inner.produced.lock();
        produced.topics.get(&self.topic).map_or(0, VecDeque::len)
    }

    /// True if every record was read.
    pub fn is_empty(&self) -> bool {
        self.queue_size() == 0
    }
}

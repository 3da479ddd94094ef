//! Global stores (Kafka's global state: `Topology#addGlobalStore`, `GlobalStateManagerImpl`,
//! `GlobalStateUpdateTask`, `GlobalStreamThread`).
//!
//! A global store holds every partition of its source topic in every application
//! instance. The topic itself is its changelog (no `-changelog` topic): at start the store
//! is brought up to the end of every partition (from its `.checkpoint` in
//! `<state.dir>/<application.id>/global/`) before any stream thread starts; then the
//! application's global thread keeps reading the topic and applying new records, flushing
//! and checkpointing every `commit.interval.ms`. Processors read global stores with
//! [`ProcessorContext::global_store`](crate::ProcessorContext::global_store), never write
//! them.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use state_store::{
    Direction, RocksDbResources, StateStore, StoreMetrics, TaskDirectory, ThreadCache,
    TopicPartition,
};

use crate::client::ChangelogSource;
use crate::config::DeserializationHandler;
use crate::error::{Result, SerdeError, StreamsError, TopologyError};
use crate::record::ConsumedRecord;
use crate::serde::{SerdeRegistry, SharedSerde};
use crate::store::{
    open_store, resolve_store, timestamped, OpenStore, StoreBuilder, StoreEnv, StoreKind,
    TaskStore, ValueAndTimestamp, View,
};
use crate::topology::{resolve, Source, SourceTopics, Topology};

/// What a record of a global topic does to its store (Kafka's `KTableSource` rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GlobalUpdate {
    /// Upsert the key.
    Put,
    /// Delete the key (a null value).
    Delete,
    /// Skip the record (a null key), logged and counted.
    SkipNullKey,
}

/// Checks a record of a global topic with the source's serdes (so undeserializable records
/// go to the deserialization handler, as in Kafka's `GlobalStateUpdateTask`) and tells
/// what it does.
pub(crate) trait GlobalRecordCheck: Send {
    fn check(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> std::result::Result<GlobalUpdate, SerdeError>;
}

struct TypedGlobalCheck<K, V> {
    key: SharedSerde<K>,
    value: SharedSerde<V>,
}

impl<K: 'static, V: 'static> GlobalRecordCheck for TypedGlobalCheck<K, V> {
    fn check(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> std::result::Result<GlobalUpdate, SerdeError> {
        let Some(key) = key else {
            return Ok(GlobalUpdate::SkipNullKey);
        };
        let k = self.key.deserialize(topic, Some(key))?;
        if self.key.is_null(&k) {
            return Ok(GlobalUpdate::SkipNullKey);
        }
        let Some(raw) = value else {
            return Ok(GlobalUpdate::Delete);
        };
        let v = self.value.deserialize(topic, Some(raw))?;
        Ok(if self.value.is_null(&v) {
            GlobalUpdate::Delete
        } else {
            GlobalUpdate::Put
        })
    }
}

type GlobalCheckFactory =
    Arc<dyn Fn(&SerdeRegistry) -> Result<Box<dyn GlobalRecordCheck>> + Send + Sync>;

/// A global store declared in a topology: its source node (reading one topic) and the
/// processor that keeps the store (Kafka's global node group).
pub(crate) struct GlobalStoreDef {
    /// Regular nodes added before it: places its sub-topology id among the others.
    pub(crate) position: usize,
    pub(crate) source: String,
    pub(crate) processor: String,
    pub(crate) topic: String,
    pub(crate) store: StoreBuilder,
    make: GlobalCheckFactory,
}

impl Topology {
    /// Adds a global store (Kafka's `Topology#addGlobalStore` with the state-update
    /// processor of a global table, `KTableSource`): source node `source` reads one topic,
    /// processor `processor_name` writes every record of every partition into `store`, a
    /// timestamped key-value store (a null value deletes the key, a null key is skipped).
    /// The store is never change-logged (its topic is its changelog) nor cached. Global
    /// nodes form a sub-topology of their own that generates no tasks; processors of any
    /// task read the store with
    /// [`ProcessorContext::global_store`](crate::ProcessorContext::global_store) without
    /// being connected to it.
    ///
    /// ```
    /// use streams_core::{Source, StoreBuilder, StringSerde, Topology};
    /// let mut topology = Topology::new();
    /// topology.add_global_store(
    ///     StoreBuilder::timestamped_key_value("countries"),
    ///     Source::<String, String>::new("countries-source", ["countries"]).serdes(None, None),
    ///     "countries-processor",
    /// )?;
    /// topology.add_source(Source::<String, String>::new("orders", ["orders"]))?;
    /// let text = topology.describe()?.to_string();
    /// assert!(text.starts_with("Topologies:\n   Sub-topology: 0 for global store (will not generate tasks)\n"));
    /// assert!(text.contains("   Sub-topology: 1\n    Source: orders (topics: [orders])"));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn add_global_store<K, V>(
        &mut self,
        store: StoreBuilder,
        source: Source<K, V>,
        processor_name: &str,
    ) -> Result<&mut Self>
    where
        K: Send + Sync + Clone + 'static,
        V: Send + Sync + Clone + 'static,
    {
        let invalid = |reason: String| TopologyError::InvalidSource {
            node: source.name.clone(),
            reason,
        };
        let topic = match &source.topics {
            SourceTopics::Names(t) if t.len() == 1 => t[0].clone(),
            _ => return Err(invalid("a global store reads exactly one named topic".into()).into()),
        };
        if store.kind() != StoreKind::TimestampedKeyValue {
            return Err(invalid(format!(
                "global store `{}` must be a timestamped key-value store, not a {}",
                store.name(),
                store.kind().type_name()
            ))
            .into());
        }
        self.claim_name(&source.name)?;
        self.claim_name(processor_name)?;
        self.claim_name(store.name())?;
        if source.name == processor_name || store.name() == processor_name {
            return Err(TopologyError::NameClash(processor_name.to_owned()).into());
        }
        if self.source_topic_names().contains(topic.as_str()) {
            return Err(
                invalid(format!("topic `{topic}` is already read by another source")).into(),
            );
        }
        if self.is_internal_topic(&topic) {
            return Err(invalid(format!("topic `{topic}` is an internal topic")).into());
        }
        let (key_serde, value_serde) = (source.key_serde.clone(), source.value_serde.clone());
        let node = source.name.clone();
        let make: GlobalCheckFactory = Arc::new(move |registry: &SerdeRegistry| {
            Ok(Box::new(TypedGlobalCheck::<K, V> {
                key: resolve(&key_serde, registry, "key", &node)?,
                value: resolve(&value_serde, registry, "value", &node)?,
            }) as Box<dyn GlobalRecordCheck>)
        });
        let def = GlobalStoreDef {
            position: self.nodes.len(),
            source: source.name.clone(),
            processor: processor_name.to_owned(),
            topic,
            store: store.with_logging(false).with_caching(false),
            make,
        };
        self.globals.push(def);
        Ok(self)
    }

    /// The global stores' names and topics.
    pub fn global_store_topics(&self) -> impl Iterator<Item = (&str, &str)> {
        self.globals
            .iter()
            .map(|g| (g.store.name(), g.topic.as_str()))
    }
}

/// One global store of a running application (or test driver).
pub(crate) struct GlobalStore {
    pub(crate) name: String,
    pub(crate) topic: String,
    check: Mutex<Box<dyn GlobalRecordCheck>>,
    pub(crate) open: Mutex<OpenStore>,
}

/// The global stores of an application instance: opened, restored and updated by the
/// global thread (or the test driver), read by every task.
pub(crate) struct GlobalState {
    stores: BTreeMap<String, Arc<GlobalStore>>,
    dir: Option<TaskDirectory>,
    /// Per partition of a global topic, the next offset to read (what the `.checkpoint`
    /// holds, Kafka's global consumer position).
    positions: Mutex<BTreeMap<TopicPartition, i64>>,
    /// Partition counts of the global topics.
    partitions: Mutex<BTreeMap<String, i32>>,
    /// Topics of the persistent global stores: only their positions are checkpointed (an
    /// in-memory store is empty after a restart and reads its topic from the start).
    persistent_topics: std::collections::BTreeSet<String>,
    deserialization: DeserializationHandler,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for GlobalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalState")
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl GlobalState {
    /// No global stores.
    pub(crate) fn empty() -> Self {
        GlobalState {
            stores: BTreeMap::new(),
            dir: None,
            positions: Mutex::new(BTreeMap::new()),
            partitions: Mutex::new(BTreeMap::new()),
            persistent_topics: std::collections::BTreeSet::new(),
            deserialization: DeserializationHandler::Fail,
            dropped: Arc::default(),
        }
    }

    /// True if the topology has global stores.
    pub(crate) fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// Opens the global stores of `topology` under `<state_dir>/<application_id>/global`
    /// and reads their checkpoint.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        topology: &Topology,
        application_id: &str,
        serdes: &SerdeRegistry,
        deserialization: DeserializationHandler,
        state_dir: Option<&Path>,
        rocksdb: Option<&RocksDbResources>,
        metrics: Arc<StoreMetrics>,
        dropped: Arc<AtomicU64>,
    ) -> Result<Self> {
        let mut state = GlobalState {
            deserialization,
            dropped,
            ..Self::empty()
        };
        if topology.globals.is_empty() {
            return Ok(state);
        }
        let dir = match state_dir {
            Some(d) => Some(TaskDirectory::new(d, application_id, "global")?),
            None => None,
        };
        state.persistent_topics = topology
            .globals
            .iter()
            .filter(|g| g.store.is_persistent())
            .map(|g| g.topic.clone())
            .collect();
        if let Some(dir) = &dir {
            let mut start = dir.open()?.checkpoint;
            start.retain(|tp, _| state.persistent_topics.contains(&tp.topic));
            *state.positions.lock() = start;
        }
        let env = StoreEnv {
            dir: dir.as_ref(),
            rocksdb,
            cache: ThreadCache::new(0),
            metrics,
            application_id,
        };
        for g in &topology.globals {
            let mut open = open_store(&g.store, &env, None)?;
            // Kafka's metered global stores see the source topic as their changelog.
            open.serde_topic = g.topic.clone();
            state.stores.insert(
                g.store.name().to_owned(),
                Arc::new(GlobalStore {
                    name: g.store.name().to_owned(),
                    topic: g.topic.clone(),
                    check: Mutex::new((g.make)(serdes)?),
                    open: Mutex::new(open),
                }),
            );
        }
        state.dir = dir;
        Ok(state)
    }

    /// The global store `name`.
    pub(crate) fn store(&self, name: &str) -> Option<&Arc<GlobalStore>> {
        self.stores.get(name)
    }

    /// The global store reading `topic`.
    #[cfg_attr(not(feature = "test-utils"), allow(dead_code))]
    pub(crate) fn store_of_topic(&self, topic: &str) -> Option<&Arc<GlobalStore>> {
        self.stores.values().find(|s| s.topic == topic)
    }

    /// Records the partition counts of the global topics (`partitions(topic)`, `None` for a
    /// topic that does not exist: Kafka's global consumer fails on it too).
    pub(crate) fn set_partitions(
        &self,
        mut partitions: impl FnMut(&str) -> Result<Option<i32>>,
    ) -> Result<()> {
        let mut counts = self.partitions.lock();
        for s in self.stores.values() {
            match partitions(&s.topic)? {
                Some(n) => {
                    counts.insert(s.topic.clone(), n);
                }
                None => return Err(StreamsError::MissingSourceTopic(s.topic.clone())),
            }
        }
        Ok(())
    }

    fn topic_partitions(&self) -> Vec<(Arc<GlobalStore>, TopicPartition)> {
        let counts = self.partitions.lock();
        let mut out = Vec::new();
        for s in self.stores.values() {
            for p in 0..counts.get(&s.topic).copied().unwrap_or(0) {
                out.push((Arc::clone(s), TopicPartition::new(s.topic.clone(), p)));
            }
        }
        out
    }

    /// Brings every global store to the end of every partition of its topic (Kafka's
    /// `GlobalStateManagerImpl#restoreState`), from its checkpointed position. A position
    /// outside the partition (the topic was recreated or truncated) empties the store and
    /// reads the partition from its start, as Kafka wipes its global state on an invalid
    /// offset.
    pub(crate) fn restore(&self, reader: &mut dyn ChangelogSource) -> Result<()> {
        let partitions = self.topic_partitions();
        let mut bounds = Vec::with_capacity(partitions.len());
        for (_, tp) in &partitions {
            bounds.push(reader.offsets(tp)?);
        }
        // A store with a checkpoint outside any of its partitions is emptied and read again
        // from the start of every partition.
        let mut rebuild = BTreeMap::new();
        for ((store, tp), &(log_start, end)) in partitions.iter().zip(&bounds) {
            let checkpointed = self.positions.lock().get(tp).copied();
            if let Some(c) = checkpointed.filter(|&c| c > end || c < log_start) {
                tracing::warn!(store = store.name, partition = %tp, checkpoint = c, log_start, end,
                    "global store checkpoint is outside its topic partition; rebuilding the store");
                rebuild.insert(store.name.clone(), Arc::clone(store));
            }
        }
        for store in rebuild.values() {
            self.wipe(store)?;
            self.positions
                .lock()
                .retain(|tp, _| tp.topic != store.topic);
        }
        for ((store, tp), &(log_start, end)) in partitions.into_iter().zip(&bounds) {
            let checkpointed = self.positions.lock().get(&tp).copied();
            let mut next = checkpointed.unwrap_or(log_start);
            if next < end {
                tracing::info!(store = store.name, partition = %tp, from = next, to = end, "restoring global store");
            }
            while next < end {
                let batch = reader.read_consumed(&tp, next)?;
                if batch.is_empty() {
                    // Nothing readable left below the end (e.g. transaction markers).
                    next = end;
                    break;
                }
                let before = next;
                for r in &batch {
                    if r.offset >= end {
                        // Everything below the end is read (the rest were gaps).
                        next = end;
                        break;
                    }
                    self.apply(&store, &tp, r)?;
                    next = r.offset + 1;
                }
                if next == before {
                    next = end;
                }
            }
            self.positions.lock().insert(tp, next.max(end));
        }
        Ok(())
    }

    /// Reads what is new in every global partition (one read each) and applies it
    /// (Kafka's `GlobalStateUpdateTask#update`). Returns the records applied.
    pub(crate) fn poll(&self, reader: &mut dyn ChangelogSource) -> Result<usize> {
        let mut applied = 0;
        for (store, tp) in self.topic_partitions() {
            let next = self.positions.lock().get(&tp).copied().unwrap_or(0);
            let batch = reader.read_consumed(&tp, next)?;
            let mut position = next;
            for r in batch.iter().filter(|r| r.offset >= next) {
                self.apply(&store, &tp, r)?;
                position = r.offset + 1;
                applied += 1;
            }
            if position > next {
                self.positions.lock().insert(tp, position);
            }
        }
        Ok(applied)
    }

    /// Applies one record of a global topic to its store.
    pub(crate) fn apply(
        &self,
        store: &GlobalStore,
        tp: &TopicPartition,
        r: &ConsumedRecord,
    ) -> Result<()> {
        let verdict = store
            .check
            .lock()
            .check(&tp.topic, r.key.as_deref(), r.value.as_deref());
        let verdict = match verdict {
            Ok(v) => v,
            Err(e) => {
                let error = StreamsError::Deserialization {
                    task: "global".into(),
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: r.offset,
                    source: Box::new(StreamsError::Serde {
                        what: format!("record of global store `{}`", store.name),
                        topic: tp.topic.clone(),
                        source: e,
                    }),
                };
                return match self.deserialization {
                    DeserializationHandler::Fail => Err(error),
                    DeserializationHandler::LogAndContinue { .. } => {
                        tracing::warn!(store = store.name, %error, "skipping record of a global topic");
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                };
            }
        };
        let mut open = store.open.lock();
        let TaskStore::KeyValue(kv) = open.store.get_mut() else {
            return Err(StreamsError::IllegalState(format!(
                "global store `{}` is not a key-value store",
                store.name
            )));
        };
        match verdict {
            GlobalUpdate::Put => {
                let raw = r.value.as_deref().unwrap_or_default();
                let mut value = Vec::with_capacity(8 + raw.len());
                value.extend_from_slice(&r.timestamp.to_be_bytes());
                value.extend_from_slice(raw);
                kv.put(r.key.as_deref().unwrap_or_default(), &value)?;
            }
            GlobalUpdate::Delete => {
                kv.delete(r.key.as_deref().unwrap_or_default())?;
            }
            GlobalUpdate::SkipNullKey => {
                tracing::warn!(
                    store = store.name,
                    topic = tp.topic,
                    partition = tp.partition,
                    offset = r.offset,
                    "Skipping record due to null key"
                );
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Deletes every key of `store`.
    fn wipe(&self, store: &GlobalStore) -> Result<()> {
        let mut open = store.open.lock();
        let TaskStore::KeyValue(kv) = open.store.get_mut() else {
            return Ok(());
        };
        let keys: Vec<Vec<u8>> = kv
            .all(Direction::Forward)?
            .map(|e| e.map(|(k, _)| k))
            .collect::<state_store::Result<_>>()?;
        for k in keys {
            kv.delete(&k)?;
        }
        Ok(())
    }

    /// The positions a checkpoint may claim: those of persistent stores.
    fn checkpoint_positions(&self) -> BTreeMap<TopicPartition, i64> {
        let mut positions = self.positions.lock().clone();
        positions.retain(|tp, _| self.persistent_topics.contains(&tp.topic));
        positions
    }

    /// Flushes the stores, then writes the positions to the `.checkpoint` (Kafka's global
    /// `.checkpoint`, written by the global thread every commit interval).
    pub(crate) fn checkpoint(&self) -> Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let mut guards: Vec<_> = self.stores.values().map(|s| s.open.lock()).collect();
        let mut stores: Vec<&mut dyn StateStore> = guards
            .iter_mut()
            .map(|g| g.store.get_mut().state())
            .collect();
        let positions = self.checkpoint_positions();
        dir.checkpoint_stores(&mut stores, &positions)?;
        Ok(())
    }

    /// Flushes, checkpoints and closes the stores (a clean shutdown).
    pub(crate) fn close(&self) -> Result<()> {
        let mut guards: Vec<_> = self.stores.values().map(|s| s.open.lock()).collect();
        let mut stores: Vec<&mut dyn StateStore> = guards
            .iter_mut()
            .map(|g| g.store.get_mut().state())
            .collect();
        match &self.dir {
            Some(dir) => {
                let positions = self.checkpoint_positions();
                dir.close_clean(&mut stores, &positions)?;
            }
            None => {
                for s in stores {
                    s.close()?;
                }
            }
        }
        Ok(())
    }
}

/// A read-only view of a global store (Kafka's `ReadOnlyKeyValueStore` over a global
/// `TimestampedKeyValueStore`), from
/// [`ProcessorContext::global_store`](crate::ProcessorContext::global_store). Keys and
/// values go through the store's serdes (those of the global table's `Consumed`, else the
/// application's defaults). It sees every partition of the global topic.
///
/// ```
/// use streams_core::{Processor, ProcessorContext, Record, Result, Sink, Source, StoreBuilder,
///     StreamsConfig, StringSerde, Topology, TopologyTestDriver};
///
/// /// Forwards the size of the global table and the timestamp of the key's row.
/// struct Inspect;
/// impl Processor<String, String> for Inspect {
///     fn process(&mut self, ctx: &mut ProcessorContext<'_, String, String>, r: Record<String, String>) -> Result<()> {
///         let store = ctx.global_store::<String, String>("g")?;
///         let rows = store.all()?.len();
///         let ts = store.get_with_timestamp(&r.key)?.map_or(-1, |v| v.timestamp);
///         ctx.forward(r.with_value(format!("{rows} rows, {ts}")))
///     }
/// }
/// let mut topology = Topology::new();
/// topology.add_global_store(StoreBuilder::timestamped_key_value("g"), Source::<String, String>::new("g-source", ["g"]), "g-updater")?;
/// topology.add_source(Source::<String, String>::new("in", ["in"]))?;
/// topology.add_processor("inspect", || Inspect, &["in"])?;
/// topology.add_sink(Sink::<String, String>::new("out", "out"), &["inspect"])?;
/// let driver = TopologyTestDriver::new(topology, StreamsConfig::new("doc").default_serde(StringSerde))?;
/// let g = driver.create_input_topic("g", StringSerde, StringSerde)?;
/// g.pipe_input_with_timestamp("a".into(), "x".into(), 7)?;
/// g.pipe_input_with_timestamp("b".into(), "y".into(), 8)?;
/// driver.create_input_topic("in", StringSerde, StringSerde)?.pipe_input("a".into(), String::new())?;
/// assert_eq!(driver.create_output_topic("out", StringSerde, StringSerde).read_value()?, "2 rows, 7");
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct GlobalStoreHandle<K, V> {
    store: Arc<GlobalStore>,
    key: SharedSerde<K>,
    value: SharedSerde<ValueAndTimestamp<V>>,
    _t: PhantomData<fn(K, V)>,
}

impl<K, V> std::fmt::Debug for GlobalStoreHandle<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalStoreHandle")
            .field("store", &self.store.name)
            .finish()
    }
}

impl<K: 'static, V: 'static> GlobalStoreHandle<K, V> {
    pub(crate) fn new(
        store: &Arc<GlobalStore>,
        node: &str,
        registry: &SerdeRegistry,
    ) -> Result<Self> {
        let (key, value) = {
            let mut open = store.open.lock();
            resolve_store::<K, ValueAndTimestamp<V>, V>(
                &mut open,
                node,
                View::TimestampedKeyValue,
                registry,
                timestamped,
            )?
        };
        Ok(GlobalStoreHandle {
            store: Arc::clone(store),
            key,
            value,
            _t: PhantomData,
        })
    }

    fn serde_error(&self, what: &str, source: SerdeError) -> StreamsError {
        StreamsError::Serde {
            what: format!("{what} of global store `{}`", self.store.name),
            topic: self.store.topic.clone(),
            source,
        }
    }

    /// The value of `key` and the timestamp of the record that wrote it, if present.
    pub fn get_with_timestamp(&self, key: &K) -> Result<Option<ValueAndTimestamp<V>>> {
        let Some(k) = self
            .key
            .serialize(&self.store.topic, key)
            .map_err(|e| self.serde_error("key", e))?
        else {
            return Ok(None);
        };
        let raw = {
            let open = self.store.open.lock();
            let TaskStore::KeyValue(kv) = open.store.get() else {
                return Ok(None);
            };
            kv.get(&k)?
        };
        match raw {
            None => Ok(None),
            Some(v) => self
                .value
                .deserialize(&self.store.topic, Some(&v))
                .map(Some)
                .map_err(|e| self.serde_error("value", e)),
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        Ok(self.get_with_timestamp(key)?.map(|v| v.value))
    }

    /// Every entry, in key-byte order.
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        let raw: Vec<(Vec<u8>, Vec<u8>)> = {
            let open = self.store.open.lock();
            let TaskStore::KeyValue(kv) = open.store.get() else {
                return Ok(Vec::new());
            };
            let entries: Vec<(Vec<u8>, Vec<u8>)> = kv
                .all(Direction::Forward)?
                .collect::<state_store::Result<_>>()?;
            entries
        };
        raw.into_iter()
            .map(|(k, v)| {
                let key = self
                    .key
                    .deserialize(&self.store.topic, Some(&k))
                    .map_err(|e| self.serde_error("key", e))?;
                let value = self
                    .value
                    .deserialize(&self.store.topic, Some(&v))
                    .map_err(|e| self.serde_error("value", e))?;
                Ok((key, value.value))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::serde::StringSerde;
    use state_store::{ChangelogRecord, RocksDbConfig};

    /// A topic of `partitions` partitions in memory (log start 0 unless moved).
    #[derive(Default)]
    struct Log {
        records: BTreeMap<TopicPartition, Vec<ConsumedRecord>>,
        log_start: BTreeMap<TopicPartition, i64>,
    }

    impl Log {
        fn append(&mut self, p: i32, key: Option<&str>, value: Option<&str>, ts: i64) {
            let tp = TopicPartition::new("t", p);
            let v = self.records.entry(tp).or_default();
            v.push(ConsumedRecord {
                offset: v.len() as i64,
                timestamp: ts,
                key: key.map(|k| k.as_bytes().to_vec().into()),
                value: value.map(|x| x.as_bytes().to_vec().into()),
                headers: Vec::new(),
            });
        }
    }

    impl ChangelogSource for Log {
        fn offsets(&mut self, tp: &TopicPartition) -> Result<(i64, i64)> {
            let end = self.records.get(tp).map_or(0, |v| v.len() as i64);
            Ok((self.log_start.get(tp).copied().unwrap_or(0), end))
        }
        fn read(&mut self, tp: &TopicPartition, from: i64) -> Result<Vec<ChangelogRecord>> {
            Ok(self
                .read_consumed(tp, from)?
                .into_iter()
                .map(|r| ChangelogRecord {
                    offset: r.offset,
                    key: r.key.map(|k| k.to_vec()).unwrap_or_default(),
                    value: r.value.map(|v| v.to_vec()),
                    timestamp: r.timestamp,
                })
                .collect())
        }
        fn read_consumed(&mut self, tp: &TopicPartition, from: i64) -> Result<Vec<ConsumedRecord>> {
            Ok(self
                .records
                .get(tp)
                .map(|v| {
                    v.iter()
                        .filter(|r| r.offset >= from)
                        .take(2)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default())
        }
    }

    fn open(dir: &Path, in_memory: bool) -> GlobalState {
        let mut topology = Topology::new();
        let mut store = StoreBuilder::timestamped_key_value("s");
        if in_memory {
            store = store.in_memory();
        }
        topology
            .add_global_store(
                store,
                Source::<String, String>::new("src", ["t"])
                    .key_serde(StringSerde)
                    .value_serde(StringSerde),
                "proc",
            )
            .unwrap();
        let rocksdb = RocksDbResources::new(RocksDbConfig::default()).unwrap();
        let state = GlobalState::open(
            &topology,
            "app",
            &SerdeRegistry::with_builtins(),
            DeserializationHandler::Fail,
            Some(dir),
            Some(&rocksdb),
            Arc::new(StoreMetrics::new()),
            Arc::default(),
        )
        .unwrap();
        state.set_partitions(|_| Ok(Some(2))).unwrap();
        state
    }

    fn contents(state: &GlobalState) -> Vec<(String, String)> {
        let store = state.store("s").unwrap();
        GlobalStoreHandle::<String, String>::new(store, "test", &SerdeRegistry::with_builtins())
            .unwrap()
            .all()
            .unwrap()
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    /// `GlobalStateManagerImpl`: every partition to its end, then from the checkpoint.
    #[test]
    fn restores_every_partition_and_resumes_from_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::default();
        for (p, k, v) in [(0, "a", "1"), (1, "b", "2"), (0, "c", "3"), (1, "a", "4")] {
            log.append(p, Some(k), Some(v), 10);
        }
        log.append(0, None, Some("x"), 10); // null key: skipped and counted
        log.append(1, Some("b"), None, 11); // tombstone
        let state = open(dir.path(), false);
        state.restore(&mut log).unwrap();
        // Partition 1's "a" (4) comes after partition 0's (1) in restore order.
        assert_eq!(contents(&state), [kv("a", "4"), kv("c", "3")]);
        assert_eq!(state.dropped.load(Ordering::Relaxed), 1);
        state.close().unwrap();

        // Appended while closed; a reopened store only reads what is new.
        log.append(0, Some("d"), Some("5"), 12);
        let state = open(dir.path(), false);
        assert_eq!(
            *state.positions.lock(),
            BTreeMap::from([
                (TopicPartition::new("t", 0), 3),
                (TopicPartition::new("t", 1), 3)
            ])
        );
        state.restore(&mut log).unwrap();
        assert_eq!(contents(&state), [kv("a", "4"), kv("c", "3"), kv("d", "5")]);
        log.append(1, Some("e"), Some("6"), 13);
        assert_eq!(state.poll(&mut log).unwrap(), 1);
        assert_eq!(state.poll(&mut log).unwrap(), 0);
        assert_eq!(contents(&state).len(), 4);
        state.close().unwrap();
    }

    /// A checkpoint beyond a partition's end (the topic was recreated) empties the store,
    /// which is rebuilt from every partition.
    #[test]
    fn a_checkpoint_outside_the_topic_rebuilds_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::default();
        for (p, k) in [(0, "a"), (0, "b"), (1, "c"), (1, "d")] {
            log.append(p, Some(k), Some("old"), 1);
        }
        let state = open(dir.path(), false);
        state.restore(&mut log).unwrap();
        state.close().unwrap();
        let mut recreated = Log::default();
        recreated.append(0, Some("z"), Some("new"), 2);
        recreated.append(1, Some("c"), Some("new"), 2);
        let state = open(dir.path(), false);
        state.restore(&mut recreated).unwrap();
        assert_eq!(contents(&state), [kv("c", "new"), kv("z", "new")]);
        state.close().unwrap();
    }

    /// An in-memory global store never trusts a checkpoint: it is empty after a restart.
    #[test]
    fn in_memory_stores_restore_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::default();
        log.append(0, Some("a"), Some("1"), 1);
        log.append(1, Some("b"), Some("2"), 1);
        let state = open(dir.path(), true);
        state.restore(&mut log).unwrap();
        state.close().unwrap();
        let state = open(dir.path(), true);
        assert!(state.positions.lock().is_empty());
        state.restore(&mut log).unwrap();
        assert_eq!(contents(&state), [kv("a", "1"), kv("b", "2")]);
    }
}

//! The Processor API: user code that receives records one at a time, reads and writes
//! state stores, forwards records downstream and schedules punctuations.

use std::any::Any;
use std::marker::PhantomData;
use std::time::Duration;

use crate::error::{Result, StreamsError};
use crate::record::Change;
use crate::record::{InFlight, Record, RecordMetadata};
use crate::store::{
    resolve_store, same, timestamped, CacheFlush, KeyValueStoreHandle, SessionStoreHandle,
    TimeOrderedBufferHandle, ValueAndTimestamp, View, Window, WindowStoreHandle, Windowed,
};
use crate::task::{TaskContext, TaskId};

/// When a punctuation fires (Kafka's `PunctuationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PunctuationType {
    /// Driven by stream time: fires when records advance the task's stream time past the
    /// next scheduled time (never while no records arrive).
    StreamTime,
    /// Driven by the wall clock: fires when the system time passes the next scheduled time,
    /// whether records arrive or not.
    WallClockTime,
}

/// Identifies a punctuation scheduled with [`ProcessorContext::schedule`]; passed back to
/// [`Processor::punctuate`] and accepted by [`ProcessorContext::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScheduleId(pub(crate) u64);

/// A processor: receives records of type `Record<KIn, VIn>` and forwards records of type
/// `Record<KOut, VOut>` to its children.
///
/// Each task gets its own instance (built by the supplier given to
/// [`Topology::add_processor`](crate::Topology::add_processor)); calls on one instance never
/// overlap. Errors returned from any method follow the application's uncaught-error policy.
///
/// ```
/// use streams_core::{Processor, ProcessorContext, Record, Result};
///
/// /// Forwards each record with its value's length as the new value.
/// struct Length;
///
/// impl Processor<String, String, String, i64> for Length {
///     fn process(
///         &mut self,
///         ctx: &mut ProcessorContext<'_, String, i64>,
///         record: Record<String, String>,
///     ) -> Result<()> {
///         let n = record.value.chars().count() as i64;
///         ctx.forward(record.with_value(n))
///     }
/// }
/// ```
pub trait Processor<KIn, VIn, KOut = KIn, VOut = VIn>: Send + 'static {
    /// Called once before the first record, after the task's stores are restored. Schedule
    /// punctuations here.
    fn init(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Processes one record.
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
        record: Record<KIn, VIn>,
    ) -> Result<()>;

    /// A punctuation scheduled by this processor fires; `timestamp` is the stream time or
    /// the wall-clock time that triggered it.
    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
        schedule: ScheduleId,
        timestamp: i64,
    ) -> Result<()> {
        let _ = (ctx, schedule, timestamp);
        Ok(())
    }

    /// Called once when the task closes (after its last commit).
    fn close(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }
}

/// What a processor can do while it runs: forward records, reach its state stores, read the
/// current record's metadata, schedule punctuations and request a commit.
pub struct ProcessorContext<'a, KOut, VOut> {
    pub(crate) task: &'a mut TaskContext,
    pub(crate) node: usize,
    _out: PhantomData<fn(KOut, VOut)>,
}

impl<'a, KOut, VOut> ProcessorContext<'a, KOut, VOut>
where
    KOut: Any + Send + Clone,
    VOut: Any + Send + Clone,
{
    pub(crate) fn new(task: &'a mut TaskContext, node: usize) -> Self {
        ProcessorContext {
            task,
            node,
            _out: PhantomData,
        }
    }

    /// Forwards `record` to every child of this processor (depth first: the children have
    /// processed it when this returns).
    pub fn forward(&mut self, record: Record<KOut, VOut>) -> Result<()> {
        self.task.forward(self.node, record, None)
    }

    /// Forwards `record` to the child named `child` only.
    pub fn forward_to(&mut self, child: &str, record: Record<KOut, VOut>) -> Result<()> {
        let idx = self.task.child_index(self.node, child)?;
        self.task.forward(self.node, record, Some(idx))
    }

    /// Makes this processor the owner of store `store`'s cache flushes (Kafka's
    /// `TimestampedCacheFlushListener`, set up by its `TimestampedTupleForwarder`): every
    /// entry the store's record cache pushes down — evicted by a write, or flushed at a
    /// commit (dirty entries in the order of their last write) — is decoded with the
    /// store's serdes into a record (key, [`Change`] of new and old value, timestamp of the
    /// write) and handed to `listener`, whose context forwards to this processor's
    /// children. It runs synchronously, inside the store call that pushed the entries down
    /// (a handle's `put` that evicts, or the commit's flush), before that call returns: a
    /// record evicted by a `put` reaches downstream before anything this processor
    /// forwards after the `put`. Set it in [`Processor::init`]; one owner per store.
    ///
    /// Returns `true` if the store is cached (its writes then reach downstream only
    /// through the listener); `false` if it is not, and the listener will never run.
    pub fn set_cache_flush_listener<K, V, F>(&mut self, store: &str, listener: F) -> Result<bool>
    where
        K: 'static,
        V: 'static,
        F: FnMut(&mut ProcessorContext<'_, KOut, VOut>, Record<K, Change<V>>) -> Result<()>
            + Send
            + 'static,
    {
        let (open, registry, node) = self.task.connected_store(self.node, store)?;
        let (key, value) = resolve_store::<K, V, V>(open, node, View::KeyValue, registry, same)?;
        let codec = FlushCodec {
            store: store.to_owned(),
            topic: open.serde_topic.clone(),
            key,
            value,
        };
        let listener = KeyValueFlushListener {
            codec,
            listener,
            _types: PhantomData,
        };
        self.task
            .set_flush_listener(self.node, store, Box::new(listener))
    }

    /// [`set_cache_flush_listener`](Self::set_cache_flush_listener) for a timestamped
    /// key-value store (what table sources, table aggregations and materialized table
    /// operations keep), as Kafka's `TimestampedCacheFlushListener` hands its entries on:
    /// the listener gets the values without their timestamps, and the record's timestamp is
    /// the one stored with the new value (the one of the write for a delete).
    pub fn set_timestamped_cache_flush_listener<K, V, F>(
        &mut self,
        store: &str,
        mut listener: F,
    ) -> Result<bool>
    where
        K: 'static,
        V: 'static,
        F: FnMut(&mut ProcessorContext<'_, KOut, VOut>, Record<K, Change<V>>) -> Result<()>
            + Send
            + 'static,
    {
        let (open, registry, node) = self.task.connected_store(self.node, store)?;
        let (key, value) = resolve_store::<K, ValueAndTimestamp<V>, V>(
            open,
            node,
            View::TimestampedKeyValue,
            registry,
            timestamped,
        )?;
        let codec = FlushCodec {
            store: store.to_owned(),
            topic: open.serde_topic.clone(),
            key,
            value,
        };
        let unwrap = move |ctx: &mut ProcessorContext<'_, KOut, VOut>,
                           record: Record<K, Change<ValueAndTimestamp<V>>>|
              -> Result<()> {
            let Record {
                key,
                value: change,
                timestamp,
                headers,
            } = record;
            let timestamp = change.new.as_ref().map_or(timestamp, |n| n.timestamp);
            listener(
                ctx,
                Record {
                    key,
                    value: Change {
                        new: change.new.map(|n| n.value),
                        old: change.old.map(|o| o.value),
                    },
                    timestamp,
                    headers,
                },
            )
        };
        let listener = KeyValueFlushListener {
            codec,
            listener: unwrap,
            _types: PhantomData,
        };
        self.task
            .set_flush_listener(self.node, store, Box::new(listener))
    }

    /// [`set_cache_flush_listener`](Self::set_cache_flush_listener) for a window or session
    /// store: records are keyed by the key and its window (`[start, end)`) or session
    /// (`[start, end]`).
    pub fn set_windowed_cache_flush_listener<K, V, F>(
        &mut self,
        store: &str,
        listener: F,
    ) -> Result<bool>
    where
        K: 'static,
        V: 'static,
        F: FnMut(
                &mut ProcessorContext<'_, KOut, VOut>,
                Record<Windowed<K>, Change<V>>,
            ) -> Result<()>
            + Send
            + 'static,
    {
        let (open, registry, node) = self.task.connected_store(self.node, store)?;
        let view = match open.spec.kind() {
            crate::StoreKind::Session { .. } => View::Session,
            _ => View::Window,
        };
        let (key, value) = resolve_store::<K, V, V>(open, node, view, registry, same)?;
        let codec = FlushCodec {
            store: store.to_owned(),
            topic: open.serde_topic.clone(),
            key,
            value,
        };
        let listener = WindowedFlushListener {
            codec,
            listener,
            _types: PhantomData,
        };
        self.task
            .set_flush_listener(self.node, store, Box::new(listener))
    }

    /// [`set_windowed_cache_flush_listener`](Self::set_windowed_cache_flush_listener) for a
    /// timestamped window store (what windowed aggregations keep), as Kafka's
    /// `TimestampedCacheFlushListener` hands its entries on: the listener gets the values
    /// without their timestamps, and the record's timestamp is the timestamp stored with
    /// the new value (the one of the write for a delete).
    pub fn set_timestamped_windowed_cache_flush_listener<K, V, F>(
        &mut self,
        store: &str,
        mut listener: F,
    ) -> Result<bool>
    where
        K: 'static,
        V: 'static,
        F: FnMut(
                &mut ProcessorContext<'_, KOut, VOut>,
                Record<Windowed<K>, Change<V>>,
            ) -> Result<()>
            + Send
            + 'static,
    {
        let (open, registry, node) = self.task.connected_store(self.node, store)?;
        let (key, value) = resolve_store::<K, ValueAndTimestamp<V>, V>(
            open,
            node,
            View::TimestampedWindow,
            registry,
            timestamped,
        )?;
        let codec = FlushCodec {
            store: store.to_owned(),
            topic: open.serde_topic.clone(),
            key,
            value,
        };
        let unwrap = move |ctx: &mut ProcessorContext<'_, KOut, VOut>,
                           record: Record<Windowed<K>, Change<ValueAndTimestamp<V>>>|
              -> Result<()> {
            let Record {
                key,
                value: change,
                timestamp,
                headers,
            } = record;
            let timestamp = change.new.as_ref().map_or(timestamp, |n| n.timestamp);
            listener(
                ctx,
                Record {
                    key,
                    value: Change {
                        new: change.new.map(|n| n.value),
                        old: change.old.map(|o| o.value),
                    },
                    timestamp,
                    headers,
                },
            )
        };
        let listener = WindowedFlushListener {
            codec,
            listener: unwrap,
            _types: PhantomData,
        };
        self.task
            .set_flush_listener(self.node, store, Box::new(listener))
    }
}

impl<K, V> ProcessorContext<'_, K, Change<V>>
where
    K: Any + Send + Clone,
    V: Any + Send + Clone,
{
    /// Forwards store `store`'s cache flushes to this processor's children as they are
    /// (key, [`Change`], timestamp): what Kafka's table processors do with a
    /// `TimestampedCacheFlushListener`. Returns `true` if the store is cached; see
    /// [`set_cache_flush_listener`](Self::set_cache_flush_listener).
    ///
    /// ```
    /// use streams_core::{Change, Processor, ProcessorContext, Record, Result, Sink, Source,
    ///     StoreBuilder, StreamsConfig, StringSerde, I64Serde, Topology, TopologyTestDriver};
    ///
    /// /// Sums values per key; with a cache, downstream sees one update per key per commit.
    /// struct Sum { cached: bool }
    /// impl Processor<String, i64, String, Change<i64>> for Sum {
    ///     fn init(&mut self, ctx: &mut ProcessorContext<'_, String, Change<i64>>) -> Result<()> {
    ///         self.cached = ctx.forward_cache_flushes("sums")?;
    ///         Ok(())
    ///     }
    ///     fn process(&mut self, ctx: &mut ProcessorContext<'_, String, Change<i64>>, r: Record<String, i64>) -> Result<()> {
    ///         let mut store = ctx.key_value_store::<String, i64>("sums")?;
    ///         let old = store.get(&r.key)?;
    ///         let new = old.unwrap_or(0) + r.value;
    ///         store.put(&r.key, &new)?;
    ///         if self.cached {
    ///             return Ok(());
    ///         }
    ///         ctx.forward(r.with_value(Change { new: Some(new), old }))
    ///     }
    /// }
    ///
    /// /// Forwards the new value of each change.
    /// struct NewValue;
    /// impl Processor<String, Change<i64>, String, Option<i64>> for NewValue {
    ///     fn process(&mut self, ctx: &mut ProcessorContext<'_, String, Option<i64>>, r: Record<String, Change<i64>>) -> Result<()> {
    ///         let new = r.value.new;
    ///         ctx.forward(r.with_value(new))
    ///     }
    /// }
    ///
    /// let mut t = Topology::new();
    /// t.add_source(Source::<String, i64>::new("in", ["amounts"]))?;
    /// t.add_processor("sum", || Sum { cached: false }, &["in"])?;
    /// t.add_state_store(StoreBuilder::key_value("sums").with_caching(true), &["sum"])?;
    /// t.add_processor("new-values", || NewValue, &["sum"])?;
    /// t.add_sink(Sink::<String, Option<i64>>::new("out", "sums"), &["new-values"])?;
    /// let driver = TopologyTestDriver::new(t, StreamsConfig::new("doc"))?;
    /// let input = driver.create_input_topic("amounts", StringSerde, I64Serde)?;
    /// input.pipe_input("a".into(), 2)?;
    /// input.pipe_input("a".into(), 3)?;
    /// let out = driver.create_output_topic("sums", StringSerde, I64Serde);
    /// assert_eq!(out.read_key_values_to_vec()?, vec![("a".into(), 2), ("a".into(), 5)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn forward_cache_flushes(&mut self, store: &str) -> Result<bool> {
        self.set_cache_flush_listener::<K, V, _>(store, |ctx, record| ctx.forward(record))
    }
}

impl<K, V> ProcessorContext<'_, Windowed<K>, Change<V>>
where
    K: Any + Send + Clone,
    V: Any + Send + Clone,
{
    /// Forwards the cache flushes of timestamped window store `store` to this processor's
    /// children as they are (what Kafka's window aggregations do through a
    /// `TimestampedTupleForwarder` and a `TimestampedCacheFlushListener`); see
    /// [`set_timestamped_windowed_cache_flush_listener`](ProcessorContext::set_timestamped_windowed_cache_flush_listener).
    /// Returns `true` if the store is cached (its writes then reach downstream only
    /// through its flushes).
    pub fn forward_timestamped_window_cache_flushes(&mut self, store: &str) -> Result<bool> {
        self.set_timestamped_windowed_cache_flush_listener::<K, V, _>(store, |ctx, record| {
            ctx.forward(record)
        })
    }
}

/// Read and write access to the stores connected to a processor, without its output
/// types: what a table's value getter (Kafka's `KTableValueGetter`) needs to read a
/// table's store from a processor of any output type. From
/// [`ProcessorContext::store_access`].
pub struct StoreAccess<'a> {
    task: &'a mut TaskContext,
    node: usize,
}

impl std::fmt::Debug for StoreAccess<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreAccess")
            .field("node", &self.node)
            .finish()
    }
}

impl StoreAccess<'_> {
    /// The kind of store `name` (connected to this processor), if there is one.
    pub fn store_kind(&mut self, name: &str) -> Option<crate::store::StoreKind> {
        self.task
            .connected_store(self.node, name)
            .ok()
            .map(|(open, _, _)| open.spec.kind())
    }

    /// The key-value store `name`, as [`ProcessorContext::key_value_store`].
    pub fn key_value_store<'s, K: 'static, V: 'static>(
        &'s mut self,
        name: &'s str,
    ) -> Result<KeyValueStoreHandle<'s, K, V>> {
        let (open, registry, node) = self.task.connected_store(self.node, name)?;
        let serdes = resolve_store::<K, V, V>(open, node, View::KeyValue, registry, same)?;
        KeyValueStoreHandle::new(&mut *self.task, name, serdes)
    }

    /// The timestamped key-value store `name`, as
    /// [`ProcessorContext::timestamped_key_value_store`].
    pub fn timestamped_key_value_store<'s, K: 'static, V: 'static>(
        &'s mut self,
        name: &'s str,
    ) -> Result<KeyValueStoreHandle<'s, K, ValueAndTimestamp<V>>> {
        let (open, registry, node) = self.task.connected_store(self.node, name)?;
        let serdes = resolve_store::<K, ValueAndTimestamp<V>, V>(
            open,
            node,
            View::TimestampedKeyValue,
            registry,
            timestamped,
        )?;
        KeyValueStoreHandle::new(&mut *self.task, name, serdes)
    }
}

impl<KOut, VOut> ProcessorContext<'_, KOut, VOut> {
    /// Access to this processor's stores that does not carry its output types (for
    /// helpers shared by processors of different output types, such as table value
    /// getters).
    pub fn store_access(&mut self) -> StoreAccess<'_> {
        StoreAccess {
            task: &mut *self.task,
            node: self.node,
        }
    }

    /// The key-value store `name` (connected to this processor), with keys `K` and values
    /// `V` (de)serialized by the store's serdes or the application's defaults.
    pub fn key_value_store<'s, K: 'static, V: 'static>(
        &'s mut self,
        name: &'s str,
    ) -> Result<KeyValueStoreHandle<'s, K, V>> {
        let (open, registry, node) = self.task.connected_store(self.node, name)?;
        let serdes = resolve_store::<K, V, V>(open, node, View::KeyValue, registry, same)?;
        KeyValueStoreHandle::new(&mut *self.task, name, serdes)
    }

    /// The timestamped key-value store `name`: values come with the timestamp of the
    /// record that wrote them.
    pub fn timestamped_key_value_store<'s, K: 'static, V: 'static>(
        &'s mut self,
        name: &'s str,
    ) -> Result<KeyValueStoreHandle<'s, K, ValueAndTimestamp<V>>> {
        let (open, registry, node) = self.task.connected_store(self.node, name)?;
        let serdes = resolve_store::<K, ValueAndTimestamp<V>, V>(
            open,
            node,
            View::TimestampedKeyValue,
            registry,
            timestamped,
        )?;
        KeyValueStoreHandle::new(&mut *self.task, name, serdes)
    }

    /// The global store `name` (Kafka's `ProcessorContext#getStateStore` for a global
    /// store), read-only: every partition of its topic, kept up to date by the global
    /// thread. Any processor can read any global store; it needs no connection. Values
    /// come without their timestamps from [`GlobalStoreHandle::get`](crate::GlobalStoreHandle::get).
    ///
    /// ```
    /// use streams_core::{Processor, ProcessorContext, Record, Result, Sink, Source, StoreBuilder,
    ///     StreamsConfig, StringSerde, Topology, TopologyTestDriver};
    ///
    /// /// Adds the customer's country to each order.
    /// struct Enrich;
    /// impl Processor<String, String> for Enrich {
    ///     fn process(&mut self, ctx: &mut ProcessorContext<'_, String, String>, r: Record<String, String>) -> Result<()> {
    ///         let country = ctx.global_store::<String, String>("countries")?.get(&r.key)?;
    ///         let v = format!("{} from {}", r.value, country.unwrap_or_else(|| "?".into()));
    ///         ctx.forward(r.with_value(v))
    ///     }
    /// }
    ///
    /// let mut topology = Topology::new();
    /// topology.add_global_store(
    ///     StoreBuilder::timestamped_key_value("countries").in_memory(),
    ///     Source::<String, String>::new("countries-source", ["countries"]),
    ///     "countries-updater",
    /// )?;
    /// topology.add_source(Source::<String, String>::new("orders-source", ["orders"]))?;
    /// topology.add_processor("enrich", || Enrich, &["orders-source"])?;
    /// topology.add_sink(Sink::<String, String>::new("out", "enriched"), &["enrich"])?;
    /// let config = StreamsConfig::new("doc").default_serde(StringSerde);
    /// let driver = TopologyTestDriver::new(topology, config)?;
    /// let countries = driver.create_input_topic("countries", StringSerde, StringSerde)?;
    /// let orders = driver.create_input_topic("orders", StringSerde, StringSerde)?;
    /// countries.pipe_input("ann".into(), "NO".into())?;
    /// orders.pipe_input("ann".into(), "book".into())?;
    /// orders.pipe_input("bob".into(), "pen".into())?;
    /// let out = driver.create_output_topic("enriched", StringSerde, StringSerde);
    /// assert_eq!(out.read_values_to_vec()?, ["book from NO", "pen from ?"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn global_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<crate::GlobalStoreHandle<K, V>> {
        let node = self.task.node_name(self.node).to_owned();
        match self.task.globals.store(name) {
            Some(store) => crate::GlobalStoreHandle::new(store, &node, &self.task.serdes),
            None => Err(crate::StreamsError::StoreAccess {
                node,
                store: name.to_owned(),
                reason: "there is no global store of that name".into(),
            }),
        }
    }

    /// The window store `name`.
    pub fn window_store<'s, K: 'static, V: 'static>(
        &'s mut self,
        name: &'s str,
    ) -> Result<WindowStoreHandle<'s, K, V>> {
        let (open, registry, node) = self.task.connected_store(self.node, name)?;
        let serdes = resolve_store::<K, V, V>(open, node, View::Window, registry, same)?;
        WindowStoreHandle::new(&mut *self.task, name, serdes)
    }

    /// The timestamped window store `name` (what windowed aggregations keep).
    pub fn timestamped_window_store<'s, K: 'static, V: 'static>(
        &'s mut self,
        name: &'s str,
    ) -> Result<WindowStoreHandle<'s, K, ValueAndTimestamp<V>>> {
        let (open, registry, node) = self.task.connected_store(self.node, name)?;
        let serdes = resolve_store::<K, ValueAndTimestamp<V>, V>(
            open,
            node,
            View::TimestampedWindow,
            registry,
            timestamped,
        )?;
        WindowStoreHandle::new(&mut *self.task, name, serdes)
    }

    /// The session store `name`.
    pub fn session_store<'s, K: 'static, V: 'static>(
        &'s mut self,
        name: &'s str,
    ) -> Result<SessionStoreHandle<'s, K, V>> {
        let (open, registry, node) = self.task.connected_store(self.node, name)?;
        let serdes = resolve_store::<K, V, V>(open, node, View::Session, registry, same)?;
        SessionStoreHandle::new(&mut *self.task, name, serdes)
    }

    /// The suppression buffer `name` (a [`StoreBuilder::time_ordered_buffer`]), with keys
    /// `K` and table values `V`.
    ///
    /// [`StoreBuilder::time_ordered_buffer`]: crate::StoreBuilder::time_ordered_buffer
    pub fn time_ordered_buffer<'s, K: 'static, V: 'static>(
        &'s mut self,
        name: &'s str,
    ) -> Result<TimeOrderedBufferHandle<'s, K, V>> {
        let (open, registry, node) = self.task.connected_store(self.node, name)?;
        let serdes = resolve_store::<K, V, V>(open, node, View::TimeOrderedBuffer, registry, same)?;
        TimeOrderedBufferHandle::new(&mut *self.task, name, serdes)
    }

    /// True if store `name` has a record cache (caching requested and a cache size above
    /// zero): its writes reach downstream through the listener set with
    /// [`ProcessorContext::set_cache_flush_listener`] (or
    /// [`ProcessorContext::forward_cache_flushes`]) rather than at once.
    pub fn is_store_cached(&self, name: &str) -> bool {
        self.task
            .stores
            .get(name)
            .is_some_and(|s| s.cache.is_some())
    }

    /// Topic, partition and offset of the record being processed (`None` inside a
    /// punctuation).
    pub fn record_metadata(&self) -> Option<&RecordMetadata> {
        self.task.metadata.as_ref()
    }

    /// The task this processor instance belongs to.
    pub fn task_id(&self) -> TaskId {
        self.task.task_id
    }

    /// The application id.
    pub fn application_id(&self) -> &str {
        &self.task.application_id
    }

    /// The application's default serdes (for processors that serialize into stores).
    pub fn serdes(&self) -> &crate::SerdeRegistry {
        &self.task.serdes
    }

    /// The name of this processor node.
    pub fn node_name(&self) -> &str {
        self.task.node_name(self.node)
    }

    /// The task's stream time: the largest record timestamp it has processed, or -1.
    pub fn stream_time(&self) -> i64 {
        self.task.stream_time
    }

    /// The current wall-clock time in milliseconds (the test driver's mocked time under
    /// `TopologyTestDriver`).
    pub fn current_system_time_ms(&self) -> i64 {
        self.task.clock.now_ms()
    }

    /// How often (wall clock, ms) a left or outer stream-stream join looks for non-joined
    /// records whose window closed:
    /// [`StreamsConfig::outer_join_emit_interval`](crate::StreamsConfig::outer_join_emit_interval),
    /// 1,000 by default, 0 under the `TopologyTestDriver`.
    pub fn outer_join_emit_interval_ms(&self) -> i64 {
        self.task.outer_join_emit_interval_ms
    }

    /// How often (wall-clock milliseconds) an emit-on-window-close windowed aggregation
    /// checks for closed windows: Kafka's internal
    /// `__emit.interval.ms.kstreams.windowed.aggregation__` (see
    /// [`StreamsConfig::emit_interval_windowed_aggregation`](crate::StreamsConfig::emit_interval_windowed_aggregation);
    /// 1000 by default, 0 in the `TopologyTestDriver` unless configured).
    pub fn windowed_aggregation_emit_interval_ms(&self) -> i64 {
        self.task.emit_interval_ms
    }

    /// A value this task keeps with its committed input offsets (Kafka's
    /// `processorMetadataForKey`): what a processor stored with
    /// [`ProcessorContext::add_processor_metadata`] before the last commit, also after a
    /// restart or on another instance. Emit-on-window-close aggregations keep their last
    /// emitted window close time there, keyed by their store name.
    pub fn processor_metadata_for_key(&self, key: &str) -> Option<i64> {
        self.task.processor_metadata.get(key).copied()
    }

    /// Stores `value` under `key` in the task's processor metadata, committed with the
    /// input offsets in Kafka's offset-commit metadata format (`TopicPartitionMetadata`;
    /// Kafka's `addProcessorMetadataKeyValue`).
    ///
    /// ```
    /// use streams_core::{I64Serde, Processor, ProcessorContext, Record, Result, Sink, Source,
    ///     StreamsConfig, StringSerde, Topology, TopologyTestDriver};
    ///
    /// /// Forwards the largest timestamp seen so far, kept in the processor metadata.
    /// struct Latest;
    /// impl Processor<String, String, String, i64> for Latest {
    ///     fn process(&mut self, ctx: &mut ProcessorContext<'_, String, i64>, r: Record<String, String>) -> Result<()> {
    ///         let latest = ctx.processor_metadata_for_key("latest").unwrap_or(-1).max(r.timestamp);
    ///         ctx.add_processor_metadata("latest", latest);
    ///         ctx.forward(Record::new(r.key, latest, r.timestamp))
    ///     }
    /// }
    ///
    /// let mut t = Topology::new();
    /// t.add_source(Source::<String, String>::new("in", ["events"]))?;
    /// t.add_processor("latest", || Latest, &["in"])?;
    /// t.add_sink(Sink::<String, i64>::new("out", "latest"), &["latest"])?;
    /// let driver = TopologyTestDriver::new(t, StreamsConfig::new("doc"))?;
    /// let input = driver.create_input_topic("events", StringSerde, StringSerde)?;
    /// for ts in [5, 3, 9] {
    ///     input.pipe_input_with_timestamp("k".into(), "e".into(), ts)?;
    /// }
    /// let out = driver.create_output_topic("latest", StringSerde, I64Serde);
    /// let got: Vec<i64> = out.read_records_to_vec()?.into_iter().map(|r| r.value).collect();
    /// assert_eq!(got, [5, 5, 9]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn add_processor_metadata(&mut self, key: &str, value: i64) {
        self.task.processor_metadata.insert(key.to_owned(), value);
    }

    /// Schedules [`Processor::punctuate`] every `interval`, on stream time or on the wall
    /// clock. Intervals below 1 ms are refused.
    pub fn schedule(&mut self, interval: Duration, kind: PunctuationType) -> Result<ScheduleId> {
        self.task.schedule(self.node, interval, kind)
    }

    /// Cancels a punctuation scheduled by this processor.
    pub fn cancel(&mut self, schedule: ScheduleId) {
        self.task.cancel(schedule);
    }

    /// Counts a record this processor drops on purpose (Kafka's `dropped-records`
    /// metric), e.g. a null key or value an aggregation cannot use; the total is
    /// [`StreamsApp::dropped_records`](crate::StreamsApp::dropped_records). Log why, too.
    pub fn record_dropped(&mut self) {
        self.task.record_dropped();
    }

    /// Asks for a commit as soon as possible (after the current record).
    pub fn commit(&mut self) {
        self.task.commit_requested = true;
    }
}

/// A processor whose record types are known only inside it.
pub(crate) trait ErasedProcessor: Send {
    fn init(&mut self, task: &mut TaskContext, node: usize) -> Result<()>;
    fn process(&mut self, task: &mut TaskContext, node: usize, record: InFlight<'_>) -> Result<()>;
    fn punctuate(
        &mut self,
        task: &mut TaskContext,
        node: usize,
        schedule: ScheduleId,
        timestamp: i64,
    ) -> Result<()>;
    fn close(&mut self, task: &mut TaskContext, node: usize) -> Result<()>;
}

pub(crate) struct TypedProcessor<P, KIn, VIn, KOut, VOut> {
    pub(crate) inner: P,
    pub(crate) _types: PhantomData<fn(KIn, VIn, KOut, VOut)>,
}

impl<P, KIn, VIn, KOut, VOut> ErasedProcessor for TypedProcessor<P, KIn, VIn, KOut, VOut>
where
    P: Processor<KIn, VIn, KOut, VOut>,
    KIn: Any + Send + Clone,
    VIn: Any + Send + Clone,
    KOut: Any + Send + Clone,
    VOut: Any + Send + Clone,
{
    fn init(&mut self, task: &mut TaskContext, node: usize) -> Result<()> {
        self.inner.init(&mut ProcessorContext::new(task, node))
    }

    fn process(&mut self, task: &mut TaskContext, node: usize, record: InFlight<'_>) -> Result<()> {
        let record = record
            .take::<KIn, VIn>()
            .map_err(|m| StreamsError::Processing {
                task: task.task_id.to_string(),
                node: task.node_name(node).to_owned(),
                message: format!(
                    "received a record of type {} where {} was expected",
                    m.actual, m.expected
                ),
            })?;
        self.inner
            .process(&mut ProcessorContext::new(task, node), record)
    }

    fn punctuate(
        &mut self,
        task: &mut TaskContext,
        node: usize,
        schedule: ScheduleId,
        timestamp: i64,
    ) -> Result<()> {
        self.inner
            .punctuate(&mut ProcessorContext::new(task, node), schedule, timestamp)
    }

    fn close(&mut self, task: &mut TaskContext, node: usize) -> Result<()> {
        self.inner.close(&mut ProcessorContext::new(task, node))
    }
}

/// The cache-flush listener of a store, with its record types erased (what the task holds
/// per cached store; see [`ProcessorContext::set_cache_flush_listener`]).
pub(crate) trait ErasedFlushListener: Send {
    /// Decodes `entry` and runs the listener as processor `node`.
    fn on_flush(&mut self, task: &mut TaskContext, node: usize, entry: CacheFlush) -> Result<()>;
}

/// A store's flush listener and the processor that owns it. `listener` is `None` while it
/// runs (taken out of the task, as processor instances are).
pub(crate) struct FlushListener {
    pub(crate) node: usize,
    pub(crate) listener: Option<Box<dyn ErasedFlushListener>>,
}

/// Decodes flushed bytes with a store's serdes.
struct FlushCodec<K, V> {
    store: String,
    topic: String,
    key: crate::serde::SharedSerde<K>,
    value: crate::serde::SharedSerde<V>,
}

impl<K: 'static, V: 'static> FlushCodec<K, V> {
    fn err(&self, what: &str, source: crate::error::SerdeError) -> StreamsError {
        StreamsError::Serde {
            what: format!("flushed {what} of store `{}`", self.store),
            topic: self.topic.clone(),
            source,
        }
    }

    fn key(&self, bytes: &[u8]) -> Result<K> {
        self.key
            .deserialize(&self.topic, Some(bytes))
            .map_err(|e| self.err("key", e))
    }

    fn change(&self, entry: &CacheFlush) -> Result<Change<V>> {
        let value = |b: &Option<Vec<u8>>| -> Result<Option<V>> {
            b.as_deref()
                .map(|b| {
                    self.value
                        .deserialize(&self.topic, Some(b))
                        .map_err(|e| self.err("value", e))
                })
                .transpose()
        };
        Ok(Change {
            new: value(&entry.new_value)?,
            old: value(&entry.old_value)?,
        })
    }
}

struct KeyValueFlushListener<K, V, KOut, VOut, F> {
    codec: FlushCodec<K, V>,
    listener: F,
    _types: PhantomData<fn(KOut, VOut)>,
}

impl<K, V, KOut, VOut, F> ErasedFlushListener for KeyValueFlushListener<K, V, KOut, VOut, F>
where
    K: 'static,
    V: 'static,
    KOut: Any + Send + Clone,
    VOut: Any + Send + Clone,
    F: FnMut(&mut ProcessorContext<'_, KOut, VOut>, Record<K, Change<V>>) -> Result<()>
        + Send
        + 'static,
{
    fn on_flush(&mut self, task: &mut TaskContext, node: usize, entry: CacheFlush) -> Result<()> {
        let record = Record::new(
            self.codec.key(&entry.key)?,
            self.codec.change(&entry)?,
            entry.timestamp,
        );
        (self.listener)(&mut ProcessorContext::new(task, node), record)
    }
}

struct WindowedFlushListener<K, V, KOut, VOut, F> {
    codec: FlushCodec<K, V>,
    listener: F,
    _types: PhantomData<fn(KOut, VOut)>,
}

impl<K, V, KOut, VOut, F> ErasedFlushListener for WindowedFlushListener<K, V, KOut, VOut, F>
where
    K: 'static,
    V: 'static,
    KOut: Any + Send + Clone,
    VOut: Any + Send + Clone,
    F: FnMut(&mut ProcessorContext<'_, KOut, VOut>, Record<Windowed<K>, Change<V>>) -> Result<()>
        + Send
        + 'static,
{
    fn on_flush(&mut self, task: &mut TaskContext, node: usize, entry: CacheFlush) -> Result<()> {
        let Some((start, end)) = entry.window else {
            return Err(StreamsError::IllegalState(format!(
                "a flush of window or session store `{}` has no window",
                self.codec.store
            )));
        };
        let key = Windowed {
            key: self.codec.key(&entry.key)?,
            window: Window { start, end },
        };
        let record = Record::new(key, self.codec.change(&entry)?, entry.timestamp);
        (self.listener)(&mut ProcessorContext::new(task, node), record)
    }
}

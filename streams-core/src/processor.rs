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
    ValueAndTimestamp, View, Window, WindowStoreHandle, Windowed,
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

    /// A caching store connected to this processor pushed `entry` down (on eviction, right
    /// after the record that caused it, or at a commit, in write order). Aggregations
    /// forward the change downstream here (decode it with
    /// [`ProcessorContext::flushed_record`]), so with caching on a key is emitted once per
    /// commit rather than once per update, as Kafka's cache flush listeners do.
    fn on_cache_flush(
        &mut self,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
        store: &str,
        entry: &CacheFlush,
    ) -> Result<()> {
        let _ = (ctx, store, entry);
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
}

impl<KOut, VOut> ProcessorContext<'_, KOut, VOut> {
    /// The key-value store `name` (connected to this processor), with keys `K` and values
    /// `V` (de)serialized by the store's serdes or the application's defaults.
    pub fn key_value_store<K: 'static, V: 'static>(
        &mut self,
        name: &str,
    ) -> Result<KeyValueStoreHandle<'_, K, V>> {
        let (open, registry, node) = self.task.connected_store(self.node, name)?;
        let serdes = resolve_store::<K, V, V>(open, node, View::KeyValue, registry, same)?;
        KeyValueStoreHandle::new(open, serdes)
    }

    /// The timestamped key-value store `name`: values come with the timestamp of the
    /// record that wrote them.
    pub fn timestamped_key_value_store<K: 'static, V: 'static>(
        &mut self,
        name: &str,
    ) -> Result<KeyValueStoreHandle<'_, K, ValueAndTimestamp<V>>> {
        let (open, registry, node) = self.task.connected_store(self.node, name)?;
        let serdes = resolve_store::<K, ValueAndTimestamp<V>, V>(
            open,
            node,
            View::TimestampedKeyValue,
            registry,
            timestamped,
        )?;
        KeyValueStoreHandle::new(open, serdes)
    }

    /// The window store `name`.
    pub fn window_store<K: 'static, V: 'static>(
        &mut self,
        name: &str,
    ) -> Result<WindowStoreHandle<'_, K, V>> {
        let (open, registry, node) = self.task.connected_store(self.node, name)?;
        let serdes = resolve_store::<K, V, V>(open, node, View::Window, registry, same)?;
        WindowStoreHandle::new(open, serdes)
    }

    /// The timestamped window store `name` (what windowed aggregations keep).
    pub fn timestamped_window_store<K: 'static, V: 'static>(
        &mut self,
        name: &str,
    ) -> Result<WindowStoreHandle<'_, K, ValueAndTimestamp<V>>> {
        let (open, registry, node) = self.task.connected_store(self.node, name)?;
        let serdes = resolve_store::<K, ValueAndTimestamp<V>, V>(
            open,
            node,
            View::TimestampedWindow,
            registry,
            timestamped,
        )?;
        WindowStoreHandle::new(open, serdes)
    }

    /// The session store `name`.
    pub fn session_store<K: 'static, V: 'static>(
        &mut self,
        name: &str,
    ) -> Result<SessionStoreHandle<'_, K, V>> {
        let (open, registry, node) = self.task.connected_store(self.node, name)?;
        let serdes = resolve_store::<K, V, V>(open, node, View::Session, registry, same)?;
        SessionStoreHandle::new(open, serdes)
    }

    /// The typed record of a cache flush of key-value store `store`: key, the change (new
    /// and old value, `None` for absent) and the timestamp of the write, deserialized with
    /// the store's serdes (Kafka's `TimestampedCacheFlushListener`).
    pub fn flushed_record<K: 'static, V: 'static>(
        &mut self,
        store: &str,
        entry: &CacheFlush,
    ) -> Result<Record<K, Change<V>>> {
        let handle = self.key_value_store::<K, V>(store)?;
        let key = handle.decode_key(&entry.key)?;
        let change = Change {
            new: handle.decode_value(entry.new_value.as_deref())?,
            old: handle.decode_value(entry.old_value.as_deref())?,
        };
        Ok(Record::new(key, change, entry.timestamp))
    }

    /// The typed record of a cache flush of window or session store `store`, keyed by the
    /// key and its window (`[start, end)`) or session (`[start, end]`).
    pub fn flushed_windowed_record<K: 'static, V: 'static>(
        &mut self,
        store: &str,
        entry: &CacheFlush,
    ) -> Result<Record<Windowed<K>, Change<V>>> {
        let Some((start, end)) = entry.window else {
            return Err(StreamsError::StoreAccess {
                node: self.node_name().to_owned(),
                store: store.to_owned(),
                reason: "a key-value store's cache flush has no window".into(),
            });
        };
        let (open, registry, node) = self.task.connected_store(self.node, store)?;
        let view = match open.spec.kind() {
            crate::StoreKind::Session { .. } => View::Session,
            _ => View::Window,
        };
        let (ks, vs) = resolve_store::<K, V, V>(open, node, view, registry, same)?;
        let topic = open.serde_topic.as_str();
        let err = |what: &str, source| StreamsError::Serde {
            what: format!("flushed {what} of store `{store}`"),
            topic: topic.to_owned(),
            source,
        };
        let value = |b: Option<&[u8]>| -> Result<Option<V>> {
            b.map(|b| vs.deserialize(topic, Some(b)).map_err(|e| err("value", e)))
                .transpose()
        };
        let key = ks
            .deserialize(topic, Some(&entry.key))
            .map_err(|e| err("key", e))?;
        let change = Change {
            new: value(entry.new_value.as_deref())?,
            old: value(entry.old_value.as_deref())?,
        };
        Ok(Record::new(
            Windowed {
                key,
                window: Window { start, end },
            },
            change,
            entry.timestamp,
        ))
    }

    /// True if store `name` has a record cache (caching requested and a cache size above
    /// zero): its writes reach downstream through [`Processor::on_cache_flush`].
    pub fn is_store_cached(&self, name: &str) -> bool {
        self.task
            .stores
            .get(name)
            .is_some_and(|s| s.flushed.is_some())
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

    /// Schedules [`Processor::punctuate`] every `interval`, on stream time or on the wall
    /// clock. Intervals below 1 ms are refused.
    pub fn schedule(&mut self, interval: Duration, kind: PunctuationType) -> Result<ScheduleId> {
        self.task.schedule(self.node, interval, kind)
    }

    /// Cancels a punctuation scheduled by this processor.
    pub fn cancel(&mut self, schedule: ScheduleId) {
        self.task.cancel(schedule);
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
    fn on_cache_flush(
        &mut self,
        task: &mut TaskContext,
        node: usize,
        store: &str,
        entry: &CacheFlush,
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

    fn on_cache_flush(
        &mut self,
        task: &mut TaskContext,
        node: usize,
        store: &str,
        entry: &CacheFlush,
    ) -> Result<()> {
        self.inner
            .on_cache_flush(&mut ProcessorContext::new(task, node), store, entry)
    }

    fn close(&mut self, task: &mut TaskContext, node: usize) -> Result<()> {
        self.inner.close(&mut ProcessorContext::new(task, node))
    }
}

//! The typed handle of a suppression buffer store ([`StoreKind::TimeOrderedBuffer`]):
//! Kafka's `TimeOrderedKeyValueBuffer<K, V, Change<V>>` as a processor sees it.
//!
//! [`StoreKind::TimeOrderedBuffer`]: super::StoreKind::TimeOrderedBuffer

use state_store::{BufferEviction, BufferRecordContext, InMemoryTimeOrderedKeyValueBuffer};

use super::handles::{wrong_kind, Access, Codec, SerdePair, StoreHost};
use super::open::TaskStore;
use crate::error::Result;
use crate::record::{Change, Header, Record, RecordMetadata};

/// A buffered table update taken out of a [`TimeOrderedBufferHandle`]: the key, the
/// latest update's `Change`, and the context it is to be forwarded with (Kafka's
/// `Eviction`: the record's timestamp and headers, where its input record came from).
#[derive(Debug, Clone, PartialEq)]
pub struct BufferedRecord<K, V> {
    /// The key.
    pub key: K,
    /// The latest buffered update of the key (new and old value).
    pub change: Change<V>,
    /// The buffer time the entry was ordered by.
    pub time: i64,
    /// The timestamp of the latest buffered update.
    pub timestamp: i64,
    /// Its headers.
    pub headers: Vec<Header>,
    /// Topic, partition and offset of the input record it came from, when known.
    pub metadata: Option<RecordMetadata>,
}

/// A suppression buffer seen with its types: keys `K`, table values `V`. Get one from
/// [`ProcessorContext::time_ordered_buffer`](crate::ProcessorContext::time_ordered_buffer).
/// Entries are ordered by buffer time, then serialized key; one entry per key, and a
/// later update of a buffered key replaces its value but keeps its place (Kafka's
/// `InMemoryTimeOrderedKeyValueChangeBuffer`).
///
/// ```
/// use streams_core::{Change, Processor, ProcessorContext, Record, Result, Sink, Source,
///     StoreBuilder, StreamsConfig, StringSerde, I64Serde, Topology, TopologyTestDriver};
///
/// /// Holds each update until a record 10 ms later arrives, then forwards its new value.
/// struct Delay;
/// impl Processor<String, i64, String, i64> for Delay {
///     fn process(&mut self, ctx: &mut ProcessorContext<'_, String, i64>, r: Record<String, i64>) -> Result<()> {
///         let now = r.timestamp;
///         let change = Change { new: Some(r.value), old: None };
///         ctx.time_ordered_buffer::<String, i64>("buffer")?
///             .put(now, &Record::new(r.key, change, now), None)?;
///         loop {
///             let mut buffer = ctx.time_ordered_buffer::<String, i64>("buffer")?;
///             if buffer.min_timestamp()? > now - 10 {
///                 return Ok(());
///             }
///             let Some(e) = buffer.pop_oldest()? else { return Ok(()) };
///             if let Some(v) = e.change.new {
///                 ctx.forward(Record::new(e.key, v, e.timestamp))?;
///             }
///         }
///     }
/// }
///
/// let mut t = Topology::new();
/// t.add_source(Source::<String, i64>::new("in", ["numbers"]))?;
/// t.add_processor("delay", || Delay, &["in"])?;
/// t.add_state_store(StoreBuilder::time_ordered_buffer("buffer"), &["delay"])?;
/// t.add_sink(Sink::<String, i64>::new("out", "delayed"), &["delay"])?;
/// let driver = TopologyTestDriver::new(t, StreamsConfig::new("doc"))?;
/// let input = driver.create_input_topic("numbers", StringSerde, I64Serde)?;
/// input.pipe_input_with_timestamp("a".into(), 1, 0)?;
/// input.pipe_input_with_timestamp("a".into(), 2, 5)?;
/// let out = driver.create_output_topic("delayed", StringSerde, I64Serde);
/// assert!(out.is_empty());
/// input.pipe_input_with_timestamp("b".into(), 3, 10)?;
/// // `a` kept its place (time 0) and holds its latest value, 2, at timestamp 5.
/// let r = out.read_record()?;
/// assert_eq!((r.key.as_str(), r.value, r.timestamp), ("a", 2, 5));
/// assert!(out.is_empty());
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct TimeOrderedBufferHandle<'a, K, V> {
    access: Access<'a, K, V>,
}

impl<K, V> std::fmt::Debug for TimeOrderedBufferHandle<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeOrderedBufferHandle")
            .finish_non_exhaustive()
    }
}

fn is_buffer(s: &TaskStore) -> bool {
    matches!(s, TaskStore::Buffer(_))
}

const KIND: &str = "time-ordered key-value buffer";

impl<'a, K: 'static, V: 'static> TimeOrderedBufferHandle<'a, K, V> {
    pub(crate) fn new(
        host: &'a mut dyn StoreHost,
        name: &'a str,
        serdes: SerdePair<K, V>,
    ) -> Result<Self> {
        Ok(TimeOrderedBufferHandle {
            access: Access::new(host, name, serdes, (KIND, is_buffer))?,
        })
    }

    fn read(&self) -> Result<(&InMemoryTimeOrderedKeyValueBuffer, Codec<'_, K, V>)> {
        match self.access.read()? {
            (TaskStore::Buffer(s), codec) => Ok((s.as_ref(), codec)),
            (_, codec) => Err(wrong_kind(codec.store, KIND)),
        }
    }

    fn write(&mut self) -> Result<(&mut InMemoryTimeOrderedKeyValueBuffer, Codec<'_, K, V>)> {
        match self.access.write()? {
            (TaskStore::Buffer(s), codec) => Ok((s.as_mut(), codec)),
            (_, codec) => Err(wrong_kind(codec.store, KIND)),
        }
    }

    /// Buffers `record` (its key, its `Change`, timestamp and headers) at buffer `time`,
    /// with the input record's `metadata` (Kafka's `put(time, record, recordContext)`).
    /// A value that serializes to null is buffered as absent.
    pub fn put(
        &mut self,
        time: i64,
        record: &Record<K, Change<V>>,
        metadata: Option<&RecordMetadata>,
    ) -> Result<()> {
        let (store, codec) = self.write()?;
        let key = codec.key_bytes(&record.key)?;
        let new = match &record.value.new {
            Some(v) => codec.value_bytes(v)?,
            None => None,
        };
        let old = match &record.value.old {
            Some(v) => codec.value_bytes(v)?,
            None => None,
        };
        let context = BufferRecordContext {
            timestamp: record.timestamp,
            offset: metadata.map_or(-1, |m| m.offset),
            topic: metadata.map(|m| m.topic.clone()).unwrap_or_default(),
            partition: metadata.map_or(-1, |m| m.partition),
            headers: record
                .headers
                .iter()
                .map(|h| (h.key.clone(), h.value.as_ref().map(|v| v.to_vec())))
                .collect(),
        };
        Ok(store.put(time, &key, new, old, context)?)
    }

    /// The value `key` had before its first buffered update (Kafka's
    /// `priorValueForBuffered`): `None` if the key is not buffered.
    pub fn prior_value_for_buffered(&self, key: &K) -> Result<Option<Option<V>>> {
        let (store, codec) = self.read()?;
        let k = codec.key_bytes(key)?;
        match store.prior_value_for_buffered(&k) {
            None => Ok(None),
            Some(None) => Ok(Some(None)),
            Some(Some(b)) => codec.value_of(&b).map(|v| Some(Some(v))),
        }
    }

    /// The smallest buffer time, `i64::MAX` when the buffer is empty.
    pub fn min_timestamp(&self) -> Result<i64> {
        Ok(self.read()?.0.min_timestamp())
    }

    /// The number of buffered keys.
    pub fn num_records(&self) -> Result<u64> {
        Ok(self.read()?.0.num_records())
    }

    /// The buffer's estimated size in bytes (Kafka's estimate).
    pub fn buffer_size(&self) -> Result<u64> {
        Ok(self.read()?.0.buffer_size())
    }

    /// Takes the entry with the smallest buffer time (then serialized key) out of the
    /// buffer; its removal reaches the changelog at the next commit.
    pub fn pop_oldest(&mut self) -> Result<Option<BufferedRecord<K, V>>> {
        let (store, codec) = self.write()?;
        let Some(BufferEviction { time, key, value }) = store.pop_oldest()? else {
            return Ok(None);
        };
        let decode = |b: &Option<Vec<u8>>| -> Result<Option<V>> {
            b.as_deref().map(|b| codec.value_of(b)).transpose()
        };
        let change = Change {
            new: decode(&value.new)?,
            old: decode(&value.old)?,
        };
        let c = value.context;
        Ok(Some(BufferedRecord {
            key: codec.key_of(&key)?,
            change,
            time,
            timestamp: c.timestamp,
            headers: c
                .headers
                .into_iter()
                .map(|(key, v)| Header {
                    key,
                    value: v.map(bytes::Bytes::from),
                })
                .collect(),
            metadata: (c.offset >= 0 || !c.topic.is_empty()).then_some(RecordMetadata {
                topic: c.topic,
                partition: c.partition,
                offset: c.offset,
            }),
        }))
    }
}

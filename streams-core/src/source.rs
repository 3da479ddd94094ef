//! Source nodes: turning fetched records into typed records.
//!
//! Each input partition of a task has a [`SourceHead`]: the next record of that partition,
//! deserialized and typed, waiting until the task picks the partition with the lowest head
//! timestamp. The record is then moved to the source node's children without being boxed.

use std::any::Any;

use crate::record::ConsumedRecord as RawRecord;

use crate::error::{Result, StreamsError};
use crate::record::Record;
use crate::serde::SharedSerde;
use crate::task::TaskContext;
use crate::topology::TimestampExtractor;

/// Makes the per-partition heads of one source node.
pub(crate) trait SourceDeserializer: Send {
    /// An empty head for one input partition of this source.
    fn new_head(&self) -> Box<dyn SourceHead>;
}

/// The next record of one input partition, typed.
pub(crate) trait SourceHead: Send {
    /// Deserializes `raw` into the head (replacing what it held) and returns the extracted
    /// timestamp, which may be invalid (negative); or [`Filled::NullNotRepresentable`] (the
    /// head left empty) when the record's key or value is null and the source's type for it
    /// cannot hold a null.
    fn fill(&mut self, topic: &str, raw: &RawRecord, partition_time: i64) -> Result<Filled>;
    /// Replaces the held record's timestamp.
    fn set_timestamp(&mut self, timestamp: i64);
    /// The held record's timestamp, if a record is held.
    fn timestamp(&self) -> Option<i64>;
    /// Moves the held record to the children of source node `node`.
    fn forward(&mut self, task: &mut TaskContext, node: usize) -> Result<()>;
}

/// What [`SourceHead::fill`] made of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filled {
    /// The head holds the record, with this extracted timestamp.
    Record(i64),
    /// The record's key (`"key"`) or value (`"value"`) is null, which Kafka passes on as
    /// `null` but the source's Rust type cannot hold (its serde refuses an absent payload,
    /// as `String`'s does; `Nullable` serdes read it as `None`). The record is not a
    /// deserialization error: Kafka's deserializers return null for null bytes.
    NullNotRepresentable(&'static str),
}

pub(crate) struct TypedSource<K, V> {
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) value_serde: SharedSerde<V>,
    pub(crate) extractor: Option<TimestampExtractor<K, V>>,
}

impl<K, V> Clone for TypedSource<K, V> {
    fn clone(&self) -> Self {
        TypedSource {
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            extractor: self.extractor.clone(),
        }
    }
}

impl<K, V> SourceDeserializer for TypedSource<K, V>
where
    K: Any + Send + Sync + Clone,
    V: Any + Send + Sync + Clone,
{
    fn new_head(&self) -> Box<dyn SourceHead> {
        Box::new(TypedHead {
            source: self.clone(),
            record: None,
        })
    }
}

struct TypedHead<K, V> {
    source: TypedSource<K, V>,
    record: Option<Record<K, V>>,
}

impl<K, V> SourceHead for TypedHead<K, V>
where
    K: Any + Send + Sync + Clone,
    V: Any + Send + Sync + Clone,
{
    fn fill(&mut self, topic: &str, raw: &RawRecord, partition_time: i64) -> Result<Filled> {
        let source = &self.source;
        self.record = None;
        // A null payload that the type cannot hold is reported as such, not as a
        // deserialization error (see `Filled::NullNotRepresentable`).
        if raw.key.is_none() && source.key_serde.deserialize(topic, None).is_err() {
            return Ok(Filled::NullNotRepresentable("key"));
        }
        if raw.value.is_none() && source.value_serde.deserialize(topic, None).is_err() {
            return Ok(Filled::NullNotRepresentable("value"));
        }
        let key = source
            .key_serde
            .deserialize(topic, raw.key.as_deref())
            .map_err(|source| StreamsError::Serde {
                what: "key".into(),
                topic: topic.to_owned(),
                source,
            })?;
        let value = source
            .value_serde
            .deserialize(topic, raw.value.as_deref())
            .map_err(|source| StreamsError::Serde {
                what: "value".into(),
                topic: topic.to_owned(),
                source,
            })?;
        let timestamp = match &source.extractor {
            Some(f) => f(&key, &value, raw.timestamp, partition_time),
            None => raw.timestamp,
        };
        self.record = Some(Record {
            key,
            value,
            timestamp,
            headers: raw.headers.clone(),
        });
        Ok(Filled::Record(timestamp))
    }

    fn set_timestamp(&mut self, timestamp: i64) {
        if let Some(r) = &mut self.record {
            r.timestamp = timestamp;
        }
    }

    fn timestamp(&self) -> Option<i64> {
        self.record.as_ref().map(|r| r.timestamp)
    }

    fn forward(&mut self, task: &mut TaskContext, node: usize) -> Result<()> {
        match self.record.take() {
            Some(record) => task.forward(node, record, None),
            None => Ok(()),
        }
    }
}

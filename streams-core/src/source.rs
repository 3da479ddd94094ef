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
    /// timestamp, which may be invalid (negative).
    fn fill(&mut self, topic: &str, raw: &RawRecord, partition_time: i64) -> Result<i64>;
    /// Replaces the held record's timestamp.
    fn set_timestamp(&mut self, timestamp: i64);
    /// The held record's timestamp, if a record is held.
    fn timestamp(&self) -> Option<i64>;
    /// Moves the held record to the children of source node `node`.
    fn forward(&mut self, task: &mut TaskContext, node: usize) -> Result<()>;
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
    fn fill(&mut self, topic: &str, raw: &RawRecord, partition_time: i64) -> Result<i64> {
        let source = &self.source;
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
        Ok(timestamp)
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

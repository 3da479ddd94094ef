//! Source nodes: turning fetched records into typed records.

use std::any::Any;

use broker_embedded::record::Record as RawRecord;

use crate::error::{Result, StreamsError};
use crate::record::ErasedRecord;
use crate::serde::SharedSerde;
use crate::topology::TimestampExtractor;

/// Deserializes the records of one source node.
pub(crate) trait SourceDeserializer: Send {
    /// The typed record, with the timestamp extracted (possibly invalid, i.e. negative).
    fn deserialize(
        &self,
        topic: &str,
        raw: &RawRecord,
        partition_time: i64,
    ) -> Result<ErasedRecord>;
}

pub(crate) struct TypedSource<K, V> {
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) value_serde: SharedSerde<V>,
    pub(crate) extractor: Option<TimestampExtractor<K, V>>,
}

impl<K, V> SourceDeserializer for TypedSource<K, V>
where
    K: Any + Send + Sync + Clone,
    V: Any + Send + Sync + Clone,
{
    fn deserialize(
        &self,
        topic: &str,
        raw: &RawRecord,
        partition_time: i64,
    ) -> Result<ErasedRecord> {
        let key = self
            .key_serde
            .deserialize(topic, raw.key.as_deref())
            .map_err(|source| StreamsError::Serde {
                what: "key".into(),
                topic: topic.to_owned(),
                source,
            })?;
        let value = self
            .value_serde
            .deserialize(topic, raw.value.as_deref())
            .map_err(|source| StreamsError::Serde {
                what: "value".into(),
                topic: topic.to_owned(),
                source,
            })?;
        let timestamp = match &self.extractor {
            Some(f) => f(&key, &value, raw.timestamp, partition_time),
            None => raw.timestamp,
        };
        Ok(ErasedRecord {
            key: Box::new(key),
            value: Box::new(value),
            timestamp,
            headers: raw.headers.clone(),
        })
    }
}

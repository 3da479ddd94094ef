//! Records as processors see them, and their type-erased form inside a task.

use std::any::Any;

pub use broker_embedded::record::Header;

/// A record flowing through a topology: key, value, timestamp and headers.
///
/// ```
/// use streams_core::Record;
/// let r = Record::new("k".to_owned(), 1i64, 1_000).with_value(2i64);
/// assert_eq!((r.key.as_str(), r.value, r.timestamp), ("k", 2, 1_000));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Timestamp in milliseconds since the epoch (event time).
    pub timestamp: i64,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

impl<K, V> Record<K, V> {
    /// A record without headers.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Record {
            key,
            value,
            timestamp,
            headers: Vec::new(),
        }
    }

    /// The same record with another key (and key type).
    pub fn with_key<K2>(self, key: K2) -> Record<K2, V> {
        Record {
            key,
            value: self.value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }

    /// The same record with another value (and value type).
    pub fn with_value<V2>(self, value: V2) -> Record<K, V2> {
        Record {
            key: self.key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }

    /// The same record with another timestamp.
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// The same record with these headers.
    pub fn with_headers(mut self, headers: Vec<Header>) -> Self {
        self.headers = headers;
        self
    }
}

/// Where the record being processed came from (absent for records forwarded by a
/// punctuation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Offset in the source partition.
    pub offset: i64,
}

/// A value of any cloneable type, boxed.
pub(crate) trait CloneAny: Any + Send {
    fn clone_box(&self) -> Box<dyn CloneAny>;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    fn type_name(&self) -> &'static str;
}

impl<T: Any + Send + Clone> CloneAny for T {
    fn clone_box(&self) -> Box<dyn CloneAny> {
        Box::new(self.clone())
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

pub(crate) type AnyValue = Box<dyn CloneAny>;

/// A record whose key and value types are known only to the nodes that made it.
pub(crate) struct ErasedRecord {
    pub(crate) key: AnyValue,
    pub(crate) value: AnyValue,
    pub(crate) timestamp: i64,
    pub(crate) headers: Vec<Header>,
}

impl Clone for ErasedRecord {
    fn clone(&self) -> Self {
        ErasedRecord {
            key: self.key.clone_box(),
            value: self.value.clone_box(),
            timestamp: self.timestamp,
            headers: self.headers.clone(),
        }
    }
}

/// Which side of a record failed to downcast.
#[derive(Debug)]
pub(crate) struct Mismatch {
    pub(crate) expected: &'static str,
    pub(crate) actual: &'static str,
}

impl ErasedRecord {
    pub(crate) fn erase<K: Any + Send + Clone, V: Any + Send + Clone>(r: Record<K, V>) -> Self {
        ErasedRecord {
            key: Box::new(r.key),
            value: Box::new(r.value),
            timestamp: r.timestamp,
            headers: r.headers,
        }
    }

    pub(crate) fn typed<K: Any, V: Any>(self) -> Result<Record<K, V>, Mismatch> {
        let key_name = self.key.type_name();
        let value_name = self.value.type_name();
        let key = self.key.into_any().downcast::<K>().map_err(|_| Mismatch {
            expected: std::any::type_name::<K>(),
            actual: key_name,
        })?;
        let value = self
            .value
            .into_any()
            .downcast::<V>()
            .map_err(|_| Mismatch {
                expected: std::any::type_name::<V>(),
                actual: value_name,
            })?;
        Ok(Record {
            key: *key,
            value: *value,
            timestamp: self.timestamp,
            headers: self.headers,
        })
    }
}

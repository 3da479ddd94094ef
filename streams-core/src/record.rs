//! Records as processors see them, and how a task hands them from node to node.

use std::any::Any;

use bytes::Bytes;

/// A record header: a key and a nullable value (Kafka's `Header`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key.
    pub key: String,
    /// Header value, `None` for null.
    pub value: Option<Bytes>,
}

/// A record as a cluster backend delivers it to the runtime: its offset, timestamp,
/// nullable key and value bytes, and headers. Backends build it from whatever their client
/// returns; the runtime never sees a backend's own record type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// Offset in its partition.
    pub offset: i64,
    /// Timestamp in milliseconds since the epoch.
    pub timestamp: i64,
    /// Key bytes, `None` for a null key.
    pub key: Option<Bytes>,
    /// Value bytes, `None` for a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

/// A record the runtime hands to a cluster backend to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducedRecord {
    /// Key bytes, `None` for a null key.
    pub key: Option<Bytes>,
    /// Value bytes, `None` for a null value.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// Timestamp in milliseconds since the epoch (CreateTime).
    pub timestamp: i64,
}

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

/// An update of a table row: its new value and, where known, the value it replaces
/// (Kafka's `Change`). `new == None` deletes the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<V> {
    /// The value after the update (`None`: the row is deleted).
    pub new: Option<V>,
    /// The value before the update, if any.
    pub old: Option<V>,
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

/// A typed record on its way from a node to one child, lent as `&mut dyn Any` so that the
/// node table can hold processors of every record type.
///
/// The topology compared the parent's output type with the child's input type (by `TypeId`)
/// when it was built, so taking the record out is a type-id check and a move: no heap
/// allocation per hop, unlike boxing keys and values.
pub(crate) struct InFlight<'a> {
    slot: &'a mut dyn Any,
    record_type: &'static str,
}

/// A record that reached a node of another type than the node accepts (a bug in the
/// topology checks if it ever happens).
#[derive(Debug)]
pub(crate) struct Mismatch {
    pub(crate) expected: &'static str,
    pub(crate) actual: &'static str,
}

impl<'a> InFlight<'a> {
    /// Lends the record in `slot` to the next node.
    pub(crate) fn new<K: Any, V: Any>(slot: &'a mut Option<Record<K, V>>) -> Self {
        InFlight {
            slot,
            record_type: std::any::type_name::<Record<K, V>>(),
        }
    }

    /// Takes the record out, as the type the receiving node accepts.
    pub(crate) fn take<K: Any, V: Any>(self) -> Result<Record<K, V>, Mismatch> {
        let mismatch = Mismatch {
            expected: std::any::type_name::<Record<K, V>>(),
            actual: self.record_type,
        };
        self.slot
            .downcast_mut::<Option<Record<K, V>>>()
            .and_then(Option::take)
            .ok_or(mismatch)
    }
}

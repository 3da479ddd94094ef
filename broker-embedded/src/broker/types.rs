//! The values the [`Broker`](super::Broker) API takes and returns: topics to create and their
//! descriptions, config entries and changes, records to produce, offset look-ups and fetch
//! options.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use crate::log::{IsolationLevel, LogOffsets};
use crate::record::Header;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Topic name (Kafka's naming rules).
    pub name: String,
    /// Number of partitions (at least 1).
    pub partitions: u32,
    /// Replication factor; -1 takes the broker default (1 on a single node).
    pub replication_factor: i16,
    /// Topic config overrides.
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic with `partitions` partitions, the default replication factor and no overrides.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: BTreeMap::new(),
        }
    }

    /// Adds a config override.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.insert(key.into(), value.into());
        self
    }

    /// Sets the replication factor.
    pub fn replication_factor(mut self, rf: i16) -> Self {
        self.replication_factor = rf;
        self
    }
}

/// Where a described config value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    TopicOverride,
    /// The broker default.
    Default,
}

/// One config of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Key.
    pub name: String,
    /// Effective value.
    pub value: String,
    /// Override or default.
    pub source: ConfigSource,
}

/// A partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// Partition number.
    pub partition: i32,
    /// Leader node id.
    pub leader: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
    /// Offsets and size.
    pub offsets: LogOffsets,
}

/// Everything known about a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Name.
    pub name: String,
    /// Topic id (stable across restarts, new if the topic is re-created).
    pub topic_id: Uuid,
    /// Internal topics start with `__`.
    pub internal: bool,
    /// Replication factor.
    pub replication_factor: i16,
    /// Partitions.
    pub partitions: Vec<PartitionDescription>,
    /// All topic configs with their effective values.
    pub configs: Vec<ConfigEntry>,
}

/// An incremental config change (Kafka's IncrementalAlterConfigs SET and DELETE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    /// Set an override.
    Set(String, String),
    /// Remove an override (back to the default).
    Delete(String),
}

/// A record to produce through the in-process handle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProduceRecord {
    /// Key (`None` = null key).
    pub key: Option<Bytes>,
    /// Value (`None` = tombstone).
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
    /// Timestamp (CreateTime); `None` uses the current time.
    pub timestamp: Option<i64>,
}

impl ProduceRecord {
    /// A record with a key and a value.
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Self {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// A record without a key.
    pub fn value_only(value: impl Into<Bytes>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// Sets the timestamp.
    pub fn with_timestamp(mut self, ts: i64) -> Self {
        self.timestamp = Some(ts);
        self
    }
}

/// Which offset [`Broker::list_offsets`](crate::Broker::list_offsets) looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark (the offset the next record gets).
    Latest,
    /// The first record with a timestamp at or after this one.
    Timestamp(i64),
}

/// An offset found by [`Broker::list_offsets`](crate::Broker::list_offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset.
    pub offset: i64,
    /// The record's timestamp for timestamp lookups, else -1.
    pub timestamp: i64,
}

/// Options of a fetch (Kafka's Fetch request fields for one partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    /// Soft byte limit (the first batch is returned even if larger).
    pub max_bytes: usize,
    /// Return as soon as this many bytes are available.
    pub min_bytes: usize,
    /// How long to wait for `min_bytes`.
    pub max_wait: Duration,
    /// Read committed or uncommitted data.
    pub isolation: IsolationLevel,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            min_bytes: 1,
            max_wait: Duration::from_millis(500),
            isolation: IsolationLevel::ReadUncommitted,
        }
    }
}

//! Parameter objects of DSL operations: [`Consumed`], [`Produced`], [`Grouped`],
//! [`Materialized`] and [`Named`], as in Kafka Streams.

use std::sync::Arc;
use std::time::Duration;

use streams_core::{OffsetReset, Serde, SharedSerde, StreamPartitioner, TimestampExtractor};

/// How a source topic is read: serdes, timestamp extractor, offset reset and source name.
pub struct Consumed<K, V> {
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) extractor: Option<TimestampExtractor<K, V>>,
    pub(crate) offset_reset: OffsetReset,
    pub(crate) name: Option<String>,
}

impl<K, V> Default for Consumed<K, V> {
    fn default() -> Self {
        Consumed {
            key_serde: None,
            value_serde: None,
            extractor: None,
            offset_reset: OffsetReset::Earliest,
            name: None,
        }
    }
}

impl<K: 'static, V: 'static> Consumed<K, V> {
    /// Reads with these serdes.
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Consumed {
            key_serde: Some(Arc::new(key_serde)),
            value_serde: Some(Arc::new(value_serde)),
            ..Self::default()
        }
    }

    /// Uses a custom timestamp extractor: `f(key, value, record_timestamp, partition_time)`.
    pub fn with_timestamp_extractor(
        mut self,
        f: impl Fn(&K, &V, i64, i64) -> i64 + Send + Sync + 'static,
    ) -> Self {
        self.extractor = Some(Arc::new(f));
        self
    }

    /// Where to start without a committed offset.
    pub fn with_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.offset_reset = reset;
        self
    }

    /// Names the source node.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How records are written to a topic: serdes, partitioner and sink name.
pub struct Produced<K, V> {
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) partitioner: Option<StreamPartitioner<K, V>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Default for Produced<K, V> {
    fn default() -> Self {
        Produced {
            key_serde: None,
            value_serde: None,
            partitioner: None,
            name: None,
        }
    }
}

impl<K: 'static, V: 'static> Produced<K, V> {
    /// Writes with these serdes.
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Produced {
            key_serde: Some(Arc::new(key_serde)),
            value_serde: Some(Arc::new(value_serde)),
            ..Self::default()
        }
    }

    /// Chooses partitions with `f(topic, key, value, partitions)`; `None` falls back to
    /// murmur2 of the serialized key.
    pub fn with_partitioner(
        mut self,
        f: impl Fn(&str, &K, &V, i32) -> Option<i32> + Send + Sync + 'static,
    ) -> Self {
        self.partitioner = Some(Arc::new(f));
        self
    }

    /// Names the sink node.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How a stream is grouped: serdes of the repartition topic (when one is needed) and the
/// name it is based on (`<application.id>-<name>-repartition`).
pub struct Grouped<K, V> {
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Default for Grouped<K, V> {
    fn default() -> Self {
        Grouped {
            key_serde: None,
            value_serde: None,
            name: None,
        }
    }
}

impl<K: 'static, V: 'static> Grouped<K, V> {
    /// Groups with these serdes.
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Grouped {
            key_serde: Some(Arc::new(key_serde)),
            value_serde: Some(Arc::new(value_serde)),
            name: None,
        }
    }

    /// Names the grouping (and so its repartition topic).
    pub fn as_name(name: impl Into<String>) -> Self {
        Grouped {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// Adds a name to these settings.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How a table is materialized: store name, serdes, RocksDB or in-memory, caching and
/// change-logging (Kafka's defaults: RocksDB, cached, logged).
pub struct Materialized<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) in_memory: bool,
    pub(crate) caching: bool,
    pub(crate) logging: bool,
    pub(crate) changelog_config: Vec<(String, String)>,
    pub(crate) retention: Option<Duration>,
}

impl<K, V> Default for Materialized<K, V> {
    fn default() -> Self {
        Materialized {
            name: None,
            key_serde: None,
            value_serde: None,
            in_memory: false,
            caching: true,
            logging: true,
            changelog_config: Vec::new(),
            retention: None,
        }
    }
}

impl<K: 'static, V: 'static> Materialized<K, V> {
    /// A store with a generated name.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store named `name` (its changelog is `<application.id>-<name>-changelog`).
    pub fn as_store(name: impl Into<String>) -> Self {
        Materialized {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// The store's key serde.
    pub fn with_key_serde(mut self, serde: impl Serde<K>) -> Self {
        self.key_serde = Some(Arc::new(serde));
        self
    }

    /// The store's value serde.
    pub fn with_value_serde(mut self, serde: impl Serde<V>) -> Self {
        self.value_serde = Some(Arc::new(serde));
        self
    }

    /// Keep the store in memory (rebuilt from the changelog on start).
    pub fn in_memory(mut self) -> Self {
        self.in_memory = true;
        self
    }

    /// Turn caching off: every update is forwarded downstream at once.
    pub fn with_caching_disabled(mut self) -> Self {
        self.caching = false;
        self
    }

    /// Turn change-logging off (the store cannot be rebuilt if its local copy is lost).
    pub fn with_logging_disabled(mut self) -> Self {
        self.logging = false;
        self
    }

    /// How long a window store keeps its windows (Kafka's `Materialized#withRetention`):
    /// at least the window size plus the grace period (the default), else the
    /// aggregation is refused when the topology is built. Ignored by key-value stores.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    /// Adds a topic config to the changelog topic.
    pub fn with_changelog_config(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.changelog_config.push((key.into(), value.into()));
        self
    }
}

/// A name for the processor an operation creates (see [`KStream::named`](crate::KStream::named)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named(pub(crate) String);

impl Named {
    /// The name `name`.
    pub fn as_name(name: impl Into<String>) -> Self {
        Named(name.into())
    }
}

//! Source and sink node definitions (what `Topology::add_source` and `add_sink` take)
//! and the function types they carry.

use super::*;

/// Where a source's records come from (Kafka's `auto.offset.reset` per source): used when
/// the application has no committed offset for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// From the log start (Kafka Streams' default).
    #[default]
    Earliest,
    /// From the end: only records produced after the application started.
    Latest,
}

/// Computes a record's timestamp from its key, value, the timestamp stored in the record
/// and the partition's current time (Kafka's `TimestampExtractor`). A negative result is
/// an invalid timestamp, handled by the configured
/// [`InvalidTimestampPolicy`](crate::InvalidTimestampPolicy).
pub type TimestampExtractor<K, V> = Arc<dyn Fn(&K, &V, i64, i64) -> i64 + Send + Sync>;

/// Chooses the topic of each record a dynamic sink writes (Kafka's `TopicNameExtractor`).
pub type TopicNameExtractor<K, V> = Arc<dyn Fn(&K, &V) -> String + Send + Sync>;

/// Chooses the partition of a record from its key, value and the topic's partition count;
/// `None` falls back to the default (murmur2 of the serialized key, as the Java client
/// does; sticky for null keys). Kafka's `StreamPartitioner`.
pub type StreamPartitioner<K, V> = Arc<dyn Fn(&str, &K, &V, i32) -> Option<i32> + Send + Sync>;

/// The topics a source reads.
#[derive(Debug, Clone)]
pub enum SourceTopics {
    /// These topics.
    Names(Vec<String>),
    /// Every topic matching this pattern when the application starts.
    Pattern(Regex),
}

/// A source node definition for [`Topology::add_source`].
///
/// ```
/// use std::sync::Arc;
/// use streams_core::{Source, StringSerde, I64Serde};
/// let source = Source::<String, i64>::new("input", ["orders"])
///     .key_serde(StringSerde)
///     .value_serde(I64Serde)
///     .timestamp_extractor(Arc::new(|_k: &String, v: &i64, _ts, _partition_time| *v));
/// ```
pub struct Source<K, V> {
    pub(crate) name: String,
    pub(crate) topics: SourceTopics,
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) extractor: Option<TimestampExtractor<K, V>>,
    pub(crate) offset_reset: OffsetReset,
}

impl<K: Any + Send + Clone, V: Any + Send + Clone> Source<K, V> {
    /// A source reading `topics`.
    pub fn new<I, S>(name: impl Into<String>, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_topics(
            name,
            SourceTopics::Names(topics.into_iter().map(Into::into).collect()),
        )
    }

    /// A source reading every topic that matches `pattern` when the application starts
    /// (the match is anchored at both ends, as Java's `Pattern.matches`).
    pub fn pattern(name: impl Into<String>, pattern: &str) -> Result<Self> {
        let name = name.into();
        let re =
            Regex::new(&format!("^(?:{pattern})$")).map_err(|e| TopologyError::InvalidSource {
                node: name.clone(),
                reason: format!("bad pattern `{pattern}`: {e}"),
            })?;
        Ok(Self::with_topics(name, SourceTopics::Pattern(re)))
    }

    fn with_topics(name: impl Into<String>, topics: SourceTopics) -> Self {
        Source {
            name: name.into(),
            topics,
            key_serde: None,
            value_serde: None,
            extractor: None,
            offset_reset: OffsetReset::default(),
        }
    }

    /// Renames the source node.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The key serde (default: the registry's serde for `K`).
    pub fn key_serde(mut self, serde: impl crate::Serde<K>) -> Self {
        self.key_serde = Some(Arc::new(serde));
        self
    }

    /// The value serde (default: the registry's serde for `V`).
    pub fn value_serde(mut self, serde: impl crate::Serde<V>) -> Self {
        self.value_serde = Some(Arc::new(serde));
        self
    }

    /// Shared serdes, either of which may be absent.
    pub fn serdes(mut self, key: Option<SharedSerde<K>>, value: Option<SharedSerde<V>>) -> Self {
        self.key_serde = key;
        self.value_serde = value;
        self
    }

    /// A custom timestamp extractor (default: the timestamp stored in the record).
    pub fn timestamp_extractor(mut self, extractor: TimestampExtractor<K, V>) -> Self {
        self.extractor = Some(extractor);
        self
    }

    /// Where to start without a committed offset.
    pub fn offset_reset(mut self, reset: OffsetReset) -> Self {
        self.offset_reset = reset;
        self
    }
}

/// The topic a sink writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTopic {
    /// Always this topic.
    Fixed(String),
    /// Chosen per record by a [`TopicNameExtractor`].
    Dynamic,
}

/// A sink node definition for [`Topology::add_sink`].
///
/// ```
/// use streams_core::{Sink, StringSerde, I64Serde};
/// let sink = Sink::<String, i64>::new("output", "counts").key_serde(StringSerde).value_serde(I64Serde);
/// ```
pub struct Sink<K, V> {
    pub(crate) name: String,
    pub(crate) topic: SinkTopic,
    pub(crate) extractor: Option<TopicNameExtractor<K, V>>,
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) partitioner: Option<StreamPartitioner<K, V>>,
    pub(crate) skip_null_keys: bool,
}

impl<K: Any + Send + Clone, V: Any + Send + Clone> Sink<K, V> {
    /// A sink writing to `topic`.
    pub fn new(name: impl Into<String>, topic: impl Into<String>) -> Self {
        Sink {
            name: name.into(),
            topic: SinkTopic::Fixed(topic.into()),
            extractor: None,
            key_serde: None,
            value_serde: None,
            partitioner: None,
            skip_null_keys: false,
        }
    }

    /// A sink choosing each record's topic with `extractor`; the topics must exist.
    pub fn dynamic(name: impl Into<String>, extractor: TopicNameExtractor<K, V>) -> Self {
        Sink {
            name: name.into(),
            topic: SinkTopic::Dynamic,
            extractor: Some(extractor),
            key_serde: None,
            value_serde: None,
            partitioner: None,
            skip_null_keys: false,
        }
    }

    /// Drops records whose key serializes to null instead of writing them (what the
    /// null-key filter in front of Kafka Streams' repartition topics does: a record without
    /// a key cannot be routed to its group).
    pub fn skip_null_keys(mut self) -> Self {
        self.skip_null_keys = true;
        self
    }

    /// The key serde (default: the registry's serde for `K`).
    pub fn key_serde(mut self, serde: impl crate::Serde<K>) -> Self {
        self.key_serde = Some(Arc::new(serde));
        self
    }

    /// The value serde (default: the registry's serde for `V`).
    pub fn value_serde(mut self, serde: impl crate::Serde<V>) -> Self {
        self.value_serde = Some(Arc::new(serde));
        self
    }

    /// Shared serdes, either of which may be absent.
    pub fn serdes(mut self, key: Option<SharedSerde<K>>, value: Option<SharedSerde<V>>) -> Self {
        self.key_serde = key;
        self.value_serde = value;
        self
    }

    /// A custom partitioner.
    pub fn partitioner(mut self, partitioner: StreamPartitioner<K, V>) -> Self {
        self.partitioner = Some(partitioner);
        self
    }
}

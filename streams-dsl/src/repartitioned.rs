//! [`Repartitioned`]: the parameters of `KStream::repartition` (Kafka's `Repartitioned`).

use std::sync::Arc;

use streams_core::{Serde, SharedSerde, StreamPartitioner};

/// How [`KStream::repartition`](crate::KStream::repartition) writes its repartition topic
/// (Kafka's `Repartitioned`): the name it is based on (`<application.id>-<name>-repartition`,
/// else a generated `KSTREAM-REPARTITION-<n>`), its partition count (else that of the
/// sub-topology writing to it), the serdes and the partitioner.
///
/// ```
/// use streams_core::{I64Serde, StringSerde};
/// use streams_dsl::{Consumed, Produced, Repartitioned, StreamsBuilder};
/// let builder = StreamsBuilder::new();
/// builder.stream("in", Consumed::with(StringSerde, I64Serde))
///     .repartition(Repartitioned::with(StringSerde, I64Serde)
///         .with_name("spread")
///         .with_number_of_partitions(6)
///         // Even values to partition 0, the rest by key.
///         .with_stream_partitioner(|_topic, _k: &String, v: &i64, _n| (v % 2 == 0).then_some(0)))
///     .to("out", Produced::default());
/// let text = builder.build()?.describe()?.to_string();
/// assert!(text.contains("Sink: spread-repartition-sink (topic: spread-repartition)"));
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct Repartitioned<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) partitions: Option<i32>,
    pub(crate) partitioner: Option<StreamPartitioner<K, V>>,
}

impl<K, V> Default for Repartitioned<K, V> {
    fn default() -> Self {
        Repartitioned {
            name: None,
            key_serde: None,
            value_serde: None,
            partitions: None,
            partitioner: None,
        }
    }
}

impl<K, V> std::fmt::Debug for Repartitioned<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repartitioned")
            .field("name", &self.name)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl<K: 'static, V: 'static> Repartitioned<K, V> {
    /// Generated name, the stream's serdes, as many partitions as the upstream topics.
    pub fn new() -> Self {
        Self::default()
    }

    /// The repartition topic is `<application.id>-<name>-repartition` (Kafka's
    /// `Repartitioned.as`).
    pub fn as_name(name: impl Into<String>) -> Self {
        Repartitioned {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// Writes and reads the topic with these serdes (Kafka's `Repartitioned.with`).
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Repartitioned {
            key_serde: Some(Arc::new(key_serde)),
            value_serde: Some(Arc::new(value_serde)),
            ..Self::default()
        }
    }

    /// A repartition topic with `partitions` partitions (Kafka's
    /// `Repartitioned.numberOfPartitions`).
    pub fn number_of_partitions(partitions: i32) -> Self {
        Self::default().with_number_of_partitions(partitions)
    }

    /// Names the repartition topic.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the partition count of the repartition topic (at least 1, else `build` fails).
    pub fn with_number_of_partitions(mut self, partitions: i32) -> Self {
        self.partitions = Some(partitions);
        self
    }

    /// The key serde of the repartition topic.
    pub fn with_key_serde(mut self, serde: impl Serde<K>) -> Self {
        self.key_serde = Some(Arc::new(serde));
        self
    }

    /// The value serde of the repartition topic.
    pub fn with_value_serde(mut self, serde: impl Serde<V>) -> Self {
        self.value_serde = Some(Arc::new(serde));
        self
    }

    /// Chooses partitions with `f(topic, key, value, partitions)`; `None` falls back to
    /// murmur2 of the serialized key (Kafka's `Repartitioned#withStreamPartitioner`).
    pub fn with_stream_partitioner(
        mut self,
        f: impl Fn(&str, &K, &V, i32) -> Option<i32> + Send + Sync + 'static,
    ) -> Self {
        self.partitioner = Some(Arc::new(f));
        self
    }
}

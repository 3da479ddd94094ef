//! Parameter objects of joins: [`StreamJoined`] (stream-stream) and [`Joined`]
//! (stream-table), as in Kafka Streams.

use std::sync::Arc;

use streams_core::{Serde, SharedSerde};

/// How a stream-stream join keeps its buffers (Kafka's `StreamJoined`): the serdes of the
/// key, this stream's values and the other stream's values (also used by the repartition
/// topics a join inserts after a key change), a name for the processors and repartition
/// topics, a base name for the stores, RocksDB or in memory, and change-logging.
///
/// Without serdes, a join uses the serdes the streams were read with, else the
/// application's defaults for the types.
///
/// ```
/// use streams_core::{I64Serde, StringSerde};
/// use streams_dsl::StreamJoined;
/// let joined: StreamJoined<String, String, i64> = StreamJoined::with(StringSerde, StringSerde, I64Serde)
///     .with_name("orders-payments")
///     .with_store_name("orders-payments-buffer")
///     .in_memory()
///     .with_logging_disabled();
/// # let _ = joined;
/// ```
pub struct StreamJoined<K, V, VO> {
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) other_value_serde: Option<SharedSerde<VO>>,
    pub(crate) name: Option<String>,
    pub(crate) store_name: Option<String>,
    pub(crate) in_memory: bool,
    pub(crate) logging: bool,
    pub(crate) changelog_config: Vec<(String, String)>,
}

impl<K, V, VO> Default for StreamJoined<K, V, VO> {
    fn default() -> Self {
        StreamJoined {
            key_serde: None,
            value_serde: None,
            other_value_serde: None,
            name: None,
            store_name: None,
            in_memory: false,
            logging: true,
            changelog_config: Vec::new(),
        }
    }
}

impl<K: 'static, V: 'static, VO: 'static> StreamJoined<K, V, VO> {
    /// Default settings: generated names, RocksDB buffers, change-logged.
    pub fn new() -> Self {
        Self::default()
    }

    /// Joins with these serdes (Kafka's `StreamJoined.with`).
    pub fn with(
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        other_value_serde: impl Serde<VO>,
    ) -> Self {
        StreamJoined {
            key_serde: Some(Arc::new(key_serde)),
            value_serde: Some(Arc::new(value_serde)),
            other_value_serde: Some(Arc::new(other_value_serde)),
            ..Self::default()
        }
    }

    /// Base name of the stores (Kafka's `StreamJoined.as` / `withStoreName`): the buffers
    /// are `<name>-this-join-store` and `<name>-other-join-store` (`-outer-this-join`,
    /// `-outer-other-join` for the outer sides), the shared store of a left or outer join
    /// `<name>-left-shared-join-store` / `<name>-outer-shared-join-store`, and their
    /// changelogs `<application.id>-<store>-changelog`.
    pub fn as_store_name(name: impl Into<String>) -> Self {
        Self::default().with_store_name(name)
    }

    /// Sets the base name of the stores (see [`StreamJoined::as_store_name`]).
    pub fn with_store_name(mut self, name: impl Into<String>) -> Self {
        self.store_name = Some(name.into());
        self
    }

    /// Names the join's processors (`<name>-this-windowed`, `<name>-other-windowed`,
    /// `<name>-this-join` / `-outer-this-join`, `<name>-other-join` / `-outer-other-join`,
    /// `<name>-merge`) and its repartition topics (`<name>-left-repartition`,
    /// `<name>-right-repartition`) (Kafka's `withName`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The key serde.
    pub fn with_key_serde(mut self, serde: impl Serde<K>) -> Self {
        self.key_serde = Some(Arc::new(serde));
        self
    }

    /// The serde of this stream's values.
    pub fn with_value_serde(mut self, serde: impl Serde<V>) -> Self {
        self.value_serde = Some(Arc::new(serde));
        self
    }

    /// The serde of the other stream's values.
    pub fn with_other_value_serde(mut self, serde: impl Serde<VO>) -> Self {
        self.other_value_serde = Some(Arc::new(serde));
        self
    }

    /// Keep the buffers (and the shared store of a left or outer join) in memory, as
    /// Kafka's in-memory `DslStoreSuppliers` does; they are rebuilt from their changelogs
    /// on start.
    pub fn in_memory(mut self) -> Self {
        self.in_memory = true;
        self
    }

    /// Turns change-logging of the join stores off.
    pub fn with_logging_disabled(mut self) -> Self {
        self.logging = false;
        self
    }

    /// Adds a topic config to the join stores' changelogs (Kafka's `withLoggingEnabled`).
    /// The buffers' changelogs always get `cleanup.policy=delete`, as in Kafka.
    pub fn with_changelog_config(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.changelog_config.push((key.into(), value.into()));
        self
    }
}

/// How a stream-table join reads the stream (Kafka's `Joined`): serdes of the key, the
/// stream's values and the table's values (the key and stream value serdes are used by
/// the repartition topic a join inserts after a key change), and a name for the join
/// processor and that repartition topic.
///
/// ```
/// use streams_core::{I64Serde, StringSerde};
/// use streams_dsl::Joined;
/// let joined: Joined<String, i64, String> = Joined::with(StringSerde, I64Serde, StringSerde)
///     .with_name("enrich");
/// # let _ = joined;
/// ```
pub struct Joined<K, V, VO> {
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    /// The table's value serde: Kafka's `Joined` carries it, but the join reads the table
    /// through its store, with the store's serdes, so it is unused (as in Kafka).
    #[allow(dead_code)]
    pub(crate) other_value_serde: Option<SharedSerde<VO>>,
    pub(crate) name: Option<String>,
}

impl<K, V, VO> Default for Joined<K, V, VO> {
    fn default() -> Self {
        Joined {
            key_serde: None,
            value_serde: None,
            other_value_serde: None,
            name: None,
        }
    }
}

impl<K: 'static, V: 'static, VO: 'static> Joined<K, V, VO> {
    /// Default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Joins with these serdes (Kafka's `Joined.with`).
    pub fn with(
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        other_value_serde: impl Serde<VO>,
    ) -> Self {
        Joined {
            key_serde: Some(Arc::new(key_serde)),
            value_serde: Some(Arc::new(value_serde)),
            other_value_serde: Some(Arc::new(other_value_serde)),
            name: None,
        }
    }

    /// Names the join processor (instead of `KSTREAM-JOIN-<n>` / `KSTREAM-LEFTJOIN-<n>`)
    /// and the repartition topic (`<name>-repartition`) (Kafka's `Joined.as` / `withName`).
    pub fn as_name(name: impl Into<String>) -> Self {
        Self::default().with_name(name)
    }

    /// Sets the name (see [`Joined::as_name`]).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

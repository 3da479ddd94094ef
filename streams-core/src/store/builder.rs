//! `StoreBuilder`: what a topology declares about a state store (Kafka's `StoreBuilder`
//! and `Stores` factories in one type).

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Result, StreamsError};
use crate::serde::SharedSerde;

/// The shape of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// Key → value.
    KeyValue,
    /// Key → value and the timestamp of the record that wrote it (Kafka's
    /// `TimestampedKeyValueStore`). In the store: the 8-byte big-endian timestamp, then the
    /// value; in the changelog: the plain value, with the timestamp as the record's.
    TimestampedKeyValue,
    /// Key and window start → value, with retention by window start (Kafka's `WindowStore`).
    Window {
        /// How long windows are kept, in milliseconds.
        retention_ms: i64,
        /// The size of the windows, in milliseconds.
        window_size_ms: i64,
        /// Keep every value put for a key and window (join buffers) instead of the last.
        retain_duplicates: bool,
    },
    /// A window store whose values carry a timestamp (Kafka's `TimestampedWindowStore`, what
    /// windowed aggregations use), laid out as [`StoreKind::TimestampedKeyValue`].
    TimestampedWindow {
        /// How long windows are kept, in milliseconds.
        retention_ms: i64,
        /// The size of the windows, in milliseconds.
        window_size_ms: i64,
        /// Keep every value put for a key and window instead of the last.
        retain_duplicates: bool,
    },
    /// Key and session `[start, end]` → value, with retention by session end (Kafka's
    /// `SessionStore`).
    Session {
        /// How long sessions are kept after their end, in milliseconds.
        retention_ms: i64,
    },
    /// Kafka's suppression buffer (`InMemoryTimeOrderedKeyValueChangeBuffer`): table
    /// updates ordered by buffer time, always in memory, logged at commit in Kafka's
    /// buffer changelog format.
    TimeOrderedBuffer,
}

impl StoreKind {
    /// Whether values carry the timestamp of the record that wrote them.
    pub fn is_timestamped(&self) -> bool {
        matches!(
            self,
            StoreKind::TimestampedKeyValue | StoreKind::TimestampedWindow { .. }
        )
    }

    /// Kafka's name of the store type (used in errors and descriptions).
    pub fn type_name(&self) -> &'static str {
        match self {
            StoreKind::KeyValue => "key-value store",
            StoreKind::TimestampedKeyValue => "timestamped key-value store",
            StoreKind::Window { .. } => "window store",
            StoreKind::TimestampedWindow { .. } => "timestamped window store",
            StoreKind::Session { .. } => "session store",
            StoreKind::TimeOrderedBuffer => "time-ordered key-value buffer",
        }
    }
}

/// The key and value serdes a store was declared with, type-erased until a processor asks
/// for the store with its types.
#[derive(Clone)]
pub(crate) struct DeclaredSerdes(pub(crate) Arc<dyn Any + Send + Sync>);

/// Typed serdes of a store.
pub(crate) struct StoreSerdes<K, V> {
    pub(crate) key: Option<SharedSerde<K>>,
    pub(crate) value: Option<SharedSerde<V>>,
}

/// Declares a state store for [`Topology::add_state_store`](crate::Topology::add_state_store),
/// like Kafka's `StoreBuilder`: persistent (RocksDB) by default, change-logged by default,
/// caching off by default. Processors reach it by name with its types
/// ([`ProcessorContext::key_value_store`](crate::ProcessorContext::key_value_store) and
/// friends); its serdes are the ones given here, else the application's defaults for the
/// types.
///
/// ```
/// use std::time::Duration;
/// use streams_core::{StoreBuilder, StoreKind};
/// let store = StoreBuilder::key_value("counts").in_memory().with_caching(true);
/// assert_eq!(store.name(), "counts");
/// assert!(!store.is_persistent() && store.is_caching() && store.is_logging());
///
/// let windows = StoreBuilder::timestamped_window(
///     "per-minute", Duration::from_secs(3600), Duration::from_secs(60), false)?;
/// assert!(windows.kind().is_timestamped());
/// assert!(StoreBuilder::window("w", Duration::from_secs(1), Duration::from_secs(60), false).is_err());
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
#[derive(Clone)]
pub struct StoreBuilder {
    pub(crate) name: String,
    kind: StoreKind,
    pub(crate) persistent: bool,
    pub(crate) caching: bool,
    logging: bool,
    changelog_config: BTreeMap<String, String>,
    pub(crate) serdes: Option<DeclaredSerdes>,
}

impl fmt::Debug for StoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreBuilder")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("persistent", &self.persistent)
            .field("caching", &self.caching)
            .field("logging", &self.logging)
            .field("changelog_config", &self.changelog_config)
            .field("serdes", &self.serdes.is_some())
            .finish()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl StoreBuilder {
    fn of(name: impl Into<String>, kind: StoreKind) -> Self {
        StoreBuilder {
            name: name.into(),
            kind,
            persistent: true,
            caching: false,
            logging: true,
            changelog_config: BTreeMap::new(),
            serdes: None,
        }
    }

    /// A persistent (RocksDB) key-value store named `name`, logged, not cached.
    pub fn key_value(name: impl Into<String>) -> Self {
        Self::of(name, StoreKind::KeyValue)
    }

    /// A key-value store whose values carry the timestamp of the record that wrote them.
    pub fn timestamped_key_value(name: impl Into<String>) -> Self {
        Self::of(name, StoreKind::TimestampedKeyValue)
    }

    fn check_window(
        name: &str,
        retention: Duration,
        size: Duration,
        retain_duplicates: bool,
    ) -> Result<()> {
        // Join buffers may have size 0 (a join of equal timestamps), as Kafka allows.
        if size.is_zero() && !retain_duplicates {
            return Err(StreamsError::config(
                "window.size.ms",
                format!("store `{name}`: the window size must be above zero"),
            ));
        }
        if retention < size {
            return Err(StreamsError::config(
                "retention.ms",
                format!(
                    "store `{name}`: the retention period ({} ms) must be no smaller than the \
                     window size ({} ms)",
                    millis(retention),
                    millis(size)
                ),
            ));
        }
        Ok(())
    }

    /// A window store keeping windows of `window_size` for `retention` (at least the
    /// window size, as Kafka requires); `retain_duplicates` keeps every value put for a
    /// key and window (stream-stream join buffers, which may have a window size of 0).
    pub fn window(
        name: impl Into<String>,
        retention: Duration,
        window_size: Duration,
        retain_duplicates: bool,
    ) -> Result<Self> {
        Self::windowed(
            name.into(),
            retention,
            window_size,
            retain_duplicates,
            false,
        )
    }

    /// A window store whose values carry a timestamp (what windowed aggregations use).
    pub fn timestamped_window(
        name: impl Into<String>,
        retention: Duration,
        window_size: Duration,
        retain_duplicates: bool,
    ) -> Result<Self> {
        Self::windowed(name.into(), retention, window_size, retain_duplicates, true)
    }

    fn windowed(
        name: String,
        retention: Duration,
        window_size: Duration,
        retain_duplicates: bool,
        timestamped: bool,
    ) -> Result<Self> {
        Self::check_window(&name, retention, window_size, retain_duplicates)?;
        let (retention_ms, window_size_ms) = (millis(retention), millis(window_size));
        let kind = if timestamped {
            StoreKind::TimestampedWindow {
                retention_ms,
                window_size_ms,
                retain_duplicates,
            }
        } else {
            StoreKind::Window {
                retention_ms,
                window_size_ms,
                retain_duplicates,
            }
        };
        Ok(Self::of(name, kind))
    }

    /// A session store keeping sessions for `retention` after their end.
    pub fn session(name: impl Into<String>, retention: Duration) -> Self {
        Self::of(
            name,
            StoreKind::Session {
                retention_ms: millis(retention),
            },
        )
    }

    /// Kafka's suppression buffer store (what `KTable::suppress` declares): in memory, not
    /// cached, change-logged unless [`StoreBuilder::with_logging`] turns it off; its
    /// changelog is compacted. Processors reach it with
    /// [`ProcessorContext::time_ordered_buffer`](crate::ProcessorContext::time_ordered_buffer).
    ///
    /// ```
    /// use streams_core::{StoreBuilder, StoreKind};
    /// let buffer = StoreBuilder::time_ordered_buffer("KTABLE-SUPPRESS-STATE-STORE-0000000004");
    /// assert_eq!(buffer.kind(), StoreKind::TimeOrderedBuffer);
    /// assert!(!buffer.is_persistent() && !buffer.is_caching() && buffer.is_logging());
    /// assert_eq!(buffer.changelog_config()["cleanup.policy"], "compact");
    /// ```
    pub fn time_ordered_buffer(name: impl Into<String>) -> Self {
        let mut b = Self::of(name, StoreKind::TimeOrderedBuffer);
        b.persistent = false;
        b
    }

    /// Keep the store in memory instead of RocksDB (restored from its changelog on start).
    pub fn in_memory(mut self) -> Self {
        self.persistent = false;
        self
    }

    /// Keep the store in RocksDB (the default).
    pub fn persistent(mut self) -> Self {
        // The suppression buffer exists in memory only (as Kafka's).
        self.persistent = self.kind != StoreKind::TimeOrderedBuffer;
        self
    }

    /// Turn the write-back record cache on or off.
    pub fn with_caching(mut self, on: bool) -> Self {
        // Kafka's buffer builder ignores caching.
        self.caching = on && self.kind != StoreKind::TimeOrderedBuffer;
        self
    }

    /// Turn change-logging on or off. Without a changelog the store cannot be rebuilt after
    /// its local state is lost.
    pub fn with_logging(mut self, on: bool) -> Self {
        self.logging = on;
        self
    }

    /// Extra topic configs for the changelog topic (e.g. `min.compaction.lag.ms`).
    pub fn with_changelog_config(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.changelog_config.insert(key.into(), value.into());
        self
    }

    /// The serdes of the store's keys and values (either may be `None`: the application's
    /// default serde for the type). A processor asking for the store with other types
    /// gets an error.
    pub fn with_serdes<K: 'static, V: 'static>(
        mut self,
        key: Option<SharedSerde<K>>,
        value: Option<SharedSerde<V>>,
    ) -> Self {
        self.serdes = Some(DeclaredSerdes(Arc::new(StoreSerdes { key, value })));
        self
    }

    /// The store name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store kind.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// Whether it lives in RocksDB.
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// Whether writes are cached until a commit.
    pub fn is_caching(&self) -> bool {
        self.caching
    }

    /// Whether writes go to a changelog topic.
    pub fn is_logging(&self) -> bool {
        self.logging
    }

    /// Topic configs of the changelog: `cleanup.policy=compact` for key-value stores,
    /// `compact,delete` with `retention.ms` = retention + 1 day for window and session
    /// stores (Kafka's `windowstore.changelog.additional.retention.ms`), plus what was set.
    pub fn changelog_config(&self) -> BTreeMap<String, String> {
        let mut c = self.changelog_config.clone();
        let retention = match self.kind {
            StoreKind::KeyValue | StoreKind::TimestampedKeyValue | StoreKind::TimeOrderedBuffer => {
                None
            }
            StoreKind::Window { retention_ms, .. }
            | StoreKind::TimestampedWindow { retention_ms, .. }
            | StoreKind::Session { retention_ms } => Some(retention_ms),
        };
        match retention {
            None => {
                c.entry("cleanup.policy".to_owned())
                    .or_insert_with(|| "compact".to_owned());
            }
            Some(r) => {
                c.entry("cleanup.policy".to_owned())
                    .or_insert_with(|| "compact,delete".to_owned());
                c.entry("retention.ms".to_owned())
                    .or_insert_with(|| r.saturating_add(86_400_000).to_string());
            }
        }
        c
    }
}

impl PartialEq for StoreBuilder {
    /// Equal when everything but the serdes is equal (serdes are not comparable).
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.kind == other.kind
            && self.persistent == other.persistent
            && self.caching == other.caching
            && self.logging == other.logging
            && self.changelog_config == other.changelog_config
    }
}

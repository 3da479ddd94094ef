//! # state-store
//!
//! The state layer of the streams runtime: byte-level key-value, window and session stores
//! (RocksDB-backed and in-memory), the decorator layers Kafka Streams stacks on them
//! (metered → caching → change-logging → store), `.checkpoint` files, unclean-shutdown
//! detection and restoration from changelog records.
//!
//! It knows nothing of topologies or brokers and must not depend on `broker-embedded`,
//! `streams-core` or `streams-dsl`: it talks to the outside through [`ChangelogSink`]
//! (where change-logging stores send their writes) and [`Restorer`] (which replays changelog
//! records into a [`Restorable`] store). Keys and values are bytes; serdes live one layer up.
//!
//! ## Layout on disk
//! `<state.dir>/<application.id>/<task id>/rocksdb/<store>` per persistent store (see
//! [`TaskDirectory`]); window and session stores hold one RocksDB instance per time segment
//! under their directory. Each store directory records its store type, so opening it as
//! another type fails with [`StoreError::StoreTypeMismatch`].
//!
//! ## Durability contract
//! RocksDB runs with its write-ahead log disabled by default, as in Kafka Streams: the
//! changelog is the source of truth. [`TaskDirectory::checkpoint_stores`] flushes the stores
//! before it writes the checkpoint, so a checkpoint never claims more than the stores hold;
//! after a crash, restoring from the checkpointed offset + 1 rebuilds the exact contents.
//!
//! ```
//! use state_store::{InMemoryKeyValueStore, KeyValueStore, Direction};
//! let mut store = InMemoryKeyValueStore::new("counts");
//! store.put(b"a", b"1")?;
//! store.put(b"b", b"2")?;
//! assert_eq!(store.range(b"a", b"b", Direction::Reverse)?.len(), 2);
//! # Ok::<(), state_store::StoreError>(())
//! ```

mod caching;
mod checkpoint;
mod codec;
mod error;
mod logging;
mod memory;
mod metered;
mod restore;
mod rocks;
mod segments;
mod session;
mod session_caching;
mod store;
mod window;
mod window_caching;

pub use caching::{CacheFlushEntry, CacheFlushListener, CachingKeyValueStore};
pub use checkpoint::{
    OffsetCheckpoint, PreviousShutdown, TaskDirectory, TaskStartState, CHECKPOINT_FILE_NAME,
    DIRTY_MARKER_FILE_NAME,
};
pub use codec::{
    decode_session_changelog_key, decode_window_changelog_key, session_changelog_key,
    window_changelog_key,
};
pub use error::{Result, StoreError};
pub use logging::{
    ChangeLoggingKeyValueStore, ChangeLoggingSessionStore, ChangeLoggingWindowStore, ChangelogSink,
    InMemoryChangelog, RecordTimestamp,
};
pub use memory::InMemoryKeyValueStore;
pub use metered::{Metered, OperationStats, StoreMetrics, StoreMetricsRecorder, StoreOperation};
pub use restore::{
    ChangelogRecord, LoggingRestoreListener, RestoreListener, RestoreProgress, Restorer,
    TopicPartition,
};
pub use rocks::{RocksDbConfig, RocksDbKeyValueStore, RocksDbResources, STORE_TYPE_MARKER};
pub use segments::{InMemorySegmentFactory, RocksDbSegmentFactory, SegmentFactory};
pub use session::{
    InMemorySessionStore, RocksDbSessionStore, SegmentedSessionStore, SessionStoreOptions,
};
pub use session_caching::{CachingSessionStore, SessionCacheFlushEntry, SessionCacheFlushListener};
pub use store::{
    BatchEntry, Direction, KeyValue, KeyValueStore, Restorable, SessionEntry, SessionStore,
    StateStore, WindowEntry, WindowStore,
};
pub use window::{
    InMemoryWindowStore, RocksDbWindowStore, SegmentedWindowStore, WindowStoreOptions,
};
pub use window_caching::{CachingWindowStore, WindowCacheFlushEntry, WindowCacheFlushListener};

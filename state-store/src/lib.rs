//! # state-store
//!
//! The state layer of the streams runtime: byte-level key-value, window and session stores
//! (RocksDB-backed and in-memory), the decorator layers Kafka Streams stacks on them
//! (metered → caching → change-logging → store), `.checkpoint` files, unclean-shutdown
//! detection and restoration from changelog records. Caching exists for all three store
//! kinds ([`CachingKeyValueStore`], [`CachingWindowStore`], [`CachingSessionStore`]), thin
//! adapters over one record cache whose byte budget is a [`ThreadCache`], private to a
//! store or shared by all the stores of a stream thread as in Kafka Streams;
//! change-logging uses Kafka Streams' changelog key layouts
//! ([`window_changelog_key`], [`session_changelog_key`]).
//! [`InMemoryTimeOrderedKeyValueBuffer`] is Kafka's suppression buffer (table updates
//! ordered by buffer time then key, logged at flush in Kafka's `BufferValue` format).
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
//! A task's life cycle: [`TaskDirectory::open`] reports the checkpoint and whether the last
//! run ended uncleanly ([`PreviousShutdown::Unclean`]: under exactly-once, call
//! [`TaskDirectory::wipe_stores`]); open the stores; [`Restorer::restore`] from
//! [`Restorer::start_offset`] to the changelog end; process, calling
//! [`TaskDirectory::checkpoint_stores`] on every commit; finally
//! [`TaskDirectory::close_clean`].
//!
//! ## Stacking the layers
//! The runtime builds each store as Kafka Streams does, outermost first: metered → caching →
//! change-logging → inner store. Caching coalesces writes per key until a flush (a commit);
//! only then do they reach the changelog, once per key.
//!
//! ```
//! use std::sync::Arc;
//! use state_store::{
//!     CachingKeyValueStore, ChangeLoggingKeyValueStore, InMemoryChangelog,
//!     InMemoryKeyValueStore, KeyValueStore, Metered, RecordTimestamp, StateStore,
//!     StoreMetrics, StoreOperation,
//! };
//!
//! let changelog = InMemoryChangelog::new();
//! let time = RecordTimestamp::new();
//! let metrics = Arc::new(StoreMetrics::new());
//! let logged = ChangeLoggingKeyValueStore::new(
//!     InMemoryKeyValueStore::new("counts"), changelog.clone(), time.clone());
//! let cached = CachingKeyValueStore::new(logged, 10 << 20, time.clone());
//! let mut store = Metered::new(cached, metrics.clone());
//!
//! for word in ["a", "b", "a", "a"] {
//!     time.set(1_000);
//!     let n = store.get(word.as_bytes())?.map_or(0, |v| v[0]);
//!     store.put(word.as_bytes(), &[n + 1])?;
//! }
//! assert!(changelog.records()?.is_empty()); // nothing logged before the commit
//! store.flush()?;                           // commit: one changelog record per key
//! assert_eq!(changelog.records()?.len(), 2);
//! assert_eq!(store.get(b"a")?, Some(vec![3]));
//! assert_eq!(metrics.stats(StoreOperation::Put).count, 4);
//! # Ok::<(), state_store::StoreError>(())
//! ```

mod buffer;
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
mod store;
mod window;

pub use buffer::{
    BufferEviction, BufferRecordContext, BufferValue, InMemoryTimeOrderedKeyValueBuffer,
    BUFFER_CHANGELOG_VERSION_HEADER,
};
pub use caching::{
    CacheFlushEntry, CacheFlushListener, CachingKeyValueStore, CachingSessionStore,
    CachingWindowStore, SessionCacheFlushEntry, SessionCacheFlushListener, ThreadCache,
    WindowCacheFlushEntry, WindowCacheFlushListener,
};
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
pub use store::{
    BatchEntry, Direction, KeyValue, KeyValueIter, KeyValueStore, Restorable, SessionEntry,
    SessionStore, StateStore, WindowEntry, WindowStore,
};
pub use window::{
    InMemoryWindowStore, RocksDbWindowStore, SegmentedWindowStore, WindowStoreOptions,
};

//! The caching decorator for window stores (Kafka Streams' `CachingWindowStore`): an
//! adapter over the record cache of [`crate::caching`], keyed by (key, window start).

use std::ops::Bound;

use crate::caching::{
    min_live_time, Backing, CacheFlushEntry, CacheLayer, FlushEntry, ThreadCache, WindowKey,
};
use crate::error::{Result, StoreError};
use crate::logging::RecordTimestamp;
use crate::restore::ChangelogRecord;
use crate::store::{Restorable, WindowEntry, WindowStore};

/// A window pushed from the cache to the store below: the common entry plus its window.
/// Derefs to the [`CacheFlushEntry`], so `entry.key`, `entry.new_value`… read through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowCacheFlushEntry {
    /// Start of the window.
    pub window_start: i64,
    /// Key, new value, old value (when requested), timestamp, evicted flag.
    pub entry: CacheFlushEntry,
}

impl std::ops::Deref for WindowCacheFlushEntry {
    type Target = CacheFlushEntry;
    fn deref(&self) -> &CacheFlushEntry {
        &self.entry
    }
}

impl FlushEntry<WindowKey> for WindowCacheFlushEntry {
    fn from_flushed(key: &WindowKey, entry: CacheFlushEntry) -> Self {
        WindowCacheFlushEntry {
            window_start: key.1,
            entry,
        }
    }
}

/// Receives every window the cache pushes down.
pub type WindowCacheFlushListener = Box<dyn FnMut(&WindowCacheFlushEntry) + Send>;

impl<S: WindowStore> Backing<WindowKey> for S {
    fn read(&self, key: &WindowKey) -> Result<Option<Vec<u8>>> {
        self.fetch(&key.0, key.1)
    }
    fn write(&mut self, key: &WindowKey, value: Option<&[u8]>) -> Result<()> {
        match self.put(&key.0, value, key.1)? {
            Some(0) | None => Ok(()),
            Some(seq) => Err(StoreError::InvalidArgument(format!(
                "store `{}` retains duplicates (seq {seq}); it cannot be cached",
                self.name()
            ))),
        }
    }
}

/// A window store with a write-back record cache: repeated updates of the same key and
/// window between flushes reach the store below (and its changelog) once. The cache's bytes
/// count against a [`ThreadCache`] budget, as for
/// [`CachingKeyValueStore`](crate::CachingKeyValueStore).
///
/// Only for stores without duplicates (Kafka Streams does not cache join buffers either): a
/// push-down into a store that assigns sequence numbers fails with
/// [`StoreError::InvalidArgument`].
pub struct CachingWindowStore<S> {
    layer: CacheLayer<WindowKey, S, WindowCacheFlushEntry>,
    observed: i64,
}

caching_state_store!(CachingWindowStore, WindowStore, WindowCacheFlushListener);

impl<S: WindowStore> CachingWindowStore<S> {
    /// Wraps `inner` with a cache registered as the named cache `namespace` in the shared
    /// budget `cache`.
    pub fn with_thread_cache(
        inner: S,
        cache: &ThreadCache,
        namespace: impl Into<String>,
        timestamp: RecordTimestamp,
    ) -> Self {
        let observed = inner.observed_stream_time();
        CachingWindowStore {
            layer: CacheLayer::new(inner, cache, namespace.into(), timestamp),
            observed,
        }
    }

    fn min_live_time(&self) -> i64 {
        min_live_time(self.observed, self.layer.inner.retention_period())
    }

    fn merged(
        &self,
        keys: Option<(&[u8], &[u8])>,
        time_from: i64,
        time_to: i64,
    ) -> Result<Vec<WindowEntry>> {
        self.layer.check_open()?;
        let below = match keys {
            Some((f, t)) => self.layer.inner.fetch_key_range(f, t, time_from, time_to)?,
            None => self.layer.inner.fetch_all(time_from, time_to)?,
        };
        let from = time_from.max(self.min_live_time());
        let range = match keys {
            Some((f, t)) => (
                Bound::Included((f.to_vec(), i64::MIN)),
                Bound::Included((t.to_vec(), i64::MAX)),
            ),
            None => (Bound::Unbounded, Bound::Unbounded),
        };
        let below = below
            .into_iter()
            .map(|e| ((e.key, e.window_start), e.value));
        let merged = self
            .layer
            .cache
            .overlay(below, range, |k| k.1 >= from && k.1 <= time_to);
        Ok(merged
            .into_iter()
            .map(|((key, window_start), value)| WindowEntry {
                key,
                window_start,
                seq: 0,
                value,
            })
            .collect())
    }
}

impl<S: WindowStore + Restorable> Restorable for CachingWindowStore<S> {
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
        // Restoration happens before processing, when the cache is empty; drop anything
        // cached anyway so it cannot shadow restored windows.
        self.layer.cache.clear();
        self.layer.inner.restore_batch(records)?;
        self.observed = self.observed.max(self.layer.inner.observed_stream_time());
        Ok(())
    }
}

impl<S: WindowStore> WindowStore for CachingWindowStore<S> {
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, window_start: i64) -> Result<Option<u32>> {
        self.layer.check_open()?;
        self.observed = self.observed.max(window_start);
        if window_start < self.min_live_time() {
            return Ok(None);
        }
        self.layer
            .write((key.to_vec(), window_start), value.map(<[u8]>::to_vec))?;
        Ok(Some(0))
    }

    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        self.layer.check_open()?;
        if window_start < self.min_live_time() {
            return Ok(None);
        }
        match self.layer.cached(&(key.to_vec(), window_start))? {
            Some(value) => Ok(value),
            None => self.layer.inner.fetch(key, window_start),
        }
    }

    fn fetch_key_range(
        &self,
        key_from: &[u8],
        key_to: &[u8],
        time_from: i64,
        time_to: i64,
    ) -> Result<Vec<WindowEntry>> {
        self.merged(Some((key_from, key_to)), time_from, time_to)
    }

    fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<Vec<WindowEntry>> {
        self.merged(None, time_from, time_to)
    }

    fn retention_period(&self) -> i64 {
        self.layer.inner.retention_period()
    }

    fn observed_stream_time(&self) -> i64 {
        self.observed.max(self.layer.inner.observed_stream_time())
    }
}

//! The caching decorator for key-value stores (Kafka Streams' `CachingKeyValueStore`): an
//! adapter over the record cache of [`crate::caching`].

use std::ops::Bound;

use crate::caching::{Backing, CacheFlushEntry, CacheLayer, ThreadCache};
use crate::error::Result;
use crate::logging::RecordTimestamp;
use crate::restore::ChangelogRecord;
use crate::store::{BatchEntry, Direction, KeyValue, KeyValueIter, KeyValueStore, Restorable};

impl<S: KeyValueStore> Backing<Vec<u8>> for S {
    fn read(&self, key: &Vec<u8>) -> Result<Option<Vec<u8>>> {
        self.get(key)
    }
    fn write(&mut self, key: &Vec<u8>, value: Option<&[u8]>) -> Result<()> {
        match value {
            Some(v) => self.put(key, v),
            None => self.delete(key).map(|_| ()),
        }
    }
}

/// A key-value store with a write-back record cache: writes are coalesced per key until a
/// flush (a commit) or an eviction pushes them down, once per key, and reports them to the
/// flush listener. The cache's bytes count against a [`ThreadCache`] budget, private to the
/// store ([`new`](Self::new)) or shared with other stores
/// ([`with_thread_cache`](Self::with_thread_cache)).
pub struct CachingKeyValueStore<S> {
    layer: CacheLayer<Vec<u8>, S, CacheFlushEntry>,
}

caching_state_store!(
    CachingKeyValueStore,
    KeyValueStore,
    crate::caching::CacheFlushListener
);

impl<S: KeyValueStore> CachingKeyValueStore<S> {
    /// Wraps `inner` with a cache registered as the named cache `namespace` (Kafka:
    /// `<taskId>-<storeName>`) in the shared budget `cache`.
    pub fn with_thread_cache(
        inner: S,
        cache: &ThreadCache,
        namespace: impl Into<String>,
        timestamp: RecordTimestamp,
    ) -> Self {
        CachingKeyValueStore {
            layer: CacheLayer::new(inner, cache, namespace.into(), timestamp),
        }
    }
}

impl<S: KeyValueStore + Restorable> Restorable for CachingKeyValueStore<S> {
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
        for r in records {
            self.layer.cache.remove(&r.key);
        }
        self.layer.inner.restore_batch(records)
    }
}

impl<S: KeyValueStore> KeyValueStore for CachingKeyValueStore<S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.layer.cached::<[u8]>(key)? {
            Some(value) => Ok(value),
            None => self.layer.inner.get(key),
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.layer.write(key.to_vec(), Some(value.to_vec()))
    }

    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let old = self.get(key)?;
        self.layer.write(key.to_vec(), None)?;
        Ok(old)
    }

    fn write_batch(&mut self, batch: &[BatchEntry]) -> Result<()> {
        self.layer.check_open()?;
        for (k, v) in batch {
            self.layer.write(k.clone(), v.clone())?;
        }
        Ok(())
    }

    fn scan(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        direction: Direction,
    ) -> Result<KeyValueIter<'_>> {
        self.layer.check_open()?;
        let below = self.layer.inner.scan(lower, upper, direction)?;
        // The cached entries of the range are copied (the cache is bounded by its budget
        // and behind a lock no iterator may hold); the store below is read lazily.
        let mut cached = self.layer.cache.range::<[u8], _>((lower, upper));
        let reverse = direction == Direction::Reverse;
        if reverse {
            cached.reverse();
        }
        Ok(KeyValueIter::new(Overlay {
            below: below.peekable(),
            cached: cached.into_iter().peekable(),
            reverse,
        }))
    }

    fn approximate_num_entries(&self) -> Result<u64> {
        let dirty_puts = self.layer.cache.dirty_puts() as u64;
        Ok(self.layer.inner.approximate_num_entries()? + dirty_puts)
    }
}

/// Cached entries of a scanned range (`None`: a cached delete), in scan order.
type CachedEntries = std::iter::Peekable<std::vec::IntoIter<(Vec<u8>, Option<Vec<u8>>)>>;

/// The store below's entries overlaid with the cached ones, both in scan order: a cached
/// value replaces the one below, a cached delete hides it.
struct Overlay<'a> {
    below: std::iter::Peekable<KeyValueIter<'a>>,
    cached: CachedEntries,
    reverse: bool,
}

impl Iterator for Overlay<'_> {
    type Item = Result<KeyValue>;

    fn next(&mut self) -> Option<Result<KeyValue>> {
        loop {
            let from_cache = match (self.below.peek(), self.cached.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) | (Some(Ok(_)), None) => false,
                (None, Some(_)) => true,
                (Some(Ok((below, _))), Some((cached, _))) => {
                    let order = if self.reverse {
                        below.cmp(cached)
                    } else {
                        cached.cmp(below)
                    };
                    match order {
                        std::cmp::Ordering::Less => true,
                        std::cmp::Ordering::Equal => {
                            self.below.next();
                            true
                        }
                        std::cmp::Ordering::Greater => false,
                    }
                }
            };
            if !from_cache {
                return self.below.next();
            }
            match self.cached.next() {
                Some((key, Some(value))) => return Some(Ok((key, value))),
                Some((_, None)) => continue,
                None => return None,
            }
        }
    }
}

//! The caching decorator for session stores (Kafka Streams' `CachingSessionStore`): an
//! adapter over the record cache of [`crate::caching`], keyed by (key, session end, start).

use std::ops::Bound;

use crate::caching::{
    min_live_time, Backing, CacheFlushEntry, CacheLayer, FlushEntry, SessionKey, ThreadCache,
};
use crate::error::{Result, StoreError};
use crate::logging::RecordTimestamp;
use crate::restore::ChangelogRecord;
use crate::store::{check_key_range, Restorable, SessionEntry, SessionStore};

/// A session pushed from the cache to the store below: the common entry plus its session.
/// Derefs to the [`CacheFlushEntry`], so `entry.key`, `entry.new_value`… read through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCacheFlushEntry {
    /// Session start.
    pub start: i64,
    /// Session end.
    pub end: i64,
    /// Key, new aggregate (`None` when the session was removed, e.g. merged away), old
    /// aggregate (when requested), timestamp, evicted flag.
    pub entry: CacheFlushEntry,
}

impl std::ops::Deref for SessionCacheFlushEntry {
    type Target = CacheFlushEntry;
    fn deref(&self) -> &CacheFlushEntry {
        &self.entry
    }
}

impl FlushEntry<SessionKey> for SessionCacheFlushEntry {
    fn from_flushed(key: &SessionKey, entry: CacheFlushEntry) -> Self {
        SessionCacheFlushEntry {
            start: key.2,
            end: key.1,
            entry,
        }
    }
}

/// Receives every session the cache pushes down.
pub type SessionCacheFlushListener = Box<dyn FnMut(&SessionCacheFlushEntry) + Send>;

impl<S: SessionStore> Backing<SessionKey> for S {
    fn read(&self, (key, end, start): &SessionKey) -> Result<Option<Vec<u8>>> {
        self.fetch_session(key, *start, *end)
    }
    fn write(&mut self, (key, end, start): &SessionKey, value: Option<&[u8]>) -> Result<()> {
        match value {
            Some(v) => self.put(key, *start, *end, v),
            None => self.remove(key, *start, *end),
        }
    }
}

/// A session store with a write-back record cache: session merges that rewrite the same
/// session repeatedly between flushes reach the store below (and its changelog) once. The
/// cache's bytes count against a [`ThreadCache`] budget, as for
/// [`CachingKeyValueStore`](crate::CachingKeyValueStore).
pub struct CachingSessionStore<S> {
    layer: CacheLayer<SessionKey, S, SessionCacheFlushEntry>,
    observed: i64,
}

caching_state_store!(CachingSessionStore, SessionStore, SessionCacheFlushListener);

fn check_session(store: &str, start: i64, end: i64) -> Result<()> {
    if start > end {
        return Err(StoreError::invalid_range(
            store,
            format!("session start {start} is after its end {end}"),
        ));
    }
    Ok(())
}

impl<S: SessionStore> CachingSessionStore<S> {
    /// Wraps `inner` with a cache registered as the named cache `namespace` in the shared
    /// budget `cache`.
    pub fn with_thread_cache(
        inner: S,
        cache: &ThreadCache,
        namespace: impl Into<String>,
        timestamp: RecordTimestamp,
    ) -> Self {
        let observed = inner.observed_stream_time();
        CachingSessionStore {
            layer: CacheLayer::new(inner, cache, namespace.into(), timestamp),
            observed,
        }
    }

    fn min_live_time(&self) -> i64 {
        min_live_time(self.observed, self.layer.inner.retention_period())
    }

    fn write(&mut self, key: &[u8], start: i64, end: i64, value: Option<&[u8]>) -> Result<()> {
        self.layer.check_open()?;
        check_session(self.layer.inner.name(), start, end)?;
        self.observed = self.observed.max(end);
        if end < self.min_live_time() {
            return Ok(());
        }
        self.layer
            .write((key.to_vec(), end, start), value.map(<[u8]>::to_vec))
    }
}

impl<S: SessionStore + Restorable> Restorable for CachingSessionStore<S> {
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
        // Restoration happens before processing, when the cache is empty; drop anything
        // cached anyway so it cannot shadow restored sessions.
        self.layer.cache.clear();
        self.layer.inner.restore_batch(records)?;
        self.observed = self.observed.max(self.layer.inner.observed_stream_time());
        Ok(())
    }
}

impl<S: SessionStore> SessionStore for CachingSessionStore<S> {
    fn put(&mut self, key: &[u8], start: i64, end: i64, value: &[u8]) -> Result<()> {
        self.write(key, start, end, Some(value))
    }

    fn remove(&mut self, key: &[u8], start: i64, end: i64) -> Result<()> {
        self.write(key, start, end, None)
    }

    fn fetch_session(&self, key: &[u8], start: i64, end: i64) -> Result<Option<Vec<u8>>> {
        self.layer.check_open()?;
        check_session(self.layer.inner.name(), start, end)?;
        if end < self.min_live_time() {
            return Ok(None);
        }
        match self.layer.cached(&(key.to_vec(), end, start))? {
            Some(value) => Ok(value),
            None => self.layer.inner.fetch_session(key, start, end),
        }
    }

    fn find_sessions_key_range(
        &self,
        key_from: &[u8],
        key_to: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<Vec<SessionEntry>> {
        self.layer.check_open()?;
        check_key_range(self.layer.inner.name(), key_from, key_to)?;
        let from_end = earliest_session_end.max(self.min_live_time());
        let below = self.layer.inner.find_sessions_key_range(
            key_from,
            key_to,
            earliest_session_end,
            latest_session_start,
        )?;
        let range = (
            Bound::Included((key_from.to_vec(), i64::MIN, i64::MIN)),
            Bound::Included((key_to.to_vec(), i64::MAX, i64::MAX)),
        );
        let below = below
            .into_iter()
            .map(|e| ((e.key, e.end, e.start), e.value));
        let merged = self.layer.cache.overlay(below, range, |k| {
            k.1 >= from_end && k.2 <= latest_session_start
        });
        Ok(merged
            .into_iter()
            .map(|((key, end, start), value)| SessionEntry {
                key,
                start,
                end,
                value,
            })
            .collect())
    }

    fn find_sessions_by_end(
        &self,
        earliest_session_end: i64,
        latest_session_end: i64,
    ) -> Result<Vec<SessionEntry>> {
        self.layer.check_open()?;
        // Like the store below: no per-session retention check (segments expire whole).
        let from_end = earliest_session_end;
        let below = self
            .layer
            .inner
            .find_sessions_by_end(earliest_session_end, latest_session_end)?
            .into_iter()
            .map(|e| ((e.key, e.end, e.start), e.value));
        let merged = self.layer.cache.overlay(
            below,
            (Bound::<(Vec<u8>, i64, i64)>::Unbounded, Bound::Unbounded),
            |k| k.1 >= from_end && k.1 <= latest_session_end,
        );
        let mut out: Vec<SessionEntry> = merged
            .into_iter()
            .map(|((key, end, start), value)| SessionEntry {
                key,
                start,
                end,
                value,
            })
            .collect();
        out.sort_unstable_by(|a, b| (a.end, &a.key, a.start).cmp(&(b.end, &b.key, b.start)));
        Ok(out)
    }

    fn retention_period(&self) -> i64 {
        self.layer.inner.retention_period()
    }

    fn observed_stream_time(&self) -> i64 {
        self.observed.max(self.layer.inner.observed_stream_time())
    }
}

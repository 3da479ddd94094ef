//! The caching decorator for session stores (Kafka Streams' `CachingSessionStore`).

use std::collections::BTreeMap;

use crate::error::{Result, StoreError};
use crate::logging::RecordTimestamp;
use crate::restore::ChangelogRecord;
use crate::store::{check_key_range, Restorable, SessionEntry, SessionStore, StateStore};

/// Bytes charged per cache entry on top of its key and value.
const ENTRY_OVERHEAD: usize = 96;

/// A session pushed from the cache to the store below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCacheFlushEntry {
    /// The record key.
    pub key: Vec<u8>,
    /// Session start.
    pub start: i64,
    /// Session end.
    pub end: i64,
    /// The new aggregate, or `None` when the session was removed (merged away).
    pub new_value: Option<Vec<u8>>,
    /// Timestamp of the write that produced `new_value`.
    pub timestamp: i64,
    /// `true` if pushed because the cache was full, `false` if pushed by a flush.
    pub evicted: bool,
}

/// Receives every session the cache pushes down.
pub type SessionCacheFlushListener = Box<dyn FnMut(&SessionCacheFlushEntry) + Send>;

#[derive(Debug)]
struct Slot {
    value: Option<Vec<u8>>,
    dirty: bool,
    tick: u64,
    timestamp: i64,
}

/// (key, end, start): the order sessions are returned in.
type SlotKey = (Vec<u8>, i64, i64);

fn slot_size(key: &[u8], value: &Option<Vec<u8>>) -> usize {
    2 * key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
}

/// A session store with a write-back cache bounded in bytes: session merges that rewrite
/// the same session repeatedly between flushes reach the store below (and its changelog)
/// once.
pub struct CachingSessionStore<S> {
    inner: S,
    slots: BTreeMap<SlotKey, Slot>,
    lru: BTreeMap<u64, SlotKey>,
    tick: u64,
    bytes: usize,
    max_bytes: usize,
    observed: i64,
    listener: Option<SessionCacheFlushListener>,
    timestamp: RecordTimestamp,
}

impl<S> std::fmt::Debug for CachingSessionStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingSessionStore")
            .field("entries", &self.slots.len())
            .field("bytes", &self.bytes)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl<S: SessionStore> CachingSessionStore<S> {
    /// Wraps `inner` with a cache of at most `max_bytes`.
    pub fn new(inner: S, max_bytes: usize, timestamp: RecordTimestamp) -> Self {
        let observed = inner.observed_stream_time();
        CachingSessionStore {
            inner,
            slots: BTreeMap::new(),
            lru: BTreeMap::new(),
            tick: 0,
            bytes: 0,
            max_bytes,
            observed,
            listener: None,
            timestamp,
        }
    }

    /// Sets the listener that receives flushed and evicted sessions.
    pub fn set_flush_listener(&mut self, listener: SessionCacheFlushListener) {
        self.listener = Some(listener);
    }

    /// Bytes the cache currently accounts for.
    pub fn cached_bytes(&self) -> usize {
        self.bytes
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.is_open() {
            Ok(())
        } else {
            Err(StoreError::closed(self.inner.name()))
        }
    }

    fn min_live_time(&self) -> i64 {
        if self.observed == i64::MIN {
            return i64::MIN;
        }
        let t = i128::from(self.observed) - i128::from(self.inner.retention_period()) + 1;
        i64::try_from(t).unwrap_or(i64::MIN)
    }

    fn push_down(&mut self, key: SlotKey, slot: &Slot, evicted: bool) -> Result<()> {
        let (k, end, start) = key;
        let current = self.timestamp.get();
        self.timestamp.set(slot.timestamp);
        let written = match &slot.value {
            Some(v) => self.inner.put(&k, start, end, v),
            None => self.inner.remove(&k, start, end),
        };
        self.timestamp.set(current);
        written?;
        let entry = SessionCacheFlushEntry {
            key: k,
            start,
            end,
            new_value: slot.value.clone(),
            timestamp: slot.timestamp,
            evicted,
        };
        if let Some(listener) = self.listener.as_mut() {
            listener(&entry);
        }
        Ok(())
    }

    fn evict(&mut self) -> Result<()> {
        while self.bytes > self.max_bytes {
            let Some((_, key)) = self.lru.pop_first() else {
                break;
            };
            let Some(slot) = self.slots.remove(&key) else {
                continue;
            };
            self.bytes = self.bytes.saturating_sub(slot_size(&key.0, &slot.value));
            if slot.dirty {
                self.push_down(key, &slot, true)?;
            }
        }
        Ok(())
    }

    /// Pushes every dirty session down (oldest write first) and reports each one.
    pub fn flush_cache(&mut self) -> Result<()> {
        let dirty: Vec<SlotKey> = self
            .lru
            .values()
            .filter(|k| self.slots.get(*k).is_some_and(|s| s.dirty))
            .cloned()
            .collect();
        for key in dirty {
            let Some(slot) = self.slots.remove(&key) else {
                continue;
            };
            let result = self.push_down(key.clone(), &slot, false);
            self.slots.insert(
                key,
                Slot {
                    dirty: result.is_err(),
                    ..slot
                },
            );
            result?;
        }
        Ok(())
    }

    fn write(&mut self, key: &[u8], start: i64, end: i64, value: Option<&[u8]>) -> Result<()> {
        self.check_open()?;
        if start > end {
            return Err(StoreError::invalid_range(
                self.inner.name(),
                format!("session start {start} is after its end {end}"),
            ));
        }
        self.observed = self.observed.max(end);
        if end < self.min_live_time() {
            return Ok(());
        }
        self.tick += 1;
        let tick = self.tick;
        let value = value.map(<[u8]>::to_vec);
        let size = slot_size(key, &value);
        let slot_key = (key.to_vec(), end, start);
        let slot = Slot {
            value,
            dirty: true,
            tick,
            timestamp: self.timestamp.get(),
        };
        if let Some(old) = self.slots.insert(slot_key.clone(), slot) {
            self.lru.remove(&old.tick);
            self.bytes = self.bytes.saturating_sub(slot_size(key, &old.value));
        }
        self.lru.insert(tick, slot_key);
        self.bytes += size;
        self.evict()
    }
}

impl<S: SessionStore> StateStore for CachingSessionStore<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
    fn is_open(&self) -> bool {
        self.inner.is_open()
    }
    fn flush(&mut self) -> Result<()> {
        self.check_open()?;
        self.flush_cache()?;
        self.inner.flush()
    }
    fn flush_cache(&mut self) -> Result<()> {
        self.check_open()?;
        CachingSessionStore::flush_cache(self)
    }
    fn close(&mut self) -> Result<()> {
        if self.inner.is_open() {
            self.flush_cache()?;
        }
        self.slots.clear();
        self.lru.clear();
        self.bytes = 0;
        self.inner.close()
    }
}

impl<S: SessionStore + Restorable> Restorable for CachingSessionStore<S> {
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
        // Restoration happens before processing, when the cache is empty; drop anything
        // cached anyway so it cannot shadow restored sessions.
        self.slots.clear();
        self.lru.clear();
        self.bytes = 0;
        self.inner.restore_batch(records)?;
        self.observed = self.observed.max(self.inner.observed_stream_time());
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
        self.check_open()?;
        if start > end {
            return Err(StoreError::invalid_range(
                self.inner.name(),
                format!("session start {start} is after its end {end}"),
            ));
        }
        if end < self.min_live_time() {
            return Ok(None);
        }
        match self.slots.get(&(key.to_vec(), end, start)) {
            Some(slot) => Ok(slot.value.clone()),
            None => self.inner.fetch_session(key, start, end),
        }
    }

    fn find_sessions_key_range(
        &self,
        key_from: &[u8],
        key_to: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<Vec<SessionEntry>> {
        self.check_open()?;
        check_key_range(self.inner.name(), key_from, key_to)?;
        let from_end = earliest_session_end.max(self.min_live_time());
        let below = self.inner.find_sessions_key_range(
            key_from,
            key_to,
            earliest_session_end,
            latest_session_start,
        )?;
        let mut merged: BTreeMap<SlotKey, Vec<u8>> = below
            .into_iter()
            .filter(|e| e.end >= from_end)
            .map(|e| ((e.key, e.end, e.start), e.value))
            .collect();
        for ((k, end, start), slot) in &self.slots {
            if k.as_slice() < key_from
                || k.as_slice() > key_to
                || *end < from_end
                || *start > latest_session_start
            {
                continue;
            }
            let sk = (k.clone(), *end, *start);
            match &slot.value {
                Some(v) => {
                    merged.insert(sk, v.clone());
                }
                None => {
                    merged.remove(&sk);
                }
            }
        }
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

    fn retention_period(&self) -> i64 {
        self.inner.retention_period()
    }

    fn observed_stream_time(&self) -> i64 {
        self.observed.max(self.inner.observed_stream_time())
    }
}

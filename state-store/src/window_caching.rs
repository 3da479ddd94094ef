//! The caching decorator for window stores (Kafka Streams' `CachingWindowStore`).

use std::collections::BTreeMap;

use crate::error::{Result, StoreError};
use crate::logging::RecordTimestamp;
use crate::restore::ChangelogRecord;
use crate::store::{Restorable, StateStore, WindowEntry, WindowStore};

/// Bytes charged per cache entry on top of its key and value.
const ENTRY_OVERHEAD: usize = 80;

/// A window pushed from the cache to the store below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowCacheFlushEntry {
    /// The record key.
    pub key: Vec<u8>,
    /// Start of the window.
    pub window_start: i64,
    /// The new value, or `None` for a delete.
    pub new_value: Option<Vec<u8>>,
    /// Timestamp of the write that produced `new_value`.
    pub timestamp: i64,
    /// `true` if pushed because the cache was full, `false` if pushed by a flush.
    pub evicted: bool,
}

/// Receives every window the cache pushes down.
pub type WindowCacheFlushListener = Box<dyn FnMut(&WindowCacheFlushEntry) + Send>;

#[derive(Debug)]
struct Slot {
    value: Option<Vec<u8>>,
    dirty: bool,
    tick: u64,
    timestamp: i64,
}

type SlotKey = (Vec<u8>, i64);

fn slot_size(key: &[u8], value: &Option<Vec<u8>>) -> usize {
    2 * key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
}

/// A window store with a write-back cache bounded in bytes: repeated updates of the same
/// key and window between flushes reach the store below (and its changelog) once.
///
/// Only for stores without duplicates (Kafka Streams does not cache join buffers either): a
/// flush into a store that assigns sequence numbers fails with
/// [`StoreError::InvalidArgument`].
pub struct CachingWindowStore<S> {
    inner: S,
    slots: BTreeMap<SlotKey, Slot>,
    lru: BTreeMap<u64, SlotKey>,
    tick: u64,
    bytes: usize,
    max_bytes: usize,
    observed: i64,
    listener: Option<WindowCacheFlushListener>,
    timestamp: RecordTimestamp,
}

impl<S> std::fmt::Debug for CachingWindowStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingWindowStore")
            .field("entries", &self.slots.len())
            .field("bytes", &self.bytes)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl<S: WindowStore> CachingWindowStore<S> {
    /// Wraps `inner` (a store without duplicates) with a cache of at most `max_bytes`.
    pub fn new(inner: S, max_bytes: usize, timestamp: RecordTimestamp) -> Self {
        let observed = inner.observed_stream_time();
        CachingWindowStore {
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

    /// Sets the listener that receives flushed and evicted windows.
    pub fn set_flush_listener(&mut self, listener: WindowCacheFlushListener) {
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
        let current = self.timestamp.get();
        self.timestamp.set(slot.timestamp);
        let written = self.inner.put(&key.0, slot.value.as_deref(), key.1);
        self.timestamp.set(current);
        match written? {
            Some(0) | None => {}
            Some(seq) => {
                return Err(StoreError::InvalidArgument(format!(
                    "store `{}` retains duplicates (seq {seq}); it cannot be cached",
                    self.inner.name()
                )))
            }
        }
        let entry = WindowCacheFlushEntry {
            key: key.0,
            window_start: key.1,
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

    /// Pushes every dirty window down (oldest write first) and reports each one.
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

    fn cached_in<'a>(
        &'a self,
        key_from: Option<&'a [u8]>,
        key_to: Option<&'a [u8]>,
        from: i64,
        to: i64,
    ) -> impl Iterator<Item = (&'a SlotKey, &'a Slot)> + 'a {
        self.slots.iter().filter(move |((k, t), _)| {
            *t >= from
                && *t <= to
                && key_from.is_none_or(|f| k.as_slice() >= f)
                && key_to.is_none_or(|kt| k.as_slice() <= kt)
        })
    }

    fn merged(
        &self,
        key_from: Option<&[u8]>,
        key_to: Option<&[u8]>,
        time_from: i64,
        time_to: i64,
    ) -> Result<Vec<WindowEntry>> {
        self.check_open()?;
        let below = match (key_from, key_to) {
            (Some(f), Some(t)) => self.inner.fetch_key_range(f, t, time_from, time_to)?,
            _ => self.inner.fetch_all(time_from, time_to)?,
        };
        let from = time_from.max(self.min_live_time());
        let mut merged: BTreeMap<SlotKey, Vec<u8>> = below
            .into_iter()
            .filter(|e| e.window_start >= from)
            .map(|e| ((e.key, e.window_start), e.value))
            .collect();
        for (k, slot) in self.cached_in(key_from, key_to, from, time_to) {
            match &slot.value {
                Some(v) => {
                    merged.insert(k.clone(), v.clone());
                }
                None => {
                    merged.remove(k);
                }
            }
        }
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

impl<S: WindowStore> StateStore for CachingWindowStore<S> {
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
        CachingWindowStore::flush_cache(self)
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

impl<S: WindowStore + Restorable> Restorable for CachingWindowStore<S> {
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
        // Restoration happens before processing, when the cache is empty; drop anything
        // cached anyway so it cannot shadow restored windows.
        self.slots.clear();
        self.lru.clear();
        self.bytes = 0;
        self.inner.restore_batch(records)?;
        self.observed = self.observed.max(self.inner.observed_stream_time());
        Ok(())
    }
}

impl<S: WindowStore> WindowStore for CachingWindowStore<S> {
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, window_start: i64) -> Result<Option<u32>> {
        self.check_open()?;
        self.observed = self.observed.max(window_start);
        if window_start < self.min_live_time() {
            return Ok(None);
        }
        self.tick += 1;
        let tick = self.tick;
        let value = value.map(<[u8]>::to_vec);
        let size = slot_size(key, &value);
        let slot_key = (key.to_vec(), window_start);
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
        self.evict()?;
        Ok(Some(0))
    }

    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        if window_start < self.min_live_time() {
            return Ok(None);
        }
        match self.slots.get(&(key.to_vec(), window_start)) {
            Some(slot) => Ok(slot.value.clone()),
            None => self.inner.fetch(key, window_start),
        }
    }

    fn fetch_key_range(
        &self,
        key_from: &[u8],
        key_to: &[u8],
        time_from: i64,
        time_to: i64,
    ) -> Result<Vec<WindowEntry>> {
        self.merged(Some(key_from), Some(key_to), time_from, time_to)
    }

    fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<Vec<WindowEntry>> {
        self.merged(None, None, time_from, time_to)
    }

    fn retention_period(&self) -> i64 {
        self.inner.retention_period()
    }

    fn observed_stream_time(&self) -> i64 {
        self.observed.max(self.inner.observed_stream_time())
    }
}

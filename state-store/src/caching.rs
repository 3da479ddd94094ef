//! The caching decorator: coalesces writes per key between flushes and reports what it
//! pushes down, so the runtime forwards one update per key per commit.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::error::Result;
use crate::logging::RecordTimestamp;
use crate::restore::ChangelogRecord;
use crate::store::{BatchEntry, Direction, KeyValue, KeyValueStore, Restorable, StateStore};

/// Bytes charged per cache entry on top of its key and value (bookkeeping overhead).
const ENTRY_OVERHEAD: usize = 64;

/// An entry pushed from the cache to the store below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheFlushEntry {
    /// The key.
    pub key: Vec<u8>,
    /// The new value, or `None` for a delete (a tombstone downstream).
    pub new_value: Option<Vec<u8>>,
    /// The value the store below held before, when old values are requested.
    pub old_value: Option<Vec<u8>>,
    /// Timestamp of the write that produced `new_value`.
    pub timestamp: i64,
    /// `true` if pushed because the cache was full, `false` if pushed by a flush.
    pub evicted: bool,
}

/// Receives every entry the cache pushes down (Kafka Streams' cache flush listener).
pub type CacheFlushListener = Box<dyn FnMut(&CacheFlushEntry) + Send>;

#[derive(Debug)]
struct Slot {
    value: Option<Vec<u8>>,
    dirty: bool,
    tick: u64,
    timestamp: i64,
}

fn slot_size(key: &[u8], value: &Option<Vec<u8>>) -> usize {
    2 * key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
}

/// A key-value store with a write-back cache bounded in bytes (least recently written
/// entries are evicted first; evicting a dirty entry writes it down and reports it).
pub struct CachingKeyValueStore<S> {
    inner: S,
    slots: BTreeMap<Vec<u8>, Slot>,
    lru: BTreeMap<u64, Vec<u8>>,
    /// Ticks of the dirty entries, so a flush visits only those.
    dirty: BTreeSet<u64>,
    tick: u64,
    bytes: usize,
    max_bytes: usize,
    listener: Option<CacheFlushListener>,
    send_old_values: bool,
    timestamp: RecordTimestamp,
}

impl<S> std::fmt::Debug for CachingKeyValueStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingKeyValueStore")
            .field("entries", &self.slots.len())
            .field("bytes", &self.bytes)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl<S: KeyValueStore> CachingKeyValueStore<S> {
    /// Wraps `inner` with a cache of at most `max_bytes` bytes. Writes are stamped with the
    /// current `timestamp` and, when pushed down, the timestamp is set back to theirs so a
    /// change-logging layer below logs the original record time.
    pub fn new(inner: S, max_bytes: usize, timestamp: RecordTimestamp) -> Self {
        CachingKeyValueStore {
            inner,
            slots: BTreeMap::new(),
            lru: BTreeMap::new(),
            dirty: BTreeSet::new(),
            tick: 0,
            bytes: 0,
            max_bytes,
            listener: None,
            send_old_values: false,
            timestamp,
        }
    }

    /// Sets the listener that receives flushed and evicted entries.
    pub fn set_flush_listener(&mut self, listener: CacheFlushListener) {
        self.listener = Some(listener);
    }

    /// Whether flushed entries carry the old value read from the store below.
    pub fn set_send_old_values(&mut self, send: bool) {
        self.send_old_values = send;
    }

    /// Bytes the cache currently accounts for.
    pub fn cached_bytes(&self) -> usize {
        self.bytes
    }

    /// Number of cached entries (dirty or clean).
    pub fn cached_entries(&self) -> usize {
        self.slots.len()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn write(&mut self, key: &[u8], value: Option<Vec<u8>>) -> Result<()> {
        self.tick += 1;
        let tick = self.tick;
        let size = slot_size(key, &value);
        let slot = Slot {
            value,
            dirty: true,
            tick,
            timestamp: self.timestamp.get(),
        };
        if let Some(old) = self.slots.insert(key.to_vec(), slot) {
            self.lru.remove(&old.tick);
            self.dirty.remove(&old.tick);
            self.bytes = self.bytes.saturating_sub(slot_size(key, &old.value));
        }
        self.lru.insert(tick, key.to_vec());
        self.dirty.insert(tick);
        self.bytes += size;
        self.evict()
    }

    fn evict(&mut self) -> Result<()> {
        while self.bytes > self.max_bytes {
            let Some((_, key)) = self.lru.pop_first() else {
                break;
            };
            let Some(slot) = self.slots.remove(&key) else {
                continue;
            };
            self.bytes = self.bytes.saturating_sub(slot_size(&key, &slot.value));
            if slot.dirty {
                self.dirty.remove(&slot.tick);
                self.push_down(key, slot.value, slot.timestamp, true)?;
            }
        }
        Ok(())
    }

    fn push_down(
        &mut self,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        timestamp: i64,
        evicted: bool,
    ) -> Result<()> {
        let old_value = if self.send_old_values {
            self.inner.get(&key)?
        } else {
            None
        };
        let current = self.timestamp.get();
        self.timestamp.set(timestamp);
        let written = match &value {
            Some(v) => self.inner.put(&key, v),
            None => self.inner.delete(&key).map(|_| ()),
        };
        self.timestamp.set(current);
        written?;
        let entry = CacheFlushEntry {
            key,
            new_value: value,
            old_value,
            timestamp,
            evicted,
        };
        if let Some(listener) = self.listener.as_mut() {
            listener(&entry);
        }
        Ok(())
    }

    /// Pushes every dirty entry down (oldest write first) and reports each one, without
    /// flushing the store below.
    pub fn flush_cache(&mut self) -> Result<()> {
        let dirty: Vec<(u64, Vec<u8>)> = self
            .dirty
            .iter()
            .filter_map(|t| self.lru.get(t).map(|k| (*t, k.clone())))
            .collect();
        for (tick, key) in dirty {
            let Some(slot) = self.slots.get(&key) else {
                continue;
            };
            let (value, ts) = (slot.value.clone(), slot.timestamp);
            self.push_down(key.clone(), value, ts, false)?;
            if let Some(slot) = self.slots.get_mut(&key) {
                slot.dirty = false;
            }
            self.dirty.remove(&tick);
        }
        Ok(())
    }
}

impl<S: KeyValueStore> StateStore for CachingKeyValueStore<S> {
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
        if !self.inner.is_open() {
            return Err(crate::StoreError::closed(self.inner.name()));
        }
        self.flush_cache()?;
        self.inner.flush()
    }
    fn flush_cache(&mut self) -> Result<()> {
        if !self.inner.is_open() {
            return Err(crate::StoreError::closed(self.inner.name()));
        }
        CachingKeyValueStore::flush_cache(self)
    }
    fn close(&mut self) -> Result<()> {
        if self.inner.is_open() {
            self.flush_cache()?;
        }
        self.slots.clear();
        self.lru.clear();
        self.dirty.clear();
        self.bytes = 0;
        self.inner.close()
    }
}

impl<S: KeyValueStore + Restorable> Restorable for CachingKeyValueStore<S> {
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
        for r in records {
            if let Some(slot) = self.slots.remove(&r.key) {
                self.lru.remove(&slot.tick);
                self.dirty.remove(&slot.tick);
                self.bytes = self.bytes.saturating_sub(slot_size(&r.key, &slot.value));
            }
        }
        self.inner.restore_batch(records)
    }
}

impl<S: KeyValueStore> KeyValueStore for CachingKeyValueStore<S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if !self.inner.is_open() {
            return Err(crate::StoreError::closed(self.inner.name()));
        }
        match self.slots.get(key) {
            Some(slot) => Ok(slot.value.clone()),
            None => self.inner.get(key),
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if !self.inner.is_open() {
            return Err(crate::StoreError::closed(self.inner.name()));
        }
        self.write(key, Some(value.to_vec()))
    }

    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let old = self.get(key)?;
        self.write(key, None)?;
        Ok(old)
    }

    fn write_batch(&mut self, batch: &[BatchEntry]) -> Result<()> {
        if !self.inner.is_open() {
            return Err(crate::StoreError::closed(self.inner.name()));
        }
        for (k, v) in batch {
            self.write(k, v.clone())?;
        }
        Ok(())
    }

    fn scan(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        direction: Direction,
    ) -> Result<Vec<KeyValue>> {
        let below = self.inner.scan(lower, upper, Direction::Forward)?;
        if crate::memory::bounds_empty(lower, upper) {
            return Ok(Vec::new());
        }
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = below.into_iter().collect();
        for (k, slot) in self.slots.range::<[u8], _>((lower, upper)) {
            match &slot.value {
                Some(v) => {
                    merged.insert(k.clone(), v.clone());
                }
                None => {
                    merged.remove(k);
                }
            }
        }
        Ok(match direction {
            Direction::Forward => merged.into_iter().collect(),
            Direction::Reverse => merged.into_iter().rev().collect(),
        })
    }

    fn approximate_num_entries(&self) -> Result<u64> {
        let dirty_puts = self
            .slots
            .values()
            .filter(|s| s.dirty && s.value.is_some())
            .count() as u64;
        Ok(self.inner.approximate_num_entries()? + dirty_puts)
    }
}

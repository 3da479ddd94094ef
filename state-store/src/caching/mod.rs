//! The record cache shared by the three caching layers, and the per-thread byte budget.
//!
//! # Shape
//! - [`RecordCache`] is the one cache core: entries ordered by key (for range reads), an LRU
//!   order (writes and point reads move an entry to the head), and the dirty entries in the
//!   order of their last write. Each entry is charged `key + value + ENTRY_OVERHEAD` bytes.
//!   It is generic over its key: plain key bytes for key-value stores, `(key, window start)`
//!   for window stores, `(key, session end, session start)` for session stores.
//! - [`CacheLayer`] ties a core to the store below it, a flush listener, the
//!   send-old-values switch and the record timestamp; `CachingKeyValueStore`,
//!   `CachingWindowStore` and `CachingSessionStore` are thin adapters over it.
//! - [`ThreadCache`] is Kafka Streams' `ThreadCache`: one byte budget for one stream thread,
//!   shared by the caches of all the stores of that thread's tasks, each registered as a
//!   named cache (Kafka's namespace `<taskId>-<storeName>`).
//!
//! # Eviction across stores, and ownership
//! Kafka's `ThreadCache.maybeEvict(namespace)` evicts only from the named cache that was just
//! written to: while the thread's total is above the budget it evicts that cache's least
//! recently used entry, and it stops when that cache is empty even if the total is still
//! above the budget. This module does the same, which is what makes it work with Rust
//! ownership: each caching layer owns its entries and its inner store, and the
//! [`ThreadCache`] holds only the shared accounting (bytes per named cache and their total).
//! A layer that writes checks the shared total and evicts from its own cache, pushing its
//! own dirty entries into its own inner store and reporting them to its own listener; no
//! layer ever touches another layer's entries. Because every write evicts until the total is
//! within the budget or the written cache is empty, and the total was within the budget
//! before the write, the total is within the budget again after every successful write.
//! (A failed push-down leaves the total above the budget; the next write to that cache
//! retries.) The trade-off, which Kafka shares: a store whose cache already holds most of the
//! budget keeps it until it writes, flushes, closes or is dropped; the other stores then cache
//! less.
//!
//! As in Kafka's `NamedCache.evict`, evicting a dirty entry pushes it down (flagged
//! `evicted`) and then flushes the rest of that cache's dirty entries (in write order; they
//! stay cached, clean), so what reaches the store below and the listener keeps the order of
//! the writes as far as possible. Evicting a clean entry just drops it. After a flush, clean
//! tombstones are dropped from the cache (Kafka does the same): the store below answers for
//! them.
//!
//! # Errors
//! Operations on a closed store fail with [`StoreError::Closed`]; errors of the store below
//! propagate. A push-down that fails leaves its entry dirty in the cache (an entry being
//! evicted is put back), so the next flush or eviction retries it.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Result, StoreError};
use crate::logging::RecordTimestamp;
use crate::store::StateStore;

/// Bytes charged per cache entry on top of its key and value (bookkeeping overhead).
pub(crate) const ENTRY_OVERHEAD: usize = 64;

/// An entry pushed from a cache to the store below (Kafka Streams' dirty entry), as the
/// flush listener of a key-value cache receives it; window and session caches wrap it with
/// their window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheFlushEntry {
    /// The record key.
    pub key: Vec<u8>,
    /// The new value, or `None` for a delete (a tombstone downstream).
    pub new_value: Option<Vec<u8>>,
    /// The value the store below held before, when old values are requested (else `None`).
    pub old_value: Option<Vec<u8>>,
    /// Timestamp of the write that produced `new_value`.
    pub timestamp: i64,
    /// `true` if pushed because the cache had to evict it, `false` if pushed by a flush.
    pub evicted: bool,
}

/// Receives every entry a key-value cache pushes down (Kafka Streams' cache flush listener).
pub type CacheFlushListener = Box<dyn FnMut(&CacheFlushEntry) + Send>;

// ------------------------------------------------------------------------------ budget

/// One stream thread's record-cache budget (Kafka Streams' `ThreadCache`): the caching
/// layers of all the stores of the thread's tasks register a named cache in it, and a write
/// to one of them evicts from that cache until the thread's total is within the budget.
///
/// Cloning gives another handle to the same budget. See the module documentation of
/// `cache.rs` (and docs/ARCHITECTURE.md) for how eviction works across stores.
///
/// ```
/// use state_store::{
///     CachingKeyValueStore, InMemoryKeyValueStore, KeyValueStore, RecordTimestamp, ThreadCache,
/// };
///
/// let budget = ThreadCache::new(1_000);
/// let ts = RecordTimestamp::new();
/// let mut a = CachingKeyValueStore::with_thread_cache(
///     InMemoryKeyValueStore::new("a"), &budget, "0_0-a", ts.clone());
/// let mut b = CachingKeyValueStore::with_thread_cache(
///     InMemoryKeyValueStore::new("b"), &budget, "0_0-b", ts.clone());
/// for i in 0..100u8 {
///     a.put(&[i], &[0; 20])?;
///     b.put(&[i], &[0; 20])?;
///     assert!(budget.size_bytes() <= 1_000);
/// }
/// assert_eq!(budget.size_bytes(), a.cached_bytes() + b.cached_bytes());
/// # Ok::<(), state_store::StoreError>(())
/// ```
#[derive(Clone)]
pub struct ThreadCache {
    shared: Arc<Mutex<Budget>>,
}

#[derive(Debug)]
struct Budget {
    max_bytes: usize,
    total: usize,
    next_id: u64,
    /// Registered named caches: id -> (namespace, bytes).
    caches: BTreeMap<u64, (String, usize)>,
}

impl std::fmt::Debug for ThreadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.shared.lock();
        f.debug_struct("ThreadCache")
            .field("max_bytes", &b.max_bytes)
            .field("size_bytes", &b.total)
            .field("named_caches", &b.caches.len())
            .finish()
    }
}

impl ThreadCache {
    /// A budget of `max_bytes` for all the caches that will register in it.
    pub fn new(max_bytes: usize) -> Self {
        ThreadCache {
            shared: Arc::new(Mutex::new(Budget {
                max_bytes,
                total: 0,
                next_id: 0,
                caches: BTreeMap::new(),
            })),
        }
    }

    /// The budget in bytes.
    pub fn max_bytes(&self) -> usize {
        self.shared.lock().max_bytes
    }

    /// Bytes currently held by all registered caches together.
    pub fn size_bytes(&self) -> usize {
        self.shared.lock().total
    }

    /// Bytes currently held by the caches registered under `namespace`.
    pub fn namespace_bytes(&self, namespace: &str) -> usize {
        self.shared
            .lock()
            .caches
            .values()
            .filter(|(n, _)| n == namespace)
            .map(|(_, b)| b)
            .sum()
    }

    /// Namespaces of the registered caches, sorted (a namespace registered twice appears
    /// twice).
    pub fn namespaces(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .shared
            .lock()
            .caches
            .values()
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    fn register(&self, namespace: String) -> Registration {
        let mut b = self.shared.lock();
        let id = b.next_id;
        b.next_id += 1;
        b.caches.insert(id, (namespace, 0));
        Registration {
            cache: self.clone(),
            id,
        }
    }
}

/// A named cache's place in a [`ThreadCache`]; dropping it gives its bytes back.
struct Registration {
    cache: ThreadCache,
    id: u64,
}

impl Registration {
    /// Records that the named cache now holds `bytes`; returns whether the thread's total is
    /// above the budget.
    fn set_bytes(&self, bytes: usize) -> bool {
        let mut b = self.cache.shared.lock();
        let b = &mut *b;
        if let Some((_, held)) = b.caches.get_mut(&self.id) {
            b.total = b.total.saturating_sub(*held) + bytes;
            *held = bytes;
        }
        b.total > b.max_bytes
    }

    fn over_budget(&self) -> bool {
        let b = self.cache.shared.lock();
        b.total > b.max_bytes
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut b = self.cache.shared.lock();
        if let Some((_, held)) = b.caches.remove(&self.id) {
            b.total = b.total.saturating_sub(held);
        }
    }
}

// ------------------------------------------------------------------------------ core

/// A cache key: ordered, cloneable, with the record key it belongs to.
pub(crate) trait CacheKey: Ord + Clone {
    /// The record key (without window).
    fn record_key(&self) -> &[u8];
    /// Bytes the key is charged for.
    fn byte_len(&self) -> usize;
}

impl CacheKey for Vec<u8> {
    fn record_key(&self) -> &[u8] {
        self
    }
    fn byte_len(&self) -> usize {
        self.len()
    }
}

/// `(key, window start)`.
pub(crate) type WindowKey = (Vec<u8>, i64);

impl CacheKey for WindowKey {
    fn record_key(&self) -> &[u8] {
        &self.0
    }
    fn byte_len(&self) -> usize {
        self.0.len() + 8
    }
}

/// `(key, session end, session start)`: the order sessions are returned in.
pub(crate) type SessionKey = (Vec<u8>, i64, i64);

impl CacheKey for SessionKey {
    fn record_key(&self) -> &[u8] {
        &self.0
    }
    fn byte_len(&self) -> usize {
        self.0.len() + 16
    }
}

#[derive(Debug, Clone)]
struct Slot {
    value: Option<Vec<u8>>,
    timestamp: i64,
    /// Position in the LRU order.
    used: u64,
    /// Position in the dirty (write) order, when dirty.
    written: Option<u64>,
}

fn slot_size<K: CacheKey>(key: &K, value: &Option<Vec<u8>>) -> usize {
    key.byte_len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
}

#[derive(Debug)]
struct Entries<K> {
    slots: BTreeMap<K, Slot>,
    lru: BTreeMap<u64, K>,
    dirty: BTreeMap<u64, K>,
    tick: u64,
    bytes: usize,
}

impl<K: CacheKey> Entries<K> {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn insert(&mut self, key: K, slot: Slot) {
        self.bytes += slot_size(&key, &slot.value);
        self.lru.insert(slot.used, key.clone());
        if let Some(w) = slot.written {
            self.dirty.insert(w, key.clone());
        }
        if let Some(old) = self.slots.insert(key, slot) {
            // Callers remove first; keep the indexes consistent anyway.
            self.lru.remove(&old.used);
            if let Some(w) = old.written {
                self.dirty.remove(&w);
            }
        }
    }

    fn remove(&mut self, key: &K) -> Option<Slot> {
        let slot = self.slots.remove(key)?;
        self.lru.remove(&slot.used);
        if let Some(w) = slot.written {
            self.dirty.remove(&w);
        }
        self.bytes = self.bytes.saturating_sub(slot_size(key, &slot.value));
        Some(slot)
    }
}

/// The record-cache core: see the module documentation.
pub(crate) struct RecordCache<K> {
    /// Behind a lock so that point reads (`&self`) can move an entry to the LRU head.
    entries: Mutex<Entries<K>>,
    registration: Registration,
}

/// What [`RecordCache::pop_lru`] hands back, to push down or to put back.
pub(crate) struct Evicted<K> {
    key: K,
    slot: Slot,
}

impl<K: CacheKey> RecordCache<K> {
    /// An empty cache registered in `budget` under `namespace`.
    pub(crate) fn new(budget: &ThreadCache, namespace: String) -> Self {
        RecordCache {
            entries: Mutex::new(Entries {
                slots: BTreeMap::new(),
                lru: BTreeMap::new(),
                dirty: BTreeMap::new(),
                tick: 0,
                bytes: 0,
            }),
            registration: budget.register(namespace),
        }
    }

    /// The budget this cache is registered in.
    pub(crate) fn budget(&self) -> &ThreadCache {
        &self.registration.cache
    }

    /// The cached value of `key` (`Some(None)`: a cached delete), moving it to the LRU head.
    pub(crate) fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<Option<Vec<u8>>>
    where
        K: Borrow<Q>,
    {
        let mut guard = self.entries.lock();
        let e = &mut *guard;
        let tick = e.next_tick();
        let (owned, slot) = e.slots.get_key_value(key)?;
        let (owned, old, value) = (owned.clone(), slot.used, slot.value.clone());
        if let Some(slot) = e.slots.get_mut(key) {
            slot.used = tick;
        }
        e.lru.remove(&old);
        e.lru.insert(tick, owned);
        Some(value)
    }

    /// Writes `value` (`None`: delete) as a dirty entry at the LRU head and at the end of the
    /// write order. The caller evicts afterwards if [`over_budget`](Self::over_budget).
    pub(crate) fn put(&mut self, key: K, value: Option<Vec<u8>>, timestamp: i64) {
        let e = self.entries.get_mut();
        e.remove(&key);
        let tick = e.next_tick();
        e.insert(
            key,
            Slot {
                value,
                timestamp,
                used: tick,
                written: Some(tick),
            },
        );
        let bytes = e.bytes;
        self.registration.set_bytes(bytes);
    }

    /// Drops `key` from the cache, dirty or not.
    pub(crate) fn remove(&mut self, key: &K) {
        let e = self.entries.get_mut();
        if e.remove(key).is_some() {
            let bytes = e.bytes;
            self.registration.set_bytes(bytes);
        }
    }

    /// Drops every entry, dirty or not.
    pub(crate) fn clear(&mut self) {
        let e = self.entries.get_mut();
        e.slots.clear();
        e.lru.clear();
        e.dirty.clear();
        e.bytes = 0;
        self.registration.set_bytes(0);
    }

    /// Whether the thread's total is above its budget.
    pub(crate) fn over_budget(&self) -> bool {
        self.registration.over_budget()
    }

    /// Bytes this cache holds.
    pub(crate) fn bytes(&self) -> usize {
        self.entries.lock().bytes
    }

    /// Number of entries, dirty or clean.
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().slots.len()
    }

    /// Number of dirty entries that are not deletes.
    pub(crate) fn dirty_puts(&self) -> usize {
        let e = self.entries.lock();
        e.slots
            .values()
            .filter(|s| s.written.is_some() && s.value.is_some())
            .count()
    }

    /// Cached entries (deletes as `None`) with keys in `range`, in key order. An empty or
    /// inverted range gives nothing.
    pub(crate) fn range<Q, R>(&self, range: R) -> Vec<(K, Option<Vec<u8>>)>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
        R: RangeBounds<Q>,
    {
        if range_is_empty(range.start_bound(), range.end_bound()) {
            return Vec::new();
        }
        let e = self.entries.lock();
        e.slots
            .range(range)
            .map(|(k, s)| (k.clone(), s.value.clone()))
            .collect()
    }

    /// `below` (what the store below returned) overlaid with the cached entries in `range`
    /// (cached deletes remove), keeping only keys that pass `keep`, in key order.
    pub(crate) fn overlay<Q, R>(
        &self,
        below: impl IntoIterator<Item = (K, Vec<u8>)>,
        range: R,
        keep: impl Fn(&K) -> bool,
    ) -> BTreeMap<K, Vec<u8>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
        R: RangeBounds<Q>,
    {
        let mut merged: BTreeMap<K, Vec<u8>> = below.into_iter().filter(|(k, _)| keep(k)).collect();
        for (k, value) in self.range(range) {
            match value {
                Some(v) if keep(&k) => merged.insert(k, v),
                _ => merged.remove::<K>(&k),
            };
        }
        merged
    }

    /// Takes the least recently used entry out, or `None` when the cache is empty.
    pub(crate) fn pop_lru(&mut self) -> Option<Evicted<K>> {
        let e = self.entries.get_mut();
        let key = e.lru.values().next()?.clone();
        let slot = e.remove(&key)?;
        let bytes = e.bytes;
        self.registration.set_bytes(bytes);
        Some(Evicted { key, slot })
    }

    /// Puts back an entry [`pop_lru`](Self::pop_lru) took out (its push-down failed), at its
    /// old LRU and write-order positions.
    pub(crate) fn put_back(&mut self, evicted: Evicted<K>) {
        let e = self.entries.get_mut();
        e.remove(&evicted.key);
        e.insert(evicted.key, evicted.slot);
        let bytes = e.bytes;
        self.registration.set_bytes(bytes);
    }

    /// The oldest dirty entry (by last write): key, value, timestamp.
    pub(crate) fn oldest_dirty(&self) -> Option<(K, Option<Vec<u8>>, i64)> {
        let e = self.entries.lock();
        let key = e.dirty.values().next()?;
        let slot = e.slots.get(key)?;
        Some((key.clone(), slot.value.clone(), slot.timestamp))
    }

    /// Marks `key` clean (it was pushed down).
    pub(crate) fn mark_clean(&mut self, key: &K) {
        let e = self.entries.get_mut();
        if let Some(slot) = e.slots.get_mut(key) {
            if let Some(w) = slot.written.take() {
                e.dirty.remove(&w);
            }
        }
    }

    /// Drops clean deletes (after a flush the store below answers for them).
    pub(crate) fn drop_clean_tombstones(&mut self) {
        let e = self.entries.get_mut();
        let gone: Vec<K> = e
            .slots
            .iter()
            .filter(|(_, s)| s.written.is_none() && s.value.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        if gone.is_empty() {
            return;
        }
        for k in &gone {
            e.remove(k);
        }
        let bytes = e.bytes;
        self.registration.set_bytes(bytes);
    }
}

impl<K> Evicted<K> {
    pub(crate) fn is_dirty(&self) -> bool {
        self.slot.written.is_some()
    }
}

fn range_is_empty<Q: Ord + ?Sized>(start: Bound<&Q>, end: Bound<&Q>) -> bool {
    match (start, end) {
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
        | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
        _ => false,
    }
}

/// The first time still retained by a window or session store that observed `observed` and
/// keeps `retention` ms (`i64::MIN` before anything was observed).
pub(crate) fn min_live_time(observed: i64, retention: i64) -> i64 {
    if observed == i64::MIN {
        return i64::MIN;
    }
    let t = i128::from(observed) - i128::from(retention) + 1;
    i64::try_from(t).unwrap_or(i64::MIN)
}

// ------------------------------------------------------------------------------ layer

/// How a cache writes to the store below it and reads old values from it.
pub(crate) trait Backing<K>: StateStore {
    /// The value the store below holds for `key` (the old value of a push-down).
    fn read(&self, key: &K) -> Result<Option<Vec<u8>>>;
    /// Writes a cached value (`None`: delete) down.
    fn write(&mut self, key: &K, value: Option<&[u8]>) -> Result<()>;
}

/// What a cache's flush listener receives, built from the pushed key and the common entry.
pub(crate) trait FlushEntry<K> {
    fn from_flushed(key: &K, entry: CacheFlushEntry) -> Self;
}

impl FlushEntry<Vec<u8>> for CacheFlushEntry {
    fn from_flushed(_: &Vec<u8>, entry: CacheFlushEntry) -> Self {
        entry
    }
}

/// A flush listener receiving entries of type `E`.
type Listener<E> = Box<dyn FnMut(&E) + Send>;

/// A caching layer: the cache core over the store `S`, reporting entries of type `E`.
pub(crate) struct CacheLayer<K, S, E> {
    pub(crate) inner: S,
    pub(crate) cache: RecordCache<K>,
    listener: Option<Listener<E>>,
    send_old_values: bool,
    timestamp: RecordTimestamp,
}

impl<K: CacheKey, S: Backing<K>, E: FlushEntry<K>> CacheLayer<K, S, E> {
    /// Wraps `inner`, registering a named cache `namespace` in `budget`.
    pub(crate) fn new(
        inner: S,
        budget: &ThreadCache,
        namespace: String,
        timestamp: RecordTimestamp,
    ) -> Self {
        CacheLayer {
            inner,
            cache: RecordCache::new(budget, namespace),
            listener: None,
            send_old_values: false,
            timestamp,
        }
    }

    pub(crate) fn set_listener(&mut self, listener: Listener<E>) {
        self.listener = Some(listener);
    }

    pub(crate) fn set_send_old_values(&mut self, send: bool) {
        self.send_old_values = send;
    }

    /// Fails with [`StoreError::Closed`] when the store below is closed.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.is_open() {
            Ok(())
        } else {
            Err(StoreError::closed(self.inner.name()))
        }
    }

    /// Writes `value` into the cache, stamped with the current record time, then evicts
    /// while the thread's budget is exceeded.
    pub(crate) fn write(&mut self, key: K, value: Option<Vec<u8>>) -> Result<()> {
        self.check_open()?;
        self.cache.put(key, value, self.timestamp.get());
        self.maybe_evict()
    }

    /// Kafka's `ThreadCache.maybeEvict`: evict from this cache while the thread's total is
    /// above its budget and this cache has entries.
    fn maybe_evict(&mut self) -> Result<()> {
        while self.cache.over_budget() {
            let Some(evicted) = self.cache.pop_lru() else {
                break;
            };
            if !evicted.is_dirty() {
                continue;
            }
            let slot = &evicted.slot;
            if let Err(e) =
                self.push_down(&evicted.key, slot.value.as_deref(), slot.timestamp, true)
            {
                self.cache.put_back(evicted);
                return Err(e);
            }
            // Kafka's `NamedCache.evict`: a dirty eviction flushes the whole named cache.
            self.flush_dirty()?;
        }
        Ok(())
    }

    /// Pushes every dirty entry down, oldest write first; each is marked clean once written.
    fn flush_dirty(&mut self) -> Result<()> {
        while let Some((key, value, timestamp)) = self.cache.oldest_dirty() {
            self.push_down(&key, value.as_deref(), timestamp, false)?;
            self.cache.mark_clean(&key);
        }
        self.cache.drop_clean_tombstones();
        Ok(())
    }

    fn push_down(
        &mut self,
        key: &K,
        value: Option<&[u8]>,
        timestamp: i64,
        evicted: bool,
    ) -> Result<()> {
        // As Kafka's caching store: with a listener, a delete of a key the store below does
        // not hold either is neither written nor forwarded (nothing changed).
        let delete_with_listener = value.is_none() && self.listener.is_some();
        let below = if self.send_old_values || delete_with_listener {
            self.inner.read(key)?
        } else {
            None
        };
        if delete_with_listener && below.is_none() {
            return Ok(());
        }
        let old_value = if self.send_old_values { below } else { None };
        // The layers below (change-logging) stamp what they write with the record time.
        let current = self.timestamp.get();
        self.timestamp.set(timestamp);
        let written = self.inner.write(key, value);
        self.timestamp.set(current);
        written?;
        if let Some(listener) = self.listener.as_mut() {
            let entry = CacheFlushEntry {
                key: key.record_key().to_vec(),
                new_value: value.map(<[u8]>::to_vec),
                old_value,
                timestamp,
                evicted,
            };
            listener(&E::from_flushed(key, entry));
        }
        Ok(())
    }

    /// Pushes the dirty entries down without flushing the store below.
    pub(crate) fn flush_cache(&mut self) -> Result<()> {
        self.check_open()?;
        self.flush_dirty()
    }

    /// Pushes the dirty entries down, then flushes the store below.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.flush_cache()?;
        self.inner.flush()
    }

    /// Flushes (if open), empties the cache and closes the store below.
    pub(crate) fn close(&mut self) -> Result<()> {
        if self.inner.is_open() {
            self.flush_dirty()?;
        }
        self.cache.clear();
        self.inner.close()
    }

    /// The cached value of `key` after checking the store is open.
    pub(crate) fn cached<Q: Ord + ?Sized>(&self, key: &Q) -> Result<Option<Option<Vec<u8>>>>
    where
        K: Borrow<Q>,
    {
        self.check_open()?;
        Ok(self.cache.get(key))
    }
}

impl<K, S, E> std::fmt::Debug for CacheLayer<K, S, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.cache.entries.lock();
        f.debug_struct("CacheLayer")
            .field("entries", &e.slots.len())
            .field("bytes", &e.bytes)
            .field("budget", &self.cache.registration.cache)
            .finish_non_exhaustive()
    }
}

/// Implements `StateStore`, `Debug` and the common accessors for a caching adapter whose `layer` field is a [`CacheLayer`].
macro_rules! caching_state_store {
    ($ty:ident, $bound:ident, $listener:ty) => {
        impl<S: $bound> crate::store::StateStore for $ty<S> {
            fn name(&self) -> &str {
                self.layer.inner.name()
            }
            fn persistent(&self) -> bool {
                self.layer.inner.persistent()
            }
            fn is_open(&self) -> bool {
                self.layer.inner.is_open()
            }
            fn flush(&mut self) -> crate::error::Result<()> {
                self.layer.flush()
            }
            fn flush_cache(&mut self) -> crate::error::Result<()> {
                self.layer.flush_cache()
            }
            fn flush_async(&mut self) -> crate::error::Result<()> {
                self.layer.flush_cache()?;
                self.layer.inner.flush_async()
            }
            fn flush_done(&mut self) -> crate::error::Result<bool> {
                self.layer.inner.flush_done()
            }
            fn close(&mut self) -> crate::error::Result<()> {
                self.layer.close()
            }
        }

        impl<S: $bound> $ty<S> {
            /// Wraps `inner` with a cache with a byte budget of its own of `max_bytes`
            /// (a [`ThreadCache`](crate::ThreadCache) of its own). Writes are stamped with
            /// the current `timestamp`; when pushed down, the timestamp is set back to
            /// theirs so a change-logging layer below logs the original record time.
            pub fn new(inner: S, max_bytes: usize, timestamp: crate::RecordTimestamp) -> Self {
                let name = inner.name().to_owned();
                let budget = crate::caching::ThreadCache::new(max_bytes);
                Self::with_thread_cache(inner, &budget, name, timestamp)
            }

            /// Pushes every dirty entry down (oldest write first) and reports each one,
            /// without flushing the store below.
            pub fn flush_cache(&mut self) -> crate::error::Result<()> {
                self.layer.flush_cache()
            }

            /// Sets the listener that receives every entry pushed down (flushed or evicted).
            pub fn set_flush_listener(&mut self, listener: $listener) {
                self.layer.set_listener(listener);
            }

            /// Whether pushed entries carry the old value, read from the store below just
            /// before the new one is written.
            pub fn set_send_old_values(&mut self, send: bool) {
                self.layer.set_send_old_values(send);
            }

            /// Bytes this store's cache currently accounts for.
            pub fn cached_bytes(&self) -> usize {
                self.layer.cache.bytes()
            }

            /// Number of cached entries (dirty or clean).
            pub fn cached_entries(&self) -> usize {
                self.layer.cache.len()
            }

            /// The budget this store's cache is registered in.
            pub fn thread_cache(&self) -> &crate::caching::ThreadCache {
                self.layer.cache.budget()
            }

            /// The wrapped store.
            pub fn inner(&self) -> &S {
                &self.layer.inner
            }
        }

        impl<S> std::fmt::Debug for $ty<S> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($ty)).field(&self.layer).finish()
            }
        }
    };
}

// The adapters are declared after the macro, so it is in their textual scope.
mod key_value;
mod session;
mod window;

pub use key_value::CachingKeyValueStore;
pub use session::{CachingSessionStore, SessionCacheFlushEntry, SessionCacheFlushListener};
pub use window::{CachingWindowStore, WindowCacheFlushEntry, WindowCacheFlushListener};

#[cfg(test)]
mod tests;

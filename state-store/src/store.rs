//! The byte-level store traits and the value types they exchange.

use std::ops::Bound;

use crate::error::{Result, StoreError};
use crate::restore::ChangelogRecord;

/// A key and its value, as returned by scans.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// One write of a batch: a value to put, or `None` to delete the key.
pub type BatchEntry = (Vec<u8>, Option<Vec<u8>>);

/// Iteration order of a scan, by key bytes (unsigned lexicographic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Ascending key order.
    Forward,
    /// Descending key order.
    Reverse,
}

/// What every store has, whatever its shape: a name, a lifecycle and a flush.
pub trait StateStore: Send {
    /// The store's name (unique within a task).
    fn name(&self) -> &str;
    /// Whether the store keeps its contents on disk across restarts.
    fn persistent(&self) -> bool;
    /// Whether the store is open; every operation on a closed store fails with
    /// [`StoreError::Closed`].
    fn is_open(&self) -> bool;
    /// Makes everything written so far durable in the store (and, for decorators, pushes
    /// cached writes down and changelog writes out). A checkpoint may only claim what a
    /// completed flush covered.
    fn flush(&mut self) -> Result<()>;
    /// Pushes cached writes down to the store below (and so to the changelog) without
    /// making the store durable: what a commit does when no checkpoint is due, as Kafka
    /// Streams flushes its caches on every commit but RocksDB only before a checkpoint.
    /// Stores without a cache have nothing to do.
    fn flush_cache(&mut self) -> Result<()> {
        Ok(())
    }
    /// Starts making everything written so far durable without waiting for it (cached
    /// writes are pushed down first; RocksDB switches its memtable and flushes it in the
    /// background). [`StateStore::flush_done`] tells when it is durable, so that a
    /// checkpoint can be written then, without stalling the stream thread meanwhile. The
    /// default flushes synchronously.
    fn flush_async(&mut self) -> Result<()> {
        self.flush()
    }
    /// True once everything written before the last [`StateStore::flush_async`] is
    /// durable (conservative: may stay false while later writes are being flushed too).
    fn flush_done(&mut self) -> Result<bool> {
        Ok(true)
    }
    /// Flushes and releases the store's resources (for RocksDB: its directory lock).
    /// Closing twice is not an error.
    fn close(&mut self) -> Result<()>;
}

/// A store that can be rebuilt from its changelog records, bypassing caching and
/// change-logging (restored writes must not be logged again).
pub trait Restorable: StateStore {
    /// Applies one batch of changelog records in order; a `None` value deletes.
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()>;
}

/// An iterator over key-value entries in key order (or reverse key order), produced as it is
/// advanced: a RocksDB iterator or a `BTreeMap` range below, merged with a snapshot of the
/// cached entries in the range by a caching layer.
///
/// Borrowing: it borrows the store it came from, so the store cannot be written (or
/// closed) while the iterator lives, which the borrow checker enforces; drop it (or
/// collect it) to write again. An error (RocksDB's iterator status) is returned once, as
/// the last item.
pub struct KeyValueIter<'a> {
    inner: Box<dyn Iterator<Item = Result<KeyValue>> + 'a>,
}

impl<'a> KeyValueIter<'a> {
    /// Wraps any iterator of entries.
    pub fn new(inner: impl Iterator<Item = Result<KeyValue>> + 'a) -> Self {
        KeyValueIter {
            inner: Box::new(inner),
        }
    }

    /// An iterator with nothing in it.
    pub fn empty() -> Self {
        KeyValueIter::new(std::iter::empty())
    }
}

impl Iterator for KeyValueIter<'_> {
    type Item = Result<KeyValue>;
    fn next(&mut self) -> Option<Result<KeyValue>> {
        self.inner.next()
    }
}

impl std::fmt::Debug for KeyValueIter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValueIter").finish_non_exhaustive()
    }
}

/// A byte-level key-value store, ordered by key bytes (unsigned lexicographic).
///
/// Scans return lazy [`KeyValueIter`]s that borrow the store.
pub trait KeyValueStore: StateStore {
    /// The value stored under `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Stores `value` under `key`, replacing any previous value.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()>;
    /// Deletes `key`, returning the value it had.
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Applies puts and deletes in order (atomically where the backend can).
    fn write_batch(&mut self, batch: &[BatchEntry]) -> Result<()>;
    /// All entries whose key lies within the bounds, in the given direction.
    fn scan(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        direction: Direction,
    ) -> Result<KeyValueIter<'_>>;
    /// An estimate of the number of entries (exact for in-memory stores).
    fn approximate_num_entries(&self) -> Result<u64>;

    /// Stores `value` under `key` only if the key has no value; returns the existing value
    /// (and writes nothing) otherwise.
    fn put_if_absent(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.get(key)? {
            Some(existing) => Ok(Some(existing)),
            None => {
                self.put(key, value)?;
                Ok(None)
            }
        }
    }

    /// Stores every pair, in order.
    fn put_all(&mut self, entries: &[KeyValue]) -> Result<()> {
        let batch: Vec<BatchEntry> = entries
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        self.write_batch(&batch)
    }

    /// Entries with `from <= key <= to` (both inclusive), in the given direction.
    ///
    /// Fails with [`StoreError::InvalidRange`] when `from > to`.
    fn range(&self, from: &[u8], to: &[u8], direction: Direction) -> Result<KeyValueIter<'_>> {
        if from > to {
            return Err(StoreError::invalid_range(
                self.name(),
                format!("key range from {from:?} is above to {to:?}"),
            ));
        }
        self.scan(Bound::Included(from), Bound::Included(to), direction)
    }

    /// Entries whose key starts with `prefix`, in the given direction.
    fn prefix_scan(&self, prefix: &[u8], direction: Direction) -> Result<KeyValueIter<'_>> {
        match prefix_successor(prefix) {
            Some(end) => self.scan(
                Bound::Included(prefix),
                Bound::Excluded(end.as_slice()),
                direction,
            ),
            None => self.scan(Bound::Included(prefix), Bound::Unbounded, direction),
        }
    }

    /// Every entry, in the given direction.
    fn all(&self, direction: Direction) -> Result<KeyValueIter<'_>> {
        self.scan(Bound::Unbounded, Bound::Unbounded, direction)
    }
}

/// The smallest byte string greater than every string starting with `prefix`, or `None`
/// when there is none (the prefix is empty or all `0xff`).
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// One window of a window store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowEntry {
    /// The record key.
    pub key: Vec<u8>,
    /// Start of the window, in milliseconds.
    pub window_start: i64,
    /// Sequence number: 0 unless the store retains duplicates, then it tells apart values
    /// stored for the same key and window.
    pub seq: u32,
    /// The stored value.
    pub value: Vec<u8>,
}

/// A byte-level window store: values per key and window start, with retention.
///
/// Results are ordered by key bytes, then window start, then sequence number. Time bounds
/// are inclusive. Only windows that are still retained are returned: a window is retained
/// while `window_start > observed_stream_time - retention_period`, where the observed stream
/// time is the largest window start ever put.
pub trait WindowStore: StateStore {
    /// Stores `value` for `key` in the window starting at `window_start`; `None` deletes it
    /// (and is ignored when the store retains duplicates, as in Kafka Streams). Writes to
    /// windows that are already expired are dropped.
    ///
    /// Returns the sequence number the value was stored under (always 0 without
    /// duplicates), or `None` when nothing was written (expired window, or a delete in a
    /// store that retains duplicates).
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, window_start: i64) -> Result<Option<u32>>;
    /// The value of `key` in the window starting at `window_start` (the first one when
    /// duplicates are retained).
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>>;
    /// Windows of keys in `[key_from, key_to]` starting in `[time_from, time_to]`.
    fn fetch_key_range(
        &self,
        key_from: &[u8],
        key_to: &[u8],
        time_from: i64,
        time_to: i64,
    ) -> Result<Vec<WindowEntry>>;
    /// Windows of every key starting in `[time_from, time_to]`.
    fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<Vec<WindowEntry>>;
    /// The retention period in milliseconds.
    fn retention_period(&self) -> i64;
    /// The largest window start seen so far (`i64::MIN` before the first put).
    fn observed_stream_time(&self) -> i64;

    /// Windows of `key` starting in `[time_from, time_to]`, by window start.
    fn fetch_range(&self, key: &[u8], time_from: i64, time_to: i64) -> Result<Vec<WindowEntry>> {
        self.fetch_key_range(key, key, time_from, time_to)
    }
}

/// One session of a session store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionEntry {
    /// The record key.
    pub key: Vec<u8>,
    /// Start of the session (inclusive), in milliseconds.
    pub start: i64,
    /// End of the session (inclusive), in milliseconds.
    pub end: i64,
    /// The stored aggregate.
    pub value: Vec<u8>,
}

/// A byte-level session store: values per key and session `[start, end]`, with retention
/// by session end.
///
/// Results are ordered by key bytes, then session end, then session start (Kafka Streams'
/// session key layout). A session is retained while `end > observed_stream_time -
/// retention_period`, where the observed stream time is the largest session end ever put.
pub trait SessionStore: StateStore {
    /// Stores the aggregate of the session `[start, end]` of `key`. Writes to expired
    /// sessions are dropped.
    fn put(&mut self, key: &[u8], start: i64, end: i64, value: &[u8]) -> Result<()>;
    /// Removes the session `[start, end]` of `key`.
    fn remove(&mut self, key: &[u8], start: i64, end: i64) -> Result<()>;
    /// The aggregate of exactly the session `[start, end]` of `key`.
    fn fetch_session(&self, key: &[u8], start: i64, end: i64) -> Result<Option<Vec<u8>>>;
    /// Sessions of keys in `[key_from, key_to]` with `end >= earliest_session_end` and
    /// `start <= latest_session_start`: the sessions a new record can merge with.
    fn find_sessions_key_range(
        &self,
        key_from: &[u8],
        key_to: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<Vec<SessionEntry>>;
    /// Sessions of every key ending in `[earliest_session_end, latest_session_end]`, ordered
    /// by end, then key bytes, then start: Kafka's `findSessions(earliestSessionEndTime,
    /// latestSessionEndTime)` of its time-ordered session store, what an
    /// emit-on-window-close session aggregation reads. As there, sessions expire with their
    /// whole segment only: a session ending at or before the store's retention but in a
    /// live segment is still returned.
    fn find_sessions_by_end(
        &self,
        earliest_session_end: i64,
        latest_session_end: i64,
    ) -> Result<Vec<SessionEntry>>;
    /// The retention period in milliseconds.
    fn retention_period(&self) -> i64;
    /// The largest session end seen so far (`i64::MIN` before the first put).
    fn observed_stream_time(&self) -> i64;

    /// Sessions of `key` with `end >= earliest_session_end` and
    /// `start <= latest_session_start`.
    fn find_sessions(
        &self,
        key: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<Vec<SessionEntry>> {
        self.find_sessions_key_range(key, key, earliest_session_end, latest_session_start)
    }

    /// Every retained session of `key`.
    fn fetch_key(&self, key: &[u8]) -> Result<Vec<SessionEntry>> {
        self.find_sessions(key, i64::MIN, i64::MAX)
    }

    /// Every retained session of keys in `[key_from, key_to]`.
    fn fetch_key_range(&self, key_from: &[u8], key_to: &[u8]) -> Result<Vec<SessionEntry>> {
        self.find_sessions_key_range(key_from, key_to, i64::MIN, i64::MAX)
    }
}

macro_rules! forward_state_store {
    () => {
        fn name(&self) -> &str {
            (**self).name()
        }
        fn persistent(&self) -> bool {
            (**self).persistent()
        }
        fn is_open(&self) -> bool {
            (**self).is_open()
        }
        fn flush(&mut self) -> Result<()> {
            (**self).flush()
        }
        fn flush_cache(&mut self) -> Result<()> {
            (**self).flush_cache()
        }
        fn flush_async(&mut self) -> Result<()> {
            (**self).flush_async()
        }
        fn flush_done(&mut self) -> Result<bool> {
            (**self).flush_done()
        }
        fn close(&mut self) -> Result<()> {
            (**self).close()
        }
    };
}

impl<T: StateStore + ?Sized> StateStore for Box<T> {
    forward_state_store!();
}

impl<T: Restorable + ?Sized> Restorable for Box<T> {
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
        (**self).restore_batch(records)
    }
}

impl<T: KeyValueStore + ?Sized> KeyValueStore for Box<T> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        (**self).get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        (**self).put(key, value)
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        (**self).delete(key)
    }
    fn write_batch(&mut self, batch: &[BatchEntry]) -> Result<()> {
        (**self).write_batch(batch)
    }
    fn scan(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        direction: Direction,
    ) -> Result<KeyValueIter<'_>> {
        (**self).scan(lower, upper, direction)
    }
    fn approximate_num_entries(&self) -> Result<u64> {
        (**self).approximate_num_entries()
    }
    fn put_if_absent(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        (**self).put_if_absent(key, value)
    }
}

/// Checks that `from <= to` for a time range.
pub(crate) fn check_time_range(store: &str, from: i64, to: i64) -> Result<()> {
    if from > to {
        return Err(StoreError::invalid_range(
            store,
            format!("time range from {from} is above to {to}"),
        ));
    }
    Ok(())
}

/// Checks that `from <= to` for a key range.
pub(crate) fn check_key_range(store: &str, from: &[u8], to: &[u8]) -> Result<()> {
    if from > to {
        return Err(StoreError::invalid_range(
            store,
            format!("key range from {from:?} is above to {to:?}"),
        ));
    }
    Ok(())
}

impl<T: WindowStore + ?Sized> WindowStore for Box<T> {
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, window_start: i64) -> Result<Option<u32>> {
        (**self).put(key, value, window_start)
    }
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        (**self).fetch(key, window_start)
    }
    fn fetch_key_range(
        &self,
        key_from: &[u8],
        key_to: &[u8],
        time_from: i64,
        time_to: i64,
    ) -> Result<Vec<WindowEntry>> {
        (**self).fetch_key_range(key_from, key_to, time_from, time_to)
    }
    fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<Vec<WindowEntry>> {
        (**self).fetch_all(time_from, time_to)
    }
    fn retention_period(&self) -> i64 {
        (**self).retention_period()
    }
    fn observed_stream_time(&self) -> i64 {
        (**self).observed_stream_time()
    }
}

impl<T: SessionStore + ?Sized> SessionStore for Box<T> {
    fn put(&mut self, key: &[u8], start: i64, end: i64, value: &[u8]) -> Result<()> {
        (**self).put(key, start, end, value)
    }
    fn remove(&mut self, key: &[u8], start: i64, end: i64) -> Result<()> {
        (**self).remove(key, start, end)
    }
    fn fetch_session(&self, key: &[u8], start: i64, end: i64) -> Result<Option<Vec<u8>>> {
        (**self).fetch_session(key, start, end)
    }
    fn find_sessions_key_range(
        &self,
        key_from: &[u8],
        key_to: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<Vec<SessionEntry>> {
        (**self).find_sessions_key_range(
            key_from,
            key_to,
            earliest_session_end,
            latest_session_start,
        )
    }
    fn find_sessions_by_end(
        &self,
        earliest_session_end: i64,
        latest_session_end: i64,
    ) -> Result<Vec<SessionEntry>> {
        (**self).find_sessions_by_end(earliest_session_end, latest_session_end)
    }
    fn retention_period(&self) -> i64 {
        (**self).retention_period()
    }
    fn observed_stream_time(&self) -> i64 {
        (**self).observed_stream_time()
    }
}

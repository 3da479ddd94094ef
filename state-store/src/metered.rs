//! The metering decorator: counts and latencies of store operations, reported to a hook.

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::restore::ChangelogRecord;
use crate::store::{
    BatchEntry, Direction, KeyValueIter, KeyValueStore, Restorable, SessionEntry, SessionStore,
    StateStore, WindowEntry, WindowStore,
};

/// The operations a metered store measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreOperation {
    /// Point read.
    Get,
    /// Single write (put, put-if-absent, window or session put).
    Put,
    /// Batch write.
    PutAll,
    /// Delete or remove.
    Delete,
    /// Range, prefix, all, or window/session fetch over a range.
    Range,
    /// Flush.
    Flush,
    /// Restoration batch.
    Restore,
}

impl StoreOperation {
    /// Every operation, in declaration order.
    pub const ALL: [StoreOperation; 7] = [
        StoreOperation::Get,
        StoreOperation::Put,
        StoreOperation::PutAll,
        StoreOperation::Delete,
        StoreOperation::Range,
        StoreOperation::Flush,
        StoreOperation::Restore,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// The metering hook: called once per measured operation.
pub trait StoreMetricsRecorder: Send + Sync {
    /// Records that `operation` on `store` took `latency`.
    fn record(&self, store: &str, operation: StoreOperation, latency: Duration);
}

/// A ready-made recorder: per-operation counts, total and maximum latency, lock-free.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    counts: [AtomicU64; 7],
    total_nanos: [AtomicU64; 7],
    max_nanos: [AtomicU64; 7],
}

/// A snapshot of one operation's measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OperationStats {
    /// How many times the operation ran.
    pub count: u64,
    /// Total time spent, in nanoseconds.
    pub total_nanos: u64,
    /// Longest single run, in nanoseconds.
    pub max_nanos: u64,
}

impl StoreMetrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// The measurements of one operation so far.
    pub fn stats(&self, operation: StoreOperation) -> OperationStats {
        let i = operation.index();
        OperationStats {
            count: self.counts[i].load(Ordering::Relaxed),
            total_nanos: self.total_nanos[i].load(Ordering::Relaxed),
            max_nanos: self.max_nanos[i].load(Ordering::Relaxed),
        }
    }
}

impl StoreMetricsRecorder for StoreMetrics {
    fn record(&self, _store: &str, operation: StoreOperation, latency: Duration) {
        let i = operation.index();
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.total_nanos[i].fetch_add(nanos, Ordering::Relaxed);
        self.max_nanos[i].fetch_max(nanos, Ordering::Relaxed);
    }
}

/// Wraps any store and reports each operation to a [`StoreMetricsRecorder`]. The outermost
/// layer in Kafka Streams' order (metered → caching → change-logging → store).
pub struct Metered<S> {
    inner: S,
    recorder: Arc<dyn StoreMetricsRecorder>,
}

impl<S> std::fmt::Debug for Metered<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metered").finish_non_exhaustive()
    }
}

impl<S: StateStore> Metered<S> {
    /// Wraps `inner`, reporting to `recorder`.
    pub fn new(inner: S, recorder: Arc<dyn StoreMetricsRecorder>) -> Self {
        Metered { inner, recorder }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The wrapped store, mutably.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    fn timed<T>(&self, op: StoreOperation, f: impl FnOnce(&S) -> T) -> T {
        let start = Instant::now();
        let out = f(&self.inner);
        self.recorder.record(self.inner.name(), op, start.elapsed());
        out
    }

    fn timed_mut<T>(&mut self, op: StoreOperation, f: impl FnOnce(&mut S) -> T) -> T {
        let start = Instant::now();
        let out = f(&mut self.inner);
        self.recorder.record(self.inner.name(), op, start.elapsed());
        out
    }
}

impl<S: StateStore> StateStore for Metered<S> {
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
        self.timed_mut(StoreOperation::Flush, |s| s.flush())
    }
    fn flush_cache(&mut self) -> Result<()> {
        self.inner.flush_cache()
    }
    fn flush_async(&mut self) -> Result<()> {
        self.timed_mut(StoreOperation::Flush, |s| s.flush_async())
    }
    fn flush_done(&mut self) -> Result<bool> {
        self.inner.flush_done()
    }
    fn close(&mut self) -> Result<()> {
        self.inner.close()
    }
}

impl<S: Restorable> Restorable for Metered<S> {
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
        self.timed_mut(StoreOperation::Restore, |s| s.restore_batch(records))
    }
}

impl<S: KeyValueStore> KeyValueStore for Metered<S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.timed(StoreOperation::Get, |s| s.get(key))
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.timed_mut(StoreOperation::Put, |s| s.put(key, value))
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.timed_mut(StoreOperation::Delete, |s| s.delete(key))
    }
    fn write_batch(&mut self, batch: &[BatchEntry]) -> Result<()> {
        self.timed_mut(StoreOperation::PutAll, |s| s.write_batch(batch))
    }
    fn put_if_absent(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        self.timed_mut(StoreOperation::Put, |s| s.put_if_absent(key, value))
    }
    fn scan(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        direction: Direction,
    ) -> Result<KeyValueIter<'_>> {
        // Times opening the scan; the entries are read as the iterator is advanced.
        let start = Instant::now();
        let out = self.inner.scan(lower, upper, direction);
        self.recorder
            .record(self.inner.name(), StoreOperation::Range, start.elapsed());
        out
    }
    fn approximate_num_entries(&self) -> Result<u64> {
        self.inner.approximate_num_entries()
    }
}

impl<S: WindowStore> WindowStore for Metered<S> {
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, window_start: i64) -> Result<Option<u32>> {
        self.timed_mut(StoreOperation::Put, |s| s.put(key, value, window_start))
    }
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        self.timed(StoreOperation::Get, |s| s.fetch(key, window_start))
    }
    fn fetch_key_range(
        &self,
        key_from: &[u8],
        key_to: &[u8],
        time_from: i64,
        time_to: i64,
    ) -> Result<Vec<WindowEntry>> {
        self.timed(StoreOperation::Range, |s| {
            s.fetch_key_range(key_from, key_to, time_from, time_to)
        })
    }
    fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<Vec<WindowEntry>> {
        self.timed(StoreOperation::Range, |s| s.fetch_all(time_from, time_to))
    }
    fn retention_period(&self) -> i64 {
        self.inner.retention_period()
    }
    fn observed_stream_time(&self) -> i64 {
        self.inner.observed_stream_time()
    }
}

impl<S: SessionStore> SessionStore for Metered<S> {
    fn put(&mut self, key: &[u8], start: i64, end: i64, value: &[u8]) -> Result<()> {
        self.timed_mut(StoreOperation::Put, |s| s.put(key, start, end, value))
    }
    fn remove(&mut self, key: &[u8], start: i64, end: i64) -> Result<()> {
        self.timed_mut(StoreOperation::Delete, |s| s.remove(key, start, end))
    }
    fn fetch_session(&self, key: &[u8], start: i64, end: i64) -> Result<Option<Vec<u8>>> {
        self.timed(StoreOperation::Get, |s| s.fetch_session(key, start, end))
    }
    fn find_sessions_key_range(
        &self,
        key_from: &[u8],
        key_to: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<Vec<SessionEntry>> {
        self.timed(StoreOperation::Range, |s| {
            s.find_sessions_key_range(key_from, key_to, earliest_session_end, latest_session_start)
        })
    }
    fn find_sessions_by_end(
        &self,
        earliest_session_end: i64,
        latest_session_end: i64,
    ) -> Result<Vec<SessionEntry>> {
        self.timed(StoreOperation::Range, |s| {
            s.find_sessions_by_end(earliest_session_end, latest_session_end)
        })
    }
    fn retention_period(&self) -> i64 {
        self.inner.retention_period()
    }
    fn observed_stream_time(&self) -> i64 {
        self.inner.observed_stream_time()
    }
}

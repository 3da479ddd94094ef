//! Change-logging decorators: every write also goes to a changelog sink.

use std::ops::Bound;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::codec::{session_changelog_key, window_changelog_key};
use crate::error::{Result, StoreError};
use crate::restore::ChangelogRecord;
use crate::store::{
    BatchEntry, Direction, KeyValueIter, KeyValueStore, Restorable, SessionEntry, SessionStore,
    StateStore, WindowEntry, WindowStore,
};

/// Where a change-logging store sends its writes: in the runtime, a producer to the store's
/// changelog partition.
pub trait ChangelogSink: Send {
    /// Sends one change: the key in changelog layout, the new value or `None` for a
    /// tombstone, and the record timestamp.
    fn send(&mut self, key: &[u8], value: Option<&[u8]>, timestamp: i64) -> Result<()>;
    /// Sends one change with record headers (key, value bytes), as the suppression
    /// buffer's changelog carries Kafka's `v` version header. The default drops the
    /// headers (sinks that keep none, such as [`InMemoryChangelog`]); the runtime's
    /// changelog producer writes them.
    fn send_with_headers(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        timestamp: i64,
        headers: &[(&str, &[u8])],
    ) -> Result<()> {
        let _ = headers;
        self.send(key, value, timestamp)
    }
    /// Makes everything sent so far durable; called by the store's flush.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

impl<T: ChangelogSink + ?Sized> ChangelogSink for Box<T> {
    fn send(&mut self, key: &[u8], value: Option<&[u8]>, timestamp: i64) -> Result<()> {
        (**self).send(key, value, timestamp)
    }
    fn send_with_headers(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        timestamp: i64,
        headers: &[(&str, &[u8])],
    ) -> Result<()> {
        (**self).send_with_headers(key, value, timestamp, headers)
    }
    fn flush(&mut self) -> Result<()> {
        (**self).flush()
    }
}

/// An in-memory changelog partition: records get consecutive offsets from 0. Clones share
/// the same log. Useful in tests and for wiring without a broker.
#[derive(Debug, Clone, Default)]
pub struct InMemoryChangelog {
    records: Arc<Mutex<Vec<ChangelogRecord>>>,
}

impl InMemoryChangelog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every record so far.
    pub fn records(&self) -> Result<Vec<ChangelogRecord>> {
        let guard = self
            .records
            .lock()
            .map_err(|_| StoreError::InvalidArgument("changelog lock poisoned".to_owned()))?;
        Ok(guard.clone())
    }

    /// The offset the next record will get.
    pub fn end_offset(&self) -> Result<i64> {
        Ok(i64::try_from(self.records()?.len()).unwrap_or(i64::MAX))
    }
}

impl ChangelogSink for InMemoryChangelog {
    fn send(&mut self, key: &[u8], value: Option<&[u8]>, timestamp: i64) -> Result<()> {
        let mut guard = self
            .records
            .lock()
            .map_err(|_| StoreError::InvalidArgument("changelog lock poisoned".to_owned()))?;
        let offset = i64::try_from(guard.len()).unwrap_or(i64::MAX);
        guard.push(ChangelogRecord {
            offset,
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
            timestamp,
        });
        Ok(())
    }
}

/// The timestamp of the record being processed, shared between the runtime (which sets it)
/// and the change-logging layers (which stamp changelog records with it). Clones share.
#[derive(Debug, Clone, Default)]
pub struct RecordTimestamp(Arc<AtomicI64>);

impl RecordTimestamp {
    /// A handle starting at timestamp 0.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the current record timestamp.
    pub fn set(&self, timestamp: i64) {
        self.0.store(timestamp, Ordering::Relaxed);
    }
    /// The current record timestamp.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

macro_rules! logging_state_store {
    ($ty:ident) => {
        impl<S: StateStore, C: ChangelogSink> StateStore for $ty<S, C> {
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
                self.inner.flush()?;
                self.sink.flush()
            }
            fn flush_async(&mut self) -> Result<()> {
                self.inner.flush_async()?;
                self.sink.flush()
            }
            fn flush_done(&mut self) -> Result<bool> {
                self.inner.flush_done()
            }
            fn close(&mut self) -> Result<()> {
                if self.inner.is_open() {
                    self.sink.flush()?;
                }
                self.inner.close()
            }
        }

        impl<S: Restorable, C: ChangelogSink> Restorable for $ty<S, C> {
            /// Restored records come from the changelog: they are not logged again.
            fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
                self.inner.restore_batch(records)
            }
        }

        impl<S, C> $ty<S, C> {
            /// Wraps `inner`, logging its writes to `sink` stamped with `timestamp`.
            pub fn new(inner: S, sink: C, timestamp: RecordTimestamp) -> Self {
                $ty {
                    inner,
                    sink,
                    timestamp,
                }
            }
            /// The wrapped store.
            pub fn inner(&self) -> &S {
                &self.inner
            }
            /// The wrapped store, mutably (writes through it are not logged).
            pub fn inner_mut(&mut self) -> &mut S {
                &mut self.inner
            }
            /// The sink.
            pub fn sink(&self) -> &C {
                &self.sink
            }
        }
    };
}

/// A key-value store whose writes are also sent to a changelog (key as is).
#[derive(Debug)]
pub struct ChangeLoggingKeyValueStore<S, C> {
    inner: S,
    sink: C,
    timestamp: RecordTimestamp,
}

logging_state_store!(ChangeLoggingKeyValueStore);

impl<S: KeyValueStore, C: ChangelogSink> KeyValueStore for ChangeLoggingKeyValueStore<S, C> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.inner.put(key, value)?;
        self.sink.send(key, Some(value), self.timestamp.get())
    }

    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let old = self.inner.delete(key)?;
        self.sink.send(key, None, self.timestamp.get())?;
        Ok(old)
    }

    fn write_batch(&mut self, batch: &[BatchEntry]) -> Result<()> {
        self.inner.write_batch(batch)?;
        let ts = self.timestamp.get();
        for (k, v) in batch {
            self.sink.send(k, v.as_deref(), ts)?;
        }
        Ok(())
    }

    fn put_if_absent(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let existing = self.inner.put_if_absent(key, value)?;
        if existing.is_none() {
            self.sink.send(key, Some(value), self.timestamp.get())?;
        }
        Ok(existing)
    }

    fn scan(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        direction: Direction,
    ) -> Result<KeyValueIter<'_>> {
        self.inner.scan(lower, upper, direction)
    }

    fn approximate_num_entries(&self) -> Result<u64> {
        self.inner.approximate_num_entries()
    }
}

/// A window store whose writes are also sent to a changelog, keyed as Kafka Streams does:
/// key + 8-byte big-endian window start + 4-byte big-endian sequence number.
#[derive(Debug)]
pub struct ChangeLoggingWindowStore<S, C> {
    inner: S,
    sink: C,
    timestamp: RecordTimestamp,
}

logging_state_store!(ChangeLoggingWindowStore);

impl<S: WindowStore, C: ChangelogSink> WindowStore for ChangeLoggingWindowStore<S, C> {
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, window_start: i64) -> Result<Option<u32>> {
        let seq = self.inner.put(key, value, window_start)?;
        if let Some(seq) = seq {
            let k = window_changelog_key(key, window_start, seq);
            self.sink.send(&k, value, self.timestamp.get())?;
        }
        Ok(seq)
    }
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        self.inner.fetch(key, window_start)
    }
    fn fetch_key_range(
        &self,
        key_from: &[u8],
        key_to: &[u8],
        time_from: i64,
        time_to: i64,
    ) -> Result<Vec<WindowEntry>> {
        self.inner
            .fetch_key_range(key_from, key_to, time_from, time_to)
    }
    fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<Vec<WindowEntry>> {
        self.inner.fetch_all(time_from, time_to)
    }
    fn retention_period(&self) -> i64 {
        self.inner.retention_period()
    }
    fn observed_stream_time(&self) -> i64 {
        self.inner.observed_stream_time()
    }
}

/// A session store whose writes are also sent to a changelog, keyed as Kafka Streams does:
/// key + 8-byte big-endian session end + 8-byte big-endian session start.
#[derive(Debug)]
pub struct ChangeLoggingSessionStore<S, C> {
    inner: S,
    sink: C,
    timestamp: RecordTimestamp,
}

logging_state_store!(ChangeLoggingSessionStore);

impl<S: SessionStore, C: ChangelogSink> SessionStore for ChangeLoggingSessionStore<S, C> {
    fn put(&mut self, key: &[u8], start: i64, end: i64, value: &[u8]) -> Result<()> {
        self.inner.put(key, start, end, value)?;
        let k = session_changelog_key(key, start, end);
        self.sink.send(&k, Some(value), self.timestamp.get())
    }
    fn remove(&mut self, key: &[u8], start: i64, end: i64) -> Result<()> {
        self.inner.remove(key, start, end)?;
        let k = session_changelog_key(key, start, end);
        self.sink.send(&k, None, self.timestamp.get())
    }
    fn fetch_session(&self, key: &[u8], start: i64, end: i64) -> Result<Option<Vec<u8>>> {
        self.inner.fetch_session(key, start, end)
    }
    fn find_sessions_key_range(
        &self,
        key_from: &[u8],
        key_to: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<Vec<SessionEntry>> {
        self.inner.find_sessions_key_range(
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
        self.inner
            .find_sessions_by_end(earliest_session_end, latest_session_end)
    }
    fn retention_period(&self) -> i64 {
        self.inner.retention_period()
    }
    fn observed_stream_time(&self) -> i64 {
        self.inner.observed_stream_time()
    }
}

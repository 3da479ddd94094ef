//! Segmented session stores (in-memory and RocksDB), segmented by session end.

use std::ops::Bound;
use std::path::PathBuf;

use crate::codec::{
    decode_session_changelog_key, decode_session_segment_key, escaped_key, session_segment_key,
    session_segment_lower,
};
use crate::error::{Result, StoreError};
use crate::restore::ChangelogRecord;
use crate::rocks::RocksDbResources;
use crate::segments::{InMemorySegmentFactory, RocksDbSegmentFactory, SegmentFactory, Segments};
use crate::store::{
    check_key_range, prefix_successor, Direction, KeyValueStore, Restorable, SessionEntry,
    SessionStore, StateStore,
};

/// Settings of a session store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStoreOptions {
    /// How long sessions are kept after their end, in milliseconds, measured back from the
    /// observed stream time (Kafka Streams: inactivity gap + grace, at least).
    pub retention_ms: i64,
    /// Width of one segment in milliseconds (by session end).
    pub segment_interval_ms: i64,
}

impl SessionStoreOptions {
    /// Options with Kafka Streams' default segment interval `max(retention / 2, 60 000)`.
    pub fn new(retention_ms: i64) -> Self {
        SessionStoreOptions {
            retention_ms,
            segment_interval_ms: (retention_ms / 2).max(60_000),
        }
    }
}

/// Store type recorded in the marker of a RocksDB session store directory.
pub(crate) const SESSION_STORE_TYPE: &str = "session";
const SESSION_SEGMENT_TYPE: &str = "session-segment";

/// A session store whose sessions live in segments by session end.
#[derive(Debug)]
pub struct SegmentedSessionStore<F: SegmentFactory> {
    segments: Segments<F>,
}

/// The in-memory session store.
pub type InMemorySessionStore = SegmentedSessionStore<InMemorySegmentFactory>;
/// The RocksDB session store (one RocksDB instance per segment).
pub type RocksDbSessionStore = SegmentedSessionStore<RocksDbSegmentFactory>;

impl SegmentedSessionStore<InMemorySegmentFactory> {
    /// An empty in-memory session store.
    pub fn in_memory(name: impl Into<String>, options: SessionStoreOptions) -> Result<Self> {
        let name = name.into();
        let factory = InMemorySegmentFactory::new(name.clone());
        Self::with_factory(name, factory, options)
    }
}

impl SegmentedSessionStore<RocksDbSegmentFactory> {
    /// Opens (creating if needed) the RocksDB session store `name` in `dir`.
    pub fn rocksdb(
        name: impl Into<String>,
        dir: impl Into<PathBuf>,
        resources: &RocksDbResources,
        options: SessionStoreOptions,
    ) -> Result<Self> {
        let name = name.into();
        let factory = RocksDbSegmentFactory::new(
            &name,
            dir.into(),
            resources.clone(),
            options.segment_interval_ms.max(1),
            SESSION_STORE_TYPE,
            SESSION_SEGMENT_TYPE,
        )?;
        Self::with_factory(name, factory, options)
    }
}

impl<F: SegmentFactory> SegmentedSessionStore<F> {
    /// A session store over segments made by `factory`; persisted segments are reopened.
    pub fn with_factory(name: String, factory: F, options: SessionStoreOptions) -> Result<Self> {
        let store_name = name.clone();
        let mut segments = Segments::new(
            name,
            factory,
            options.segment_interval_ms,
            options.retention_ms,
        )?;
        segments.load_existing(|seg| {
            let mut max_end = None;
            for entry in seg.all(Direction::Forward)? {
                let (k, _) = entry?;
                let (_, _, end) = decode_session_segment_key(&k).ok_or_else(|| {
                    crate::segments::corrupt_key_unlocated(&store_name, seg.name(), "session", &k)
                })?;
                max_end = Some(max_end.map_or(end, |m: i64| m.max(end)));
            }
            Ok(max_end)
        })?;
        Ok(SegmentedSessionStore { segments })
    }

    /// Number of segments currently held.
    pub fn segment_count(&self) -> usize {
        self.segments.segment_count()
    }

    fn check_session(&self, start: i64, end: i64) -> Result<()> {
        if start > end {
            return Err(StoreError::invalid_range(
                &self.segments.name,
                format!("session start {start} is after its end {end}"),
            ));
        }
        Ok(())
    }

    fn write(&mut self, key: &[u8], start: i64, end: i64, value: Option<&[u8]>) -> Result<()> {
        self.segments.check_open()?;
        self.check_session(start, end)?;
        self.segments.observe(end)?;
        let name = self.segments.name.clone();
        let Some(seg) = self.segments.get_or_create(end)? else {
            tracing::debug!(store = %name, start, end, "skipping write to expired session");
            return Ok(());
        };
        let k = session_segment_key(key, start, end);
        match value {
            Some(v) => seg.put(&k, v),
            None => seg.delete(&k).map(|_| ()),
        }
    }
}

impl<F: SegmentFactory> StateStore for SegmentedSessionStore<F> {
    fn name(&self) -> &str {
        &self.segments.name
    }
    fn persistent(&self) -> bool {
        self.segments.persistent()
    }
    fn is_open(&self) -> bool {
        self.segments.is_open()
    }
    fn flush(&mut self) -> Result<()> {
        self.segments.flush()
    }
    fn flush_async(&mut self) -> Result<()> {
        self.segments.flush_async()
    }
    fn flush_done(&mut self) -> Result<bool> {
        self.segments.flush_done()
    }
    fn close(&mut self) -> Result<()> {
        self.segments.close()
    }
}

impl<F: SegmentFactory> SessionStore for SegmentedSessionStore<F> {
    fn put(&mut self, key: &[u8], start: i64, end: i64, value: &[u8]) -> Result<()> {
        self.write(key, start, end, Some(value))
    }

    fn remove(&mut self, key: &[u8], start: i64, end: i64) -> Result<()> {
        self.write(key, start, end, None)
    }

    fn fetch_session(&self, key: &[u8], start: i64, end: i64) -> Result<Option<Vec<u8>>> {
        self.segments.check_open()?;
        self.check_session(start, end)?;
        if !self.segments.is_live(end) {
            return Ok(None);
        }
        match self.segments.get(end) {
            Some(seg) => seg.get(&session_segment_key(key, start, end)),
            None => Ok(None),
        }
    }

    fn find_sessions_key_range(
        &self,
        key_from: &[u8],
        key_to: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<Vec<SessionEntry>> {
        self.segments.check_open()?;
        check_key_range(&self.segments.name, key_from, key_to)?;
        let from_end = earliest_session_end.max(self.segments.min_live_time());
        let single = key_from == key_to;
        let lower = if single {
            session_segment_lower(key_from, from_end)
        } else {
            escaped_key(key_from)
        };
        let upper = prefix_successor(&escaped_key(key_to));
        let upper_b = upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let mut out = Vec::new();
        for seg in self.segments.in_range(from_end, i64::MAX) {
            for entry in seg.scan(Bound::Included(&lower), upper_b, Direction::Forward)? {
                let (k, value) = entry?;
                let (key, start, end) = decode_session_segment_key(&k)
                    .ok_or_else(|| self.segments.corrupt_key(seg.name(), "session", &k))?;
                if end >= from_end && start <= latest_session_start {
                    out.push(SessionEntry {
                        key,
                        start,
                        end,
                        value,
                    });
                }
            }
        }
        if !single {
            out.sort_unstable_by(|a, b| (&a.key, a.end, a.start).cmp(&(&b.key, b.end, b.start)));
        }
        Ok(out)
    }

    fn find_sessions_by_end(
        &self,
        earliest_session_end: i64,
        latest_session_end: i64,
    ) -> Result<Vec<SessionEntry>> {
        self.segments.check_open()?;
        // As Kafka's RocksDBTimeOrderedSessionSegmentedBytesStore.fetchSessions: sessions
        // expire here with their segment only (no per-session retention check).
        let from_end = earliest_session_end;
        let mut out = Vec::new();
        if from_end > latest_session_end {
            return Ok(out);
        }
        for seg in self.segments.in_range(from_end, latest_session_end) {
            for entry in seg.scan(Bound::Unbounded, Bound::Unbounded, Direction::Forward)? {
                let (k, value) = entry?;
                let (key, start, end) = decode_session_segment_key(&k)
                    .ok_or_else(|| self.segments.corrupt_key(seg.name(), "session", &k))?;
                if end >= from_end && end <= latest_session_end {
                    out.push(SessionEntry {
                        key,
                        start,
                        end,
                        value,
                    });
                }
            }
        }
        out.sort_unstable_by(|a, b| (a.end, &a.key, a.start).cmp(&(b.end, &b.key, b.start)));
        Ok(out)
    }

    fn retention_period(&self) -> i64 {
        self.segments.retention()
    }

    fn observed_stream_time(&self) -> i64 {
        self.segments.observed()
    }
}

impl<F: SegmentFactory> Restorable for SegmentedSessionStore<F> {
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
        self.segments.check_open()?;
        let mut decoded = Vec::with_capacity(records.len());
        for r in records {
            let (key, start, end) = decode_session_changelog_key(&r.key).ok_or_else(|| {
                StoreError::CorruptChangelogRecord {
                    store: self.segments.name.clone(),
                    offset: r.offset,
                    detail: format!(
                        "session changelog key of {} bytes is shorter than 16",
                        r.key.len()
                    ),
                }
            })?;
            self.segments.observe(end)?;
            decoded.push((key, start, end, r));
        }
        let mut per_segment: std::collections::BTreeMap<i64, Vec<ChangelogRecord>> =
            std::collections::BTreeMap::new();
        for (key, start, end, r) in decoded {
            if !self.segments.is_live(end) {
                continue;
            }
            per_segment
                .entry(self.segments.segment_id(end))
                .or_default()
                .push(ChangelogRecord {
                    offset: r.offset,
                    key: session_segment_key(&key, start, end),
                    value: r.value.clone(),
                    timestamp: r.timestamp,
                });
        }
        for (id, batch) in per_segment {
            let first = id.saturating_mul(self.segments.interval());
            let time = first.max(self.segments.min_live_time());
            if let Some(seg) = self.segments.get_or_create(time)? {
                seg.restore_batch(&batch)?;
            }
        }
        Ok(())
    }
}

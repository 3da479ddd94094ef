//! Segmented window stores (in-memory and RocksDB).

use std::ops::Bound;
use std::path::PathBuf;

use crate::codec::{
    decode_window_changelog_key, decode_window_segment_key, escaped_key, window_segment_key,
};
use crate::error::{Result, StoreError};
use crate::restore::ChangelogRecord;
use crate::rocks::RocksDbResources;
use crate::segments::{InMemorySegmentFactory, RocksDbSegmentFactory, SegmentFactory, Segments};
use crate::store::{
    check_key_range, check_time_range, prefix_successor, Direction, KeyValueStore, Restorable,
    StateStore, WindowEntry, WindowStore,
};

/// Settings of a window store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowStoreOptions {
    /// How long windows are kept, in milliseconds, measured back from the observed stream
    /// time (Kafka Streams: window size + grace, at least).
    pub retention_ms: i64,
    /// Width of one segment in milliseconds. Kafka Streams uses
    /// `max(retention / 2, 60 000)`, which [`WindowStoreOptions::new`] applies.
    pub segment_interval_ms: i64,
    /// Keep every value put for the same key and window (stream-stream join buffers),
    /// telling them apart by a sequence number; deletes are then ignored.
    pub retain_duplicates: bool,
}

impl WindowStoreOptions {
    /// Options with Kafka Streams' default segment interval and no duplicates.
    pub fn new(retention_ms: i64) -> Self {
        WindowStoreOptions {
            retention_ms,
            segment_interval_ms: (retention_ms / 2).max(60_000),
            retain_duplicates: false,
        }
    }
}

/// Store type recorded in the marker of a RocksDB window store directory.
pub(crate) const WINDOW_STORE_TYPE: &str = "window";
const WINDOW_SEGMENT_TYPE: &str = "window-segment";

/// A window store whose windows live in time segments; a segment is dropped whole once every
/// window in it is past retention.
#[derive(Debug)]
pub struct SegmentedWindowStore<F: SegmentFactory> {
    segments: Segments<F>,
    retain_duplicates: bool,
    seq: u32,
}

/// The in-memory window store.
pub type InMemoryWindowStore = SegmentedWindowStore<InMemorySegmentFactory>;
/// The RocksDB window store (one RocksDB instance per segment, as in Kafka Streams).
pub type RocksDbWindowStore = SegmentedWindowStore<RocksDbSegmentFactory>;

impl SegmentedWindowStore<InMemorySegmentFactory> {
    /// An empty in-memory window store.
    pub fn in_memory(name: impl Into<String>, options: WindowStoreOptions) -> Result<Self> {
        let name = name.into();
        let factory = InMemorySegmentFactory::new(name.clone());
        Self::with_factory(name, factory, options)
    }
}

impl SegmentedWindowStore<RocksDbSegmentFactory> {
    /// Opens (creating if needed) the RocksDB window store `name` in `dir`, usually
    /// [`TaskDirectory::store_path`](crate::TaskDirectory::store_path).
    pub fn rocksdb(
        name: impl Into<String>,
        dir: impl Into<PathBuf>,
        resources: &RocksDbResources,
        options: WindowStoreOptions,
    ) -> Result<Self> {
        let name = name.into();
        let factory = RocksDbSegmentFactory::new(
            &name,
            dir.into(),
            resources.clone(),
            options.segment_interval_ms.max(1),
            WINDOW_STORE_TYPE,
            WINDOW_SEGMENT_TYPE,
        )?;
        Self::with_factory(name, factory, options)
    }
}

impl<F: SegmentFactory> SegmentedWindowStore<F> {
    /// A window store over segments made by `factory`; persisted segments are reopened.
    pub fn with_factory(name: String, factory: F, options: WindowStoreOptions) -> Result<Self> {
        let store_name = name.clone();
        let mut segments = Segments::new(
            name,
            factory,
            options.segment_interval_ms,
            options.retention_ms,
        )?;
        let mut max_seq = 0u32;
        segments.load_existing(|seg| {
            let mut max_time = None;
            for entry in seg.all(Direction::Forward)? {
                let (k, _) = entry?;
                let (_, ts, seq) = decode_window_segment_key(&k).ok_or_else(|| {
                    crate::segments::corrupt_key_unlocated(&store_name, seg.name(), "window", &k)
                })?;
                max_time = Some(max_time.map_or(ts, |m: i64| m.max(ts)));
                max_seq = max_seq.max(seq);
            }
            Ok(max_time)
        })?;
        Ok(SegmentedWindowStore {
            segments,
            retain_duplicates: options.retain_duplicates,
            seq: max_seq,
        })
    }

    /// Number of segments currently held (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.segments.segment_count()
    }

    /// Whether this store keeps duplicates.
    pub fn retains_duplicates(&self) -> bool {
        self.retain_duplicates
    }

    fn collect(
        &self,
        key_from: Option<&[u8]>,
        key_to: Option<&[u8]>,
        time_from: i64,
        time_to: i64,
    ) -> Result<Vec<WindowEntry>> {
        self.segments.check_open()?;
        check_time_range(&self.segments.name, time_from, time_to)?;
        if let (Some(f), Some(t)) = (key_from, key_to) {
            check_key_range(&self.segments.name, f, t)?;
        }
        let from = time_from.max(self.segments.min_live_time());
        if from > time_to {
            return Ok(Vec::new());
        }
        let single = match (key_from, key_to) {
            (Some(f), Some(t)) if f == t => Some(f),
            _ => None,
        };
        let (lower, upper) = match single {
            Some(k) => (
                Some(window_segment_key(k, from, 0)),
                Some(window_segment_key(k, time_to, u32::MAX)),
            ),
            None => (
                key_from.map(escaped_key),
                key_to.and_then(|k| prefix_successor(&escaped_key(k))),
            ),
        };
        let lower_b = lower.as_deref().map_or(Bound::Unbounded, Bound::Included);
        let upper_b = match (&upper, single) {
            (Some(u), Some(_)) => Bound::Included(u.as_slice()),
            (Some(u), None) => Bound::Excluded(u.as_slice()),
            (None, _) => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for seg in self.segments.in_range(from, time_to) {
            for entry in seg.scan(lower_b, upper_b, Direction::Forward)? {
                let (k, value) = entry?;
                let (key, window_start, seq) = decode_window_segment_key(&k)
                    .ok_or_else(|| self.segments.corrupt_key(seg.name(), "window", &k))?;
                if window_start >= from && window_start <= time_to {
                    out.push(WindowEntry {
                        key,
                        window_start,
                        seq,
                        value,
                    });
                }
            }
        }
        if single.is_none() {
            out.sort_unstable_by(|a, b| {
                (&a.key, a.window_start, a.seq).cmp(&(&b.key, b.window_start, b.seq))
            });
        }
        Ok(out)
    }
}

impl<F: SegmentFactory> StateStore for SegmentedWindowStore<F> {
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

impl<F: SegmentFactory> WindowStore for SegmentedWindowStore<F> {
    fn put(&mut self, key: &[u8], value: Option<&[u8]>, window_start: i64) -> Result<Option<u32>> {
        self.segments.check_open()?;
        if self.retain_duplicates && value.is_none() {
            return Ok(None);
        }
        self.segments.observe(window_start)?;
        let seq = if self.retain_duplicates {
            self.seq = self.seq.wrapping_add(1);
            self.seq
        } else {
            0
        };
        let name = self.segments.name.clone();
        let Some(seg) = self.segments.get_or_create(window_start)? else {
            tracing::debug!(store = %name, window_start, "skipping write to expired window");
            return Ok(None);
        };
        let k = window_segment_key(key, window_start, seq);
        match value {
            Some(v) => seg.put(&k, v)?,
            None => {
                seg.delete(&k)?;
            }
        }
        Ok(Some(seq))
    }

    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        self.segments.check_open()?;
        if !self.segments.is_live(window_start) {
            return Ok(None);
        }
        let Some(seg) = self.segments.get(window_start) else {
            return Ok(None);
        };
        if self.retain_duplicates {
            let lo = window_segment_key(key, window_start, 0);
            let hi = window_segment_key(key, window_start, u32::MAX);
            let found = seg.scan(
                Bound::Included(&lo),
                Bound::Included(&hi),
                Direction::Forward,
            )?;
            found.map(|e| e.map(|(_, v)| v)).next().transpose()
        } else {
            seg.get(&window_segment_key(key, window_start, 0))
        }
    }

    fn fetch_key_range(
        &self,
        key_from: &[u8],
        key_to: &[u8],
        time_from: i64,
        time_to: i64,
    ) -> Result<Vec<WindowEntry>> {
        self.collect(Some(key_from), Some(key_to), time_from, time_to)
    }

    fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<Vec<WindowEntry>> {
        self.collect(None, None, time_from, time_to)
    }

    fn retention_period(&self) -> i64 {
        self.segments.retention()
    }

    fn observed_stream_time(&self) -> i64 {
        self.segments.observed()
    }
}

impl<F: SegmentFactory> Restorable for SegmentedWindowStore<F> {
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
        self.segments.check_open()?;
        let mut decoded = Vec::with_capacity(records.len());
        for r in records {
            let (key, ts, seq) = decode_window_changelog_key(&r.key).ok_or_else(|| {
                StoreError::CorruptChangelogRecord {
                    store: self.segments.name.clone(),
                    offset: r.offset,
                    detail: format!(
                        "window changelog key of {} bytes is shorter than 12",
                        r.key.len()
                    ),
                }
            })?;
            self.segments.observe(ts)?;
            self.seq = self.seq.max(seq);
            decoded.push((key, ts, seq, r));
        }
        // Group by segment, keeping order within each segment.
        let mut per_segment: std::collections::BTreeMap<i64, Vec<ChangelogRecord>> =
            std::collections::BTreeMap::new();
        for (key, ts, seq, r) in decoded {
            if !self.segments.is_live(ts) {
                continue;
            }
            per_segment
                .entry(self.segments.segment_id(ts))
                .or_default()
                .push(ChangelogRecord {
                    offset: r.offset,
                    key: window_segment_key(&key, ts, seq),
                    value: r.value.clone(),
                    timestamp: r.timestamp,
                });
        }
        for (id, batch) in per_segment {
            let first_ts = id.saturating_mul(self.segments_interval());
            let time = first_ts.max(self.segments.min_live_time());
            if let Some(seg) = self.segments.get_or_create(time)? {
                seg.restore_batch(&batch)?;
            }
        }
        Ok(())
    }
}

impl<F: SegmentFactory> SegmentedWindowStore<F> {
    fn segments_interval(&self) -> i64 {
        self.segments.interval()
    }
}

//! Time segments: the storage of window and session stores, dropped whole on expiry as in
//! Kafka Streams' segmented stores.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use crate::error::{Result, StoreError};
use crate::memory::InMemoryKeyValueStore;
use crate::rocks::{check_or_write_marker, RocksDbKeyValueStore, RocksDbResources};
use crate::store::{KeyValueStore, Restorable, StateStore};

/// Creates, lists and destroys the key-value stores that hold one time segment each.
pub trait SegmentFactory: Send {
    /// The store type of one segment.
    type Segment: KeyValueStore + Restorable + std::fmt::Debug;
    /// Whether segments survive a restart.
    fn persistent(&self) -> bool;
    /// Opens the segment holding times `[id * interval, (id + 1) * interval)`, creating it.
    fn create(&mut self, id: i64) -> Result<Self::Segment>;
    /// Closes and deletes a segment.
    fn destroy(&mut self, segment: Self::Segment) -> Result<()>;
    /// Reopens the segments that already exist (none for in-memory stores).
    fn existing(&mut self) -> Result<Vec<(i64, Self::Segment)>>;
    /// Where the segments live, for error messages (empty for in-memory segments).
    fn location(&self) -> PathBuf {
        PathBuf::new()
    }
    /// Persists the observed stream time (called on flush); no-op when not persistent.
    fn save_observed(&mut self, observed: i64) -> Result<()> {
        let _ = observed;
        Ok(())
    }
    /// The observed stream time saved by the last flush, if any.
    fn load_observed(&mut self) -> Result<Option<i64>> {
        Ok(None)
    }
}

/// File, inside a segmented store's directory, holding its observed stream time.
const OBSERVED_FILE: &str = ".observed-stream-time";

/// Segments held in memory.
#[derive(Debug)]
pub struct InMemorySegmentFactory {
    name: String,
}

impl InMemorySegmentFactory {
    /// A factory for the segments of store `name`.
    pub fn new(name: impl Into<String>) -> Self {
        InMemorySegmentFactory { name: name.into() }
    }
}

impl SegmentFactory for InMemorySegmentFactory {
    type Segment = InMemoryKeyValueStore;
    fn persistent(&self) -> bool {
        false
    }
    fn create(&mut self, id: i64) -> Result<Self::Segment> {
        Ok(InMemoryKeyValueStore::new(format!("{}.{id}", self.name)))
    }
    fn destroy(&mut self, mut segment: Self::Segment) -> Result<()> {
        segment.close()
    }
    fn existing(&mut self) -> Result<Vec<(i64, Self::Segment)>> {
        Ok(Vec::new())
    }
}

/// Segments each in their own RocksDB instance, in directories
/// `<store dir>/<store name>.<segment start time>` (Kafka Streams' naming).
#[derive(Debug)]
pub struct RocksDbSegmentFactory {
    name: String,
    dir: PathBuf,
    resources: RocksDbResources,
    interval: i64,
    segment_type: &'static str,
}

impl RocksDbSegmentFactory {
    pub(crate) fn new(
        name: &str,
        dir: PathBuf,
        resources: RocksDbResources,
        interval: i64,
        store_type: &'static str,
        segment_type: &'static str,
    ) -> Result<Self> {
        check_or_write_marker(&dir, store_type)?;
        Ok(RocksDbSegmentFactory {
            name: name.to_owned(),
            dir,
            resources,
            interval,
            segment_type,
        })
    }

    fn segment_name(&self, id: i64) -> Result<String> {
        let start = id.checked_mul(self.interval).ok_or_else(|| {
            StoreError::InvalidArgument(format!("segment {id} start time overflows"))
        })?;
        Ok(format!("{}.{start}", self.name))
    }
}

impl SegmentFactory for RocksDbSegmentFactory {
    type Segment = RocksDbKeyValueStore;
    fn persistent(&self) -> bool {
        true
    }
    fn create(&mut self, id: i64) -> Result<Self::Segment> {
        let seg_name = self.segment_name(id)?;
        let path = self.dir.join(&seg_name);
        RocksDbKeyValueStore::open_typed(seg_name, path, &self.resources, self.segment_type)
    }
    fn destroy(&mut self, segment: Self::Segment) -> Result<()> {
        segment.destroy()
    }
    fn existing(&mut self) -> Result<Vec<(i64, Self::Segment)>> {
        let prefix = format!("{}.", self.name);
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|e| StoreError::io(&self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&self.dir, e))?;
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            let Some(start) = file_name
                .strip_prefix(&prefix)
                .and_then(|s| s.parse::<i64>().ok())
            else {
                continue;
            };
            if !entry.path().is_dir() {
                continue;
            }
            let id = start.div_euclid(self.interval);
            out.push((id, self.create(id)?));
        }
        Ok(out)
    }

    fn location(&self) -> PathBuf {
        self.dir.clone()
    }

    fn save_observed(&mut self, observed: i64) -> Result<()> {
        let path = self.dir.join(OBSERVED_FILE);
        durable_fs::write_atomic(
            &durable_fs::OsStorage,
            &path,
            observed.to_string().as_bytes(),
        )
        .map_err(|e| StoreError::io(&path, e))
    }

    fn load_observed(&mut self) -> Result<Option<i64>> {
        let path = self.dir.join(OBSERVED_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| StoreError::Corruption {
                    store: self.name.clone(),
                    path: path.clone(),
                    detail: format!("bad observed stream time `{}`", text.trim()),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }
}

/// A corruption error for an undecodable key in `segment` of store `store`, before the
/// location is known.
pub(crate) fn corrupt_key_unlocated(
    store: &str,
    segment: &str,
    kind: &str,
    key: &[u8],
) -> StoreError {
    StoreError::Corruption {
        store: store.to_owned(),
        path: PathBuf::new(),
        detail: format!("undecodable {kind} key {key:?} in segment `{segment}`"),
    }
}

/// The live segments of one store, with its retention bookkeeping.
#[derive(Debug)]
pub(crate) struct Segments<F: SegmentFactory> {
    pub(crate) name: String,
    factory: F,
    segments: BTreeMap<i64, F::Segment>,
    interval: i64,
    retention: i64,
    observed: i64,
    open: bool,
}

impl<F: SegmentFactory> Segments<F> {
    pub(crate) fn new(name: String, factory: F, interval: i64, retention: i64) -> Result<Self> {
        if interval <= 0 || retention < 0 {
            return Err(StoreError::InvalidArgument(format!(
                "store `{name}`: segment interval must be positive and retention non-negative \
                 (got {interval} and {retention})"
            )));
        }
        Ok(Segments {
            name,
            factory,
            segments: BTreeMap::new(),
            interval,
            retention,
            observed: i64::MIN,
            open: true,
        })
    }

    /// Reopens persisted segments; `max_time` extracts the largest time a segment holds, to
    /// recover the observed stream time.
    pub(crate) fn load_existing(
        &mut self,
        mut max_time: impl FnMut(&F::Segment) -> Result<Option<i64>>,
    ) -> Result<()> {
        for (id, seg) in self.factory.existing()? {
            self.segments.insert(id, seg);
        }
        let mut observed = self.factory.load_observed()?.unwrap_or(i64::MIN);
        for seg in self.segments.values().rev() {
            if let Some(t) = max_time(seg).map_err(|e| self.with_location(e))? {
                observed = observed.max(t);
                break;
            }
        }
        if observed > i64::MIN {
            self.observe(observed)?;
        }
        Ok(())
    }

    /// Fills in the segments' location in a corruption error raised without one.
    fn with_location(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Corruption {
                store,
                path,
                detail,
            } if path.as_os_str().is_empty() => StoreError::Corruption {
                store,
                path: self.factory.location(),
                detail,
            },
            other => other,
        }
    }

    /// A corruption error for an undecodable key found in `segment`.
    pub(crate) fn corrupt_key(&self, segment: &str, kind: &str, key: &[u8]) -> StoreError {
        StoreError::Corruption {
            store: self.name.clone(),
            path: self.factory.location(),
            detail: format!("undecodable {kind} key {key:?} in segment `{segment}`"),
        }
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.open {
            Ok(())
        } else {
            Err(StoreError::closed(&self.name))
        }
    }

    pub(crate) fn interval(&self) -> i64 {
        self.interval
    }

    pub(crate) fn retention(&self) -> i64 {
        self.retention
    }

    pub(crate) fn observed(&self) -> i64 {
        self.observed
    }

    pub(crate) fn persistent(&self) -> bool {
        self.factory.persistent()
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    pub(crate) fn segment_id(&self, time: i64) -> i64 {
        time.div_euclid(self.interval)
    }

    /// The earliest time still retained: `observed - retention + 1` (clamped).
    pub(crate) fn min_live_time(&self) -> i64 {
        if self.observed == i64::MIN {
            return i64::MIN;
        }
        let t = i128::from(self.observed) - i128::from(self.retention) + 1;
        i64::try_from(t).unwrap_or(i64::MIN)
    }

    pub(crate) fn is_live(&self, time: i64) -> bool {
        time >= self.min_live_time()
    }

    /// Advances the observed stream time and drops segments that are wholly expired.
    pub(crate) fn observe(&mut self, time: i64) -> Result<()> {
        if time <= self.observed {
            return Ok(());
        }
        self.observed = time;
        let min_live_segment = self.segment_id(self.min_live_time());
        let live = self.segments.split_off(&min_live_segment);
        let expired = std::mem::replace(&mut self.segments, live);
        for (id, seg) in expired {
            tracing::debug!(store = %self.name, segment = id, "dropping expired segment");
            self.factory.destroy(seg)?;
        }
        Ok(())
    }

    /// The segment for `time`, created if needed; `None` if `time` is expired.
    pub(crate) fn get_or_create(&mut self, time: i64) -> Result<Option<&mut F::Segment>> {
        if !self.is_live(time) {
            return Ok(None);
        }
        let id = self.segment_id(time);
        if !self.segments.contains_key(&id) {
            let seg = self.factory.create(id)?;
            self.segments.insert(id, seg);
        }
        Ok(self.segments.get_mut(&id))
    }

    pub(crate) fn get(&self, time: i64) -> Option<&F::Segment> {
        self.segments.get(&self.segment_id(time))
    }

    /// Segments that may hold times in `[from, to]`, in time order.
    pub(crate) fn in_range(&self, from: i64, to: i64) -> impl Iterator<Item = &F::Segment> {
        let (lo, hi) = (self.segment_id(from), self.segment_id(to));
        let ids = if lo <= hi { lo..=hi } else { hi..=hi };
        let empty = lo > hi;
        self.segments
            .range(ids)
            .filter(move |_| !empty)
            .map(|(_, s)| s)
    }

    pub(crate) fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub(crate) fn flush(&mut self) -> Result<()> {
        self.check_open()?;
        for seg in self.segments.values_mut() {
            seg.flush()?;
        }
        if self.observed > i64::MIN {
            self.factory.save_observed(self.observed)?;
        }
        Ok(())
    }

    /// Starts a background flush of every segment (see [`StateStore::flush_async`]); the
    /// observed stream time is saved at once.
    pub(crate) fn flush_async(&mut self) -> Result<()> {
        self.check_open()?;
        for seg in self.segments.values_mut() {
            seg.flush_async()?;
        }
        if self.observed > i64::MIN {
            self.factory.save_observed(self.observed)?;
        }
        Ok(())
    }

    /// True once every segment's background flush is done.
    pub(crate) fn flush_done(&mut self) -> Result<bool> {
        self.check_open()?;
        for seg in self.segments.values_mut() {
            if !seg.flush_done()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub(crate) fn close(&mut self) -> Result<()> {
        if !self.open {
            return Ok(());
        }
        let mut first_err = None;
        if self.observed > i64::MIN {
            if let Err(e) = self.factory.save_observed(self.observed) {
                first_err = Some(e);
            }
        }
        for seg in self.segments.values_mut() {
            if let Err(e) = seg.close() {
                first_err.get_or_insert(e);
            }
        }
        self.segments.clear();
        self.open = false;
        first_err.map_or(Ok(()), Err)
    }
}

//! Stream-stream joins (`KStream::join`, `left_join`, `outer_join` within
//! [`JoinWindows`]), compiled as Kafka's `KStreamImpl#doJoin` and `KStreamImplJoin`, with
//! the processors of Kafka's `KStreamJoinWindow`, `KStreamKStreamJoin` (its
//! `JoinLeftSide` / `JoinRightSide`) and a pass-through merge.
//!
//! Each side goes through a `KSTREAM-WINDOWED-` node that forwards the record and then
//! buffers it in its side's window store (retaining duplicates, size = before + after,
//! retention = size + grace). The join node of a side probes the other side's buffer for
//! `[ts - before, ts + after]` (`[ts - after, ts + before]` on the right) and forwards one
//! result per match, stamped max(ts, other ts). Left and outer joins keep the records
//! without a match in a shared key-value store (Kafka's outer-join store: keys are
//! `TimestampedKeyAndJoinSide` bytes, values lists of `LeftOrRightValue` bytes in Kafka's
//! `ListSerde` layout) and emit them, with a null other side, once their window plus grace
//! has closed (KAFKA-10847), checked at most once per emit interval of wall-clock time.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use streams_core::{
    BytesSerde, Direction, Processor, ProcessorContext, Record, Result, SharedSerde, StoreBuilder,
    StreamsError, TaskId,
};

use crate::builder::Shared;
use crate::join_windows::JoinWindows;
use crate::joined::StreamJoined;
use crate::kstream::KStream;
use crate::processors::stateless;
use crate::repartition::repartition_for_join;

/// An inner join's joiner: (key, left value, right value).
type InnerJoiner<K, VL, VR, VOut> = Arc<dyn Fn(&K, &VL, &VR) -> VOut + Send + Sync>;
/// A left join's joiner: the right value may be missing.
type LeftJoiner<K, VL, VR, VOut> = Arc<dyn Fn(&K, &VL, Option<&VR>) -> VOut + Send + Sync>;
/// An outer join's joiner: either value may be missing.
type OuterJoiner<K, VL, VR, VOut> = Arc<dyn Fn(&K, Option<&VL>, Option<&VR>) -> VOut + Send + Sync>;

/// Kafka's `ValueJoinerWithKey` of each join type, called with (key, left, right).
enum Joiner<K, VL, VR, VOut> {
    Inner(InnerJoiner<K, VL, VR, VOut>),
    Left(LeftJoiner<K, VL, VR, VOut>),
    Outer(OuterJoiner<K, VL, VR, VOut>),
}

impl<K, VL, VR, VOut> Joiner<K, VL, VR, VOut> {
    fn kind(&self) -> JoinKind {
        match self {
            Joiner::Inner(_) => JoinKind::Inner,
            Joiner::Left(_) => JoinKind::Left,
            Joiner::Outer(_) => JoinKind::Outer,
        }
    }

    fn call(&self, key: &K, left: Option<&VL>, right: Option<&VR>) -> Result<VOut> {
        match (self, left, right) {
            (Joiner::Inner(f), Some(l), Some(r)) => Ok(f(key, l, r)),
            (Joiner::Left(f), Some(l), r) => Ok(f(key, l, r)),
            (Joiner::Outer(f), l, r) => Ok(f(key, l, r)),
            _ => Err(StreamsError::IllegalState(
                "stream-stream join: a record without a match reached a joiner that cannot take it"
                    .into(),
            )),
        }
    }
}

/// Kafka's `KStreamImplJoin.TimeTracker`: shared by the two join processors of a task.
#[derive(Debug)]
struct TimeTracker {
    emit_interval_ms: i64,
    /// The largest timestamp either side has seen (-1 at start).
    stream_time: i64,
    /// A lower bound of the timestamps in the outer-join store (see `emit_non_joined`).
    min_time: i64,
    next_time_to_emit: i64,
}

impl Default for TimeTracker {
    fn default() -> Self {
        TimeTracker {
            emit_interval_ms: 1_000,
            stream_time: -1,
            min_time: i64::MAX,
            next_time_to_emit: 0,
        }
    }
}

/// Kafka's `TimeTrackerSupplier`: one tracker per task, shared by the join's two
/// processors, removed when they close.
#[derive(Debug, Default)]
struct TimeTrackers(Mutex<HashMap<TaskId, Arc<Mutex<TimeTracker>>>>);

impl TimeTrackers {
    fn get(&self, task: TaskId) -> Arc<Mutex<TimeTracker>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(task).or_default())
    }

    fn remove(&self, task: TaskId) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&task);
    }
}

/// A value of either side.
enum Side<VL, VR> {
    Left(VL),
    Right(VR),
}

/// What both join processors of one join share.
struct JoinSpec<K, VL, VR, VOut> {
    left_store: String,
    right_store: String,
    outer_store: Option<String>,
    windows: JoinWindows,
    joiner: Joiner<K, VL, VR, VOut>,
    trackers: Arc<TimeTrackers>,
    key_serde: Option<SharedSerde<K>>,
    left_serde: Option<SharedSerde<VL>>,
    right_serde: Option<SharedSerde<VR>>,
}

/// One side's join processor (Kafka's `KStreamKStreamJoinProcessor`).
struct JoinProcessor<K, VL, VR, VOut> {
    spec: Arc<JoinSpec<K, VL, VR, VOut>>,
    /// This processor joins the left (this) stream's records.
    left_side: bool,
    /// This side emits records without a match (left side of a left join, both sides
    /// of an outer join).
    outer: bool,
    tracker: Option<Arc<Mutex<TimeTracker>>>,
    key_serde: Option<SharedSerde<K>>,
    left_serde: Option<SharedSerde<VL>>,
    right_serde: Option<SharedSerde<VR>>,
}

fn lock(t: &Arc<Mutex<TimeTracker>>) -> std::sync::MutexGuard<'_, TimeTracker> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

fn serde_error(what: &str, store: &str, source: streams_core::SerdeError) -> StreamsError {
    StreamsError::Serde {
        what: what.to_owned(),
        topic: store.to_owned(),
        source,
    }
}

fn missing_serde<T>(what: &'static str, node: &str) -> StreamsError {
    StreamsError::MissingSerde {
        what,
        type_name: std::any::type_name::<T>(),
        node: node.to_owned(),
    }
}

fn corrupt(store: &str, detail: &str) -> StreamsError {
    StreamsError::IllegalState(format!(
        "outer-join store `{store}` holds a malformed entry: {detail}"
    ))
}

/// Kafka's `ListSerde` layout of a list of byte arrays (variable-size strategy): flag 1,
/// big-endian count, then each entry as big-endian length and bytes.
fn encode_list(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![1u8];
    out.extend_from_slice(&(entries.len() as i32).to_be_bytes());
    for e in entries {
        out.extend_from_slice(&(e.len() as i32).to_be_bytes());
        out.extend_from_slice(e);
    }
    out
}

fn decode_list(store: &str, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let read_i32 = |b: &[u8], at: usize| -> Result<i32> {
        b.get(at..at + 4)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
            .map(i32::from_be_bytes)
            .ok_or_else(|| corrupt(store, "truncated list"))
    };
    if bytes.first() != Some(&1) {
        return Err(corrupt(store, "list without the variable-size flag"));
    }
    let count = read_i32(bytes, 1)?;
    let mut at = 5;
    let mut out = Vec::new();
    for _ in 0..count.max(0) {
        let len = read_i32(bytes, at)?;
        at += 4;
        if len < 0 {
            return Err(corrupt(store, "null list entry"));
        }
        let end = at + len as usize;
        let e = bytes
            .get(at..end)
            .ok_or_else(|| corrupt(store, "truncated list entry"))?;
        out.push(e.to_vec());
        at = end;
    }
    Ok(out)
}

impl<K, VL, VR, VOut> JoinProcessor<K, VL, VR, VOut>
where
    K: Clone + Send + Sync + 'static,
    VL: Clone + Send + Sync + 'static,
    VR: Clone + Send + Sync + 'static,
    VOut: Clone + Send + Sync + 'static,
{
    fn new(spec: &Arc<JoinSpec<K, VL, VR, VOut>>, left_side: bool, outer: bool) -> Self {
        JoinProcessor {
            spec: Arc::clone(spec),
            left_side,
            outer,
            tracker: None,
            key_serde: spec.key_serde.clone(),
            left_serde: spec.left_serde.clone(),
            right_serde: spec.right_serde.clone(),
        }
    }

    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VOut>) -> Result<()> {
        let tracker = self.spec.trackers.get(ctx.task_id());
        if self.spec.outer_store.is_some() {
            lock(&tracker).emit_interval_ms = ctx.outer_join_emit_interval_ms();
        }
        self.tracker = Some(tracker);
        if self.key_serde.is_none() {
            self.key_serde = ctx.serdes().get::<K>();
        }
        if self.left_serde.is_none() {
            self.left_serde = ctx.serdes().get::<VL>();
        }
        if self.right_serde.is_none() {
            self.right_serde = ctx.serdes().get::<VR>();
        }
        Ok(())
    }

    fn close(&mut self, ctx: &mut ProcessorContext<'_, K, VOut>) {
        self.spec.trackers.remove(ctx.task_id());
    }

    /// (join before, join after) of this side: the left side looks `before` back and
    /// `after` ahead, the right side the other way round.
    fn bounds(&self) -> (i64, i64) {
        let w = &self.spec.windows;
        if self.left_side {
            (w.before_ms(), w.after_ms())
        } else {
            (w.after_ms(), w.before_ms())
        }
    }

    fn join(&self, key: &K, this: &Side<VL, VR>, other: Option<&Side<VL, VR>>) -> Result<VOut> {
        let j = &self.spec.joiner;
        match (this, other) {
            (Side::Left(l), Some(Side::Right(r))) | (Side::Right(r), Some(Side::Left(l))) => {
                j.call(key, Some(l), Some(r))
            }
            (Side::Left(l), _) => j.call(key, Some(l), None),
            (Side::Right(r), _) => j.call(key, None, Some(r)),
        }
    }

    fn is_null_value(&self, v: &Side<VL, VR>) -> bool {
        match v {
            Side::Left(l) => self.left_serde.as_ref().is_some_and(|s| s.is_null(l)),
            Side::Right(r) => self.right_serde.as_ref().is_some_and(|s| s.is_null(r)),
        }
    }

    /// Kafka's `KStreamKStreamJoinProcessor#process`.
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, VOut>,
        record: Record<K, Side<VL, VR>>,
    ) -> Result<()> {
        let Some(tracker) = self.tracker.clone() else {
            return Err(StreamsError::IllegalState(
                "stream-stream join processor used before init".into(),
            ));
        };
        let ts = record.timestamp;
        let stream_time = {
            let mut t = lock(&tracker);
            t.stream_time = t.stream_time.max(ts);
            t.stream_time
        };
        let null_key = self
            .key_serde
            .as_ref()
            .is_some_and(|s| s.is_null(&record.key));
        let null_value = self.is_null_value(&record.value);
        // KIP-962: a left/outer side forwards a null-key record joined with nothing.
        if self.outer && null_key && !null_value {
            let v = self.join(&record.key, &record.value, None)?;
            return ctx.forward(record.with_value(v));
        }
        if null_key || null_value {
            // Kafka's StreamStreamJoinUtil#skipRecord.
            crate::table::skip_record(ctx, "Skipping record due to null key or value.");
            return Ok(());
        }
        if ts == stream_time
            && let Some(store) = self.spec.outer_store.clone()
        {
            self.emit_non_joined(ctx, &store, &tracker, &record)?;
        }
        let (before, after) = self.bounds();
        let time_from = ts.saturating_sub(before).max(0);
        let time_to = ts.saturating_add(after).max(0);
        let others = self.fetch_others(ctx, &record.key, time_from, time_to)?;
        let need_outer = self.outer && others.is_empty();
        for (other_ts, other) in &others {
            if let Some(store) = &self.spec.outer_store {
                // Kafka: putIfAbsent(otherKey, null) deletes the other record's entry.
                let k = self.outer_key(store, &record.key, *other_ts, !self.left_side)?;
                let mut s = ctx.key_value_store::<Vec<u8>, Vec<u8>>(store)?;
                if s.get(&k)?.is_some() {
                    s.delete(&k)?;
                }
            }
            let v = self.join(&record.key, &record.value, Some(other))?;
            ctx.forward(Record {
                key: record.key.clone(),
                value: v,
                timestamp: ts.max(*other_ts),
                headers: record.headers.clone(),
            })?;
        }
        if need_outer {
            let stream_time = lock(&tracker).stream_time;
            match &self.spec.outer_store {
                Some(store) if time_to >= stream_time => {
                    {
                        let mut t = lock(&tracker);
                        t.min_time = t.min_time.min(ts);
                    }
                    let k = self.outer_key(store, &record.key, ts, self.left_side)?;
                    let v = self.outer_value(store, &record.value)?;
                    let mut s = ctx.key_value_store::<Vec<u8>, Vec<u8>>(store)?;
                    let mut list = match s.get(&k)? {
                        Some(b) => decode_list(store, &b)?,
                        None => Vec::new(),
                    };
                    list.push(v);
                    s.put(&k, &encode_list(&list))?;
                }
                _ => {
                    let v = self.join(&record.key, &record.value, None)?;
                    ctx.forward(record.with_value(v))?;
                }
            }
        }
        Ok(())
    }

    fn fetch_others(
        &self,
        ctx: &mut ProcessorContext<'_, K, VOut>,
        key: &K,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, Side<VL, VR>)>> {
        if self.left_side {
            let s = ctx.window_store::<K, VR>(&self.spec.right_store)?;
            s.fetch_range(key, from, to)?
                .map(|r| r.map(|(t, v)| (t, Side::Right(v))))
                .collect()
        } else {
            let s = ctx.window_store::<K, VL>(&self.spec.left_store)?;
            s.fetch_range(key, from, to)?
                .map(|r| r.map(|(t, v)| (t, Side::Left(v))))
                .collect()
        }
    }

    /// Kafka's `TimestampedKeyAndJoinSide` bytes: timestamp (big-endian), 1 for the left
    /// side or 0, the key's bytes.
    fn outer_key(&self, store: &str, key: &K, ts: i64, left: bool) -> Result<Vec<u8>> {
        let serde = self
            .key_serde
            .as_ref()
            .ok_or_else(|| missing_serde::<K>("key", store))?;
        let kb = serde
            .serialize(store, key)
            .map_err(|e| serde_error("key", store, e))?
            .unwrap_or_default();
        let mut out = Vec::with_capacity(9 + kb.len());
        out.extend_from_slice(&ts.to_be_bytes());
        out.push(u8::from(left));
        out.extend_from_slice(&kb);
        Ok(out)
    }

    /// Kafka's `LeftOrRightValue` bytes: 1 and the left value's bytes, or 0 and the
    /// right value's.
    fn outer_value(&self, store: &str, v: &Side<VL, VR>) -> Result<Vec<u8>> {
        let (flag, bytes) = match v {
            Side::Left(l) => {
                let s = self
                    .left_serde
                    .as_ref()
                    .ok_or_else(|| missing_serde::<VL>("value", store))?;
                (1u8, s.serialize(store, l))
            }
            Side::Right(r) => {
                let s = self
                    .right_serde
                    .as_ref()
                    .ok_or_else(|| missing_serde::<VR>("other value", store))?;
                (0u8, s.serialize(store, r))
            }
        };
        let bytes = bytes.map_err(|e| serde_error("value", store, e))?;
        let mut out = vec![flag];
        out.extend_from_slice(&bytes.unwrap_or_default());
        Ok(out)
    }

    fn decode_outer(
        &self,
        store: &str,
        k: &[u8],
        v: &[u8],
    ) -> Result<(i64, bool, K, Side<VL, VR>)> {
        let ts = k
            .get(..8)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
            .map(i64::from_be_bytes)
            .ok_or_else(|| corrupt(store, "key shorter than 9 bytes"))?;
        let left = k
            .get(8)
            .copied()
            .ok_or_else(|| corrupt(store, "key shorter than 9 bytes"))?
            == 1;
        let key_serde = self
            .key_serde
            .as_ref()
            .ok_or_else(|| missing_serde::<K>("key", store))?;
        let key = key_serde
            .deserialize(store, Some(&k[9..]))
            .map_err(|e| serde_error("key", store, e))?;
        let value = match v.first() {
            Some(1) => {
                let s = self
                    .left_serde
                    .as_ref()
                    .ok_or_else(|| missing_serde::<VL>("value", store))?;
                Side::Left(
                    s.deserialize(store, Some(&v[1..]))
                        .map_err(|e| serde_error("value", store, e))?,
                )
            }
            Some(_) => {
                let s = self
                    .right_serde
                    .as_ref()
                    .ok_or_else(|| missing_serde::<VR>("other value", store))?;
                Side::Right(
                    s.deserialize(store, Some(&v[1..]))
                        .map_err(|e| serde_error("other value", store, e))?,
                )
            }
            None => return Err(corrupt(store, "empty value")),
        };
        Ok((ts, left, key, value))
    }

    /// Kafka's `emitNonJoinedOuterRecords`: forwards (and removes) the records of the
    /// outer-join store whose window plus grace has closed, in store order (timestamp,
    /// right before left, key bytes), each with its own key and timestamp and the current
    /// record's headers.
    fn emit_non_joined(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, VOut>,
        store: &str,
        tracker: &Arc<Mutex<TimeTracker>>,
        record: &Record<K, Side<VL, VR>>,
    ) -> Result<()> {
        let (_, join_after) = self.bounds();
        let grace = self.spec.windows.grace_period_ms();
        {
            let mut t = lock(tracker);
            // Only look if there might be something to emit. Java's long arithmetic wraps:
            // with min time still at its initial Long.MAX_VALUE (a fresh tracker, e.g.
            // after a restart with restored entries), the sum is negative and the store is
            // scanned, as in Kafka.
            if t.min_time.wrapping_add(join_after).wrapping_add(grace) >= t.stream_time {
                return Ok(());
            }
            // Throttle by wall-clock time.
            let now = ctx.current_system_time_ms();
            if now < t.next_time_to_emit {
                return Ok(());
            }
            t.next_time_to_emit = now.saturating_add(t.emit_interval_ms);
            t.min_time = i64::MAX;
        }
        let entries: Vec<(Vec<u8>, Vec<u8>)> = {
            let s = ctx.key_value_store::<Vec<u8>, Vec<u8>>(store)?;
            s.all(Direction::Forward)?.collect::<Result<Vec<_>>>()?
        };
        let w = self.spec.windows;
        let mut prev: Option<Vec<u8>> = None;
        let (mut left_open, mut right_open) = (false, false);
        'entries: for (k, list) in entries {
            for v in decode_list(store, &list)? {
                let (ts, left, key, value) = self.decode_outer(store, &k, &v)?;
                let open = {
                    let mut t = lock(tracker);
                    t.min_time = ts;
                    if left_open && right_open {
                        break 'entries;
                    }
                    let look_back = if left { w.after_ms() } else { w.before_ms() };
                    ts.wrapping_add(look_back).wrapping_add(grace) >= t.stream_time
                };
                if open {
                    if left {
                        left_open = true;
                    } else {
                        right_open = true;
                    }
                    continue;
                }
                let out = self.join(&key, &value, None)?;
                ctx.forward(Record {
                    key,
                    value: out,
                    timestamp: ts,
                    headers: record.headers.clone(),
                })?;
                if let Some(p) = prev.take()
                    && p != k
                {
                    ctx.key_value_store::<Vec<u8>, Vec<u8>>(store)?.delete(&p)?;
                }
                prev = Some(k.clone());
            }
        }
        if let Some(p) = prev {
            ctx.key_value_store::<Vec<u8>, Vec<u8>>(store)?.delete(&p)?;
        }
        Ok(())
    }
}

/// The join processor of the left (this) stream.
struct LeftJoin<K, VL, VR, VOut>(JoinProcessor<K, VL, VR, VOut>);
/// The join processor of the right (other) stream.
struct RightJoin<K, VL, VR, VOut>(JoinProcessor<K, VL, VR, VOut>);

impl<K, VL, VR, VOut> Processor<K, VL, K, VOut> for LeftJoin<K, VL, VR, VOut>
where
    K: Clone + Send + Sync + 'static,
    VL: Clone + Send + Sync + 'static,
    VR: Clone + Send + Sync + 'static,
    VOut: Clone + Send + Sync + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VOut>) -> Result<()> {
        self.0.init(ctx)
    }
    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, VOut>, r: Record<K, VL>) -> Result<()> {
        let v = Side::Left(r.value);
        self.0.process(
            ctx,
            Record {
                key: r.key,
                value: v,
                timestamp: r.timestamp,
                headers: r.headers,
            },
        )
    }
    fn close(&mut self, ctx: &mut ProcessorContext<'_, K, VOut>) -> Result<()> {
        self.0.close(ctx);
        Ok(())
    }
}

impl<K, VL, VR, VOut> Processor<K, VR, K, VOut> for RightJoin<K, VL, VR, VOut>
where
    K: Clone + Send + Sync + 'static,
    VL: Clone + Send + Sync + 'static,
    VR: Clone + Send + Sync + 'static,
    VOut: Clone + Send + Sync + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VOut>) -> Result<()> {
        self.0.init(ctx)
    }
    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, VOut>, r: Record<K, VR>) -> Result<()> {
        let v = Side::Right(r.value);
        self.0.process(
            ctx,
            Record {
                key: r.key,
                value: v,
                timestamp: r.timestamp,
                headers: r.headers,
            },
        )
    }
    fn close(&mut self, ctx: &mut ProcessorContext<'_, K, VOut>) -> Result<()> {
        self.0.close(ctx);
        Ok(())
    }
}

/// Kafka's `KStreamJoinWindow`: forwards the record, then buffers it (unless its key is
/// null; a null value is not stored by a store retaining duplicates).
struct JoinWindowProcessor<K, V> {
    store: String,
    key_serde: Option<SharedSerde<K>>,
    _v: std::marker::PhantomData<fn(V)>,
}

impl<K, V> Processor<K, V, K, V> for JoinWindowProcessor<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, V>) -> Result<()> {
        if self.key_serde.is_none() {
            self.key_serde = ctx.serdes().get::<K>();
        }
        Ok(())
    }

    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, V>, r: Record<K, V>) -> Result<()> {
        let null_key = self.key_serde.as_ref().is_some_and(|s| s.is_null(&r.key));
        let (key, value, ts) = (r.key.clone(), r.value.clone(), r.timestamp);
        ctx.forward(r)?;
        if !null_key {
            ctx.window_store::<K, V>(&self.store)?
                .put(&key, Some(&value), ts)?;
        }
        Ok(())
    }
}

/// Which records without a match a join emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinKind {
    Inner,
    Left,
    Outer,
}

fn duration_ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Builds a stream-stream join as Kafka's `KStreamImpl#doJoin` and `KStreamImplJoin#join`.
fn stream_stream_join<K, VL, VR, VOut>(
    this: KStream<K, VL>,
    other: &KStream<K, VR>,
    joiner: Joiner<K, VL, VR, VOut>,
    windows: JoinWindows,
    joined: StreamJoined<K, VL, VR>,
) -> KStream<K, VOut>
where
    K: Clone + Send + Sync + 'static,
    VL: Clone + Send + Sync + 'static,
    VR: Clone + Send + Sync + 'static,
    VOut: Clone + Send + Sync + 'static,
{
    let state: Shared = Rc::clone(&this.state);
    let key_serde = joined.key_serde.clone();
    let left_serde = joined
        .value_serde
        .clone()
        .or_else(|| this.value_serde.clone());
    let right_serde = joined
        .other_value_serde
        .clone()
        .or_else(|| other.value_serde.clone());
    let name = joined.name.clone();
    // doJoin: repartition either side whose key may have changed.
    let mut this_node = this.node.clone();
    let mut other_node = other.node.clone();
    let rep_key_serde = key_serde.clone().or_else(|| this.key_serde.clone());
    if this.repartition_required {
        let prefix = name
            .as_ref()
            .map_or_else(|| this.node.clone(), |n| format!("{n}-left"));
        this_node = repartition_for_join(
            &state,
            &this.node,
            &prefix,
            rep_key_serde.clone(),
            left_serde.clone(),
        );
    }
    if other.repartition_required {
        let prefix = name
            .as_ref()
            .map_or_else(|| other.node.clone(), |n| format!("{n}-right"));
        let other_key_serde = key_serde.clone().or_else(|| other.key_serde.clone());
        other_node = repartition_for_join(
            &state,
            &other.node,
            &prefix,
            other_key_serde,
            right_serde.clone(),
        );
    }
    let (left_outer, right_outer) = match joiner.kind() {
        JoinKind::Inner => (false, false),
        JoinKind::Left => (true, false),
        JoinKind::Outer => (true, true),
    };
    let this_suffix = if right_outer {
        "-outer-this-join"
    } else {
        "-this-join"
    };
    let other_suffix = if left_outer {
        "-outer-other-join"
    } else {
        "-other-join"
    };
    let (this_windowed, other_windowed, this_generated, other_generated, merge) = {
        let mut s = state.borrow_mut();
        let named_or =
            |suffix: &str, prefix: &str, s: &mut crate::builder::BuilderState| match &name {
                Some(n) => format!("{n}{suffix}"),
                None => s.next_name(prefix),
            };
        let tw = named_or("-this-windowed", "KSTREAM-WINDOWED-", &mut s);
        let ow = named_or("-other-windowed", "KSTREAM-WINDOWED-", &mut s);
        let tg = s.next_name(if right_outer {
            "KSTREAM-OUTERTHIS-"
        } else {
            "KSTREAM-JOINTHIS-"
        });
        let og = s.next_name(if left_outer {
            "KSTREAM-OUTEROTHER-"
        } else {
            "KSTREAM-JOINOTHER-"
        });
        let m = named_or("-merge", "KSTREAM-MERGE-", &mut s);
        (tw, ow, tg, og, m)
    };
    let join_this = name
        .as_ref()
        .map_or_else(|| this_generated.clone(), |n| format!("{n}{this_suffix}"));
    let join_other = name
        .as_ref()
        .map_or_else(|| other_generated.clone(), |n| format!("{n}{other_suffix}"));
    let store_base = joined.store_name.clone();
    let this_store = format!(
        "{}-store",
        store_base
            .as_ref()
            .map_or_else(|| this_generated.clone(), |b| format!("{b}{this_suffix}"))
    );
    let other_store = format!(
        "{}-store",
        store_base
            .as_ref()
            .map_or_else(|| other_generated.clone(), |b| format!("{b}{other_suffix}"))
    );
    let outer_store = left_outer.then(|| {
        let suffix = if right_outer {
            "-outer-shared-join"
        } else {
            "-left-shared-join"
        };
        match &store_base {
            Some(b) => format!("{b}{suffix}-store"),
            None => {
                let prefix = if right_outer {
                    "KSTREAM-OUTERTHIS-"
                } else {
                    "KSTREAM-JOINTHIS-"
                };
                let digits = this_generated
                    .strip_prefix(prefix)
                    .unwrap_or(&this_generated);
                format!("KSTREAM-OUTERSHARED-{digits}-store")
            }
        }
    });
    let retention = duration_ms(windows.size_ms().saturating_add(windows.grace_period_ms()));
    let size = duration_ms(windows.size_ms());
    let window_store = |store: &str| -> Result<StoreBuilder> {
        let mut b = StoreBuilder::window(store.to_owned(), retention, size, true)?
            .with_logging(joined.logging)
            .with_changelog_config("cleanup.policy", "delete");
        for (k, v) in &joined.changelog_config {
            if k != "cleanup.policy" {
                b = b.with_changelog_config(k.clone(), v.clone());
            }
        }
        if joined.in_memory {
            b = b.in_memory();
        }
        Ok(b)
    };
    let this_store_builder =
        window_store(&this_store).map(|b| b.with_serdes(rep_key_serde.clone(), left_serde.clone()));
    let other_store_builder = window_store(&other_store)
        .map(|b| b.with_serdes(rep_key_serde.clone(), right_serde.clone()));
    let outer_store_builder = outer_store.as_ref().map(|n| {
        let mut b = StoreBuilder::key_value(n.clone()).with_logging(joined.logging);
        for (k, v) in &joined.changelog_config {
            b = b.with_changelog_config(k.clone(), v.clone());
        }
        if joined.in_memory {
            b = b.in_memory();
        }
        b.with_serdes::<Vec<u8>, Vec<u8>>(Some(Arc::new(BytesSerde)), Some(Arc::new(BytesSerde)))
    });
    let spec = Arc::new(JoinSpec {
        left_store: this_store.clone(),
        right_store: other_store.clone(),
        outer_store: outer_store.clone(),
        windows,
        joiner,
        trackers: Arc::default(),
        key_serde: rep_key_serde.clone(),
        left_serde,
        right_serde,
    });
    let (spec_l, spec_r) = (Arc::clone(&spec), Arc::clone(&spec));
    let (ts_name, os_name) = (this_store.clone(), other_store.clone());
    let (ks1, ks2) = (rep_key_serde.clone(), rep_key_serde.clone());
    state.borrow_mut().apply(|t| {
        let this_sb = this_store_builder?;
        let other_sb = other_store_builder?;
        t.add_processor(
            &this_windowed,
            move || JoinWindowProcessor::<K, VL> {
                store: ts_name.clone(),
                key_serde: ks1.clone(),
                _v: std::marker::PhantomData,
            },
            &[&this_node],
        )?;
        t.add_processor(
            &other_windowed,
            move || JoinWindowProcessor::<K, VR> {
                store: os_name.clone(),
                key_serde: ks2.clone(),
                _v: std::marker::PhantomData,
            },
            &[&other_node],
        )?;
        t.add_processor(
            &join_this,
            move || LeftJoin(JoinProcessor::new(&spec_l, true, left_outer)),
            &[&this_windowed],
        )?;
        t.add_processor(
            &join_other,
            move || RightJoin(JoinProcessor::new(&spec_r, false, right_outer)),
            &[&other_windowed],
        )?;
        t.add_processor(
            &merge,
            || {
                stateless(
                    |ctx: &mut ProcessorContext<'_, K, VOut>, r: Record<K, VOut>| ctx.forward(r),
                )
            },
            &[&join_this, &join_other],
        )?;
        t.add_state_store(this_sb, &[&this_windowed, &join_other])?;
        t.add_state_store(other_sb, &[&other_windowed, &join_this])?;
        if let Some(b) = outer_store_builder {
            t.add_state_store(b, &[&join_this, &join_other])?;
        }
        Ok(())
    });
    KStream::new(state, merge, key_serde, None)
}

/// Stream-stream joins (Kafka's `KStream#join`, `leftJoin`, `outerJoin` with
/// `JoinWindows` and `StreamJoined`).
impl<K, V> KStream<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Inner join with another stream (Kafka's `KStream#join(KStream, ValueJoiner,
    /// JoinWindows, StreamJoined)`): each record of either stream is joined with every
    /// record of the other stream with the same key whose timestamp is within
    /// `windows` (this record at `t` meets the other's in `[t - before, t + after]`),
    /// one result per pair, `joiner(this value, other value)`, stamped with the larger
    /// of the two timestamps. Records with a null key or value (their serde's
    /// [`Serde::is_null`](streams_core::Serde::is_null)) are dropped and counted.
    ///
    /// Both sides are buffered in window stores (`KSTREAM-JOINTHIS-<n>-store`,
    /// `KSTREAM-JOINOTHER-<n>-store`, kept for size + grace, change-logged with
    /// `cleanup.policy=delete`); a side whose key may have changed is first repartitioned
    /// (`<node>-repartition`, or `<name>-left-repartition` / `<name>-right-repartition`
    /// with [`StreamJoined::with_name`]). Nodes as Kafka names them:
    /// `KSTREAM-WINDOWED-` twice, `KSTREAM-JOINTHIS-`, `KSTREAM-JOINOTHER-`,
    /// `KSTREAM-MERGE-`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, JoinWindows, Produced, StreamJoined, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let orders = builder.stream("orders", Consumed::with(StringSerde, StringSerde));
    /// let payments = builder.stream("payments", Consumed::with(StringSerde, StringSerde));
    /// orders
    ///     .join(&payments, |o: &String, p: &String| format!("{o}+{p}"),
    ///           JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(10))?,
    ///           StreamJoined::with(StringSerde, StringSerde, StringSerde))
    ///     .to("paid", Produced::with(StringSerde, StringSerde));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let o = driver.create_input_topic("orders", StringSerde, StringSerde)?;
    /// let p = driver.create_input_topic("payments", StringSerde, StringSerde)?;
    /// o.pipe_input_with_timestamp("k".into(), "o1".into(), 1_000)?;
    /// p.pipe_input_with_timestamp("k".into(), "p1".into(), 5_000)?;  // within 10 s
    /// p.pipe_input_with_timestamp("k".into(), "p2".into(), 20_000)?; // too late for o1
    /// let out = driver.create_output_topic("paid", StringSerde, StringSerde).read_records_to_vec()?;
    /// let got: Vec<_> = out.into_iter().map(|r| (r.key, r.value, r.timestamp)).collect();
    /// assert_eq!(got, [("k".to_owned(), "o1+p1".to_owned(), 5_000)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn join<VO, VR, F>(
        self,
        other: &KStream<K, VO>,
        joiner: F,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR>
    where
        VO: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&V, &VO) -> VR + Send + Sync + 'static,
    {
        self.join_with_key(
            other,
            move |_k: &K, v: &V, o: &VO| joiner(v, o),
            windows,
            joined,
        )
    }

    /// [`KStream::join`] with a joiner that also receives the key (Kafka's
    /// `ValueJoinerWithKey`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, JoinWindows, Produced, StreamJoined, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let a = builder.stream("a", Consumed::with(StringSerde, I64Serde));
    /// let b = builder.stream("b", Consumed::with(StringSerde, I64Serde));
    /// a.join_with_key(&b, |k: &String, x: &i64, y: &i64| format!("{k}:{}", x + y),
    ///         JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(5))?,
    ///         StreamJoined::new())
    ///     .to("sums", Produced::with(StringSerde, StringSerde));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// driver.create_input_topic("a", StringSerde, I64Serde)?.pipe_input_with_timestamp("k".into(), 1, 10)?;
    /// driver.create_input_topic("b", StringSerde, I64Serde)?.pipe_input_with_timestamp("k".into(), 2, 12)?;
    /// assert_eq!(driver.create_output_topic("sums", StringSerde, StringSerde).read_value()?, "k:3");
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn join_with_key<VO, VR, F>(
        self,
        other: &KStream<K, VO>,
        joiner: F,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR>
    where
        VO: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&K, &V, &VO) -> VR + Send + Sync + 'static,
    {
        let j = Joiner::Inner(Arc::new(joiner));
        stream_stream_join(self, other, j, windows, joined)
    }

    /// Left join with another stream (Kafka's `KStream#leftJoin(KStream, ...)`): as
    /// [`KStream::join`], and a record of this stream that found no match is emitted as
    /// `joiner(value, None)` with its own timestamp once its window plus grace has closed
    /// (stream time > its timestamp + after + grace), never before (Kafka 3.1+'s fix for
    /// spurious results; the check runs at most once per
    /// [`StreamsConfig::outer_join_emit_interval`](streams_core::StreamsConfig::outer_join_emit_interval)
    /// of wall-clock time, 0 in the test driver). A record already too late to be
    /// joined later is emitted at once. A record of this stream with a null key and a
    /// value is emitted at once as `joiner(value, None)` (KIP-962). The waiting records
    /// live in `KSTREAM-OUTERSHARED-<n>-store`. Nodes: `KSTREAM-WINDOWED-` twice,
    /// `KSTREAM-JOINTHIS-`, `KSTREAM-OUTEROTHER-`, `KSTREAM-MERGE-`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, JoinWindows, Produced, StreamJoined, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let clicks = builder.stream("clicks", Consumed::with(StringSerde, StringSerde));
    /// let views = builder.stream("views", Consumed::with(StringSerde, StringSerde));
    /// clicks
    ///     .left_join(&views, |c: &String, v: Option<&String>| format!("{c}/{}", v.map_or("-", |v| v.as_str())),
    ///                JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(100))?,
    ///                StreamJoined::new())
    ///     .to("out", Produced::with(StringSerde, StringSerde));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let c = driver.create_input_topic("clicks", StringSerde, StringSerde)?;
    /// let v = driver.create_input_topic("views", StringSerde, StringSerde)?;
    /// let out = driver.create_output_topic("out", StringSerde, StringSerde);
    /// c.pipe_input_with_timestamp("a".into(), "c1".into(), 0)?;
    /// assert!(out.is_empty()); // c1 may still meet a view: nothing yet
    /// v.pipe_input_with_timestamp("b".into(), "v1".into(), 101)?; // stream time passes 0 + 100
    /// assert_eq!(out.read_key_value()?, ("a".into(), "c1/-".into()));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn left_join<VO, VR, F>(
        self,
        other: &KStream<K, VO>,
        joiner: F,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR>
    where
        VO: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        self.left_join_with_key(
            other,
            move |_k: &K, v: &V, o: Option<&VO>| joiner(v, o),
            windows,
            joined,
        )
    }

    /// [`KStream::left_join`] with a joiner that also receives the key.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, JoinWindows, Produced, StreamJoined, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let a = builder.stream("a", Consumed::with(StringSerde, StringSerde));
    /// let b = builder.stream("b", Consumed::with(StringSerde, StringSerde));
    /// a.left_join_with_key(&b, |k: &String, x: &String, y: Option<&String>| format!("{k}:{x}:{y:?}"),
    ///         JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(5))?,
    ///         StreamJoined::new())
    ///     .to("out", Produced::with(StringSerde, StringSerde));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// driver.create_input_topic("a", StringSerde, StringSerde)?.pipe_input_with_timestamp("k".into(), "x".into(), 10)?;
    /// driver.create_input_topic("b", StringSerde, StringSerde)?.pipe_input_with_timestamp("k".into(), "y".into(), 12)?;
    /// assert_eq!(driver.create_output_topic("out", StringSerde, StringSerde).read_value()?, "k:x:Some(\"y\")");
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn left_join_with_key<VO, VR, F>(
        self,
        other: &KStream<K, VO>,
        joiner: F,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR>
    where
        VO: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&K, &V, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        let j = Joiner::Left(Arc::new(joiner));
        stream_stream_join(self, other, j, windows, joined)
    }

    /// Outer join with another stream (Kafka's `KStream#outerJoin`): as
    /// [`KStream::left_join`], for both sides: a record of either stream without a match
    /// is emitted as `joiner(Some(value), None)` or `joiner(None, Some(other value))` once
    /// its window plus grace has closed, in the shared store's order (timestamp, then the
    /// other stream's records before this stream's, then key bytes). Null-key records of
    /// either side are emitted at once (KIP-962). Nodes: `KSTREAM-WINDOWED-` twice,
    /// `KSTREAM-OUTERTHIS-`, `KSTREAM-OUTEROTHER-`, `KSTREAM-MERGE-`; stores
    /// `KSTREAM-OUTERTHIS-<n>-store`, `KSTREAM-OUTEROTHER-<n>-store`,
    /// `KSTREAM-OUTERSHARED-<n>-store`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, JoinWindows, Produced, StreamJoined, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let a = builder.stream("a", Consumed::with(StringSerde, StringSerde));
    /// let b = builder.stream("b", Consumed::with(StringSerde, StringSerde));
    /// a.outer_join(&b, |x: Option<&String>, y: Option<&String>| format!("{x:?}|{y:?}"),
    ///         JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(10))?,
    ///         StreamJoined::new())
    ///     .to("out", Produced::with(StringSerde, StringSerde));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let (ia, ib) = (driver.create_input_topic("a", StringSerde, StringSerde)?,
    ///                 driver.create_input_topic("b", StringSerde, StringSerde)?);
    /// ib.pipe_input_with_timestamp("k".into(), "y".into(), 0)?;
    /// ia.pipe_input_with_timestamp("z".into(), "x".into(), 50)?; // closes y's window
    /// let out = driver.create_output_topic("out", StringSerde, StringSerde);
    /// assert_eq!(out.read_key_value()?, ("k".into(), "None|Some(\"y\")".into()));
    /// assert!(out.is_empty()); // x waits for its own window to close
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn outer_join<VO, VR, F>(
        self,
        other: &KStream<K, VO>,
        joiner: F,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR>
    where
        VO: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        self.outer_join_with_key(
            other,
            move |_k: &K, v: Option<&V>, o: Option<&VO>| joiner(v, o),
            windows,
            joined,
        )
    }

    /// [`KStream::outer_join`] with a joiner that also receives the key.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, JoinWindows, Produced, StreamJoined, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let a = builder.stream("a", Consumed::with(StringSerde, StringSerde));
    /// let b = builder.stream("b", Consumed::with(StringSerde, StringSerde));
    /// a.outer_join_with_key(&b, |k: &String, x: Option<&String>, y: Option<&String>| format!("{k}:{x:?}:{y:?}"),
    ///         JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(5))?,
    ///         StreamJoined::new())
    ///     .to("out", Produced::with(StringSerde, StringSerde));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// driver.create_input_topic("a", StringSerde, StringSerde)?.pipe_input_with_timestamp("k".into(), "x".into(), 10)?;
    /// driver.create_input_topic("b", StringSerde, StringSerde)?.pipe_input_with_timestamp("k".into(), "y".into(), 12)?;
    /// assert_eq!(driver.create_output_topic("out", StringSerde, StringSerde).read_value()?,
    ///            "k:Some(\"x\"):Some(\"y\")");
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn outer_join_with_key<VO, VR, F>(
        self,
        other: &KStream<K, VO>,
        joiner: F,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR>
    where
        VO: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&K, Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        let j = Joiner::Outer(Arc::new(joiner));
        stream_stream_join(self, other, j, windows, joined)
    }
}

#[cfg(test)]
mod tests {
    use super::{decode_list, encode_list};

    /// Kafka's `ListSerializer` with a variable-size inner serde (`Serdes.ByteArray()`):
    /// flag 1, big-endian count, then length-prefixed entries.
    #[test]
    fn list_layout_is_kafkas() {
        let bytes = encode_list(&[b"ab".to_vec(), Vec::new()]);
        assert_eq!(bytes, [1, 0, 0, 0, 2, 0, 0, 0, 2, b'a', b'b', 0, 0, 0, 0]);
        assert_eq!(
            decode_list("s", &bytes).unwrap(),
            vec![b"ab".to_vec(), Vec::new()]
        );
        assert!(decode_list("s", &bytes[..bytes.len() - 3]).is_err());
        assert!(decode_list("s", &[0, 0, 0, 0, 0]).is_err());
        assert!(decode_list("s", &[1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}

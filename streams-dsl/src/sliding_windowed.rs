//! `SlidingWindowedKStream`: a grouped stream cut into sliding windows, ready for a
//! windowed aggregation (Kafka's `SlidingWindowedKStreamImpl`), and the processor it
//! compiles into (Kafka's `KStreamSlidingWindowAggregate`).

use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use streams_core::{
    Change, Processor, ProcessorContext, Record, Result, SharedSerde, StoreBuilder, StreamsError,
    TimeWindowedSerde, ValueAndTimestamp, Window, Windowed,
};

use crate::emit::{
    CloseEmitter, EmitStrategy, NO_TIMESTAMP, changelog_retention, forward_final,
    local_retention_ms,
};
use crate::kgrouped::KGroupedStream;
use crate::ktable::KTable;
use crate::options::Materialized;
use crate::windows::SlidingWindows;

/// The aggregate of a new window before its first record: Kafka's initializer (`None` is
/// Kafka's null, what `reduce` starts from).
type Init<VA> = Arc<dyn Fn() -> Option<VA> + Send + Sync>;
/// Kafka's aggregator: `(key, value, aggregate so far)` → the new aggregate.
type Aggregate<K, V, VA> = Arc<dyn Fn(&K, V, Option<VA>) -> VA + Send + Sync>;

/// A grouped stream in sliding windows (Kafka's `SlidingWindowedKStream`, a
/// `TimeWindowedKStream` in Kafka's API), from [`KGroupedStream::windowed_by`] with
/// [`SlidingWindows`]: `count`, `reduce` or `aggregate` it into a [`KTable`] keyed by
/// [`Windowed`] keys whose windows are `[start, start + time difference]`, both ends
/// inclusive.
///
/// Semantics are Kafka Streams' (`KStreamSlidingWindowAggregate`): a record at `ts`
/// updates every existing window of its key that contains it, creates its left window
/// `[ts - difference, ts]` (seeded with the aggregate of the records before it that fall
/// in it) unless it exists, creates its right window `[ts + 1, ts + 1 + difference]`
/// (seeded with the aggregate of the later records in it) if a later record falls in it,
/// and creates the right window of the record before it if this record falls in that
/// window. Records earlier than the time difference (`ts < difference`) go into the
/// window `[0, difference]`. The aggregation keeps its own stream time (the largest
/// timestamp it has seen) and drops a record whose right window end (`ts + difference`)
/// is before stream time − grace; a window ending before that is skipped (one
/// `dropped-records` per skipped window). Records with a null key or a null value (per
/// the grouped serdes' [`Serde::is_null`](streams_core::Serde::is_null)) are dropped and
/// counted. Each update's timestamp is the largest timestamp of the records in its
/// window. The store is a timestamped window store keeping windows for 2 × time
/// difference + grace (or [`Materialized::with_retention`], which may not be less); with
/// its cache on (the default, except with [`EmitStrategy::on_window_close`]), updates
/// reach downstream as the cache flushes.
pub struct SlidingWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: SlidingWindows,
    emit: EmitStrategy,
}

impl<K, V> std::fmt::Debug for SlidingWindowedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlidingWindowedKStream")
            .field("grouped", &self.grouped)
            .field("windows", &self.windows)
            .field("emit", &self.emit)
            .finish()
    }
}

impl<K, V> SlidingWindowedKStream<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(grouped: KGroupedStream<K, V>, windows: SlidingWindows) -> Self {
        SlidingWindowedKStream {
            grouped,
            windows,
            emit: EmitStrategy::default(),
        }
    }

    /// When the aggregation emits (Kafka's `emitStrategy`): on every window update (the
    /// default) or once per window when it closes ([`EmitStrategy::on_window_close`]: the
    /// store is then not cached, as in Kafka). A closed window is emitted with its stored
    /// timestamp (its largest record timestamp) and the headers of the record that closed
    /// it, in window start order, then key bytes order.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TimeWindowedSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, EmitStrategy, Grouped, Materialized, Produced, SlidingWindows,
    ///     StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("clicks", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SlidingWindows::of_time_difference_with_no_grace(Duration::from_millis(10))?)
    ///     .emit_strategy(EmitStrategy::on_window_close())
    ///     // (the default retention, 2 × 10 ms, could forget [5, 15] when stream time jumps)
    ///     .count(Materialized::as_store("counts").with_retention(Duration::from_secs(60)))
    ///     .to_stream()
    ///     .map_values(|n: Option<i64>| n.unwrap_or(0))
    ///     .to("out", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("clicks", StringSerde, StringSerde)?;
    /// for ts in [10, 15, 40] {
    ///     input.pipe_input_with_timestamp("u".into(), "click".into(), ts)?;
    /// }
    /// let out = driver.create_output_topic("out",
    ///     TimeWindowedSerde::new(StringSerde, Duration::from_millis(10)), I64Serde);
    /// let got: Vec<_> = out.read_records_to_vec()?.into_iter()
    ///     .map(|r| (r.key.window.start, r.key.window.end, r.value, r.timestamp)).collect();
    /// // stream time 40 closes every window ending before 40: emitted once each
    /// assert_eq!(got, [(0, 10, 1, 10), (5, 15, 2, 15), (11, 21, 1, 15)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn emit_strategy(mut self, emit: EmitStrategy) -> Self {
        self.emit = emit;
        self
    }

    /// Counts the records per key and sliding window.
    ///
    /// Unlike a time-windowed `count`, an unnamed store does not burn a generated name
    /// (Kafka's `SlidingWindowedKStreamImpl`): after `KSTREAM-SOURCE-0000000000` the store
    /// is `KSTREAM-AGGREGATE-STATE-STORE-0000000001` and the processor
    /// `KSTREAM-AGGREGATE-0000000002`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TimeWindowedSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, Produced, SlidingWindows, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("clicks", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SlidingWindows::of_time_difference_with_no_grace(Duration::from_millis(10))?)
    ///     .count(Materialized::as_store("counts").with_caching_disabled())
    ///     .to_stream()
    ///     .map_values(|n: Option<i64>| n.unwrap_or(0))
    ///     .to("out", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("clicks", StringSerde, StringSerde)?;
    /// input.pipe_input_with_timestamp("u".into(), "click".into(), 20)?;
    /// input.pipe_input_with_timestamp("u".into(), "click".into(), 25)?;
    /// let out = driver.create_output_topic("out",
    ///     TimeWindowedSerde::new(StringSerde, Duration::from_millis(10)), I64Serde);
    /// let got: Vec<_> = out.read_records_to_vec()?.into_iter()
    ///     .map(|r| (r.key.window.start, r.key.window.end, r.value, r.timestamp)).collect();
    /// assert_eq!(got, [(10, 20, 1, 20),   // the first record's left window
    ///                  (21, 31, 1, 25),   // its right window, created by the second
    ///                  (15, 25, 2, 25)]); // the second record's left window
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn count(self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        let mut m = materialized;
        if m.value_serde.is_none() {
            m.value_serde = Some(Arc::new(streams_core::I64Serde));
        }
        self.build(
            Arc::new(|| Some(0)),
            Arc::new(|_k: &K, _v: V, n: Option<i64>| n.unwrap_or(0).saturating_add(1)),
            m,
            "KSTREAM-AGGREGATE-",
        )
    }

    /// Combines the values of each key and sliding window with `reducer(aggregate,
    /// value)`; the first value in a window is its initial aggregate.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, SlidingWindows, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("amounts", Consumed::with(StringSerde, I64Serde))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SlidingWindows::of_time_difference_with_no_grace(Duration::from_millis(10))?)
    ///     .reduce(|a: i64, b: i64| a + b, Materialized::as_store("sums")
    ///         .with_retention(Duration::from_secs(60)));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("amounts", StringSerde, I64Serde)?;
    /// for (v, ts) in [(1, 20), (2, 25), (4, 40)] { input.pipe_input_with_timestamp("k".into(), v, ts)?; }
    /// assert_eq!(driver.read_window_store::<String, i64>("sums")?,
    ///            vec![("k".into(), 10, 1), ("k".into(), 15, 3), ("k".into(), 21, 2),
    ///                 ("k".into(), 30, 4)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn reduce<F>(self, reducer: F, materialized: Materialized<K, V>) -> KTable<Windowed<K>, V>
    where
        F: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let mut m = materialized;
        if m.value_serde.is_none() {
            m.value_serde = self.grouped.value_serde();
        }
        self.build(
            Arc::new(|| None),
            Arc::new(move |_k: &K, v: V, agg: Option<V>| match agg {
                Some(a) => reducer(a, v),
                None => v,
            }),
            m,
            "KSTREAM-REDUCE-",
        )
    }

    /// Folds the values of each key and sliding window into an aggregate: `initializer()`
    /// for a new window, then `aggregator(key, value, aggregate)` for each record.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, SlidingWindows, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("pages", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SlidingWindows::of_time_difference_and_grace(Duration::from_millis(10),
    ///                                                             Duration::from_millis(5))?)
    ///     .aggregate(String::new, |_k: &String, page: String, path: String| path + &page,
    ///                Materialized::as_store("paths").with_value_serde(StringSerde));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("pages", StringSerde, StringSerde)?;
    /// input.pipe_input_with_timestamp("u".into(), "a".into(), 3)?;  // early: window [0, 10]
    /// input.pipe_input_with_timestamp("u".into(), "b".into(), 12)?;
    /// assert_eq!(driver.read_window_store::<String, String>("paths")?,
    ///            vec![("u".into(), 0, "a".into()), ("u".into(), 2, "ab".into()),
    ///                 ("u".into(), 4, "b".into())]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn aggregate<VA, I, F>(
        self,
        initializer: I,
        aggregator: F,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA>
    where
        VA: Clone + Send + Sync + 'static,
        I: Fn() -> VA + Send + Sync + 'static,
        F: Fn(&K, V, VA) -> VA + Send + Sync + 'static,
    {
        let initializer = Arc::new(initializer);
        let init = Arc::clone(&initializer);
        self.build(
            Arc::new(move || Some(init())),
            Arc::new(move |k: &K, v: V, agg: Option<VA>| {
                aggregator(k, v, agg.unwrap_or_else(|| initializer()))
            }),
            materialized,
            "KSTREAM-AGGREGATE-",
        )
    }

    /// Compiles the aggregation as Kafka's `SlidingWindowedKStreamImpl` and
    /// `GroupedStreamAggregateBuilder` do: the store name, the processor name, the
    /// repartition step if needed, then the processor and its timestamped window store.
    fn build<VA>(
        self,
        init: Init<VA>,
        aggregate: Aggregate<K, V, VA>,
        materialized: Materialized<K, VA>,
        prefix: &str,
    ) -> KTable<Windowed<K>, VA>
    where
        VA: Clone + Send + Sync + 'static,
    {
        let SlidingWindowedKStream {
            grouped,
            windows,
            emit,
        } = self;
        let state = Rc::clone(grouped.state());
        let store_name = match &materialized.name {
            Some(n) => n.clone(),
            None => state
                .borrow_mut()
                .next_name(&format!("{prefix}STATE-STORE-")),
        };
        let name = state.borrow_mut().next_name(prefix);
        let (parent, key_serde, value_serde) = grouped.source_for(&store_name);
        let key_serde = materialized.key_serde.clone().or(key_serde);
        let store = sliding_store(
            &store_name,
            &windows,
            emit,
            &materialized,
            key_serde.clone(),
        );
        let supplier_store = store_name.clone();
        let (supplier_key_serde, supplier_value_serde) = (key_serde.clone(), value_serde);
        let supplier = move || SlidingWindowAggregateProcessor::<K, V, VA> {
            store: supplier_store.clone(),
            windows,
            emit,
            init: Arc::clone(&init),
            aggregate: Arc::clone(&aggregate),
            cached: false,
            observed_stream_time: NO_TIMESTAMP,
            emitter: CloseEmitter::new(),
            key_serde: supplier_key_serde.clone(),
            value_serde: supplier_value_serde.clone(),
        };
        state.borrow_mut().apply(|t| {
            let store = store?;
            t.add_processor(&name, supplier, &[&parent])?;
            t.add_state_store(store, &[&name])?;
            Ok(())
        });
        let windowed_key_serde = key_serde.map(|k| {
            Arc::new(TimeWindowedSerde::from_shared(
                k,
                windows.time_difference_ms(),
            )) as SharedSerde<Windowed<K>>
        });
        // Kafka's `GraphGraceSearchUtil`: a sliding aggregation closes its windows `grace`
        // after their end (for `suppress(until_window_closes)` downstream).
        KTable::new(
            state,
            name,
            store_name,
            windowed_key_serde,
            materialized.value_serde,
        )
        .with_window_grace(Some(windows.grace_period_ms()))
    }
}

/// The timestamped window store of a sliding aggregation (Kafka's
/// `SlidingWindowStoreMaterializer`): windows of the time difference, retention =
/// `Materialized::with_retention`, else 2 × time difference + grace (less is an error: the
/// processor reads windows back to `ts - 2 × difference`); not cached with
/// emit-on-window-close.
fn sliding_store<K: 'static, VA: 'static>(
    store_name: &str,
    windows: &SlidingWindows,
    emit: EmitStrategy,
    materialized: &Materialized<K, VA>,
    key_serde: Option<SharedSerde<K>>,
) -> Result<StoreBuilder> {
    let needed = windows
        .time_difference_ms()
        .saturating_mul(2)
        .saturating_add(windows.grace_period_ms());
    let retention_ms = match materialized.retention {
        Some(r) => i64::try_from(r.as_millis()).unwrap_or(i64::MAX),
        None => needed,
    };
    if retention_ms < needed {
        return Err(StreamsError::Config {
            key: "retention.ms".to_owned(),
            reason: format!(
                "the retention period of the window store `{store_name}` must be no smaller \
                 than 2 * time difference plus the grace period; got time difference={} ms, \
                 grace={} ms, retention={retention_ms} ms",
                windows.time_difference_ms(),
                windows.grace_period_ms()
            ),
        });
    }
    let to_duration = |ms: i64| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let mut store = StoreBuilder::timestamped_window(
        store_name.to_owned(),
        to_duration(local_retention_ms(emit, retention_ms)),
        to_duration(windows.time_difference_ms()),
        false,
    )?
    .with_caching(materialized.caching && !emit.is_on_close())
    .with_logging(materialized.logging)
    .with_changelog_config("retention.ms", changelog_retention(retention_ms));
    if materialized.in_memory {
        store = store.in_memory();
    }
    for (k, v) in &materialized.changelog_config {
        store = store.with_changelog_config(k.clone(), v.clone());
    }
    Ok(store.with_serdes(key_serde, materialized.value_serde.clone()))
}

/// Kafka's `KStreamSlidingWindowAggregateProcessor` (with the reverse iterator, which
/// Kafka uses whenever the store supports it: always for its built-in stores).
struct SlidingWindowAggregateProcessor<K, V, VA> {
    store: String,
    windows: SlidingWindows,
    emit: EmitStrategy,
    init: Init<VA>,
    aggregate: Aggregate<K, V, VA>,
    /// The store is cached: updates reach downstream through its flushes.
    cached: bool,
    /// The largest timestamp this processor has seen (Kafka's `observedStreamTime`).
    observed_stream_time: i64,
    emitter: CloseEmitter,
    key_serde: Option<SharedSerde<K>>,
    value_serde: Option<SharedSerde<V>>,
}

type Ctx<'c, 'a, K, VA> = &'c mut ProcessorContext<'a, Windowed<K>, Change<VA>>;

/// Kafka's `ValueAndTimestamp.make`: no value, no pair.
fn make<VA>(value: Option<VA>, timestamp: i64) -> Option<ValueAndTimestamp<VA>> {
    value.map(|v| ValueAndTimestamp::new(v, timestamp))
}

impl<K, V, VA> SlidingWindowAggregateProcessor<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
    VA: Clone + Send + 'static,
{
    fn window(&self, start: i64) -> Window {
        Window {
            start,
            end: start.saturating_add(self.windows.time_difference_ms()),
        }
    }

    /// The key's windows starting in `[from, to]`, by start.
    fn fetch(
        &self,
        ctx: Ctx<'_, '_, K, VA>,
        key: &K,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, ValueAndTimestamp<VA>)>> {
        let store = ctx.timestamped_window_store::<K, VA>(&self.store)?;
        let found = store
            .fetch_range(key, from, to)?
            .collect::<Result<Vec<_>>>()?;
        Ok(found)
    }

    /// Kafka's `processReverse`: the key's windows from `ts - 2 × difference` to `ts + 1`,
    /// latest start first.
    fn process_reverse(
        &mut self,
        ctx: Ctx<'_, '_, K, VA>,
        record: &Record<K, V>,
        close_time: i64,
    ) -> Result<()> {
        let td = self.windows.time_difference_ms();
        let ts = record.timestamp;
        let mut found = self.fetch(
            ctx,
            &record.key,
            ts.saturating_sub(td.saturating_mul(2)).max(0),
            ts.saturating_add(1),
        )?;
        found.reverse();
        let mut starts = BTreeSet::new();
        let mut left_win_agg = None;
        let mut right_win_agg: Option<ValueAndTimestamp<VA>> = None;
        let mut left_created = false;
        let mut right_created = false;
        let mut previous = None;
        for (start, agg) in found {
            starts.insert(start);
            let end = start.saturating_add(td);
            let max_record_timestamp = agg.timestamp;
            if start == ts.saturating_add(1) {
                right_created = true;
            } else if end > ts {
                if right_win_agg.is_none() {
                    right_win_agg = Some(agg.clone());
                }
                self.update_window_and_forward(
                    ctx,
                    self.window(start),
                    Some(agg),
                    record,
                    close_time,
                )?;
            } else if end == ts {
                left_created = true;
                self.update_window_and_forward(
                    ctx,
                    self.window(start),
                    Some(agg),
                    record,
                    close_time,
                )?;
                if max_record_timestamp < ts {
                    previous = Some(max_record_timestamp);
                } else {
                    // Kafka returns here: the windows around this timestamp all exist.
                    return Ok(());
                }
            } else {
                // end < ts: the latest window before the record's left window.
                left_win_agg = Some(agg);
                previous = Some(max_record_timestamp);
                break;
            }
        }
        self.create_windows(
            ctx,
            record,
            close_time,
            &starts,
            right_win_agg,
            left_win_agg,
            left_created,
            right_created,
            previous,
        )
    }

    /// Kafka's `processEarly`: a record with `ts < difference` goes into the window
    /// `[0, difference]`, which holds every early record.
    fn process_early(
        &mut self,
        ctx: Ctx<'_, '_, K, VA>,
        record: &Record<K, V>,
        close_time: i64,
    ) -> Result<()> {
        let ts = record.timestamp;
        if ts < 0 {
            // Kafka throws an IllegalArgumentException here.
            return Err(StreamsError::IllegalState(format!(
                "early record for sliding windows must have a timestamp >= 0; got {ts}"
            )));
        }
        let found = self.fetch(ctx, &record.key, 0, ts.saturating_add(1))?;
        let mut combined: Option<(i64, ValueAndTimestamp<VA>)> = None;
        let mut right_win_agg: Option<ValueAndTimestamp<VA>> = None;
        let mut right_created = false;
        let mut starts = BTreeSet::new();
        let mut previous = None;
        for (start, agg) in found {
            starts.insert(start);
            let max_record_timestamp = agg.timestamp;
            if start == 0 {
                if max_record_timestamp < ts {
                    previous = Some(max_record_timestamp);
                }
                combined = Some((start, agg));
            } else if start <= ts {
                right_win_agg = Some(agg.clone());
                self.update_window_and_forward(
                    ctx,
                    self.window(start),
                    Some(agg),
                    record,
                    close_time,
                )?;
            } else {
                // start == ts + 1 (the fetch ends there)
                right_created = true;
            }
        }
        if right_win_agg.is_none() {
            right_win_agg = combined
                .as_ref()
                .filter(|(_, c)| c.timestamp > ts)
                .map(|(_, c)| c.clone());
        }
        // Kafka's rightWindowIsNotEmpty: a later record falls in the right window.
        if let Some(right) = right_win_agg.filter(|r| !right_created && r.timestamp > ts) {
            self.create_current_record_right_window(ctx, ts, right, record)?;
        }
        if let Some(p) = previous {
            let start = p.saturating_add(1);
            if !starts.contains(&start) {
                self.create_previous_record_right_window(ctx, start, record, close_time)?;
            }
        }
        match combined {
            None => {
                let agg = make((self.init)(), ts);
                self.update_window_and_forward(ctx, self.window(0), agg, record, close_time)
            }
            Some((start, agg)) => self.update_window_and_forward(
                ctx,
                self.window(start),
                Some(agg),
                record,
                close_time,
            ),
        }
    }

    /// Kafka's `createWindows`: the previous record's right window, this record's left
    /// window and its right window, each if missing and not empty.
    #[allow(clippy::too_many_arguments)]
    fn create_windows(
        &mut self,
        ctx: Ctx<'_, '_, K, VA>,
        record: &Record<K, V>,
        close_time: i64,
        starts: &BTreeSet<i64>,
        right_win_agg: Option<ValueAndTimestamp<VA>>,
        left_win_agg: Option<ValueAndTimestamp<VA>>,
        left_created: bool,
        right_created: bool,
        previous: Option<i64>,
    ) -> Result<()> {
        let td = self.windows.time_difference_ms();
        let ts = record.timestamp;
        if let Some(p) = previous {
            let start = p.saturating_add(1);
            if !starts.contains(&start) && start.saturating_add(td) >= ts {
                self.create_previous_record_right_window(ctx, start, record, close_time)?;
            }
        }
        if !left_created {
            // Kafka's leftWindowNotEmpty: the previous record falls in the left window.
            let not_empty = previous.is_some_and(|p| ts.saturating_sub(td) <= p);
            let agg = match (&left_win_agg, not_empty) {
                (Some(left), true) => make(Some(left.value.clone()), ts),
                _ => make((self.init)(), ts),
            };
            let window = Window {
                start: ts.saturating_sub(td),
                end: ts,
            };
            self.update_window_and_forward(ctx, window, agg, record, close_time)?;
        }
        // Kafka's rightWindowIsNotEmpty: a later record falls in the right window.
        if let Some(right) = right_win_agg.filter(|r| !right_created && r.timestamp > ts) {
            self.create_current_record_right_window(ctx, ts, right, record)?;
        }
        Ok(())
    }

    /// Kafka's `createCurrentRecordRightWindow`: `[ts + 1, ts + 1 + difference]` holds the
    /// aggregate (and timestamp) of the later records found.
    fn create_current_record_right_window(
        &mut self,
        ctx: Ctx<'_, '_, K, VA>,
        ts: i64,
        right: ValueAndTimestamp<VA>,
        record: &Record<K, V>,
    ) -> Result<()> {
        let window = self.window(ts.saturating_add(1));
        ctx.timestamped_window_store::<K, VA>(&self.store)?.put(
            &record.key,
            Some(&right),
            window.start,
        )?;
        self.maybe_forward_update(ctx, record, window, None, right.value, right.timestamp)
    }

    /// Kafka's `createPreviousRecordRightWindow`: a new window starting right after the
    /// previous record, with this record in it.
    fn create_previous_record_right_window(
        &mut self,
        ctx: Ctx<'_, '_, K, VA>,
        start: i64,
        record: &Record<K, V>,
        close_time: i64,
    ) -> Result<()> {
        let agg = make((self.init)(), record.timestamp);
        self.update_window_and_forward(ctx, self.window(start), agg, record, close_time)
    }

    /// Kafka's `updateWindowAndForward`: aggregates the record into `window` (whose
    /// current aggregate is `agg`) unless the window ended before the close time.
    fn update_window_and_forward(
        &mut self,
        ctx: Ctx<'_, '_, K, VA>,
        window: Window,
        agg: Option<ValueAndTimestamp<VA>>,
        record: &Record<K, V>,
        close_time: i64,
    ) -> Result<()> {
        if window.end < close_time {
            self.log_skipped(ctx, record.timestamp, close_time, window);
            return Ok(());
        }
        let (old, new_timestamp) = match agg {
            Some(a) => (Some(a.value), record.timestamp.max(a.timestamp)),
            None => (None, record.timestamp),
        };
        let new = (self.aggregate)(&record.key, record.value.clone(), old.clone());
        ctx.timestamped_window_store::<K, VA>(&self.store)?.put(
            &record.key,
            Some(&ValueAndTimestamp::new(new.clone(), new_timestamp)),
            window.start,
        )?;
        self.maybe_forward_update(ctx, record, window, old, new, new_timestamp)
    }

    /// Kafka's `maybeForwardUpdate`: nothing with emit-on-window-close or a cache (the
    /// cache flush forwards it).
    fn maybe_forward_update(
        &self,
        ctx: Ctx<'_, '_, K, VA>,
        record: &Record<K, V>,
        window: Window,
        old: Option<VA>,
        new: VA,
        timestamp: i64,
    ) -> Result<()> {
        if self.emit.is_on_close() || self.cached {
            return Ok(());
        }
        ctx.forward(Record {
            key: Windowed {
                key: record.key.clone(),
                window,
            },
            value: Change {
                new: Some(new),
                old,
            },
            timestamp,
            headers: record.headers.clone(),
        })
    }

    /// Kafka's `maybeForwardFinalResult` with the sliding bounds: windows starting in
    /// `[max(0, last close - difference), close - difference - 1]` (0 at the first emit),
    /// i.e. ending before the close time, by start then key bytes.
    fn maybe_forward_final(
        &mut self,
        ctx: Ctx<'_, '_, K, VA>,
        record: &Record<K, V>,
        close_time: i64,
    ) -> Result<()> {
        if !self.emit.is_on_close() {
            return Ok(());
        }
        let now = ctx.current_system_time_ms();
        if !self.emitter.should_emit_final(now, close_time) {
            return Ok(());
        }
        let td = self.windows.time_difference_ms();
        let upper = close_time.saturating_sub(td).saturating_sub(1);
        if upper < 0 {
            return Ok(());
        }
        let last = self.emitter.last_emit_window_close_time;
        let lower = if last == NO_TIMESTAMP {
            0
        } else {
            last.saturating_sub(td).max(0)
        };
        if lower <= upper {
            let mut closed = ctx
                .timestamped_window_store::<K, VA>(&self.store)?
                .fetch_all(lower, upper)?
                .collect::<Result<Vec<_>>>()?;
            // The store lists by key bytes, then start; Kafka's time-ordered store by
            // start, then key bytes.
            closed.sort_by_key(|(w, _)| w.window.start);
            for (key, agg) in closed {
                forward_final(ctx, key, agg.value, agg.timestamp, &record.headers)?;
            }
        }
        self.emitter.emitted(ctx, &self.store, close_time);
        Ok(())
    }

    fn log_skipped(
        &self,
        ctx: Ctx<'_, '_, K, VA>,
        timestamp: i64,
        close_time: i64,
        window: Window,
    ) {
        let (topic, partition, offset) = metadata(ctx);
        tracing::warn!(
            node = ctx.node_name(),
            topic,
            partition,
            offset,
            timestamp,
            window_start = window.start,
            window_end = window.end,
            expiration = close_time,
            stream_time = self.observed_stream_time,
            "Skipping record for expired window"
        );
        ctx.record_dropped();
    }
}

impl<K, V, VA> Processor<K, V, Windowed<K>, Change<VA>>
    for SlidingWindowAggregateProcessor<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
    VA: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>) -> Result<()> {
        if self.emit.is_on_close() {
            self.emitter.init(ctx, &self.store);
        } else {
            self.cached = ctx.forward_timestamped_window_cache_flushes(&self.store)?;
        }
        if self.key_serde.is_none() {
            self.key_serde = ctx.serdes().get::<K>();
        }
        if self.value_serde.is_none() {
            self.value_serde = ctx.serdes().get::<V>();
        }
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
        record: Record<K, V>,
    ) -> Result<()> {
        let null_key = self
            .key_serde
            .as_ref()
            .is_some_and(|s| s.is_null(&record.key));
        let null_value = self
            .value_serde
            .as_ref()
            .is_some_and(|s| s.is_null(&record.value));
        if null_key || null_value {
            let (topic, partition, offset) = metadata(ctx);
            tracing::warn!(
                node = ctx.node_name(),
                topic,
                partition,
                offset,
                "Skipping record due to null key or value"
            );
            ctx.record_dropped();
            return Ok(());
        }
        let ts = record.timestamp;
        self.observed_stream_time = self.observed_stream_time.max(ts);
        let td = self.windows.time_difference_ms();
        let close_time = self
            .observed_stream_time
            .saturating_sub(self.windows.grace_period_ms());
        let window_end = ts.saturating_add(td);
        if window_end < close_time {
            self.log_skipped(
                ctx,
                ts,
                close_time,
                Window {
                    start: ts,
                    end: window_end,
                },
            );
            return Ok(());
        }
        if ts < td {
            // Kafka returns after processEarly: no final results emitted for an early
            // record.
            return self.process_early(ctx, &record, close_time);
        }
        self.process_reverse(ctx, &record, close_time)?;
        self.maybe_forward_final(ctx, &record, close_time)
    }
}

fn metadata<K, V>(ctx: &ProcessorContext<'_, K, V>) -> (String, i32, i64) {
    ctx.record_metadata().map_or((String::new(), -1, -1), |m| {
        (m.topic.clone(), m.partition, m.offset)
    })
}

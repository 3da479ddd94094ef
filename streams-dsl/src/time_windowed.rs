//! `TimeWindowedKStream`: a grouped stream cut into time windows, ready for a windowed
//! aggregation (Kafka's `TimeWindowedKStream`), and the processor it compiles into
//! (Kafka's `KStreamWindowAggregate`).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use streams_core::{
    Change, Processor, ProcessorContext, Record, Result, SharedSerde, StoreBuilder, StreamsError,
    TimeWindowedSerde, ValueAndTimestamp, Windowed,
};

use crate::emit::{
    CloseEmitter, EmitStrategy, NO_TIMESTAMP, changelog_retention, forward_final,
    local_retention_ms,
};
use crate::kgrouped::KGroupedStream;
use crate::ktable::KTable;
use crate::options::Materialized;
use crate::processors::Combine;
use crate::windows::TimeWindows;

/// A grouped stream in tumbling or hopping windows (Kafka's `TimeWindowedKStream`), from
/// [`KGroupedStream::windowed_by`]: `count`, `reduce` or `aggregate` it into a
/// [`KTable`] keyed by [`Windowed`] keys.
///
/// Semantics are Kafka Streams' (`KStreamWindowAggregate`): each record updates every
/// window containing it ([`TimeWindows::windows_for`]); the aggregation keeps its own
/// stream time (the largest timestamp it has seen) and drops a record for each of its
/// windows whose end plus the grace period is at or before that stream time (logged as a
/// warning and counted in `dropped-records`); a record with a null key (its key serde's
/// [`Serde::is_null`](streams_core::Serde::is_null)) is dropped and counted too. A null
/// value is aggregated like any other (`count` counts it). Each update's timestamp is the
/// largest timestamp of the records in its window. The store is a timestamped window
/// store keeping windows for size + grace (or [`Materialized::with_retention`]); with its
/// cache on (the default), updates reach downstream as the cache flushes.
pub struct TimeWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: TimeWindows,
    emit: EmitStrategy,
}

impl<K, V> std::fmt::Debug for TimeWindowedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeWindowedKStream")
            .field("grouped", &self.grouped)
            .field("windows", &self.windows)
            .field("emit", &self.emit)
            .finish()
    }
}

impl<K, V> TimeWindowedKStream<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(grouped: KGroupedStream<K, V>, windows: TimeWindows) -> Self {
        TimeWindowedKStream {
            grouped,
            windows,
            emit: EmitStrategy::default(),
        }
    }

    /// When the aggregation emits (Kafka's `emitStrategy`, KIP-825): on every window
    /// update (the default) or once per window, after it closes
    /// ([`EmitStrategy::on_window_close`]: window end + grace at or before stream time).
    /// Closed windows are emitted while a later record is processed (at most once per
    /// emit interval of wall-clock time), with their stored timestamp (the largest record
    /// timestamp in the window) and that record's headers, by window start, then key
    /// bytes. As in Kafka, the store keeps its cache (if enabled), which then only batches
    /// changelog writes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TimeWindowedSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, EmitStrategy, Grouped, Materialized, Produced, StreamsBuilder,
    ///     TimeWindows};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("clicks", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(TimeWindows::of_size_and_grace(Duration::from_millis(10), Duration::from_millis(2))?)
    ///     .emit_strategy(EmitStrategy::on_window_close())
    ///     .count(Materialized::as_store("counts"))
    ///     .to_stream()
    ///     .map_values(|n: Option<i64>| n.unwrap_or(0))
    ///     .to("out", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("clicks", StringSerde, StringSerde)?;
    /// for ts in [1, 5, 11, 12] { // 12 - grace 2 closes [0, 10)
    ///     input.pipe_input_with_timestamp("u".into(), "click".into(), ts)?;
    /// }
    /// let out = driver.create_output_topic("out",
    ///     TimeWindowedSerde::new(StringSerde, Duration::from_millis(10)), I64Serde);
    /// let got: Vec<_> = out.read_records_to_vec()?.into_iter()
    ///     .map(|r| (r.key.to_string(), r.value, r.timestamp)).collect();
    /// assert_eq!(got, [("[u@0/10]".to_owned(), 2, 5)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn emit_strategy(mut self, emit: EmitStrategy) -> Self {
        self.emit = emit;
        self
    }

    /// Counts the records per key and window.
    ///
    /// As Kafka's `count(Materialized)`, an unnamed store burns one generated name first,
    /// so `KSTREAM-SOURCE-0000000000` is followed by `KSTREAM-AGGREGATE-0000000003` with
    /// store `KSTREAM-AGGREGATE-STATE-STORE-0000000002`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TimeWindowedSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder, TimeWindows};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("clicks", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60))?)
    ///     .count(Materialized::as_store("clicks-per-minute"))
    ///     .to_stream()
    ///     .map_values(|n: Option<i64>| n.unwrap_or(0))
    ///     .to("counts", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("clicks", StringSerde, StringSerde)?;
    /// for ts in [1_000, 59_999, 60_000] {
    ///     input.pipe_input_with_timestamp("u".into(), "click".into(), ts)?;
    /// }
    /// let out = driver.create_output_topic("counts",
    ///     TimeWindowedSerde::new(StringSerde, Duration::from_secs(60)), I64Serde);
    /// let counts: Vec<_> = out.read_records_to_vec()?.into_iter()
    ///     .map(|r| (r.key.to_string(), r.value, r.timestamp)).collect();
    /// assert_eq!(counts, [("[u@0/60000]".to_owned(), 1, 1_000),
    ///                     ("[u@0/60000]".to_owned(), 2, 59_999),
    ///                     ("[u@60000/120000]".to_owned(), 1, 60_000)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn count(self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        let m = self.grouped.windowed_count_materialized(materialized);
        self.build(
            Arc::new(|_k: &K, _v: V, n: Option<i64>| n.unwrap_or(0) + 1),
            m,
            "KSTREAM-AGGREGATE-",
        )
    }

    /// Combines the values of each key and window with `reducer(aggregate, value)`; the
    /// first value in a window is its initial aggregate.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, StreamsBuilder, TimeWindows};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("amounts", Consumed::with(StringSerde, I64Serde))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_millis(10))?)
    ///     .reduce(|a: i64, b: i64| a.max(b), Materialized::as_store("max")
    ///         .with_retention(Duration::from_secs(60)));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("amounts", StringSerde, I64Serde)?;
    /// for (v, ts) in [(3, 1), (9, 2), (4, 12)] { input.pipe_input_with_timestamp("k".into(), v, ts)?; }
    /// assert_eq!(driver.read_window_store::<String, i64>("max")?,
    ///            vec![("k".into(), 0, 9), ("k".into(), 10, 4)]);
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
            Arc::new(move |_k: &K, v: V, old: Option<V>| match old {
                Some(agg) => reducer(agg, v),
                None => v,
            }),
            m,
            "KSTREAM-REDUCE-",
        )
    }

    /// Folds the values of each key and window into an aggregate: `initializer()` for a
    /// new window, then `aggregator(key, value, aggregate)` for each record.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, StreamsBuilder, TimeWindows};
    /// let builder = StreamsBuilder::new();
    /// let hopping = TimeWindows::of_size_with_no_grace(Duration::from_millis(10))?
    ///     .advance_by(Duration::from_millis(5))?;
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(hopping)
    ///     .aggregate(|| 0i64, |_k: &String, v: String, total: i64| total + v.len() as i64,
    ///                Materialized::as_store("chars").with_value_serde(I64Serde)
    ///                    .with_retention(Duration::from_secs(60)));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("in", StringSerde, StringSerde)?;
    /// input.pipe_input_with_timestamp("k".into(), "abc".into(), 7)?; // windows [0,10) and [5,15)
    /// input.pipe_input_with_timestamp("k".into(), "de".into(), 12)?; // windows [5,15) and [10,20)
    /// assert_eq!(driver.read_window_store::<String, i64>("chars")?,
    ///            vec![("k".into(), 0, 3), ("k".into(), 5, 5), ("k".into(), 10, 2)]);
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
        self.build(
            Arc::new(move |k: &K, v: V, old: Option<VA>| {
                aggregator(k, v, old.unwrap_or_else(&initializer))
            }),
            materialized,
            "KSTREAM-AGGREGATE-",
        )
    }

    /// Compiles a windowed aggregation as Kafka's `TimeWindowedKStreamImpl` and
    /// `GroupedStreamAggregateBuilder` do: the store name, the processor name, the
    /// repartition step if needed, then the processor and its timestamped window store
    /// (retention = size + grace unless materialized with more; less is an error kept for
    /// [`StreamsBuilder::build`](crate::StreamsBuilder::build)).
    fn build<VA>(
        self,
        combine: Combine<K, V, VA>,
        materialized: Materialized<K, VA>,
        prefix: &str,
    ) -> KTable<Windowed<K>, VA>
    where
        VA: Clone + Send + Sync + 'static,
    {
        let TimeWindowedKStream {
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
        let (parent, key_serde, _) = grouped.source_for(&store_name);
        let key_serde = materialized.key_serde.clone().or(key_serde);
        let store = window_store(
            &store_name,
            &windows,
            emit,
            &materialized,
            key_serde.clone(),
        );
        let supplier_store = store_name.clone();
        let supplier_key_serde = key_serde.clone();
        let supplier = move || WindowAggregateProcessor::<K, V, VA> {
            store: supplier_store.clone(),
            windows,
            emit,
            emitter: CloseEmitter::new(),
            combine: Arc::clone(&combine),
            cached: false,
            observed_stream_time: NO_TIMESTAMP,
            key_serde: supplier_key_serde.clone(),
        };
        state.borrow_mut().apply(|t| {
            let store = store?;
            t.add_processor(&name, supplier, &[&parent])?;
            t.add_state_store(store, &[&name])?;
            Ok(())
        });
        let windowed_key_serde = key_serde.map(|k| {
            Arc::new(TimeWindowedSerde::from_shared(k, windows.size_ms()))
                as SharedSerde<Windowed<K>>
        });
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

/// The timestamped window store of a windowed aggregation (Kafka's
/// `WindowStoreMaterializer`): retention = `Materialized::with_retention`, else size +
/// grace; a retention below size + grace is an error.
fn window_store<K: 'static, VA: 'static>(
    store_name: &str,
    windows: &TimeWindows,
    emit: EmitStrategy,
    materialized: &Materialized<K, VA>,
    key_serde: Option<SharedSerde<K>>,
) -> Result<StoreBuilder> {
    let needed = windows.size_ms().saturating_add(windows.grace_period_ms());
    let retention_ms = match materialized.retention {
        Some(r) => i64::try_from(r.as_millis()).unwrap_or(i64::MAX),
        None => needed,
    };
    if retention_ms < needed {
        return Err(StreamsError::Config {
            key: "retention.ms".to_owned(),
            reason: format!(
                "the retention period of the window store `{store_name}` must be no smaller \
                 than its window size plus the grace period; got size={} ms, grace={} ms, \
                 retention={retention_ms} ms",
                windows.size_ms(),
                windows.grace_period_ms()
            ),
        });
    }
    let to_duration = |ms: i64| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let mut store = StoreBuilder::timestamped_window(
        store_name.to_owned(),
        to_duration(local_retention_ms(emit, retention_ms)),
        to_duration(windows.size_ms()),
        false,
    )?
    .with_caching(materialized.caching)
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

/// Kafka's `KStreamWindowAggregate` processor for [`TimeWindows`].
struct WindowAggregateProcessor<K, V, VA> {
    store: String,
    windows: TimeWindows,
    emit: EmitStrategy,
    emitter: CloseEmitter,
    combine: Combine<K, V, VA>,
    /// The store is cached: updates reach downstream through its flushes.
    cached: bool,
    /// The largest timestamp this processor has seen (Kafka's `observedStreamTime`; -1
    /// before the first record, and again after a restart).
    observed_stream_time: i64,
    /// The grouped key serde (else the application's default), to tell null keys.
    key_serde: Option<SharedSerde<K>>,
}

impl<K, V, VA> Processor<K, V, Windowed<K>, Change<VA>> for WindowAggregateProcessor<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
    VA: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>) -> Result<()> {
        if self.emit.is_on_close() {
            // Kafka's processor sets no cache flush listener with emit-on-window-close:
            // the cache (if any) only batches the store's writes.
            self.emitter.init(ctx, &self.store);
        } else {
            self.cached = ctx.forward_timestamped_window_cache_flushes(&self.store)?;
        }
        if self.key_serde.is_none() {
            self.key_serde = ctx.serdes().get::<K>();
        }
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
        record: Record<K, V>,
    ) -> Result<()> {
        if self
            .key_serde
            .as_ref()
            .is_some_and(|s| s.is_null(&record.key))
        {
            let (topic, partition, offset) = metadata(ctx);
            tracing::warn!(
                node = ctx.node_name(),
                topic,
                partition,
                offset,
                "Skipping record due to null key"
            );
            ctx.record_dropped();
            return Ok(());
        }
        let timestamp = record.timestamp;
        self.observed_stream_time = self.observed_stream_time.max(timestamp);
        let close_time = self
            .observed_stream_time
            .saturating_sub(self.windows.grace_period_ms());
        for window in self.windows.windows_for(timestamp) {
            if window.end <= close_time {
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
                continue;
            }
            let mut store = ctx.timestamped_window_store::<K, VA>(&self.store)?;
            let old = store.fetch(&record.key, window.start)?;
            let (old, new_timestamp) = match old {
                Some(o) => (Some(o.value), timestamp.max(o.timestamp)),
                None => (None, timestamp),
            };
            let new = (self.combine)(&record.key, record.value.clone(), old.clone());
            store.put(
                &record.key,
                Some(&ValueAndTimestamp::new(new.clone(), new_timestamp)),
                window.start,
            )?;
            if !self.cached && !self.emit.is_on_close() {
                ctx.forward(Record {
                    key: Windowed {
                        key: record.key.clone(),
                        window,
                    },
                    value: Change {
                        new: Some(new),
                        old,
                    },
                    timestamp: new_timestamp,
                    headers: record.headers.clone(),
                })?;
            }
        }
        self.maybe_forward_final(ctx, &record, close_time)
    }
}

impl<K, V, VA> WindowAggregateProcessor<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
    VA: Clone + Send + 'static,
{
    /// Kafka's `maybeForwardFinalResult` with `KStreamWindowAggregate`'s bounds: windows
    /// starting in `[max(0, last close - size) + 1, close - size]` (from 0 at the first
    /// emit), i.e. ending at or before the close time, skipped when no new window closed
    /// (`shouldRangeFetch`); by start, then key bytes (Kafka's time-ordered store).
    fn maybe_forward_final(
        &mut self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
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
        let size = self.windows.size_ms();
        let upper = close_time.saturating_sub(size);
        if upper < 0 {
            return Ok(());
        }
        let last = self.emitter.last_emit_window_close_time;
        let lower = if last == NO_TIMESTAMP {
            0
        } else {
            last.saturating_sub(size).max(0).saturating_add(1)
        };
        if last != NO_TIMESTAMP
            && self.windows.windows_for(upper) == self.windows.windows_for(lower - 1)
        {
            return Ok(());
        }
        if lower <= upper {
            let mut closed = ctx
                .timestamped_window_store::<K, VA>(&self.store)?
                .fetch_all(lower, upper)?
                .collect::<Result<Vec<_>>>()?;
            closed.sort_by_key(|(w, _)| w.window.start);
            for (key, agg) in closed {
                forward_final(ctx, key, agg.value, agg.timestamp, &record.headers)?;
            }
        }
        self.emitter.emitted(ctx, &self.store, close_time);
        Ok(())
    }
}

fn metadata<K, V>(ctx: &ProcessorContext<'_, K, V>) -> (String, i32, i64) {
    ctx.record_metadata().map_or((String::new(), -1, -1), |m| {
        (m.topic.clone(), m.partition, m.offset)
    })
}

//! `SessionWindowedKStream`: a grouped stream cut into sessions, ready for a session
//! aggregation (Kafka's `SessionWindowedKStream`), and the processor it compiles into
//! (Kafka's `KStreamSessionWindowAggregate`, emit on update).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use streams_core::{
    Change, Processor, ProcessorContext, Record, Result, SessionWindowedSerde, SharedSerde,
    StoreBuilder, StreamsError, Window, Windowed,
};

use crate::emit::{CloseEmitter, EmitStrategy, NO_TIMESTAMP, forward_final};
use crate::kgrouped::KGroupedStream;
use crate::ktable::KTable;
use crate::options::Materialized;
use crate::windows::SessionWindows;

/// The aggregate of a new session before its records and merged sessions: Kafka's
/// initializer (`None` is Kafka's null, what `reduce` starts from).
type Init<VA> = Arc<dyn Fn() -> Option<VA> + Send + Sync>;
/// Kafka's aggregator: `(key, value, aggregate so far)` → the new aggregate.
type Aggregate<K, V, VA> = Arc<dyn Fn(&K, V, Option<VA>) -> VA + Send + Sync>;
/// Kafka's session merger: `(key, aggregate so far, a merged session's aggregate)`.
type Merge<K, VA> = Arc<dyn Fn(&K, Option<VA>, VA) -> Option<VA> + Send + Sync>;

/// A grouped stream in session windows (Kafka's `SessionWindowedKStream`), from
/// [`KGroupedStream::windowed_by`] with [`SessionWindows`]: `count`, `reduce` or
/// `aggregate` it into a [`KTable`] keyed by [`Windowed`] keys whose windows are sessions
/// `[start, end]` (both inclusive).
///
/// Semantics are Kafka Streams' (`KStreamSessionWindowAggregate`, emit on update): a
/// record at `ts` looks up the sessions of its key ending at or after `ts - gap` and
/// starting at or before `ts + gap`; starting from the initializer, their aggregates are
/// merged (the merger, in store order) and the record is aggregated in; the result is one
/// session from the smallest start to the largest end (the record's timestamp included).
/// If that session differs from `[ts, ts]`, every session found is removed from the store
/// and forwarded as a delete (new value `None`) before the new session is forwarded. The
/// aggregation keeps its own stream time (the largest timestamp it has seen); a record is
/// dropped (warning log, counted in `dropped-records`) when its merged session ends before
/// stream time − gap − grace. A null key (its key serde's
/// [`Serde::is_null`](streams_core::Serde::is_null)) is dropped and counted; a null value
/// is aggregated (`count` counts it). Every forwarded record's timestamp is its session's
/// end. The store is a session store keeping sessions for gap + grace (or
/// [`Materialized::with_retention`], which may not be less); with its cache on (the
/// default), updates reach downstream as the cache flushes.
pub struct SessionWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: SessionWindows,
    emit: EmitStrategy,
}

impl<K, V> std::fmt::Debug for SessionWindowedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionWindowedKStream")
            .field("grouped", &self.grouped)
            .field("windows", &self.windows)
            .field("emit", &self.emit)
            .finish()
    }
}

impl<K, V> SessionWindowedKStream<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(grouped: KGroupedStream<K, V>, windows: SessionWindows) -> Self {
        SessionWindowedKStream {
            grouped,
            windows,
            emit: EmitStrategy::default(),
        }
    }

    /// When the aggregation emits (Kafka's `SessionWindowedKStream#emitStrategy`): on
    /// every session update (the default: merged-away sessions as deletes, then the new
    /// session) or once per session, after it closes ([`EmitStrategy::on_window_close`]:
    /// session end + gap + grace before stream time; no deletes are emitted, and the store
    /// is not cached, as in Kafka). Closed sessions are emitted while a later record is
    /// processed (at most once per emit interval of wall-clock time), with their end as the
    /// timestamp and that record's headers, by session end, then key bytes, then start.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{I64Serde, Nullable, SessionWindowedSerde, StreamsConfig, StringSerde,
    ///     TopologyTestDriver};
    /// use streams_dsl::{Consumed, EmitStrategy, Grouped, Materialized, Produced, SessionWindows,
    ///     StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("clicks", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_millis(10))?)
    ///     .emit_strategy(EmitStrategy::on_window_close())
    ///     .count(Materialized::as_store("sessions"))
    ///     .to_stream()
    ///     .to("counts", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("clicks", StringSerde, StringSerde)?;
    /// for ts in [0, 5, 40] { // 40 - gap 10 closes the session [0, 5]
    ///     input.pipe_input_with_timestamp("u".into(), "click".into(), ts)?;
    /// }
    /// let out = driver.create_output_topic("counts", SessionWindowedSerde::new(StringSerde),
    ///     Nullable(I64Serde));
    /// let got: Vec<_> = out.read_records_to_vec()?.into_iter()
    ///     .map(|r| (r.key.to_string(), r.value, r.timestamp)).collect();
    /// assert_eq!(got, [("[u@0/5]".to_owned(), Some(2), 5)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn emit_strategy(mut self, emit: EmitStrategy) -> Self {
        self.emit = emit;
        self
    }

    /// Counts the records per key and session; merged sessions add their counts.
    ///
    /// As Kafka's `count(Materialized)`, an unnamed store burns one generated name first.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{I64Serde, Nullable, SessionWindowedSerde, StreamsConfig, StringSerde,
    ///     TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, Produced, SessionWindows, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("clicks", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_millis(10))?)
    ///     // keep sessions for a minute (the default, gap + grace, forgets them sooner)
    ///     .count(Materialized::as_store("sessions").with_caching_disabled()
    ///         .with_retention(Duration::from_secs(60)))
    ///     .to_stream()
    ///     .to("counts", Produced::default());
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("clicks", StringSerde, StringSerde)?;
    /// for ts in [0, 20, 10] { // the third record bridges the first two sessions
    ///     input.pipe_input_with_timestamp("u".into(), "click".into(), ts)?;
    /// }
    /// let out = driver.create_output_topic("counts", SessionWindowedSerde::new(StringSerde),
    ///     Nullable(I64Serde));
    /// let got: Vec<_> = out.read_records_to_vec()?.into_iter()
    ///     .map(|r| (r.key.to_string(), r.value, r.timestamp)).collect();
    /// assert_eq!(got, [("[u@0/0]".to_owned(), Some(1), 0),
    ///                  ("[u@20/20]".to_owned(), Some(1), 20),
    ///                  ("[u@0/0]".to_owned(), None, 0),      // merged away
    ///                  ("[u@20/20]".to_owned(), None, 20),   // merged away
    ///                  ("[u@0/20]".to_owned(), Some(3), 20)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn count(self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        let m = self.grouped.windowed_count_materialized(materialized);
        self.build(
            Arc::new(|| Some(0)),
            Arc::new(|_k: &K, _v: V, n: Option<i64>| n.unwrap_or(0).saturating_add(1)),
            Arc::new(|_k: &K, a: Option<i64>, b: i64| Some(a.unwrap_or(0).saturating_add(b))),
            m,
            "KSTREAM-AGGREGATE-",
        )
    }

    /// Combines the values of each key and session with `reducer(aggregate, value)`; the
    /// first value of a session is its initial aggregate, and merged sessions are combined
    /// with the same `reducer` (Kafka's `reduce`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, SessionWindows, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("amounts", Consumed::with(StringSerde, I64Serde))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_millis(5))?)
    ///     .reduce(|a: i64, b: i64| a + b, Materialized::as_store("totals")
    ///         .with_retention(Duration::from_secs(60)));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("amounts", StringSerde, I64Serde)?;
    /// for (v, ts) in [(1, 0), (2, 4), (10, 20)] { input.pipe_input_with_timestamp("k".into(), v, ts)?; }
    /// assert_eq!(driver.read_session_store::<String, i64>("totals")?,
    ///            vec![("k".into(), 0, 4, 3), ("k".into(), 20, 20, 10)]);
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
        let reducer = Arc::new(reducer);
        let merge_reducer = Arc::clone(&reducer);
        self.build(
            Arc::new(|| None),
            Arc::new(move |_k: &K, v: V, agg: Option<V>| match agg {
                Some(a) => reducer(a, v),
                None => v,
            }),
            // Kafka's mergerForAggregator: merger(k, one, two) = aggregator(k, two, one).
            Arc::new(move |_k: &K, agg: Option<V>, other: V| match agg {
                Some(a) => Some(merge_reducer(a, other)),
                None => Some(other),
            }),
            m,
            "KSTREAM-REDUCE-",
        )
    }

    /// Folds the values of each key and session into an aggregate: `initializer()` for a
    /// new session, `merger(key, aggregate, other)` for each session it absorbs, then
    /// `aggregator(key, value, aggregate)` for the record (Kafka's `aggregate`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Grouped, Materialized, SessionWindows, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("pages", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SessionWindows::of_inactivity_gap_and_grace(Duration::from_millis(10),
    ///                                                            Duration::from_millis(100))?)
    ///     .aggregate(String::new,
    ///                |_user: &String, page: String, path: String| path + &page,
    ///                |_user: &String, a: String, b: String| a + &b,
    ///                Materialized::as_store("paths").with_value_serde(StringSerde));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("pages", StringSerde, StringSerde)?;
    /// input.pipe_input_with_timestamp("u".into(), "a".into(), 0)?;
    /// input.pipe_input_with_timestamp("u".into(), "c".into(), 20)?;
    /// input.pipe_input_with_timestamp("u".into(), "b".into(), 10)?; // joins [0,0] and [20,20]
    /// assert_eq!(driver.read_session_store::<String, String>("paths")?,
    ///            vec![("u".into(), 0, 20, "acb".into())]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn aggregate<VA, I, F, M>(
        self,
        initializer: I,
        aggregator: F,
        merger: M,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA>
    where
        VA: Clone + Send + Sync + 'static,
        I: Fn() -> VA + Send + Sync + 'static,
        F: Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        M: Fn(&K, VA, VA) -> VA + Send + Sync + 'static,
    {
        let initializer = Arc::new(initializer);
        let init = Arc::clone(&initializer);
        let init2 = Arc::clone(&initializer);
        self.build(
            Arc::new(move || Some(init())),
            Arc::new(move |k: &K, v: V, agg: Option<VA>| {
                aggregator(k, v, agg.unwrap_or_else(|| initializer()))
            }),
            Arc::new(move |k: &K, agg: Option<VA>, other: VA| {
                Some(merger(k, agg.unwrap_or_else(|| init2()), other))
            }),
            materialized,
            "KSTREAM-AGGREGATE-",
        )
    }

    /// Compiles a session aggregation as Kafka's `SessionWindowedKStreamImpl` and
    /// `GroupedStreamAggregateBuilder` do: the store name, the processor name, the
    /// repartition step if needed, then the processor and its session store (retention =
    /// gap + grace unless materialized with more; less is an error kept for
    /// [`StreamsBuilder::build`](crate::StreamsBuilder::build)).
    fn build<VA>(
        self,
        init: Init<VA>,
        aggregate: Aggregate<K, V, VA>,
        merge: Merge<K, VA>,
        materialized: Materialized<K, VA>,
        prefix: &str,
    ) -> KTable<Windowed<K>, VA>
    where
        VA: Clone + Send + Sync + 'static,
    {
        let SessionWindowedKStream {
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
        let store = session_store(
            &store_name,
            &windows,
            emit,
            &materialized,
            key_serde.clone(),
        );
        let supplier_store = store_name.clone();
        let supplier_key_serde = key_serde.clone();
        let supplier = move || SessionWindowAggregateProcessor::<K, V, VA> {
            store: supplier_store.clone(),
            windows,
            init: Arc::clone(&init),
            aggregate: Arc::clone(&aggregate),
            merge: Arc::clone(&merge),
            emit,
            emitter: CloseEmitter::new(),
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
        let windowed_key_serde = key_serde
            .map(|k| Arc::new(SessionWindowedSerde::from_shared(k)) as SharedSerde<Windowed<K>>);
        KTable::new(
            state,
            name,
            store_name,
            windowed_key_serde,
            materialized.value_serde,
        )
        // Kafka's GraphGraceSearchUtil: a session window closes gap + grace after its end.
        .with_window_grace(Some(
            windows
                .grace_period_ms()
                .saturating_add(windows.inactivity_gap_ms()),
        ))
    }
}

/// The session store of a session aggregation (Kafka's `SessionStoreMaterializer`):
/// retention = `Materialized::with_retention`, else gap + grace; a retention below gap +
/// grace is an error; not cached with emit-on-window-close.
fn session_store<K: 'static, VA: 'static>(
    store_name: &str,
    windows: &SessionWindows,
    emit: EmitStrategy,
    materialized: &Materialized<K, VA>,
    key_serde: Option<SharedSerde<K>>,
) -> Result<StoreBuilder> {
    let needed = windows
        .inactivity_gap_ms()
        .saturating_add(windows.grace_period_ms());
    let retention_ms = match materialized.retention {
        Some(r) => i64::try_from(r.as_millis()).unwrap_or(i64::MAX),
        None => needed,
    };
    if retention_ms < needed {
        return Err(StreamsError::Config {
            key: "retention.ms".to_owned(),
            reason: format!(
                "the retention period of the session store `{store_name}` must be no smaller \
                 than the session inactivity gap plus the grace period; got gap={} ms, \
                 grace={} ms, retention={retention_ms} ms",
                windows.inactivity_gap_ms(),
                windows.grace_period_ms()
            ),
        });
    }
    let retention = Duration::from_millis(u64::try_from(retention_ms).unwrap_or(0));
    let mut store = StoreBuilder::session(store_name.to_owned(), retention)
        .with_caching(materialized.caching && !emit.is_on_close())
        .with_logging(materialized.logging);
    if materialized.in_memory {
        store = store.in_memory();
    }
    for (k, v) in &materialized.changelog_config {
        store = store.with_changelog_config(k.clone(), v.clone());
    }
    Ok(store.with_serdes(key_serde, materialized.value_serde.clone()))
}

/// Kafka's `KStreamSessionWindowAggregate` processor.
struct SessionWindowAggregateProcessor<K, V, VA> {
    emit: EmitStrategy,
    emitter: CloseEmitter,
    store: String,
    windows: SessionWindows,
    init: Init<VA>,
    aggregate: Aggregate<K, V, VA>,
    merge: Merge<K, VA>,
    /// The store is cached: updates reach downstream through its flushes.
    cached: bool,
    /// The largest timestamp this processor has seen (Kafka's `observedStreamTime`; -1
    /// before the first record, and again after a restart).
    observed_stream_time: i64,
    /// The grouped key serde (else the application's default), to tell null keys.
    key_serde: Option<SharedSerde<K>>,
}

impl<K, V, VA> Processor<K, V, Windowed<K>, Change<VA>>
    for SessionWindowAggregateProcessor<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
    VA: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>) -> Result<()> {
        if self.emit.is_on_close() {
            self.emitter.init(ctx, &self.store);
        } else {
            // Kafka's SessionCacheFlushListener: a flushed session is forwarded with its end
            // as the record timestamp.
            self.cached = ctx.set_windowed_cache_flush_listener::<K, VA, _>(
                &self.store,
                |ctx, mut record| {
                    record.timestamp = record.key.window.end;
                    ctx.forward(record)
                },
            )?;
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
        let gap = self.windows.inactivity_gap_ms();
        self.observed_stream_time = self.observed_stream_time.max(timestamp);
        let close_time = self
            .observed_stream_time
            .saturating_sub(self.windows.grace_period_ms())
            .saturating_sub(gap);

        let found = {
            let store = ctx.session_store::<K, VA>(&self.store)?;
            store
                .find_sessions(
                    &record.key,
                    timestamp.saturating_sub(gap),
                    timestamp.saturating_add(gap),
                )?
                .collect::<Result<Vec<_>>>()?
        };
        let new_window = Window {
            start: timestamp,
            end: timestamp,
        };
        let mut merged_window = new_window;
        let mut agg = (self.init)();
        for (session, value) in &found {
            agg = (self.merge)(&record.key, agg, value.clone());
            merged_window = Window {
                start: merged_window.start.min(session.window.start),
                end: merged_window.end.max(session.window.end),
            };
        }

        let headers = record.headers;
        if merged_window.end < close_time {
            let (topic, partition, offset) = metadata(ctx);
            tracing::warn!(
                node = ctx.node_name(),
                topic,
                partition,
                offset,
                timestamp,
                window = format!("[{},{}]", merged_window.start, merged_window.end),
                expiration = close_time,
                stream_time = self.observed_stream_time,
                "Skipping record for expired window"
            );
            ctx.record_dropped();
            return self.maybe_forward_final(ctx, &headers, close_time);
        }
        let forward_updates = !self.cached && !self.emit.is_on_close();

        if merged_window != new_window {
            for (session, value) in found {
                ctx.session_store::<K, VA>(&self.store)?.remove(&session)?;
                if forward_updates {
                    let timestamp = session.window.end;
                    ctx.forward(Record {
                        key: session,
                        value: Change {
                            new: None,
                            old: Some(value),
                        },
                        timestamp,
                        headers: Vec::new(),
                    })?;
                }
            }
        }

        let new = (self.aggregate)(&record.key, record.value, agg);
        let session = Windowed {
            key: record.key,
            window: merged_window,
        };
        ctx.session_store::<K, VA>(&self.store)?
            .put(&session, &new)?;
        if forward_updates {
            ctx.forward(Record {
                key: session,
                value: Change {
                    new: Some(new),
                    old: None,
                },
                timestamp: merged_window.end,
                headers: Vec::new(),
            })?;
        }
        self.maybe_forward_final(ctx, &headers, close_time)
    }
}

impl<K, V, VA> SessionWindowAggregateProcessor<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
    VA: Clone + Send + 'static,
{
    /// Kafka's `KStreamSessionWindowAggregateProcessor.maybeForwardFinalResult`: sessions
    /// ending in `[max(0, last close), close - 1]` (session ends are inclusive), by end,
    /// then key bytes, then start, each with its end as the timestamp.
    fn maybe_forward_final(
        &mut self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
        headers: &[streams_core::Header],
        close_time: i64,
    ) -> Result<()> {
        if !self.emit.is_on_close() {
            return Ok(());
        }
        let now = ctx.current_system_time_ms();
        if !self.emitter.should_emit_final(now, close_time) {
            return Ok(());
        }
        let upper = close_time.saturating_sub(1);
        if upper < 0 {
            return Ok(());
        }
        let lower = self.emitter.last_emit_window_close_time.max(0);
        if upper < lower {
            return Ok(());
        }
        let closed = ctx
            .session_store::<K, VA>(&self.store)?
            .find_sessions_by_end(lower, upper)?
            .collect::<Result<Vec<_>>>()?;
        for (session, agg) in closed {
            let timestamp = session.window.end;
            forward_final(ctx, session, agg, timestamp, headers)?;
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

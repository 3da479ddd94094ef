//! `KTable::suppress`: Kafka Streams' suppression operator (`KTableImpl#suppress`,
//! `Suppressed`, `BufferConfig`, `KTableSuppressProcessorSupplier`).
//!
//! Updates of a table are held in a change-logged, time-ordered buffer store
//! ([`StoreBuilder::time_ordered_buffer`], Kafka's `InMemoryTimeOrderedKeyValueChangeBuffer`)
//! and forwarded once stream time has passed their buffer time plus the suppression
//! duration: until the window closes (buffer time = window end, duration = the grace of
//! the windowed aggregation upstream), or until a time limit (buffer time = record
//! timestamp). Only the latest update of a buffered key is kept; it is forwarded with its
//! own timestamp and headers and as a `Change` of its new and old value.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use streams_core::{
    Change, Processor, ProcessorContext, Record, Result, StoreBuilder, StreamsError, TopologyError,
    Windowed,
};

use crate::ktable::{KTable, OldValues};

/// Kafka's `BufferFullStrategy`: what a bounded buffer does when a constraint is violated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BufferFullStrategy {
    /// Emit the oldest records until the buffer is within its bounds again.
    Emit,
    /// Fail the processing with [`StreamsError::SuppressionBufferFull`].
    ShutDown,
}

/// Kafka's `Long.MAX_VALUE`, the "no bound" of a buffer.
const UNBOUNDED: u64 = i64::MAX as u64;

#[derive(Debug, Clone, PartialEq, Eq)]
struct BufferSpec {
    max_records: u64,
    max_bytes: u64,
    strategy: BufferFullStrategy,
    /// `None`: logging disabled; else extra changelog topic configs.
    log_config: Option<BTreeMap<String, String>>,
}

/// The buffer of a suppression, bounded or not (Kafka's `Suppressed.BufferConfig`). Its
/// factories give a [`StrictBufferConfig`] (never emits early: unbounded, or shutting the
/// application down when full) or an [`EagerBufferConfig`] (emits the oldest records
/// early when full); both turn into a `BufferConfig` for
/// [`Suppressed::until_time_limit`].
///
/// ```
/// use streams_dsl::BufferConfig;
/// let eager = BufferConfig::max_records(1_000).with_max_bytes(1 << 20);
/// let strict = BufferConfig::max_bytes(1 << 20).shut_down_when_full();
/// let unbounded = BufferConfig::unbounded().with_logging_disabled();
/// let _any: BufferConfig = eager.into();
/// # let _ = (strict, unbounded);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferConfig(BufferSpec);

/// A buffer that never emits early (Kafka's `StrictBufferConfig`): unbounded, or failing
/// the application with [`StreamsError::SuppressionBufferFull`] when a bound is exceeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictBufferConfig(BufferSpec);

/// A bounded buffer that emits its oldest records early when a bound is exceeded
/// (Kafka's `EagerBufferConfig`): fewer duplicates downstream, no guarantee of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EagerBufferConfig(BufferSpec);

impl BufferConfig {
    /// A buffer of at most `record_limit` keys, emitting early when full (Kafka's
    /// `BufferConfig.maxRecords`).
    ///
    /// ```
    /// use streams_dsl::BufferConfig;
    /// let b = BufferConfig::max_records(10);
    /// # let _ = b;
    /// ```
    pub fn max_records(record_limit: u64) -> EagerBufferConfig {
        EagerBufferConfig(BufferSpec {
            max_records: record_limit,
            max_bytes: UNBOUNDED,
            strategy: BufferFullStrategy::Emit,
            log_config: Some(BTreeMap::new()),
        })
    }

    /// A buffer of at most `byte_limit` bytes (Kafka's estimate of its keys, values and
    /// record contexts), emitting early when full (Kafka's `BufferConfig.maxBytes`).
    ///
    /// ```
    /// use streams_dsl::BufferConfig;
    /// let b = BufferConfig::max_bytes(1 << 20).shut_down_when_full();
    /// # let _ = b;
    /// ```
    pub fn max_bytes(byte_limit: u64) -> EagerBufferConfig {
        EagerBufferConfig(BufferSpec {
            max_records: UNBOUNDED,
            max_bytes: byte_limit,
            strategy: BufferFullStrategy::Emit,
            log_config: Some(BTreeMap::new()),
        })
    }

    /// A buffer without bounds (Kafka's `BufferConfig.unbounded`): it holds what the time
    /// bound requires, however much memory that takes.
    ///
    /// ```
    /// use streams_dsl::BufferConfig;
    /// let b = BufferConfig::unbounded();
    /// # let _ = b;
    /// ```
    pub fn unbounded() -> StrictBufferConfig {
        StrictBufferConfig(BufferSpec {
            max_records: UNBOUNDED,
            max_bytes: UNBOUNDED,
            strategy: BufferFullStrategy::ShutDown,
            log_config: Some(BTreeMap::new()),
        })
    }
}

impl From<StrictBufferConfig> for BufferConfig {
    fn from(b: StrictBufferConfig) -> Self {
        BufferConfig(b.0)
    }
}

impl From<EagerBufferConfig> for BufferConfig {
    fn from(b: EagerBufferConfig) -> Self {
        BufferConfig(b.0)
    }
}

macro_rules! buffer_config_methods {
    ($ty:ident) => {
        impl $ty {
            /// The same buffer, bounded to `record_limit` keys (Kafka's `withMaxRecords`).
            ///
            /// ```
            /// use streams_dsl::BufferConfig;
            /// let eager = BufferConfig::max_records(1).with_max_records(5);
            /// let strict = BufferConfig::unbounded().with_max_records(5);
            /// # let _ = (eager, strict);
            /// ```
            pub fn with_max_records(mut self, record_limit: u64) -> Self {
                self.0.max_records = record_limit;
                self
            }

            /// The same buffer, bounded to `byte_limit` bytes (Kafka's `withMaxBytes`).
            ///
            /// ```
            /// use streams_dsl::BufferConfig;
            /// let b = BufferConfig::unbounded().with_max_bytes(1 << 20);
            /// # let _ = b;
            /// ```
            pub fn with_max_bytes(mut self, byte_limit: u64) -> Self {
                self.0.max_bytes = byte_limit;
                self
            }

            /// The same buffer without bounds (Kafka's `withNoBound`).
            ///
            /// ```
            /// use streams_dsl::BufferConfig;
            /// let b = BufferConfig::max_records(3).with_no_bound();
            /// # let _ = b;
            /// ```
            pub fn with_no_bound(self) -> StrictBufferConfig {
                StrictBufferConfig(BufferSpec {
                    max_records: UNBOUNDED,
                    max_bytes: UNBOUNDED,
                    strategy: BufferFullStrategy::ShutDown,
                    log_config: self.0.log_config,
                })
            }

            /// The same bounds, failing the application with
            /// [`StreamsError::SuppressionBufferFull`] when one is exceeded (Kafka's
            /// `shutDownWhenFull`).
            ///
            /// ```
            /// use streams_dsl::BufferConfig;
            /// let b = BufferConfig::max_records(3).shut_down_when_full();
            /// # let _ = b;
            /// ```
            pub fn shut_down_when_full(self) -> StrictBufferConfig {
                StrictBufferConfig(BufferSpec {
                    strategy: BufferFullStrategy::ShutDown,
                    ..self.0
                })
            }

            /// The same bounds, emitting the oldest records when one is exceeded (Kafka's
            /// `emitEarlyWhenFull`).
            ///
            /// ```
            /// use streams_dsl::BufferConfig;
            /// let b = BufferConfig::unbounded().with_max_records(3).emit_early_when_full();
            /// # let _ = b;
            /// ```
            pub fn emit_early_when_full(self) -> EagerBufferConfig {
                EagerBufferConfig(BufferSpec {
                    strategy: BufferFullStrategy::Emit,
                    ..self.0
                })
            }

            /// No changelog for the buffer (Kafka's `withLoggingDisabled`): suppressed
            /// records are lost when the task moves or the application restarts.
            ///
            /// ```
            /// use streams_dsl::BufferConfig;
            /// let b = BufferConfig::unbounded().with_logging_disabled();
            /// # let _ = b;
            /// ```
            pub fn with_logging_disabled(mut self) -> Self {
                self.0.log_config = None;
                self
            }

            /// A changelog for the buffer (the default) with extra topic configs
            /// (Kafka's `withLoggingEnabled`).
            ///
            /// ```
            /// use std::collections::BTreeMap;
            /// use streams_dsl::BufferConfig;
            /// let config = BTreeMap::from([("segment.ms".to_owned(), "60000".to_owned())]);
            /// let b = BufferConfig::unbounded().with_logging_enabled(config);
            /// # let _ = b;
            /// ```
            pub fn with_logging_enabled(mut self, config: BTreeMap<String, String>) -> Self {
                self.0.log_config = Some(config);
                self
            }
        }
    };
}

buffer_config_methods!(StrictBufferConfig);
buffer_config_methods!(EagerBufferConfig);
buffer_config_methods!(BufferConfig);

/// How long a suppression holds an update.
#[derive(Debug, Clone)]
enum Holding {
    /// Kafka's `FinalResultsSuppressionBuilder`: until the window closes (the grace is
    /// found upstream when the suppression is added).
    FinalResults,
    /// Kafka's `untilTimeLimit`: for this many ms after the record's timestamp.
    TimeLimit(i64),
}

/// A suppression for [`KTable::suppress`] (Kafka's `Suppressed`).
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::{BufferConfig, Suppressed, Windowed};
/// let finals: Suppressed<Windowed<String>> =
///     Suppressed::until_window_closes(BufferConfig::unbounded());
/// let rate_limited: Suppressed<String> =
///     Suppressed::until_time_limit(Duration::from_secs(60), BufferConfig::max_records(1_000))
///         .with_name("rate-limit");
/// # let _ = (finals, rate_limited);
/// ```
pub struct Suppressed<K> {
    name: Option<String>,
    holding: Holding,
    buffer: BufferSpec,
    /// Kafka's `TimeDefinition`: the window end for final results, else the record time.
    window_end: Option<fn(&K) -> i64>,
}

impl<K> Clone for Suppressed<K> {
    fn clone(&self) -> Self {
        Suppressed {
            name: self.name.clone(),
            holding: self.holding.clone(),
            buffer: self.buffer.clone(),
            window_end: self.window_end,
        }
    }
}

impl<K> std::fmt::Debug for Suppressed<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suppressed")
            .field("name", &self.name)
            .field("holding", &self.holding)
            .field("buffer", &self.buffer)
            .finish()
    }
}

fn window_end<K>(key: &Windowed<K>) -> i64 {
    key.window.end
}

impl<K> Suppressed<Windowed<K>> {
    /// Only the final result of each window, once the window closes: stream time (the
    /// largest timestamp the suppression has seen) reaches the window end plus the grace
    /// period of the windowed aggregation upstream (Kafka's `untilWindowCloses`). For
    /// session windows the grace is the inactivity gap plus the grace, as in Kafka.
    /// Windows that end deleted are not forwarded. Only for windowed tables:
    /// [`StreamsBuilder::build`](crate::StreamsBuilder::build) fails if no windowed
    /// aggregation is upstream.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{I64Serde, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{BufferConfig, Consumed, Grouped, Materialized, Produced,
    ///     StreamsBuilder, Suppressed, TimeWindowedSerde, TimeWindows};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("clicks", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::with(StringSerde, StringSerde))
    ///     .windowed_by(TimeWindows::of_size_and_grace(Duration::from_millis(10), Duration::from_millis(5))?)
    ///     .count(Materialized::new())
    ///     .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
    ///     .to_stream()
    ///     .flat_map_values(|v: Option<i64>| v)
    ///     .to("final-counts", Produced::with(TimeWindowedSerde::new(StringSerde, Duration::from_millis(10)), I64Serde));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let clicks = driver.create_input_topic("clicks", StringSerde, StringSerde)?;
    /// let out = driver.create_output_topic("final-counts", TimeWindowedSerde::new(StringSerde, Duration::from_millis(10)), I64Serde);
    /// clicks.pipe_input_with_timestamp("a".into(), "x".into(), 1)?;
    /// clicks.pipe_input_with_timestamp("a".into(), "y".into(), 8)?;
    /// clicks.pipe_input_with_timestamp("a".into(), "z".into(), 14)?; // window [0,10) still open
    /// assert!(out.is_empty());
    /// clicks.pipe_input_with_timestamp("b".into(), "x".into(), 15)?; // 15 >= 10 + 5: closed
    /// let r = out.read_record()?;
    /// assert_eq!((r.key.key.as_str(), r.key.window.start, r.value, r.timestamp), ("a", 0, 2, 8));
    /// assert!(out.is_empty());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn until_window_closes(buffer: StrictBufferConfig) -> Self {
        Suppressed {
            name: None,
            holding: Holding::FinalResults,
            buffer: buffer.0,
            window_end: Some(window_end::<K> as fn(&Windowed<K>) -> i64),
        }
    }
}

impl<K> Suppressed<K> {
    /// Holds each key's updates until `time_to_wait_for_more_events` has passed in stream
    /// time since the first buffered one (stream time reaches its timestamp plus the
    /// limit), then forwards the latest (Kafka's `untilTimeLimit`); a bounded buffer
    /// emits early or fails when full, as configured.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{BufferConfig, Consumed, Grouped, Materialized, Produced,
    ///     StreamsBuilder, Suppressed};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::new().with_caching_disabled())
    ///     .suppress(Suppressed::until_time_limit(Duration::from_millis(10), BufferConfig::unbounded()))
    ///     .to_stream()
    ///     .to("out", Produced::with(StringSerde, Nullable(I64Serde)));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let input = driver.create_input_topic("in", StringSerde, StringSerde)?;
    /// let out = driver.create_output_topic("out", StringSerde, Nullable(I64Serde));
    /// input.pipe_input_with_timestamp("k".into(), "v".into(), 0)?;
    /// input.pipe_input_with_timestamp("k".into(), "v".into(), 5)?;
    /// assert!(out.is_empty());
    /// input.pipe_input_with_timestamp("j".into(), "v".into(), 10)?; // 10 - 10 >= 0: `k` goes
    /// let r = out.read_record()?;
    /// assert_eq!((r.key.as_str(), r.value, r.timestamp), ("k", Some(2), 5));
    /// assert!(out.is_empty());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn until_time_limit(
        time_to_wait_for_more_events: Duration,
        buffer: impl Into<BufferConfig>,
    ) -> Self {
        Suppressed {
            name: None,
            holding: Holding::TimeLimit(
                i64::try_from(time_to_wait_for_more_events.as_millis()).unwrap_or(i64::MAX),
            ),
            buffer: buffer.into().0,
            window_end: None,
        }
    }

    /// Names the suppression: its processor is `name` and its buffer store `<name>-store`
    /// (changelog `<application.id>-<name>-store-changelog`), as Kafka's `withName`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StringSerde;
    /// use streams_dsl::{BufferConfig, Consumed, Grouped, Materialized, StreamsBuilder, Suppressed};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::new())
    ///     .suppress(Suppressed::until_time_limit(Duration::from_secs(1), BufferConfig::unbounded())
    ///         .with_name("hold"));
    /// let text = builder.build()?.describe()?.to_string();
    /// assert!(text.contains("Processor: hold (stores: [hold-store])"), "{text}");
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl<K, V> KTable<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Suppresses some updates of this table (Kafka's `KTable#suppress`): each update is
    /// held in a buffer (one entry per key, the latest update replacing the earlier ones)
    /// and forwarded when the suppression's time bound has passed, with its own timestamp
    /// and headers and as a `Change` of its new and old value. See
    /// [`Suppressed::until_window_closes`] and [`Suppressed::until_time_limit`].
    ///
    /// Names as Kafka draws them: the processor `KTABLE-SUPPRESS-<n>`, then the buffer
    /// store `KTABLE-SUPPRESS-STATE-STORE-<n+1>` (or `<name>` and `<name>-store` with
    /// [`Suppressed::with_name`]). The buffer lives in memory and is change-logged
    /// (`<application.id>-<store>-changelog`, compacted, Kafka's buffer record format)
    /// unless logging is disabled, so a restart neither loses nor repeats suppressed
    /// updates. The upstream table is asked to send old values, as Kafka does.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StringSerde;
    /// use streams_dsl::{BufferConfig, Consumed, Grouped, Materialized, StreamsBuilder,
    ///     Suppressed, TimeWindows};
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Consumed::with(StringSerde, StringSerde))
    ///     .group_by_key(Grouped::with(StringSerde, StringSerde))
    ///     .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60))?)
    ///     .count(Materialized::new())
    ///     .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()));
    /// let topology = builder.build()?;
    /// let text = topology.describe()?.to_string();
    /// assert!(text.contains(
    ///     "Processor: KTABLE-SUPPRESS-0000000004 (stores: [KTABLE-SUPPRESS-STATE-STORE-0000000005])"
    /// ), "{text}");
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn suppress(&self, suppressed: Suppressed<K>) -> KTable<K, V> {
        let mut state = self.state.borrow_mut();
        let name = match &suppressed.name {
            Some(n) => n.clone(),
            None => state.next_name("KTABLE-SUPPRESS-"),
        };
        // Kafka's buildSuppress: final results wait for the grace of the windowed
        // aggregation upstream (GraphGraceSearchUtil.findAndVerifyWindowGrace).
        let duration = match suppressed.holding {
            Holding::TimeLimit(ms) => Ok(ms),
            Holding::FinalResults => self.window_grace.ok_or_else(|| {
                StreamsError::Topology(TopologyError::WindowCloseUndefined {
                    node: self.node.clone(),
                })
            }),
        };
        if let (Ok(grace), Holding::FinalResults) = (&duration, &suppressed.holding) {
            tracing::info!(
                grace_ms = *grace,
                node = %name,
                "Using grace period as the suppress duration"
            );
        }
        let store = match &suppressed.name {
            Some(n) => format!("{n}-store"),
            None => state.next_name("KTABLE-SUPPRESS-STATE-STORE-"),
        };
        // KTableSuppressProcessorSupplier: the buffer needs the upstream's old values.
        self.old_values.enable();
        let spec = suppressed.buffer.clone();
        let mut store_builder = StoreBuilder::time_ordered_buffer(&store)
            .with_serdes(self.key_serde.clone(), self.value_serde.clone());
        match &spec.log_config {
            None => store_builder = store_builder.with_logging(false),
            Some(config) => {
                for (k, v) in config {
                    store_builder = store_builder.with_changelog_config(k, v);
                }
            }
        }
        let parent = self.node.clone();
        let window_end = suppressed.window_end;
        let final_results = matches!(suppressed.holding, Holding::FinalResults);
        let processor_store = store.clone();
        let node = name.clone();
        state.apply(move |t| {
            let duration_ms = duration?;
            let supplier = move || SuppressProcessor::<K, V> {
                store: processor_store.clone(),
                spec: spec.clone(),
                duration_ms,
                window_end,
                safe_to_drop_tombstones: final_results,
                observed_stream_time: -1,
                _types: std::marker::PhantomData,
            };
            t.add_processor(&name, supplier, &[&parent])?;
            t.add_state_store(store_builder, &[&name])?;
            Ok(())
        });
        drop(state);
        KTable::with_parts(
            Rc::clone(&self.state),
            node,
            None,
            self.key_serde.clone(),
            self.value_serde.clone(),
            OldValues::child_of(&self.old_values),
        )
        .with_window_grace(self.window_grace)
    }
}

/// Kafka's `KTableSuppressProcessor`.
struct SuppressProcessor<K, V> {
    store: String,
    spec: BufferSpec,
    duration_ms: i64,
    window_end: Option<fn(&K) -> i64>,
    /// Final results: a window whose final value is a delete is not forwarded (Kafka's
    /// `safeToDropTombstones`).
    safe_to_drop_tombstones: bool,
    /// The largest record timestamp this processor has seen (Kafka's
    /// `observedStreamTime`; -1 at start, so again after a restart).
    observed_stream_time: i64,
    _types: std::marker::PhantomData<fn() -> V>,
}

impl<K, V> SuppressProcessor<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn over_capacity(&self, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<bool> {
        let buffer = ctx.time_ordered_buffer::<K, V>(&self.store)?;
        Ok(buffer.num_records()? > self.spec.max_records
            || buffer.buffer_size()? > self.spec.max_bytes)
    }

    /// Takes the oldest entry out and forwards it (Kafka's `emit`); false if empty.
    fn emit_oldest(&self, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<bool> {
        let Some(e) = ctx.time_ordered_buffer::<K, V>(&self.store)?.pop_oldest()? else {
            return Ok(false);
        };
        if e.change.new.is_some() || !self.safe_to_drop_tombstones {
            ctx.forward(Record {
                key: e.key,
                value: e.change,
                timestamp: e.timestamp,
                headers: e.headers,
            })?;
        }
        Ok(true)
    }
}

impl<K, V> Processor<K, Change<V>> for SuppressProcessor<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, Change<V>>,
        record: Record<K, Change<V>>,
    ) -> Result<()> {
        self.observed_stream_time = self.observed_stream_time.max(record.timestamp);
        // Kafka's TimeDefinitions: the window end, or the record's timestamp.
        let time = match self.window_end {
            Some(end) => end(&record.key),
            None => record.timestamp,
        };
        let metadata = ctx.record_metadata().cloned();
        ctx.time_ordered_buffer::<K, V>(&self.store)?
            .put(time, &record, metadata.as_ref())?;

        // enforceConstraints: evict what the time bound releases, then the capacity.
        let expiry_time = self.observed_stream_time.saturating_sub(self.duration_ms);
        while ctx
            .time_ordered_buffer::<K, V>(&self.store)?
            .min_timestamp()?
            <= expiry_time
        {
            if !self.emit_oldest(ctx)? {
                break;
            }
        }
        if self.over_capacity(ctx)? {
            match self.spec.strategy {
                BufferFullStrategy::Emit => {
                    while self.over_capacity(ctx)? {
                        if !self.emit_oldest(ctx)? {
                            break;
                        }
                    }
                }
                BufferFullStrategy::ShutDown => {
                    let buffer = ctx.time_ordered_buffer::<K, V>(&self.store)?;
                    let (records, bytes) = (buffer.num_records()?, buffer.buffer_size()?);
                    return Err(StreamsError::SuppressionBufferFull {
                        node: ctx.node_name().to_owned(),
                        records,
                        max_records: self.spec.max_records,
                        bytes,
                        max_bytes: self.spec.max_bytes,
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn buffer_configs_compose_as_kafkas() {
        let eager = BufferConfig::max_records(5);
        assert_eq!(eager.0.max_bytes, UNBOUNDED);
        assert_eq!(eager.0.strategy, BufferFullStrategy::Emit);
        let strict = eager.clone().with_max_bytes(10).shut_down_when_full();
        assert_eq!(
            (strict.0.max_records, strict.0.max_bytes, strict.0.strategy),
            (5, 10, BufferFullStrategy::ShutDown)
        );
        let unbounded = strict.clone().with_logging_disabled().with_no_bound();
        assert_eq!(unbounded.0.max_records, UNBOUNDED);
        assert_eq!(unbounded.0.log_config, None);
        let back = unbounded.with_max_records(1).emit_early_when_full();
        assert_eq!(back.0.strategy, BufferFullStrategy::Emit);
        assert_eq!(BufferConfig::from(strict.clone()).0, strict.0);
        assert_eq!(
            BufferConfig::unbounded().0.log_config,
            Some(BTreeMap::new())
        );
    }
}

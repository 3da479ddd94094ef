//! [`EmitStrategy`]: when a windowed aggregation emits its results (Kafka's
//! `EmitStrategy`, KIP-825), and the bookkeeping of emit-on-window-close shared by the
//! time, sliding and session window processors (Kafka's
//! `AbstractKStreamTimeWindowAggregateProcessor` and `KStreamImplJoin.TimeTracker`).

use streams_core::{Change, Header, ProcessorContext, Record, Result, Windowed};

/// When a windowed aggregation ([`TimeWindowedKStream`](crate::TimeWindowedKStream),
/// [`SlidingWindowedKStream`](crate::SlidingWindowedKStream),
/// [`SessionWindowedKStream`](crate::SessionWindowedKStream)) sends its results downstream
/// (Kafka's `EmitStrategy`).
///
/// - [`EmitStrategy::on_window_update`] (the default): every update of a window goes
///   downstream (through the store's cache when it has one).
/// - [`EmitStrategy::on_window_close`]: a window's final aggregate goes downstream once,
///   after the window has closed (its end plus the grace period is at or before stream
///   time), and never an intermediate one. Closed windows are looked for while processing
///   a record, at most once per
///   [`StreamsConfig::emit_interval_windowed_aggregation`](streams_core::StreamsConfig::emit_interval_windowed_aggregation)
///   of wall-clock time (Kafka's `__emit.interval.ms.kstreams.windowed.aggregation__`,
///   1000 ms; 0 in the `TopologyTestDriver`), so a window is emitted when a later record
///   moves stream time past its close.
///
/// ```
/// use streams_dsl::EmitStrategy;
/// assert_eq!(EmitStrategy::default(), EmitStrategy::on_window_update());
/// assert_ne!(EmitStrategy::on_window_close(), EmitStrategy::on_window_update());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EmitStrategy {
    /// Emit every update of a window (Kafka's `WindowUpdateStrategy`).
    #[default]
    OnWindowUpdate,
    /// Emit each window once, when it closes (Kafka's `WindowCloseStrategy`).
    OnWindowClose,
}

impl EmitStrategy {
    /// Emit every update of a window (Kafka's `EmitStrategy.onWindowUpdate()`), the
    /// default.
    ///
    /// ```
    /// use streams_dsl::EmitStrategy;
    /// assert_eq!(EmitStrategy::on_window_update(), EmitStrategy::OnWindowUpdate);
    /// ```
    pub fn on_window_update() -> Self {
        EmitStrategy::OnWindowUpdate
    }

    /// Emit each window's final result once, after it closes (Kafka's
    /// `EmitStrategy.onWindowClose()`).
    ///
    /// ```
    /// use streams_dsl::EmitStrategy;
    /// assert_eq!(EmitStrategy::on_window_close(), EmitStrategy::OnWindowClose);
    /// ```
    pub fn on_window_close() -> Self {
        EmitStrategy::OnWindowClose
    }

    pub(crate) fn is_on_close(self) -> bool {
        self == EmitStrategy::OnWindowClose
    }
}

/// The local retention of a time or sliding window store with emit-on-window-close. Kafka
/// uses a time-ordered window store there, which keeps a window while its start is at or
/// after the store's stream time − retention
/// (`AbstractDualSchemaRocksDBSegmentedBytesStore.getActualFrom` and `put` for the
/// `TimeFirstWindowKeySchema`), one millisecond longer than the key-ordered store (start
/// after stream time − retention). Our window store has the key-ordered rule, so the
/// local store gets one millisecond more (its changelog keeps Kafka's `retention.ms`,
/// see [`changelog_retention`]). Without it a tumbling window without grace would expire
/// the moment it closes and never be emitted.
pub(crate) fn local_retention_ms(emit: EmitStrategy, retention_ms: i64) -> i64 {
    if emit.is_on_close() {
        retention_ms.saturating_add(1)
    } else {
        retention_ms
    }
}

/// The changelog `retention.ms` Kafka gives a window store: its retention plus
/// `windowstore.changelog.additional.retention.ms` (1 day).
pub(crate) fn changelog_retention(retention_ms: i64) -> String {
    retention_ms.saturating_add(86_400_000).to_string()
}

/// Kafka's `ConsumerRecord.NO_TIMESTAMP`.
pub(crate) const NO_TIMESTAMP: i64 = -1;

/// The emit-on-window-close state of one processor: Kafka's `lastEmitWindowCloseTime` and
/// the wall-clock throttle (`TimeTracker.nextTimeToEmit` / `emitIntervalMs`).
#[derive(Debug, Clone)]
pub(crate) struct CloseEmitter {
    /// The window close time of the last emit (-1: never emitted).
    pub(crate) last_emit_window_close_time: i64,
    next_time_to_emit: i64,
    interval_ms: i64,
}

impl CloseEmitter {
    pub(crate) fn new() -> Self {
        CloseEmitter {
            last_emit_window_close_time: NO_TIMESTAMP,
            next_time_to_emit: 0,
            interval_ms: 1000,
        }
    }

    /// Kafka's `init` with emit-on-window-close: the last emit's close time restored from
    /// the task's processor metadata (committed with the input offsets, keyed by the store
    /// name), and the emit interval from the application config.
    pub(crate) fn init<K, V>(&mut self, ctx: &ProcessorContext<'_, K, V>, store: &str) {
        if let Some(last) = ctx.processor_metadata_for_key(store) {
            self.last_emit_window_close_time = last;
        }
        self.interval_ms = ctx.windowed_aggregation_emit_interval_ms();
    }

    /// Records an emit (end of Kafka's `fetchAndEmit`): the close time becomes the last
    /// one, also in the processor metadata committed with the input offsets.
    pub(crate) fn emitted<K, V>(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, V>,
        store: &str,
        window_close_time: i64,
    ) where
        K: Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        self.last_emit_window_close_time = window_close_time;
        ctx.add_processor_metadata(store, window_close_time);
    }

    /// Kafka's `shouldEmitFinal`: not before the next wall-clock emit time (which then moves
    /// to now + interval), and only if the window close time progressed.
    pub(crate) fn should_emit_final(&mut self, now: i64, window_close_time: i64) -> bool {
        if now < self.next_time_to_emit {
            return false;
        }
        self.next_time_to_emit = now.saturating_add(self.interval_ms);
        self.last_emit_window_close_time == NO_TIMESTAMP
            || self.last_emit_window_close_time < window_close_time
    }
}

/// Forwards the final result of a closed window: Kafka's `fetchAndEmit` forwards the
/// stored aggregate with no old value, the given timestamp and the headers of the record
/// being processed.
pub(crate) fn forward_final<K, VA>(
    ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    key: Windowed<K>,
    value: VA,
    timestamp: i64,
    headers: &[Header],
) -> Result<()>
where
    K: Clone + Send + 'static,
    VA: Clone + Send + 'static,
{
    ctx.forward(Record {
        key,
        value: Change {
            new: Some(value),
            old: None,
        },
        timestamp,
        headers: headers.to_vec(),
    })
}

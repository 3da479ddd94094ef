//! [`TimeWindows`]: tumbling and hopping windows (Kafka's `TimeWindows`), and
//! [`SessionWindows`]: sessions of activity (Kafka's `SessionWindows`).

use std::time::Duration;

use streams_core::{Result, StreamsError, Window};

/// Fixed-size time windows, tumbling or hopping (Kafka's `TimeWindows`): a window is
/// `[start, start + size)`, starts are aligned to the epoch (multiples of the advance), and
/// a record belongs to every window that contains its timestamp. Tumbling windows advance
/// by their size; hopping windows by less ([`TimeWindows::advance_by`]), so they overlap.
///
/// The grace period is how long after a window's end it still takes out-of-order records:
/// a window aggregation drops a record for a window whose end plus grace is at or before
/// stream time.
///
/// ```
/// use std::time::Duration;
/// use streams_core::Window;
/// use streams_dsl::TimeWindows;
/// let tumbling = TimeWindows::of_size_with_no_grace(Duration::from_secs(60))?;
/// assert_eq!(tumbling.windows_for(61_000), vec![Window { start: 60_000, end: 120_000 }]);
///
/// let hopping = TimeWindows::of_size_and_grace(Duration::from_secs(5), Duration::from_secs(1))?
///     .advance_by(Duration::from_secs(2))?;
/// assert_eq!(hopping.windows_for(6_500).iter().map(|w| w.start).collect::<Vec<_>>(),
///            vec![2_000, 4_000, 6_000]);
/// assert!(TimeWindows::of_size_with_no_grace(Duration::ZERO).is_err());
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeWindows {
    size_ms: i64,
    advance_ms: i64,
    grace_ms: i64,
}

fn millis(what: &str, d: Duration) -> Result<i64> {
    i64::try_from(d.as_millis()).map_err(|_| invalid(format!("{what} ({d:?}) is too large")))
}

fn invalid(reason: String) -> StreamsError {
    StreamsError::Config {
        key: "TimeWindows".to_owned(),
        reason,
    }
}

fn session_millis(what: &str, d: Duration) -> Result<i64> {
    i64::try_from(d.as_millis()).map_err(|_| StreamsError::Config {
        key: "SessionWindows".to_owned(),
        reason: format!("{what} ({d:?}) is too large"),
    })
}

impl TimeWindows {
    fn new(size_ms: i64, advance_ms: i64, grace_ms: i64) -> Result<Self> {
        if size_ms <= 0 {
            return Err(invalid("the window size must be above zero".to_owned()));
        }
        if advance_ms <= 0 || advance_ms > size_ms {
            return Err(invalid(format!(
                "the advance must be above zero and at most the window size ({size_ms} ms); \
                 got {advance_ms} ms"
            )));
        }
        Ok(TimeWindows {
            size_ms,
            advance_ms,
            grace_ms,
        })
    }

    /// Tumbling windows of `size` without a grace period (Kafka's `ofSizeWithNoGrace`):
    /// a record is dropped once stream time has reached its window's end. The size must
    /// be at least one millisecond.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::TimeWindows;
    /// let w = TimeWindows::of_size_with_no_grace(Duration::from_secs(60))?;
    /// assert_eq!((w.size_ms(), w.advance_ms(), w.grace_period_ms()), (60_000, 60_000, 0));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn of_size_with_no_grace(size: Duration) -> Result<Self> {
        Self::of_size_and_grace(size, Duration::ZERO)
    }

    /// Tumbling windows of `size` that take out-of-order records until stream time
    /// passes their end plus `grace` (Kafka's `ofSizeAndGrace`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::TimeWindows;
    /// let w = TimeWindows::of_size_and_grace(Duration::from_secs(60), Duration::from_secs(10))?;
    /// assert_eq!(w.grace_period_ms(), 10_000);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn of_size_and_grace(size: Duration, grace: Duration) -> Result<Self> {
        let size_ms = millis("the window size", size)?;
        let grace_ms = millis("the grace period", grace)?;
        Self::new(size_ms, size_ms, grace_ms)
    }

    /// Hopping windows: the same windows, starting every `advance` (above zero and at
    /// most the size; Kafka's `advanceBy`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::TimeWindows;
    /// let w = TimeWindows::of_size_with_no_grace(Duration::from_secs(300))?
    ///     .advance_by(Duration::from_secs(60))?;
    /// assert_eq!(w.windows_for(299_999).len(), 5);
    /// assert!(TimeWindows::of_size_with_no_grace(Duration::from_secs(1))?
    ///     .advance_by(Duration::from_secs(2)).is_err());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn advance_by(self, advance: Duration) -> Result<Self> {
        let advance_ms = millis("the advance", advance)?;
        Self::new(self.size_ms, advance_ms, self.grace_ms)
    }

    /// The window size in milliseconds.
    pub fn size_ms(&self) -> i64 {
        self.size_ms
    }

    /// The advance in milliseconds (the size for tumbling windows).
    pub fn advance_ms(&self) -> i64 {
        self.advance_ms
    }

    /// The grace period in milliseconds.
    pub fn grace_period_ms(&self) -> i64 {
        self.grace_ms
    }

    /// The windows containing `timestamp`, by start (Kafka's `TimeWindows.windowsFor`):
    /// the first start is `max(0, timestamp - size + advance)` rounded down to a multiple
    /// of the advance, then every advance up to the timestamp. None for a negative
    /// timestamp. Ends past `i64::MAX` are clamped to it.
    pub fn windows_for(&self, timestamp: i64) -> Vec<Window> {
        let mut out = Vec::new();
        let first = timestamp
            .saturating_sub(self.size_ms)
            .saturating_add(self.advance_ms)
            .max(0);
        let mut start = first / self.advance_ms * self.advance_ms;
        while start <= timestamp {
            out.push(Window {
                start,
                end: start.saturating_add(self.size_ms),
            });
            match start.checked_add(self.advance_ms) {
                Some(next) => start = next,
                None => break,
            }
        }
        out
    }
}

/// Session windows (Kafka's `SessionWindows`): a session of a key is a period of activity,
/// its records no more than the inactivity gap apart. A record at `ts` joins every session
/// of its key that ends at or after `ts - gap` and starts at or before `ts + gap`; those
/// sessions merge into one spanning them all. Sessions are `[start, end]`, both ends
/// inclusive: a session of one record is `[ts, ts]`.
///
/// The grace period is how long out-of-order records are still taken: a session
/// aggregation drops a record whose (merged) session ends before stream time minus the
/// gap minus the grace period.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::SessionWindows;
/// let w = SessionWindows::of_inactivity_gap_and_grace(Duration::from_secs(300), Duration::from_secs(30))?;
/// assert_eq!((w.inactivity_gap_ms(), w.grace_period_ms()), (300_000, 30_000));
/// assert!(SessionWindows::of_inactivity_gap_with_no_grace(Duration::ZERO).is_err());
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionWindows {
    gap_ms: i64,
    grace_ms: i64,
}

impl SessionWindows {
    /// Sessions closing after `inactivity_gap` without records, with no grace period
    /// (Kafka's `ofInactivityGapWithNoGrace`). The gap must be at least one millisecond.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::SessionWindows;
    /// let w = SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_secs(60))?;
    /// assert_eq!((w.inactivity_gap_ms(), w.grace_period_ms()), (60_000, 0));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn of_inactivity_gap_with_no_grace(inactivity_gap: Duration) -> Result<Self> {
        Self::of_inactivity_gap_and_grace(inactivity_gap, Duration::ZERO)
    }

    /// Sessions closing after `inactivity_gap` without records, taking out-of-order
    /// records for `grace` longer (Kafka's `ofInactivityGapAndGrace`). The gap must be at
    /// least one millisecond.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::SessionWindows;
    /// let w = SessionWindows::of_inactivity_gap_and_grace(Duration::from_millis(10), Duration::from_millis(5))?;
    /// assert_eq!(w.grace_period_ms(), 5);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn of_inactivity_gap_and_grace(inactivity_gap: Duration, grace: Duration) -> Result<Self> {
        let gap_ms = session_millis("the inactivity gap", inactivity_gap)?;
        let grace_ms = session_millis("the grace period", grace)?;
        if gap_ms <= 0 {
            return Err(StreamsError::Config {
                key: "SessionWindows".to_owned(),
                reason: "the inactivity gap must be above zero".to_owned(),
            });
        }
        Ok(SessionWindows { gap_ms, grace_ms })
    }

    /// The inactivity gap in milliseconds.
    pub fn inactivity_gap_ms(&self) -> i64 {
        self.gap_ms
    }

    /// The grace period in milliseconds.
    pub fn grace_period_ms(&self) -> i64 {
        self.grace_ms
    }
}

/// Sliding windows (Kafka's `SlidingWindows`): windows of a fixed length, `time difference`,
/// defined by the records themselves rather than aligned to the epoch. Two records fall in
/// a common window if their timestamps differ by at most the time difference; a window is
/// `[start, start + time difference]`, both ends inclusive. Each record creates (at most)
/// its *left* window `[ts - difference, ts]` and its *right* window `[ts + 1, ts + 1 +
/// difference]` (only when a later record falls in it), so every distinct set of records
/// within the time difference gets exactly one window. Records earlier than the time
/// difference go into the window `[0, difference]` (no window starts before 0).
///
/// The grace period is how long a window still takes out-of-order records: a sliding
/// aggregation drops a record whose left window ends before stream time minus the grace
/// period.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::SlidingWindows;
/// let w = SlidingWindows::of_time_difference_and_grace(Duration::from_secs(10), Duration::from_secs(2))?;
/// assert_eq!((w.time_difference_ms(), w.grace_period_ms()), (10_000, 2_000));
/// assert!(SlidingWindows::of_time_difference_with_no_grace(Duration::ZERO).is_err());
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlidingWindows {
    time_difference_ms: i64,
    grace_ms: i64,
}

impl SlidingWindows {
    /// Sliding windows of `time_difference` without a grace period (Kafka's
    /// `ofTimeDifferenceWithNoGrace`). The time difference must be at least one
    /// millisecond (Kafka accepts 0 here and fails at the first record, as a window cannot
    /// end where it starts).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::SlidingWindows;
    /// let w = SlidingWindows::of_time_difference_with_no_grace(Duration::from_millis(500))?;
    /// assert_eq!((w.time_difference_ms(), w.grace_period_ms()), (500, 0));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn of_time_difference_with_no_grace(time_difference: Duration) -> Result<Self> {
        Self::of_time_difference_and_grace(time_difference, Duration::ZERO)
    }

    /// Sliding windows of `time_difference` taking out-of-order records until stream time
    /// passes their end plus `grace` (Kafka's `ofTimeDifferenceAndGrace`). The time
    /// difference must be at least one millisecond.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::SlidingWindows;
    /// let w = SlidingWindows::of_time_difference_and_grace(Duration::from_millis(500), Duration::from_millis(100))?;
    /// assert_eq!(w.grace_period_ms(), 100);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn of_time_difference_and_grace(
        time_difference: Duration,
        grace: Duration,
    ) -> Result<Self> {
        let config = |reason: String| StreamsError::Config {
            key: "SlidingWindows".to_owned(),
            reason,
        };
        let time_difference_ms = i64::try_from(time_difference.as_millis()).map_err(|_| {
            config(format!(
                "the time difference ({time_difference:?}) is too large"
            ))
        })?;
        let grace_ms = i64::try_from(grace.as_millis())
            .map_err(|_| config(format!("the grace period ({grace:?}) is too large")))?;
        if time_difference_ms <= 0 {
            return Err(config(
                "the time difference must be above zero (a window ends after it starts)".to_owned(),
            ));
        }
        Ok(SlidingWindows {
            time_difference_ms,
            grace_ms,
        })
    }

    /// The time difference (the window length) in milliseconds.
    pub fn time_difference_ms(&self) -> i64 {
        self.time_difference_ms
    }

    /// The grace period in milliseconds.
    pub fn grace_period_ms(&self) -> i64 {
        self.grace_ms
    }
}

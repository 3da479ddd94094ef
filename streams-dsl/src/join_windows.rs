//! [`JoinWindows`]: how far apart in time two records of a stream-stream join may be
//! (Kafka's `JoinWindows`, KIP-633 factories only).

use std::time::Duration;

use streams_core::{Result, StreamsError};

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The join window of a stream-stream join (Kafka's `JoinWindows`): a record of this
/// stream at time `t` joins the records of the other stream with the same key and a
/// timestamp in `[t - before, t + after]`; the other stream's records at `t'` join this
/// stream's records in `[t' - after, t' + before]`. The grace period says how long
/// after a window closes (by stream time) out-of-order records are still accepted; left
/// and outer joins emit a record without a match only once its window plus grace has
/// closed (Kafka 3.1+'s fix for spurious results, KAFKA-10847).
///
/// Only Kafka's KIP-633 factories exist (there is no deprecated `JoinWindows.of`, so the
/// spurious-results fix is always on). `before` + `after` must not be negative; its sum is
/// the window size, and the join buffers keep records for size + grace.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::JoinWindows;
/// let w = JoinWindows::of_time_difference_and_grace(Duration::from_secs(10), Duration::from_secs(2))?;
/// assert_eq!((w.before_ms(), w.after_ms(), w.grace_period_ms(), w.size_ms()), (10_000, 10_000, 2_000, 20_000));
/// // Only records of the other stream up to 5 s *after* this one: before = 0.
/// let after_only = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(5))?.before(Duration::ZERO)?;
/// assert_eq!((after_only.before_ms(), after_only.after_ms()), (0, 5_000));
/// // Asymmetric windows may have one negative bound, as long as the size is not negative.
/// assert!(JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(5))?.before_ms_signed(-6_000).is_err());
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    before_ms: i64,
    after_ms: i64,
    grace_ms: i64,
}

impl JoinWindows {
    fn new(before_ms: i64, after_ms: i64, grace_ms: i64) -> Result<Self> {
        if before_ms.checked_add(after_ms).is_none_or(|s| s < 0) {
            return Err(StreamsError::Config {
                key: "JoinWindows".to_owned(),
                reason: format!(
                    "Window interval (ie, beforeMs+afterMs) must not be negative: before={before_ms} ms, after={after_ms} ms"
                ),
            });
        }
        if grace_ms < 0 {
            return Err(StreamsError::Config {
                key: "JoinWindows".to_owned(),
                reason: "Grace period must not be negative.".to_owned(),
            });
        }
        Ok(JoinWindows {
            before_ms,
            after_ms,
            grace_ms,
        })
    }

    /// Records join if their timestamps differ by at most `time_difference`, with no
    /// grace period (Kafka's `ofTimeDifferenceWithNoGrace`).
    pub fn of_time_difference_with_no_grace(time_difference: Duration) -> Result<Self> {
        let d = millis(time_difference);
        Self::new(d, d, 0)
    }

    /// Records join if their timestamps differ by at most `time_difference`; records up
    /// to `grace` late are still joined (Kafka's `ofTimeDifferenceAndGrace`).
    pub fn of_time_difference_and_grace(
        time_difference: Duration,
        grace: Duration,
    ) -> Result<Self> {
        let d = millis(time_difference);
        Self::new(d, d, millis(grace))
    }

    /// These windows with `before` as how much earlier the other stream's records may be
    /// (Kafka's `before`).
    pub fn before(self, time_difference: Duration) -> Result<Self> {
        self.before_ms_signed(millis(time_difference))
    }

    /// These windows with `after` as how much later the other stream's records may be
    /// (Kafka's `after`).
    pub fn after(self, time_difference: Duration) -> Result<Self> {
        self.after_ms_signed(millis(time_difference))
    }

    /// [`JoinWindows::before`] in signed milliseconds: Kafka accepts a negative duration
    /// as long as before + after is not negative (e.g. "between 5 s and 10 s after").
    pub fn before_ms_signed(self, before_ms: i64) -> Result<Self> {
        Self::new(before_ms, self.after_ms, self.grace_ms)
    }

    /// [`JoinWindows::after`] in signed milliseconds (see [`JoinWindows::before_ms_signed`]).
    pub fn after_ms_signed(self, after_ms: i64) -> Result<Self> {
        Self::new(self.before_ms, after_ms, self.grace_ms)
    }

    /// How much earlier than a record of this stream the other stream's records may be.
    pub fn before_ms(&self) -> i64 {
        self.before_ms
    }

    /// How much later than a record of this stream the other stream's records may be.
    pub fn after_ms(&self) -> i64 {
        self.after_ms
    }

    /// The grace period in milliseconds.
    pub fn grace_period_ms(&self) -> i64 {
        self.grace_ms
    }

    /// The window size: before + after (Kafka's `size()`).
    pub fn size_ms(&self) -> i64 {
        self.before_ms.saturating_add(self.after_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factories_and_bounds_as_kafka_checks_them() {
        let w = JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(10)).unwrap();
        assert_eq!(
            (w.before_ms(), w.after_ms(), w.grace_period_ms()),
            (10, 10, 0)
        );
        let w = w.after(Duration::from_millis(3)).unwrap();
        assert_eq!(w.size_ms(), 13);
        assert!(w.before_ms_signed(-3).is_ok());
        assert!(w.before_ms_signed(-4).is_err());
        assert!(w.after_ms_signed(-11).is_err());
        let zero = JoinWindows::of_time_difference_with_no_grace(Duration::ZERO).unwrap();
        assert_eq!(zero.size_ms(), 0);
    }
}

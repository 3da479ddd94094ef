//! Retention of a [`PartitionLog`]: whole segments are deleted by `retention.ms` (against
//! each segment's newest record) and by `retention.bytes` (oldest first, Kafka's rule).
//!
//! Only segments wholly below the high watermark are deleted (Kafka's rule; in single-node
//! mode the high watermark is the log end offset).
//!
//! A segment holding data of a transaction that is still open is kept, with every segment
//! after it: the log start offset never passes the first unstable offset. (Kafka itself lets
//! retention delete such data and clamps the last stable offset to the log start; keeping it
//! until the transaction completes, at most `transaction.max.timeout.ms`, keeps the data that
//! a commit will make visible.)

use std::sync::Arc;

use tracing::info;

use super::segment::Segment;
use super::PartitionLog;
use crate::error::{BrokerError, Result};

impl PartitionLog {
    /// Deletes segments past `retention.ms` (by their newest record) and beyond
    /// `retention.bytes` (oldest first). An expired active segment is rolled first so that it
    /// can go too. Returns how many segments were deleted.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize> {
        let mut removed = Vec::new();
        {
            let mut inner = self.inner.lock();
            if inner.deleted || !inner.config.cleanup_policy.delete {
                return Ok(0);
            }
            let config = Arc::clone(&inner.config);
            // Kafka's `deletableSegments`: nothing at or above the high watermark is deleted
            // (uncommitted records must survive until replicated); nor, here, an open
            // transaction's data.
            let first_unstable = inner
                .producers
                .first_unstable_offset()
                .unwrap_or(i64::MAX)
                .min(inner.high_watermark());
            if config.retention_ms >= 0 {
                while let Some((&base, seg)) = inner.segments.iter().next() {
                    if seg.next_offset() > first_unstable {
                        break;
                    }
                    let empty_sealed = seg.is_empty() && inner.segments.len() > 1;
                    let expired = empty_sealed
                        || (!seg.is_empty()
                            && seg.max_timestamp() >= 0
                            && now_ms.saturating_sub(seg.max_timestamp()) > config.retention_ms);
                    if !expired {
                        break;
                    }
                    if inner.segments.len() == 1 {
                        let next = inner.next_offset;
                        self.roll_locked(&mut inner, next)?;
                    }
                    if let Some(seg) = inner.segments.remove(&base) {
                        removed.push(seg);
                    }
                }
            }
            if config.retention_bytes >= 0 {
                let mut total: u64 = inner.segments.values().map(Segment::size).sum();
                while inner.segments.len() > 1 {
                    let Some((&base, seg)) = inner.segments.iter().next() else {
                        break;
                    };
                    if seg.next_offset() > first_unstable {
                        break;
                    }
                    let excess = total.saturating_sub(config.retention_bytes as u64);
                    // Empty sealed segments (left by compaction) go; otherwise Kafka's rule.
                    if seg.size() > 0 && excess < seg.size() {
                        break;
                    }
                    total -= seg.size();
                    if let Some(seg) = inner.segments.remove(&base) {
                        removed.push(seg);
                    }
                }
            }
            if !removed.is_empty() {
                let first = inner
                    .segments
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or(inner.next_offset);
                inner.log_start_offset = inner.log_start_offset.max(first);
                let start = inner.log_start_offset;
                inner.high_watermark = inner.high_watermark.max(start);
                if inner.epochs.truncate_from_start_in_memory(start) {
                    inner.epochs.write()?;
                }
            }
        }
        for seg in &removed {
            info!(segment = %seg.log_path().display(), bytes = seg.size(), "retention deleted a segment");
            seg.delete_files()
                .map_err(|e| BrokerError::io(seg.log_path(), e))?;
        }
        Ok(removed.len())
    }
}

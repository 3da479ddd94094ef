//! The log operations replication needs, as a trait: the replica manager is written and
//! tested against it, and the broker implements it for its partition logs.

use bytes::Bytes;

use crate::{AppendInfo, AppendOrigin, Result};

/// A partition's local log as the replica manager uses it (Kafka's `UnifiedLog` subset used by
/// `Partition` and the fetcher threads). Offsets are Kafka offsets; epochs are leader epochs.
pub trait ReplicaLog: Send + Sync + 'static {
    /// First offset still in the log.
    fn log_start_offset(&self) -> i64;

    /// Offset the next appended record gets.
    fn log_end_offset(&self) -> i64;

    /// The high watermark: the offset up to which every in-sync replica has the log.
    fn high_watermark(&self) -> i64;

    /// Moves the high watermark, clamped to `[log start, log end]`; it never moves backwards
    /// (only truncation lowers it).
    fn set_high_watermark(&self, high_watermark: i64) -> Result<()>;

    /// Appends batches as the leader of `leader_epoch`: offsets are assigned and each batch's
    /// `partitionLeaderEpoch` is stamped with `leader_epoch`.
    fn append_with_epoch(
        &self,
        batches: &mut [u8],
        origin: AppendOrigin,
        now_ms: i64,
        leader_epoch: i32,
    ) -> Result<AppendInfo>;

    /// Appends batches fetched from the leader unchanged (offsets, timestamps, epochs); the
    /// first batch's base offset must equal the log end offset.
    fn append_as_follower(&self, batches: &[u8]) -> Result<AppendInfo>;

    /// Whole batches from the one containing `offset`, up to the log end offset, at most
    /// about `max_bytes` (at least one batch when there is one).
    fn read_for_replica(&self, offset: i64, max_bytes: usize) -> Result<Bytes>;

    /// Drops every record at or after `offset` (no-op when `offset` ≥ log end offset).
    fn truncate_to(&self, offset: i64) -> Result<()>;

    /// Drops the whole log and restarts it empty at `offset`.
    fn truncate_fully_and_start_at(&self, offset: i64) -> Result<()>;

    /// The latest leader epoch in the leader-epoch cache.
    fn latest_epoch(&self) -> Option<i32>;

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: `(epoch, end offset)` of the largest epoch
    /// ≤ `epoch` (the log end offset for the latest epoch); `None` when undefined.
    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)>;
}

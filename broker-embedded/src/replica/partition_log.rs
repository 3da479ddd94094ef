//! [`ReplicaLog`] for the broker's own [`PartitionLog`].

use bytes::Bytes;

use super::ReplicaLog;
use crate::log::PartitionLog;
use crate::{AppendInfo, AppendOrigin, Result};

impl ReplicaLog for PartitionLog {
    fn log_start_offset(&self) -> i64 {
        self.offsets().log_start_offset
    }

    fn log_end_offset(&self) -> i64 {
        PartitionLog::log_end_offset(self)
    }

    fn high_watermark(&self) -> i64 {
        PartitionLog::high_watermark(self)
    }

    fn set_high_watermark(&self, high_watermark: i64) -> Result<()> {
        PartitionLog::set_high_watermark(self, high_watermark);
        Ok(())
    }

    fn append_with_epoch(
        &self,
        batches: &mut [u8],
        origin: AppendOrigin,
        now_ms: i64,
        leader_epoch: i32,
    ) -> Result<AppendInfo> {
        PartitionLog::append_with_epoch(self, batches, origin, now_ms, leader_epoch)
    }

    fn append_as_follower(&self, batches: &[u8]) -> Result<AppendInfo> {
        PartitionLog::append_as_follower(self, batches)
    }

    fn read_for_replica(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        PartitionLog::read_for_replica(self, offset, max_bytes).map(|d| d.records)
    }

    fn truncate_to(&self, offset: i64) -> Result<()> {
        PartitionLog::truncate_to(self, offset).map(|_| ())
    }

    fn truncate_fully_and_start_at(&self, offset: i64) -> Result<()> {
        PartitionLog::truncate_fully_and_start_at(self, offset)
    }

    fn latest_epoch(&self) -> Option<i32> {
        PartitionLog::latest_epoch(self)
    }

    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        PartitionLog::end_offset_for_epoch(self, epoch)
    }
}

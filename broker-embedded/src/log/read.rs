//! The read path of a [`PartitionLog`]: whole batches from an offset up to a byte limit,
//! bounded by the high watermark or the last stable offset (KIP-74 rules for the first
//! batch), and the first offset at or after a timestamp (ListOffsets). Reads take the lock
//! only to snapshot segment views.

use bytes::Bytes;

use super::segment::read_at;
use super::{AbortedTxn, FetchData, IsolationLevel, LogInner, PartitionLog, SegmentView};
use crate::error::{BrokerError, Result};
use crate::record::{self, decode_records, BatchHeader, BATCH_HEADER_LEN};

/// Where a read stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadBound {
    /// A consumer read at this isolation level: the high watermark or the last stable offset.
    Isolation(IsolationLevel),
    /// A follower replica's read: the log end offset.
    LogEnd,
}

impl PartitionLog {
    fn out_of_range(&self, inner: &LogInner, offset: i64) -> BrokerError {
        BrokerError::OffsetOutOfRange {
            topic: self.topic.clone(),
            partition: self.partition,
            offset,
            log_start_offset: inner.log_start_offset,
            log_end_offset: inner.next_offset,
        }
    }

    pub(super) fn segment_views_from(&self, offset: i64) -> Vec<SegmentView> {
        let inner = self.inner.lock();
        Self::views_locked(&inner, offset)
    }

    pub(super) fn views_locked(inner: &LogInner, offset: i64) -> Vec<SegmentView> {
        let start = inner
            .segments
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        inner
            .segments
            .range(start..)
            .map(|(_, s)| SegmentView {
                base_offset: s.base_offset,
                file: s.file(),
                size: s.size(),
                next_offset: s.next_offset(),
                max_timestamp: s.max_timestamp(),
                path: s.log_path().to_path_buf(),
            })
            .collect()
    }

    /// Reads whole batches starting with the one containing `fetch_offset`, up to `max_bytes`
    /// (a soft limit: the first batch is returned even if larger, as KIP-74 requires).
    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        isolation: IsolationLevel,
    ) -> Result<FetchData> {
        self.read_with(fetch_offset, max_bytes, isolation, true)
    }

    /// As [`PartitionLog::read`]; with `min_one_batch = false` a first batch larger than
    /// `max_bytes` is not returned (the later partitions of a Fetch response, KIP-74).
    pub fn read_with(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        isolation: IsolationLevel,
        min_one_batch: bool,
    ) -> Result<FetchData> {
        self.read_bounded(
            fetch_offset,
            max_bytes,
            ReadBound::Isolation(isolation),
            min_one_batch,
        )
    }

    /// The read path behind [`PartitionLog::read_with`] and
    /// [`PartitionLog::read_for_replica`].
    pub(super) fn read_bounded(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        bound: ReadBound,
        min_one_batch: bool,
    ) -> Result<FetchData> {
        let (views, first_pos, upper, mut data) = {
            let inner = self.inner.lock();
            if inner.deleted {
                return Err(BrokerError::UnknownTopicOrPartition {
                    topic: self.topic.clone(),
                    partition: self.partition,
                });
            }
            if fetch_offset < inner.log_start_offset || fetch_offset > inner.next_offset {
                return Err(self.out_of_range(&inner, fetch_offset));
            }
            let upper = match bound {
                ReadBound::Isolation(IsolationLevel::ReadUncommitted) => inner.high_watermark(),
                ReadBound::Isolation(IsolationLevel::ReadCommitted) => inner.last_stable_offset(),
                ReadBound::LogEnd => inner.next_offset,
            };
            let data = FetchData {
                records: Bytes::new(),
                high_watermark: inner.high_watermark(),
                last_stable_offset: inner.last_stable_offset(),
                log_start_offset: inner.log_start_offset,
                aborted_transactions: Vec::new(),
            };
            if fetch_offset >= upper {
                return Ok(data);
            }
            let views = Self::views_locked(&inner, fetch_offset);
            let first_pos = inner
                .segments
                .range(..=fetch_offset)
                .next_back()
                .map_or(0, |(_, s)| s.position_for(fetch_offset));
            (views, first_pos, upper, data)
        };
        for (i, v) in views.iter().enumerate() {
            let mut pos = if i == 0 { first_pos } else { 0 };
            while pos + BATCH_HEADER_LEN as u64 <= v.size {
                let h = v.header_at(pos)?;
                if h.base_offset >= upper {
                    return Ok(data);
                }
                if h.last_offset() < fetch_offset {
                    pos += h.size() as u64;
                    continue;
                }
                let available = v.size - pos;
                if !min_one_batch && h.size() > max_bytes {
                    return Ok(data);
                }
                let want = (h.size() as u64).max((max_bytes as u64).min(available));
                if want > available {
                    return Err(BrokerError::Corrupt {
                        path: v.path.clone(),
                        position: pos,
                        source: record::RecordError::Truncated {
                            needed: h.size(),
                            available: available as usize,
                        },
                    });
                }
                let mut buf = read_at(&*v.file, pos, want as usize)
                    .map_err(|e| BrokerError::io(&v.path, e))?;
                let mut end = 0usize;
                while end + BATCH_HEADER_LEN <= buf.len() {
                    let Ok(bh) = BatchHeader::parse(&buf[end..]) else {
                        break;
                    };
                    if bh.base_offset >= upper || end + bh.size() > buf.len() {
                        break;
                    }
                    end += bh.size();
                }
                buf.truncate(end);
                if bound == ReadBound::Isolation(IsolationLevel::ReadCommitted) && end > 0 {
                    // Kafka bounds the search by the offset after the fetched data.
                    let mut last_next = fetch_offset;
                    let mut at = 0usize;
                    while at + BATCH_HEADER_LEN <= buf.len() {
                        let Ok(bh) = BatchHeader::parse(&buf[at..]) else {
                            break;
                        };
                        last_next = bh.next_offset();
                        at += bh.size();
                    }
                    data.aborted_transactions = self.collect_aborted_txns(fetch_offset, last_next);
                }
                data.records = Bytes::from(buf);
                return Ok(data);
            }
        }
        Ok(data)
    }

    /// Kafka's `collectAbortedTransactions`: the aborted transactions overlapping
    /// `[fetch_offset, upper_bound)`, from the `.txnindex` of the segment holding
    /// `fetch_offset` on, until an entry's last stable offset reaches the bound.
    pub(crate) fn collect_aborted_txns(
        &self,
        fetch_offset: i64,
        upper_bound: i64,
    ) -> Vec<AbortedTxn> {
        let inner = self.inner.lock();
        let start = inner
            .segments
            .range(..=fetch_offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        let mut out = Vec::new();
        for seg in inner.segments.range(start..).map(|(_, s)| s) {
            if seg.collect_aborted_txns(fetch_offset, upper_bound, &mut out) {
                break;
            }
        }
        out
    }

    /// The first record (offset, timestamp) whose timestamp is `>= target`, or `None`.
    pub fn offset_for_timestamp(&self, target: i64) -> Result<Option<(i64, i64)>> {
        let (views, start_offset, first_pos, log_start, upper) = {
            let inner = self.inner.lock();
            let Some(seg) = inner
                .segments
                .values()
                .find(|s| s.max_timestamp() >= target)
            else {
                return Ok(None);
            };
            let start = seg.offset_for_time_scan(target);
            (
                Self::views_locked(&inner, seg.base_offset),
                start,
                seg.position_for(start),
                inner.log_start_offset,
                inner.high_watermark(),
            )
        };
        for (i, v) in views.iter().enumerate() {
            let mut pos = if i == 0 { first_pos } else { 0 };
            while pos + BATCH_HEADER_LEN as u64 <= v.size {
                let h = v.header_at(pos)?;
                if h.base_offset >= upper {
                    return Ok(None);
                }
                if h.max_timestamp >= target && h.last_offset() >= start_offset && !h.is_control() {
                    let batch = read_at(&*v.file, pos, h.size())
                        .map_err(|e| BrokerError::io(&v.path, e))?;
                    let records =
                        decode_records(&batch).map_err(|source| BrokerError::Corrupt {
                            path: v.path.clone(),
                            position: pos,
                            source,
                        })?;
                    if let Some(r) = records
                        .iter()
                        .find(|r| r.timestamp >= target && r.offset >= log_start.max(start_offset))
                    {
                        return Ok(Some((r.offset, r.timestamp)));
                    }
                }
                pos += h.size() as u64;
            }
        }
        Ok(None)
    }
}

//! The allocation-free view of a batch's 61-byte header ([`BatchHeader`]: parsing, CRC-32C
//! validation, derived offsets and flags), the in-place rewrites the broker makes (base
//! offset, LogAppendTime), and [`BatchIter`] over concatenated batches.

use super::compression::Compression;
use super::{RecordError, BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, NO_SEQUENCE};

pub(super) const CRC_OFFSET: usize = 17;
pub(super) const ATTRIBUTES_OFFSET: usize = 21;
const MAX_TIMESTAMP_OFFSET: usize = 35;

/// How the batch's timestamps were assigned (attributes bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    /// Set by the producer.
    #[default]
    CreateTime,
    /// Set by the broker on append.
    LogAppendTime,
}

/// The decoded fixed header of one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch stamped by the broker.
    pub partition_leader_epoch: i32,
    /// Always 2.
    pub magic: i8,
    /// CRC-32C from attributes to the end.
    pub crc: u32,
    /// Raw attributes.
    pub attributes: i16,
    /// Offset of the last record minus `base_offset` (kept even when compaction removed it).
    pub last_offset_delta: i32,
    /// Timestamp the record deltas are relative to (the delete horizon if that bit is set).
    pub base_timestamp: i64,
    /// Largest record timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the header at the start of `buf` without checking the CRC. Fails if fewer than
    /// [`BATCH_HEADER_LEN`] bytes are available, the magic is not 2 or the length is impossible.
    pub fn parse(buf: &[u8]) -> Result<Self, RecordError> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(RecordError::Truncated {
                needed: BATCH_HEADER_LEN,
                available: buf.len(),
            });
        }
        let header = Self {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[16] as i8,
            crc: be_i32(buf, CRC_OFFSET) as u32,
            attributes: be_i16(buf, ATTRIBUTES_OFFSET),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_OFFSET),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            record_count: be_i32(buf, 57),
        };
        if header.magic != MAGIC_V2 {
            return Err(RecordError::UnsupportedMagic(header.magic));
        }
        if header.batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(RecordError::InvalidLength(header.batch_length));
        }
        if header.base_offset < 0
            || header.last_offset_delta < 0
            || header.base_offset > i64::MAX - 1 - i64::from(header.last_offset_delta)
        {
            return Err(RecordError::InvalidBatch(format!(
                "offsets {} + {} are out of range",
                header.base_offset, header.last_offset_delta
            )));
        }
        Ok(header)
    }

    /// Parses the header and checks that the whole batch is present, that its CRC matches and
    /// that counts and deltas are consistent. Returns the header; the batch occupies
    /// `buf[..header.size()]`.
    pub fn parse_and_validate(buf: &[u8]) -> Result<Self, RecordError> {
        let header = Self::parse(buf)?;
        let size = header.size();
        if buf.len() < size {
            return Err(RecordError::Truncated {
                needed: size,
                available: buf.len(),
            });
        }
        let computed = crc32c::crc32c(&buf[ATTRIBUTES_OFFSET..size]);
        if computed != header.crc {
            return Err(RecordError::CrcMismatch {
                stored: header.crc,
                computed,
            });
        }
        Compression::from_attributes(header.attributes)?;
        if header.record_count < 0 || header.last_offset_delta < 0 {
            return Err(RecordError::InvalidBatch(format!(
                "negative record count {} or last offset delta {}",
                header.record_count, header.last_offset_delta
            )));
        }
        if i64::from(header.record_count) > i64::from(header.last_offset_delta) + 1 {
            return Err(RecordError::InvalidBatch(format!(
                "{} records cannot fit in an offset delta of {}",
                header.record_count, header.last_offset_delta
            )));
        }
        if header.base_offset < 0 {
            return Err(RecordError::InvalidBatch(format!(
                "negative base offset {}",
                header.base_offset
            )));
        }
        Ok(header)
    }

    /// Total bytes the batch occupies, header included.
    pub fn size(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the last record (by `lastOffsetDelta`).
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Compression codec.
    pub fn compression(&self) -> Result<Compression, RecordError> {
        Compression::from_attributes(self.attributes)
    }

    /// CreateTime or LogAppendTime.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & 0x08 != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// A control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// `baseTimestamp` holds the compaction delete horizon (KIP-534).
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & 0x40 != 0
    }

    /// Written by an idempotent or transactional producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the last record (wrapping as Kafka does).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }
}

/// Rewrites the base offset of the batch at the start of `batch` (the CRC stays valid).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    if batch.len() >= 8 {
        batch[..8].copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Stamps the batch's `partitionLeaderEpoch` (bytes 12..16, outside the CRC), as a leader
/// does on append.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    if batch.len() >= 16 {
        batch[12..16].copy_from_slice(&epoch.to_be_bytes());
    }
}

/// Stamps LogAppendTime: sets the timestamp-type bit and `maxTimestamp`, and recomputes the CRC
/// (which covers both). Records keep their deltas; readers use `maxTimestamp` for every record.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) -> Result<(), RecordError> {
    let header = BatchHeader::parse(batch)?;
    let size = header.size();
    if batch.len() < size {
        return Err(RecordError::Truncated {
            needed: size,
            available: batch.len(),
        });
    }
    let attributes = header.attributes | 0x08;
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..size]);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Iterates over the batches in a buffer of concatenated batches, validating each one. Stops
/// at the first invalid or incomplete batch and reports it (with its byte position) once.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> BatchIter<'a> {
    /// Iterates over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            failed: false,
        }
    }

    /// Byte position of the next batch (after the last one returned).
    pub fn position(&self) -> usize {
        self.pos
    }
}

/// One batch returned by [`BatchIter`].
#[derive(Debug, Clone, Copy)]
pub struct BatchRef<'a> {
    /// Parsed header.
    pub header: BatchHeader,
    /// The whole batch bytes, header included.
    pub bytes: &'a [u8],
    /// Byte position of the batch in the iterated buffer.
    pub position: usize,
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<BatchRef<'a>, (usize, RecordError)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        match BatchHeader::parse_and_validate(rest) {
            Ok(header) => {
                let position = self.pos;
                let size = header.size();
                self.pos += size;
                Some(Ok(BatchRef {
                    header,
                    bytes: &rest[..size],
                    position,
                }))
            }
            Err(e) => {
                self.failed = true;
                Some(Err((self.pos, e)))
            }
        }
    }
}

//! Building batches: [`encode_batch`] writes records into one v2 batch as [`BatchSpec`]
//! describes it (codec, timestamp type, producer fields, control and transactional flags),
//! and [`estimated_record_size`] bounds batch sizes.

use super::compression::{compress, Compression};
use super::header::{TimestampType, ATTRIBUTES_OFFSET, CRC_OFFSET};
use super::varint::{put_varint, put_varlong, varint_len};
use super::{
    Record, RecordError, BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID, NO_SEQUENCE, NO_TIMESTAMP,
};

/// Settings of a batch written by [`encode_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpec {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Codec for the records section.
    pub compression: Compression,
    /// CreateTime or LogAppendTime.
    pub timestamp_type: TimestampType,
    /// Part of a transaction.
    pub transactional: bool,
    /// A control batch.
    pub control: bool,
    /// Producer id or -1.
    pub producer_id: i64,
    /// Producer epoch or -1.
    pub producer_epoch: i16,
    /// Base sequence or -1.
    pub base_sequence: i32,
    /// Leader epoch.
    pub partition_leader_epoch: i32,
    /// Force `lastOffsetDelta` (compaction keeps the original one); otherwise derived from
    /// the records.
    pub last_offset_delta: Option<i32>,
    /// Set the KIP-534 delete horizon (stored in `baseTimestamp`).
    pub delete_horizon_ms: Option<i64>,
}

impl Default for BatchSpec {
    fn default() -> Self {
        Self {
            base_offset: 0,
            compression: Compression::None,
            timestamp_type: TimestampType::CreateTime,
            transactional: false,
            control: false,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            partition_leader_epoch: -1,
            last_offset_delta: None,
            delete_horizon_ms: None,
        }
    }
}

/// Encodes records into one v2 batch. Record offsets are absolute and must not be below
/// `spec.base_offset`; they need not be contiguous (compacted batches have gaps).
pub fn encode_batch(spec: &BatchSpec, records: &[Record]) -> Result<Vec<u8>, RecordError> {
    let base_offset = spec.base_offset;
    let base_timestamp = match (spec.delete_horizon_ms, records.first()) {
        (Some(h), _) => h,
        (None, Some(r)) => r.timestamp,
        (None, None) => NO_TIMESTAMP,
    };
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(NO_TIMESTAMP);
    let mut max_delta: i32 = 0;
    let mut section = Vec::with_capacity(records.iter().map(record_size_hint).sum());
    let mut scratch = Vec::new();
    for r in records {
        let delta = r.offset - base_offset;
        let delta = i32::try_from(delta)
            .ok()
            .filter(|d| *d >= 0)
            .ok_or_else(|| {
                RecordError::InvalidBatch(format!(
                    "record offset {} is not within i32 of base offset {base_offset}",
                    r.offset
                ))
            })?;
        max_delta = max_delta.max(delta);
        scratch.clear();
        scratch.push(0u8); // record attributes (unused)
        put_varlong(&mut scratch, r.timestamp.wrapping_sub(base_timestamp));
        put_varint(&mut scratch, delta);
        put_nullable(&mut scratch, r.key.as_deref())?;
        put_nullable(&mut scratch, r.value.as_deref())?;
        put_varint(&mut scratch, len_i32(r.headers.len())?);
        for h in &r.headers {
            put_nullable(&mut scratch, Some(h.key.as_bytes()))?;
            put_nullable(&mut scratch, h.value.as_deref())?;
        }
        put_varint(&mut section, len_i32(scratch.len())?);
        section.extend_from_slice(&scratch);
    }
    let last_offset_delta = match spec.last_offset_delta {
        Some(d) if d < max_delta => {
            return Err(RecordError::InvalidBatch(format!(
                "last offset delta {d} is below a record's delta {max_delta}"
            )))
        }
        Some(d) => d,
        None => max_delta,
    };
    let body = compress(spec.compression, section)?;
    let mut attributes = spec.compression.id();
    if spec.timestamp_type == TimestampType::LogAppendTime {
        attributes |= 0x08;
    }
    if spec.transactional {
        attributes |= 0x10;
    }
    if spec.control {
        attributes |= 0x20;
    }
    if spec.delete_horizon_ms.is_some() {
        attributes |= 0x40;
    }
    let total = BATCH_HEADER_LEN + body.len();
    let batch_length = len_i32(total - LOG_OVERHEAD)?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&base_offset.to_be_bytes());
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&spec.partition_leader_epoch.to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&[0u8; 4]); // CRC, filled below
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&last_offset_delta.to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&spec.producer_id.to_be_bytes());
    out.extend_from_slice(&spec.producer_epoch.to_be_bytes());
    out.extend_from_slice(&spec.base_sequence.to_be_bytes());
    out.extend_from_slice(&len_i32(records.len())?.to_be_bytes());
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out[ATTRIBUTES_OFFSET..]);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

fn record_size_hint(r: &Record) -> usize {
    16 + r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len())
}

fn len_i32(n: usize) -> Result<i32, RecordError> {
    i32::try_from(n).map_err(|_| RecordError::InvalidBatch(format!("length {n} exceeds i32")))
}

fn put_nullable(buf: &mut Vec<u8>, bytes: Option<&[u8]>) -> Result<(), RecordError> {
    match bytes {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, len_i32(b.len())?);
            buf.extend_from_slice(b);
        }
    }
    Ok(())
}

/// Size in bytes of a record of this shape inside an uncompressed batch (used to bound batches).
pub fn estimated_record_size(key_len: usize, value_len: usize) -> usize {
    let body = 1 + 10 + 5 + 5 + key_len + 5 + value_len + 1;
    body + varint_len(i32::try_from(body).unwrap_or(i32::MAX))
}

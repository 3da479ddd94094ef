//! Reading records out of a batch: decoding them (copying, or sharing the buffer) and
//! validating them without copying.

use bytes::Bytes;

use super::compression::{records_section, Compression};
use super::header::{BatchHeader, TimestampType};
use super::varint::Reader;
use super::{Header, Record, RecordError, BATCH_HEADER_LEN};

/// Decodes every record of a validated batch (decompressing if needed). Control batches decode
/// like any other (their key is the control record type).
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record>, RecordError> {
    let header = BatchHeader::parse_and_validate(batch)?;
    let section = records_section(&header, batch)?;
    decode_section(&header, &section)
}

/// As [`decode_records`], without copying: keys, values and header values of an
/// uncompressed batch are slices of `batch` (of the decompressed buffer otherwise).
pub fn decode_records_shared(batch: &Bytes) -> Result<Vec<Record>, RecordError> {
    let header = BatchHeader::parse_and_validate(batch)?;
    let section = match header.compression()? {
        Compression::None => batch.slice(BATCH_HEADER_LEN..header.size()),
        _ => records_section(&header, batch)?,
    };
    decode_section(&header, &section)
}

fn decode_section(header: &BatchHeader, section: &Bytes) -> Result<Vec<Record>, RecordError> {
    let base_ts = header.base_timestamp;
    let log_append = header.timestamp_type() == TimestampType::LogAppendTime;
    let mut reader = Reader::new(section);
    // Every record takes at least 7 bytes: never trust the header's count for the capacity.
    let mut out = Vec::with_capacity((header.record_count.max(0) as usize).min(section.len() / 7));
    for i in 0..header.record_count {
        let len = reader.varint()?;
        if len < 0 {
            return Err(RecordError::InvalidRecord(format!(
                "record {i} has length {len}"
            )));
        }
        let body = reader.bytes(len as usize)?;
        let mut r = Reader::new(body);
        let _attributes = r.i8()?;
        let ts_delta = r.varlong()?;
        let offset_delta = r.varint()?;
        if offset_delta < 0 || offset_delta > header.last_offset_delta {
            return Err(RecordError::InvalidRecord(format!(
                "offset delta {offset_delta} outside the batch (last delta {})",
                header.last_offset_delta
            )));
        }
        let key = r.nullable_bytes()?.map(|b| section.slice_ref(b));
        let value = r.nullable_bytes()?.map(|b| section.slice_ref(b));
        let header_count = r.varint()?;
        if header_count < 0 {
            return Err(RecordError::InvalidRecord(format!(
                "negative header count {header_count}"
            )));
        }
        let mut headers = Vec::with_capacity((header_count as usize).min(64));
        for _ in 0..header_count {
            let key_len = r.varint()?;
            if key_len < 0 {
                return Err(RecordError::InvalidRecord("null header key".into()));
            }
            let key = std::str::from_utf8(r.bytes(key_len as usize)?)
                .map_err(|_| RecordError::InvalidRecord("header key is not UTF-8".into()))?
                .to_owned();
            let value = r.nullable_bytes()?.map(|b| section.slice_ref(b));
            headers.push(Header { key, value });
        }
        if r.remaining() != 0 {
            return Err(RecordError::InvalidRecord(format!(
                "record {i} has {} trailing bytes",
                r.remaining()
            )));
        }
        let timestamp = if log_append {
            header.max_timestamp
        } else {
            base_ts.wrapping_add(ts_delta)
        };
        out.push(Record {
            offset: header.base_offset + i64::from(offset_delta),
            timestamp,
            key,
            value,
            headers,
        });
    }
    if reader.remaining() != 0 {
        return Err(RecordError::InvalidRecord(format!(
            "{} bytes after the last of {} records",
            reader.remaining(),
            header.record_count
        )));
    }
    Ok(out)
}

/// Checks every record of a batch without copying it: framing, lengths, header counts, that
/// offset deltas increase strictly within the batch (and, with `strict_offsets`, are exactly
/// `0..recordCount`, as producers write them), and with `require_keys` that no key is null
/// (compacted topics). Returns the number of records with a null value (tombstones).
pub fn validate_records(
    batch: &[u8],
    strict_offsets: bool,
    require_keys: bool,
) -> Result<u32, RecordError> {
    let header = BatchHeader::parse_and_validate(batch)?;
    let section;
    let body: &[u8] = if header.compression()? == Compression::None {
        &batch[BATCH_HEADER_LEN..header.size()]
    } else {
        section = records_section(&header, batch)?;
        &section
    };
    // In i64: `lastOffsetDelta` may be i32::MAX (found by fuzzing: `+ 1` overflowed).
    if strict_offsets && i64::from(header.record_count) != i64::from(header.last_offset_delta) + 1 {
        return Err(RecordError::InvalidBatch(format!(
            "record count {} does not match last offset delta {}",
            header.record_count, header.last_offset_delta
        )));
    }
    let mut reader = Reader::new(body);
    let mut previous_delta: i64 = -1;
    let mut tombstones = 0u32;
    for i in 0..header.record_count {
        let len = reader.varint()?;
        if len < 0 {
            return Err(RecordError::InvalidRecord(format!(
                "record {i} has length {len}"
            )));
        }
        let mut r = Reader::new(reader.bytes(len as usize)?);
        r.i8()?;
        r.varlong()?;
        let delta = i64::from(r.varint()?);
        let expected_ok = if strict_offsets {
            delta == i64::from(i)
        } else {
            delta > previous_delta && delta <= i64::from(header.last_offset_delta)
        };
        if !expected_ok {
            return Err(RecordError::InvalidRecord(format!(
                "record {i} has offset delta {delta} (previous {previous_delta})"
            )));
        }
        previous_delta = delta;
        let key = r.nullable_bytes()?;
        if require_keys && key.is_none() && !header.is_control() {
            return Err(RecordError::InvalidRecord(format!(
                "record {i} has a null key, which a compacted topic does not accept"
            )));
        }
        if r.nullable_bytes()?.is_none() {
            tombstones += 1;
        }
        let header_count = r.varint()?;
        if header_count < 0 {
            return Err(RecordError::InvalidRecord(format!(
                "record {i} has header count {header_count}"
            )));
        }
        for _ in 0..header_count {
            let key_len = r.varint()?;
            if key_len < 0 {
                return Err(RecordError::InvalidRecord("null header key".into()));
            }
            std::str::from_utf8(r.bytes(key_len as usize)?)
                .map_err(|_| RecordError::InvalidRecord("header key is not UTF-8".into()))?;
            r.nullable_bytes()?;
        }
        if r.remaining() != 0 {
            return Err(RecordError::InvalidRecord(format!(
                "record {i} has {} trailing bytes",
                r.remaining()
            )));
        }
    }
    if reader.remaining() != 0 {
        return Err(RecordError::InvalidRecord(format!(
            "{} bytes after the last of {} records",
            reader.remaining(),
            header.record_count
        )));
    }
    Ok(tombstones)
}

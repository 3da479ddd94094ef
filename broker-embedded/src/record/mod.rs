//! Kafka's record batch format v2 (magic 2): the unit stored on disk and sent on the wire.
//!
//! Layout (Kafka protocol, "Record Batch" in the message format docs): a 61-byte header —
//! `baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32 |
//! attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 | producerId i64 |
//! producerEpoch i16 | baseSequence i32 | recordCount i32` — followed by the (possibly
//! compressed) records. The CRC-32C covers everything from `attributes` to the end, so the
//! broker can rewrite `baseOffset` without touching it.
//!
//! [`BatchHeader`] is a cheap, allocation-free view of a header used on every hot path
//! (append validation, indexing, fetch); [`decode_records`] and [`BatchBuilder`] decode and
//! encode the records themselves (with gzip, snappy, lz4 and zstd through the `kafka-protocol`
//! crate's codecs).

mod varint;

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use varint::{put_varint, put_varlong, varint_len, Reader};

/// Size of the fixed batch header.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before `partitionLeaderEpoch` that `batchLength` does not count (offset + length).
pub const LOG_OVERHEAD: usize = 12;
/// The only record-batch magic this crate reads and writes.
pub const MAGIC_V2: i8 = 2;
/// Kafka's "no timestamp" sentinel.
pub const NO_TIMESTAMP: i64 = -1;
/// Kafka's "no producer id" sentinel (non-idempotent producers).
pub const NO_PRODUCER_ID: i64 = -1;
/// Kafka's "no producer epoch" sentinel.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Kafka's "no sequence" sentinel.
pub const NO_SEQUENCE: i32 = -1;

const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const MAX_TIMESTAMP_OFFSET: usize = 35;

/// Errors found while reading or writing record batches.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The buffer ends before the batch does.
    #[error("truncated record batch: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the batch header says it needs.
        needed: usize,
        /// Bytes actually available.
        available: usize,
    },
    /// A magic other than 2.
    #[error("unsupported record batch magic {0} (only v2 is supported)")]
    UnsupportedMagic(i8),
    /// The stored CRC does not match the content.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC computed over the batch.
        computed: u32,
    },
    /// `batchLength` is impossible.
    #[error("invalid record batch length {0}")]
    InvalidLength(i32),
    /// The header is internally inconsistent (counts, deltas, timestamps).
    #[error("invalid record batch: {0}")]
    InvalidBatch(String),
    /// A record inside the batch could not be decoded.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// The compression codec id is unknown.
    #[error("unsupported compression codec id {0}")]
    UnsupportedCompression(i16),
    /// Compressing or decompressing failed.
    #[error("{codec:?} (de)compression failed: {message}")]
    Compression {
        /// The codec in use.
        codec: Compression,
        /// What the codec reported.
        message: String,
    },
}

/// Compression codec of a batch (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Uncompressed.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// snappy (xerial framing, as the Java client writes it).
    Snappy,
    /// lz4 (frame format).
    Lz4,
    /// zstd.
    Zstd,
}

impl Compression {
    fn from_attributes(attributes: i16) -> Result<Self, RecordError> {
        match attributes & 0x07 {
            0 => Ok(Self::None),
            1 => Ok(Self::Gzip),
            2 => Ok(Self::Snappy),
            3 => Ok(Self::Lz4),
            4 => Ok(Self::Zstd),
            other => Err(RecordError::UnsupportedCompression(other)),
        }
    }

    fn id(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }
}

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

/// A record header (Kafka header keys are UTF-8 strings; values are nullable bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key.
    pub key: String,
    /// Header value, `None` for null.
    pub value: Option<Bytes>,
}

/// One decoded record with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset in the partition.
    pub offset: i64,
    /// Absolute timestamp (ms since the epoch).
    pub timestamp: i64,
    /// Key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Headers in order (duplicates allowed, as in Kafka).
    pub headers: Vec<Header>,
}

/// Largest decompressed records section accepted (a compressed batch that expands beyond
/// this is refused as corrupt rather than allowed to exhaust memory).
pub const MAX_DECOMPRESSED_BYTES: usize = 256 * 1024 * 1024;

/// Reads `r` to the end, failing once more than `limit` bytes come out.
fn read_bounded(
    mut r: impl std::io::Read,
    limit: usize,
    codec: Compression,
) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = r.read(&mut chunk).map_err(|e| RecordError::Compression {
            codec,
            message: e.to_string(),
        })?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > limit {
            return Err(RecordError::Compression {
                codec,
                message: format!("decompressed size exceeds {limit} bytes"),
            });
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Upper bound on snappy's expansion ratio (a 3-byte copy element yields at most 64 bytes).
const SNAPPY_MAX_EXPANSION: usize = 22;

/// Java's xerial snappy framing: a 16-byte magic header, then `u32 length | block` pairs;
/// without the header, one raw snappy block.
fn snappy_decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, RecordError> {
    const MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
    let codec = Compression::Snappy;
    let err = |m: String| RecordError::Compression { codec, message: m };
    let raw = |block: &[u8], out: &mut Vec<u8>| -> Result<(), RecordError> {
        let len = snap::raw::decompress_len(block).map_err(|e| err(e.to_string()))?;
        if out.len() + len > limit {
            return Err(err(format!("decompressed size exceeds {limit} bytes")));
        }
        // The output buffer is zero-filled before decompressing, so a claimed length must be
        // one the block can produce: no snappy element expands more than 64 bytes from 3
        // (found by fuzzing: a 10-byte block claiming 200 MiB had us zero 200 MiB).
        if len > block.len().saturating_mul(SNAPPY_MAX_EXPANSION) {
            return Err(err(format!(
                "a {}-byte snappy block cannot hold {len} bytes",
                block.len()
            )));
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| err(e.to_string()))?;
        Ok(())
    };
    let mut out = Vec::new();
    if body.len() < 16 || &body[..8] != MAGIC {
        raw(body, &mut out)?;
        return Ok(out);
    }
    let mut pos = 16;
    while pos < body.len() {
        let len_bytes = body
            .get(pos..pos + 4)
            .ok_or_else(|| err("truncated block length".into()))?;
        let len =
            u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        pos += 4;
        let block = body
            .get(pos..pos + len)
            .ok_or_else(|| err("truncated block".into()))?;
        raw(block, &mut out)?;
        pos += len;
    }
    Ok(out)
}

/// Returns the uncompressed records section of a batch (bounded by
/// [`MAX_DECOMPRESSED_BYTES`]).
fn records_section(header: &BatchHeader, batch: &[u8]) -> Result<Bytes, RecordError> {
    let body = &batch[BATCH_HEADER_LEN..header.size()];
    let codec = header.compression()?;
    let limit = MAX_DECOMPRESSED_BYTES;
    let out = match codec {
        Compression::None => return Ok(Bytes::copy_from_slice(body)),
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(body), limit, codec)?,
        Compression::Snappy => snappy_decompress(body, limit)?,
        Compression::Lz4 => {
            let dec = lz4::Decoder::new(body).map_err(|e| RecordError::Compression {
                codec,
                message: e.to_string(),
            })?;
            read_bounded(dec, limit, codec)?
        }
        Compression::Zstd => {
            let dec =
                zstd::stream::read::Decoder::new(body).map_err(|e| RecordError::Compression {
                    codec,
                    message: e.to_string(),
                })?;
            read_bounded(dec, limit, codec)?
        }
    };
    Ok(Bytes::from(out))
}

/// `kafka-protocol`'s codecs report `anyhow` errors; they never leave this module.
type AnyhowError = anyhow::Error;

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

/// Settings of a batch being built by [`BatchBuilder`].
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

fn compress(codec: Compression, section: Vec<u8>) -> Result<Vec<u8>, RecordError> {
    let wrap = |e: AnyhowError| RecordError::Compression {
        codec,
        message: e.to_string(),
    };
    let mut out = BytesMut::new();
    let fill = |b: &mut BytesMut| -> Result<(), AnyhowError> {
        b.extend_from_slice(&section);
        Ok(())
    };
    match codec {
        Compression::None => return Ok(section),
        Compression::Gzip => Gzip::compress(&mut out, fill).map_err(wrap)?,
        Compression::Snappy => Snappy::compress(&mut out, fill).map_err(wrap)?,
        Compression::Lz4 => Lz4::compress(&mut out, fill).map_err(wrap)?,
        Compression::Zstd => Zstd::compress(&mut out, fill).map_err(wrap)?,
    }
    Ok(out.to_vec())
}

/// Size in bytes of a record of this shape inside an uncompressed batch (used to bound batches).
pub fn estimated_record_size(key_len: usize, value_len: usize) -> usize {
    let body = 1 + 10 + 5 + 5 + key_len + 5 + value_len + 1;
    body + varint_len(i32::try_from(body).unwrap_or(i32::MAX))
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(offset: i64, ts: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Record {
        Record {
            offset,
            timestamp: ts,
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            headers: vec![],
        }
    }

    #[test]
    fn encode_decode_round_trip_every_codec() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut records = vec![
                rec(10, 1_000, Some(b"k1"), Some(b"v1")),
                rec(11, 999, None, Some(b"no key")),
                rec(12, 1_500, Some(b"k2"), None),
            ];
            records[0].headers.push(Header {
                key: "h".into(),
                value: Some(Bytes::from_static(b"x")),
            });
            records[0].headers.push(Header {
                key: "h".into(),
                value: None,
            });
            let spec = BatchSpec {
                base_offset: 10,
                compression: codec,
                ..BatchSpec::default()
            };
            let batch = encode_batch(&spec, &records).unwrap();
            let header = BatchHeader::parse_and_validate(&batch).unwrap();
            assert_eq!(header.compression().unwrap(), codec);
            assert_eq!(header.record_count, 3);
            assert_eq!(header.last_offset(), 12);
            assert_eq!(header.max_timestamp, 1_500);
            assert_eq!(decode_records(&batch).unwrap(), records);
            assert_eq!(
                decode_records_shared(&Bytes::from(batch.clone())).unwrap(),
                records
            );
            assert_eq!(validate_records(&batch, true, false).unwrap(), 1);
            assert!(validate_records(&batch, true, true).is_err(), "null key");
        }
    }

    #[test]
    fn crc_detects_flipped_bytes_and_base_offset_rewrite_keeps_it() {
        let mut batch =
            encode_batch(&BatchSpec::default(), &[rec(0, 5, Some(b"k"), Some(b"v"))]).unwrap();
        set_base_offset(&mut batch, 42);
        let h = BatchHeader::parse_and_validate(&batch).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(decode_records(&batch).unwrap()[0].offset, 42);
        let last = batch.len() - 1;
        batch[last] ^= 0x01;
        assert!(matches!(
            BatchHeader::parse_and_validate(&batch),
            Err(RecordError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn log_append_time_recomputes_crc() {
        let mut batch =
            encode_batch(&BatchSpec::default(), &[rec(0, 5, Some(b"k"), Some(b"v"))]).unwrap();
        set_log_append_time(&mut batch, 77).unwrap();
        let h = BatchHeader::parse_and_validate(&batch).unwrap();
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(decode_records(&batch).unwrap()[0].timestamp, 77);
    }

    #[test]
    fn batch_iter_stops_at_torn_tail() {
        let a = encode_batch(&BatchSpec::default(), &[rec(0, 1, None, Some(b"a"))]).unwrap();
        let b = encode_batch(
            &BatchSpec {
                base_offset: 1,
                ..BatchSpec::default()
            },
            &[rec(1, 1, None, Some(b"b"))],
        )
        .unwrap();
        let mut buf = a.clone();
        buf.extend_from_slice(&b[..b.len() - 3]);
        let items: Vec<_> = BatchIter::new(&buf).collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert!(matches!(items[1], Err((pos, RecordError::Truncated { .. })) if pos == a.len()));
    }

    #[test]
    fn compacted_shape_keeps_last_offset_delta_and_horizon() {
        let spec = BatchSpec {
            base_offset: 100,
            last_offset_delta: Some(9),
            delete_horizon_ms: Some(50_000),
            ..BatchSpec::default()
        };
        let records = vec![
            rec(103, 10, Some(b"a"), None),
            rec(107, 20, Some(b"b"), Some(b"x")),
        ];
        let batch = encode_batch(&spec, &records).unwrap();
        let h = BatchHeader::parse_and_validate(&batch).unwrap();
        assert_eq!(h.last_offset(), 109);
        assert!(h.has_delete_horizon());
        assert_eq!(h.base_timestamp, 50_000);
        assert_eq!(decode_records(&batch).unwrap(), records);
        assert!(validate_records(&batch, false, true).is_ok());
        assert!(validate_records(&batch, true, true).is_err());
    }

    #[test]
    fn decompression_is_bounded() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&vec![0u8; 100_000]).unwrap();
        let gz = enc.finish().unwrap();
        assert!(read_bounded(
            flate2::read::GzDecoder::new(&gz[..]),
            1_000,
            Compression::Gzip
        )
        .is_err());
        assert_eq!(
            read_bounded(
                flate2::read::GzDecoder::new(&gz[..]),
                100_000,
                Compression::Gzip
            )
            .unwrap()
            .len(),
            100_000
        );
        assert!(snappy_decompress(&[0xff, 0xff, 0xff, 0xff, 0x0f], 1_000).is_err());
        // A 5-byte block claiming 200 MiB is refused before anything is allocated.
        assert!(
            snappy_decompress(&[0x80, 0x80, 0x80, 0x64, 0x00], MAX_DECOMPRESSED_BYTES).is_err()
        );
    }

    #[test]
    fn offsets_that_would_overflow_are_rejected() {
        let mut batch =
            encode_batch(&BatchSpec::default(), &[rec(0, 1, None, Some(b"v"))]).unwrap();
        set_base_offset(&mut batch, i64::MAX);
        assert!(matches!(
            BatchHeader::parse(&batch),
            Err(RecordError::InvalidBatch(_))
        ));
        set_base_offset(&mut batch, -5);
        assert!(BatchHeader::parse(&batch).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            for b in BatchIter::new(&bytes).flatten() {
                let _ = decode_records(b.bytes);
            }
            let _ = validate_records(&bytes, true, true);
            let _ = decode_records(&bytes);
        }

        #[test]
        fn mutated_batches_never_panic(
            flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..4),
            codec in 0usize..5,
        ) {
            let codec = [Compression::None, Compression::Gzip, Compression::Snappy,
                         Compression::Lz4, Compression::Zstd][codec];
            let records: Vec<_> = (0..5)
                .map(|i| rec(i, i * 3, Some(b"key"), Some(b"some value bytes")))
                .collect();
            let mut batch = encode_batch(
                &BatchSpec { compression: codec, ..BatchSpec::default() }, &records).unwrap();
            for (pos, byte) in flips {
                let n = batch.len();
                batch[pos % n] ^= byte | 1;
            }
            let _ = decode_records(&batch);
            let _ = validate_records(&batch, true, true);
        }
    }
}

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
//! (append validation, indexing, fetch); [`decode_records`] and [`encode_batch`] decode and
//! encode the records themselves (with gzip, snappy, lz4 and zstd through the `kafka-protocol`
//! crate's codecs).
//!
//! One concern a file: `header` (the header view, in-place rewrites, batch iteration),
//! `compression` (codecs and bounded decompression), `decode` (decoding and validating
//! records), `encode` (building batches); `varint` holds Kafka's zig-zag varints. This file
//! holds the constants, the error type and the record types.

mod compression;
mod decode;
mod encode;
mod header;
mod varint;

pub use compression::{Compression, MAX_DECOMPRESSED_BYTES};
pub use decode::{decode_records, decode_records_shared, validate_records};
pub use encode::{encode_batch, estimated_record_size, BatchSpec};
pub use header::{
    set_base_offset, set_log_append_time, set_partition_leader_epoch, BatchHeader, BatchIter,
    BatchRef, TimestampType,
};

use bytes::Bytes;

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

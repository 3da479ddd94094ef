//! Compression codecs of the records section: the [`Compression`] attribute, decompression
//! bounded by [`MAX_DECOMPRESSED_BYTES`] (gzip, xerial-framed snappy, lz4, zstd) and
//! compression through the `kafka-protocol` crate's codecs.

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use super::header::BatchHeader;
use super::{RecordError, BATCH_HEADER_LEN};

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
    pub(super) fn from_attributes(attributes: i16) -> Result<Self, RecordError> {
        match attributes & 0x07 {
            0 => Ok(Self::None),
            1 => Ok(Self::Gzip),
            2 => Ok(Self::Snappy),
            3 => Ok(Self::Lz4),
            4 => Ok(Self::Zstd),
            other => Err(RecordError::UnsupportedCompression(other)),
        }
    }

    pub(super) fn id(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }
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
pub(super) fn records_section(header: &BatchHeader, batch: &[u8]) -> Result<Bytes, RecordError> {
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

pub(super) fn compress(codec: Compression, section: Vec<u8>) -> Result<Vec<u8>, RecordError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

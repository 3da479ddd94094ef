//! Entry points for the fuzz targets in `broker-embedded/fuzz` (feature `fuzzing`, off by
//! default). Not a stable API: it exists so the targets exercise exactly the server's code.

use bytes::Bytes;

use super::{frame_check, frame_size, parse_frame, ParsedFrame, ServerConfig};

/// What [`decode_request`] made of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRequest {
    /// API key from the header.
    pub api_key: i16,
    /// API version from the header.
    pub version: i16,
    /// Bytes of the frame (after the size prefix) the layout check walked; 0 for an
    /// ApiVersions request at an unsupported version (answered without decoding).
    pub checked_len: usize,
    /// Bytes of the frame the header and body decoders consumed; 0 as above.
    pub decoded_len: usize,
}

/// Parses one size-prefixed request frame exactly as a connection does: the size prefix
/// against the default `max_frame_bytes`, then the layout check and the header and body
/// decoders. Bytes after the frame are ignored. Never panics and never allocates more than a
/// small multiple of the input.
pub fn decode_request(data: &[u8]) -> Result<DecodedRequest, String> {
    let Some((prefix, rest)) = data.split_first_chunk::<4>() else {
        return Err(format!("{} bytes: no size prefix", data.len()));
    };
    let size =
        frame_size(*prefix, ServerConfig::default().max_frame_bytes).map_err(|e| e.to_string())?;
    let Some(frame) = rest.get(..size) else {
        return Err(format!("frame of {size} bytes truncated to {}", rest.len()));
    };
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    match parse_frame(Bytes::copy_from_slice(frame), false).map_err(|e| e.to_string())? {
        ParsedFrame::UnsupportedApiVersions { .. } => Ok(DecodedRequest {
            api_key,
            version,
            checked_len: 0,
            decoded_len: 0,
        }),
        ParsedFrame::Request {
            checked, trailing, ..
        } => Ok(DecodedRequest {
            api_key,
            version,
            checked_len: checked,
            decoded_len: size - trailing,
        }),
    }
}

/// Well-formed size-prefixed request frames for every supported API and version (a seed
/// corpus).
pub fn sample_request_frames() -> Vec<Vec<u8>> {
    frame_check::sample_frames()
        .into_iter()
        .map(|(_, _, frame)| {
            let mut out = (frame.len() as i32).to_be_bytes().to_vec();
            out.extend_from_slice(&frame);
            out
        })
        .collect()
}

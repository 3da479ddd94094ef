//! Kafka framing for the controller listener: size-prefixed frames, request header v2, and the
//! internal API keys of the Raft RPCs (outside Kafka's key range, JSON bodies).

use std::time::Duration;

use broker_embedded::client::{ClientError, KafkaConnection};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Internal API key: Raft AppendEntries (JSON `openraft::raft::AppendEntriesRequest`).
pub const API_RAFT_APPEND_ENTRIES: i16 = 30000;
/// Internal API key: Raft RequestVote (JSON `openraft::raft::VoteRequest`).
pub const API_RAFT_VOTE: i16 = 30001;
/// Internal API key: Raft InstallSnapshot, the whole snapshot in one frame
/// (JSON header with the vote and snapshot metadata, then the raw snapshot bytes).
pub const API_RAFT_INSTALL_SNAPSHOT: i16 = 30002;
/// Internal API key: FetchMetadata, a long-poll for the applied replicated state.
pub const API_FETCH_METADATA: i16 = 30003;
/// Internal API key: QuorumLeader, which voter leads and in which term.
pub const API_QUORUM_LEADER: i16 = 30004;
/// The only version of the internal APIs.
pub const INTERNAL_API_VERSION: i16 = 0;
/// Request header version of the internal APIs.
pub(crate) const INTERNAL_REQUEST_HEADER_VERSION: i16 = 2;
/// Response header version of the internal APIs.
pub(crate) const INTERNAL_RESPONSE_HEADER_VERSION: i16 = 1;

/// Kafka's NOT_CONTROLLER error code.
pub const NOT_CONTROLLER: i16 = 41;

/// Whether `api_key` is one of the internal API keys.
pub fn is_internal_api(api_key: i16) -> bool {
    (API_RAFT_APPEND_ENTRIES..=API_QUORUM_LEADER).contains(&api_key)
}

/// A transport failure.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer did not answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The peer sent something that does not decode.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// Body of a FetchMetadata request.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FetchMetadataRequest {
    /// The applied offset the caller already has (-1: none).
    pub since_offset: i64,
    /// How long to wait for a newer state.
    pub max_wait_ms: u64,
}

/// JSON header of a FetchMetadata response (the serialized state follows it).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FetchMetadataHeader {
    /// Log index of the last applied entry of the answering voter (-1: none).
    pub applied_offset: i64,
    /// The leader the answering voter knows (-1: none).
    pub leader_id: i32,
    /// Whether the state follows (only when `applied_offset > since_offset`).
    pub has_state: bool,
}

/// Body of a QuorumLeader response.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct QuorumLeaderResponse {
    /// The leader the answering voter knows (-1: none).
    pub leader_id: i32,
    /// The answering voter's current term.
    pub term: u64,
}

/// Encodes a JSON header followed by a raw blob: `[u32 header length][header JSON][blob]`.
pub(crate) fn encode_with_blob<T: Serialize>(
    header: &T,
    blob: &[u8],
) -> Result<Vec<u8>, WireError> {
    let json = serde_json::to_vec(header).map_err(|e| WireError::Protocol(e.to_string()))?;
    let len = u32::try_from(json.len()).map_err(|e| WireError::Protocol(e.to_string()))?;
    let mut out = Vec::with_capacity(4 + json.len() + blob.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(blob);
    Ok(out)
}

/// Decodes what [`encode_with_blob`] wrote.
pub(crate) fn decode_with_blob<T: DeserializeOwned>(
    mut body: Bytes,
) -> Result<(T, Bytes), WireError> {
    if body.len() < 4 {
        return Err(WireError::Protocol(
            "body shorter than its header length".into(),
        ));
    }
    let len = body.get_u32() as usize;
    if body.len() < len {
        return Err(WireError::Protocol("body shorter than its header".into()));
    }
    let header_bytes = body.split_to(len);
    let header =
        serde_json::from_slice(&header_bytes).map_err(|e| WireError::Protocol(e.to_string()))?;
    Ok((header, body))
}

/// Reads one size-prefixed frame; `Ok(None)` at a clean end of stream.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
) -> Result<Option<Bytes>, WireError> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size);
    let len = usize::try_from(size)
        .map_err(|_| WireError::Protocol(format!("negative frame size {size}")))?;
    if len > max_bytes {
        return Err(WireError::Protocol(format!(
            "frame of {len} bytes exceeds the {max_bytes} byte bound"
        )));
    }
    let mut buf = vec![0u8; len];
    reader.read_exact(&mut buf).await?;
    Ok(Some(Bytes::from(buf)))
}

/// Prefixes `frame` (which starts with 4 placeholder bytes) with its size.
fn finish_frame(mut buf: BytesMut) -> Result<Bytes, WireError> {
    let size =
        i32::try_from(buf.len() - 4).map_err(|_| WireError::Protocol("frame too large".into()))?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// Encodes a response frame: size, response header of `header_version`, body bytes.
pub(crate) fn encode_response_frame(
    correlation_id: i32,
    header_version: i16,
    body: impl FnOnce(&mut BytesMut) -> Result<(), WireError>,
) -> Result<Bytes, WireError> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header
        .encode(&mut buf, header_version)
        .map_err(|e| WireError::Protocol(format!("encoding a response header: {e}")))?;
    body(&mut buf)?;
    finish_frame(buf)
}

/// The response header version Kafka uses for `api` at `version` (ApiVersions always v0).
pub(crate) fn kafka_response_header_version(api: ApiKey, version: i16) -> i16 {
    if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    }
}

/// Sends an internal API request with a raw body on `conn`; returns the raw response body.
pub async fn call_internal(
    conn: &mut KafkaConnection,
    api_key: i16,
    body: &[u8],
    timeout: Duration,
) -> Result<Bytes, ClientError> {
    conn.call_bytes(
        api_key,
        INTERNAL_API_VERSION,
        INTERNAL_REQUEST_HEADER_VERSION,
        INTERNAL_RESPONSE_HEADER_VERSION,
        body,
        timeout,
    )
    .await
}

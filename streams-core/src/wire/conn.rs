//! One blocking Kafka-protocol connection: framing, correlation ids and API-version
//! negotiation, on the `kafka-protocol` crate's message types.
//!
//! The group client needs only a handful of request/response round trips (FindCoordinator,
//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch), each waited for
//! by the calling thread, so a plain `std::net::TcpStream` with per-call timeouts is all it
//! takes. On connect the client sends `ApiVersions` (v0, which every broker answers) and
//! afterwards speaks, per API, the highest version both sides support, capped by what this
//! client implements ([`Connection::version`]).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

use super::WireError;

/// Largest response accepted (a group's JoinGroup response carries every member's
/// metadata; 100 MiB is Kafka's `socket.request.max.bytes`).
const MAX_RESPONSE_BYTES: usize = 100 << 20;

/// A connected, version-negotiated Kafka-protocol connection.
pub(crate) struct Connection {
    stream: TcpStream,
    address: String,
    client_id: String,
    correlation_id: i32,
    /// API key -> (min, max) version the broker supports.
    versions: BTreeMap<i16, (i16, i16)>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `address` (host:port) within `timeout` and negotiates API versions.
    pub(crate) fn connect(
        address: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Self, WireError> {
        let io = |e: std::io::Error| WireError::Io {
            address: address.to_owned(),
            source: e,
        };
        let addrs: Vec<_> = address.to_socket_addrs().map_err(io)?.collect();
        let mut last = None;
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match stream {
            Some(s) => s,
            None => {
                return Err(io(last.unwrap_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no address resolved")
                })))
            }
        };
        stream.set_nodelay(true).map_err(io)?;
        let mut conn = Connection {
            stream,
            address: address.to_owned(),
            client_id: client_id.to_owned(),
            correlation_id: 0,
            versions: BTreeMap::new(),
        };
        let response = conn.call_at(ApiVersionsRequest::default(), 0, timeout)?;
        if response.error_code != 0 {
            return Err(WireError::kafka("ApiVersions", response.error_code, None));
        }
        conn.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(conn)
    }

    /// The address this connection goes to.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// The version of `Req` to speak: the highest the broker supports, at most `cap` (what
    /// this client implements) and at least `floor` (what it needs).
    pub(crate) fn version<Req: Request>(&self, floor: i16, cap: i16) -> Result<i16, WireError> {
        let api = api_name(Req::KEY);
        let (min, max) = *self
            .versions
            .get(&Req::KEY)
            .ok_or(WireError::UnsupportedApi { api, floor, cap })?;
        let v = max.min(cap).min(Req::VERSIONS.max);
        if v < floor || v < min {
            return Err(WireError::UnsupportedApi { api, floor, cap });
        }
        Ok(v)
    }

    /// Sends `request` at the negotiated version (see [`Connection::version`]) and waits up
    /// to `timeout` for its response. Returns the version spoken with the response.
    pub(crate) fn call<Req: Request>(
        &mut self,
        request: Req,
        version: i16,
        timeout: Duration,
    ) -> Result<Req::Response, WireError> {
        self.call_at(request, version, timeout)
    }

    fn call_at<Req: Request>(
        &mut self,
        request: Req,
        version: i16,
        timeout: Duration,
    ) -> Result<Req::Response, WireError> {
        let api = api_name(Req::KEY);
        let mut buf = self.call_raw(request, version, timeout)?;
        let response = Req::Response::decode(&mut buf, version).map_err(|e| WireError::Codec {
            api,
            reason: e.to_string(),
        })?;
        if buf.has_remaining() {
            tracing::debug!(api, left = buf.remaining(), "response has trailing bytes");
        }
        Ok(response)
    }

    /// Sends `request` and returns the response body (after the response header) undecoded,
    /// for a caller that reads it more leniently than the codec.
    pub(crate) fn call_raw<Req: Request>(
        &mut self,
        request: Req,
        version: i16,
        timeout: Duration,
    ) -> Result<bytes::Bytes, WireError> {
        let api = api_name(Req::KEY);
        let key = ApiKey::try_from(Req::KEY).map_err(|_| WireError::Codec {
            api,
            reason: "unknown API key".into(),
        })?;
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(Req::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let codec = |e: &dyn std::fmt::Display| WireError::Codec {
            api,
            reason: e.to_string(),
        };
        let mut body = BytesMut::new();
        body.extend_from_slice(&[0; 4]);
        header
            .encode(&mut body, key.request_header_version(version))
            .map_err(|e| codec(&e))?;
        request.encode(&mut body, version).map_err(|e| codec(&e))?;
        let size = i32::try_from(body.len() - 4).map_err(|_| WireError::Codec {
            api,
            reason: "request larger than 2 GiB".into(),
        })?;
        body[..4].copy_from_slice(&size.to_be_bytes());
        let deadline = Instant::now() + timeout;
        let address = self.address.clone();
        let io = |e: std::io::Error| WireError::Io {
            address: address.clone(),
            source: e,
        };
        self.stream
            .set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(io)?;
        self.stream.write_all(&body).map_err(io)?;
        let mut len = [0u8; 4];
        self.read_exact_until(&mut len, deadline)?;
        let len = i32::from_be_bytes(len);
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_RESPONSE_BYTES && *l >= 4)
            .ok_or_else(|| WireError::Codec {
                api,
                reason: format!("response size {len} out of range"),
            })?;
        let mut frame = vec![0u8; len];
        self.read_exact_until(&mut frame, deadline)?;
        let mut buf = bytes::Bytes::from(frame);
        let rh = ResponseHeader::decode(&mut buf, key.response_header_version(version))
            .map_err(|e| codec(&e))?;
        if rh.correlation_id != self.correlation_id {
            return Err(WireError::Codec {
                api,
                reason: format!(
                    "correlation id {} where {} was expected",
                    rh.correlation_id, self.correlation_id
                ),
            });
        }
        Ok(buf)
    }

    fn read_exact_until(&mut self, mut buf: &mut [u8], deadline: Instant) -> Result<(), WireError> {
        while !buf.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WireError::Timeout {
                    address: self.address.clone(),
                });
            }
            let io = |e: std::io::Error| WireError::Io {
                address: self.address.clone(),
                source: e,
            };
            self.stream.set_read_timeout(Some(left)).map_err(io)?;
            match self.stream.read(buf) {
                Ok(0) => {
                    return Err(WireError::Io {
                        address: self.address.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "connection closed by the broker",
                        ),
                    })
                }
                Ok(n) => buf = &mut buf[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(io(e)),
            }
        }
        Ok(())
    }
}

/// The protocol name of an API key, for messages.
pub(crate) fn api_name(key: i16) -> &'static str {
    match ApiKey::try_from(key) {
        Ok(ApiKey::FindCoordinator) => "FindCoordinator",
        Ok(ApiKey::JoinGroup) => "JoinGroup",
        Ok(ApiKey::SyncGroup) => "SyncGroup",
        Ok(ApiKey::Heartbeat) => "Heartbeat",
        Ok(ApiKey::LeaveGroup) => "LeaveGroup",
        Ok(ApiKey::OffsetCommit) => "OffsetCommit",
        Ok(ApiKey::OffsetFetch) => "OffsetFetch",
        Ok(ApiKey::ApiVersions) => "ApiVersions",
        Ok(ApiKey::Metadata) => "Metadata",
        Ok(ApiKey::DescribeConfigs) => "DescribeConfigs",
        _ => "request",
    }
}

//! An async Kafka-protocol client connection, for the broker's own traffic to other nodes:
//! followers fetching from partition leaders, brokers talking to the controller quorum, and
//! controllers talking to each other.
//!
//! One [`KafkaConnection`] is one TCP connection with one request in flight at a time (Kafka
//! answers a connection's requests in order, and the callers here wait for each answer). On
//! connect it sends `ApiVersions` v0 and then speaks, per API, the highest version both sides
//! support within what the caller asks for ([`KafkaConnection::version`]). Frames with API keys
//! outside Kafka's range (internal RPCs) go through [`KafkaConnection::call_bytes`].
//!
//! Every failure is a [`ClientError`]; nothing the peer sends can panic the caller: frame sizes
//! are bounded, correlation ids are checked, bodies are decoded with the codec's own checks.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response frame accepted (Kafka's default `socket.request.max.bytes`).
const MAX_RESPONSE_BYTES: usize = 100 << 20;

/// Errors of a [`KafkaConnection`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, writing or reading failed (the connection is unusable afterwards).
    #[error("{address}: {source}")]
    Io {
        /// The peer.
        address: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No answer within the call's timeout (the connection is unusable afterwards).
    #[error("{address}: no response to {api} within {timeout:?}")]
    Timeout {
        /// The peer.
        address: String,
        /// The request's API.
        api: String,
        /// The timeout.
        timeout: Duration,
    },
    /// A request or response could not be encoded or decoded.
    #[error("{address}: {api}: {reason}")]
    Codec {
        /// The peer.
        address: String,
        /// The request's API.
        api: String,
        /// What was wrong.
        reason: String,
    },
    /// The peer does not support the API at a version this caller can speak.
    #[error("{address} does not support {api} in versions {floor}..={cap}")]
    UnsupportedApi {
        /// The peer.
        address: String,
        /// The API.
        api: String,
        /// The lowest version the caller can use.
        floor: i16,
        /// The highest version the caller implements.
        cap: i16,
    },
    /// ApiVersions failed with a Kafka error code.
    #[error("{address}: ApiVersions failed with error code {code}")]
    ApiVersions {
        /// The peer.
        address: String,
        /// The Kafka error code.
        code: i16,
    },
}

impl ClientError {
    /// Whether the connection can still be used (only encoding/decoding or version errors of
    /// one call leave it usable; I/O errors and timeouts do not).
    pub fn connection_usable(&self) -> bool {
        matches!(
            self,
            ClientError::UnsupportedApi { .. } | ClientError::ApiVersions { .. }
        )
    }
}

/// One connected, version-negotiated Kafka-protocol connection.
pub struct KafkaConnection {
    stream: TcpStream,
    address: String,
    client_id: String,
    correlation_id: i32,
    /// API key -> (min, max) versions the peer supports.
    versions: BTreeMap<i16, (i16, i16)>,
}

impl std::fmt::Debug for KafkaConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConnection")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|_| format!("API {key}"), |k| format!("{k:?}"))
}

impl KafkaConnection {
    /// Connects to `address` (`host:port`) within `timeout` and negotiates API versions.
    pub async fn connect(
        address: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let io = |source| ClientError::Io {
            address: address.to_owned(),
            source,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| ClientError::Timeout {
                address: address.to_owned(),
                api: "connect".into(),
                timeout,
            })?
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let mut conn = Self {
            stream,
            address: address.to_owned(),
            client_id: client_id.to_owned(),
            correlation_id: 0,
            versions: BTreeMap::new(),
        };
        let response = conn.call(ApiVersionsRequest::default(), 0, timeout).await?;
        if response.error_code != 0 {
            return Err(ClientError::ApiVersions {
                address: address.to_owned(),
                code: response.error_code,
            });
        }
        conn.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(conn)
    }

    /// The peer's address as given to [`KafkaConnection::connect`].
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The versions the peer advertised for an API key, if any.
    pub fn supported_versions(&self, api_key: i16) -> Option<(i16, i16)> {
        self.versions.get(&api_key).copied()
    }

    /// The version of `Req` to speak: the highest the peer supports, at most `cap` (what the
    /// caller implements) and at least `floor` (what it needs).
    pub fn version<Req: Request>(&self, floor: i16, cap: i16) -> Result<i16, ClientError> {
        let unsupported = || ClientError::UnsupportedApi {
            address: self.address.clone(),
            api: api_name(Req::KEY),
            floor,
            cap,
        };
        let (min, max) = *self.versions.get(&Req::KEY).ok_or_else(unsupported)?;
        let v = max.min(cap).min(Req::VERSIONS.max);
        if v < floor || v < min {
            return Err(unsupported());
        }
        Ok(v)
    }

    /// Sends `request` at the highest version in `floor..=cap` both sides support and waits
    /// up to `timeout` for the response. Returns the version spoken and the response.
    pub async fn send<Req: Request>(
        &mut self,
        request: Req,
        floor: i16,
        cap: i16,
        timeout: Duration,
    ) -> Result<(i16, Req::Response), ClientError> {
        let version = self.version::<Req>(floor, cap)?;
        let response = self.call(request, version, timeout).await?;
        Ok((version, response))
    }

    /// Sends `request` at `version` (not checked against the peer's versions) and waits up to
    /// `timeout` for its response.
    pub async fn call<Req: Request>(
        &mut self,
        request: Req,
        version: i16,
        timeout: Duration,
    ) -> Result<Req::Response, ClientError> {
        let api = api_name(Req::KEY);
        let codec = |reason: String| ClientError::Codec {
            address: self.address.clone(),
            api: api.clone(),
            reason,
        };
        let key = ApiKey::try_from(Req::KEY).map_err(|_| codec("unknown API key".into()))?;
        let mut body = BytesMut::new();
        request
            .encode(&mut body, version)
            .map_err(|e| codec(e.to_string()))?;
        let mut response = self
            .call_bytes(
                Req::KEY,
                version,
                key.request_header_version(version),
                key.response_header_version(version),
                &body,
                timeout,
            )
            .await?;
        let decoded =
            Req::Response::decode(&mut response, version).map_err(|e| ClientError::Codec {
                address: self.address.clone(),
                api: api_name(Req::KEY),
                reason: e.to_string(),
            })?;
        if response.has_remaining() {
            tracing::debug!(api = %api_name(Req::KEY), left = response.remaining(), "response has trailing bytes");
        }
        Ok(decoded)
    }

    /// Sends one frame with an already encoded body under `api_key`/`version` (request header
    /// `request_header_version`) and returns the response body after a response header of
    /// `response_header_version`. For internal RPCs whose keys Kafka does not define.
    pub async fn call_bytes(
        &mut self,
        api_key: i16,
        version: i16,
        request_header_version: i16,
        response_header_version: i16,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, ClientError> {
        let api = api_name(api_key);
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let header = RequestHeader::default()
            .with_request_api_key(api_key)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut frame = BytesMut::with_capacity(body.len() + 64);
        frame.extend_from_slice(&[0; 4]);
        header
            .encode(&mut frame, request_header_version)
            .map_err(|e| ClientError::Codec {
                address: self.address.clone(),
                api: api.clone(),
                reason: e.to_string(),
            })?;
        frame.extend_from_slice(body);
        let size = i32::try_from(frame.len() - 4).map_err(|_| ClientError::Codec {
            address: self.address.clone(),
            api: api.clone(),
            reason: "request larger than 2 GiB".into(),
        })?;
        frame[..4].copy_from_slice(&size.to_be_bytes());

        let exchange = async {
            self.stream.write_all(&frame).await?;
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await?;
            let len = i32::from_be_bytes(len);
            let len = usize::try_from(len)
                .ok()
                .filter(|l| (4..=MAX_RESPONSE_BYTES).contains(l))
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("response size {len} out of range"),
                    )
                })?;
            let mut buf = vec![0u8; len];
            self.stream.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(Bytes::from(buf))
        };
        let mut response = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                address: self.address.clone(),
                api: api.clone(),
                timeout,
            })?
            .map_err(|source| ClientError::Io {
                address: self.address.clone(),
                source,
            })?;
        let header =
            ResponseHeader::decode(&mut response, response_header_version).map_err(|e| {
                ClientError::Codec {
                    address: self.address.clone(),
                    api: api.clone(),
                    reason: format!("response header: {e}"),
                }
            })?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::Codec {
                address: self.address.clone(),
                api,
                reason: format!(
                    "response correlation id {} for request {correlation_id}",
                    header.correlation_id
                ),
            });
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Broker, BrokerConfig, KafkaServer, ServerConfig};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{MetadataRequest, TopicName};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn negotiates_versions_and_round_trips_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        broker.create_topic(crate::NewTopic::new("t", 3)).unwrap();
        let server = KafkaServer::start(
            broker.clone(),
            ServerConfig {
                listen: "127.0.0.1:0".into(),
                ..ServerConfig::default()
            },
        )
        .await
        .unwrap();
        let addr = server.local_addr().to_string();
        let mut conn = KafkaConnection::connect(&addr, "test", Duration::from_secs(5))
            .await
            .unwrap();
        assert!(conn.supported_versions(3).is_some(), "Metadata advertised");
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("t"))))]));
        let (version, response) = conn
            .send(request, 1, 12, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(version >= 1);
        assert_eq!(response.topics.len(), 1);
        assert_eq!(response.topics[0].partitions.len(), 3);
        // An API the broker does not serve is refused before anything is sent.
        let err = conn
            .version::<kafka_protocol::messages::BrokerRegistrationRequest>(0, 4)
            .unwrap_err();
        assert!(matches!(err, ClientError::UnsupportedApi { .. }), "{err}");
        // A peer that never answers times out.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap().to_string();
        let err = KafkaConnection::connect(&silent_addr, "test", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
        server.shutdown().await;
        broker.shutdown().unwrap();
    }
}

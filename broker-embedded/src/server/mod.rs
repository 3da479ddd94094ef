//! The Kafka wire-protocol server: a tokio TCP listener in front of a [`Broker`].
//!
//! One task per connection reads size-prefixed frames, decodes them with the `kafka-protocol`
//! crate, answers them in order (Kafka processes one request per connection at a time, so
//! pipelined requests are answered in the order they arrived) and writes the responses.
//! `ApiVersions` advertises exactly the APIs and versions implemented here; clients such as
//! librdkafka never send anything else.
//!
//! Bad input never takes the broker down: a frame larger than `max_frame_bytes`, a negative
//! size, an unknown API key, an unsupported version (other than for ApiVersions, which gets
//! UNSUPPORTED_VERSION as Kafka does), bytes that do not decode, or a peer that stalls in the
//! middle of a frame closes that one connection with a log line; an idle connection is closed
//! after `idle_timeout`.

mod cluster;
mod frame_check;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod handlers;
mod wire_schema;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn, Instrument};

use crate::Broker;

pub use cluster::{
    BrokerInfo, ClusterAdmin, ClusterHooks, ClusterView, ListenerEndpoint, PartitionInfo, TopicInfo,
};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// Host clients should connect to, returned in Metadata (Kafka's `advertised.listeners`);
    /// defaults to the bound address.
    pub advertised_host: Option<String>,
    /// Port returned in Metadata; defaults to the bound port.
    pub advertised_port: Option<u16>,
    /// Largest request frame accepted (Kafka's `socket.request.max.bytes`, default 100 MiB).
    pub max_frame_bytes: usize,
    /// Close connections idle this long (Kafka's `connections.max.idle.ms`, default 10 min).
    pub idle_timeout: Duration,
    /// Close a connection that sends part of a frame and then stalls this long.
    pub frame_timeout: Duration,
    /// Maximum concurrent connections; further ones are closed at once.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9092".into(),
            advertised_host: None,
            advertised_port: None,
            max_frame_bytes: 100 * 1024 * 1024,
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}

/// Where clients reach this broker (returned in Metadata).
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: i32,
}

/// A running server. Dropping it does not stop it; call [`KafkaServer::shutdown`].
#[derive(Debug)]
pub struct KafkaServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
}

impl KafkaServer {
    /// Binds and starts serving `broker` on the current tokio runtime.
    pub async fn start(broker: Broker, config: ServerConfig) -> Result<Self, ServerError> {
        Self::start_inner(broker, config, None).await
    }

    /// Binds and starts serving `broker` as one node of a cluster: Metadata answers from
    /// `cluster.view`, topic administration goes to `cluster.admin`, and Produce, Fetch and
    /// ListOffsets go through `cluster.replicas` (leadership, leader epochs, acks=all, replica
    /// fetches).
    pub async fn start_with_cluster(
        broker: Broker,
        config: ServerConfig,
        cluster: ClusterHooks,
    ) -> Result<Self, ServerError> {
        Self::start_inner(broker, config, Some(cluster)).await
    }

    async fn start_inner(
        broker: Broker,
        config: ServerConfig,
        cluster: Option<ClusterHooks>,
    ) -> Result<Self, ServerError> {
        let listener =
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen.clone(),
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
        let endpoint = Endpoint {
            host: config
                .advertised_host
                .clone()
                .unwrap_or_else(|| local_addr.ip().to_string()),
            port: i32::from(config.advertised_port.unwrap_or(local_addr.port())),
        };
        let (stop, stop_rx) = watch::channel(false);
        let ctx = Arc::new(handlers::Context {
            broker,
            endpoint,
            config,
            connections: AtomicUsize::new(0),
            cluster,
        });
        let accept_task = tokio::spawn(accept_loop(listener, ctx, stop_rx));
        info!(%local_addr, "Kafka protocol server listening");
        Ok(Self {
            local_addr,
            stop,
            accept_task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets each connection finish the request it is processing, and waits
    /// (up to 10 s) for connections to close.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.accept_task).await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<handlers::Context>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if ctx.connections.load(Ordering::Relaxed) >= ctx.config.max_connections {
                        warn!(%peer, "too many connections; closing the new one");
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    ctx.connections.fetch_add(1, Ordering::Relaxed);
                    let ctx = Arc::clone(&ctx);
                    let stop = stop.clone();
                    let span = tracing::debug_span!("connection", %peer);
                    conns.spawn(async move {
                        // Decrements the count even if the task unwinds from a panic.
                        let _count = ConnectionCount(&ctx.connections);
                        if let Err(reason) = serve_connection(stream, peer, &ctx, stop).await {
                            match reason {
                                CloseReason::Eof | CloseReason::Shutdown => debug!(%reason, "connection closed"),
                                other => warn!(reason = %other, "closing connection"),
                            }
                        }
                    }.instrument(span));
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        conns.abort_all();
    }
}

struct ConnectionCount<'a>(&'a AtomicUsize);

impl Drop for ConnectionCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection ended (logged, never propagated).
#[derive(Debug, thiserror::Error)]
enum CloseReason {
    #[error("peer closed the connection")]
    Eof,
    #[error("server shutting down")]
    Shutdown,
    #[error("idle for longer than the idle timeout")]
    Idle,
    #[error("peer stalled in the middle of a frame")]
    Stalled,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame size {0} is out of bounds")]
    FrameSize(i64),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("unsupported version {version} of {api:?}")]
    UnsupportedVersion { api: ApiKey, version: i16 },
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    ctx: &handlers::Context,
    mut stop: watch::Receiver<bool>,
) -> Result<(), CloseReason> {
    let mut size_buf = [0u8; 4];
    loop {
        // Wait for the next request (or shutdown / idle timeout) before reading it.
        tokio::select! {
            _ = stop.changed() => return Err(CloseReason::Shutdown),
            r = tokio::time::timeout(ctx.config.idle_timeout, stream.read_exact(&mut size_buf[..1])) => {
                match r {
                    Err(_) => return Err(CloseReason::Idle),
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(CloseReason::Eof),
                    Ok(Err(e)) => return Err(e.into()),
                    Ok(Ok(_)) => {}
                }
            }
        }
        let frame_timeout = ctx.config.frame_timeout;
        tokio::time::timeout(frame_timeout, stream.read_exact(&mut size_buf[1..]))
            .await
            .map_err(|_| CloseReason::Stalled)??;
        let size = frame_size(size_buf, ctx.config.max_frame_bytes)?;
        let mut frame = vec![0u8; size];
        tokio::time::timeout(frame_timeout, stream.read_exact(&mut frame))
            .await
            .map_err(|_| CloseReason::Stalled)??;
        if let Some(response) = handle_frame(Bytes::from(frame), peer, ctx).await? {
            stream.write_all(&response).await?;
        }
    }
}

/// Checks a frame's size prefix: at least the 8 bytes every request header starts with, at
/// most `max_frame_bytes`.
fn frame_size(size_buf: [u8; 4], max_frame_bytes: usize) -> Result<usize, CloseReason> {
    let size = i32::from_be_bytes(size_buf);
    if size < 8 || size as usize > max_frame_bytes {
        return Err(CloseReason::FrameSize(i64::from(size)));
    }
    Ok(size as usize)
}

/// A request frame, decoded.
// Lives on the stack for one request only; boxing the big variant would cost an allocation.
#[allow(clippy::large_enum_variant)]
enum ParsedFrame {
    /// A request of an implemented API and version.
    Request {
        api: ApiKey,
        version: i16,
        header: RequestHeader,
        request: RequestKind,
        /// Bytes the layout check walked (the decoders read the same).
        checked: usize,
        /// Bytes left in the frame after decoding.
        trailing: usize,
    },
    /// ApiVersions at a version not implemented: answered with UNSUPPORTED_VERSION.
    UnsupportedApiVersions { correlation_id: i32 },
}

/// Checks one request frame (without its size prefix; header and body) of `api` at `version`
/// against its wire layout before the `kafka-protocol` decoders see it: refuses any array that
/// claims more elements than bytes are left (the decoders reserve capacity from such counts,
/// and a huge one aborts the process). Returns the bytes the decoders will consume. For other
/// Kafka-framed listeners (the controller listener of `broker-cluster`).
pub fn check_request_frame(api: ApiKey, version: i16, frame: &[u8]) -> Result<usize, String> {
    frame_check::check_request(api, version, api.request_header_version(version), frame)
}

/// Decodes one request frame (without its size prefix): API key and version, then, for an
/// implemented API and version, a layout check that refuses impossible array counts (see
/// [`frame_check`]) and the header and body decoders.
///
/// `cluster`: the server is one node of a cluster (which implements a few more APIs).
fn parse_frame(mut frame: Bytes, cluster: bool) -> Result<ParsedFrame, CloseReason> {
    let Some(fixed) = frame.get(..8) else {
        return Err(CloseReason::FrameSize(frame.len() as i64));
    };
    let api_key = i16::from_be_bytes([fixed[0], fixed[1]]);
    let version = i16::from_be_bytes([fixed[2], fixed[3]]);
    let correlation_id = i32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let api = ApiKey::try_from(api_key).map_err(|_| CloseReason::UnknownApi(api_key))?;
    let versions = if cluster {
        handlers::cluster_supported_versions(api)
    } else {
        handlers::supported_versions(api)
    };
    let Some((min, max)) = versions else {
        return Err(CloseReason::UnknownApi(api_key));
    };
    if version < min || version > max {
        if api == ApiKey::ApiVersions {
            return Ok(ParsedFrame::UnsupportedApiVersions { correlation_id });
        }
        return Err(CloseReason::UnsupportedVersion { api, version });
    }
    let header_version = api.request_header_version(version);
    let checked = frame_check::check_request(api, version, header_version, &frame)
        .map_err(|e| CloseReason::Malformed(format!("{api:?} v{version}: {e}")))?;
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| CloseReason::Malformed(format!("request header: {e}")))?;
    let request = RequestKind::decode(api, &mut frame, version)
        .map_err(|e| CloseReason::Malformed(format!("{api:?} v{version}: {e}")))?;
    Ok(ParsedFrame::Request {
        api,
        version,
        header,
        request,
        checked,
        trailing: frame.remaining(),
    })
}

/// Decodes one request frame, dispatches it and encodes the size-prefixed response
/// (`None` when the request expects no response: Produce with acks=0).
async fn handle_frame(
    frame: Bytes,
    peer: SocketAddr,
    ctx: &handlers::Context,
) -> Result<Option<Bytes>, CloseReason> {
    let frame_len = frame.len();
    let (api, version, header, request) = match parse_frame(frame, ctx.cluster.is_some())? {
        ParsedFrame::UnsupportedApiVersions { correlation_id } => {
            // Kafka answers an unknown ApiVersions version with a v0 response carrying
            // UNSUPPORTED_VERSION and the versions it does support.
            let body = handlers::api_versions_response_for(
                kafka_protocol::ResponseError::UnsupportedVersion.code(),
                ctx.cluster.is_some(),
            );
            return encode_response(
                ApiKey::ApiVersions,
                0,
                correlation_id,
                &ResponseKind::ApiVersions(body),
            )
            .map(Some);
        }
        ParsedFrame::Request {
            api,
            version,
            header,
            request,
            checked,
            trailing,
        } => {
            if checked + trailing != frame_len {
                // The layouts are generated from the decoders; this would be a bug there.
                warn!(api = ?api, version, checked, decoded = frame_len - trailing, "layout check and decoder disagree");
            }
            if trailing > 0 {
                debug!(api = ?api, version, extra = trailing, "trailing bytes after a request");
            }
            (api, version, header, request)
        }
    };
    match handlers::handle(ctx, &header, peer, request).await {
        None => Ok(None),
        Some(body) => encode_response(api, version, header.correlation_id, &body).map(Some),
    }
}

fn encode_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, CloseReason> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // size, patched below
    let header_version = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    };
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header
        .encode(&mut buf, header_version)
        .map_err(|e| CloseReason::Malformed(format!("encoding the response header: {e}")))?;
    body.encode(&mut buf, version)
        .map_err(|e| CloseReason::Malformed(format!("encoding {api:?} v{version}: {e}")))?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

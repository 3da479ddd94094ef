//! The controller listener: Kafka-framed requests. Serves ApiVersions and DescribeQuorum, the
//! internal Raft APIs and FetchMetadata/QuorumLeader, and hands every other Kafka API to a
//! [`ControllerApi`]. A frame that does not decode closes its connection (with a log line).

use std::future::Future;
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, DescribeQuorumRequest, DescribeQuorumResponse,
    RequestHeader, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::Snapshot;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::network::InstallSnapshotHeader;
use super::types::TypeConfig;
use super::wire::{
    self, FetchMetadataHeader, FetchMetadataRequest, QuorumLeaderResponse, WireError,
    INTERNAL_API_VERSION, INTERNAL_REQUEST_HEADER_VERSION, INTERNAL_RESPONSE_HEADER_VERSION,
};
use super::{Quorum, ReplicatedState, METADATA_TOPIC};

/// Longest FetchMetadata long-poll the listener honours.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(60);
/// Kafka's UNSUPPORTED_VERSION.
const UNSUPPORTED_VERSION: i16 = 35;
/// Kafka's UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// Kafka's NOT_LEADER_OR_FOLLOWER.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
/// The listener name DescribeQuorum v2 reports for the voters.
const CONTROLLER_LISTENER: &str = "CONTROLLER";

/// The controller's Kafka APIs, served on the controller listener next to the quorum's own.
pub trait ControllerApi<S: ReplicatedState>: Send + Sync + 'static {
    /// The Kafka APIs this hook serves, as `(api, min version, max version)`; ApiVersions
    /// lists them, and requests of other APIs or versions close the connection.
    fn api_versions(&self) -> Vec<(ApiKey, i16, i16)>;

    /// Answers one request (decoded at `header.request_api_version`). `None`: no response can
    /// be given; the connection is closed.
    fn handle(
        &self,
        quorum: &Quorum<S>,
        header: &RequestHeader,
        request: RequestKind,
    ) -> impl Future<Output = Option<ResponseKind>> + Send;
}

/// A [`ControllerApi`] serving no API beyond the quorum's own.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoControllerApi;

impl<S: ReplicatedState> ControllerApi<S> for NoControllerApi {
    fn api_versions(&self) -> Vec<(ApiKey, i16, i16)> {
        Vec::new()
    }

    async fn handle(
        &self,
        _: &Quorum<S>,
        _: &RequestHeader,
        _: RequestKind,
    ) -> Option<ResponseKind> {
        None
    }
}

/// The versions served by the listener itself.
const OWN_APIS: [(ApiKey, i16, i16); 2] =
    [(ApiKey::ApiVersions, 0, 4), (ApiKey::DescribeQuorum, 0, 2)];

fn supported<S: ReplicatedState, A: ControllerApi<S>>(api: &A, key: ApiKey) -> Option<(i16, i16)> {
    OWN_APIS
        .iter()
        .copied()
        .chain(api.api_versions())
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (min, max))
}

/// Accepts connections until `shutdown` turns true; connection tasks end with it.
pub(crate) async fn serve<S: ReplicatedState, A: ControllerApi<S>>(
    listener: TcpListener,
    quorum: Quorum<S>,
    api: Arc<A>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let quorum = quorum.clone();
                    let api = Arc::clone(&api);
                    connections.spawn(async move { handle_connection(stream, peer, quorum, api).await });
                }
                Err(e) => {
                    warn!(error = %e, "controller listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn handle_connection<S: ReplicatedState, A: ControllerApi<S>>(
    stream: TcpStream,
    peer: SocketAddr,
    quorum: Quorum<S>,
    api: Arc<A>,
) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let max = quorum.config().max_frame_bytes;
    loop {
        let frame = match wire::read_frame(&mut read, max).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(e) => {
                warn!(%peer, error = %e, "closing a controller connection: unreadable frame");
                return;
            }
        };
        let response = match handle_frame(frame, &quorum, &*api).await {
            Ok(response) => response,
            Err(e) => {
                warn!(%peer, error = %e, "closing a controller connection: bad request");
                return;
            }
        };
        if let Err(e) = write.write_all(&response).await {
            debug!(%peer, error = %e, "controller connection closed while answering");
            return;
        }
    }
}

fn protocol(e: impl std::fmt::Display) -> WireError {
    WireError::Protocol(e.to_string())
}

async fn handle_frame<S: ReplicatedState, A: ControllerApi<S>>(
    mut frame: Bytes,
    quorum: &Quorum<S>,
    api: &A,
) -> Result<Bytes, WireError> {
    let Some(fixed) = frame.get(..8) else {
        return Err(protocol(format!("a frame of {} bytes", frame.len())));
    };
    let api_key = i16::from_be_bytes([fixed[0], fixed[1]]);
    let version = i16::from_be_bytes([fixed[2], fixed[3]]);
    let correlation_id = i32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    if wire::is_internal_api(api_key) {
        if version != INTERNAL_API_VERSION {
            return Err(protocol(format!(
                "internal API {api_key} at version {version}"
            )));
        }
        RequestHeader::decode(&mut frame, INTERNAL_REQUEST_HEADER_VERSION).map_err(protocol)?;
        let body = handle_internal(api_key, frame, quorum).await?;
        return wire::encode_response_frame(
            correlation_id,
            INTERNAL_RESPONSE_HEADER_VERSION,
            |buf| {
                buf.put_slice(&body);
                Ok(())
            },
        );
    }
    let key =
        ApiKey::try_from(api_key).map_err(|_| protocol(format!("unknown API key {api_key}")))?;
    let (min, max) =
        supported(api, key).ok_or_else(|| protocol(format!("{key:?} is not served here")))?;
    if version < min || version > max {
        if key == ApiKey::ApiVersions {
            // Kafka answers an unknown ApiVersions version with v0 and UNSUPPORTED_VERSION.
            let body = ResponseKind::ApiVersions(api_versions_response(api, UNSUPPORTED_VERSION));
            return encode_kafka(key, 0, correlation_id, &body);
        }
        return Err(protocol(format!("{key:?} v{version} is not served here")));
    }
    // The layout check bounds what the decoders reserve from array counts.
    broker_embedded::check_request_frame(key, version, &frame)
        .map_err(|e| protocol(format!("{key:?} v{version}: {e}")))?;
    let header =
        RequestHeader::decode(&mut frame, key.request_header_version(version)).map_err(protocol)?;
    let request = RequestKind::decode(key, &mut frame, version)
        .map_err(|e| protocol(format!("{key:?} v{version}: {e}")))?;
    let response = match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions_response(api, 0)),
        RequestKind::DescribeQuorum(request) => {
            ResponseKind::DescribeQuorum(describe_quorum(quorum, &request, version))
        }
        other => api
            .handle(quorum, &header, other)
            .await
            .ok_or_else(|| protocol(format!("no answer to {key:?} v{version}")))?,
    };
    encode_kafka(key, version, correlation_id, &response)
}

fn encode_kafka(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, WireError> {
    wire::encode_response_frame(
        correlation_id,
        wire::kafka_response_header_version(key, version),
        |buf| {
            body.encode(buf, version)
                .map_err(|e| protocol(format!("encoding {key:?} v{version}: {e}")))
        },
    )
}

async fn handle_internal<S: ReplicatedState>(
    api_key: i16,
    body: Bytes,
    quorum: &Quorum<S>,
) -> Result<Vec<u8>, WireError> {
    match api_key {
        wire::API_RAFT_APPEND_ENTRIES => {
            let request: AppendEntriesRequest<TypeConfig> =
                serde_json::from_slice(&body).map_err(protocol)?;
            let result = quorum.raft().append_entries(request).await;
            serde_json::to_vec(&result).map_err(protocol)
        }
        wire::API_RAFT_VOTE => {
            let request: VoteRequest<u64> = serde_json::from_slice(&body).map_err(protocol)?;
            let result = quorum.raft().vote(request).await;
            serde_json::to_vec(&result).map_err(protocol)
        }
        wire::API_RAFT_INSTALL_SNAPSHOT => {
            let (header, data) = wire::decode_with_blob::<InstallSnapshotHeader>(body)?;
            let snapshot = Snapshot {
                meta: header.meta,
                snapshot: Box::new(Cursor::new(data.to_vec())),
            };
            let result = quorum
                .raft()
                .install_full_snapshot(header.vote, snapshot)
                .await;
            serde_json::to_vec(&result).map_err(protocol)
        }
        wire::API_FETCH_METADATA => {
            let request: FetchMetadataRequest = serde_json::from_slice(&body).map_err(protocol)?;
            let wait = Duration::from_millis(request.max_wait_ms).min(MAX_FETCH_WAIT);
            let mut applied = quorum.subscribe();
            let since = request.since_offset;
            let reached = tokio::time::timeout(wait, applied.wait_for(|a| a.offset() > since))
                .await
                .map(|r| r.is_ok());
            debug!(since, reached = ?reached, "FetchMetadata long-poll done");
            let current = applied.borrow().clone();
            let has_state = current.offset() > since;
            let state = if has_state {
                current.state.to_snapshot().map_err(protocol)?
            } else {
                Vec::new()
            };
            let header = FetchMetadataHeader {
                applied_offset: current.offset(),
                leader_id: quorum.leader_id().unwrap_or(-1),
                has_state,
            };
            wire::encode_with_blob(&header, &state)
        }
        wire::API_QUORUM_LEADER => {
            let response = QuorumLeaderResponse {
                leader_id: quorum.leader_id().unwrap_or(-1),
                term: quorum.term(),
            };
            serde_json::to_vec(&response).map_err(protocol)
        }
        other => Err(protocol(format!("unknown internal API {other}"))),
    }
}

fn api_versions_response<S: ReplicatedState, A: ControllerApi<S>>(
    api: &A,
    error_code: i16,
) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.error_code = error_code;
    let mut seen = std::collections::BTreeSet::new();
    for (key, min, max) in OWN_APIS.iter().copied().chain(api.api_versions()) {
        if !seen.insert(key as i16) {
            continue;
        }
        let mut v = ApiVersion::default();
        v.api_key = key as i16;
        v.min_version = min;
        v.max_version = max;
        response.api_keys.push(v);
    }
    response
}

fn describe_quorum<S: ReplicatedState>(
    quorum: &Quorum<S>,
    request: &DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    let d = quorum.describe();
    let mut response = DescribeQuorumResponse::default();
    for topic in &request.topics {
        let mut topic_data = TopicData::default();
        topic_data.topic_name = topic.topic_name.clone();
        for partition in &topic.partitions {
            let mut p = PartitionData::default();
            p.partition_index = partition.partition_index;
            p.leader_id = BrokerId(d.leader_id.unwrap_or(-1));
            p.leader_epoch = d.leader_epoch;
            if topic.topic_name.0.as_str() != METADATA_TOPIC || partition.partition_index != 0 {
                p.error_code = UNKNOWN_TOPIC_OR_PARTITION;
            } else if !d.is_leader {
                p.error_code = NOT_LEADER_OR_FOLLOWER;
            } else {
                p.high_watermark = d.high_watermark;
                for voter in &d.voters {
                    let mut r = ReplicaState::default();
                    r.replica_id = BrokerId(voter.replica_id);
                    r.log_end_offset = voter.log_end_offset;
                    r.last_fetch_timestamp = -1;
                    r.last_caught_up_timestamp = -1;
                    p.current_voters.push(r);
                }
            }
            topic_data.partitions.push(p);
        }
        response.topics.push(topic_data);
    }
    if version < 2 {
        // The voters' endpoints exist from v2 on.
        return response;
    }
    for (id, addr) in &quorum.config().voters {
        let Some((host, port)) = addr.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let mut listener = Listener::default();
        listener.name = StrBytes::from_static_str(CONTROLLER_LISTENER);
        listener.host = StrBytes::from_string(host.to_string());
        listener.port = port;
        let mut node = Node::default();
        node.node_id = BrokerId(*id);
        node.listeners.push(listener);
        response.nodes.push(node);
    }
    response
}

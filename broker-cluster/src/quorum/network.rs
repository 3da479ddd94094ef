//! The openraft network over the controller listener: one Kafka-framed connection per peer,
//! opened lazily, dropped on any failure and reopened by the next RPC (openraft backs off
//! between attempts to an unreachable peer).

use std::future::Future;
use std::io::Cursor;
use std::time::Duration;

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Snapshot};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::types::{SnapshotMeta, TypeConfig, Vote};
use super::wire;
use broker_embedded::client::{ClientError, KafkaConnection};

/// Header of an InstallSnapshot frame (the snapshot bytes follow it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InstallSnapshotHeader {
    pub(crate) vote: Vote,
    pub(crate) meta: SnapshotMeta,
}

/// Creates one [`PeerClient`] per target voter.
#[derive(Debug, Clone)]
pub(crate) struct NetworkFactory {
    pub(crate) node_id: u64,
    pub(crate) connect_timeout: Duration,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        PeerClient {
            target,
            addr: node.addr.clone(),
            client_id: format!("controller-{}", self.node_id),
            connect_timeout: self.connect_timeout,
            conn: None,
        }
    }
}

/// The connection to one peer voter.
#[derive(Debug)]
pub(crate) struct PeerClient {
    target: u64,
    addr: String,
    client_id: String,
    connect_timeout: Duration,
    conn: Option<KafkaConnection>,
}

/// A transport failure, before or after the connection was up.
enum SendError {
    Unreachable(ClientError),
    Network(ClientError),
}

impl SendError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<u64, BasicNode, E> {
        match self {
            SendError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            SendError::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }

    fn into_streaming(self) -> StreamingError<TypeConfig, Fatal<u64>> {
        match self {
            SendError::Unreachable(e) => StreamingError::Unreachable(Unreachable::new(&e)),
            SendError::Network(e) => StreamingError::Network(NetworkError::new(&e)),
        }
    }
}

impl PeerClient {
    async fn send(
        &mut self,
        api_key: i16,
        body: &[u8],
        timeout: Duration,
    ) -> Result<bytes::Bytes, SendError> {
        let conn = match self.conn.as_mut() {
            Some(conn) => conn,
            None => {
                let conn = KafkaConnection::connect(
                    &self.addr,
                    &self.client_id,
                    self.connect_timeout.min(timeout),
                )
                .await
                .map_err(SendError::Unreachable)?;
                self.conn.insert(conn)
            }
        };
        match wire::call_internal(conn, api_key, body, timeout).await {
            Ok(response) => Ok(response),
            Err(e) => {
                debug!(target_node = self.target, addr = %self.addr, error = %e, "Raft RPC failed; dropping the connection");
                self.conn = None;
                Err(SendError::Network(e))
            }
        }
    }

    async fn call<
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    >(
        &mut self,
        api_key: i16,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, E>> {
        let body =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let response = self
            .send(api_key, &body, option.hard_ttl())
            .await
            .map_err(SendError::into_rpc)?;
        let result: Result<Resp, E> = serde_json::from_slice(&response).map_err(|e| {
            self.conn = None;
            RPCError::Network(NetworkError::new(&e))
        })?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(wire::API_RAFT_APPEND_ENTRIES, &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(wire::API_RAFT_VOTE, &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, Fatal<u64>>> {
        let data: Cursor<Vec<u8>> = *snapshot.snapshot;
        let header = InstallSnapshotHeader {
            vote,
            meta: snapshot.meta,
        };
        let body = wire::encode_with_blob(&header, data.get_ref())
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let outcome = {
            let send = self.send(wire::API_RAFT_INSTALL_SNAPSHOT, &body, option.hard_ttl());
            tokio::select! {
                closed = cancel => Err(closed),
                r = send => Ok(r),
            }
        };
        let response = match outcome {
            Err(closed) => {
                // The frame may be half sent: the connection cannot be reused.
                self.conn = None;
                return Err(StreamingError::Closed(closed));
            }
            Ok(r) => r.map_err(SendError::into_streaming)?,
        };
        let result: Result<SnapshotResponse<u64>, Fatal<u64>> =
            serde_json::from_slice(&response)
                .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }

    fn backoff(&self) -> Backoff {
        // 100 ms, doubling up to 1 s between attempts to reach an unreachable peer.
        Backoff::new(
            (0u32..)
                .map(|i| Duration::from_millis(100u64.saturating_mul(1u64 << i.min(4)).min(1000))),
        )
    }
}

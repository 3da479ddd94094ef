//! [`ControllerClient`]: sends Kafka requests to the active controller and pulls the
//! replicated state, over `broker_embedded::client::KafkaConnection`.

use std::collections::BTreeMap;
use std::time::Duration;

use broker_embedded::client::KafkaConnection;
use bytes::Bytes;
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::protocol::Request;
use parking_lot::Mutex;
use tokio::time::Instant;
use tracing::debug;

use super::wire::{
    self, FetchMetadataHeader, FetchMetadataRequest, QuorumLeaderResponse, NOT_CONTROLLER,
};
use super::QuorumError;

/// The state a FetchMetadata call returned.
#[derive(Debug, Clone)]
pub struct MetadataFetch {
    /// Log index of the last entry applied in `state`.
    pub applied_offset: i64,
    /// The leader the answering voter knew.
    pub leader_id: Option<i32>,
    /// The serialized state ([`super::ReplicatedState::to_snapshot`]).
    pub state: Bytes,
}

/// Sends Kafka requests to the active controller: finds the leader (QuorumLeader on any
/// voter), follows NOT_CONTROLLER answers and connection failures to a new leader, retrying
/// with backoff up to a deadline. One connection per voter for requests, one for FetchMetadata
/// long-polls.
#[derive(Debug)]
pub struct ControllerClient {
    voters: BTreeMap<i32, String>,
    client_id: String,
    request_timeout: Duration,
    retry_deadline: Duration,
    leader: Mutex<Option<i32>>,
    connections: BTreeMap<i32, tokio::sync::Mutex<Option<KafkaConnection>>>,
    fetch_connection: tokio::sync::Mutex<Option<(i32, KafkaConnection)>>,
}

/// Whether a controller response says "not the controller": a top-level NOT_CONTROLLER, or
/// every per-item result NOT_CONTROLLER for the APIs without a top-level error code.
pub fn is_not_controller(response: &ResponseKind) -> bool {
    fn all<T>(items: &[T], code: impl Fn(&T) -> i16) -> bool {
        !items.is_empty() && items.iter().all(|i| code(i) == NOT_CONTROLLER)
    }
    match response {
        ResponseKind::BrokerRegistration(r) => r.error_code == NOT_CONTROLLER,
        ResponseKind::BrokerHeartbeat(r) => r.error_code == NOT_CONTROLLER,
        ResponseKind::AlterPartition(r) => r.error_code == NOT_CONTROLLER,
        ResponseKind::AllocateProducerIds(r) => r.error_code == NOT_CONTROLLER,
        ResponseKind::ElectLeaders(r) => r.error_code == NOT_CONTROLLER,
        ResponseKind::DescribeCluster(r) => r.error_code == NOT_CONTROLLER,
        ResponseKind::UnregisterBroker(r) => r.error_code == NOT_CONTROLLER,
        ResponseKind::CreateTopics(r) => all(&r.topics, |t| t.error_code),
        ResponseKind::DeleteTopics(r) => all(&r.responses, |t| t.error_code),
        ResponseKind::CreatePartitions(r) => all(&r.results, |t| t.error_code),
        ResponseKind::AlterConfigs(r) => all(&r.responses, |t| t.error_code),
        ResponseKind::IncrementalAlterConfigs(r) => all(&r.responses, |t| t.error_code),
        _ => false,
    }
}

impl ControllerClient {
    /// A client of the voters `voters` (id → `host:port`), retrying each call for up to 30 s,
    /// each request timing out after 5 s.
    pub fn new(voters: BTreeMap<i32, String>, client_id: &str) -> Self {
        let connections = voters
            .keys()
            .map(|id| (*id, tokio::sync::Mutex::new(None)))
            .collect();
        Self {
            voters,
            client_id: client_id.to_string(),
            request_timeout: Duration::from_secs(5),
            retry_deadline: Duration::from_secs(30),
            leader: Mutex::new(None),
            connections,
            fetch_connection: tokio::sync::Mutex::new(None),
        }
    }

    /// Sets the timeout of one request and how long a call keeps retrying.
    pub fn with_timeouts(mut self, request_timeout: Duration, retry_deadline: Duration) -> Self {
        self.request_timeout = request_timeout;
        self.retry_deadline = retry_deadline;
        self
    }

    /// The leader last found, if any.
    pub fn cached_leader(&self) -> Option<i32> {
        *self.leader.lock()
    }

    /// Runs one request on the connection to `voter` (opened if needed, dropped on failure).
    async fn on_connection<T>(
        &self,
        voter: i32,
        op: impl AsyncConnectionOp<T>,
    ) -> Result<T, QuorumError> {
        let (Some(slot), Some(addr)) = (self.connections.get(&voter), self.voters.get(&voter))
        else {
            return Err(QuorumError::Config(format!("node {voter} is not a voter")));
        };
        let mut guard = slot.lock().await;
        let conn = match guard.as_mut() {
            Some(conn) => conn,
            None => guard.insert(
                KafkaConnection::connect(addr, &self.client_id, self.request_timeout).await?,
            ),
        };
        let result = op.run(conn, self.request_timeout).await;
        if result.is_err() {
            *guard = None;
        }
        result
    }

    /// Asks the voters which one leads; caches and returns it.
    pub async fn find_leader(&self) -> Result<i32, QuorumError> {
        let mut last_error = None;
        for &voter in self.voters.keys() {
            let answer = self.on_connection(voter, LeaderOp).await;
            match answer {
                Ok(r) if self.voters.contains_key(&r.leader_id) => {
                    *self.leader.lock() = Some(r.leader_id);
                    return Ok(r.leader_id);
                }
                Ok(_) => {}
                Err(e) => {
                    debug!(voter, error = %e, "QuorumLeader failed");
                    last_error = Some(e);
                }
            }
        }
        Err(match last_error {
            Some(e) => e,
            None => QuorumError::Timeout("no voter knows a leader".into()),
        })
    }

    async fn retry<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, QuorumError>
    where
        F: FnMut(i32) -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, QuorumError>>,
    {
        let deadline = Instant::now() + self.retry_deadline;
        let mut backoff = Duration::from_millis(50);
        loop {
            let last_error;
            let leader = match self.cached_leader() {
                Some(l) => Ok(l),
                None => self.find_leader().await,
            };
            match leader {
                Ok(leader) => match attempt(leader).await {
                    Ok(Some(value)) => return Ok(value),
                    Ok(None) => {
                        last_error = format!("node {leader} is not the controller");
                        *self.leader.lock() = None;
                    }
                    Err(e) => {
                        last_error = e.to_string();
                        *self.leader.lock() = None;
                    }
                },
                Err(e) => last_error = e.to_string(),
            }
            if Instant::now() + backoff > deadline {
                return Err(QuorumError::Timeout(format!("{what}: {last_error}")));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Sends `request` at `version` to the active controller and returns its response,
    /// following NOT_CONTROLLER and connection failures until the retry deadline.
    pub async fn send<R>(&self, version: i16, request: &R) -> Result<R::Response, QuorumError>
    where
        R: Request + Clone + Sync,
        R::Response: Clone + Into<ResponseKind> + Send,
    {
        self.retry("controller request", |leader| async move {
            let response = self
                .on_connection(leader, KafkaOp { version, request })
                .await?;
            if is_not_controller(&response.clone().into()) {
                return Ok(None);
            }
            Ok(Some(response))
        })
        .await
    }

    /// Long-polls the leader for a state newer than `since_offset` (-1: any), waiting up to
    /// `max_wait`. `None`: nothing newer within `max_wait`.
    pub async fn fetch_metadata(
        &self,
        since_offset: i64,
        max_wait: Duration,
    ) -> Result<Option<MetadataFetch>, QuorumError> {
        self.retry("FetchMetadata", |leader| async move {
            let Some(addr) = self.voters.get(&leader) else {
                return Err(QuorumError::Config(format!("node {leader} is not a voter")));
            };
            let mut slot = self.fetch_connection.lock().await;
            if slot.as_ref().is_none_or(|(id, _)| *id != leader) {
                *slot = None;
                let conn =
                    KafkaConnection::connect(addr, &self.client_id, self.request_timeout).await?;
                *slot = Some((leader, conn));
            }
            let Some((_, conn)) = slot.as_mut() else {
                return Err(QuorumError::Timeout("no connection".into()));
            };
            let request = FetchMetadataRequest {
                since_offset,
                max_wait_ms: u64::try_from(max_wait.as_millis()).unwrap_or(u64::MAX),
            };
            let body = serde_json::to_vec(&request)?;
            let timeout = self.request_timeout + max_wait;
            let response =
                match wire::call_internal(conn, wire::API_FETCH_METADATA, &body, timeout).await {
                    Ok(r) => r,
                    Err(e) => {
                        *slot = None;
                        return Err(e.into());
                    }
                };
            let (header, state) = wire::decode_with_blob::<FetchMetadataHeader>(response)?;
            Ok(Some(header.has_state.then(|| MetadataFetch {
                applied_offset: header.applied_offset,
                leader_id: (header.leader_id >= 0).then_some(header.leader_id),
                state,
            })))
        })
        .await
    }
}

/// One request on a connection.
trait AsyncConnectionOp<T> {
    async fn run(self, conn: &mut KafkaConnection, timeout: Duration) -> Result<T, QuorumError>;
}

struct LeaderOp;

impl AsyncConnectionOp<QuorumLeaderResponse> for LeaderOp {
    async fn run(
        self,
        conn: &mut KafkaConnection,
        timeout: Duration,
    ) -> Result<QuorumLeaderResponse, QuorumError> {
        let body = wire::call_internal(conn, wire::API_QUORUM_LEADER, b"null", timeout).await?;
        Ok(serde_json::from_slice(&body)?)
    }
}

struct KafkaOp<'r, R> {
    version: i16,
    request: &'r R,
}

impl<R: Request + Clone + Sync> AsyncConnectionOp<R::Response> for KafkaOp<'_, R> {
    async fn run(
        self,
        conn: &mut KafkaConnection,
        timeout: Duration,
    ) -> Result<R::Response, QuorumError> {
        Ok(conn
            .call(self.request.clone(), self.version, timeout)
            .await?)
    }
}

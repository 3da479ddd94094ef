//! The Raft controller quorum (KRaft's `__cluster_metadata` log): openraft 0.9 over the
//! controller listener, with the log, vote and snapshots persisted through
//! [`durable_fs::Storage`] in `<data dir>/__cluster_metadata-0/`.
//!
//! - [`ReplicatedState`]: what the quorum replicates (the controller plugs its metadata image in).
//! - [`Quorum`]: one voter: starts Raft and the controller listener, writes commands, publishes
//!   every applied state.
//! - [`ControllerApi`]: the hook serving the Kafka controller APIs on the controller listener.
//! - [`ControllerClient`]: sends Kafka requests to the active controller and pulls the state.
//!
//! Voters are static (`controller.quorum.voters`); every voter initializes the same membership
//! at its first start, so a fresh quorum elects a leader by itself.

mod client;
mod log_store;
mod network;
mod server;
mod state_machine;
mod types;
mod wire;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use durable_fs::{LockGuard, Storage};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

pub use client::{is_not_controller, ControllerClient, MetadataFetch};
pub use server::{ControllerApi, NoControllerApi};
pub use wire::{
    call_internal, is_internal_api, FetchMetadataHeader, FetchMetadataRequest,
    QuorumLeaderResponse, WireError, API_FETCH_METADATA, API_QUORUM_LEADER,
    API_RAFT_APPEND_ENTRIES, API_RAFT_INSTALL_SNAPSHOT, API_RAFT_VOTE, INTERNAL_API_VERSION,
    NOT_CONTROLLER,
};

use log_store::LogStore;
use network::NetworkFactory;
use state_machine::StateMachineStore;
pub use types::{CommandData, TypeConfig};

/// Name of the quorum's directory inside the data directory (Kafka's metadata log partition).
pub const METADATA_DIR_NAME: &str = "__cluster_metadata-0";
/// The topic name DescribeQuorum answers for.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// A state replicated by the quorum: every voter applies the same commands in log order.
pub trait ReplicatedState: Default + Clone + Send + Sync + Debug + 'static {
    /// A command, carried by one Raft entry and applied atomically.
    type Command: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;

    /// Applies `command`, the entry at `log_index`. Must be deterministic: every voter applies
    /// the same commands in the same order and must reach the same state.
    fn apply(&mut self, log_index: u64, command: &Self::Command);

    /// Serializes the whole state (the snapshot format, also what FetchMetadata returns).
    fn to_snapshot(&self) -> Result<Vec<u8>, SnapshotCodecError>;

    /// Restores a state from [`Self::to_snapshot`]'s bytes.
    fn from_snapshot(bytes: &[u8]) -> Result<Self, SnapshotCodecError>;
}

/// A state that could not be serialized to or restored from a snapshot.
#[derive(Debug, thiserror::Error)]
#[error("state snapshot codec: {0}")]
pub struct SnapshotCodecError(pub String);

impl From<serde_json::Error> for SnapshotCodecError {
    fn from(e: serde_json::Error) -> Self {
        SnapshotCodecError(e.to_string())
    }
}

/// Errors of the quorum and its client.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// This voter is not the leader; `leader_hint` is the leader it knows, if any.
    #[error("not the controller leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader's node id, when known.
        leader_hint: Option<i32>,
    },
    /// The configuration is invalid.
    #[error("invalid quorum configuration: {0}")]
    Config(String),
    /// The quorum's files could not be read or written.
    #[error("quorum storage: {0}")]
    Storage(#[from] io::Error),
    /// A command could not be serialized.
    #[error("command encoding: {0}")]
    Command(#[from] serde_json::Error),
    /// Raft failed (fatally: the voter stopped).
    #[error("raft: {0}")]
    Raft(String),
    /// The transport failed.
    #[error("transport: {0}")]
    Wire(#[from] WireError),
    /// A request to a voter failed.
    #[error("controller request: {0}")]
    Client(#[from] broker_embedded::client::ClientError),
    /// No answer before the deadline.
    #[error("timed out: {0}")]
    Timeout(String),
}

/// Configuration of one voter.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This voter's node id (`node.id`).
    pub node_id: i32,
    /// Every voter's id and controller listener address, `host:port`
    /// (`controller.quorum.voters`).
    pub voters: BTreeMap<i32, String>,
    /// The data directory; the quorum lives in its `__cluster_metadata-0` subdirectory.
    pub data_dir: PathBuf,
    /// `controller.quorum.election.timeout.ms` (1000): a follower without news from a leader
    /// for a random time in `[t, 2t)` starts an election.
    pub election_timeout_ms: u64,
    /// How often the leader sends heartbeats (200 ms).
    pub heartbeat_interval_ms: u64,
    /// `controller.quorum.request.timeout.ms` (2000): timeout of one Raft RPC.
    pub request_timeout_ms: u64,
    /// A snapshot is taken every this many entries (1000); the log is purged up to it.
    pub snapshot_threshold: u64,
    /// Entries kept in the log behind the last snapshot (100), so slightly lagging voters catch
    /// up from the log rather than from a snapshot.
    pub snapshot_logs_to_keep: u64,
    /// Largest frame accepted on the controller listener (128 MiB; bounds a snapshot).
    pub max_frame_bytes: usize,
}

impl QuorumConfig {
    /// A configuration with Kafka's defaults.
    pub fn new(node_id: i32, voters: BTreeMap<i32, String>, data_dir: PathBuf) -> Self {
        Self {
            node_id,
            voters,
            data_dir,
            election_timeout_ms: 1000,
            heartbeat_interval_ms: 200,
            request_timeout_ms: 2000,
            snapshot_threshold: 1000,
            snapshot_logs_to_keep: 100,
            max_frame_bytes: 128 * 1024 * 1024,
        }
    }

    /// Parses `controller.quorum.voters`: `id@host:port,id@host:port,...`.
    pub fn parse_voters(value: &str) -> Result<BTreeMap<i32, String>, QuorumError> {
        let mut voters = BTreeMap::new();
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, addr) = part.split_once('@').ok_or_else(|| {
                QuorumError::Config(format!("voter `{part}` is not id@host:port"))
            })?;
            let id: i32 = id
                .trim()
                .parse()
                .map_err(|_| QuorumError::Config(format!("voter id `{id}` is not an integer")))?;
            let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
                QuorumError::Config(format!("voter address `{addr}` has no port"))
            })?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(QuorumError::Config(format!(
                    "voter address `{addr}` is not host:port"
                )));
            }
            if id < 0 || voters.insert(id, addr.to_string()).is_some() {
                return Err(QuorumError::Config(format!(
                    "voter id {id} is negative or repeated"
                )));
            }
        }
        if voters.is_empty() {
            return Err(QuorumError::Config("no voters".into()));
        }
        Ok(voters)
    }

    fn validate(&self) -> Result<(), QuorumError> {
        if !self.voters.contains_key(&self.node_id) {
            return Err(QuorumError::Config(format!(
                "node {} is not among the voters",
                self.node_id
            )));
        }
        if let Some(id) = self.voters.keys().find(|id| **id < 0) {
            return Err(QuorumError::Config(format!("voter id {id} is negative")));
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= self.election_timeout_ms
        {
            return Err(QuorumError::Config(
                "the heartbeat interval must be positive and below the election timeout".into(),
            ));
        }
        Ok(())
    }

    fn raft_config(&self) -> Result<openraft::Config, QuorumError> {
        let config = openraft::Config {
            cluster_name: METADATA_TOPIC.to_string(),
            election_timeout_min: self.election_timeout_ms,
            election_timeout_max: self.election_timeout_ms.saturating_mul(2),
            heartbeat_interval: self.heartbeat_interval_ms,
            install_snapshot_timeout: self.request_timeout_ms.max(10_000),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_threshold.max(1)),
            max_in_snapshot_log_to_keep: self.snapshot_logs_to_keep,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| QuorumError::Config(e.to_string()))
    }
}

/// The state after an applied entry.
#[derive(Debug)]
pub struct Applied<S> {
    /// Raft log index of the last applied entry (`None` before any).
    pub log_index: Option<u64>,
    /// The applied state.
    pub state: Arc<S>,
}

impl<S> Clone for Applied<S> {
    fn clone(&self) -> Self {
        Self {
            log_index: self.log_index,
            state: Arc::clone(&self.state),
        }
    }
}

impl<S> Applied<S> {
    /// The applied offset as Kafka counts it: the last applied index, -1 before any.
    pub fn offset(&self) -> i64 {
        self.log_index
            .map_or(-1, |i| i64::try_from(i).unwrap_or(i64::MAX))
    }
}

/// One voter as DescribeQuorum reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterState {
    /// The voter's node id.
    pub replica_id: i32,
    /// One past the last log index known to be replicated on it (-1: unknown; only the leader
    /// knows the other voters').
    pub log_end_offset: i64,
}

/// What DescribeQuorum reports, from this voter's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    /// The leader this voter knows.
    pub leader_id: Option<i32>,
    /// The Raft term (Kafka's leader epoch).
    pub leader_epoch: i32,
    /// One past the last applied (hence committed) index.
    pub high_watermark: i64,
    /// Whether this voter is the leader.
    pub is_leader: bool,
    /// Every voter.
    pub voters: Vec<VoterState>,
}

struct Inner<S: ReplicatedState> {
    config: QuorumConfig,
    raft: Raft<TypeConfig>,
    applied: watch::Receiver<Applied<S>>,
    shutdown_tx: watch::Sender<bool>,
    server: Mutex<Option<JoinHandle<()>>>,
    local_addr: SocketAddr,
    lock: Mutex<Option<Box<dyn LockGuard>>>,
}

/// One voter of the controller quorum. Clones share the same voter.
pub struct Quorum<S: ReplicatedState> {
    inner: Arc<Inner<S>>,
}

impl<S: ReplicatedState> Clone for Quorum<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: ReplicatedState> Debug for Quorum<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quorum")
            .field("node_id", &self.inner.config.node_id)
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

fn node_id_u64(id: i32) -> Result<u64, QuorumError> {
    u64::try_from(id).map_err(|_| QuorumError::Config(format!("node id {id} is negative")))
}

fn node_id_i32(id: u64) -> i32 {
    i32::try_from(id).unwrap_or(-1)
}

impl<S: ReplicatedState> Quorum<S> {
    /// Starts this voter: opens (recovering) its log and snapshot, starts Raft and serves the
    /// controller listener on `listener`, then initializes the static membership if this voter
    /// has never been initialized (every voter does, with the same membership).
    pub async fn start<A: ControllerApi<S>>(
        config: QuorumConfig,
        storage: Arc<dyn Storage>,
        listener: TcpListener,
        api: A,
    ) -> Result<Self, QuorumError> {
        config.validate()?;
        let raft_config = Arc::new(config.raft_config()?);
        let dir = config.data_dir.join(METADATA_DIR_NAME);
        durable_fs::create_dir_all_durable(&*storage, &dir)?;
        let lock = storage.try_lock(&dir.join(".lock"))?;
        let log_store = LogStore::open(Arc::clone(&storage), dir.clone())?;
        let state_machine = StateMachineStore::<S>::open(Arc::clone(&storage), dir)?;
        let applied = state_machine.subscribe();
        let node_id = node_id_u64(config.node_id)?;
        let network = NetworkFactory {
            node_id,
            connect_timeout: Duration::from_millis(config.request_timeout_ms),
        };
        let raft = Raft::new(node_id, raft_config, network, log_store, state_machine)
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let local_addr = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let quorum = Quorum {
            inner: Arc::new(Inner {
                config,
                raft,
                applied,
                shutdown_tx,
                server: Mutex::new(None),
                local_addr,
                lock: Mutex::new(Some(lock)),
            }),
        };
        let server = tokio::spawn(server::serve(
            listener,
            quorum.clone(),
            Arc::new(api),
            shutdown_rx,
        ));
        *quorum.inner.server.lock() = Some(server);
        quorum.initialize().await?;
        info!(node_id = quorum.inner.config.node_id, addr = %local_addr, "controller quorum voter started");
        Ok(quorum)
    }

    async fn initialize(&self) -> Result<(), QuorumError> {
        let mut members = BTreeMap::new();
        for (id, addr) in &self.inner.config.voters {
            members.insert(node_id_u64(*id)?, BasicNode { addr: addr.clone() });
        }
        if self
            .inner
            .raft
            .is_initialized()
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))?
        {
            return Ok(());
        }
        match self.inner.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Already initialized (an earlier start, or a leader's log reached us first).
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(QuorumError::Raft(e.to_string())),
        }
    }

    /// This voter's node id.
    pub fn node_id(&self) -> i32 {
        self.inner.config.node_id
    }

    /// The address the controller listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The configuration this voter runs with.
    pub fn config(&self) -> &QuorumConfig {
        &self.inner.config
    }

    /// Whether this voter is the leader now.
    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The leader this voter knows.
    pub fn leader_id(&self) -> Option<i32> {
        self.inner
            .raft
            .metrics()
            .borrow()
            .current_leader
            .map(node_id_i32)
    }

    /// The current Raft term (Kafka's leader epoch).
    pub fn term(&self) -> u64 {
        self.inner.raft.metrics().borrow().current_term
    }

    /// Waits until this voter knows a leader, at most `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<i32, QuorumError> {
        let metrics = self
            .inner
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a known leader")
            .await
            .map_err(|e| QuorumError::Timeout(e.to_string()))?;
        metrics
            .current_leader
            .map(node_id_i32)
            .ok_or_else(|| QuorumError::Timeout("no leader".into()))
    }

    /// Appends `command` and returns its log index once it is committed and applied here.
    /// On a follower: [`QuorumError::NotLeader`] with the leader it knows.
    pub async fn write(&self, command: &S::Command) -> Result<u64, QuorumError> {
        let data = CommandData(serde_json::to_value(command)?);
        match self.inner.raft.client_write(data).await {
            Ok(response) => Ok(response.log_id.index),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(QuorumError::NotLeader {
                    leader_hint: f.leader_id.map(node_id_i32),
                })
            }
            Err(e) => Err(QuorumError::Raft(e.to_string())),
        }
    }

    /// The last applied state.
    pub fn state(&self) -> Arc<S> {
        Arc::clone(&self.inner.applied.borrow().state)
    }

    /// The last applied state with its log index.
    pub fn applied(&self) -> Applied<S> {
        self.inner.applied.borrow().clone()
    }

    /// A receiver that sees every applied state (with its log index).
    pub fn subscribe(&self) -> watch::Receiver<Applied<S>> {
        self.inner.applied.clone()
    }

    /// Takes a snapshot now (besides the automatic ones every `snapshot_threshold` entries).
    pub async fn trigger_snapshot(&self) -> Result<(), QuorumError> {
        self.inner
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))
    }

    /// Makes this voter start an election now. It wins only if a majority grants its vote
    /// (its log is up to date, and their lease on the current leader has run out), so this
    /// may or may not move the leadership; callers check [`Quorum::leader_id`] afterwards.
    pub async fn trigger_election(&self) -> Result<(), QuorumError> {
        self.inner
            .raft
            .trigger()
            .elect()
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))
    }

    /// The openraft metrics of this voter.
    pub fn raft_metrics(&self) -> openraft::RaftMetrics<u64, BasicNode> {
        self.inner.raft.metrics().borrow().clone()
    }

    /// The quorum as DescribeQuorum reports it, from this voter's view.
    pub fn describe(&self) -> QuorumDescription {
        let m = self.inner.raft.metrics().borrow().clone();
        let is_leader = m.state == ServerState::Leader;
        let applied_end = m.last_applied.map_or(0, |l| to_offset(l.index) + 1);
        let own_end = m.last_log_index.map_or(0, |i| to_offset(i) + 1);
        let voters = self
            .inner
            .config
            .voters
            .keys()
            .map(|&id| {
                let log_end_offset = if id == self.inner.config.node_id {
                    own_end
                } else if is_leader {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&u64::try_from(id).unwrap_or(u64::MAX)))
                        .map_or(-1, |matched| matched.map_or(0, |l| to_offset(l.index) + 1))
                } else {
                    -1
                };
                VoterState {
                    replica_id: id,
                    log_end_offset,
                }
            })
            .collect();
        QuorumDescription {
            leader_id: m.current_leader.map(node_id_i32),
            leader_epoch: i32::try_from(m.current_term).unwrap_or(i32::MAX),
            high_watermark: applied_end,
            is_leader,
            voters,
        }
    }

    /// Stops the controller listener and Raft, and releases the directory lock.
    pub async fn shutdown(&self) -> Result<(), QuorumError> {
        let _ = self.inner.shutdown_tx.send(true);
        let server = self.inner.server.lock().take();
        if let Some(server) = server {
            server.abort();
            let _ = server.await;
        }
        let result = self.inner.raft.shutdown().await;
        self.inner.lock.lock().take();
        result.map_err(|e| QuorumError::Raft(e.to_string()))
    }

    pub(crate) fn raft(&self) -> &Raft<TypeConfig> {
        &self.inner.raft
    }
}

fn to_offset(index: u64) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX - 1)
}

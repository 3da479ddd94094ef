//! A broker of the cluster: the embedded broker's log and Kafka server, driven by the
//! controller quorum.
//!
//! - **Registration and heartbeats** (Kafka's `BrokerLifecycleManager`): the broker registers
//!   its advertised listeners with a fresh incarnation id, then heartbeats every
//!   `broker.heartbeat.interval.ms` with the metadata offset it has applied; it asks to be
//!   unfenced once that offset has reached its registration, and re-registers when the
//!   controller no longer knows its epoch.
//! - **Metadata** (Kafka's `BrokerMetadataPublisher`): the broker long-polls the quorum for
//!   the metadata image and applies each new one: local replicas of the topics it is assigned
//!   are created (with the controller's topic id and configs), every assigned partition's
//!   leader/follower state goes to the [`ReplicaManager`], partitions no longer assigned stop,
//!   deleted topics are deleted.
//! - **The server** answers Metadata from the image ([`ImageView`]), forwards topic
//!   administration to the controller ([`ControllerAdmin`]), proposes ISR changes with
//!   AlterPartition ([`ControllerIsrSink`]), takes producer-id blocks from the controller
//!   ([`ControllerProducerIds`]) and fetches as a follower from leaders over their
//!   inter-broker listener ([`TcpLeaderEndpoints`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_embedded::client::{ClientError, KafkaConnection};
use broker_embedded::replica::{
    AlterPartitionSink, BoxFuture, CommittedIsr, IsrChangeResult, IsrProposal, LeaderEndpoint,
    LeaderEndpointFactory, PartitionRegistration as ReplicaRegistration, ReplicaConfig, ReplicaLog,
    ReplicaManager, Transition,
};
use broker_embedded::{
    Broker, BrokerConfig, BrokerError, BrokerInfo, ClusterAdmin, ClusterHooks, ClusterView,
    CoordinatorKind, KafkaServer, ListenerEndpoint, NewTopic, PartitionInfo, ProducerIdBlock,
    ProducerIdBlockSource, ServerConfig, TopicInfo, TopicPartition, TxnMarkerWriter,
};
use kafka_protocol::messages::alter_partition_request::{BrokerState, PartitionData, TopicData};
use kafka_protocol::messages::broker_registration_request::Listener;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::elect_leaders_response::{
    PartitionResult as ElectPartitionResult, ReplicaElectionResult,
};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AllocateProducerIdsRequest,
    AlterConfigsRequest, AlterConfigsResponse, AlterPartitionRequest, BrokerHeartbeatRequest,
    BrokerId, BrokerRegistrationRequest, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    ElectLeadersRequest, ElectLeadersResponse, FetchRequest, FetchResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ListOffsetsRequest,
    ListOffsetsResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ProducerId,
    TopicName, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::metadata::{ControllerConfig, MetadataImage};
use crate::quorum::{ControllerClient, QuorumError};

/// Security protocol PLAINTEXT, as Kafka numbers it.
const PLAINTEXT: i16 = 0;

/// One listener of the broker.
#[derive(Debug, Clone)]
pub struct BrokerListener {
    /// Listener name (`PLAINTEXT`, `INTERNAL`, …).
    pub name: String,
    /// Address to bind (`host:port`; port 0 picks one).
    pub bind: String,
    /// Advertised host (`None`: the bound address's).
    pub advertised_host: Option<String>,
    /// Advertised port (`None`: the bound port).
    pub advertised_port: Option<u16>,
}

/// Settings of a broker node.
#[derive(Debug, Clone)]
pub struct BrokerNodeConfig {
    /// `node.id`.
    pub node_id: i32,
    /// The cluster id (from `meta.properties`).
    pub cluster_id: String,
    /// The embedded broker's settings (data directory, log defaults, …).
    pub broker: BrokerConfig,
    /// Server settings shared by every listener (`listen` and the advertised address are taken
    /// from each [`BrokerListener`]).
    pub server: ServerConfig,
    /// The broker's listeners.
    pub listeners: Vec<BrokerListener>,
    /// `inter.broker.listener.name`: the listener followers fetch from.
    pub inter_broker_listener: String,
    /// The controller quorum's voters (id → `host:port` of their controller listener).
    pub controller_voters: BTreeMap<i32, String>,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// Replication settings (`replica.lag.time.max.ms`, fetch sizes).
    pub replica: ReplicaConfig,
    /// The settings of the internal topics this broker asks the controller to create on the
    /// first FindCoordinator for them (`offsets.topic.*`, `transaction.state.log.*`; see
    /// [`ControllerConfig::internal_topic`]).
    pub internal_topics: ControllerConfig,
}

/// What the broker's tasks share.
struct Shared {
    node_id: i32,
    cluster_id: String,
    inter_broker_listener: String,
    broker: Broker,
    client: Arc<ControllerClient>,
    image: RwLock<Arc<MetadataImage>>,
    /// The broker epoch of the current registration (-1 before one).
    broker_epoch: AtomicI64,
    /// The registration's offset: the broker is caught up once its image reaches it.
    registration_offset: AtomicI64,
    shutting_down: AtomicBool,
    runtime: tokio::runtime::Handle,
    /// Settings of the internal topics (see [`BrokerNodeConfig::internal_topics`]).
    internal_topics: ControllerConfig,
    /// Internal topics whose creation was asked of the controller and not answered yet.
    creating_internal: Mutex<BTreeSet<String>>,
    /// Until when this broker may act as a coordinator (see [`HeartbeatLease`]).
    lease: Arc<HeartbeatLease>,
}

/// The coordinators' lease ([`broker_embedded::CoordinatorLease`]): valid until
/// `broker.session.timeout.ms` after the sending of the last heartbeat the controller
/// answered unfenced, and after the sending of the last metadata fetch whose answer is
/// applied. The controller fences a broker a session after it *received* its last heartbeat,
/// which is later than it was sent, so the lease runs out before the controller can move
/// this broker's partitions elsewhere; and once it has run out (the broker was paused or cut
/// off), it comes back only with metadata fetched after the return, which tells the broker
/// which coordinator partitions it still leads. A paused or isolated broker thus never serves
/// its coordinators' stale in-memory state while another broker coordinates the same keys.
#[derive(Default)]
struct HeartbeatLease {
    heartbeat_until: Mutex<Option<Instant>>,
    metadata_until: Mutex<Option<Instant>>,
}

fn extend(slot: &Mutex<Option<Instant>>, until: Instant) {
    let mut current = slot.lock();
    if current.is_none_or(|c| c < until) {
        *current = Some(until);
    }
}

impl HeartbeatLease {
    /// A heartbeat sent at `sent` was answered unfenced.
    fn renew_heartbeat(&self, sent: Instant, session: Duration) {
        extend(&self.heartbeat_until, sent + session);
    }

    /// The answer to a metadata fetch sent at `sent` is applied (or there was nothing newer).
    fn renew_metadata(&self, sent: Instant, session: Duration) {
        extend(&self.metadata_until, sent + session);
    }

    /// A new registration, or a fenced answer: no coordinating until the next unfenced one.
    fn revoke(&self) {
        *self.heartbeat_until.lock() = None;
    }
}

impl broker_embedded::CoordinatorLease for HeartbeatLease {
    fn is_valid(&self) -> bool {
        let now = Instant::now();
        self.heartbeat_until.lock().is_some_and(|u| now < u)
            && self.metadata_until.lock().is_some_and(|u| now < u)
    }
}

impl Shared {
    fn image(&self) -> Arc<MetadataImage> {
        Arc::clone(&self.image.read())
    }
}

/// A running broker of the cluster.
pub struct BrokerNode {
    shared: Arc<Shared>,
    replicas: ReplicaManager,
    servers: Vec<(String, KafkaServer)>,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for BrokerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerNode")
            .field("node_id", &self.shared.node_id)
            .finish_non_exhaustive()
    }
}

/// Errors starting a broker node.
#[derive(Debug, thiserror::Error)]
pub enum BrokerNodeError {
    /// The embedded broker could not open its data directory.
    #[error(transparent)]
    Broker(#[from] broker_embedded::BrokerError),
    /// A listener could not be bound.
    #[error(transparent)]
    Server(#[from] broker_embedded::ServerError),
    /// The configuration is unusable.
    #[error("broker configuration: {0}")]
    Config(String),
}

impl BrokerNode {
    /// Opens the broker's data, starts its listeners and its registration, heartbeat and
    /// metadata tasks. Returns once the listeners are bound (the broker is fenced, hence not
    /// in any Metadata answer, until it has caught up with the metadata log).
    pub async fn start(config: BrokerNodeConfig) -> Result<Self, BrokerNodeError> {
        if !config
            .listeners
            .iter()
            .any(|l| l.name == config.inter_broker_listener)
        {
            return Err(BrokerNodeError::Config(format!(
                "inter.broker.listener.name {} is not a listener",
                config.inter_broker_listener
            )));
        }
        // The coordinators own the partitions of __consumer_offsets / __transaction_state this
        // broker is elected leader of, and write through the replica manager.
        let mut broker_config = config.broker.clone();
        broker_config.elected_coordinators = true;
        let broker = tokio::task::block_in_place(|| Broker::open(broker_config))?;
        let client = Arc::new(ControllerClient::new(
            config.controller_voters.clone(),
            &format!("broker-{}", config.node_id),
        ));
        let shared = Arc::new(Shared {
            node_id: config.node_id,
            cluster_id: config.cluster_id.clone(),
            inter_broker_listener: config.inter_broker_listener.clone(),
            broker: broker.clone(),
            client: Arc::clone(&client),
            image: RwLock::new(Arc::new(MetadataImage::new())),
            broker_epoch: AtomicI64::new(-1),
            registration_offset: AtomicI64::new(i64::MAX),
            shutting_down: AtomicBool::new(false),
            runtime: tokio::runtime::Handle::current(),
            internal_topics: config.internal_topics.clone(),
            creating_internal: Mutex::new(BTreeSet::new()),
            lease: Arc::new(HeartbeatLease::default()),
        });
        let replicas = ReplicaManager::new(
            config.replica.clone(),
            Some(Arc::new(ControllerIsrSink(Arc::clone(&shared)))),
            Arc::new(TcpLeaderEndpoints {
                shared: Arc::clone(&shared),
                endpoints: Mutex::new(HashMap::new()),
                client_id: format!("replica-fetcher-{}", config.node_id),
            }),
        );
        replicas.start();
        broker.set_producer_id_source(Arc::new(ControllerProducerIds(Arc::clone(&shared))));
        broker.enable_replicated_coordinators(replicas.clone(), tokio::runtime::Handle::current());
        broker.set_coordinator_lease(
            Arc::clone(&shared.lease) as Arc<dyn broker_embedded::CoordinatorLease>
        );
        broker.set_txn_marker_router(Arc::new(MarkerRouter {
            shared: Arc::clone(&shared),
            endpoints: TcpLeaderEndpoints {
                shared: Arc::clone(&shared),
                endpoints: Mutex::new(HashMap::new()),
                client_id: format!("txn-markers-{}", config.node_id),
            },
        }));
        let view: Arc<dyn ClusterView> = Arc::new(ImageView(Arc::clone(&shared)));
        let admin: Arc<dyn ClusterAdmin> = Arc::new(ControllerAdmin(Arc::clone(&shared)));
        let mut servers = Vec::new();
        let mut endpoints = Vec::new();
        for l in &config.listeners {
            let mut server_config = config.server.clone();
            server_config.listen = l.bind.clone();
            server_config.advertised_host = l.advertised_host.clone();
            server_config.advertised_port = l.advertised_port;
            let server = KafkaServer::start_with_cluster(
                broker.clone(),
                server_config,
                ClusterHooks {
                    listener_name: l.name.clone(),
                    view: Arc::clone(&view),
                    admin: Some(Arc::clone(&admin)),
                    replicas: replicas.clone(),
                },
            )
            .await?;
            let bound = server.local_addr();
            endpoints.push(ListenerEndpoint {
                listener: l.name.clone(),
                host: l
                    .advertised_host
                    .clone()
                    .unwrap_or_else(|| bound.ip().to_string()),
                port: i32::from(l.advertised_port.unwrap_or(bound.port())),
            });
            servers.push((l.name.clone(), server));
        }
        let (stop, stop_rx) = watch::channel(false);
        let lifecycle = tokio::spawn(lifecycle(
            Arc::clone(&shared),
            endpoints,
            config.heartbeat_interval,
            stop_rx.clone(),
        ));
        let metadata = tokio::spawn(metadata_loop(
            Arc::clone(&shared),
            replicas.clone(),
            stop_rx,
        ));
        info!(node_id = config.node_id, "broker node started");
        Ok(Self {
            shared,
            replicas,
            servers,
            tasks: vec![lifecycle, metadata],
            stop,
        })
    }

    /// The bound address of each listener, by listener name.
    pub fn listener_addresses(&self) -> Vec<(String, std::net::SocketAddr)> {
        self.servers
            .iter()
            .map(|(n, s)| (n.clone(), s.local_addr()))
            .collect()
    }

    /// The embedded broker.
    pub fn broker(&self) -> &Broker {
        &self.shared.broker
    }

    /// The metadata image last applied.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.shared.image()
    }

    /// Stops serving: a controlled shutdown (the controller moves leadership away first,
    /// bounded by `timeout`), then the listeners, replication and the log.
    pub async fn shutdown(self, timeout: Duration) {
        self.shared.shutting_down.store(true, Ordering::Release);
        // The heartbeat task asks for a controlled shutdown and ends when the controller
        // says the broker may stop (or at the deadline).
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tasks = self.tasks;
        if let Some(lifecycle) = tasks.first_mut() {
            let _ = tokio::time::timeout_at(deadline, lifecycle).await;
        }
        let _ = self.stop.send(true);
        for t in &tasks {
            t.abort();
        }
        for (_, s) in self.servers {
            s.shutdown().await;
        }
        self.replicas.shutdown();
        let broker = self.shared.broker.clone();
        if let Err(e) = tokio::task::block_in_place(|| broker.shutdown()) {
            warn!(error = %e, "broker shutdown");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Registration and heartbeats

async fn register(shared: &Shared, endpoints: &[ListenerEndpoint], incarnation: Uuid) -> i64 {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listeners = Vec::new();
        for e in endpoints {
            listeners.push(
                Listener::default()
                    .with_name(StrBytes::from_string(e.listener.clone()))
                    .with_host(StrBytes::from_string(e.host.clone()))
                    .with_port(u16::try_from(e.port).unwrap_or(0))
                    .with_security_protocol(PLAINTEXT),
            );
        }
        let request = BrokerRegistrationRequest::default()
            .with_broker_id(BrokerId(shared.node_id))
            .with_cluster_id(StrBytes::from_string(shared.cluster_id.clone()))
            .with_incarnation_id(incarnation)
            .with_listeners(listeners);
        match shared.client.send(0, &request).await {
            Ok(r) if r.error_code == 0 => {
                info!(
                    broker_epoch = r.broker_epoch,
                    "registered with the controller"
                );
                return r.broker_epoch;
            }
            Ok(r) => {
                let error = ResponseError::try_from_code(r.error_code);
                // DUPLICATE_BROKER_REGISTRATION: the previous incarnation's session has not
                // expired yet. INCONSISTENT_CLUSTER_ID: a misconfiguration, logged loudly.
                warn!(
                    ?error,
                    code = r.error_code,
                    "broker registration refused; retrying"
                );
            }
            Err(e) => debug!(error = %e, "broker registration failed; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Registers, then heartbeats until a controlled shutdown completes (or the task is stopped).
async fn lifecycle(
    shared: Arc<Shared>,
    endpoints: Vec<ListenerEndpoint>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let incarnation = Uuid::new_v4();
    'register: loop {
        let epoch = tokio::select! {
            e = register(&shared, &endpoints, incarnation) => e,
            _ = stop.changed() => return,
        };
        shared.broker_epoch.store(epoch, Ordering::Release);
        shared.registration_offset.store(epoch, Ordering::Release);
        // A new incarnation coordinates nothing until the controller answers it unfenced.
        shared.lease.revoke();
        let session = Duration::from_millis(shared.internal_topics.broker_session_timeout_ms);
        loop {
            let offset = i64::try_from(shared.image().offset()).unwrap_or(i64::MAX);
            let caught_up = offset >= shared.registration_offset.load(Ordering::Acquire);
            let shutting_down = shared.shutting_down.load(Ordering::Acquire);
            let request = BrokerHeartbeatRequest::default()
                .with_broker_id(BrokerId(shared.node_id))
                .with_broker_epoch(epoch)
                .with_current_metadata_offset(offset)
                .with_want_fence(!caught_up)
                .with_want_shut_down(shutting_down);
            let sent = Instant::now();
            match shared.client.send(0, &request).await {
                Ok(r) if r.error_code == 0 => {
                    if r.is_fenced {
                        shared.lease.revoke();
                    } else {
                        shared.lease.renew_heartbeat(sent, session);
                    }
                    if shutting_down && r.should_shut_down {
                        info!("the controller completed this broker's controlled shutdown");
                        return;
                    }
                }
                Ok(r)
                    if r.error_code == ResponseError::StaleBrokerEpoch.code()
                        || r.error_code == ResponseError::BrokerIdNotRegistered.code() =>
                {
                    warn!(
                        code = r.error_code,
                        "the controller no longer knows this broker's epoch; registering again"
                    );
                    continue 'register;
                }
                Ok(r) => debug!(code = r.error_code, "broker heartbeat refused"),
                Err(e) => debug!(error = %e, "broker heartbeat failed"),
            }
            let wait = if shutting_down {
                Duration::from_millis(100)
            } else {
                interval
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata

async fn metadata_loop(
    shared: Arc<Shared>,
    replicas: ReplicaManager,
    mut stop: watch::Receiver<bool>,
) {
    let mut since = -1i64;
    let session = Duration::from_millis(shared.internal_topics.broker_session_timeout_ms);
    loop {
        let sent = Instant::now();
        let fetched = tokio::select! {
            f = shared.client.fetch_metadata(since, Duration::from_secs(1)) => f,
            _ = stop.changed() => return,
        };
        match fetched {
            Ok(Some(fetch)) if fetch.applied_offset > since => {
                match MetadataImage::from_snapshot(&fetch.state) {
                    Ok(image) => {
                        since = fetch.applied_offset;
                        let image = Arc::new(image);
                        let shared2 = Arc::clone(&shared);
                        let replicas2 = replicas.clone();
                        let image2 = Arc::clone(&image);
                        let applied = tokio::task::spawn_blocking(move || {
                            publish(&shared2, &replicas2, &image2)
                        })
                        .await;
                        match applied {
                            Ok(()) => shared.lease.renew_metadata(sent, session),
                            Err(e) => warn!(error = %e, "applying a metadata image failed"),
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "undecodable metadata image; fetching again");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            // Nothing newer than what is applied: this broker's view is current.
            Ok(_) => shared.lease.renew_metadata(sent, session),
            Err(e) => {
                debug!(error = %e, "fetching metadata failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Topics whose local log this broker manages itself (the coordinators' internal topics) and
/// which the metadata image therefore never deletes unless it knew them.
fn is_local_internal(name: &str) -> bool {
    name == broker_embedded::OFFSETS_TOPIC || name == broker_embedded::TRANSACTION_STATE_TOPIC
}

/// Applies a new image: local replicas created, partition states handed to the replica
/// manager, replicas no longer assigned stopped, deleted topics deleted.
fn publish(shared: &Shared, replicas: &ReplicaManager, image: &Arc<MetadataImage>) {
    let me = shared.node_id;
    let broker = &shared.broker;
    let previous = shared.image();
    // Fenced or shutting-down brokers: leaders do not propose them for an ISR.
    replicas.set_ineligible_replicas(
        image
            .brokers()
            .iter()
            .filter(|(_, b)| !b.is_active())
            .map(|(&id, _)| id)
            .collect(),
    );
    let mut assigned: BTreeSet<TopicPartition> = BTreeSet::new();
    for topic in image.topics().values() {
        let mine = topic.partitions.values().any(|p| p.replicas.contains(&me));
        if !mine {
            continue;
        }
        if let Err(e) = ensure_local_topic(broker, image, topic) {
            warn!(topic = %topic.name, error = %e, "cannot create the local replica of a topic");
            continue;
        }
        for (&index, p) in &topic.partitions {
            if !p.replicas.contains(&me) {
                continue;
            }
            let tp = TopicPartition::new(topic.name.clone(), index);
            let log = match broker.partition_log(&topic.name, index) {
                Ok(l) => l,
                Err(e) => {
                    warn!(topic = %topic.name, partition = index, error = %e, "no local log");
                    continue;
                }
            };
            log.set_replicated(true);
            assigned.insert(tp.clone());
            let log: Arc<dyn ReplicaLog> = log;
            let transition = replicas.apply_partition_state(
                &tp,
                topic.id,
                log,
                &ReplicaRegistration {
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                },
            );
            // The coordinators follow the leadership of their partitions (Kafka's onElection /
            // onResignation).
            if let Some(kind) = CoordinatorKind::of_topic(&topic.name) {
                match transition {
                    Transition::Leader { .. } | Transition::Unchanged { leader: true } => {
                        broker.coordinator_partition_elected(kind, index, p.leader_epoch)
                    }
                    Transition::Follower { .. }
                    | Transition::Stopped
                    | Transition::Unchanged { leader: false } => {
                        broker.coordinator_partition_resigned(kind, index)
                    }
                    Transition::Stale => {}
                }
            }
        }
    }
    for tp in replicas.partitions() {
        if !assigned.contains(&tp) {
            replicas.stop_replica(&tp);
            if let Some(kind) = CoordinatorKind::of_topic(&tp.topic) {
                broker.coordinator_partition_resigned(kind, tp.partition);
            }
        }
    }
    // Topics deleted by the controller (or re-created with a new id).
    for name in broker.list_topics() {
        let known_before = previous.topic_by_name(&name).is_some();
        match image.topic_by_name(&name) {
            Some(_) => {}
            None if is_local_internal(&name) && !known_before => {}
            None => {
                info!(topic = %name, "deleting the local replica of a deleted topic");
                if let Err(e) = broker.delete_topic(&name) {
                    warn!(topic = %name, error = %e, "deleting a local topic failed");
                }
            }
        }
    }
    *shared.image.write() = Arc::clone(image);
}

/// Creates (or grows) the local copy of `topic` with the controller's id and configs.
fn ensure_local_topic(
    broker: &Broker,
    image: &MetadataImage,
    topic: &crate::metadata::TopicImage,
) -> broker_embedded::Result<()> {
    let partitions = u32::try_from(topic.partitions.len()).unwrap_or(0);
    if broker.topic_exists(&topic.name) {
        if broker.topic_id(&topic.name)? != topic.id {
            info!(topic = %topic.name, "a topic of this name was re-created; replacing the local replica");
            broker.delete_topic(&topic.name)?;
        } else {
            if broker.partition_count(&topic.name)? < partitions {
                broker.create_partitions(&topic.name, partitions)?;
            }
            // Config changes (AlterConfigs through the controller) reach the local logs.
            let wanted = log_configs(broker, image, &topic.name);
            if broker.topic_configs(&topic.name)? != wanted {
                info!(topic = %topic.name, configs = ?wanted, "applying the topic's configs from the metadata");
                broker.set_topic_configs(&topic.name, wanted)?;
            }
            return Ok(());
        }
    }
    let rf = topic
        .partitions
        .values()
        .map(|p| p.replicas.len())
        .max()
        .unwrap_or(1);
    let mut new = NewTopic::new(topic.name.clone(), partitions);
    new.replication_factor = i16::try_from(rf).unwrap_or(i16::MAX);
    new.configs = log_configs(broker, image, &topic.name);
    broker.create_topic_replica(new, topic.id)
}

/// The topic's overrides from the image that its logs understand (the controller also keeps
/// replication settings such as unclean.leader.election.enable for itself).
fn log_configs(broker: &Broker, image: &MetadataImage, topic: &str) -> BTreeMap<String, String> {
    image
        .configs(crate::metadata::ConfigResourceType::Topic, topic)
        .into_iter()
        .filter(|(k, v)| {
            let single = BTreeMap::from([(k.clone(), v.clone())]);
            broker.config().log_defaults.resolve(&single).is_ok()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The server's view of the cluster

/// [`ClusterView`] from the last applied image.
struct ImageView(Arc<Shared>);

fn topic_info(image: &MetadataImage, topic: &crate::metadata::TopicImage) -> TopicInfo {
    let offline = |replicas: &[i32]| -> Vec<i32> {
        replicas
            .iter()
            .copied()
            .filter(|r| image.broker(*r).is_none())
            .collect()
    };
    TopicInfo {
        name: topic.name.clone(),
        topic_id: topic.id,
        internal: topic.name.starts_with("__"),
        partitions: topic
            .partitions
            .iter()
            .map(|(&i, p)| PartitionInfo {
                partition: i,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                offline_replicas: offline(&p.replicas),
            })
            .collect(),
    }
}

impl ClusterView for ImageView {
    fn cluster_id(&self) -> String {
        self.0.cluster_id.clone()
    }

    /// Clients cannot reach the controllers (they sit on the controller listener), so as in
    /// Kafka's KRaft mode Metadata names a broker as "controller": this one, which forwards
    /// admin requests to the active controller.
    fn controller_id(&self) -> i32 {
        self.0.node_id
    }

    fn brokers(&self) -> Vec<BrokerInfo> {
        self.0
            .image()
            .brokers()
            .values()
            .map(|b| BrokerInfo {
                id: b.id,
                rack: b.rack.clone(),
                endpoints: b
                    .listeners
                    .iter()
                    .map(|e| ListenerEndpoint {
                        listener: e.name.clone(),
                        host: e.host.clone(),
                        port: i32::from(e.port),
                    })
                    .collect(),
                fenced: b.fenced,
            })
            .collect()
    }

    fn topics(&self) -> Vec<TopicInfo> {
        let image = self.0.image();
        image
            .topics()
            .values()
            .map(|t| topic_info(&image, t))
            .collect()
    }

    fn topic(&self, name: &str) -> Option<TopicInfo> {
        let image = self.0.image();
        image.topic_by_name(name).map(|t| topic_info(&image, t))
    }

    fn topic_by_id(&self, id: Uuid) -> Option<TopicInfo> {
        let image = self.0.image();
        image.topic(&id).map(|t| topic_info(&image, t))
    }

    fn topic_configs(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let image = self.0.image();
        image.topic_by_name(name)?;
        Some(image.configs(crate::metadata::ConfigResourceType::Topic, name))
    }
}

/// Topic administration forwarded to the active controller.
struct ControllerAdmin(Arc<Shared>);

/// The CreateTopics version used towards the controller.
const CREATE_TOPICS_VERSION: i16 = 5;
/// The DeleteTopics version used towards the controller (topics by name or id).
const DELETE_TOPICS_VERSION: i16 = 6;
/// The CreatePartitions version used towards the controller.
const CREATE_PARTITIONS_VERSION: i16 = 2;
/// ElectLeaders version spoken to the controller.
const ELECT_LEADERS_VERSION: i16 = 2;
/// AlterConfigs version spoken to the controller.
const ALTER_CONFIGS_VERSION: i16 = 2;
/// IncrementalAlterConfigs version spoken to the controller.
const INCREMENTAL_ALTER_CONFIGS_VERSION: i16 = 1;

fn unavailable(e: &QuorumError) -> (i16, String) {
    (
        ResponseError::RequestTimedOut.code(),
        format!("the controller could not be reached: {e}"),
    )
}

impl ClusterAdmin for ControllerAdmin {
    fn alter_configs(
        &self,
        request: AlterConfigsRequest,
    ) -> BoxFuture<'static, AlterConfigsResponse> {
        let shared = Arc::clone(&self.0);
        Box::pin(async move {
            match shared.client.send(ALTER_CONFIGS_VERSION, &request).await {
                Ok(r) => r,
                Err(e) => {
                    let (code, msg) = unavailable(&e);
                    AlterConfigsResponse::default().with_responses(
                        request
                            .resources
                            .iter()
                            .map(|r| {
                                alter_configs_response::AlterConfigsResourceResponse::default()
                                    .with_resource_type(r.resource_type)
                                    .with_resource_name(r.resource_name.clone())
                                    .with_error_code(code)
                                    .with_error_message(Some(StrBytes::from_string(msg.clone())))
                            })
                            .collect(),
                    )
                }
            }
        })
    }

    fn incremental_alter_configs(
        &self,
        request: IncrementalAlterConfigsRequest,
    ) -> BoxFuture<'static, IncrementalAlterConfigsResponse> {
        let shared = Arc::clone(&self.0);
        Box::pin(async move {
            match shared
                .client
                .send(INCREMENTAL_ALTER_CONFIGS_VERSION, &request)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    let (code, msg) = unavailable(&e);
                    IncrementalAlterConfigsResponse::default().with_responses(
                        request
                            .resources
                            .iter()
                            .map(|r| {
                                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                                    .with_resource_type(r.resource_type)
                                    .with_resource_name(r.resource_name.clone())
                                    .with_error_code(code)
                                    .with_error_message(Some(StrBytes::from_string(msg.clone())))
                            })
                            .collect(),
                    )
                }
            }
        })
    }

    fn create_internal_topic(&self, name: &str) {
        let shared = Arc::clone(&self.0);
        let Some(topic) = shared.internal_topics.internal_topic(name) else {
            return;
        };
        if !shared.creating_internal.lock().insert(name.to_string()) {
            return;
        }
        let name = name.to_string();
        shared.runtime.clone().spawn(async move {
            let request = CreateTopicsRequest::default()
                .with_topics(vec![topic])
                .with_timeout_ms(30_000);
            match shared.client.send(CREATE_TOPICS_VERSION, &request).await {
                Ok(r) => {
                    for t in r.topics {
                        let code = t.error_code;
                        if code == 0 || code == ResponseError::TopicAlreadyExists.code() {
                            info!(topic = %name, "internal topic created");
                        } else {
                            warn!(topic = %name, error_code = code, message = ?t.error_message, "creating an internal topic failed");
                        }
                    }
                }
                Err(e) => warn!(topic = %name, error = %e, "creating an internal topic failed"),
            }
            shared.creating_internal.lock().remove(&name);
        });
    }

    fn create_topics(
        &self,
        request: CreateTopicsRequest,
    ) -> BoxFuture<'static, CreateTopicsResponse> {
        let shared = Arc::clone(&self.0);
        Box::pin(async move {
            match shared.client.send(CREATE_TOPICS_VERSION, &request).await {
                Ok(r) => r,
                Err(e) => {
                    let (code, msg) = unavailable(&e);
                    CreateTopicsResponse::default().with_topics(
                        request
                            .topics
                            .iter()
                            .map(|t| {
                                CreatableTopicResult::default()
                                    .with_name(t.name.clone())
                                    .with_error_code(code)
                                    .with_error_message(Some(StrBytes::from_string(msg.clone())))
                            })
                            .collect(),
                    )
                }
            }
        })
    }

    fn delete_topics(
        &self,
        request: DeleteTopicsRequest,
    ) -> BoxFuture<'static, DeleteTopicsResponse> {
        let shared = Arc::clone(&self.0);
        Box::pin(async move {
            // Version 6 names topics in `topics`; older requests list `topic_names`.
            let mut request = request;
            let names = std::mem::take(&mut request.topic_names);
            request.topics.extend(
                names
                    .into_iter()
                    .map(|n| DeleteTopicState::default().with_name(Some(n))),
            );
            match shared.client.send(DELETE_TOPICS_VERSION, &request).await {
                Ok(r) => r,
                Err(e) => {
                    let (code, msg) = unavailable(&e);
                    DeleteTopicsResponse::default().with_responses(
                        request
                            .topics
                            .iter()
                            .map(|t| {
                                DeletableTopicResult::default()
                                    .with_name(t.name.clone())
                                    .with_topic_id(t.topic_id)
                                    .with_error_code(code)
                                    .with_error_message(Some(StrBytes::from_string(msg.clone())))
                            })
                            .collect(),
                    )
                }
            }
        })
    }

    fn create_partitions(
        &self,
        request: CreatePartitionsRequest,
    ) -> BoxFuture<'static, CreatePartitionsResponse> {
        let shared = Arc::clone(&self.0);
        Box::pin(async move {
            match shared
                .client
                .send(CREATE_PARTITIONS_VERSION, &request)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    let (code, msg) = unavailable(&e);
                    CreatePartitionsResponse::default().with_results(
                        request
                            .topics
                            .iter()
                            .map(|t| {
                                CreatePartitionsTopicResult::default()
                                    .with_name(t.name.clone())
                                    .with_error_code(code)
                                    .with_error_message(Some(StrBytes::from_string(msg.clone())))
                            })
                            .collect(),
                    )
                }
            }
        })
    }

    fn elect_leaders(
        &self,
        request: ElectLeadersRequest,
    ) -> BoxFuture<'static, ElectLeadersResponse> {
        let shared = Arc::clone(&self.0);
        Box::pin(async move {
            match shared.client.send(ELECT_LEADERS_VERSION, &request).await {
                Ok(r) => r,
                Err(e) => {
                    let (code, msg) = unavailable(&e);
                    ElectLeadersResponse::default()
                        .with_error_code(code)
                        .with_replica_election_results(
                            request
                                .topic_partitions
                                .iter()
                                .flatten()
                                .map(|t| {
                                    ReplicaElectionResult::default()
                                        .with_topic(t.topic.clone())
                                        .with_partition_result(
                                            t.partitions
                                                .iter()
                                                .map(|p| {
                                                    ElectPartitionResult::default()
                                                        .with_partition_id(*p)
                                                        .with_error_code(code)
                                                        .with_error_message(Some(
                                                            StrBytes::from_string(msg.clone()),
                                                        ))
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// ISR changes, producer ids, leader endpoints

/// Sends the leader's ISR proposals to the controller as AlterPartition (v2: by topic id).
struct ControllerIsrSink(Arc<Shared>);

impl AlterPartitionSink for ControllerIsrSink {
    fn alter_partition(
        &self,
        tp: TopicPartition,
        topic_id: Uuid,
        proposal: IsrProposal,
    ) -> BoxFuture<'static, IsrChangeResult> {
        let shared = Arc::clone(&self.0);
        Box::pin(async move {
            let epoch = shared.broker_epoch.load(Ordering::Acquire);
            let partition = PartitionData::default()
                .with_partition_index(tp.partition)
                .with_leader_epoch(proposal.leader_epoch)
                .with_partition_epoch(proposal.partition_epoch)
                .with_new_isr_with_epochs(
                    proposal
                        .new_isr
                        .iter()
                        .map(|id| {
                            BrokerState::default()
                                .with_broker_id(BrokerId(*id))
                                .with_broker_epoch(-1)
                        })
                        .collect(),
                );
            let request = AlterPartitionRequest::default()
                .with_broker_id(BrokerId(shared.node_id))
                .with_broker_epoch(epoch)
                .with_topics(vec![TopicData::default()
                    .with_topic_id(topic_id)
                    .with_partitions(vec![partition])]);
            let response = shared
                .client
                .send(3, &request)
                .await
                .map_err(|_| ResponseError::RequestTimedOut.code())?;
            if response.error_code != 0 {
                return Err(response.error_code);
            }
            let p = response
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == tp.partition)
                .ok_or(ResponseError::UnknownServerError.code())?;
            if p.error_code != 0 {
                return Err(p.error_code);
            }
            Ok(CommittedIsr {
                leader_epoch: p.leader_epoch,
                isr: p.isr.iter().map(|b| b.0).collect(),
                partition_epoch: p.partition_epoch,
            })
        })
    }
}

/// Producer-id blocks from the controller (AllocateProducerIds).
struct ControllerProducerIds(Arc<Shared>);

impl ProducerIdBlockSource for ControllerProducerIds {
    fn request_block(
        &self,
        done: Box<dyn FnOnce(std::result::Result<ProducerIdBlock, String>) + Send>,
    ) {
        let shared = Arc::clone(&self.0);
        self.0.runtime.spawn(async move {
            // Wait for a registration: the controller checks the broker epoch.
            let mut waited = 0;
            while shared.broker_epoch.load(Ordering::Acquire) < 0 && waited < 100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                waited += 1;
            }
            let request = AllocateProducerIdsRequest::default()
                .with_broker_id(BrokerId(shared.node_id))
                .with_broker_epoch(shared.broker_epoch.load(Ordering::Acquire));
            let result = match shared.client.send(0, &request).await {
                Ok(r) if r.error_code == 0 => Ok(ProducerIdBlock {
                    first: r.producer_id_start.0,
                    size: i64::from(r.producer_id_len),
                }),
                Ok(r) => Err(format!("AllocateProducerIds error code {}", r.error_code)),
                Err(e) => Err(e.to_string()),
            };
            done(result);
        });
    }
}

/// Follower fetches go to the leader's inter-broker listener, one connection per leader.
struct TcpLeaderEndpoints {
    shared: Arc<Shared>,
    endpoints: Mutex<HashMap<i32, Arc<TcpLeaderEndpoint>>>,
    /// The client id of the connections.
    client_id: String,
}

impl TcpLeaderEndpoints {
    fn connection_to(&self, leader_id: i32) -> Arc<TcpLeaderEndpoint> {
        let mut map = self.endpoints.lock();
        let e = map.entry(leader_id).or_insert_with(|| {
            Arc::new(TcpLeaderEndpoint {
                shared: Arc::clone(&self.shared),
                leader_id,
                client_id: self.client_id.clone(),
                connection: tokio::sync::Mutex::new(None),
            })
        });
        Arc::clone(e)
    }
}

impl LeaderEndpointFactory for TcpLeaderEndpoints {
    fn endpoint(&self, leader_id: i32) -> Arc<dyn LeaderEndpoint> {
        self.connection_to(leader_id) as Arc<dyn LeaderEndpoint>
    }
}

struct TcpLeaderEndpoint {
    shared: Arc<Shared>,
    leader_id: i32,
    client_id: String,
    connection: tokio::sync::Mutex<Option<KafkaConnection>>,
}

/// Request timeout of a replica fetch (the fetch itself waits up to `replica.fetch.wait.max.ms`).
const REPLICA_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl TcpLeaderEndpoint {
    fn address(&self) -> Result<String, ClientError> {
        let image = self.shared.image();
        image
            .broker(self.leader_id)
            .and_then(|b| b.endpoint(&self.shared.inter_broker_listener))
            .map(|e| format!("{}:{}", e.host, e.port))
            .ok_or_else(|| ClientError::Io {
                address: format!("broker {}", self.leader_id),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the leader has no endpoint on the inter-broker listener",
                ),
            })
    }

    async fn call<Req>(
        &self,
        request: Req,
        floor: i16,
        cap: i16,
    ) -> Result<Req::Response, ClientError>
    where
        Req: kafka_protocol::protocol::Request,
    {
        self.call_with_timeout(request, floor, cap, REPLICA_REQUEST_TIMEOUT)
            .await
    }

    async fn call_with_timeout<Req>(
        &self,
        request: Req,
        floor: i16,
        cap: i16,
        timeout: Duration,
    ) -> Result<Req::Response, ClientError>
    where
        Req: kafka_protocol::protocol::Request,
    {
        let mut guard = self.connection.lock().await;
        if guard.is_none() {
            let address = self.address()?;
            *guard = Some(
                KafkaConnection::connect(&address, &self.client_id, Duration::from_secs(5)).await?,
            );
        }
        let Some(conn) = guard.as_mut() else {
            return Err(ClientError::Io {
                address: format!("broker {}", self.leader_id),
                source: std::io::Error::other("no connection"),
            });
        };
        match conn.send(request, floor, cap, timeout).await {
            Ok((_, r)) => Ok(r),
            Err(e) => {
                if !e.connection_usable() {
                    *guard = None;
                }
                Err(e)
            }
        }
    }
}

impl LeaderEndpoint for TcpLeaderEndpoint {
    fn fetch(&self, request: FetchRequest) -> BoxFuture<'_, Result<FetchResponse, ClientError>> {
        Box::pin(self.call(request, 12, 15))
    }

    fn offset_for_leader_epoch(
        &self,
        request: OffsetForLeaderEpochRequest,
    ) -> BoxFuture<'_, Result<OffsetForLeaderEpochResponse, ClientError>> {
        Box::pin(self.call(request, 3, 4))
    }

    fn list_offsets(
        &self,
        request: ListOffsetsRequest,
    ) -> BoxFuture<'_, Result<ListOffsetsResponse, ClientError>> {
        Box::pin(self.call(request, 1, 7))
    }
}

// ---------------------------------------------------------------------------------------------
// Transaction markers

/// How long the transaction coordinator waits for a remote leader's `WriteTxnMarkers` answer
/// (the leader answers once its in-sync replicas have the markers).
const MARKER_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The transaction coordinator's markers, each to its partition's leader: this broker's own
/// partitions directly, others with `WriteTxnMarkers` over the leader's inter-broker listener
/// (Kafka's `TransactionMarkerChannelManager`). A failed marker is an error the coordinator
/// retries on its next tick, after the metadata has caught up.
struct MarkerRouter {
    shared: Arc<Shared>,
    endpoints: TcpLeaderEndpoints,
}

impl TxnMarkerWriter for MarkerRouter {
    fn write_txn_marker(
        &self,
        tp: &TopicPartition,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> broker_embedded::Result<()> {
        let image = self.shared.image();
        let leader = match image.topic_by_name(&tp.topic) {
            None => {
                return Err(BrokerError::UnknownTopicOrPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                })
            }
            Some(t) => match t.partitions.get(&tp.partition) {
                None => {
                    return Err(BrokerError::UnknownTopicOrPartition {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                    })
                }
                Some(p) => p.leader,
            },
        };
        if leader < 0 {
            return Err(BrokerError::CoordinatorWrite {
                code: ResponseError::LeaderNotAvailable.code(),
            });
        }
        if leader == self.shared.node_id {
            return self.shared.broker.write_txn_marker_as_leader(
                tp,
                producer_id,
                producer_epoch,
                coordinator_epoch,
                commit,
            );
        }
        let request =
            WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(producer_epoch)
                .with_transaction_result(commit)
                .with_coordinator_epoch(coordinator_epoch)
                .with_topics(vec![WritableTxnMarkerTopic::default()
                    .with_name(TopicName(StrBytes::from_string(tp.topic.clone())))
                    .with_partition_indexes(vec![tp.partition])])]);
        let endpoint = self.endpoints.connection_to(leader);
        let call = async move {
            endpoint
                .call_with_timeout(request, 1, 1, MARKER_REQUEST_TIMEOUT)
                .await
        };
        let response = block_on(&self.shared.runtime, call).map_err(|e| {
            debug!(partition = %tp, leader, error = %e, "WriteTxnMarkers failed");
            BrokerError::CoordinatorWrite {
                code: ResponseError::NetworkException.code(),
            }
        })?;
        let code = response
            .markers
            .iter()
            .flat_map(|m| m.topics.iter())
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == tp.partition)
            .map_or(ResponseError::UnknownServerError.code(), |p| p.error_code);
        match code {
            0 => Ok(()),
            c if c == ResponseError::UnknownTopicOrPartition.code() => {
                Err(BrokerError::UnknownTopicOrPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                })
            }
            code => Err(BrokerError::CoordinatorWrite { code }),
        }
    }
}

/// Runs `fut` on `runtime` from the transaction coordinator's synchronous code (a request
/// handler already moved off the async workers, or the coordinator's own thread).
fn block_on<F: std::future::Future>(runtime: &tokio::runtime::Handle, fut: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(|| runtime.block_on(fut)),
        Err(_) => runtime.block_on(fut),
    }
}

#[cfg(test)]
mod tests {
    use broker_embedded::CoordinatorLease;

    use super::*;

    /// The lease runs from when the answered heartbeat and the applied metadata fetch were
    /// sent, never moves back, and a new registration (or a fenced answer) revokes it.
    #[test]
    fn the_coordinator_lease_runs_a_session_from_the_last_heartbeat_and_metadata_fetch() {
        let lease = HeartbeatLease::default();
        assert!(!lease.is_valid(), "no heartbeat answered yet");
        let session = Duration::from_secs(60);
        let now = Instant::now();
        lease.renew_heartbeat(now, session);
        assert!(!lease.is_valid(), "no metadata applied yet");
        lease.renew_metadata(now, session);
        assert!(lease.is_valid());
        // An older heartbeat answered late does not shorten it.
        lease.renew_heartbeat(now - Duration::from_secs(59), session);
        assert_eq!(*lease.heartbeat_until.lock(), Some(now + session));
        lease.revoke();
        assert!(!lease.is_valid());
        // A heartbeat sent longer than a session ago gives no lease.
        lease.renew_heartbeat(now - Duration::from_secs(61), session);
        assert!(!lease.is_valid());
        // Back after a pause: an answered heartbeat is not enough while the last applied
        // metadata was fetched more than a session ago.
        let lease = HeartbeatLease::default();
        lease.renew_metadata(now - Duration::from_secs(61), session);
        lease.renew_heartbeat(now, session);
        assert!(!lease.is_valid());
        lease.renew_metadata(now, session);
        assert!(lease.is_valid());
    }
}

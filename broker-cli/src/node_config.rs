//! Kafka-style node configuration: the properties of `server.properties`, the `KAFKA_*`
//! environment variables of Kafka's container image, and `--config KEY=VALUE` overrides, turned
//! into a typed, validated [`NodeConfig`] for a KRaft-style cluster node.
//!
//! Sources and precedence (later wins): the properties file, then the environment (Kafka's
//! image appends the properties it derives from `KAFKA_*` variables to the mounted
//! `server.properties`, so the environment overrides the file), then `--config` overrides.
//!
//! When `process.roles` is empty or missing the node runs today's single-node broker
//! ([`ServeMode::SingleNode`]); otherwise the cluster keys are parsed and validated with the
//! rules of Kafka's `KafkaConfig` ([`ServeMode::Cluster`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Kafka's default `listeners`.
pub(crate) const DEFAULT_LISTENERS: &str = "PLAINTEXT://:9092";

/// `KAFKA_*` variables Kafka's container image does not turn into server properties (they
/// configure the JVM and logging).
const EXCLUDED_ENV: &[&str] = &[
    "KAFKA_VERSION",
    "KAFKA_HEAP_OPTS",
    "KAFKA_LOG4J_OPTS",
    "KAFKA_OPTS",
    "KAFKA_JMX_OPTS",
    "KAFKA_JVM_PERFORMANCE_OPTS",
    "KAFKA_GC_LOG_OPTS",
    "KAFKA_LOG4J_ROOT_LOGLEVEL",
    "KAFKA_LOG4J_LOGGERS",
    "KAFKA_TOOLS_LOG4J_LOGLEVEL",
    "KAFKA_JMX_HOSTNAME",
];

/// The environment variable holding the cluster id in Kafka's container image.
pub(crate) const CLUSTER_ID_ENV: &str = "CLUSTER_ID";

/// The properties a [`NodeConfig`] is built from (all other keys belong to the broker's log,
/// group and transaction settings).
pub(crate) const CLUSTER_KEYS: &[&str] = &[
    "node.id",
    "broker.id",
    "process.roles",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "listeners",
    "advertised.listeners",
    "inter.broker.listener.name",
    "controller.listener.names",
    "listener.security.protocol.map",
    "default.replication.factor",
    "min.insync.replicas",
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
    "group.initial.rebalance.delay.ms",
    "replica.lag.time.max.ms",
    "broker.session.timeout.ms",
    "broker.heartbeat.interval.ms",
    "unclean.leader.election.enable",
    "auto.leader.rebalance.enable",
    "log.dirs",
    "log.dir",
];

/// A node configuration was rejected. Messages name the property and, where Kafka has one,
/// follow Kafka's wording.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum NodeConfigError {
    /// The properties file could not be read.
    #[error("reading {path}: {reason}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// A line of a properties file, or an override, is not `KEY=VALUE`.
    #[error("{origin}: `{text}` is not KEY=VALUE")]
    NotKeyValue {
        /// Where the text came from (file and line, or `--config`).
        origin: String,
        /// The text.
        text: String,
    },
    /// A property is not known.
    #[error("unknown broker property `{0}`")]
    UnknownProperty(String),
    /// A number was expected.
    #[error("{key}: `{value}` is not a number")]
    NotANumber {
        /// Property.
        key: String,
        /// Rejected value.
        value: String,
    },
    /// `true` or `false` was expected.
    #[error("{key}: `{value}` is not true or false")]
    NotABoolean {
        /// Property.
        key: String,
        /// Rejected value.
        value: String,
    },
    /// A number below the property's minimum.
    #[error("{key}={value}: must be at least {min}")]
    BelowMinimum {
        /// Property.
        key: String,
        /// Rejected value.
        value: String,
        /// The smallest accepted value.
        min: i64,
    },
    /// A property value rejected by the broker's topic-config validation.
    #[error("{key}: {reason}")]
    InvalidValue {
        /// Property.
        key: String,
        /// Why.
        reason: String,
    },
    /// A replication factor other than 1 without `process.roles` (single-node mode).
    #[error(
        "{key}={value}: this broker runs one node; only 1 is possible \
         (set process.roles to run a cluster)"
    )]
    SingleNodeReplication {
        /// Property.
        key: String,
        /// Rejected value.
        value: String,
    },
    /// A listener address is not `HOST:PORT` (single-node `listeners`/`advertised.listeners`,
    /// `--listen`, `--advertised-listener`).
    #[error("`{0}` is not HOST:PORT")]
    NotHostPort(String),
    /// A `process.roles` entry other than `broker` or `controller`.
    #[error("Unknown process role '{0}' (only 'broker' and 'controller' are allowed roles)")]
    UnknownProcessRole(String),
    /// A role named twice in `process.roles`.
    #[error("Duplicate role names found in `process.roles`: {0}")]
    DuplicateProcessRole(String),
    /// `node.id` missing (or negative) with `process.roles` set.
    #[error(
        "Missing configuration `node.id` which is required when `process.roles` is defined \
         (i.e. when running in KRaft mode)."
    )]
    MissingNodeId,
    /// `node.id` and `broker.id` both set to different values.
    #[error("You must set `node.id` ({node_id}) to the same value as `broker.id` ({broker_id}).")]
    NodeIdMismatch {
        /// `node.id`.
        node_id: i32,
        /// `broker.id`.
        broker_id: i32,
    },
    /// Neither `controller.quorum.voters` nor `controller.quorum.bootstrap.servers`.
    #[error(
        "If using process.roles, either controller.quorum.bootstrap.servers must contain the \
         set of bootstrap controllers or controller.quorum.voters must contain a parseable set \
         of controllers."
    )]
    NoQuorum,
    /// A `controller.quorum.voters` entry that is not `{id}@{host}:{port}`.
    #[error(
        "Invalid controller.quorum.voters entry `{entry}`: {reason}. Each entry should be in \
         the form `{{id}}@{{host}}:{{port}}`."
    )]
    InvalidVoter {
        /// The entry.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// A voter id listed twice.
    #[error("controller.quorum.voters lists voter {0} more than once")]
    DuplicateVoter(i32),
    /// A `controller.quorum.bootstrap.servers` entry that is not `{host}:{port}`.
    #[error(
        "Failed to parse `{0}` for the configuration controller.quorum.bootstrap.servers. Each \
         entry should be in the form \"{{host}}:{{port}}\""
    )]
    InvalidBootstrapServer(String),
    /// A listener entry that does not parse.
    #[error("Error creating broker listeners from '{value}' ({key}): unable to parse `{entry}` to a broker endpoint")]
    InvalidListener {
        /// `listeners` or `advertised.listeners`.
        key: String,
        /// The whole value.
        value: String,
        /// The entry.
        entry: String,
    },
    /// Two listeners with the same name.
    #[error("Each listener must have a different name, {key}: {value}")]
    DuplicateListenerName {
        /// `listeners` or `advertised.listeners`.
        key: String,
        /// The value.
        value: String,
    },
    /// Two listeners on the same (non-zero) port.
    #[error("Each listener must have a different port, listeners: {value} (port {port})")]
    DuplicateListenerPort {
        /// The `listeners` value.
        value: String,
        /// The port.
        port: u16,
    },
    /// `listener.security.protocol.map` does not parse.
    #[error(
        "Error parsing configuration property 'listener.security.protocol.map': `{0}` is not \
         NAME:PROTOCOL"
    )]
    InvalidSecurityProtocolMap(String),
    /// A security protocol name Kafka does not know.
    #[error("Invalid security protocol `{0}` defined in listener.security.protocol.map")]
    UnknownSecurityProtocol(String),
    /// A listener without a security protocol in `listener.security.protocol.map`.
    #[error("No security protocol defined for listener {0} (listener.security.protocol.map)")]
    NoSecurityProtocol(String),
    /// A listener mapped to a protocol other than PLAINTEXT.
    #[error(
        "listener {listener} uses security protocol {protocol}: only PLAINTEXT is supported \
         by this broker"
    )]
    UnsupportedSecurityProtocol {
        /// Listener name.
        listener: String,
        /// Its protocol.
        protocol: SecurityProtocol,
    },
    /// `inter.broker.listener.name` not in `listener.security.protocol.map`.
    #[error(
        "Listener with name {0} defined in inter.broker.listener.name not found in \
         listener.security.protocol.map."
    )]
    InterBrokerListenerUnmapped(String),
    /// A broker-only node whose id is a voter.
    #[error(
        "If process.roles contains just the 'broker' role, the node id {node_id} must not be \
         included in the set of voters controller.quorum.voters={voters}"
    )]
    BrokerIsVoter {
        /// `node.id`.
        node_id: i32,
        /// The voter ids.
        voters: String,
    },
    /// A controller whose id is not a voter.
    #[error(
        "If process.roles contains the 'controller' role, the node id {node_id} must be \
         included in the set of voters controller.quorum.voters={voters}"
    )]
    ControllerNotVoter {
        /// `node.id`.
        node_id: i32,
        /// The voter ids.
        voters: String,
    },
    /// A broker-only node without `controller.listener.names`.
    #[error(
        "controller.listener.names must contain at least one value when running KRaft with \
         just the broker role"
    )]
    NoControllerListenerNames,
    /// A broker-only node listening on a controller listener.
    #[error(
        "controller.listener.names must not contain a value appearing in the 'listeners' \
         configuration when running KRaft with just the broker role (found {0})"
    )]
    BrokerListensOnControllerListener(String),
    /// A broker-only node advertising a controller listener.
    #[error(
        "The advertised.listeners config must not contain KRaft controller listeners from \
         controller.listener.names when process.roles=broker (found {0}): clients only talk \
         to brokers"
    )]
    BrokerAdvertisesControllerListener(String),
    /// A controller listener name without a security protocol.
    #[error(
        "Controller listener with name {0} defined in controller.listener.names not found in \
         listener.security.protocol.map (an explicit security mapping for each controller \
         listener is required if listener.security.protocol.map is non-empty)"
    )]
    ControllerListenerUnmapped(String),
    /// A controller-only node with a non-controller listener.
    #[error(
        "The listeners config must only contain KRaft controller listeners from \
         controller.listener.names when process.roles=controller (found {0})"
    )]
    ControllerOnlyNonControllerListener(String),
    /// A controller role without a listener named in `controller.listener.names`.
    #[error(
        "controller.listener.names must contain at least one value appearing in the \
         'listeners' configuration when running the KRaft controller role"
    )]
    NoControllerListener,
    /// A controller listener name absent from `listeners` on a controller.
    #[error(
        "controller.listener.names must only contain values appearing in the 'listeners' \
         configuration when running the KRaft controller role (missing {0})"
    )]
    ControllerListenerNotInListeners(String),
    /// A broker without a broker listener to advertise.
    #[error(
        "There must be at least one broker advertised listener. Perhaps all listeners appear \
         in controller.listener.names?"
    )]
    NoBrokerListener,
    /// `inter.broker.listener.name` is not an advertised broker listener.
    #[error(
        "inter.broker.listener.name must be a listener name defined in advertised.listeners. \
         The valid options based on currently configured listeners are {valid} (got {name})"
    )]
    InterBrokerListenerNotAdvertised {
        /// The configured name.
        name: String,
        /// The advertised broker listener names.
        valid: String,
    },
    /// An advertised listener name that is not a listener.
    #[error(
        "advertised.listeners listener names must be equal to or a subset of the ones defined \
         in listeners. Found {found}. The valid options based on the current configuration \
         are {valid}"
    )]
    AdvertisedNotListener {
        /// Advertised names.
        found: String,
        /// Listener names.
        valid: String,
    },
    /// An advertised listener on 0.0.0.0.
    #[error(
        "advertised.listeners cannot use the nonroutable meta-address 0.0.0.0 (listener \
         {0}). Use a routable IP address."
    )]
    NonRoutableAdvertisedListener(String),
    /// `KAFKA_ADVERTISED_LISTENERS` given to a controller-only node (Kafka's image refuses it).
    #[error("KAFKA_ADVERTISED_LISTENERS is not supported on a KRaft controller.")]
    ControllerAdvertisedListenersEnv,
    /// More than one directory in `log.dirs` in cluster mode.
    #[error("log.dirs lists {0} directories; this broker stores a node's data in one directory")]
    MultipleLogDirs(usize),
    /// `log.dirs` set to nothing.
    #[error("At least one log directory must be defined via log.dirs or log.dir.")]
    NoLogDirs,
    /// A single-node command-line flag used in cluster mode.
    #[error("{0} is for single-node mode; with process.roles set use `listeners` and `advertised.listeners`")]
    SingleNodeFlag(String),
}

/// A role of a node (`process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProcessRole {
    /// Serves clients and hosts partition replicas.
    Broker,
    /// Member of the controller quorum (the metadata log).
    Controller,
}

impl fmt::Display for ProcessRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProcessRole::Broker => "broker",
            ProcessRole::Controller => "controller",
        })
    }
}

/// Kafka's security protocols (only [`SecurityProtocol::Plaintext`] is served).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    /// `PLAINTEXT`.
    Plaintext,
    /// `SSL`.
    Ssl,
    /// `SASL_PLAINTEXT`.
    SaslPlaintext,
    /// `SASL_SSL`.
    SaslSsl,
}

impl SecurityProtocol {
    const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    /// Kafka's name of the protocol.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Parses a protocol name, case-insensitively as Kafka's `SecurityProtocol.forName`.
    pub fn from_name(name: &str) -> Option<Self> {
        let upper = name.trim().to_ascii_uppercase();
        Self::ALL.into_iter().find(|p| p.name() == upper)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One named listener (`NAME://host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Listener name, upper-cased as Kafka normalises it.
    pub listener_name: String,
    /// Host; `None` when empty (bind to all interfaces).
    pub host: Option<String>,
    /// Port (0 picks a free port when binding).
    pub port: u16,
}

impl Endpoint {
    /// The address to bind: the host, or `0.0.0.0` when the host is empty.
    pub fn bind_addr(&self) -> String {
        let host = self.host.as_deref().unwrap_or("0.0.0.0");
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host.as_deref().unwrap_or("");
        if host.contains(':') {
            write!(f, "{}://[{host}]:{}", self.listener_name, self.port)
        } else {
            write!(f, "{}://{host}:{}", self.listener_name, self.port)
        }
    }
}

/// A `host:port` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// One voter of `controller.quorum.voters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumVoter {
    /// The voter's node id.
    pub id: i32,
    /// Its controller listener address.
    pub address: HostPort,
}

/// A cluster node's configuration (`process.roles` set), validated as Kafka's `KafkaConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// `node.id` (or `broker.id`).
    pub node_id: i32,
    /// `process.roles` (non-empty).
    pub process_roles: BTreeSet<ProcessRole>,
    /// `controller.quorum.voters`, in the configured order (may be empty when
    /// `controller.quorum.bootstrap.servers` is set).
    pub quorum_voters: Vec<QuorumVoter>,
    /// `controller.quorum.bootstrap.servers` (KIP-853): controllers to ask for the voters.
    pub quorum_bootstrap_servers: Vec<HostPort>,
    /// `listeners` (default `PLAINTEXT://:9092`).
    pub listeners: Vec<Endpoint>,
    /// `advertised.listeners` as configured (`None`: the listeners are advertised).
    pub advertised_listeners: Option<Vec<Endpoint>>,
    /// `inter.broker.listener.name` (default `PLAINTEXT`).
    pub inter_broker_listener_name: String,
    /// `controller.listener.names`, upper-cased, in order (the first is the one brokers use).
    pub controller_listener_names: Vec<String>,
    /// The effective `listener.security.protocol.map` (Kafka's default, plus PLAINTEXT for
    /// the controller listeners when the map is not set).
    pub listener_security_protocol_map: BTreeMap<String, SecurityProtocol>,
    /// `default.replication.factor` (default 1).
    pub default_replication_factor: i32,
    /// `min.insync.replicas` (default 1).
    pub min_insync_replicas: i32,
    /// `offsets.topic.replication.factor` (default 3).
    pub offsets_topic_replication_factor: i16,
    /// `transaction.state.log.replication.factor` (default 3).
    pub transaction_state_log_replication_factor: i16,
    /// `group.initial.rebalance.delay.ms` (default 3000).
    pub group_initial_rebalance_delay_ms: u64,
    /// `replica.lag.time.max.ms` (default 30000).
    pub replica_lag_time_max_ms: u64,
    /// `broker.session.timeout.ms` (default 9000).
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms` (default 2000).
    pub broker_heartbeat_interval_ms: u64,
    /// `unclean.leader.election.enable` (default false).
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable` (default true).
    pub auto_leader_rebalance_enable: bool,
    /// `log.dirs` (or `log.dir`); exactly one directory.
    pub log_dirs: Vec<PathBuf>,
    /// The cluster id from `CLUSTER_ID` or `--cluster-id`, used to format storage on first
    /// start.
    pub cluster_id: Option<String>,
}

impl NodeConfig {
    /// Whether the node has `role`.
    pub fn has_role(&self, role: ProcessRole) -> bool {
        self.process_roles.contains(&role)
    }

    /// Whether the node is a controller (a voter of the quorum).
    pub fn is_controller(&self) -> bool {
        self.has_role(ProcessRole::Controller)
    }

    /// Whether the node is a broker.
    pub fn is_broker(&self) -> bool {
        self.has_role(ProcessRole::Broker)
    }

    fn is_controller_name(&self, name: &str) -> bool {
        self.controller_listener_names.iter().any(|n| n == name)
    }

    /// The listeners this node binds for controller traffic (named in
    /// `controller.listener.names`).
    pub fn controller_listeners(&self) -> Vec<&Endpoint> {
        self.listeners
            .iter()
            .filter(|l| self.is_controller_name(&l.listener_name))
            .collect()
    }

    /// The listeners this node binds for clients and other brokers.
    pub fn broker_listeners(&self) -> Vec<&Endpoint> {
        self.listeners
            .iter()
            .filter(|l| !self.is_controller_name(&l.listener_name))
            .collect()
    }

    /// The advertised listeners (`advertised.listeners`, else `listeners`).
    pub fn effective_advertised_listeners(&self) -> &[Endpoint] {
        self.advertised_listeners
            .as_deref()
            .unwrap_or(&self.listeners)
    }

    /// The broker endpoints to register with the controller (advertised, without the
    /// controller listeners).
    pub fn advertised_broker_listeners(&self) -> Vec<&Endpoint> {
        self.effective_advertised_listeners()
            .iter()
            .filter(|l| !self.is_controller_name(&l.listener_name))
            .collect()
    }

    /// The controller endpoints, one per `controller.listener.names` entry found (advertised
    /// first, else the listener), as Kafka's `effectiveAdvertisedControllerListeners`.
    pub fn advertised_controller_listeners(&self) -> Vec<&Endpoint> {
        self.controller_listener_names
            .iter()
            .filter_map(|name| {
                self.advertised_listeners
                    .iter()
                    .flatten()
                    .find(|l| &l.listener_name == name)
                    .or_else(|| self.listeners.iter().find(|l| &l.listener_name == name))
            })
            .collect()
    }

    /// The advertised endpoint of `inter.broker.listener.name` (brokers only).
    pub fn inter_broker_endpoint(&self) -> Option<&Endpoint> {
        self.advertised_broker_listeners()
            .into_iter()
            .find(|l| l.listener_name == self.inter_broker_listener_name)
    }

    /// The directory of the metadata log (Kafka's default: the first of `log.dirs`).
    pub fn metadata_log_dir(&self) -> &Path {
        self.log_dirs
            .first()
            .map(PathBuf::as_path)
            .unwrap_or(Path::new("."))
    }

    /// Builds and validates the configuration from the effective properties (last value of
    /// each key), as Kafka's `KafkaConfig` does. `process.roles` must be non-empty.
    pub fn from_properties(
        props: &BTreeMap<String, String>,
        cluster_id: Option<String>,
    ) -> Result<NodeConfig, NodeConfigError> {
        let get = |k: &str| props.get(k).map(|v| v.trim());
        let process_roles = parse_roles(get("process.roles").unwrap_or(""))?;
        let node_id = parse_opt_i32(props, "node.id")?;
        let broker_id = parse_opt_i32(props, "broker.id")?;
        let node_id = match (node_id, broker_id) {
            (Some(n), Some(b)) if n != b => {
                return Err(NodeConfigError::NodeIdMismatch {
                    node_id: n,
                    broker_id: b,
                })
            }
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => -1,
        };
        if node_id < 0 {
            return Err(NodeConfigError::MissingNodeId);
        }
        let log_dirs: Vec<PathBuf> = get("log.dirs")
            .or(get("log.dir"))
            .unwrap_or("./broker-data")
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect();
        if log_dirs.is_empty() {
            return Err(NodeConfigError::NoLogDirs);
        }
        if log_dirs.len() > 1 {
            return Err(NodeConfigError::MultipleLogDirs(log_dirs.len()));
        }
        let quorum_voters = parse_voters(get("controller.quorum.voters").unwrap_or(""))?;
        let quorum_bootstrap_servers =
            parse_bootstrap_servers(get("controller.quorum.bootstrap.servers").unwrap_or(""))?;
        let controller_listener_names: Vec<String> = get("controller.listener.names")
            .unwrap_or("")
            .split(',')
            .map(|n| n.trim().to_ascii_uppercase())
            .filter(|n| !n.is_empty())
            .collect();
        let listeners_value = get("listeners").unwrap_or(DEFAULT_LISTENERS);
        let listeners = parse_listeners("listeners", listeners_value, true)?;
        let advertised_listeners = match get("advertised.listeners") {
            Some(v) => Some(parse_listeners("advertised.listeners", v, false)?),
            None => None,
        };
        let protocol_map = effective_protocol_map(
            get("listener.security.protocol.map"),
            &controller_listener_names,
        )?;
        // Kafka resolves each listener's protocol while parsing the listener lists.
        for l in listeners
            .iter()
            .chain(advertised_listeners.iter().flatten())
        {
            if !protocol_map.contains_key(&l.listener_name) {
                return Err(NodeConfigError::NoSecurityProtocol(l.listener_name.clone()));
            }
        }
        let inter_broker_listener_name = get("inter.broker.listener.name")
            .map(str::to_ascii_uppercase)
            .unwrap_or_else(|| "PLAINTEXT".to_string());
        if !protocol_map.contains_key(&inter_broker_listener_name) {
            return Err(NodeConfigError::InterBrokerListenerUnmapped(
                inter_broker_listener_name,
            ));
        }

        let config = NodeConfig {
            node_id,
            process_roles,
            quorum_voters,
            quorum_bootstrap_servers,
            listeners,
            advertised_listeners,
            inter_broker_listener_name,
            controller_listener_names,
            listener_security_protocol_map: protocol_map,
            default_replication_factor: parse_min(props, "default.replication.factor", 1, 1)?,
            min_insync_replicas: parse_min(props, "min.insync.replicas", 1, 1)?,
            offsets_topic_replication_factor: parse_min(
                props,
                "offsets.topic.replication.factor",
                3,
                1,
            )?,
            transaction_state_log_replication_factor: parse_min(
                props,
                "transaction.state.log.replication.factor",
                3,
                1,
            )?,
            group_initial_rebalance_delay_ms: parse_min(
                props,
                "group.initial.rebalance.delay.ms",
                3000,
                0,
            )?,
            replica_lag_time_max_ms: parse_min(props, "replica.lag.time.max.ms", 30_000, 0)?,
            broker_session_timeout_ms: parse_min(props, "broker.session.timeout.ms", 9000, 0)?,
            broker_heartbeat_interval_ms: parse_min(
                props,
                "broker.heartbeat.interval.ms",
                2000,
                0,
            )?,
            unclean_leader_election_enable: parse_bool(
                props,
                "unclean.leader.election.enable",
                false,
            )?,
            auto_leader_rebalance_enable: parse_bool(props, "auto.leader.rebalance.enable", true)?,
            log_dirs,
            cluster_id,
        };
        config.validate()?;
        Ok(config)
    }

    /// Kafka's `KafkaConfig.validateValues` rules for KRaft nodes (plus: every listener in
    /// use must be PLAINTEXT).
    fn validate(&self) -> Result<(), NodeConfigError> {
        if self.quorum_voters.is_empty() && self.quorum_bootstrap_servers.is_empty() {
            return Err(NodeConfigError::NoQuorum);
        }
        let voter_ids = || {
            let ids: Vec<String> = self
                .quorum_voters
                .iter()
                .map(|v| v.id.to_string())
                .collect();
            format!("[{}]", ids.join(", "))
        };
        let is_voter = self.quorum_voters.iter().any(|v| v.id == self.node_id);
        let listener_names: BTreeSet<&str> = self
            .listeners
            .iter()
            .map(|l| l.listener_name.as_str())
            .collect();
        let controller_only = self.is_controller() && !self.is_broker();
        if !self.is_controller() {
            // Broker only.
            if is_voter {
                return Err(NodeConfigError::BrokerIsVoter {
                    node_id: self.node_id,
                    voters: voter_ids(),
                });
            }
            if self.controller_listener_names.is_empty() {
                return Err(NodeConfigError::NoControllerListenerNames);
            }
            if let Some(l) = self.controller_listeners().first() {
                return Err(NodeConfigError::BrokerListensOnControllerListener(
                    l.listener_name.clone(),
                ));
            }
            if let Some(l) = self
                .advertised_listeners
                .iter()
                .flatten()
                .find(|l| self.is_controller_name(&l.listener_name))
            {
                return Err(NodeConfigError::BrokerAdvertisesControllerListener(
                    l.listener_name.clone(),
                ));
            }
            for name in &self.controller_listener_names {
                if !self.listener_security_protocol_map.contains_key(name) {
                    return Err(NodeConfigError::ControllerListenerUnmapped(name.clone()));
                }
            }
            if self.controller_listener_names.len() > 1 {
                tracing::warn!(
                    names = ?self.controller_listener_names,
                    "controller.listener.names has multiple entries; only the first will be used since process.roles=broker"
                );
            }
        } else {
            if controller_only {
                if let Some(l) = self.broker_listeners().first() {
                    return Err(NodeConfigError::ControllerOnlyNonControllerListener(
                        l.listener_name.clone(),
                    ));
                }
            }
            if !self.quorum_voters.is_empty() && !is_voter {
                return Err(NodeConfigError::ControllerNotVoter {
                    node_id: self.node_id,
                    voters: voter_ids(),
                });
            }
            if self.advertised_controller_listeners().is_empty() {
                return Err(NodeConfigError::NoControllerListener);
            }
            if let Some(missing) = self
                .controller_listener_names
                .iter()
                .find(|n| !listener_names.contains(n.as_str()))
            {
                return Err(NodeConfigError::ControllerListenerNotInListeners(
                    missing.clone(),
                ));
            }
        }
        if self.is_broker() {
            let advertised: BTreeSet<&str> = self
                .advertised_broker_listeners()
                .iter()
                .map(|l| l.listener_name.as_str())
                .collect();
            if advertised.is_empty() {
                return Err(NodeConfigError::NoBrokerListener);
            }
            if !advertised.contains(self.inter_broker_listener_name.as_str()) {
                return Err(NodeConfigError::InterBrokerListenerNotAdvertised {
                    name: self.inter_broker_listener_name.clone(),
                    valid: join(&advertised),
                });
            }
            if !advertised.is_subset(&listener_names) {
                return Err(NodeConfigError::AdvertisedNotListener {
                    found: join(&advertised),
                    valid: join(&listener_names),
                });
            }
        }
        let advertised_in_use = self
            .advertised_broker_listeners()
            .into_iter()
            .chain(self.advertised_controller_listeners());
        for l in advertised_in_use {
            if l.host.as_deref() == Some("0.0.0.0") {
                return Err(NodeConfigError::NonRoutableAdvertisedListener(
                    l.listener_name.clone(),
                ));
            }
        }
        // Every listener this node binds, advertises or connects to must be PLAINTEXT.
        let mut in_use: BTreeSet<&str> = listener_names;
        in_use.extend(
            self.effective_advertised_listeners()
                .iter()
                .map(|l| l.listener_name.as_str()),
        );
        in_use.extend(self.controller_listener_names.iter().map(String::as_str));
        if self.is_broker() {
            in_use.insert(self.inter_broker_listener_name.as_str());
        }
        for name in in_use {
            match self.listener_security_protocol_map.get(name) {
                None => return Err(NodeConfigError::NoSecurityProtocol(name.to_string())),
                Some(SecurityProtocol::Plaintext) => {}
                Some(p) => {
                    return Err(NodeConfigError::UnsupportedSecurityProtocol {
                        listener: name.to_string(),
                        protocol: *p,
                    })
                }
            }
        }
        Ok(())
    }
}

fn join(names: &BTreeSet<&str>) -> String {
    names.iter().copied().collect::<Vec<_>>().join(",")
}

fn parse_roles(value: &str) -> Result<BTreeSet<ProcessRole>, NodeConfigError> {
    let mut roles = BTreeSet::new();
    let entries: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    for r in &entries {
        let role = match *r {
            "broker" => ProcessRole::Broker,
            "controller" => ProcessRole::Controller,
            other => return Err(NodeConfigError::UnknownProcessRole(other.to_string())),
        };
        if !roles.insert(role) {
            return Err(NodeConfigError::DuplicateProcessRole(entries.join(",")));
        }
    }
    Ok(roles)
}

/// Whether `process.roles` names at least one role (cluster mode).
pub(crate) fn roles_set(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.split(',').any(|r| !r.trim().is_empty()))
}

fn parse_opt_i32(
    props: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<i32>, NodeConfigError> {
    match props.get(key).map(|v| v.trim()) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| NodeConfigError::NotANumber {
                key: key.to_string(),
                value: v.to_string(),
            }),
    }
}

fn parse_min<T>(
    props: &BTreeMap<String, String>,
    key: &str,
    default: T,
    min: i64,
) -> Result<T, NodeConfigError>
where
    T: std::str::FromStr + Into<i128> + Copy,
{
    let Some(v) = props.get(key).map(|v| v.trim()) else {
        return Ok(default);
    };
    let n: T = v.parse().map_err(|_| NodeConfigError::NotANumber {
        key: key.to_string(),
        value: v.to_string(),
    })?;
    if n.into() < i128::from(min) {
        return Err(NodeConfigError::BelowMinimum {
            key: key.to_string(),
            value: v.to_string(),
            min,
        });
    }
    Ok(n)
}

fn parse_bool(
    props: &BTreeMap<String, String>,
    key: &str,
    default: bool,
) -> Result<bool, NodeConfigError> {
    match props.get(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(v) => Err(NodeConfigError::NotABoolean {
            key: key.to_string(),
            value: v,
        }),
    }
}

/// Splits `host:port` as Kafka's `Utils.getHost`/`getPort` (IPv6 hosts in brackets); `None`
/// when it does not parse. The host may be empty.
fn split_host_port(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let valid = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '%' | '.' | '_' | ':'));
    if !valid || port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

fn csv(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|e| !e.is_empty())
}

fn parse_voters(value: &str) -> Result<Vec<QuorumVoter>, NodeConfigError> {
    let mut voters: Vec<QuorumVoter> = Vec::new();
    for entry in csv(value) {
        let bad = |reason: &str| NodeConfigError::InvalidVoter {
            entry: entry.to_string(),
            reason: reason.to_string(),
        };
        let (id, addr) = entry
            .split_once('@')
            .filter(|(_, a)| !a.contains('@'))
            .ok_or_else(|| bad("expected exactly one `@`"))?;
        let id: i32 = id
            .trim()
            .parse()
            .map_err(|_| bad("failed to parse voter ID as an integer"))?;
        let (host, port) =
            split_host_port(addr.trim()).ok_or_else(|| bad("failed to parse host and port"))?;
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        if host == "0.0.0.0" {
            return Err(bad("host 0.0.0.0 is not routable"));
        }
        if voters.iter().any(|v| v.id == id) {
            return Err(NodeConfigError::DuplicateVoter(id));
        }
        voters.push(QuorumVoter {
            id,
            address: HostPort { host, port },
        });
    }
    Ok(voters)
}

fn parse_bootstrap_servers(value: &str) -> Result<Vec<HostPort>, NodeConfigError> {
    csv(value)
        .map(|entry| match split_host_port(entry) {
            Some((host, port)) if !host.is_empty() => Ok(HostPort { host, port }),
            _ => Err(NodeConfigError::InvalidBootstrapServer(entry.to_string())),
        })
        .collect()
}

/// Parses a listener list (`NAME://host:port,...`). `distinct_ports`: `listeners` must not
/// repeat a non-zero port (Kafka's rule; `advertised.listeners` may).
pub(crate) fn parse_listeners(
    key: &str,
    value: &str,
    distinct_ports: bool,
) -> Result<Vec<Endpoint>, NodeConfigError> {
    let mut out: Vec<Endpoint> = Vec::new();
    for entry in csv(value) {
        let bad = || NodeConfigError::InvalidListener {
            key: key.to_string(),
            value: value.to_string(),
            entry: entry.to_string(),
        };
        let (name, addr) = entry.rsplit_once("://").ok_or_else(bad)?;
        let (host, port) = split_host_port(addr).ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        let listener_name = name.to_ascii_uppercase();
        if out.iter().any(|e| e.listener_name == listener_name) {
            return Err(NodeConfigError::DuplicateListenerName {
                key: key.to_string(),
                value: value.to_string(),
            });
        }
        if distinct_ports && port != 0 && out.iter().any(|e| e.port == port) {
            return Err(NodeConfigError::DuplicateListenerPort {
                value: value.to_string(),
                port,
            });
        }
        out.push(Endpoint {
            listener_name,
            host: (!host.is_empty()).then_some(host),
            port,
        });
    }
    Ok(out)
}

/// Kafka's `effectiveListenerSecurityProtocolMap`: the configured map, or (when not set)
/// Kafka's default map plus PLAINTEXT for every controller listener name.
fn effective_protocol_map(
    configured: Option<&str>,
    controller_names: &[String],
) -> Result<BTreeMap<String, SecurityProtocol>, NodeConfigError> {
    let mut map = BTreeMap::new();
    match configured {
        Some(value) => {
            for entry in csv(value) {
                let (name, proto) = entry
                    .split_once(':')
                    .filter(|(n, p)| !n.trim().is_empty() && !p.trim().is_empty())
                    .ok_or_else(|| {
                        NodeConfigError::InvalidSecurityProtocolMap(entry.to_string())
                    })?;
                let proto = SecurityProtocol::from_name(proto).ok_or_else(|| {
                    NodeConfigError::UnknownSecurityProtocol(proto.trim().to_string())
                })?;
                map.insert(name.trim().to_ascii_uppercase(), proto);
            }
        }
        None => {
            for p in SecurityProtocol::ALL {
                map.insert(p.name().to_string(), p);
            }
            for name in controller_names {
                map.entry(name.clone())
                    .or_insert(SecurityProtocol::Plaintext);
            }
        }
    }
    Ok(map)
}

/// Maps an environment variable name to a server property as Kafka's container image does
/// (`KafkaDockerWrapper`): the `KAFKA_` prefix removed, lower-cased, `_` → `.`, then `...` →
/// `-` and `..` → `_` (so `___` in the name gives `-` and `__` gives `_`). `None` for
/// variables that are not server properties.
pub fn env_var_to_property(var: &str) -> Option<String> {
    let rest = var.strip_prefix("KAFKA_")?;
    if rest.is_empty() || EXCLUDED_ENV.contains(&var) {
        return None;
    }
    Some(
        rest.to_ascii_lowercase()
            .replace('_', ".")
            .replace("...", "-")
            .replace("..", "_"),
    )
}

/// Where a property came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertySource {
    /// A line of a properties file.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// An environment variable (its name).
    Env(String),
    /// A `--config KEY=VALUE` override.
    CommandLine,
}

impl fmt::Display for PropertySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertySource::File { path, line } => write!(f, "{}:{line}", path.display()),
            PropertySource::Env(var) => write!(f, "environment variable {var}"),
            PropertySource::CommandLine => f.write_str("--config"),
        }
    }
}

/// One property and its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// Key.
    pub key: String,
    /// Value (trimmed).
    pub value: String,
    /// Origin.
    pub source: PropertySource,
}

/// The properties of a node in precedence order (later entries win): file, environment,
/// `--config`; and the cluster id from `CLUSTER_ID`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawProperties {
    /// All properties in the order they were added.
    pub entries: Vec<Property>,
    /// `CLUSTER_ID` from the environment.
    pub env_cluster_id: Option<String>,
}

impl RawProperties {
    /// Reads a properties file (`key=value` lines; `#` and `!` start comments).
    pub fn add_file(&mut self, path: &Path) -> Result<(), NodeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| NodeConfigError::ReadFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        self.add_text(&text, path)
    }

    /// Adds the lines of a properties file's text.
    pub fn add_text(&mut self, text: &str, path: &Path) -> Result<(), NodeConfigError> {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let source = PropertySource::File {
                path: path.to_path_buf(),
                line: i + 1,
            };
            let (key, value) =
                line.split_once('=')
                    .ok_or_else(|| NodeConfigError::NotKeyValue {
                        origin: source.to_string(),
                        text: line.to_string(),
                    })?;
            self.push(key, value, source);
        }
        Ok(())
    }

    /// Adds the server properties of Kafka's container image from an environment (passed in,
    /// so tests need not touch the process environment): every `KAFKA_*` variable but the
    /// JVM/logging ones, mapped by [`env_var_to_property`]; `CLUSTER_ID`; and, as the image's
    /// `configure` script, `listeners` derived from `KAFKA_ADVERTISED_LISTENERS` (hosts
    /// replaced by 0.0.0.0) when `KAFKA_LISTENERS` is not set and the node is not a
    /// controller only. A controller-only node refuses `KAFKA_ADVERTISED_LISTENERS`.
    pub fn add_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), NodeConfigError> {
        let non_empty = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let roles = non_empty("KAFKA_PROCESS_ROLES");
        let controller_only = roles == Some("controller");
        if controller_only && non_empty("KAFKA_ADVERTISED_LISTENERS").is_some() {
            return Err(NodeConfigError::ControllerAdvertisedListenersEnv);
        }
        for (var, value) in env {
            if controller_only && var == "KAFKA_ADVERTISED_LISTENERS" {
                continue;
            }
            if let Some(key) = env_var_to_property(var) {
                self.push(&key, value, PropertySource::Env(var.clone()));
            }
        }
        if non_empty("KAFKA_LISTENERS").is_none() && !controller_only {
            if let Some(adv) = non_empty("KAFKA_ADVERTISED_LISTENERS") {
                self.push(
                    "listeners",
                    &listeners_from_advertised(adv),
                    PropertySource::Env("KAFKA_ADVERTISED_LISTENERS".into()),
                );
            }
        }
        if let Some(id) = non_empty(CLUSTER_ID_ENV) {
            self.env_cluster_id = Some(id.to_string());
        }
        Ok(())
    }

    /// Adds a `--config KEY=VALUE` override.
    pub fn add_override(&mut self, kv: &str) -> Result<(), NodeConfigError> {
        let (key, value) = kv
            .split_once('=')
            .ok_or_else(|| NodeConfigError::NotKeyValue {
                origin: PropertySource::CommandLine.to_string(),
                text: kv.to_string(),
            })?;
        self.push(key, value, PropertySource::CommandLine);
        Ok(())
    }

    fn push(&mut self, key: &str, value: &str, source: PropertySource) {
        self.entries.push(Property {
            key: key.trim().to_string(),
            value: value.trim().to_string(),
            source,
        });
    }

    /// The effective value of every key (the last one added).
    pub fn effective(&self) -> BTreeMap<String, String> {
        self.entries
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect()
    }

    /// Whether `process.roles` is set to at least one role.
    pub fn is_cluster_mode(&self) -> bool {
        roles_set(self.effective().get("process.roles").map(String::as_str))
    }
}

/// The image's `sed -e 's|://[^:]*:|://0.0.0.0:|g'` on the advertised listeners.
fn listeners_from_advertised(adv: &str) -> String {
    let mut out = String::new();
    let mut rest = adv;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        let after = &rest[i + 3..];
        match after.find(':') {
            Some(j) if !after[..j].contains("://") => {
                out.push_str("0.0.0.0:");
                rest = &after[j + 1..];
            }
            _ => {
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn from_env(pairs: &[(&str, &str)]) -> Result<NodeConfig, NodeConfigError> {
        let mut raw = RawProperties::default();
        raw.add_env(&env(pairs))?;
        NodeConfig::from_properties(&raw.effective(), raw.env_cluster_id.clone())
    }

    const VOTERS: &str = "1@controller-1:9093,2@controller-2:9093,3@controller-3:9093";

    fn controller_env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("KAFKA_NODE_ID", "1"),
            ("KAFKA_PROCESS_ROLES", "controller"),
            ("KAFKA_CONTROLLER_QUORUM_VOTERS", VOTERS),
            ("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT"),
            ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER"),
            ("KAFKA_LISTENERS", "CONTROLLER://:9093"),
            ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0"),
            ("CLUSTER_ID", "4L6g3nShT-eMCtK--X86sw"),
        ]
    }

    fn broker_env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("KAFKA_NODE_ID", "4"),
            ("KAFKA_PROCESS_ROLES", "broker"),
            ("KAFKA_CONTROLLER_QUORUM_VOTERS", VOTERS),
            (
                "KAFKA_LISTENERS",
                "PLAINTEXT://:19092,PLAINTEXT_HOST://:9092",
            ),
            (
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT",
            ),
            ("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT"),
            (
                "KAFKA_ADVERTISED_LISTENERS",
                "PLAINTEXT://kafka-1:19092,PLAINTEXT_HOST://localhost:29092",
            ),
            ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER"),
            ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0"),
            ("CLUSTER_ID", "4L6g3nShT-eMCtK--X86sw"),
        ]
    }

    fn combined_env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("KAFKA_NODE_ID", "1"),
            ("KAFKA_PROCESS_ROLES", "broker,controller"),
            (
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT",
            ),
            (
                "KAFKA_CONTROLLER_QUORUM_VOTERS",
                "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093",
            ),
            (
                "KAFKA_LISTENERS",
                "PLAINTEXT://:19092,CONTROLLER://:9093,PLAINTEXT_HOST://:9092",
            ),
            ("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT"),
            (
                "KAFKA_ADVERTISED_LISTENERS",
                "PLAINTEXT://kafka-1:19092,PLAINTEXT_HOST://localhost:29092",
            ),
            ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER"),
            ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0"),
            ("CLUSTER_ID", "4L6g3nShT-eMCtK--X86sw"),
        ]
    }

    fn with(
        base: Vec<(&'static str, &'static str)>,
        key: &'static str,
        value: Option<&'static str>,
    ) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = base.into_iter().filter(|(k, _)| *k != key).collect();
        if let Some(value) = value {
            v.push((key, value));
        }
        v
    }

    #[test]
    fn env_names_map_like_kafkas_image() {
        assert_eq!(
            env_var_to_property("KAFKA_NODE_ID").as_deref(),
            Some("node.id")
        );
        assert_eq!(
            env_var_to_property("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP").as_deref(),
            Some("listener.security.protocol.map")
        );
        assert_eq!(env_var_to_property("KAFKA_A__B").as_deref(), Some("a_b"));
        assert_eq!(env_var_to_property("KAFKA_A___B").as_deref(), Some("a-b"));
        assert_eq!(env_var_to_property("KAFKA_OPTS"), None);
        assert_eq!(env_var_to_property("KAFKA_HEAP_OPTS"), None);
        assert_eq!(env_var_to_property("CLUSTER_ID"), None);
        assert_eq!(env_var_to_property("PATH"), None);
    }

    #[test]
    fn compose_controller_node() {
        let c = from_env(&controller_env()).unwrap();
        assert_eq!(c.node_id, 1);
        assert_eq!(c.process_roles, BTreeSet::from([ProcessRole::Controller]));
        assert!(c.is_controller() && !c.is_broker());
        assert_eq!(c.quorum_voters.len(), 3);
        assert_eq!(
            c.quorum_voters[2],
            QuorumVoter {
                id: 3,
                address: HostPort {
                    host: "controller-3".into(),
                    port: 9093
                }
            }
        );
        assert_eq!(
            c.listeners,
            vec![Endpoint {
                listener_name: "CONTROLLER".into(),
                host: None,
                port: 9093
            }]
        );
        assert_eq!(c.controller_listeners().len(), 1);
        assert_eq!(c.controller_listeners()[0].bind_addr(), "0.0.0.0:9093");
        // No explicit map: the controller listener is PLAINTEXT by Kafka's default rule.
        assert_eq!(
            c.listener_security_protocol_map.get("CONTROLLER"),
            Some(&SecurityProtocol::Plaintext)
        );
        assert_eq!(c.group_initial_rebalance_delay_ms, 0);
        assert_eq!(c.cluster_id.as_deref(), Some("4L6g3nShT-eMCtK--X86sw"));
        assert_eq!(c.offsets_topic_replication_factor, 3);
        assert_eq!(c.broker_session_timeout_ms, 9000);
        assert_eq!(c.broker_heartbeat_interval_ms, 2000);
        assert_eq!(c.replica_lag_time_max_ms, 30_000);
        assert!(!c.unclean_leader_election_enable);
        assert!(c.auto_leader_rebalance_enable);
    }

    #[test]
    fn compose_broker_node() {
        let c = from_env(&broker_env()).unwrap();
        assert_eq!(c.node_id, 4);
        assert!(c.is_broker() && !c.is_controller());
        assert_eq!(c.controller_listener_names, vec!["CONTROLLER".to_string()]);
        assert_eq!(c.broker_listeners().len(), 2);
        assert!(c.controller_listeners().is_empty());
        let ib = c.inter_broker_endpoint().unwrap();
        assert_eq!(ib.to_string(), "PLAINTEXT://kafka-1:19092");
        let adv: Vec<String> = c
            .advertised_broker_listeners()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            adv,
            vec![
                "PLAINTEXT://kafka-1:19092".to_string(),
                "PLAINTEXT_HOST://localhost:29092".to_string()
            ]
        );
    }

    #[test]
    fn compose_combined_node() {
        let c = from_env(&combined_env()).unwrap();
        assert!(c.is_broker() && c.is_controller());
        assert_eq!(c.controller_listeners().len(), 1);
        assert_eq!(c.broker_listeners().len(), 2);
        assert_eq!(
            c.advertised_controller_listeners()[0].to_string(),
            "CONTROLLER://:9093"
        );
        assert_eq!(c.metadata_log_dir(), Path::new("./broker-data"));
    }

    #[test]
    fn listeners_derived_from_advertised_when_unset() {
        let c = from_env(&with(broker_env(), "KAFKA_LISTENERS", None)).unwrap();
        let l: Vec<String> = c.listeners.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            l,
            vec![
                "PLAINTEXT://0.0.0.0:19092".to_string(),
                "PLAINTEXT_HOST://0.0.0.0:29092".to_string()
            ]
        );
    }

    #[test]
    fn env_overrides_file_and_config_overrides_env() {
        let mut raw = RawProperties::default();
        raw.add_text(
            "# comment\nnode.id=9\nprocess.roles=broker\nnum.partitions=3\n",
            Path::new("server.properties"),
        )
        .unwrap();
        raw.add_env(&env(&[("KAFKA_NODE_ID", "4")])).unwrap();
        assert_eq!(raw.effective()["node.id"], "4");
        raw.add_override("node.id=5").unwrap();
        assert_eq!(raw.effective()["node.id"], "5");
        assert_eq!(raw.effective()["num.partitions"], "3");
        assert!(raw.is_cluster_mode());
        assert!(matches!(
            raw.add_text("oops\n", Path::new("f")),
            Err(NodeConfigError::NotKeyValue { .. })
        ));
    }

    #[test]
    fn empty_roles_is_single_node() {
        let mut raw = RawProperties::default();
        raw.add_override("process.roles=").unwrap();
        assert!(!raw.is_cluster_mode());
        assert!(!RawProperties::default().is_cluster_mode());
    }

    #[test]
    fn bootstrap_servers_instead_of_voters() {
        let e = with(controller_env(), "KAFKA_CONTROLLER_QUORUM_VOTERS", None);
        let e = with(
            e,
            "KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS",
            Some("controller-1:9093, controller-2:9093"),
        );
        let c = from_env(&e).unwrap();
        assert!(c.quorum_voters.is_empty());
        assert_eq!(
            c.quorum_bootstrap_servers,
            vec![
                HostPort {
                    host: "controller-1".into(),
                    port: 9093
                },
                HostPort {
                    host: "controller-2".into(),
                    port: 9093
                }
            ]
        );
    }

    fn err(pairs: Vec<(&'static str, &'static str)>) -> NodeConfigError {
        match from_env(&pairs) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => {
                // Every error has a message.
                assert!(!e.to_string().is_empty());
                e
            }
        }
    }

    #[test]
    fn validation_errors() {
        use NodeConfigError as E;
        let c = controller_env;
        let b = broker_env;
        assert_eq!(err(with(c(), "KAFKA_NODE_ID", None)), E::MissingNodeId);
        assert!(matches!(
            err(with(c(), "KAFKA_NODE_ID", Some("x"))),
            E::NotANumber { .. }
        ));
        assert_eq!(
            err(with(c(), "KAFKA_PROCESS_ROLES", Some("leader"))),
            E::UnknownProcessRole("leader".into())
        );
        assert!(matches!(
            err(with(c(), "KAFKA_PROCESS_ROLES", Some("broker,broker"))),
            E::DuplicateProcessRole(_)
        ));
        assert_eq!(
            err(with(c(), "KAFKA_CONTROLLER_QUORUM_VOTERS", None)),
            E::NoQuorum
        );
        assert!(matches!(
            err(with(c(), "KAFKA_CONTROLLER_QUORUM_VOTERS", Some("1@host"))),
            E::InvalidVoter { .. }
        ));
        assert!(matches!(
            err(with(
                c(),
                "KAFKA_CONTROLLER_QUORUM_VOTERS",
                Some("x@host:1")
            )),
            E::InvalidVoter { .. }
        ));
        assert_eq!(
            err(with(
                c(),
                "KAFKA_CONTROLLER_QUORUM_VOTERS",
                Some("1@a:1,1@b:1")
            )),
            E::DuplicateVoter(1)
        );
        assert!(matches!(
            err(with(
                c(),
                "KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS",
                Some("nohost")
            )),
            E::InvalidBootstrapServer(_)
        ));
        // Controller: node id must be a voter.
        assert!(matches!(
            err(with(c(), "KAFKA_NODE_ID", Some("7"))),
            E::ControllerNotVoter { node_id: 7, .. }
        ));
        // Controller-only: only controller listeners.
        assert_eq!(
            err(with(
                c(),
                "KAFKA_LISTENERS",
                Some("CONTROLLER://:9093,PLAINTEXT://:9092")
            )),
            E::ControllerOnlyNonControllerListener("PLAINTEXT".into())
        );
        // Controller role without its controller listener.
        // The listener is no longer a controller listener, so it has no protocol.
        assert_eq!(
            err(with(c(), "KAFKA_CONTROLLER_LISTENER_NAMES", Some("OTHER"))),
            E::NoSecurityProtocol("CONTROLLER".into())
        );
        let other = with(
            combined_env(),
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            Some(
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT,OTHER:PLAINTEXT",
            ),
        );
        assert_eq!(
            err(with(
                other,
                "KAFKA_CONTROLLER_LISTENER_NAMES",
                Some("OTHER")
            )),
            E::NoControllerListener
        );
        assert_eq!(
            err(with(
                combined_env(),
                "KAFKA_CONTROLLER_LISTENER_NAMES",
                Some("CONTROLLER,MISSING")
            )),
            E::ControllerListenerNotInListeners("MISSING".into())
        );
        // Controller-only refuses KAFKA_ADVERTISED_LISTENERS (the image's rule).
        assert_eq!(
            err(with(
                c(),
                "KAFKA_ADVERTISED_LISTENERS",
                Some("CONTROLLER://c1:9093")
            )),
            E::ControllerAdvertisedListenersEnv
        );
        // Broker only: must not be a voter.
        assert!(matches!(
            err(with(b(), "KAFKA_NODE_ID", Some("2"))),
            E::BrokerIsVoter { node_id: 2, .. }
        ));
        assert_eq!(
            err(with(b(), "KAFKA_CONTROLLER_LISTENER_NAMES", None)),
            E::NoControllerListenerNames
        );
        assert_eq!(
            err(with(
                b(),
                "KAFKA_LISTENERS",
                Some("PLAINTEXT://:19092,PLAINTEXT_HOST://:9092,CONTROLLER://:9093")
            )),
            E::BrokerListensOnControllerListener("CONTROLLER".into())
        );
        assert_eq!(
            err(with(
                b(),
                "KAFKA_ADVERTISED_LISTENERS",
                Some("PLAINTEXT://kafka-1:19092,CONTROLLER://kafka-1:9093")
            )),
            E::BrokerAdvertisesControllerListener("CONTROLLER".into())
        );
        assert_eq!(
            err(with(
                b(),
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                Some("PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT")
            )),
            E::ControllerListenerUnmapped("CONTROLLER".into())
        );
        assert!(matches!(
            err(with(
                b(),
                "KAFKA_INTER_BROKER_LISTENER_NAME",
                Some("INTERNAL")
            )),
            E::InterBrokerListenerUnmapped(_)
        ));
        assert!(matches!(
            err(with(
                b(),
                "KAFKA_INTER_BROKER_LISTENER_NAME",
                Some("CONTROLLER")
            )),
            E::InterBrokerListenerNotAdvertised { .. }
        ));
        assert_eq!(
            err(with(
                b(),
                "KAFKA_ADVERTISED_LISTENERS",
                Some("PLAINTEXT://kafka-1:19092,OTHER://x:1")
            )),
            E::NoSecurityProtocol("OTHER".into())
        );
        let mapped = with(
            b(),
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            Some(
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT,OTHER:PLAINTEXT",
            ),
        );
        assert!(matches!(
            err(with(
                mapped,
                "KAFKA_ADVERTISED_LISTENERS",
                Some("PLAINTEXT://kafka-1:19092,OTHER://x:1")
            )),
            E::AdvertisedNotListener { .. }
        ));
        assert_eq!(
            err(with(
                b(),
                "KAFKA_ADVERTISED_LISTENERS",
                Some("PLAINTEXT://0.0.0.0:19092")
            )),
            E::NonRoutableAdvertisedListener("PLAINTEXT".into())
        );
        assert_eq!(
            err(with(
                b(),
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                Some("CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:SSL")
            )),
            E::UnsupportedSecurityProtocol {
                listener: "PLAINTEXT_HOST".into(),
                protocol: SecurityProtocol::Ssl
            }
        );
        assert_eq!(
            err(with(
                b(),
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                Some("CONTROLLER:PLAINTEXT,PLAINTEXT:TLS")
            )),
            E::UnknownSecurityProtocol("TLS".into())
        );
        assert!(matches!(
            err(with(
                b(),
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                Some("CONTROLLER")
            )),
            E::InvalidSecurityProtocolMap(_)
        ));
        assert!(matches!(
            err(with(
                b(),
                "KAFKA_LISTENERS",
                Some("PLAINTEXT://:1,PLAINTEXT_HOST://:1")
            )),
            E::DuplicateListenerPort { port: 1, .. }
        ));
        assert!(matches!(
            err(with(
                b(),
                "KAFKA_LISTENERS",
                Some("PLAINTEXT://:1,plaintext://:2")
            )),
            E::DuplicateListenerName { .. }
        ));
        assert!(matches!(
            err(with(b(), "KAFKA_LISTENERS", Some("PLAINTEXT:9092"))),
            E::InvalidListener { .. }
        ));
        assert!(matches!(
            err(with(b(), "KAFKA_MIN_INSYNC_REPLICAS", Some("0"))),
            E::BelowMinimum { min: 1, .. }
        ));
        assert!(matches!(
            err(with(
                b(),
                "KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE",
                Some("yes")
            )),
            E::NotABoolean { .. }
        ));
        assert_eq!(
            err(with(b(), "KAFKA_LOG_DIRS", Some("/a,/b"))),
            E::MultipleLogDirs(2)
        );
        assert_eq!(
            err(with(b(), "KAFKA_BROKER_ID", Some("5"))),
            E::NodeIdMismatch {
                node_id: 4,
                broker_id: 5
            }
        );
    }

    #[test]
    fn replication_keys_parse_in_cluster_mode() {
        let e = with(broker_env(), "KAFKA_DEFAULT_REPLICATION_FACTOR", Some("3"));
        let e = with(e, "KAFKA_MIN_INSYNC_REPLICAS", Some("2"));
        let e = with(e, "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", Some("3"));
        let e = with(
            e,
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
            Some("3"),
        );
        let e = with(e, "KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE", Some("true"));
        let e = with(e, "KAFKA_AUTO_LEADER_REBALANCE_ENABLE", Some("false"));
        let e = with(e, "KAFKA_REPLICA_LAG_TIME_MAX_MS", Some("10000"));
        let e = with(e, "KAFKA_BROKER_SESSION_TIMEOUT_MS", Some("6000"));
        let e = with(e, "KAFKA_BROKER_HEARTBEAT_INTERVAL_MS", Some("500"));
        let e = with(e, "KAFKA_LOG_DIRS", Some("/tmp/kraft-combined-logs"));
        let c = from_env(&e).unwrap();
        assert_eq!(c.default_replication_factor, 3);
        assert_eq!(c.min_insync_replicas, 2);
        assert_eq!(c.offsets_topic_replication_factor, 3);
        assert_eq!(c.transaction_state_log_replication_factor, 3);
        assert!(c.unclean_leader_election_enable);
        assert!(!c.auto_leader_rebalance_enable);
        assert_eq!(c.replica_lag_time_max_ms, 10_000);
        assert_eq!(c.broker_session_timeout_ms, 6000);
        assert_eq!(c.broker_heartbeat_interval_ms, 500);
        assert_eq!(c.log_dirs, vec![PathBuf::from("/tmp/kraft-combined-logs")]);
    }

    #[test]
    fn sed_like_listener_derivation() {
        assert_eq!(
            listeners_from_advertised("PLAINTEXT://kafka-1:19092,PLAINTEXT_HOST://localhost:29092"),
            "PLAINTEXT://0.0.0.0:19092,PLAINTEXT_HOST://0.0.0.0:29092"
        );
    }
}

//! `broker serve`: runs the embedded broker as a Kafka-protocol server until SIGTERM or
//! SIGINT. Owns the mapping of Kafka's broker properties (`server.properties`, `KAFKA_*`
//! environment variables and `--config KEY=VALUE`) onto `BrokerConfig` and `ServerConfig`,
//! and the single-node/cluster decision ([`ServeMode`]); the cluster keys are parsed by
//! [`crate::node_config`].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use broker_embedded::{Broker, BrokerConfig, KafkaServer, ServerConfig};
use clap::Args;

use crate::node_config::{
    NodeConfig, NodeConfigError, PropertySource, RawProperties, CLUSTER_KEYS,
};
use crate::storage::{self, StorageError};
use crate::{runtime, AnyResult};

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Directory for the log and metadata (created if missing); default `./broker-data`,
    /// or `log.dirs` from the properties.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port. Default `127.0.0.1:9092`, or
    /// `listeners` from the properties.
    #[arg(long)]
    listen: Option<String>,
    /// HOST:PORT clients should connect to (Kafka's advertised.listeners); default the bound address.
    #[arg(long)]
    advertised_listener: Option<String>,
    /// A Kafka-style properties file (key=value lines).
    #[arg(long)]
    config_file: Option<PathBuf>,
    /// Override one property, e.g. --config num.partitions=3 (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    configs: Vec<String>,
    /// Cluster id to format the data directory with on first start (cluster mode; wins over
    /// the `CLUSTER_ID` environment variable).
    #[arg(long)]
    cluster_id: Option<String>,
}

/// Applies Kafka broker properties to our config. Unknown keys are an error.
fn apply_broker_property(
    c: &mut BrokerConfig,
    s: &mut ServerConfig,
    key: &str,
    value: &str,
) -> Result<(), NodeConfigError> {
    let topic_key = match key {
        "log.retention.ms" => Some("retention.ms"),
        "log.retention.bytes" => Some("retention.bytes"),
        "log.segment.bytes" => Some("segment.bytes"),
        "log.roll.ms" => Some("segment.ms"),
        "log.cleanup.policy" => Some("cleanup.policy"),
        "log.index.interval.bytes" => Some("index.interval.bytes"),
        "log.index.size.max.bytes" => Some("segment.index.bytes"),
        "log.cleaner.delete.retention.ms" => Some("delete.retention.ms"),
        "log.cleaner.min.compaction.lag.ms" => Some("min.compaction.lag.ms"),
        "log.cleaner.min.cleanable.ratio" => Some("min.cleanable.dirty.ratio"),
        "log.cleaner.max.compaction.lag.ms" => Some("max.compaction.lag.ms"),
        "log.segment.delete.delay.ms" => Some("file.delete.delay.ms"),
        "log.message.timestamp.type" => Some("message.timestamp.type"),
        "message.max.bytes" => Some("max.message.bytes"),
        "log.flush.interval.messages" => Some("flush.messages"),
        "log.flush.interval.ms" => Some("flush.ms"),
        "min.insync.replicas" => Some("min.insync.replicas"),
        _ => None,
    };
    if let Some(tk) = topic_key {
        return c.log_defaults.set(tk, value).map_err(|e| invalid(key, e));
    }
    let not_a_number = || NodeConfigError::NotANumber {
        key: key.to_string(),
        value: value.to_string(),
    };
    let scaled_ms = |unit_ms: u64| -> Result<String, NodeConfigError> {
        let n: u64 = value.parse().map_err(|_| not_a_number())?;
        Ok(n.saturating_mul(unit_ms).to_string())
    };
    let set_default = |c: &mut BrokerConfig, tk: &str, v: &str| {
        c.log_defaults.set(tk, v).map_err(|e| invalid(key, e))
    };
    match key {
        "log.retention.hours" => return set_default(c, "retention.ms", &scaled_ms(3_600_000)?),
        "log.retention.minutes" => return set_default(c, "retention.ms", &scaled_ms(60_000)?),
        "log.roll.hours" => return set_default(c, "segment.ms", &scaled_ms(3_600_000)?),
        "listeners" => {
            s.listen = first_listener(value)?;
            return Ok(());
        }
        "advertised.listeners" => {
            let (host, port) = split_host_port(&first_listener(value)?)?;
            s.advertised_host = Some(host);
            s.advertised_port = Some(port);
            return Ok(());
        }
        "default.replication.factor"
        | "offsets.topic.replication.factor"
        | "transaction.state.log.replication.factor" => {
            if value.trim() != "1" {
                return Err(NodeConfigError::SingleNodeReplication {
                    key: key.to_string(),
                    value: value.to_string(),
                });
            }
            return Ok(());
        }
        k if IGNORED_KAFKA_PROPERTIES.contains(&k) => {
            tracing::warn!(
                property = k,
                "Kafka broker property has no effect here; ignored"
            );
            return Ok(());
        }
        _ => {}
    }
    let num = |v: &str| v.parse::<u64>().map_err(|_| not_a_number());
    match key {
        "node.id" | "broker.id" => c.node_id = value.parse().map_err(|_| not_a_number())?,
        "log.dirs" | "log.dir" => {
            c.data_dir = PathBuf::from(value.split(',').next().unwrap_or(value))
        }
        "num.partitions" => c.num_partitions = num(value)? as u32,
        "auto.create.topics.enable" => {
            c.auto_create_topics_enable =
                value.parse().map_err(|_| NodeConfigError::NotABoolean {
                    key: key.to_string(),
                    value: value.to_string(),
                })?
        }
        "offsets.topic.num.partitions" => c.offsets_topic_num_partitions = num(value)? as u32,
        "log.retention.check.interval.ms" => {
            c.cleaner_interval = Some(Duration::from_millis(num(value)?))
        }
        "log.cleaner.backoff.ms" => {
            c.compaction_check_interval = Duration::from_millis(num(value)?)
        }
        "log.flush.offset.checkpoint.interval.ms" => {
            c.recovery_checkpoint_interval = Duration::from_millis(num(value)?)
        }
        "socket.request.max.bytes" => s.max_frame_bytes = num(value)? as usize,
        "connections.max.idle.ms" => s.idle_timeout = Duration::from_millis(num(value)?),
        "max.connections" => s.max_connections = num(value)? as usize,
        "group.initial.rebalance.delay.ms" => {
            c.group_initial_rebalance_delay = Duration::from_millis(num(value)?)
        }
        "transaction.max.timeout.ms" => {
            c.transaction_max_timeout = Duration::from_millis(num(value)?)
        }
        "transaction.state.log.num.partitions" => {
            c.transaction_state_log_num_partitions = num(value)? as u32
        }
        "transaction.state.log.min.isr" => c.transaction_state_log_min_isr = num(value)? as u32,
        "offsets.commit.timeout.ms" => {
            c.offsets_commit_timeout = Duration::from_millis(num(value)?)
        }
        "transaction.state.log.segment.bytes" => {
            c.transaction_state_log_segment_bytes = num(value)?
        }
        "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
            c.transaction_abort_timed_out_transaction_cleanup_interval =
                Duration::from_millis(num(value)?)
        }
        other => return Err(NodeConfigError::UnknownProperty(other.to_string())),
    }
    Ok(())
}

/// Kafka broker properties that configure machinery this broker does not have (threads,
/// socket buffers, ZooKeeper/KRaft, replication tuning): accepted with a warning so a stock
/// `server.properties` starts.
const IGNORED_KAFKA_PROPERTIES: &[&str] = &[
    "num.network.threads",
    "num.io.threads",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "num.recovery.threads.per.data.dir",
    "zookeeper.connect",
    "zookeeper.connection.timeout.ms",
    "process.roles",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "controller.listener.names",
    "inter.broker.listener.name",
    "listener.security.protocol.map",
    "log.cleaner.enable",
    "delete.topic.enable",
    "num.replica.fetchers",
    "replica.lag.time.max.ms",
    "unclean.leader.election.enable",
    "broker.rack",
    "compression.type",
    "broker.session.timeout.ms",
    "broker.heartbeat.interval.ms",
    "auto.leader.rebalance.enable",
];

/// `PLAINTEXT://host:port,...` -> `host:port` of the first listener (empty host = all
/// interfaces).
fn first_listener(value: &str) -> Result<String, NodeConfigError> {
    let first = value.split(',').next().unwrap_or_default().trim();
    let addr = first.split_once("://").map_or(first, |(_, a)| a);
    let (host, port) = split_host_port(addr)?;
    let host = if host.is_empty() {
        "0.0.0.0".to_string()
    } else {
        host
    };
    Ok(format!("{host}:{port}"))
}

fn split_host_port(addr: &str) -> Result<(String, u16), NodeConfigError> {
    let bad = || NodeConfigError::NotHostPort(addr.to_string());
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    Ok((host.to_string(), port))
}

fn invalid(key: &str, e: broker_embedded::ConfigError) -> NodeConfigError {
    NodeConfigError::InvalidValue {
        key: key.to_string(),
        reason: e.to_string(),
    }
}

/// How `broker serve` runs, decided by `process.roles`.
// Built once per process: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum ServeMode {
    /// `process.roles` empty or missing: today's single-node broker (replication factor 1).
    SingleNode,
    /// `process.roles` set: a KRaft-style cluster node.
    Cluster(NodeConfig),
}

/// Everything `broker serve` needs: the broker's own settings, the (single-node) server
/// settings, and the mode.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The embedded broker's settings (log defaults, groups, transactions, data directory).
    pub broker: BrokerConfig,
    /// The Kafka server's settings. In cluster mode its `listen`/advertised address is the
    /// inter-broker listener (brokers), or the first controller listener (controllers only);
    /// [`NodeConfig`] has every listener.
    pub server: ServerConfig,
    /// Single node or cluster node.
    pub mode: ServeMode,
}

/// The single-node command-line flags of `broker serve` (they win over properties).
#[derive(Debug, Clone, Default)]
pub struct ServeFlags {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen` (single-node mode only).
    pub listen: Option<String>,
    /// `--advertised-listener` (single-node mode only).
    pub advertised_listener: Option<String>,
    /// `--cluster-id` (wins over `CLUSTER_ID`).
    pub cluster_id: Option<String>,
}

/// Keys of [`CLUSTER_KEYS`] that also set a field of [`BrokerConfig`] in cluster mode.
const CLUSTER_KEYS_FOR_BROKER: &[&str] = &[
    "node.id",
    "broker.id",
    "min.insync.replicas",
    "group.initial.rebalance.delay.ms",
    "log.dirs",
    "log.dir",
];

/// Resolves the properties and flags into [`ServeSettings`]. Properties from the environment
/// whose key this broker does not know are skipped with a warning (Kafka warns about unknown
/// configs too, and unrelated `KAFKA_*` variables are common); unknown keys from a file or
/// `--config` are an error.
pub fn resolve(raw: &RawProperties, flags: &ServeFlags) -> Result<ServeSettings, NodeConfigError> {
    let mut broker = BrokerConfig::new("./broker-data");
    let mut server = ServerConfig {
        listen: "127.0.0.1:9092".into(),
        ..ServerConfig::default()
    };
    let cluster = raw.is_cluster_mode();
    for p in &raw.entries {
        if cluster
            && CLUSTER_KEYS.contains(&p.key.as_str())
            && !CLUSTER_KEYS_FOR_BROKER.contains(&p.key.as_str())
        {
            continue;
        }
        match apply_broker_property(&mut broker, &mut server, &p.key, &p.value) {
            Err(NodeConfigError::UnknownProperty(k))
                if matches!(p.source, PropertySource::Env(_)) =>
            {
                tracing::warn!(property = %k, source = %p.source, "unknown broker property from the environment; ignored");
            }
            other => other?,
        }
    }
    if let Some(dir) = &flags.data_dir {
        broker.data_dir = dir.clone();
    }
    let mode = if cluster {
        let mut props = raw.effective();
        if let Some(dir) = &flags.data_dir {
            props.insert("log.dirs".into(), dir.display().to_string());
        }
        for (flag, set) in [
            ("--listen", flags.listen.is_some()),
            ("--advertised-listener", flags.advertised_listener.is_some()),
        ] {
            if set {
                return Err(NodeConfigError::SingleNodeFlag(flag.to_string()));
            }
        }
        let cluster_id = flags.cluster_id.clone().or(raw.env_cluster_id.clone());
        let node = NodeConfig::from_properties(&props, cluster_id)?;
        broker.data_dir = node.metadata_log_dir().to_path_buf();
        let endpoint = if node.is_broker() {
            node.broker_listeners()
                .into_iter()
                .find(|l| l.listener_name == node.inter_broker_listener_name)
                .cloned()
                .map(|l| (l, node.inter_broker_endpoint().cloned()))
        } else {
            node.controller_listeners().first().map(|l| {
                (
                    (*l).clone(),
                    node.advertised_controller_listeners()
                        .first()
                        .map(|a| (*a).clone()),
                )
            })
        };
        if let Some((bind, adv)) = endpoint {
            server.listen = bind.bind_addr();
            server.advertised_host = adv.as_ref().and_then(|a| a.host.clone());
            server.advertised_port = adv.as_ref().map(|a| a.port);
        }
        ServeMode::Cluster(node)
    } else {
        if let Some(listen) = &flags.listen {
            server.listen = listen.clone();
        }
        if let Some(adv) = &flags.advertised_listener {
            let (host, port) = split_host_port(adv)?;
            server.advertised_host = Some(host);
            server.advertised_port = Some(port);
        }
        ServeMode::SingleNode
    };
    Ok(ServeSettings {
        broker,
        server,
        mode,
    })
}

/// Why `broker serve` failed before or while serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration was rejected.
    #[error(transparent)]
    Config(#[from] NodeConfigError),
    /// The data directory's `meta.properties` could not be written or does not match.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Reads the properties of `broker serve`: the file, the process environment (Kafka's image
/// mapping) and the overrides.
fn read_properties(a: &ServeArgs) -> Result<RawProperties, NodeConfigError> {
    let mut raw = RawProperties::default();
    if let Some(file) = &a.config_file {
        raw.add_file(file)?;
    }
    let env: BTreeMap<String, String> = std::env::vars().collect();
    raw.add_env(&env)?;
    for c in &a.configs {
        raw.add_override(c)?;
    }
    Ok(raw)
}

pub(crate) fn serve(a: ServeArgs) -> AnyResult {
    let raw = read_properties(&a)?;
    let flags = ServeFlags {
        data_dir: a.data_dir.clone(),
        listen: a.listen.clone(),
        advertised_listener: a.advertised_listener.clone(),
        cluster_id: a.cluster_id.clone(),
    };
    let settings = resolve(&raw, &flags)?;
    let (config, server) = match settings.mode {
        ServeMode::SingleNode => (settings.broker, settings.server),
        ServeMode::Cluster(node) => {
            tracing::debug!(config = ?node, "cluster node configuration");
            let meta = storage::ensure_formatted(&node, node.cluster_id.as_deref())?;
            return crate::cluster_node::run(node, meta, settings.broker, settings.server);
        }
    };
    let rt = runtime()?;
    rt.block_on(async move {
        let broker = Broker::open(config)?;
        let srv = KafkaServer::start(broker.clone(), server).await?;
        println!("listening on {}", srv.local_addr());
        std::io::stdout().flush()?;
        wait_for_signal().await?;
        tracing::info!("shutting down");
        srv.shutdown().await;
        broker.shutdown()?;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

pub(crate) async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(overrides: &[&str], env: &[(&str, &str)]) -> RawProperties {
        let mut raw = RawProperties::default();
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        raw.add_env(&env).unwrap();
        for o in overrides {
            raw.add_override(o).unwrap();
        }
        raw
    }

    #[test]
    fn single_node_mode_is_unchanged() {
        let r = raw(
            &[
                "listeners=PLAINTEXT://:9095",
                "advertised.listeners=PLAINTEXT://example:9095",
                "num.partitions=3",
                "process.roles=",
            ],
            &[],
        );
        let s = resolve(&r, &ServeFlags::default()).unwrap();
        assert!(matches!(s.mode, ServeMode::SingleNode));
        assert_eq!(s.server.listen, "0.0.0.0:9095");
        assert_eq!(s.server.advertised_host.as_deref(), Some("example"));
        assert_eq!(s.broker.num_partitions, 3);
        // Replication factors other than 1 are still refused without process.roles.
        let r = raw(&["default.replication.factor=3"], &[]);
        assert_eq!(
            resolve(&r, &ServeFlags::default()).unwrap_err(),
            NodeConfigError::SingleNodeReplication {
                key: "default.replication.factor".into(),
                value: "3".into()
            }
        );
        // Unknown keys: an error from --config, a warning from the environment.
        let r = raw(&["no.such.key=1"], &[]);
        assert_eq!(
            resolve(&r, &ServeFlags::default()).unwrap_err(),
            NodeConfigError::UnknownProperty("no.such.key".into())
        );
        let r = raw(&[], &[("KAFKA_PATH", "/opt/kafka")]);
        assert!(resolve(&r, &ServeFlags::default()).is_ok());
        let flags = ServeFlags {
            listen: Some("127.0.0.1:0".into()),
            ..ServeFlags::default()
        };
        assert_eq!(resolve(&r, &flags).unwrap().server.listen, "127.0.0.1:0");
    }

    #[test]
    fn cluster_mode_from_compose_env() {
        let env = [
            ("KAFKA_NODE_ID", "4"),
            ("KAFKA_PROCESS_ROLES", "broker"),
            (
                "KAFKA_CONTROLLER_QUORUM_VOTERS",
                "1@c1:9093,2@c2:9093,3@c3:9093",
            ),
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
            ("KAFKA_DEFAULT_REPLICATION_FACTOR", "3"),
            ("KAFKA_MIN_INSYNC_REPLICAS", "2"),
            ("KAFKA_LOG_DIRS", "/tmp/kraft-logs"),
            ("CLUSTER_ID", "4L6g3nShT-eMCtK--X86sw"),
        ];
        let r = raw(&["num.partitions=6"], &env);
        let s = resolve(&r, &ServeFlags::default()).unwrap();
        let ServeMode::Cluster(node) = &s.mode else {
            panic!("expected cluster mode")
        };
        assert_eq!(node.default_replication_factor, 3);
        assert_eq!(node.cluster_id.as_deref(), Some("4L6g3nShT-eMCtK--X86sw"));
        assert_eq!(s.broker.node_id, 4);
        assert_eq!(s.broker.num_partitions, 6);
        assert_eq!(s.broker.group_initial_rebalance_delay, Duration::ZERO);
        assert_eq!(s.broker.log_defaults.min_insync_replicas, 2);
        assert_eq!(s.broker.data_dir, PathBuf::from("/tmp/kraft-logs"));
        assert_eq!(s.server.listen, "0.0.0.0:19092");
        assert_eq!(s.server.advertised_host.as_deref(), Some("kafka-1"));
        // --cluster-id wins over CLUSTER_ID; --data-dir over log.dirs; --listen is refused.
        let flags = ServeFlags {
            cluster_id: Some("other".into()),
            data_dir: Some("/d".into()),
            ..ServeFlags::default()
        };
        let s = resolve(&r, &flags).unwrap();
        let ServeMode::Cluster(node) = &s.mode else {
            panic!("expected cluster mode")
        };
        assert_eq!(node.cluster_id.as_deref(), Some("other"));
        assert_eq!(node.log_dirs, vec![PathBuf::from("/d")]);
        let flags = ServeFlags {
            listen: Some("127.0.0.1:0".into()),
            ..ServeFlags::default()
        };
        assert_eq!(
            resolve(&r, &flags).unwrap_err(),
            NodeConfigError::SingleNodeFlag("--listen".into())
        );
    }
}

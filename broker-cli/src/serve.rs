//! `broker serve`: runs the embedded broker as a Kafka-protocol server until SIGTERM or
//! SIGINT. Owns the mapping of Kafka's broker properties (`server.properties` and
//! `--config KEY=VALUE`) onto `BrokerConfig` and `ServerConfig`, and listener parsing.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use broker_embedded::{Broker, BrokerConfig, KafkaServer, ServerConfig};
use clap::Args;

use crate::{runtime, split_kv, AnyResult};

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
}

/// Applies Kafka broker properties to our config. Unknown keys are an error.
fn apply_broker_property(
    c: &mut BrokerConfig,
    s: &mut ServerConfig,
    key: &str,
    value: &str,
) -> AnyResult {
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
        c.log_defaults.set(tk, value)?;
        return Ok(());
    }
    let scaled_ms = |unit_ms: u64| -> AnyResult<String> {
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{key}: `{value}` is not a number"))?;
        Ok(n.saturating_mul(unit_ms).to_string())
    };
    match key {
        "log.retention.hours" => {
            return Ok(c.log_defaults.set("retention.ms", &scaled_ms(3_600_000)?)?)
        }
        "log.retention.minutes" => {
            return Ok(c.log_defaults.set("retention.ms", &scaled_ms(60_000)?)?)
        }
        "log.roll.hours" => return Ok(c.log_defaults.set("segment.ms", &scaled_ms(3_600_000)?)?),
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
                return Err(format!(
                    "{key}={value}: this broker runs one node; only 1 is possible"
                )
                .into());
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
    let num = |v: &str| {
        v.parse::<u64>()
            .map_err(|_| format!("{key}: `{v}` is not a number"))
    };
    match key {
        "node.id" | "broker.id" => {
            c.node_id = value
                .parse()
                .map_err(|_| format!("{key}: `{value}` is not a number"))?
        }
        "log.dirs" | "log.dir" => {
            c.data_dir = PathBuf::from(value.split(',').next().unwrap_or(value))
        }
        "num.partitions" => c.num_partitions = num(value)? as u32,
        "auto.create.topics.enable" => {
            c.auto_create_topics_enable = value
                .parse()
                .map_err(|_| format!("{key}: expected true or false"))?
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
        "transaction.state.log.segment.bytes" => {
            c.transaction_state_log_segment_bytes = num(value)?
        }
        "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
            c.transaction_abort_timed_out_transaction_cleanup_interval =
                Duration::from_millis(num(value)?)
        }
        other => return Err(format!("unknown broker property `{other}`").into()),
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
    "transaction.state.log.min.isr",
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
];

/// `PLAINTEXT://host:port,...` -> `host:port` of the first listener (empty host = all
/// interfaces).
fn first_listener(value: &str) -> AnyResult<String> {
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

fn split_host_port(addr: &str) -> AnyResult<(String, u16)> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("`{addr}` is not HOST:PORT"))?;
    let port = port.parse().map_err(|_| format!("bad port in `{addr}`"))?;
    Ok((host.to_string(), port))
}

pub(crate) fn serve(a: ServeArgs) -> AnyResult {
    let mut config = BrokerConfig::new("./broker-data");
    let mut server = ServerConfig {
        listen: "127.0.0.1:9092".into(),
        ..ServerConfig::default()
    };
    let mut props = Vec::new();
    if let Some(file) = &a.config_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            props.push(split_kv(line)?);
        }
    }
    for c in &a.configs {
        props.push(split_kv(c)?);
    }
    for (k, v) in &props {
        apply_broker_property(&mut config, &mut server, k, v)?;
    }
    // Command-line flags win over properties.
    if let Some(dir) = &a.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(listen) = &a.listen {
        server.listen = listen.clone();
    }
    if let Some(adv) = &a.advertised_listener {
        let (host, port) = split_host_port(adv)?;
        server.advertised_host = Some(host);
        server.advertised_port = Some(port);
    }
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

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

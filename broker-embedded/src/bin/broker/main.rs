//! `broker`: run the embedded broker as a Kafka-protocol server, and talk to any Kafka-protocol
//! cluster (this one, Apache Kafka, Redpanda) from the command line, in the spirit of Kafka's
//! own tools. Client subcommands use librdkafka, configured with the Java client's murmur2
//! partitioner so keys land where Java producers and Kafka Streams put them.

mod huge_alloc;

#[global_allocator]
static ALLOC: huge_alloc::LazyHugeAlloc = huge_alloc::LazyHugeAlloc;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use broker_embedded::{Broker, BrokerConfig, KafkaServer, ServerConfig};
use clap::{Args, Parser, Subcommand};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

#[derive(Parser)]
#[command(
    name = "broker",
    version,
    about = "Kafka-compatible broker and command-line client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker that serves the Kafka protocol.
    Serve(ServeArgs),
    /// Create, list, describe, delete or alter topics.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Produce lines from stdin, one record per line.
    Produce(ProduceArgs),
    /// Consume records and print them, one per line.
    Consume(ConsumeArgs),
    /// Print the earliest and latest offset of every partition of a topic.
    Offsets(OffsetsArgs),
    /// List, describe (members, committed offsets, lag) or delete consumer groups.
    Groups {
        #[command(subcommand)]
        action: GroupsAction,
    },
}

#[derive(Subcommand)]
enum GroupsAction {
    /// List consumer groups with their state.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a group's state, members and, per partition, committed offset, log end and lag.
    Describe {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        group: String,
    },
    /// Delete a group without active members, and its committed offsets.
    Delete {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        group: String,
    },
}

#[derive(Args)]
struct ServeArgs {
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

#[derive(Args, Clone)]
struct Conn {
    /// HOST:PORT of a broker to bootstrap from.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap_server: String,
    /// Request timeout in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Extra librdkafka client property, e.g. -X fetch.wait.max.ms=100 (repeatable).
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
}

#[derive(Subcommand)]
enum TopicsAction {
    /// Create a topic.
    Create {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication_factor: i32,
        /// Topic config, e.g. --config cleanup.policy=compact (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topic names.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Describe topics (all, or one with --topic): partitions, leaders and configs.
    Describe {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        topic: Option<String>,
    },
    /// Delete a topic.
    Delete {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        topic: String,
    },
    /// Change a topic's configs or grow its partition count.
    Alter {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        topic: String,
        /// New total partition count.
        #[arg(long)]
        partitions: Option<usize>,
        /// Set a config (repeatable). Replaces the topic's overrides, as Kafka's AlterConfigs.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
}

#[derive(Args)]
struct ProduceArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(long)]
    topic: String,
    /// Split each line at the first occurrence of this string into key and value.
    #[arg(long)]
    key_separator: Option<String>,
    /// Acknowledgements: 0, 1 or all (-1).
    #[arg(long, default_value = "all")]
    acks: String,
    /// Send every record to this partition instead of partitioning by key.
    #[arg(long)]
    partition: Option<i32>,
}

#[derive(Args)]
struct ConsumeArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(long)]
    topic: String,
    /// Start at the earliest offset (default: only new records).
    #[arg(long)]
    from_beginning: bool,
    /// Read only this partition.
    #[arg(long, conflicts_with = "group")]
    partition: Option<i32>,
    /// Consume as a member of this consumer group: partitions are shared with the group's
    /// other members and positions are committed (resuming where the group left off).
    #[arg(long)]
    group: Option<String>,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition")]
    offset: Option<i64>,
    /// Exit after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Exit after this long without a record (default: wait forever).
    #[arg(long)]
    idle_timeout_ms: Option<u64>,
    /// Print the key before the value.
    #[arg(long)]
    print_key: bool,
    /// Print the partition.
    #[arg(long)]
    print_partition: bool,
    /// Print the offset.
    #[arg(long)]
    print_offset: bool,
    /// Print the timestamp.
    #[arg(long)]
    print_timestamp: bool,
    /// Separator between printed fields.
    #[arg(long, default_value = "\t")]
    separator: String,
}

#[derive(Args)]
struct OffsetsArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(long)]
    topic: String,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => serve(a),
        Command::Topics { action } => topics(action),
        Command::Produce(a) => produce(a),
        Command::Consume(a) => consume(a),
        Command::Offsets(a) => offsets(a),
        Command::Groups { action } => groups(action),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type AnyResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn split_kv(s: &str) -> AnyResult<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

fn runtime() -> AnyResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
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
        "log.flush.offset.checkpoint.interval.ms" => {
            c.recovery_checkpoint_interval = Duration::from_millis(num(value)?)
        }
        "socket.request.max.bytes" => s.max_frame_bytes = num(value)? as usize,
        "connections.max.idle.ms" => s.idle_timeout = Duration::from_millis(num(value)?),
        "group.initial.rebalance.delay.ms" => {
            s.group_initial_rebalance_delay = Duration::from_millis(num(value)?)
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
    "log.segment.delete.delay.ms",
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

fn serve(a: ServeArgs) -> AnyResult {
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

fn client_config(conn: &Conn) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &conn.bootstrap_server)
        .set("socket.timeout.ms", conn.timeout_ms.to_string())
        .set("message.timeout.ms", conn.timeout_ms.to_string())
        .set("partitioner", "murmur2_random");
    for p in &conn.properties {
        if let Some((k, v)) = p.split_once('=') {
            c.set(k.trim(), v.trim());
        }
    }
    c
}

fn admin(conn: &Conn) -> AnyResult<AdminClient<DefaultClientContext>> {
    Ok(client_config(conn).create()?)
}

fn opts(conn: &Conn) -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_millis(conn.timeout_ms)))
}

fn topics(action: TopicsAction) -> AnyResult {
    let rt = runtime()?;
    match action {
        TopicsAction::Create {
            conn,
            topic,
            partitions,
            replication_factor,
            configs,
        } => {
            let client = admin(&conn)?;
            let kvs: Vec<(String, String)> = configs
                .iter()
                .map(|c| split_kv(c))
                .collect::<Result<_, _>>()?;
            let mut nt = NewTopic::new(
                &topic,
                partitions,
                TopicReplication::Fixed(replication_factor),
            );
            for (k, v) in &kvs {
                nt = nt.set(k, v);
            }
            for r in rt.block_on(client.create_topics([&nt], &opts(&conn)))? {
                r.map_err(|(t, e)| format!("creating topic `{t}` failed: {e}"))?;
            }
            println!("Created topic {topic}.");
        }
        TopicsAction::List { conn } => {
            let client = admin(&conn)?;
            let md = client
                .inner()
                .fetch_metadata(None, Duration::from_millis(conn.timeout_ms))?;
            let mut names: Vec<&str> = md.topics().iter().map(|t| t.name()).collect();
            names.sort_unstable();
            for n in names {
                println!("{n}");
            }
        }
        TopicsAction::Describe { conn, topic } => {
            let client = admin(&conn)?;
            let md = client
                .inner()
                .fetch_metadata(topic.as_deref(), Duration::from_millis(conn.timeout_ms))?;
            for t in md.topics() {
                if let Some(err) = t.error() {
                    return Err(format!("topic `{}`: {err:?}", t.name()).into());
                }
                let spec = ResourceSpecifier::Topic(t.name());
                let mut config_text = String::new();
                for r in rt.block_on(client.describe_configs([&spec], &opts(&conn)))? {
                    let r = r?;
                    let mut entries: Vec<_> = r.entries.iter().filter(|e| !e.is_default).collect();
                    entries.sort_by(|a, b| a.name.cmp(&b.name));
                    config_text = entries
                        .iter()
                        .map(|e| format!("{}={}", e.name, e.value.as_deref().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",");
                }
                println!(
                    "Topic: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
                    t.name(),
                    t.partitions().len(),
                    t.partitions().first().map_or(0, |p| p.replicas().len()),
                    config_text
                );
                for p in t.partitions() {
                    println!(
                        "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {:?}\tIsr: {:?}",
                        t.name(),
                        p.id(),
                        p.leader(),
                        p.replicas(),
                        p.isr()
                    );
                }
            }
        }
        TopicsAction::Delete { conn, topic } => {
            let client = admin(&conn)?;
            for r in rt.block_on(client.delete_topics(&[&topic], &opts(&conn)))? {
                r.map_err(|(t, e)| format!("deleting topic `{t}` failed: {e}"))?;
            }
            println!("Deleted topic {topic}.");
        }
        TopicsAction::Alter {
            conn,
            topic,
            partitions,
            configs,
        } => {
            let client = admin(&conn)?;
            if partitions.is_none() && configs.is_empty() {
                return Err("nothing to alter: give --partitions and/or --config".into());
            }
            if let Some(n) = partitions {
                let np = NewPartitions::new(&topic, n);
                for r in rt.block_on(client.create_partitions([&np], &opts(&conn)))? {
                    r.map_err(|(t, e)| format!("growing `{t}` failed: {e}"))?;
                }
            }
            if !configs.is_empty() {
                let kvs: Vec<(String, String)> = configs
                    .iter()
                    .map(|c| split_kv(c))
                    .collect::<Result<_, _>>()?;
                let mut ac = AlterConfig::new(ResourceSpecifier::Topic(&topic));
                for (k, v) in &kvs {
                    ac = ac.set(k, v);
                }
                for r in rt.block_on(client.alter_configs([&ac], &opts(&conn)))? {
                    r.map_err(|(res, e)| format!("altering {res:?} failed: {e}"))?;
                }
            }
            println!("Altered topic {topic}.");
        }
    }
    Ok(())
}

fn produce(a: ProduceArgs) -> AnyResult {
    let acks = match a.acks.as_str() {
        "all" | "-1" => "all",
        "0" => "0",
        "1" => "1",
        other => return Err(format!("--acks `{other}`: expected 0, 1 or all").into()),
    };
    let producer: ThreadedProducer<DefaultProducerContext> = client_config(&a.conn)
        .set("acks", acks)
        .set("linger.ms", "5")
        .create()?;
    let stdin = std::io::stdin();
    let mut count = 0u64;
    for line in stdin.lock().lines() {
        let line = line?;
        let (key, value) = match &a.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.to_string()), v.to_string()),
                None => (None, line.clone()),
            },
            None => (None, line.clone()),
        };
        let mut record = BaseRecord::<String, String>::to(&a.topic).payload(&value);
        if let Some(k) = &key {
            record = record.key(k);
        }
        if let Some(p) = a.partition {
            record = record.partition(p);
        }
        let mut pending = record;
        loop {
            match producer.send(pending) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    producer.poll(Duration::from_millis(50));
                    pending = r;
                }
                Err((e, _)) => return Err(format!("producing to `{}` failed: {e}", a.topic).into()),
            }
        }
        count += 1;
    }
    producer.flush(Duration::from_millis(a.conn.timeout_ms.max(1000)))?;
    if producer.in_flight_count() > 0 {
        return Err(format!(
            "{} records were not acknowledged in time",
            producer.in_flight_count()
        )
        .into());
    }
    eprintln!("produced {count} records to {}", a.topic);
    Ok(())
}

fn groups(action: GroupsAction) -> AnyResult {
    match action {
        GroupsAction::List { conn } => {
            let consumer: BaseConsumer = client_config(&conn).create()?;
            let list = consumer.fetch_group_list(None, Duration::from_millis(conn.timeout_ms))?;
            let mut rows: Vec<(String, String)> = list
                .groups()
                .iter()
                .map(|g| (g.name().to_string(), g.state().to_string()))
                .collect();
            rows.sort();
            println!("group\tstate");
            for (name, state) in rows {
                println!("{name}\t{state}");
            }
        }
        GroupsAction::Describe { conn, group } => {
            let timeout = Duration::from_millis(conn.timeout_ms);
            let consumer: BaseConsumer = client_config(&conn).set("group.id", &group).create()?;
            let list = consumer.fetch_group_list(Some(&group), timeout)?;
            let info = list
                .groups()
                .first()
                .ok_or_else(|| format!("group `{group}` not found"))?;
            println!(
                "Group: {}\tState: {}\tProtocol: {}\tMembers: {}",
                group,
                info.state(),
                info.protocol(),
                info.members().len()
            );
            for m in info.members() {
                println!(
                    "\tMember: {}\tClient: {}\tHost: {}",
                    m.id(),
                    m.client_id(),
                    m.client_host()
                );
            }
            // Committed offsets of every partition of every topic the cluster has.
            let md = consumer.fetch_metadata(None, timeout)?;
            let mut tpl = TopicPartitionList::new();
            for t in md.topics().iter().filter(|t| !t.name().starts_with("__")) {
                for p in t.partitions() {
                    tpl.add_partition(t.name(), p.id());
                }
            }
            let committed = consumer.committed_offsets(tpl, timeout)?;
            println!("topic\tpartition\tcommitted\tlog-end\tlag");
            for e in committed.elements() {
                let Offset::Offset(c) = e.offset() else {
                    continue;
                };
                let (_, hi) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout)?;
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    e.topic(),
                    e.partition(),
                    c,
                    hi,
                    (hi - c).max(0)
                );
            }
        }
        GroupsAction::Delete { conn, group } => {
            let rt = runtime()?;
            let client = admin(&conn)?;
            for r in rt.block_on(client.delete_groups(&[group.as_str()], &opts(&conn)))? {
                r.map_err(|(g, e)| format!("deleting group `{g}` failed: {e}"))?;
            }
            println!("Deleted group {group}.");
        }
    }
    Ok(())
}

/// The partition ids of a topic, with a clear error if it does not exist.
fn partition_ids(consumer: &BaseConsumer, topic: &str, timeout: Duration) -> AnyResult<Vec<i32>> {
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| format!("topic `{topic}` not found"))?;
    if let Some(err) = t.error() {
        return Err(format!("topic `{topic}`: {err:?}").into());
    }
    Ok(t.partitions().iter().map(|p| p.id()).collect())
}

fn consume(a: ConsumeArgs) -> AnyResult {
    if let Some(group) = &a.group {
        let consumer: BaseConsumer = client_config(&a.conn)
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set(
                "auto.offset.reset",
                if a.from_beginning {
                    "earliest"
                } else {
                    "latest"
                },
            )
            .create()?;
        consumer.subscribe(&[a.topic.as_str()])?;
        let seen = print_records(&consumer, &a)?;
        consumer
            .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
            .or_else(|e| {
                // Nothing consumed yet means nothing to commit.
                if seen == 0 {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        eprintln!("processed {seen} records");
        return Ok(());
    }
    let consumer: BaseConsumer = client_config(&a.conn)
        .set("group.id", "broker-cli-console")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?;
    let partitions = partition_ids(
        &consumer,
        &a.topic,
        Duration::from_millis(a.conn.timeout_ms),
    )?;
    let mut tpl = TopicPartitionList::new();
    let start = match (a.offset, a.from_beginning) {
        (Some(o), _) => Offset::Offset(o),
        (None, true) => Offset::Beginning,
        (None, false) => Offset::End,
    };
    for p in partitions {
        if a.partition.is_none_or(|only| only == p) {
            tpl.add_partition_offset(&a.topic, p, start)?;
        }
    }
    if tpl.count() == 0 {
        return Err(format!("topic `{}` has no partition {:?}", a.topic, a.partition).into());
    }
    consumer.assign(&tpl)?;
    let seen = print_records(&consumer, &a)?;
    eprintln!("processed {seen} records");
    Ok(())
}

/// Polls and prints records until --max-messages or --idle-timeout-ms; returns the count.
fn print_records(consumer: &BaseConsumer, a: &ConsumeArgs) -> AnyResult<u64> {
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    let mut idle = Duration::ZERO;
    let tick = Duration::from_millis(100);
    while a.max_messages.is_none_or(|m| seen < m) {
        match consumer.poll(tick) {
            None => {
                idle += tick;
                if a.idle_timeout_ms
                    .is_some_and(|t| idle.as_millis() as u64 >= t)
                {
                    break;
                }
            }
            Some(Err(e)) => return Err(format!("consuming `{}` failed: {e}", a.topic).into()),
            Some(Ok(m)) => {
                idle = Duration::ZERO;
                let mut fields = Vec::new();
                if a.print_timestamp {
                    fields.push(m.timestamp().to_millis().unwrap_or(-1).to_string());
                }
                if a.print_partition {
                    fields.push(m.partition().to_string());
                }
                if a.print_offset {
                    fields.push(m.offset().to_string());
                }
                if a.print_key {
                    fields.push(
                        m.key()
                            .map_or("null".into(), |k| String::from_utf8_lossy(k).into_owned()),
                    );
                }
                fields.push(
                    m.payload()
                        .map_or("null".into(), |v| String::from_utf8_lossy(v).into_owned()),
                );
                writeln!(out, "{}", fields.join(&a.separator))?;
                seen += 1;
            }
        }
    }
    out.flush()?;
    Ok(seen)
}

fn offsets(a: OffsetsArgs) -> AnyResult {
    let consumer: BaseConsumer = client_config(&a.conn)
        .set("group.id", "broker-cli-offsets")
        .create()?;
    let timeout = Duration::from_millis(a.conn.timeout_ms);
    println!("topic\tpartition\tearliest\tlatest");
    for p in partition_ids(&consumer, &a.topic, timeout)? {
        let (lo, hi) = consumer.fetch_watermarks(&a.topic, p, timeout)?;
        println!("{}\t{}\t{}\t{}", a.topic, p, lo, hi);
    }
    Ok(())
}

//! `broker topics create|list|describe|delete|alter|elect-leaders`: topic administration
//! through librdkafka's admin client and metadata requests; leader elections (which
//! librdkafka's admin client does not offer) as ElectLeaders over the Kafka protocol.

use std::time::Duration;

use clap::Subcommand;
use rdkafka::admin::{AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication};

use crate::client::{admin, opts, Conn};
use crate::{runtime, split_kv, AnyResult};

#[derive(Subcommand)]
pub(crate) enum TopicsAction {
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
    /// Elect leaders of a topic's partitions (ElectLeaders, cluster mode only): the preferred
    /// replica, or (unclean) any live replica of a leaderless partition.
    ElectLeaders {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        topic: String,
        /// One partition (default: every partition of the topic).
        #[arg(long)]
        partition: Option<i32>,
        /// `preferred` or `unclean`.
        #[arg(long, value_enum)]
        election_type: ElectionType,
    },
}

/// The election of `topics elect-leaders`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ElectionType {
    /// The first replica, when it is alive and in the ISR.
    Preferred,
    /// Any live replica, in or out of the ISR, for partitions without a leader.
    Unclean,
}

pub(crate) fn topics(action: TopicsAction) -> AnyResult {
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
        TopicsAction::ElectLeaders {
            conn,
            topic,
            partition,
            election_type,
        } => rt.block_on(elect_leaders(&conn, &topic, partition, election_type))?,
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

/// ElectLeaders for `topic` (one partition, or all of them from Metadata) sent to the
/// bootstrap broker; prints each partition's outcome and fails if any election failed
/// (ELECTION_NOT_NEEDED is not a failure, as in Kafka's `kafka-leader-election.sh`).
async fn elect_leaders(
    conn: &Conn,
    topic: &str,
    partition: Option<i32>,
    election_type: ElectionType,
) -> AnyResult {
    use broker_embedded::client::KafkaConnection;
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{ElectLeadersRequest, MetadataRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::ResponseError;

    let timeout = Duration::from_millis(conn.timeout_ms);
    let address = conn
        .bootstrap_server
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut c = KafkaConnection::connect(&address, "broker-cli", timeout).await?;
    let name = TopicName(StrBytes::from_string(topic.to_string()));
    let partitions = match partition {
        Some(p) => vec![p],
        None => {
            let request = MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(name.clone()))
                ]))
                .with_allow_auto_topic_creation(false);
            let (_, md) = c.send(request, 1, 12, timeout).await?;
            let t = md
                .topics
                .iter()
                .find(|t| t.name.as_ref() == Some(&name))
                .ok_or_else(|| format!("topic `{topic}` not in the metadata"))?;
            if t.error_code != 0 {
                return Err(format!("topic `{topic}`: {}", error_name(t.error_code)).into());
            }
            let mut ids: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
            ids.sort_unstable();
            ids
        }
    };
    let request = ElectLeadersRequest::default()
        .with_election_type(match election_type {
            ElectionType::Preferred => 0,
            ElectionType::Unclean => 1,
        })
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic(name)
            .with_partitions(partitions)]))
        .with_timeout_ms(i32::try_from(conn.timeout_ms).unwrap_or(i32::MAX));
    let (version, response) = c.send(request, 0, 2, timeout).await?;
    if version >= 1 && response.error_code != 0 {
        return Err(format!("ElectLeaders failed: {}", error_name(response.error_code)).into());
    }
    let not_needed = ResponseError::ElectionNotNeeded.code();
    let mut failed = 0usize;
    for t in &response.replica_election_results {
        for p in &t.partition_result {
            let tp = format!("{}-{}", t.topic.0, p.partition_id);
            match p.error_code {
                0 => println!("{tp}: leader elected"),
                c if c == not_needed => println!("{tp}: valid replica already elected"),
                c => {
                    failed += 1;
                    println!(
                        "{tp}: election failed: {}{}",
                        error_name(c),
                        p.error_message
                            .as_ref()
                            .map(|m| format!(" ({m})"))
                            .unwrap_or_default()
                    );
                }
            }
        }
    }
    if failed > 0 {
        return Err(format!("{failed} election(s) failed").into());
    }
    Ok(())
}

fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?} (error code {code})"),
        None => format!("error code {code}"),
    }
}

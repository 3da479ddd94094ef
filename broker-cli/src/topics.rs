//! `broker topics create|list|describe|delete|alter`: topic administration through
//! librdkafka's admin client and metadata requests.

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

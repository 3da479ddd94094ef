//! What every client subcommand shares: the connection options (`--bootstrap-server`,
//! `--timeout-ms`, `-X KEY=VALUE`) and the librdkafka client configuration built from them
//! (always with the Java client's `murmur2_random` partitioner), the admin client, and
//! topic metadata look-ups.

use std::time::Duration;

use clap::Args;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::AnyResult;

#[derive(Args, Clone)]
pub(crate) struct Conn {
    /// HOST:PORT of a broker to bootstrap from.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub(crate) bootstrap_server: String,
    /// Request timeout in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) timeout_ms: u64,
    /// Extra librdkafka client property, e.g. -X fetch.wait.max.ms=100 (repeatable).
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE")]
    pub(crate) properties: Vec<String>,
}

pub(crate) fn client_config(conn: &Conn) -> ClientConfig {
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

pub(crate) fn admin(conn: &Conn) -> AnyResult<AdminClient<DefaultClientContext>> {
    Ok(client_config(conn).create()?)
}

pub(crate) fn opts(conn: &Conn) -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_millis(conn.timeout_ms)))
}

/// The partition ids of a topic, with a clear error if it does not exist.
pub(crate) fn partition_ids(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> AnyResult<Vec<i32>> {
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

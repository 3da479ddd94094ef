//! `broker offsets`: prints the earliest and latest offset of every partition of a topic.

use std::time::Duration;

use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::client::{client_config, partition_ids, Conn};
use crate::AnyResult;

#[derive(Args)]
pub(crate) struct OffsetsArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(long)]
    topic: String,
}

pub(crate) fn offsets(a: OffsetsArgs) -> AnyResult {
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

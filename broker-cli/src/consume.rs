//! `broker consume`: reads records from chosen partitions and offsets, or as a member of a
//! consumer group, and prints them one per line with the requested fields.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{client_config, partition_ids, Conn};
use crate::AnyResult;

#[derive(Args)]
pub(crate) struct ConsumeArgs {
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

pub(crate) fn consume(a: ConsumeArgs) -> AnyResult {
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

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
    /// How to print keys: `string` (UTF-8, the default), `long`, `integer`, `bytes` (hex),
    /// or the Java class name of Kafka's deserializer (`...LongDeserializer`), as Kafka's
    /// console consumer takes it.
    #[arg(long, default_value = "string", value_parser = Deserializer::parse)]
    key_deserializer: Deserializer,
    /// How to print values (see --key-deserializer); `long` shows the counts of Kafka
    /// Streams' `count()` (8-byte big-endian).
    #[arg(long, default_value = "string", value_parser = Deserializer::parse)]
    value_deserializer: Deserializer,
    /// `read_uncommitted` (the default, as Kafka's console consumer) prints every record;
    /// `read_committed` stops at the last stable offset and skips records of aborted
    /// transactions.
    #[arg(long, default_value = "read_uncommitted", value_parser = ["read_committed", "read_uncommitted"])]
    isolation_level: String,
}

/// How a key or value is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deserializer {
    /// UTF-8 text (invalid bytes replaced).
    String,
    /// Kafka's `LongDeserializer`: exactly 8 bytes, big-endian.
    Long,
    /// Kafka's `IntegerDeserializer`: exactly 4 bytes, big-endian.
    Integer,
    /// Lower-case hex.
    Bytes,
}

impl Deserializer {
    fn parse(v: &str) -> Result<Self, String> {
        let short = v.rsplit('.').next().unwrap_or(v);
        match short {
            "string" | "StringDeserializer" => Ok(Deserializer::String),
            "long" | "LongDeserializer" => Ok(Deserializer::Long),
            "integer" | "int" | "IntegerDeserializer" => Ok(Deserializer::Integer),
            "bytes" | "hex" | "ByteArrayDeserializer" | "BytesDeserializer" => {
                Ok(Deserializer::Bytes)
            }
            _ => Err(format!(
                "unknown deserializer `{v}` (string, long, integer, bytes, or Kafka's class name)"
            )),
        }
    }

    /// The printed form of `data` (`null` for a null key or value). Bytes of the wrong
    /// length for a number are an error naming the length, not a wrong number.
    pub(crate) fn show(self, data: Option<&[u8]>) -> Result<String, String> {
        let Some(d) = data else {
            return Ok("null".into());
        };
        match self {
            Deserializer::String => Ok(String::from_utf8_lossy(d).into_owned()),
            Deserializer::Long => <[u8; 8]>::try_from(d)
                .map(|b| i64::from_be_bytes(b).to_string())
                .map_err(|_| format!("{} bytes cannot be a long (8 bytes)", d.len())),
            Deserializer::Integer => <[u8; 4]>::try_from(d)
                .map(|b| i32::from_be_bytes(b).to_string())
                .map_err(|_| format!("{} bytes cannot be an integer (4 bytes)", d.len())),
            Deserializer::Bytes => Ok(d.iter().map(|b| format!("{b:02x}")).collect()),
        }
    }
}

pub(crate) fn consume(a: ConsumeArgs) -> AnyResult {
    if let Some(group) = &a.group {
        let consumer: BaseConsumer = client_config(&a.conn)
            .set("isolation.level", &a.isolation_level)
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
        .set("isolation.level", &a.isolation_level)
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
                let at = || format!("{}-{} offset {}", a.topic, m.partition(), m.offset());
                if a.print_key {
                    fields.push(
                        a.key_deserializer
                            .show(m.key())
                            .map_err(|e| format!("key at {}: {e}", at()))?,
                    );
                }
                fields.push(
                    a.value_deserializer
                        .show(m.payload())
                        .map_err(|e| format!("value at {}: {e}", at()))?,
                );
                writeln!(out, "{}", fields.join(&a.separator))?;
                seen += 1;
            }
        }
    }
    out.flush()?;
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::Deserializer;

    #[test]
    fn deserializers_print_kafka_numbers_and_refuse_wrong_lengths() {
        let long =
            Deserializer::parse("org.apache.kafka.common.serialization.LongDeserializer").unwrap();
        assert_eq!(long, Deserializer::Long);
        assert_eq!(long.show(Some(&42i64.to_be_bytes())).unwrap(), "42");
        assert_eq!(long.show(Some(&(-7i64).to_be_bytes())).unwrap(), "-7");
        assert!(long.show(Some(b"abc")).unwrap_err().contains("3 bytes"));
        assert_eq!(long.show(None).unwrap(), "null");
        let int = Deserializer::parse("integer").unwrap();
        assert_eq!(int.show(Some(&9i32.to_be_bytes())).unwrap(), "9");
        assert_eq!(
            Deserializer::parse("bytes")
                .unwrap()
                .show(Some(&[0, 255]))
                .unwrap(),
            "00ff"
        );
        assert_eq!(
            Deserializer::parse("string")
                .unwrap()
                .show(Some(b"word"))
                .unwrap(),
            "word"
        );
        assert!(Deserializer::parse("avro").is_err());
    }
}

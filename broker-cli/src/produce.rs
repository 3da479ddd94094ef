//! `broker produce`: reads lines from stdin and produces one record per line (optionally
//! split into key and value), retrying while librdkafka's queue is full.

use std::io::BufRead;
use std::time::Duration;

use clap::Args;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::client::{client_config, Conn};
use crate::AnyResult;

#[derive(Args)]
pub(crate) struct ProduceArgs {
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

pub(crate) fn produce(a: ProduceArgs) -> AnyResult {
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

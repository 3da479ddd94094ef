//! The restore consumer of the wire backend: reads one changelog partition at a time with a
//! librdkafka consumer in assign mode (`read_committed`, partition-EOF events on, so "no
//! more records" is told apart from "not fetched yet").

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};
use state_store::{ChangelogRecord, TopicPartition};

use super::{consumed_record, rdkafka_error, ClientKind, WireSettings};
use crate::client::ChangelogSource;
use crate::error::{ClusterErrorKind, Result, StreamsError};
use crate::record::ConsumedRecord;

/// Records returned per read at most (the caller reads again from the next offset).
const MAX_READ: usize = 10_000;

/// The restore consumer's context: librdkafka also reports every partition-EOF event
/// (which the reader asks for) to the client's error callback; those are expected, so they
/// are logged at debug instead of rdkafka's default error level.
struct RestoreContext;

impl ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::debug!(%reason, "changelog partition end");
        } else {
            tracing::warn!(%error, %reason, "restore consumer error");
        }
    }
}

impl ConsumerContext for RestoreContext {}

pub(super) struct WireChangelogSource {
    consumer: BaseConsumer<RestoreContext>,
    timeout: Duration,
    /// The partition assigned and the next offset its fetch position is at.
    current: Option<(TopicPartition, i64)>,
}

impl WireChangelogSource {
    pub(super) fn new(settings: &WireSettings, client_id: &str) -> Result<Self> {
        let mut config = settings.client_config(ClientKind::RestoreConsumer, client_id);
        config
            .set("enable.auto.commit", "false")
            // librdkafka assigns partitions only with a group id; this client never
            // joins that group nor commits to it (its id is unique to the client).
            .set("group.id", format!("{client_id}-assign-only"))
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer<RestoreContext> = config
            .create_with_context(RestoreContext)
            .map_err(|e| rdkafka_error("creating the restore consumer", e))?;
        Ok(WireChangelogSource {
            consumer,
            timeout: settings.request_timeout,
            current: None,
        })
    }

    fn position_at(&mut self, tp: &TopicPartition, from: i64) -> Result<()> {
        if self.current.as_ref() == Some(&(tp.clone(), from)) {
            return Ok(());
        }
        let mut l = TopicPartitionList::new();
        l.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(from))
            .map_err(|e| rdkafka_error(format!("positioning at {tp} offset {from}"), e))?;
        self.consumer
            .assign(&l)
            .map_err(|e| rdkafka_error(format!("assigning {tp}"), e))?;
        self.current = Some((tp.clone(), from));
        Ok(())
    }

    /// Records of `tp` from `from` on; empty only at the end of the partition.
    fn read_records(&mut self, tp: &TopicPartition, from: i64) -> Result<Vec<ConsumedRecord>> {
        self.position_at(tp, from)?;
        let deadline = Instant::now() + self.timeout;
        let mut out = Vec::new();
        loop {
            let wait = if out.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            match self.consumer.poll(wait) {
                None if out.is_empty() => {
                    if Instant::now() >= deadline {
                        return Err(StreamsError::Cluster {
                            kind: ClusterErrorKind::Retriable,
                            message: format!(
                                "reading changelog {tp} from offset {from}: nothing fetched in {:?}",
                                self.timeout
                            ),
                            source: None,
                        });
                    }
                }
                None => break,
                Some(Err(KafkaError::PartitionEOF(p))) if p == tp.partition => break,
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    self.current = None;
                    return Err(rdkafka_error(format!("reading changelog {tp}"), e));
                }
                Some(Ok(m)) => {
                    if m.topic() != tp.topic || m.partition() != tp.partition || m.offset() < from {
                        continue;
                    }
                    out.push(consumed_record(&m));
                    if out.len() >= MAX_READ {
                        break;
                    }
                }
            }
        }
        if let Some(last) = out.last() {
            self.current = Some((tp.clone(), last.offset + 1));
        }
        Ok(out)
    }
}

impl ChangelogSource for WireChangelogSource {
    fn offsets(&mut self, tp: &TopicPartition) -> Result<(i64, i64)> {
        self.consumer
            .fetch_watermarks(&tp.topic, tp.partition, self.timeout)
            .map_err(|e| rdkafka_error(format!("offsets of {tp}"), e))
    }

    fn read(&mut self, tp: &TopicPartition, from: i64) -> Result<Vec<ChangelogRecord>> {
        Ok(self
            .read_records(tp, from)?
            .into_iter()
            .map(|r| ChangelogRecord {
                offset: r.offset,
                key: r.key.map(|k| k.to_vec()).unwrap_or_default(),
                value: r.value.map(|v| v.to_vec()),
                timestamp: r.timestamp,
            })
            .collect())
    }

    fn read_consumed(&mut self, tp: &TopicPartition, from: i64) -> Result<Vec<ConsumedRecord>> {
        self.read_records(tp, from)
    }
}

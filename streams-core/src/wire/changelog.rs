//! The restore consumers of the wire backend, librdkafka consumers in assign mode
//! (`read_committed`, partition-EOF events on):
//! - [`WireChangelogSource`] restores: it reads one changelog partition at a time and waits
//!   for records or the partition's end, so "no more records" is told apart from "not
//!   fetched yet";
//! - [`WireStandbySource`] keeps standby tasks warm: every standby changelog partition stays
//!   assigned and fetched in the background, and a read returns what has arrived without
//!   waiting (as Kafka Streams polls its restore consumer with a zero timeout while running),
//!   so the stream thread's processing loop never blocks on a caught-up changelog.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};
use state_store::{ChangelogRecord, TopicPartition};

use super::{
    consumed_record, is_informational_consumer_error, rdkafka_error, retry_transient, ClientKind,
    WireSettings,
};
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
    /// A client that never fetches, for the offsets queries: on `consumer`'s connection a
    /// ListOffsets request would wait behind its long-polling fetch (up to the fetch wait)
    /// at every partition change.
    offsets_client: BaseConsumer<RestoreContext>,
    timeout: Duration,
    /// For the offsets queries' retries.
    settings: WireSettings,
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
        let offsets_client: BaseConsumer<RestoreContext> = config
            .create_with_context(RestoreContext)
            .map_err(|e| rdkafka_error("creating the restore consumer's offsets client", e))?;
        Ok(WireChangelogSource {
            consumer,
            offsets_client,
            timeout: settings.request_timeout,
            settings: settings.clone(),
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
                Some(Err(e)) if is_informational_consumer_error(&e) => {
                    // librdkafka reconnects by itself; the read's deadline bounds the wait.
                    tracing::debug!(error = %e, partition = %tp, "restore consumer: transient error");
                }
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

/// What [`WireStandbySource`] knows of one assigned partition.
#[derive(Default)]
struct StandbyPartition {
    /// Records fetched and not yet read, in offset order.
    buffered: VecDeque<ConsumedRecord>,
    /// The offset the consumer fetches next (after the last record fetched).
    fetch_position: i64,
    /// The offset after the last record read (where the caller goes on reading).
    read_position: i64,
}

/// The standby tasks' changelog reader: see the module documentation.
pub(super) struct WireStandbySource {
    restore: WireChangelogSource,
    partitions: BTreeMap<TopicPartition, StandbyPartition>,
}

impl WireStandbySource {
    pub(super) fn new(settings: &WireSettings, client_id: &str) -> Result<Self> {
        Ok(WireStandbySource {
            restore: WireChangelogSource::new(settings, client_id)?,
            partitions: BTreeMap::new(),
        })
    }

    /// One partition as a list for librdkafka.
    fn list(tp: &TopicPartition, offset: Offset) -> Result<TopicPartitionList> {
        let mut l = TopicPartitionList::new();
        l.add_partition_offset(&tp.topic, tp.partition, offset)
            .map_err(|e| rdkafka_error(format!("positioning at {tp}"), e))?;
        Ok(l)
    }

    /// Moves what the consumer has fetched into the partitions' buffers, without waiting.
    fn drain(&mut self) -> Result<()> {
        for _ in 0..MAX_READ {
            let m = match self.restore.consumer.poll(Duration::ZERO) {
                None => return Ok(()),
                Some(Err(e)) if is_informational_consumer_error(&e) => {
                    tracing::debug!(error = %e, "standby consumer: transient error");
                    continue;
                }
                Some(Err(e)) => return Err(rdkafka_error("reading standby changelogs", e)),
                Some(Ok(m)) => m,
            };
            let tp = TopicPartition::new(m.topic(), m.partition());
            let Some(p) = self.partitions.get_mut(&tp) else {
                continue;
            };
            if m.offset() < p.fetch_position {
                continue;
            }
            p.fetch_position = m.offset() + 1;
            p.buffered.push_back(consumed_record(&m));
        }
        Ok(())
    }
}

impl ChangelogSource for WireStandbySource {
    fn offsets(&mut self, tp: &TopicPartition) -> Result<(i64, i64)> {
        self.restore.offsets(tp)
    }

    fn read(&mut self, tp: &TopicPartition, from: i64) -> Result<Vec<ChangelogRecord>> {
        Ok(self
            .read_consumed(tp, from)?
            .into_iter()
            .map(changelog_record)
            .collect())
    }

    /// What has arrived of `tp` from `from` on; empty when nothing new has been fetched
    /// yet (the partition is fetched in the background from the first read on).
    fn read_consumed(&mut self, tp: &TopicPartition, from: i64) -> Result<Vec<ConsumedRecord>> {
        // Reading on from where the last read ended, or further within what was fetched
        // (offsets may have gaps: compaction, transaction markers).
        let continues = self
            .partitions
            .get(tp)
            .is_some_and(|p| from >= p.read_position && from <= p.fetch_position);
        if !continues {
            // A new partition is added to the assignment (incrementally: the others keep
            // fetching, and librdkafka is not asked to stop and restart them); a partition
            // the caller moved back in is sought back (rare: a source-topic changelog whose
            // limit moved).
            let known = self.partitions.contains_key(tp);
            if known {
                self.restore
                    .consumer
                    .seek(
                        &tp.topic,
                        tp.partition,
                        Offset::Offset(from),
                        self.restore.timeout,
                    )
                    .map_err(|e| rdkafka_error(format!("seeking {tp} to {from}"), e))?;
            } else {
                self.restore
                    .consumer
                    .incremental_assign(&Self::list(tp, Offset::Offset(from))?)
                    .map_err(|e| rdkafka_error(format!("assigning {tp}"), e))?;
            }
            self.partitions.insert(
                tp.clone(),
                StandbyPartition {
                    buffered: VecDeque::new(),
                    fetch_position: from,
                    read_position: from,
                },
            );
        }
        self.drain()?;
        let Some(p) = self.partitions.get_mut(tp) else {
            return Ok(Vec::new());
        };
        while p.buffered.front().is_some_and(|r| r.offset < from) {
            p.buffered.pop_front();
        }
        let n = p.buffered.len().min(MAX_READ);
        let out: Vec<ConsumedRecord> = p.buffered.drain(..n).collect();
        p.read_position = out.last().map_or(from, |r| r.offset + 1);
        Ok(out)
    }

    fn retain(&mut self, partitions: &BTreeSet<TopicPartition>) {
        let gone: Vec<TopicPartition> = self
            .partitions
            .keys()
            .filter(|tp| !partitions.contains(*tp))
            .cloned()
            .collect();
        for tp in gone {
            self.partitions.remove(&tp);
            let removed = Self::list(&tp, Offset::Invalid).and_then(|l| {
                self.restore
                    .consumer
                    .incremental_unassign(&l)
                    .map_err(|e| rdkafka_error(format!("unassigning {tp}"), e))
            });
            if let Err(e) = removed {
                tracing::warn!(error = %e, "dropping a standby changelog from the restore consumer");
            }
        }
    }
}

impl ChangelogSource for WireChangelogSource {
    /// The log start offset and the *last stable offset* of `tp`: librdkafka's
    /// `rd_kafka_query_watermark_offsets` sends ListOffsets with the client's
    /// `isolation.level`, `read_committed` here (isolation level 1: the broker answers
    /// "latest" with the LSO). Restoration reads up to this end and stops early only at
    /// the partition's end as a `read_committed` fetch sees it (partition EOF at the LSO),
    /// so an open transaction of another producer (a crashed instance's, which the
    /// coordinator aborts only after `transaction.timeout.ms`) never holds a restore up:
    /// its records are beyond the end, and they are either aborted or read later.
    fn offsets(&mut self, tp: &TopicPartition) -> Result<(i64, i64)> {
        let client = &self.offsets_client;
        retry_transient(
            &self.settings,
            || format!("offsets of {tp}"),
            |timeout| client.fetch_watermarks(&tp.topic, tp.partition, timeout),
        )
    }

    fn read(&mut self, tp: &TopicPartition, from: i64) -> Result<Vec<ChangelogRecord>> {
        Ok(self
            .read_records(tp, from)?
            .into_iter()
            .map(changelog_record)
            .collect())
    }

    fn read_consumed(&mut self, tp: &TopicPartition, from: i64) -> Result<Vec<ConsumedRecord>> {
        self.read_records(tp, from)
    }
}

/// A changelog record as the stores restore it (a null key as empty).
fn changelog_record(r: ConsumedRecord) -> ChangelogRecord {
    ChangelogRecord {
        offset: r.offset,
        key: r.key.map(|k| k.to_vec()).unwrap_or_default(),
        value: r.value.map(|v| v.to_vec()),
        timestamp: r.timestamp,
    }
}

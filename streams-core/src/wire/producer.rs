//! A stream thread's producer on librdkafka: idempotent, Java-compatible partitioner (the
//! runtime picks partitions itself, but records a user produces through the same client
//! settings must land where Java's would), delivery reports collected per partition so
//! [`ClusterProducer::flush`] can return the last acknowledged offset of each partition (the
//! changelog offsets the runtime checkpoints).
//!
//! Under `exactly_once_v2` the producer is transactional ([`WireProducer::transactional`]:
//! `transactional.id`, `transaction.timeout.ms`, `initTransactions` before it is handed
//! out), and its errors are classified as Kafka Streams' `StreamsProducer` does
//! ([`txn_error`]): fenced, tasks migrated (the group refused the offsets), retriable
//! (abort and go on), or fatal.
//!
//! librdkafka's `send_offsets_to_transaction` may never return: its request to the group
//! coordinator waits for the coordinator it cached to come back, and is only woken by a
//! change of some broker connection; when that coordinator left the cluster's metadata
//! (a killed broker is fenced and no longer listed), nothing wakes it, and the timeout it
//! was given is not enforced (librdkafka issues #5456 and #5511, open in 2.12). The call
//! therefore runs on a thread of its own and is waited for at most its timeout plus
//! [`SEND_OFFSETS_GRACE`]; a call still running then gives the producer up (see
//! [`WireProducer::send_offsets_bounded`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as RdHeader, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use state_store::TopicPartition;

use super::native::{self, SendOffsetsError, TxnApiError};
use super::{rdkafka_error, ClientKind, WireSettings};
use crate::client::{ClusterProducer, ConsumerGroupMetadata};
use crate::error::{ClusterErrorKind, Result, StreamsError};
use crate::record::ProducedRecord;

/// How long one call of librdkafka's abort waits before the delivery reports are served
/// and the abort resumed (see `abort_transaction` below).
const ABORT_SLICE: Duration = Duration::from_millis(200);

/// How much longer than the timeout it was given librdkafka's `send_offsets_to_transaction`
/// may run before the producer is given up: enough for librdkafka to report its own
/// timeout first whenever it enforces it.
const SEND_OFFSETS_GRACE: Duration = Duration::from_secs(5);

/// Delivery reports since the last flush.
#[derive(Default)]
struct Deliveries {
    acked: BTreeMap<TopicPartition, i64>,
    /// The first failed delivery, with its partition.
    failed: Option<(TopicPartition, KafkaError)>,
}

struct DeliveryContext {
    deliveries: Arc<Mutex<Deliveries>>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut d = self.deliveries.lock();
        match result {
            Ok(m) => {
                let tp = TopicPartition::new(m.topic(), m.partition());
                let e = d.acked.entry(tp).or_insert(m.offset());
                *e = (*e).max(m.offset());
            }
            Err((e, m)) => {
                if d.failed.is_none() {
                    d.failed = Some((TopicPartition::new(m.topic(), m.partition()), e.clone()));
                }
            }
        }
    }
}

pub(super) struct WireProducer {
    /// Shared with the thread of a `send_offsets_to_transaction` call (which keeps the
    /// producer alive if the call outlives this value).
    producer: Arc<BaseProducer<DeliveryContext>>,
    deliveries: Arc<Mutex<Deliveries>>,
    flush_timeout: Duration,
    /// The `transactional.id` of a transactional producer.
    transactional_id: Option<String>,
    /// `transaction.timeout.ms` of a transactional producer.
    transaction_timeout: Option<Duration>,
    /// Why the producer was given up (a librdkafka call that never returned and still holds
    /// its transactional state): every later call fails at once, and the runtime makes a
    /// new producer when the abort fails.
    abandoned: Option<String>,
}

/// A `send_offsets_to_transaction` call that did not return within its bound.
#[derive(Debug)]
struct SendOffsetsStuck {
    waited: Duration,
}

impl WireProducer {
    pub(super) fn new(settings: &WireSettings, client_id: &str) -> Result<Self> {
        Self::create(settings, client_id, None)
    }

    /// A transactional producer with `transactional_id` whose transactions the coordinator
    /// aborts after `transaction_timeout`, initialized (Kafka's `initTransactions`: a
    /// previous producer with the same id is fenced and its open transaction aborted).
    pub(super) fn transactional(
        settings: &WireSettings,
        client_id: &str,
        transactional_id: &str,
        transaction_timeout: Duration,
    ) -> Result<Self> {
        let producer = Self::create(
            settings,
            client_id,
            Some((transactional_id, transaction_timeout)),
        )?;
        producer
            .producer
            .init_transactions(producer.flush_timeout)
            .map_err(|e| producer.error("initializing transactions", e))?;
        Ok(producer)
    }

    fn create(
        settings: &WireSettings,
        client_id: &str,
        transactional: Option<(&str, Duration)>,
    ) -> Result<Self> {
        let deliveries = Arc::new(Mutex::new(Deliveries::default()));
        let mut config = settings.client_config(ClientKind::Producer, client_id);
        config
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random");
        if config.get("linger.ms").is_none() {
            // Kafka Streams' producer default is 100 ms; the runtime flushes at every
            // commit anyway, so batching longer only adds latency.
            config.set("linger.ms", "5");
        }
        if let Some((id, timeout)) = transactional {
            config.set("transactional.id", id).set(
                "transaction.timeout.ms",
                timeout.as_millis().clamp(1, i32::MAX as u128).to_string(),
            );
        }
        let producer = config
            .create_with_context(DeliveryContext {
                deliveries: Arc::clone(&deliveries),
            })
            .map_err(|e| rdkafka_error("creating a producer", e))?;
        Ok(WireProducer {
            producer: Arc::new(producer),
            deliveries,
            flush_timeout: settings.request_timeout.max(Duration::from_secs(30)) * 2,
            transactional_id: transactional.map(|(id, _)| id.to_owned()),
            transaction_timeout: transactional.map(|(_, timeout)| timeout),
            abandoned: None,
        })
    }

    /// `Err` (retriable) once the producer was given up: its transactional state is held
    /// by a call that never returned, so nothing else can be done with it; the runtime's
    /// abort fails with this, and it makes a new producer (whose `initTransactions`
    /// fences this one and aborts its open transaction).
    fn usable(&self, call: &str) -> Result<()> {
        match &self.abandoned {
            None => Ok(()),
            Some(why) => Err(StreamsError::cluster(
                ClusterErrorKind::Retriable,
                format!(
                    "{call}: the producer (transactional.id {}) was given up: {why}",
                    self.transactional_id.as_deref().unwrap_or_default()
                ),
            )),
        }
    }

    /// librdkafka's `send_offsets_to_transaction` with `timeout`, on a thread of its own,
    /// waited for at most `timeout` + [`SEND_OFFSETS_GRACE`]: `Err` if it did not return by
    /// then (the thread keeps the producer alive until the call returns, if ever).
    fn send_offsets_bounded(
        &self,
        offsets: TopicPartitionList,
        group: &ConsumerGroupMetadata,
        timeout: Duration,
    ) -> std::result::Result<std::result::Result<(), SendOffsetsError>, SendOffsetsCall> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let producer = Arc::clone(&self.producer);
        let group = group.clone();
        std::thread::Builder::new()
            .name("send-offsets-to-txn".into())
            .spawn(move || {
                let result =
                    native::send_offsets_to_transaction(&*producer, &offsets, &group, timeout);
                // The caller may have stopped waiting: nobody to tell then.
                let _ = tx.send(result);
            })
            .map_err(SendOffsetsCall::Spawn)?;
        let bound = timeout + SEND_OFFSETS_GRACE;
        match rx.recv_timeout(bound) {
            Ok(result) => Ok(result),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err(SendOffsetsCall::Stuck(SendOffsetsStuck { waited: bound }))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(SendOffsetsCall::Vanished),
        }
    }

    /// An error of this producer as the runtime's: transactional calls by [`txn_error`],
    /// others by their code (a `_FATAL` code by the fatal error behind it).
    fn error(&self, context: &str, e: KafkaError) -> StreamsError {
        let fatal_cause = || self.producer.client().fatal_error().map(|(code, _)| code);
        match (&self.transactional_id, &e) {
            (Some(id), KafkaError::Transaction(api)) => {
                let failure = TxnApiError {
                    code: api.code(),
                    message: api.string(),
                    fatal: api.is_fatal(),
                    retriable: api.is_retriable(),
                    txn_requires_abort: api.txn_requires_abort(),
                };
                txn_error(
                    &format!("{context} (transactional.id {id})"),
                    &failure,
                    fatal_cause(),
                    e,
                )
            }
            (Some(id), _) => {
                let failure = TxnApiError {
                    code: e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail),
                    message: e.to_string(),
                    fatal: false,
                    retriable: false,
                    // Inside a transaction, a failed produce makes librdkafka's transaction
                    // abortable (or the producer fatal, which the fatal cause tells).
                    txn_requires_abort: true,
                };
                txn_error(
                    &format!("{context} (transactional.id {id})"),
                    &failure,
                    fatal_cause(),
                    e,
                )
            }
            (None, _) => rdkafka_error(context, e),
        }
    }

    /// Waits for every delivery report; the first failed delivery since the last flush is
    /// an error (and the acknowledged offsets are dropped with it).
    fn wait_for_deliveries(&mut self) -> Result<()> {
        if let Err(e) = self.producer.flush(self.flush_timeout) {
            return Err(self.error("flushing the producer", e));
        }
        let failed = {
            let mut d = self.deliveries.lock();
            let failed = d.failed.take();
            if failed.is_some() {
                d.acked.clear();
            }
            failed
        };
        match failed {
            Some((tp, e)) => Err(self.error(&format!("a record to {tp} was not delivered"), e)),
            None => Ok(()),
        }
    }

    fn require_transactional(&self, call: &str) -> Result<()> {
        if self.transactional_id.is_none() {
            return Err(StreamsError::IllegalState(format!(
                "{call} on a producer that is not transactional"
            )));
        }
        Ok(())
    }
}

/// Why a bounded `send_offsets_to_transaction` gave no answer.
#[derive(Debug)]
enum SendOffsetsCall {
    /// No thread could be started for the call.
    Spawn(std::io::Error),
    /// The call did not return within its bound.
    Stuck(SendOffsetsStuck),
    /// The call's thread ended without an answer (it panicked).
    Vanished,
}

/// Error codes that mean another producer with the same `transactional.id` took over (or
/// this one may no longer act for it): the producer is done, the runtime makes a new one
/// (Kafka Streams' `ProducerFencedException`, `InvalidProducerEpochException`,
/// `InvalidPidMappingException`, and a lost `transactional.id` authorization).
fn is_fencing(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::InvalidProducerIdMapping
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
    )
}

/// Errors of the group coordinator refusing a `TxnOffsetCommit` from a member that is not
/// (any more) the one it names: its tasks belong to another member now (KIP-447; Kafka's
/// `CommitFailedException` → Kafka Streams' `TaskMigratedException`).
fn is_group_membership(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::FencedInstanceId
    )
}

/// Codes after which the transaction can be aborted and the work done again.
fn is_transient(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::TimedOutQueue
            | RDKafkaErrorCode::QueueFull
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::ConcurrentTransactions
            | RDKafkaErrorCode::NotEnoughReplicas
            | RDKafkaErrorCode::NotEnoughReplicasAfterAppend
            | RDKafkaErrorCode::PurgeQueue
            | RDKafkaErrorCode::PurgeInflight
    )
}

/// How the runtime handles a failure of the transactional API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxnErrorClass {
    /// Another producer took the `transactional.id` over.
    Fenced,
    /// The group refused the offsets: the tasks migrated.
    TaskMigrated,
    /// Abort the transaction and do the work again.
    Retriable,
    /// Stop.
    Fatal,
}

/// Classifies a transactional API failure as Kafka Streams' `StreamsProducer` does:
/// the group's refusal of the member → tasks migrated; fencing codes, also as the cause of
/// the producer's fatal error (`fatal_cause`, librdkafka's `rd_kafka_fatal_error`) →
/// fenced; any other fatal error → fatal; a failure that only requires an abort, or a
/// retriable one (timeouts) → retriable; anything else → fatal.
pub(super) fn classify(
    failure: &TxnApiError,
    fatal_cause: Option<RDKafkaErrorCode>,
) -> TxnErrorClass {
    if is_group_membership(failure.code) {
        return TxnErrorClass::TaskMigrated;
    }
    // A producer with a fatal error is done whatever the call that noticed it (librdkafka
    // purges its queues then, so a delivery fails with `_PURGE_QUEUE`): the cause decides.
    let cause = fatal_cause.unwrap_or(failure.code);
    if is_fencing(cause) || is_fencing(failure.code) {
        TxnErrorClass::Fenced
    } else if failure.fatal || fatal_cause.is_some() || cause == RDKafkaErrorCode::Fatal {
        TxnErrorClass::Fatal
    } else if failure.txn_requires_abort || failure.retriable || is_transient(cause) {
        TxnErrorClass::Retriable
    } else {
        TxnErrorClass::Fatal
    }
}

/// A transactional API failure as the runtime's error (see [`classify`]).
fn txn_error(
    context: &str,
    failure: &TxnApiError,
    fatal_cause: Option<RDKafkaErrorCode>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> StreamsError {
    let message = format!("{context}: {} ({})", failure.message, failure.code);
    match classify(failure, fatal_cause) {
        TxnErrorClass::Fenced => {
            StreamsError::cluster_source(ClusterErrorKind::Fenced, message, source)
        }
        TxnErrorClass::TaskMigrated => StreamsError::TaskMigrated(message),
        TxnErrorClass::Retriable => {
            StreamsError::cluster_source(ClusterErrorKind::Retriable, message, source)
        }
        TxnErrorClass::Fatal => {
            StreamsError::cluster_source(ClusterErrorKind::Fatal, message, source)
        }
    }
}

impl ClusterProducer for WireProducer {
    fn send(&mut self, tp: &TopicPartition, records: Vec<ProducedRecord>) -> Result<()> {
        self.usable("producing")?;
        for r in &records {
            let headers = if r.headers.is_empty() {
                None
            } else {
                let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
                for x in &r.headers {
                    h = h.insert(RdHeader {
                        key: &x.key,
                        value: x.value.as_deref(),
                    });
                }
                Some(h)
            };
            loop {
                let mut rec: BaseRecord<'_, [u8], [u8], ()> = BaseRecord::to(&tp.topic)
                    .partition(tp.partition)
                    .timestamp(r.timestamp);
                if let Some(k) = r.key.as_deref() {
                    rec = rec.key(k);
                }
                if let Some(v) = r.value.as_deref() {
                    rec = rec.payload(v);
                }
                if let Some(h) = headers.clone() {
                    rec = rec.headers(h);
                }
                match self.producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // The local queue is full: serve delivery reports, then retry.
                        self.producer.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => return Err(self.error(&format!("producing to {tp}"), e)),
                }
            }
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    fn flush(&mut self) -> Result<BTreeMap<TopicPartition, i64>> {
        self.usable("flushing")?;
        self.wait_for_deliveries()?;
        Ok(std::mem::take(&mut self.deliveries.lock().acked))
    }

    fn begin_transaction(&mut self) -> Result<()> {
        self.require_transactional("begin_transaction")?;
        self.usable("beginning a transaction")?;
        tracing::debug!(
            transactional_id = self.transactional_id.as_deref(),
            "begin transaction"
        );
        self.producer
            .begin_transaction()
            .map_err(|e| self.error("beginning a transaction", e))
    }

    fn send_offsets_to_transaction(
        &mut self,
        offsets: &BTreeMap<TopicPartition, (i64, String)>,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        self.require_transactional("send_offsets_to_transaction")?;
        self.usable("sending offsets to the transaction")?;
        tracing::debug!(
            transactional_id = self.transactional_id.as_deref(),
            partitions = offsets.len(),
            generation = group.generation_id,
            "offsets to the transaction"
        );
        let mut list = TopicPartitionList::with_capacity(offsets.len());
        for (tp, (offset, metadata)) in offsets {
            if tp.topic.contains('\0') {
                // `rdkafka` would panic building the C string; Kafka topic names never
                // hold one.
                return Err(StreamsError::cluster_fatal(format!(
                    "topic name `{}` contains a NUL byte",
                    tp.topic.replace('\0', "\\0")
                )));
            }
            let mut elem = list.add_partition(&tp.topic, tp.partition);
            elem.set_offset(Offset::Offset(*offset))
                .map_err(|e| rdkafka_error(format!("offset {offset} of {tp}"), e))?;
            elem.set_metadata(metadata.as_str());
        }
        // librdkafka caps the call at the transaction timeout anyway: the coordinator aborts
        // the transaction by then.
        let timeout = self
            .transaction_timeout
            .map_or(self.flush_timeout, |t| t.min(self.flush_timeout));
        let result = match self.send_offsets_bounded(list, group, timeout) {
            Ok(result) => result,
            Err(SendOffsetsCall::Stuck(stuck)) => {
                let why = format!(
                    "librdkafka's send_offsets_to_transaction (group `{}`) did not return within \
                     {:?} (it waits for a group coordinator that left the cluster: librdkafka \
                     issues #5456, #5511)",
                    group.group_id, stuck.waited
                );
                tracing::warn!(
                    transactional_id = self.transactional_id.as_deref(),
                    "{why}; giving the producer up"
                );
                self.abandoned = Some(why.clone());
                return Err(StreamsError::cluster(
                    ClusterErrorKind::Retriable,
                    format!("sending offsets to the transaction: {why}"),
                ));
            }
            Err(SendOffsetsCall::Spawn(e)) => {
                return Err(StreamsError::cluster_source(
                    ClusterErrorKind::Retriable,
                    "sending offsets to the transaction: starting the thread of the call",
                    e,
                ));
            }
            Err(SendOffsetsCall::Vanished) => {
                return Err(StreamsError::cluster(
                    ClusterErrorKind::Fatal,
                    "sending offsets to the transaction: the call's thread ended without an answer",
                ));
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(SendOffsetsError::Api(failure)) => {
                let fatal_cause = self.producer.client().fatal_error().map(|(code, _)| code);
                let context = format!(
                    "sending offsets to the transaction (transactional.id {}, group `{}`, generation {}, member `{}`)",
                    self.transactional_id.as_deref().unwrap_or_default(),
                    group.group_id,
                    group.generation_id,
                    group.member_id
                );
                let err = SendOffsetsError::Api(failure.clone());
                Err(txn_error(&context, &failure, fatal_cause, err))
            }
            Err(e) => Err(StreamsError::cluster_source(
                ClusterErrorKind::Fatal,
                format!("sending offsets to the transaction: {e}"),
                e,
            )),
        }
    }

    fn commit_transaction(&mut self) -> Result<()> {
        self.require_transactional("commit_transaction")?;
        self.usable("committing the transaction")?;
        tracing::debug!(
            transactional_id = self.transactional_id.as_deref(),
            "commit transaction"
        );
        // Every record of the transaction acknowledged first: a failed delivery is an
        // error here and the transaction is never committed without it (librdkafka would
        // refuse the commit too: a failed delivery makes its transaction abortable).
        self.wait_for_deliveries()?;
        self.producer
            .commit_transaction(self.flush_timeout)
            .map_err(|e| self.error("committing the transaction", e))
    }

    fn abort_transaction(&mut self) -> Result<()> {
        self.require_transactional("abort_transaction")?;
        self.usable("aborting the transaction")?;
        tracing::debug!(
            transactional_id = self.transactional_id.as_deref(),
            "abort transaction"
        );
        // librdkafka's abort purges the queued records and then waits until no message is
        // outstanding — and with the event API (rdkafka's `BaseProducer`) a delivery report
        // counts as outstanding until the application polls it. Waiting in one call would
        // time out whenever a record was queued or in flight (after a broker restart,
        // always). So the abort waits in short slices, the reports are served between
        // them, and the abort is called again (librdkafka's transactional calls resume
        // after a retriable timeout), up to the flush timeout.
        let deadline = Instant::now() + self.flush_timeout;
        let aborted = loop {
            self.producer.poll(Duration::ZERO);
            let left = deadline.saturating_duration_since(Instant::now());
            match self.producer.abort_transaction(ABORT_SLICE.min(left)) {
                Ok(()) => break Ok(()),
                Err(KafkaError::Transaction(e))
                    if e.is_retriable() && !e.is_fatal() && left > ABORT_SLICE => {}
                Err(e) => break Err(self.error("aborting the transaction", e)),
            }
        };
        // The aborted records' delivery reports (failed, purged) are served and dropped:
        // none of them belongs to the next transaction.
        self.producer.poll(Duration::ZERO);
        *self.deliveries.lock() = Deliveries::default();
        aborted
    }
}

impl Drop for WireProducer {
    /// librdkafka drops what is still queued when its producer goes away: deliver it first
    /// (bounded by the flush timeout), so nothing sent is silently lost at shutdown. A
    /// transactional producer's records are worth nothing outside a committed transaction
    /// (and a fenced producer cannot deliver them): they are dropped, and the coordinator
    /// aborts the open transaction (at the next `initTransactions` of the id, or after
    /// the transaction timeout).
    fn drop(&mut self) {
        if self.transactional_id.is_some() {
            return;
        }
        if let Err(e) = self.producer.flush(self.flush_timeout) {
            tracing::warn!(error = %e, "flushing the producer at close");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::mocking::{MockCluster, MockCoordinator};

    fn settings(bootstrap: String) -> WireSettings {
        WireSettings {
            bootstrap: vec![bootstrap],
            client_id: "test".into(),
            properties: BTreeMap::new(),
            request_timeout: Duration::from_secs(5),
            api_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            group_instance_id: None,
        }
    }

    /// librdkafka's `send_offsets_to_transaction` waits for a group coordinator it cached
    /// for as long as that broker is away, past the timeout it was given (librdkafka issue
    /// #5456; #5511 when the broker left the metadata, as a killed node of a cluster does).
    /// The call is bounded here: with the group's coordinator down it fails (retriable)
    /// instead of blocking the stream thread, and the producer refuses every later call, so
    /// the runtime's abort fails and a new producer replaces it.
    #[test]
    fn offsets_to_a_transaction_whose_group_coordinator_is_gone_fail_instead_of_hanging() {
        let mock = MockCluster::new(3).unwrap();
        mock.create_topic("in", 1, 1).unwrap();
        let (txn_id, group_id) = ("txn-1", "group-1");
        mock.coordinator(MockCoordinator::Transaction(txn_id.into()), 1)
            .unwrap();
        mock.coordinator(MockCoordinator::Group(group_id.into()), 2)
            .unwrap();
        let mut producer = WireProducer::transactional(
            &settings(mock.bootstrap_servers()),
            "test-producer",
            txn_id,
            Duration::from_secs(3),
        )
        .unwrap();
        let group = ConsumerGroupMetadata {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        };
        let offsets = |o: i64| BTreeMap::from([(TopicPartition::new("in", 0), (o, String::new()))]);
        // The group's coordinator (broker 2) is found and cached.
        producer.begin_transaction().unwrap();
        producer
            .send_offsets_to_transaction(&offsets(5), &group)
            .unwrap();
        producer.commit_transaction().unwrap();

        mock.broker_down(2).unwrap();
        producer.begin_transaction().unwrap();
        // The call runs on a thread of the test too, so that a regression fails the test
        // instead of hanging it (the bounded call gives up after 3 s + the grace).
        let (tx, rx) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            let result = producer.send_offsets_to_transaction(&offsets(9), &group);
            let _ = tx.send(());
            (producer, result)
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("send_offsets_to_transaction still blocked after 60 s");
        let (mut producer, result) = worker.join().unwrap();
        let err = result.unwrap_err();
        assert_eq!(
            err.cluster_kind(),
            Some(ClusterErrorKind::Retriable),
            "{err}"
        );
        assert!(err.to_string().contains("did not return"), "{err}");
        // Given up: the abort fails (the runtime then makes a new producer), and so does
        // anything else.
        let abort = producer.abort_transaction().unwrap_err();
        assert_eq!(abort.cluster_kind(), Some(ClusterErrorKind::Retriable));
        assert!(abort.to_string().contains("given up"), "{abort}");
        assert!(producer.begin_transaction().is_err());
        // The abandoned call returns once the broker is back; its thread then drops the
        // last handle of the producer.
        mock.broker_up(2).unwrap();
    }
}

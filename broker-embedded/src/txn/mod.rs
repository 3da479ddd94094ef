//! The transaction coordinator (KIP-98, KIP-360, KIP-447; Kafka's `TransactionCoordinator`):
//! one [`TransactionCoordinator`] per broker, owned by the `Broker` handle.
//!
//! Every transactional id has a [`state::TxnMetadata`] under its own lock; every transition
//! is made durable in `__transaction_state` (through [`TxnLog`]) before it takes effect in
//! memory, as Kafka's `appendTransactionToLog` does. Ending a transaction logs
//! PrepareCommit/PrepareAbort, writes a marker to every partition of the transaction (through
//! [`TxnMarkerWriter`], so that a replicated broker can send `WriteTxnMarkers` instead), then
//! logs CompleteCommit/CompleteAbort. Markers that fail are retried by
//! [`TransactionCoordinator::tick`], which also aborts timed-out transactions; after a
//! restart, [`TransactionCoordinator::load`] restores the states and the next tick completes
//! what was prepared.
//!
//! Unlike Kafka, the operations are synchronous: the coordinator answers EndTxn once the
//! markers are written (Kafka answers after the Prepare record and sends markers in the
//! background), so no "pending state" is needed; a caller that finds a Prepare state (markers
//! still failing) gets CONCURRENT_TRANSACTIONS as from Kafka.

pub(crate) mod record;
pub(crate) mod state;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tracing::{debug, info, warn};

use crate::error::{BrokerError, Result};
use crate::offsets::TopicPartition;
use record::TxnLogValue;
pub use state::TxnState;
use state::{epoch_exhausted, TxnMetadata};

/// Writes transaction markers (control batches) to the partitions of a transaction: on a
/// single broker straight into the local logs; with replication, as `WriteTxnMarkers` to the
/// partition leaders.
pub trait TxnMarkerWriter: Send + Sync {
    /// Writes one COMMIT (`commit`) or ABORT marker for `producer_id`/`producer_epoch` to
    /// `tp`. A partition that no longer exists is an
    /// [`BrokerError::UnknownTopicOrPartition`] (the coordinator then skips it, as Kafka).
    fn write_txn_marker(
        &self,
        tp: &TopicPartition,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> Result<()>;
}

/// Where the coordinator keeps its durable state and gets producer ids.
pub(crate) trait TxnLog: Send + Sync {
    /// A producer id never handed out before.
    fn allocate_producer_id(&self) -> Result<i64>;
    /// Durably appends the state of `transactional_id` to `__transaction_state`.
    fn append(&self, transactional_id: &str, value: &TxnLogValue) -> Result<()>;
    /// The coordinator epoch of `transactional_id` written into its markers: the leader epoch
    /// of its `__transaction_state` partition on this broker (0 on a single broker).
    fn coordinator_epoch(&self, transactional_id: &str) -> i32;
}

/// Why the coordinator refused a request: each variant is the Kafka error a wire client
/// receives ([`TxnError::kafka_error`]).
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// An empty transactional id or a malformed producer id/epoch pair (INVALID_REQUEST).
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// `transaction.timeout.ms` is not in `1..=transaction.max.timeout.ms`
    /// (INVALID_TRANSACTION_TIMEOUT).
    #[error("transaction timeout {given} ms is outside 1..={max} ms")]
    InvalidTransactionTimeout {
        /// The producer's timeout.
        given: i32,
        /// The broker's `transaction.max.timeout.ms`.
        max: i32,
    },
    /// A transaction of this id is being completed; retry (CONCURRENT_TRANSACTIONS).
    #[error("a transaction of this transactional id is being completed")]
    ConcurrentTransactions,
    /// A newer producer with the same transactional id exists (PRODUCER_FENCED; older request
    /// versions receive INVALID_PRODUCER_EPOCH).
    #[error("producer fenced: epoch {given} is not the current epoch {current}")]
    ProducerFenced {
        /// The epoch of the request.
        given: i16,
        /// The coordinator's epoch.
        current: i16,
    },
    /// The transactional id is unknown or uses another producer id
    /// (INVALID_PRODUCER_ID_MAPPING).
    #[error("the producer id does not belong to this transactional id")]
    InvalidProducerIdMapping,
    /// The request does not fit the transaction's state, e.g. committing an aborted
    /// transaction (INVALID_TXN_STATE).
    #[error("transaction is in state {0}")]
    InvalidTxnState(TxnState),
    /// KIP-890: a transactional write to a partition that is not part of the transaction
    /// (TRANSACTION_ABORTABLE; older produce versions receive INVALID_TXN_STATE).
    #[error("partition {0} was not added to the transaction")]
    PartitionNotInTransaction(TopicPartition),
    /// No such transactional id (TRANSACTIONAL_ID_NOT_FOUND).
    #[error("transactional id not found")]
    TransactionalIdNotFound,
    /// Writing the transaction log failed.
    #[error(transparent)]
    Storage(#[from] BrokerError),
}

impl TxnError {
    /// The Kafka error a client receives for this error.
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            Self::InvalidRequest(_) => ResponseError::InvalidRequest,
            Self::InvalidTransactionTimeout { .. } => ResponseError::InvalidTransactionTimeout,
            Self::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
            Self::ProducerFenced { .. } => ResponseError::ProducerFenced,
            Self::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
            Self::InvalidTxnState(_) => ResponseError::InvalidTxnState,
            Self::PartitionNotInTransaction(_) => ResponseError::TransactionAbortable,
            Self::TransactionalIdNotFound => ResponseError::TransactionalIdNotFound,
            Self::Storage(e) => e.kafka_error(),
        }
    }
}

/// A producer id and epoch handed to a transactional producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdAndEpoch {
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
}

/// One transactional id as DescribeTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    /// The transactional id.
    pub transactional_id: String,
    /// Its current producer id.
    pub producer_id: i64,
    /// Its current producer epoch.
    pub producer_epoch: i16,
    /// The state of its transaction.
    pub state: TxnState,
    /// `transaction.timeout.ms` of its producer.
    pub timeout_ms: i32,
    /// When the current transaction started (-1 when none).
    pub start_ms: i64,
    /// The partitions of the current transaction.
    pub partitions: BTreeSet<TopicPartition>,
}

/// One transactional id as ListTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    /// The transactional id.
    pub transactional_id: String,
    /// Its current producer id.
    pub producer_id: i64,
    /// The state of its transaction.
    pub state: TxnState,
}

/// The broker's transaction coordinator. See the module documentation.
pub struct TransactionCoordinator {
    max_timeout_ms: i32,
    txns: Mutex<HashMap<String, Arc<Mutex<TxnMetadata>>>>,
    log: Box<dyn TxnLog>,
    markers: Box<dyn TxnMarkerWriter>,
}

impl std::fmt::Debug for TransactionCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionCoordinator")
            .field("transactional_ids", &self.txns.lock().len())
            .finish()
    }
}

type TxnResult<T> = std::result::Result<T, TxnError>;

impl TransactionCoordinator {
    pub(crate) fn new(
        max_timeout_ms: i32,
        log: Box<dyn TxnLog>,
        markers: Box<dyn TxnMarkerWriter>,
    ) -> Self {
        Self {
            max_timeout_ms,
            txns: Mutex::new(HashMap::new()),
            log,
            markers,
        }
    }

    /// The coordinator epoch written into the markers of `transactional_id` (the leader epoch
    /// of its `__transaction_state` partition; 0 on a single broker).
    pub fn coordinator_epoch(&self, transactional_id: &str) -> i32 {
        self.log.coordinator_epoch(transactional_id)
    }

    fn entry(&self, id: &str) -> Option<Arc<Mutex<TxnMetadata>>> {
        self.txns.lock().get(id).cloned()
    }

    /// Makes `next` durable, then current.
    fn transit(&self, id: &str, m: &mut TxnMetadata, next: TxnMetadata) -> TxnResult<()> {
        debug_assert!(next.state.valid_from(m.state) || next.state == m.state);
        self.log.append(id, &next.to_log())?;
        debug!(transactional_id = id, from = %m.state, to = %next.state, producer_id = next.producer_id, epoch = next.producer_epoch, "transaction state");
        *m = next;
        Ok(())
    }

    /// Restores the states read from `__transaction_state` (last record per id; `None` is a
    /// tombstone). Prepared transactions are completed by the next [`Self::tick`] (or
    /// [`Self::complete_prepared`]).
    pub(crate) fn load(&self, states: impl IntoIterator<Item = (String, Option<TxnLogValue>)>) {
        self.txns.lock().clear();
        self.load_more(states);
    }

    /// Forgets every transactional id matching `unloaded` (its `__transaction_state` partition
    /// is now led by another broker, which completes what was prepared).
    pub(crate) fn unload(&self, unloaded: impl Fn(&str) -> bool) {
        let mut txns = self.txns.lock();
        let before = txns.len();
        txns.retain(|id, _| !unloaded(id));
        let removed = before - txns.len();
        if removed > 0 {
            info!(
                transactional_ids = removed,
                "transactional ids unloaded (coordinator moved)"
            );
        }
    }

    /// As [`Self::load`] without forgetting the ids already loaded (one more partition of
    /// `__transaction_state`).
    pub(crate) fn load_more(
        &self,
        states: impl IntoIterator<Item = (String, Option<TxnLogValue>)>,
    ) {
        // No transaction's own lock is taken here: the caller may hold the coordinator
        // ownership lock, which a thread completing a transaction (holding that
        // transaction's lock) takes to read the coordinator epoch.
        let mut txns = self.txns.lock();
        let mut prepared = 0;
        for (id, v) in states {
            match v {
                Some(v) if v.state != TxnState::Dead => {
                    prepared += usize::from(v.state.is_prepare());
                    txns.insert(id, Arc::new(Mutex::new(TxnMetadata::from_log(v))));
                }
                _ => {
                    txns.remove(&id);
                }
            }
        }
        info!(
            transactional_ids = txns.len(),
            prepared, "transaction coordinator loaded"
        );
    }

    /// InitProducerId with a transactional id: a new producer id (epoch 0) for a new id, an
    /// epoch bump otherwise, which fences the previous producer. An ongoing transaction is
    /// aborted first (its markers carry the bumped epoch) and the caller gets
    /// CONCURRENT_TRANSACTIONS, to retry as Kafka's clients do. `expected` is KIP-360's
    /// current producer id and epoch of a producer bumping its epoch after an error.
    pub fn init_producer_id(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<ProducerIdAndEpoch>,
        now: i64,
    ) -> TxnResult<ProducerIdAndEpoch> {
        if transactional_id.is_empty() {
            return Err(TxnError::InvalidRequest("empty transactional id"));
        }
        if timeout_ms <= 0 || timeout_ms > self.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout {
                given: timeout_ms,
                max: self.max_timeout_ms,
            });
        }
        let entry = {
            let mut txns = self.txns.lock();
            match txns.get(transactional_id) {
                Some(e) => Arc::clone(e),
                None => {
                    let pid = self.log.allocate_producer_id()?;
                    let e = Arc::new(Mutex::new(TxnMetadata::new(pid, timeout_ms, now)));
                    txns.insert(transactional_id.to_string(), Arc::clone(&e));
                    e
                }
            }
        };
        let mut m = entry.lock();
        if let Some(exp) = expected {
            // Kafka's isValidProducerId.
            let valid = m.producer_epoch == -1
                || exp.producer_id == m.producer_id
                || (exp.producer_id == m.previous_producer_id
                    && epoch_exhausted(exp.producer_epoch));
            if !valid {
                return Err(TxnError::ProducerFenced {
                    given: exp.producer_epoch,
                    current: m.producer_epoch,
                });
            }
        }
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let mut next = m.clone();
                next.state = TxnState::Empty;
                next.timeout_ms = timeout_ms;
                next.partitions.clear();
                next.start_ms = -1;
                next.last_update_ms = now;
                if epoch_exhausted(m.producer_epoch)
                    && expected.is_none_or(|e| e.producer_epoch == m.producer_epoch)
                {
                    // Producer id rotation.
                    next.previous_producer_id = m.producer_id;
                    next.producer_id = self.log.allocate_producer_id()?;
                    next.producer_epoch = 0;
                    next.last_producer_epoch = if expected.is_some() {
                        m.producer_epoch
                    } else {
                        -1
                    };
                } else {
                    let bumped = m.producer_epoch.saturating_add(1);
                    let (epoch, last) = match expected {
                        None => (bumped, -1),
                        Some(e)
                            if m.producer_epoch == -1 || e.producer_epoch == m.producer_epoch =>
                        {
                            (bumped, m.producer_epoch)
                        }
                        // A retry of a bump whose answer was lost.
                        Some(e) if e.producer_epoch == m.last_producer_epoch => {
                            (m.producer_epoch, m.last_producer_epoch)
                        }
                        Some(e) => {
                            return Err(TxnError::ProducerFenced {
                                given: e.producer_epoch,
                                current: m.producer_epoch,
                            })
                        }
                    };
                    next.producer_epoch = epoch;
                    next.last_producer_epoch = last;
                }
                self.transit(transactional_id, &mut m, next)?;
                info!(
                    transactional_id,
                    producer_id = m.producer_id,
                    epoch = m.producer_epoch,
                    "initialized transactional producer"
                );
                Ok(ProducerIdAndEpoch {
                    producer_id: m.producer_id,
                    producer_epoch: m.producer_epoch,
                })
            }
            TxnState::Ongoing => {
                self.fence_and_abort(transactional_id, &mut m, now)?;
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Dead | TxnState::PrepareEpochFence => Err(TxnError::InvalidTxnState(m.state)),
        }
    }

    /// Kafka's PrepareEpochFence followed by an abort: the epoch is bumped (fencing the
    /// producer of the ongoing transaction), PrepareAbort logged, markers written.
    fn fence_and_abort(&self, id: &str, m: &mut TxnMetadata, now: i64) -> TxnResult<()> {
        if m.producer_epoch == i16::MAX {
            return Err(TxnError::InvalidTxnState(m.state));
        }
        let mut next = m.clone();
        next.producer_epoch = m.producer_epoch + 1;
        next.last_producer_epoch = -1;
        next.state = TxnState::PrepareAbort;
        next.last_update_ms = now;
        self.transit(id, m, next)?;
        info!(
            transactional_id = id,
            producer_id = m.producer_id,
            epoch = m.producer_epoch,
            "fenced the producer and aborting its transaction"
        );
        self.complete(id, m, now);
        Ok(())
    }

    /// Writes the markers of a prepared transaction, then logs its completion. Markers that
    /// fail leave the transaction prepared (with the partitions still to do) for the next
    /// [`Self::tick`].
    fn complete(&self, id: &str, m: &mut TxnMetadata, now: i64) {
        let commit = match m.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return,
        };
        let partitions: Vec<TopicPartition> = m.partitions.iter().cloned().collect();
        for tp in partitions {
            match self.markers.write_txn_marker(
                &tp,
                m.producer_id,
                m.producer_epoch,
                self.log.coordinator_epoch(id),
                commit,
            ) {
                Ok(()) => {
                    m.partitions.remove(&tp);
                }
                Err(BrokerError::UnknownTopicOrPartition { .. }) => {
                    warn!(transactional_id = id, partition = %tp, "partition gone; no transaction marker written");
                    m.partitions.remove(&tp);
                }
                Err(e) => {
                    warn!(transactional_id = id, partition = %tp, error = %e, "writing a transaction marker failed; will retry");
                    return;
                }
            }
        }
        let mut next = m.clone();
        next.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        next.partitions.clear();
        next.last_update_ms = now;
        if let Err(e) = self.transit(id, m, next) {
            warn!(transactional_id = id, error = %e, "logging a completed transaction failed; will retry");
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn with the group's `__consumer_offsets`
    /// partition): adds partitions to the producer's transaction, starting one if needed.
    pub fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
        now: i64,
    ) -> TxnResult<()> {
        if transactional_id.is_empty() {
            return Err(TxnError::InvalidRequest("empty transactional id"));
        }
        let entry = self
            .entry(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        let mut m = entry.lock();
        if m.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if m.producer_epoch != producer_epoch {
            return Err(TxnError::ProducerFenced {
                given: producer_epoch,
                current: m.producer_epoch,
            });
        }
        if m.state.is_prepare() {
            return Err(TxnError::ConcurrentTransactions);
        }
        if m.state == TxnState::Ongoing && partitions.iter().all(|tp| m.partitions.contains(tp)) {
            return Ok(());
        }
        if !TxnState::Ongoing.valid_from(m.state) {
            return Err(TxnError::InvalidTxnState(m.state));
        }
        let mut next = m.clone();
        if m.state != TxnState::Ongoing {
            next.start_ms = now;
            next.partitions.clear();
        }
        next.state = TxnState::Ongoing;
        next.partitions.extend(partitions.iter().cloned());
        next.last_update_ms = now;
        self.transit(transactional_id, &mut m, next)
    }

    /// KIP-890 part 1: whether a transactional produce of `producer_id`/`producer_epoch` to
    /// `tp` belongs to the ongoing transaction of `transactional_id` (Kafka's
    /// `handleVerifyPartitionsInTransaction`).
    pub fn verify_partition(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        tp: &TopicPartition,
    ) -> TxnResult<()> {
        if transactional_id.is_empty() {
            return Err(TxnError::InvalidRequest("empty transactional id"));
        }
        let entry = self
            .entry(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        let m = entry.lock();
        if m.producer_id != producer_id {
            Err(TxnError::InvalidProducerIdMapping)
        } else if m.producer_epoch != producer_epoch {
            Err(TxnError::ProducerFenced {
                given: producer_epoch,
                current: m.producer_epoch,
            })
        } else if m.state.is_prepare() {
            Err(TxnError::ConcurrentTransactions)
        } else if m.partitions.contains(tp) && m.state == TxnState::Ongoing {
            Ok(())
        } else {
            Err(TxnError::PartitionNotInTransaction(tp.clone()))
        }
    }

    /// EndTxn: commits (`commit`) or aborts the producer's transaction: PrepareCommit or
    /// PrepareAbort is logged, markers are written to every partition, then the completion
    /// is logged. Returns the producer id and epoch (unchanged: transaction version 0). A
    /// retry of a completed end is answered with success, as Kafka does.
    pub fn end_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now: i64,
    ) -> TxnResult<ProducerIdAndEpoch> {
        if transactional_id.is_empty() {
            return Err(TxnError::InvalidRequest("empty transactional id"));
        }
        let entry = self
            .entry(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        let mut m = entry.lock();
        if m.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if producer_epoch != m.producer_epoch {
            return Err(TxnError::ProducerFenced {
                given: producer_epoch,
                current: m.producer_epoch,
            });
        }
        let done = ProducerIdAndEpoch {
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
        };
        match (m.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut next = m.clone();
                next.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                next.last_update_ms = now;
                self.transit(transactional_id, &mut m, next)?;
                self.complete(transactional_id, &mut m, now);
                Ok(done)
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(done),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(TxnError::ConcurrentTransactions)
            }
            (state, _) => Err(TxnError::InvalidTxnState(state)),
        }
    }

    /// Background work (Kafka's `transaction-abort` task and marker retries): aborts
    /// transactions open longer than their timeout, fencing their producer, and completes
    /// prepared transactions whose markers are not all written (after a restart, or a failed
    /// write). Returns how many transactions it aborted on timeout.
    pub fn tick(&self, now: i64) -> usize {
        let entries: Vec<(String, Arc<Mutex<TxnMetadata>>)> = self
            .txns
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        let mut aborted = 0;
        for (id, entry) in entries {
            // Skip ids busy with a request; the next tick sees them.
            let Some(mut m) = entry.try_lock() else {
                continue;
            };
            if m.state.is_prepare() {
                self.complete(&id, &mut m, now);
            } else if m.state == TxnState::Ongoing
                && m.start_ms.saturating_add(i64::from(m.timeout_ms)) < now
            {
                info!(
                    transactional_id = id,
                    producer_id = m.producer_id,
                    epoch = m.producer_epoch,
                    timeout_ms = m.timeout_ms,
                    "aborting a timed-out transaction"
                );
                match self.fence_and_abort(&id, &mut m, now) {
                    Ok(()) => aborted += 1,
                    Err(e) => {
                        warn!(transactional_id = id, error = %e, "aborting a timed-out transaction failed")
                    }
                }
            }
        }
        aborted
    }

    /// Completes every prepared transaction now (markers, then the completion record).
    pub fn complete_prepared(&self, now: i64) {
        let entries: Vec<(String, Arc<Mutex<TxnMetadata>>)> = self
            .txns
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        for (id, entry) in entries {
            let mut m = entry.lock();
            if m.state.is_prepare() {
                info!(transactional_id = id, state = %m.state, "completing a prepared transaction");
                self.complete(&id, &mut m, now);
            }
        }
    }

    /// DescribeTransactions for one transactional id.
    pub fn describe(&self, transactional_id: &str) -> TxnResult<TransactionDescription> {
        if transactional_id.is_empty() {
            return Err(TxnError::InvalidRequest("empty transactional id"));
        }
        let entry = self
            .entry(transactional_id)
            .ok_or(TxnError::TransactionalIdNotFound)?;
        let m = entry.lock();
        if m.state == TxnState::Dead || m.producer_epoch < 0 {
            return Err(TxnError::TransactionalIdNotFound);
        }
        Ok(TransactionDescription {
            transactional_id: transactional_id.to_string(),
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            state: m.state,
            timeout_ms: m.timeout_ms,
            start_ms: m.start_ms,
            partitions: m.partitions.clone(),
        })
    }

    /// ListTransactions: every transactional id, filtered as Kafka does (empty filters match
    /// everything; `min_duration_ms` >= 0 keeps transactions running longer than that).
    pub fn list(
        &self,
        producer_ids: &[i64],
        states: &[TxnState],
        min_duration_ms: i64,
        now: i64,
    ) -> Vec<TransactionListing> {
        let entries: Vec<(String, Arc<Mutex<TxnMetadata>>)> = self
            .txns
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        let mut out: Vec<TransactionListing> = entries
            .into_iter()
            .filter_map(|(id, entry)| {
                let m = entry.lock();
                let keep = m.state != TxnState::Dead
                    && m.producer_epoch >= 0
                    && (producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
                    && (states.is_empty() || states.contains(&m.state))
                    && (min_duration_ms < 0 || now - m.start_ms > min_duration_ms);
                keep.then(|| TransactionListing {
                    transactional_id: id,
                    producer_id: m.producer_id,
                    state: m.state,
                })
            })
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }
}

#[cfg(test)]
mod tests;

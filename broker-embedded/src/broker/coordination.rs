//! Which group ids and transactional ids this broker coordinates, and how the coordinators'
//! records reach their logs.
//!
//! A key's coordinator partition is Kafka's `abs(hashCode) % partitions` of
//! `__consumer_offsets` (groups) or `__transaction_state` (transactional ids). A single-node
//! broker owns every partition and appends straight to its local logs. A broker of a cluster
//! ([`crate::BrokerConfig::elected_coordinators`]) owns exactly the partitions it is elected
//! leader of: on election it reads the partition from its start to its log end and installs
//! what it holds (committed offsets, group metadata, offsets of open transactions, transaction
//! states; prepared transactions are then completed), answering COORDINATOR_LOAD_IN_PROGRESS
//! meanwhile; on resignation it forgets them; requests for keys of other partitions are
//! NOT_COORDINATOR. Its writes go through the [`ReplicaManager`] as the partition's leader
//! with acks=all and wait (up to `offsets.commit.timeout.ms`) for the in-sync replicas, so
//! that what a coordinator acknowledged survives the loss of its node.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tracing::{info, warn};

use super::committed_offsets::scan_offsets_log;
use super::transactions::{scan_txn_state_log, TRANSACTION_STATE_TOPIC};
use super::{now_ms, Broker};
use crate::error::{BrokerError, Result};
use crate::log::{AppendInfo, AppendOrigin};
use crate::offsets::{TopicPartition, OFFSETS_TOPIC};
use crate::replica::ReplicaManager;
use crate::txn::TxnMarkerWriter;

/// The two coordinators of a broker, each keyed by the partitions of its internal topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoordinatorKind {
    /// The group coordinator (`__consumer_offsets`).
    Group,
    /// The transaction coordinator (`__transaction_state`).
    Transaction,
}

impl CoordinatorKind {
    /// The internal topic holding this coordinator's state.
    pub fn topic(self) -> &'static str {
        match self {
            Self::Group => OFFSETS_TOPIC,
            Self::Transaction => TRANSACTION_STATE_TOPIC,
        }
    }

    /// The coordinator whose state `topic` holds, if it is an internal topic.
    pub fn of_topic(topic: &str) -> Option<Self> {
        match topic {
            OFFSETS_TOPIC => Some(Self::Group),
            TRANSACTION_STATE_TOPIC => Some(Self::Transaction),
            _ => None,
        }
    }
}

/// One owned coordinator partition.
#[derive(Debug, Clone, Copy)]
struct Owned {
    /// The partition's leader epoch (the transaction coordinator's epoch in markers).
    leader_epoch: i32,
    /// Whether its state is installed (COORDINATOR_LOAD_IN_PROGRESS until then).
    loaded: bool,
    /// Tells a finishing load whether the partition was resigned (or re-elected) meanwhile.
    generation: u64,
}

/// Replicated writes of a cluster broker's coordinators.
pub(super) struct CoordinatorReplication {
    pub(super) replicas: ReplicaManager,
    runtime: tokio::runtime::Handle,
}

/// The coordinators' ownership and write path (part of the broker's shared state).
///
/// Lock order: `transitions` (held while a partition's state is installed or unloaded, which
/// takes the group or transaction coordinator's locks and so may wait behind a replicated
/// write) before `owned`, which is only ever held for a map lookup or update: request
/// handlers ask it on runtime threads and must never wait behind a coordinator write.
#[derive(Default)]
pub(super) struct Coordination {
    owned: Mutex<HashMap<(CoordinatorKind, i32), Owned>>,
    transitions: Mutex<()>,
    generation: AtomicU64,
    replication: OnceLock<CoordinatorReplication>,
    marker_router: OnceLock<Arc<dyn TxnMarkerWriter>>,
    lease: OnceLock<Arc<dyn CoordinatorLease>>,
}

/// Whether a cluster broker may act as a coordinator now: a broker that has not heard from
/// the controller for a whole session may have been fenced, its coordinator partitions led
/// elsewhere, without knowing it yet (it was paused, or cut off from the controller). Until
/// it hears again, its coordinators answer NOT_COORDINATOR instead of serving what they hold
/// in memory, which may be stale (committed offsets read back lower than the new
/// coordinator's).
pub trait CoordinatorLease: Send + Sync + 'static {
    /// True while the broker's view of its coordinator partitions can be trusted.
    fn is_valid(&self) -> bool;
}

impl Broker {
    /// Makes this broker's coordinators write through `replicas` (as leaders of their
    /// partitions, acks=all), waiting on `runtime` for the in-sync replicas. For a broker
    /// opened with [`crate::BrokerConfig::elected_coordinators`]; set once, before any
    /// [`Broker::coordinator_partition_elected`].
    pub fn enable_replicated_coordinators(
        &self,
        replicas: ReplicaManager,
        runtime: tokio::runtime::Handle,
    ) {
        if !self.inner.config.elected_coordinators {
            warn!("replicated coordinators enabled on a broker whose coordinators own every partition");
        }
        let _ = self
            .inner
            .coordination
            .replication
            .set(CoordinatorReplication { replicas, runtime });
    }

    /// Sends the transaction coordinator's markers through `router` (a cluster: each marker
    /// goes to its partition's leader, this broker or another one through `WriteTxnMarkers`).
    /// Set once.
    pub fn set_txn_marker_router(&self, router: Arc<dyn TxnMarkerWriter>) {
        let _ = self.inner.coordination.marker_router.set(router);
    }

    /// Makes this broker's coordinators answer NOT_COORDINATOR whenever `lease` is not valid
    /// (see [`CoordinatorLease`]). Set once, by a cluster node.
    pub fn set_coordinator_lease(&self, lease: Arc<dyn CoordinatorLease>) {
        let _ = self.inner.coordination.lease.set(lease);
    }

    pub(super) fn txn_marker_router(&self) -> Option<Arc<dyn TxnMarkerWriter>> {
        self.inner.coordination.marker_router.get().cloned()
    }

    pub(super) fn coordinator_replication(&self) -> Option<&CoordinatorReplication> {
        self.inner.coordination.replication.get()
    }

    /// The coordinator partition of `key` (a group id or a transactional id).
    pub fn coordinator_partition_for(&self, kind: CoordinatorKind, key: &str) -> i32 {
        match kind {
            CoordinatorKind::Group => self.offsets_partition_for(key),
            CoordinatorKind::Transaction => self.transaction_state_partition_for(key),
        }
    }

    /// Whether this broker coordinates `key` now: `Ok` when it does (always on a single
    /// broker), else [`BrokerError::NotCoordinator`] with NOT_COORDINATOR, or
    /// COORDINATOR_LOAD_IN_PROGRESS while the key's partition is being loaded.
    pub fn coordinates(&self, kind: CoordinatorKind, key: &str) -> Result<()> {
        if !self.inner.config.elected_coordinators {
            return Ok(());
        }
        let partition = self.coordinator_partition_for(kind, key);
        if let Some(lease) = self.inner.coordination.lease.get() {
            if !lease.is_valid() {
                return Err(BrokerError::NotCoordinator(ResponseError::NotCoordinator));
            }
        }
        match self.inner.coordination.owned.lock().get(&(kind, partition)) {
            Some(o) if o.loaded => Ok(()),
            Some(_) => Err(BrokerError::NotCoordinator(
                ResponseError::CoordinatorLoadInProgress,
            )),
            None => Err(BrokerError::NotCoordinator(ResponseError::NotCoordinator)),
        }
    }

    /// The leader epoch of an owned coordinator partition (0 on a single broker, -1 when not
    /// owned): the transaction coordinator's epoch in the markers it writes.
    pub(crate) fn coordinator_epoch_of(&self, kind: CoordinatorKind, partition: i32) -> i32 {
        if !self.inner.config.elected_coordinators {
            return 0;
        }
        self.inner
            .coordination
            .owned
            .lock()
            .get(&(kind, partition))
            .map_or(-1, |o| o.leader_epoch)
    }

    /// This broker became the leader of `partition` of `kind`'s topic in `leader_epoch`
    /// (Kafka's `onElection`): the partition is read on a thread of its own and its state
    /// installed; keys of the partition get COORDINATOR_LOAD_IN_PROGRESS until then. A repeated
    /// call for the same epoch changes nothing.
    pub fn coordinator_partition_elected(
        &self,
        kind: CoordinatorKind,
        partition: i32,
        leader_epoch: i32,
    ) {
        let generation = {
            let mut owned = self.inner.coordination.owned.lock();
            if owned
                .get(&(kind, partition))
                .is_some_and(|o| o.leader_epoch == leader_epoch)
            {
                return;
            }
            let generation = self
                .inner
                .coordination
                .generation
                .fetch_add(1, Ordering::Relaxed);
            owned.insert(
                (kind, partition),
                Owned {
                    leader_epoch,
                    loaded: false,
                    generation,
                },
            );
            generation
        };
        info!(
            topic = kind.topic(),
            partition, leader_epoch, "coordinator partition elected: loading"
        );
        let weak = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name(format!("coordinator-load-{partition}"))
            .spawn(move || {
                if let Some(inner) = weak.upgrade() {
                    let broker = Broker {
                        inner,
                        _guard: None,
                    };
                    broker.load_coordinator_partition(kind, partition, generation);
                }
            });
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start a coordinator load thread; loading inline");
            self.load_coordinator_partition(kind, partition, generation);
        }
    }

    /// This broker no longer leads `partition` of `kind`'s topic (Kafka's `onResignation`):
    /// its keys' state is forgotten and their requests are NOT_COORDINATOR.
    pub fn coordinator_partition_resigned(&self, kind: CoordinatorKind, partition: i32) {
        // Under the transitions lock, so that no load of the same partition interleaves.
        let _transition = self.inner.coordination.transitions.lock();
        if self
            .inner
            .coordination
            .owned
            .lock()
            .remove(&(kind, partition))
            .is_none()
        {
            return;
        }
        info!(
            topic = kind.topic(),
            partition, "coordinator partition resigned: unloading"
        );
        match kind {
            CoordinatorKind::Group => self.unload_offsets_partition(partition),
            CoordinatorKind::Transaction => {
                let n = partition;
                self.inner
                    .txn
                    .unload(|id| self.transaction_state_partition_for(id) == n);
            }
        }
    }

    /// Reads and installs one elected partition (see
    /// [`Broker::coordinator_partition_elected`]); a load overtaken by a resignation or a newer
    /// election installs nothing.
    fn load_coordinator_partition(&self, kind: CoordinatorKind, partition: i32, generation: u64) {
        let started = std::time::Instant::now();
        let coordination = &self.inner.coordination;
        let current = || {
            coordination
                .owned
                .lock()
                .get(&(kind, partition))
                .is_some_and(|o| o.generation == generation)
        };
        let mark_loaded = || {
            if let Some(o) = coordination.owned.lock().get_mut(&(kind, partition)) {
                if o.generation == generation {
                    o.loaded = true;
                }
            }
        };
        let log = match self.log(kind.topic(), partition) {
            Ok(l) => l,
            Err(e) => {
                warn!(topic = kind.topic(), partition, error = %e, "coordinator partition has no local log; not loaded");
                return;
            }
        };
        match kind {
            CoordinatorKind::Group => {
                let state = match scan_offsets_log(&log) {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(partition, error = %e, "loading a partition of {OFFSETS_TOPIC} failed");
                        return;
                    }
                };
                let _transition = coordination.transitions.lock();
                if !current() {
                    return;
                }
                self.install_offsets_partition(partition, state);
                mark_loaded();
            }
            CoordinatorKind::Transaction => {
                let states = match scan_txn_state_log(&log) {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(partition, error = %e, "loading a partition of {TRANSACTION_STATE_TOPIC} failed");
                        return;
                    }
                };
                {
                    let _transition = coordination.transitions.lock();
                    if !current() {
                        return;
                    }
                    let n = partition;
                    self.inner
                        .txn
                        .unload(|id| self.transaction_state_partition_for(id) == n);
                    self.inner.txn.load_more(states);
                    mark_loaded();
                }
                // What the previous coordinator prepared gets its markers now (and from the
                // background thread's retries if that fails).
                self.inner.txn.complete_prepared(now_ms());
            }
        }
        info!(
            topic = kind.topic(),
            partition,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "coordinator partition loaded"
        );
    }

    /// Appends a batch of coordinator records to `partition` of `kind`'s topic: straight to
    /// the local log on a single broker; in a cluster as the partition's leader with acks=all,
    /// returning once the in-sync replicas have it ([`BrokerError::CoordinatorWrite`] when
    /// leadership moved, the in-sync replicas are too few, or they did not follow within
    /// `offsets.commit.timeout.ms`).
    pub(super) fn append_coordinator_batch(
        &self,
        kind: CoordinatorKind,
        partition: i32,
        batch: &mut [u8],
    ) -> Result<AppendInfo> {
        let log = self.log(kind.topic(), partition)?;
        let Some(replication) = self.coordinator_replication() else {
            return log.append(batch, AppendOrigin::Internal, now_ms());
        };
        let tp = TopicPartition::new(kind.topic(), partition);
        let min_isr = i32::try_from(log.config().min_insync_replicas).unwrap_or(1);
        let (epoch, info) = replication
            .replicas
            .append_as_leader(&tp, batch, AppendOrigin::Internal, -1, min_isr)
            .map_err(|code| BrokerError::CoordinatorWrite { code })?;
        self.wait_for_replication(replication, &tp, epoch, info.last_offset + 1, min_isr)?;
        Ok(info)
    }

    /// Waits until the high watermark of `tp` reaches `required_offset` (acks=all).
    pub(super) fn wait_for_replication(
        &self,
        replication: &CoordinatorReplication,
        tp: &TopicPartition,
        leader_epoch: i32,
        required_offset: i64,
        min_isr: i32,
    ) -> Result<()> {
        let wait = replication.replicas.wait_for_acks(
            tp,
            leader_epoch,
            required_offset,
            min_isr,
            self.inner.config.offsets_commit_timeout,
        );
        let code = block_on(&replication.runtime, wait)?;
        if code == 0 {
            Ok(())
        } else {
            Err(BrokerError::CoordinatorWrite { code })
        }
    }
}

/// Runs `fut` to completion on `runtime` from synchronous code: on a thread outside the
/// runtime directly, on a worker of a multi-thread runtime after handing its other tasks to
/// another worker (`block_in_place`). A current-thread runtime cannot be blocked: that is a
/// REQUEST_TIMED_OUT write rather than a deadlock.
fn block_on<F: Future>(runtime: &tokio::runtime::Handle, fut: F) -> Result<F::Output> {
    match tokio::runtime::Handle::try_current() {
        Err(_) => Ok(runtime.block_on(fut)),
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            Ok(tokio::task::block_in_place(|| runtime.block_on(fut)))
        }
        Ok(_) => {
            warn!("a replicated coordinator write cannot wait on a current-thread runtime");
            Err(BrokerError::CoordinatorWrite {
                code: ResponseError::RequestTimedOut.code(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::BrokerConfig;

    fn elected_broker(dir: &std::path::Path) -> Broker {
        let mut c = BrokerConfig::new(dir);
        c.cleaner_interval = None;
        c.offsets_topic_num_partitions = 3;
        c.transaction_state_log_num_partitions = 3;
        c.elected_coordinators = true;
        Broker::open(c).unwrap()
    }

    struct Switch(std::sync::atomic::AtomicBool);

    impl CoordinatorLease for Switch {
        fn is_valid(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// A broker whose lease ran out (it has not heard from the controller for a session, so
    /// another broker may coordinate its keys by now) answers NOT_COORDINATOR for the
    /// partitions it still believes it owns, and coordinates them again once renewed.
    #[test]
    fn an_expired_lease_makes_owned_partitions_not_coordinator() {
        let dir = tempfile::tempdir().unwrap();
        let broker = elected_broker(dir.path());
        let lease = Arc::new(Switch(std::sync::atomic::AtomicBool::new(true)));
        broker.set_coordinator_lease(Arc::clone(&lease) as Arc<dyn CoordinatorLease>);
        let group = "g";
        let partition = broker.coordinator_partition_for(CoordinatorKind::Group, group);
        broker
            .create_topic(
                crate::NewTopic::new(OFFSETS_TOPIC, 3).config("cleanup.policy", "compact"),
            )
            .unwrap();
        broker.coordinator_partition_elected(CoordinatorKind::Group, partition, 1);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while broker.coordinates(CoordinatorKind::Group, group).is_err() {
            assert!(std::time::Instant::now() < deadline, "never loaded");
            std::thread::sleep(Duration::from_millis(10));
        }
        lease.0.store(false, Ordering::SeqCst);
        assert!(matches!(
            broker.coordinates(CoordinatorKind::Group, group),
            Err(BrokerError::NotCoordinator(ResponseError::NotCoordinator))
        ));
        lease.0.store(true, Ordering::SeqCst);
        assert!(broker.coordinates(CoordinatorKind::Group, group).is_ok());
    }

    /// A resignation that waits for the group coordinator (here: its committed offsets held
    /// by another thread, as a replicated group write holds them for up to
    /// `offsets.commit.timeout.ms`) must not make request handlers asking `coordinates` wait
    /// too: they run on the runtime's threads, which that write needs to complete (the
    /// deadlock the fault soak found).
    #[test]
    fn coordinates_never_waits_behind_a_resignation_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let broker = elected_broker(dir.path());
        let group = "g";
        let partition = broker.coordinator_partition_for(CoordinatorKind::Group, group);
        broker.coordinator_partition_elected(CoordinatorKind::Group, partition, 3);
        let busy = broker.inner.committed.read();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (answer_tx, answer_rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let _ = started_tx.send(());
                broker.coordinator_partition_resigned(CoordinatorKind::Group, partition);
            });
            started_rx.recv().unwrap();
            // Let the resignation reach the unload, which waits for `busy`.
            std::thread::sleep(Duration::from_millis(200));
            scope.spawn(|| {
                let _ = answer_tx.send(broker.coordinates(CoordinatorKind::Group, group));
            });
            let answer = answer_rx.recv_timeout(Duration::from_secs(10));
            drop(busy);
            let answer = answer.expect("coordinates waited behind the resignation");
            // Either answer is right at that instant; what matters is that it came.
            assert!(matches!(
                answer,
                Ok(()) | Err(BrokerError::NotCoordinator(_))
            ));
        });
        // Once resigned, the group is NOT_COORDINATOR here.
        assert!(matches!(
            broker.coordinates(CoordinatorKind::Group, group),
            Err(BrokerError::NotCoordinator(ResponseError::NotCoordinator))
        ));
    }
}

//! Tests: the pure state machine, the acks=all purgatory, and two or three replica managers
//! over in-memory logs wired directly to each other.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use parking_lot::Mutex;
use uuid::Uuid;

use super::state::ISR_PROPOSAL_BACKOFF_MS;
use super::*;
use crate::client::ClientError;
use crate::record::{encode_batch, BatchSpec, Record};
use crate::{BrokerError, Result};

// ---------------------------------------------------------------- in-memory log

/// (base offset, last offset, epoch, bytes) of one stored batch.
type MemBatch = (i64, i64, i32, Vec<u8>);

#[derive(Default)]
struct MemInner {
    start: i64,
    /// (base offset, last offset, epoch, bytes)
    batches: Vec<MemBatch>,
    hw: i64,
    epochs: Vec<(i32, i64)>,
}

impl MemInner {
    fn leo(&self) -> i64 {
        self.batches.last().map_or(self.start, |b| b.1 + 1)
    }
    fn assign_epoch(&mut self, epoch: i32, start: i64) {
        if self.epochs.last().is_none_or(|&(e, _)| e < epoch) {
            self.epochs.push((epoch, start));
        }
    }
}

/// A faithful simple log: whole batches in a Vec, an epoch cache with Kafka's `endOffsetFor`.
#[derive(Default)]
struct MemLog {
    inner: Mutex<MemInner>,
}

fn parse_batches(bytes: &[u8]) -> Result<Vec<MemBatch>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let b = &bytes[pos..];
        if b.len() < 61 {
            return Err(BrokerError::InvalidRecord("short batch".into()));
        }
        let base = i64::from_be_bytes(b[0..8].try_into().unwrap());
        let len = i32::from_be_bytes(b[8..12].try_into().unwrap()) as usize + 12;
        let epoch = i32::from_be_bytes(b[12..16].try_into().unwrap());
        let delta = i32::from_be_bytes(b[23..27].try_into().unwrap());
        out.push((base, base + i64::from(delta), epoch, b[..len].to_vec()));
        pos += len;
    }
    Ok(out)
}

impl MemLog {
    fn dump(&self) -> Vec<MemBatch> {
        self.inner.lock().batches.clone()
    }
    fn epochs(&self) -> Vec<(i32, i64)> {
        self.inner.lock().epochs.clone()
    }
}

impl ReplicaLog for MemLog {
    fn log_start_offset(&self) -> i64 {
        self.inner.lock().start
    }
    fn log_end_offset(&self) -> i64 {
        self.inner.lock().leo()
    }
    fn high_watermark(&self) -> i64 {
        self.inner.lock().hw
    }
    fn set_high_watermark(&self, hw: i64) -> Result<()> {
        let mut i = self.inner.lock();
        let hw = hw.clamp(i.start, i.leo());
        if hw > i.hw {
            i.hw = hw;
        }
        Ok(())
    }
    fn append_with_epoch(
        &self,
        batches: &mut [u8],
        _origin: AppendOrigin,
        _now_ms: i64,
        leader_epoch: i32,
    ) -> Result<AppendInfo> {
        let mut i = self.inner.lock();
        let parsed = parse_batches(batches)?;
        let base_offset = i.leo();
        let mut next = base_offset;
        for (_, last, _, mut b) in parsed.into_iter().map(|(b0, l, e, b)| (b0, l - b0, e, b)) {
            b[0..8].copy_from_slice(&next.to_be_bytes());
            b[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
            i.assign_epoch(leader_epoch, next);
            i.batches.push((next, next + last, leader_epoch, b));
            next += last + 1;
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time: -1,
            log_start_offset: i.start,
            duplicate: false,
        })
    }
    fn append_as_follower(&self, batches: &[u8]) -> Result<AppendInfo> {
        let mut i = self.inner.lock();
        let parsed = parse_batches(batches)?;
        let Some(first) = parsed.first() else {
            return Err(BrokerError::InvalidRecord("no batches".into()));
        };
        if first.0 != i.leo() {
            return Err(BrokerError::InvalidRecord(format!(
                "follower append at {} but log end is {}",
                first.0,
                i.leo()
            )));
        }
        let base_offset = first.0;
        let mut last_offset = base_offset;
        for b in parsed {
            i.assign_epoch(b.2, b.0);
            last_offset = b.1;
            i.batches.push(b);
        }
        Ok(AppendInfo {
            base_offset,
            last_offset,
            log_append_time: -1,
            log_start_offset: i.start,
            duplicate: false,
        })
    }
    fn read_for_replica(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        let i = self.inner.lock();
        let mut out = Vec::new();
        for b in i.batches.iter().filter(|b| b.1 >= offset) {
            if !out.is_empty() && out.len() + b.3.len() > max_bytes {
                break;
            }
            out.extend_from_slice(&b.3);
        }
        Ok(Bytes::from(out))
    }
    fn truncate_to(&self, offset: i64) -> Result<()> {
        let mut i = self.inner.lock();
        i.batches.retain(|b| b.1 < offset);
        let leo = i.leo();
        i.epochs.retain(|e| e.1 < leo);
        i.hw = i.hw.min(leo);
        Ok(())
    }
    fn truncate_fully_and_start_at(&self, offset: i64) -> Result<()> {
        let mut i = self.inner.lock();
        i.batches.clear();
        i.epochs.clear();
        i.start = offset;
        i.hw = offset;
        Ok(())
    }
    fn latest_epoch(&self) -> Option<i32> {
        self.inner.lock().epochs.last().map(|e| e.0)
    }
    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let i = self.inner.lock();
        if epoch < 0 {
            return None;
        }
        if i.epochs.last().is_some_and(|e| e.0 == epoch) {
            return Some((epoch, i.leo()));
        }
        let higher = i.epochs.iter().find(|e| e.0 > epoch)?;
        match i.epochs.iter().rev().find(|e| e.0 <= epoch) {
            None => Some((epoch, higher.1)),
            Some(floor) => Some((floor.0, higher.1)),
        }
    }
}

fn batch(n: usize, tag: &str) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|k| Record {
            offset: k as i64,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(format!("{tag}-{k}"))),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&BatchSpec::default(), &records).unwrap()
}

// ---------------------------------------------------------------- pure state machine

fn reg(
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: &[i32],
    isr: &[i32],
) -> PartitionRegistration {
    PartitionRegistration {
        leader,
        leader_epoch,
        partition_epoch,
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
    }
}

const LAG: i64 = 30_000;

#[test]
fn hw_is_min_leo_over_isr_and_waits_for_unknown_followers() {
    let mut s = PartitionState::new(1);
    assert_eq!(
        s.apply(&reg(1, 5, 10, &[1, 2, 3], &[1, 2, 3]), 100, 1000),
        Transition::Leader { new_epoch: true }
    );
    // Followers' LEOs are unknown after becoming leader: the HW candidate is -1.
    assert_eq!(s.high_watermark_candidate(100, 1000, LAG), Some(-1));
    assert_eq!(s.update_follower_fetch(2, 100, 0, 100, 90, 1100), None);
    assert_eq!(s.high_watermark_candidate(100, 1100, LAG), Some(-1));
    assert_eq!(s.update_follower_fetch(3, 95, 0, 100, 90, 1100), None);
    assert_eq!(s.high_watermark_candidate(100, 1100, LAG), Some(95));
    assert_eq!(s.update_follower_fetch(3, 100, 0, 100, 95, 1200), None);
    assert_eq!(s.high_watermark_candidate(100, 1200, LAG), Some(100));
    // A replica out of the ISR and not caught up does not hold the HW back.
    let mut s = PartitionState::new(1);
    s.apply(&reg(1, 5, 10, &[1, 2, 3], &[1, 2]), 100, 1000);
    s.update_follower_fetch(2, 100, 0, 100, 0, 1000);
    assert_eq!(s.high_watermark_candidate(100, 50_000, LAG), Some(100));
}

#[test]
fn caught_up_non_isr_follower_holds_the_hw_until_it_joins() {
    let mut s = PartitionState::new(1);
    s.apply(&reg(1, 1, 1, &[1, 2], &[1]), 10, 1000);
    // Follower 2 fetches at the leader's LEO at t=1000: it is caught up.
    s.update_follower_fetch(2, 10, 0, 10, 10, 1000);
    // It reached the HW: an expansion is proposed; the controller does not attempt it.
    let p = s.maybe_expand_isr(2, 10, 1000);
    assert_eq!(p, None, "already pending");
    let pending = match &s.leader().unwrap().isr {
        IsrState::PendingExpand { proposal, .. } => *proposal,
        other => panic!("{other:?}"),
    };
    s.complete_isr_change(
        pending,
        &Err(ResponseError::OperationNotAttempted.code()),
        1000,
    );
    // The leader appends; follower 2 (caught up within the lag) holds the HW at 10.
    assert_eq!(s.high_watermark_candidate(20, 1500, LAG), Some(10));
    // Long after, it is no longer caught up and stops holding the HW.
    assert_eq!(
        s.high_watermark_candidate(20, 1000 + LAG + 1, LAG),
        Some(20)
    );
}

#[test]
fn isr_expands_when_follower_reaches_hw_and_epoch_start() {
    let mut s = PartitionState::new(1);
    s.apply(&reg(1, 3, 7, &[1, 2, 3], &[1, 2]), 50, 0);
    // Below the HW (40): no expansion.
    assert_eq!(s.update_follower_fetch(3, 30, 0, 60, 40, 10), None);
    // At the HW but below the epoch start offset (50): no expansion.
    assert_eq!(s.update_follower_fetch(3, 45, 0, 60, 40, 20), None);
    let p = s
        .update_follower_fetch(3, 50, 0, 60, 40, 30)
        .expect("expansion");
    assert_eq!(p.new_isr, vec![1, 2, 3]);
    assert_eq!((p.leader_epoch, p.partition_epoch), (3, 7));
    let l = s.leader().unwrap();
    assert!(matches!(l.isr, IsrState::PendingExpand { adding: 3, .. }));
    assert_eq!(l.isr.isr(), &[1, 2]);
    assert_eq!(l.isr.maximal_isr(), vec![1, 2, 3]);
    // The maximal ISR holds the HW: follower 3 at 50.
    s.update_follower_fetch(2, 60, 0, 60, 40, 40);
    assert_eq!(s.high_watermark_candidate(60, 40, LAG), Some(50));
    // One change at a time: no shrink, no second expansion while pending.
    assert_eq!(s.maybe_shrink_isr(60, 10_000_000, LAG), None);
    // A stale proposal id is ignored; the real answer commits.
    assert!(!s.complete_isr_change(
        p.id + 100,
        &Ok(CommittedIsr {
            leader_epoch: 3,
            isr: vec![1, 2, 3],
            partition_epoch: 8
        }),
        50,
    ));
    assert!(s.complete_isr_change(
        p.id,
        &Ok(CommittedIsr {
            leader_epoch: 3,
            isr: vec![1, 2, 3],
            partition_epoch: 8
        }),
        50,
    ));
    let l = s.leader().unwrap();
    assert_eq!(l.isr, IsrState::Committed { isr: vec![1, 2, 3] });
    assert_eq!(l.partition_epoch, 8);
}

#[test]
fn isr_shrinks_after_lag_time_and_errors_revert_or_keep_pending() {
    let mut s = PartitionState::new(1);
    s.apply(&reg(1, 1, 1, &[1, 2, 3], &[1, 2, 3]), 0, 0);
    s.update_follower_fetch(2, 0, 0, 0, 0, 100);
    s.update_follower_fetch(3, 0, 0, 0, 0, 100);
    // Leader appends to 10; follower 2 keeps up, follower 3 stops fetching.
    s.update_follower_fetch(2, 10, 0, 10, 0, 5_000);
    assert_eq!(s.out_of_sync_replicas(10, 20_000, LAG), Vec::<i32>::new());
    assert_eq!(s.out_of_sync_replicas(10, 100 + LAG + 1, LAG), vec![3]);
    let p = s.maybe_shrink_isr(10, 100 + LAG + 1, LAG).expect("shrink");
    assert_eq!(p.new_isr, vec![1, 2]);
    // While the shrink is pending, the maximal ISR is the old one.
    assert_eq!(s.leader().unwrap().isr.maximal_isr(), vec![1, 2, 3]);
    // INELIGIBLE_REPLICA-like errors: back to the committed ISR; proposed again later.
    let refused_at = 100 + LAG + 1;
    assert!(!s.complete_isr_change(
        p.id,
        &Err(ResponseError::OperationNotAttempted.code()),
        refused_at
    ));
    assert_eq!(
        s.leader().unwrap().isr,
        IsrState::Committed { isr: vec![1, 2, 3] }
    );
    // Not before the back-off after a refusal.
    assert_eq!(
        s.maybe_shrink_isr(10, refused_at + ISR_PROPOSAL_BACKOFF_MS - 1, LAG),
        None
    );
    let p = s
        .maybe_shrink_isr(10, refused_at + ISR_PROPOSAL_BACKOFF_MS, LAG)
        .expect("shrink again");
    // FENCED_LEADER_EPOCH keeps it pending until new metadata.
    s.complete_isr_change(
        p.id,
        &Err(ResponseError::FencedLeaderEpoch.code()),
        refused_at + ISR_PROPOSAL_BACKOFF_MS,
    );
    assert!(s.leader().unwrap().isr.is_inflight());
    // New metadata (same leader epoch, newer partition epoch) replaces the pending state.
    assert_eq!(
        s.apply(&reg(1, 1, 2, &[1, 2, 3], &[1, 2]), 10, 40_000),
        Transition::Leader { new_epoch: false }
    );
    assert_eq!(
        s.leader().unwrap().isr,
        IsrState::Committed { isr: vec![1, 2] }
    );
    // Follower state survived (same epoch): follower 2 still at 10.
    assert_eq!(s.leader().unwrap().followers[&2].log_end_offset, 10);
}

#[test]
fn slow_follower_that_reads_up_to_an_older_leo_counts_as_caught_up() {
    let mut s = PartitionState::new(1);
    s.apply(&reg(1, 1, 1, &[1, 2], &[1, 2]), 0, 0);
    // Each fetch reaches the LEO the leader had at the previous fetch.
    let mut leo = 10;
    let mut t = 0;
    for _ in 0..10 {
        s.update_follower_fetch(2, leo - 10, 0, leo, 0, t);
        leo += 10;
        t += 10_000;
    }
    assert!(s.out_of_sync_replicas(leo, t, LAG).is_empty());
}

#[test]
fn stale_registrations_are_ignored_and_epochs_checked() {
    let mut s = PartitionState::new(2);
    assert_eq!(
        s.apply(&reg(1, 4, 9, &[1, 2], &[1, 2]), 0, 0),
        Transition::Follower { changed: true }
    );
    assert_eq!(
        s.apply(&reg(2, 3, 12, &[1, 2], &[2]), 0, 0),
        Transition::Stale
    );
    assert_eq!(
        s.apply(&reg(2, 5, 8, &[1, 2], &[2]), 0, 0),
        Transition::Stale
    );
    assert_eq!(
        s.apply(&reg(1, 4, 9, &[1, 2], &[1, 2]), 0, 0),
        Transition::Unchanged { leader: false }
    );
    assert_eq!(
        s.check_epoch(Some(3), false),
        Err(ResponseError::FencedLeaderEpoch.code())
    );
    assert_eq!(
        s.check_epoch(Some(5), false),
        Err(ResponseError::UnknownLeaderEpoch.code())
    );
    assert_eq!(s.check_epoch(Some(4), false), Ok(()));
    assert_eq!(
        s.check_epoch(Some(4), true),
        Err(ResponseError::NotLeaderOrFollower.code())
    );
    assert_eq!(
        s.check_append(1, 1),
        Err(ResponseError::NotLeaderOrFollower.code())
    );
    assert_eq!(
        s.apply(&reg(2, 5, 10, &[1, 2], &[2]), 0, 0),
        Transition::Leader { new_epoch: true }
    );
    assert_eq!(
        s.check_follower_fetch(3, Some(5)),
        Err(ResponseError::UnknownLeaderEpoch.code())
    );
    assert_eq!(
        s.check_follower_fetch(3, None),
        Err(ResponseError::NotLeaderOrFollower.code())
    );
    assert_eq!(s.check_follower_fetch(1, Some(5)), Ok(()));
    assert_eq!(
        s.apply(&reg(1, 6, 11, &[1, 3], &[1, 3]), 0, 0),
        Transition::Stopped
    );
    assert_eq!(
        s.check_epoch(None, false),
        Err(ResponseError::NotLeaderOrFollower.code())
    );
}

#[test]
fn acks_checks() {
    let mut s = PartitionState::new(1);
    s.apply(&reg(1, 2, 2, &[1, 2, 3], &[1]), 0, 0);
    assert_eq!(
        s.check_append(-1, 2),
        Err(ResponseError::NotEnoughReplicas.code())
    );
    assert_eq!(s.check_append(1, 2), Ok(2));
    // min.insync.replicas above the replication factor is capped (effectiveMinIsr).
    let mut t = PartitionState::new(1);
    t.apply(&reg(1, 2, 2, &[1], &[1]), 0, 0);
    assert_eq!(t.check_append(-1, 3), Ok(2));
    s.apply(&reg(1, 2, 3, &[1, 2, 3], &[1, 2]), 0, 0);
    assert_eq!(s.check_append(-1, 2), Ok(2));
    assert_eq!(s.check_acks(2, 10, 9, 2), AcksCheck::Wait);
    assert_eq!(s.check_acks(2, 10, 10, 2), AcksCheck::Done(0));
    assert_eq!(
        s.check_acks(1, 10, 10, 2),
        AcksCheck::Done(ResponseError::NotLeaderOrFollower.code())
    );
    s.apply(&reg(1, 2, 4, &[1, 2, 3], &[1]), 0, 0);
    assert_eq!(
        s.check_acks(2, 10, 10, 2),
        AcksCheck::Done(ResponseError::NotEnoughReplicasAfterAppend.code())
    );
}

// ---------------------------------------------------------------- managers wired in-process

/// Routes a fetcher's requests straight into another manager.
#[derive(Default)]
struct Directory {
    managers: Mutex<HashMap<i32, Weak<super::Inner>>>,
    down: Mutex<Vec<i32>>,
}

struct DirectEndpoint {
    dir: Arc<Directory>,
    leader: i32,
}

impl DirectEndpoint {
    fn target(&self) -> std::result::Result<ReplicaManager, ClientError> {
        let unreachable = || ClientError::Io {
            address: format!("broker-{}", self.leader),
            source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "down"),
        };
        if self.dir.down.lock().contains(&self.leader) {
            return Err(unreachable());
        }
        let inner = self
            .dir
            .managers
            .lock()
            .get(&self.leader)
            .and_then(Weak::upgrade)
            .ok_or_else(unreachable)?;
        Ok(ReplicaManager { inner })
    }
}

impl LeaderEndpoint for DirectEndpoint {
    fn fetch(
        &self,
        request: FetchRequest,
    ) -> BoxFuture<'_, std::result::Result<FetchResponse, ClientError>> {
        Box::pin(async move {
            let rm = self.target()?;
            Ok(rm.handle_replica_fetch(request).await)
        })
    }
    fn offset_for_leader_epoch(
        &self,
        request: OffsetForLeaderEpochRequest,
    ) -> BoxFuture<'_, std::result::Result<OffsetForLeaderEpochResponse, ClientError>> {
        Box::pin(async move {
            let rm = self.target()?;
            let mut resp = OffsetForLeaderEpochResponse::default();
            for t in request.topics {
                let mut tr = OffsetForLeaderTopicResult::default();
                tr.topic = t.topic.clone();
                for p in t.partitions {
                    let tp = TopicPartition::new(t.topic.0.as_str(), p.partition);
                    let mut e = EpochEndOffset::default();
                    e.partition = p.partition;
                    match rm.check_leader(&tp, Some(p.current_leader_epoch), true) {
                        Err(c) => e.error_code = c,
                        Ok(()) => {
                            let (le, end) = rm
                                .partition(&tp)
                                .and_then(|q| q.log.end_offset_for_epoch(p.leader_epoch))
                                .unwrap_or((-1, -1));
                            e.leader_epoch = le;
                            e.end_offset = end;
                        }
                    }
                    tr.partitions.push(e);
                }
                resp.topics.push(tr);
            }
            Ok(resp)
        })
    }
    fn list_offsets(
        &self,
        request: ListOffsetsRequest,
    ) -> BoxFuture<'_, std::result::Result<ListOffsetsResponse, ClientError>> {
        Box::pin(async move {
            let rm = self.target()?;
            let mut resp = ListOffsetsResponse::default();
            for t in request.topics {
                let mut tr = ListOffsetsTopicResponse::default();
                tr.name = t.name.clone();
                for p in t.partitions {
                    let tp = TopicPartition::new(t.name.0.as_str(), p.partition_index);
                    let mut pr = ListOffsetsPartitionResponse::default();
                    pr.partition_index = p.partition_index;
                    match (
                        rm.check_leader(&tp, Some(p.current_leader_epoch), true),
                        rm.partition(&tp),
                    ) {
                        (Ok(()), Some(q)) => {
                            pr.offset = if p.timestamp == -2 {
                                q.log.log_start_offset()
                            } else {
                                q.log.log_end_offset()
                            };
                        }
                        (Err(c), _) => pr.error_code = c,
                        (_, None) => pr.error_code = ResponseError::UnknownTopicOrPartition.code(),
                    }
                    tr.partitions.push(pr);
                }
                resp.topics.push(tr);
            }
            Ok(resp)
        })
    }
}

impl LeaderEndpointFactory for Arc<Directory> {
    fn endpoint(&self, leader_id: i32) -> Arc<dyn LeaderEndpoint> {
        Arc::new(DirectEndpoint {
            dir: self.clone(),
            leader: leader_id,
        })
    }
}

/// A tiny in-test controller: commits every ISR proposal that matches its partition epoch.
#[derive(Default)]
struct Controller {
    regs: Mutex<HashMap<TopicPartition, PartitionRegistration>>,
    proposals: Mutex<Vec<Vec<i32>>>,
}

struct Sink(Arc<Controller>);

impl AlterPartitionSink for Sink {
    fn alter_partition(
        &self,
        tp: TopicPartition,
        _topic_id: Uuid,
        proposal: IsrProposal,
    ) -> BoxFuture<'static, IsrChangeResult> {
        let c = self.0.clone();
        Box::pin(async move {
            c.proposals.lock().push(proposal.new_isr.clone());
            let mut regs = c.regs.lock();
            let Some(r) = regs.get_mut(&tp) else {
                return Err(ResponseError::UnknownTopicOrPartition.code());
            };
            if r.leader_epoch != proposal.leader_epoch {
                return Err(ResponseError::FencedLeaderEpoch.code());
            }
            if r.partition_epoch != proposal.partition_epoch {
                return Err(ResponseError::InvalidUpdateVersion.code());
            }
            r.isr = proposal.new_isr.clone();
            r.partition_epoch += 1;
            Ok(CommittedIsr {
                leader_epoch: r.leader_epoch,
                isr: r.isr.clone(),
                partition_epoch: r.partition_epoch,
            })
        })
    }
}

struct Cluster {
    dir: Arc<Directory>,
    controller: Arc<Controller>,
    managers: HashMap<i32, ReplicaManager>,
    logs: HashMap<i32, Arc<MemLog>>,
    clock: Arc<AtomicI64>,
    tp: TopicPartition,
    topic_id: Uuid,
}

impl Cluster {
    fn new(ids: &[i32]) -> Self {
        let dir = Arc::new(Directory::default());
        let controller = Arc::new(Controller::default());
        let clock = Arc::new(AtomicI64::new(1_000_000));
        let mut managers = HashMap::new();
        let mut logs = HashMap::new();
        for &id in ids {
            let mut cfg = ReplicaConfig::new(id);
            cfg.replica_fetch_backoff_ms = 20;
            cfg.replica_fetch_wait_max_ms = 100;
            cfg.replica_fetch_max_bytes = 300;
            let c = clock.clone();
            let rm = ReplicaManager::with_clock(
                cfg,
                Some(Arc::new(Sink(controller.clone()))),
                Arc::new(dir.clone()),
                Arc::new(move || c.load(Ordering::SeqCst)),
            );
            dir.managers.lock().insert(id, Arc::downgrade(&rm.inner));
            managers.insert(id, rm);
            logs.insert(id, Arc::new(MemLog::default()));
        }
        Cluster {
            dir,
            controller,
            managers,
            logs,
            clock,
            tp: TopicPartition::new("t", 0),
            topic_id: Uuid::new_v4(),
        }
    }

    /// Publishes a registration to the controller and every live broker.
    fn publish(&self, r: PartitionRegistration) {
        self.controller
            .regs
            .lock()
            .insert(self.tp.clone(), r.clone());
        let down = self.dir.down.lock().clone();
        for (id, rm) in &self.managers {
            if !down.contains(id) {
                rm.apply_partition_state(&self.tp, self.topic_id, self.logs[id].clone(), &r);
            }
        }
    }

    fn current(&self) -> PartitionRegistration {
        self.controller.regs.lock()[&self.tp].clone()
    }

    async fn produce(
        &self,
        leader: i32,
        n: usize,
        tag: &str,
        acks: i16,
        timeout: Duration,
    ) -> ProduceOutcome {
        let mut b = batch(n, tag);
        self.managers[&leader]
            .append_records(&self.tp, &mut b, AppendOrigin::Client, acks, 2, timeout)
            .await
    }

    async fn wait_until(&self, what: &str, mut f: impl FnMut(&Cluster) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !f(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_catch_up_isr_expands_and_acks_all_completes() {
    let c = Cluster::new(&[1, 2, 3]);
    // Leader 1 with only itself in the ISR; 2 and 3 must catch up and join.
    c.publish(reg(1, 1, 1, &[1, 2, 3], &[1]));
    for k in 0..10 {
        let out = c.produce(1, 3, &format!("a{k}"), 1, T).await;
        assert_eq!(out.error_code, 0);
    }
    c.wait_until("ISR expansion to 3", |c| c.current().isr.len() == 3)
        .await;
    // The controller's commits went through one change at a time.
    let proposals = c.controller.proposals.lock().clone();
    assert!(proposals.iter().all(|p| p.len() <= 3), "{proposals:?}");
    // Republish as the cluster layer would (partition epoch from the controller).
    c.publish(c.current());
    let out = c.produce(1, 2, "all", -1, T).await;
    assert_eq!(out.error_code, 0, "acks=all");
    let last = out.info.unwrap().last_offset;
    assert_eq!(last, 31);
    assert!(c.logs[&1].high_watermark() > last);
    c.wait_until("followers identical", |c| {
        c.logs[&2].dump() == c.logs[&1].dump() && c.logs[&3].dump() == c.logs[&1].dump()
    })
    .await;
    c.wait_until("follower HW", |c| {
        c.logs[&2].high_watermark() == 32 && c.logs[&3].high_watermark() == 32
    })
    .await;
    for m in c.managers.values() {
        m.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_refused_below_min_isr_times_out_and_fails_on_leadership_loss() {
    let c = Cluster::new(&[1, 2]);
    c.dir.down.lock().push(2);
    c.publish(reg(1, 1, 1, &[1, 2], &[1]));
    // ISR {1} < min.insync.replicas 2: refused before the append.
    let out = c.produce(1, 1, "x", -1, T).await;
    assert_eq!(out.error_code, ResponseError::NotEnoughReplicas.code());
    assert_eq!(c.logs[&1].log_end_offset(), 0);
    // ISR {1,2} but broker 2 is down: appended, then times out.
    c.publish(reg(1, 1, 2, &[1, 2], &[1, 2]));
    let out = c.produce(1, 1, "y", -1, Duration::from_millis(200)).await;
    assert_eq!(out.error_code, ResponseError::RequestTimedOut.code());
    assert_eq!(c.logs[&1].log_end_offset(), 1);
    // Leadership lost while waiting: NOT_LEADER_OR_FOLLOWER.
    let rm = c.managers[&1].clone();
    let tp = c.tp.clone();
    let waiting = tokio::spawn(async move {
        let mut b = batch(1, "z");
        rm.append_records(
            &tp,
            &mut b,
            AppendOrigin::Client,
            -1,
            2,
            Duration::from_secs(30),
        )
        .await
    });
    c.wait_until("append", |c| c.logs[&1].log_end_offset() == 2)
        .await;
    c.managers[&1].apply_partition_state(
        &c.tp,
        c.topic_id,
        c.logs[&1].clone(),
        &reg(2, 2, 3, &[1, 2], &[2]),
    );
    let out = waiting.await.unwrap();
    assert_eq!(out.error_code, ResponseError::NotLeaderOrFollower.code());
    for m in c.managers.values() {
        m.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isr_shrink_after_lag_completes_waiting_produce_with_not_enough_replicas_after_append() {
    let c = Cluster::new(&[1, 2]);
    c.publish(reg(1, 1, 1, &[1, 2], &[1, 2]));
    let out = c.produce(1, 1, "a", -1, T).await;
    assert_eq!(out.error_code, 0);
    // Broker 2 stops; a produce waits; the lag time passes; the ISR shrinks to {1}; the HW
    // moves and the produce completes with NOT_ENOUGH_REPLICAS_AFTER_APPEND.
    c.dir.down.lock().push(2);
    c.managers[&2].shutdown();
    let rm = c.managers[&1].clone();
    let tp = c.tp.clone();
    let waiting = tokio::spawn(async move {
        let mut b = batch(1, "b");
        rm.append_records(
            &tp,
            &mut b,
            AppendOrigin::Client,
            -1,
            2,
            Duration::from_secs(30),
        )
        .await
    });
    c.wait_until("append", |c| c.logs[&1].log_end_offset() == 2)
        .await;
    c.managers[&1].maybe_shrink_isrs();
    assert_eq!(c.current().isr, vec![1, 2], "not yet lagging");
    c.clock.fetch_add(LAG + 1, Ordering::SeqCst);
    c.managers[&1].maybe_shrink_isrs();
    let out = waiting.await.unwrap();
    assert_eq!(
        out.error_code,
        ResponseError::NotEnoughReplicasAfterAppend.code()
    );
    assert_eq!(c.current().isr, vec![1]);
    for m in c.managers.values() {
        m.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn divergent_old_leader_is_truncated_and_logs_end_identical() {
    for truncate_on_fetch in [true, false] {
        let mut c = Cluster::new(&[1, 2, 3]);
        if !truncate_on_fetch {
            for (id, rm) in c.managers.iter_mut() {
                let mut cfg = rm.inner.config.clone();
                cfg.truncate_on_fetch = false;
                let clock = c.clock.clone();
                *rm = ReplicaManager::with_clock(
                    cfg,
                    Some(Arc::new(Sink(c.controller.clone()))),
                    Arc::new(c.dir.clone()),
                    Arc::new(move || clock.load(Ordering::SeqCst)),
                );
                c.dir.managers.lock().insert(*id, Arc::downgrade(&rm.inner));
            }
        }
        c.publish(reg(1, 1, 1, &[1, 2, 3], &[1, 2, 3]));
        for k in 0..4 {
            assert_eq!(c.produce(1, 2, &format!("c{k}"), -1, T).await.error_code, 0);
        }
        // Leader 1 is cut off and takes writes nobody else gets (acks=1).
        c.dir.down.lock().push(1);
        // Stop the followers' fetches that may be in flight to it.
        c.managers[&2].shutdown();
        c.managers[&3].shutdown();
        for k in 0..3 {
            assert_eq!(
                c.produce(1, 2, &format!("lost{k}"), 1, T).await.error_code,
                0
            );
        }
        assert_eq!(c.logs[&1].log_end_offset(), 14);
        // The controller elects 2 in epoch 2 (broker 1 is down and does not hear of it).
        let r = reg(2, 2, 2, &[1, 2, 3], &[2, 3]);
        c.controller.regs.lock().insert(c.tp.clone(), r.clone());
        for id in [2, 3] {
            c.managers[&id].apply_partition_state(&c.tp, c.topic_id, c.logs[&id].clone(), &r);
        }
        for k in 0..2 {
            assert_eq!(
                c.produce(2, 3, &format!("new{k}"), -1, T).await.error_code,
                0
            );
        }
        // Broker 1 returns and learns it follows 2.
        c.dir.down.lock().clear();
        c.managers[&1].apply_partition_state(&c.tp, c.topic_id, c.logs[&1].clone(), &c.current());
        c.wait_until("old leader truncated and caught up", |c| {
            c.logs[&1].dump() == c.logs[&2].dump() && c.logs[&3].dump() == c.logs[&2].dump()
        })
        .await;
        let log = c.logs[&1].dump();
        assert_eq!(log.last().unwrap().1, 13, "8 + 6 records");
        assert!(log
            .iter()
            .all(|b| !String::from_utf8_lossy(&b.3).contains("lost")));
        assert_eq!(c.logs[&1].epochs(), vec![(1, 0), (2, 8)]);
        c.wait_until("ISR back to 3", |c| c.current().isr.len() == 3)
            .await;
        for m in c.managers.values() {
            m.shutdown();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_follower_restarts_at_leader_log_start() {
    let c = Cluster::new(&[1, 2]);
    // The leader's log starts at 100 (older data deleted); the follower is empty at 0.
    c.logs[&1].truncate_fully_and_start_at(100).unwrap();
    c.publish(reg(1, 1, 1, &[1, 2], &[1]));
    assert_eq!(c.produce(1, 5, "x", 1, T).await.error_code, 0);
    c.wait_until("follower restarted and caught up", |c| {
        c.logs[&2].dump() == c.logs[&1].dump()
    })
    .await;
    assert_eq!(c.logs[&2].log_start_offset(), 100);
    c.wait_until("ISR expansion", |c| c.current().isr == vec![1, 2])
        .await;
    for m in c.managers.values() {
        m.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_ahead_of_leader_without_epochs_truncates_to_leader_end() {
    // Unclean case: the follower's epoch-less log is longer than the leader's (no divergence
    // check is possible): its fetch is out of range and it truncates to the leader's end.
    let c = Cluster::new(&[1, 2]);
    c.publish(reg(1, 1, 1, &[1, 2], &[1]));
    assert_eq!(c.produce(1, 4, "x", 1, T).await.error_code, 0);
    c.managers[&2].stop_replica(&c.tp);
    {
        let mut i = c.logs[&2].inner.lock();
        i.batches.clear();
        i.epochs.clear();
        for k in 0..6i64 {
            let mut b = batch(1, "stale");
            b[0..8].copy_from_slice(&k.to_be_bytes());
            i.batches.extend(parse_batches(&b).unwrap());
        }
        i.hw = 6;
    }
    c.publish(reg(1, 1, 1, &[1, 2], &[1]));
    c.wait_until("follower truncated to the leader's end", |c| {
        c.logs[&2].log_end_offset() == 4
    })
    .await;
    assert_eq!(c.produce(1, 2, "y", 1, T).await.error_code, 0);
    c.wait_until("follower caught up", |c| c.logs[&2].log_end_offset() == 6)
        .await;
    let offsets = |l: &MemLog| l.dump().iter().map(|b| b.1).collect::<Vec<_>>();
    assert_eq!(*offsets(&c.logs[&2]).last().unwrap(), 5);
    assert_eq!(c.logs[&2].dump().last(), c.logs[&1].dump().last());
    for m in c.managers.values() {
        m.shutdown();
    }
}

#[test]
fn leader_fetch_rules() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = Cluster::new(&[1, 2]);
        c.publish(reg(1, 3, 1, &[1, 2], &[1, 2]));
        let leader = &c.managers[&1];
        let log = &c.logs[&1];
        let mut b = batch(4, "e3");
        log.append_with_epoch(&mut b, AppendOrigin::Client, 0, 3)
            .unwrap();
        // Epoch 5 starts at 4.
        let mut b = batch(4, "e5");
        log.append_with_epoch(&mut b, AppendOrigin::Client, 0, 5)
            .unwrap();
        let f = |fetch_offset, last, cur| ReplicaFetch {
            replica_id: 2,
            fetch_offset,
            log_start_offset: 0,
            last_fetched_epoch: last,
            current_leader_epoch: cur,
            max_bytes: 1 << 20,
        };
        // Leader epoch checks.
        assert_eq!(
            leader
                .fetch_from_follower(&c.tp, &f(0, None, Some(2)))
                .error_code,
            ResponseError::FencedLeaderEpoch.code()
        );
        assert_eq!(
            leader
                .fetch_from_follower(&c.tp, &f(0, None, Some(4)))
                .error_code,
            ResponseError::UnknownLeaderEpoch.code()
        );
        // Diverging: follower at 6 with last epoch 3, but epoch 3 ended at 4.
        let r = leader.fetch_from_follower(&c.tp, &f(6, Some(3), Some(3)));
        assert_eq!(
            (r.error_code, r.diverging_epoch, r.records.len()),
            (0, Some((3, 4)), 0)
        );
        // Unknown larger epoch → out of range.
        assert_eq!(
            leader
                .fetch_from_follower(&c.tp, &f(6, Some(9), Some(3)))
                .error_code,
            ResponseError::OffsetOutOfRange.code()
        );
        // Past the log end → out of range.
        assert_eq!(
            leader
                .fetch_from_follower(&c.tp, &f(9, None, Some(3)))
                .error_code,
            ResponseError::OffsetOutOfRange.code()
        );
        // Consistent: records from 4.
        let r = leader.fetch_from_follower(&c.tp, &f(4, Some(3), Some(3)));
        assert_eq!(r.error_code, 0);
        assert_eq!(parse_batches(&r.records).unwrap()[0].0, 4);
        assert_eq!(r.log_end_offset, 8);
        // Unknown replica.
        let mut g = f(0, None, None);
        g.replica_id = 7;
        assert_eq!(
            leader.fetch_from_follower(&c.tp, &g).error_code,
            ResponseError::NotLeaderOrFollower.code()
        );
        // A follower is not asked for data.
        c.managers[&2].shutdown();
        assert_eq!(
            c.managers[&2]
                .fetch_from_follower(&c.tp, &f(0, None, Some(3)))
                .error_code,
            ResponseError::NotLeaderOrFollower.code()
        );
        assert_eq!(
            c.managers[&2].check_leader(&c.tp, Some(3), true),
            Err(ResponseError::NotLeaderOrFollower.code())
        );
        assert_eq!(c.managers[&2].current_leader(&c.tp), Some((1, 3)));
        leader.shutdown();
    });
}

// ---------------------------------------------------------------- over the wire

mod wire {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use kafka_protocol::error::ResponseError;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
        MetadataRequest, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ProduceRequest,
        TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    use parking_lot::Mutex;
    use uuid::Uuid;

    use super::{batch, reg, Controller, MemLog, Sink};
    use crate::client::{ClientError, KafkaConnection};
    use crate::replica::*;
    use crate::server::{
        BrokerInfo, ClusterHooks, ClusterView, ListenerEndpoint, PartitionInfo, TopicInfo,
    };
    use crate::{Broker, BrokerConfig, KafkaServer, ServerConfig, TopicPartition};

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A follower's endpoint over TCP with the crate's client (Fetch v12, the server's
    /// highest).
    struct TcpEndpoint {
        address: String,
        conn: tokio::sync::Mutex<Option<KafkaConnection>>,
    }

    impl TcpEndpoint {
        async fn with_conn<Req: kafka_protocol::protocol::Request>(
            &self,
            req: Req,
            floor: i16,
            cap: i16,
        ) -> Result<Req::Response, ClientError> {
            let mut guard = self.conn.lock().await;
            if guard.is_none() {
                *guard = Some(
                    KafkaConnection::connect(&self.address, "replica-fetcher", TIMEOUT).await?,
                );
            }
            let Some(conn) = guard.as_mut() else {
                unreachable!()
            };
            match conn.send(req, floor, cap, TIMEOUT).await {
                Ok((_, r)) => Ok(r),
                Err(e) => {
                    *guard = None;
                    Err(e)
                }
            }
        }
    }

    impl LeaderEndpoint for TcpEndpoint {
        fn fetch(
            &self,
            request: FetchRequest,
        ) -> BoxFuture<'_, Result<FetchResponse, ClientError>> {
            Box::pin(self.with_conn(request, 12, 12))
        }
        fn offset_for_leader_epoch(
            &self,
            request: OffsetForLeaderEpochRequest,
        ) -> BoxFuture<'_, Result<OffsetForLeaderEpochResponse, ClientError>> {
            Box::pin(self.with_conn(request, 3, 4))
        }
        fn list_offsets(
            &self,
            request: ListOffsetsRequest,
        ) -> BoxFuture<'_, Result<ListOffsetsResponse, ClientError>> {
            Box::pin(self.with_conn(request, 4, 6))
        }
    }

    #[derive(Default)]
    struct Addresses(Mutex<HashMap<i32, String>>);

    impl LeaderEndpointFactory for Arc<Addresses> {
        fn endpoint(&self, leader_id: i32) -> Arc<dyn LeaderEndpoint> {
            let address = self.0.lock().get(&leader_id).cloned().unwrap_or_default();
            Arc::new(TcpEndpoint {
                address,
                conn: tokio::sync::Mutex::new(None),
            })
        }
    }

    struct View {
        brokers: Vec<BrokerInfo>,
        topic: Mutex<TopicInfo>,
        controller: Arc<Controller>,
        tp: TopicPartition,
    }

    impl ClusterView for View {
        fn cluster_id(&self) -> String {
            "test-cluster".into()
        }
        fn controller_id(&self) -> i32 {
            3000
        }
        fn brokers(&self) -> Vec<BrokerInfo> {
            self.brokers.clone()
        }
        fn topics(&self) -> Vec<TopicInfo> {
            vec![self.topic(&self.tp.topic).unwrap()]
        }
        fn topic_configs(&self, name: &str) -> Option<std::collections::BTreeMap<String, String>> {
            (name == self.tp.topic).then(std::collections::BTreeMap::new)
        }
        fn topic(&self, name: &str) -> Option<TopicInfo> {
            let mut t = self.topic.lock().clone();
            if t.name != name {
                return None;
            }
            if let Some(r) = self.controller.regs.lock().get(&self.tp) {
                t.partitions = vec![PartitionInfo {
                    partition: 0,
                    leader: r.leader,
                    leader_epoch: r.leader_epoch,
                    replicas: r.replicas.clone(),
                    isr: r.isr.clone(),
                    offline_replicas: Vec::new(),
                }];
            }
            Some(t)
        }
        fn topic_by_id(&self, id: Uuid) -> Option<TopicInfo> {
            let t = self.topic.lock().clone();
            (t.topic_id == id).then(|| self.topic(&t.name)).flatten()
        }
    }

    fn produce_request(acks: i16, tag: &str) -> ProduceRequest {
        let mut p = PartitionProduceData::default();
        p.index = 0;
        p.records = Some(Bytes::from(batch(2, tag)));
        let mut t = TopicProduceData::default();
        t.name = TopicName(StrBytes::from_static_str("t"));
        t.partition_data.push(p);
        let mut r = ProduceRequest::default();
        r.acks = acks;
        r.timeout_ms = 10_000;
        r.topic_data.push(t);
        r
    }

    fn consumer_fetch(epoch: i32) -> FetchRequest {
        let mut p = FetchPartition::default();
        p.partition = 0;
        p.current_leader_epoch = epoch;
        p.fetch_offset = 0;
        p.partition_max_bytes = 1 << 20;
        let mut t = FetchTopic::default();
        t.topic = TopicName(StrBytes::from_static_str("t"));
        t.partitions.push(p);
        let mut r = FetchRequest::default();
        r.replica_id = BrokerId(-1);
        r.max_wait_ms = 0;
        r.max_bytes = 1 << 20;
        r.topics.push(t);
        r
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_brokers_replicate_over_the_wire_and_answer_cluster_errors() {
        let tp = TopicPartition::new("t", 0);
        let topic_id = Uuid::new_v4();
        let controller = Arc::new(Controller::default());
        let addresses = Arc::new(Addresses::default());
        let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut brokers = Vec::new();
        let mut servers = Vec::new();
        let mut managers = HashMap::new();
        let mut logs = HashMap::new();
        let mut infos = Vec::new();
        // Bind first so each server knows the other's address.
        let mut listeners = Vec::new();
        for id in [1, 2] {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            listeners.push((id, port));
            addresses.0.lock().insert(id, format!("127.0.0.1:{port}"));
            infos.push(BrokerInfo {
                id,
                rack: None,
                endpoints: vec![ListenerEndpoint {
                    listener: "PLAINTEXT".into(),
                    host: "127.0.0.1".into(),
                    port: i32::from(port),
                }],
                fenced: false,
            });
        }
        let view = Arc::new(View {
            brokers: infos,
            topic: Mutex::new(TopicInfo {
                name: "t".into(),
                topic_id,
                internal: false,
                partitions: Vec::new(),
            }),
            controller: controller.clone(),
            tp: tp.clone(),
        });
        for (i, (id, port)) in listeners.into_iter().enumerate() {
            let mut bc = BrokerConfig::new(dirs[i].path());
            bc.node_id = id;
            let broker = Broker::open(bc).unwrap();
            let mut cfg = ReplicaConfig::new(id);
            cfg.replica_fetch_backoff_ms = 20;
            cfg.replica_fetch_wait_max_ms = 100;
            let rm = ReplicaManager::new(
                cfg,
                Some(Arc::new(Sink(controller.clone()))),
                Arc::new(addresses.clone()),
            );
            let hooks = ClusterHooks {
                listener_name: "PLAINTEXT".into(),
                view: view.clone(),
                admin: None,
                replicas: rm.clone(),
            };
            let sc = ServerConfig {
                listen: format!("127.0.0.1:{port}"),
                ..Default::default()
            };
            servers.push(
                KafkaServer::start_with_cluster(broker.clone(), sc, hooks)
                    .await
                    .unwrap(),
            );
            brokers.push(broker);
            managers.insert(id, rm);
            logs.insert(id, Arc::new(MemLog::default()));
        }
        let publish = |r: PartitionRegistration| {
            controller.regs.lock().insert(tp.clone(), r.clone());
            for (id, rm) in &managers {
                let log: Arc<dyn ReplicaLog> = logs[id].clone();
                rm.apply_partition_state(&tp, topic_id, log, &r);
            }
        };
        publish(reg(1, 1, 1, &[1, 2], &[1]));
        let a1 = addresses.0.lock()[&1].clone();
        let a2 = addresses.0.lock()[&2].clone();
        let mut c1 = KafkaConnection::connect(&a1, "test", TIMEOUT)
            .await
            .unwrap();
        let mut c2 = KafkaConnection::connect(&a2, "test", TIMEOUT)
            .await
            .unwrap();

        // Metadata v12 from the view.
        let (_, md) = c1
            .send(
                MetadataRequest::default().with_topics(None),
                12,
                12,
                TIMEOUT,
            )
            .await
            .unwrap();
        assert_eq!(md.brokers.len(), 2);
        assert_eq!(md.controller_id, BrokerId(3000));
        let p = &md.topics[0].partitions[0];
        assert_eq!(
            (p.leader_id, p.leader_epoch, p.replica_nodes.len()),
            (BrokerId(1), 1, 2)
        );
        // (An empty follower is already at the high watermark: it may have joined the ISR.)
        assert!(p.isr_nodes.contains(&BrokerId(1)));

        // acks=all on the leader: the follower fetches over TCP, joins the ISR, the produce
        // completes.
        let (_, resp) = c1
            .send(produce_request(-1, "a"), 9, 9, TIMEOUT)
            .await
            .unwrap();
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
        let (_, resp) = c1
            .send(produce_request(-1, "b"), 9, 9, TIMEOUT)
            .await
            .unwrap();
        let pr = &resp.responses[0].partition_responses[0];
        assert_eq!((pr.error_code, pr.base_offset), (0, 2));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while controller.regs.lock()[&tp].isr.len() < 2 || logs[&2].dump() != logs[&1].dump() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "follower did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let current = controller.regs.lock()[&tp].clone();
        publish(current);
        let (_, resp) = c1
            .send(produce_request(-1, "c"), 9, 9, TIMEOUT)
            .await
            .unwrap();
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
        assert!(logs[&1].high_watermark() >= 6);

        // The follower refuses produces and consumer fetches; a stale epoch is fenced.
        let (_, resp) = c2
            .send(produce_request(1, "x"), 9, 9, TIMEOUT)
            .await
            .unwrap();
        assert_eq!(
            resp.responses[0].partition_responses[0].error_code,
            ResponseError::NotLeaderOrFollower.code()
        );
        let (_, resp) = c2.send(consumer_fetch(1), 12, 12, TIMEOUT).await.unwrap();
        let pd = &resp.responses[0].partitions[0];
        assert_eq!(pd.error_code, ResponseError::NotLeaderOrFollower.code());
        assert_eq!(
            (pd.current_leader.leader_id, pd.current_leader.leader_epoch),
            (BrokerId(1), 1)
        );
        let (_, resp) = c1.send(consumer_fetch(0), 12, 12, TIMEOUT).await.unwrap();
        assert_eq!(
            resp.responses[0].partitions[0].error_code,
            ResponseError::FencedLeaderEpoch.code()
        );

        // Leader change to 2 while 1 holds records 2 never got: 1 truncates through the
        // diverging epoch in the Fetch v12 response and the logs end identical.
        let mut extra = batch(3, "divergent");
        logs[&1]
            .append_with_epoch(&mut extra, crate::AppendOrigin::Client, 0, 1)
            .unwrap();
        let r = controller.regs.lock()[&tp].clone();
        publish(reg(2, 2, r.partition_epoch + 1, &[1, 2], &[1, 2]));
        let (_, resp) = c2
            .send(produce_request(-1, "d"), 9, 9, TIMEOUT)
            .await
            .unwrap();
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while logs[&2].dump() != logs[&1].dump() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "old leader not truncated"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(logs[&1].log_end_offset(), 8);
        assert_eq!(logs[&1].epochs(), vec![(1, 0), (2, 6)]);

        for rm in managers.values() {
            rm.shutdown();
        }
        for s in servers {
            s.shutdown().await;
        }
        for b in brokers {
            b.shutdown().unwrap();
        }
    }
}

#[test]
fn the_same_registration_again_keeps_an_isr_change_in_flight() {
    let mut s = PartitionState::new(1);
    s.apply(&reg(1, 2, 5, &[1, 2, 3], &[1, 2]), 10, 0);
    let p = s
        .update_follower_fetch(3, 10, 0, 10, 10, 100)
        .expect("expansion");
    // A whole metadata image is published again for an unrelated change.
    assert_eq!(
        s.apply(&reg(1, 2, 5, &[1, 2, 3], &[1, 2]), 10, 200),
        Transition::Unchanged { leader: true }
    );
    assert!(matches!(
        s.leader().unwrap().isr,
        IsrState::PendingExpand { adding: 3, .. }
    ));
    // The controller's answer still lands, and no second proposal went out meanwhile.
    assert_eq!(s.update_follower_fetch(3, 10, 0, 10, 10, 300), None);
    assert!(s.complete_isr_change(
        p.id,
        &Ok(CommittedIsr {
            leader_epoch: 2,
            isr: vec![1, 2, 3],
            partition_epoch: 6
        }),
        400,
    ));
    assert_eq!(s.leader().unwrap().isr.isr(), &[1, 2, 3]);
}

#[test]
fn ineligible_followers_are_not_proposed_and_refusals_back_off() {
    let mut s = PartitionState::new(1);
    s.apply(&reg(1, 1, 1, &[1, 2, 3], &[1]), 10, 0);
    // Follower 2 is fenced in the last metadata: caught up, yet not proposed.
    s.set_ineligible_replicas(&BTreeSet::from([2]));
    assert_eq!(s.update_follower_fetch(2, 10, 0, 10, 10, 100), None);
    assert!(!s.leader().unwrap().isr.is_inflight());
    // Unfenced: the next fetch proposes it.
    s.set_ineligible_replicas(&BTreeSet::new());
    let p = s
        .update_follower_fetch(2, 10, 0, 10, 10, 200)
        .expect("expansion once eligible");
    // The controller refuses (its view: still fenced); the committed ISR is back and the
    // fetches right after do not propose again (no storm of requests)...
    assert!(!s.complete_isr_change(p.id, &Err(ResponseError::IneligibleReplica.code()), 300));
    assert!(!s.leader().unwrap().isr.is_inflight());
    for t in [300, 400, 300 + ISR_PROPOSAL_BACKOFF_MS - 1] {
        assert_eq!(s.update_follower_fetch(2, 10, 0, 10, 10, t), None, "at {t}");
        assert_eq!(s.update_follower_fetch(3, 10, 0, 10, 10, t), None, "at {t}");
    }
    // ...until the back-off has passed.
    let p = s
        .update_follower_fetch(2, 10, 0, 10, 10, 300 + ISR_PROPOSAL_BACKOFF_MS)
        .expect("proposed again after the back-off");
    assert_eq!(p.new_isr, vec![1, 2]);
    // NEW_LEADER_ELECTED and INVALID_UPDATE_VERSION keep the change pending (new metadata
    // decides), like Kafka.
    s.complete_isr_change(p.id, &Err(ResponseError::NewLeaderElected.code()), 2000);
    assert!(s.leader().unwrap().isr.is_inflight());
}

#[test]
fn a_fenced_follower_removed_from_the_isr_stops_holding_the_high_watermark() {
    // Broker 1 becomes leader (say, a preferred-leader election) with ISR [1, 2, 3] while
    // broker 3 is dead but not yet fenced: 3 never fetches, and as an ISR member at the
    // election it counts as caught up for `replica.lag.time.max.ms`.
    let mut s = PartitionState::new(1);
    s.apply(&reg(1, 2, 5, &[1, 2, 3], &[1, 2, 3]), 100, 1000);
    s.update_follower_fetch(2, 100, 0, 100, 0, 1100);
    assert_eq!(s.high_watermark_candidate(100, 1100, LAG), Some(-1));
    // The controller fences 3 when its session expires and removes it from the ISR.
    s.set_ineligible_replicas(&BTreeSet::from([3]));
    assert_eq!(
        s.apply(&reg(1, 2, 6, &[1, 2, 3], &[1, 2]), 100, 1200),
        Transition::Leader { new_epoch: false }
    );
    // Kafka waits only for caught-up followers that may join the ISR: the high watermark
    // reaches the ISR's log end at once, not ~30 s later when 3's caught-up time runs out.
    assert_eq!(s.high_watermark_candidate(100, 1200, LAG), Some(100));
    // An eligible caught-up follower outside the ISR still holds it (about to join).
    s.set_ineligible_replicas(&BTreeSet::new());
    assert_eq!(s.high_watermark_candidate(100, 1200, LAG), Some(-1));
}

//! Follower fetchers (Kafka's `ReplicaFetcherThread` / `AbstractFetcherThread`): one task per
//! leader broker fetching every partition this broker follows from it, plus the leader's
//! protocol-level handling of replica Fetch requests.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::{Partition, ReplicaFetch, ReplicaManager, Role};
use crate::client::ClientError;
use crate::TopicPartition;

/// A boxed, sendable future (the trait methods here are object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The network side of a follower: Kafka requests to one leader broker. The fetcher fills
/// requests for Fetch v12+ semantics with both topic names and ids, and both `replica_id` and
/// `replica_state.replica_id`; an implementation encodes the fields its negotiated version
/// has (names before v13, ids from v13; `replica_id` before v15, `replica_state` from v15).
pub trait LeaderEndpoint: Send + Sync + 'static {
    /// Sends a Fetch.
    fn fetch(&self, request: FetchRequest) -> BoxFuture<'_, Result<FetchResponse, ClientError>>;

    /// Sends an OffsetForLeaderEpoch.
    fn offset_for_leader_epoch(
        &self,
        request: OffsetForLeaderEpochRequest,
    ) -> BoxFuture<'_, Result<OffsetForLeaderEpochResponse, ClientError>>;

    /// Sends a ListOffsets.
    fn list_offsets(
        &self,
        request: ListOffsetsRequest,
    ) -> BoxFuture<'_, Result<ListOffsetsResponse, ClientError>>;
}

/// Gives the fetcher for a leader broker its endpoint.
pub trait LeaderEndpointFactory: Send + Sync + 'static {
    /// An endpoint for broker `leader_id` (connections are the endpoint's business: it
    /// connects lazily and reconnects after errors).
    fn endpoint(&self, leader_id: i32) -> Arc<dyn LeaderEndpoint>;
}

/// Fetch state of one partition in a fetcher (Kafka's `PartitionFetchState`).
struct FetchState {
    partition: Arc<Partition>,
    leader_epoch: i32,
    fetch_offset: i64,
    last_fetched_epoch: Option<i32>,
    /// Kafka's `Truncating` state: truncate before fetching.
    truncating: bool,
    delayed_until: Option<tokio::time::Instant>,
}

struct FetcherShared {
    leader_id: i32,
    partitions: Mutex<BTreeMap<TopicPartition, FetchState>>,
    wake: Notify,
}

struct Fetcher {
    shared: Arc<FetcherShared>,
    task: JoinHandle<()>,
}

/// The fetchers of one broker, by leader id.
pub(crate) struct FetcherPool {
    endpoints: Arc<dyn LeaderEndpointFactory>,
    fetchers: Mutex<HashMap<i32, Fetcher>>,
}

impl FetcherPool {
    pub(crate) fn new(endpoints: Arc<dyn LeaderEndpointFactory>) -> Self {
        FetcherPool {
            endpoints,
            fetchers: Mutex::new(HashMap::new()),
        }
    }

    /// Adds (or restarts) `p` in the fetcher of `leader_id`, removing it from any other.
    pub(crate) fn add_partition(
        &self,
        rm: &ReplicaManager,
        leader_id: i32,
        p: Arc<Partition>,
        leader_epoch: i32,
    ) {
        self.remove_partition(&p.tp);
        let truncate_on_fetch = rm.inner.config.truncate_on_fetch;
        let last_fetched_epoch = p.log.latest_epoch();
        let state = FetchState {
            fetch_offset: p.log.log_end_offset(),
            truncating: !truncate_on_fetch || last_fetched_epoch.is_none(),
            last_fetched_epoch,
            leader_epoch,
            delayed_until: None,
            partition: p.clone(),
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            warn!(topic = %p.tp.topic, partition = p.tp.partition, "no tokio runtime: cannot start a replica fetcher");
            return;
        };
        let mut fetchers = self.fetchers.lock();
        let fetcher = fetchers.entry(leader_id).or_insert_with(|| {
            let shared = Arc::new(FetcherShared {
                leader_id,
                partitions: Mutex::new(BTreeMap::new()),
                wake: Notify::new(),
            });
            let endpoint = self.endpoints.endpoint(leader_id);
            let task = handle.spawn(run_fetcher(
                Arc::downgrade(&rm.inner),
                shared.clone(),
                endpoint,
            ));
            info!(leader_id, "replica fetcher started");
            Fetcher { shared, task }
        });
        fetcher.shared.partitions.lock().insert(p.tp.clone(), state);
        fetcher.shared.wake.notify_one();
    }

    /// Removes `tp` from every fetcher; fetchers left without partitions stop.
    pub(crate) fn remove_partition(&self, tp: &TopicPartition) {
        let mut fetchers = self.fetchers.lock();
        fetchers.retain(|leader_id, f| {
            f.shared.partitions.lock().remove(tp);
            let idle = f.shared.partitions.lock().is_empty();
            if idle {
                f.task.abort();
                info!(leader_id, "replica fetcher stopped (no partitions)");
            }
            !idle
        });
    }

    pub(crate) fn shutdown(&self) {
        for (_, f) in self.fetchers.lock().drain() {
            f.task.abort();
        }
    }
}

impl Drop for FetcherPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What one partition's fetch looked like when the request was built.
struct Sent {
    tp: TopicPartition,
    fetch_offset: i64,
    leader_epoch: i32,
}

async fn run_fetcher(
    inner: std::sync::Weak<super::Inner>,
    shared: Arc<FetcherShared>,
    endpoint: Arc<dyn LeaderEndpoint>,
) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let rm = ReplicaManager { inner: strong };
        let backoff = Duration::from_millis(rm.inner.config.replica_fetch_backoff_ms);
        // Truncating partitions first (Kafka's maybeTruncate).
        let truncating: Vec<TopicPartition> = shared
            .partitions
            .lock()
            .iter()
            .filter(|(_, s)| {
                s.truncating
                    && s.delayed_until
                        .is_none_or(|d| d <= tokio::time::Instant::now())
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in truncating {
            truncate_partition(&rm, &shared, endpoint.as_ref(), &tp, backoff).await;
        }
        let now = tokio::time::Instant::now();
        let (request, sent, next_wake) = build_fetch(&rm, &shared, now);
        if sent.is_empty() {
            drop(rm);
            match next_wake {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = shared.wake.notified() => {}
                    }
                }
                None => shared.wake.notified().await,
            }
            continue;
        }
        let response = {
            // Do not keep the manager alive while waiting on the network.
            drop(rm);
            endpoint.fetch(request).await
        };
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let rm = ReplicaManager { inner: strong };
        match response {
            Err(e) => {
                warn!(leader_id = shared.leader_id, error = %e, "replica fetch failed; backing off");
                delay(&shared, sent.iter().map(|s| &s.tp), backoff);
            }
            Ok(resp) if resp.error_code != 0 => {
                warn!(
                    leader_id = shared.leader_id,
                    error_code = resp.error_code,
                    "replica fetch refused; backing off"
                );
                delay(&shared, sent.iter().map(|s| &s.tp), backoff);
            }
            Ok(resp) => {
                for topic in resp.responses {
                    for pd in topic.partitions {
                        let Some(s) = sent.iter().find(|s| {
                            s.tp.partition == pd.partition_index
                                && (s.tp.topic == topic.topic.0.as_str()
                                    || shared.partitions.lock().get(&s.tp).is_some_and(|f| {
                                        !topic.topic_id.is_nil()
                                            && f.partition.topic_id == topic.topic_id
                                    }))
                        }) else {
                            continue;
                        };
                        process_partition(&rm, &shared, endpoint.as_ref(), s, pd, backoff).await;
                    }
                }
            }
        }
    }
}

fn delay<'a>(
    shared: &FetcherShared,
    tps: impl Iterator<Item = &'a TopicPartition>,
    backoff: Duration,
) {
    let until = tokio::time::Instant::now() + backoff;
    let mut parts = shared.partitions.lock();
    for tp in tps {
        if let Some(s) = parts.get_mut(tp) {
            s.delayed_until = Some(until);
        }
    }
}

fn build_fetch(
    rm: &ReplicaManager,
    shared: &FetcherShared,
    now: tokio::time::Instant,
) -> (FetchRequest, Vec<Sent>, Option<tokio::time::Instant>) {
    let cfg = &rm.inner.config;
    let mut topics: BTreeMap<String, FetchTopic> = BTreeMap::new();
    let mut sent = Vec::new();
    let mut next_wake: Option<tokio::time::Instant> = None;
    for (tp, s) in shared.partitions.lock().iter_mut() {
        if let Some(d) = s.delayed_until {
            if d > now {
                next_wake = Some(next_wake.map_or(d, |w| w.min(d)));
                continue;
            }
            s.delayed_until = None;
        }
        if s.truncating {
            continue;
        }
        let mut fp = FetchPartition::default();
        fp.partition = tp.partition;
        fp.current_leader_epoch = s.leader_epoch;
        fp.fetch_offset = s.fetch_offset;
        fp.last_fetched_epoch = s.last_fetched_epoch.unwrap_or(-1);
        fp.log_start_offset = s.partition.log.log_start_offset();
        fp.partition_max_bytes = cfg.replica_fetch_max_bytes;
        let t = topics.entry(tp.topic.clone()).or_insert_with(|| {
            let mut t = FetchTopic::default();
            t.topic = TopicName(StrBytes::from_string(tp.topic.clone()));
            t.topic_id = s.partition.topic_id;
            t
        });
        t.partitions.push(fp);
        sent.push(Sent {
            tp: tp.clone(),
            fetch_offset: s.fetch_offset,
            leader_epoch: s.leader_epoch,
        });
    }
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(cfg.node_id);
    let mut rs = ReplicaState::default();
    rs.replica_id = BrokerId(cfg.node_id);
    rs.replica_epoch = -1;
    req.replica_state = rs;
    req.max_wait_ms = cfg.replica_fetch_wait_max_ms;
    req.min_bytes = cfg.replica_fetch_min_bytes;
    req.max_bytes = cfg.replica_fetch_response_max_bytes;
    req.isolation_level = 0;
    req.session_id = 0;
    req.session_epoch = -1;
    req.topics = topics.into_values().collect();
    (req, sent, next_wake)
}

/// Runs `f` on the partition's follower state if the fetch state is still the one `sent`
/// described and the partition still follows in that epoch; the state lock is held so the
/// role cannot change meanwhile.
fn with_current<T>(
    shared: &FetcherShared,
    sent: &Sent,
    f: impl FnOnce(&mut FetchState) -> T,
) -> Option<T> {
    let mut parts = shared.partitions.lock();
    let s = parts.get_mut(&sent.tp)?;
    if s.fetch_offset != sent.fetch_offset || s.leader_epoch != sent.leader_epoch || s.truncating {
        return None;
    }
    let p = s.partition.clone();
    let st = p.state.lock();
    match st.role() {
        Role::Follower(fs) if fs.leader_epoch == sent.leader_epoch => {}
        _ => return None,
    }
    Some(f(s))
}

async fn process_partition(
    rm: &ReplicaManager,
    shared: &FetcherShared,
    endpoint: &dyn LeaderEndpoint,
    sent: &Sent,
    pd: PartitionData,
    backoff: Duration,
) {
    let tp = &sent.tp;
    let code = pd.error_code;
    if code == 0 {
        let diverging = (pd.diverging_epoch.epoch >= 0 && pd.diverging_epoch.end_offset >= 0)
            .then_some((pd.diverging_epoch.epoch, pd.diverging_epoch.end_offset));
        let outcome = with_current(shared, sent, |s| -> Result<bool, String> {
            let log = &s.partition.log;
            if let Some((epoch, end)) = diverging {
                let (offset, _complete) = truncation_offset(log.as_ref(), epoch, end);
                info!(topic = %tp.topic, partition = tp.partition, epoch, end, truncate_to = offset, "diverging epoch from the leader: truncating");
                log.truncate_to(offset).map_err(|e| e.to_string())?;
            } else {
                let records = pd.records.clone().unwrap_or_default();
                if !records.is_empty() {
                    log.append_as_follower(&records)
                        .map_err(|e| e.to_string())?;
                }
                let hw = pd.high_watermark.min(log.log_end_offset());
                if hw > log.high_watermark() {
                    log.set_high_watermark(hw).map_err(|e| e.to_string())?;
                }
            }
            s.fetch_offset = log.log_end_offset();
            s.last_fetched_epoch = log.latest_epoch();
            Ok(!pd.records.as_ref().is_none_or(Bytes::is_empty) || diverging.is_some())
        });
        match outcome {
            None => {}
            Some(Ok(false)) => {}
            Some(Ok(true)) => {
                if let Some(p) = rm.partition(tp) {
                    rm.notify(&p);
                }
            }
            Some(Err(e)) => {
                warn!(topic = %tp.topic, partition = tp.partition, error = %e, "applying fetched data failed; backing off");
                delay(shared, std::iter::once(tp), backoff);
            }
        }
        return;
    }
    if code == ResponseError::OffsetOutOfRange.code() {
        if let Err(e) = handle_out_of_range(shared, endpoint, sent, rm.node_id()).await {
            warn!(topic = %tp.topic, partition = tp.partition, error = %e, "out-of-range handling failed; backing off");
            delay(shared, std::iter::once(tp), backoff);
        }
        return;
    }
    if code == ResponseError::FencedLeaderEpoch.code() {
        // Kafka's onPartitionFenced: this broker's epoch is older than the leader's; wait for
        // newer metadata, which re-adds the partition.
        info!(topic = %tp.topic, partition = tp.partition, "fenced leader epoch: partition leaves the fetcher until newer metadata");
        let mut parts = shared.partitions.lock();
        if parts
            .get(tp)
            .is_some_and(|s| s.leader_epoch == sent.leader_epoch)
        {
            parts.remove(tp);
        }
        return;
    }
    debug!(topic = %tp.topic, partition = tp.partition, error_code = code, "replica fetch error; backing off");
    delay(shared, std::iter::once(tp), backoff);
}

/// Kafka's `getOffsetTruncationState` for the leader's `(epoch, end_offset)`: the offset to
/// truncate to and whether truncation is complete.
fn truncation_offset(
    log: &dyn super::ReplicaLog,
    leader_epoch: i32,
    leader_end: i64,
) -> (i64, bool) {
    let leo = log.log_end_offset();
    if leader_end < 0 {
        return (leo.min(log.high_watermark().max(0)), true);
    }
    if leader_epoch < 0 {
        return (leader_end.min(leo), true);
    }
    match log.end_offset_for_epoch(leader_epoch) {
        Some((follower_epoch, follower_end)) if follower_epoch != leader_epoch => {
            (follower_end.min(leo), false)
        }
        Some((_, follower_end)) => (follower_end.min(leader_end).min(leo), true),
        None => (leader_end.min(leo), true),
    }
}

/// Kafka's Truncating state: without a leader epoch in the log, truncate to the high
/// watermark; else ask the leader OffsetForLeaderEpoch for the latest local epoch.
async fn truncate_partition(
    rm: &ReplicaManager,
    shared: &FetcherShared,
    endpoint: &dyn LeaderEndpoint,
    tp: &TopicPartition,
    backoff: Duration,
) {
    let Some((partition, leader_epoch)) = shared
        .partitions
        .lock()
        .get(tp)
        .map(|s| (s.partition.clone(), s.leader_epoch))
    else {
        return;
    };
    let log = partition.log.clone();
    let target = match log.latest_epoch() {
        None => Ok((log.high_watermark().max(log.log_start_offset()), true)),
        Some(epoch) => {
            let mut req = OffsetForLeaderEpochRequest::default();
            req.replica_id = BrokerId(rm.node_id());
            let mut t = OffsetForLeaderTopic::default();
            t.topic = TopicName(StrBytes::from_string(tp.topic.clone()));
            let mut p = OffsetForLeaderPartition::default();
            p.partition = tp.partition;
            p.current_leader_epoch = leader_epoch;
            p.leader_epoch = epoch;
            t.partitions.push(p);
            req.topics.push(t);
            match endpoint.offset_for_leader_epoch(req).await {
                Err(e) => Err(e.to_string()),
                Ok(resp) => {
                    let found = resp
                        .topics
                        .iter()
                        .filter(|t| t.topic.0.as_str() == tp.topic)
                        .flat_map(|t| t.partitions.iter())
                        .find(|p| p.partition == tp.partition)
                        .cloned();
                    match found {
                        None => Err("no answer for the partition".to_string()),
                        Some(p) if p.error_code != 0 => Err(format!("error code {}", p.error_code)),
                        Some(p) => Ok(truncation_offset(
                            log.as_ref(),
                            p.leader_epoch,
                            p.end_offset,
                        )),
                    }
                }
            }
        }
    };
    let mut parts = shared.partitions.lock();
    let Some(s) = parts.get_mut(tp) else { return };
    if s.leader_epoch != leader_epoch || !s.truncating {
        return;
    }
    match target {
        Err(e) => {
            warn!(topic = %tp.topic, partition = tp.partition, error = %e, "OffsetForLeaderEpoch failed; backing off");
            s.delayed_until = Some(tokio::time::Instant::now() + backoff);
        }
        Ok((offset, complete)) => {
            let st = partition.state.lock();
            if !matches!(st.role(), Role::Follower(f) if f.leader_epoch == leader_epoch) {
                return;
            }
            if offset < log.log_end_offset() {
                info!(topic = %tp.topic, partition = tp.partition, truncate_to = offset, "truncating before fetching");
                if let Err(e) = log.truncate_to(offset) {
                    warn!(topic = %tp.topic, partition = tp.partition, error = %e, "truncation failed; backing off");
                    s.delayed_until = Some(tokio::time::Instant::now() + backoff);
                    return;
                }
            }
            s.fetch_offset = log.log_end_offset();
            s.last_fetched_epoch = log.latest_epoch();
            s.truncating = !complete;
        }
    }
}

/// Asks the leader for one offset of `tp` (`timestamp` -1 = latest, -2 = earliest).
async fn leader_offset(
    endpoint: &dyn LeaderEndpoint,
    node_id: i32,
    tp: &TopicPartition,
    leader_epoch: i32,
    timestamp: i64,
) -> Result<i64, String> {
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(node_id);
    let mut t = ListOffsetsTopic::default();
    t.name = TopicName(StrBytes::from_string(tp.topic.clone()));
    let mut p = ListOffsetsPartition::default();
    p.partition_index = tp.partition;
    p.current_leader_epoch = leader_epoch;
    p.timestamp = timestamp;
    t.partitions.push(p);
    req.topics.push(t);
    let resp = endpoint
        .list_offsets(req)
        .await
        .map_err(|e| e.to_string())?;
    let p = resp
        .topics
        .iter()
        .filter(|t| t.name.0.as_str() == tp.topic)
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == tp.partition)
        .ok_or_else(|| "no answer for the partition".to_string())?;
    if p.error_code != 0 {
        return Err(format!("ListOffsets error code {}", p.error_code));
    }
    Ok(p.offset)
}

/// Kafka's `fetchOffsetAndTruncate`: if the leader's end is below ours, truncate to it;
/// otherwise, if the leader's start is above our end, restart the log empty at it.
async fn handle_out_of_range(
    shared: &FetcherShared,
    endpoint: &dyn LeaderEndpoint,
    sent: &Sent,
    node_id: i32,
) -> Result<(), String> {
    let tp = &sent.tp;
    let leader_end = leader_offset(endpoint, node_id, tp, sent.leader_epoch, -1).await?;
    let leader_start = if with_current(shared, sent, |s| {
        leader_end < s.partition.log.log_end_offset()
    }) == Some(false)
    {
        Some(leader_offset(endpoint, node_id, tp, sent.leader_epoch, -2).await?)
    } else {
        None
    };
    with_current(shared, sent, |s| -> Result<(), String> {
        let log = &s.partition.log;
        let leo = log.log_end_offset();
        if leader_end < leo {
            warn!(topic = %tp.topic, partition = tp.partition, from = leo, to = leader_end, "out of range: truncating to the leader's log end offset");
            log.truncate_to(leader_end).map_err(|e| e.to_string())?;
        } else if let Some(start) = leader_start.filter(|&st| st > leo) {
            warn!(topic = %tp.topic, partition = tp.partition, from = leo, to = start, "out of range: restarting the log at the leader's log start offset");
            log.truncate_fully_and_start_at(start).map_err(|e| e.to_string())?;
        }
        s.fetch_offset = log.log_end_offset();
        s.last_fetched_epoch = log.latest_epoch();
        Ok(())
    })
    .unwrap_or(Ok(()))
}

impl ReplicaManager {
    /// Serves a replica Fetch request (replica id ≥ 0, or `replica_state` in v15+) as the
    /// leader: each partition through [`ReplicaManager::fetch_from_follower`], waiting up to
    /// `max_wait_ms` for `min_bytes` of records when there is nothing to return. Topics are
    /// matched by id when the request carries ids (v13+), else by name.
    pub async fn handle_replica_fetch(&self, req: FetchRequest) -> FetchResponse {
        let replica_id = if req.replica_state.replica_id.0 >= 0 {
            req.replica_state.replica_id.0
        } else {
            req.replica_id.0
        };
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(u64::try_from(req.max_wait_ms.max(0)).unwrap_or(0));
        let mut changes = self.subscribe_changes();
        loop {
            let (resp, bytes, any_error) = self.replica_fetch_once(&req, replica_id);
            let min_bytes = usize::try_from(req.min_bytes.max(0)).unwrap_or(0);
            if bytes >= min_bytes.max(1) || any_error || req.max_wait_ms <= 0 {
                return resp;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return self.replica_fetch_once(&req, replica_id).0,
            }
        }
    }

    fn replica_fetch_once(
        &self,
        req: &FetchRequest,
        replica_id: i32,
    ) -> (FetchResponse, usize, bool) {
        let mut resp = FetchResponse::default();
        let mut bytes = 0usize;
        let mut any_error = false;
        let mut remaining = usize::try_from(req.max_bytes.max(0)).unwrap_or(0);
        for topic in &req.topics {
            let mut tr = FetchableTopicResponse::default();
            tr.topic = topic.topic.clone();
            tr.topic_id = topic.topic_id;
            for fp in &topic.partitions {
                let p = if !topic.topic_id.is_nil() {
                    self.partition_by_id(topic.topic_id, fp.partition)
                } else {
                    self.partition(&TopicPartition::new(topic.topic.0.as_str(), fp.partition))
                };
                let mut pd = PartitionData::default();
                pd.partition_index = fp.partition;
                let r = match &p {
                    None => super::ReplicaFetchResult::error(if topic.topic_id.is_nil() {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else {
                        ResponseError::UnknownTopicId.code()
                    }),
                    Some(p) => self.fetch_partition_for_follower(
                        p,
                        &ReplicaFetch {
                            replica_id,
                            fetch_offset: fp.fetch_offset,
                            log_start_offset: fp.log_start_offset,
                            last_fetched_epoch: (fp.last_fetched_epoch >= 0)
                                .then_some(fp.last_fetched_epoch),
                            current_leader_epoch: (fp.current_leader_epoch >= 0)
                                .then_some(fp.current_leader_epoch),
                            max_bytes: usize::try_from(fp.partition_max_bytes.max(0))
                                .unwrap_or(0)
                                .min(remaining.max(1)),
                        },
                    ),
                };
                pd.error_code = r.error_code;
                pd.high_watermark = r.high_watermark;
                pd.last_stable_offset = r.high_watermark;
                pd.log_start_offset = r.log_start_offset;
                pd.preferred_read_replica = BrokerId(-1);
                if let Some((epoch, end)) = r.diverging_epoch {
                    pd.diverging_epoch.epoch = epoch;
                    pd.diverging_epoch.end_offset = end;
                    any_error = true;
                }
                if r.error_code != 0 {
                    any_error = true;
                    if let Some(p) = &p {
                        let s = p.state.lock();
                        pd.current_leader.leader_id = BrokerId(s.leader_id());
                        pd.current_leader.leader_epoch = s.leader_epoch();
                    }
                }
                bytes += r.records.len();
                remaining = remaining.saturating_sub(r.records.len());
                pd.records = Some(r.records);
                tr.partitions.push(pd);
            }
            resp.responses.push(tr);
        }
        (resp, bytes, any_error)
    }
}

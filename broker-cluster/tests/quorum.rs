//! The Raft controller quorum end to end: voters in one process on ephemeral ports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use broker_cluster::quorum::{
    ControllerApi, ControllerClient, NoControllerApi, Quorum, QuorumConfig, QuorumError,
    ReplicatedState, SnapshotCodecError,
};
use broker_embedded::client::KafkaConnection;
use durable_fs::{OsStorage, Storage};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{
    AllocateProducerIdsRequest, AllocateProducerIdsResponse, ApiKey, ApiVersionsRequest, BrokerId,
    DescribeQuorumRequest, RequestHeader, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A toy replicated state: named counters plus what was applied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Counters {
    values: BTreeMap<String, i64>,
    applied_commands: u64,
    last_index: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Add {
    key: String,
    delta: i64,
}

impl ReplicatedState for Counters {
    type Command = Add;

    fn apply(&mut self, log_index: u64, command: &Add) {
        *self.values.entry(command.key.clone()).or_default() += command.delta;
        self.applied_commands += 1;
        self.last_index = log_index;
    }

    fn to_snapshot(&self) -> Result<Vec<u8>, SnapshotCodecError> {
        Ok(serde_json::to_vec(self)?)
    }

    fn from_snapshot(bytes: &[u8]) -> Result<Self, SnapshotCodecError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

fn add(key: &str, delta: i64) -> Add {
    Add {
        key: key.to_string(),
        delta,
    }
}

const WAIT: Duration = Duration::from_secs(30);

/// A controller hook answering AllocateProducerIds: NOT_CONTROLLER on followers, else writes a
/// command and answers with its log index.
#[derive(Debug, Clone, Copy)]
struct TestApi;

impl ControllerApi<Counters> for TestApi {
    fn api_versions(&self) -> Vec<(ApiKey, i16, i16)> {
        vec![(ApiKey::AllocateProducerIds, 0, 0)]
    }

    async fn handle(
        &self,
        quorum: &Quorum<Counters>,
        _: &RequestHeader,
        request: RequestKind,
    ) -> Option<ResponseKind> {
        let RequestKind::AllocateProducerIds(r) = request else {
            return None;
        };
        let mut response = AllocateProducerIdsResponse::default();
        match quorum
            .write(&add("producer-ids", i64::from(r.broker_id.0)))
            .await
        {
            Ok(index) => {
                response.producer_id_start = kafka_protocol::messages::ProducerId(index as i64);
                response.producer_id_len = 1000;
            }
            Err(QuorumError::NotLeader { .. }) => response.error_code = 41,
            Err(_) => response.error_code = 15,
        }
        Some(ResponseKind::AllocateProducerIds(response))
    }
}

struct Cluster {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    voters: BTreeMap<i32, String>,
    nodes: BTreeMap<i32, Option<Quorum<Counters>>>,
    snapshot_threshold: u64,
    logs_to_keep: u64,
}

fn config(
    id: i32,
    voters: &BTreeMap<i32, String>,
    root: &Path,
    snapshot_threshold: u64,
    logs_to_keep: u64,
) -> QuorumConfig {
    let mut c = QuorumConfig::new(id, voters.clone(), root.join(format!("node-{id}")));
    c.election_timeout_ms = 500;
    c.heartbeat_interval_ms = 100;
    c.request_timeout_ms = 1000;
    c.snapshot_threshold = snapshot_threshold;
    c.snapshot_logs_to_keep = logs_to_keep;
    c
}

async fn bind_again(addr: &str) -> TcpListener {
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not bind {addr} again");
}

impl Cluster {
    async fn start(n: i32, snapshot_threshold: u64, logs_to_keep: u64) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let mut listeners = BTreeMap::new();
        let mut voters = BTreeMap::new();
        for id in 1..=n {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            voters.insert(id, l.local_addr().unwrap().to_string());
            listeners.insert(id, l);
        }
        let mut cluster = Cluster {
            _tmp: tmp,
            root,
            voters,
            nodes: BTreeMap::new(),
            snapshot_threshold,
            logs_to_keep,
        };
        let storage = OsStorage::shared();
        let starts = listeners.into_iter().map(|(id, l)| {
            let c = config(
                id,
                &cluster.voters,
                &cluster.root,
                snapshot_threshold,
                logs_to_keep,
            );
            let storage = Arc::clone(&storage);
            async move { (id, Quorum::start(c, storage, l, TestApi).await.unwrap()) }
        });
        // Start them concurrently, as separate processes would.
        let handles: Vec<_> = starts.map(tokio::spawn).collect();
        for h in handles {
            let (id, q) = h.await.unwrap();
            cluster.nodes.insert(id, Some(q));
        }
        cluster
    }

    fn node(&self, id: i32) -> &Quorum<Counters> {
        self.nodes[&id].as_ref().unwrap()
    }

    fn running(&self) -> impl Iterator<Item = &Quorum<Counters>> {
        self.nodes.values().flatten()
    }

    /// Waits until a running voter leads and every running voter knows it.
    async fn leader(&self) -> i32 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(l) = self.running().find(|q| q.is_leader()) {
                let id = l.node_id();
                if self.running().all(|q| q.leader_id() == Some(id)) {
                    return id;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no leader within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(&mut self, id: i32) {
        let q = self.nodes.get_mut(&id).unwrap().take().unwrap();
        q.shutdown().await.unwrap();
    }

    async fn restart(&mut self, id: i32) {
        let l = bind_again(&self.voters[&id]).await;
        let c = config(
            id,
            &self.voters,
            &self.root,
            self.snapshot_threshold,
            self.logs_to_keep,
        );
        let q = Quorum::start(c, OsStorage::shared(), l, TestApi)
            .await
            .unwrap();
        self.nodes.insert(id, Some(q));
    }

    /// Waits until every running voter has applied `commands` commands; returns their states.
    async fn converge(&self, commands: u64) -> Vec<Arc<Counters>> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let states: Vec<_> = self.running().map(|q| q.state()).collect();
            if states.iter().all(|s| s.applied_commands == commands) {
                return states;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "voters did not converge to {commands} commands: {:?}",
                states
                    .iter()
                    .map(|s| s.applied_commands)
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn shutdown(mut self) {
        let ids: Vec<i32> = self.nodes.keys().copied().collect();
        for id in ids {
            if self.nodes[&id].is_some() {
                self.stop(id).await;
            }
        }
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_elect_a_leader_replicate_and_redirect_followers() {
    init_tracing();
    let cluster = Cluster::start(3, 1000, 100).await;
    let leader = cluster.leader().await;
    let mut last = 0;
    for i in 0..20 {
        let index = cluster.node(leader).write(&add("a", i)).await.unwrap();
        assert!(index > last, "log indexes grow: {index} after {last}");
        last = index;
        // The write returns once applied on the leader.
        assert_eq!(cluster.node(leader).state().last_index, index);
    }
    let states = cluster.converge(20).await;
    for s in &states {
        assert_eq!(s.values["a"], (0..20).sum::<i64>());
        assert_eq!(**s, *states[0]);
    }
    let follower = *cluster.voters.keys().find(|id| **id != leader).unwrap();
    match cluster.node(follower).write(&add("a", 1)).await {
        Err(QuorumError::NotLeader { leader_hint }) => assert_eq!(leader_hint, Some(leader)),
        other => panic!("a follower write gave {other:?}"),
    }
    let d = cluster.node(leader).describe();
    assert!(d.is_leader);
    assert_eq!(d.leader_id, Some(leader));
    assert_eq!(d.voters.len(), 3);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_loss_elects_a_new_leader_without_losing_committed_writes_and_the_old_one_catches_up(
) {
    init_tracing();
    let mut cluster = Cluster::start(3, 1000, 100).await;
    let first = cluster.leader().await;
    for i in 0..10 {
        cluster.node(first).write(&add("k", i)).await.unwrap();
    }
    let term_before = cluster.node(first).term();
    cluster.stop(first).await;
    let second = cluster.leader().await;
    assert_ne!(second, first);
    assert!(cluster.node(second).term() > term_before);
    // Every write acknowledged by the old leader is in the new leader's state.
    assert_eq!(cluster.node(second).state().applied_commands, 10);
    for i in 10..20 {
        cluster.node(second).write(&add("k", i)).await.unwrap();
    }
    cluster.converge(20).await;
    // The old leader restarts from its disk and catches up.
    cluster.restart(first).await;
    let states = cluster.converge(20).await;
    assert!(states.iter().all(|s| s.values["k"] == (0..20).sum::<i64>()));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_purge_the_log_restore_at_restart_and_reach_a_lagging_voter() {
    init_tracing();
    // A snapshot every 10 entries, no log kept behind it.
    let mut cluster = Cluster::start(3, 10, 0).await;
    let leader = cluster.leader().await;
    let lagging = *cluster.voters.keys().find(|id| **id != leader).unwrap();
    cluster.stop(lagging).await;
    for i in 0..35 {
        cluster.node(leader).write(&add("s", i)).await.unwrap();
    }
    cluster.converge(35).await;
    // Wait for a snapshot and a purge on the running voters.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let done = cluster.running().all(|q| {
            let m = q.raft_metrics();
            m.snapshot.is_some_and(|s| s.index >= 25) && m.purged.is_some_and(|p| p.index >= 25)
        });
        if done {
            break;
        }
        let metrics: Vec<_> = cluster
            .running()
            .map(|q| {
                (
                    q.node_id(),
                    q.raft_metrics().snapshot,
                    q.raft_metrics().purged,
                )
            })
            .collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "no snapshot/purge: {metrics:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in cluster.running().map(|q| q.node_id()).collect::<Vec<_>>() {
        let dir = cluster
            .root
            .join(format!("node-{id}"))
            .join("__cluster_metadata-0");
        assert!(dir.join("raft-snapshot.bin").exists());
    }
    // The lagging voter can only catch up from the snapshot: the leader's log before it is
    // gone.
    cluster.restart(lagging).await;
    cluster.converge(35).await;
    assert!(cluster.node(lagging).raft_metrics().snapshot.is_some());
    // Whole-cluster restart: each voter restores its snapshot (and the log after it).
    let ids: Vec<i32> = cluster.voters.keys().copied().collect();
    for id in &ids {
        cluster.stop(*id).await;
    }
    for id in &ids {
        cluster.restart(*id).await;
    }
    for id in &ids {
        // Before any leader is known again, the state is at least the snapshot's.
        let q = cluster.node(*id);
        let snapshot = q.raft_metrics().snapshot.map(|s| s.index);
        assert!(
            snapshot.is_some_and(|s| s >= 25),
            "node {id} snapshot {snapshot:?}"
        );
        assert!(
            q.applied().log_index >= snapshot,
            "node {id} restored its snapshot"
        );
        assert!(q.state().applied_commands >= 25);
    }
    let leader = cluster.leader().await;
    cluster.node(leader).write(&add("s", 100)).await.unwrap();
    let states = cluster.converge(36).await;
    assert!(states
        .iter()
        .all(|s| s.values["s"] == (0..35).sum::<i64>() + 100));
    cluster.shutdown().await;
}

fn describe_request() -> DescribeQuorumRequest {
    let mut p = PartitionData::default();
    p.partition_index = 0;
    let mut t = TopicData::default();
    t.topic_name = TopicName(StrBytes::from_static_str("__cluster_metadata"));
    t.partitions.push(p);
    let mut r = DescribeQuorumRequest::default();
    r.topics.push(t);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_quorum_and_api_versions_over_tcp() {
    init_tracing();
    let cluster = Cluster::start(3, 1000, 100).await;
    let leader = cluster.leader().await;
    for i in 0..5 {
        cluster.node(leader).write(&add("d", i)).await.unwrap();
    }
    cluster.converge(5).await;
    let mut conn = KafkaConnection::connect(&cluster.voters[&leader], "test", WAIT)
        .await
        .unwrap();
    let versions = conn
        .call(ApiVersionsRequest::default(), 3, WAIT)
        .await
        .unwrap();
    assert_eq!(versions.error_code, 0);
    let keys: Vec<i16> = versions.api_keys.iter().map(|k| k.api_key).collect();
    for key in [
        ApiKey::ApiVersions,
        ApiKey::DescribeQuorum,
        ApiKey::AllocateProducerIds,
    ] {
        assert!(keys.contains(&(key as i16)), "{key:?} listed in {keys:?}");
    }
    // Wait until the leader has seen every follower's match index.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let response = conn.call(describe_request(), 2, WAIT).await.unwrap();
        let p = &response.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.leader_id, BrokerId(leader));
        assert_eq!(p.leader_epoch as u64, cluster.node(leader).term());
        assert!(p.high_watermark >= 6, "high watermark {}", p.high_watermark);
        let mut ids: Vec<i32> = p.current_voters.iter().map(|v| v.replica_id.0).collect();
        ids.sort();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(response.nodes.len(), 3);
        if p.current_voters
            .iter()
            .all(|v| v.log_end_offset >= p.high_watermark)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "voters' log end offsets: {:?}",
            p.current_voters
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A follower answers NOT_LEADER_OR_FOLLOWER with the leader.
    let follower = *cluster.voters.keys().find(|id| **id != leader).unwrap();
    let mut conn = KafkaConnection::connect(&cluster.voters[&follower], "test", WAIT)
        .await
        .unwrap();
    let response = conn.call(describe_request(), 1, WAIT).await.unwrap();
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 6);
    assert_eq!(p.leader_id, BrokerId(leader));
    cluster.shutdown().await;
}

/// Writes `bytes` on a fresh connection and expects the server to close it without answering.
async fn expect_closed(addr: &str, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("the server closes the connection");
    match read {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("the server answered {n} bytes to garbage"),
    }
}

fn frame(api_key: i16, version: i16, rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&api_key.to_be_bytes());
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&7i32.to_be_bytes());
    body.extend_from_slice(rest);
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(&body);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_close_their_connection_and_the_server_keeps_serving() {
    init_tracing();
    let cluster = Cluster::start(1, 1000, 100).await;
    let leader = cluster.leader().await;
    let addr = cluster.voters[&leader].clone();
    let seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("garbage seed {seed}");
    let mut x = seed | 1;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    // A negative size, an oversized frame, a too-short frame.
    expect_closed(&addr, &(-5i32).to_be_bytes()).await;
    expect_closed(&addr, &i32::MAX.to_be_bytes()).await;
    expect_closed(&addr, &[0, 0, 0, 3, 1, 2, 3]).await;
    // An unknown API key, an API not served, an unsupported version, a truncated body.
    expect_closed(&addr, &frame(-1, 0, &[0, 0, 0])).await;
    expect_closed(&addr, &frame(ApiKey::Produce as i16, 9, &[0, 0, 0])).await;
    expect_closed(&addr, &frame(ApiKey::DescribeQuorum as i16, 99, &[0, 0, 0])).await;
    expect_closed(
        &addr,
        &frame(ApiKey::DescribeQuorum as i16, 1, &[0, 4, b'a']),
    )
    .await;
    // An array count far beyond the frame (DescribeQuorum v0 is flexible: header v2 with an
    // empty client id and no tagged fields, then a compact array of 2^31 - 2 topics).
    let huge = [0u8, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07];
    expect_closed(&addr, &frame(ApiKey::DescribeQuorum as i16, 0, &huge)).await;
    // Internal APIs: bad version, bad JSON.
    expect_closed(&addr, &frame(30000, 5, &[0, 0, 0])).await;
    expect_closed(&addr, &frame(30000, 0, &[0, 0, 0, b'{'])).await;
    expect_closed(&addr, &frame(30002, 0, &[0, 0, 0, 0, 0, 0, 9])).await;
    // Random bodies for every served key.
    for key in [18i16, 55, 67, 30000, 30001, 30002, 30003, 30004] {
        for len in [0usize, 1, 5, 40, 300] {
            let body = random(len);
            let f = frame(key, 0, &body);
            let mut s = TcpStream::connect(&addr).await.unwrap();
            s.write_all(&f).await.unwrap();
            let mut buf = vec![0u8; 4096];
            // Either an answer or a close; never a hang or a dead server.
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        }
    }
    // Still serving: ApiVersions over a new connection, and writes.
    let mut conn = KafkaConnection::connect(&addr, "test", WAIT).await.unwrap();
    let versions = conn
        .call(ApiVersionsRequest::default(), 0, WAIT)
        .await
        .unwrap();
    assert_eq!(versions.error_code, 0);
    // An unsupported ApiVersions version is answered (v0, UNSUPPORTED_VERSION).
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(&frame(18, 99, &[0, 0, 0])).await.unwrap();
    let mut size = [0u8; 4];
    s.read_exact(&mut size).await.unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).await.unwrap();
    assert_eq!(&body[..4], &7i32.to_be_bytes());
    assert_eq!(&body[4..6], &35i16.to_be_bytes());
    cluster.node(leader).write(&add("g", 1)).await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_client_finds_the_leader_follows_failover_and_fetches_metadata() {
    init_tracing();
    let mut cluster = Cluster::start(3, 1000, 100).await;
    let first = cluster.leader().await;
    let client = ControllerClient::new(cluster.voters.clone(), "test-client")
        .with_timeouts(Duration::from_secs(2), WAIT);
    let mut request = AllocateProducerIdsRequest::default();
    request.broker_id = BrokerId(5);
    let response = client.send(0, &request).await.unwrap();
    assert_eq!(response.error_code, 0);
    assert_eq!(client.cached_leader(), Some(first));
    let index = response.producer_id_start.0;
    assert!(index > 0);

    let fetched = client
        .fetch_metadata(-1, Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    let state: Counters = serde_json::from_slice(&fetched.state).unwrap();
    assert_eq!(state.values["producer-ids"], 5);
    assert!(fetched.applied_offset >= index);
    // Nothing newer: an empty answer after the wait.
    let none = client
        .fetch_metadata(fetched.applied_offset, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(none.is_none());
    // A long-poll answered by a later write.
    let since = fetched.applied_offset;
    let voters = cluster.voters.clone();
    let poll = tokio::spawn(async move {
        let c = ControllerClient::new(voters, "poller");
        c.fetch_metadata(since, Duration::from_secs(20)).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.node(first).write(&add("late", 1)).await.unwrap();
    let polled = poll.await.unwrap().unwrap().unwrap();
    let state: Counters = serde_json::from_slice(&polled.state).unwrap();
    assert_eq!(state.values.get("late"), Some(&1));

    // The leader goes away: the client follows the new one.
    cluster.stop(first).await;
    request.broker_id = BrokerId(7);
    let response = client.send(0, &request).await.unwrap();
    assert_eq!(response.error_code, 0);
    let second = client.cached_leader().unwrap();
    assert_ne!(second, first);
    assert_eq!(cluster.node(second).state().values["producer-ids"], 12);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_keeps_acknowledged_writes_of_a_single_voter() {
    init_tracing();
    use durable_fs::sim::SimStorage;
    for seed in [1u64, 2, 3] {
        println!("power cut seed {seed}");
        let sim = SimStorage::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let voters = BTreeMap::from([(1, addr.clone())]);
        let root = PathBuf::from("/data");
        let q = Quorum::<Counters>::start(
            config(1, &voters, &root, 7, 2),
            sim.shared(),
            listener,
            NoControllerApi,
        )
        .await
        .unwrap();
        q.wait_for_leader(WAIT).await.unwrap();
        let mut acknowledged = 0i64;
        for i in 0..10 {
            q.write(&add("p", 1)).await.unwrap();
            acknowledged = i + 1;
        }
        // Strike during the next writes.
        sim.arm_power_cut(3 + seed * 4, seed);
        for _ in 0..20 {
            match tokio::time::timeout(Duration::from_secs(5), q.write(&add("p", 1))).await {
                Ok(Ok(_)) => acknowledged += 1,
                _ => break,
            }
        }
        assert!(sim.armed_cut_struck(), "seed {seed}");
        let _ = q.shutdown().await;
        drop(q);
        let listener = bind_again(&addr).await;
        let storage: Arc<dyn Storage> = sim.shared();
        let q = Quorum::<Counters>::start(
            config(1, &voters, &root, 7, 2),
            storage,
            listener,
            NoControllerApi,
        )
        .await
        .unwrap();
        q.wait_for_leader(WAIT).await.unwrap();
        // The restarted voter commits its recovered log; a new write follows it.
        q.write(&add("after", 1)).await.unwrap();
        let s = q.state();
        assert!(
            s.values["p"] >= acknowledged,
            "seed {seed}: {} applied after the cut, {acknowledged} acknowledged",
            s.values["p"]
        );
        assert_eq!(s.values["after"], 1);
        q.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_client_follows_not_controller_to_a_moved_leader() {
    init_tracing();
    let mut cluster = Cluster::start(3, 1000, 100).await;
    let first = cluster.leader().await;
    let client = ControllerClient::new(cluster.voters.clone(), "test-client")
        .with_timeouts(Duration::from_secs(2), WAIT);
    let mut request = AllocateProducerIdsRequest::default();
    request.broker_id = BrokerId(1);
    assert_eq!(client.send(0, &request).await.unwrap().error_code, 0);
    assert_eq!(client.cached_leader(), Some(first));
    // Move the leadership and bring the old leader back as a follower, which answers
    // NOT_CONTROLLER. (Not by triggering elections while it leads: the voters' leader lease
    // refuses them, and repeated triggers under load can keep any election from finishing.)
    // Every voter, the restarted one included, must then follow the new leader (should the
    // restarted voter win an election again, move it away once more).
    let mut new_leader = first;
    for _ in 0..5 {
        cluster.stop(first).await;
        assert_ne!(cluster.leader().await, first);
        cluster.restart(first).await;
        new_leader = cluster.leader().await;
        if new_leader != first {
            break;
        }
    }
    assert_ne!(
        new_leader, first,
        "leadership did not move away from voter {first}"
    );
    let response = client.send(0, &request).await.unwrap();
    assert_eq!(response.error_code, 0);
    assert_eq!(client.cached_leader(), Some(new_leader));
    cluster.converge(2).await;
    cluster.shutdown().await;
}

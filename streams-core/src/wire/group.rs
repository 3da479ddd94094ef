//! A client of Kafka's classic consumer-group protocol (KIP-62 era: JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch), used by the wire backend because
//! librdkafka cannot run a custom assignor: the member elected leader runs the streams
//! assignor itself and hands the assignments to the coordinator in SyncGroup.
//!
//! [`GroupClient`] finds the group's coordinator (`FindCoordinator` on any bootstrap server)
//! and keeps one connection to it. A coordinator error (`NOT_COORDINATOR`,
//! `COORDINATOR_NOT_AVAILABLE`, `COORDINATOR_LOAD_IN_PROGRESS`, on the request or on one of
//! its partitions), a connection that is refused, reset or closed, or no answer in time make
//! the call drop the connection, look the coordinator up again (it may have moved, or the
//! broker restarted) and send the request again, with backoff (Kafka's `retry.backoff.ms`,
//! 100 ms, doubling up to `retry.backoff.max.ms`, 1 s), until the call's deadline
//! (`default.api.timeout.ms`, 60 s, as the Java consumer's `commitSync` and `committed`);
//! only then is the last error returned. Every call negotiates its version with
//! the broker (see [`super::conn`]); what a version lacks (static membership before JoinGroup
//! v5) is refused with a clear error instead of being silently dropped.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use state_store::TopicPartition;

use super::conn::Connection;
use super::WireError;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// Reads a SyncGroup response of version 0-3 (`[throttle_time_ms: i32 (v1+)] error_code:
/// i16, assignment: bytes`), taking a null assignment (length -1) as empty: librdkafka's mock
/// cluster sends null with an error code, which the strict codec refuses.
fn parse_sync_group_response(mut body: Bytes, version: i16) -> Result<(i16, Bytes), WireError> {
    use bytes::Buf;
    let malformed = |what: &str| WireError::Codec {
        api: "SyncGroup",
        reason: format!("response ends before its {what}"),
    };
    if version >= 1 {
        if body.remaining() < 4 {
            return Err(malformed("throttle time"));
        }
        body.advance(4);
    }
    if body.remaining() < 6 {
        return Err(malformed("error code and assignment length"));
    }
    let code = body.get_i16();
    let len = body.get_i32();
    if len < 0 {
        return Ok((code, Bytes::new()));
    }
    let len = usize::try_from(len).map_err(|_| malformed("assignment"))?;
    if body.remaining() < len {
        return Err(malformed("assignment"));
    }
    Ok((code, body.split_to(len)))
}

/// Who a member is in the group: what every call after the join carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MemberIdentityInfo {
    /// The member id the coordinator gave (empty before the first join).
    pub(crate) member_id: String,
    /// The generation joined (-1 before the first join).
    pub(crate) generation: i32,
    /// The static member id (`group.instance.id`), if configured.
    pub(crate) instance_id: Option<String>,
}

/// A completed JoinGroup.
#[derive(Debug, Clone)]
pub(crate) struct Joined {
    pub(crate) member_id: String,
    pub(crate) generation: i32,
    pub(crate) leader: String,
    /// Every member's (id, metadata) when this member leads; empty otherwise.
    pub(crate) members: Vec<(String, Bytes)>,
}

impl Joined {
    pub(crate) fn is_leader(&self) -> bool {
        self.member_id == self.leader
    }
}

/// What a JoinGroup asks for.
#[derive(Debug, Clone)]
pub(crate) struct JoinParams {
    pub(crate) protocol_type: String,
    pub(crate) protocol_name: String,
    pub(crate) metadata: Bytes,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
}

/// A client of one group's coordinator.
#[derive(Debug)]
pub(crate) struct GroupClient {
    bootstrap: Vec<String>,
    client_id: String,
    group: String,
    request_timeout: Duration,
    /// How long a call keeps retrying a lost coordinator (`default.api.timeout.ms`).
    api_timeout: Duration,
    coordinator: Option<Connection>,
}

/// The first wait before a call whose coordinator was lost is sent again (Kafka's
/// `retry.backoff.ms`), doubled after each try up to [`RETRY_BACKOFF_MAX`]
/// (`retry.backoff.max.ms`).
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// The least time an attempt is given (connect and answer), even at the call's deadline.
const MIN_ATTEMPT: Duration = Duration::from_millis(100);

/// How long a read of committed offsets waits for offsets that a transaction still open
/// wrote (`UNSTABLE_OFFSET_COMMIT`) before it gives up with a retriable error: the
/// transaction coordinator resolves them at the latest when the transaction times out
/// (Kafka Streams' default `transaction.timeout.ms` under exactly-once is 10 s).
const STABLE_OFFSETS_WAIT: Duration = Duration::from_secs(60);
/// The first wait before OffsetFetch is asked again for unstable offsets (Kafka's
/// `retry.backoff.ms`), doubled after each try up to [`UNSTABLE_RETRY_BACKOFF_MAX`]
/// (`retry.backoff.max.ms`).
const UNSTABLE_RETRY_BACKOFF: Duration = Duration::from_millis(100);
const UNSTABLE_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The highest JoinGroup version spoken: v5, the last before the flexible encoding. v6+
/// adds nothing the streams runtime uses (v7 echoes the protocol type, v8 a reason, v9
/// skip-assignment for KIP-848 migration), every broker from Kafka 2.3 to 4.x accepts v5, and
/// librdkafka's mock cluster, which advertises JoinGroup v6, reads v6's compact array count
/// as an int32 and drops the connection.
const JOIN_GROUP_MAX: i16 = 5;
/// The highest SyncGroup version spoken: v3, the last before the flexible encoding (same
/// reasons as [`JOIN_GROUP_MAX`]; v5's protocol type and name are optional checks).
const SYNC_GROUP_MAX: i16 = 3;

/// The highest LeaveGroup version spoken: v2, one member by id. v3+ (a batch of members by
/// id or `group.instance.id`) is for admin removal of static members, which a member leaving
/// by itself does not need (static members do not leave on close); librdkafka's mock
/// cluster advertises v4 but answers v3+ with a v2 body.
const LEAVE_GROUP_MAX: i16 = 2;

/// How long a JoinGroup or SyncGroup may take beyond the rebalance timeout before the call
/// is given up (the coordinator answers at the latest when the rebalance times out).
const GROUP_CALL_SLACK: Duration = Duration::from_secs(5);

fn ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

impl GroupClient {
    pub(crate) fn new(
        bootstrap: Vec<String>,
        client_id: &str,
        group: &str,
        request_timeout: Duration,
        api_timeout: Duration,
    ) -> Self {
        GroupClient {
            bootstrap,
            client_id: client_id.to_owned(),
            group: group.to_owned(),
            request_timeout,
            api_timeout,
            coordinator: None,
        }
    }

    /// The group id.
    pub(crate) fn group(&self) -> &str {
        &self.group
    }

    /// The connection to the coordinator, found first if needed (connecting within
    /// `timeout`).
    fn coordinator(&mut self, timeout: Duration) -> Result<&mut Connection, WireError> {
        if self.coordinator.is_none() {
            let conn = self.find_coordinator(timeout)?;
            self.coordinator = Some(conn);
        }
        self.coordinator.as_mut().ok_or(WireError::NoCoordinator {
            group: String::new(),
        })
    }

    /// FindCoordinator on the bootstrap servers in turn; the first that answers tells.
    fn find_coordinator(&self, timeout: Duration) -> Result<Connection, WireError> {
        let mut last = None;
        for server in &self.bootstrap {
            let mut conn = match Connection::connect(server, &self.client_id, timeout) {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let v = conn.version::<FindCoordinatorRequest>(0, 3)?;
            let req = FindCoordinatorRequest::default().with_key(s(&self.group));
            let r = match conn.call(req, v, timeout) {
                Ok(r) => r,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            if r.error_code != 0 {
                last = Some(WireError::kafka(
                    "FindCoordinator",
                    r.error_code,
                    r.error_message.as_ref().map(|m| m.to_string()),
                ));
                continue;
            }
            let address = format!("{}:{}", r.host.as_str(), r.port);
            if address == conn.address() {
                return Ok(conn);
            }
            return Connection::connect(&address, &self.client_id, timeout);
        }
        Err(last.unwrap_or(WireError::NoCoordinator {
            group: self.group.clone(),
        }))
    }

    /// Forgets the coordinator after `e` if `e` says it moved or the connection broke.
    fn after_error(&mut self, e: &WireError) {
        if e.coordinator_lost() {
            self.coordinator = None;
        }
    }

    /// `Err` if `code` says the coordinator moved or is not ready (the call is retried).
    fn coordinator_moved(
        api: &'static str,
        code: i16,
        detail: Option<String>,
    ) -> Result<(), WireError> {
        let e = WireError::kafka(api, code, detail);
        if e.retry_elsewhere() {
            return Err(e);
        }
        Ok(())
    }

    fn check(&mut self, api: &'static str, code: i16) -> Result<(), WireError> {
        if code == 0 {
            return Ok(());
        }
        let e = WireError::kafka(api, code, None);
        self.after_error(&e);
        Err(e)
    }

    /// Runs `f` on the coordinator connection with the time an attempt may take (at most
    /// `attempt`, less near the deadline). A broken connection, no answer in time or a moved
    /// coordinator ([`WireError::retry_elsewhere`]) drops the connection, and after a
    /// backoff the coordinator is looked up again and `f` run again, until `budget` has
    /// passed; then the last error is returned. Other errors are returned at once (a
    /// malformed answer also drops the connection).
    fn with_coordinator<T>(
        &mut self,
        api: &'static str,
        attempt: Duration,
        budget: Duration,
        mut f: impl FnMut(&mut Connection, Duration) -> Result<T, WireError>,
    ) -> Result<T, WireError> {
        let deadline = Instant::now() + budget;
        let mut backoff = RETRY_BACKOFF;
        let mut tries = 0u32;
        loop {
            let timeout = attempt
                .min(deadline.saturating_duration_since(Instant::now()))
                .max(MIN_ATTEMPT);
            let result = self.coordinator(timeout).and_then(|conn| f(conn, timeout));
            let e = match result {
                Ok(v) => {
                    if tries > 0 {
                        tracing::info!(group = %self.group, api, tries, "coordinator reached again");
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            self.after_error(&e);
            if !e.retry_elsewhere() {
                return Err(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left <= backoff {
                tracing::warn!(group = %self.group, api, tries, error = %e,
                    "coordinator not reached before the deadline ({budget:?})");
                return Err(e);
            }
            tries += 1;
            tracing::debug!(group = %self.group, api, tries, error = %e,
                "coordinator lost; looking it up again after {backoff:?}");
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
        }
    }

    /// JoinGroup. `MEMBER_ID_REQUIRED` (v4+) is answered by joining again at once with the
    /// member id the coordinator assigned.
    pub(crate) fn join(
        &mut self,
        me: &mut MemberIdentityInfo,
        params: &JoinParams,
    ) -> Result<Joined, WireError> {
        let call = params.rebalance_timeout + GROUP_CALL_SLACK;
        let budget = self.api_timeout.max(call);
        for _ in 0..3 {
            let group = self.group.clone();
            let client_me = me.clone();
            let r = self.with_coordinator("JoinGroup", call, budget, |conn, timeout| {
                let v = conn.version::<JoinGroupRequest>(1, JOIN_GROUP_MAX)?;
                if client_me.instance_id.is_some() && v < 5 {
                    return Err(WireError::UnsupportedFeature {
                        what: "static membership (group.instance.id) needs JoinGroup v5+",
                    });
                }
                let mut req = JoinGroupRequest::default()
                    .with_group_id(GroupId(s(&group)))
                    .with_session_timeout_ms(ms(params.session_timeout))
                    .with_rebalance_timeout_ms(ms(params.rebalance_timeout))
                    .with_member_id(s(&client_me.member_id))
                    .with_protocol_type(s(&params.protocol_type))
                    .with_protocols(vec![JoinGroupRequestProtocol::default()
                        .with_name(s(&params.protocol_name))
                        .with_metadata(params.metadata.clone())]);
                if v >= 5 {
                    req = req.with_group_instance_id(client_me.instance_id.as_deref().map(s));
                }
                let r = conn.call(req, v, timeout)?;
                Self::coordinator_moved("JoinGroup", r.error_code, None)?;
                Ok(r)
            })?;
            match ResponseError::try_from_code(r.error_code) {
                None => {
                    me.member_id = r.member_id.to_string();
                    me.generation = r.generation_id;
                    return Ok(Joined {
                        member_id: r.member_id.to_string(),
                        generation: r.generation_id,
                        leader: r.leader.to_string(),
                        members: r
                            .members
                            .into_iter()
                            .map(|m| (m.member_id.to_string(), m.metadata))
                            .collect(),
                    });
                }
                Some(ResponseError::MemberIdRequired) => {
                    me.member_id = r.member_id.to_string();
                    continue;
                }
                Some(_) => {
                    self.check("JoinGroup", r.error_code)?;
                }
            }
        }
        Err(WireError::kafka(
            "JoinGroup",
            ResponseError::MemberIdRequired.code(),
            Some("the coordinator kept asking for a member id".into()),
        ))
    }

    /// SyncGroup: sends the leader's assignments (empty for followers) and returns this
    /// member's assignment bytes.
    pub(crate) fn sync(
        &mut self,
        me: &MemberIdentityInfo,
        assignments: Vec<(String, Bytes)>,
        rebalance_timeout: Duration,
    ) -> Result<Bytes, WireError> {
        let group = self.group.clone();
        let call = rebalance_timeout + GROUP_CALL_SLACK;
        let budget = self.api_timeout.max(call);
        let (code, assignment) =
            self.with_coordinator("SyncGroup", call, budget, |conn, timeout| {
                let v = conn.version::<SyncGroupRequest>(0, SYNC_GROUP_MAX)?;
                let mut req = SyncGroupRequest::default()
                    .with_group_id(GroupId(s(&group)))
                    .with_generation_id(me.generation)
                    .with_member_id(s(&me.member_id))
                    .with_assignments(
                        assignments
                            .iter()
                            .map(|(m, a)| {
                                SyncGroupRequestAssignment::default()
                                    .with_member_id(s(m))
                                    .with_assignment(a.clone())
                            })
                            .collect(),
                    );
                if v >= 3 {
                    req = req.with_group_instance_id(me.instance_id.as_deref().map(s));
                }
                let body = conn.call_raw(req, v, timeout)?;
                let (code, assignment) = parse_sync_group_response(body, v)?;
                Self::coordinator_moved("SyncGroup", code, None)?;
                Ok((code, assignment))
            })?;
        self.check("SyncGroup", code)?;
        Ok(assignment)
    }

    /// Heartbeat of the member's generation, retried for at most `budget` while the
    /// coordinator is not reached (the heartbeat thread passes its interval: the next
    /// heartbeat is due then anyway).
    pub(crate) fn heartbeat(
        &mut self,
        me: &MemberIdentityInfo,
        budget: Duration,
    ) -> Result<(), WireError> {
        let group = self.group.clone();
        let attempt = self.request_timeout;
        let r = self.with_coordinator("Heartbeat", attempt, budget, |conn, timeout| {
            let v = conn.version::<HeartbeatRequest>(0, 4)?;
            let mut req = HeartbeatRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id(me.generation)
                .with_member_id(s(&me.member_id));
            if v >= 3 {
                req = req.with_group_instance_id(me.instance_id.as_deref().map(s));
            }
            let r = conn.call(req, v, timeout)?;
            Self::coordinator_moved("Heartbeat", r.error_code, None)?;
            Ok(r)
        })?;
        self.check("Heartbeat", r.error_code)
    }

    /// LeaveGroup (a dynamic member leaves at once; static members do not call this on a
    /// plain close, as Kafka's consumer does not).
    ///
    /// Retried for at most `request.timeout.ms` (a close should not wait for a broker that
    /// is away: the coordinator drops the member after its session timeout anyway).
    pub(crate) fn leave(&mut self, me: &MemberIdentityInfo) -> Result<(), WireError> {
        let group = self.group.clone();
        let attempt = self.request_timeout;
        let budget = self.request_timeout.min(self.api_timeout);
        let r = self.with_coordinator("LeaveGroup", attempt, budget, |conn, timeout| {
            let v = conn.version::<LeaveGroupRequest>(0, LEAVE_GROUP_MAX)?;
            let req = LeaveGroupRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_member_id(s(&me.member_id));
            let r = conn.call(req, v, timeout)?;
            Self::coordinator_moved("LeaveGroup", r.error_code, None)?;
            Ok(r)
        })?;
        self.check("LeaveGroup", r.error_code)
    }

    /// OffsetCommit as a member of its generation; the first partition error is returned.
    pub(crate) fn commit(
        &mut self,
        me: &MemberIdentityInfo,
        offsets: &[(TopicPartition, i64, String)],
    ) -> Result<(), WireError> {
        let group = self.group.clone();
        let (attempt, budget) = (self.request_timeout, self.api_timeout);
        let mut by_topic: std::collections::BTreeMap<&str, Vec<OffsetCommitRequestPartition>> =
            std::collections::BTreeMap::new();
        for (tp, offset, metadata) in offsets {
            by_topic.entry(tp.topic.as_str()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(tp.partition)
                    .with_committed_offset(*offset)
                    .with_committed_metadata(Some(s(metadata))),
            );
        }
        let topics: Vec<OffsetCommitRequestTopic> = by_topic
            .into_iter()
            .map(|(t, parts)| {
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(t)))
                    .with_partitions(parts)
            })
            .collect();
        let r = self.with_coordinator("OffsetCommit", attempt, budget, |conn, timeout| {
            let v = conn.version::<OffsetCommitRequest>(1, 8)?;
            let mut req = OffsetCommitRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id_or_member_epoch(me.generation)
                .with_member_id(s(&me.member_id))
                .with_topics(topics.clone());
            if (2..=4).contains(&v) {
                req = req.with_retention_time_ms(-1);
            }
            if v >= 7 {
                req = req.with_group_instance_id(me.instance_id.as_deref().map(s));
            }
            let r = conn.call(req, v, timeout)?;
            for t in &r.topics {
                for p in &t.partitions {
                    Self::coordinator_moved(
                        "OffsetCommit",
                        p.error_code,
                        Some(format!("{}-{}", t.name.0.as_str(), p.partition_index)),
                    )?;
                }
            }
            Ok(r)
        })?;
        for t in &r.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    let e = WireError::kafka(
                        "OffsetCommit",
                        p.error_code,
                        Some(format!("{}-{}", t.name.0.as_str(), p.partition_index)),
                    );
                    self.after_error(&e);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The group's committed offsets (and metadata) of `partitions`; a partition without a
    /// committed offset is absent.
    ///
    /// OffsetFetch v7+ asks for stable offsets (`require_stable`, KIP-447): a partition
    /// whose offset a transaction still open wrote answers `UNSTABLE_OFFSET_COMMIT`, and
    /// reading it now would hand the member an offset that transaction may yet move. As
    /// Kafka's consumer does, the fetch is retried with backoff until the offsets are
    /// stable, for at most the stable-offsets wait (60 s); then it fails with that
    /// (retriable) Kafka error. Brokers before v7 cannot tell unstable offsets apart.
    pub(crate) fn committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<std::collections::BTreeMap<TopicPartition, (i64, String)>, WireError> {
        let deadline = std::time::Instant::now() + STABLE_OFFSETS_WAIT;
        let mut backoff = UNSTABLE_RETRY_BACKOFF;
        loop {
            match self.committed_once(partitions) {
                Err(WireError::Kafka {
                    error: Some(ResponseError::UnstableOffsetCommit),
                    detail,
                    ..
                }) => {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        return Err(WireError::kafka(
                            "OffsetFetch",
                            ResponseError::UnstableOffsetCommit.code(),
                            Some(format!(
                                "group `{}`: {} still in an open transaction after {:?}",
                                self.group,
                                detail.as_deref().unwrap_or("offsets"),
                                STABLE_OFFSETS_WAIT
                            )),
                        ));
                    }
                    tracing::debug!(group = %self.group, detail = detail.as_deref().unwrap_or(""),
                        "committed offsets in an open transaction; fetching them again");
                    std::thread::sleep(backoff.min(deadline - now));
                    backoff = (backoff * 2).min(UNSTABLE_RETRY_BACKOFF_MAX);
                }
                other => return other,
            }
        }
    }

    /// One OffsetFetch of `partitions` (see [`GroupClient::committed`]).
    fn committed_once(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<std::collections::BTreeMap<TopicPartition, (i64, String)>, WireError> {
        let group = self.group.clone();
        let (attempt, budget) = (self.request_timeout, self.api_timeout);
        let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> =
            std::collections::BTreeMap::new();
        for tp in partitions {
            by_topic
                .entry(tp.topic.as_str())
                .or_default()
                .push(tp.partition);
        }
        let topics: Vec<OffsetFetchRequestTopic> = by_topic
            .into_iter()
            .map(|(t, p)| {
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s(t)))
                    .with_partition_indexes(p)
            })
            .collect();
        let r = self.with_coordinator("OffsetFetch", attempt, budget, |conn, timeout| {
            let v = conn.version::<OffsetFetchRequest>(1, 7)?;
            let mut req = OffsetFetchRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_topics(Some(topics.clone()));
            if v >= 7 {
                req = req.with_require_stable(true);
            }
            let r = conn.call(req, v, timeout)?;
            Self::coordinator_moved("OffsetFetch", r.error_code, None)?;
            for t in &r.topics {
                for p in &t.partitions {
                    Self::coordinator_moved(
                        "OffsetFetch",
                        p.error_code,
                        Some(format!("{}-{}", t.name.0.as_str(), p.partition_index)),
                    )?;
                }
            }
            Ok(r)
        })?;
        self.check("OffsetFetch", r.error_code)?;
        let mut out = std::collections::BTreeMap::new();
        for t in r.topics {
            for p in t.partitions {
                if p.error_code != 0 {
                    let e = WireError::kafka(
                        "OffsetFetch",
                        p.error_code,
                        Some(format!("{}-{}", t.name.0.as_str(), p.partition_index)),
                    );
                    self.after_error(&e);
                    return Err(e);
                }
                if p.committed_offset >= 0 {
                    out.insert(
                        TopicPartition::new(t.name.0.as_str(), p.partition_index),
                        (
                            p.committed_offset,
                            p.metadata.map(|m| m.to_string()).unwrap_or_default(),
                        ),
                    );
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::mocking::MockCluster;

    fn params(metadata: &'static [u8]) -> JoinParams {
        JoinParams {
            protocol_type: "consumer".into(),
            protocol_name: "stream".into(),
            metadata: Bytes::from_static(metadata),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
        }
    }

    /// The whole life of one member against librdkafka's mock cluster (an independent
    /// implementation that stops at JoinGroup v6 / SyncGroup v4): join as leader, sync its
    /// own assignment back, heartbeat, commit with the generation, read the commit back,
    /// leave; a commit of a stale generation is refused with ILLEGAL_GENERATION.
    #[test]
    fn one_member_joins_syncs_heartbeats_commits_and_leaves_on_the_mock_cluster() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("t", 2, 1).unwrap();
        let mut client = GroupClient::new(
            vec![mock.bootstrap_servers()],
            "test-client",
            "g1",
            Duration::from_secs(10),
            Duration::from_secs(10),
        );
        let mut me = MemberIdentityInfo {
            member_id: String::new(),
            generation: -1,
            instance_id: None,
        };
        let joined = client.join(&mut me, &params(b"meta")).unwrap();
        assert!(joined.is_leader());
        assert!(!me.member_id.is_empty());
        assert_eq!(joined.members.len(), 1);
        assert_eq!(&joined.members[0].1[..], b"meta");
        let mine = client
            .sync(
                &me,
                vec![(me.member_id.clone(), Bytes::from_static(b"assignment"))],
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(&mine[..], b"assignment");
        client.heartbeat(&me, Duration::from_secs(3)).unwrap();
        let tp = TopicPartition::new("t", 1);
        client
            .commit(&me, &[(tp.clone(), 42, "meta-data".into())])
            .unwrap();
        let got = client.committed(std::slice::from_ref(&tp)).unwrap();
        assert_eq!(got.get(&tp), Some(&(42, "meta-data".to_owned())));
        let stale = MemberIdentityInfo {
            generation: me.generation + 5,
            ..me.clone()
        };
        let err = client
            .commit(&stale, &[(tp, 43, String::new())])
            .unwrap_err();
        assert_eq!(
            err.response_error(),
            Some(ResponseError::IllegalGeneration),
            "{err}"
        );
        client.leave(&me).unwrap();
    }
}

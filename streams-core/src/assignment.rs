//! Task assignment through the consumer group protocol, as Kafka Streams'
//! `StreamsPartitionAssignor` does it: every member joins with protocol type `consumer` and
//! protocol [`STREAMS_PROTOCOL`]; its metadata is a `ConsumerProtocolSubscription` whose
//! `user_data` is a [`SubscriptionInfo`] (version, process id, the tasks it owned); the leader
//! runs a [`TaskAssignor`] over every member's subscription and the task list, and sends each
//! member a `ConsumerProtocolAssignment` (its partitions) whose `user_data` is an
//! [`AssignmentInfo`] (version, active tasks, standby tasks).
//!
//! The user-data layouts are Kafka Streams' version 1 (`SubscriptionInfo.encodeVersionOne`,
//! `AssignmentInfo` v1), big-endian: subscription = `version: i32`, process id as two `i64`
//! (most, least significant bits), previous active tasks and standby tasks each as
//! `count: i32` then `(subtopology: i32, partition: i32)` per task; assignment = `version:
//! i32`, active tasks as above, standby tasks as `count: i32` then per task its id and its
//! partitions (`count: i32`, then `topic` as a Java modified-UTF-8 string with a `u16`
//! length, `partition: i32`). The consumer-protocol wrappers are encoded with the
//! `kafka-protocol` crate's types, so any backend (embedded or rdkafka) puts the same bytes on
//! the wire.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use state_store::TopicPartition;
use uuid::Uuid;

use crate::task::TaskId;

/// The protocol name Kafka Streams' assignor registers (`StreamsPartitionAssignor.name()`).
pub const STREAMS_PROTOCOL: &str = "stream";
/// The group protocol type of stream threads (they are consumers).
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";
/// The version of [`SubscriptionInfo`] and [`AssignmentInfo`] written.
pub const USER_DATA_VERSION: i32 = 1;
/// The `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment` version written (v1:
/// subscriptions carry the owned partitions).
const CONSUMER_PROTOCOL_VERSION: i16 = 1;

/// Assignment metadata that cannot be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum AssignmentDataError {
    /// The bytes end early or carry impossible counts.
    #[error("truncated or malformed {0}")]
    Malformed(&'static str),
    /// A user-data version this build cannot read.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion {
        /// Subscription or assignment.
        what: &'static str,
        /// The version found.
        version: i32,
    },
    /// The consumer-protocol wrapper failed to encode or decode.
    #[error("consumer protocol {what}: {reason}")]
    Protocol {
        /// Subscription or assignment.
        what: &'static str,
        /// The codec's message.
        reason: String,
    },
    /// A value does not fit its wire type (a sub-topology id above `i32::MAX`, a topic
    /// name longer than 65535 bytes).
    #[error("value out of range: {0}")]
    OutOfRange(String),
}

type DataResult<T> = std::result::Result<T, AssignmentDataError>;

/// What a stream thread tells the leader when it joins (Kafka Streams' `SubscriptionInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// The user-data version.
    pub version: i32,
    /// The application instance (shared by the threads of one `StreamsApp`).
    pub process_id: Uuid,
    /// Active tasks the member owned before this rebalance.
    pub prev_tasks: BTreeSet<TaskId>,
    /// Standby tasks the member owned before this rebalance.
    pub standby_tasks: BTreeSet<TaskId>,
}

impl SubscriptionInfo {
    /// The current version's subscription of `process_id` that owned `prev_tasks`.
    pub fn new(process_id: Uuid, prev_tasks: BTreeSet<TaskId>) -> Self {
        SubscriptionInfo {
            version: USER_DATA_VERSION,
            process_id,
            prev_tasks,
            standby_tasks: BTreeSet::new(),
        }
    }

    /// The user-data bytes.
    pub fn encode(&self) -> DataResult<Bytes> {
        let mut b = BytesMut::new();
        b.put_i32(self.version);
        let (hi, lo) = self.process_id.as_u64_pair();
        b.put_u64(hi);
        b.put_u64(lo);
        put_tasks(&mut b, &self.prev_tasks)?;
        put_tasks(&mut b, &self.standby_tasks)?;
        Ok(b.freeze())
    }

    /// Reads user-data bytes (version 1; later versions only append fields, so their
    /// version-1 prefix is read).
    pub fn decode(mut data: &[u8]) -> DataResult<Self> {
        const WHAT: &str = "subscription user data";
        let version = get_i32(&mut data, WHAT)?;
        if version < 1 {
            return Err(AssignmentDataError::UnsupportedVersion {
                what: WHAT,
                version,
            });
        }
        if data.remaining() < 16 {
            return Err(AssignmentDataError::Malformed(WHAT));
        }
        let hi = data.get_u64();
        let lo = data.get_u64();
        let prev_tasks = get_tasks(&mut data, WHAT)?;
        let standby_tasks = get_tasks(&mut data, WHAT)?;
        Ok(SubscriptionInfo {
            version,
            process_id: Uuid::from_u64_pair(hi, lo),
            prev_tasks,
            standby_tasks,
        })
    }
}

/// What the leader tells each member (Kafka Streams' `AssignmentInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AssignmentInfo {
    /// The user-data version.
    pub version: i32,
    /// Active tasks, in the order of the member's assigned partitions.
    pub active_tasks: Vec<TaskId>,
    /// Standby tasks with their input partitions (Kafka's layout; the runtime derives the
    /// changelog partitions a standby reads from the topology).
    pub standby_tasks: BTreeMap<TaskId, Vec<TopicPartition>>,
}

impl AssignmentInfo {
    /// The current version's assignment of `active_tasks`, without standbys.
    pub fn new(active_tasks: Vec<TaskId>) -> Self {
        AssignmentInfo {
            version: USER_DATA_VERSION,
            active_tasks,
            standby_tasks: BTreeMap::new(),
        }
    }

    /// The user-data bytes.
    pub fn encode(&self) -> DataResult<Bytes> {
        let mut b = BytesMut::new();
        b.put_i32(self.version);
        put_len(&mut b, self.active_tasks.len())?;
        for t in &self.active_tasks {
            put_task(&mut b, *t)?;
        }
        put_len(&mut b, self.standby_tasks.len())?;
        for (t, tps) in &self.standby_tasks {
            put_task(&mut b, *t)?;
            put_len(&mut b, tps.len())?;
            for tp in tps {
                let name = tp.topic.as_bytes();
                let len = u16::try_from(name.len()).map_err(|_| {
                    AssignmentDataError::OutOfRange(format!("topic name `{}`", tp.topic))
                })?;
                b.put_u16(len);
                b.put_slice(name);
                b.put_i32(tp.partition);
            }
        }
        Ok(b.freeze())
    }

    /// Reads user-data bytes (version 1 and the version-1 prefix of later versions).
    pub fn decode(mut data: &[u8]) -> DataResult<Self> {
        const WHAT: &str = "assignment user data";
        let version = get_i32(&mut data, WHAT)?;
        if version < 1 {
            return Err(AssignmentDataError::UnsupportedVersion {
                what: WHAT,
                version,
            });
        }
        let n = get_len(&mut data, 8, WHAT)?;
        let mut active_tasks = Vec::with_capacity(n);
        for _ in 0..n {
            active_tasks.push(get_task(&mut data, WHAT)?);
        }
        let n = get_len(&mut data, 12, WHAT)?;
        let mut standby_tasks = BTreeMap::new();
        for _ in 0..n {
            let t = get_task(&mut data, WHAT)?;
            let m = get_len(&mut data, 6, WHAT)?;
            let mut tps = Vec::with_capacity(m);
            for _ in 0..m {
                if data.remaining() < 2 {
                    return Err(AssignmentDataError::Malformed(WHAT));
                }
                let len = usize::from(data.get_u16());
                let name = data
                    .get(..len)
                    .ok_or(AssignmentDataError::Malformed(WHAT))?;
                let topic = String::from_utf8_lossy(name).into_owned();
                data.advance(len);
                tps.push(TopicPartition::new(topic, get_i32(&mut data, WHAT)?));
            }
            standby_tasks.insert(t, tps);
        }
        Ok(AssignmentInfo {
            version,
            active_tasks,
            standby_tasks,
        })
    }
}

fn put_len(b: &mut BytesMut, n: usize) -> DataResult<()> {
    let n = i32::try_from(n).map_err(|_| AssignmentDataError::OutOfRange(format!("count {n}")))?;
    b.put_i32(n);
    Ok(())
}

fn put_task(b: &mut BytesMut, t: TaskId) -> DataResult<()> {
    let sub = i32::try_from(t.subtopology)
        .map_err(|_| AssignmentDataError::OutOfRange(format!("sub-topology of task {t}")))?;
    b.put_i32(sub);
    b.put_i32(t.partition);
    Ok(())
}

fn put_tasks(b: &mut BytesMut, tasks: &BTreeSet<TaskId>) -> DataResult<()> {
    put_len(b, tasks.len())?;
    for t in tasks {
        put_task(b, *t)?;
    }
    Ok(())
}

fn get_i32(data: &mut &[u8], what: &'static str) -> DataResult<i32> {
    if data.remaining() < 4 {
        return Err(AssignmentDataError::Malformed(what));
    }
    Ok(data.get_i32())
}

/// A count, checked against the bytes left (each element takes at least `min_size`).
fn get_len(data: &mut &[u8], min_size: usize, what: &'static str) -> DataResult<usize> {
    let n =
        usize::try_from(get_i32(data, what)?).map_err(|_| AssignmentDataError::Malformed(what))?;
    if n.saturating_mul(min_size) > data.remaining() {
        return Err(AssignmentDataError::Malformed(what));
    }
    Ok(n)
}

fn get_task(data: &mut &[u8], what: &'static str) -> DataResult<TaskId> {
    let sub =
        u32::try_from(get_i32(data, what)?).map_err(|_| AssignmentDataError::Malformed(what))?;
    Ok(TaskId {
        subtopology: sub,
        partition: get_i32(data, what)?,
    })
}

fn get_tasks(data: &mut &[u8], what: &'static str) -> DataResult<BTreeSet<TaskId>> {
    let n = get_len(data, 8, what)?;
    (0..n).map(|_| get_task(data, what)).collect()
}

fn by_topic(tps: &[TopicPartition]) -> BTreeMap<&str, Vec<i32>> {
    let mut out: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in tps {
        out.entry(tp.topic.as_str()).or_default().push(tp.partition);
    }
    out
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// A member's group metadata: a `ConsumerProtocolSubscription` (prefixed by its `i16`
/// version) of `topics`, the partitions it owned, and `info` as user data.
pub fn encode_subscription(
    topics: &[String],
    owned: &[TopicPartition],
    info: &SubscriptionInfo,
) -> DataResult<Bytes> {
    let mut s = ConsumerProtocolSubscription::default();
    s.topics = topics.iter().map(|t| str_bytes(t)).collect();
    s.user_data = Some(info.encode()?);
    s.owned_partitions = by_topic(owned)
        .into_iter()
        .map(|(t, ps)| {
            let mut o = OwnedTopic::default();
            o.topic = TopicName(str_bytes(t));
            o.partitions = ps;
            o
        })
        .collect();
    let mut b = BytesMut::new();
    b.put_i16(CONSUMER_PROTOCOL_VERSION);
    s.encode(&mut b, CONSUMER_PROTOCOL_VERSION)
        .map_err(|e| AssignmentDataError::Protocol {
            what: "subscription",
            reason: e.to_string(),
        })?;
    Ok(b.freeze())
}

/// A decoded member subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// The member id.
    pub member_id: String,
    /// The topics it subscribes to.
    pub topics: Vec<String>,
    /// The partitions it owned.
    pub owned_partitions: Vec<TopicPartition>,
    /// Its streams user data.
    pub info: SubscriptionInfo,
}

/// Reads a member's group metadata (see [`encode_subscription`]).
pub fn decode_subscription(member_id: &str, mut data: &[u8]) -> DataResult<MemberSubscription> {
    const WHAT: &str = "subscription";
    if data.remaining() < 2 {
        return Err(AssignmentDataError::Malformed(WHAT));
    }
    // Later versions only append fields: read what the newest known version has.
    let version = data.get_i16().clamp(0, 3);
    let s = ConsumerProtocolSubscription::decode(&mut data, version).map_err(|e| {
        AssignmentDataError::Protocol {
            what: WHAT,
            reason: e.to_string(),
        }
    })?;
    let info = SubscriptionInfo::decode(s.user_data.as_deref().unwrap_or_default())?;
    Ok(MemberSubscription {
        member_id: member_id.to_owned(),
        topics: s.topics.iter().map(|t| t.as_str().to_owned()).collect(),
        owned_partitions: s
            .owned_partitions
            .iter()
            .flat_map(|o| {
                o.partitions
                    .iter()
                    .map(|p| TopicPartition::new(o.topic.0.as_str(), *p))
            })
            .collect(),
        info,
    })
}

/// A member's assignment: a `ConsumerProtocolAssignment` (prefixed by its `i16` version) of
/// `partitions` with `info` as user data.
pub fn encode_assignment(
    partitions: &[TopicPartition],
    info: &AssignmentInfo,
) -> DataResult<Bytes> {
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = by_topic(partitions)
        .into_iter()
        .map(|(t, ps)| {
            let mut o = AssignedTopic::default();
            o.topic = TopicName(str_bytes(t));
            o.partitions = ps;
            o
        })
        .collect();
    a.user_data = Some(info.encode()?);
    let mut b = BytesMut::new();
    b.put_i16(CONSUMER_PROTOCOL_VERSION);
    a.encode(&mut b, CONSUMER_PROTOCOL_VERSION)
        .map_err(|e| AssignmentDataError::Protocol {
            what: "assignment",
            reason: e.to_string(),
        })?;
    Ok(b.freeze())
}

/// Reads a member's assignment (see [`encode_assignment`]): its partitions and user data.
/// Empty bytes (a member the leader gave nothing) are an empty assignment.
pub fn decode_assignment(mut data: &[u8]) -> DataResult<(Vec<TopicPartition>, AssignmentInfo)> {
    const WHAT: &str = "assignment";
    if data.is_empty() {
        return Ok((Vec::new(), AssignmentInfo::new(Vec::new())));
    }
    if data.remaining() < 2 {
        return Err(AssignmentDataError::Malformed(WHAT));
    }
    let version = data.get_i16().clamp(0, 3);
    let a = ConsumerProtocolAssignment::decode(&mut data, version).map_err(|e| {
        AssignmentDataError::Protocol {
            what: WHAT,
            reason: e.to_string(),
        }
    })?;
    let info = match a.user_data.as_deref() {
        Some(d) if !d.is_empty() => AssignmentInfo::decode(d)?,
        _ => AssignmentInfo::new(Vec::new()),
    };
    let partitions = a
        .assigned_partitions
        .iter()
        .flat_map(|o| {
            o.partitions
                .iter()
                .map(|p| TopicPartition::new(o.topic.0.as_str(), *p))
        })
        .collect();
    Ok((partitions, info))
}

/// The tasks a member gets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskAssignment {
    /// Active tasks.
    pub active: Vec<TaskId>,
    /// Standby tasks (kept up to date from their changelogs, never processing).
    pub standby: Vec<TaskId>,
}

/// Decides which member runs which task (the leader runs it at every rebalance). Kafka
/// Streams' sticky assignor and high-availability assignor are implementations.
pub trait TaskAssignor: Send + Sync {
    /// Member id -> its tasks, for every member in `members`. Every task of `tasks` should be
    /// active on exactly one member.
    fn assign(
        &self,
        members: &[MemberSubscription],
        tasks: &[TaskId],
    ) -> BTreeMap<String, TaskAssignment>;
}

/// Whole tasks, balanced: a task stays with the member that owned it while that member is
/// below its share (`ceil(tasks / members)`), the rest go to the least-loaded member (ties by
/// member id).
#[derive(Debug, Clone, Copy, Default)]
pub struct StickyTaskAssignor;

impl TaskAssignor for StickyTaskAssignor {
    fn assign(
        &self,
        members: &[MemberSubscription],
        tasks: &[TaskId],
    ) -> BTreeMap<String, TaskAssignment> {
        let mut out: BTreeMap<String, TaskAssignment> = members
            .iter()
            .map(|m| (m.member_id.clone(), TaskAssignment::default()))
            .collect();
        if members.is_empty() {
            return out;
        }
        let capacity = tasks.len().div_ceil(members.len());
        let mut load: BTreeMap<&str, usize> =
            members.iter().map(|m| (m.member_id.as_str(), 0)).collect();
        let mut unassigned = Vec::new();
        for t in tasks {
            let prev = members.iter().find(|m| m.info.prev_tasks.contains(t));
            match prev {
                Some(m) if load.get(m.member_id.as_str()).copied().unwrap_or(0) < capacity => {
                    *load.entry(m.member_id.as_str()).or_default() += 1;
                    out.entry(m.member_id.clone()).or_default().active.push(*t);
                }
                _ => unassigned.push(*t),
            }
        }
        for t in unassigned {
            let Some((&m, _)) = load.iter().min_by_key(|(id, l)| (**l, **id)) else {
                break;
            };
            *load.entry(m).or_default() += 1;
            out.entry(m.to_owned()).or_default().active.push(t);
        }
        out
    }
}

/// Adds up to `num_standby_replicas` standby tasks per active task to `assignment`, each on
/// a different application instance (process id) than the task's active copy and its other
/// standbys, as Kafka Streams places standbys: a task's standby never shares an instance with
/// the task, since a failing instance would take both. Among the instances left, the one that
/// held the task before (active or standby) is preferred, then the one with the fewest
/// standbys; inside an instance, the member that held it, then the least-loaded member (ties
/// by member id). With fewer other instances than replicas the task gets fewer standbys (a
/// warning says so). This is the minimal standby placement of the runtime; a
/// high-availability assignor replaces it.
pub fn assign_standby_replicas(
    members: &[MemberSubscription],
    assignment: &mut BTreeMap<String, TaskAssignment>,
    num_standby_replicas: u32,
) {
    if num_standby_replicas == 0 {
        return;
    }
    let process_of: BTreeMap<&str, Uuid> = members
        .iter()
        .map(|m| (m.member_id.as_str(), m.info.process_id))
        .collect();
    let held_before = |m: &MemberSubscription, t: &TaskId| {
        m.info.prev_tasks.contains(t) || m.info.standby_tasks.contains(t)
    };
    let mut actives: Vec<(TaskId, Uuid)> = assignment
        .iter()
        .flat_map(|(member, a)| {
            let process = process_of.get(member.as_str()).copied();
            a.active
                .iter()
                .filter_map(move |t| process.map(|p| (*t, p)))
        })
        .collect();
    actives.sort();
    let mut standbys_per_process: BTreeMap<Uuid, usize> = BTreeMap::new();
    let mut short = 0usize;
    for (task, active_process) in actives {
        let mut holders = BTreeSet::from([active_process]);
        for _ in 0..num_standby_replicas {
            let candidates = members
                .iter()
                .filter(|m| !holders.contains(&m.info.process_id));
            let Some(process) = candidates
                .min_by_key(|m| {
                    let p = m.info.process_id;
                    let sticky = !members
                        .iter()
                        .any(|o| o.info.process_id == p && held_before(o, &task));
                    (
                        sticky,
                        standbys_per_process.get(&p).copied().unwrap_or(0),
                        p,
                    )
                })
                .map(|m| m.info.process_id)
            else {
                short += 1;
                break;
            };
            let Some(member) = members
                .iter()
                .filter(|m| m.info.process_id == process)
                .min_by_key(|m| {
                    let load = assignment
                        .get(&m.member_id)
                        .map_or(0, |a| a.active.len() + a.standby.len());
                    (!held_before(m, &task), load, m.member_id.as_str())
                })
            else {
                break;
            };
            assignment
                .entry(member.member_id.clone())
                .or_default()
                .standby
                .push(task);
            holders.insert(process);
            *standbys_per_process.entry(process).or_default() += 1;
        }
    }
    if short > 0 {
        tracing::warn!(
            missing = short,
            num_standby_replicas,
            "not enough application instances to place every standby replica"
        );
    }
}

/// A [`TaskAssignor`] that assigns active tasks with `active` and then standby replicas with
/// [`assign_standby_replicas`].
#[derive(Debug, Clone, Copy, Default)]
pub struct WithStandbyReplicas<A> {
    /// Assigns the active tasks.
    pub active: A,
    /// Standby replicas per task (`num.standby.replicas`).
    pub num_standby_replicas: u32,
}

impl<A: TaskAssignor> TaskAssignor for WithStandbyReplicas<A> {
    fn assign(
        &self,
        members: &[MemberSubscription],
        tasks: &[TaskId],
    ) -> BTreeMap<String, TaskAssignment> {
        let mut out = self.active.assign(members, tasks);
        assign_standby_replicas(members, &mut out, self.num_standby_replicas);
        out
    }
}

/// What the leader needs to assign: the tasks with their input partitions, and the assignor.
#[derive(Clone)]
pub struct AssignmentSpec {
    /// Every task of the topology with its input partitions.
    pub tasks: BTreeMap<TaskId, Vec<TopicPartition>>,
    /// The assignor.
    pub assignor: std::sync::Arc<dyn TaskAssignor>,
}

impl std::fmt::Debug for AssignmentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssignmentSpec")
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl AssignmentSpec {
    /// The leader's step: decodes every member's metadata, runs the assignor and encodes each
    /// member's assignment (its tasks' partitions and an [`AssignmentInfo`]). A member whose
    /// metadata cannot be read (another client in the group) gets an empty assignment.
    pub fn assign(&self, members: &[(String, Bytes)]) -> DataResult<Vec<(String, Bytes)>> {
        let mut subscriptions = Vec::with_capacity(members.len());
        for (id, metadata) in members {
            match decode_subscription(id, metadata) {
                Ok(s) => subscriptions.push(s),
                Err(e) => {
                    tracing::warn!(member = %id, error = %e, "unreadable subscription; the member gets no tasks")
                }
            }
        }
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        let mut by_member = self.assignor.assign(&subscriptions, &ids);
        let mut out = Vec::with_capacity(members.len());
        for (id, _) in members {
            let tasks = by_member.remove(id).unwrap_or_default();
            let partitions: Vec<TopicPartition> = tasks
                .active
                .iter()
                .filter_map(|t| self.tasks.get(t))
                .flatten()
                .cloned()
                .collect();
            let mut info = AssignmentInfo::new(tasks.active);
            // As Kafka: each standby task with its input partitions.
            info.standby_tasks = tasks
                .standby
                .iter()
                .map(|t| (*t, self.tasks.get(t).cloned().unwrap_or_default()))
                .collect();
            let bytes = encode_assignment(&partitions, &info)?;
            out.push((id.clone(), bytes));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u32, p: i32) -> TaskId {
        TaskId {
            subtopology: s,
            partition: p,
        }
    }

    #[test]
    fn subscription_round_trips_with_kafkas_v1_layout() {
        let id = Uuid::from_u64_pair(1, 2);
        let info = SubscriptionInfo::new(id, [t(0, 1), t(1, 0)].into_iter().collect());
        let bytes = info.encode().unwrap();
        // version, uuid (16), prev tasks (4 + 2 * 8), standby tasks (4).
        assert_eq!(bytes.len(), 4 + 16 + 4 + 16 + 4);
        assert_eq!(&bytes[..4], &1i32.to_be_bytes());
        assert_eq!(&bytes[4..12], &1u64.to_be_bytes());
        assert_eq!(SubscriptionInfo::decode(&bytes).unwrap(), info);
        let owned = vec![TopicPartition::new("a", 1)];
        let meta = encode_subscription(&["a".into(), "b".into()], &owned, &info).unwrap();
        let back = decode_subscription("m", &meta).unwrap();
        assert_eq!(back.topics, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(back.owned_partitions, owned);
        assert_eq!(back.info, info);
    }

    #[test]
    fn assignment_round_trips_and_truncation_is_an_error() {
        let mut info = AssignmentInfo::new(vec![t(0, 0), t(1, 3)]);
        info.standby_tasks
            .insert(t(2, 1), vec![TopicPartition::new("app-store-changelog", 1)]);
        let bytes = info.encode().unwrap();
        assert_eq!(AssignmentInfo::decode(&bytes).unwrap(), info);
        for cut in 0..bytes.len() {
            assert!(
                AssignmentInfo::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let tps = vec![TopicPartition::new("in", 0), TopicPartition::new("in", 3)];
        let wire = encode_assignment(&tps, &info).unwrap();
        let (back, back_info) = decode_assignment(&wire).unwrap();
        assert_eq!(back, tps);
        assert_eq!(back_info, info);
        // A huge count in a short buffer is refused, not allocated.
        let mut evil = BytesMut::new();
        evil.put_i32(1);
        evil.put_i32(i32::MAX);
        assert!(AssignmentInfo::decode(&evil).is_err());
    }

    fn member(id: &str, prev: &[TaskId]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.into(),
            topics: Vec::new(),
            owned_partitions: Vec::new(),
            info: SubscriptionInfo::new(Uuid::nil(), prev.iter().copied().collect()),
        }
    }

    fn member_of(id: &str, process: u64) -> MemberSubscription {
        let mut m = member(id, &[]);
        m.info.process_id = Uuid::from_u64_pair(0, process);
        m
    }

    #[test]
    fn standby_replicas_go_to_other_instances_only() {
        let tasks: Vec<TaskId> = (0..4).map(|p| t(0, p)).collect();
        // Two instances with two threads each.
        let members = [
            member_of("a1", 1),
            member_of("a2", 1),
            member_of("b1", 2),
            member_of("b2", 2),
        ];
        let assignor = WithStandbyReplicas {
            active: StickyTaskAssignor,
            num_standby_replicas: 1,
        };
        let out = assignor.assign(&members, &tasks);
        let process = |m: &str| if m.starts_with('a') { 1 } else { 2 };
        for task in &tasks {
            let active: Vec<&str> = out
                .iter()
                .filter(|(_, a)| a.active.contains(task))
                .map(|(m, _)| m.as_str())
                .collect();
            let standby: Vec<&str> = out
                .iter()
                .filter(|(_, a)| a.standby.contains(task))
                .map(|(m, _)| m.as_str())
                .collect();
            assert_eq!(
                (active.len(), standby.len()),
                (1, 1),
                "task {task}: {out:?}"
            );
            assert_ne!(process(active[0]), process(standby[0]), "task {task}");
        }
        // Each thread gets one active and one standby task.
        assert!(out
            .values()
            .all(|a| a.active.len() == 1 && a.standby.len() == 1));
        // Two replicas asked, one other instance: each task still gets one.
        let two = WithStandbyReplicas {
            active: StickyTaskAssignor,
            num_standby_replicas: 2,
        }
        .assign(&members, &tasks);
        assert_eq!(two.values().map(|a| a.standby.len()).sum::<usize>(), 4);
        // A single instance gets no standby at all.
        let alone = assignor.assign(&members[..2], &tasks);
        assert!(alone.values().all(|a| a.standby.is_empty()));
    }

    #[test]
    fn the_leader_sends_standby_tasks_with_their_input_partitions() {
        let tasks: BTreeMap<TaskId, Vec<TopicPartition>> = (0..2)
            .map(|p| (t(0, p), vec![TopicPartition::new("in", p)]))
            .collect();
        let spec = AssignmentSpec {
            tasks,
            assignor: std::sync::Arc::new(WithStandbyReplicas {
                active: StickyTaskAssignor,
                num_standby_replicas: 1,
            }),
        };
        let metadata = |process: u64| {
            let info = SubscriptionInfo::new(Uuid::from_u64_pair(0, process), BTreeSet::new());
            encode_subscription(&["in".into()], &[], &info).unwrap()
        };
        let out = spec
            .assign(&[("a".into(), metadata(1)), ("b".into(), metadata(2))])
            .unwrap();
        for (_, bytes) in &out {
            let (partitions, info) = decode_assignment(bytes).unwrap();
            assert_eq!(info.active_tasks.len(), 1);
            let active = info.active_tasks[0];
            assert_eq!(
                partitions,
                vec![TopicPartition::new("in", active.partition)]
            );
            let other = t(0, 1 - active.partition);
            assert_eq!(
                info.standby_tasks,
                BTreeMap::from([(other, vec![TopicPartition::new("in", other.partition)])])
            );
        }
    }

    #[test]
    fn sticky_assignor_keeps_tasks_and_balances() {
        let tasks: Vec<TaskId> = (0..4)
            .map(|p| t(0, p))
            .chain((0..2).map(|p| t(1, p)))
            .collect();
        let a = StickyTaskAssignor.assign(&[member("a", &tasks)], &tasks);
        assert_eq!(a["a"].active.len(), 6);
        // b joins: a keeps 3 of its tasks, b gets the other 3.
        let two = StickyTaskAssignor.assign(&[member("a", &tasks), member("b", &[])], &tasks);
        assert_eq!(two["a"].active.len(), 3);
        assert_eq!(two["b"].active.len(), 3);
        let all: BTreeSet<TaskId> = two.values().flat_map(|x| x.active.clone()).collect();
        assert_eq!(all.len(), 6);
        // Stickiness: each keeps what it had.
        let again = StickyTaskAssignor.assign(
            &[member("a", &two["a"].active), member("b", &two["b"].active)],
            &tasks,
        );
        assert_eq!(again, two);
    }
}

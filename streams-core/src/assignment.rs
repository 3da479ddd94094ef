//! Task assignment through the consumer group protocol, as Kafka Streams'
//! `StreamsPartitionAssignor` does it: every member joins with protocol type `consumer` and
//! protocol [`STREAMS_PROTOCOL`]; its metadata is a `ConsumerProtocolSubscription` whose
//! `user_data` is a [`SubscriptionInfo`] (process id, `application.server` endpoint, the
//! offset sums of the tasks it has state for); the leader groups the members by process id,
//! computes each client's lag per stateful task from the changelog end offsets, runs a
//! [`crate::TaskAssignor`] over the clients (by default Kafka's high-availability assignor,
//! see [`crate::assignor`]), spreads each client's tasks over its consumers, and sends each
//! member a `ConsumerProtocolAssignment` (its partitions) whose `user_data` is an
//! [`AssignmentInfo`] (active tasks, standby tasks, partitions by host, error code, next
//! rebalance time).
//!
//! # User-data layouts
//!
//! Both are Kafka Streams' own, big-endian, written at version [`USER_DATA_VERSION`] (10) and
//! read at every version 1 to 11.
//!
//! `SubscriptionInfo` (Kafka's `SubscriptionInfoData`, fields present by version):
//! `version: i32`; `latest_supported_version: i32` (3+); process id as two `i64` (most,
//! least significant bits); previous active and standby tasks as `count: i32` then
//! `(subtopology: i32, partition: i32)` per task (1-6 only); the user endpoint as
//! `length: i32` + UTF-8 `host:port` (2+); task offset sums (7+) as `count: i32` then per
//! task `subtopology: i32` and, in 7-9, `count: i32` + `(partition: i32, offset_sum: i64)`
//! per partition, in 10+ `partition: i32, offset_sum: i64, named_topology: i16-length
//! string or -1`; `unique_field: i8` (8+); `error_code: i32` (9+); client tags (11+) as
//! `count: i32` + `(key, value)` byte arrays.
//!
//! `AssignmentInfo`: `version: i32`; `commonly_supported_version: i32` (3+); active tasks
//! (`count: i32`, task ids) and standby tasks (`count: i32`, per task its id and its
//! partitions as `count: i32` + `(topic: u16-length string, partition: i32)`); task ids are
//! `(subtopology: i32, partition: i32)`, plus from version 10 a named-topology length `i32`
//! (0 here) and its UTF-16 characters; then partitions by host: in 2-4 a map `count: i32` +
//! `(host: string, port: i32, partitions)`, in 5 the same with topics replaced by indices of
//! a topic dictionary written first (`count: i32` + `(index: i32, topic: string)`), in 6+ one
//! dictionary then the active and the standby map; `error_code: i32` (4+);
//! `next_rebalance_ms: i64` (7+, `i64::MAX` = none).
//!
//! Strings are written as UTF-8 with a `u16` length where Java writes modified UTF-8: the
//! same bytes for every topic and host name without NUL or characters outside the BMP.
//! The consumer-protocol wrappers are encoded with the `kafka-protocol` crate's types, so any
//! backend (embedded or rdkafka) puts the same bytes on the wire.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use state_store::TopicPartition;
use uuid::Uuid;

use crate::assignor::{
    assign_tasks_to_threads, AssignorConfig, ClientState, HighAvailabilityTaskAssignor,
    StickyTaskAssignor, TaskAssignor,
};
use crate::task::TaskId;

/// The protocol name Kafka Streams' assignor registers (`StreamsPartitionAssignor.name()`).
pub const STREAMS_PROTOCOL: &str = "stream";
/// The group protocol type of stream threads (they are consumers).
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";
/// The version of [`SubscriptionInfo`] and [`AssignmentInfo`] written (and announced as the
/// latest supported one).
pub const USER_DATA_VERSION: i32 = 10;
/// The newest user-data version this build can read (Kafka's `LATEST_SUPPORTED_VERSION`).
pub const LATEST_READABLE_VERSION: i32 = 11;
/// The offset sum a member reports for a task it runs as an active task (Kafka's
/// `Task.LATEST_OFFSET`): fully caught up by definition.
pub const LATEST_OFFSET: i64 = -2;
/// The offset sum of a task known only from a pre-version-7 subscription's standby set
/// (Kafka's `SubscriptionInfo.UNKNOWN_OFFSET_SUM`).
pub const UNKNOWN_OFFSET_SUM: i64 = -3;
/// `next_rebalance_ms` of an assignment that asks for no follow-up rebalance.
pub const NO_REBALANCE: i64 = i64::MAX;
/// The `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment` version written (v1:
/// subscriptions carry the owned partitions).
const CONSUMER_PROTOCOL_VERSION: i16 = 1;
/// The first user-data version whose task ids carry a named topology.
const MIN_NAMED_TOPOLOGY_VERSION: i32 = 10;
/// The first subscription version carrying task offset sums.
const MIN_OFFSET_SUM_VERSION: i32 = 7;

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
    /// A task of a named topology (Kafka's experimental `NamedTopology`), which this build
    /// does not have.
    #[error("task {0} belongs to named topology `{1}`, which is not supported")]
    NamedTopology(String, String),
    /// An endpoint that is not `host:port`.
    #[error("invalid endpoint `{0}`: expected host:port")]
    InvalidEndpoint(String),
}

type DataResult<T> = std::result::Result<T, AssignmentDataError>;

/// A stream instance's `application.server` endpoint (Kafka's `HostInfo`): where its
/// interactive queries are served. Members send it in their subscriptions; the assignment
/// maps every endpoint to its partitions, which
/// [`StreamsApp::query_metadata_for_key`](crate::StreamsApp::query_metadata_for_key) and
/// [`StreamsApp::all_metadata`](crate::StreamsApp::all_metadata) read. The runtime itself
/// serves nothing on it; the application exposes its own RPC layer there.
///
/// ```
/// use streams_core::HostInfo;
/// let host: HostInfo = "localhost:8080".parse()?;
/// assert_eq!((host.host.as_str(), host.port), ("localhost", 8080));
/// assert_eq!(host.to_string(), "localhost:8080");
/// assert_eq!("[::1]:9000".parse::<HostInfo>()?.host, "::1");
/// assert_eq!(HostInfo::new("::1", 9000).to_string(), "[::1]:9000");
/// assert!("localhost".parse::<HostInfo>().is_err());
/// assert!("localhost:99999".parse::<HostInfo>().is_err());
/// assert!(host.is_available());
/// assert!(!HostInfo::unavailable().is_available());
/// # Ok::<(), streams_core::AssignmentDataError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostInfo {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (-1 for [`HostInfo::unavailable`]; an `i32` as in Kafka's assignment data).
    pub port: i32,
}

impl HostInfo {
    /// The endpoint `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        HostInfo {
            host: host.into(),
            port: i32::from(port),
        }
    }

    /// Kafka's `HostInfo.unavailable()`: host `unavailable`, port -1 — what
    /// [`KeyQueryMetadata::not_available`](crate::KeyQueryMetadata::not_available) names,
    /// and this instance's host when `application.server` is not configured.
    pub fn unavailable() -> Self {
        HostInfo {
            host: "unavailable".to_owned(),
            port: -1,
        }
    }

    /// False for [`HostInfo::unavailable`] (a negative port).
    pub fn is_available(&self) -> bool {
        self.port >= 0
    }

    /// Parses `host:port` (`[v6-address]:port` for IPv6), as Kafka's
    /// `HostInfo.buildFromEndpoint`: the host must not be empty, the port a number up to
    /// 65535.
    pub fn parse(endpoint: &str) -> DataResult<Self> {
        let bad = || AssignmentDataError::InvalidEndpoint(endpoint.to_owned());
        let (host, port) = endpoint.rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '%'))
        {
            return Err(bad());
        }
        if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let port: u16 = port.parse().map_err(|_| bad())?;
        Ok(HostInfo::new(host, port))
    }
}

impl std::str::FromStr for HostInfo {
    type Err = AssignmentDataError;
    fn from_str(s: &str) -> DataResult<Self> {
        HostInfo::parse(s)
    }
}

impl std::fmt::Display for HostInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What a stream thread tells the leader when it joins (Kafka Streams' `SubscriptionInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// The user-data version.
    pub version: i32,
    /// The newest version the member can read (-1 when unknown, versions 1 and 2).
    pub latest_supported_version: i32,
    /// The application instance (shared by the threads of one `StreamsApp`).
    pub process_id: Uuid,
    /// The instance's `application.server` endpoint, if configured.
    pub endpoint: Option<HostInfo>,
    /// Per task the member has state for: the sum of its checkpointed changelog offsets, or
    /// [`LATEST_OFFSET`] for a task it ran as an active task until this rebalance.
    pub task_offset_sums: BTreeMap<TaskId, i64>,
    /// Kafka's `uniqueField` (changes on every join so a re-join is never a no-op).
    pub unique_field: i8,
    /// An error the member reports to the leader (0 = none).
    pub error_code: i32,
}

impl SubscriptionInfo {
    /// The current version's subscription of `process_id` with its endpoint and task offset
    /// sums.
    pub fn new(
        process_id: Uuid,
        endpoint: Option<HostInfo>,
        task_offset_sums: BTreeMap<TaskId, i64>,
    ) -> Self {
        SubscriptionInfo {
            version: USER_DATA_VERSION,
            latest_supported_version: USER_DATA_VERSION,
            process_id,
            endpoint,
            task_offset_sums,
            unique_field: 0,
            error_code: 0,
        }
    }

    /// The tasks the member ran as active tasks (offset sum [`LATEST_OFFSET`]).
    pub fn prev_tasks(&self) -> BTreeSet<TaskId> {
        self.task_offset_sums
            .iter()
            .filter(|(_, o)| **o == LATEST_OFFSET)
            .map(|(t, _)| *t)
            .collect()
    }

    /// The other tasks the member has state for (Kafka's previous standby tasks).
    pub fn standby_tasks(&self) -> BTreeSet<TaskId> {
        self.task_offset_sums
            .iter()
            .filter(|(_, o)| **o != LATEST_OFFSET)
            .map(|(t, _)| *t)
            .collect()
    }

    /// The user-data bytes, in the layout of `self.version` (1 to 11).
    pub fn encode(&self) -> DataResult<Bytes> {
        const WHAT: &str = "subscription user data";
        let v = self.version;
        if !(1..=LATEST_READABLE_VERSION).contains(&v) {
            return Err(AssignmentDataError::UnsupportedVersion {
                what: WHAT,
                version: v,
            });
        }
        let mut b = BytesMut::new();
        b.put_i32(v);
        if v >= 3 {
            b.put_i32(self.latest_supported_version);
        }
        let (hi, lo) = self.process_id.as_u64_pair();
        b.put_u64(hi);
        b.put_u64(lo);
        if v < MIN_OFFSET_SUM_VERSION {
            put_tasks(&mut b, &self.prev_tasks())?;
            put_tasks(&mut b, &self.standby_tasks())?;
        }
        if v >= 2 {
            let endpoint = self
                .endpoint
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            put_len(&mut b, endpoint.len())?;
            b.put_slice(endpoint.as_bytes());
        }
        if v >= MIN_OFFSET_SUM_VERSION {
            if v >= MIN_NAMED_TOPOLOGY_VERSION {
                put_len(&mut b, self.task_offset_sums.len())?;
                for (t, sum) in &self.task_offset_sums {
                    put_task(&mut b, *t, 0)?;
                    b.put_i64(*sum);
                    b.put_i16(-1); // no named topology
                }
            } else {
                let mut by_sub: BTreeMap<u32, Vec<(i32, i64)>> = BTreeMap::new();
                for (t, sum) in &self.task_offset_sums {
                    by_sub
                        .entry(t.subtopology)
                        .or_default()
                        .push((t.partition, *sum));
                }
                put_len(&mut b, by_sub.len())?;
                for (sub, parts) in by_sub {
                    put_subtopology(&mut b, sub)?;
                    put_len(&mut b, parts.len())?;
                    for (p, sum) in parts {
                        b.put_i32(p);
                        b.put_i64(sum);
                    }
                }
            }
        }
        if v >= 8 {
            b.put_i8(self.unique_field);
        }
        if v >= 9 {
            b.put_i32(self.error_code);
        }
        if v >= 11 {
            b.put_i32(0); // no client tags
        }
        Ok(b.freeze())
    }

    /// Reads user-data bytes of any version from 1 to 11. Pre-7 subscriptions' previous
    /// active tasks read as [`LATEST_OFFSET`], their standby tasks as
    /// [`UNKNOWN_OFFSET_SUM`] (as Kafka reads them).
    pub fn decode(mut data: &[u8]) -> DataResult<Self> {
        const WHAT: &str = "subscription user data";
        let d = &mut data;
        let version = get_i32(d, WHAT)?;
        if !(1..=LATEST_READABLE_VERSION).contains(&version) {
            return Err(AssignmentDataError::UnsupportedVersion {
                what: WHAT,
                version,
            });
        }
        let latest_supported_version = if version >= 3 { get_i32(d, WHAT)? } else { -1 };
        if d.remaining() < 16 {
            return Err(AssignmentDataError::Malformed(WHAT));
        }
        let hi = d.get_u64();
        let lo = d.get_u64();
        let mut task_offset_sums = BTreeMap::new();
        if version < MIN_OFFSET_SUM_VERSION {
            let prev = get_tasks(d, WHAT)?;
            let standby = get_tasks(d, WHAT)?;
            for t in standby {
                task_offset_sums.insert(t, UNKNOWN_OFFSET_SUM);
            }
            for t in prev {
                task_offset_sums.insert(t, LATEST_OFFSET);
            }
        }
        let mut endpoint = None;
        if version >= 2 {
            let n = get_len(d, 1, WHAT)?;
            let raw = d.get(..n).ok_or(AssignmentDataError::Malformed(WHAT))?;
            let text =
                std::str::from_utf8(raw).map_err(|_| AssignmentDataError::Malformed(WHAT))?;
            if !text.is_empty() {
                endpoint = Some(HostInfo::parse(text)?);
            }
            d.advance(n);
        }
        if version >= MIN_OFFSET_SUM_VERSION {
            if version >= MIN_NAMED_TOPOLOGY_VERSION {
                let n = get_len(d, 18, WHAT)?;
                for _ in 0..n {
                    let sub = get_subtopology(d, WHAT)?;
                    let t = TaskId {
                        subtopology: sub,
                        partition: get_i32(d, WHAT)?,
                    };
                    let sum = get_i64(d, WHAT)?;
                    let name_len = get_i16(d, WHAT)?;
                    if name_len >= 0 {
                        let n = usize::from(name_len.unsigned_abs());
                        let raw = d.get(..n).ok_or(AssignmentDataError::Malformed(WHAT))?;
                        let name = String::from_utf8_lossy(raw).into_owned();
                        d.advance(n);
                        if !name.is_empty() {
                            return Err(AssignmentDataError::NamedTopology(t.to_string(), name));
                        }
                    }
                    task_offset_sums.insert(t, sum);
                }
            } else {
                let n = get_len(d, 8, WHAT)?;
                for _ in 0..n {
                    let sub = get_subtopology(d, WHAT)?;
                    let m = get_len(d, 12, WHAT)?;
                    for _ in 0..m {
                        let partition = get_i32(d, WHAT)?;
                        let sum = get_i64(d, WHAT)?;
                        task_offset_sums.insert(
                            TaskId {
                                subtopology: sub,
                                partition,
                            },
                            sum,
                        );
                    }
                }
            }
        }
        let unique_field = if version >= 8 {
            if d.remaining() < 1 {
                return Err(AssignmentDataError::Malformed(WHAT));
            }
            d.get_i8()
        } else {
            0
        };
        let error_code = if version >= 9 { get_i32(d, WHAT)? } else { 0 };
        if version >= 11 {
            // Client tags (rack-aware standby placement is not built): read and dropped.
            let n = get_len(d, 8, WHAT)?;
            for _ in 0..2 * n {
                let len = get_len(d, 1, WHAT)?;
                if d.remaining() < len {
                    return Err(AssignmentDataError::Malformed(WHAT));
                }
                d.advance(len);
            }
        }
        Ok(SubscriptionInfo {
            version,
            latest_supported_version,
            process_id: Uuid::from_u64_pair(hi, lo),
            endpoint,
            task_offset_sums,
            unique_field,
            error_code,
        })
    }
}

/// Partitions per instance endpoint (the interactive-query metadata of an assignment).
pub type HostPartitions = BTreeMap<HostInfo, BTreeSet<TopicPartition>>;

/// What the leader tells each member (Kafka Streams' `AssignmentInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentInfo {
    /// The user-data version.
    pub version: i32,
    /// The newest version every member can read (-1 when unknown, versions 1 and 2).
    pub commonly_supported_version: i32,
    /// Active tasks, one entry per assigned partition, in the order of the member's
    /// assigned partitions (Kafka's encoding: the i-th partition belongs to the i-th task).
    pub active_tasks: Vec<TaskId>,
    /// Standby tasks (warm-up replicas included) with their input partitions.
    pub standby_tasks: BTreeMap<TaskId, Vec<TopicPartition>>,
    /// Every instance endpoint with the input partitions of its active tasks.
    pub partitions_by_host: HostPartitions,
    /// Every instance endpoint with the input partitions of its standby tasks.
    pub standby_partitions_by_host: HostPartitions,
    /// Kafka's `AssignorError` code (0 = none).
    pub error_code: i32,
    /// When the member should rejoin for a probing rebalance, in ms since the epoch:
    /// [`NO_REBALANCE`] for never, 0 for at once.
    pub next_rebalance_ms: i64,
}

impl Default for AssignmentInfo {
    fn default() -> Self {
        AssignmentInfo::new(Vec::new())
    }
}

impl AssignmentInfo {
    /// The current version's assignment of `active_tasks`, without standbys, host maps or a
    /// follow-up rebalance.
    pub fn new(active_tasks: Vec<TaskId>) -> Self {
        AssignmentInfo {
            version: USER_DATA_VERSION,
            commonly_supported_version: USER_DATA_VERSION,
            active_tasks,
            standby_tasks: BTreeMap::new(),
            partitions_by_host: BTreeMap::new(),
            standby_partitions_by_host: BTreeMap::new(),
            error_code: 0,
            next_rebalance_ms: NO_REBALANCE,
        }
    }

    /// The user-data bytes, in the layout of `self.version` (1 to 11).
    pub fn encode(&self) -> DataResult<Bytes> {
        const WHAT: &str = "assignment user data";
        let v = self.version;
        if !(1..=LATEST_READABLE_VERSION).contains(&v) {
            return Err(AssignmentDataError::UnsupportedVersion {
                what: WHAT,
                version: v,
            });
        }
        let mut b = BytesMut::new();
        b.put_i32(v);
        if v >= 3 {
            b.put_i32(self.commonly_supported_version);
        }
        put_len(&mut b, self.active_tasks.len())?;
        for t in &self.active_tasks {
            put_task(&mut b, *t, v)?;
        }
        put_len(&mut b, self.standby_tasks.len())?;
        for (t, tps) in &self.standby_tasks {
            put_task(&mut b, *t, v)?;
            put_topic_partitions(&mut b, tps.iter())?;
        }
        match v {
            1 => {}
            2..=4 => {
                put_len(&mut b, self.partitions_by_host.len())?;
                for (host, tps) in &self.partitions_by_host {
                    put_host(&mut b, host)?;
                    put_topic_partitions(&mut b, tps.iter())?;
                }
            }
            5 => {
                let dict = put_dictionary(&mut b, [&self.partitions_by_host])?;
                put_host_map(&mut b, &dict, &self.partitions_by_host)?;
            }
            _ => {
                let dict = put_dictionary(
                    &mut b,
                    [&self.partitions_by_host, &self.standby_partitions_by_host],
                )?;
                put_host_map(&mut b, &dict, &self.partitions_by_host)?;
                put_host_map(&mut b, &dict, &self.standby_partitions_by_host)?;
            }
        }
        if v >= 4 {
            b.put_i32(self.error_code);
        }
        if v >= 7 {
            b.put_i64(self.next_rebalance_ms);
        }
        Ok(b.freeze())
    }

    /// Reads user-data bytes of any version from 1 to 11.
    pub fn decode(mut data: &[u8]) -> DataResult<Self> {
        const WHAT: &str = "assignment user data";
        let d = &mut data;
        let version = get_i32(d, WHAT)?;
        if !(1..=LATEST_READABLE_VERSION).contains(&version) {
            return Err(AssignmentDataError::UnsupportedVersion {
                what: WHAT,
                version,
            });
        }
        let commonly_supported_version = if version >= 3 { get_i32(d, WHAT)? } else { -1 };
        let n = get_len(d, 8, WHAT)?;
        let mut active_tasks = Vec::with_capacity(n);
        for _ in 0..n {
            active_tasks.push(get_task(d, version, WHAT)?);
        }
        let n = get_len(d, 12, WHAT)?;
        let mut standby_tasks = BTreeMap::new();
        for _ in 0..n {
            let t = get_task(d, version, WHAT)?;
            standby_tasks.insert(t, get_topic_partitions(d, WHAT)?);
        }
        let mut partitions_by_host = BTreeMap::new();
        let mut standby_partitions_by_host = BTreeMap::new();
        match version {
            1 => {}
            2..=4 => {
                let n = get_len(d, 10, WHAT)?;
                for _ in 0..n {
                    let host = get_host(d, WHAT)?;
                    let tps = get_topic_partitions(d, WHAT)?;
                    partitions_by_host.insert(host, tps.into_iter().collect());
                }
            }
            5 => {
                let dict = get_dictionary(d, WHAT)?;
                partitions_by_host = get_host_map(d, &dict, WHAT)?;
            }
            _ => {
                let dict = get_dictionary(d, WHAT)?;
                partitions_by_host = get_host_map(d, &dict, WHAT)?;
                standby_partitions_by_host = get_host_map(d, &dict, WHAT)?;
            }
        }
        let error_code = if version >= 4 { get_i32(d, WHAT)? } else { 0 };
        let next_rebalance_ms = if version >= 7 {
            get_i64(d, WHAT)?
        } else {
            NO_REBALANCE
        };
        Ok(AssignmentInfo {
            version,
            commonly_supported_version,
            active_tasks,
            standby_tasks,
            partitions_by_host,
            standby_partitions_by_host,
            error_code,
            next_rebalance_ms,
        })
    }
}

fn put_len(b: &mut BytesMut, n: usize) -> DataResult<()> {
    let n = i32::try_from(n).map_err(|_| AssignmentDataError::OutOfRange(format!("count {n}")))?;
    b.put_i32(n);
    Ok(())
}

fn put_subtopology(b: &mut BytesMut, sub: u32) -> DataResult<()> {
    let sub = i32::try_from(sub)
        .map_err(|_| AssignmentDataError::OutOfRange(format!("sub-topology {sub}")))?;
    b.put_i32(sub);
    Ok(())
}

/// A task id; from version 10 followed by an empty named topology (`length: i32` = 0).
/// `version` 0 writes the bare pair (the offset-sum entries of subscriptions).
fn put_task(b: &mut BytesMut, t: TaskId, version: i32) -> DataResult<()> {
    put_subtopology(b, t.subtopology)?;
    b.put_i32(t.partition);
    if version >= MIN_NAMED_TOPOLOGY_VERSION {
        b.put_i32(0);
    }
    Ok(())
}

fn put_tasks(b: &mut BytesMut, tasks: &BTreeSet<TaskId>) -> DataResult<()> {
    put_len(b, tasks.len())?;
    for t in tasks {
        put_task(b, *t, 0)?;
    }
    Ok(())
}

fn put_str(b: &mut BytesMut, s: &str) -> DataResult<()> {
    let len = u16::try_from(s.len())
        .map_err(|_| AssignmentDataError::OutOfRange(format!("string `{s}`")))?;
    b.put_u16(len);
    b.put_slice(s.as_bytes());
    Ok(())
}

fn put_topic_partitions<'a>(
    b: &mut BytesMut,
    tps: impl ExactSizeIterator<Item = &'a TopicPartition>,
) -> DataResult<()> {
    put_len(b, tps.len())?;
    for tp in tps {
        put_str(b, &tp.topic)?;
        b.put_i32(tp.partition);
    }
    Ok(())
}

fn put_host(b: &mut BytesMut, host: &HostInfo) -> DataResult<()> {
    put_str(b, &host.host)?;
    b.put_i32(host.port);
    Ok(())
}

/// Writes the topic dictionary of the host maps (topics numbered in name order).
fn put_dictionary<const N: usize>(
    b: &mut BytesMut,
    maps: [&HostPartitions; N],
) -> DataResult<BTreeMap<String, i32>> {
    let topics: BTreeSet<&str> = maps
        .iter()
        .flat_map(|m| m.values().flatten().map(|tp| tp.topic.as_str()))
        .collect();
    put_len(b, topics.len())?;
    let mut dict = BTreeMap::new();
    for (i, topic) in topics.into_iter().enumerate() {
        let i = i32::try_from(i).map_err(|_| AssignmentDataError::OutOfRange(format!("{i}")))?;
        b.put_i32(i);
        put_str(b, topic)?;
        dict.insert(topic.to_owned(), i);
    }
    Ok(dict)
}

fn put_host_map(
    b: &mut BytesMut,
    dict: &BTreeMap<String, i32>,
    map: &HostPartitions,
) -> DataResult<()> {
    put_len(b, map.len())?;
    for (host, tps) in map {
        put_host(b, host)?;
        put_len(b, tps.len())?;
        for tp in tps {
            let i = dict
                .get(&tp.topic)
                .ok_or_else(|| AssignmentDataError::OutOfRange(format!("topic {}", tp.topic)))?;
            b.put_i32(*i);
            b.put_i32(tp.partition);
        }
    }
    Ok(())
}

fn get_i16(data: &mut &[u8], what: &'static str) -> DataResult<i16> {
    if data.remaining() < 2 {
        return Err(AssignmentDataError::Malformed(what));
    }
    Ok(data.get_i16())
}

fn get_i32(data: &mut &[u8], what: &'static str) -> DataResult<i32> {
    if data.remaining() < 4 {
        return Err(AssignmentDataError::Malformed(what));
    }
    Ok(data.get_i32())
}

fn get_i64(data: &mut &[u8], what: &'static str) -> DataResult<i64> {
    if data.remaining() < 8 {
        return Err(AssignmentDataError::Malformed(what));
    }
    Ok(data.get_i64())
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

fn get_subtopology(data: &mut &[u8], what: &'static str) -> DataResult<u32> {
    u32::try_from(get_i32(data, what)?).map_err(|_| AssignmentDataError::Malformed(what))
}

/// A task id in the layout of `version` (0: the bare pair).
fn get_task(data: &mut &[u8], version: i32, what: &'static str) -> DataResult<TaskId> {
    let t = TaskId {
        subtopology: get_subtopology(data, what)?,
        partition: get_i32(data, what)?,
    };
    if version >= MIN_NAMED_TOPOLOGY_VERSION {
        let chars = get_len(data, 2, what)?;
        if chars > 0 {
            let name: String = char::decode_utf16((0..chars).map(|_| data.get_u16()))
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect();
            return Err(AssignmentDataError::NamedTopology(t.to_string(), name));
        }
    }
    Ok(t)
}

fn get_tasks(data: &mut &[u8], what: &'static str) -> DataResult<BTreeSet<TaskId>> {
    let n = get_len(data, 8, what)?;
    (0..n).map(|_| get_task(data, 0, what)).collect()
}

fn get_str(data: &mut &[u8], what: &'static str) -> DataResult<String> {
    let len = usize::from(get_i16(data, what)?.cast_unsigned());
    let raw = data
        .get(..len)
        .ok_or(AssignmentDataError::Malformed(what))?;
    let s = String::from_utf8_lossy(raw).into_owned();
    data.advance(len);
    Ok(s)
}

fn get_topic_partitions(data: &mut &[u8], what: &'static str) -> DataResult<Vec<TopicPartition>> {
    let n = get_len(data, 6, what)?;
    let mut tps = Vec::with_capacity(n);
    for _ in 0..n {
        let topic = get_str(data, what)?;
        tps.push(TopicPartition::new(topic, get_i32(data, what)?));
    }
    Ok(tps)
}

fn get_host(data: &mut &[u8], what: &'static str) -> DataResult<HostInfo> {
    let host = get_str(data, what)?;
    let port = get_i32(data, what)?;
    Ok(HostInfo { host, port })
}

fn get_dictionary(data: &mut &[u8], what: &'static str) -> DataResult<BTreeMap<i32, String>> {
    let n = get_len(data, 6, what)?;
    let mut dict = BTreeMap::new();
    for _ in 0..n {
        let i = get_i32(data, what)?;
        dict.insert(i, get_str(data, what)?);
    }
    Ok(dict)
}

fn get_host_map(
    data: &mut &[u8],
    dict: &BTreeMap<i32, String>,
    what: &'static str,
) -> DataResult<HostPartitions> {
    let n = get_len(data, 10, what)?;
    let mut map = BTreeMap::new();
    for _ in 0..n {
        let host = get_host(data, what)?;
        let m = get_len(data, 8, what)?;
        let mut tps = BTreeSet::new();
        for _ in 0..m {
            let i = get_i32(data, what)?;
            let topic = dict.get(&i).ok_or(AssignmentDataError::Malformed(what))?;
            tps.insert(TopicPartition::new(topic.clone(), get_i32(data, what)?));
        }
        map.insert(host, tps);
    }
    Ok(map)
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

/// Reads the end offsets of changelog partitions for the leader (the runtime builds it from
/// [`crate::Cluster::end_offset`]). A partition missing from the answer counts as a failure.
pub type EndOffsetsFn = Arc<
    dyn Fn(&[TopicPartition]) -> crate::error::Result<BTreeMap<TopicPartition, i64>> + Send + Sync,
>;

/// What the leader needs to assign: the tasks with their input and changelog partitions,
/// the assignor with its configuration, and a way to read changelog end offsets.
#[derive(Clone)]
pub struct AssignmentSpec {
    /// Every task of the topology with its input partitions.
    pub tasks: BTreeMap<TaskId, Vec<TopicPartition>>,
    /// The changelog partitions of every stateful task (a task absent here is stateless).
    pub changelogs: BTreeMap<TaskId, Vec<TopicPartition>>,
    /// The assignor (by default [`HighAvailabilityTaskAssignor`]).
    pub assignor: Arc<dyn TaskAssignor>,
    /// `num.standby.replicas`, `acceptable.recovery.lag`, `max.warmup.replicas`,
    /// `probing.rebalance.interval.ms`.
    pub config: AssignorConfig,
    /// Changelog end offsets, read at each assignment to compute the lags.
    pub end_offsets: EndOffsetsFn,
}

impl std::fmt::Debug for AssignmentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssignmentSpec")
            .field("tasks", &self.tasks.len())
            .field("stateful", &self.changelogs.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A client (process) as the leader sees it: its members, its endpoint and its state.
struct ClientMeta {
    consumers: BTreeSet<String>,
    endpoint: Option<HostInfo>,
    /// Per consumer, the tasks it reported state for.
    prev_by_consumer: BTreeMap<String, BTreeSet<TaskId>>,
}

impl AssignmentSpec {
    /// Stateless tasks (no changelogs), the [`HighAvailabilityTaskAssignor`] with Kafka's
    /// defaults; end offsets are never needed without changelogs (the hook refuses).
    pub fn new(tasks: BTreeMap<TaskId, Vec<TopicPartition>>) -> Self {
        AssignmentSpec {
            tasks,
            changelogs: BTreeMap::new(),
            assignor: Arc::new(HighAvailabilityTaskAssignor),
            config: AssignorConfig::default(),
            end_offsets: Arc::new(|_: &[TopicPartition]| {
                Err(crate::error::StreamsError::IllegalState(
                    "no changelog end offsets available".into(),
                ))
            }),
        }
    }

    /// End offset sum per stateful task (`i64::MAX` on overflow, as Kafka), or `None` if
    /// the end offsets could not be read.
    fn end_offset_sums(&self) -> Option<BTreeMap<TaskId, i64>> {
        if self.changelogs.is_empty() {
            return Some(BTreeMap::new());
        }
        let all: Vec<TopicPartition> = self.changelogs.values().flatten().cloned().collect();
        let ends = match (self.end_offsets)(&all) {
            Ok(e) => e,
            Err(e) => {
                tracing::info!(error = %e, "could not read changelog end offsets; assigning without lags");
                return None;
            }
        };
        let mut sums = BTreeMap::new();
        for (t, tps) in &self.changelogs {
            let mut sum: i64 = 0;
            for tp in tps {
                let Some(end) = ends.get(tp) else {
                    tracing::info!(partition = %tp, "no end offset for a changelog; assigning without lags");
                    return None;
                };
                sum = sum.checked_add(*end).unwrap_or(i64::MAX);
            }
            sums.insert(*t, sum);
        }
        Some(sums)
    }

    /// The leader's step: decodes every member's metadata, groups the members by process
    /// id, computes every client's lag per stateful task, runs the assignor over the clients
    /// and spreads each client's tasks over its consumers, then encodes each member's
    /// assignment (its active tasks' partitions and an [`AssignmentInfo`]). `leader` is the
    /// leader's member id: if a probing rebalance is needed, the first consumer of the
    /// leader's client gets the next rebalance time (as Kafka picks the leader's client). A
    /// member whose metadata cannot be read (another client in the group) gets an empty
    /// assignment.
    pub fn assign(
        &self,
        leader: &str,
        members: &[(String, Bytes)],
    ) -> DataResult<Vec<(String, Bytes)>> {
        self.assign_at(leader, members, now_ms())
    }

    /// [`AssignmentSpec::assign`] at wall-clock time `now_ms`.
    pub(crate) fn assign_at(
        &self,
        leader: &str,
        members: &[(String, Bytes)],
        now_ms: i64,
    ) -> DataResult<Vec<(String, Bytes)>> {
        let mut clients: BTreeMap<Uuid, ClientState> = BTreeMap::new();
        let mut metas: BTreeMap<Uuid, ClientMeta> = BTreeMap::new();
        let mut offset_sums: BTreeMap<Uuid, BTreeMap<TaskId, i64>> = BTreeMap::new();
        let mut leader_process = None;
        for (id, metadata) in members {
            let s = match decode_subscription(id, metadata) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(member = %id, error = %e, "unreadable subscription; the member gets no tasks");
                    continue;
                }
            };
            let process = s.info.process_id;
            if id == leader {
                leader_process = Some(process);
            }
            let meta = metas.entry(process).or_insert_with(|| ClientMeta {
                consumers: BTreeSet::new(),
                endpoint: None,
                prev_by_consumer: BTreeMap::new(),
            });
            meta.consumers.insert(id.clone());
            if meta.endpoint.is_none() {
                meta.endpoint.clone_from(&s.info.endpoint);
            }
            let known: BTreeMap<TaskId, i64> = s
                .info
                .task_offset_sums
                .iter()
                .filter(|(t, _)| self.tasks.contains_key(t))
                .map(|(t, o)| (*t, *o))
                .collect();
            meta.prev_by_consumer
                .insert(id.clone(), known.keys().copied().collect());
            let sums = offset_sums.entry(process).or_default();
            for (t, o) in known {
                // A task reported by several consumers of the client: running beats
                // anything, otherwise the larger sum.
                let e = sums.entry(t).or_insert(o);
                if o == LATEST_OFFSET || (*e != LATEST_OFFSET && o > *e) {
                    *e = o;
                }
            }
        }
        let stateful: BTreeSet<TaskId> = self
            .changelogs
            .keys()
            .filter(|t| self.tasks.contains_key(t))
            .copied()
            .collect();
        let all: BTreeSet<TaskId> = self.tasks.keys().copied().collect();
        let end_sums = self.end_offset_sums();
        for (process, meta) in &metas {
            let sums = offset_sums.remove(process).unwrap_or_default();
            let capacity = meta.consumers.len();
            let state = match &end_sums {
                Some(ends) => ClientState::with_offset_sums(capacity, &sums, ends),
                None => ClientState::without_lags(capacity, &sums, &stateful),
            };
            clients.insert(*process, state);
        }
        let probing = match &end_sums {
            Some(_) => self
                .assignor
                .assign(&mut clients, &all, &stateful, &self.config),
            None => {
                // Kafka's FallbackPriorTaskAssignor: previous owners keep their tasks, and
                // another rebalance retries the lag computation.
                StickyTaskAssignor.assign(&mut clients, &all, &stateful, &self.config);
                true
            }
        };
        // Host maps (interactive queries): every client with an endpoint.
        let mut partitions_by_host = HostPartitions::new();
        let mut standby_partitions_by_host = HostPartitions::new();
        for (process, meta) in &metas {
            let (Some(host), Some(state)) = (&meta.endpoint, clients.get(process)) else {
                continue;
            };
            let of = |tasks: &BTreeSet<TaskId>| -> BTreeSet<TopicPartition> {
                tasks
                    .iter()
                    .filter_map(|t| self.tasks.get(t))
                    .flatten()
                    .cloned()
                    .collect()
            };
            partitions_by_host
                .entry(host.clone())
                .or_default()
                .extend(of(state.active_tasks()));
            standby_partitions_by_host
                .entry(host.clone())
                .or_default()
                .extend(of(state.standby_tasks()));
        }
        let next_rebalance = if probing {
            let interval = i64::try_from(self.config.probing_rebalance_interval.as_millis())
                .unwrap_or(i64::MAX);
            now_ms.saturating_add(interval)
        } else {
            NO_REBALANCE
        };
        let mut by_member: BTreeMap<String, (Vec<TopicPartition>, AssignmentInfo)> =
            BTreeMap::new();
        for (process, meta) in &metas {
            let Some(state) = clients.get(process) else {
                continue;
            };
            let lag = |t: &TaskId| state.lag_for(t);
            let mut load = BTreeMap::new();
            let stateful_active: BTreeSet<TaskId> = state
                .active_tasks()
                .intersection(&stateful)
                .copied()
                .collect();
            let stateless_active: BTreeSet<TaskId> = state
                .active_tasks()
                .difference(&stateful)
                .copied()
                .collect();
            let mut active = assign_tasks_to_threads(
                &stateful_active,
                true,
                &meta.consumers,
                &meta.prev_by_consumer,
                &lag,
                &mut load,
            );
            let standby = assign_tasks_to_threads(
                state.standby_tasks(),
                true,
                &meta.consumers,
                &meta.prev_by_consumer,
                &lag,
                &mut load,
            );
            let stateless = assign_tasks_to_threads(
                &stateless_active,
                false,
                &meta.consumers,
                &meta.prev_by_consumer,
                &lag,
                &mut load,
            );
            for (c, ts) in stateless {
                active.entry(c).or_default().extend(ts);
            }
            let mut probing_encoded = false;
            for consumer in &meta.consumers {
                let mut pairs: Vec<(TaskId, TopicPartition)> = active
                    .get(consumer)
                    .into_iter()
                    .flatten()
                    .flat_map(|t| {
                        self.tasks
                            .get(t)
                            .into_iter()
                            .flatten()
                            .map(move |tp| (*t, tp.clone()))
                    })
                    .collect();
                pairs.sort();
                let mut info = AssignmentInfo::new(pairs.iter().map(|(t, _)| *t).collect());
                let partitions: Vec<TopicPartition> = pairs.into_iter().map(|(_, tp)| tp).collect();
                info.standby_tasks = standby
                    .get(consumer)
                    .into_iter()
                    .flatten()
                    .map(|t| (*t, self.tasks.get(t).cloned().unwrap_or_default()))
                    .collect();
                info.partitions_by_host.clone_from(&partitions_by_host);
                info.standby_partitions_by_host
                    .clone_from(&standby_partitions_by_host);
                if probing && !probing_encoded && leader_process.is_none_or(|l| l == *process) {
                    info.next_rebalance_ms = next_rebalance;
                    probing_encoded = true;
                }
                by_member.insert(consumer.clone(), (partitions, info));
            }
            if probing_encoded {
                leader_process = Some(*process);
            }
        }
        if probing {
            tracing::info!(
                next_rebalance_ms = next_rebalance,
                "assignment needs a probing rebalance"
            );
        }
        let mut out = Vec::with_capacity(members.len());
        for (id, _) in members {
            let (partitions, info) = by_member.remove(id).unwrap_or_default();
            out.push((id.clone(), encode_assignment(&partitions, &info)?));
        }
        Ok(out)
    }
}

/// The default assignor configuration's probing interval (Kafka's
/// `probing.rebalance.interval.ms`, 10 minutes).
pub(crate) const DEFAULT_PROBING_REBALANCE_INTERVAL: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u32, p: i32) -> TaskId {
        TaskId {
            subtopology: s,
            partition: p,
        }
    }

    fn sums() -> BTreeMap<TaskId, i64> {
        [(t(0, 1), LATEST_OFFSET), (t(1, 0), 1234), (t(2, 3), 0)]
            .into_iter()
            .collect()
    }

    #[test]
    fn subscription_v10_round_trips_with_kafkas_layout() {
        let id = Uuid::from_u64_pair(1, 2);
        let info = SubscriptionInfo::new(id, Some(HostInfo::new("localhost", 8080)), sums());
        let bytes = info.encode().unwrap();
        // version, latest supported, uuid (16), endpoint (4 + 14), offset sums (4 + 3 * 18),
        // unique field (1), error code (4).
        assert_eq!(bytes.len(), 4 + 4 + 16 + 4 + 14 + 4 + 3 * 18 + 1 + 4);
        assert_eq!(&bytes[..4], &10i32.to_be_bytes());
        assert_eq!(&bytes[4..8], &10i32.to_be_bytes());
        assert_eq!(&bytes[8..16], &1u64.to_be_bytes());
        assert_eq!(&bytes[24..28], &14i32.to_be_bytes());
        assert_eq!(&bytes[28..42], b"localhost:8080");
        let back = SubscriptionInfo::decode(&bytes).unwrap();
        assert_eq!(back, info);
        assert_eq!(back.prev_tasks(), [t(0, 1)].into_iter().collect());
        assert_eq!(
            back.standby_tasks(),
            [t(1, 0), t(2, 3)].into_iter().collect()
        );
        let owned = vec![TopicPartition::new("a", 1)];
        let meta = encode_subscription(&["a".into(), "b".into()], &owned, &info).unwrap();
        let back = decode_subscription("m", &meta).unwrap();
        assert_eq!(back.topics, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(back.owned_partitions, owned);
        assert_eq!(back.info, info);
    }

    #[test]
    fn subscription_truncated_anywhere_is_an_error() {
        let info = SubscriptionInfo::new(
            Uuid::from_u64_pair(7, 9),
            Some(HostInfo::new("h", 1)),
            sums(),
        );
        let bytes = info.encode().unwrap();
        for cut in 0..bytes.len() {
            assert!(
                SubscriptionInfo::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn every_subscription_version_round_trips_what_it_can_carry() {
        let id = Uuid::from_u64_pair(3, 4);
        for version in 1..=11 {
            let mut info = SubscriptionInfo::new(id, Some(HostInfo::new("host", 9)), sums());
            info.version = version;
            info.latest_supported_version = if version < 3 { -1 } else { 11 };
            info.unique_field = if version >= 8 { 5 } else { 0 };
            info.error_code = if version >= 9 { 3 } else { 0 };
            if version < 2 {
                info.endpoint = None;
            }
            let back = SubscriptionInfo::decode(&info.encode().unwrap()).unwrap();
            if version < 7 {
                // Old versions carry only "active" and "standby" sets: standbys come back
                // with an unknown offset sum.
                let expected: BTreeMap<TaskId, i64> = [
                    (t(0, 1), LATEST_OFFSET),
                    (t(1, 0), UNKNOWN_OFFSET_SUM),
                    (t(2, 3), UNKNOWN_OFFSET_SUM),
                ]
                .into_iter()
                .collect();
                assert_eq!(back.task_offset_sums, expected, "version {version}");
                info.task_offset_sums = expected;
            }
            assert_eq!(back, info, "version {version}");
        }
    }

    #[test]
    fn a_version_1_subscription_in_kafkas_layout_decodes() {
        // version 1, uuid, prev tasks [0_1], standby tasks [2_0].
        let mut b = BytesMut::new();
        b.put_i32(1);
        b.put_u64(0);
        b.put_u64(42);
        b.put_i32(1);
        b.put_i32(0);
        b.put_i32(1);
        b.put_i32(1);
        b.put_i32(2);
        b.put_i32(0);
        let info = SubscriptionInfo::decode(&b).unwrap();
        assert_eq!(info.version, 1);
        assert_eq!(info.process_id, Uuid::from_u64_pair(0, 42));
        assert_eq!(info.endpoint, None);
        assert_eq!(info.prev_tasks(), [t(0, 1)].into_iter().collect());
        assert_eq!(info.task_offset_sums[&t(2, 0)], UNKNOWN_OFFSET_SUM);
        // A future version is refused, not misread.
        let mut future = BytesMut::new();
        future.put_i32(12);
        future.put_i32(12);
        assert!(matches!(
            SubscriptionInfo::decode(&future),
            Err(AssignmentDataError::UnsupportedVersion { version: 12, .. })
        ));
    }

    fn full_assignment() -> AssignmentInfo {
        let mut info = AssignmentInfo::new(vec![t(0, 0), t(0, 0), t(1, 3)]);
        info.standby_tasks
            .insert(t(2, 1), vec![TopicPartition::new("in", 1)]);
        info.partitions_by_host.insert(
            HostInfo::new("a", 1),
            [
                TopicPartition::new("in", 0),
                TopicPartition::new("other", 3),
            ]
            .into_iter()
            .collect(),
        );
        info.partitions_by_host
            .insert(HostInfo::new("b", 2), BTreeSet::new());
        info.standby_partitions_by_host.insert(
            HostInfo::new("b", 2),
            [TopicPartition::new("in", 1)].into_iter().collect(),
        );
        info.error_code = 1;
        info.next_rebalance_ms = 1_700_000_000_000;
        info
    }

    #[test]
    fn assignment_v10_round_trips_and_truncation_is_an_error() {
        let info = full_assignment();
        let bytes = info.encode().unwrap();
        assert_eq!(&bytes[..4], &10i32.to_be_bytes());
        // The first active task: sub-topology, partition, empty named topology.
        assert_eq!(&bytes[12..24], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            &bytes[bytes.len() - 8..],
            &1_700_000_000_000i64.to_be_bytes()
        );
        assert_eq!(AssignmentInfo::decode(&bytes).unwrap(), info);
        for cut in 0..bytes.len() {
            assert!(
                AssignmentInfo::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let tps = vec![
            TopicPartition::new("in", 0),
            TopicPartition::new("other", 0),
            TopicPartition::new("in", 3),
        ];
        let wire = encode_assignment(&tps, &info).unwrap();
        let (back, back_info) = decode_assignment(&wire).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back_info, info);
        // A huge count in a short buffer is refused, not allocated.
        let mut evil = BytesMut::new();
        evil.put_i32(1);
        evil.put_i32(i32::MAX);
        assert!(AssignmentInfo::decode(&evil).is_err());
    }

    #[test]
    fn every_assignment_version_round_trips_what_it_can_carry() {
        for version in 1..=11 {
            let mut info = full_assignment();
            info.version = version;
            if version < 3 {
                info.commonly_supported_version = -1;
            }
            if version < 2 {
                info.partitions_by_host.clear();
            }
            if version < 6 {
                info.standby_partitions_by_host.clear();
            }
            if version < 4 {
                info.error_code = 0;
            }
            if version < 7 {
                info.next_rebalance_ms = NO_REBALANCE;
            }
            let back = AssignmentInfo::decode(&info.encode().unwrap()).unwrap();
            assert_eq!(back, info, "version {version}");
        }
    }

    #[test]
    fn a_named_topology_task_is_a_typed_error() {
        let mut b = BytesMut::new();
        b.put_i32(10);
        b.put_i32(10);
        b.put_i32(1);
        b.put_i32(0);
        b.put_i32(2);
        b.put_i32(1);
        b.put_u16(u16::from(b'x'));
        assert!(matches!(
            AssignmentInfo::decode(&b),
            Err(AssignmentDataError::NamedTopology(task, name)) if task == "0_2" && name == "x"
        ));
    }

    /// A member as `(id, process, endpoint, offset sums)`.
    type TestMember<'a> = (&'a str, u64, Option<&'a str>, BTreeMap<TaskId, i64>);

    /// Members as their group metadata.
    fn members(list: &[TestMember<'_>]) -> Vec<(String, Bytes)> {
        list.iter()
            .map(|(id, process, endpoint, sums)| {
                let info = SubscriptionInfo::new(
                    Uuid::from_u64_pair(0, *process),
                    endpoint.map(|e| HostInfo::parse(e).unwrap()),
                    sums.clone(),
                );
                (
                    (*id).to_owned(),
                    encode_subscription(&["in".into()], &[], &info).unwrap(),
                )
            })
            .collect()
    }

    fn spec(standbys: usize) -> AssignmentSpec {
        let tasks: BTreeMap<TaskId, Vec<TopicPartition>> = (0..4)
            .map(|p| (t(0, p), vec![TopicPartition::new("in", p)]))
            .collect();
        let changelogs = (0..4)
            .map(|p| (t(0, p), vec![TopicPartition::new("app-store-changelog", p)]))
            .collect();
        let mut spec = AssignmentSpec::new(tasks);
        spec.changelogs = changelogs;
        spec.config.num_standby_replicas = standbys;
        spec.end_offsets = Arc::new(|tps: &[TopicPartition]| {
            Ok(tps.iter().map(|tp| (tp.clone(), 100_000)).collect())
        });
        spec
    }

    fn decoded(out: &[(String, Bytes)]) -> BTreeMap<String, (Vec<TopicPartition>, AssignmentInfo)> {
        out.iter()
            .map(|(id, b)| (id.clone(), decode_assignment(b).unwrap()))
            .collect()
    }

    #[test]
    fn leader_groups_members_by_process_and_fills_standbys_and_host_maps() {
        let running: BTreeMap<TaskId, i64> = (0..4).map(|p| (t(0, p), LATEST_OFFSET)).collect();
        let half: BTreeMap<TaskId, i64> = (0..4).map(|p| (t(0, p), 99_000)).collect();
        let m = members(&[
            ("a-1", 1, Some("a:1"), running.clone()),
            ("a-2", 1, Some("a:1"), BTreeMap::new()),
            ("b-1", 2, Some("b:2"), half),
        ]);
        let out = decoded(&spec(1).assign_at("a-1", &m, 1_000).unwrap());
        // Both processes are caught up (lag 1 000 <= 10 000): 2 tasks each, one per thread
        // on process 1; the standbys are on the other process.
        let active = |id: &str| {
            out[id]
                .1
                .active_tasks
                .iter()
                .copied()
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(active("a-1").len() + active("a-2").len(), 2);
        assert_eq!(active("a-1").len(), 1);
        assert_eq!(active("b-1").len(), 2);
        for (id, (tps, info)) in &out {
            assert_eq!(
                tps.len(),
                info.active_tasks.len(),
                "{id}: one task entry per partition"
            );
            assert_eq!(
                info.next_rebalance_ms, NO_REBALANCE,
                "no probing when all are caught up"
            );
            assert_eq!(info.partitions_by_host.len(), 2);
        }
        let b_standby: BTreeSet<TaskId> = out["b-1"].1.standby_tasks.keys().copied().collect();
        let a_active: BTreeSet<TaskId> = active("a-1").union(&active("a-2")).copied().collect();
        assert_eq!(
            b_standby, a_active,
            "standbys never on the active's process"
        );
        assert_eq!(
            out["b-1"].1.standby_tasks[&t(0, b_standby.first().unwrap().partition)].len(),
            1
        );
        let host_a = &out["b-1"].1.partitions_by_host[&HostInfo::new("a", 1)];
        assert_eq!(host_a.len(), 2);
        assert_eq!(
            out["a-1"].1.standby_partitions_by_host[&HostInfo::new("a", 1)].len(),
            2
        );
    }

    #[test]
    fn a_new_process_gets_warmups_and_only_the_leaders_first_consumer_a_probing_time() {
        let running: BTreeMap<TaskId, i64> = (0..4).map(|p| (t(0, p), LATEST_OFFSET)).collect();
        let m = members(&[
            ("new-1", 2, None, BTreeMap::new()),
            ("old-1", 1, None, running),
        ]);
        let mut s = spec(0);
        s.config.probing_rebalance_interval = Duration::from_millis(500);
        let out = decoded(&s.assign_at("old-1", &m, 1_000).unwrap());
        assert_eq!(
            out["old-1"].1.active_tasks.len(),
            4,
            "the caught-up process keeps its tasks"
        );
        assert!(out["new-1"].1.active_tasks.is_empty());
        assert_eq!(
            out["new-1"].1.standby_tasks.len(),
            2,
            "two warm-ups (max.warmup.replicas)"
        );
        assert_eq!(out["old-1"].1.next_rebalance_ms, 1_500);
        assert_eq!(out["new-1"].1.next_rebalance_ms, NO_REBALANCE);
    }

    #[test]
    fn unreadable_end_offsets_fall_back_to_previous_owners_and_ask_for_a_rebalance() {
        let running: BTreeMap<TaskId, i64> = (0..4).map(|p| (t(0, p), LATEST_OFFSET)).collect();
        let m = members(&[
            ("new-1", 2, None, BTreeMap::new()),
            ("old-1", 1, None, running),
        ]);
        let mut s = spec(0);
        s.end_offsets = Arc::new(|_: &[TopicPartition]| {
            Err(crate::error::StreamsError::IllegalState("down".into()))
        });
        let out = decoded(&s.assign_at("old-1", &m, 0).unwrap());
        assert_eq!(out["old-1"].1.active_tasks.len(), 2);
        assert_eq!(out["new-1"].1.active_tasks.len(), 2);
        assert_eq!(out["old-1"].1.next_rebalance_ms, 600_000);
    }

    #[test]
    fn endpoints_parse_as_kafka_host_info() {
        assert_eq!(
            HostInfo::parse("localhost:8080").unwrap(),
            HostInfo::new("localhost", 8080)
        );
        assert_eq!(HostInfo::parse("[::1]:9").unwrap(), HostInfo::new("::1", 9));
        assert_eq!(HostInfo::new("::1", 9).to_string(), "[::1]:9");
        for bad in [
            "",
            "host",
            ":80",
            "host:",
            "host:70000",
            "host:-1",
            "ho st:1",
        ] {
            assert!(HostInfo::parse(bad).is_err(), "{bad}");
        }
    }
}

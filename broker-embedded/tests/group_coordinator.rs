#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The group coordinator through the `Broker`'s in-process API, without any wire server:
//! joins, the leader's sync, heartbeats, typed errors of stale members, generation-checked
//! commits, and the session timeout driven by the broker's own background thread.

use std::time::{Duration, Instant};

use broker_embedded::{
    Broker, BrokerConfig, CommitMember, GroupError, GroupState, JoinGroupRequest, NewTopic,
    OffsetAndMetadata, SyncGroupRequest, TopicPartition,
};
use bytes::Bytes;

fn broker(dir: &std::path::Path) -> Broker {
    broker_with_delay(dir, Duration::ZERO)
}

fn broker_with_delay(dir: &std::path::Path, initial_delay: Duration) -> Broker {
    let mut c = BrokerConfig::new(dir);
    c.cleaner_interval = None;
    c.group_initial_rebalance_delay = initial_delay;
    Broker::open(c).unwrap()
}

fn request(member_id: &str, session: Duration) -> JoinGroupRequest {
    let mut r = JoinGroupRequest::new("g", "consumer", "range", Bytes::from_static(b"meta"));
    r.member_id = member_id.to_owned();
    r.session_timeout = session;
    r.rebalance_timeout = Duration::from_secs(10);
    r
}

fn sync(generation: i32, member: &str, assignments: Vec<(String, Bytes)>) -> SyncGroupRequest {
    SyncGroupRequest {
        group_id: "g".into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        assignments,
    }
}

fn commit_one(broker: &Broker, generation: i32, member: &str) -> Result<(), GroupError> {
    broker.commit_group_offsets(
        "g",
        &CommitMember {
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
        },
        &[(TopicPartition::new("t", 0), OffsetAndMetadata::new(7))],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_sync_commit_and_expire_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    broker.create_topic(NewTopic::new("t", 1)).unwrap();
    let groups = broker.group_coordinator();

    // MEMBER_ID_REQUIRED when asked for (the wire's JoinGroup v4+).
    let mut first = request("", Duration::from_secs(6));
    first.require_known_member_id = true;
    let a_id = match groups.join(first.clone()).await {
        Err(GroupError::MemberIdRequired { member_id }) => member_id,
        other => panic!("expected MEMBER_ID_REQUIRED, got {other:?}"),
    };
    first.member_id = a_id.clone();
    let a = groups.join(first).await.unwrap();
    assert_eq!(a.generation_id, 1);
    assert!(a.is_leader());
    assert_eq!(a.members.len(), 1);
    let synced = groups
        .sync(sync(
            1,
            &a_id,
            vec![(a_id.clone(), Bytes::from_static(b"all"))],
        ))
        .await
        .unwrap();
    assert_eq!(&synced.assignment[..], b"all");
    commit_one(&broker, 1, &a_id).unwrap();

    // A second member: the first learns of the rebalance from its heartbeat and rejoins.
    let pending_b = groups.join(request("", Duration::from_secs(30)));
    assert!(matches!(
        groups.heartbeat("g", 1, &a_id, None),
        Err(GroupError::RebalanceInProgress)
    ));
    // An eager member commits its last offsets with the old generation before rejoining.
    commit_one(&broker, 1, &a_id).unwrap();
    let a2 = groups
        .join(request(&a_id, Duration::from_secs(6)))
        .await
        .unwrap();
    let b = pending_b.await.unwrap();
    assert_eq!((a2.generation_id, b.generation_id), (2, 2));
    assert!(a2.is_leader() && !b.is_leader());
    assert_eq!(a2.members.len(), 2);
    assert!(b.members.is_empty());
    // Between JoinGroup and SyncGroup nobody commits.
    assert!(matches!(
        commit_one(&broker, 2, &b.member_id),
        Err(GroupError::RebalanceInProgress)
    ));
    let pending_sync_b = groups.sync(sync(2, &b.member_id, Vec::new()));
    let assignments = vec![
        (a_id.clone(), Bytes::from_static(b"A")),
        (b.member_id.clone(), Bytes::from_static(b"B")),
    ];
    assert_eq!(
        &groups
            .sync(sync(2, &a_id, assignments))
            .await
            .unwrap()
            .assignment[..],
        b"A"
    );
    assert_eq!(&pending_sync_b.await.unwrap().assignment[..], b"B");
    assert_eq!(groups.describe("g").unwrap().state, GroupState::Stable);

    // Stale generations and unknown members are typed errors.
    assert!(matches!(
        commit_one(&broker, 1, &a_id),
        Err(GroupError::IllegalGeneration {
            given: 1,
            current: 2
        })
    ));
    assert!(matches!(
        commit_one(&broker, 2, "nobody"),
        Err(GroupError::UnknownMemberId)
    ));
    assert!(matches!(
        commit_one(&broker, -1, ""),
        Err(GroupError::UnknownMemberId)
    ));
    commit_one(&broker, 2, &b.member_id).unwrap();
    let tp = TopicPartition::new("t", 0);
    assert_eq!(broker.committed_offset("g", &tp).unwrap().offset, 7);

    // A stops heartbeating: the broker's own thread expires it after its 6 s session, and
    // B is told to rejoin — no wire server is running.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match groups.heartbeat("g", 2, &b.member_id, None) {
            Err(GroupError::RebalanceInProgress) => break,
            Ok(()) => {}
            Err(e) => panic!("unexpected heartbeat error {e}"),
        }
        assert!(Instant::now() < deadline, "A was never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let b3 = groups
        .join(request(&b.member_id, Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(b3.generation_id, 3);
    assert!(b3.is_leader());
    assert_eq!(b3.members.len(), 1);
    assert!(matches!(
        groups.heartbeat("g", 2, &a_id, None),
        Err(GroupError::UnknownMemberId)
    ));

    // B leaves: the group is empty and simple commits are allowed again.
    groups.leave("g", &b.member_id, None).unwrap();
    assert_eq!(groups.describe("g").unwrap().state, GroupState::Empty);
    commit_one(&broker, -1, "").unwrap();
    broker.shutdown().unwrap();
}

/// Groups, generations, assignments and static members survive a broker restart: they are
/// recorded in `__consumer_offsets` as `GroupMetadataKey` / `GroupMetadataValue` records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_metadata_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (static_id, dynamic_id) = {
        // Both members land in the first rebalance.
        let broker = broker_with_delay(dir.path(), Duration::from_millis(500));
        let groups = broker.group_coordinator();
        let mut s = request("", Duration::from_secs(30));
        s.group_instance_id = Some("instance-1".into());
        let pending_static = groups.join(s);
        let d = groups
            .join(request("", Duration::from_secs(30)))
            .await
            .unwrap();
        let s = pending_static.await.unwrap();
        assert_eq!(s.generation_id, d.generation_id);
        let (leader, follower) = if s.is_leader() { (&s, &d) } else { (&d, &s) };
        let assignments = vec![
            (s.member_id.clone(), Bytes::from_static(b"for-static")),
            (d.member_id.clone(), Bytes::from_static(b"for-dynamic")),
        ];
        let pending = groups.sync(sync(
            follower.generation_id,
            &follower.member_id,
            Vec::new(),
        ));
        groups
            .sync(sync(leader.generation_id, &leader.member_id, assignments))
            .await
            .unwrap();
        pending.await.unwrap();
        assert_eq!(s.generation_id, 1);
        broker.shutdown().unwrap();
        (s.member_id, d.member_id)
    };

    let broker = broker(dir.path());
    let groups = broker.group_coordinator();
    let g = groups.describe("g").expect("the group was reloaded");
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(g.generation_id, 1);
    assert_eq!(g.protocol_type, "consumer");
    assert_eq!(g.protocol, "range");
    let ids: Vec<&str> = g.members.iter().map(|m| m.member_id.as_str()).collect();
    assert!(ids.contains(&static_id.as_str()) && ids.contains(&dynamic_id.as_str()));
    let reloaded_static = g.members.iter().find(|m| m.member_id == static_id).unwrap();
    assert_eq!(reloaded_static.instance_id.as_deref(), Some("instance-1"));
    assert_eq!(&reloaded_static.assignment[..], b"for-static");
    assert_eq!(&reloaded_static.metadata[..], b"meta");

    // The dynamic member carries on in its generation.
    groups.heartbeat("g", 1, &dynamic_id, None).unwrap();
    // The static member restarts: it gets its assignment back without a rebalance, even
    // with other subscription metadata (as Kafka: only a change of the protocol the group
    // selects rebalances; a streams member's metadata changes with every start).
    let mut s = JoinGroupRequest::new(
        "g",
        "consumer",
        "range",
        Bytes::from_static(b"meta-after-restart"),
    );
    s.session_timeout = Duration::from_secs(30);
    s.rebalance_timeout = Duration::from_secs(10);
    s.group_instance_id = Some("instance-1".into());
    let back = groups.join(s).await.unwrap();
    assert_eq!(back.generation_id, 1);
    let g = groups.describe("g").unwrap();
    assert_eq!(g.state, GroupState::Stable);
    let replaced = g
        .members
        .iter()
        .find(|m| m.member_id == back.member_id)
        .unwrap();
    assert_eq!(&replaced.metadata[..], b"meta-after-restart");
    assert_ne!(back.member_id, static_id);
    let synced = groups
        .sync(SyncGroupRequest {
            group_instance_id: Some("instance-1".into()),
            ..sync(1, &back.member_id, Vec::new())
        })
        .await
        .unwrap();
    assert_eq!(&synced.assignment[..], b"for-static");
    assert_eq!(groups.describe("g").unwrap().state, GroupState::Stable);
    // Its old member id is fenced.
    assert!(matches!(
        groups.heartbeat("g", 1, &static_id, Some("instance-1")),
        Err(GroupError::FencedInstanceId)
    ));
    // Commits of the reloaded generation are checked as before the restart.
    commit_one(&broker, 1, &dynamic_id).unwrap();
    assert!(matches!(
        commit_one(&broker, 0, &dynamic_id),
        Err(GroupError::IllegalGeneration { .. })
    ));

    // Both leave; the empty group is recorded too and reloads as Empty.
    groups.leave("g", &dynamic_id, None).unwrap();
    groups.leave("g", &back.member_id, None).unwrap();
    broker.shutdown().unwrap();
    drop(broker);
    let broker = self::broker(dir.path());
    let g = broker.group_coordinator().describe("g").unwrap();
    assert_eq!(g.state, GroupState::Empty);
    assert!(g.members.is_empty());
    assert!(g.generation_id >= 2);
    broker.shutdown().unwrap();
}

/// A member that does not rejoin during a rebalance is evicted when the rebalance timeout
/// expires (Kafka's "member failed to rejoin" path), even though its session is still alive;
/// the generation completes with the members that did rejoin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_does_not_rejoin_is_evicted_at_the_rebalance_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let groups = broker.group_coordinator();
    let req = |id: &str| {
        let mut r = request(id, Duration::from_secs(60));
        r.rebalance_timeout = Duration::from_millis(1500);
        r
    };
    let a = groups.join(req("")).await.unwrap();
    let a_id = a.member_id.clone();
    groups
        .sync(sync(
            1,
            &a_id,
            vec![(a_id.clone(), Bytes::from_static(b"A"))],
        ))
        .await
        .unwrap();
    // B joins: a rebalance starts. A is told so by its heartbeat but never rejoins.
    let started = Instant::now();
    let pending_b = groups.join(req(""));
    assert!(matches!(
        groups.heartbeat("g", 1, &a_id, None),
        Err(GroupError::RebalanceInProgress)
    ));
    let b = tokio::time::timeout(Duration::from_secs(20), pending_b)
        .await
        .expect("the join completes once A is evicted")
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "the join waited for A's rebalance timeout, not less ({waited:?})"
    );
    assert_eq!(b.generation_id, 2);
    assert!(b.is_leader(), "B leads the new generation alone");
    assert_eq!(b.members.len(), 1);
    assert_eq!(b.members[0].member_id, b.member_id);
    // A is gone: its heartbeat and commits are refused as an unknown member.
    assert!(matches!(
        groups.heartbeat("g", 1, &a_id, None),
        Err(GroupError::UnknownMemberId)
    ));
    let d = groups.describe("g").unwrap();
    assert_eq!(d.members.len(), 1);
}

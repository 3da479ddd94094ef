#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Kafka's high-availability assignment on the runtime: two word-count instances with
//! `num.standby.replicas = 1` and `application.server` endpoints get each other's stateful
//! tasks as standbys and see every instance's partitions by host; an instance whose state
//! lags more than `acceptable.recovery.lag` gets warm-up replicas while the caught-up
//! instance keeps the stateful tasks, and the group rejoins for a probing rebalance after
//! `probing.rebalance.interval.ms`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use broker_embedded::{Broker, ProduceRecord};
use common::{wait_for, wait_running, Env};
use examples::word_count::{self, APPLICATION_ID, INPUT_TOPIC, OUTPUT_TOPIC};
use streams_core::{HostInfo, StreamsApp, StreamsConfig, TaskId, TopicPartition};

const PARTITIONS: u32 = 4;

fn produce(broker: &Broker, n: usize) {
    for p in 0..PARTITIONS as i32 {
        let records: Vec<ProduceRecord> = (0..n)
            .map(|i| ProduceRecord::value_only(format!("w{} w{} shared", i % 50, p)))
            .collect();
        broker.produce(INPUT_TOPIC, p, &records).unwrap();
    }
}

fn config(env: &Env, name: &str, endpoint: &str) -> StreamsConfig {
    common::config(APPLICATION_ID, &env.path().join(name))
        .application_server(endpoint)
        .unwrap()
        .num_standby_replicas(1)
}

fn start(broker: &Broker, config: StreamsConfig) -> StreamsApp {
    common::start_app(word_count::topology().unwrap(), config, broker)
}

/// The word-count tasks with state (sub-topology 1, after the repartition topic).
fn stateful(tasks: &BTreeSet<TaskId>) -> BTreeSet<TaskId> {
    tasks
        .iter()
        .filter(|t| t.subtopology == 1)
        .copied()
        .collect()
}

/// The tasks reading `partitions` (word count: the input topic feeds sub-topology 0, the
/// repartition topic sub-topology 1).
fn tasks_of(partitions: &BTreeSet<TopicPartition>) -> BTreeSet<TaskId> {
    partitions
        .iter()
        .map(|tp| TaskId {
            subtopology: u32::from(tp.topic != INPUT_TOPIC),
            partition: tp.partition,
        })
        .collect()
}

#[test]
fn standbys_go_to_the_other_instance_and_every_instance_knows_the_partitions_by_host() {
    let env = Env::new(&[(INPUT_TOPIC, PARTITIONS), (OUTPUT_TOPIC, PARTITIONS)]);
    let broker = &env.broker;
    produce(broker, 100);
    let a = start(broker, config(&env, "state-a", "host-a:7001"));
    wait_running(&a, common::WAIT);
    let b = start(broker, config(&env, "state-b", "host-b:7002"));
    let host_a = HostInfo::new("host-a", 7001);
    let host_b = HostInfo::new("host-b", 7002);
    wait_for(
        "both instances to run stateful tasks with each other's standbys",
        || {
            let (ta, tb) = (a.active_tasks(), b.active_tasks());
            !stateful(&ta).is_empty()
                && !stateful(&tb).is_empty()
                && a.standby_tasks() == stateful(&tb)
                && b.standby_tasks() == stateful(&ta)
                && a.partitions_by_host().len() == 2
                && b.partitions_by_host() == a.partitions_by_host()
        },
    );
    let (ta, tb) = (a.active_tasks(), b.active_tasks());
    assert!(ta.is_disjoint(&tb));
    assert_eq!(
        ta.len() + tb.len(),
        8,
        "every task active once: {ta:?} / {tb:?}"
    );
    let by_host = a.partitions_by_host();
    assert_eq!(tasks_of(&by_host[&host_a]), ta);
    assert_eq!(tasks_of(&by_host[&host_b]), tb);
    let standby_by_host = b.standby_partitions_by_host();
    assert_eq!(tasks_of(&standby_by_host[&host_a]), a.standby_tasks());
    assert_eq!(tasks_of(&standby_by_host[&host_b]), b.standby_tasks());
    drop(a);
    drop(b);
}

#[test]
fn a_lagging_instance_gets_warmups_and_the_group_rejoins_for_a_probing_rebalance() {
    let env = Env::new(&[(INPUT_TOPIC, PARTITIONS), (OUTPUT_TOPIC, PARTITIONS)]);
    let broker = &env.broker;
    produce(broker, 200);
    // No standbys; any lag is too much; probe every second.
    let cfg = |name: &str, endpoint: &str| {
        config(&env, name, endpoint)
            .num_standby_replicas(0)
            .acceptable_recovery_lag(0)
            .probing_rebalance_interval(Duration::from_secs(1))
    };
    let a = start(broker, cfg("state-a", "host-a:7001"));
    wait_running(&a, common::WAIT);
    assert!(a.wait_until_caught_up(common::WAIT).unwrap());
    let all_stateful: BTreeSet<TaskId> = (0..PARTITIONS as i32)
        .map(|p| TaskId {
            subtopology: 1,
            partition: p,
        })
        .collect();
    assert_eq!(stateful(&a.active_tasks()), all_stateful);
    let b = start(broker, cfg("state-b", "host-b:7002"));
    wait_for("the new instance to get warm-up replicas", || {
        a.state() == streams_core::StreamsState::Running
            && b.state() == streams_core::StreamsState::Running
            && !b.standby_tasks().is_empty()
    });
    // The caught-up instance kept every stateful task; the new one warms up at most
    // `max.warmup.replicas` (2) of them and runs only stateless tasks.
    assert_eq!(stateful(&a.active_tasks()), all_stateful);
    assert!(stateful(&b.active_tasks()).is_empty());
    assert!(b.standby_tasks().len() <= 2, "{:?}", b.standby_tasks());
    let generation = |broker: &Broker| {
        broker
            .group_coordinator()
            .describe(APPLICATION_ID)
            .map_or(-1, |g| g.generation_id)
    };
    let g0 = generation(broker);
    wait_for("a probing rebalance", || generation(broker) > g0);
    let members: BTreeMap<String, String> = broker
        .group_coordinator()
        .describe(APPLICATION_ID)
        .unwrap()
        .members
        .iter()
        .map(|m| (m.member_id.clone(), m.client_id.clone()))
        .collect();
    assert_eq!(members.len(), 2, "the probing rebalance keeps both members");
    drop(a);
    drop(b);
}

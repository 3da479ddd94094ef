#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `topology.optimization=reuse.ktable.source.topics` on the real runtime and the embedded
//! broker (Kafka's `TableSourceNode#reuseSourceTopicForChangeLog`): a source table
//! re-grouped and counted keeps no `<application.id>-<store>-changelog` for the table (the
//! count's store still has one); the table's store is checkpointed against its source
//! topic and restored from it, up to the committed offset (Kafka's `StoreChangelogReader`
//! for source changelogs), after a restart with and without local state, so that later
//! updates subtract each row from the group it was in before.

mod common;

use std::path::Path;

use broker_embedded::Broker;
use common::regions::{expected, latest, produce, topology, updates, INPUT, OUTPUT, PARTITIONS};
use common::{wait_for, Env};
use streams_core::StreamsApp;

const APP: &str = "reuse-app";

fn start(broker: &Broker, state_dir: &Path) -> StreamsApp {
    let config = common::config(APP, state_dir)
        .topology_optimization("reuse.ktable.source.topics")
        .unwrap();
    common::start_running(topology(), config, broker)
}

#[test]
fn source_table_is_restored_from_its_topic() {
    let env = Env::new(&[(INPUT, PARTITIONS), (OUTPUT, PARTITIONS)]);
    let broker = &env.broker;
    let state = env.state_dir();

    let first = updates(1, 200);
    let mut app = start(broker, &state);
    produce(broker, &first);
    wait_for("the first counts", || latest(broker) == expected(&first));
    app.close();

    let topics = broker.list_topics();
    assert!(
        !topics.contains(&format!("{APP}-users-store-changelog")),
        "{topics:?}"
    );
    assert!(
        topics.contains(&format!("{APP}-region-counts-changelog")),
        "{topics:?}"
    );
    // The table's task checkpoints its store against the source topic.
    let mut checkpointed = 0;
    for p in 0..PARTITIONS {
        let file = state.join(APP).join(format!("0_{p}")).join(".checkpoint");
        let text = std::fs::read_to_string(&file).unwrap();
        if text
            .lines()
            .any(|l| l.starts_with(&format!("{INPUT} {p} ")))
        {
            checkpointed += 1;
        }
    }
    assert_eq!(
        checkpointed, PARTITIONS,
        "every table task checkpoints its source partition"
    );

    // Restart from the checkpoints, with updates made while stopped.
    let second = updates(2, 100);
    produce(broker, &second);
    let mut app = start(broker, &state);
    let both: Vec<_> = first.iter().chain(&second).cloned().collect();
    wait_for("the counts after a restart", || {
        latest(broker) == expected(&both)
    });
    app.close();

    // Lose the local state: the table comes back from its source topic.
    std::fs::remove_dir_all(&state).unwrap();
    let mut app = start(broker, &state);
    let third = updates(3, 200);
    produce(broker, &third);
    let all: Vec<_> = both.iter().chain(&third).cloned().collect();
    wait_for("the counts over all runs", || {
        latest(broker) == expected(&all)
    });
    assert_eq!(app.dropped_records(), 0);
    app.close();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
}

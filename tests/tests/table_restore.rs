#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A source table (`StreamsBuilder::table`) re-grouped and counted (`group_by` + `count`)
//! on the real runtime and the embedded broker: the table's store and the count's store are
//! change-logged to `<application.id>-<store>-changelog`, and after a clean close and the
//! loss of the local state the restarted application restores both, so that later updates
//! subtract each row from the group it was in before the restart.

mod common;

use std::path::Path;

use broker_embedded::Broker;
use common::regions::{expected, latest, produce, topology, updates, INPUT, OUTPUT, PARTITIONS};
use common::{topic_configs, wait_for, Env};
use streams_core::StreamsApp;

const APP: &str = "table-app";

fn start(broker: &Broker, state_dir: &Path) -> StreamsApp {
    common::start_running(topology(), common::config(APP, state_dir), broker)
}

#[test]
fn table_and_grouped_count_are_restored_after_a_restart() {
    let env = Env::new(&[(INPUT, PARTITIONS), (OUTPUT, PARTITIONS)]);
    let broker = &env.broker;
    let state = env.state_dir();

    let first = updates(1, 200);
    let mut app = start(broker, &state);
    produce(broker, &first);
    wait_for("the first counts", || latest(broker) == expected(&first));
    app.close();

    for store in ["users-store", "region-counts"] {
        let config = topic_configs(broker, &format!("{APP}-{store}-changelog"));
        assert_eq!(config["cleanup.policy"], "compact", "{store}");
    }
    assert!(broker
        .describe_topic(&format!("{APP}-region-counts-repartition"))
        .is_ok());

    // Lose the local state: the table and the counts come back from their changelogs, so
    // moves after the restart are subtracted from the right regions.
    std::fs::remove_dir_all(&state).unwrap();
    let mut app = start(broker, &state);
    let second = updates(2, 200);
    produce(broker, &second);
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    wait_for("the counts over both runs", || {
        latest(broker) == expected(&all)
    });
    assert_eq!(app.dropped_records(), 0);
    app.close();
}

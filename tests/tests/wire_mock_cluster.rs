#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The wire backend against librdkafka's mock cluster (`rdkafka::mocking`), a second,
//! independent Kafka implementation: the group protocol (our own client, at the versions the
//! mock speaks: JoinGroup ≤ v6, SyncGroup ≤ v4), the data path through librdkafka, and the
//! validate-existing path for internal topics (the mock has no CreateTopics, so every topic
//! is created beforehand with `MockCluster::create_topic`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use examples::word_count::direct_count;
use examples::word_count_cluster as wcc;
use rdkafka::mocking::MockCluster;
use streams_core::{Cluster, KafkaCluster, StreamsState, TopicPartition};

const APP: &str = "wc-mock";
/// Kafka Streams' names of the word count's internal topics (store `counts`).
const REPARTITION: &str = "wc-mock-counts-repartition";
const CHANGELOG: &str = "wc-mock-counts-changelog";

fn lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("mock w{} w{} line{}", i % 7, i % 13, i % 3))
        .collect()
}

fn create(
    mock: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    topics: &[(&str, i32)],
) {
    for (t, p) in topics {
        mock.create_topic(t, *p, 1).unwrap();
    }
}

/// Logs of the runtime to the test's output (`RUST_LOG`, default warn).
fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

#[test]
fn word_count_runs_on_the_mock_cluster_with_two_members_and_commits_through_the_group() {
    init_logs();
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    create(
        &mock,
        &[
            (wcc::INPUT_TOPIC, wcc::PARTITIONS),
            (wcc::OUTPUT_TOPIC, wcc::PARTITIONS),
            (REPARTITION, wcc::PARTITIONS),
            (CHANGELOG, wcc::PARTITIONS),
        ],
    );
    let input = lines(3_000);
    wcc::produce_lines(&bootstrap, &input).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut options = wcc::ClusterOptions::new(&bootstrap, APP, dir.path().join("state"));
    // Two stream threads: two members of the group, one of them the leader running the
    // streams assignor.
    options.threads = 2;
    options.commit_interval = Duration::from_millis(200);
    let mut app = wcc::start(&options).unwrap();
    assert!(
        app.wait_for_state(StreamsState::Running, Duration::from_secs(60)),
        "not RUNNING: {:?} {:?}",
        app.state(),
        app.errors()
    );
    let truth = direct_count(&input.join("\n"));
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let counts = wcc::read_counts(&bootstrap, None).unwrap();
        if counts == truth {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counts never matched: {} of {} words right; errors {:?}",
            truth
                .iter()
                .filter(|(w, c)| counts.get(*w) == Some(c))
                .count(),
            truth.len(),
            app.errors()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Both members got tasks (16 tasks over 2 threads).
    let tasks = app.active_tasks();
    assert_eq!(tasks.len(), 16, "{tasks:?}");
    app.close();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
    // Offsets were committed by our group client with the members' generations: every
    // input partition's committed offset is its end.
    let config = options.config().unwrap();
    let cluster = KafkaCluster::new(&config).unwrap();
    let mut committed_partitions = BTreeSet::new();
    for p in 0..wcc::PARTITIONS {
        let tp = TopicPartition::new(wcc::INPUT_TOPIC, p);
        let end = cluster.end_offset(&tp).unwrap();
        let committed = cluster.committed_offset(APP, &tp).unwrap();
        if end == 0 {
            // Nothing was ever read from it (3 000 lines in 500-line batches fill 6 of 8).
            assert!(matches!(committed, None | Some(0)), "{tp}: {committed:?}");
        } else {
            assert_eq!(committed, Some(end), "committed offset of {tp}");
            committed_partitions.insert(p);
        }
    }
    assert_eq!(committed_partitions.len(), 6);
}

#[test]
fn an_existing_internal_topic_with_the_wrong_partition_count_is_a_clear_error() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    create(
        &mock,
        &[
            (wcc::INPUT_TOPIC, wcc::PARTITIONS),
            (wcc::OUTPUT_TOPIC, wcc::PARTITIONS),
            (REPARTITION, wcc::PARTITIONS),
            (CHANGELOG, 3),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let options = wcc::ClusterOptions::new(&bootstrap, APP, dir.path().join("state"));
    let err = wcc::start(&options).unwrap_err().to_string();
    assert!(err.contains(CHANGELOG), "{err}");
    assert!(err.contains("3 partitions"), "{err}");
    assert!(err.contains("needs 8"), "{err}");
}

/// The mock has no DescribeConfigs: the backend reports the configs of existing topics as
/// unknown (warning once) and the application starts on the existing internal topics
/// without the cleanup.policy check.
#[test]
fn without_describe_configs_the_cleanup_policy_check_is_skipped() {
    init_logs();
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    create(
        &mock,
        &[
            (wcc::INPUT_TOPIC, wcc::PARTITIONS),
            (wcc::OUTPUT_TOPIC, wcc::PARTITIONS),
            (REPARTITION, wcc::PARTITIONS),
            (CHANGELOG, wcc::PARTITIONS),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let options = wcc::ClusterOptions::new(&bootstrap, APP, dir.path().join("state"));
    let cluster = KafkaCluster::new(&options.config().unwrap()).unwrap();
    assert_eq!(cluster.topic_configs(CHANGELOG).unwrap(), None);
    assert_eq!(cluster.topic_configs(REPARTITION).unwrap(), None);
    let mut app = wcc::start(&options).unwrap();
    assert!(
        app.wait_for_state(StreamsState::Running, Duration::from_secs(60)),
        "not RUNNING: {:?} {:?}",
        app.state(),
        app.errors()
    );
    app.close();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
}

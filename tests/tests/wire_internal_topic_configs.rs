#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Existing internal topics' `cleanup.policy` checked at start (Kafka Streams'
//! `InternalTopicManager` rules: a changelog's policy must not contain `delete`, a
//! repartition topic's must not contain `compact`), over the wire against this project's
//! Kafka server in process (DescribeConfigs), and on the embedded backend. The wire
//! backend against a cluster without DescribeConfigs (librdkafka's mock) is in
//! `wire_mock_cluster.rs`.

use std::time::Duration;

use broker_embedded::{Broker, BrokerConfig, KafkaServer, NewTopic, ServerConfig};
use examples::word_count::{topology_for, WordCountError};
use examples::word_count_cluster as wcc;
use streams_core::{
    Cluster, EmbeddedCluster, InternalTopicKind, KafkaCluster, StreamsApp, StreamsConfig,
    StreamsError, StreamsState,
};

const APP: &str = "wc-configs";
/// Kafka Streams' names of the word count's internal topics (store `counts`).
const REPARTITION: &str = "wc-configs-counts-repartition";
const CHANGELOG: &str = "wc-configs-counts-changelog";

/// An in-process Kafka-protocol server on an ephemeral port, on its own tokio runtime.
struct Server {
    broker: Broker,
    addr: String,
    _server: KafkaServer,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn serve() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.group_initial_rebalance_delay = Duration::ZERO;
    let broker = Broker::open(config).unwrap();
    let server = runtime
        .block_on(KafkaServer::start(
            broker.clone(),
            ServerConfig {
                listen: "127.0.0.1:0".into(),
                ..ServerConfig::default()
            },
        ))
        .unwrap();
    Server {
        broker,
        addr: server.local_addr().to_string(),
        _server: server,
        _runtime: runtime,
        _dir: dir,
    }
}

/// The word count's topics, the internal ones with the given `cleanup.policy`.
fn create_topics(broker: &Broker, changelog_policy: &str, repartition_policy: &str) {
    let n = u32::try_from(wcc::PARTITIONS).unwrap();
    broker
        .create_topic(NewTopic::new(wcc::INPUT_TOPIC, n))
        .unwrap();
    broker
        .create_topic(NewTopic::new(wcc::OUTPUT_TOPIC, n))
        .unwrap();
    broker
        .create_topic(NewTopic::new(CHANGELOG, n).config("cleanup.policy", changelog_policy))
        .unwrap();
    broker
        .create_topic(NewTopic::new(REPARTITION, n).config("cleanup.policy", repartition_policy))
        .unwrap();
}

fn cleanup_policy_error(err: &StreamsError) -> (&str, InternalTopicKind, &str, &str) {
    match err {
        StreamsError::InternalTopicCleanupPolicy {
            topic,
            kind,
            policy,
            forbidden,
        } => (topic.as_str(), *kind, policy.as_str(), *forbidden),
        other => panic!("not a cleanup.policy error: {other}"),
    }
}

fn start_over_the_wire(server: &Server, state: &std::path::Path) -> wcc::Result<StreamsApp> {
    wcc::start(&wcc::ClusterOptions::new(&server.addr, APP, state))
}

#[test]
fn a_changelog_that_deletes_is_refused_over_the_wire_with_a_typed_error() {
    let server = serve();
    create_topics(&server.broker, "delete", "delete");
    let state = tempfile::tempdir().unwrap();
    let err = match start_over_the_wire(&server, state.path()) {
        Err(WordCountError::Streams(e)) => e,
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a changelog with cleanup.policy=delete was accepted"),
    };
    assert_eq!(
        cleanup_policy_error(&err),
        (CHANGELOG, InternalTopicKind::Changelog, "delete", "delete")
    );
    let message = err.to_string();
    assert!(
        message.contains(CHANGELOG) && message.contains("cleanup.policy"),
        "{message}"
    );
}

#[test]
fn a_compacted_repartition_topic_is_refused_over_the_wire() {
    let server = serve();
    create_topics(&server.broker, "compact", "compact,delete");
    let state = tempfile::tempdir().unwrap();
    let err = match start_over_the_wire(&server, state.path()) {
        Err(WordCountError::Streams(e)) => e,
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a compacted repartition topic was accepted"),
    };
    assert_eq!(
        cleanup_policy_error(&err),
        (
            REPARTITION,
            InternalTopicKind::Repartition,
            "compact,delete",
            "compact"
        )
    );
}

#[test]
fn existing_internal_topics_with_kafkas_policies_are_used_over_the_wire() {
    let server = serve();
    create_topics(&server.broker, "compact", "delete");
    // DescribeConfigs over the wire gives the topics' configs.
    let state = tempfile::tempdir().unwrap();
    let options = wcc::ClusterOptions::new(&server.addr, APP, state.path());
    let cluster = KafkaCluster::new(&options.config().unwrap()).unwrap();
    let configs = cluster.topic_configs(CHANGELOG).unwrap().unwrap();
    assert_eq!(
        configs.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    assert_eq!(cluster.topic_configs("no-such-topic").unwrap(), None);

    let mut app = start_over_the_wire(&server, state.path()).unwrap();
    assert!(
        app.wait_for_state(StreamsState::Running, Duration::from_secs(60)),
        "{:?} {:?}",
        app.state(),
        app.errors()
    );
    app.close();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
}

#[test]
fn a_changelog_that_deletes_is_refused_on_the_embedded_backend() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path().join("broker"))).unwrap();
    create_topics(&broker, "compact,delete", "delete");
    let config = StreamsConfig::new(APP).state_dir(dir.path().join("state"));
    let mut app = StreamsApp::new(
        topology_for(wcc::INPUT_TOPIC, wcc::OUTPUT_TOPIC).unwrap(),
        config,
        EmbeddedCluster::new(broker.clone()),
    )
    .unwrap();
    let err = app.start().unwrap_err();
    assert_eq!(
        cleanup_policy_error(&err),
        (
            CHANGELOG,
            InternalTopicKind::Changelog,
            "compact,delete",
            "delete"
        )
    );
    app.close();
    broker.shutdown().unwrap();
}

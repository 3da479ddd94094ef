#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `KStream::repartition` and `KStream::to_dynamic` on the real runtime and the embedded
//! broker: a repartition topic is created with the partition count `Repartitioned` gives
//! (Kafka's `InternalTopicProperties`), else with that of the sub-topology writing it
//! (Kafka's `RepartitionTopics` sizes it after its source topics); records go through it;
//! a dynamic sink writes to the topic each record names, and an unknown topic stops the
//! application with an error naming it.

use std::time::{Duration, Instant};

use broker_embedded::{
    decode_fetched, Broker, BrokerConfig, IsolationLevel, NewTopic, ProduceRecord,
};
use streams_core::{EmbeddedCluster, StreamsApp, StreamsConfig, StreamsState, StringSerde};
use streams_dsl::{Consumed, Produced, Repartitioned, StreamsBuilder};

const WAIT: Duration = Duration::from_secs(90);

fn broker(dir: &std::path::Path) -> Broker {
    let mut c = BrokerConfig::new(dir.join("broker"));
    c.group_initial_rebalance_delay = Duration::ZERO;
    Broker::open(c).unwrap()
}

fn start(
    broker: &Broker,
    builder: &StreamsBuilder,
    app: &str,
    dir: &std::path::Path,
) -> StreamsApp {
    let config = StreamsConfig::new(app)
        .state_dir(dir.join("state"))
        .commit_interval(Duration::from_millis(100));
    let mut app = StreamsApp::new(
        builder.build().unwrap(),
        config,
        EmbeddedCluster::new(broker.clone()),
    )
    .unwrap();
    app.start().unwrap();
    app
}

fn count(broker: &Broker, topic: &str) -> usize {
    let partitions = broker.describe_topic(topic).unwrap().partitions.len();
    let mut n = 0;
    for p in 0..partitions as i32 {
        let data = broker
            .read_partition(topic, p, 0, 4 << 20, IsolationLevel::ReadCommitted)
            .unwrap();
        n += decode_fetched(topic, &data.records, 0).unwrap().len();
    }
    n
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn produce(broker: &Broker, topic: &str, keys: &[&str]) {
    for (i, k) in keys.iter().enumerate() {
        let r = ProduceRecord {
            key: Some(k.as_bytes().to_vec().into()),
            value: Some(format!("v{i}").into_bytes().into()),
            ..ProduceRecord::default()
        };
        broker.produce(topic, (i % 2) as i32, &[r]).unwrap();
    }
}

#[test]
fn repartition_topics_get_the_given_or_the_upstream_partition_count() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    broker.create_topic(NewTopic::new("in", 2)).unwrap();
    broker.create_topic(NewTopic::new("out", 3)).unwrap();
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .repartition(Repartitioned::new())
        .repartition(Repartitioned::as_name("by-key").with_number_of_partitions(5))
        .to("out", Produced::default());
    let mut app = start(&broker, &builder, "rep", dir.path());
    assert!(
        app.wait_for_state(StreamsState::Running, WAIT),
        "{:?}",
        app.errors()
    );
    let partitions = |t: &str| broker.describe_topic(t).unwrap().partitions.len();
    assert_eq!(
        partitions("rep-KSTREAM-REPARTITION-0000000001-repartition"),
        2
    );
    assert_eq!(partitions("rep-by-key-repartition"), 5);
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    produce(
        &broker,
        "in",
        &keys.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    wait_for("every record through both repartition topics", || {
        count(&broker, "out") == 40
    });
    // Partitioned by key: the 40 keys spread over the 5 partitions.
    let used = (0..5)
        .filter(|&p| {
            let data = broker
                .read_partition(
                    "rep-by-key-repartition",
                    p,
                    0,
                    4 << 20,
                    IsolationLevel::ReadCommitted,
                )
                .unwrap();
            !decode_fetched("rep-by-key-repartition", &data.records, 0)
                .unwrap()
                .is_empty()
        })
        .count();
    assert!(used > 1, "{used}");
    app.close();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
}

#[test]
fn dynamic_sinks_write_to_existing_topics_and_fail_on_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    broker.create_topic(NewTopic::new("events", 2)).unwrap();
    broker.create_topic(NewTopic::new("events-a", 1)).unwrap();
    broker.create_topic(NewTopic::new("events-b", 1)).unwrap();
    let builder = StreamsBuilder::new();
    builder
        .stream("events", Consumed::with(StringSerde, StringSerde))
        .to_dynamic(
            |k: &String, _v: &String| format!("events-{k}"),
            Produced::default(),
        );
    let mut app = start(&broker, &builder, "dyn", dir.path());
    assert!(
        app.wait_for_state(StreamsState::Running, WAIT),
        "{:?}",
        app.errors()
    );
    produce(&broker, "events", &["a", "b", "a"]);
    wait_for("both topics", || {
        count(&broker, "events-a") == 2 && count(&broker, "events-b") == 1
    });
    // A record naming a topic that does not exist stops the application, naming it.
    produce(&broker, "events", &["zzz"]);
    let deadline = Instant::now() + WAIT;
    while app.state() != StreamsState::Error {
        assert!(Instant::now() < deadline, "the application kept running");
        std::thread::sleep(Duration::from_millis(20));
    }
    let errors = app.errors().join("; ");
    assert!(errors.contains("events-zzz"), "{errors}");
    app.close();
}

//! An idempotent librdkafka producer streams through a broker restart (same port, clean stop
//! in the middle of the stream): every record lands exactly once — no duplicates, no gaps.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use broker_embedded::{Broker, BrokerConfig, FetchOptions, KafkaServer, NewTopic, ServerConfig};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

async fn start(dir: &std::path::Path, listen: &str) -> (Broker, KafkaServer) {
    let mut c = BrokerConfig::new(dir);
    c.cleaner_interval = None;
    let broker = Broker::open(c).unwrap();
    let server = KafkaServer::start(
        broker.clone(),
        ServerConfig {
            listen: listen.into(),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    (broker, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_survives_a_broker_restart_without_duplicates_or_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, server) = start(dir.path(), "127.0.0.1:0").await;
    let addr = server.local_addr().to_string();
    broker.create_topic(NewTopic::new("idem", 1)).unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &addr)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "60000")
        .set("retry.backoff.ms", "50")
        .create()
        .unwrap();
    const N: usize = 3000;
    let sender = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut pending = Vec::new();
            for i in 0..N {
                let p = producer.clone();
                pending.push(tokio::spawn(async move {
                    let v = format!("{i:06}");
                    p.send(
                        FutureRecord::<(), _>::to("idem").payload(&v),
                        Duration::from_secs(60),
                    )
                    .await
                    .map_err(|(e, _)| e.to_string())
                }));
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            let mut failures = 0;
            for h in pending {
                if h.await.unwrap().is_err() {
                    failures += 1;
                }
            }
            failures
        })
    };
    // Restart the broker in the middle of the stream, on the same port.
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.shutdown().await;
    broker.shutdown().unwrap();
    drop(broker);
    let (broker, server) = start(dir.path(), &addr).await;
    let failures = tokio::time::timeout(Duration::from_secs(90), sender)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failures, 0, "every send was eventually acknowledged");

    let opts = FetchOptions {
        max_wait: Duration::ZERO,
        ..FetchOptions::default()
    };
    let mut values = Vec::new();
    let mut offset = 0;
    loop {
        let recs = broker.fetch_records("idem", 0, offset, opts).await.unwrap();
        let Some(last) = recs.last() else { break };
        offset = last.offset + 1;
        values.extend(
            recs.into_iter()
                .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap()),
        );
    }
    // Exactly once: every value present, none twice (send order across tasks is not fixed,
    // so the log's order is not checked against the loop's).
    assert_eq!(values.len(), N, "no duplicates and no losses");
    let distinct: std::collections::BTreeSet<&String> = values.iter().collect();
    assert_eq!(distinct.len(), N, "no duplicates");
    let expected: std::collections::BTreeSet<String> = (0..N).map(|i| format!("{i:06}")).collect();
    assert!(
        distinct.into_iter().eq(expected.iter()),
        "exactly the values sent"
    );
    server.shutdown().await;
}

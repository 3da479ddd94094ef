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

/// What the proxy saw: (producer id, base sequence) of every produce it forwarded, and
/// whether it has already swallowed a produce response.
#[derive(Default)]
struct Seen {
    produces: Vec<(i64, i32)>,
    swallowed: bool,
}

/// Reads one size-prefixed Kafka frame.
async fn read_frame(s: &mut tokio::net::tcp::OwnedReadHalf) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut size = [0u8; 4];
    s.read_exact(&mut size).await.ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
    s.read_exact(&mut body).await.ok()?;
    Some(body)
}

/// (producer id, base sequence) of the first batch of a Produce request frame.
fn produce_batch_id(frame: &[u8]) -> Option<(i64, i32)> {
    use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader};
    use kafka_protocol::protocol::Decodable;
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let mut buf = bytes::Bytes::copy_from_slice(frame);
    RequestHeader::decode(&mut buf, ApiKey::Produce.request_header_version(version)).ok()?;
    let req = ProduceRequest::decode(&mut buf, version).ok()?;
    let records = req
        .topic_data
        .first()?
        .partition_data
        .first()?
        .records
        .clone()?;
    let h = broker_embedded::record::BatchHeader::parse(&records).ok()?;
    Some((h.producer_id, h.base_sequence))
}

/// A Kafka-protocol proxy that forwards everything but swallows the response to the first
/// Produce it forwards and closes that connection, so the client must retry a batch the broker
/// has already appended.
async fn proxy(
    listener: tokio::net::TcpListener,
    upstream: std::net::SocketAddr,
    seen: std::sync::Arc<parking_lot::Mutex<Seen>>,
) {
    use tokio::io::AsyncWriteExt;
    while let Ok((client, _)) = listener.accept().await {
        let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
            return;
        };
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let produce_ids = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<i32>::new()));
        let ids = std::sync::Arc::clone(&produce_ids);
        let seen_up = std::sync::Arc::clone(&seen);
        tokio::spawn(async move {
            while let Some(frame) = read_frame(&mut cr).await {
                if frame.len() >= 8 && i16::from_be_bytes([frame[0], frame[1]]) == 0 {
                    ids.lock()
                        .push(i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]));
                    if let Some(id) = produce_batch_id(&frame) {
                        seen_up.lock().produces.push(id);
                    }
                }
                let mut out = (frame.len() as i32).to_be_bytes().to_vec();
                out.extend_from_slice(&frame);
                if sw.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
        let seen_down = std::sync::Arc::clone(&seen);
        tokio::spawn(async move {
            while let Some(frame) = read_frame(&mut sr).await {
                let correlation = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                if produce_ids.lock().contains(&correlation) {
                    let mut s = seen_down.lock();
                    if !s.swallowed {
                        s.swallowed = true;
                        // The append happened; the client never hears of it.
                        return;
                    }
                }
                let mut out = (frame.len() as i32).to_be_bytes().to_vec();
                out.extend_from_slice(&frame);
                if cw.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A produce whose response is lost (the connection drops after the broker appended it) is
/// retried by the idempotent librdkafka producer: the proxy in between sees the same
/// (producer id, sequence) reach the broker twice, and the broker keeps one copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_reaches_the_broker_and_is_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let proxy_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy_listener.local_addr().unwrap();
    let mut c = BrokerConfig::new(dir.path());
    c.cleaner_interval = None;
    let broker = Broker::open(c).unwrap();
    let server = KafkaServer::start(
        broker.clone(),
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            // Clients learn the proxy's address from Metadata, so all traffic goes through it.
            advertised_host: Some("127.0.0.1".into()),
            advertised_port: Some(proxy_addr.port()),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    broker.create_topic(NewTopic::new("retried", 1)).unwrap();
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Seen::default()));
    let proxy_task = tokio::spawn(proxy(
        proxy_listener,
        server.local_addr(),
        std::sync::Arc::clone(&seen),
    ));
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", proxy_addr.to_string())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("retry.backoff.ms", "50")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    for i in 0..5 {
        producer
            .send(
                FutureRecord::<(), _>::to("retried").payload(&format!("v{i}")),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("send {i}: {e}"));
    }
    let (swallowed, produces) = {
        let s = seen.lock();
        (s.swallowed, s.produces.clone())
    };
    assert!(swallowed, "the proxy dropped one produce response");
    let first = produces[0];
    let times = produces.iter().filter(|&&id| id == first).count();
    assert!(
        times >= 2,
        "the batch {first:?} whose response was lost reached the broker again: {produces:?}"
    );
    let opts = FetchOptions {
        max_wait: Duration::ZERO,
        ..FetchOptions::default()
    };
    let recs = broker.fetch_records("retried", 0, 0, opts).await.unwrap();
    let values: Vec<String> = recs
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(
        values,
        vec!["v0", "v1", "v2", "v3", "v4"],
        "one copy of each, in order"
    );
    proxy_task.abort();
    server.shutdown().await;
}

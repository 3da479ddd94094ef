//! Replication on a local cluster (report-only).
//!
//! `cargo bench -p broker-cli --bench replication` (options after `--`: `--quick`,
//! `--records N`: records per produce case, default 1,000,000, 20,000 with `--quick`). Starts
//! three `broker serve` processes (combined `broker,controller` nodes, 127.0.0.1 ephemeral
//! ports, a temporary directory), all on this machine with the librdkafka clients.
//!
//! Measures, in one run: produce records/s and MB/s of 100-byte records and the produce
//! latency p50/p99 (enqueue to delivery report, under full load, after a warm-up record per
//! partition; the producer's start-up is printed apart) for replication factor 1 with acks=1,
//! replication factor 3 with acks=1, and replication factor 3 with acks=all (plain and
//! idempotent producer, `min.insync.replicas=2`); then the failover time: a producer sends acks=all records
//! one at a time to a single-partition replication-factor-3 topic, the partition's leader is
//! SIGKILLed, and the time from the kill to the first successful delivery of a record enqueued
//! after the kill is reported (3 rounds; the killed node is restarted and the ISR is full again
//! between rounds).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};

const RECORD: usize = 100;
const PARTITIONS: i32 = 3;
/// Kafka's defaults, written out because they bound the failover time.
const SESSION_TIMEOUT_MS: u64 = 9000;
const HEARTBEAT_MS: u64 = 2000;

// ---------------------------------------------------------------------------------------------
// The cluster

struct Node {
    id: i32,
    dir: PathBuf,
    broker_port: u16,
    controller_port: u16,
    child: Option<Child>,
}

/// Three combined nodes; every process is SIGKILLed and the directory removed on drop (also
/// when the bench panics).
struct Cluster {
    nodes: Vec<Node>,
    _root: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    fn start() -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let mut nodes: Vec<Node> = (1..=3)
            .map(|id| Node {
                id,
                dir: root.path().join(format!("node-{id}")),
                broker_port: free_port(),
                controller_port: free_port(),
                child: None,
            })
            .collect();
        let voters = nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        for n in &nodes {
            std::fs::create_dir_all(&n.dir).unwrap();
            let text = format!(
                "node.id={id}\nprocess.roles=broker,controller\ncontroller.quorum.voters={voters}\n\
                 listeners=PLAINTEXT://127.0.0.1:{b},CONTROLLER://127.0.0.1:{c}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{b}\n\
                 inter.broker.listener.name=PLAINTEXT\ncontroller.listener.names=CONTROLLER\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
                 log.dirs={data}\ndefault.replication.factor=3\nmin.insync.replicas=2\n\
                 offsets.topic.replication.factor=3\ntransaction.state.log.replication.factor=3\n\
                 broker.session.timeout.ms={SESSION_TIMEOUT_MS}\n\
                 broker.heartbeat.interval.ms={HEARTBEAT_MS}\n",
                id = n.id,
                b = n.broker_port,
                c = n.controller_port,
                data = n.dir.join("data").display(),
            );
            std::fs::write(n.dir.join("server.properties"), text).unwrap();
        }
        let mut cluster = Cluster {
            nodes: Vec::new(),
            _root: root,
        };
        for n in &mut nodes {
            Self::spawn(n);
        }
        cluster.nodes = nodes;
        cluster.wait_for_brokers();
        cluster
    }

    fn spawn(n: &mut Node) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.dir.join("server.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_broker"))
            .arg("serve")
            .arg("--config-file")
            .arg(n.dir.join("server.properties"))
            .env("CLUSTER_ID", "MkU3OEVBNTcwNTJENDM2Qk")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        n.child = Some(child);
    }

    fn node(&mut self, id: i32) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap()
    }

    fn kill(&mut self, id: i32) {
        if let Some(mut child) = self.node(id).child.take() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }

    fn restart(&mut self, id: i32) {
        Self::spawn(self.node(id));
    }

    fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.broker_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap())
            .set("topic.metadata.refresh.interval.ms", "1000");
        c
    }

    fn wait_for_brokers(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for n in &self.nodes {
            while TcpStream::connect(("127.0.0.1", n.broker_port)).is_err() {
                assert!(Instant::now() < deadline, "node {} never listened", n.id);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let consumer: BaseConsumer = self.client().create().unwrap();
        loop {
            if let Ok(md) = consumer.fetch_metadata(None, Duration::from_secs(5)) {
                if md.brokers().len() == self.nodes.len() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "brokers never all registered");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn create_topic(&self, name: &str, partitions: i32, rf: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(rf))
            .set("min.insync.replicas", if rf >= 2 { "2" } else { "1" });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for r in rt
            .block_on(admin.create_topics([&topic], &AdminOptions::new()))
            .unwrap()
        {
            r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
        }
        self.wait_for(name, Duration::from_secs(30), |ps| {
            ps.len() == partitions as usize
                && ps.iter().all(|(l, isr)| *l > 0 && isr.len() == rf as usize)
        });
    }

    /// (leader, ISR) of each partition of `topic`.
    fn partitions(&self, topic: &str) -> Option<Vec<(i32, Vec<i32>)>> {
        let consumer: BaseConsumer = self.client().create().ok()?;
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()?;
        let t = md.topics().iter().find(|t| t.name() == topic)?;
        if t.error().is_some() {
            return None;
        }
        let mut ps: Vec<_> = t.partitions().iter().collect();
        ps.sort_by_key(|p| p.id());
        Some(ps.iter().map(|p| (p.leader(), p.isr().to_vec())).collect())
    }

    fn wait_for(
        &self,
        topic: &str,
        timeout: Duration,
        check: impl Fn(&[(i32, Vec<i32>)]) -> bool,
    ) -> Vec<(i32, Vec<i32>)> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.partitions(topic);
            if let Some(ps) = &seen {
                if check(ps) {
                    return ps.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{topic}: timed out, last seen {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Throughput and latency

/// Records, per delivered record, the time from enqueue (carried as the opaque) to its report.
#[derive(Default)]
struct Latencies {
    ok: Mutex<Vec<Duration>>,
    failed: Mutex<usize>,
}

impl ClientContext for Latencies {}

impl ProducerContext for Latencies {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, enqueued: Box<Instant>) {
        let latency = enqueued.elapsed();
        match result {
            Ok(_) => self.ok.lock().unwrap().push(latency),
            Err(_) => *self.failed.lock().unwrap() += 1,
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Run {
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// From creating the producer to the delivery of its warm-up records.
    start_up: Duration,
}

fn produce(cluster: &Cluster, topic: &str, n: usize, acks: &str, idempotent: bool) -> Run {
    let mut config = cluster.client();
    config
        .set("acks", acks)
        .set("enable.idempotence", idempotent.to_string())
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "10000")
        .set("partitioner", "murmur2_random");
    let started = Instant::now();
    let p: ThreadedProducer<Latencies> = config.create_with_context(Latencies::default()).unwrap();
    let value = [b'v'; RECORD];
    // Warm-up, not timed: one record per partition, delivered, so that connections, metadata
    // and (idempotent) the producer id are in place. librdkafka 2.10+ decommissions its
    // bootstrap connections after the first metadata answer, and an idempotent producer then
    // has no connected broker to ask for its producer id until its 500 ms PID timer fires: a
    // client start-up cost, the same against any broker, that would otherwise land on the
    // first records of the timed run.
    for partition in 0..PARTITIONS {
        let rec = BaseRecord::<(), _, _>::with_opaque_to(topic, Box::new(Instant::now()))
            .partition(partition)
            .payload(&value[..]);
        p.send(rec).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(60)).unwrap();
    let start_up = started.elapsed();
    {
        let ctx = p.context();
        assert_eq!(*ctx.failed.lock().unwrap(), 0, "{topic}: warm-up failed");
        assert_eq!(
            ctx.ok.lock().unwrap().len(),
            PARTITIONS as usize,
            "{topic}: warm-up reports"
        );
        ctx.ok.lock().unwrap().clear();
    }
    let t = Instant::now();
    for i in 0..n {
        let key = (i as u64).to_be_bytes();
        let mut rec = BaseRecord::with_opaque_to(topic, Box::new(Instant::now()))
            .key(&key[..])
            .payload(&value[..]);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    std::thread::sleep(Duration::from_micros(200));
                    rec = r;
                }
            }
        }
    }
    p.flush(Duration::from_secs(300)).unwrap();
    let elapsed = t.elapsed();
    let ctx = p.context();
    assert_eq!(*ctx.failed.lock().unwrap(), 0, "{topic}: failed deliveries");
    let mut latencies = std::mem::take(&mut *ctx.ok.lock().unwrap());
    assert_eq!(latencies.len(), n, "{topic}: delivery reports");
    latencies.sort();
    Run {
        elapsed,
        latencies,
        start_up,
    }
}

// ---------------------------------------------------------------------------------------------
// Failover

/// Per record of the failover producer: (enqueued, reported, delivered).
type Events = Arc<Mutex<Vec<(Instant, Instant, bool)>>>;

struct Reports {
    last: Mutex<Option<bool>>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        *self.last.lock().unwrap() = Some(result.is_ok());
    }
}

/// Sends acks=all records to partition 0 of `topic` one at a time until `stop`.
fn failover_producer(
    cluster: &Cluster,
    topic: &str,
    events: Events,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let mut config = cluster.client();
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "60000")
        .set("retry.backoff.ms", "50")
        .set("retry.backoff.max.ms", "250");
    let p: BaseProducer<Reports> = config
        .create_with_context(Reports {
            last: Mutex::new(None),
        })
        .unwrap();
    let topic = topic.to_owned();
    std::thread::spawn(move || {
        let value = [b'v'; RECORD];
        while !stop.load(Ordering::Relaxed) {
            *p.context().last.lock().unwrap() = None;
            let enqueued = Instant::now();
            let rec = BaseRecord::to(&topic).partition(0).payload(&value[..]);
            if p.send::<(), _>(rec).is_err() {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let ok = loop {
                p.poll(Duration::from_millis(1));
                if let Some(ok) = *p.context().last.lock().unwrap() {
                    break ok;
                }
            };
            events.lock().unwrap().push((enqueued, Instant::now(), ok));
        }
    })
}

/// One round: SIGKILL the leader of `topic`-0, wait for the first record enqueued after the
/// kill to be delivered, restart the node, wait for a full ISR. Returns (leader, failover).
fn failover_round(cluster: &mut Cluster, topic: &str, events: &Events) -> (i32, i32, Duration) {
    let leader = cluster.wait_for(topic, Duration::from_secs(60), |ps| {
        ps[0].0 > 0 && ps[0].1.len() == 3
    })[0]
        .0;
    // Producing steadily before the kill.
    let before = events.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while events.lock().unwrap().len() < before + 20 {
        assert!(Instant::now() < deadline, "the failover producer is stuck");
        std::thread::sleep(Duration::from_millis(10));
    }
    cluster.kill(leader);
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(120);
    let failover = loop {
        let first = events
            .lock()
            .unwrap()
            .iter()
            .find(|(enqueued, _, ok)| *enqueued > killed && *ok)
            .map(|(_, reported, _)| *reported - killed);
        if let Some(f) = first {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "no acks=all delivery after the kill"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let new_leader = cluster.wait_for(topic, Duration::from_secs(60), |ps| {
        ps[0].0 > 0 && ps[0].0 != leader
    })[0]
        .0;
    cluster.restart(leader);
    cluster.wait_for(topic, Duration::from_secs(120), |ps| ps[0].1.len() == 3);
    (leader, new_leader, failover)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let records: usize = args
        .iter()
        .position(|a| a == "--records")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().expect("--records N"))
        .unwrap_or(if quick { 20_000 } else { 1_000_000 });

    let t = Instant::now();
    let mut cluster = Cluster::start();
    println!(
        "cluster: 3 combined broker,controller nodes up in {:.2?} (broker.session.timeout.ms={SESSION_TIMEOUT_MS}, broker.heartbeat.interval.ms={HEARTBEAT_MS})",
        t.elapsed()
    );
    cluster.create_topic("rf1", PARTITIONS, 1);
    cluster.create_topic("rf3", PARTITIONS, 3);
    cluster.create_topic("rf3-all", PARTITIONS, 3);
    cluster.create_topic("failover", 1, 3);

    println!(
        "produce: {records} records of {RECORD} B, {PARTITIONS} partitions (one leader per node), linger.ms=5, at most 10000 queued in the producer"
    );
    let cases = [
        ("RF1 acks=1      ", "rf1", "1", false),
        ("RF3 acks=1      ", "rf3", "1", false),
        ("RF3 acks=all    ", "rf3-all", "all", false),
        ("RF3 acks=all idp", "rf3-all", "all", true),
    ];
    let mut rates = Vec::new();
    for (label, topic, acks, idempotent) in cases {
        let run = produce(&cluster, topic, records, acks, idempotent);
        let rate = records as f64 / run.elapsed.as_secs_f64();
        rates.push(rate);
        println!(
            "  {label}  {:>9.0} records/s  {:>6.1} MB/s  latency p50 {:>9.2?}  p99 {:>9.2?}  ({:.2?}; producer start-up {:.2?})",
            rate,
            rate * RECORD as f64 / 1e6,
            percentile(&run.latencies, 0.50),
            percentile(&run.latencies, 0.99),
            run.elapsed,
            run.start_up,
        );
    }
    println!(
        "  throughput vs RF1 acks=1: RF3 acks=1 {:.2}x, RF3 acks=all {:.2}x, RF3 acks=all idempotent {:.2}x",
        rates[1] / rates[0],
        rates[2] / rates[0],
        rates[3] / rates[0]
    );

    println!("failover: acks=all, idempotent, one record at a time to failover-0 (RF3, min.insync.replicas=2); SIGKILL its leader");
    let events: Events = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = failover_producer(&cluster, "failover", events.clone(), stop.clone());
    let mut times = Vec::new();
    for round in 1..=3 {
        let (old, new, f) = failover_round(&mut cluster, "failover", &events);
        println!("  round {round}: killed node {old}, new leader {new}: first acks=all delivery {f:.2?} after the kill");
        times.push(f);
    }
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    times.sort();
    println!("  failover median {:.2?}", times[1]);
    drop(cluster);
}

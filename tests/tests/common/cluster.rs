//! A local KRaft-style cluster of `broker serve` processes for the replication tests: each node
//! gets a `server.properties` with Kafka's keys (node.id, process.roles,
//! controller.quorum.voters, named listeners, …), is formatted from `CLUSTER_ID` on first
//! start, and can be SIGKILLed, restarted on the same ports and data, or paused (SIGSTOP) and
//! resumed (SIGCONT). Ports are ephemeral, picked before the first start and kept.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::{profile_dir, ChildGuard};

/// A free port on 127.0.0.1 (bound then released: the OS does not hand it out again soon).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One node's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Roles {
    Controller,
    Broker,
    Combined,
}

impl Roles {
    fn property(self) -> &'static str {
        match self {
            Roles::Controller => "controller",
            Roles::Broker => "broker",
            Roles::Combined => "broker,controller",
        }
    }
    pub(crate) fn is_broker(self) -> bool {
        self != Roles::Controller
    }
    pub(crate) fn is_controller(self) -> bool {
        self != Roles::Broker
    }
}

/// One `broker serve` process of the cluster.
pub(crate) struct Node {
    pub(crate) id: i32,
    pub(crate) roles: Roles,
    pub(crate) dir: PathBuf,
    pub(crate) broker_port: Option<u16>,
    pub(crate) controller_port: Option<u16>,
    child: Option<ChildGuard>,
    paused: bool,
}

impl Node {
    /// `127.0.0.1:<port>` of the PLAINTEXT listener (brokers only).
    pub(crate) fn broker_addr(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port.expect("not a broker"))
    }

    pub(crate) fn controller_addr(&self) -> String {
        format!(
            "127.0.0.1:{}",
            self.controller_port.expect("not a controller")
        )
    }

    /// The node's data directory (`log.dirs`).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("node not running").0.id()
    }
}

/// The cluster: nodes by id.
pub(crate) struct LocalCluster {
    pub(crate) cluster_id: String,
    pub(crate) nodes: BTreeMap<i32, Node>,
    /// Extra `key=value` properties for every node.
    extra: Vec<String>,
    rust_log: String,
}

impl LocalCluster {
    /// `controllers` controller-only nodes (ids 1..) and `brokers` broker-only nodes (ids
    /// after them), or with `combined` `controllers` nodes with both roles and no broker-only
    /// node when `brokers` is 0. `extra`: properties for every node (`key=value`).
    pub(crate) fn start(
        root: &Path,
        controllers: i32,
        brokers: i32,
        combined: bool,
        extra: &[&str],
    ) -> Self {
        let mut nodes = BTreeMap::new();
        for id in 1..=controllers {
            let roles = if combined {
                Roles::Combined
            } else {
                Roles::Controller
            };
            nodes.insert(id, Self::node(root, id, roles));
        }
        for id in controllers + 1..=controllers + brokers {
            nodes.insert(id, Self::node(root, id, Roles::Broker));
        }
        let mut cluster = LocalCluster {
            cluster_id: "MkU3OEVBNTcwNTJENDM2Qk".to_owned(),
            nodes,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            rust_log: std::env::var("CLUSTER_TEST_LOG")
                .unwrap_or_else(|_| "info,openraft=warn,broker_cluster=debug".into()),
        };
        let ids: Vec<i32> = cluster.nodes.keys().copied().collect();
        for id in &ids {
            cluster.write_properties(*id);
        }
        for id in ids {
            cluster.spawn(id);
        }
        cluster.wait_for_brokers(Duration::from_secs(60));
        cluster
    }

    fn node(root: &Path, id: i32, roles: Roles) -> Node {
        Node {
            id,
            roles,
            dir: root.join(format!("node-{id}")),
            broker_port: roles.is_broker().then(free_port),
            controller_port: roles.is_controller().then(free_port),
            child: None,
            paused: false,
        }
    }

    fn voters(&self) -> String {
        self.nodes
            .values()
            .filter(|n| n.roles.is_controller())
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port.unwrap()))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn write_properties(&self, id: i32) {
        let n = &self.nodes[&id];
        std::fs::create_dir_all(&n.dir).unwrap();
        let mut listeners = Vec::new();
        if let Some(p) = n.broker_port {
            listeners.push(format!("PLAINTEXT://127.0.0.1:{p}"));
        }
        if let Some(p) = n.controller_port {
            listeners.push(format!("CONTROLLER://127.0.0.1:{p}"));
        }
        let mut text = format!(
            "node.id={id}\nprocess.roles={}\ncontroller.quorum.voters={}\nlisteners={}\n\
             controller.listener.names=CONTROLLER\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             log.dirs={}\ngroup.initial.rebalance.delay.ms=0\n",
            n.roles.property(),
            self.voters(),
            listeners.join(","),
            n.data_dir().display(),
        );
        if let Some(p) = n.broker_port {
            text.push_str(&format!(
                "advertised.listeners=PLAINTEXT://127.0.0.1:{p}\ninter.broker.listener.name=PLAINTEXT\n"
            ));
        }
        for e in &self.extra {
            text.push_str(e);
            text.push('\n');
        }
        std::fs::write(n.dir.join("server.properties"), text).unwrap();
    }

    fn spawn(&mut self, id: i32) {
        // BROKER_BIN overrides the binary (e.g. a copy, while other builds replace target/'s).
        let binary = std::env::var_os("BROKER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| profile_dir().join("broker"));
        assert!(
            binary.exists(),
            "{} is missing: run `cargo build -p broker-cli` first",
            binary.display()
        );
        let n = self.nodes.get_mut(&id).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.dir.join("server.log"))
            .unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg("--config-file")
            .arg(n.dir.join("server.properties"))
            .env("CLUSTER_ID", &self.cluster_id)
            .env("RUST_LOG", &self.rust_log)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        n.child = Some(ChildGuard(child));
        n.paused = false;
    }

    /// The PLAINTEXT listeners of the running brokers, comma-separated.
    pub(crate) fn bootstrap(&self) -> String {
        self.nodes
            .values()
            .filter(|n| n.roles.is_broker())
            .map(Node::broker_addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until every broker's listener accepts connections and a client sees every
    /// broker in Metadata.
    pub(crate) fn wait_for_brokers(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let want: Vec<i32> = self
            .nodes
            .values()
            .filter(|n| n.roles.is_broker() && n.is_running())
            .map(|n| n.id)
            .collect();
        for n in self.nodes.values().filter(|n| n.is_running()) {
            let addr = n
                .broker_port
                .or(n.controller_port)
                .map(|p| format!("127.0.0.1:{p}"))
                .unwrap();
            while TcpStream::connect(&addr).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "node {} never listened on {addr}; its log ends with:\n{}",
                    n.id,
                    log_tail(&n.dir.join("server.log"))
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        loop {
            if let Ok(seen) = self.broker_ids() {
                if want.iter().all(|id| seen.contains(id)) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "brokers {want:?} never all appeared in Metadata"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Broker ids in a Metadata response.
    pub(crate) fn broker_ids(&self) -> Result<Vec<i32>, String> {
        let consumer: BaseConsumer = self.client_config().create().map_err(|e| e.to_string())?;
        let md = consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        Ok(md.brokers().iter().map(|b| b.id()).collect())
    }

    /// A client config pointing at the running brokers.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap())
            .set("topic.metadata.refresh.interval.ms", "1000");
        c
    }

    /// Creates a topic through a broker (forwarded to the controller) and waits until every
    /// partition has a leader.
    pub(crate) fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        rf: i32,
        configs: &[(&str, &str)],
    ) {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create().unwrap();
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(rf));
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let results = rt
            .block_on(admin.create_topics([&topic], &AdminOptions::new()))
            .unwrap();
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self
                .partition_states(name)
                .map(|ps| ps.len() == partitions as usize && ps.iter().all(|p| p.leader >= 0))
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "{name} never got leaders");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Leader, replicas and ISR of each partition of `topic` as Metadata reports them.
    pub(crate) fn partition_states(&self, topic: &str) -> Result<Vec<PartitionState>, String> {
        let consumer: BaseConsumer = self.client_config().create().map_err(|e| e.to_string())?;
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or("topic missing")?;
        if let Some(e) = t.error() {
            return Err(format!("{e:?}"));
        }
        let mut out: Vec<PartitionState> = t
            .partitions()
            .iter()
            .map(|p| PartitionState {
                partition: p.id(),
                leader: p.leader(),
                replicas: p.replicas().to_vec(),
                isr: p.isr().to_vec(),
            })
            .collect();
        out.sort_by_key(|p| p.partition);
        Ok(out)
    }

    /// Waits until `check` holds for `topic`'s partition states.
    pub(crate) fn wait_for_partitions(
        &self,
        topic: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[PartitionState]) -> bool,
    ) -> Vec<PartitionState> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(ps) = self.partition_states(topic) {
                if check(&ps) {
                    return ps;
                }
                assert!(
                    Instant::now() < deadline,
                    "{topic}: never {what}; last seen {ps:?}"
                );
            } else {
                assert!(Instant::now() < deadline, "{topic}: never {what}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL.
    pub(crate) fn kill(&mut self, id: i32) {
        let n = self.nodes.get_mut(&id).unwrap();
        if n.paused {
            signal(n.pid(), "CONT");
        }
        if let Some(child) = n.child.take() {
            super::kill(child);
        }
    }

    /// Starts a stopped node again on its ports and data.
    pub(crate) fn restart(&mut self, id: i32) {
        assert!(!self.nodes[&id].is_running(), "node {id} still runs");
        self.spawn(id);
    }

    /// SIGSTOP.
    pub(crate) fn pause(&mut self, id: i32) {
        let n = self.nodes.get_mut(&id).unwrap();
        signal(n.pid(), "STOP");
        n.paused = true;
    }

    /// SIGCONT.
    pub(crate) fn resume(&mut self, id: i32) {
        let n = self.nodes.get_mut(&id).unwrap();
        signal(n.pid(), "CONT");
        n.paused = false;
    }

    /// SIGTERM and wait (a clean stop: logs flushed, clean-shutdown marker written).
    pub(crate) fn stop_cleanly(&mut self, id: i32) {
        let n = self.nodes.get_mut(&id).unwrap();
        if n.paused {
            signal(n.pid(), "CONT");
            n.paused = false;
        }
        if let Some(mut child) = n.child.take() {
            signal(child.0.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.0.try_wait().unwrap().is_none() {
                assert!(
                    Instant::now() < deadline,
                    "node {id} did not stop on SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            if n.paused {
                if let Some(c) = &n.child {
                    signal(c.0.id(), "CONT");
                }
            }
        }
    }
}

/// The last 30 lines of a node's log (for failure messages: the directory goes with the test).
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// One partition as Metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionState {
    pub(crate) partition: i32,
    pub(crate) leader: i32,
    pub(crate) replicas: Vec<i32>,
    pub(crate) isr: Vec<i32>,
}

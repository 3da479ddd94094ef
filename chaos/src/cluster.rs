//! The cluster under test: `broker serve` processes on 127.0.0.1, each listener behind a
//! proxy ([`crate::proxy`]). A node listens on its own ephemeral ports; its
//! `advertised.listeners` and everybody's `controller.quorum.voters` name the proxies'.
//! Nodes can be SIGKILLed and restarted on the same ports and data, paused (SIGSTOP) and
//! resumed (SIGCONT), and stopped cleanly. Dropping the cluster kills every node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proxy::{self, Network};

/// A cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClusterError {
    /// An I/O error on a path or a process.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// `kill -STOP/-CONT` failed.
    #[error("kill -{signal} {pid} failed")]
    Signal {
        /// The signal.
        signal: &'static str,
        /// The process.
        pid: u32,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// One listener: the node's own port and the proxy's in front of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ports {
    /// Where the node listens.
    pub(crate) real: u16,
    /// Where the proxy listens (what the cluster advertises).
    pub(crate) proxy: u16,
}

/// One node.
#[derive(Debug)]
pub(crate) struct Node {
    /// `node.id`.
    pub(crate) id: i32,
    /// Whether it has the broker role.
    pub(crate) broker: Option<Ports>,
    /// Whether it has the controller role.
    pub(crate) controller: Option<Ports>,
    /// Its directory (`server.properties`, `server.log`, `data/`).
    pub(crate) dir: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl Node {
    /// `log.dirs`.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Whether the process runs (possibly paused).
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn roles(&self) -> &'static str {
        match (self.broker.is_some(), self.controller.is_some()) {
            (true, true) => "broker,controller",
            (true, false) => "broker",
            _ => "controller",
        }
    }
}

/// The cluster.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// Nodes by id.
    pub(crate) nodes: BTreeMap<i32, Node>,
    /// The proxies' shared state.
    pub(crate) net: Arc<Network>,
    binary: PathBuf,
    cluster_id: String,
    extra: Vec<String>,
}

/// Settings every node gets: failures noticed within seconds, RF 3, min ISR 2.
const SETTINGS: &[&str] = &[
    "broker.session.timeout.ms=4000",
    "broker.heartbeat.interval.ms=500",
    "replica.lag.time.max.ms=3000",
    "default.replication.factor=3",
    "min.insync.replicas=2",
    "offsets.topic.replication.factor=3",
    "transaction.state.log.replication.factor=3",
    "group.initial.rebalance.delay.ms=0",
    "unclean.leader.election.enable=false",
];

/// A proxy for node `id` on an ephemeral port, in front of a free port for the node.
async fn proxied(id: i32, net: &Arc<Network>) -> Result<Ports, ClusterError> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io("binding a proxy port"))?;
    let proxy = l.local_addr().map_err(io("binding a proxy port"))?.port();
    let real = free_port()?;
    proxy::spawn(
        l,
        id,
        SocketAddr::from(([127, 0, 0, 1], real)),
        Arc::clone(net),
    );
    Ok(Ports { real, proxy })
}

/// A free port on 127.0.0.1 (bound, then released).
fn free_port() -> Result<u16, ClusterError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("binding a port"))?;
    Ok(l.local_addr().map_err(io("binding a port"))?.port())
}

impl Cluster {
    /// Lays out `controllers` controller-only nodes (ids 1..) and `brokers` broker-only nodes
    /// (the next ids) under `root`, starts their proxies (on the current tokio runtime) and
    /// the nodes.
    pub(crate) async fn start(
        root: &Path,
        binary: &Path,
        controllers: i32,
        brokers: i32,
    ) -> Result<Self, ClusterError> {
        let net = Arc::new(Network::default());
        let mut nodes = BTreeMap::new();
        for id in 1..=controllers + brokers {
            let mut node = Node {
                id,
                broker: None,
                controller: None,
                dir: root.join(format!("node-{id}")),
                child: None,
                paused: false,
            };
            if id <= controllers {
                node.controller = Some(proxied(id, &net).await?);
            } else {
                node.broker = Some(proxied(id, &net).await?);
            }
            nodes.insert(id, node);
        }
        let mut cluster = Cluster {
            nodes,
            net,
            binary: binary.to_path_buf(),
            cluster_id: "Q2hhb3NTb2FrQ2x1c3Rlcg".to_owned(),
            extra: SETTINGS.iter().map(|s| (*s).to_owned()).collect(),
        };
        let ids: Vec<i32> = cluster.nodes.keys().copied().collect();
        for id in &ids {
            cluster.write_properties(*id)?;
        }
        for id in ids {
            cluster.spawn(id)?;
        }
        Ok(cluster)
    }

    /// `id@127.0.0.1:<proxy>` for every controller.
    fn voters(&self) -> String {
        self.nodes
            .values()
            .filter_map(|n| {
                n.controller
                    .map(|p| format!("{}@127.0.0.1:{}", n.id, p.proxy))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn write_properties(&self, id: i32) -> Result<(), ClusterError> {
        let Some(n) = self.nodes.get(&id) else {
            return Ok(());
        };
        std::fs::create_dir_all(&n.dir).map_err(io(format!("creating {}", n.dir.display())))?;
        let mut listeners = Vec::new();
        if let Some(p) = n.broker {
            listeners.push(format!("PLAINTEXT://127.0.0.1:{}", p.real));
        }
        if let Some(p) = n.controller {
            listeners.push(format!("CONTROLLER://127.0.0.1:{}", p.real));
        }
        let mut text = format!(
            "node.id={id}\nprocess.roles={}\ncontroller.quorum.voters={}\nlisteners={}\n\
             controller.listener.names=CONTROLLER\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             log.dirs={}\n",
            n.roles(),
            self.voters(),
            listeners.join(","),
            n.data_dir().display(),
        );
        if let Some(p) = n.broker {
            text.push_str(&format!(
                "advertised.listeners=PLAINTEXT://127.0.0.1:{}\ninter.broker.listener.name=PLAINTEXT\n",
                p.proxy
            ));
        }
        for e in &self.extra {
            text.push_str(e);
            text.push('\n');
        }
        let path = n.dir.join("server.properties");
        std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))
    }

    fn spawn(&mut self, id: i32) -> Result<(), ClusterError> {
        let Some(n) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        let log_path = n.dir.join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(format!("opening {}", log_path.display())))?;
        let log2 = log
            .try_clone()
            .map_err(io(format!("opening {}", log_path.display())))?;
        let child = Command::new(&self.binary)
            .arg("serve")
            .arg("--config-file")
            .arg(n.dir.join("server.properties"))
            .env("CLUSTER_ID", &self.cluster_id)
            .env(
                "RUST_LOG",
                std::env::var("CHAOS_NODE_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            )
            .stdout(log)
            .stderr(log2)
            .stdin(Stdio::null())
            .spawn()
            .map_err(io(format!("starting {}", self.binary.display())))?;
        self.net.register(child.id(), id);
        n.child = Some(child);
        n.paused = false;
        Ok(())
    }

    /// The brokers' proxy addresses, comma-separated.
    pub(crate) fn bootstrap(&self) -> String {
        self.nodes
            .values()
            .filter_map(|n| n.broker.map(|p| format!("127.0.0.1:{}", p.proxy)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Broker ids.
    pub(crate) fn broker_ids(&self) -> Vec<i32> {
        self.nodes
            .values()
            .filter(|n| n.broker.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// Controller ids.
    pub(crate) fn controller_ids(&self) -> Vec<i32> {
        self.nodes
            .values()
            .filter(|n| n.controller.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// SIGKILL (a paused node is resumed first so that it dies at once).
    pub(crate) fn kill(&mut self, id: i32) -> Result<(), ClusterError> {
        let Some(n) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        if let Some(mut child) = n.child.take() {
            if n.paused {
                signal(child.id(), "CONT")?;
                n.paused = false;
            }
            let pid = child.id();
            child.kill().map_err(io(format!("killing node {id}")))?;
            child.wait().map_err(io(format!("reaping node {id}")))?;
            self.net.unregister(pid);
        }
        Ok(())
    }

    /// Starts a stopped node again on its ports and data.
    pub(crate) fn restart(&mut self, id: i32) -> Result<(), ClusterError> {
        if self.nodes.get(&id).is_some_and(|n| !n.is_running()) {
            self.spawn(id)?;
        }
        Ok(())
    }

    /// SIGSTOP.
    pub(crate) fn pause(&mut self, id: i32) -> Result<(), ClusterError> {
        if let Some(n) = self.nodes.get_mut(&id) {
            if let (Some(c), false) = (&n.child, n.paused) {
                signal(c.id(), "STOP")?;
                n.paused = true;
            }
        }
        Ok(())
    }

    /// SIGCONT.
    pub(crate) fn resume(&mut self, id: i32) -> Result<(), ClusterError> {
        if let Some(n) = self.nodes.get_mut(&id) {
            if let (Some(c), true) = (&n.child, n.paused) {
                signal(c.id(), "CONT")?;
                n.paused = false;
            }
        }
        Ok(())
    }

    /// Whether a running node's process exited on its own (a crash); reaps it.
    pub(crate) fn crashed(&mut self) -> Vec<(i32, String)> {
        let mut out = Vec::new();
        for n in self.nodes.values_mut() {
            if let Some(c) = &mut n.child {
                if let Ok(Some(status)) = c.try_wait() {
                    self.net.unregister(c.id());
                    out.push((n.id, status.to_string()));
                    n.child = None;
                    n.paused = false;
                }
            }
        }
        out
    }

    /// SIGTERM and wait up to `timeout`, then SIGKILL.
    pub(crate) fn stop(&mut self, id: i32, timeout: Duration) -> Result<(), ClusterError> {
        self.resume(id)?;
        let Some(n) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        if let Some(mut child) = n.child.take() {
            signal(child.id(), "TERM")?;
            let deadline = Instant::now() + timeout;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
            self.net.unregister(child.id());
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            if let Some(mut c) = n.child.take() {
                if n.paused {
                    let _ = signal(c.id(), "CONT");
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn signal(pid: u32, signal: &'static str) -> Result<(), ClusterError> {
    let ok = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(ClusterError::Signal { signal, pid })
    }
}

/// The last `lines` lines of a node's log.
pub(crate) fn log_tail(node: &Node, lines: usize) -> String {
    let text = std::fs::read_to_string(node.dir.join("server.log")).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

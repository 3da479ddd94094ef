//! `broker cluster up|down|status`: a local KRaft-style cluster of `broker serve` processes on
//! 127.0.0.1, one directory per node under the data directory (`node-<id>/server.properties`,
//! `node-<id>/data/`, `node-<id>/server.log`) and a `cluster.json` record of the nodes, their
//! roles, ports and process ids.
//!
//! Node ids: controllers `1..=controllers`, then the brokers (with `--combined`, nodes
//! `1..=controllers` are both controller and broker, and brokers beyond that number are
//! broker-only nodes). Ports: node `id` listens for clients on `base_port + id - 1` and, as a
//! controller, on `base_port + 100 + id - 1`.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use durable_fs::OsStorage;
use serde::{Deserialize, Serialize};

use crate::node_config::{NodeConfig, NodeConfigError, RawProperties};
use crate::storage::{self, StorageError};
use crate::{runtime, AnyResult};

/// The record of a local cluster, in `<data-dir>/cluster.json`.
pub const CLUSTER_FILE: &str = "cluster.json";

/// How long `down` (and the supervisor's stop) waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A local-cluster command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// An I/O error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `cluster.json` does not parse.
    #[error("{path}: {reason}")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No `cluster.json` in the data directory.
    #[error("{0} has no cluster.json: start a cluster there with `broker cluster up`")]
    NoCluster(PathBuf),
    /// `up` on a data directory whose nodes still run.
    #[error("node {id} (pid {pid}) of the cluster in {dir} is still running: `broker cluster down --data-dir {dir}` first")]
    AlreadyRunning {
        /// The data directory.
        dir: PathBuf,
        /// A running node.
        id: i32,
        /// Its pid.
        pid: u32,
    },
    /// Bad sizes or ports.
    #[error("{0}")]
    BadLayout(String),
    /// A generated node configuration was rejected (a bug in the layout).
    #[error("node {id}: {source}")]
    Config {
        /// Node id.
        id: i32,
        /// The error.
        source: NodeConfigError,
    },
    /// Formatting a node's storage failed.
    #[error("node {id}: {source}")]
    Storage {
        /// Node id.
        id: i32,
        /// The error.
        source: StorageError,
    },
    /// The `broker` binary could not be found.
    #[error("cannot find the broker binary to start nodes with: {0}")]
    CurrentExe(std::io::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One node of a local cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// `node.id`.
    pub id: i32,
    /// `process.roles` (`controller`, `broker` or `broker,controller`).
    pub roles: String,
    /// Client (PLAINTEXT) port, for brokers.
    pub broker_port: Option<u16>,
    /// Controller port, for controllers.
    pub controller_port: Option<u16>,
    /// The node's `server.properties`.
    pub config_file: PathBuf,
    /// Where the node's stdout and stderr go.
    pub log_file: PathBuf,
    /// Pid of the running process (none when stopped).
    pub pid: Option<u32>,
}

impl NodeRecord {
    fn listeners(&self) -> Vec<(&'static str, u16)> {
        let mut l = Vec::new();
        if let Some(p) = self.broker_port {
            l.push(("PLAINTEXT", p));
        }
        if let Some(p) = self.controller_port {
            l.push(("CONTROLLER", p));
        }
        l
    }
}

/// `cluster.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// The cluster id every node was formatted with.
    pub cluster_id: String,
    /// The client bootstrap servers (every broker's listener).
    pub bootstrap_servers: String,
    /// Pid of the foreground supervisor (none with `--detach` or when stopped).
    pub supervisor_pid: Option<u32>,
    /// The nodes.
    pub nodes: Vec<NodeRecord>,
}

impl ClusterRecord {
    /// Reads `<dir>/cluster.json`.
    pub fn load(dir: &Path) -> Result<ClusterRecord, ClusterError> {
        let path = dir.join(CLUSTER_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ClusterError::NoCluster(dir.to_path_buf()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| ClusterError::BadRecord {
            path,
            reason: e.to_string(),
        })
    }

    /// The controllers' listeners (`127.0.0.1:port,...`).
    pub fn controller_servers(&self) -> String {
        self.nodes
            .iter()
            .filter_map(|n| n.controller_port.map(|p| format!("127.0.0.1:{p}")))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Writes `<dir>/cluster.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), ClusterError> {
        let path = dir.join(CLUSTER_FILE);
        let json = serde_json::to_vec_pretty(self).map_err(|e| ClusterError::BadRecord {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        durable_fs::write_atomic(&OsStorage, &path, &json).map_err(io_err(&path))
    }
}

/// The planned layout of a local cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Number of controllers.
    pub controllers: u16,
    /// Number of brokers.
    pub brokers: u16,
    /// Controllers are also brokers.
    pub combined: bool,
    /// First client port.
    pub base_port: u16,
}

impl Layout {
    /// The nodes (id, is controller, is broker) in id order.
    pub fn nodes(&self) -> Vec<(i32, bool, bool)> {
        let c = i32::from(self.controllers);
        let b = i32::from(self.brokers);
        if self.combined {
            let total = c.max(b);
            (1..=total).map(|id| (id, id <= c, true)).collect()
        } else {
            (1..=c + b).map(|id| (id, id <= c, id > c)).collect()
        }
    }

    fn port(&self, offset: i32) -> Result<u16, ClusterError> {
        u16::try_from(i32::from(self.base_port) + offset)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                ClusterError::BadLayout(format!(
                    "port base {} + {offset} is out of range",
                    self.base_port
                ))
            })
    }

    fn broker_port(&self, id: i32) -> Result<u16, ClusterError> {
        self.port(id - 1)
    }

    fn controller_port(&self, id: i32) -> Result<u16, ClusterError> {
        self.port(100 + id - 1)
    }

    fn validate(&self) -> Result<(), ClusterError> {
        if self.controllers == 0 {
            return Err(ClusterError::BadLayout(
                "--controllers must be at least 1".into(),
            ));
        }
        if self.brokers == 0 && !self.combined {
            return Err(ClusterError::BadLayout(
                "--brokers must be at least 1".into(),
            ));
        }
        if self.nodes().len() > 100 {
            return Err(ClusterError::BadLayout("at most 100 nodes".into()));
        }
        Ok(())
    }

    /// The `server.properties` text of node `id`.
    pub fn server_properties(&self, id: i32, data_dir: &Path) -> Result<String, ClusterError> {
        let nodes = self.nodes();
        let Some(&(_, controller, broker)) = nodes.iter().find(|n| n.0 == id) else {
            return Err(ClusterError::BadLayout(format!("no node {id}")));
        };
        let voters = nodes
            .iter()
            .filter(|n| n.1)
            .map(|n| Ok(format!("{}@127.0.0.1:{}", n.0, self.controller_port(n.0)?)))
            .collect::<Result<Vec<_>, ClusterError>>()?
            .join(",");
        let broker_count = nodes.iter().filter(|n| n.2).count();
        let rf = broker_count.min(3);
        let min_isr = if rf >= 3 { 2 } else { 1 };
        let roles = match (broker, controller) {
            (true, true) => "broker,controller",
            (true, false) => "broker",
            _ => "controller",
        };
        let mut listeners = Vec::new();
        if broker {
            listeners.push(format!("PLAINTEXT://127.0.0.1:{}", self.broker_port(id)?));
        }
        if controller {
            listeners.push(format!(
                "CONTROLLER://127.0.0.1:{}",
                self.controller_port(id)?
            ));
        }
        let mut text = format!(
            "# Written by `broker cluster up`: node {id} of a local cluster.\n\
             node.id={id}\n\
             process.roles={roles}\n\
             controller.quorum.voters={voters}\n\
             listeners={}\n",
            listeners.join(",")
        );
        if broker {
            text.push_str(&format!(
                "advertised.listeners=PLAINTEXT://127.0.0.1:{}\n",
                self.broker_port(id)?
            ));
        }
        text.push_str(&format!(
            "inter.broker.listener.name=PLAINTEXT\n\
             controller.listener.names=CONTROLLER\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             log.dirs={}\n\
             default.replication.factor={rf}\n\
             min.insync.replicas={min_isr}\n\
             offsets.topic.replication.factor={rf}\n\
             transaction.state.log.replication.factor={rf}\n\
             group.initial.rebalance.delay.ms=0\n",
            data_dir.display()
        ));
        Ok(text)
    }
}

/// `broker cluster` subcommands.
#[derive(Subcommand)]
pub(crate) enum ClusterAction {
    /// Start a local cluster (one process per node on 127.0.0.1) and supervise it.
    Up(UpArgs),
    /// Stop the cluster's processes (SIGTERM, then SIGKILL after 30 s).
    Down {
        /// The cluster's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Show each node's role, pid, whether it runs, and whether its listeners accept
    /// connections (with --data-dir), then the controller quorum (DescribeQuorum) and the
    /// brokers, topics and partitions (Metadata), flagging under-replicated and offline
    /// partitions.
    Status(StatusArgs),
}

/// Arguments of `broker cluster status`.
#[derive(Args)]
pub(crate) struct StatusArgs {
    /// The data directory of a cluster started with `broker cluster up`.
    #[arg(long, required_unless_present_any = ["bootstrap_server", "controllers"])]
    data_dir: Option<PathBuf>,
    /// Brokers to ask for metadata (`host:port,...`); default: the recorded cluster's.
    #[arg(long)]
    bootstrap_server: Option<String>,
    /// Controllers to ask for the quorum (`host:port,...` of controller listeners); default:
    /// the recorded cluster's.
    #[arg(long)]
    controllers: Option<String>,
    /// Timeout of each connection and request, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
}

/// Arguments of `broker cluster up`.
#[derive(Args)]
pub(crate) struct UpArgs {
    /// Number of controllers (quorum voters).
    #[arg(long, default_value_t = 3)]
    controllers: u16,
    /// Number of brokers.
    #[arg(long, default_value_t = 3)]
    brokers: u16,
    /// Directory for the nodes' configurations, data and logs.
    #[arg(long)]
    data_dir: PathBuf,
    /// First client port: node N listens on BASE+N-1, controllers also on BASE+100+N-1.
    #[arg(long, default_value_t = 19092)]
    base_port: u16,
    /// Controllers are also brokers (brokers beyond --controllers are broker-only nodes).
    #[arg(long)]
    combined: bool,
    /// Start the nodes and return instead of supervising them in the foreground.
    #[arg(long)]
    detach: bool,
}

pub(crate) fn cluster(action: ClusterAction) -> AnyResult {
    match action {
        ClusterAction::Up(a) => up(a)?,
        ClusterAction::Down { data_dir } => down(&data_dir)?,
        ClusterAction::Status(a) => {
            let mut out = String::new();
            let mut controllers = a.controllers;
            let mut bootstrap = a.bootstrap_server;
            if let Some(dir) = &a.data_dir {
                out.push_str(&status(dir)?);
                let record = ClusterRecord::load(dir)?;
                if controllers.is_none() {
                    controllers = Some(record.controller_servers());
                }
                if bootstrap.is_none() {
                    bootstrap = Some(record.bootstrap_servers);
                }
            }
            out.push_str(&crate::cluster_state::report(
                controllers.as_deref().filter(|c| !c.is_empty()),
                bootstrap.as_deref().filter(|b| !b.is_empty()),
                Duration::from_millis(a.timeout_ms),
            ));
            print!("{out}");
        }
    }
    Ok(())
}

/// Writes the nodes' configurations, formats their storage (one cluster id; an existing
/// cluster keeps its id) and returns the record, without starting anything.
pub fn prepare(layout: &Layout, dir: &Path) -> Result<ClusterRecord, ClusterError> {
    layout.validate()?;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let dir = dir.canonicalize().map_err(io_err(dir))?;
    let existing = match ClusterRecord::load(&dir) {
        Ok(r) => Some(r),
        Err(ClusterError::NoCluster(_)) => None,
        Err(e) => return Err(e),
    };
    if let Some(r) = &existing {
        for n in &r.nodes {
            if let Some(pid) = n.pid.filter(|p| node_alive(*p, &n.config_file)) {
                return Err(ClusterError::AlreadyRunning {
                    dir: dir.clone(),
                    id: n.id,
                    pid,
                });
            }
        }
    }
    let cluster_id = existing
        .map(|r| r.cluster_id)
        .unwrap_or_else(storage::random_uuid);
    let mut nodes = Vec::new();
    for (id, controller, broker) in layout.nodes() {
        let node_dir = dir.join(format!("node-{id}"));
        let data = node_dir.join("data");
        std::fs::create_dir_all(&node_dir).map_err(io_err(&node_dir))?;
        let text = layout.server_properties(id, &data)?;
        let config_file = node_dir.join("server.properties");
        // Check the generated file with the same parser `serve` uses.
        let mut raw = RawProperties::default();
        raw.add_text(&text, &config_file)
            .map_err(|source| ClusterError::Config { id, source })?;
        let node = NodeConfig::from_properties(&raw.effective(), Some(cluster_id.clone()))
            .map_err(|source| ClusterError::Config { id, source })?;
        durable_fs::write_atomic(&OsStorage, &config_file, text.as_bytes())
            .map_err(io_err(&config_file))?;
        storage::ensure_formatted(&node, Some(&cluster_id))
            .map_err(|source| ClusterError::Storage { id, source })?;
        nodes.push(NodeRecord {
            id,
            roles: node
                .process_roles
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            broker_port: if broker {
                Some(layout.broker_port(id)?)
            } else {
                None
            },
            controller_port: if controller {
                Some(layout.controller_port(id)?)
            } else {
                None
            },
            config_file,
            log_file: node_dir.join("server.log"),
            pid: None,
        });
    }
    let bootstrap_servers = nodes
        .iter()
        .filter_map(|n| n.broker_port.map(|p| format!("127.0.0.1:{p}")))
        .collect::<Vec<_>>()
        .join(",");
    Ok(ClusterRecord {
        cluster_id,
        bootstrap_servers,
        supervisor_pid: None,
        nodes,
    })
}

/// Starts one node: `broker serve --config-file <file>` in its own process group (so a
/// terminal's Ctrl-C reaches only the supervisor), output appended to its log, without the
/// `KAFKA_*`/`CLUSTER_ID` variables of this environment (the file is the configuration).
fn start_node(exe: &Path, node: &NodeRecord) -> Result<Child, ClusterError> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log_file)
        .map_err(io_err(&node.log_file))?;
    let log2 = log.try_clone().map_err(io_err(&node.log_file))?;
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .arg("--config-file")
        .arg(&node.config_file)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .process_group(0);
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if name.starts_with("KAFKA_") || name == "CLUSTER_ID" {
            cmd.env_remove(&k);
        }
    }
    cmd.spawn().map_err(io_err(exe))
}

fn up(a: UpArgs) -> Result<(), ClusterError> {
    let layout = Layout {
        controllers: a.controllers,
        brokers: a.brokers,
        combined: a.combined,
        base_port: a.base_port,
    };
    let mut record = prepare(&layout, &a.data_dir)?;
    let dir = a.data_dir.canonicalize().map_err(io_err(&a.data_dir))?;
    let exe = std::env::current_exe().map_err(ClusterError::CurrentExe)?;
    let mut children = BTreeMap::new();
    for node in &mut record.nodes {
        let child = start_node(&exe, node)?;
        node.pid = Some(child.id());
        children.insert(node.id, child);
    }
    record.supervisor_pid = (!a.detach).then(std::process::id);
    record.save(&dir)?;
    println!("cluster id: {}", record.cluster_id);
    for n in &record.nodes {
        let ports: Vec<String> = n
            .listeners()
            .iter()
            .map(|(name, p)| format!("{name}://127.0.0.1:{p}"))
            .collect();
        println!(
            "node {} ({}) pid {} {} log {}",
            n.id,
            n.roles,
            n.pid.unwrap_or(0),
            ports.join(","),
            n.log_file.display()
        );
    }
    println!("bootstrap servers: {}", record.bootstrap_servers);
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    if a.detach {
        // The children keep running in their own process groups.
        return Ok(());
    }
    supervise(&exe, &dir, record, children)
}

/// Restart backoff of a node that died: 1 s doubling to 30 s; reset after a minute up.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(5)).min(Duration::from_secs(30))
}

struct Supervised {
    child: Option<Child>,
    failures: u32,
    started: Instant,
    restart_at: Option<Instant>,
}

fn supervise(
    exe: &Path,
    dir: &Path,
    mut record: ClusterRecord,
    children: BTreeMap<i32, Child>,
) -> Result<(), ClusterError> {
    let mut nodes: BTreeMap<i32, Supervised> = children
        .into_iter()
        .map(|(id, c)| {
            (
                id,
                Supervised {
                    child: Some(c),
                    failures: 0,
                    started: Instant::now(),
                    restart_at: None,
                },
            )
        })
        .collect();
    let rt = runtime().map_err(|e| ClusterError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let stop_reason = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(io_err(dir))?;
        let mut int = signal(SignalKind::interrupt()).map_err(io_err(dir))?;
        loop {
            tokio::select! {
                _ = term.recv() => return Ok::<_, ClusterError>("SIGTERM"),
                _ = int.recv() => return Ok("SIGINT"),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            let mut changed = false;
            for (id, s) in nodes.iter_mut() {
                if let Some(c) = s.child.as_mut() {
                    if let Ok(Some(status)) = c.try_wait() {
                        if s.started.elapsed() > Duration::from_secs(60) {
                            s.failures = 0;
                        }
                        let wait = backoff(s.failures);
                        s.failures = s.failures.saturating_add(1);
                        tracing::warn!(node = id, %status, restart_in_ms = wait.as_millis() as u64, "node exited unexpectedly; restarting");
                        s.child = None;
                        s.restart_at = Some(Instant::now() + wait);
                        if let Some(n) = record.nodes.iter_mut().find(|n| n.id == *id) {
                            n.pid = None;
                        }
                        changed = true;
                    }
                } else if s.restart_at.is_some_and(|t| Instant::now() >= t) {
                    if let Some(n) = record.nodes.iter_mut().find(|n| n.id == *id) {
                        match start_node(exe, n) {
                            Ok(c) => {
                                n.pid = Some(c.id());
                                s.child = Some(c);
                                s.started = Instant::now();
                                s.restart_at = None;
                                tracing::info!(node = id, pid = n.pid, "node restarted");
                            }
                            Err(e) => {
                                tracing::warn!(node = id, error = %e, "restart failed; retrying");
                                s.restart_at = Some(Instant::now() + backoff(s.failures));
                            }
                        }
                        changed = true;
                    }
                }
            }
            if changed {
                if let Err(e) = record.save(dir) {
                    tracing::warn!(error = %e, "could not update cluster.json");
                }
            }
        }
    })?;
    tracing::info!(signal = stop_reason, "stopping the cluster");
    let mut running: Vec<(i32, Child)> = nodes
        .into_iter()
        .filter_map(|(id, s)| s.child.map(|c| (id, c)))
        .collect();
    for (_, c) in &running {
        send_signal(c.id(), libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        running.retain_mut(|(_, c)| !matches!(c.try_wait(), Ok(Some(_))));
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (id, c) in &mut running {
        tracing::warn!(node = *id, "did not stop within 30 s; SIGKILL");
        let _ = c.kill();
        let _ = c.wait();
    }
    for n in &mut record.nodes {
        n.pid = None;
    }
    record.supervisor_pid = None;
    record.save(dir)?;
    println!("cluster stopped");
    Ok(())
}

/// Sends `sig` to `pid`; false when there is no such process.
fn send_signal(pid: u32, sig: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) takes plain integers and has no memory effects; a positive pid names
    // one process (never a group), so this signals exactly the process we recorded.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, sig) };
    rc == 0
}

/// Whether `pid` runs and is a `broker serve` of this config file (so a reused pid is never
/// signalled). Reads `/proc/<pid>/cmdline`.
fn node_alive(pid: u32, config_file: &Path) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let cfg = config_file.as_os_str().as_encoded_bytes();
            args.contains(&b"serve".as_slice()) && args.contains(&cfg) && !is_zombie(pid)
        }
        Err(_) => false,
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Whether the supervisor `pid` still runs (`broker cluster up` of this directory).
fn supervisor_alive(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.contains(&b"cluster".as_slice())
                && args.contains(&b"up".as_slice())
                && !is_zombie(pid)
        }
        Err(_) => false,
    }
}

/// Stops the cluster recorded in `dir`: the supervisor first (so it restarts nothing), then
/// every node with SIGTERM, SIGKILL after 30 s; the pids are removed from `cluster.json`.
pub fn down(dir: &Path) -> Result<(), ClusterError> {
    let mut record = ClusterRecord::load(dir)?;
    if let Some(pid) = record.supervisor_pid.filter(|p| supervisor_alive(*p)) {
        send_signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT + Duration::from_secs(5);
        while supervisor_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        // The supervisor rewrote the record.
        record = ClusterRecord::load(dir)?;
    }
    let alive: Vec<(i32, u32, PathBuf)> = record
        .nodes
        .iter()
        .filter_map(|n| n.pid.map(|p| (n.id, p, n.config_file.clone())))
        .filter(|(_, p, cfg)| node_alive(*p, cfg))
        .collect();
    for (id, pid, _) in &alive {
        println!("stopping node {id} (pid {pid})");
        send_signal(*pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    let mut left = alive;
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left.retain(|(_, p, cfg)| node_alive(*p, cfg));
    }
    for (id, pid, _) in &left {
        println!("node {id} (pid {pid}) did not stop within 30 s: SIGKILL");
        send_signal(*pid, libc::SIGKILL);
    }
    for n in &mut record.nodes {
        n.pid = None;
    }
    record.supervisor_pid = None;
    record.save(dir)?;
    println!("cluster stopped");
    Ok(())
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// The status report of the cluster recorded in `dir`.
pub fn status(dir: &Path) -> Result<String, ClusterError> {
    let record = ClusterRecord::load(dir)?;
    let mut out = format!(
        "cluster id: {}\nbootstrap servers: {}\nsupervisor: {}\n",
        record.cluster_id,
        record.bootstrap_servers,
        match record.supervisor_pid {
            Some(p) if supervisor_alive(p) => format!("pid {p} (running)"),
            Some(p) => format!("pid {p} (not running)"),
            None => "none".into(),
        }
    );
    out.push_str(&format!(
        "{:<6}{:<20}{:<10}{:<8}LISTENERS\n",
        "NODE", "ROLES", "PID", "ALIVE"
    ));
    for n in &record.nodes {
        let alive = n.pid.is_some_and(|p| node_alive(p, &n.config_file));
        let listeners: Vec<String> = n
            .listeners()
            .iter()
            .map(|(name, p)| {
                let state = if accepts(*p) { "up" } else { "down" };
                format!("{name}://127.0.0.1:{p} {state}")
            })
            .collect();
        out.push_str(&format!(
            "{:<6}{:<20}{:<10}{:<8}{}\n",
            n.id,
            n.roles,
            n.pid.map_or("-".to_string(), |p| p.to_string()),
            if alive { "yes" } else { "no" },
            listeners.join(", ")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_separate_and_combined() {
        let l = Layout {
            controllers: 3,
            brokers: 3,
            combined: false,
            base_port: 19092,
        };
        assert_eq!(
            l.nodes(),
            vec![
                (1, true, false),
                (2, true, false),
                (3, true, false),
                (4, false, true),
                (5, false, true),
                (6, false, true)
            ]
        );
        let c = Layout {
            combined: true,
            ..l.clone()
        };
        assert_eq!(
            c.nodes(),
            vec![(1, true, true), (2, true, true), (3, true, true)]
        );
        let c5 = Layout {
            brokers: 5,
            ..c.clone()
        };
        assert_eq!(c5.nodes().len(), 5);
        assert_eq!(c5.nodes()[4], (5, false, true));
        // Every generated file passes NodeConfig validation.
        for layout in [&l, &c, &c5] {
            for (id, controller, broker) in layout.nodes() {
                let text = layout.server_properties(id, Path::new("/d")).unwrap();
                let mut raw = RawProperties::default();
                raw.add_text(&text, Path::new("p")).unwrap();
                let node = NodeConfig::from_properties(&raw.effective(), None).unwrap();
                assert_eq!(node.is_controller(), controller);
                assert_eq!(node.is_broker(), broker);
                assert_eq!(node.node_id, id);
                if broker {
                    assert_eq!(node.default_replication_factor, 3);
                    assert_eq!(node.min_insync_replicas, 2);
                }
            }
        }
        let text = l.server_properties(4, Path::new("/d")).unwrap();
        assert!(text.contains(
            "controller.quorum.voters=1@127.0.0.1:19192,2@127.0.0.1:19193,3@127.0.0.1:19194\n"
        ));
        assert!(text.contains("listeners=PLAINTEXT://127.0.0.1:19095\n"));
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(10), Duration::from_secs(30));
    }
}

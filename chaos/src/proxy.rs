//! The fault-injecting TCP proxy: one per node listener (broker and controller). Every
//! address the cluster hands out (`advertised.listeners`, `controller.quorum.voters`) is a
//! proxy's, so client traffic, replica fetches, controller Raft and broker heartbeats all pass
//! through one.
//!
//! A network partition is a set of blocked `(source, destination)` pairs. The destination of
//! a connection is the node the proxy stands for; its source is found from the kernel: the
//! proxy looks up the peer's socket (`127.0.0.1:<port>` connected to the proxy's port) in
//! `/proc/net/tcp`, takes its inode and looks for the node process holding `socket:[inode]`
//! among its `/proc/<pid>/fd` entries. A connection from no node process is a client's.
//!
//! A blocked pair is either *cut* (existing connections are closed, new ones closed on
//! accept) or *blackholed* (bytes stop flowing both ways and new connections are held
//! without reaching the node, as when packets are dropped; they flow again on healing).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The source or destination of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Endpoint {
    /// A cluster node, by id.
    Node(i32),
    /// Any process that is not a node: the workload's clients, the checker.
    Client,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Node(id) => write!(f, "n{id}"),
            Endpoint::Client => f.write_str("clients"),
        }
    }
}

/// How a blocked pair misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Block {
    /// Connections are closed (as by a RST); new ones are closed on accept.
    Cut,
    /// Nothing flows; connections stay open and resume when healed.
    Blackhole,
}

/// Which `(source, destination)` pairs are blocked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NetState {
    /// Blocked pairs (directional: a symmetric partition holds both directions).
    pub(crate) blocked: BTreeMap<(Endpoint, Endpoint), Block>,
}

impl NetState {
    /// How traffic from `src` to `dst` is blocked, if at all. A node always reaches itself.
    pub(crate) fn block(&self, src: Endpoint, dst: Endpoint) -> Option<Block> {
        if src == dst {
            return None;
        }
        self.blocked.get(&(src, dst)).copied()
    }

    /// Blocks every pair across two sides, both directions.
    pub(crate) fn split(sides: (&[Endpoint], &[Endpoint]), how: Block) -> Self {
        let mut blocked = BTreeMap::new();
        for a in sides.0 {
            for b in sides.1 {
                if a != b {
                    blocked.insert((*a, *b), how);
                    blocked.insert((*b, *a), how);
                }
            }
        }
        NetState { blocked }
    }
}

/// The shared state of all proxies: the current partitions and the node processes' pids.
#[derive(Debug)]
pub(crate) struct Network {
    state: watch::Sender<NetState>,
    pids: Mutex<HashMap<u32, i32>>,
    /// Connections accepted, refused (cut on accept) and cut while open.
    counters: Mutex<ProxyCounters>,
}

/// What the proxies did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProxyCounters {
    /// Connections accepted.
    pub(crate) accepted: u64,
    /// Connections forwarded to the node.
    pub(crate) forwarded: u64,
    /// Connections closed on accept because their pair was cut.
    pub(crate) refused: u64,
    /// Open connections closed because their pair became cut.
    pub(crate) cut: u64,
    /// Connections identified as a node's.
    pub(crate) from_nodes: u64,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            state: watch::channel(NetState::default()).0,
            pids: Mutex::default(),
            counters: Mutex::default(),
        }
    }
}

impl Network {
    /// Replaces the partitions in force.
    pub(crate) fn set(&self, state: NetState) {
        self.state.send_replace(state);
    }

    /// Heals every partition.
    pub(crate) fn heal(&self) {
        self.set(NetState::default());
    }

    /// Records that `pid` is node `id`'s process.
    pub(crate) fn register(&self, pid: u32, id: i32) {
        self.pids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pid, id);
    }

    /// Forgets a dead process.
    pub(crate) fn unregister(&self, pid: u32) {
        self.pids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&pid);
    }

    /// What the proxies did so far.
    pub(crate) fn counters(&self) -> ProxyCounters {
        *self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, f: impl FnOnce(&mut ProxyCounters)) {
        f(&mut self.counters.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// The source of a connection accepted on `proxy_port` from `127.0.0.1:peer_port`.
    pub(crate) fn identify(&self, peer_port: u16, proxy_port: u16) -> Endpoint {
        let Some(inode) = socket_inode(peer_port, proxy_port) else {
            return Endpoint::Client;
        };
        let needle = format!("socket:[{inode}]");
        let pids: Vec<(u32, i32)> = self
            .pids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(p, i)| (*p, *i))
            .collect();
        for (pid, id) in pids {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == needle.as_str()) {
                    return Endpoint::Node(id);
                }
            }
        }
        Endpoint::Client
    }
}

/// The inode of the IPv4 socket bound to `local_port` and connected to `remote_port`, from
/// `/proc/net/tcp` (`sl local_address rem_address st ... uid timeout inode`, addresses as
/// `HEXIP:HEXPORT`).
fn socket_inode(local_port: u16, remote_port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    parse_socket_inode(&table, local_port, remote_port)
}

fn parse_socket_inode(table: &str, local_port: u16, remote_port: u16) -> Option<u64> {
    let port_of = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            return None;
        }
        if port_of(f[1]) == Some(local_port) && port_of(f[2]) == Some(remote_port) {
            f[9].parse().ok().filter(|i| *i != 0)
        } else {
            None
        }
    })
}

/// Runs a proxy for node `node` on `listener`, forwarding to `upstream`, until the runtime
/// stops.
pub(crate) fn spawn(listener: TcpListener, node: i32, upstream: SocketAddr, net: Arc<Network>) {
    tokio::spawn(async move {
        let proxy_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let net = Arc::clone(&net);
            tokio::spawn(async move {
                let src = net.identify(peer.port(), proxy_port);
                net.count(|c| {
                    c.accepted += 1;
                    c.from_nodes += u64::from(matches!(src, Endpoint::Node(_)));
                });
                serve(stream, src, Endpoint::Node(node), upstream, net).await;
            });
        }
    });
}

/// Waits until `src → dst` may flow. `false`: the pair is (or became) cut.
async fn wait_open(rx: &mut watch::Receiver<NetState>, src: Endpoint, dst: Endpoint) -> bool {
    loop {
        let block = rx.borrow_and_update().block(src, dst);
        match block {
            None => return true,
            Some(Block::Cut) => return false,
            Some(Block::Blackhole) => {
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}

/// Returns once `src → dst` becomes cut.
async fn until_cut(mut rx: watch::Receiver<NetState>, src: Endpoint, dst: Endpoint) {
    loop {
        if rx.borrow_and_update().block(src, dst) == Some(Block::Cut) {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Copies `from` to `to`, waiting while the pair is blackholed; ends on EOF, error or a cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut rx: watch::Receiver<NetState>,
    src: Endpoint,
    dst: Endpoint,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !wait_open(&mut rx, src, dst).await {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn serve(
    stream: TcpStream,
    src: Endpoint,
    dst: Endpoint,
    upstream: SocketAddr,
    net: Arc<Network>,
) {
    let mut rx = net.state.subscribe();
    if !wait_open(&mut rx, src, dst).await {
        net.count(|c| c.refused += 1);
        return;
    }
    let Ok(up) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let _ = up.set_nodelay(true);
    net.count(|c| c.forwarded += 1);
    let (cr, cw) = stream.into_split();
    let (ur, uw) = up.into_split();
    tokio::select! {
        _ = pump(cr, uw, rx.clone(), src, dst) => {}
        _ = pump(ur, cw, rx.clone(), src, dst) => {}
        _ = until_cut(rx, src, dst) => net.count(|c| c.cut += 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_the_inode_of_a_connected_socket() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 222 1 0000000000000000 20 4 30 10 -1\n\
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 333 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(parse_socket_inode(table, 0xC350, 0x1F90), Some(222));
        assert_eq!(parse_socket_inode(table, 0x1F90, 0xC350), Some(333));
        assert_eq!(parse_socket_inode(table, 0xC351, 0x1F90), None);
    }

    /// An echo server standing in for a node.
    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(s: &mut TcpStream, msg: &[u8], wait: Duration) -> Option<Vec<u8>> {
        s.write_all(msg).await.ok()?;
        let mut buf = vec![0u8; msg.len()];
        match tokio::time::timeout(wait, s.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf),
            _ => None,
        }
    }

    /// The source of a connection is found through /proc (this test process registered as
    /// node 7), and cuts, blackholes and healing act on exactly the blocked pair.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identifies_the_source_and_cuts_blackholes_and_heals() {
        let net = Arc::new(Network::default());
        let upstream = echo_server().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = listener.local_addr().unwrap();
        spawn(listener, 1, upstream, Arc::clone(&net));

        // Unregistered: a client.
        let probe = TcpStream::connect(proxy).await.unwrap();
        let port = probe.local_addr().unwrap().port();
        assert_eq!(net.identify(port, proxy.port()), Endpoint::Client);
        net.register(std::process::id(), 7);
        assert_eq!(net.identify(port, proxy.port()), Endpoint::Node(7));
        drop(probe);

        let wait = Duration::from_secs(5);
        let mut a = TcpStream::connect(proxy).await.unwrap();
        assert_eq!(roundtrip(&mut a, b"hello", wait).await.unwrap(), b"hello");

        // Blocking clients → n1 does not touch n7's connection.
        net.set(NetState::split(
            (&[Endpoint::Client], &[Endpoint::Node(1)]),
            Block::Cut,
        ));
        assert_eq!(roundtrip(&mut a, b"still", wait).await.unwrap(), b"still");

        // Blackhole n7 → n1: nothing comes back until healed, then the bytes flow.
        net.set(NetState::split(
            (&[Endpoint::Node(7)], &[Endpoint::Node(1)]),
            Block::Blackhole,
        ));
        assert!(roundtrip(&mut a, b"held", Duration::from_millis(500))
            .await
            .is_none());
        net.heal();
        let mut buf = [0u8; 4];
        tokio::time::timeout(wait, a.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"held");

        // Cut n7 → n1: the open connection is closed, a new one is closed on accept.
        net.set(NetState::split(
            (&[Endpoint::Node(7)], &[Endpoint::Node(1)]),
            Block::Cut,
        ));
        let mut buf = [0u8; 1];
        let r = tokio::time::timeout(wait, a.read(&mut buf)).await.unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        let mut b = TcpStream::connect(proxy).await.unwrap();
        assert!(roundtrip(&mut b, b"x", wait).await.is_none());
        let c = net.counters();
        assert!(c.refused >= 1 && c.cut >= 1, "{c:?}");

        net.heal();
        let mut d = TcpStream::connect(proxy).await.unwrap();
        assert_eq!(roundtrip(&mut d, b"again", wait).await.unwrap(), b"again");
    }
}

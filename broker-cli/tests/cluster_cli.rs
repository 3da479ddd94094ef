//! The cluster-node commands end to end as real processes: `broker storage format|info|
//! random-uuid`, `broker serve` in cluster mode (formatting on first start from `CLUSTER_ID`,
//! refusing another cluster's or node's directory), and `broker cluster up --detach|status|
//! down`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_broker");

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    // The children see only the variables a test gives them (never this process's KAFKA_*).
    for (k, _) in std::env::vars() {
        if k.starts_with("KAFKA_") || k == "CLUSTER_ID" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn broker_properties(dir: &Path, node_id: i32) -> String {
    format!(
        "node.id={node_id}\n\
         process.roles=broker\n\
         controller.quorum.voters=1@127.0.0.1:9093\n\
         listeners=PLAINTEXT://127.0.0.1:0\n\
         controller.listener.names=CONTROLLER\n\
         log.dirs={}\n",
        dir.display()
    )
}

#[test]
fn storage_format_twice_then_ignore_formatted_and_info() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = tmp.path().join("server.properties");
    std::fs::write(&cfg, broker_properties(&data, 4)).unwrap();
    let cfg_s = cfg.to_str().unwrap();

    let uuid = run(&["storage", "random-uuid"], &[]);
    assert!(uuid.status.success(), "{}", text(&uuid));
    let id = String::from_utf8_lossy(&uuid.stdout).trim().to_string();
    assert_eq!(id.len(), 22, "{id}");

    let first = run(
        &[
            "storage",
            "format",
            "--config-file",
            cfg_s,
            "--cluster-id",
            &id,
        ],
        &[],
    );
    assert!(first.status.success(), "{}", text(&first));
    assert!(text(&first).contains("Formatting"), "{}", text(&first));
    let meta = std::fs::read_to_string(data.join("meta.properties")).unwrap();
    assert!(meta.starts_with("#\n#"), "{meta}");
    assert!(meta.contains(&format!("cluster.id={id}\n")), "{meta}");
    assert!(meta.contains("node.id=4\n"), "{meta}");
    assert!(meta.contains("version=1\n"), "{meta}");
    assert!(meta.contains("directory.id="), "{meta}");

    let second = run(
        &[
            "storage",
            "format",
            "--config-file",
            cfg_s,
            "--cluster-id",
            &id,
        ],
        &[],
    );
    assert!(!second.status.success());
    assert!(
        text(&second).contains("is already formatted. Use --ignore-formatted"),
        "{}",
        text(&second)
    );

    let ignored = run(
        &[
            "storage",
            "format",
            "--config-file",
            cfg_s,
            "--cluster-id",
            &id,
            "--ignore-formatted",
        ],
        &[],
    );
    assert!(ignored.status.success(), "{}", text(&ignored));
    assert!(text(&ignored).contains("All of the log directories are already formatted."));
    // The file is unchanged.
    assert_eq!(
        std::fs::read_to_string(data.join("meta.properties")).unwrap(),
        meta
    );

    // Another cluster id is refused even with --ignore-formatted.
    let other = run(
        &[
            "storage",
            "format",
            "--config-file",
            cfg_s,
            "--cluster-id",
            "anotherCluster",
            "--ignore-formatted",
        ],
        &[],
    );
    assert!(!other.status.success());
    assert!(
        text(&other).contains("Invalid cluster.id"),
        "{}",
        text(&other)
    );

    let info = run(&["storage", "info", "--config-file", cfg_s], &[]);
    assert!(info.status.success(), "{}", text(&info));
    let out = text(&info);
    assert!(out.contains("Found log directory:"), "{out}");
    assert!(
        out.contains(&format!("Found metadata: {{cluster.id={id}")),
        "{out}"
    );
    assert!(out.contains("node.id=4"), "{out}");

    // A single-node configuration cannot be formatted.
    let single = tmp.path().join("single.properties");
    std::fs::write(&single, format!("log.dirs={}\n", data.display())).unwrap();
    let refused = run(
        &[
            "storage",
            "format",
            "--config-file",
            single.to_str().unwrap(),
            "--cluster-id",
            &id,
        ],
        &[],
    );
    assert!(!refused.status.success());
    assert!(text(&refused).contains("single-node"), "{}", text(&refused));
}

#[test]
fn serve_in_cluster_mode_formats_from_env_and_refuses_other_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("kraft");
    let data_s = data.to_str().unwrap().to_string();
    // The compose-style environment of a broker node, no properties file at all.
    let env = [
        ("KAFKA_NODE_ID", "4"),
        ("KAFKA_PROCESS_ROLES", "broker"),
        (
            "KAFKA_CONTROLLER_QUORUM_VOTERS",
            "1@127.0.0.1:19193,2@127.0.0.1:19194,3@127.0.0.1:19195",
        ),
        (
            "KAFKA_LISTENERS",
            "PLAINTEXT://127.0.0.1:0,PLAINTEXT_HOST://127.0.0.1:0",
        ),
        (
            "KAFKA_ADVERTISED_LISTENERS",
            "PLAINTEXT://127.0.0.1:19092,PLAINTEXT_HOST://localhost:29092",
        ),
        ("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT"),
        ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER"),
        (
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT",
        ),
        ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0"),
        ("KAFKA_LOG_DIRS", &data_s),
        ("CLUSTER_ID", "4L6g3nShT-eMCtK--X86sw"),
    ];
    // The node formats its directory and then runs (waiting for its controllers, which do
    // not exist here): stopped once meta.properties is there.
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("KAFKA_") || k == "CLUSTER_ID" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !data.join("meta.properties").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "serve exited before formatting"
        );
        assert!(Instant::now() < deadline, "serve never formatted {data_s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "serve stopped after formatting"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let meta = std::fs::read_to_string(data.join("meta.properties")).unwrap();
    assert!(
        meta.contains("cluster.id=4L6g3nShT-eMCtK--X86sw\n"),
        "{meta}"
    );
    assert!(meta.contains("node.id=4\n"), "{meta}");

    // --cluster-id naming another cluster: refused, naming both ids.
    let out = run(&["serve", "--cluster-id", "someOtherCluster"], &env);
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(
        msg.contains("someOtherCluster") && msg.contains("4L6g3nShT-eMCtK--X86sw"),
        "{msg}"
    );

    // Another node id on the same directory: refused, naming both ids.
    let mut env5 = env.to_vec();
    env5[0] = ("KAFKA_NODE_ID", "5");
    let out = run(&["serve"], &env5);
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(
        msg.contains("Stored node id 4") && msg.contains("node id 5"),
        "{msg}"
    );

    // A configuration error is typed and names the rule.
    let mut bad = env.to_vec();
    bad[0] = ("KAFKA_NODE_ID", "2");
    let out = run(&["serve"], &bad);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("must not be included in the set of voters"),
        "{}",
        text(&out)
    );

    // Without a cluster id a fresh directory is refused.
    let fresh = tmp.path().join("fresh");
    let mut no_id: Vec<(&str, &str)> = env
        .iter()
        .copied()
        .filter(|(k, _)| *k != "CLUSTER_ID")
        .collect();
    let fresh_s = fresh.to_str().unwrap().to_string();
    for e in &mut no_id {
        if e.0 == "KAFKA_LOG_DIRS" {
            e.1 = &fresh_s;
        }
    }
    let out = run(&["serve"], &no_id);
    assert!(!out.status.success());
    assert!(text(&out).contains("is not formatted"), "{}", text(&out));
}

#[test]
fn cluster_up_detach_status_down() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let dir_s = dir.to_str().unwrap();
    // The nodes' listeners must be known before they start: a base port whose range is free
    // now (outside the kernel's ephemeral range, so no client socket takes one meanwhile).
    let base = free_base(5);
    let base_s = base.to_string();
    let up = run(
        &[
            "cluster",
            "up",
            "--controllers",
            "3",
            "--brokers",
            "2",
            "--data-dir",
            dir_s,
            "--base-port",
            &base_s,
            "--detach",
        ],
        &[],
    );
    assert!(up.status.success(), "{}", text(&up));
    // Stops the detached nodes even when an assertion below fails (a second `down` after the
    // test's own is a no-op).
    let _down_on_failure = Down(dir_s.to_string());
    let out = text(&up);
    assert!(
        out.contains(&format!(
            "bootstrap servers: 127.0.0.1:{},127.0.0.1:{}",
            base + 3,
            base + 4
        )),
        "{out}"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("cluster.json")).unwrap()).unwrap();
    let nodes = record["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 5);
    assert_eq!(nodes[0]["roles"], "controller");
    assert_eq!(nodes[4]["roles"], "broker");
    assert!(nodes.iter().all(|n| n["pid"].as_u64().is_some()));
    let cluster_id = record["cluster_id"].as_str().unwrap().to_string();
    for id in 1..=5 {
        let node_dir = dir.join(format!("node-{id}"));
        let props = std::fs::read_to_string(node_dir.join("server.properties")).unwrap();
        assert!(props.contains(&format!("node.id={id}\n")), "{props}");
        let meta = std::fs::read_to_string(node_dir.join("data/meta.properties")).unwrap();
        assert!(
            meta.contains(&format!("cluster.id={cluster_id}\n")),
            "{meta}"
        );
        assert!(meta.contains(&format!("node.id={id}\n")), "{meta}");
    }
    // Each node runs `broker serve --config-file …` with its log in server.log: the broker
    // registers with the controller quorum the controllers formed.
    let log = dir.join("node-4/server.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("registered with the controller") {
            break;
        }
        assert!(Instant::now() < deadline, "node 4 log: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let status = run(&["cluster", "status", "--data-dir", dir_s], &[]);
    assert!(status.status.success(), "{}", text(&status));
    let out = text(&status);
    assert!(out.contains(&format!("cluster id: {cluster_id}")), "{out}");
    assert!(
        out.contains(&format!("CONTROLLER://127.0.0.1:{}", base + 100)),
        "{out}"
    );
    assert!(
        out.contains(&format!("PLAINTEXT://127.0.0.1:{}", base + 4)),
        "{out}"
    );

    let down = run(&["cluster", "down", "--data-dir", dir_s], &[]);
    assert!(down.status.success(), "{}", text(&down));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("cluster.json")).unwrap()).unwrap();
    assert!(record["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["pid"].is_null()));

    // `up` again on the same directory keeps the cluster id (the nodes' storage matches).
    let again = run(
        &[
            "cluster",
            "up",
            "--controllers",
            "3",
            "--brokers",
            "2",
            "--data-dir",
            dir_s,
            "--base-port",
            &base_s,
            "--detach",
        ],
        &[],
    );
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains(&format!("cluster id: {cluster_id}")));
    let down = run(&["cluster", "down", "--data-dir", dir_s], &[]);
    assert!(down.status.success(), "{}", text(&down));

    let missing = run(
        &[
            "cluster",
            "status",
            "--data-dir",
            tmp.path().join("none").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!missing.status.success());
    assert!(text(&missing).contains("has no cluster.json"));
}

#[test]
fn cluster_up_supervises_restarts_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let base = free_base(2);
    let base_s = base.to_string();
    let dir = tmp.path().join("cluster");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "cluster",
        "up",
        "--controllers",
        "1",
        "--brokers",
        "1",
        "--combined",
        "--base-port",
        &base_s,
        "--data-dir",
    ])
    .arg(&dir)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("KAFKA_") || k == "CLUSTER_ID" {
            cmd.env_remove(k);
        }
    }
    let mut supervisor = cmd.spawn().unwrap();
    struct Reap<'a>(&'a mut std::process::Child);
    impl Drop for Reap<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Reap(&mut supervisor);
    let pid_of_node = || -> Option<(u64, Option<u64>)> {
        let bytes = std::fs::read(dir.join("cluster.json")).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        Some((v["supervisor_pid"].as_u64()?, v["nodes"][0]["pid"].as_u64()))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (sup_pid, first) = loop {
        if let Some((s, Some(p))) = pid_of_node() {
            break (s, p);
        }
        assert!(Instant::now() < deadline, "no cluster.json");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(sup_pid, u64::from(guard.0.id()));
    // A node that dies (SIGKILL here) is restarted by the supervisor: the recorded pid changes.
    let killed = Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    loop {
        if let Some((_, Some(p))) = pid_of_node() {
            if p != first {
                break;
            }
        }
        assert!(Instant::now() < deadline, "node never restarted");
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &sup_pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = guard.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "supervisor did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    drop(guard);
    let out = supervisor.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("bootstrap servers: 127.0.0.1:{base}")),
        "{stdout}"
    );
    assert!(stdout.contains("cluster stopped"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("restarting"), "{stderr}");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("cluster.json")).unwrap()).unwrap();
    assert!(v["supervisor_pid"].is_null());
    assert!(v["nodes"][0]["pid"].is_null());
}

/// A base port whose client and controller ports (`base..base+n`, `base+100..base+100+n`) are
/// free now.
fn free_base(n: u16) -> u16 {
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
    println!("port seed {seed}");
    for i in 0..200u64 {
        // Below Linux's default ephemeral range (32768-60999): only listeners use these.
        let base = 20_000 + ((seed.wrapping_add(i * 7919)) % 12_000) as u16;
        let free = (0..n)
            .flat_map(|k| [base + k, base + 100 + k])
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free port range");
}

/// Runs `broker cluster down` on drop.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = run(&["cluster", "down", "--data-dir", &self.0], &[]);
    }
}

/// `cluster up --detach` of 3 controllers and 3 brokers; then a topic of replication factor 3
/// created (retrying until the brokers have registered).
fn up_with_topic(dir: &str, topic: &str, partitions: &str) -> (Down, u16) {
    let base = free_base(6);
    let base_s = base.to_string();
    let up = run(
        &[
            "cluster",
            "up",
            "--controllers",
            "3",
            "--brokers",
            "3",
            "--data-dir",
            dir,
            "--base-port",
            &base_s,
            "--detach",
        ],
        &[],
    );
    let down = Down(dir.to_string());
    assert!(up.status.success(), "{}", text(&up));
    let bootstrap = format!("127.0.0.1:{}", base + 3);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let create = run(
            &[
                "topics",
                "create",
                "--topic",
                topic,
                "--partitions",
                partitions,
                "--replication-factor",
                "3",
                "--bootstrap-server",
                &bootstrap,
            ],
            &[],
        );
        if create.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "topic never created: {}",
            text(&create)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    (down, base)
}

/// Whether `out` shows the quorum with a leader and 3 voters, and every partition of `topic`
/// with 3 replicas, all in the ISR.
fn healthy(out: &str, topic: &str, partitions: usize) -> bool {
    let quorum_leader = out.lines().any(|l| l.starts_with("quorum: leader "));
    let voters = out
        .lines()
        .filter(|l| l.contains("leader ") || l.contains("follower "))
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<i32>().is_ok())
        })
        .count();
    let rows: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.starts_with(&format!("{topic} ")))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let full = rows.len() == partitions
        && rows.iter().all(|r| {
            r.len() == 7
                && r[4].split(',').count() == 3
                && r[5].split(',').count() == 3
                && r[6] == "ok"
        });
    quorum_leader && voters == 3 && full
}

#[test]
fn cluster_status_shows_quorum_brokers_and_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let dir_s = dir.to_str().unwrap();
    let (down, base) = up_with_topic(dir_s, "status-topic", "2");
    let deadline = Instant::now() + Duration::from_secs(90);
    let out = loop {
        let status = run(&["cluster", "status", "--data-dir", dir_s], &[]);
        assert!(status.status.success(), "{}", text(&status));
        let out = text(&status);
        if healthy(&out, "status-topic", 2) {
            break out;
        }
        assert!(Instant::now() < deadline, "cluster never healthy:\n{out}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(out.contains("brokers: 3 registered"), "{out}");
    for id in 4..=6 {
        assert!(
            out.contains(&format!("  broker {id} 127.0.0.1:{}", base + id - 1)),
            "{out}"
        );
    }
    assert!(out.contains("0 under-replicated, 0 offline"), "{out}");
    // The same without the data directory, against the listeners.
    let controllers = format!(
        "127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
        base + 100,
        base + 101,
        base + 102
    );
    let bootstrap = format!("127.0.0.1:{}", base + 4);
    let remote = run(
        &[
            "cluster",
            "status",
            "--controllers",
            &controllers,
            "--bootstrap-server",
            &bootstrap,
        ],
        &[],
    );
    assert!(remote.status.success(), "{}", text(&remote));
    let rout = text(&remote);
    assert!(healthy(&rout, "status-topic", 2), "{rout}");
    assert!(!rout.contains("cluster id:"), "{rout}");
    // Nothing listening: said, not an error.
    let dead = run(
        &[
            "cluster",
            "status",
            "--controllers",
            "127.0.0.1:1",
            "--timeout-ms",
            "1000",
        ],
        &[],
    );
    assert!(dead.status.success(), "{}", text(&dead));
    assert!(
        text(&dead).contains("quorum: no controller answers as leader"),
        "{}",
        text(&dead)
    );
    drop(down);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("cluster.json")).unwrap()).unwrap();
    assert!(record["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["pid"].is_null()));
}

/// Partition `partition` of `topic` in a status report: (leader, replicas, isr).
fn partition_row(out: &str, topic: &str, partition: i32) -> Option<(i32, Vec<i32>, Vec<i32>)> {
    let ids = |s: &str| -> Vec<i32> { s.split(',').filter_map(|x| x.parse().ok()).collect() };
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|r| r.len() == 7 && r[0] == topic && r[1] == partition.to_string())
        .map(|r| (r[2].parse().unwrap_or(-1), ids(r[4]), ids(r[5])))
}

fn wait_row(
    dir: &str,
    topic: &str,
    what: &str,
    ok: impl Fn(i32, &[i32], &[i32]) -> bool,
) -> (i32, Vec<i32>, Vec<i32>) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = run(&["cluster", "status", "--data-dir", dir], &[]);
        let out = text(&status);
        if let Some((leader, replicas, isr)) = partition_row(&out, topic, 0) {
            if ok(leader, &replicas, &isr) {
                return (leader, replicas, isr);
            }
        }
        assert!(Instant::now() < deadline, "never {what}:\n{out}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn preferred_election_through_a_broker_moves_leadership_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let dir_s = dir.to_str().unwrap();
    let topic = "elect-topic";
    let (_down, base) = up_with_topic(dir_s, topic, "1");
    let (_, replicas, _) = wait_row(dir_s, topic, "fully replicated", |l, r, i| {
        r.len() == 3 && i.len() == 3 && l == r[0]
    });
    let preferred = replicas[0];
    let bootstrap = format!(
        "127.0.0.1:{}",
        base + u16::try_from(replicas[1]).unwrap() - 1
    );
    // Stop the preferred leader: leadership moves to another replica.
    let record_path = dir.join("cluster.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    let idx = usize::try_from(preferred - 1).unwrap();
    let pid = record["nodes"][idx]["pid"].as_u64().unwrap();
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    wait_row(dir_s, topic, "led by another replica", |l, _, _| {
        l >= 0 && l != preferred
    });
    // The stopped node releases its port and data directory when its process is gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "node {preferred} did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Restart it (recorded, so `cluster down` stops it) and wait until it is back in the ISR.
    let config_file = record["nodes"][idx]["config_file"]
        .as_str()
        .unwrap()
        .to_string();
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(record["nodes"][idx]["log_file"].as_str().unwrap())
        .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config-file", &config_file])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for (k, _) in std::env::vars() {
        if k.starts_with("KAFKA_") || k == "CLUSTER_ID" {
            cmd.env_remove(k);
        }
    }
    let child = cmd.spawn().unwrap();
    record["nodes"][idx]["pid"] = serde_json::json!(child.id());
    std::fs::write(&record_path, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Reap(child);
    let (leader, _, _) = wait_row(dir_s, topic, "back in the ISR", |l, _, i| {
        i.contains(&preferred) && i.len() == 3 && l >= 0
    });
    assert_ne!(
        leader, preferred,
        "leadership moved back without an election"
    );
    // The preferred election, sent to a broker that forwards it to the controller.
    let elect = run(
        &[
            "topics",
            "elect-leaders",
            "--topic",
            topic,
            "--partition",
            "0",
            "--election-type",
            "preferred",
            "--bootstrap-server",
            &bootstrap,
        ],
        &[],
    );
    assert!(elect.status.success(), "{}", text(&elect));
    assert!(
        text(&elect).contains(&format!("{topic}-0: leader elected")),
        "{}",
        text(&elect)
    );
    wait_row(dir_s, topic, "led by the preferred replica", |l, _, _| {
        l == preferred
    });
    // Again: nothing to do, not an error.
    let again = run(
        &[
            "topics",
            "elect-leaders",
            "--topic",
            topic,
            "--election-type",
            "preferred",
            "--bootstrap-server",
            &bootstrap,
        ],
        &[],
    );
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains(&format!("{topic}-0: valid replica already elected")),
        "{}",
        text(&again)
    );
}

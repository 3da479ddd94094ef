//! The `broker` command line end to end: `serve` on an ephemeral port as a real process, then
//! `topics`, `produce`, `consume` and `offsets` against it, and a graceful SIGTERM shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_broker");

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &std::path::Path) -> Server {
    let mut args: Vec<std::ffi::OsString> = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--config",
        "num.partitions=2",
        "--config",
        "group.initial.rebalance.delay.ms=0",
        "--data-dir",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(dir.into());
    spawn_server(&args)
}

/// Starts `broker` with `args` and reads the `listening on HOST:PORT` line.
fn spawn_server(args: &[std::ffi::OsString]) -> Server {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected: {line:?}"))
        .to_string();
    Server { child, addr }
}

fn run(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn serve_create_produce_consume_offsets_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path());
    let bs = server.addr.clone();
    let b = ["--bootstrap-server", bs.as_str()];

    let (ok, out, err) = run(
        &[
            &[
                "topics",
                "create",
                "--topic",
                "lines",
                "--partitions",
                "3",
                "--config",
                "retention.ms=3600000",
            ][..],
            &b,
        ]
        .concat(),
        None,
    );
    assert!(ok, "create: {out} {err}");
    let (ok, out, _) = run(&[&["topics", "list"][..], &b].concat(), None);
    assert!(ok && out.lines().any(|l| l == "lines"), "{out}");
    let (ok, out, err) = run(
        &[&["topics", "describe", "--topic", "lines"][..], &b].concat(),
        None,
    );
    assert!(
        ok && out.contains("PartitionCount: 3") && out.contains("retention.ms=3600000"),
        "{out}{err}"
    );

    let input: String = (0..30)
        .map(|i| format!("key{}:value {i}\n", i % 5))
        .collect();
    let (ok, _, err) = run(
        &[
            &["produce", "--topic", "lines", "--key-separator", ":"][..],
            &b,
        ]
        .concat(),
        Some(&input),
    );
    assert!(ok, "produce: {err}");

    let (ok, out, err) = run(
        &[
            &[
                "consume",
                "--topic",
                "lines",
                "--from-beginning",
                "--max-messages",
                "30",
                "--print-key",
                "--print-partition",
                "--isolation-level",
                "read_committed",
                "--idle-timeout-ms",
                "15000",
            ][..],
            &b,
        ]
        .concat(),
        None,
    );
    assert!(ok, "consume: {err}");
    let mut rows: Vec<(String, String, String)> = out
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect();
    assert_eq!(rows.len(), 30, "{out}");
    // Same key, same partition (murmur2), and the partition is the Java client's.
    for (p, k, _) in &rows {
        let expected = broker_embedded::partition_for_key(k.as_bytes(), 3).unwrap();
        assert_eq!(p, &expected.to_string(), "key {k}");
    }
    rows.sort_by(|a, b| a.2.cmp(&b.2));
    assert!(rows.iter().any(|r| r.2 == "value 29"));

    let (ok, out, _) = run(&[&["offsets", "--topic", "lines"][..], &b].concat(), None);
    assert!(ok);
    let total: i64 = out
        .lines()
        .skip(1)
        .map(|l| l.split('\t').nth(3).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, 30, "{out}");

    // As a consumer group: the first run reads everything and commits; the next resumes.
    let group_args = [
        "consume",
        "--topic",
        "lines",
        "--group",
        "readers",
        "--from-beginning",
        "--idle-timeout-ms",
        "3000",
    ];
    let (ok, out, err) = run(
        &[&group_args[..], &["--max-messages", "30"], &b].concat(),
        None,
    );
    assert!(ok, "group consume: {err}");
    assert_eq!(out.lines().count(), 30, "{out}");
    let (ok, _, err) = run(
        &[&["produce", "--topic", "lines"][..], &b].concat(),
        Some("fresh 1\nfresh 2\n"),
    );
    assert!(ok, "{err}");
    let (ok, out, err) = run(&[&group_args[..], &b].concat(), None);
    assert!(ok, "group resume: {err}");
    let mut fresh: Vec<&str> = out.lines().collect();
    fresh.sort_unstable();
    assert_eq!(
        fresh,
        vec!["fresh 1", "fresh 2"],
        "the group resumed after its committed offsets"
    );

    // groups: list, describe with lag, delete.
    let (ok, out, err) = run(&[&["groups", "list"][..], &b].concat(), None);
    assert!(
        ok && out.lines().any(|l| l.starts_with("readers\t")),
        "{out}{err}"
    );
    let (ok, out, err) = run(
        &[&["groups", "describe", "--group", "readers"][..], &b].concat(),
        None,
    );
    assert!(ok, "{err}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.starts_with("lines\t"))
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 3, "a committed offset per partition: {out}");
    let committed: i64 = rows.iter().map(|r| r[2].parse::<i64>().unwrap()).sum();
    assert_eq!(committed, 32, "{out}");
    assert!(
        rows.iter().all(|r| r[4] == "0"),
        "no lag after the resume: {out}"
    );
    let (ok, _, err) = run(
        &[&["groups", "delete", "--group", "readers"][..], &b].concat(),
        None,
    );
    assert!(ok, "{err}");
    let (ok, out, _) = run(&[&["groups", "list"][..], &b].concat(), None);
    assert!(ok && !out.contains("readers"), "{out}");

    // Errors are clear and non-zero.
    let (ok, _, err) = run(
        &[&["topics", "create", "--topic", "bad/name"][..], &b].concat(),
        None,
    );
    assert!(!ok && err.contains("error:"), "{err}");

    // A 20-byte Metadata request claiming two billion topics must not take the broker down
    // (the decoder reserves capacity from the claimed length before reading elements).
    {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
        let mut frame = Vec::new();
        frame.extend_from_slice(&3i16.to_be_bytes()); // Metadata
        frame.extend_from_slice(&1i16.to_be_bytes()); // v1
        frame.extend_from_slice(&1i32.to_be_bytes()); // correlation id
        frame.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
        frame.extend_from_slice(&i32::MAX.to_be_bytes()); // topics array length
        s.write_all(&(frame.len() as i32).to_be_bytes()).unwrap();
        s.write_all(&frame).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 8];
        assert!(
            matches!(s.read(&mut buf), Ok(0) | Err(_)),
            "the bad connection is closed"
        );
    }
    let (ok, out, _) = run(&[&["topics", "list"][..], &b].concat(), None);
    assert!(
        ok && out.contains("lines"),
        "the broker still serves after a hostile frame"
    );

    // SIGTERM: graceful shutdown, clean marker written.
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    assert!(dir.path().join(".kafka_cleanshutdown").exists());
}

#[test]
fn serve_reads_a_stock_kafka_properties_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kafka-logs");
    let props = dir.path().join("server.properties");
    std::fs::write(
        &props,
        format!(
            "# a typical single-node server.properties (no process.roles: with it set the \
             node is a cluster node)\nnode.id=0\n\
             listeners=PLAINTEXT://127.0.0.1:0\nnum.network.threads=3\nnum.io.threads=8\n\
             socket.send.buffer.bytes=102400\nlog.dirs={}\nnum.partitions=4\n\
             offsets.topic.replication.factor=1\nlog.retention.hours=168\n\
             log.segment.bytes=1073741824\nlog.retention.check.interval.ms=300000\n",
            data.display()
        ),
    )
    .unwrap();
    let server = spawn_server(&["serve".into(), "--config-file".into(), props.clone().into()]);
    let (ok, out, err) = run(
        &[
            "topics",
            "create",
            "--bootstrap-server",
            &server.addr,
            "--topic",
            "p",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    assert!(data.join("p-0").is_dir(), "log.dirs is the data directory");
    let (ok, out, _) = run(
        &[
            "topics",
            "describe",
            "--bootstrap-server",
            &server.addr,
            "--topic",
            "p",
        ],
        None,
    );
    assert!(ok && out.contains("PartitionCount: 1"), "{out}");
    drop(server);

    // Unknown properties and impossible values are refused with a clear message.
    std::fs::write(&props, "log.dirs=/tmp/x\nfoo.bar=1\n").unwrap();
    let (ok, _, err) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config-file",
            props.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        !ok && err.contains("unknown broker property `foo.bar`"),
        "{err}"
    );
    let (ok, _, err) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "default.replication.factor=3",
        ],
        None,
    );
    assert!(!ok && err.contains("only 1 is possible"), "{err}");
}

/// An ApiVersions v0 request frame (size prefix included).
fn api_versions_frame(correlation_id: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes()); // v0
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Sends ApiVersions and reads the whole response; `Err` if the server closed the connection.
fn api_versions_round_trip(
    s: &mut std::net::TcpStream,
    correlation_id: i32,
) -> std::io::Result<()> {
    use std::io::Read;
    s.write_all(&api_versions_frame(correlation_id))?;
    let mut size = [0u8; 4];
    s.read_exact(&mut size)?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body)?;
    assert_eq!(
        &body[..4],
        &correlation_id.to_be_bytes(),
        "correlation id echoed"
    );
    Ok(())
}

/// The server in its own `broker serve` process (so this process holds only the client side
/// of each connection and the test also runs under `ulimit -n 1024`): 1,000 concurrent
/// connections are each served, `max.connections` refuses the ones beyond the limit, and
/// `connections.max.idle.ms` closes idle connections but not busy ones.
#[test]
fn a_thousand_connections_are_served_and_connection_limits_hold() {
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_server(&[
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        dir.path().join("a").into(),
        "--config".into(),
        "max.connections=1000".into(),
    ]);
    let mut conns: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    for c in &conns {
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    }
    for (i, c) in conns.iter_mut().enumerate() {
        api_versions_round_trip(c, i as i32)
            .unwrap_or_else(|e| panic!("connection {i} of 1000 was not served: {e}"));
    }
    // The limit is reached: a new connection is closed without an answer.
    let mut over = TcpStream::connect(&server.addr).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(
        api_versions_round_trip(&mut over, 1).is_err(),
        "connection 1001 is refused under max.connections=1000"
    );
    // Closing some makes room again; everyone still connected is still served.
    conns.truncate(990);
    std::thread::sleep(Duration::from_millis(300));
    let mut again = TcpStream::connect(&server.addr).unwrap();
    again
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    api_versions_round_trip(&mut again, 2).unwrap();
    api_versions_round_trip(&mut conns[0], 3).unwrap();
    api_versions_round_trip(&mut conns[989], 4).unwrap();
    drop(conns);
    drop(server);

    let idle = spawn_server(&[
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        dir.path().join("b").into(),
        "--config".into(),
        "connections.max.idle.ms=400".into(),
    ]);
    let mut quiet = TcpStream::connect(&idle.addr).unwrap();
    let mut busy = TcpStream::connect(&idle.addr).unwrap();
    for s in [&quiet, &busy] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    api_versions_round_trip(&mut quiet, 1).unwrap();
    for i in 0..8 {
        std::thread::sleep(Duration::from_millis(150));
        api_versions_round_trip(&mut busy, i)
            .unwrap_or_else(|e| panic!("a connection used every 150 ms was closed as idle: {e}"));
    }
    assert!(
        api_versions_round_trip(&mut quiet, 2).is_err(),
        "a connection idle for 1.2 s is closed under connections.max.idle.ms=400"
    );
}

/// `broker transactions list|describe` against a served broker with an open transaction of a
/// librdkafka transactional producer, then after its commit.
#[test]
fn transactions_list_and_describe() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let addr = server.addr.clone();
    let (ok, _, err) = run(
        &[
            "topics",
            "create",
            "--bootstrap-server",
            &addr,
            "--topic",
            "txt",
            "--partitions",
            "2",
        ],
        None,
    );
    assert!(ok, "{err}");
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &addr)
        .set("transactional.id", "cli-tx")
        .create()
        .unwrap();
    let t = Duration::from_secs(20);
    p.init_transactions(t).unwrap();
    p.begin_transaction().unwrap();
    p.send(BaseRecord::<str, str>::to("txt").partition(1).payload("v"))
        .map_err(|(e, _)| e)
        .unwrap();
    p.flush(t).unwrap();

    let (ok, out, err) = run(&["transactions", "list", "--bootstrap-server", &addr], None);
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("cli-tx\t"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.ends_with("\tOngoing"), "{row}");
    let (ok, out, err) = run(
        &[
            "transactions",
            "describe",
            "--bootstrap-server",
            &addr,
            "--transactional-id",
            "cli-tx",
        ],
        None,
    );
    assert!(ok, "{err}");
    let row = out.lines().nth(1).unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = row.split('\t').collect();
    assert_eq!(cols[1], "cli-tx");
    assert_eq!(cols[4], "Ongoing");
    assert_eq!(cols[7], "txt-1");

    p.commit_transaction(t).unwrap();
    let (ok, out, err) = run(
        &[
            "transactions",
            "list",
            "--bootstrap-server",
            &addr,
            "--state",
            "CompleteCommit",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("cli-tx\t") && l.ends_with("\tCompleteCommit")),
        "{out}"
    );
    let (ok, _, err) = run(
        &[
            "transactions",
            "describe",
            "--bootstrap-server",
            &addr,
            "--transactional-id",
            "nope",
        ],
        None,
    );
    assert!(!ok);
    assert!(err.contains("TransactionalIdNotFound"), "{err}");
}

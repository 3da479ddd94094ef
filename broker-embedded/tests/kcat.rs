//! `kcat` (the librdkafka-based Debian package, installed by `./dev test`) against our broker:
//! `-L` metadata, `-P` produce and `-C -e -o beginning` consume on an auto-created topic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};

use broker_embedded::{Broker, BrokerConfig, KafkaServer, ServerConfig};

fn kcat(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    // `kafkacat` on releases from before the package was renamed (Debian 10, Ubuntu 20.04).
    let spawn = |name: &str| {
        Command::new(name)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    let mut child = spawn("kcat").or_else(|_| spawn("kafkacat")).unwrap_or_else(|e| {
        panic!("kcat (or kafkacat) is required for this test (`./dev setup --test` installs it): {e}")
    });
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_metadata_produce_consume() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = BrokerConfig::new(dir.path());
    c.cleaner_interval = None;
    c.num_partitions = 3;
    c.group_initial_rebalance_delay = std::time::Duration::ZERO;
    let broker = Broker::open(c).unwrap();
    let server = KafkaServer::start(
        broker.clone(),
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    let bs = server.local_addr().to_string();
    let result = tokio::task::spawn_blocking(move || {
        let (ok, out, err) = kcat(&["-b", &bs, "-L"], None);
        assert!(ok, "kcat -L: {err}");
        assert!(out.contains("1 brokers:"), "{out}");

        let input: String = (0..20).map(|i| format!("k{i}=hello {i}\n")).collect();
        let (ok, _, err) = kcat(
            &[
                "-b",
                &bs,
                "-P",
                "-t",
                "kcat-auto",
                "-K",
                "=",
                "-X",
                "partitioner=murmur2_random",
            ],
            Some(&input),
        );
        assert!(ok, "kcat -P: {err}");

        let (ok, out, err) = kcat(
            &[
                "-b",
                &bs,
                "-C",
                "-t",
                "kcat-auto",
                "-e",
                "-o",
                "beginning",
                "-f",
                "%p %k %s\\n",
            ],
            None,
        );
        assert!(ok, "kcat -C: {err}");
        let mut lines: Vec<&str> = out.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines.len(), 20, "{out}");
        for l in lines {
            let mut f = l.splitn(3, ' ');
            let (p, k, v) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
            assert_eq!(v, format!("hello {}", &k[1..]));
            let expected = broker_embedded::partition_for_key(k.as_bytes(), 3).unwrap();
            assert_eq!(
                p,
                expected.to_string(),
                "key {k} lands on the murmur2 partition"
            );
        }

        // -G: balanced consumer group; -e exits once every assigned partition is drained.
        let (ok, out, err) = kcat(
            &[
                "-b",
                &bs,
                "-G",
                "kcat-group",
                "-X",
                "auto.offset.reset=earliest",
                "-e",
                "-f",
                "%s\n",
                "kcat-auto",
            ],
            None,
        );
        assert!(ok, "kcat -G: {err}");
        assert_eq!(out.lines().count(), 20, "{out}");
    })
    .await;
    server.shutdown().await;
    broker.shutdown().unwrap();
    result.unwrap();
}

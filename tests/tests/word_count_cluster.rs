#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Several word-count instances (real processes: the `word-count` example binary) sharing
//! the work over the Kafka protocol against `broker serve` (a real process too), through the
//! wire backend: tasks spread over the instances, counts exact after clean stops, a SIGKILLed
//! instance's tasks taken over with at-least-once counts (with and without a standby
//! replica, the restored records measured), a static member restarted without a rebalance.
//! The tests run one at a time (each runs several processes). `WCC_KEEP=1` keeps the data
//! of a run for a post-mortem (the broker's log is `broker.log` there); `WCC_LOG` sets the
//! instances' log filter, `WCC_BROKER_LOG` the broker's.
//!
//! The binaries are the ones `cargo test --workspace` builds (`target/<profile>/broker` and
//! `target/<profile>/examples/word-count`); a test fails loudly when they are missing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::{ChildGuard, XorShift};
use examples::word_count::direct_count;
use examples::word_count_cluster as wcc;
use parking_lot::Mutex;

/// `target/<profile>`, from this test binary's path (`target/<profile>/deps/<test>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn binary(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo test --workspace` builds it)",
        path.display()
    );
    path
}

/// `broker serve` on an ephemeral port; killed when dropped.
struct Server {
    _child: ChildGuard,
    addr: String,
}

fn serve(dir: &Path) -> Server {
    let mut child = Command::new(binary(profile_dir().join("broker")))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "group.initial.rebalance.delay.ms=1000",
            "--data-dir",
        ])
        .arg(dir)
        .env(
            "RUST_LOG",
            std::env::var("WCC_BROKER_LOG").unwrap_or_else(|_| "info".to_owned()),
        )
        .stdout(Stdio::piped())
        // The broker's log, beside its data (kept with WCC_KEEP=1).
        .stderr(std::fs::File::create(dir.with_extension("log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line of broker serve: {line:?}"))
        .to_owned();
    Server {
        _child: ChildGuard(child),
        addr,
    }
}

/// A word-count instance process and the lines it printed so far.
struct Instance {
    name: String,
    child: ChildGuard,
    lines: Arc<Mutex<Vec<String>>>,
    done: mpsc::Receiver<()>,
}

impl Instance {
    fn start(name: &str, bootstrap: &str, data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_session_timeout(name, bootstrap, data_dir, 6000, extra)
    }

    fn start_with_session_timeout(
        name: &str,
        bootstrap: &str,
        data_dir: &Path,
        session_timeout_ms: u64,
        extra: &[&str],
    ) -> Self {
        let mut child = Command::new(binary(profile_dir().join("examples").join("word-count")))
            .args([
                "--bootstrap-server",
                bootstrap,
                "--application-id",
                "wc-cluster",
            ])
            .arg("--session-timeout-ms")
            .arg(session_timeout_ms.to_string())
            .args(["--commit-interval-ms", "200"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("WCC_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        {
            let lines = Arc::clone(&lines);
            let name = name.to_owned();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[{name}] {line}");
                    lines.lock().push(line);
                }
                let _ = tx.send(());
            });
        }
        Instance {
            name: name.to_owned(),
            child: ChildGuard(child),
            lines,
            done,
        }
    }

    /// The tasks of the last `tasks owned:` line, if any.
    fn owned(&self) -> Option<BTreeSet<String>> {
        let lines = self.lines.lock();
        lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("tasks owned:"))
            .map(|t| t.split_whitespace().map(str::to_owned).collect())
    }

    fn assignments_printed(&self) -> usize {
        self.lines
            .lock()
            .iter()
            .filter(|l| l.starts_with("tasks owned:"))
            .count()
    }

    /// Waits for the process to exit by itself and returns its success.
    fn wait_exit(mut self, timeout: Duration) -> (bool, Vec<String>) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                let _ = self.done.recv_timeout(Duration::from_secs(5));
                let lines = self.lines.lock().clone();
                return (status.success(), lines);
            }
            assert!(
                Instant::now() < deadline,
                "instance {} did not exit within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Every task of the word-count topology on 8 partitions: sub-topologies 0 and 1.
fn all_tasks() -> BTreeSet<String> {
    (0..2)
        .flat_map(|s| (0..wcc::PARTITIONS).map(move |p| format!("{s}_{p}")))
        .collect()
}

/// Waits until the instances' last printed assignments are disjoint and cover every task.
fn wait_for_partition_of_tasks(instances: &[&Instance], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let owned: Vec<Option<BTreeSet<String>>> = instances.iter().map(|i| i.owned()).collect();
        if owned
            .iter()
            .all(|o| o.as_ref().is_some_and(|t| !t.is_empty()))
        {
            let sets: Vec<BTreeSet<String>> = owned.into_iter().flatten().collect();
            let total: usize = sets.iter().map(BTreeSet::len).sum();
            let union: BTreeSet<String> = sets.iter().flatten().cloned().collect();
            if total == union.len() && union == all_tasks() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the instances never owned every task exactly once: {:?}",
            instances
                .iter()
                .map(|i| (&i.name, i.owned()))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `lines` of seeded random words (a Zipf-like vocabulary of 500 words).
fn text(seed: u64, lines: usize) -> Vec<String> {
    let mut rng = XorShift::new(seed);
    (0..lines)
        .map(|_| {
            let n = 1 + rng.next() % 12;
            (0..n)
                .map(|_| {
                    let r = rng.next() % 500;
                    let w = (r * r) / 500; // skewed towards small numbers
                    format!("w{w}")
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Waits until the counts in `word-counts` equal `truth`.
fn wait_for_counts(bootstrap: &str, truth: &BTreeMap<String, i64>, timeout: Duration) {
    wait_for_counts_where(bootstrap, truth, timeout, true);
}

/// Waits until every count in `word-counts` is at least its `truth` (at-least-once).
fn wait_for_counts_at_least(bootstrap: &str, truth: &BTreeMap<String, i64>, timeout: Duration) {
    wait_for_counts_where(bootstrap, truth, timeout, false);
}

/// Waits until every word of `truth` is counted at least its truth, or (`exact`) the counts
/// equal the truth.
fn wait_for_counts_where(
    bootstrap: &str,
    truth: &BTreeMap<String, i64>,
    timeout: Duration,
    exact: bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let counts = wcc::read_counts(bootstrap, None).unwrap();
        let right = truth
            .iter()
            .filter(|(w, c)| {
                counts
                    .get(*w)
                    .is_some_and(|got| if exact { got == *c } else { got >= *c })
            })
            .count();
        if right == truth.len() && (!exact || counts.len() == truth.len()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "counts did not reach the truth in {timeout:?}: {right} of {} words right",
            truth.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn three_instances_share_every_task_once_and_counts_are_exact_after_clean_stops() {
    let _serial = serial();
    let seed = 0x5eed_0001;
    eprintln!("seed: {seed:#x}");
    let dir = data_dir();
    let server = serve(&dir.path().join("broker"));
    let lines = text(seed, 20_000);
    let truth = direct_count(&lines.join("\n"));
    // The first instance produces the input (--input), then all three process it.
    let input = dir.path().join("input.txt");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let until_idle = ["--until-idle", "6"];
    let a = Instance::start(
        "a",
        &server.addr,
        &dir.path().join("a"),
        &[&["--input", input.to_str().unwrap()][..], &until_idle[..]].concat(),
    );
    let b = Instance::start("b", &server.addr, &dir.path().join("b"), &until_idle);
    let c = Instance::start("c", &server.addr, &dir.path().join("c"), &until_idle);
    wait_for_partition_of_tasks(&[&a, &b, &c], Duration::from_secs(90));
    for i in [&a, &b, &c] {
        let owned = i.owned().unwrap();
        assert!(
            (4..=6).contains(&owned.len()),
            "16 tasks over 3 instances: {} owns {owned:?}",
            i.name
        );
    }
    // Clean stops (idle for 6 s after the input is done): each exits 0 and reports.
    let mut reported = BTreeMap::new();
    for i in [a, b, c] {
        let name = i.name.clone();
        let (ok, out) = i.wait_exit(Duration::from_secs(120));
        assert!(ok, "instance {name} failed: {out:?}");
        assert!(
            out.iter().any(|l| l.starts_with("total words: ")),
            "instance {name} printed no report: {out:?}"
        );
        reported.insert(name, out);
    }
    assert!(reported["a"]
        .iter()
        .any(|l| l == "produced 20000 lines to text-lines"));
    let counts = wcc::read_counts(&server.addr, None).unwrap();
    assert_eq!(counts.len(), truth.len());
    assert_eq!(counts, truth, "counts after clean stops");
}

/// The `restored N changelog records; standby updates M` report of an instance's output.
fn restored_records(name: &str, out: &[String]) -> (u64, u64) {
    let line = out
        .iter()
        .find(|l| l.starts_with("restored "))
        .unwrap_or_else(|| panic!("instance {name} printed no restore report: {out:?}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().unwrap())
        .collect();
    assert_eq!(numbers.len(), 2, "unexpected report line {line:?}");
    (numbers[0], numbers[1])
}

/// What [`kill_one_instance_mid_input`] saw.
struct Takeover {
    /// Changelog records the survivors restored (their reports), in total.
    restored: u64,
    /// Changelog records the survivors' standby tasks applied, in total.
    standby_updates: u64,
    /// Records in the changelog partitions of the victim's count tasks when the survivors
    /// stopped: what a takeover without any local state restores.
    victim_changelog_records: i64,
}

/// Three instances (with `standby_replicas` standbys each), one SIGKILLed while input
/// flows: the survivors take over its tasks, the counts end at least at the truth and above
/// it by no more than the input produced around the kill; the survivors then stop cleanly.
fn kill_one_instance_mid_input(seed: u64, standby_replicas: u32) -> Takeover {
    eprintln!("seed: {seed:#x}, standby replicas: {standby_replicas}");
    let dir = data_dir();
    let server = serve(&dir.path().join("broker"));
    wcc::ensure_topics(&server.addr).unwrap();
    let lines = text(seed, 40_000);
    let (first, second) = lines.split_at(20_000);
    wcc::produce_lines(&server.addr, first).unwrap();
    let standbys = standby_replicas.to_string();
    // `acceptable.recovery.lag=0`: only an instance whose copy of a store is at the
    // changelog's end counts as caught up (with Kafka's default of 10 000 every instance
    // would, these changelogs being small, and the assignor would place tasks by balance
    // alone). The survivors stop by themselves after 15 s without input (longer than the
    // 6 s session timeout that passes before they get the victim's tasks).
    let common = [
        "--standby-replicas",
        &standbys,
        "--config",
        "acceptable.recovery.lag=0",
    ];
    let extra = [&common[..], &["--until-idle", "15"][..]].concat();
    let a = Instance::start("a", &server.addr, &dir.path().join("a"), &extra);
    let b = Instance::start("b", &server.addr, &dir.path().join("b"), &extra);
    let victim = Instance::start("c", &server.addr, &dir.path().join("c"), &common);
    wait_for_partition_of_tasks(&[&a, &b, &victim], Duration::from_secs(90));
    wait_for_counts(
        &server.addr,
        &direct_count(&first.join("\n")),
        Duration::from_secs(120),
    );
    let before = (a.assignments_printed(), b.assignments_printed());
    // More input, and the victim dies while processing it (SIGKILL: no commit, no leave).
    let producer = {
        let addr = server.addr.clone();
        let second = second.to_vec();
        std::thread::spawn(move || {
            for chunk in second.chunks(2_000) {
                wcc::produce_lines(&addr, chunk).unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    let victim_tasks = victim.owned().unwrap();
    common::kill(victim.child);
    producer.join().unwrap();
    // The survivors take over every task (after the session timeout) ...
    let deadline = Instant::now() + Duration::from_secs(90);
    while a.assignments_printed() == before.0 || b.assignments_printed() == before.1 {
        assert!(Instant::now() < deadline, "no rebalance after the kill");
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for_partition_of_tasks(&[&a, &b], Duration::from_secs(90));
    let survivors: BTreeSet<String> = a
        .owned()
        .unwrap()
        .union(&b.owned().unwrap())
        .cloned()
        .collect();
    assert!(victim_tasks.is_subset(&survivors));
    // ... and stop cleanly once idle; the counts are at least the truth, above it only by
    // re-processed records.
    let mut takeover = Takeover {
        restored: 0,
        standby_updates: 0,
        victim_changelog_records: 0,
    };
    for i in [a, b] {
        let name = i.name.clone();
        let (ok, out) = i.wait_exit(Duration::from_secs(180));
        assert!(ok, "instance {name} failed: {out:?}");
        let (restored, updates) = restored_records(&name, &out);
        takeover.restored += restored;
        takeover.standby_updates += updates;
    }
    let truth = direct_count(&lines.join("\n"));
    let counts = wcc::read_counts(&server.addr, None).unwrap();
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        truth.keys().collect::<Vec<_>>()
    );
    let low: Vec<(&String, i64, i64)> = truth
        .iter()
        .filter(|(w, c)| counts[*w] < **c)
        .map(|(w, c)| (w, counts[w], *c))
        .collect();
    assert!(
        low.is_empty(),
        "counts below the truth (word, got, truth): {low:?}"
    );
    let excess: i64 = truth.iter().map(|(w, c)| counts[w] - c).sum();
    let second_words: i64 = direct_count(&second.join("\n")).values().sum();
    eprintln!("re-counted words after the kill: {excess} (of {second_words} in the second half)");
    assert!(
        excess <= second_words,
        "{excess} extra counts: more than the input produced around the kill"
    );
    let victim_count_partitions: BTreeSet<i32> = victim_tasks
        .iter()
        .filter_map(|t| t.strip_prefix(&format!("{}_", wcc::COUNT_SUBTOPOLOGY)))
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        !victim_count_partitions.is_empty(),
        "the victim owned no count task: {victim_tasks:?}"
    );
    takeover.victim_changelog_records =
        wcc::changelog_records(&server.addr, "wc-cluster", &victim_count_partitions).unwrap();
    eprintln!(
        "takeover with {standby_replicas} standby replicas: survivors restored {} changelog records \
         (the victim's count tasks' changelogs hold {}); standby updates {}",
        takeover.restored, takeover.victim_changelog_records, takeover.standby_updates
    );
    takeover
}

#[test]
fn a_sigkilled_instance_s_tasks_move_to_the_others_and_counts_stay_at_least_once() {
    let _serial = serial();
    let t = kill_one_instance_mid_input(0x5eed_0002, 0);
    // Without standbys the survivors rebuild the victim's stores from the changelogs.
    assert!(
        t.restored > 0,
        "the survivors restored nothing without standbys: the takeover did not happen as meant"
    );
}

#[test]
fn with_a_standby_replica_the_takeover_restores_almost_nothing() {
    let _serial = serial();
    let t = kill_one_instance_mid_input(0x5eed_0003, 1);
    assert!(t.standby_updates > 0, "no standby task was kept warm");
    assert!(t.victim_changelog_records > 0);
    // The promoted standbys had the changelogs (nearly) up to date: at most a tenth of what
    // a takeover without local state restores (the standbys' last poll before the kill).
    assert!(
        t.restored * 10 <= t.victim_changelog_records as u64,
        "restored {} of the victim's {} changelog records despite the standbys",
        t.restored,
        t.victim_changelog_records
    );
}

#[test]
fn a_static_member_restarted_within_the_session_timeout_keeps_its_tasks_without_a_rebalance() {
    let _serial = serial();
    let seed = 0x5eed_0004;
    eprintln!("seed: {seed:#x}");
    let dir = data_dir();
    let server = serve(&dir.path().join("broker"));
    wcc::ensure_topics(&server.addr).unwrap();
    let lines = text(seed, 20_000);
    let (first, second) = lines.split_at(10_000);
    wcc::produce_lines(&server.addr, first).unwrap();
    // 30 s session timeout: the restart below comes back well within it.
    let start = |name: &str| {
        Instance::start_with_session_timeout(
            name,
            &server.addr,
            &dir.path().join(name),
            30_000,
            &["--instance-id", name],
        )
    };
    let a = start("a");
    let b = start("b");
    wait_for_partition_of_tasks(&[&a, &b], Duration::from_secs(90));
    wait_for_counts(
        &server.addr,
        &direct_count(&first.join("\n")),
        Duration::from_secs(120),
    );
    let a_tasks = a.owned().unwrap();
    let b_assignments = b.assignments_printed();
    common::kill(a.child);
    let a = start("a");
    let deadline = Instant::now() + Duration::from_secs(25);
    while a.owned().is_none() {
        assert!(
            Instant::now() < deadline,
            "the restarted static member got no assignment within 25 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(a.owned().unwrap(), a_tasks, "the restarted member's tasks");
    // More input, processed by both; the other member never saw a rebalance.
    wcc::produce_lines(&server.addr, second).unwrap();
    wait_for_counts_at_least(
        &server.addr,
        &direct_count(&lines.join("\n")),
        Duration::from_secs(120),
    );
    assert_eq!(
        b.assignments_printed(),
        b_assignments,
        "the other member went through a rebalance: {:?}",
        b.lines.lock()
    );
    assert_eq!(a.assignments_printed(), 1);
    drop((a, b));
}

/// A temporary directory for a test's broker and instances, printed; kept after the test
/// with `WCC_KEEP=1` (for a post-mortem).
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .disable_cleanup(std::env::var_os("WCC_KEEP").is_some())
        .tempdir()
        .unwrap();
    eprintln!("data: {}", dir.path().display());
    dir
}

/// The tests of this file each run several processes on the machine's few cores: one at a
/// time.
fn serial() -> parking_lot::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
}

//! `chaos`: the fault-injection soak of the cluster, in the spirit of Jepsen's analyses.
//!
//! It owns everything of the soak but the broker itself: a local cluster of real `broker
//! serve` processes (3 controllers, 3 brokers) whose every listener sits behind a
//! fault-injecting TCP proxy ([`proxy`], [`cluster`]); a client workload over librdkafka
//! ([`workload`]); a seeded nemesis of SIGKILLs, SIGSTOPs and network partitions
//! ([`nemesis`]); and a checker ([`checker`]) run once the faults are healed: every
//! acknowledged record read exactly once and in order, transactions all-or-nothing by
//! outcome under read_committed, committed offsets never going backwards, identical replica
//! logs, and convergence (every partition led, full ISR) within a bound. It prints a summary
//! and exits non-zero on any anomaly. `scripts/soak.sh` builds and runs it.
//!
//! Dependencies: rdkafka and tokio for the clients and proxies; `broker-embedded` only to
//! read log segments offline (`record::BatchIter`) and to send raw FindCoordinator requests.

mod checker;
mod cluster;
mod nemesis;
mod proxy;
mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use checker::{Anomaly, Log, ReplicaLog};
use cluster::{Cluster, ClusterError};
use nemesis::{Nemesis, Timing};
use workload::{Shared, Workload};

/// The fault-injection soak.
#[derive(Debug, Parser)]
#[command(
    name = "chaos",
    about = "Fault-injection soak of a local cluster of `broker serve` processes"
)]
struct Args {
    /// The `broker` binary the nodes run.
    #[arg(long)]
    broker: PathBuf,
    /// Faults to inject (default 100; 15 with --quick).
    #[arg(long)]
    faults: Option<u64>,
    /// Seed of the fault schedule and the transactional producers' choices (default: random,
    /// printed).
    #[arg(long)]
    seed: Option<u64>,
    /// The bounded form: short faults (1–2.5 s) and gaps, 15 faults by default.
    #[arg(long)]
    quick: bool,
    /// Never fault a group or transaction coordinator node (see the nemesis doc).
    #[arg(long)]
    no_coordinator_faults: bool,
    /// Working directory for the nodes (default: a new temporary directory, removed at the end
    /// unless --keep).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the working directory.
    #[arg(long)]
    keep: bool,
    /// Controller-only nodes.
    #[arg(long, default_value_t = 3)]
    controllers: i32,
    /// Broker-only nodes.
    #[arg(long, default_value_t = 3)]
    brokers: i32,
}

/// The soak could not run (as opposed to: it ran and found anomalies).
#[derive(Debug, thiserror::Error)]
enum SoakError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("{0}")]
    Setup(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("interrupted by a signal")]
    Interrupted,
}

/// How long healed faults may take to converge.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(120);

fn main() {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    println!("seed: {seed} (replay the fault schedule with --seed {seed})");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chaos: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let (dir, temp) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => match tempfile::Builder::new().prefix("chaos-").tempdir() {
            Ok(t) => (t.path().to_path_buf(), Some(t)),
            Err(e) => {
                eprintln!("chaos: cannot create a temporary directory: {e}");
                std::process::exit(2);
            }
        },
    };
    let result = runtime.block_on(async {
        tokio::select! {
            r = soak(&args, seed, &dir) => r,
            _ = terminated() => Err(SoakError::Interrupted),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    let code = match result {
        Ok(anomalies) if anomalies.is_empty() => 0,
        Ok(_) => 1,
        Err(e) => {
            eprintln!("chaos: {e}");
            2
        }
    };
    match (temp, args.keep) {
        (Some(t), true) => println!("kept {}", t.keep().display()),
        (Some(t), false) => drop(t),
        (None, _) => {}
    }
    std::process::exit(code);
}

async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// A blocking call on the runtime (rdkafka's calls block).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn soak(args: &Args, seed: u64, dir: &Path) -> Result<Vec<Anomaly>, SoakError> {
    let started = Instant::now();
    let faults = args.faults.unwrap_or(if args.quick { 15 } else { 100 });
    let timing = if args.quick {
        Timing {
            hold_ms: (1000, 2500),
            gap_ms: (500, 1500),
        }
    } else {
        Timing {
            hold_ms: (1000, 6000),
            gap_ms: (1000, 3000),
        }
    };
    std::fs::create_dir_all(dir).map_err(|source| SoakError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    println!(
        "cluster: {} controllers, {} brokers in {}; {faults} faults{}",
        args.controllers,
        args.brokers,
        dir.display(),
        if args.no_coordinator_faults {
            ", coordinators spared"
        } else {
            ""
        }
    );
    let mut cluster = Cluster::start(dir, &args.broker, args.controllers, args.brokers).await?;
    let bootstrap = cluster.bootstrap();
    let broker_count = cluster.broker_ids().len();
    blocking(|| wait_for_brokers(&bootstrap, broker_count, Duration::from_secs(90)))
        .map_err(|e| SoakError::Setup(format!("{e}\n{}", tails(&cluster))))?;
    blocking(|| create_topics(&bootstrap)).map_err(SoakError::Setup)?;
    println!("cluster up after {:.1} s", started.elapsed().as_secs_f64());

    let broker_addrs: Vec<String> = bootstrap.split(',').map(str::to_owned).collect();
    let names = colocated_names(&broker_addrs).await;
    println!(
        "group {}, transactional ids {}; coordinators at start: {}",
        names.group,
        names.txn_ids.join(", "),
        find_coordinators(&broker_addrs, &names)
            .await
            .map_or("unknown".to_owned(), |c| format!("{c:?}"))
    );
    let shared = Arc::new(Shared::new(names.clone()));
    let workload = Workload::start(&bootstrap, &shared, seed);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut anomalies = Vec::new();
    let mut nemesis = Nemesis::new(
        StdRng::seed_from_u64(seed),
        timing,
        args.no_coordinator_faults,
    );
    let faults_started = Instant::now();
    for i in 0..faults {
        let coordinators = find_coordinators(&broker_addrs, &names).await;
        let (name, fault) = nemesis.draw(
            &cluster.broker_ids(),
            &cluster.controller_ids(),
            coordinators.as_ref(),
        );
        println!(
            "[{:6.1}s] fault {:3}: {name:28} {}",
            started.elapsed().as_secs_f64(),
            i + 1,
            nemesis::describe(&fault)
        );
        nemesis.run(&mut cluster, &name, &fault).await?;
        for (id, status) in cluster.crashed() {
            anomalies.push(Anomaly {
                kind: "node-crash",
                detail: format!(
                    "node {id} exited on its own ({status}); log tail:\n{}",
                    cluster::log_tail(&cluster.nodes[&id], 20)
                ),
            });
            cluster.restart(id)?;
        }
    }
    let fault_time = faults_started.elapsed();
    // Heal everything (each fault heals itself; this is belt and braces).
    cluster.net.heal();
    let ids: Vec<i32> = cluster.nodes.keys().copied().collect();
    for id in &ids {
        cluster.resume(*id)?;
        cluster.restart(*id)?;
    }
    println!(
        "[{:6.1}s] healed; stopping the workload",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A client stuck in a blocking librdkafka call must not hold the checks up: after a
    // minute the checks go on without it (its thread is left behind).
    if tokio::time::timeout(Duration::from_secs(60), workload.stop(&shared))
        .await
        .is_err()
    {
        println!("the workload's clients did not all stop within 60 s; checking anyway");
    }

    // Convergence.
    let healed = Instant::now();
    let bound = if args.quick {
        CONVERGENCE_BOUND / 2
    } else {
        CONVERGENCE_BOUND
    };
    let (converged, partitions) = blocking(|| wait_converged(&bootstrap, broker_count, bound));
    let converged_after = healed.elapsed();
    match converged {
        Ok(()) => println!(
            "[{:6.1}s] converged after {:.1} s: {} partitions led with full ISR",
            started.elapsed().as_secs_f64(),
            converged_after.as_secs_f64(),
            partitions.len()
        ),
        Err(e) => {
            println!(
                "[{:6.1}s] NOT converged within {} s: {e}",
                started.elapsed().as_secs_f64(),
                bound.as_secs()
            );
            anomalies.push(Anomaly {
                kind: "no-convergence",
                detail: format!("within {} s: {e}", bound.as_secs()),
            });
        }
    }

    // Final reads and checks.
    let acked = shared
        .acked
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let txns = shared
        .txns
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let samples = shared
        .samples
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let acked_commits = shared
        .acked_commits
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let group_reads = std::mem::take(
        &mut *shared
            .group_reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );

    let final_offsets =
        blocking(|| final_committed_offsets(&bootstrap, &names.group, Duration::from_secs(60)));
    let final_offsets = match final_offsets {
        Ok(o) => o,
        Err(e) => {
            anomalies.push(Anomaly {
                kind: "offsets-unreadable",
                detail: format!("OffsetFetch of {} after healing: {e}", names.group),
            });
            BTreeMap::new()
        }
    };
    anomalies.extend(checker::check_offsets(
        &samples,
        &acked_commits,
        &final_offsets,
    ));

    let acked_read = blocking(|| {
        read_all(
            &bootstrap,
            workload::ACKED_TOPIC,
            workload::ACKED_PARTITIONS,
            Duration::from_secs(120),
        )
    });
    let mut acked_read_count = 0;
    match acked_read {
        Ok(log) => {
            acked_read_count = log.values().map(Vec::len).sum::<usize>();
            anomalies.extend(checker::check_acked(&acked, &log));
            anomalies.extend(checker::check_group_reads(&group_reads, &log));
        }
        Err(e) => anomalies.push(Anomaly {
            kind: "read-stalled",
            detail: e,
        }),
    }
    let txn_read = blocking(|| {
        read_all(
            &bootstrap,
            workload::TXN_TOPIC,
            workload::TXN_PARTITIONS,
            Duration::from_secs(120),
        )
    });
    let mut txn_read_count = 0;
    match txn_read {
        Ok(log) => {
            txn_read_count = log.values().map(Vec::len).sum::<usize>();
            anomalies.extend(checker::check_txns(&txns, &log));
        }
        Err(e) => anomalies.push(Anomaly {
            kind: "read-stalled",
            detail: e,
        }),
    }

    // Replicas, compared after a clean stop (brokers first: their controlled shutdown needs
    // the controllers).
    let mut order: Vec<i32> = cluster.broker_ids();
    order.extend(cluster.controller_ids());
    blocking(|| {
        for id in &order {
            let _ = cluster.stop(*id, Duration::from_secs(30));
        }
    });
    let mut compared = 0;
    for (topic, p, replicas) in &partitions {
        if replicas.len() < 2 {
            continue;
        }
        let mut logs: Vec<(i32, ReplicaLog)> = Vec::new();
        for r in replicas {
            let Some(node) = cluster.nodes.get(r) else {
                continue;
            };
            match replica_log(&node.data_dir(), topic, *p) {
                Ok(l) => logs.push((*r, l)),
                Err(e) => anomalies.push(Anomaly {
                    kind: "replica-unreadable",
                    detail: format!("{topic}-{p} on node {r}: {e}"),
                }),
            }
        }
        compared += 1;
        anomalies.extend(checker::check_replicas(&format!("{topic}-{p}"), &logs));
    }
    if acked.is_empty() {
        anomalies.push(Anomaly {
            kind: "no-progress",
            detail: "no record was acknowledged: the run checked nothing".into(),
        });
    }

    // Summary.
    let counters = cluster.net.counters();
    let outcome = |o: checker::Outcome| txns.iter().filter(|t| t.outcome == o).count();
    println!("\n==== summary (seed {seed}) ====");
    println!(
        "duration: {:.0} s ({:.0} s of faults, convergence {:.1} s)",
        started.elapsed().as_secs_f64(),
        fault_time.as_secs_f64(),
        converged_after.as_secs_f64()
    );
    println!("faults: {} injected", nemesis.counts.values().sum::<u64>());
    for (k, n) in &nemesis.counts {
        println!("  {k:32} {n}");
    }
    println!(
        "proxies: {} connections accepted ({} from nodes, the rest from clients), {} forwarded, {} refused (cut pair), {} cut while open",
        counters.accepted, counters.from_nodes, counters.forwarded, counters.refused, counters.cut
    );
    println!(
        "idempotent producer: {} acknowledged, {} failed, {} sessions; {} records read back",
        acked.len(),
        shared.produce_failed.load(Ordering::Relaxed),
        shared.producer_sessions.load(Ordering::Relaxed),
        acked_read_count
    );
    println!(
        "transactions: {} committed, {} aborted, {} unknown; {} records read (read_committed); {} producer (re)starts",
        outcome(checker::Outcome::Committed),
        outcome(checker::Outcome::Aborted),
        outcome(checker::Outcome::Unknown),
        txn_read_count,
        shared.txn_producer_restarts.load(Ordering::Relaxed)
    );
    println!(
        "group: {} commits acknowledged, {} failed, {} offset samples, {} records consumed; final offsets {:?}",
        shared.commits_ok.load(Ordering::Relaxed),
        shared.commits_failed.load(Ordering::Relaxed),
        samples.len(),
        group_reads.len(),
        final_offsets
    );
    println!("replicas: {compared} partitions compared");
    let mut by_kind: BTreeMap<&str, Vec<&Anomaly>> = BTreeMap::new();
    for a in &anomalies {
        by_kind.entry(a.kind).or_default().push(a);
    }
    let listing: String = anomalies
        .iter()
        .map(|a| format!("{}: {}\n", a.kind, a.detail))
        .collect();
    let list_path = dir.join("anomalies.txt");
    let listed = std::fs::write(&list_path, listing).is_ok();
    println!(
        "anomalies: {}{}",
        anomalies.len(),
        if listed {
            format!(
                " (all of them in {}; up to 5 of each kind below)",
                list_path.display()
            )
        } else {
            String::new()
        }
    );
    for (k, v) in &by_kind {
        println!("  {k:32} {}", v.len());
        for a in v.iter().take(5) {
            println!("      {}", a.detail);
        }
    }
    println!("{}", if anomalies.is_empty() { "PASS" } else { "FAIL" });
    Ok(anomalies)
}

fn tails(cluster: &Cluster) -> String {
    cluster
        .nodes
        .values()
        .map(|n| format!("--- node {} ---\n{}", n.id, cluster::log_tail(n, 15)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn metadata_consumer(bootstrap: &str) -> Result<BaseConsumer, KafkaError> {
    workload::client_config(bootstrap).create()
}

fn wait_for_brokers(bootstrap: &str, brokers: usize, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let consumer = metadata_consumer(bootstrap).map_err(|e| e.to_string())?;
    loop {
        let seen = consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .map(|m| m.brokers().len())
            .unwrap_or(0);
        if seen >= brokers {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {seen} of {brokers} brokers registered within {timeout:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn create_topics(bootstrap: &str) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = workload::client_config(bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Handle::current();
    for (name, partitions) in [
        (workload::ACKED_TOPIC, workload::ACKED_PARTITIONS),
        (workload::TXN_TOPIC, workload::TXN_PARTITIONS),
    ] {
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(3))
            .set("min.insync.replicas", "2");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = rt
                .block_on(admin.create_topics(
                    [&topic],
                    &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
                ))
                .map_err(|e| e.to_string())
                .and_then(|mut v| {
                    v.pop()
                        .ok_or_else(|| "no result".to_owned())?
                        .map_err(|(_, e)| format!("{e:?}"))
                });
            match r {
                Ok(_) => break,
                Err(e) if e.contains("TopicAlreadyExists") => break,
                Err(e) if Instant::now() > deadline => return Err(format!("creating {name}: {e}")),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }
    wait_converged(bootstrap, 0, Duration::from_secs(60)).0
}

/// `(topic, partition, replicas)` of every partition.
type Partitions = Vec<(String, i32, Vec<i32>)>;

/// Waits until every partition is led with a full ISR and `brokers` brokers are registered.
/// Returns whether that happened (or what was still wrong at the deadline) and the partitions
/// as last seen.
fn wait_converged(
    bootstrap: &str,
    brokers: usize,
    timeout: Duration,
) -> (Result<(), String>, Partitions) {
    let deadline = Instant::now() + timeout;
    let consumer = match metadata_consumer(bootstrap) {
        Ok(c) => c,
        Err(e) => return (Err(e.to_string()), Vec::new()),
    };
    let mut seen = Vec::new();
    loop {
        let last;
        match consumer.fetch_metadata(None, Duration::from_secs(5)) {
            Ok(md) => {
                let mut out = Vec::new();
                let mut bad = Vec::new();
                if md.brokers().len() < brokers {
                    bad.push(format!(
                        "{} of {brokers} brokers registered",
                        md.brokers().len()
                    ));
                }
                for w in [workload::ACKED_TOPIC, workload::TXN_TOPIC] {
                    if !md.topics().iter().any(|t| t.name() == w) {
                        bad.push(format!("{w} missing"));
                    }
                }
                for t in md.topics() {
                    if let Some(e) = t.error() {
                        bad.push(format!("{}: {e:?}", t.name()));
                        continue;
                    }
                    for p in t.partitions() {
                        let (replicas, isr) = (p.replicas().to_vec(), p.isr());
                        if p.leader() < 0 {
                            bad.push(format!("{}-{} has no leader", t.name(), p.id()));
                        } else if isr.len() < replicas.len() {
                            bad.push(format!(
                                "{}-{} ISR {isr:?} of {replicas:?}",
                                t.name(),
                                p.id()
                            ));
                        }
                        out.push((t.name().to_owned(), p.id(), replicas));
                    }
                }
                seen = out;
                if bad.is_empty() {
                    return (Ok(()), seen);
                }
                let more = bad.len().saturating_sub(8);
                bad.truncate(8);
                let tail = if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                };
                last = format!("{}{tail}", bad.join("; "));
            }
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline {
            return (Err(last), seen);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The first variant of the group and transactional ids whose coordinators are one broker
/// (variant 0 when none of the first 100 is, or FindCoordinator keeps failing).
async fn colocated_names(brokers: &[String]) -> workload::Names {
    for k in 0..100 {
        let names = workload::Names::variant(k);
        match find_coordinators(brokers, &names).await {
            Some(c) if c.len() == 1 => return names,
            Some(_) => {}
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    workload::Names::variant(0)
}

async fn find_coordinators(brokers: &[String], names: &workload::Names) -> Option<BTreeSet<i32>> {
    use broker_embedded::client::KafkaConnection;
    use kafka_protocol::messages::FindCoordinatorRequest;
    use kafka_protocol::protocol::StrBytes;
    let mut keys = vec![(0i8, names.group.clone())];
    keys.extend(names.txn_ids.iter().map(|t| (1i8, t.clone())));
    let mut out = BTreeSet::new();
    'key: for (key_type, key) in keys {
        for addr in brokers {
            let Ok(mut c) =
                KafkaConnection::connect(addr, "chaos-nemesis", Duration::from_secs(2)).await
            else {
                continue;
            };
            let req = FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(key.clone()))
                .with_key_type(key_type);
            if let Ok((_, resp)) = c.send(req, 1, 3, Duration::from_secs(2)).await {
                if resp.error_code == 0 {
                    out.insert(resp.node_id.0);
                    continue 'key;
                }
            }
        }
        return None;
    }
    Some(out)
}

fn final_committed_offsets(
    bootstrap: &str,
    group: &str,
    timeout: Duration,
) -> Result<checker::OffsetSample, String> {
    let consumer = workload::offsets_reader(bootstrap, group).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    loop {
        match workload::committed_offsets(&consumer) {
            Ok(o) if o.len() == workload::ACKED_PARTITIONS as usize => return Ok(o),
            Ok(o) if Instant::now() > deadline => return Err(format!("partial answer {o:?}")),
            Err(e) if Instant::now() > deadline => return Err(e.to_string()),
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Every record of `topic` under read_committed, up to the high watermarks taken first.
fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<Log, String> {
    let consumer: BaseConsumer = workload::client_config(bootstrap)
        .set("group.id", "chaos-checker")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        loop {
            match consumer.fetch_watermarks(topic, p, Duration::from_secs(5)) {
                Ok((_, high)) => {
                    ends.insert(p, high);
                    break;
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("{topic}-{p} watermarks: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut out: Log = (0..partitions).map(|p| (p, Vec::new())).collect();
    let mut done: BTreeSet<i32> = ends
        .iter()
        .filter(|(_, e)| **e == 0)
        .map(|(p, _)| *p)
        .collect();
    let position = |p: i32| -> i64 {
        consumer
            .position()
            .ok()
            .and_then(|tpl| tpl.find_partition(topic, p).map(|e| e.offset()))
            .and_then(|o| match o {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(0)
    };
    while done.len() < partitions as usize {
        if Instant::now() > deadline {
            let at: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, position(p))).collect();
            return Err(format!(
                "reading {topic} stalled at positions {at:?} of high watermarks {ends:?}"
            ));
        }
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let value = m
                    .payload()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                if let Some(v) = out.get_mut(&m.partition()) {
                    v.push((m.offset(), value));
                }
                if m.offset() + 1 >= ends.get(&m.partition()).copied().unwrap_or(0) {
                    done.insert(m.partition());
                }
            }
            Some(Err(KafkaError::PartitionEOF(p)))
                if position(p) >= ends.get(&p).copied().unwrap_or(0) =>
            {
                done.insert(p);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The batches of a partition directory's segments, in order.
fn replica_log(data_dir: &Path, topic: &str, partition: i32) -> Result<ReplicaLog, String> {
    use broker_embedded::record::BatchIter;
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    let mut out = Vec::new();
    for s in segments {
        let bytes = std::fs::read(&s).map_err(|e| format!("{}: {e}", s.display()))?;
        for b in BatchIter::new(&bytes) {
            let b = b.map_err(|(pos, e)| format!("{} at {pos}: {e}", s.display()))?;
            out.push((b.header.base_offset, b.bytes.to_vec()));
        }
    }
    Ok(out)
}

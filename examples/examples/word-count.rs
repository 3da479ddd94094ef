//! Word count: the classic Kafka Streams example, on the embedded broker or on a cluster.
//!
//! ```text
//! cargo run -p examples --example word-count -- [--input FILE | -] [--top N]
//!     [--data-dir DIR] [--follow] [--threads N] [--exactly-once]
//! cargo run -p examples --example word-count -- --bootstrap-server HOST:PORT
//!     [--application-id ID] [--input FILE | -] [--until-idle SECS] [--data-dir DIR]
//!     [--threads N] [--standby-replicas N] [--instance-id ID] [--config KEY=VALUE]... [--top N]
//!     [--exactly-once]
//! ```
//!
//! Embedded (the default): reads text (a bundled sample when no input is given), writes its
//! lines to the `word-count-input` topic of an in-process broker, runs the word-count
//! topology, and once every line is counted prints the top N words as `<word> <count>`, then
//! the number of distinct words and of words in total. With `--follow` it keeps reading new
//! input (stdin or a growing file) and prints the counts again after each batch, until Ctrl-C.
//!
//! On a cluster (`--bootstrap-server`, e.g. `broker serve`): `--input` first produces the
//! lines to the topic `text-lines` (created with 8 partitions if missing); without it the
//! instance only processes. Any number of instances with the same `--application-id` share
//! the tasks; each prints `tasks owned: ...` after every rebalance. Count updates go to
//! `word-counts`. `--until-idle SECS` commits and exits cleanly after SECS seconds without new
//! input, printing the top words of the tasks it owned; without it the instance runs until
//! Ctrl-C.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use examples::word_count::{self, Options, WordCount};
use streams_core::ProcessingGuarantee;

/// Word count on the embedded broker: counts the words of a text with a Kafka Streams-style
/// topology and prints the most frequent ones, the number of distinct words and the total.
#[derive(Parser)]
#[command(name = "word-count")]
struct Args {
    /// Text to count: a file, or `-` for stdin. Without it, a bundled sample text.
    #[arg(long, value_name = "FILE | -")]
    input: Option<String>,
    /// How many of the most frequent words to print.
    #[arg(long, value_name = "N", default_value_t = 20)]
    top: usize,
    /// Directory for the broker's log and the application's state; a re-run with the same
    /// directory continues from it. Default: a temporary directory, deleted at exit.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A Kafka-protocol cluster to run against (`broker serve`, Kafka) instead of the
    /// embedded broker.
    #[arg(long = "bootstrap-server", value_name = "HOST:PORT")]
    bootstrap: Option<String>,
    /// The application id on a cluster: instances with the same id share the work.
    #[arg(
        long = "application-id",
        value_name = "ID",
        default_value = "word-count",
        requires = "bootstrap"
    )]
    application_id: String,
    /// On a cluster: commit and exit after SECS seconds without new input.
    #[arg(long = "until-idle", value_name = "SECS", requires = "bootstrap")]
    until_idle: Option<u64>,
    /// On a cluster: `num.standby.replicas` (warm copies of each task's state on other
    /// instances).
    #[arg(long = "standby-replicas", value_name = "N", requires = "bootstrap")]
    standby_replicas: Option<u32>,
    /// On a cluster: `group.instance.id` (static membership: a restart within the session
    /// timeout keeps this instance's tasks without a rebalance).
    #[arg(long = "instance-id", value_name = "ID", requires = "bootstrap")]
    instance_id: Option<String>,
    /// On a cluster: `session.timeout.ms` of the instance's group members.
    #[arg(
        long = "session-timeout-ms",
        value_name = "MS",
        default_value_t = 10_000,
        requires = "bootstrap"
    )]
    session_timeout_ms: u64,
    /// On a cluster: `commit.interval.ms`.
    #[arg(
        long = "commit-interval-ms",
        value_name = "MS",
        default_value_t = 1_000,
        requires = "bootstrap"
    )]
    commit_interval_ms: u64,
    /// On a cluster: a Kafka Streams property, as `KEY=VALUE` (repeatable; for example
    /// `acceptable.recovery.lag=0`, `consumer.fetch.max.bytes=1048576`). Unknown keys are
    /// refused at start.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value, requires = "bootstrap")]
    config: Vec<(String, String)>,
    /// Keep reading new input (stdin, or a growing file like `tail -f`) and print the counts
    /// again after each batch, until Ctrl-C. Needs --input.
    #[arg(long, requires = "input")]
    follow: bool,
    /// Stream threads of the application (at least 1).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = at_least_one)]
    threads: usize,
    /// `processing.guarantee=exactly_once_v2`: every commit writes the counts, the state
    /// changelogs and the input offsets in one transaction, so a crash neither loses nor
    /// duplicates a count update (at-least-once otherwise).
    #[arg(long = "exactly-once")]
    exactly_once: bool,
}

fn key_value(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {value:?}")),
    }
}

fn at_least_one(value: &str) -> Result<usize, String> {
    value
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| "needs an integer >= 1".to_owned())
}

fn print_counts(wc: &WordCount, top: usize) -> Result<(), word_count::WordCountError> {
    let counts = wc.counts()?;
    for (word, count) in word_count::top(&counts, top) {
        println!("{word} {count}");
    }
    println!("distinct words: {}", counts.len());
    println!("total words: {}", counts.values().sum::<i64>());
    Ok(())
}

/// Sends lines of the input to `tx` as they become available; for a file in follow mode,
/// keeps polling for appended data like `tail -f`.
fn read_lines(
    input: Option<String>,
    follow: bool,
    tx: mpsc::Sender<String>,
) -> std::io::Result<()> {
    match input.as_deref() {
        None => {
            for l in word_count::SAMPLE_TEXT.lines() {
                if tx.send(l.to_owned()).is_err() {
                    break;
                }
            }
        }
        Some("-") => {
            for l in std::io::stdin().lock().lines() {
                if tx.send(l?).is_err() {
                    break;
                }
            }
        }
        Some(path) => {
            let mut reader = BufReader::new(std::fs::File::open(path)?);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = reader.by_ref().read_until(b'\n', &mut buf)?;
                if n == 0 {
                    if !follow {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                if follow && !buf.ends_with(b"\n") {
                    // A partial last line: wait for its end.
                    let mut rest = Vec::new();
                    while !rest.ends_with(b"\n") {
                        if reader.by_ref().read_until(b'\n', &mut rest)? == 0 {
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                    buf.extend_from_slice(&rest);
                }
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned();
                if tx.send(line).is_err() {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Runs one instance against a cluster (see the module doc).
fn run_cluster(args: &Args, server: &str) -> Result<(), Box<dyn std::error::Error>> {
    use examples::word_count_cluster as wcc;
    if args.follow {
        return Err(
            "--follow is for the embedded broker; on a cluster, run an instance \
                    without --until-idle and produce lines with another one"
                .into(),
        );
    }
    wcc::ensure_topics(server)?;
    if let Some(input) = &args.input {
        let (tx, rx) = mpsc::channel();
        let reader = {
            let input = input.clone();
            std::thread::spawn(move || read_lines(Some(input), false, tx))
        };
        let lines: Vec<String> = rx.iter().collect();
        if let Ok(Err(e)) = reader.join() {
            return Err(format!("reading the input: {e}").into());
        }
        let n = wcc::produce_lines(server, &lines)?;
        println!("produced {n} lines to {}", wcc::INPUT_TOPIC);
    }
    let temp;
    let state_dir = match &args.data_dir {
        Some(d) => d.join("state"),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().join("state")
        }
    };
    let mut options = wcc::ClusterOptions::new(server, &args.application_id, state_dir);
    options.threads = args.threads;
    options.session_timeout = Duration::from_millis(args.session_timeout_ms);
    options.commit_interval = Duration::from_millis(args.commit_interval_ms);
    if args.exactly_once {
        options
            .properties
            .push(("processing.guarantee".into(), "exactly_once_v2".into()));
    }
    if let Some(n) = args.standby_replicas {
        options
            .properties
            .push(("num.standby.replicas".into(), n.to_string()));
    }
    options.properties.extend(args.config.iter().cloned());
    if let Some(id) = &args.instance_id {
        options
            .properties
            .push(("group.instance.id".into(), id.clone()));
    }
    let (state_tx, state_rx) = mpsc::channel();
    let mut app = wcc::start(&options)?;
    app.set_state_listener(move |new, _old| {
        let _ = state_tx.send(new);
    });
    let stop = examples::run::ctrl_c_flag();
    let print_tasks = examples::run::print_tasks;
    if app.state() == streams_core::StreamsState::Running {
        print_tasks(&app);
    }
    let mut owned = app.active_tasks();
    let mut last_processed = app.processed_records();
    let mut last_progress = std::time::Instant::now();
    loop {
        match state_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(streams_core::StreamsState::Running) => {
                print_tasks(&app);
                owned = app.active_tasks();
                // Idle time counts while running: a rebalance (and the restoration after
                // it) is not idleness.
                last_progress = std::time::Instant::now();
            }
            Ok(streams_core::StreamsState::Error) => {
                return Err(format!("the application failed: {}", app.errors().join("; ")).into());
            }
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if app.state() == streams_core::StreamsState::Running {
            owned = app.active_tasks();
        }
        let processed = app.processed_records();
        if processed != last_processed {
            last_processed = processed;
            last_progress = std::time::Instant::now();
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if app.state() != streams_core::StreamsState::Running {
            last_progress = std::time::Instant::now();
        }
        if let Some(idle) = args.until_idle {
            if last_progress.elapsed() >= Duration::from_secs(idle) {
                break;
            }
        }
    }
    let (restored, standby_updates) = (app.restored_records(), app.standby_updated_records());
    app.close();
    let errors = app.errors();
    if !errors.is_empty() {
        return Err(format!("the application failed: {}", errors.join("; ")).into());
    }
    println!("restored {restored} changelog records; standby updates {standby_updates}");
    let partitions = wcc::count_partitions(&owned);
    let counts = wcc::read_counts(server, Some(&partitions))?;
    println!(
        "processed {last_processed} records; counting partitions owned at the end: {:?}",
        partitions
    );
    for (word, count) in word_count::top(&counts, args.top) {
        println!("{word} {count}");
    }
    println!("distinct words: {}", counts.len());
    println!("total words: {}", counts.values().sum::<i64>());
    Ok(())
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(server) = args.bootstrap.clone() {
        return run_cluster(&args, &server);
    }
    let temp;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let mut options = Options::new(&data_dir);
    options.threads = args.threads;
    if args.exactly_once {
        options.processing_guarantee = ProcessingGuarantee::ExactlyOnceV2;
    }
    let mut wc = WordCount::start(&options)?;

    let (tx, rx) = mpsc::channel();
    let (input, follow) = (args.input.clone(), args.follow);
    let reader = std::thread::spawn(move || read_lines(input, follow, tx));

    let stop = if args.follow {
        examples::run::ctrl_c_flag()
    } else {
        Arc::new(AtomicBool::new(false))
    };

    let mut batch = Vec::new();
    let mut pending = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                batch.push(line);
                if batch.len() < 5000 {
                    continue;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                if !batch.is_empty() {
                    wc.produce_lines(&batch)?;
                    batch.clear();
                }
                if !args.follow {
                    break;
                }
            }
        }
        if !batch.is_empty() {
            wc.produce_lines(&batch)?;
            batch.clear();
            pending = true;
        }
        if args.follow {
            if pending && wc.app().is_caught_up()? {
                print_counts(&wc, args.top)?;
                println!();
                pending = false;
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
        }
    }
    // In follow mode the reader may be blocked on stdin or polling a file forever: leave it
    // (the process exits below); otherwise it has finished and its error matters.
    if !args.follow {
        if let Ok(Err(e)) = reader.join() {
            return Err(format!("reading the input: {e}").into());
        }
    }
    wc.wait_until_processed(Duration::from_secs(600))?;
    print_counts(&wc, args.top)?;
    wc.close()?;
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("word-count: {e}");
            ExitCode::FAILURE
        }
    }
}

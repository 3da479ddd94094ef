//! GPS trucks: a fleet of trucks reporting their positions, on the embedded broker or on a
//! cluster.
//!
//! ```text
//! cargo run -p examples --example gps-trucks -- [--trucks N] [--minutes M] [--seed S]
//!     [--data-dir DIR] [--threads N] [--follow [--speed X]] [--exactly-once]
//! cargo run -p examples --example gps-trucks -- --bootstrap-server HOST:PORT
//!     [--application-id ID] [--no-produce] [--until-idle SECS] [--trucks N] [--minutes M]
//!     [--seed S] [--data-dir DIR] [--threads N] [--exactly-once]
//! ```
//!
//! Generates the reports of N trucks over M minutes of event time (one per truck every 20
//! seconds, some out of order, a few late), writes them to the `trucks_gps` topic of an
//! in-process broker, runs the fleet topology (`examples::gps_trucks`), and once every report
//! is processed prints, per truck, the distance driven and the average speed over the closed
//! 5-minute windows and the latest position, then the speeding alerts and the geofence
//! alerts (entering or leaving one of the zones of the `zones` topic) with their times.
//! With `--follow` the reports are fed as a live stream (a minute of event time per second by
//! default, `--speed`), and the dashboard of latest positions is printed after every minute.
//!
//! On a cluster (`--bootstrap-server`, e.g. `broker serve`): the topics are created when
//! missing (10 partitions, `zones` compacted), the generated zones and reports are produced
//! to the cluster (unless `--no-produce`: further instances only process), and the
//! application runs through the wire backend. Any number of instances with the same
//! `--application-id` share the tasks; each prints `tasks owned: ...` after every rebalance.
//! An instance stops after a final commit once every input partition's committed offset is
//! at its end, or with `--until-idle SECS` after SECS seconds without new input (or at
//! Ctrl-C), then prints the same summary read back from the cluster's output topics (the
//! late reports dropped are this instance's).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use examples::gps_trucks::cluster::{self, ClusterOptions};
use examples::gps_trucks::generator::Fleet;
use examples::gps_trucks::generator::{self, Arrival, FleetConfig};
use examples::gps_trucks::geo::{format_time, format_utc};
use examples::gps_trucks::geofence::Crossing;
use examples::gps_trucks::{
    FleetResults, GpsTrucks, Options, APPLICATION_ID, GRACE, SPEED_ADVANCE, SPEED_LIMIT_KMH,
    SPEED_WINDOW, STATS_WINDOW,
};
use streams_core::ProcessingGuarantee;

/// A fleet of trucks on the embedded broker or a cluster: latest positions, distance and
/// average speed per truck and window, speeding and geofence alerts.
#[derive(Parser)]
#[command(name = "gps-trucks")]
struct Args {
    /// Number of trucks.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = at_least_one)]
    trucks: usize,
    /// Minutes of event time to generate (from 2026-06-01 08:00 UTC).
    #[arg(long, value_name = "M", default_value_t = 60, value_parser = at_least_one_u32)]
    minutes: u32,
    /// Seed of the generator: the same seed gives the same fleet.
    #[arg(long, value_name = "S", default_value_t = 42)]
    seed: u64,
    /// Directory for the broker's log and the application's state. Default: a temporary
    /// directory, deleted at exit.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Stream threads of the application (at least 1).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = at_least_one)]
    threads: usize,
    /// Feed the reports as a live stream and print the latest positions after every minute
    /// of event time.
    #[arg(long)]
    follow: bool,
    /// With --follow: event time per wall-clock time (60 = a minute per second).
    #[arg(long, value_name = "X", default_value_t = 60.0, requires = "follow")]
    speed: f64,
    /// A Kafka-protocol cluster to run against (`broker serve`, Kafka) instead of the
    /// embedded broker.
    #[arg(
        long = "bootstrap-server",
        value_name = "HOST:PORT",
        conflicts_with = "follow"
    )]
    bootstrap: Option<String>,
    /// The application id on a cluster: instances with the same id share the work.
    #[arg(
        long = "application-id",
        value_name = "ID",
        default_value = APPLICATION_ID,
        requires = "bootstrap"
    )]
    application_id: String,
    /// On a cluster: do not produce the generated input (another instance does).
    #[arg(long = "no-produce", requires = "bootstrap")]
    no_produce: bool,
    /// On a cluster: commit and exit after SECS seconds without new input, instead of once
    /// every input partition is processed and committed.
    #[arg(long = "until-idle", value_name = "SECS", requires = "bootstrap")]
    until_idle: Option<u64>,
    /// On a cluster: `session.timeout.ms` of the instance's group members.
    #[arg(
        long = "session-timeout-ms",
        value_name = "MS",
        default_value_t = 10_000,
        requires = "bootstrap"
    )]
    session_timeout_ms: u64,
    /// `processing.guarantee=exactly_once_v2`: the results, the state changelogs and the
    /// input offsets are committed in one transaction, so a crash neither loses nor
    /// duplicates a result (at-least-once otherwise).
    #[arg(long = "exactly-once")]
    exactly_once: bool,
}

fn guarantee(args: &Args) -> ProcessingGuarantee {
    if args.exactly_once {
        ProcessingGuarantee::ExactlyOnceV2
    } else {
        ProcessingGuarantee::AtLeastOnce
    }
}

fn at_least_one(value: &str) -> Result<usize, String> {
    value
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| "needs an integer >= 1".to_owned())
}

fn at_least_one_u32(value: &str) -> Result<u32, String> {
    value
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| "needs an integer >= 1".to_owned())
}

fn print_summary(results: &FleetResults, zones: &BTreeMap<String, String>) {
    println!(
        "Per truck, over the closed {}-minute windows (grace {} min):",
        STATS_WINDOW.as_secs() / 60,
        GRACE.as_secs() / 60
    );
    println!(
        "{:<10} {:>8} {:>9} {:>8}  latest position (UTC time, lat, lon)",
        "truck", "km", "avg km/h", "windows"
    );
    for (truck, latest) in &results.latest {
        let windows: Vec<_> = results
            .windows
            .range((truck.clone(), i64::MIN)..=(truck.clone(), i64::MAX))
            .map(|(_, s)| *s)
            .collect();
        let km: f64 = windows.iter().map(|s| s.km).sum();
        let secs: f64 = windows.iter().map(|s| s.secs).sum();
        let avg = if secs > 0.0 {
            km / (secs / 3600.0)
        } else {
            0.0
        };
        println!(
            "{truck:<10} {km:>8.2} {avg:>9.1} {:>8}  {} {:.5} {:.5}",
            windows.len(),
            format_time(latest.ts),
            latest.lat,
            latest.lon
        );
    }
    println!(
        "Speeding alerts ({}-minute windows every {} minutes, average above {SPEED_LIMIT_KMH} km/h): {}",
        SPEED_WINDOW.as_secs() / 60,
        SPEED_ADVANCE.as_secs() / 60,
        results.speeding.len()
    );
    let mut alerts = results.speeding.clone();
    alerts.sort_by(|a, b| (a.start, &a.truck).cmp(&(b.start, &b.truck)));
    for a in &alerts {
        println!(
            "{} to {}  {}  {:.1} km/h",
            format_utc(a.start),
            format_time(a.end),
            a.truck,
            a.avg_kmh
        );
    }
    println!("Geofence alerts: {}", results.geofence.len());
    let mut alerts = results.geofence.clone();
    alerts.sort_by(|a, b| {
        (a.ts, &a.truck, a.crossing, &a.zone).cmp(&(b.ts, &b.truck, b.crossing, &b.zone))
    });
    for a in &alerts {
        let verb = match a.crossing {
            Crossing::Enter => "enters",
            Crossing::Exit => "leaves",
        };
        let name = zones.get(&a.zone).map_or("", String::as_str);
        println!(
            "{}  {}  {verb} {} ({name}) at {:.5} {:.5}",
            format_utc(a.ts),
            a.truck,
            a.zone,
            a.lat,
            a.lon
        );
    }
}

fn zone_names(fleet: &Fleet) -> BTreeMap<String, String> {
    fleet
        .zones
        .iter()
        .map(|(id, z)| (id.clone(), z.name.clone()))
        .collect()
}

fn run_cluster(args: &Args, server: &str, fleet: &Fleet) -> Result<(), Box<dyn std::error::Error>> {
    cluster::ensure_topics(server)?;
    if !args.no_produce {
        let (zones, reports) = cluster::produce(server, fleet)?;
        println!("produced {zones} zones and {reports} reports to {server}");
    }
    let temp;
    let state_dir = match &args.data_dir {
        Some(d) => d.join("state"),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().join("state")
        }
    };
    let mut options = ClusterOptions::new(server, state_dir);
    options.application_id = args.application_id.clone();
    options.threads = args.threads;
    options.session_timeout = Duration::from_millis(args.session_timeout_ms);
    options.processing_guarantee = guarantee(args);
    let (state_tx, state_rx) = mpsc::channel();
    let mut app = cluster::start(&options)?;
    app.set_state_listener(move |new, _old| {
        let _ = state_tx.send(new);
    });
    let stop = examples::run::ctrl_c_flag();
    let print_tasks = examples::run::print_tasks;
    if app.state() == streams_core::StreamsState::Running {
        print_tasks(&app);
    }
    let mut last_processed = app.processed_records();
    let mut last_progress = Instant::now();
    // Without --until-idle: done once caught up twice in a row (the second check covers what
    // the first one's commits wrote to repartition topics).
    let mut caught_up_streak = 0;
    loop {
        match state_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(streams_core::StreamsState::Running) => {
                print_tasks(&app);
                last_progress = Instant::now();
            }
            Ok(streams_core::StreamsState::Error) => {
                return Err(format!("the application failed: {}", app.errors().join("; ")).into());
            }
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let processed = app.processed_records();
        if processed != last_processed {
            last_processed = processed;
            last_progress = Instant::now();
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let running = app.state() == streams_core::StreamsState::Running;
        if !running {
            last_progress = Instant::now();
        }
        match args.until_idle {
            Some(idle) => {
                if last_progress.elapsed() >= Duration::from_secs(idle) {
                    break;
                }
            }
            None => {
                if running && app.is_caught_up()? {
                    caught_up_streak += 1;
                    if caught_up_streak >= 2 {
                        break;
                    }
                } else {
                    caught_up_streak = 0;
                }
            }
        }
    }
    let dropped = app.dropped_records();
    app.close();
    let errors = app.errors();
    if !errors.is_empty() {
        return Err(format!("the application failed: {}", errors.join("; ")).into());
    }
    let results = cluster::read_results(server)?;
    print_summary(&results, &zone_names(fleet));
    println!("Late reports dropped: {dropped}");
    Ok(())
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let fleet = generator::generate(&FleetConfig::new(args.trucks, args.minutes, args.seed));
    let count = |a: Arrival| fleet.reports.iter().filter(|r| r.arrival == a).count();
    println!(
        "GPS trucks: {} trucks, {} minutes from {} UTC (seed {}): {} reports, {} out of order, {} late",
        args.trucks,
        args.minutes,
        format_utc(FleetConfig::new(0, 0, 0).start_ms),
        args.seed,
        fleet.reports.len(),
        count(Arrival::OutOfOrder),
        count(Arrival::Late)
    );
    if let Some(server) = &args.bootstrap {
        return run_cluster(&args, server, &fleet);
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
    options.processing_guarantee = guarantee(&args);
    let app = GpsTrucks::start(&options)?;
    if args.follow {
        let started = std::time::Instant::now();
        let first = fleet.reports.first().map_or(0, |r| r.arrival_ms);
        let speed = args.speed.max(0.001);
        app.produce_live(&fleet, 60_000, Duration::from_secs(600), |app, until| {
            let results = app.results()?;
            println!("== {} UTC: latest positions ==", format_utc(until + 1));
            for (truck, p) in &results.latest {
                println!(
                    "{truck:<10} {} {:.5} {:.5}",
                    format_time(p.ts),
                    p.lat,
                    p.lon
                );
            }
            let due = Duration::from_secs_f64((until + 1 - first) as f64 / 1000.0 / speed);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            Ok(())
        })?;
    } else {
        app.produce(&fleet)?;
        app.wait_until_processed(Duration::from_secs(600))?;
    }
    let results = app.results()?;
    let dropped = app.app().dropped_records();
    app.close()?;
    print_summary(&results, &zone_names(&fleet));
    println!("Late reports dropped: {dropped}");
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
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gps-trucks: {e}");
            ExitCode::FAILURE
        }
    }
}

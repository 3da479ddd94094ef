//! GPS trucks: a fleet of trucks reporting their positions, on the embedded broker.
//!
//! ```text
//! cargo run -p examples --example gps-trucks -- [--trucks N] [--minutes M] [--seed S]
//!     [--data-dir DIR] [--threads N] [--follow [--speed X]] [--bootstrap-server HOST:PORT]
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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use examples::gps_trucks::generator::{self, Arrival, FleetConfig};
use examples::gps_trucks::geo::{format_time, format_utc};
use examples::gps_trucks::geofence::Crossing;
use examples::gps_trucks::{
    FleetResults, GpsTrucks, Options, GRACE, SPEED_ADVANCE, SPEED_LIMIT_KMH, SPEED_WINDOW,
    STATS_WINDOW,
};

/// A fleet of trucks on the embedded broker: latest positions, distance and average speed per
/// truck and window, speeding alerts.
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
    /// An external Kafka cluster to run against. Not supported yet (it needs the rdkafka
    /// backend): the example refuses it with an explanation.
    #[arg(long = "bootstrap-server", value_name = "HOST:PORT")]
    bootstrap: Option<String>,
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

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(server) = &args.bootstrap {
        return Err(format!(
            "--bootstrap-server {server}: running against an external Kafka cluster needs the \
             rdkafka backend, which is not built yet; run without it to use the embedded broker"
        )
        .into());
    }
    let temp;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
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
    let mut options = Options::new(&data_dir);
    options.threads = args.threads;
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
    let zones: BTreeMap<String, String> = fleet
        .zones
        .iter()
        .map(|(id, z)| (id.clone(), z.name.clone()))
        .collect();
    print_summary(&results, &zones);
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

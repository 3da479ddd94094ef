//! Broker demo: starts an embedded broker in a temporary (or given) directory, appends records
//! to a multi-partition topic, reads every record back verifying it, and prints throughput.
//!
//! ```text
//! cargo run -p examples --example broker-demo -- [--records N] [--partitions P]
//!     [--record-size BYTES] [--batch RECORDS] [--fsync] [--data-dir DIR]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use broker_embedded::{
    partition_for_key, Broker, BrokerConfig, FetchOptions, FlushPolicy, NewTopic, ProduceRecord,
};
use bytes::Bytes;

struct Args {
    records: u64,
    partitions: u32,
    record_size: usize,
    batch: usize,
    fsync: bool,
    data_dir: Option<PathBuf>,
}

const USAGE: &str = "usage: broker-demo [--records N] [--partitions P] [--record-size BYTES] \
                     [--batch RECORDS] [--fsync] [--data-dir DIR]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        records: 200_000,
        partitions: 4,
        record_size: 100,
        batch: 500,
        fsync: false,
        data_dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        let num = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: `{v}` is not a number"))
        };
        match flag.as_str() {
            "--records" => a.records = num("--records", value("--records")?)?,
            "--partitions" => {
                a.partitions = num("--partitions", value("--partitions")?)?.max(1) as u32
            }
            "--record-size" => {
                a.record_size = num("--record-size", value("--record-size")?)? as usize
            }
            "--batch" => a.batch = num("--batch", value("--batch")?)?.max(1) as usize,
            "--fsync" => a.fsync = true,
            "--data-dir" => a.data_dir = Some(PathBuf::from(value("--data-dir")?)),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(a)
}

fn rate(n: f64, d: Duration) -> f64 {
    n / d.as_secs_f64().max(1e-9)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker-demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let tmp;
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let policy = if args.fsync {
        FlushPolicy::EveryBatch
    } else {
        FlushPolicy::Os
    };
    let broker = Broker::open(BrokerConfig::new(&dir).with_flush_policy(policy))?;
    let topic = "demo";
    if !broker.topic_exists(topic) {
        broker.create_topic(NewTopic::new(topic, args.partitions))?;
    }
    let partitions = broker.partition_count(topic)?;
    let start_offsets: Vec<i64> = (0..partitions as i32)
        .map(|p| broker.partition_offsets(topic, p).map(|o| o.log_end_offset))
        .collect::<Result<_, _>>()?;
    println!(
        "embedded broker in {} ({} partitions, fsync {})",
        dir.display(),
        partitions,
        if args.fsync {
            "per batch"
        } else {
            "left to the OS"
        }
    );

    // Append: keyed records, partitioned like the Java client, in batches per partition.
    let value = Bytes::from(vec![b'x'; args.record_size]);
    let mut pending: Vec<Vec<ProduceRecord>> = vec![Vec::new(); partitions as usize];
    let mut expected = vec![0u64; partitions as usize];
    let t0 = Instant::now();
    for i in 0..args.records {
        let key = format!("key-{i}");
        let p = partition_for_key(key.as_bytes(), partitions).unwrap_or(0) as usize;
        pending[p].push(ProduceRecord::new(key, value.clone()));
        expected[p] += 1;
        if pending[p].len() >= args.batch {
            broker.produce(topic, p as i32, &std::mem::take(&mut pending[p]))?;
        }
    }
    for (p, recs) in pending.into_iter().enumerate() {
        if !recs.is_empty() {
            broker.produce(topic, p as i32, &recs)?;
        }
    }
    let append_time = t0.elapsed();
    let bytes = args.records as f64 * args.record_size as f64;
    println!(
        "appended {} records ({:.1} MB of values) in {:.3}s: {:.0} records/s, {:.1} MB/s",
        args.records,
        bytes / 1e6,
        append_time.as_secs_f64(),
        rate(args.records as f64, append_time),
        rate(bytes / 1e6, append_time)
    );

    // Read back every partition from where this run started and verify the records.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let opts = FetchOptions {
        max_wait: Duration::ZERO,
        max_bytes: 1 << 20,
        ..FetchOptions::default()
    };
    let t1 = Instant::now();
    let mut read = 0u64;
    for p in 0..partitions as i32 {
        let mut offset = start_offsets[p as usize];
        let mut count = 0u64;
        loop {
            let recs = rt.block_on(broker.fetch_records(topic, p, offset, opts))?;
            let Some(last) = recs.last() else { break };
            offset = last.offset + 1;
            for r in &recs {
                let key_ok = r
                    .key
                    .as_deref()
                    .is_some_and(|k| partition_for_key(k, partitions) == Some(p as u32));
                if !key_ok || r.value.as_deref() != Some(&value[..]) {
                    return Err(
                        format!("record {p}/{} does not match what was written", r.offset).into(),
                    );
                }
            }
            count += recs.len() as u64;
        }
        if count != expected[p as usize] {
            return Err(format!(
                "partition {p}: read {count} records, wrote {}",
                expected[p as usize]
            )
            .into());
        }
        read += count;
    }
    let read_time = t1.elapsed();
    println!(
        "read back {} records in {:.3}s: {:.0} records/s, {:.1} MB/s (all verified)",
        read,
        read_time.as_secs_f64(),
        rate(read as f64, read_time),
        rate(bytes / 1e6, read_time)
    );
    broker.shutdown()?;
    Ok(())
}

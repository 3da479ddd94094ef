//! Every input the fuzz targets in `broker-embedded/fuzz` ever crashed on (see docs/TESTING.md),
//! replayed in the normal test suite (no nightly toolchain or cargo-fuzz needed):
//!
//! - `tests/fuzz-regressions/request_decode/*`: size-prefixed request frames, sent to a real
//!   `KafkaServer` over TCP. The server must close or answer that connection, never abort or
//!   reserve memory out of proportion to the frame, and keep serving other connections.
//! - `tests/fuzz-regressions/record_batch/*`: a flags byte and a record batch, put through the
//!   validation path of a produce request exactly as the `record_batch` target does. Every
//!   step must return a typed result.
//!
//! A global allocator records the largest single allocation, so a regression to reserving
//! capacity from an array count off the wire fails here even on a machine where such an
//! allocation would succeed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker_embedded::record::{
    decode_records, set_log_append_time, validate_records, BatchHeader, BatchIter,
};
use broker_embedded::{
    AppendOrigin, Broker, BrokerConfig, IsolationLevel, KafkaServer, LogConfig, PartitionLog,
    ServerConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The system allocator, recording the largest single request.
struct PeakAlloc;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; only a counter is updated. (`unsafe`
// is needed because `GlobalAlloc` is an unsafe trait.)
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// The tests of this file measure allocations one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// No request frame here is larger than a few KiB; 16 MiB is far above anything legitimate.
const MAX_ALLOCATION_PER_REQUEST: usize = 16 << 20;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "{}: the regression corpus is empty, so this test would check nothing",
        dir.display()
    );
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// ApiVersions v0: the simplest request with a response.
fn api_versions_frame(correlation_id: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes());
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

async fn assert_serving(addr: std::net::SocketAddr, correlation_id: i32) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&api_versions_frame(correlation_id))
        .await
        .unwrap();
    let mut size = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut size))
        .await
        .expect("the server answers ApiVersions")
        .unwrap();
    let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut response).await.unwrap();
    assert_eq!(&response[..4], &correlation_id.to_be_bytes());
}

#[test]
fn request_decode_crashes_close_one_connection() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(replay_requests());
}

async fn replay_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.cleaner_interval = None;
    config.group_initial_rebalance_delay = Duration::ZERO;
    let broker = Broker::open(config).unwrap();
    let server = KafkaServer::start(
        broker.clone(),
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            frame_timeout: Duration::from_millis(500),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    assert_serving(addr, 1).await;

    for (i, (path, input)) in inputs("request_decode").into_iter().enumerate() {
        LARGEST.store(0, Ordering::Relaxed);
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&input).await.unwrap();
        // No more requests: the server sees EOF after this input.
        s.shutdown().await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
            .await
            .unwrap_or_else(|_| {
                panic!("{}: connection neither answered nor closed", path.display())
            })
            .ok();
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(
            largest < MAX_ALLOCATION_PER_REQUEST,
            "{}: an allocation of {largest} bytes for a {}-byte input",
            path.display(),
            input.len()
        );
        assert_serving(addr, 100 + i as i32).await;
    }
    server.shutdown().await;
    broker.shutdown().unwrap();
}

const FIX_LENGTH: u8 = 1;
const FIX_CRC: u8 = 2;
const STRICT: u8 = 4;
const REQUIRE_KEYS: u8 = 8;
const APPEND: u8 = 16;
const LOG_APPEND_TIME: u8 = 32;

/// The `record_batch` target's fix-ups: `batchLength` to the input's size, then the CRC.
fn fix_up(flags: u8, batch: &mut [u8]) {
    if flags & FIX_LENGTH != 0 && batch.len() >= 12 {
        let len = i32::try_from(batch.len() - 12).unwrap_or(i32::MAX);
        batch[8..12].copy_from_slice(&len.to_be_bytes());
    }
    if flags & FIX_CRC != 0 && batch.len() >= 61 {
        let size = BatchHeader::parse(batch)
            .map(|h| h.size())
            .unwrap_or(batch.len())
            .min(batch.len());
        let crc = crc32c::crc32c(&batch[21..size]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

#[test]
fn record_batch_crashes_return_typed_results() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // Small segments and indexes, as in the target: rolls happen often.
    let plain_config = LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 512,
        max_message_bytes: 256 * 1024,
        ..LogConfig::default()
    };
    let mut compact_config = plain_config.clone();
    compact_config.cleanup_policy.compact = true;
    compact_config.message_timestamp_type = broker_embedded::record::TimestampType::LogAppendTime;
    let plain = PartitionLog::open(
        dir.path().join("t-0"),
        "t",
        0,
        Arc::new(plain_config),
        true,
        0,
    )
    .unwrap();
    let compacted = PartitionLog::open(
        dir.path().join("c-0"),
        "c",
        0,
        Arc::new(compact_config),
        true,
        0,
    )
    .unwrap();

    for (path, input) in inputs("record_batch") {
        let Some((&flags, rest)) = input.split_first() else {
            continue;
        };
        LARGEST.store(0, Ordering::Relaxed);
        let mut batch = rest.to_vec();
        fix_up(flags, &mut batch);
        let name = path.display();
        let _ = BatchHeader::parse(&batch);
        let validated = BatchHeader::parse_and_validate(&batch);
        let checked = validate_records(&batch, flags & STRICT != 0, flags & REQUIRE_KEYS != 0);
        let decoded = decode_records(&batch);
        if let Ok(tombstones) = checked {
            let records = decoded
                .as_ref()
                .unwrap_or_else(|e| panic!("{name}: validated but does not decode: {e}"));
            let nulls = records.iter().filter(|r| r.value.is_none()).count();
            assert_eq!(nulls, tombstones as usize, "{name}");
        }
        for b in BatchIter::new(&batch).flatten() {
            assert!(b.position + b.bytes.len() <= batch.len(), "{name}");
        }
        if validated.is_ok() {
            let mut stamped = batch.clone();
            set_log_append_time(&mut stamped, 1_700_000_000_000).unwrap();
            BatchHeader::parse_and_validate(&stamped).unwrap();
        }
        if flags & APPEND != 0 {
            let log = if flags & LOG_APPEND_TIME != 0 {
                &compacted
            } else {
                &plain
            };
            let mut buf = batch.clone();
            if let Ok(info) = log.append(&mut buf, AppendOrigin::Client, 1_700_000_000_000) {
                if !info.duplicate {
                    let read = log
                        .read(info.base_offset, 1, IsolationLevel::ReadUncommitted)
                        .unwrap();
                    let first = BatchIter::new(&read.records).next().unwrap().unwrap();
                    decode_records(first.bytes).unwrap();
                }
            }
        }
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(
            largest < MAX_ALLOCATION_PER_REQUEST,
            "{name}: an allocation of {largest} bytes for a {}-byte input",
            input.len()
        );
    }
}

//! Crash test: a child process (this test binary, re-executed in child mode) writes through
//! a change-logged RocksDB store with the WAL disabled and checkpoints periodically; the
//! parent SIGKILLs it at random points and checks that reopening works and that the
//! checkpoint never claims more than the store holds: restoring the recorded changelog from
//! the checkpoint onwards yields exactly the expected contents.

// Test helpers outside `#[test]` functions fail the test by panicking, like the tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use state_store::{
    ChangeLoggingKeyValueStore, ChangelogRecord, ChangelogSink, Direction, KeyValueStore,
    RecordTimestamp, Restorer, RocksDbConfig, RocksDbKeyValueStore, RocksDbResources, StateStore,
    TaskDirectory, TopicPartition,
};

const CHILD_DIR_ENV: &str = "STATE_STORE_CRASH_CHILD_DIR";
const CHILD_SEED_ENV: &str = "STATE_STORE_CRASH_CHILD_SEED";
const READY: &str = "CRASH-CHILD-READY";
const STORE: &str = "counts";

fn tp() -> TopicPartition {
    TopicPartition::changelog("app", STORE, 0)
}

fn resources() -> RocksDbResources {
    // A large memtable, so RocksDB never flushes on its own: only the explicit flushes before
    // checkpoints persist anything, which is the case the checkpoint contract is about.
    RocksDbResources::new(RocksDbConfig {
        block_cache_bytes: 16 << 20,
        write_buffer_manager_bytes: 256 << 20,
        write_buffer_size: 64 << 20,
        max_write_buffer_number: 2,
        disable_wal: true,
        lz4_compression: false,
    })
    .unwrap()
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The "changelog partition": a file of length-prefixed records.
struct FileChangelog {
    file: File,
    next_offset: i64,
}

fn encode(offset: i64, key: &[u8], value: Option<&[u8]>, timestamp: i64) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&offset.to_be_bytes());
    body.extend_from_slice(&timestamp.to_be_bytes());
    body.extend_from_slice(&(key.len() as u32).to_be_bytes());
    body.extend_from_slice(key);
    match value {
        Some(v) => {
            body.push(1);
            body.extend_from_slice(&(v.len() as u32).to_be_bytes());
            body.extend_from_slice(v);
        }
        None => body.push(0),
    }
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// Reads the valid prefix of the log (a torn tail is ignored) and its length in bytes.
fn read_log(path: &Path) -> (Vec<ChangelogRecord>, u64) {
    let mut bytes = Vec::new();
    if let Ok(mut f) = File::open(path) {
        f.read_to_end(&mut bytes).unwrap();
    }
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 4 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        if pos + 4 + len > bytes.len() {
            break;
        }
        let b = &bytes[pos + 4..pos + 4 + len];
        let offset = i64::from_be_bytes(b[0..8].try_into().unwrap());
        let timestamp = i64::from_be_bytes(b[8..16].try_into().unwrap());
        let klen = u32::from_be_bytes(b[16..20].try_into().unwrap()) as usize;
        let key = b[20..20 + klen].to_vec();
        let value = match b[20 + klen] {
            1 => Some(b[25 + klen..].to_vec()),
            _ => None,
        };
        assert_eq!(
            offset,
            out.len() as i64,
            "changelog offsets are consecutive"
        );
        out.push(ChangelogRecord {
            offset,
            key,
            value,
            timestamp,
        });
        pos += 4 + len;
    }
    (out, pos as u64)
}

impl ChangelogSink for FileChangelog {
    fn send(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        timestamp: i64,
    ) -> state_store::Result<()> {
        let rec = encode(self.next_offset, key, value, timestamp);
        self.file
            .write_all(&rec)
            .map_err(|e| state_store::StoreError::io("changelog", e))?;
        self.next_offset += 1;
        Ok(())
    }
    fn flush(&mut self) -> state_store::Result<()> {
        self.file
            .sync_data()
            .map_err(|e| state_store::StoreError::io("changelog", e))
    }
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("changelog.bin")
}

/// Restores the store from the task's checkpoint onwards and returns the restored offset.
fn restore_from_checkpoint(
    task: &TaskDirectory,
    store: &mut RocksDbKeyValueStore,
    records: &[ChangelogRecord],
) -> Option<i64> {
    let checkpoint = task.checkpoint().read().unwrap().get(&tp()).copied();
    let start = Restorer::start_offset(checkpoint, 0);
    let end = records.len() as i64;
    let mut listener = state_store::LoggingRestoreListener;
    Restorer::new(1000)
        .restore(
            store,
            &tp(),
            start,
            end,
            records.iter().cloned().map(Ok),
            &mut listener,
        )
        .unwrap();
    checkpoint
}

/// Child mode: restore, then write and checkpoint until killed.
#[test]
#[ignore = "child-process entry of sigkill_never_lets_a_checkpoint_overclaim"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let mut seed: u64 = std::env::var(CHILD_SEED_ENV).unwrap().parse().unwrap();
    let task = TaskDirectory::new(&dir, "app", "0_0").unwrap();
    task.open().unwrap();
    let (records, valid_len) = read_log(&log_path(&dir));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(&dir))
        .unwrap();
    file.set_len(valid_len).unwrap(); // drop a torn tail, as log recovery would
    let res = resources();
    let mut store =
        RocksDbKeyValueStore::open(STORE, task.store_path(STORE).unwrap(), &res).unwrap();
    restore_from_checkpoint(&task, &mut store, &records);
    let next_offset = records.len() as i64;
    let ts = RecordTimestamp::new();
    let mut logged =
        ChangeLoggingKeyValueStore::new(store, FileChangelog { file, next_offset }, ts.clone());
    let mut offsets = BTreeMap::new();
    if next_offset > 0 {
        offsets.insert(tp(), next_offset - 1);
        task.checkpoint_stores(&mut [&mut logged], &offsets)
            .unwrap();
    }
    println!("{READY}");
    std::io::stdout().flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0u64;
    let mut next_checkpoint = 2000u64;
    while Instant::now() < deadline {
        i += 1;
        let r = xorshift(&mut seed);
        let key = format!("key-{:03}", r % 300);
        ts.set(i as i64);
        if r % 10 < 8 {
            logged
                .put(key.as_bytes(), format!("v{i}-{}", r % 1000).as_bytes())
                .unwrap();
        } else {
            logged.delete(key.as_bytes()).unwrap();
        }
        if i >= next_checkpoint {
            next_checkpoint += 2000;
            offsets.insert(tp(), logged.sink().next_offset - 1);
            task.checkpoint_stores(&mut [&mut logged], &offsets)
                .unwrap();
        }
    }
}

#[test]
fn sigkill_never_lets_a_checkpoint_overclaim() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rounds_with_unflushed_writes = 0;
    let mut last_len = 0;
    for round in 0..5u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_SEED_ENV, (round + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let ready = BufReader::new(stdout)
            .lines()
            .any(|l| l.map(|l| l.contains(READY)).unwrap_or(false));
        assert!(ready, "child did not start writing");
        std::thread::sleep(Duration::from_millis(100 + xorshift(&mut rng) % 300));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "child was killed, not finished");

        // Reopen and verify: store + (changelog after checkpoint) == whole changelog.
        let task = TaskDirectory::new(dir.path(), "app", "0_0").unwrap();
        let (records, _) = read_log(&log_path(dir.path()));
        assert!(
            records.len() > last_len,
            "round {round}: the child made progress"
        );
        last_len = records.len();
        let mut expected = BTreeMap::new();
        for r in &records {
            match &r.value {
                Some(v) => expected.insert(r.key.clone(), v.clone()),
                None => expected.remove(&r.key),
            };
        }
        let res = resources();
        let mut store =
            RocksDbKeyValueStore::open(STORE, task.store_path(STORE).unwrap(), &res).unwrap();
        let before: BTreeMap<Vec<u8>, Vec<u8>> = store
            .all(Direction::Forward)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let checkpoint = restore_from_checkpoint(&task, &mut store, &records);
        let checkpoint = checkpoint.expect("the child checkpoints every 2000 writes");
        assert!(
            checkpoint < records.len() as i64,
            "checkpoint beyond the changelog end"
        );
        let after: BTreeMap<Vec<u8>, Vec<u8>> = store
            .all(Direction::Forward)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(after, expected, "round {round}: restoring from checkpoint {checkpoint} did not give the changelog's contents");
        if before != expected {
            rounds_with_unflushed_writes += 1;
        }
        store.close().unwrap();
    }
    eprintln!("crash test: {rounds_with_unflushed_writes} of 5 rounds lost unflushed (WAL-less) writes and were repaired by restoration");
    assert!(
        rounds_with_unflushed_writes > 0,
        "no kill landed while the store held unflushed writes: the case this test exists for did not happen"
    );
}

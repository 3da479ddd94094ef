//! The partition side of transactions across the log, the broker API and restarts: two
//! transactional producers interleave with a plain one, one transaction commits and one
//! aborts (markers written as the coordinator writes them: control batches appended by the
//! broker), and read_committed reads stop at the last stable offset and report the aborted
//! transaction; the `.txnindex` and LSO survive clean and unclean restarts (the index is
//! rebuilt from the log when missing or damaged).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use broker_embedded::record::{encode_batch, BatchIter, BatchSpec, Record};
use broker_embedded::{
    decode_fetched, decode_fetched_committed, AbortedTxn, AppendOrigin, Broker, BrokerConfig,
    BrokerError, FetchData, IsolationLevel, NewTopic, ProduceRecord,
};
use bytes::Bytes;

const A: i64 = 1000;
const B: i64 = 2000;

fn open(dir: &Path) -> Broker {
    let mut c = BrokerConfig::new(dir);
    c.cleaner_interval = None;
    Broker::open(c).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn txn_batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Vec<u8> {
    let spec = BatchSpec {
        transactional: true,
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        ..BatchSpec::default()
    };
    let recs: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            offset: i as i64,
            timestamp: now() + i as i64,
            key: Some(Bytes::from(format!("k-{v}"))),
            value: Some(Bytes::from(v.to_string())),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&spec, &recs).unwrap()
}

/// A marker batch in Kafka's layout (what the coordinator's marker write appends).
fn marker(pid: i64, epoch: i16, coordinator_epoch: i32, commit: bool) -> Vec<u8> {
    let spec = BatchSpec {
        transactional: true,
        control: true,
        producer_id: pid,
        producer_epoch: epoch,
        ..BatchSpec::default()
    };
    let mut value = vec![0, 0];
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let rec = Record {
        offset: 0,
        timestamp: now(),
        key: Some(Bytes::from(vec![0, 0, 0, u8::from(commit)])),
        value: Some(Bytes::from(value)),
        headers: Vec::new(),
    };
    encode_batch(&spec, &[rec]).unwrap()
}

fn append(b: &Broker, mut batch: Vec<u8>, origin: AppendOrigin) -> i64 {
    b.append_batches("t", 0, &mut batch, origin)
        .unwrap()
        .base_offset
}

/// Reads the whole partition as a consumer would (one segment per read): the decoded records
/// (aborted ones dropped under read_committed), the union of the reported aborted
/// transactions, and the last read's offsets.
fn read(b: &Broker, isolation: IsolationLevel) -> Read {
    read_from(b, isolation, 0)
}

fn read_from(b: &Broker, isolation: IsolationLevel, from: i64) -> Read {
    let mut out = Read {
        records: Vec::new(),
        aborted: Vec::new(),
        last: None,
    };
    let mut next = from;
    loop {
        let d = b.read_partition("t", 0, next, 1 << 20, isolation).unwrap();
        let Some(end) = BatchIter::new(&d.records)
            .map(|r| r.unwrap().header.next_offset())
            .last()
        else {
            out.last = Some(d);
            return out;
        };
        out.records.extend(match isolation {
            IsolationLevel::ReadCommitted => decode_fetched_committed("t", &d, next).unwrap(),
            IsolationLevel::ReadUncommitted => decode_fetched("t", &d.records, next).unwrap(),
        });
        for a in &d.aborted_transactions {
            if !out.aborted.contains(a) {
                out.aborted.push(*a);
            }
        }
        next = end;
    }
}

struct Read {
    records: Vec<Record>,
    aborted: Vec<AbortedTxn>,
    last: Option<FetchData>,
}

impl Read {
    fn lso(&self) -> i64 {
        self.last.as_ref().unwrap().last_stable_offset
    }
}

fn values(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.value.as_deref().unwrap().to_vec()).unwrap())
        .collect()
}

fn txnindex_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("t-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txnindex"))
        .collect();
    v.sort();
    v
}

/// Writes the scenario and returns (offset of B's first record, offset of B's marker).
fn scenario(b: &Broker) -> (i64, i64) {
    b.create_topic(NewTopic::new("t", 1).config("segment.bytes", "400"))
        .unwrap();
    b.produce("t", 0, &[ProduceRecord::new("plain", "p0")])
        .unwrap();
    let a0 = append(b, txn_batch(A, 0, 0, &["a0", "a1"]), AppendOrigin::Client);
    let b0 = append(b, txn_batch(B, 0, 0, &["b0"]), AppendOrigin::Client);
    assert_eq!((a0, b0), (1, 3));
    let o = b.partition_offsets("t", 0).unwrap();
    assert_eq!(o.high_watermark, 4);
    assert_eq!(o.last_stable_offset, a0, "LSO is A's first offset");
    // Nothing of an open transaction is readable committed.
    let d = read(b, IsolationLevel::ReadCommitted);
    assert_eq!(d.lso(), 1);
    assert_eq!(values(&d.records), ["p0"]);
    assert!(d.aborted.is_empty());
    let u = read(b, IsolationLevel::ReadUncommitted);
    assert_eq!(u.lso(), 1, "read_uncommitted reports the LSO too");
    assert_eq!(u.records.len(), 4);

    // A plain write from B while its transaction is open is refused.
    let mut plain = {
        let spec = BatchSpec {
            producer_id: B,
            producer_epoch: 0,
            base_sequence: 1,
            ..BatchSpec::default()
        };
        encode_batch(
            &spec,
            &[Record {
                offset: 0,
                timestamp: now(),
                key: None,
                value: Some(Bytes::from_static(b"x")),
                headers: Vec::new(),
            }],
        )
        .unwrap()
    };
    let err = b
        .append_batches("t", 0, &mut plain, AppendOrigin::Client)
        .unwrap_err();
    assert!(matches!(err, BrokerError::InvalidTxnState(_)), "{err}");
    // Clients cannot write markers.
    let err = b
        .append_batches("t", 0, &mut marker(A, 0, 0, true), AppendOrigin::Client)
        .unwrap_err();
    assert!(matches!(err, BrokerError::InvalidRecord(_)), "{err}");

    let a2 = append(b, txn_batch(A, 0, 2, &["a2"]), AppendOrigin::Client);
    let b1 = append(b, txn_batch(B, 0, 1, &["b1", "b2"]), AppendOrigin::Client);
    assert_eq!((a2, b1), (4, 5));
    let commit_a = append(b, marker(A, 0, 3, true), AppendOrigin::Internal);
    assert_eq!(commit_a, 7);
    assert_eq!(
        b.partition_offsets("t", 0).unwrap().last_stable_offset,
        b0,
        "with A committed, B's transaction bounds the LSO"
    );
    b.produce("t", 0, &[ProduceRecord::new("plain", "p1")])
        .unwrap();
    let abort_b = append(b, marker(B, 0, 3, false), AppendOrigin::Internal);
    assert_eq!(abort_b, 9);
    b.produce("t", 0, &[ProduceRecord::new("plain", "p2")])
        .unwrap();
    (b0, abort_b)
}

fn check_completed(b: &Broker, b0: i64, abort_b: i64) {
    let o = b.partition_offsets("t", 0).unwrap();
    assert_eq!(o.high_watermark, 11);
    assert_eq!(o.last_stable_offset, 11, "no open transaction: LSO = HW");
    let d = read(b, IsolationLevel::ReadCommitted);
    assert_eq!(d.lso(), 11);
    assert_eq!(
        d.aborted,
        vec![AbortedTxn {
            producer_id: B,
            first_offset: b0,
            last_offset: abort_b,
            last_stable_offset: abort_b + 1,
        }]
    );
    assert_eq!(values(&d.records), ["p0", "a0", "a1", "a2", "p1", "p2"]);
    let u = read(b, IsolationLevel::ReadUncommitted);
    assert!(u.aborted.is_empty());
    assert_eq!(
        values(&u.records),
        ["p0", "a0", "a1", "b0", "a2", "b1", "b2", "p1", "p2"]
    );
    // A read starting inside the aborted transaction still drops its records.
    let mid = read_from(b, IsolationLevel::ReadCommitted, b0 + 1);
    assert_eq!(values(&mid.records), ["a2", "p1", "p2"]);
    assert_eq!(mid.aborted.len(), 1);
    // A read starting after the aborted transaction reports nothing.
    let late = b
        .read_partition("t", 0, abort_b + 1, 1 << 20, IsolationLevel::ReadCommitted)
        .unwrap();
    assert!(late.aborted_transactions.is_empty());
    // The producers' state: A committed, B aborted; both closed.
    for pid in [A, B] {
        let e = b.producer_state("t", 0, pid).unwrap().unwrap();
        assert_eq!(e.current_txn_first_offset, None);
        assert_eq!(e.coordinator_epoch, 3);
    }
}

fn txnindex_entries(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    txnindex_files(dir)
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[test]
fn read_committed_sees_committed_data_and_the_aborted_list_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (b0, abort_b) = {
        let b = open(dir.path());
        let r = scenario(&b);
        check_completed(&b, r.0, r.1);
        b.shutdown().unwrap();
        r
    };
    // Exactly one aborted transaction, in Kafka's 34-byte entry format.
    let files = txnindex_entries(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let (path, bytes) = &files[0];
    assert_eq!(bytes.len(), 34);
    assert_eq!(&bytes[..2], &[0, 0]);
    assert_eq!(&bytes[2..10], &B.to_be_bytes());
    assert_eq!(&bytes[10..18], &b0.to_be_bytes());
    assert_eq!(&bytes[18..26], &abort_b.to_be_bytes());
    assert_eq!(&bytes[26..34], &(abort_b + 1).to_be_bytes());
    // The entry lives with the segment that holds the marker.
    let base: i64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    assert!(base <= abort_b);

    // Clean restart.
    {
        let b = open(dir.path());
        check_completed(&b, b0, abort_b);
        b.shutdown().unwrap();
    }
    assert_eq!(txnindex_entries(dir.path()), files);

    // Unclean restart with the index deleted: rebuilt from the log, byte for byte.
    fs::remove_file(path).unwrap();
    fs::remove_file(dir.path().join(".kafka_cleanshutdown")).unwrap();
    fs::remove_file(dir.path().join("recovery-point-offset-checkpoint")).unwrap();
    {
        let b = open(dir.path());
        check_completed(&b, b0, abort_b);
        drop(b);
    }
    assert_eq!(txnindex_entries(dir.path()), files);

    // A damaged index on a clean open is rebuilt too.
    fs::write(&files[0].0, [0u8; 20]).unwrap();
    {
        let b = open(dir.path());
        check_completed(&b, b0, abort_b);
        b.shutdown().unwrap();
    }
    assert_eq!(txnindex_entries(dir.path()), files);
}

#[test]
fn an_open_transaction_survives_restarts_and_fences_older_epochs() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        b.create_topic(NewTopic::new("t", 1).config("segment.bytes", "300"))
            .unwrap();
        b.produce("t", 0, &[ProduceRecord::new("plain", "p0")])
            .unwrap();
        append(&b, txn_batch(A, 0, 0, &["a0"]), AppendOrigin::Client);
        for i in 0..6 {
            b.produce("t", 0, &[ProduceRecord::new("plain", format!("q{i}"))])
                .unwrap();
        }
        assert!(b.partition_offsets("t", 0).unwrap().segments > 1);
        assert_eq!(b.partition_offsets("t", 0).unwrap().last_stable_offset, 1);
        b.shutdown().unwrap();
    }
    {
        // Clean restart: the state comes from the snapshot.
        let b = open(dir.path());
        assert_eq!(b.partition_offsets("t", 0).unwrap().last_stable_offset, 1);
        b.shutdown().unwrap();
    }
    // Unclean restart without snapshots: the state is rebuilt by replaying the whole log.
    fs::remove_file(dir.path().join(".kafka_cleanshutdown")).unwrap();
    fs::remove_file(dir.path().join("recovery-point-offset-checkpoint")).unwrap();
    for e in fs::read_dir(dir.path().join("t-0")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "snapshot") {
            fs::remove_file(p).unwrap();
        }
    }
    let b = open(dir.path());
    let o = b.partition_offsets("t", 0).unwrap();
    assert_eq!(o.last_stable_offset, 1, "the open transaction is rebuilt");
    assert_eq!(o.high_watermark, 8);
    let d = read(&b, IsolationLevel::ReadCommitted);
    assert_eq!(values(&d.records), ["p0"]);

    // The coordinator aborts with a bumped epoch (as on a timeout); the old epoch is fenced.
    let abort = append(&b, marker(A, 1, 0, false), AppendOrigin::Internal);
    assert_eq!(abort, 8);
    assert_eq!(b.partition_offsets("t", 0).unwrap().last_stable_offset, 9);
    let err = b
        .append_batches(
            "t",
            0,
            &mut txn_batch(A, 0, 1, &["late"]),
            AppendOrigin::Client,
        )
        .unwrap_err();
    assert!(
        matches!(err, BrokerError::InvalidProducerEpoch { .. }),
        "{err}"
    );
    let d = read(&b, IsolationLevel::ReadCommitted);
    assert_eq!(d.aborted.len(), 1);
    assert_eq!(d.aborted[0].first_offset, 1);
    let committed = values(&d.records);
    assert_eq!(committed, ["p0", "q0", "q1", "q2", "q3", "q4", "q5"]);
    // The epoch-1 producer starts a new transaction at sequence 0.
    let next = append(&b, txn_batch(A, 1, 0, &["a-new"]), AppendOrigin::Client);
    assert_eq!(
        b.partition_offsets("t", 0).unwrap().last_stable_offset,
        next
    );
    b.shutdown().unwrap();
}

/// Like `txn_batch`, with explicit keys (a compacted topic needs them) on topic `topic`.
fn keyed(pid: i64, seq: i32, pairs: &[(&str, &str)], transactional: bool) -> Vec<u8> {
    let spec = BatchSpec {
        transactional,
        producer_id: pid,
        producer_epoch: 0,
        base_sequence: seq,
        ..BatchSpec::default()
    };
    let recs: Vec<Record> = pairs
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            offset: i as i64,
            timestamp: now(),
            key: Some(Bytes::from(k.to_string())),
            value: Some(Bytes::from(v.to_string())),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&spec, &recs).unwrap()
}

fn kv(records: &[Record]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|r| {
            let s = |b: &Option<Bytes>| String::from_utf8(b.as_deref().unwrap().to_vec()).unwrap();
            (s(&r.key), s(&r.value))
        })
        .collect()
}

#[test]
fn compaction_removes_aborted_records_keeps_markers_and_stays_below_the_lso() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic(NewTopic::new("t", 1).config("cleanup.policy", "compact"))
        .unwrap();
    let put = |batch: Vec<u8>, origin| append(&b, batch, origin);
    put(keyed(-1, -1, &[("k", "v1")], false), AppendOrigin::Client); // 0
    put(keyed(A, 0, &[("k", "aborted")], true), AppendOrigin::Client); // 1
    put(marker(A, 0, 0, false), AppendOrigin::Internal); // 2
    put(
        keyed(B, 0, &[("j", "j1"), ("k", "v2")], true),
        AppendOrigin::Client,
    ); // 3, 4
    put(marker(B, 0, 0, true), AppendOrigin::Internal); // 5
    put(keyed(-1, -1, &[("j", "j2")], false), AppendOrigin::Client); // 6
                                                                     // An open transaction in a sealed segment: never cleaned while open.
    put(keyed(A, 1, &[("k", "open")], true), AppendOrigin::Client); // 7
    put(keyed(-1, -1, &[("k", "v3")], false), AppendOrigin::Client); // 8
    b.roll_segment("t", 0).unwrap();
    b.produce("t", 0, &[ProduceRecord::new("z", "active")])
        .unwrap();
    assert_eq!(b.partition_offsets("t", 0).unwrap().last_stable_offset, 7);

    let stats = b.run_cleaner_pass().unwrap();
    assert_eq!(
        stats.segments_cleaned, 0,
        "the only sealed segment reaches past the LSO"
    );

    // Commit A's open transaction; now the sealed segment is cleanable.
    put(marker(A, 0, 0, true), AppendOrigin::Internal); // 10
    b.run_cleaner_pass().unwrap();
    let u = read(&b, IsolationLevel::ReadUncommitted);
    assert_eq!(
        kv(&u.records),
        [
            ("j".into(), "j2".into()),
            ("k".into(), "v3".into()),
            ("z".into(), "active".into())
        ],
        "the aborted record is gone and never shadowed v1..v3"
    );
    // Markers stay (both of the first segment's, with their offsets).
    let d = b
        .read_partition("t", 0, 0, 1 << 20, IsolationLevel::ReadUncommitted)
        .unwrap();
    let markers: Vec<i64> = BatchIter::new(&d.records)
        .map(|r| r.unwrap().header)
        .filter(|h| h.is_control())
        .map(|h| h.base_offset)
        .collect();
    assert_eq!(markers, [2, 5]);
    let c = read(&b, IsolationLevel::ReadCommitted);
    assert_eq!(kv(&c.records), kv(&u.records));
    let aborted = vec![AbortedTxn {
        producer_id: A,
        first_offset: 1,
        last_offset: 2,
        last_stable_offset: 3,
    }];
    assert_eq!(c.aborted, aborted);
    // Another pass changes nothing (the cleaned copy is discarded); the index stays.
    b.run_cleaner_pass().unwrap();
    b.shutdown().unwrap();
    drop(b);
    assert_eq!(txnindex_files(dir.path()).len(), 1);
    let b = open(dir.path());
    let c = read(&b, IsolationLevel::ReadCommitted);
    assert_eq!(c.aborted, aborted);
    assert_eq!(kv(&c.records), kv(&u.records));
    b.shutdown().unwrap();
}

#[test]
fn retention_keeps_the_segments_of_an_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic(NewTopic::new("t", 1).config("retention.ms", "1000"))
        .unwrap();
    append(&b, txn_batch(A, 0, 0, &["a0"]), AppendOrigin::Client);
    b.roll_segment("t", 0).unwrap();
    b.produce("t", 0, &[ProduceRecord::new("plain", "p")])
        .unwrap();
    b.roll_segment("t", 0).unwrap();
    let later = now() + 3_600_000;
    let stats = b.run_cleaner_pass_at(later, false).unwrap();
    assert_eq!(stats.segments_deleted, 0);
    let o = b.partition_offsets("t", 0).unwrap();
    assert_eq!((o.log_start_offset, o.last_stable_offset), (0, 0));
    append(&b, marker(A, 0, 0, true), AppendOrigin::Internal);
    let stats = b.run_cleaner_pass_at(later, false).unwrap();
    assert!(stats.segments_deleted >= 2, "{stats:?}");
    let o = b.partition_offsets("t", 0).unwrap();
    assert_eq!(o.last_stable_offset, o.high_watermark);
    assert!(o.log_start_offset >= 2);
    b.shutdown().unwrap();
}

#[tokio::test]
async fn wire_fetch_and_list_offsets_report_the_lso_and_aborted_transactions() {
    use kafka_protocol::messages::{
        fetch_request, list_offsets_request, ApiKey, BrokerId, FetchRequest, FetchResponse,
        ListOffsetsRequest, ListOffsetsResponse, RequestHeader, ResponseHeader, TopicName,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn call<Req: Encodable, Resp: Decodable>(
        s: &mut tokio::net::TcpStream,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        let mut buf = bytes::BytesMut::new();
        let mut header = RequestHeader::default();
        header.request_api_key = api as i16;
        header.request_api_version = version;
        header.correlation_id = 7;
        header.client_id = Some(StrBytes::from_static_str("txn-test"));
        header
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        req.encode(&mut buf, version).unwrap();
        s.write_all(&(buf.len() as i32).to_be_bytes())
            .await
            .unwrap();
        s.write_all(&buf).await.unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
        s.read_exact(&mut frame).await.unwrap();
        let mut frame = Bytes::from(frame);
        ResponseHeader::decode(&mut frame, api.response_header_version(version)).unwrap();
        Resp::decode(&mut frame, version).unwrap()
    }

    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic(NewTopic::new("t", 1)).unwrap();
    append(&b, txn_batch(B, 0, 0, &["b0"]), AppendOrigin::Client); // 0
    append(&b, marker(B, 0, 0, false), AppendOrigin::Internal); // 1
    b.produce("t", 0, &[ProduceRecord::new("plain", "p")])
        .unwrap(); // 2
    std::thread::sleep(std::time::Duration::from_millis(5));
    let a_time = now();
    append(&b, txn_batch(A, 0, 0, &["a0"]), AppendOrigin::Client); // 3, open
    let server = broker_embedded::KafkaServer::start(
        b.clone(),
        broker_embedded::ServerConfig {
            listen: "127.0.0.1:0".into(),
            ..broker_embedded::ServerConfig::default()
        },
    )
    .await
    .unwrap();
    let mut s = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    for isolation in [0i8, 1] {
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(-1);
        req.max_bytes = 1 << 20;
        req.isolation_level = isolation;
        let mut ft = fetch_request::FetchTopic::default();
        ft.topic = TopicName(StrBytes::from_static_str("t"));
        let mut fp = fetch_request::FetchPartition::default();
        fp.partition = 0;
        fp.partition_max_bytes = 1 << 20;
        ft.partitions = vec![fp];
        req.topics = vec![ft];
        let r: FetchResponse = call(&mut s, ApiKey::Fetch, 11, &req).await;
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert_eq!((p.high_watermark, p.last_stable_offset), (4, 3));
        let data = p.records.clone().unwrap();
        let ends: Vec<i64> = BatchIter::new(&data)
            .map(|r| r.unwrap().header.next_offset())
            .collect();
        if isolation == 1 {
            assert_eq!(ends.last(), Some(&3), "read_committed stops at the LSO");
            let aborted = p.aborted_transactions.as_ref().unwrap();
            assert_eq!(aborted.len(), 1);
            assert_eq!((aborted[0].producer_id.0, aborted[0].first_offset), (B, 0));
        } else {
            assert_eq!(ends.last(), Some(&4));
            assert!(p.aborted_transactions.is_none());
        }
    }
    for (isolation, timestamp, want) in
        [(0i8, -1, 4i64), (1, -1, 3), (0, a_time, 3), (1, a_time, -1)]
    {
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        req.isolation_level = isolation;
        let mut t = list_offsets_request::ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_static_str("t"));
        let mut p = list_offsets_request::ListOffsetsPartition::default();
        p.partition_index = 0;
        p.timestamp = timestamp;
        t.partitions = vec![p];
        req.topics = vec![t];
        let r: ListOffsetsResponse = call(&mut s, ApiKey::ListOffsets, 5, &req).await;
        assert_eq!(
            r.topics[0].partitions[0].offset, want,
            "isolation {isolation}, timestamp {timestamp}"
        );
    }
    server.shutdown().await;
    b.shutdown().unwrap();
}

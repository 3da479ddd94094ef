//! The checker: pure functions from what the workload saw acknowledged (the history) and
//! what the cluster holds once healed (the final reads, the replicas' logs) to anomalies.

use std::collections::{BTreeMap, BTreeSet};

/// One violated promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Anomaly {
    /// Its kind (a short stable name, counted in the summary).
    pub(crate) kind: &'static str,
    /// What exactly.
    pub(crate) detail: String,
}

fn anomaly(kind: &'static str, detail: String) -> Anomaly {
    Anomaly { kind, detail }
}

/// A record of the idempotent producer acknowledged with acks=all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ack {
    /// Partition.
    pub(crate) partition: i32,
    /// The producer session (a new producer after a fatal error starts a new one).
    pub(crate) session: u32,
    /// The record's sequence number in its partition, unique across sessions.
    pub(crate) seq: u64,
    /// The offset the broker acknowledged.
    pub(crate) offset: i64,
}

/// A partition's records as read: `(offset, value)` in offset order.
pub(crate) type Log = BTreeMap<i32, Vec<(i64, String)>>;

/// The value the idempotent producer writes for `seq` in `session`.
pub(crate) fn acked_value(session: u32, seq: u64) -> String {
    format!("{session}:{seq:012}")
}

fn parse_acked_value(v: &str) -> Option<(u32, u64)> {
    let (s, q) = v.split_once(':')?;
    Some((s.parse().ok()?, q.parse().ok()?))
}

/// Every acknowledged record is read exactly once, at the offset it was acknowledged at, and
/// the values one producer session sent to a partition (acknowledged or not: an
/// unacknowledged record may or may not be there) are read in the order they were sent.
/// (Records of two sessions are not ordered: the first may have had writes in flight.)
pub(crate) fn check_acked(acked: &[Ack], read: &Log) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let mut at: BTreeMap<(i32, u64), Vec<i64>> = BTreeMap::new();
    for (p, records) in read {
        let mut last: BTreeMap<u32, u64> = BTreeMap::new();
        for (offset, value) in records {
            let Some((session, seq)) = parse_acked_value(value) else {
                out.push(anomaly(
                    "garbage",
                    format!("p{p} offset {offset}: unexpected value {value:?}"),
                ));
                continue;
            };
            let seen = at.entry((*p, seq)).or_default();
            seen.push(*offset);
            if seen.len() == 2 {
                out.push(anomaly(
                    "duplicate",
                    format!("p{p}: record {seq} at offsets {seen:?}"),
                ));
            } else if let Some(prev) = last.get(&session).filter(|prev| **prev >= seq) {
                out.push(anomaly(
                    "reorder",
                    format!("p{p} offset {offset}: record {seq} after record {prev} (session {session})"),
                ));
            }
            let l = last.entry(session).or_insert(seq);
            *l = (*l).max(seq);
        }
    }
    for a in acked {
        match at.get(&(a.partition, a.seq)) {
            None => out.push(anomaly(
                "lost",
                format!(
                    "p{}: acknowledged record {} (offset {}) never read",
                    a.partition, a.seq, a.offset
                ),
            )),
            Some(offsets) if !offsets.contains(&a.offset) => out.push(anomaly(
                "offset-mismatch",
                format!(
                    "p{}: record {} acknowledged at offset {} but read at {offsets:?}",
                    a.partition, a.seq, a.offset
                ),
            )),
            Some(_) => {}
        }
    }
    out
}

/// How a transaction ended, as its producer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `commit_transaction` succeeded.
    Committed,
    /// `abort_transaction` succeeded.
    Aborted,
    /// Neither is known (the producer failed fatally or timed out): all or nothing.
    Unknown,
}

/// One transaction of a transactional producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Txn {
    /// The producer (index of its transactional id).
    pub(crate) producer: u32,
    /// The transaction's number for that producer.
    pub(crate) n: u64,
    /// Records sent (their values are `txn_value(producer, n, i, count)`).
    pub(crate) count: u32,
    /// How it ended.
    pub(crate) outcome: Outcome,
}

/// The value of record `i` of `count` of transaction `n` of `producer`.
pub(crate) fn txn_value(producer: u32, n: u64, i: u32, count: u32) -> String {
    format!("t{producer}:{n}:{i}:{count}")
}

fn parse_txn_value(v: &str) -> Option<(u32, u64, u32, u32)> {
    let mut it = v.strip_prefix('t')?.split(':');
    let p = it.next()?.parse().ok()?;
    let n = it.next()?.parse().ok()?;
    let i = it.next()?.parse().ok()?;
    let c = it.next()?.parse().ok()?;
    it.next().is_none().then_some((p, n, i, c))
}

/// Read with read_committed: committed transactions wholly visible, aborted ones never, those
/// of unknown outcome all or nothing; no record twice; a producer's records of one partition
/// in the order they were sent; no record of a transaction nobody ran.
pub(crate) fn check_txns(txns: &[Txn], read: &Log) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let mut seen: BTreeMap<(u32, u64), BTreeSet<u32>> = BTreeMap::new();
    for (p, records) in read {
        let mut last: BTreeMap<u32, (u64, u32)> = BTreeMap::new();
        for (offset, value) in records {
            let Some((producer, n, i, _)) = parse_txn_value(value) else {
                out.push(anomaly(
                    "garbage",
                    format!("txn p{p} offset {offset}: unexpected value {value:?}"),
                ));
                continue;
            };
            if !seen.entry((producer, n)).or_default().insert(i) {
                out.push(anomaly(
                    "txn-duplicate",
                    format!("p{p} offset {offset}: {value} read twice"),
                ));
            }
            if let Some(prev) = last.get(&producer).filter(|prev| **prev >= (n, i)) {
                out.push(anomaly(
                    "txn-reorder",
                    format!(
                        "p{p} offset {offset}: {value} after t{producer}:{}:{}",
                        prev.0, prev.1
                    ),
                ));
            }
            let e = last.entry(producer).or_insert((n, i));
            *e = (*e).max((n, i));
        }
    }
    let known: BTreeSet<(u32, u64)> = txns.iter().map(|t| (t.producer, t.n)).collect();
    for key in seen.keys() {
        if !known.contains(key) {
            out.push(anomaly(
                "txn-phantom",
                format!("records of t{}:{} which no producer ran", key.0, key.1),
            ));
        }
    }
    for t in txns {
        let visible = seen.get(&(t.producer, t.n)).map_or(0, |s| s.len() as u32);
        let id = format!("t{}:{} ({} records)", t.producer, t.n, t.count);
        match t.outcome {
            Outcome::Committed if visible == 0 => out.push(anomaly(
                "txn-committed-invisible",
                format!("{id} committed but none read"),
            )),
            Outcome::Aborted if visible > 0 => out.push(anomaly(
                "txn-aborted-visible",
                format!("{id} aborted but {visible} read"),
            )),
            _ if visible > 0 && visible < t.count => out.push(anomaly(
                "txn-partial",
                format!("{id}: only {visible} read ({:?})", t.outcome),
            )),
            _ => {}
        }
    }
    out
}

/// What a committed-offsets sample found for a partition: `None` when the group had no
/// committed offset.
pub(crate) type OffsetSample = BTreeMap<i32, Option<i64>>;

/// The group's committed offsets, sampled in time order, never go backwards (nor disappear);
/// the last committed offsets are at least the highest commit acknowledged to a member.
pub(crate) fn check_offsets(
    samples: &[OffsetSample],
    acked_commits: &BTreeMap<i32, i64>,
    last: &BTreeMap<i32, Option<i64>>,
) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let mut high: BTreeMap<i32, (i64, usize)> = BTreeMap::new();
    let all = samples.iter().chain(std::iter::once(last));
    for (idx, sample) in all.enumerate() {
        for (p, o) in sample {
            if let Some((h, at)) = high.get(p).copied() {
                if o.is_none_or(|o| o < h) {
                    out.push(anomaly(
                        "offset-regression",
                        format!(
                            "p{p}: committed offset {h} (sample {at}) then {} (sample {idx})",
                            o.map_or("none".to_owned(), |o| o.to_string())
                        ),
                    ));
                    // One anomaly per drop: later samples are compared with the new value.
                    match o {
                        Some(o) => high.insert(*p, (*o, idx)),
                        None => high.remove(p),
                    };
                    continue;
                }
            }
            if let Some(o) = o {
                if high.get(p).is_none_or(|(h, _)| *o > *h) {
                    high.insert(*p, (*o, idx));
                }
            }
        }
    }
    for (p, acked) in acked_commits {
        let fin = last.get(p).copied().flatten();
        if fin.is_none_or(|f| f < *acked) {
            out.push(anomaly(
                "commit-lost",
                format!("p{p}: commit of offset {acked} acknowledged, the group ends at {fin:?}"),
            ));
        }
    }
    out
}

/// Every record a group member consumed is the record the healed log holds at that offset
/// (no read of a record that was later truncated away).
pub(crate) fn check_group_reads(reads: &[(i32, i64, String)], log: &Log) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let index: BTreeMap<(i32, i64), &str> = log
        .iter()
        .flat_map(|(p, rs)| rs.iter().map(move |(o, v)| ((*p, *o), v.as_str())))
        .collect();
    for (p, o, v) in reads {
        match index.get(&(*p, *o)) {
            Some(x) if *x == v.as_str() => {}
            other => out.push(anomaly(
                "inconsistent-read",
                format!("p{p} offset {o}: a member read {v:?}, the log holds {other:?}"),
            )),
        }
    }
    out
}

/// A replica's log: `(base offset, batch bytes)` per batch, in order.
pub(crate) type ReplicaLog = Vec<(i64, Vec<u8>)>;

/// The replicas of one partition hold identical batches (base offsets and bytes).
pub(crate) fn check_replicas(partition: &str, replicas: &[(i32, ReplicaLog)]) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let Some((first_id, first)) = replicas.first() else {
        return out;
    };
    for (id, log) in &replicas[1..] {
        let diff = first
            .iter()
            .zip(log)
            .position(|(a, b)| a != b)
            .or_else(|| (first.len() != log.len()).then(|| first.len().min(log.len())));
        if let Some(i) = diff {
            let at = |l: &ReplicaLog| {
                l.get(i)
                    .map_or("end of log".to_owned(), |b| format!("offset {}", b.0))
            };
            out.push(anomaly(
                "replica-divergence",
                format!(
                    "{partition}: node {id} ({} batches) differs from node {first_id} ({} batches) at batch {i}: {} vs {}",
                    log.len(),
                    first.len(),
                    at(log),
                    at(first)
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(p: i32, values: &[(i64, String)]) -> Log {
        [(p, values.to_vec())].into_iter().collect()
    }

    fn acks(seqs: &[(u64, i64)]) -> Vec<Ack> {
        seqs.iter()
            .map(|(seq, offset)| Ack {
                partition: 0,
                session: 0,
                seq: *seq,
                offset: *offset,
            })
            .collect()
    }

    fn kinds(a: &[Anomaly]) -> Vec<&'static str> {
        a.iter().map(|a| a.kind).collect()
    }

    #[test]
    fn acked_records_read_once_in_order_pass() {
        // Record 2 was never acknowledged (it timed out) but was written: allowed.
        let read = log(
            0,
            &[
                (0, acked_value(0, 0)),
                (1, acked_value(0, 1)),
                (2, acked_value(0, 2)),
                (3, acked_value(0, 3)),
            ],
        );
        assert_eq!(check_acked(&acks(&[(0, 0), (1, 1), (3, 3)]), &read), vec![]);
    }

    #[test]
    fn lost_duplicated_reordered_and_moved_records_are_found() {
        let a = acks(&[(0, 0), (1, 1), (2, 2)]);
        let lost = log(0, &[(0, acked_value(0, 0)), (2, acked_value(0, 2))]);
        assert_eq!(kinds(&check_acked(&a, &lost)), vec!["lost"]);
        let dup = log(
            0,
            &[
                (0, acked_value(0, 0)),
                (1, acked_value(0, 1)),
                (2, acked_value(0, 1)),
                (3, acked_value(0, 2)),
            ],
        );
        assert!(kinds(&check_acked(&a, &dup)).contains(&"duplicate"));
        let reordered = log(
            0,
            &[
                (0, acked_value(0, 0)),
                (1, acked_value(0, 2)),
                (2, acked_value(0, 1)),
            ],
        );
        let k = kinds(&check_acked(&a, &reordered));
        assert!(k.contains(&"reorder"), "{k:?}");
        assert!(k.contains(&"offset-mismatch"), "{k:?}");
        let garbage = log(0, &[(0, "x".into())]);
        assert!(kinds(&check_acked(&[], &garbage)).contains(&"garbage"));
        // A new session's records may land before the old session's last unacknowledged one.
        let sessions = log(
            0,
            &[
                (0, acked_value(0, 0)),
                (1, acked_value(1, 2)),
                (2, acked_value(0, 1)),
            ],
        );
        let a2 = [
            a[0],
            Ack {
                partition: 0,
                session: 1,
                seq: 2,
                offset: 1,
            },
        ];
        assert_eq!(check_acked(&a2, &sessions), vec![]);
    }

    #[test]
    fn transactions_all_or_nothing_by_outcome() {
        let t = |n, count, outcome| Txn {
            producer: 0,
            n,
            count,
            outcome,
        };
        let txns = vec![
            t(0, 2, Outcome::Committed),
            t(1, 2, Outcome::Aborted),
            t(2, 2, Outcome::Unknown),
            t(3, 2, Outcome::Unknown),
        ];
        // Committed whole, aborted absent, unknown either whole (2) or absent (3).
        let mut read = Log::new();
        read.insert(
            0,
            vec![(0, txn_value(0, 0, 0, 2)), (5, txn_value(0, 2, 0, 2))],
        );
        read.insert(
            1,
            vec![(0, txn_value(0, 0, 1, 2)), (5, txn_value(0, 2, 1, 2))],
        );
        assert_eq!(check_txns(&txns, &read), vec![]);

        let mut bad = read.clone();
        bad.get_mut(&1).unwrap().pop(); // t0:2 half visible
        bad.get_mut(&0).unwrap().push((9, txn_value(0, 1, 0, 2))); // aborted visible
        bad.get_mut(&1).unwrap().remove(0); // t0:0 half visible
        bad.get_mut(&1).unwrap().push((12, txn_value(0, 9, 0, 1))); // nobody ran t0:9
        bad.get_mut(&0).unwrap().push((13, txn_value(0, 1, 0, 2))); // twice
        let mut k = kinds(&check_txns(&txns, &bad));
        k.sort_unstable();
        assert_eq!(
            k,
            vec![
                "txn-aborted-visible",
                "txn-duplicate",
                "txn-partial",
                "txn-partial",
                "txn-phantom",
                "txn-reorder",
                "txn-reorder"
            ]
        );
        let none = Log::new();
        assert_eq!(
            kinds(&check_txns(&txns[..1], &none)),
            vec!["txn-committed-invisible"]
        );
    }

    #[test]
    fn committed_offsets_going_back_or_vanishing_are_found() {
        let s = |v: &[(i32, Option<i64>)]| -> OffsetSample { v.iter().copied().collect() };
        let samples = vec![
            s(&[(0, None)]),
            s(&[(0, Some(5))]),
            s(&[(0, Some(5)), (1, Some(2))]),
        ];
        let acked: BTreeMap<i32, i64> = [(0, 7)].into_iter().collect();
        assert_eq!(
            check_offsets(&samples, &acked, &s(&[(0, Some(7)), (1, Some(2))])),
            vec![]
        );
        let back = vec![s(&[(0, Some(5))]), s(&[(0, Some(4))]), s(&[(0, Some(4))])];
        assert_eq!(
            kinds(&check_offsets(&back, &BTreeMap::new(), &s(&[(0, Some(5))]))),
            vec!["offset-regression"]
        );
        let gone = vec![s(&[(0, Some(5))]), s(&[(0, None)])];
        assert_eq!(
            kinds(&check_offsets(&gone, &BTreeMap::new(), &s(&[]))),
            vec!["offset-regression"]
        );
        assert_eq!(
            kinds(&check_offsets(&[], &acked, &s(&[(0, Some(6))]))),
            vec!["commit-lost"]
        );
    }

    #[test]
    fn diverging_replicas_and_stale_reads_are_found() {
        let a: ReplicaLog = vec![(0, vec![1, 2]), (2, vec![3])];
        let same = [(1, a.clone()), (2, a.clone())];
        assert_eq!(check_replicas("t-0", &same), vec![]);
        let short = [(1, a.clone()), (2, a[..1].to_vec())];
        assert_eq!(
            kinds(&check_replicas("t-0", &short)),
            vec!["replica-divergence"]
        );
        let flipped = [(1, a.clone()), (2, vec![(0, vec![1, 2]), (2, vec![4])])];
        assert_eq!(
            kinds(&check_replicas("t-0", &flipped)),
            vec!["replica-divergence"]
        );

        let l = log(0, &[(0, acked_value(0, 0))]);
        assert_eq!(check_group_reads(&[(0, 0, acked_value(0, 0))], &l), vec![]);
        assert_eq!(
            kinds(&check_group_reads(&[(0, 1, acked_value(0, 1))], &l)),
            vec!["inconsistent-read"]
        );
    }
}

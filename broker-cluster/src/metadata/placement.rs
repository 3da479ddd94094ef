//! Replica placement like Kafka's `StripedReplicaPlacer`: brokers grouped by rack, racks and
//! brokers visited round-robin from a random start, so that leaders and replicas spread evenly
//! and the replicas of a partition land on different racks when possible.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::Rng;

/// Why replicas could not be placed (the message follows Kafka's text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlacementError(pub String);

/// One broker that can receive replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsableBroker {
    /// The broker id.
    pub id: i32,
    /// Its rack.
    pub rack: Option<String>,
}

/// The brokers of one rack, visited from a rotating offset.
struct BrokerList {
    brokers: Vec<i32>,
    index: usize,
    offset: usize,
    epoch: u64,
}

impl BrokerList {
    fn new(mut brokers: Vec<i32>, rng: &mut impl Rng) -> Self {
        brokers.sort_unstable();
        let offset = if brokers.is_empty() {
            0
        } else {
            rng.random_range(0..brokers.len())
        };
        Self {
            brokers,
            index: 0,
            offset,
            epoch: 0,
        }
    }

    /// The next broker of this iteration epoch, or `None` once every broker was returned.
    fn next(&mut self, epoch: u64) -> Option<i32> {
        if self.brokers.is_empty() {
            return None;
        }
        if self.epoch != epoch {
            self.epoch = epoch;
            self.index = 0;
            self.offset = (self.offset + 1) % self.brokers.len();
        }
        if self.index >= self.brokers.len() {
            return None;
        }
        let broker = self.brokers[(self.index + self.offset) % self.brokers.len()];
        self.index += 1;
        Some(broker)
    }
}

/// Place `num_partitions` partitions with `replication_factor` replicas each on `brokers`
/// (the usable brokers: registered, unfenced, not in controlled shutdown). Returns the replica
/// lists, preferred leader first.
pub fn place_replicas(
    brokers: &[UsableBroker],
    num_partitions: usize,
    replication_factor: i32,
    rng: &mut impl Rng,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    if replication_factor <= 0 {
        return Err(PlacementError(format!(
            "Invalid replication factor {replication_factor}: the replication factor must be positive."
        )));
    }
    if brokers.is_empty() {
        return Err(PlacementError(
            "All brokers are currently fenced.".to_string(),
        ));
    }
    let rf = usize::try_from(replication_factor).unwrap_or(usize::MAX);
    if rf > brokers.len() {
        return Err(PlacementError(format!(
            "The target replication factor of {replication_factor} cannot be reached because only {} broker(s) are registered.",
            brokers.len()
        )));
    }
    let mut by_rack: BTreeMap<Option<String>, Vec<i32>> = BTreeMap::new();
    for b in brokers {
        by_rack.entry(b.rack.clone()).or_default().push(b.id);
    }
    // BTreeMap order puts "no rack" first, then racks by name (Kafka sorts the same way).
    let mut racks: Vec<BrokerList> = by_rack
        .into_values()
        .map(|ids| BrokerList::new(ids, rng))
        .collect();
    let num_racks = racks.len();
    let num_brokers = brokers.len();
    let mut offset = rng.random_range(0..num_racks);
    // Every partition is a new iteration epoch: each rack's list then returns each of its
    // brokers at most once for that partition, and its start rotates by one.
    let mut epoch: u64 = 0;
    let mut out = Vec::with_capacity(num_partitions);
    for _ in 0..num_partitions {
        // After as many partitions as brokers, shuffle to avoid repeating the same pattern.
        if epoch == num_brokers as u64 && num_brokers > 1 {
            racks.shuffle(rng);
            for r in &mut racks {
                r.brokers.shuffle(rng);
            }
            epoch = 0;
        }
        if offset >= num_racks {
            offset = 0;
        }
        let mut replicas = Vec::with_capacity(rf);
        // The leader: the first rack from `offset` that has a broker (every list is non-empty
        // and restarts at a new epoch, so this is the rack at `offset`).
        let mut first_rack = None;
        for step in 0..num_racks {
            let idx = (offset + step) % num_racks;
            if let Some(b) = racks[idx].next(epoch) {
                replicas.push(b);
                first_rack = Some(idx);
                break;
            }
        }
        // The followers: the following racks in turn, skipping the leader's rack once.
        let mut rack_index = offset;
        let mut misses = 0usize;
        while replicas.len() < rf && misses <= num_racks {
            let candidate = if Some(rack_index) == first_rack {
                first_rack = None;
                None
            } else {
                racks[rack_index].next(epoch)
            };
            rack_index = (rack_index + 1) % num_racks;
            match candidate {
                Some(b) => {
                    misses = 0;
                    replicas.push(b);
                }
                None => misses += 1,
            }
        }
        if replicas.len() < rf {
            // Unreachable with rf <= number of brokers (every broker is returned once per
            // epoch); kept total rather than looping forever.
            return Err(PlacementError(format!(
                "Unable to place {rf} replicas on {num_brokers} broker(s)."
            )));
        }
        epoch += 1;
        offset += 1;
        out.push(replicas);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::HashMap;

    fn brokers(n: i32) -> Vec<UsableBroker> {
        (0..n).map(|id| UsableBroker { id, rack: None }).collect()
    }

    #[test]
    fn spreads_leaders_and_replicas_evenly() {
        for seed in 0..50u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let placed = place_replicas(&brokers(3), 30, 3, &mut rng).unwrap();
            let mut leaders: HashMap<i32, usize> = HashMap::new();
            let mut replicas: HashMap<i32, usize> = HashMap::new();
            for r in &placed {
                assert_eq!(r.len(), 3, "seed {seed}");
                let mut s = r.clone();
                s.sort_unstable();
                s.dedup();
                assert_eq!(s.len(), 3, "distinct replicas, seed {seed}: {r:?}");
                *leaders.entry(r[0]).or_default() += 1;
                for b in r {
                    *replicas.entry(*b).or_default() += 1;
                }
            }
            for b in 0..3 {
                assert_eq!(leaders[&b], 10, "seed {seed}: {leaders:?}");
                assert_eq!(replicas[&b], 30, "seed {seed}");
            }
        }
    }

    #[test]
    fn rf_two_of_five_spreads_leaders() {
        for seed in 0..20u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let placed = place_replicas(&brokers(5), 10, 2, &mut rng).unwrap();
            let mut leaders: HashMap<i32, usize> = HashMap::new();
            for r in &placed {
                assert_ne!(r[0], r[1]);
                *leaders.entry(r[0]).or_default() += 1;
            }
            assert!(
                leaders.values().all(|c| *c == 2),
                "seed {seed}: {leaders:?}"
            );
        }
    }

    #[test]
    fn racks_get_distinct_replicas() {
        let bs: Vec<UsableBroker> = (0..6)
            .map(|id| UsableBroker {
                id,
                rack: Some(format!("r{}", id % 3)),
            })
            .collect();
        for seed in 0..20u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            for r in place_replicas(&bs, 12, 3, &mut rng).unwrap() {
                let mut racks: Vec<i32> = r.iter().map(|b| b % 3).collect();
                racks.sort_unstable();
                racks.dedup();
                assert_eq!(racks.len(), 3, "seed {seed}: {r:?}");
            }
        }
    }

    #[test]
    fn errors_follow_kafka_text() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            place_replicas(&brokers(2), 1, 3, &mut rng).unwrap_err().0,
            "The target replication factor of 3 cannot be reached because only 2 broker(s) are registered."
        );
        assert_eq!(
            place_replicas(&[], 1, 1, &mut rng).unwrap_err().0,
            "All brokers are currently fenced."
        );
        assert!(place_replicas(&brokers(2), 1, 0, &mut rng).is_err());
    }
}

//! The nemesis: seeded random faults, one at a time, each held for a while and then healed.
//!
//! Kinds: `kill-broker` / `kill-controller` (SIGKILL, restart after the hold), `pause-broker`
//! / `pause-controller` (SIGSTOP, SIGCONT after the hold), `kill-coordinator` /
//! `pause-coordinator` (the node FindCoordinator names for the group or a transactional id),
//! and network partitions through the proxies, each cut (connections closed) or blackholed
//! (nothing flows): `partition-isolate` (one node alone), `partition-halves` (a random split,
//! the clients on one side), `partition-bridge` (two halves that both reach one bridge node),
//! `partition-clients` (a broker unreachable from the clients only).
//!
//! With `no_coordinator_faults`, no fault targets a coordinator node: the coordinators (asked
//! before every fault) are never killed or paused and always stay on the clients' side of a
//! partition, and the `*-coordinator` kinds are not drawn.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::cluster::{Cluster, ClusterError};
use crate::proxy::{Block, Endpoint, NetState};

/// One fault, as drawn.
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    /// SIGKILL a node; restart it when healing.
    Kill(i32),
    /// SIGSTOP a node; SIGCONT it when healing.
    Pause(i32),
    /// Block pairs of endpoints.
    Partition(NetState),
}

/// Fault timings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// How long a fault lasts, in ms (uniform in the range).
    pub(crate) hold_ms: (u64, u64),
    /// The pause between healing and the next fault, in ms.
    pub(crate) gap_ms: (u64, u64),
}

/// The fault schedule and what was done.
#[derive(Debug)]
pub(crate) struct Nemesis {
    rng: StdRng,
    timing: Timing,
    no_coordinator_faults: bool,
    /// Faults injected, by kind.
    pub(crate) counts: BTreeMap<String, u64>,
}

const KINDS: &[(&str, u32)] = &[
    ("kill-broker", 3),
    ("kill-controller", 2),
    ("pause-broker", 2),
    ("pause-controller", 1),
    ("kill-coordinator", 2),
    ("pause-coordinator", 1),
    ("partition-isolate", 3),
    ("partition-halves", 3),
    ("partition-bridge", 2),
    ("partition-clients", 1),
];

impl Nemesis {
    /// A nemesis drawing from `rng`.
    pub(crate) fn new(rng: StdRng, timing: Timing, no_coordinator_faults: bool) -> Self {
        Nemesis {
            rng,
            timing,
            no_coordinator_faults,
            counts: BTreeMap::new(),
        }
    }

    fn kind(&mut self) -> &'static str {
        let kinds: Vec<(&str, u32)> = KINDS
            .iter()
            .copied()
            .filter(|(k, _)| !(self.no_coordinator_faults && k.ends_with("-coordinator")))
            .collect();
        let total: u32 = kinds.iter().map(|(_, w)| w).sum();
        let mut x = self.rng.random_range(0..total);
        for (k, w) in kinds {
            if x < w {
                return k;
            }
            x -= w;
        }
        "partition-isolate"
    }

    /// Draws the next fault against the cluster's broker and controller ids. `coordinators`: the brokers that coordinate the group or a
    /// transactional id (`None`: unknown, so every broker counts as one when they are
    /// spared). Returns the kind's name (with `/cut` or `/blackhole` for partitions) and the
    /// fault; draws again when a kind has no allowed target.
    pub(crate) fn draw(
        &mut self,
        brokers: &[i32],
        controllers: &[i32],
        coordinators: Option<&BTreeSet<i32>>,
    ) -> (String, Fault) {
        let all_coordinators: BTreeSet<i32> = brokers.iter().copied().collect();
        let coords = coordinators.unwrap_or(&all_coordinators);
        let spared: BTreeSet<i32> = if self.no_coordinator_faults {
            coords.clone()
        } else {
            BTreeSet::new()
        };
        for _ in 0..100 {
            let kind = self.kind();
            let pick = |rng: &mut StdRng, from: &[i32]| -> Option<i32> {
                let allowed: Vec<i32> = from
                    .iter()
                    .copied()
                    .filter(|i| !spared.contains(i))
                    .collect();
                (!allowed.is_empty()).then(|| allowed[rng.random_range(0..allowed.len())])
            };
            let coordinator_list: Vec<i32> = coordinators
                .map(|c| c.iter().copied().collect())
                .unwrap_or_default();
            let target = match kind {
                "kill-broker" | "pause-broker" | "partition-clients" => {
                    pick(&mut self.rng, brokers)
                }
                "kill-controller" | "pause-controller" => pick(&mut self.rng, controllers),
                "kill-coordinator" | "pause-coordinator" => pick(&mut self.rng, &coordinator_list),
                _ => None,
            };
            let how = if self.rng.random_bool(0.5) {
                Block::Cut
            } else {
                Block::Blackhole
            };
            let how_name = match how {
                Block::Cut => "cut",
                Block::Blackhole => "blackhole",
            };
            let mut nodes: Vec<i32> = brokers.iter().chain(controllers).copied().collect();
            nodes.sort_unstable();
            nodes.dedup();
            let fault = match kind {
                "kill-broker" | "kill-controller" | "kill-coordinator" => target.map(Fault::Kill),
                "pause-broker" | "pause-controller" | "pause-coordinator" => {
                    target.map(Fault::Pause)
                }
                "partition-clients" => target.map(|t| {
                    Fault::Partition(NetState::split(
                        (&[Endpoint::Client], &[Endpoint::Node(t)]),
                        how,
                    ))
                }),
                "partition-isolate" => pick(&mut self.rng, &nodes).map(|t| {
                    let rest: Vec<Endpoint> = nodes
                        .iter()
                        .filter(|n| **n != t)
                        .map(|n| Endpoint::Node(*n))
                        .chain([Endpoint::Client])
                        .collect();
                    Fault::Partition(NetState::split((&[Endpoint::Node(t)], &rest), how))
                }),
                "partition-halves" | "partition-bridge" => {
                    let mut shuffled = nodes.clone();
                    shuffled.shuffle(&mut self.rng);
                    let bridge = (kind == "partition-bridge").then(|| shuffled.remove(0));
                    let cut = self.rng.random_range(1..shuffled.len().max(2));
                    let (a, b) = shuffled.split_at(cut.min(shuffled.len()));
                    // The clients go with the side holding every spared node; when the
                    // spared nodes are split, draw again.
                    let spared_in = |side: &[i32]| {
                        spared
                            .iter()
                            .all(|s| side.contains(s) || Some(*s) == bridge)
                    };
                    let clients_with_a = if spared.is_empty() {
                        self.rng.random_bool(0.5)
                    } else if spared_in(a) {
                        true
                    } else if spared_in(b) {
                        false
                    } else {
                        continue;
                    };
                    let mut a: Vec<Endpoint> = a.iter().map(|n| Endpoint::Node(*n)).collect();
                    let mut b: Vec<Endpoint> = b.iter().map(|n| Endpoint::Node(*n)).collect();
                    if clients_with_a {
                        a.push(Endpoint::Client);
                    } else {
                        b.push(Endpoint::Client);
                    }
                    Some(Fault::Partition(NetState::split((&a, &b), how)))
                }
                _ => None,
            };
            if let Some(fault) = fault {
                let name = match fault {
                    Fault::Partition(_) => format!("{kind}/{how_name}"),
                    _ => kind.to_owned(),
                };
                return (name, fault);
            }
        }
        // Every draw was refused (cannot happen with controllers to fault): a controller pause.
        let c = controllers.first().copied().unwrap_or(1);
        ("pause-controller".to_owned(), Fault::Pause(c))
    }

    /// Injects `fault`, holds it, heals it, waits the gap.
    pub(crate) async fn run(
        &mut self,
        cluster: &mut Cluster,
        name: &str,
        fault: &Fault,
    ) -> Result<(), ClusterError> {
        let hold = Duration::from_millis(
            self.rng
                .random_range(self.timing.hold_ms.0..=self.timing.hold_ms.1),
        );
        let gap = Duration::from_millis(
            self.rng
                .random_range(self.timing.gap_ms.0..=self.timing.gap_ms.1),
        );
        *self.counts.entry(name.to_owned()).or_default() += 1;
        match fault {
            Fault::Kill(id) => cluster.kill(*id)?,
            Fault::Pause(id) => cluster.pause(*id)?,
            Fault::Partition(state) => cluster.net.set(state.clone()),
        }
        tokio::time::sleep(hold).await;
        match fault {
            Fault::Kill(id) => cluster.restart(*id)?,
            Fault::Pause(id) => cluster.resume(*id)?,
            Fault::Partition(_) => cluster.net.heal(),
        }
        tokio::time::sleep(gap).await;
        Ok(())
    }
}

/// A one-line description of a fault.
pub(crate) fn describe(fault: &Fault) -> String {
    match fault {
        Fault::Kill(id) => format!("SIGKILL n{id}"),
        Fault::Pause(id) => format!("SIGSTOP n{id}"),
        Fault::Partition(state) => {
            let mut pairs: Vec<String> = state
                .blocked
                .keys()
                .filter(|(a, b)| a < b)
                .map(|(a, b)| format!("{a}-{b}"))
                .collect();
            pairs.sort();
            format!("block {}", pairs.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn nemesis(seed: u64, spare: bool) -> Nemesis {
        let timing = Timing {
            hold_ms: (0, 0),
            gap_ms: (0, 0),
        };
        Nemesis::new(StdRng::seed_from_u64(seed), timing, spare)
    }

    /// Sparing the coordinators: over many draws, the coordinator (node 5) is never killed,
    /// paused or cut off from the clients, while every other kind of fault still happens.
    #[test]
    fn spared_coordinators_are_never_faulted_and_draws_replay_from_the_seed() {
        let (brokers, controllers) = ([4, 5, 6], [1, 2, 3]);
        let coordinators: BTreeSet<i32> = [5].into_iter().collect();
        let mut n = nemesis(7, true);
        let mut kinds = BTreeSet::new();
        for _ in 0..2000 {
            let (name, fault) = n.draw(&brokers, &controllers, Some(&coordinators));
            kinds.insert(name.split('/').next().unwrap_or_default().to_owned());
            match fault {
                Fault::Kill(id) | Fault::Pause(id) => assert_ne!(id, 5, "{name}"),
                Fault::Partition(state) => {
                    assert_eq!(
                        state.block(Endpoint::Client, Endpoint::Node(5)),
                        None,
                        "{name}"
                    );
                    assert_eq!(
                        state.block(Endpoint::Node(5), Endpoint::Client),
                        None,
                        "{name}"
                    );
                    assert!(!state.blocked.is_empty(), "{name}");
                }
            }
        }
        assert!(
            !kinds.iter().any(|k| k.ends_with("-coordinator")),
            "{kinds:?}"
        );
        assert_eq!(kinds.len(), 8, "{kinds:?}");

        // Not sparing: the coordinator kinds are drawn and hit the coordinator.
        let mut n = nemesis(7, false);
        let mut hit = 0;
        for _ in 0..500 {
            if let (name, Fault::Kill(5) | Fault::Pause(5)) =
                n.draw(&brokers, &controllers, Some(&coordinators))
            {
                hit += u32::from(name.ends_with("-coordinator"));
            }
        }
        assert!(hit > 0);

        // The same seed draws the same faults.
        let draws = |seed| {
            let mut n = nemesis(seed, false);
            (0..50)
                .map(|_| {
                    let (name, fault) = n.draw(&brokers, &controllers, Some(&coordinators));
                    format!("{name} {}", describe(&fault))
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(11), draws(11));
        assert_ne!(draws(11), draws(12));
    }
}

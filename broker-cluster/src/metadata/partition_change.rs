//! Computing a partition's next ISR and leader (Kafka's `PartitionChangeBuilder`, without
//! reassignments and eligible leader replicas).

use uuid::Uuid;

use super::image::PartitionRegistration;
use super::records::{MetadataRecord, NO_LEADER};

/// How a new leader may be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// Elect the preferred replica when it is in the ISR and acceptable; else keep the
    /// partition online from the ISR.
    Preferred,
    /// Keep the partition online from the ISR.
    Online,
    /// Keep the partition online from the ISR, or else from any acceptable replica (data may
    /// be lost; the ISR becomes the new leader alone).
    Unclean,
}

/// Build the `PartitionChange` record that moves `partition` to `target_isr` and a leader
/// chosen by `election` among replicas accepted by `acceptable_leader`; `None` when nothing
/// changes.
///
/// As in Kafka (without eligible leader replicas), an empty target ISR leaves the ISR as it
/// is: the last member of an ISR is never removed, the partition just loses its leader.
pub fn build_partition_change(
    topic_id: Uuid,
    partition_index: i32,
    partition: &PartitionRegistration,
    target_isr: &[i32],
    election: Election,
    acceptable_leader: impl Fn(i32) -> bool,
) -> Option<MetadataRecord> {
    let valid = |r: i32| target_isr.contains(&r) && acceptable_leader(r);
    let (leader, unclean) = match election {
        Election::Preferred => {
            let preferred = partition.preferred_leader().unwrap_or(NO_LEADER);
            if valid(preferred) {
                (preferred, false)
            } else if valid(partition.leader) {
                (partition.leader, false)
            } else {
                let online = partition
                    .replicas
                    .iter()
                    .skip(1)
                    .copied()
                    .find(|r| valid(*r));
                (online.unwrap_or(NO_LEADER), false)
            }
        }
        Election::Online | Election::Unclean => {
            if valid(partition.leader) {
                (partition.leader, false)
            } else if let Some(r) = partition.replicas.iter().copied().find(|r| valid(*r)) {
                (r, false)
            } else if election == Election::Unclean {
                match partition
                    .replicas
                    .iter()
                    .copied()
                    .find(|r| acceptable_leader(*r))
                {
                    Some(r) => (r, true),
                    None => (NO_LEADER, false),
                }
            } else {
                (NO_LEADER, false)
            }
        }
    };
    let mut new_leader = None;
    let mut new_isr = None;
    if leader != partition.leader {
        new_leader = Some(leader);
        if unclean {
            new_isr = Some(vec![leader]);
        }
    }
    if new_isr.is_none() && !target_isr.is_empty() && target_isr != partition.isr.as_slice() {
        new_isr = Some(target_isr.to_vec());
    }
    if new_leader.is_none() && new_isr.is_none() {
        return None;
    }
    Some(MetadataRecord::PartitionChange {
        topic_id,
        partition: partition_index,
        isr: new_isr,
        leader: new_leader,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionRegistration {
        PartitionRegistration {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    fn change(r: Option<MetadataRecord>) -> Option<(Option<Vec<i32>>, Option<i32>)> {
        match r {
            Some(MetadataRecord::PartitionChange { isr, leader, .. }) => Some((isr, leader)),
            Some(other) => panic!("unexpected record {other:?}"),
            None => None,
        }
    }

    #[test]
    fn removing_the_leader_elects_the_next_isr_member() {
        let p = part(&[1, 2, 3], &[1, 2, 3], 1);
        let r = build_partition_change(Uuid::nil(), 0, &p, &[2, 3], Election::Online, |r| r != 1);
        assert_eq!(change(r), Some((Some(vec![2, 3]), Some(2))));
    }

    #[test]
    fn last_isr_member_stays_and_partition_goes_leaderless() {
        let p = part(&[1, 2], &[1], 1);
        let r = build_partition_change(Uuid::nil(), 0, &p, &[], Election::Online, |r| r != 1);
        assert_eq!(change(r), Some((None, Some(NO_LEADER))));
    }

    #[test]
    fn unclean_election_picks_an_out_of_sync_replica() {
        let p = part(&[1, 2], &[1], NO_LEADER);
        let r = build_partition_change(Uuid::nil(), 0, &p, &[1], Election::Unclean, |r| r == 2);
        assert_eq!(change(r), Some((Some(vec![2]), Some(2))));
        let r = build_partition_change(Uuid::nil(), 0, &p, &[1], Election::Online, |r| r == 2);
        assert_eq!(change(r), None);
    }

    #[test]
    fn preferred_election_moves_leadership_back() {
        let p = part(&[1, 2, 3], &[1, 2, 3], 2);
        let r = build_partition_change(Uuid::nil(), 0, &p, &[1, 2, 3], Election::Preferred, |_| {
            true
        });
        assert_eq!(change(r), Some((None, Some(1))));
        // The preferred replica is not acceptable: nothing changes.
        let r = build_partition_change(Uuid::nil(), 0, &p, &[1, 2, 3], Election::Preferred, |r| {
            r != 1
        });
        assert_eq!(change(r), None);
    }
}

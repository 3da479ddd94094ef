//! Power cuts (on `durable-fs`'s page-cache simulator) between the steps of a task's
//! directory life: open (in-progress marker), checkpoint writes, clean close. After every cut
//! the checkpoint reads back exactly as last written (never torn, never an older version once
//! a write returned), and the previous shutdown is reported as it really was.
//! `POWER_CUT_SEED` replays a campaign (the seed is printed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use durable_fs::sim::SimStorage;
use durable_fs::Storage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use state_store::{PreviousShutdown, TaskDirectory, TopicPartition};

fn task(sim: &SimStorage) -> TaskDirectory {
    TaskDirectory::with_storage(sim.shared(), "/state", "app", "0_1").unwrap()
}

#[test]
fn checkpoints_and_shutdown_markers_survive_power_cuts_as_written() {
    let base: u64 = std::env::var("POWER_CUT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("checkpoint power-cut campaign from seed {base} (POWER_CUT_SEED={base} to replay)");
    let mut unclean_seen = 0;
    let mut clean_seen = 0;
    for i in 0..400u64 {
        let seed = base.wrapping_add(i);
        let mut rng = StdRng::seed_from_u64(seed);
        let sim = SimStorage::new();
        sim.create_dir_all(Path::new("/state")).unwrap();
        sim.sync_dir(Path::new("/")).unwrap();
        let mut dir = task(&sim);
        let mut expected: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        let mut opened = false;
        let mut closed_clean = false;
        for _ in 0..rng.random_range(1..12) {
            match rng.random_range(0..10) {
                0..=2 => {
                    dir.open().unwrap();
                    opened = true;
                    closed_clean = false;
                }
                3..=7 => {
                    let tp = TopicPartition::new("app-store-changelog", rng.random_range(0..3));
                    expected.insert(tp, rng.random_range(0..1_000_000));
                    dir.checkpoint().write(&expected).unwrap();
                }
                _ if opened => {
                    dir.close_clean(&mut [], &expected).unwrap();
                    closed_clean = true;
                    opened = false;
                }
                _ => {}
            }
        }
        sim.power_cut(rng.random());
        dir = task(&sim);
        let got = dir
            .checkpoint()
            .read()
            .unwrap_or_else(|e| panic!("seed {seed}: unreadable checkpoint after the cut: {e}"));
        assert_eq!(got, expected, "seed {seed}: checkpoint content");
        let start = dir.open().unwrap();
        assert_eq!(start.checkpoint, expected, "seed {seed}");
        let want = if opened {
            unclean_seen += 1;
            PreviousShutdown::Unclean
        } else if closed_clean || !expected.is_empty() {
            clean_seen += 1;
            PreviousShutdown::Clean
        } else {
            PreviousShutdown::Fresh
        };
        assert_eq!(start.previous_shutdown, want, "seed {seed}");
    }
    assert!(
        unclean_seen > 0 && clean_seen > 0,
        "both shutdown kinds must be exercised"
    );
}

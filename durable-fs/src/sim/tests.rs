use super::*;
use crate::write_atomic;
use proptest::prelude::*;

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

#[test]
fn synced_data_survives_and_unsynced_data_is_lost_in_the_worst_cut() {
    let fs = SimStorage::new();
    fs.create_dir_all(&p("/d")).unwrap();
    fs.sync_dir(&p("/")).unwrap();
    let f = fs.open(&p("/d/f"), OpenMode::Create).unwrap();
    fs.sync_dir(&p("/d")).unwrap();
    f.write_all_at(b"durable", 0).unwrap();
    f.sync_data().unwrap();
    f.write_all_at(b"-volatile", 7).unwrap();
    assert_eq!(fs.read(&p("/d/f")).unwrap(), b"durable-volatile");
    assert_eq!(fs.unsynced_file_ops(&p("/d/f")), Some(1));
    fs.power_cut_losing_all_unsynced();
    assert_eq!(fs.read(&p("/d/f")).unwrap(), b"durable");
    let stats = fs.stats();
    assert_eq!(stats.power_cuts, 1);
    assert_eq!(stats.lost_file_ops, 1);
    // The old handle belongs to the dead process.
    assert!(f.len().is_err());
}

#[test]
fn a_synced_file_whose_directory_entry_was_not_synced_is_lost() {
    let fs = SimStorage::new();
    fs.create_dir_all(&p("/d")).unwrap();
    fs.sync_dir(&p("/")).unwrap();
    let f = fs.open(&p("/d/new"), OpenMode::Create).unwrap();
    f.write_all_at(b"data", 0).unwrap();
    f.sync_all().unwrap();
    fs.power_cut_losing_all_unsynced();
    assert!(!fs.exists(&p("/d/new")));
    assert_eq!(fs.stats().lost_dir_ops, 1);
}

#[test]
fn entries_of_a_directory_that_did_not_survive_are_lost() {
    let fs = SimStorage::new();
    fs.create_dir_all(&p("/a/b")).unwrap();
    fs.sync_dir(&p("/a")).unwrap(); // `b` is durable in `a`, but `a` is not durable in `/`
    let f = fs.open(&p("/a/b/f"), OpenMode::Create).unwrap();
    f.sync_all().unwrap();
    fs.sync_dir(&p("/a/b")).unwrap();
    fs.power_cut_losing_all_unsynced();
    assert!(!fs.exists(&p("/a")));
    assert!(!fs.exists(&p("/a/b/f")));
}

#[test]
fn a_rename_is_durable_only_after_its_directory_is_synced() {
    let fs = SimStorage::new();
    fs.create_dir_all(&p("/d")).unwrap();
    fs.sync_dir(&p("/")).unwrap();
    write_atomic(&fs, &p("/d/x"), b"one").unwrap();
    let f = fs.open(&p("/d/x.new"), OpenMode::Truncate).unwrap();
    f.write_all_at(b"two", 0).unwrap();
    f.sync_all().unwrap();
    fs.sync_dir(&p("/d")).unwrap();
    fs.rename(&p("/d/x.new"), &p("/d/x")).unwrap();
    assert_eq!(fs.read(&p("/d/x")).unwrap(), b"two");
    fs.power_cut_losing_all_unsynced();
    assert_eq!(fs.read(&p("/d/x")).unwrap(), b"one");
    assert_eq!(fs.read(&p("/d/x.new")).unwrap(), b"two");

    fs.rename(&p("/d/x.new"), &p("/d/x")).unwrap();
    fs.sync_dir(&p("/d")).unwrap();
    fs.power_cut_losing_all_unsynced();
    assert_eq!(fs.read(&p("/d/x")).unwrap(), b"two");
    assert!(!fs.exists(&p("/d/x.new")));
}

#[test]
fn write_atomic_survives_every_power_cut_whole_or_not_at_all() {
    for seed in 0..500u64 {
        let fs = SimStorage::new();
        fs.create_dir_all(&p("/d")).unwrap();
        fs.sync_dir(&p("/")).unwrap();
        write_atomic(&fs, &p("/d/meta"), b"old content").unwrap();
        // A second write, cut at a random point: the file holds the old or the new bytes.
        let f = fs.open(&p("/d/meta.tmp"), OpenMode::Truncate).unwrap();
        f.write_all_at(b"new content, longer", 0).unwrap();
        if seed % 2 == 0 {
            f.sync_all().unwrap();
            fs.rename(&p("/d/meta.tmp"), &p("/d/meta")).unwrap();
        }
        fs.power_cut(seed);
        let got = fs.read(&p("/d/meta")).unwrap();
        assert!(
            got == b"old content" || got == b"new content, longer",
            "seed {seed}: torn atomic write {got:?}"
        );
    }
}

#[test]
fn directory_operations_behave_like_posix() {
    let fs = SimStorage::new();
    fs.create_dir_all(&p("/r/t-0")).unwrap();
    fs.open(&p("/r/t-0/a"), OpenMode::Create).unwrap();
    fs.open(&p("/r/t-0/b"), OpenMode::Create).unwrap();
    let mut names = fs.read_dir(&p("/r/t-0")).unwrap();
    names.sort();
    assert_eq!(names, vec!["a", "b"]);
    assert_eq!(fs.read_dir(&p("/r")).unwrap(), vec!["t-0"]);
    fs.rename(&p("/r/t-0"), &p("/r/t-0-delete")).unwrap();
    assert!(fs.exists(&p("/r/t-0-delete/a")));
    assert!(!fs.exists(&p("/r/t-0/a")));
    fs.remove_dir_all(&p("/r/t-0-delete")).unwrap();
    assert!(fs.read_dir(&p("/r")).unwrap().is_empty());
    assert_eq!(
        fs.open(&p("/missing/f"), OpenMode::Create)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        fs.remove_file(&p("/r/nothing")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let g = fs.try_lock(&p("/r/.lock")).unwrap();
    assert_eq!(
        fs.try_lock(&p("/r/.lock")).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    drop(g);
    fs.try_lock(&p("/r/.lock")).unwrap();
}

#[test]
fn a_removed_file_stays_readable_through_its_handle() {
    let fs = SimStorage::new();
    let f = fs.open(&p("/f"), OpenMode::Create).unwrap();
    f.write_all_at(b"abc", 0).unwrap();
    fs.remove_file(&p("/f")).unwrap();
    let mut buf = [0u8; 3];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"abc");
    let mut long = [0u8; 4];
    assert_eq!(
        f.read_exact_at(&mut long, 0).unwrap_err().kind(),
        ErrorKind::UnexpectedEof
    );
}

proptest! {
    /// After any power cut, an appended file holds everything synced, followed by a prefix of
    /// the unsynced appends in order, the last one possibly cut short or zero-filled.
    #[test]
    fn appends_survive_as_the_synced_prefix_plus_a_torn_tail(
        chunks in prop::collection::vec((prop::collection::vec(1u8..=255, 1..40), any::<bool>()), 1..20),
        seed in any::<u64>(),
    ) {
        let fs = SimStorage::new();
        let f = fs.open(&p("/log"), OpenMode::Create).unwrap();
        fs.sync_dir(&p("/")).unwrap();
        let mut written = Vec::new();
        let mut synced = 0;
        for (chunk, sync) in &chunks {
            f.write_all_at(chunk, written.len() as u64).unwrap();
            written.extend_from_slice(chunk);
            if *sync {
                f.sync_data().unwrap();
                synced = written.len();
            }
        }
        fs.power_cut(seed);
        let got = fs.read(&p("/log")).unwrap();
        prop_assert!(got.len() >= synced, "seed {}: lost synced bytes", seed);
        prop_assert!(got.len() <= written.len());
        prop_assert_eq!(&got[..synced], &written[..synced]);
        // Beyond the synced prefix: the written bytes, except a zero-filled torn tail.
        let tail = &got[synced..];
        let first_zero = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        prop_assert_eq!(&tail[..first_zero], &written[synced..synced + first_zero]);
        prop_assert!(tail[first_zero..].iter().all(|&b| b == 0));
    }
}

#[test]
fn a_process_handle_stops_working_at_the_power_cut() {
    let fs = SimStorage::new();
    let process = fs.shared();
    process.create_dir_all(&p("/d")).unwrap();
    fs.power_cut_losing_all_unsynced();
    assert!(process.create_dir_all(&p("/d")).is_err());
    assert!(process.open(&p("/x"), OpenMode::Create).is_err());
    assert!(!process.exists(&p("/")));
    let next = fs.shared();
    next.create_dir_all(&p("/d")).unwrap();
    assert!(next.exists(&p("/d")));
}

#[test]
fn create_dir_all_durable_survives_the_worst_cut() {
    let fs = SimStorage::new();
    crate::create_dir_all_durable(&fs, &p("/a/b/c")).unwrap();
    fs.create_dir_all(&p("/a/b/c/not-durable")).unwrap();
    fs.power_cut_losing_all_unsynced();
    assert!(fs.exists(&p("/a/b/c")));
    assert!(!fs.exists(&p("/a/b/c/not-durable")));
    // Existing directories are left alone.
    crate::create_dir_all_durable(&fs, &p("/a/b/c")).unwrap();
}

#[test]
fn a_fork_is_an_independent_copy() {
    let fs = SimStorage::new();
    write_atomic(&fs, &p("/f"), b"one").unwrap();
    let copy = fs.fork();
    write_atomic(&copy, &p("/f"), b"two").unwrap();
    assert_eq!(fs.read(&p("/f")).unwrap(), b"one");
    assert_eq!(copy.read(&p("/f")).unwrap(), b"two");
    copy.power_cut_losing_all_unsynced();
    assert_eq!(fs.stats().power_cuts, 0);
}

#[test]
fn an_armed_cut_strikes_inside_the_code_under_test() {
    let fs = SimStorage::new();
    let process = fs.shared();
    process.create_dir_all(&p("/d")).unwrap(); // 1 mutation
    fs.arm_power_cut(3, 7);
    let f = process.open(&p("/d/f"), OpenMode::Create).unwrap(); // 1
    f.write_all_at(b"abc", 0).unwrap(); // 2
    assert!(!fs.armed_cut_struck());
    let e = f.sync_data().unwrap_err(); // 3: the cut strikes before the sync
    assert!(e.to_string().contains("power cut"), "{e}");
    assert!(fs.armed_cut_struck());
    assert_eq!(fs.stats().power_cuts, 1);
    // The dead process can do nothing more.
    assert!(process.create_dir_all(&p("/e")).is_err());
    assert!(f.write_all_at(b"x", 0).is_err());
    // Nothing was synced, so at most a prefix of the unsynced changes survives.
    let after = fs.read(&p("/d/f")).unwrap_or_default();
    assert!(b"abc".starts_with(&after) || after.iter().all(|&b| b == 0));
}

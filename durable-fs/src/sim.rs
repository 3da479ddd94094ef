//! A simulated file system that models the page cache and power cuts, for fault-injection
//! tests (in the spirit of the crash tests of fjall and redb).
//!
//! The model:
//! - Every file is an inode with a *durable* content and a list of writes and length changes
//!   made since its last `sync_data`/`sync_all`. Reads see everything written.
//! - Every change to the directory tree (new file or directory, rename, removal) is visible at
//!   once and becomes durable only when its directory is synced with [`Storage::sync_dir`]
//!   (for a rename: either the source's or the target's directory). Syncing a file never makes
//!   its directory entry durable, as POSIX promises nothing more.
//! - [`SimStorage::power_cut`] keeps, for the directory tree, the synced state plus a random
//!   prefix of the unsynced changes (journaled metadata reaches the disk in order), and for each
//!   file its durable content plus a random prefix of its unsynced writes, the last kept write
//!   possibly torn (cut short) or zero-filled (the size grew but the data never reached the
//!   disk). Entries whose directory did not survive are lost. Every handle opened before the
//!   cut fails from then on, as the process that held it is gone.
//!
//! [`SimStorage::power_cut_losing_all_unsynced`] is the worst case: nothing unsynced survives.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, ErrorKind};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{LockGuard, OpenMode, Storage, StorageFile};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    File(u64),
}

#[derive(Debug, Clone)]
enum FileOp {
    Write { pos: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default, Clone)]
struct Inode {
    durable: Vec<u8>,
    data: Vec<u8>,
    ops: Vec<FileOp>,
}

#[derive(Debug, Clone)]
enum DirOp {
    Create(PathBuf, Node),
    Remove(PathBuf),
    /// The entries moved (relative to `from`, the empty path being `from` itself), captured
    /// when the rename happened, so the rename can become durable on its own.
    Rename {
        from: PathBuf,
        to: PathBuf,
        moved: Vec<(PathBuf, Node)>,
    },
}

impl DirOp {
    fn touches(&self, dir: &Path) -> bool {
        let parent_is = |p: &Path| p.parent() == Some(dir);
        match self {
            DirOp::Create(p, _) | DirOp::Remove(p) => parent_is(p),
            DirOp::Rename { from, to, .. } => parent_is(from) || parent_is(to),
        }
    }

    fn apply(&self, tree: &mut BTreeMap<PathBuf, Node>) {
        match self {
            DirOp::Create(p, n) => {
                tree.insert(p.clone(), *n);
            }
            DirOp::Remove(p) => remove_subtree(tree, p),
            DirOp::Rename { from, to, moved } => {
                remove_subtree(tree, from);
                remove_subtree(tree, to);
                for (rel, n) in moved {
                    let dest = if rel.as_os_str().is_empty() {
                        to.clone()
                    } else {
                        to.join(rel)
                    };
                    tree.insert(dest, *n);
                }
            }
        }
    }
}

fn remove_subtree(tree: &mut BTreeMap<PathBuf, Node>, root: &Path) {
    let doomed: Vec<PathBuf> = tree
        .range(root.to_path_buf()..)
        .take_while(|(k, _)| k.starts_with(root))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        tree.remove(&k);
    }
}

fn subtree(tree: &BTreeMap<PathBuf, Node>, root: &Path) -> Vec<(PathBuf, Node)> {
    tree.range(root.to_path_buf()..)
        .take_while(|(k, _)| k.starts_with(root))
        .filter_map(|(k, n)| k.strip_prefix(root).ok().map(|r| (r.to_path_buf(), *n)))
        .collect()
}

fn apply_file_op(data: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { pos, bytes } => {
            let pos = *pos as usize;
            let end = pos + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[pos..end].copy_from_slice(bytes);
        }
        FileOp::SetLen(len) => data.resize(*len as usize, 0),
    }
}

/// Counters of what the code under test asked the simulated disk to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// `sync_data`/`sync_all` calls on files.
    pub file_syncs: u64,
    /// `sync_dir` calls.
    pub dir_syncs: u64,
    /// Power cuts simulated so far.
    pub power_cuts: u64,
    /// Unsynced file writes and length changes that the power cuts dropped or tore.
    pub lost_file_ops: u64,
    /// Unsynced directory changes that the power cuts dropped.
    pub lost_dir_ops: u64,
}

#[derive(Debug, Default, Clone)]
struct State {
    generation: u64,
    next_ino: u64,
    inodes: HashMap<u64, Inode>,
    current: BTreeMap<PathBuf, Node>,
    durable: BTreeMap<PathBuf, Node>,
    pending: Vec<DirOp>,
    locks: HashSet<PathBuf>,
    stats: SimStats,
    /// An armed power cut: mutating operations left before it strikes, and its seed.
    armed: Option<(u64, u64)>,
    armed_struck: bool,
}

impl State {
    fn node(&self, p: &Path) -> Option<Node> {
        if p.parent().is_none() {
            return Some(Node::Dir);
        }
        self.current.get(p).copied()
    }

    fn require_dir(&self, p: &Path) -> io::Result<()> {
        match self.node(p) {
            Some(Node::Dir) => Ok(()),
            Some(Node::File(_)) => Err(io::Error::new(
                ErrorKind::NotADirectory,
                format!("{} is a file", p.display()),
            )),
            None => Err(not_found(p)),
        }
    }

    fn require_parent(&self, p: &Path) -> io::Result<()> {
        match p.parent() {
            Some(parent) => self.require_dir(parent),
            None => Err(io::Error::new(
                ErrorKind::InvalidInput,
                "the root is not a file",
            )),
        }
    }

    fn change(&mut self, op: DirOp) {
        op.apply(&mut self.current);
        self.pending.push(op);
    }
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(ErrorKind::NotFound, format!("{} not found", p.display()))
}

fn stale() -> io::Error {
    io::Error::other("the process that held this handle died in a simulated power cut")
}

/// Paths are taken as absolute, with `.` components dropped.
fn norm(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The simulated file system (see the module documentation). Clones share one file system.
///
/// Used directly, a `SimStorage` always acts on the current state. The handles given out by
/// [`SimStorage::shared`] stand for one process: after a power cut every operation through
/// them fails, so a process that "died" cannot write anything (its shutdown code included).
#[derive(Debug, Clone, Default)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
    /// The generation a process handle belongs to; `None` for the test's own handle.
    process: Option<u64>,
}

impl SimStorage {
    /// An empty file system (only the root directory `/` exists).
    pub fn new() -> Self {
        Self::default()
    }

    /// An independent copy of this disk (its synced and unsynced content and its pending
    /// directory changes), for running many experiments from one prepared state.
    pub fn fork(&self) -> SimStorage {
        let mut copy = self.state.lock().clone();
        copy.locks.clear();
        SimStorage {
            state: Arc::new(Mutex::new(copy)),
            process: None,
        }
    }

    /// This file system as a shared [`Storage`] for one process: it stops working at the
    /// next power cut (call `shared` again for the process started after it).
    pub fn shared(&self) -> Arc<dyn Storage> {
        let generation = self.state.lock().generation;
        Arc::new(SimStorage {
            state: Arc::clone(&self.state),
            process: Some(generation),
        })
    }

    fn lock(&self) -> io::Result<parking_lot::MutexGuard<'_, State>> {
        let st = self.state.lock();
        match self.process {
            Some(g) if g != st.generation => Err(stale()),
            _ => Ok(st),
        }
    }

    /// Simulates a power cut whose random choices (which unsynced changes reach the disk, and
    /// how the last one is torn) come from `seed`.
    pub fn power_cut(&self, seed: u64) {
        self.cut_with(&mut Choice::Random(Box::new(StdRng::seed_from_u64(seed))));
    }

    /// The worst power cut: every unsynced write and directory change is lost.
    pub fn power_cut_losing_all_unsynced(&self) {
        self.cut_with(&mut Choice::LoseAll);
    }

    fn cut_with(&self, choice: &mut Choice) {
        self.state.lock().cut(choice);
    }

    /// Arms a power cut that strikes in the middle of the code under test: just before the
    /// `after_ops`-th mutating operation from now (a write, length change, sync, file or
    /// directory creation, rename or removal), which then fails, as does everything the dead
    /// process tries afterwards. The cut's random choices come from `seed`.
    pub fn arm_power_cut(&self, after_ops: u64, seed: u64) {
        self.state.lock().armed = Some((after_ops.max(1), seed));
    }

    /// Disarms a cut armed by [`SimStorage::arm_power_cut`] that has not struck yet.
    pub fn disarm_power_cut(&self) {
        self.state.lock().armed = None;
    }

    /// Whether an armed cut has struck (and is no longer armed).
    pub fn armed_cut_struck(&self) -> bool {
        let st = self.state.lock();
        st.armed.is_none() && st.armed_struck
    }
}

impl State {
    /// Counts one mutating operation against an armed cut; strikes when it is due.
    fn before_mutation(&mut self) -> io::Result<()> {
        if let Some((left, seed)) = self.armed {
            if left <= 1 {
                self.armed = None;
                self.armed_struck = true;
                self.cut(&mut Choice::Random(Box::new(StdRng::seed_from_u64(seed))));
                return Err(stale());
            }
            self.armed = Some((left - 1, seed));
        }
        Ok(())
    }

    fn cut(&mut self, choice: &mut Choice) {
        let st = self;
        // The directory tree: the synced state plus a prefix of the unsynced changes.
        let keep_ops = choice.count(st.pending.len());
        let mut tree = std::mem::take(&mut st.durable);
        for op in &st.pending[..keep_ops] {
            op.apply(&mut tree);
        }
        st.stats.lost_dir_ops += (st.pending.len() - keep_ops) as u64;
        st.pending.clear();
        // Entries whose directory did not survive are lost (parents sort before children).
        let mut survived: BTreeMap<PathBuf, Node> = BTreeMap::new();
        for (p, n) in tree {
            let parent_ok = match p.parent() {
                None => true,
                Some(parent) if parent.parent().is_none() => true,
                Some(parent) => survived.get(parent) == Some(&Node::Dir),
            };
            if parent_ok {
                survived.insert(p, n);
            }
        }
        // File contents: the durable bytes plus a prefix of the unsynced operations, the last
        // one possibly torn.
        let live: HashSet<u64> = survived
            .values()
            .filter_map(|n| match n {
                Node::File(ino) => Some(*ino),
                Node::Dir => None,
            })
            .collect();
        st.inodes.retain(|ino, _| live.contains(ino));
        let mut inos: Vec<u64> = st.inodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            let Some(inode) = st.inodes.get_mut(&ino) else {
                continue;
            };
            let keep = choice.count(inode.ops.len());
            let mut content = std::mem::take(&mut inode.durable);
            for (i, op) in inode.ops[..keep].iter().enumerate() {
                if i + 1 == keep {
                    match (op, choice.tear()) {
                        (FileOp::Write { pos, bytes }, Tear::Cut(fraction)) => {
                            let n = (bytes.len() as u64 * u64::from(fraction) / 256) as usize;
                            apply_file_op(
                                &mut content,
                                &FileOp::Write {
                                    pos: *pos,
                                    bytes: bytes[..n].to_vec(),
                                },
                            );
                            st.stats.lost_file_ops += 1;
                            continue;
                        }
                        (FileOp::Write { pos, bytes }, Tear::Zeros) => {
                            apply_file_op(
                                &mut content,
                                &FileOp::Write {
                                    pos: *pos,
                                    bytes: vec![0; bytes.len()],
                                },
                            );
                            st.stats.lost_file_ops += 1;
                            continue;
                        }
                        _ => {}
                    }
                }
                apply_file_op(&mut content, op);
            }
            st.stats.lost_file_ops += (inode.ops.len() - keep) as u64;
            inode.ops.clear();
            inode.data = content.clone();
            inode.durable = content;
        }
        st.current = survived.clone();
        st.durable = survived;
        st.locks.clear();
        st.generation += 1;
        st.stats.power_cuts += 1;
    }
}

impl SimStorage {
    /// What the code under test asked of the disk so far, and what power cuts destroyed.
    pub fn stats(&self) -> SimStats {
        self.state.lock().stats
    }

    /// Number of directory changes not yet made durable by a directory sync.
    pub fn unsynced_dir_changes(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// Bytes of the file at `path` that would read back differently after the worst power cut
    /// (0 when everything is synced), or `None` when there is no such file.
    pub fn unsynced_file_ops(&self, path: &Path) -> Option<usize> {
        let st = self.state.lock();
        match st.current.get(&norm(path)) {
            Some(Node::File(ino)) => st.inodes.get(ino).map(|i| i.ops.len()),
            _ => None,
        }
    }
}

enum Tear {
    None,
    Cut(u8),
    Zeros,
}

enum Choice {
    LoseAll,
    Random(Box<StdRng>),
}

impl Choice {
    fn count(&mut self, n: usize) -> usize {
        match self {
            Choice::LoseAll => 0,
            Choice::Random(rng) => {
                // Half the time everything or nothing survives: the edges find the most bugs.
                match rng.random_range(0..4u8) {
                    0 => 0,
                    1 => n,
                    _ => rng.random_range(0..=n),
                }
            }
        }
    }

    fn tear(&mut self) -> Tear {
        match self {
            Choice::LoseAll => Tear::None,
            Choice::Random(rng) => match rng.random_range(0..4u8) {
                0 => Tear::Cut(rng.random()),
                1 => Tear::Zeros,
                _ => Tear::None,
            },
        }
    }
}

#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<State>>,
    ino: u64,
    generation: u64,
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut State, u64) -> io::Result<T>) -> io::Result<T> {
        let mut st = self.state.lock();
        if st.generation != self.generation {
            return Err(stale());
        }
        f(&mut st, self.ino)
    }
}

fn inode(st: &mut State, ino: u64) -> io::Result<&mut Inode> {
    st.inodes
        .get_mut(&ino)
        .ok_or_else(|| io::Error::other("inode vanished"))
}

impl StorageFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.with(|st, ino| {
            let i = inode(st, ino)?;
            let start =
                usize::try_from(pos).map_err(|_| io::Error::from(ErrorKind::UnexpectedEof))?;
            let end = start
                .checked_add(buf.len())
                .filter(|&e| e <= i.data.len())
                .ok_or_else(|| io::Error::from(ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(&i.data[start..end]);
            Ok(())
        })
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.with(|st, ino| {
            st.before_mutation()?;
            let i = inode(st, ino)?;
            let op = FileOp::Write {
                pos,
                bytes: buf.to_vec(),
            };
            apply_file_op(&mut i.data, &op);
            i.ops.push(op);
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|st, ino| Ok(inode(st, ino)?.data.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|st, ino| {
            st.before_mutation()?;
            let i = inode(st, ino)?;
            let op = FileOp::SetLen(len);
            apply_file_op(&mut i.data, &op);
            i.ops.push(op);
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|st, ino| {
            st.before_mutation()?;
            st.stats.file_syncs += 1;
            let i = inode(st, ino)?;
            i.durable = i.data.clone();
            i.ops.clear();
            Ok(())
        })
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }
}

#[derive(Debug)]
struct SimLock {
    state: Arc<Mutex<State>>,
    path: PathBuf,
    generation: u64,
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        if st.generation == self.generation {
            st.locks.remove(&self.path);
        }
    }
}

impl Storage for SimStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let p = norm(path);
        let mut st = self.lock()?;
        let ino = match (st.node(&p), mode) {
            (Some(Node::Dir), _) => {
                return Err(io::Error::new(
                    ErrorKind::IsADirectory,
                    format!("{} is a directory", p.display()),
                ))
            }
            (Some(Node::File(ino)), OpenMode::Truncate) => {
                st.before_mutation()?;
                let i = inode(&mut st, ino)?;
                let op = FileOp::SetLen(0);
                apply_file_op(&mut i.data, &op);
                i.ops.push(op);
                ino
            }
            (Some(Node::File(ino)), _) => ino,
            (None, OpenMode::Existing) => return Err(not_found(&p)),
            (None, OpenMode::Create | OpenMode::Truncate) => {
                st.require_parent(&p)?;
                st.before_mutation()?;
                st.next_ino += 1;
                let ino = st.next_ino;
                st.inodes.insert(ino, Inode::default());
                st.change(DirOp::Create(p, Node::File(ino)));
                ino
            }
        };
        Ok(Arc::new(SimFile {
            state: Arc::clone(&self.state),
            ino,
            generation: st.generation,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let p = norm(path);
        let mut st = self.lock()?;
        let mut at = PathBuf::from("/");
        for c in p.components().skip(1) {
            at.push(c);
            match st.node(&at) {
                Some(Node::Dir) => {}
                Some(Node::File(_)) => {
                    return Err(io::Error::new(
                        ErrorKind::AlreadyExists,
                        format!("{} is a file", at.display()),
                    ))
                }
                None => {
                    st.before_mutation()?;
                    st.change(DirOp::Create(at.clone(), Node::Dir));
                }
            }
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let p = norm(path);
        let st = self.lock()?;
        st.require_dir(&p)?;
        Ok(st
            .current
            .range(p.clone()..)
            .take_while(|(k, _)| k.starts_with(&p))
            .filter(|(k, _)| k.parent() == Some(p.as_path()))
            .filter_map(|(k, _)| k.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (norm(from), norm(to));
        let mut st = self.lock()?;
        let src = st.node(&from).ok_or_else(|| not_found(&from))?;
        st.require_parent(&to)?;
        if from == to {
            return Ok(());
        }
        match (src, st.node(&to)) {
            (Node::File(_), Some(Node::Dir)) => {
                return Err(io::Error::new(
                    ErrorKind::IsADirectory,
                    format!("{} is a directory", to.display()),
                ))
            }
            (Node::Dir, Some(_)) => {
                return Err(io::Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{} exists", to.display()),
                ))
            }
            _ => {}
        }
        if to.starts_with(&from) {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                "cannot move a directory into itself",
            ));
        }
        st.before_mutation()?;
        let moved = subtree(&st.current, &from);
        st.change(DirOp::Rename { from, to, moved });
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let p = norm(path);
        let mut st = self.lock()?;
        match st.node(&p) {
            Some(Node::File(_)) => {
                st.before_mutation()?;
                st.change(DirOp::Remove(p));
                Ok(())
            }
            Some(Node::Dir) => Err(io::Error::new(
                ErrorKind::IsADirectory,
                format!("{} is a directory", p.display()),
            )),
            None => Err(not_found(&p)),
        }
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let p = norm(path);
        let mut st = self.lock()?;
        st.require_dir(&p)?;
        if p.parent().is_none() {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                "cannot remove the root",
            ));
        }
        st.before_mutation()?;
        st.change(DirOp::Remove(p));
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let p = norm(path);
        let mut st = self.lock()?;
        st.require_dir(&p)?;
        st.before_mutation()?;
        st.stats.dir_syncs += 1;
        let pending = std::mem::take(&mut st.pending);
        let mut rest = Vec::with_capacity(pending.len());
        for op in pending {
            if op.touches(&p) {
                op.apply(&mut st.durable);
            } else {
                rest.push(op);
            }
        }
        st.pending = rest;
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        self.lock().is_ok_and(|st| st.node(&norm(path)).is_some())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let p = norm(path);
        let mut st = self.lock()?;
        if !st.locks.insert(p.clone()) {
            return Err(io::Error::from(ErrorKind::WouldBlock));
        }
        Ok(Box::new(SimLock {
            state: Arc::clone(&self.state),
            path: p,
            generation: st.generation,
        }))
    }
}

#[cfg(test)]
mod tests;

//! Which client runs which task: Kafka Streams' `HighAvailabilityTaskAssignor` (KIP-441),
//! pure logic over [`ClientState`]s.
//!
//! A *client* is an application instance (one process id); its *capacity* is its number of
//! consumers (stream threads). The leader ([`crate::AssignmentSpec::assign`]) builds one
//! `ClientState` per client with its lag per stateful task, runs a [`TaskAssignor`] over
//! all clients, then spreads each client's tasks over its consumers with
//! [`assign_tasks_to_threads`].
//!
//! The high-availability assignor, as Kafka's:
//!
//! 1. **Stateful actives, balanced**: the stateful tasks (those with changelogs), in task
//!    order, go round-robin over the clients in process-id order; then tasks move from the
//!    most to the least loaded client (load = assigned tasks / capacity) while a move
//!    narrows the skew. This is the *target* assignment; it ignores where state is.
//! 2. **Standbys** (`num.standby.replicas` per stateful task): each goes to the least loaded
//!    client that does not hold the task yet (never the active's client), then balanced
//!    the same way; a task gets fewer standbys when there are not enough clients.
//! 3. **Active movements** (stickiness): a task whose target client is not *caught up*
//!    (lag ≤ `acceptable.recovery.lag`, or it ran the task until now) while a more caught-up
//!    client exists stays on a caught-up client instead — one holding a caught-up standby
//!    (the two swap), else the least loaded caught-up client, else the client with the
//!    least lag — and the target client gets a *warm-up* replica (a standby that restores
//!    the state) while `max.warmup.replicas` (for the whole assignment) lasts. Tasks with
//!    fewer caught-up clients move first.
//! 4. **Standby movements**: a standby on a client that is not caught up moves to a caught-up
//!    client without a copy of the task (the original stays as a warm-up while warm-ups
//!    last).
//! 5. **Stateless actives**: each to the client with the lowest active-task load.
//!
//! If any movement was needed, the assignment asks for a *probing rebalance*
//! (`probing.rebalance.interval.ms` later) so warm-ups that caught up take their tasks over.
//! The output depends only on the input (every choice breaks ties by task id, then process
//! id).
//!
//! Lags: `end offset sum − offset sum` over a task's changelog partitions; [`LATEST_OFFSET`]
//! (−2) for a task the client runs as an active task (caught up by definition); a client
//! without state for a task has a lag equal to the end offset sum; a client whose offset sum
//! is above the end (corrupt or stale state) counts as having no state.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use uuid::Uuid;

use crate::assignment::{DEFAULT_PROBING_REBALANCE_INTERVAL, LATEST_OFFSET, UNKNOWN_OFFSET_SUM};
use crate::task::TaskId;

/// The assignor's settings (Kafka's `AssignmentConfigs`), from `StreamsConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignorConfig {
    /// `num.standby.replicas` (default 0).
    pub num_standby_replicas: usize,
    /// `acceptable.recovery.lag` (default 10 000): the largest lag of a caught-up client.
    pub acceptable_recovery_lag: i64,
    /// `max.warmup.replicas` (default 2): warm-up replicas at once, over the whole group.
    pub max_warmup_replicas: usize,
    /// `probing.rebalance.interval.ms` (default 10 minutes).
    pub probing_rebalance_interval: Duration,
}

impl Default for AssignorConfig {
    fn default() -> Self {
        AssignorConfig {
            num_standby_replicas: 0,
            acceptable_recovery_lag: 10_000,
            max_warmup_replicas: 2,
            probing_rebalance_interval: DEFAULT_PROBING_REBALANCE_INTERVAL,
        }
    }
}

/// One client (application instance) during an assignment (Kafka's `ClientState`): its
/// capacity, its lag per stateful task, and the tasks assigned to it so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientState {
    capacity: usize,
    lags: BTreeMap<TaskId, i64>,
    prev_active: BTreeSet<TaskId>,
    active: BTreeSet<TaskId>,
    standby: BTreeSet<TaskId>,
}

impl ClientState {
    /// A client of `capacity` consumers reporting `offset_sums`, with its lag for every task
    /// of `end_offset_sums` (the stateful tasks, Kafka's `computeTaskLags`).
    pub fn with_offset_sums(
        capacity: usize,
        offset_sums: &BTreeMap<TaskId, i64>,
        end_offset_sums: &BTreeMap<TaskId, i64>,
    ) -> Self {
        let lags = end_offset_sums
            .iter()
            .map(|(t, end)| {
                let lag = match offset_sums.get(t).copied().unwrap_or(0) {
                    LATEST_OFFSET => LATEST_OFFSET,
                    UNKNOWN_OFFSET_SUM => UNKNOWN_OFFSET_SUM,
                    sum if sum < 0 || sum > *end => *end,
                    sum => end - sum,
                };
                (*t, lag)
            })
            .collect();
        ClientState {
            capacity: capacity.max(1),
            lags,
            prev_active: prev_active(offset_sums),
            active: BTreeSet::new(),
            standby: BTreeSet::new(),
        }
    }

    /// A client whose lags are unknown (end offsets could not be read): its previous active
    /// tasks count as caught up, everything else as unknown.
    pub fn without_lags(
        capacity: usize,
        offset_sums: &BTreeMap<TaskId, i64>,
        stateful: &BTreeSet<TaskId>,
    ) -> Self {
        let lags = stateful
            .iter()
            .map(|t| {
                let lag = if offset_sums.get(t) == Some(&LATEST_OFFSET) {
                    LATEST_OFFSET
                } else {
                    UNKNOWN_OFFSET_SUM
                };
                (*t, lag)
            })
            .collect();
        ClientState {
            capacity: capacity.max(1),
            lags,
            prev_active: prev_active(offset_sums),
            active: BTreeSet::new(),
            standby: BTreeSet::new(),
        }
    }

    /// A client of `capacity` consumers with the given lags (tests and custom assignors).
    pub fn with_lags(capacity: usize, lags: BTreeMap<TaskId, i64>) -> Self {
        let prev = lags
            .iter()
            .filter(|(_, l)| **l == LATEST_OFFSET)
            .map(|(t, _)| *t)
            .collect();
        ClientState {
            capacity: capacity.max(1),
            lags,
            prev_active: prev,
            active: BTreeSet::new(),
            standby: BTreeSet::new(),
        }
    }

    /// Consumers (stream threads) of the client.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The client's lag for a stateful task ([`LATEST_OFFSET`] if it runs it; `i64::MAX`
    /// for a task without a known lag).
    pub fn lag_for(&self, task: &TaskId) -> i64 {
        self.lags.get(task).copied().unwrap_or(i64::MAX)
    }

    /// Tasks the client ran as active tasks until this rebalance.
    pub fn prev_active_tasks(&self) -> &BTreeSet<TaskId> {
        &self.prev_active
    }

    /// Active tasks assigned.
    pub fn active_tasks(&self) -> &BTreeSet<TaskId> {
        &self.active
    }

    /// Standby (and warm-up) tasks assigned.
    pub fn standby_tasks(&self) -> &BTreeSet<TaskId> {
        &self.standby
    }

    /// Whether the task is assigned here, active or standby.
    pub fn has_assigned(&self, task: &TaskId) -> bool {
        self.active.contains(task) || self.standby.contains(task)
    }

    /// Assigns `task` as an active task (and no longer as a standby).
    pub fn assign_active(&mut self, task: TaskId) {
        self.standby.remove(&task);
        self.active.insert(task);
    }

    /// Assigns `task` as a standby task, unless it is active here.
    pub fn assign_standby(&mut self, task: TaskId) {
        if !self.active.contains(&task) {
            self.standby.insert(task);
        }
    }

    fn unassign_active(&mut self, task: &TaskId) {
        self.active.remove(task);
    }

    fn unassign_standby(&mut self, task: &TaskId) {
        self.standby.remove(task);
    }

    fn assigned_count(&self) -> usize {
        self.active.len() + self.standby.len()
    }

    /// Assigned tasks (active and standby) per consumer.
    fn assigned_load(&self) -> f64 {
        self.assigned_count() as f64 / self.capacity as f64
    }

    /// Active tasks per consumer.
    fn active_load(&self) -> f64 {
        self.active.len() as f64 / self.capacity as f64
    }
}

fn prev_active(offset_sums: &BTreeMap<TaskId, i64>) -> BTreeSet<TaskId> {
    offset_sums
        .iter()
        .filter(|(_, o)| **o == LATEST_OFFSET)
        .map(|(t, _)| *t)
        .collect()
}

/// Assigns tasks to clients (the leader runs it at every rebalance). Implementations fill
/// every client's active and standby tasks; every task of `all_tasks` must end up active
/// on exactly one client (when there is a client), and a client never holds a task both
/// as active and as standby.
pub trait TaskAssignor: Send + Sync {
    /// Assigns `all_tasks` (of which `stateful` have changelogs) to `clients`. Returns true
    /// if a follow-up probing rebalance should be scheduled (warm-ups are restoring).
    fn assign(
        &self,
        clients: &mut BTreeMap<Uuid, ClientState>,
        all_tasks: &BTreeSet<TaskId>,
        stateful: &BTreeSet<TaskId>,
        config: &AssignorConfig,
    ) -> bool;
}

/// Kafka Streams' default assignor (`HighAvailabilityTaskAssignor`, KIP-441): balanced, with
/// tasks kept on caught-up clients while warm-up replicas restore elsewhere. See the
/// [module documentation](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct HighAvailabilityTaskAssignor;

impl TaskAssignor for HighAvailabilityTaskAssignor {
    fn assign(
        &self,
        clients: &mut BTreeMap<Uuid, ClientState>,
        all_tasks: &BTreeSet<TaskId>,
        stateful: &BTreeSet<TaskId>,
        config: &AssignorConfig,
    ) -> bool {
        if clients.is_empty() {
            return false;
        }
        assign_active_stateful(clients, stateful);
        if config.num_standby_replicas > 0 {
            assign_standbys(clients, stateful, config.num_standby_replicas);
            balance_over_threads(clients, Kind::Standby);
        }
        let mut warmups_left = config.max_warmup_replicas;
        let caught_up = caught_up_clients(clients, stateful, config.acceptable_recovery_lag);
        let by_lag = clients_by_lag(clients, stateful);
        let mut warmups: BTreeMap<Uuid, BTreeSet<TaskId>> = BTreeMap::new();
        let active_moves = move_actives(
            clients,
            &caught_up,
            &by_lag,
            &mut warmups,
            &mut warmups_left,
        );
        let standby_moves =
            move_standbys(clients, &caught_up, &by_lag, &warmups, &mut warmups_left);
        let stateless: BTreeSet<TaskId> = all_tasks.difference(stateful).copied().collect();
        assign_stateless(clients, &stateless);
        let probing = active_moves + standby_moves > 0;
        tracing::info!(
            clients = clients.len(),
            tasks = all_tasks.len(),
            stateful = stateful.len(),
            active_moves,
            standby_moves,
            probing,
            "high-availability assignment"
        );
        probing
    }
}

/// Whole tasks to their previous clients while those are below their share (capacity
/// weighted), the rest to the least loaded client; standbys to the least loaded clients
/// without a copy. Kafka's `FallbackPriorTaskAssignor`/`LegacyStickyTaskAssignor` role:
/// used when changelog end offsets cannot be read. Never asks for a probing rebalance (the
/// caller does, to retry the lags).
#[derive(Debug, Clone, Copy, Default)]
pub struct StickyTaskAssignor;

impl TaskAssignor for StickyTaskAssignor {
    fn assign(
        &self,
        clients: &mut BTreeMap<Uuid, ClientState>,
        all_tasks: &BTreeSet<TaskId>,
        stateful: &BTreeSet<TaskId>,
        config: &AssignorConfig,
    ) -> bool {
        if clients.is_empty() {
            return false;
        }
        let total_capacity: usize = clients.values().map(|c| c.capacity).sum();
        let share = |c: &ClientState| (all_tasks.len() * c.capacity).div_ceil(total_capacity);
        let mut rest = Vec::new();
        for t in all_tasks {
            let prev = clients
                .iter_mut()
                .find(|(_, c)| c.prev_active.contains(t))
                .filter(|(_, c)| c.active.len() < share(c));
            match prev {
                Some((_, c)) => c.assign_active(*t),
                None => rest.push(*t),
            }
        }
        for t in rest {
            if let Some(id) = least_loaded(clients, |c| c.active_load(), |_| true) {
                if let Some(c) = clients.get_mut(&id) {
                    c.assign_active(t);
                }
            }
        }
        if config.num_standby_replicas > 0 {
            assign_standbys(clients, stateful, config.num_standby_replicas);
        }
        false
    }
}

/// The client with the lowest `weight` among those passing `allowed` (ties: process id).
fn least_loaded(
    clients: &BTreeMap<Uuid, ClientState>,
    weight: impl Fn(&ClientState) -> f64,
    allowed: impl Fn(&Uuid) -> bool,
) -> Option<Uuid> {
    clients
        .iter()
        .filter(|(id, _)| allowed(id))
        .min_by(|(a_id, a), (b_id, b)| weight(a).total_cmp(&weight(b)).then(a_id.cmp(b_id)))
        .map(|(id, _)| *id)
}

/// Kafka's `ConstrainedPrioritySet`: clients waiting to be picked, the least loaded (by
/// assigned-task load at the time of the pick) first.
struct PrioritySet {
    members: BTreeSet<Uuid>,
}

impl PrioritySet {
    fn new() -> Self {
        PrioritySet {
            members: BTreeSet::new(),
        }
    }

    fn offer(&mut self, id: Uuid) {
        self.members.insert(id);
    }

    /// Takes the least loaded client passing `allowed`, if any.
    fn poll(
        &mut self,
        clients: &BTreeMap<Uuid, ClientState>,
        weight: impl Fn(&ClientState) -> f64,
        allowed: impl Fn(&Uuid) -> bool,
    ) -> Option<Uuid> {
        let id = least_loaded(clients, weight, |id| {
            self.members.contains(id) && allowed(id)
        })?;
        self.members.remove(&id);
        Some(id)
    }
}

fn assign_active_stateful(clients: &mut BTreeMap<Uuid, ClientState>, stateful: &BTreeSet<TaskId>) {
    let ids: Vec<Uuid> = clients.keys().copied().collect();
    for (i, t) in stateful.iter().enumerate() {
        if let Some(c) = ids.get(i % ids.len()).and_then(|id| clients.get_mut(id)) {
            c.assign_active(*t);
        }
    }
    balance_over_threads(clients, Kind::Active);
}

fn assign_standbys(
    clients: &mut BTreeMap<Uuid, ClientState>,
    stateful: &BTreeSet<TaskId>,
    n: usize,
) {
    for t in stateful {
        let mut placed = 0;
        while placed < n {
            let Some(id) = least_loaded(clients, ClientState::assigned_load, |id| {
                clients.get(id).is_some_and(|c| !c.has_assigned(t))
            }) else {
                break;
            };
            if let Some(c) = clients.get_mut(&id) {
                c.assign_standby(*t);
            }
            placed += 1;
        }
        if placed < n {
            tracing::warn!(task = %t, wanted = n, placed, "not enough clients for every standby replica of the task");
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Active,
    Standby,
}

/// Kafka's `balanceTasksOverThreads`: moves tasks of one kind from more to less loaded
/// clients while a move narrows the skew (loads per consumer).
fn balance_over_threads(clients: &mut BTreeMap<Uuid, ClientState>, kind: Kind) {
    let ids: Vec<Uuid> = clients.keys().copied().collect();
    let mut keep_balancing = true;
    while keep_balancing {
        keep_balancing = false;
        for src in &ids {
            for dst in &ids {
                if src == dst {
                    continue;
                }
                let tasks: Vec<TaskId> = match (kind, clients.get(src)) {
                    (Kind::Active, Some(c)) => c.active.iter().copied().collect(),
                    (Kind::Standby, Some(c)) => c.standby.iter().copied().collect(),
                    (_, None) => continue,
                };
                for t in tasks {
                    let (Some(s), Some(d)) = (clients.get(src), clients.get(dst)) else {
                        break;
                    };
                    if !should_move(s, d) {
                        break;
                    }
                    if d.has_assigned(&t) {
                        continue;
                    }
                    if let Some(s) = clients.get_mut(src) {
                        match kind {
                            Kind::Active => s.unassign_active(&t),
                            Kind::Standby => s.unassign_standby(&t),
                        }
                    }
                    if let Some(d) = clients.get_mut(dst) {
                        match kind {
                            Kind::Active => d.assign_active(t),
                            Kind::Standby => d.assign_standby(t),
                        }
                    }
                    keep_balancing = true;
                }
            }
        }
    }
}

/// Whether moving one task from `src` to `dst` narrows their skew without reversing it.
fn should_move(src: &ClientState, dst: &ClientState) -> bool {
    let skew = src.assigned_load() - dst.assigned_load();
    if skew <= 0.0 {
        return false;
    }
    let at_dst = (dst.assigned_count() as f64 + 1.0) / dst.capacity as f64;
    let at_src = (src.assigned_count() as f64 - 1.0) / src.capacity as f64;
    let proposed = at_src - at_dst;
    proposed >= 0.0 && proposed < skew
}

fn caught_up_clients(
    clients: &BTreeMap<Uuid, ClientState>,
    stateful: &BTreeSet<TaskId>,
    acceptable: i64,
) -> BTreeMap<TaskId, BTreeSet<Uuid>> {
    stateful
        .iter()
        .map(|t| {
            let ids = clients
                .iter()
                .filter(|(_, c)| {
                    let lag = c.lag_for(t);
                    lag == LATEST_OFFSET
                        || acceptable == i64::MAX
                        || (0..=acceptable).contains(&lag)
                })
                .map(|(id, _)| *id)
                .collect();
            (*t, ids)
        })
        .collect()
}

/// Per task, the clients by increasing lag (ties: process id).
fn clients_by_lag(
    clients: &BTreeMap<Uuid, ClientState>,
    stateful: &BTreeSet<TaskId>,
) -> BTreeMap<TaskId, Vec<Uuid>> {
    stateful
        .iter()
        .map(|t| {
            let mut ids: Vec<(i64, Uuid)> =
                clients.iter().map(|(id, c)| (c.lag_for(t), *id)).collect();
            ids.sort();
            (*t, ids.into_iter().map(|(_, id)| id).collect())
        })
        .collect()
}

fn is_caught_up(caught_up: &BTreeMap<TaskId, BTreeSet<Uuid>>, t: &TaskId, c: &Uuid) -> bool {
    caught_up.get(t).is_some_and(|s| s.contains(c))
}

/// Not caught up on `client` while a client with less lag exists.
fn needs_moving(
    clients: &BTreeMap<Uuid, ClientState>,
    caught_up: &BTreeMap<TaskId, BTreeSet<Uuid>>,
    by_lag: &BTreeMap<TaskId, Vec<Uuid>>,
    t: &TaskId,
    client: &Uuid,
) -> bool {
    if is_caught_up(caught_up, t, client) {
        return false;
    }
    let lag_of = |id: &Uuid| clients.get(id).map_or(i64::MAX, |c| c.lag_for(t));
    let best = by_lag
        .get(t)
        .and_then(|ids| ids.first())
        .map_or(i64::MAX, lag_of);
    best < lag_of(client)
}

/// The first client (by lag) before `destination` passing `allowed`.
fn most_caught_up(
    by_lag: &BTreeMap<TaskId, Vec<Uuid>>,
    t: &TaskId,
    destination: &Uuid,
    allowed: impl Fn(&Uuid) -> bool,
) -> Option<Uuid> {
    for id in by_lag.get(t)? {
        if id == destination {
            return None;
        }
        if allowed(id) {
            return Some(*id);
        }
    }
    None
}

/// Movements in Kafka's order: fewest caught-up clients first, then task id.
fn movements(
    clients: &BTreeMap<Uuid, ClientState>,
    caught_up: &BTreeMap<TaskId, BTreeSet<Uuid>>,
    by_lag: &BTreeMap<TaskId, Vec<Uuid>>,
    kind: Kind,
    skip: &BTreeMap<Uuid, BTreeSet<TaskId>>,
) -> Vec<(TaskId, Uuid)> {
    let mut moves = Vec::new();
    for (id, c) in clients {
        let tasks = match kind {
            Kind::Active => &c.active,
            Kind::Standby => &c.standby,
        };
        for t in tasks {
            if skip.get(id).is_some_and(|s| s.contains(t)) {
                continue;
            }
            if caught_up.contains_key(t) && needs_moving(clients, caught_up, by_lag, t, id) {
                moves.push((t.to_owned(), *id));
            }
        }
    }
    moves.sort_by_key(|(t, dest)| (caught_up.get(t).map_or(0, BTreeSet::len), *t, *dest));
    moves
}

fn swap_standby_and_active(
    clients: &mut BTreeMap<Uuid, ClientState>,
    t: TaskId,
    source: &Uuid,
    destination: &Uuid,
) {
    if let Some(s) = clients.get_mut(source) {
        s.unassign_standby(&t);
        s.assign_active(t);
    }
    if let Some(d) = clients.get_mut(destination) {
        d.unassign_active(&t);
        d.assign_standby(t);
    }
}

fn move_active_and_warm_up(
    clients: &mut BTreeMap<Uuid, ClientState>,
    t: TaskId,
    source: &Uuid,
    destination: &Uuid,
    warmups: &mut BTreeMap<Uuid, BTreeSet<TaskId>>,
    warmups_left: &mut usize,
) {
    if let Some(s) = clients.get_mut(source) {
        s.assign_active(t);
    }
    if let Some(d) = clients.get_mut(destination) {
        d.unassign_active(&t);
        if *warmups_left > 0 {
            *warmups_left -= 1;
            d.assign_standby(t);
            warmups.entry(*destination).or_default().insert(t);
        }
    }
}

/// Kafka's `TaskMovement.assignActiveTaskMovements`.
fn move_actives(
    clients: &mut BTreeMap<Uuid, ClientState>,
    caught_up: &BTreeMap<TaskId, BTreeSet<Uuid>>,
    by_lag: &BTreeMap<TaskId, Vec<Uuid>>,
    warmups: &mut BTreeMap<Uuid, BTreeSet<TaskId>>,
    warmups_left: &mut usize,
) -> usize {
    let moves = movements(clients, caught_up, by_lag, Kind::Active, &BTreeMap::new());
    let mut set = PrioritySet::new();
    for id in clients.keys() {
        set.offer(*id);
    }
    for (t, destination) in &moves {
        let t = *t;
        let caught = |id: &Uuid| is_caught_up(caught_up, &t, id);
        // A caught-up client holding a standby of the task: swap.
        let with_standby = set.poll(clients, ClientState::assigned_load, |id| {
            caught(id) && clients.get(id).is_some_and(|c| c.standby.contains(&t))
        });
        if let Some(source) = with_standby {
            swap_standby_and_active(clients, t, &source, destination);
            set.offer(source);
            set.offer(*destination);
            continue;
        }
        // Any caught-up client, the least loaded.
        if let Some(source) = set.poll(clients, ClientState::assigned_load, caught) {
            move_active_and_warm_up(clients, t, &source, destination, warmups, warmups_left);
            set.offer(source);
            set.offer(*destination);
            continue;
        }
        // The most caught-up client.
        if let Some(source) = most_caught_up(by_lag, &t, destination, |_| true) {
            if clients.get(&source).is_some_and(|c| c.standby.contains(&t)) {
                swap_standby_and_active(clients, t, &source, destination);
            } else {
                move_active_and_warm_up(clients, t, &source, destination, warmups, warmups_left);
            }
            set.offer(source);
            set.offer(*destination);
        } else {
            tracing::warn!(task = %t, "no more caught-up client for a scheduled movement");
        }
    }
    moves.len()
}

/// Kafka's `TaskMovement.assignStandbyTaskMovements`.
fn move_standbys(
    clients: &mut BTreeMap<Uuid, ClientState>,
    caught_up: &BTreeMap<TaskId, BTreeSet<Uuid>>,
    by_lag: &BTreeMap<TaskId, Vec<Uuid>>,
    warmups: &BTreeMap<Uuid, BTreeSet<TaskId>>,
    warmups_left: &mut usize,
) -> usize {
    let moves = movements(clients, caught_up, by_lag, Kind::Standby, warmups);
    let mut set = PrioritySet::new();
    for id in clients.keys() {
        set.offer(*id);
    }
    let mut needed = 0;
    for (t, destination) in &moves {
        let t = *t;
        let eligible = |clients: &BTreeMap<Uuid, ClientState>, id: &Uuid| {
            clients.get(id).is_some_and(|c| !c.has_assigned(&t))
        };
        let source = set
            .poll(clients, ClientState::assigned_load, |id| {
                is_caught_up(caught_up, &t, id) && eligible(clients, id)
            })
            .or_else(|| most_caught_up(by_lag, &t, destination, |id| eligible(clients, id)));
        let Some(source) = source else {
            // Every more caught-up client already holds the task.
            continue;
        };
        if let Some(s) = clients.get_mut(&source) {
            s.assign_standby(t);
        }
        if *warmups_left > 0 {
            // The destination keeps its copy as a warm-up.
            *warmups_left -= 1;
        } else if let Some(d) = clients.get_mut(destination) {
            d.unassign_standby(&t);
        }
        set.offer(source);
        set.offer(*destination);
        needed += 1;
    }
    needed
}

fn assign_stateless(clients: &mut BTreeMap<Uuid, ClientState>, stateless: &BTreeSet<TaskId>) {
    for t in stateless {
        if let Some(id) = least_loaded(clients, ClientState::active_load, |_| true) {
            if let Some(c) = clients.get_mut(&id) {
                c.assign_active(*t);
            }
        }
    }
}

/// Spreads one kind of a client's tasks over its consumers (Kafka's
/// `StreamsPartitionAssignor.assignTasksToThreads`): with `stateful`, each consumer first
/// gets back the tasks it reported state for (least lag first) up to the per-consumer
/// minimum, then the rest is interleaved over the consumers below the minimum, then, for
/// consumers at the minimum, previous owners get their skipped tasks back before the rest
/// goes round. `load` carries the tasks each consumer already has (call for stateful
/// actives, then standbys, then stateless actives with the same map).
pub fn assign_tasks_to_threads(
    tasks: &BTreeSet<TaskId>,
    stateful: bool,
    consumers: &BTreeSet<String>,
    prev_by_consumer: &BTreeMap<String, BTreeSet<TaskId>>,
    lag: &dyn Fn(&TaskId) -> i64,
    load: &mut BTreeMap<String, usize>,
) -> BTreeMap<String, Vec<TaskId>> {
    let mut out: BTreeMap<String, Vec<TaskId>> =
        consumers.iter().map(|c| (c.clone(), Vec::new())).collect();
    if consumers.is_empty() || tasks.is_empty() {
        return out;
    }
    let load_of = |load: &BTreeMap<String, usize>, c: &str| load.get(c).copied().unwrap_or(0);
    let total = tasks.len() + load.values().sum::<usize>();
    let min = total / consumers.len();
    let mut unassigned: BTreeSet<TaskId> = tasks.clone();
    let mut to_fill: VecDeque<String> = VecDeque::new();
    let mut skipped: BTreeMap<TaskId, String> = BTreeMap::new();
    for c in consumers {
        let target = min.saturating_sub(load_of(load, c));
        let mine = out.entry(c.clone()).or_default();
        if stateful {
            let mut prev: Vec<TaskId> = prev_by_consumer
                .get(c)
                .into_iter()
                .flatten()
                .filter(|t| unassigned.contains(t))
                .copied()
                .collect();
            prev.sort_by_key(|t| (lag(t), *t));
            for t in prev {
                if mine.len() < target {
                    mine.push(t);
                    unassigned.remove(&t);
                } else {
                    skipped.insert(t, c.clone());
                }
            }
        }
        if mine.len() < target {
            to_fill.push_back(c.clone());
        }
    }
    while let Some(c) = to_fill.pop_front() {
        let Some(t) = unassigned.pop_first() else {
            break;
        };
        let mine = out.entry(c.clone()).or_default();
        mine.push(t);
        if mine.len() + load_of(load, &c) < min {
            to_fill.push_back(c);
        }
    }
    if !unassigned.is_empty() {
        let mut at_min: VecDeque<String> = consumers
            .iter()
            .filter(|c| out.get(*c).map_or(0, Vec::len) + load_of(load, c) == min)
            .cloned()
            .collect();
        for (t, c) in &skipped {
            if unassigned.contains(t) && at_min.contains(c) {
                out.entry(c.clone()).or_default().push(*t);
                unassigned.remove(t);
                at_min.retain(|x| x != c);
            }
        }
        for t in std::mem::take(&mut unassigned) {
            let c = match at_min.pop_front() {
                Some(c) => c,
                // Not reachable by the arithmetic above; stay total anyway.
                None => consumers
                    .iter()
                    .min_by_key(|c| (out.get(*c).map_or(0, Vec::len) + load_of(load, c), *c))
                    .cloned()
                    .unwrap_or_default(),
            };
            out.entry(c).or_default().push(t);
        }
    }
    for (c, ts) in &out {
        *load.entry(c.clone()).or_default() += ts.len();
    }
    out
}

#[cfg(test)]
mod tests;

//! Scenarios after Kafka's `HighAvailabilityTaskAssignorTest` and `TaskMovementTest`, and a
//! property test of the assignment's invariants.

use proptest::prelude::*;

use super::*;

fn t(s: u32, p: i32) -> TaskId {
    TaskId {
        subtopology: s,
        partition: p,
    }
}

fn pid(n: u64) -> Uuid {
    Uuid::from_u64_pair(0, n)
}

/// Tasks `0_0..0_{n-1}` of sub-topology 0, then `1_*` etc.: `subs` sub-topologies of
/// `parts` partitions.
fn tasks(subs: u32, parts: i32) -> BTreeSet<TaskId> {
    (0..subs)
        .flat_map(|s| (0..parts).map(move |p| t(s, p)))
        .collect()
}

fn lags(tasks: &BTreeSet<TaskId>, lag: i64) -> BTreeMap<TaskId, i64> {
    tasks.iter().map(|t| (*t, lag)).collect()
}

fn config(acceptable: i64, warmups: usize, standbys: usize) -> AssignorConfig {
    AssignorConfig {
        num_standby_replicas: standbys,
        acceptable_recovery_lag: acceptable,
        max_warmup_replicas: warmups,
        probing_rebalance_interval: Duration::from_secs(60),
    }
}

fn run(
    clients: &mut BTreeMap<Uuid, ClientState>,
    all: &BTreeSet<TaskId>,
    stateful: &BTreeSet<TaskId>,
    config: &AssignorConfig,
) -> bool {
    HighAvailabilityTaskAssignor.assign(clients, all, stateful, config)
}

/// Every task active exactly once; never active and standby on one client.
fn assert_valid(clients: &BTreeMap<Uuid, ClientState>, all: &BTreeSet<TaskId>) {
    for task in all {
        let owners = clients
            .values()
            .filter(|c| c.active_tasks().contains(task))
            .count();
        assert_eq!(
            owners, 1,
            "task {task} has {owners} active owners: {clients:?}"
        );
    }
    for c in clients.values() {
        assert!(
            c.active_tasks().is_disjoint(c.standby_tasks()),
            "a client holds a task both as active and standby: {c:?}"
        );
        assert!(c.active_tasks().iter().all(|x| all.contains(x)));
    }
}

fn active_counts(clients: &BTreeMap<Uuid, ClientState>) -> Vec<usize> {
    clients.values().map(|c| c.active_tasks().len()).collect()
}

#[test]
fn caught_up_clients_get_stateful_tasks_evenly_when_clients_divide_the_tasks() {
    let all = tasks(3, 3);
    let mut clients: BTreeMap<Uuid, ClientState> = (1..=3)
        .map(|i| (pid(i), ClientState::with_lags(1, lags(&all, 0))))
        .collect();
    let probing = run(&mut clients, &all, &all, &config(100, 2, 0));
    assert!(!probing);
    assert_valid(&clients, &all);
    assert_eq!(active_counts(&clients), vec![3, 3, 3]);
}

#[test]
fn uneven_threads_get_tasks_in_proportion_to_their_capacity() {
    // Kafka's shouldAssignActiveStatefulTasksEvenlyOverUnevenlyDistributedStreamThreads.
    let all = tasks(3, 3);
    let mut clients = BTreeMap::from([
        (pid(1), ClientState::with_lags(1, lags(&all, 0))),
        (pid(2), ClientState::with_lags(2, lags(&all, 0))),
        (pid(3), ClientState::with_lags(3, lags(&all, 0))),
    ]);
    assert!(!run(&mut clients, &all, &all, &config(100, 2, 0)));
    assert_valid(&clients, &all);
    // 9 tasks over 6 threads: 1.5 per thread, within one task per thread.
    let counts = active_counts(&clients);
    assert_eq!(counts.iter().sum::<usize>(), 9);
    for (c, n) in clients.values().zip(&counts) {
        let per_thread = *n as f64 / c.capacity() as f64;
        assert!((1.0..=2.0).contains(&per_thread), "{counts:?}");
    }
}

#[test]
fn more_clients_than_tasks_leaves_some_clients_idle_with_one_task_each_at_most() {
    let all = tasks(1, 2);
    let mut clients: BTreeMap<Uuid, ClientState> = (1..=4)
        .map(|i| (pid(i), ClientState::with_lags(1, lags(&all, 0))))
        .collect();
    assert!(!run(&mut clients, &all, &all, &config(100, 2, 0)));
    assert_valid(&clients, &all);
    assert!(active_counts(&clients).iter().all(|n| *n <= 1));
}

#[test]
fn a_new_client_gets_warmups_while_the_caught_up_client_keeps_its_tasks() {
    // Kafka's shouldAssignWarmUpTasksIfStatefulActiveTasksBalancedOverStreamThreadsButNotOverClients.
    let all = tasks(2, 2);
    let mut clients = BTreeMap::from([
        (pid(1), ClientState::with_lags(5, lags(&all, LATEST_OFFSET))),
        (pid(2), ClientState::with_lags(5, lags(&all, 1_000_000))),
        (pid(3), ClientState::with_lags(5, lags(&all, 1_000_000))),
    ]);
    let probing = run(&mut clients, &all, &all, &config(0, 2, 0));
    assert!(probing, "warm-ups need a probing rebalance");
    assert_valid(&clients, &all);
    assert_eq!(
        clients[&pid(1)].active_tasks(),
        &all,
        "the caught-up client keeps every task"
    );
    let warmups: usize = [pid(2), pid(3)]
        .iter()
        .map(|p| clients[p].standby_tasks().len())
        .sum();
    assert_eq!(warmups, 2, "max.warmup.replicas warm-ups, no more");
    assert!(clients[&pid(2)].active_tasks().is_empty());
    assert!(clients[&pid(3)].active_tasks().is_empty());
}

#[test]
fn warmed_up_clients_take_their_tasks_and_no_probing_follows() {
    // Kafka's shouldEvenlyAssignActiveStatefulTasksIfClientsAreWarmedUpToBalanceTaskOverClients:
    // after the warm-ups of the test above caught up, the balanced assignment goes through.
    let all = tasks(2, 2);
    let mut warm1 = lags(&all, 1_000_000);
    warm1.insert(t(0, 1), 0);
    let mut warm2 = lags(&all, 1_000_000);
    warm2.insert(t(1, 0), 0);
    let mut clients = BTreeMap::from([
        (pid(1), ClientState::with_lags(5, lags(&all, LATEST_OFFSET))),
        (pid(2), ClientState::with_lags(5, warm1)),
        (pid(3), ClientState::with_lags(5, warm2)),
    ]);
    let probing = run(&mut clients, &all, &all, &config(0, 2, 0));
    assert!(!probing);
    assert_valid(&clients, &all);
    assert_eq!(clients[&pid(2)].active_tasks(), &BTreeSet::from([t(0, 1)]));
    assert_eq!(clients[&pid(3)].active_tasks(), &BTreeSet::from([t(1, 0)]));
    assert_eq!(clients[&pid(1)].active_tasks().len(), 2);
}

#[test]
fn sticky_for_active_and_standby_tasks_while_warming_up() {
    // Kafka's shouldBeStickyForActiveAndStandbyTasksWhileWarmingUp: one active owner, one
    // caught-up standby client, one new client; one standby replica, two warm-ups.
    let all = tasks(3, 3);
    let mut clients = BTreeMap::from([
        (pid(1), ClientState::with_lags(1, lags(&all, 0))),
        (pid(2), ClientState::with_lags(1, lags(&all, 10))),
        (pid(3), ClientState::with_lags(1, lags(&all, i64::MAX))),
    ]);
    let probing = run(&mut clients, &all, &all, &config(11, 2, 1));
    assert!(probing);
    assert_valid(&clients, &all);
    let assigned =
        |p: u64| clients[&pid(p)].active_tasks().len() + clients[&pid(p)].standby_tasks().len();
    assert_eq!(assigned(1), 9);
    assert_eq!(assigned(2), 9);
    assert_eq!(assigned(3), 2, "only the warm-ups go to the new client");
    assert!(clients[&pid(3)].active_tasks().is_empty());
}

#[test]
fn no_warmups_when_the_acceptable_lag_is_unbounded() {
    // Kafka's shouldSkipWarmupsWhenAcceptableLagIsMax.
    let all = tasks(3, 3);
    let mut clients = BTreeMap::from([
        (pid(1), ClientState::with_lags(1, lags(&all, 0))),
        (pid(2), ClientState::with_lags(1, lags(&all, 10))),
        (pid(3), ClientState::with_lags(1, lags(&all, i64::MAX))),
    ]);
    let probing = run(&mut clients, &all, &all, &config(i64::MAX, 2, 1));
    assert!(!probing);
    assert_valid(&clients, &all);
    assert_eq!(active_counts(&clients), vec![3, 3, 3]);
}

#[test]
fn a_task_moves_to_the_most_caught_up_client_when_none_is_caught_up() {
    // Kafka's shouldAssignToMostCaughtUpIfActiveTasksWasNotOnCaughtUpClient.
    let all = BTreeSet::from([t(0, 0)]);
    let mut clients = BTreeMap::from([
        (pid(1), ClientState::with_lags(1, lags(&all, 5_000))),
        (pid(2), ClientState::with_lags(1, lags(&all, 500))),
        (pid(3), ClientState::with_lags(1, lags(&all, 50_000))),
    ]);
    let probing = run(&mut clients, &all, &all, &config(100, 2, 0));
    assert!(probing);
    assert_valid(&clients, &all);
    assert_eq!(clients[&pid(2)].active_tasks(), &all);
    assert_eq!(
        clients[&pid(1)].standby_tasks(),
        &all,
        "the target client warms up"
    );
}

#[test]
fn active_tasks_go_to_lagging_clients_when_no_client_is_ahead() {
    // Kafka's shouldAssignActiveTasksToNotCaughtUpClientIfNoneExist.
    let all = tasks(1, 2);
    let mut clients = BTreeMap::from([(pid(1), ClientState::with_lags(1, lags(&all, i64::MAX)))]);
    assert!(!run(&mut clients, &all, &all, &config(100, 2, 0)));
    assert_eq!(clients[&pid(1)].active_tasks(), &all);
}

#[test]
fn standbys_are_assigned_for_stateful_tasks_only_and_never_with_the_active() {
    // Kafka's shouldAssignStandbysForStatefulTasks / shouldNotAssignStandbysForStatelessTasks.
    let all = tasks(2, 2);
    let stateful = tasks(1, 2);
    let mut clients = BTreeMap::from([
        (pid(1), ClientState::with_lags(1, lags(&stateful, 0))),
        (pid(2), ClientState::with_lags(1, lags(&stateful, 0))),
    ]);
    assert!(!run(&mut clients, &all, &stateful, &config(100, 2, 1)));
    assert_valid(&clients, &all);
    let standbys: BTreeSet<TaskId> = clients
        .values()
        .flat_map(|c| c.standby_tasks().iter().copied())
        .collect();
    assert_eq!(
        standbys, stateful,
        "one standby per stateful task, none for stateless"
    );
    assert_eq!(
        clients
            .values()
            .map(|c| c.standby_tasks().len())
            .sum::<usize>(),
        2
    );
}

#[test]
fn more_standbys_than_clients_places_what_fits() {
    // Kafka's shouldNotAssignAnyStandbysWithInsufficientCapacity, and 3 replicas on 3 clients.
    let all = tasks(1, 1);
    let mut one = BTreeMap::from([(pid(1), ClientState::with_lags(1, lags(&all, 0)))]);
    run(&mut one, &all, &all, &config(100, 2, 1));
    assert!(one[&pid(1)].standby_tasks().is_empty());
    let mut three: BTreeMap<Uuid, ClientState> = (1..=3)
        .map(|i| (pid(i), ClientState::with_lags(1, lags(&all, 0))))
        .collect();
    run(&mut three, &all, &all, &config(100, 2, 5));
    assert_valid(&three, &all);
    assert_eq!(
        three
            .values()
            .map(|c| c.standby_tasks().len())
            .sum::<usize>(),
        2
    );
}

#[test]
fn no_more_warmups_than_max_warmup_replicas_even_with_standbys() {
    // Kafka's shouldNotAssignMoreThanMaxWarmupReplicas(WithStandbys).
    let all = tasks(1, 4);
    let mut clients = BTreeMap::from([
        (pid(1), ClientState::with_lags(1, lags(&all, LATEST_OFFSET))),
        (pid(2), ClientState::with_lags(1, lags(&all, i64::MAX))),
        (pid(3), ClientState::with_lags(1, lags(&all, i64::MAX))),
    ]);
    let probing = run(&mut clients, &all, &all, &config(100, 1, 1));
    assert!(probing);
    assert_valid(&clients, &all);
    // Every active stays on the caught-up client; each task's standby replica is on a
    // lagging client (4 copies), plus at most `max.warmup.replicas` (1) warm-up.
    assert_eq!(clients[&pid(1)].active_tasks(), &all);
    assert!(clients[&pid(1)].standby_tasks().is_empty());
    let on_lagging: usize = [pid(2), pid(3)]
        .iter()
        .map(|p| clients[p].standby_tasks().len())
        .sum();
    assert!(
        (4..=5).contains(&on_lagging),
        "{on_lagging} copies on lagging clients"
    );
}

#[test]
fn stateless_tasks_balance_the_total_load() {
    // Kafka's shouldDistributeStatelessTasksToBalanceTotalTaskLoad (active load).
    let stateful = tasks(1, 4);
    let mut all = stateful.clone();
    all.extend(tasks(2, 4).difference(&tasks(1, 4)).copied());
    let mut clients = BTreeMap::from([
        (pid(1), ClientState::with_lags(2, lags(&stateful, 0))),
        (pid(2), ClientState::with_lags(2, lags(&stateful, 0))),
    ]);
    assert!(!run(&mut clients, &all, &stateful, &config(100, 2, 0)));
    assert_valid(&clients, &all);
    assert_eq!(active_counts(&clients), vec![4, 4]);
}

#[test]
fn a_client_leaving_spreads_its_tasks_over_the_others() {
    let all = tasks(2, 3);
    let mut before: BTreeMap<Uuid, ClientState> = (1..=3)
        .map(|i| (pid(i), ClientState::with_lags(1, lags(&all, 0))))
        .collect();
    run(&mut before, &all, &all, &config(100, 2, 0));
    // Client 3 is gone; 1 and 2 run their tasks and have state for the rest.
    let mut after = BTreeMap::new();
    for i in 1..=2 {
        let mut l = lags(&all, 50);
        for task in before[&pid(i)].active_tasks() {
            l.insert(*task, LATEST_OFFSET);
        }
        after.insert(pid(i), ClientState::with_lags(1, l));
    }
    assert!(!run(&mut after, &all, &all, &config(100, 2, 0)));
    assert_valid(&after, &all);
    assert_eq!(active_counts(&after), vec![3, 3]);
}

#[test]
fn the_same_input_gives_the_same_assignment() {
    let all = tasks(3, 4);
    let make = || -> BTreeMap<Uuid, ClientState> {
        (1..=3)
            .map(|i| {
                let l = all
                    .iter()
                    .map(|t| {
                        (
                            *t,
                            (i as i64 * 37 + i64::from(t.partition) * 1_001) % 20_000,
                        )
                    })
                    .collect();
                (pid(i * 7919), ClientState::with_lags(i as usize, l))
            })
            .collect()
    };
    let mut a = make();
    let mut b = make();
    let pa = run(&mut a, &all, &all, &config(10_000, 2, 1));
    let pb = run(&mut b, &all, &all, &config(10_000, 2, 1));
    assert_eq!(pa, pb);
    assert_eq!(a, b);
}

#[test]
fn fallback_sticky_assignor_keeps_previous_owners_within_their_share() {
    let all = tasks(1, 6);
    let prev: BTreeMap<TaskId, i64> = all.iter().map(|t| (*t, LATEST_OFFSET)).collect();
    let mut clients = BTreeMap::from([
        (pid(1), ClientState::without_lags(1, &prev, &all)),
        (pid(2), ClientState::without_lags(1, &BTreeMap::new(), &all)),
    ]);
    StickyTaskAssignor.assign(&mut clients, &all, &all, &config(100, 2, 0));
    assert_valid(&clients, &all);
    assert_eq!(active_counts(&clients), vec![3, 3]);
    assert!(clients[&pid(1)]
        .active_tasks()
        .iter()
        .all(|x| x.partition < 3));
}

#[test]
fn threads_get_back_their_previous_tasks_and_stay_balanced() {
    let consumers: BTreeSet<String> = ["a".to_owned(), "b".to_owned()].into();
    let prev = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from([t(0, 2), t(0, 3)])),
        ("b".to_owned(), BTreeSet::from([t(0, 0)])),
    ]);
    let mut load = BTreeMap::new();
    let stateful = tasks(1, 4);
    let out = assign_tasks_to_threads(&stateful, true, &consumers, &prev, &|_| 0, &mut load);
    assert_eq!(out["a"], vec![t(0, 2), t(0, 3)]);
    assert_eq!(out["b"], vec![t(0, 0), t(0, 1)]);
    let standbys = BTreeSet::from([t(1, 0)]);
    let st = assign_tasks_to_threads(
        &standbys,
        true,
        &consumers,
        &BTreeMap::new(),
        &|_| 0,
        &mut load,
    );
    assert_eq!(st["a"].len() + st["b"].len(), 1);
    assert_eq!(load.values().sum::<usize>(), 5);
}

fn arb_clients() -> impl Strategy<
    Value = (
        BTreeMap<Uuid, ClientState>,
        BTreeSet<TaskId>,
        BTreeSet<TaskId>,
        AssignorConfig,
    ),
> {
    (
        1usize..6,
        1u32..4,
        1i32..7,
        0usize..3,
        0usize..4,
        any::<u64>(),
    )
        .prop_map(|(n_clients, subs, parts, standbys, warmups, seed)| {
            let all = tasks(subs, parts);
            // Sub-topology 0 is stateless when there are several.
            let stateful: BTreeSet<TaskId> = all
                .iter()
                .filter(|t| subs == 1 || t.subtopology > 0)
                .copied()
                .collect();
            let mut x = seed | 1;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let mut clients = BTreeMap::new();
            for i in 0..n_clients {
                let l = stateful
                    .iter()
                    .map(|t| {
                        let lag = match next() % 4 {
                            0 => LATEST_OFFSET,
                            1 => (next() % 100) as i64,
                            2 => 20_000 + (next() % 100_000) as i64,
                            _ => i64::MAX,
                        };
                        (*t, lag)
                    })
                    .collect();
                let capacity = 1 + (next() % 3) as usize;
                clients.insert(pid(i as u64 + 1), ClientState::with_lags(capacity, l));
            }
            let config = AssignorConfig {
                num_standby_replicas: standbys,
                acceptable_recovery_lag: 10_000,
                max_warmup_replicas: warmups.max(1),
                probing_rebalance_interval: Duration::from_secs(600),
            };
            (clients, all, stateful, config)
        })
}

proptest! {
    #[test]
    fn assignments_keep_their_invariants((mut clients, all, stateful, config) in arb_clients()) {
        let before = clients.clone();
        let probing = HighAvailabilityTaskAssignor.assign(&mut clients, &all, &stateful, &config);
        for task in &all {
            let owners = clients.values().filter(|c| c.active_tasks().contains(task)).count();
            prop_assert_eq!(owners, 1, "task {} active on {} clients", task, owners);
        }
        for c in clients.values() {
            prop_assert!(c.active_tasks().is_disjoint(c.standby_tasks()));
            prop_assert!(c.standby_tasks().is_subset(&stateful), "standbys of stateless tasks");
        }
        let all_caught_up = stateful.iter().all(|t| {
            before.values().all(|c| c.lag_for(t) == LATEST_OFFSET || (0..=10_000).contains(&c.lag_for(t)))
        });
        if all_caught_up {
            prop_assert!(!probing, "no probing rebalance when every client is caught up");
            // Balanced within one task per thread: no move from a client to another
            // would narrow the skew of active tasks per thread.
            let per_thread: Vec<f64> = clients
                .values()
                .map(|c| c.active_tasks().len() as f64 / c.capacity() as f64)
                .collect();
            let max = per_thread.iter().cloned().fold(f64::MIN, f64::max);
            let min = per_thread.iter().cloned().fold(f64::MAX, f64::min);
            if config.num_standby_replicas == 0 {
                prop_assert!(max - min <= 1.0 + 1e-9, "per-thread active load {:?}", per_thread);
            }
        }
    }
}

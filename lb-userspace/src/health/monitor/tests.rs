//! The monitor on a paused clock, with a probe whose results the test scripts.

use std::{
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::SystemTime,
};

use lb_common::{FAMILY_IPV4, PROTO_TCP, ServiceKey};
use tokio::sync::mpsc::error::TryRecvError;

use super::*;

/// Passes or fails each real as the test says when its check starts (as a real's answer
/// is decided by what it is at the time), taking `probe_time` per check, and counts checks
/// and probes in flight.
#[derive(Clone)]
struct ScriptedProbe {
    script: Arc<Script>,
}

struct Script {
    probe_time: Duration,
    failing: Mutex<HashSet<HealthKey>>,
    /// Reals whose next check panics.
    panicking: Mutex<HashSet<HealthKey>>,
    calls: Mutex<HashMap<HealthKey, usize>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

impl ScriptedProbe {
    fn new(probe_time: Duration) -> Self {
        ScriptedProbe {
            script: Arc::new(Script {
                probe_time,
                failing: Mutex::default(),
                panicking: Mutex::default(),
                calls: Mutex::default(),
                in_flight: AtomicUsize::new(0),
                most_in_flight: AtomicUsize::new(0),
            }),
        }
    }

    fn set_failing(&self, key: HealthKey, failing: bool) {
        let mut set = self.script.failing.lock().unwrap();
        if failing {
            set.insert(key);
        } else {
            set.remove(&key);
        }
    }

    fn calls(&self, key: HealthKey) -> usize {
        self.script
            .calls
            .lock()
            .unwrap()
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    fn total_calls(&self) -> usize {
        self.script.calls.lock().unwrap().values().sum()
    }
}

impl Probe for ScriptedProbe {
    async fn check(&self, target: &Target) -> CheckReport {
        let script = &self.script;
        if script.panicking.lock().unwrap().remove(&target.key) {
            panic!("scripted panic in the check of {}", target.key);
        }
        *script.calls.lock().unwrap().entry(target.key).or_default() += 1;
        let ok = !script.failing.lock().unwrap().contains(&target.key);
        let in_flight = script.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        script.most_in_flight.fetch_max(in_flight, Ordering::SeqCst);
        tokio::time::sleep(script.probe_time).await;
        script.in_flight.fetch_sub(1, Ordering::SeqCst);
        CheckReport {
            ok,
            latency: script.probe_time,
            detail: if ok { "connected" } else { "connect: refused" }.into(),
            at: SystemTime::now(),
        }
    }
}

/// Real `10.0.0.<last_octet>:80` of `TCP 192.0.2.10:80`.
fn real(last_octet: u8) -> HealthKey {
    HealthKey {
        service: ServiceKey {
            vip: [192, 0, 2, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            port_be: 80u16.to_be(),
            protocol: PROTO_TCP,
            family: FAMILY_IPV4,
        },
        address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last_octet)),
        port: 80,
    }
}

fn tcp_check(interval: Duration, rise: u32, fall: u32) -> HealthCheckConfig {
    HealthCheckConfig {
        kind: CheckKind::Tcp,
        port: None,
        interval,
        timeout: interval / 2,
        rise,
        fall,
        source: None,
    }
}

const SECOND: Duration = Duration::from_secs(1);

fn start_monitor(
    probe: &ScriptedProbe,
    max_concurrent_probes: usize,
) -> (
    HealthMonitor<ScriptedProbe>,
    Arc<HealthBoard>,
    mpsc::Receiver<Transition>,
) {
    let board = Arc::new(HealthBoard::default());
    let (transitions, received) = mpsc::channel(16);
    let monitor = HealthMonitor::with_probe(
        probe.clone(),
        max_concurrent_probes,
        Arc::clone(&board),
        transitions,
    );
    (monitor, board, received)
}

#[tokio::test(start_paused = true)]
async fn a_failing_real_goes_down_after_fall_checks_and_back_after_rise() {
    let probe = ScriptedProbe::new(Duration::ZERO);
    let (mut monitor, board, mut transitions) = start_monitor(&probe, 256);
    let key = real(11);
    probe.set_failing(key, true);
    let started = Instant::now();
    monitor.set_targets(vec![Target::new(key, tcp_check(SECOND, 2, 3), true)]);
    let before = board
        .get(&key)
        .expect("a new target is on the board at once");
    assert!(before.up && before.last.is_none() && before.checks == 0);

    let down = transitions.recv().await.unwrap();
    assert_eq!((down.key, down.up, down.report.ok), (key, false, false));
    assert_eq!(down.report.detail, "connect: refused");
    assert_eq!(probe.calls(key), 3);
    // The first check comes within the first interval, then one per interval: the real is
    // out within fall × interval.
    let elapsed = started.elapsed();
    assert!(elapsed >= 2 * SECOND && elapsed < 3 * SECOND, "{elapsed:?}");
    let health = board.get(&key).unwrap();
    assert_eq!(
        (
            health.up,
            health.checks,
            health.failures,
            health.transitions
        ),
        (false, 3, 3, 1)
    );
    assert_eq!(health.last, Some(down.report));

    probe.set_failing(key, false);
    let went_down = Instant::now();
    let up = transitions.recv().await.unwrap();
    assert_eq!((up.key, up.up), (key, true));
    assert_eq!(probe.calls(key), 5);
    assert_eq!(went_down.elapsed(), 2 * SECOND);
    let health = board.get(&key).unwrap();
    assert_eq!(
        (
            health.up,
            health.checks,
            health.failures,
            health.transitions
        ),
        (true, 5, 3, 2)
    );
    monitor.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_real_that_starts_down_needs_rise_passed_checks() {
    let probe = ScriptedProbe::new(Duration::ZERO);
    let (mut monitor, board, mut transitions) = start_monitor(&probe, 256);
    let key = real(11);
    monitor.set_targets(vec![Target::new(key, tcp_check(SECOND, 2, 3), false)]);
    assert!(!board.get(&key).unwrap().up);
    let up = transitions.recv().await.unwrap();
    assert_eq!((up.key, up.up), (key, true));
    assert_eq!(probe.calls(key), 2);
    monitor.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_passing_real_is_checked_every_interval_without_transitions() {
    let probe = ScriptedProbe::new(Duration::ZERO);
    let (mut monitor, board, mut transitions) = start_monitor(&probe, 256);
    let key = real(11);
    monitor.set_targets(vec![Target::new(key, tcp_check(SECOND, 2, 3), true)]);
    tokio::time::sleep(10 * SECOND).await;
    assert_eq!(probe.calls(key), 10);
    assert_eq!(transitions.try_recv(), Err(TryRecvError::Empty));
    let health = board.get(&key).unwrap();
    assert_eq!((health.up, health.checks, health.failures), (true, 10, 0));
    assert_eq!(health.last.unwrap().detail, "connected");
    monitor.stop().await;
}

#[tokio::test(start_paused = true)]
async fn unchanged_targets_keep_their_state_and_changed_ones_restart() {
    let probe = ScriptedProbe::new(Duration::ZERO);
    let (mut monitor, board, mut transitions) = start_monitor(&probe, 256);
    let (kept, changed, removed, added) = (real(11), real(12), real(13), real(14));
    probe.set_failing(kept, true);
    probe.set_failing(changed, true);
    let check = tcp_check(SECOND, 2, 2);
    monitor.set_targets(vec![
        Target::new(kept, check.clone(), true),
        Target::new(changed, check.clone(), true),
        Target::new(removed, check.clone(), true),
    ]);
    let mut down = HashSet::new();
    for _ in 0..2 {
        let transition = transitions.recv().await.unwrap();
        assert!(!transition.up);
        down.insert(transition.key);
    }
    assert_eq!(down, HashSet::from([kept, changed]));
    let kept_checks = board.get(&kept).unwrap().checks;
    let changed_before = board.get(&changed).unwrap();

    // Every other second, and one pass brings it back.
    let slower = tcp_check(2 * SECOND, 1, 2);
    monitor.set_targets(vec![
        Target::new(kept, check.clone(), true),
        Target::new(changed, slower, true),
        Target::new(added, check.clone(), true),
    ]);
    let removed_calls = probe.calls(removed);
    assert_eq!(board.get(&removed), None);
    let added_health = board.get(&added).unwrap();
    assert!(added_health.up && added_health.checks == 0);
    // A changed target keeps its state and counters, whatever `start_up` says.
    assert_eq!(board.get(&changed).unwrap(), changed_before);

    // Not a whole number of intervals, so that no check ties with the test's wake-up (the
    // real that went down last did so on a check).
    tokio::time::sleep(9 * SECOND + SECOND / 2).await;
    // Neither the kept nor the changed real started again: no second "down".
    assert_eq!(transitions.try_recv(), Err(TryRecvError::Empty));
    let kept_health = board.get(&kept).unwrap();
    assert!(!kept_health.up);
    let kept_checks = kept_health.checks - kept_checks;
    assert!((9..=10).contains(&kept_checks), "{kept_checks}");
    // Started again every two seconds, the first within two.
    let changed_health = board.get(&changed).unwrap();
    assert!(!changed_health.up);
    let slower_checks = changed_health.checks - changed_before.checks;
    assert!((4..=5).contains(&slower_checks), "{slower_checks}");
    assert_eq!(probe.calls(removed), removed_calls);
    let added_checks = board.get(&added).unwrap().checks;
    assert!((9..=10).contains(&added_checks), "{added_checks}");

    probe.set_failing(changed, false);
    let up = transitions.recv().await.unwrap();
    assert_eq!((up.key, up.up), (changed, true));
    assert_eq!(board.get(&changed).unwrap().transitions, 2);
    monitor.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_check_in_flight_when_the_check_changes_does_not_count() {
    let probe = ScriptedProbe::new(SECOND / 2);
    let (mut monitor, board, mut transitions) = start_monitor(&probe, 256);
    let key = real(11);
    // The real's old port is dead: one failure would take it out.
    probe.set_failing(key, true);
    let check = tcp_check(SECOND, 1, 1);
    monitor.set_targets(vec![Target::new(key, check.clone(), true)]);
    while probe.calls(key) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A reload moves the check to a port that answers while the old one is being checked.
    probe.set_failing(key, false);
    let moved = HealthCheckConfig {
        port: Some(8080),
        ..check
    };
    monitor.set_targets(vec![Target::new(key, moved, true)]);
    tokio::time::sleep(3 * SECOND).await;
    assert_eq!(transitions.try_recv(), Err(TryRecvError::Empty));
    let health = board.get(&key).unwrap();
    // Only the new port's checks counted, all passed.
    assert!(health.up);
    assert_eq!(health.failures, 0);
    assert!(health.checks >= 2, "{}", health.checks);
    assert_eq!(health.last.unwrap().detail, "connected");
    monitor.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_target_whose_task_ended_starts_again_where_it_stopped() {
    let probe = ScriptedProbe::new(Duration::ZERO);
    let (mut monitor, board, mut transitions) = start_monitor(&probe, 256);
    let key = real(11);
    probe.set_failing(key, true);
    let target = Target::new(key, tcp_check(SECOND, 1, 1), true);
    monitor.set_targets(vec![target.clone()]);
    assert!(!transitions.recv().await.unwrap().up);
    probe.script.panicking.lock().unwrap().insert(key);
    tokio::time::sleep(2 * SECOND).await;
    let stopped = board.get(&key).unwrap();
    assert!(!stopped.up);

    monitor.set_targets(vec![target]);
    assert_eq!(board.get(&key).unwrap(), stopped);
    tokio::time::sleep(5 * SECOND).await;
    // Still down, as its transition said: no second "down".
    assert_eq!(transitions.try_recv(), Err(TryRecvError::Empty));
    assert!(board.get(&key).unwrap().checks > stopped.checks);
    monitor.stop().await;
}

#[tokio::test(start_paused = true)]
async fn probes_in_flight_never_exceed_the_bound() {
    let probe = ScriptedProbe::new(Duration::from_millis(300));
    let (mut monitor, _board, _transitions) = start_monitor(&probe, 4);
    let keys: Vec<HealthKey> = (1..=50).map(real).collect();
    monitor.set_targets(
        keys.iter()
            .map(|key| Target::new(*key, tcp_check(SECOND, 2, 3), true))
            .collect(),
    );
    tokio::time::sleep(10 * SECOND).await;
    assert_eq!(probe.script.most_in_flight.load(Ordering::SeqCst), 4);
    for key in keys {
        assert!(probe.calls(key) >= 1, "{key} was never checked");
    }
    monitor.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stop_and_drop_end_every_check() {
    let probe = ScriptedProbe::new(Duration::from_millis(100));
    let (mut monitor, board, _transitions) = start_monitor(&probe, 256);
    let targets: Vec<Target> = (1..=3)
        .map(|octet| Target::new(real(octet), tcp_check(SECOND, 2, 3), true))
        .collect();
    monitor.set_targets(targets.clone());
    tokio::time::sleep(3 * SECOND).await;
    monitor.stop().await;
    let calls = probe.total_calls();
    assert!(calls >= 6, "{calls}");
    tokio::time::sleep(10 * SECOND).await;
    assert_eq!(probe.total_calls(), calls);
    // The board keeps the last results for readers.
    assert_eq!(board.snapshot().len(), 3);

    let (mut monitor, _board, _transitions) = start_monitor(&probe, 256);
    monitor.set_targets(targets);
    tokio::time::sleep(3 * SECOND).await;
    drop(monitor);
    tokio::task::yield_now().await;
    let calls = probe.total_calls();
    tokio::time::sleep(10 * SECOND).await;
    assert_eq!(probe.total_calls(), calls);
}

#[tokio::test(start_paused = true)]
async fn targets_that_are_not_checked_stay_off_the_board() {
    let probe = ScriptedProbe::new(Duration::ZERO);
    let (mut monitor, board, _transitions) = start_monitor(&probe, 256);
    let mut check = tcp_check(SECOND, 2, 3);
    check.kind = CheckKind::None;
    monitor.set_targets(vec![Target::new(real(11), check, true)]);
    tokio::time::sleep(5 * SECOND).await;
    assert_eq!(probe.total_calls(), 0);
    assert!(board.snapshot().is_empty());
    monitor.stop().await;
}

#[test]
fn a_target_checks_the_checks_port_or_the_reals() {
    let mut check = tcp_check(SECOND, 2, 3);
    let target = Target::new(real(11), check.clone(), true);
    assert_eq!((target.address, target.port), (real(11).address, 80));
    check.port = Some(8080);
    assert_eq!(Target::new(real(11), check, true).port, 8080);
}

#[test]
fn the_first_check_comes_within_the_first_interval() {
    for _ in 0..100 {
        assert!(first_check_delay(&real(11), SECOND) < SECOND);
    }
    assert_eq!(first_check_delay(&real(11), Duration::ZERO), Duration::ZERO);
}

#[test]
fn keys_read_as_service_and_real() {
    assert_eq!(real(11).to_string(), "TCP 192.0.2.10:80 real 10.0.0.11:80");
}

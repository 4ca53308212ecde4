//! Connection tracking through `BPF_PROG_TEST_RUN`, IPv4 and IPv6: the states a TCP flow
//! goes through on the client's flags (IPVS's input-only table), segments without SYN and
//! without a flow, UDP flows, expiry by the program and by lbd's sweep, a full flow table, and
//! a churn of flows against a model. After every packet and every sweep, each test checks the
//! verdict, the reason counters, the flow table and every real's `ActiveConn`/`InActConn`
//! against what the test expects. Needs root.
//!
//! Timeouts shorter than a second do not exist (lbd refuses them), so the tests that need the
//! kernel's clock to pass a timeout sleep; the sweep takes its clock as an argument, so the
//! sweep tests look ahead instead of sleeping.

use std::{
    collections::HashMap,
    thread::sleep,
    time::{Duration, Instant},
};

use lb_common::{
    FlowKey, PROTO_TCP, Reason,
    conntrack::{
        DEFAULT_TIMEOUTS_S, STATE_CLOSE, STATE_ESTABLISHED, STATE_FIN_WAIT, STATE_SYN_RECV,
        STATE_TIME_WAIT, STATE_UDP, next_tcp_state, opens_connection,
    },
};
use lb_tests::{conntrack::*, fixture::XDP_TX, packet::tcp_flags::*};
use lb_userspace::dataplane::{SYN_RECV_UNDER_PRESSURE, under_pressure};

/// IPVS's input-only table, one client segment at a time: every step forwards to the flow's
/// real and moves (or keeps) its state and its real's counts.
fn walk_a_connection_through_its_states(conntrack: &mut Conntrack, family: Family, port: u16) {
    let syn = tcp(family, port, SYN);
    let steps = [
        ("syn_opens", SYN, STATE_SYN_RECV),
        ("rst_during_the_handshake_is_ignored", RST, STATE_SYN_RECV),
        ("ack_establishes", ACK, STATE_ESTABLISHED),
        (
            "syn_on_an_established_flow_keeps_it",
            SYN,
            STATE_ESTABLISHED,
        ),
        ("data_keeps_it_established", ACK | PSH, STATE_ESTABLISHED),
        ("fin_starts_the_close", FIN | ACK, STATE_FIN_WAIT),
        ("ack_while_closing_changes_nothing", ACK, STATE_FIN_WAIT),
        ("rst_closes", RST, STATE_CLOSE),
        ("ack_after_the_close_changes_nothing", ACK, STATE_CLOSE),
        ("syn_reopens_on_the_same_real", SYN, STATE_SYN_RECV),
    ];
    conntrack.send(steps[0].0, syn, Expect::Opens(steps[0].2));
    for (step, flags, state) in &steps[1..] {
        conntrack.send(step, syn.with_flags(*flags), Expect::Follows(*state));
    }
}

#[test]
fn tcp_flows_follow_ipvs_states_and_counts() {
    let test = "tcp_flows_follow_ipvs_states_and_counts";
    let Some(mut conntrack) = Conntrack::for_test(test, &config("ct-states", 1024, "")) else {
        return;
    };
    walk_a_connection_through_its_states(&mut conntrack, Family::V4, 41000);
    walk_a_connection_through_its_states(&mut conntrack, Family::V6, 41000);
    // One flow each, however many packets and states.
    assert_eq!(conntrack.new_flows(TCP_V4), 1);
    assert_eq!(conntrack.new_flows(TCP_V6), 1);
}

/// A TCP segment that is not a bare SYN, with no flow, is mid-stream: rr and wrr have no
/// stable answer for it, so it goes to the host (which resets it), and no flow is made.
/// UDP has no handshake: any datagram starts a flow.
#[test]
fn only_a_bare_syn_opens_a_tcp_flow_and_any_datagram_a_udp_flow() {
    let test = "only_a_bare_syn_opens_a_tcp_flow_and_any_datagram_a_udp_flow";
    let Some(mut conntrack) = Conntrack::for_test(test, &config("ct-no-flow", 1024, "")) else {
        return;
    };
    let mid_stream = [
        ("ack", ACK),
        ("fin", FIN),
        ("fin_ack", FIN | ACK),
        ("syn_ack", SYN | ACK),
        ("syn_rst", SYN | RST),
        ("rst", RST),
        ("no_flags", 0),
    ];
    for family in [Family::V4, Family::V6] {
        for (step, flags) in mid_stream {
            let packet = tcp(family, 42000, flags);
            conntrack.send(step, packet, Expect::Pass(Reason::PassTcpNoFlow));
        }
    }
    assert_eq!(conntrack.new_flows(TCP_V4), 0);
    assert_eq!(conntrack.new_flows(TCP_V6), 0);

    for family in [Family::V4, Family::V6] {
        let query = udp(family, 5300);
        conntrack.send("first_datagram", query, Expect::Opens(STATE_UDP));
        conntrack.send("second_datagram", query, Expect::Follows(STATE_UDP));
        // A mid-stream segment still passes once other flows exist.
        let ack = tcp(family, 42000, ACK);
        conntrack.send("ack_again", ack, Expect::Pass(Reason::PassTcpNoFlow));
    }
    assert_eq!(conntrack.new_flows(UDP_V4), 1);
    assert_eq!(conntrack.new_flows(UDP_V6), 1);
}

/// The program's own expiry (a packet after the flow's timeout finds it gone) and the sweep's
/// (flows that no packet comes for), on the kernel's clock: one sleep past the 1 s timeouts.
#[test]
fn idle_flows_expire_for_their_next_packet_and_for_the_sweep() {
    let test = "idle_flows_expire_for_their_next_packet_and_for_the_sweep";
    let yaml = config("ct-expiry", 1024, ONE_SECOND_TIMEOUTS);
    let Some(mut conntrack) = Conntrack::for_test(test, &yaml) else {
        return;
    };
    let mut swept = Vec::new();
    let mut kept = Vec::new();
    for family in [Family::V4, Family::V6] {
        let syn = tcp(family, 0, SYN);
        // Acked again after the sleep.
        let acked = syn.on_port(43001);
        conntrack.send("acked_syn", acked, Expect::Opens(STATE_SYN_RECV));
        conntrack.send(
            "acked_ack",
            acked.with_flags(ACK),
            Expect::Follows(STATE_ESTABLISHED),
        );
        // Left alone: the sweep's.
        let established = syn.on_port(43002);
        conntrack.send(
            "established_syn",
            established,
            Expect::Opens(STATE_SYN_RECV),
        );
        let ack = established.with_flags(ACK);
        conntrack.send("established_ack", ack, Expect::Follows(STATE_ESTABLISHED));
        swept.push(established.key());
        let closing = syn.on_port(43003);
        conntrack.send("closing_syn", closing, Expect::Opens(STATE_SYN_RECV));
        let ack = closing.with_flags(ACK);
        conntrack.send("closing_ack", ack, Expect::Follows(STATE_ESTABLISHED));
        let fin = closing.with_flags(FIN | ACK);
        conntrack.send("closing_fin", fin, Expect::Follows(STATE_FIN_WAIT));
        swept.push(closing.key());
        // SYN_RECV keeps IPVS's fixed 60 s: still alive after the sleep.
        let opening = syn.on_port(43004);
        conntrack.send("opening_syn", opening, Expect::Opens(STATE_SYN_RECV));
        kept.push(opening);
        let query = udp(family, 5301);
        conntrack.send("query", query, Expect::Opens(STATE_UDP));
        let idle_query = udp(family, 5302);
        conntrack.send("idle_query", idle_query, Expect::Opens(STATE_UDP));
        swept.push(idle_query.key());
    }
    conntrack.sweep("sweep_before_the_timeouts", Duration::ZERO, &[]);

    // Idle for more than twice the timeout, so that lateness of the clock cannot matter.
    sleep(Duration::from_millis(2200));

    for family in [Family::V4, Family::V6] {
        let ack = tcp(family, 43001, ACK);
        conntrack.expired(ack);
        conntrack.send(
            "ack_after_the_timeout",
            ack,
            Expect::Pass(Reason::PassTcpNoFlow),
        );
        let query = udp(family, 5301);
        conntrack.expired(query);
        conntrack.send("query_after_the_timeout", query, Expect::Opens(STATE_UDP));
    }
    assert_eq!(conntrack.new_flows(UDP_V4), 3, "two queries, one again");
    assert_eq!(conntrack.new_flows(UDP_V6), 3, "two queries, one again");
    conntrack.sweep("sweep_after_the_timeouts", Duration::ZERO, &swept);
    for packet in kept {
        let ack = packet.with_flags(ACK);
        conntrack.send(
            "kept_flow_still_forwards",
            ack,
            Expect::Follows(STATE_ESTABLISHED),
        );
    }
}

/// A flow whose packets keep coming never expires, even with a timeout as short as the
/// granularity of its last-seen time (1 s, the shortest lbd accepts): the program rewrites
/// `last_seen_ns` at most once a second, so a flow is gone only when idle for its timeout plus
/// that second (an earlier version expired busy flows this way).
#[test]
fn a_busy_flow_outlives_its_idle_timeout() {
    let test = "a_busy_flow_outlives_its_idle_timeout";
    let yaml = config("ct-busy", 1024, ONE_SECOND_TIMEOUTS);
    let Some(mut conntrack) = Conntrack::for_test(test, &yaml) else {
        return;
    };
    let syn = tcp(Family::V4, 44000, SYN);
    conntrack.send("syn", syn, Expect::Opens(STATE_SYN_RECV));
    conntrack.send(
        "ack",
        syn.with_flags(ACK),
        Expect::Follows(STATE_ESTABLISHED),
    );
    let query = udp(Family::V4, 5400);
    conntrack.send("query", query, Expect::Opens(STATE_UDP));

    // A packet of each flow every 0.45 s, for longer than the 1 s timeout. Collected rather
    // than checked one by one, so that the report says what became of both flows.
    let interval = Duration::from_millis(450);
    let started = Instant::now();
    let mut previous = started;
    let mut lost = Vec::new();
    for tick in 1..=3 {
        sleep(interval);
        let now = Instant::now();
        let gap = now - previous;
        previous = now;
        assert!(
            gap < Duration::from_millis(900),
            "tick {tick}: {gap:?} between packets; the machine is too slow for this test"
        );
        let at = (now - started).as_secs_f32();
        let ack = conntrack.balancer.run(&syn.with_flags(ACK).frame());
        if ack.action != XDP_TX {
            lost.push(format!(
                "TCP: an ACK {gap:?} after the previous one, {at:.2} s after the flow was \
                 established, got XDP action {} instead of XDP_TX",
                ack.action
            ));
        }
        let new_flows = conntrack.new_flows(UDP_V4);
        conntrack.balancer.run(&query.frame());
        if conntrack.new_flows(UDP_V4) != new_flows {
            lost.push(format!(
                "UDP: a datagram {gap:?} after the previous one, {at:.2} s after the flow \
                 started, was scheduled as a new flow"
            ));
        }
    }
    assert!(
        lost.is_empty(),
        "flows sending every {interval:?} (timeouts 1 s) were forgotten: {lost:#?}"
    );
}

/// The sweep removes each flow once it has been idle past its own state's timeout (the
/// configured ones, and IPVS's fixed ones), and no other; counts follow exactly, down to 0.
/// Its clock is an argument, so it is run ahead of time instead of waiting.
#[test]
fn the_sweep_removes_each_state_after_its_timeout() {
    let test = "the_sweep_removes_each_state_after_its_timeout";
    // Timeouts, in order: CLOSE 10 s, FIN_WAIT 20 s, UDP 50 s, SYN_RECV 60 s, ESTABLISHED
    // 100 s, TIME_WAIT 120 s.
    let yaml = config(
        "ct-sweep",
        1024,
        "timeouts: {tcp: 100s, tcp_fin: 20s, udp: 50s}",
    );
    let Some(mut conntrack) = Conntrack::for_test(test, &yaml) else {
        return;
    };
    let mut in_state: HashMap<u8, Vec<FlowKey>> = HashMap::new();
    for family in [Family::V4, Family::V6] {
        let syn = tcp(family, 0, SYN);
        // (client port, flags after the SYN, state reached)
        let flows: [(u16, &[(u8, u8)]); 5] = [
            (45001, &[]),
            (45002, &[(ACK, STATE_ESTABLISHED)]),
            (
                45003,
                &[(ACK, STATE_ESTABLISHED), (FIN | ACK, STATE_FIN_WAIT)],
            ),
            (45004, &[(FIN, STATE_TIME_WAIT)]),
            (45005, &[(ACK, STATE_ESTABLISHED), (RST, STATE_CLOSE)]),
        ];
        for (port, segments) in flows {
            let packet = syn.on_port(port);
            conntrack.send("open", packet, Expect::Opens(STATE_SYN_RECV));
            let mut state = STATE_SYN_RECV;
            for &(flags, next) in segments {
                conntrack.send("move", packet.with_flags(flags), Expect::Follows(next));
                state = next;
            }
            in_state.entry(state).or_default().push(packet.key());
        }
        let query = udp(family, 5500);
        conntrack.send("query", query, Expect::Opens(STATE_UDP));
        in_state.entry(STATE_UDP).or_default().push(query.key());
    }
    let mut take = |state: u8| in_state.remove(&state).unwrap_or_default();
    // Each look-ahead sits at least 5 s from every timeout, room for this test's own run time.
    conntrack.sweep("now", Duration::ZERO, &[]);
    conntrack.sweep("in_5s", Duration::from_secs(5), &[]);
    conntrack.sweep("in_15s", Duration::from_secs(15), &take(STATE_CLOSE));
    conntrack.sweep("in_30s", Duration::from_secs(30), &take(STATE_FIN_WAIT));
    conntrack.sweep("in_55s", Duration::from_secs(55), &take(STATE_UDP));
    conntrack.sweep("in_80s", Duration::from_secs(80), &take(STATE_SYN_RECV));
    // The flows the sweep kept are alive for the program too.
    for family in [Family::V4, Family::V6] {
        let data = tcp(family, 45002, ACK | PSH);
        conntrack.send(
            "kept_flow_forwards",
            data,
            Expect::Follows(STATE_ESTABLISHED),
        );
    }
    conntrack.sweep(
        "in_110s",
        Duration::from_secs(110),
        &take(STATE_ESTABLISHED),
    );
    conntrack.sweep("in_130s", Duration::from_secs(130), &take(STATE_TIME_WAIT));
    assert!(
        conntrack.model.flows.is_empty(),
        "every flow has been swept"
    );
    // Model::check has seen every real at exactly 0; and nothing is left for a later sweep.
    conntrack.sweep("nothing_left", Duration::from_secs(1000), &[]);
}

/// A plain hash never evicts: when `limits.flows` live flows fill it, a new flow is refused
/// (dropped, `drop_flow_table_full`) while the flows it holds keep forwarding; the sweep makes
/// room again.
#[test]
fn a_full_flow_table_refuses_new_flows_until_the_sweep_frees_it() {
    let test = "a_full_flow_table_refuses_new_flows_until_the_sweep_frees_it";
    const FLOWS: u16 = 16;
    let yaml = config("ct-full", u32::from(FLOWS), "");
    let Some(mut conntrack) = Conntrack::for_test(test, &yaml) else {
        return;
    };
    let family_of = |i: u16| {
        if i.is_multiple_of(2) {
            Family::V4
        } else {
            Family::V6
        }
    };
    let fill = |conntrack: &mut Conntrack, first_port: u16| -> Vec<Packet> {
        (0..FLOWS)
            .map(|i| {
                let syn = tcp(family_of(i), first_port + i, SYN);
                conntrack.send(&format!("filling_{i}"), syn, Expect::Opens(STATE_SYN_RECV));
                syn
            })
            .collect()
    };
    let full = Expect::Drop(Reason::DropFlowTableFull);

    let first = fill(&mut conntrack, 46000);
    for family in [Family::V4, Family::V6] {
        conntrack.send("one_too_many", tcp(family, 46100, SYN), full);
        conntrack.send("udp_one_too_many", udp(family, 5600), full);
        // Without a flow it was never going to be forwarded: it still passes.
        let ack = tcp(family, 46101, ACK);
        conntrack.send("mid_stream", ack, Expect::Pass(Reason::PassTcpNoFlow));
    }
    // Flows already in the table change state in place.
    let established = first[0].with_flags(ACK);
    conntrack.send(
        "existing_ack",
        established,
        Expect::Follows(STATE_ESTABLISHED),
    );
    let closing = first[1].with_flags(FIN | ACK);
    conntrack.send("existing_fin", closing, Expect::Follows(STATE_TIME_WAIT));
    let closed = first[2].with_flags(ACK);
    conntrack.send("existing_ack_2", closed, Expect::Follows(STATE_ESTABLISHED));
    let closed = first[2].with_flags(RST);
    conntrack.send("existing_rst", closed, Expect::Follows(STATE_CLOSE));
    conntrack.sweep("sweep_of_live_flows", Duration::ZERO, &[]);
    conntrack.send("still_full", tcp(Family::V4, 46100, SYN), full);

    let all: Vec<FlowKey> = first.iter().map(|packet| packet.key()).collect();
    conntrack.sweep("sweep_after_all_expired", Duration::from_secs(1000), &all);
    let second = fill(&mut conntrack, 47000);
    conntrack.send("full_again", tcp(Family::V6, 47100, SYN), full);
    let ack = second[5].with_flags(ACK);
    conntrack.send(
        "refilled_flow_forwards",
        ack,
        Expect::Follows(STATE_ESTABLISHED),
    );
}

/// Deterministic pseudo-random numbers (a 64-bit LCG; Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Hundreds of opens, state changes, closes, refusals and sweeps on a table of 8 flows, each
/// checked against the model: counts always equal the live flows of each real by kind, and
/// come back to exactly 0.
#[test]
fn counts_stay_exact_through_churn_on_a_tiny_table() {
    let test = "counts_stay_exact_through_churn_on_a_tiny_table";
    const FLOWS: usize = 8;
    let Some(mut conntrack) = Conntrack::for_test(test, &config("ct-churn", FLOWS as u32, ""))
    else {
        return;
    };
    // IPVS's default timeouts: the shortest, CLOSE, is 10 s, longer than this test runs, so
    // only the sweep (run ahead of time) expires flows.
    let timeout_s = |state: u8| u64::from(DEFAULT_TIMEOUTS_S[state as usize]);
    // Each between two timeouts, at least 5 s from both.
    let look_aheads_s = [15, 90, 200, 400, 1000];
    let segments = [
        SYN,
        SYN,
        ACK,
        ACK | PSH,
        FIN | ACK,
        FIN,
        RST,
        RST | ACK,
        SYN | ACK,
    ];
    let started = Instant::now();
    let mut random = Lcg(0x5eed);
    let (mut refused, mut passed, mut removed) = (0, 0, 0);
    let mut pressure = false;
    for step in 0..400 {
        let family = if random.below(4) == 0 {
            Family::V6
        } else {
            Family::V4
        };
        let roll = random.below(20);
        let packet = if roll < 2 {
            let look_ahead = look_aheads_s[random.below(look_aheads_s.len() as u64) as usize];
            // A table under pressure (see `under_pressure`) also loses its half-open flows
            // idle past SYN_RECV_UNDER_PRESSURE (every look-ahead is).
            pressure = under_pressure(pressure, conntrack.model.flows.len() as u64, FLOWS as u64);
            assert!(look_ahead > SYN_RECV_UNDER_PRESSURE.as_secs());
            let expired: Vec<FlowKey> = conntrack
                .model
                .flows
                .iter()
                .filter(|(_, tracked)| {
                    timeout_s(tracked.state) < look_ahead
                        || pressure && tracked.state == STATE_SYN_RECV
                })
                .map(|(key, _)| *key)
                .collect();
            removed += expired.len();
            let name = format!("step_{step}_sweep_in_{look_ahead}s");
            conntrack.sweep(&name, Duration::from_secs(look_ahead), &expired);
            continue;
        } else if roll < 6 {
            udp(family, 5700 + random.below(4) as u16)
        } else {
            let flags = segments[random.below(segments.len() as u64) as usize];
            tcp(family, 48000 + random.below(8) as u16, flags)
        };
        let known = conntrack.model.flows.get(&packet.key()).map(|t| t.state);
        let table_full = conntrack.model.flows.len() == FLOWS;
        let expect = match known {
            Some(state) if packet.protocol == PROTO_TCP => {
                Expect::Follows(next_tcp_state(state, packet.flags))
            }
            Some(_) => Expect::Follows(STATE_UDP),
            None if packet.protocol == PROTO_TCP && !opens_connection(packet.flags) => {
                passed += 1;
                Expect::Pass(Reason::PassTcpNoFlow)
            }
            None if table_full => {
                refused += 1;
                Expect::Drop(Reason::DropFlowTableFull)
            }
            None if packet.protocol == PROTO_TCP => Expect::Opens(STATE_SYN_RECV),
            None => Expect::Opens(STATE_UDP),
        };
        conntrack.send(&format!("step_{step}"), packet, expect);
    }
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the churn took {:?}: flows may have expired on the kernel's clock, which the model \
         does not follow",
        started.elapsed()
    );
    // The run must have gone through every path it is meant to test.
    assert!(
        refused > 10 && passed > 10 && removed > 10,
        "refused {refused}, passed {passed}, swept {removed}: the churn missed a path"
    );
    let rest: Vec<FlowKey> = conntrack.model.flows.keys().copied().collect();
    conntrack.sweep("final_sweep", Duration::from_secs(1000), &rest);
}

//! `lbadm dump`'s capture in the program (BPF_PROG_TEST_RUN): with a capture armed, each
//! finished packet leaves a record with its action, reason, service, real and bytes as it
//! left (and how a rewritten one arrived); a filter that does not take it, no capture, or a
//! capture past its expiry, leaves none. And NAT replies counted as their service's and real's outgoing traffic.
//! Needs root. The config and frame helpers are `lb_tests::forwarding`'s.

use std::net::IpAddr;

use lb_common::{PROTO_TCP, Reason, capture::CAPTURE_SNAP_LEN};
use lb_tests::{
    fixture::{Balancer, INGRESS_IFINDEX, XDP_PASS, XDP_TX, check_exact},
    forwarding::{
        CLIENT4, CONFIG, VIP4, flow_key, from_client, from_real, to_client, to_next_hop, v4,
    },
    packet::Frame,
};
use lb_userspace::{
    admin::monotonic_now_ns,
    dataplane::{Dataplane as _, capture::CaptureFilter},
};

/// `forward: nat`, 192.0.2.10:8000 → 198.51.100.21:8080, in `CONFIG`.
const NAT: usize = 6;
/// A tunnel service (192.0.2.10:80 over IPIP), in `CONFIG`.
const TUNNEL: usize = 0;
const SESSION: u32 = 77;

fn nat_real() -> IpAddr {
    "198.51.100.21".parse().unwrap()
}

/// Arms a capture for a minute.
fn arm(balancer: &mut Balancer, filter: CaptureFilter) {
    arm_until(balancer, filter, monotonic_now_ns() + 60_000_000_000);
}

fn arm_until(balancer: &mut Balancer, filter: CaptureFilter, expires_ns: u64) {
    balancer
        .capture
        .arm(SESSION, filter, expires_ns)
        .unwrap_or_else(|e| panic!("arming: {e}"));
}

fn records(balancer: &mut Balancer) -> Vec<lb_userspace::dataplane::capture::CapturedPacket> {
    let mut records = Vec::new();
    while let Some((session, packet)) = balancer.capture.next_record() {
        assert_eq!(session, SESSION, "a record of another session");
        records.push(packet);
    }
    records
}

#[test]
fn an_armed_capture_records_each_packet_as_it_leaves_with_its_verdict() {
    let Some(mut balancer) = Balancer::for_test(
        "an_armed_capture_records_each_packet_as_it_leaves_with_its_verdict",
        CONFIG,
    ) else {
        return;
    };
    let service_id = balancer.state.services[NAT].id;
    let real_id = balancer.real_id(NAT, nat_real());
    arm(
        &mut balancer,
        CaptureFilter {
            service_id,
            real_id: 0,
        },
    );

    // The client's SYN, rewritten for the real (the NAT program's verdict).
    let (client, vip) = (v4(CLIENT4, 42000), v4(VIP4, 8000));
    let real4 = v4("198.51.100.21".parse().unwrap(), 8080);
    let syn = from_client(Frame::tcp(client, vip).syn().seq(1000));
    let expected = to_next_hop(
        &Frame::tcp(client, real4).syn().seq(1000).ip_bytes(),
        nat_real(),
    );
    check_exact(
        &mut balancer,
        "SYN",
        &syn,
        XDP_TX,
        Reason::ForwardedTx,
        &expected,
    );
    // Its reply, translated back (the reply program's), counted under the same service.
    let reply = from_real(Frame::tcp(real4, client).syn().ack(), nat_real());
    let back = to_client(Frame::tcp(vip, client).syn().ack());
    check_exact(
        &mut balancer,
        "reply",
        &reply,
        XDP_TX,
        Reason::ForwardedReply,
        &back,
    );
    // A frame longer than the snap length: its first bytes, and its whole length.
    let long = from_client(Frame::tcp(client, vip).ack().payload(&[0x5a; 1000]));
    let long_out = to_next_hop(
        &Frame::tcp(client, real4)
            .ack()
            .payload(&[0x5a; 1000])
            .ip_bytes(),
        nat_real(),
    );
    check_exact(
        &mut balancer,
        "long",
        &long,
        XDP_TX,
        Reason::ForwardedTx,
        &long_out,
    );

    let records = records(&mut balancer);
    assert_eq!(records.len(), 3, "{records:#?}");
    let [syn_record, reply_record, long_record] = &records[..] else {
        unreachable!()
    };
    for (name, record, reason) in [
        ("SYN", syn_record, Reason::ForwardedTx),
        ("reply", reply_record, Reason::ForwardedReply),
        ("long", long_record, Reason::ForwardedTx),
    ] {
        assert_eq!(record.action, XDP_TX, "{name}");
        assert_eq!(record.reason, reason.index(), "{name}");
        assert_eq!(
            (record.service_id, record.real_id),
            (service_id, real_id),
            "{name}"
        );
        assert_eq!(record.ingress_ifindex, INGRESS_IFINDEX, "{name}");
        assert_eq!(record.egress_ifindex, INGRESS_IFINDEX, "{name}: XDP_TX");
        assert!(record.monotonic_ns > 0, "{name}");
    }
    assert_eq!(syn_record.data, expected, "the SYN as it left");
    assert_eq!(syn_record.frame_len as usize, expected.len());
    assert_eq!(reply_record.data, back, "the reply as it left");
    // How the rewritten packets arrived: the client's 5-tuple; the real's reply.
    assert_eq!(
        syn_record.original,
        Some(flow_key(client.into(), vip.into(), PROTO_TCP))
    );
    assert_eq!(
        reply_record.original,
        Some(flow_key(real4.into(), client.into(), PROTO_TCP))
    );
    assert_eq!(long_record.data, long_out[..CAPTURE_SNAP_LEN]);
    assert_eq!(long_record.frame_len as usize, long_out.len());
}

#[test]
fn nothing_is_recorded_unarmed_or_for_a_filter_that_does_not_take_the_packet() {
    let Some(mut balancer) = Balancer::for_test(
        "nothing_is_recorded_unarmed_or_for_a_filter_that_does_not_take_the_packet",
        CONFIG,
    ) else {
        return;
    };
    let (client, vip) = (v4(CLIENT4, 43000), v4(VIP4, 8000));
    let syn = from_client(Frame::tcp(client, vip).syn());
    assert_eq!(balancer.run(&syn).action, XDP_TX);
    assert_eq!(records(&mut balancer), [], "unarmed");

    // Another service; then this service but another real.
    let tunnel_id = balancer.state.services[TUNNEL].id;
    let ack = from_client(Frame::tcp(client, vip).ack());
    for filter in [
        CaptureFilter {
            service_id: tunnel_id,
            real_id: 0,
        },
        CaptureFilter {
            service_id: 0,
            real_id: balancer.real_id(TUNNEL, "198.51.100.11".parse().unwrap()),
        },
    ] {
        arm(&mut balancer, filter);
        assert_eq!(balancer.run(&ack).action, XDP_TX);
        assert_eq!(records(&mut balancer), [], "{filter:?}");
    }

    // Without a filter, everything: a packet for no service passes, and is recorded as it
    // came, counted under nothing.
    arm(&mut balancer, CaptureFilter::default());
    let stranger = from_client(Frame::tcp(client, v4(VIP4, 9999)).syn());
    assert_eq!(balancer.run(&stranger).action, XDP_PASS);
    let records = records(&mut balancer);
    assert_eq!(records.len(), 1, "{records:#?}");
    let record = &records[0];
    assert_eq!(
        (record.action, record.reason),
        (XDP_PASS, Reason::PassNoService.index())
    );
    assert_eq!((record.service_id, record.real_id), (0, 0));
    assert_eq!(record.egress_ifindex, 0);
    assert_eq!(
        (record.data.as_slice(), record.original),
        (stranger.as_slice(), None)
    );

    balancer.capture.disarm().unwrap();
    assert_eq!(balancer.run(&stranger).action, XDP_PASS);
    assert!(balancer.capture.next_record().is_none(), "disarmed");

    // Armed, but expired: its lbd stopped pushing the expiry on.
    arm_until(
        &mut balancer,
        CaptureFilter::default(),
        monotonic_now_ns() - 1,
    );
    assert_eq!(balancer.run(&stranger).action, XDP_PASS);
    assert!(balancer.capture.next_record().is_none(), "expired");
}

#[test]
fn a_nat_reply_counts_as_its_service_and_reals_outgoing_traffic() {
    let Some(mut balancer) = Balancer::for_test(
        "a_nat_reply_counts_as_its_service_and_reals_outgoing_traffic",
        CONFIG,
    ) else {
        return;
    };
    let (client, vip) = (v4(CLIENT4, 44000), v4(VIP4, 8000));
    let real4 = v4("198.51.100.21".parse().unwrap(), 8080);
    let syn = from_client(Frame::tcp(client, vip).syn());
    assert_eq!(balancer.run(&syn).action, XDP_TX);
    let (service_in, real_in) = (
        balancer.service_counters(NAT),
        balancer.real_counters(NAT, nat_real()),
    );
    assert_eq!((service_in.packets, real_in.packets), (1, 1));
    let reply = from_real(
        Frame::tcp(real4, client).syn().ack().payload(b"hello"),
        nat_real(),
    );
    for _ in 0..2 {
        assert_eq!(balancer.run(&reply).action, XDP_TX);
    }
    for (what, out) in [
        ("service", balancer.service_out_counters(NAT)),
        ("real", balancer.real_out_counters(NAT, nat_real())),
    ] {
        assert_eq!(out.packets, 2, "{what}");
        assert_eq!(
            out.bytes,
            2 * reply.len() as u64,
            "{what}: frames as received"
        );
    }
    // And not as incoming traffic.
    assert_eq!(balancer.service_counters(NAT), service_in);
    assert_eq!(balancer.real_counters(NAT, nat_real()), real_in);
    // Another service's counters did not move.
    assert_eq!(balancer.service_out_counters(TUNNEL).packets, 0);

    // -Z zeroes them with the rest.
    let service_id = balancer.state.services[NAT].id;
    let real_id = balancer.real_id(NAT, nat_real());
    balancer
        .dataplane
        .zero_service_counters(service_id)
        .unwrap();
    balancer.dataplane.zero_real_counters(real_id).unwrap();
    assert_eq!(balancer.service_out_counters(NAT).packets, 0);
    assert_eq!(balancer.real_out_counters(NAT, nat_real()).bytes, 0);
}

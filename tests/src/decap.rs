//! The decapsulation program (`lb_decap`), loaded through `lbd decap`'s own code but not
//! attached, fed single frames through `BPF_PROG_TEST_RUN`.

use std::{collections::HashMap, net::IpAddr};

use aya::programs::{TestRun as _, TestRunOptions};
use lb_common::Reason;
use lb_userspace::{
    decap::{DecapProgram, addresses::wanted},
    neighbour::HostAddress,
};

use crate::{
    fixture::{Outcome, XDP_DROP, pin_to_current_cpu},
    pcap::assert_frame_eq,
    privilege::require_root,
};

pub struct Decapsulator {
    program: DecapProgram,
}

impl Decapsulator {
    /// For a privileged test called `test`: `None` without root (see [`require_root`]);
    /// otherwise the program with `local` as the host's interface addresses, `vips` on its
    /// `lo`, and GUE on `gue_port`.
    pub fn for_test(
        test: &str,
        local: &[IpAddr],
        vips: &[IpAddr],
        gue_port: u16,
    ) -> Option<Decapsulator> {
        if !require_root(test) {
            return None;
        }
        pin_to_current_cpu();
        let mut program = DecapProgram::load().unwrap_or_else(|e| panic!("{e}"));
        program
            .set_gue_port(gue_port)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut decapsulator = Decapsulator { program };
        decapsulator.set_addresses(local, vips);
        Some(decapsulator)
    }

    /// Rewrites the address map as `lbd decap` would for a host with these addresses.
    pub fn set_addresses(&mut self, local: &[IpAddr], vips: &[IpAddr]) {
        let on = |addr: &IpAddr, loopback: bool| HostAddress {
            addr: *addr,
            ifindex: if loopback { 1 } else { 2 },
            interface: if loopback { "lo" } else { "eth0" }.to_owned(),
            loopback,
        };
        let host: Vec<HostAddress> = local
            .iter()
            .map(|addr| on(addr, false))
            .chain(vips.iter().map(|addr| on(addr, true)))
            .collect();
        self.program
            .write_addresses(&wanted(&host, &[]))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Sets the GUE port (0: IPIP only), as `lbd decap --gue-port` does.
    pub fn set_gue_port(&mut self, port: u16) {
        self.program
            .set_gue_port(port)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs the program on one frame.
    pub fn run(&mut self, frame: &[u8]) -> Outcome {
        let program = self.program.program_mut().unwrap_or_else(|e| panic!("{e}"));
        let mut out = vec![0u8; frame.len() + 256];
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat: 1,
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN on a {}-byte frame: {e:?}", frame.len()));
        out.truncate(result.data_size_out as usize);
        Outcome {
            action: result.return_value,
            frame: out,
        }
    }

    /// Packets counted per verdict reason so far.
    pub fn reason_packets(&self) -> HashMap<Reason, u64> {
        Reason::ALL
            .into_iter()
            .map(|reason| {
                let counters = self
                    .program
                    .reason(reason)
                    .unwrap_or_else(|e| panic!("{e}"));
                (reason, counters.packets)
            })
            .collect()
    }

    /// Bytes counted under `reason` so far.
    pub fn reason_bytes(&self, reason: Reason) -> u64 {
        self.program
            .reason(reason)
            .unwrap_or_else(|e| panic!("{e}"))
            .bytes
    }

    /// Runs one frame and checks the action, the output bytes, and the counters: exactly
    /// `reason`'s moved, by one, or none when `reason` is `None` (traffic that is not a tunnel's).
    #[track_caller]
    pub fn check(
        &mut self,
        name: &str,
        frame: &[u8],
        action: u32,
        reason: Option<Reason>,
        expected_frame: &[u8],
    ) {
        let before = self.reason_packets();
        let outcome = self.run(frame);
        let after = self.reason_packets();
        assert_eq!(outcome.action, action, "{name}: XDP action");
        if action != XDP_DROP {
            assert_frame_eq(name, expected_frame, &outcome.frame);
        }
        for candidate in Reason::ALL {
            let delta = after[&candidate] - before[&candidate];
            let wanted = u64::from(Some(candidate) == reason);
            assert_eq!(
                delta,
                wanted,
                "{name}: counter {} moved by {delta}",
                candidate.name()
            );
        }
    }
}

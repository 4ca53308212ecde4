//! The decapsulation program (`lb_decap`): [`Decapsulator`] loads it through `lbd decap`'s
//! own code, unattached, and feeds it single frames through `BPF_PROG_TEST_RUN`;
//! [`DecapDaemon`] runs the real `lbd decap` in a test namespace.

use std::{
    collections::HashMap,
    fs::File,
    net::IpAddr,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use aya::programs::{TestRun as _, TestRunOptions};
use lb_common::Reason;
use lb_userspace::{
    decap::{DecapProgram, addresses::wanted},
    neighbour::HostAddress,
};

use crate::{
    fixture::{Outcome, XDP_DROP, pin_to_current_cpu},
    lbd::binary,
    netns::Netns,
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

/// What `lbd decap` logs once its program is attached.
pub const ATTACHED: &str = "lb_decap attached to";
/// How long `lbd decap` may take to load, attach and say so; and to stop.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `lbd decap --interface INTERFACE ARGS…` running in a test namespace (only its network
/// namespace changed), logging to a file of its own. Killed on drop if still running, which
/// detaches its program (nothing of it is pinned).
pub struct DecapDaemon {
    child: Option<Child>,
    log: PathBuf,
    netns: String,
}

impl DecapDaemon {
    /// Starts it and waits until it logs that the program is attached. `log_name` names the
    /// log file in the temporary directory (make it unique per test and process).
    pub fn start(netns: &Netns, interface: &str, args: &[&str], log_name: &str) -> DecapDaemon {
        let log = std::env::temp_dir().join(format!("{log_name}.log"));
        let file = File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let mut command = Command::new(binary("lbd"));
        command
            .args(["decap", "--interface", interface])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file);
        let mut daemon = DecapDaemon {
            child: Some(netns.spawn(command)),
            log,
            netns: netns.name().to_owned(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !daemon.log().contains(ATTACHED) {
            if let Some(status) = daemon
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "lbd decap in {} exited with {status} while starting:\n{}",
                    daemon.netns,
                    daemon.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "lbd decap not attached after {START_TIMEOUT:?}:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// On a tunnel real of an end-to-end test: `--gue-port PORT` when given, the log named
    /// after the namespace and interface.
    pub fn on(netns: &Netns, interface: &str, gue_port: Option<u16>) -> DecapDaemon {
        let port = gue_port.map(|port| port.to_string());
        let args: Vec<&str> = match &port {
            Some(port) => vec!["--gue-port", port],
            None => Vec::new(),
        };
        let log_name = format!("{}-decap-{interface}", netns.name());
        DecapDaemon::start(netns, interface, &args, &log_name)
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the log contains `text`; false if it never does.
    pub fn wait_for_log(&self, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.log().contains(text) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("lbd decap is running").id()
    }

    /// Sends `signal` to it.
    pub fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("lbd decap is running");
        // SAFETY: kill with a pid we own and have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    }

    /// SIGTERM, then waits for it to exit (bounded: killed after the bound, and the test
    /// fails).
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("lbd decap is running");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for lbd decap") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "lbd decap ignored SIGTERM for {STOP_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DecapDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("lbd decap log ({}):\n{}", self.log.display(), self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

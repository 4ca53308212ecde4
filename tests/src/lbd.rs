//! The real `lbd` binary, run inside a test namespace, and `lbadm` against it.
//!
//! [`Lbd`] writes the config to a directory of its own, starts the daemon with only its
//! network namespace changed (so it sees the host's bpffs), waits until every real is
//! resolved, and on drop stops it and removes everything it pinned (`lbd --teardown`).
//! [`Decap`] runs `lbd decap` on a tunnel real the same way.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use lb_userspace::admin::{self, Listing, Reply, Request, Status};

use crate::netns::Netns;

/// How long start-up may take: loading, verifying, resolving reals (lbd waits up to 3 s).
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A binary of this workspace, built next to the running test executable
/// (`target/<profile>/deps/test-…` → `target/<profile>/<name>`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let candidates = exe
        .ancestors()
        .skip(1)
        .take(3)
        .map(|dir| dir.join(name))
        .collect::<Vec<_>>();
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| panic!("{name} not found at {candidates:?}: build it first (`cargo build --bins`; `cargo xtask test` does)"))
}

pub struct Lbd {
    netns_path: PathBuf,
    netns_name: String,
    dir: PathBuf,
    config: PathBuf,
    socket: PathBuf,
    pin_dir: PathBuf,
    /// Removed on drop: a daemon killed there leaves it behind.
    pid_file: PathBuf,
    child: Option<Child>,
    starts: usize,
    /// The `lbd` this runs: this workspace's, or another build's (see [`Lbd::use_binary`]).
    binary: PathBuf,
    /// Environment variables set for the next (re)starts (see [`Lbd::set_env`]).
    env: Vec<(String, String)>,
}

impl Lbd {
    /// Starts `lbd` in `netns` as `instance`, with `body` (the config minus `instance` and
    /// `admin`, which point into a directory of its own), and waits until every real has a MAC.
    pub fn start(netns: &Netns, instance: &str, body: &str) -> Lbd {
        Lbd::start_binary(netns, instance, body, binary("lbd"))
    }

    /// [`Lbd::start`] with another `lbd` binary (an older build, to upgrade from).
    pub fn start_binary(netns: &Netns, instance: &str, body: &str, program: PathBuf) -> Lbd {
        let dir = std::env::temp_dir().join(instance);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let config = dir.join("lbd.yaml");
        let socket = dir.join("lbd.sock");
        // The pid file in the test's directory too (an older build does not know the key).
        let pid_file = if program == binary("lbd") {
            format!("pid_file: {}\n", dir.join("lbd.pid").display())
        } else {
            String::new()
        };
        let text = format!(
            "instance: {instance}\nadmin:\n  socket: {}\n{pid_file}{body}",
            socket.display()
        );
        std::fs::write(&config, text)
            .unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        let mut lbd = Lbd::prepare(netns, &config, dir);
        lbd.binary = program;
        lbd.spawn(netns);
        lbd
    }

    /// Starts `lbd --config CONFIG` in `netns`; logs go to `dir`, which is removed on drop.
    /// Whatever the config's instance had pinned before is removed first.
    pub fn start_with_config(netns: &Netns, config: &Path, dir: PathBuf) -> Lbd {
        let mut lbd = Lbd::prepare(netns, config, dir);
        lbd.spawn(netns);
        lbd
    }

    /// Everything but the start: the directory, what the config names, nothing pinned.
    fn prepare(netns: &Netns, config: &Path, dir: PathBuf) -> Lbd {
        let parsed = lb_userspace::config::load(config).unwrap_or_else(|e| {
            // Nothing will own the directory: remove it before failing.
            let _ = std::fs::remove_dir_all(&dir);
            panic!("{e}")
        });
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let lbd = Lbd {
            netns_path: netns.path(),
            netns_name: netns.name().to_owned(),
            dir,
            config: config.to_path_buf(),
            socket: parsed.admin_socket,
            pin_dir: parsed.pin_dir,
            pid_file: parsed.pid_file,
            child: None,
            starts: 0,
            binary: binary("lbd"),
            env: Vec::new(),
        };
        lbd.teardown();
        lbd
    }

    fn spawn(&mut self, netns: &Netns) {
        assert_eq!(
            netns.path(),
            self.netns_path,
            "restart in the same namespace"
        );
        self.starts += 1;
        let log = File::create(self.log_path()).expect("creating the lbd log");
        let mut command = Command::new(&self.binary);
        command
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        self.child = Some(netns.spawn(command));
        self.wait_ready();
    }

    /// Starts the daemon again in the same namespace, stopping it (SIGTERM) first if it runs.
    pub fn restart(&mut self, netns: &Netns) {
        if self.child.is_some() {
            let status = self.stop();
            assert!(
                status.success(),
                "lbd exited with {status}:\n{}",
                self.log()
            );
        }
        self.spawn(netns);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("lbd-{}.log", self.starts))
    }

    /// Sets an environment variable for the next (re)starts, e.g. systemd's `NOTIFY_SOCKET`.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Runs `binary` from the next (re)start on, e.g. an older build to upgrade from.
    pub fn use_binary(&mut self, binary: PathBuf) {
        self.binary = binary;
    }

    /// Edits the config file for the next (re)start: `from` must occur in it.
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).expect("reading the config");
        assert!(
            text.contains(from),
            "{from:?} not in {}:\n{text}",
            self.config.display()
        );
        std::fs::write(&self.config, text.replace(from, to)).expect("writing the config");
    }

    /// SIGHUP, then waits (at most 10 s) until the daemon says it applied its config file;
    /// panics at once, with the log, when it says it refused it.
    pub fn reload(&self) {
        let count = |what: &str| self.log().matches(what).count();
        let (applied, refused) = (count("reload applied"), count("reload refused"));
        self.signal(libc::SIGHUP);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while count("reload applied") == applied {
            assert!(
                count("reload refused") == refused,
                "reload refused:\n{}",
                self.log()
            );
            assert!(
                std::time::Instant::now() < deadline,
                "no reload applied within 10 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the current (or last) daemon printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                panic!(
                    "lbd in {} exited with {status} while starting:\n{}",
                    self.netns_name,
                    self.log()
                );
            }
            if let Ok(listing) = self.try_listing()
                && listing
                    .services
                    .iter()
                    .flat_map(|s| &s.reals)
                    // Its MAC known: one a health check keeps out is still ready.
                    .all(|real| real.mac.is_some())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "lbd not ready after {START_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn try_listing(&self) -> Result<Listing, admin::ClientError> {
        match admin::request(&self.socket, &Request::List)? {
            Reply::Listing(listing) => Ok(listing),
            other => Err(admin::ClientError::Daemon(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// The daemon's status (`lbadm status -o json`).
    pub fn status(&self) -> Status {
        match admin::request(&self.socket, &Request::Status) {
            Ok(Reply::Status(status)) => status,
            other => panic!("status: {other:?}\n{}", self.log()),
        }
    }

    /// Services, reals and counters, as `lbadm -L -n -o json` gets them.
    pub fn listing(&self) -> Listing {
        self.try_listing()
            .unwrap_or_else(|e| panic!("listing: {e}\n{}", self.log()))
    }

    /// Packets counted under the verdict reason `name` (`lbadm -L -n -o json`'s `reasons`), 0
    /// for a reason the daemon does not list.
    pub fn reason(&self, name: &str) -> u64 {
        self.listing()
            .reasons
            .iter()
            .find(|count| count.reason == name)
            .map_or(0, |count| count.packets)
    }

    /// Runs `lbadm ARGS --socket SOCKET` and returns its stdout; panics if it fails.
    pub fn lbadm(&self, args: &[&str]) -> String {
        let output = Command::new(binary("lbadm"))
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .expect("running lbadm");
        assert!(
            output.status.success(),
            "lbadm {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("lbadm prints UTF-8")
    }

    /// New flows the program scheduled for service `service_id`, per CPU (from the pinned
    /// counters, which lbadm only shows summed).
    pub fn new_flows_per_cpu(&self, service_id: u32) -> Vec<u64> {
        let path = self.pin_dir.join(lb_common::MAP_SERVICE_STATS);
        let data = aya::maps::MapData::from_pin(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        let stats: aya::maps::PerCpuArray<_, lb_common::Counters> =
            aya::maps::PerCpuArray::try_from(aya::maps::Map::PerCpuArray(data))
                .unwrap_or_else(|e| panic!("{e}"));
        stats
            .get(&service_id, 0)
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|counters| counters.new_flows)
            .collect()
    }

    /// SIGTERM, then wait (bounded; SIGKILL after the bound).
    pub fn stop(&mut self) -> ExitStatus {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `signal` to the running daemon.
    pub fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("lbd is running");
        // SAFETY: kill with a pid we own and have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    }

    /// The running daemon's process id (for its /proc figures).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the daemon is still running (it has not exited).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().expect("waiting for lbd").is_none())
    }

    /// Waits (bounded) until the current log contains `text`; false if it never does.
    pub fn wait_for_log(&self, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.log().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends `signal` and waits for the daemon to exit (bounded; SIGKILL after the bound).
    pub fn stop_with(&mut self, signal: libc::c_int) -> ExitStatus {
        self.signal(signal);
        let mut child = self.child.take().expect("lbd is running");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for lbd") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let status = child.wait().expect("waiting for lbd");
                panic!(
                    "lbd ignored signal {signal} for {STOP_TIMEOUT:?} (killed: {status}):\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `lbd --teardown`: detach and unpin. Also run on drop.
    pub fn teardown(&self) {
        let output = Command::new(binary("lbd"))
            .arg("--config")
            .arg(&self.config)
            .arg("--teardown")
            .output();
        match output {
            Ok(output) if output.status.success() => {}
            // A config the test left broken (a refused reload) cannot be read: unpin by the
            // directory it named at the start.
            Ok(output) => {
                eprintln!(
                    "lbd --teardown: {}; unpinning {} directly",
                    String::from_utf8_lossy(&output.stderr).trim_end(),
                    self.pin_dir.display()
                );
                let _ = lb_userspace::dataplane::loader::unpin_all(&self.pin_dir);
            }
            Err(error) => eprintln!("lbd --teardown: {error}"),
        }
    }
}

impl Drop for Lbd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.teardown();
        let _ = std::fs::remove_file(&self.pid_file);
        if std::thread::panicking() {
            eprintln!("lbd log ({}):\n{}", self.log_path().display(), self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Checks that connections were spread over reals by their weights, given how many new flows
/// each CPU scheduled (`Lbd::new_flows_per_cpu`): `served` counts connections per real name,
/// `weights` gives each real's name and weight.
///
/// A CPU that schedules n new flows walks n consecutive slots of the wrr ring, so its count
/// for a real of weight w is within w of n × w / total; over the k CPUs that scheduled any,
/// within k × w. A split by the wrong weights is off by far more.
#[track_caller]
pub fn assert_split_follows_weights(
    served: &std::collections::HashMap<String, u64>,
    weights: &[(&str, u32)],
    per_cpu: &[u64],
) {
    let cpus_used = per_cpu.iter().filter(|&&n| n > 0).count() as f64;
    let scheduled: u64 = per_cpu.iter().sum();
    let total_weight: u32 = weights.iter().map(|(_, weight)| weight).sum();
    for &(name, weight) in weights {
        let got = served.get(name).copied().unwrap_or(0) as f64;
        let expected = scheduled as f64 * f64::from(weight) / f64::from(total_weight);
        assert!(
            (got - expected).abs() <= cpus_used * f64::from(weight),
            "{name} (weight {weight}) served {got} of {scheduled} connections, expected \
             {expected} ± {cpus_used} × {weight}: {served:?}, per CPU {per_cpu:?}"
        );
    }
}

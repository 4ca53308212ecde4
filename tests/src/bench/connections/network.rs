//! The setups on one network: the namespaces, nginx on the reals, lbd, the nftables
//! table and HAProxy on the balancer, each torn down on drop.

use std::{
    fmt::Write as _,
    net::{SocketAddr, SocketAddrV4, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{
    FIN_TIMEOUT_S, HAPROXY_IP, LBD_ONE_REAL_PORT, Measurement, NFT_IP, NFT_REAL_PORT,
    NFT_REPLY_TABLE, NFT_TABLE, REALS, START_TIMEOUT, Setup, WRK_CONNECTIONS, WRK_GRACE,
    WRK_THREADS, WRK_TIMEOUT,
    cpu::{CpuClock, children_cpu_s, machine_ticks, process_ticks},
    wrk::parse_wrk,
};
use crate::{
    lbd::Lbd,
    netns::Netns,
    topology::{CLIENT_IP, DrTopology, LB_IP, VIP},
};

/// The setups on one network, up for the whole run. Fields drop in declaration order:
/// the processes, lbd and the nftables table before the namespaces they live in.
pub(super) struct Network {
    haproxy: Process,
    servers: Vec<Process>,
    lbd: Lbd,
    lbd_pid: u32,
    _nftables: NftTable,
    _files: Files,
    topology: DrTopology,
}

impl Network {
    pub(super) fn build() -> Network {
        for (tool, package) in [("wrk", "wrk"), ("nginx", "nginx"), ("haproxy", "haproxy")] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            assert!(
                found,
                "{tool} is missing: `cargo xtask setup` installs {package}"
            );
        }
        let pid = std::process::id();
        let prefix = format!("lbcn-{pid}-");
        let topology = DrTopology::build(&prefix, &REALS);
        let files = Files::create(std::env::temp_dir().join(format!("lbcn-{pid}-files")));

        // Thousands of connections a second, each leaving TIME_WAIT for 60 s when wrk closes
        // first, use up the default 28k ephemeral ports within seconds, unless the client
        // may reuse ports in TIME_WAIT and has more of them.
        topology.client.sysctl("net.ipv4.tcp_tw_reuse", "1");
        topology
            .client
            .sysctl("net.ipv4.ip_local_port_range", "1024 65535");

        let lb = &topology.lb;
        for ip in [NFT_IP, HAPROXY_IP] {
            lb.ip(&["addr", "add", &format!("{ip}/32"), "dev", "eth0"]);
        }
        lb.sysctl("net.ipv4.ip_forward", "1");
        // nftables' connections leave by the interface they came in on; a redirect would
        // teach the reals to answer the client directly, past conntrack.
        for conf in ["all", "default", "eth0"] {
            lb.sysctl(&format!("net.ipv4.conf.{conf}.send_redirects"), "0");
        }
        let nftables = NftTable::add(lb);
        lb.sysctl(
            "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
            &FIN_TIMEOUT_S.to_string(),
        );

        let mut servers = Vec::new();
        for (name, real, _) in &topology.reals {
            let port = NFT_REAL_PORT.to_string();
            real.ip(&[
                "rule",
                "add",
                "ipproto",
                "tcp",
                "sport",
                &port,
                "lookup",
                NFT_REPLY_TABLE,
            ]);
            real.ip(&[
                "route",
                "add",
                &format!("{CLIENT_IP}/32"),
                "via",
                &LB_IP.to_string(),
                "dev",
                "eth0",
                "table",
                NFT_REPLY_TABLE,
            ]);
            servers.push(nginx(real, name, &files.path));
        }

        topology.attach_pass_program();
        let lbd = Lbd::start(lb, &format!("lbcn-{pid}"), &lbd_config());
        let haproxy = haproxy(lb, &files.path);
        let lbd_pid = pid_of(&lbd);

        let network = Network {
            haproxy,
            servers,
            lbd,
            lbd_pid,
            _nftables: nftables,
            _files: files,
            topology,
        };
        for ((_, _, ip), server) in network.topology.reals.iter().zip(&network.servers) {
            network.wait_accepting(SocketAddr::V4(SocketAddrV4::new(*ip, 80)), server);
        }
        network.wait_accepting(Setup::Haproxy.address(), &network.haproxy);
        network
    }

    /// Waits until a connection from the client to `addr`, where `server` listens, succeeds;
    /// panics with its log after [`START_TIMEOUT`].
    fn wait_accepting(&self, addr: SocketAddr, server: &Process) {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last_error = None;
        while Instant::now() < deadline {
            let connected = self
                .topology
                .client
                .run(|| TcpStream::connect_timeout(&addr, Duration::from_millis(200)));
            match connected {
                Ok(_) => return,
                Err(error) => last_error = Some(error),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "nothing accepts on {addr} after {START_TIMEOUT:?} ({last_error:?}); {}",
            server.describe()
        );
    }

    /// A few requests on fresh connections: `setup` must answer, from real1 alone when
    /// direct, from more than one real when balanced.
    pub(super) fn check_serves(&self, setup: Setup) {
        let addr = setup.address();
        let answers = (0..2 * REALS.len())
            .map(|index| {
                self.topology
                    .client
                    .run(|| crate::http::get(addr, "/", Duration::from_secs(2)))
                    .unwrap_or_else(|error| {
                        panic!(
                            "{} ({addr}): request {index}: {error}\n{}",
                            setup.name(),
                            self.lbd.log()
                        )
                    })
                    .trim_end()
                    .to_owned()
            })
            .collect::<std::collections::BTreeSet<_>>();
        let expected = if matches!(setup, Setup::Direct | Setup::LbdOneReal) {
            answers.len() == 1 && answers.contains(REALS[0])
        } else {
            answers.len() > 1
        };
        assert!(expected, "{} answered from {answers:?}", setup.name());
    }

    /// Runs wrk from the client against `setup` for `duration`.
    pub(super) fn wrk(&self, setup: Setup, duration: Duration) -> Measurement {
        let url = format!("http://{}/", setup.address());
        let mut command = Command::new("wrk");
        command
            .arg(format!("-t{WRK_THREADS}"))
            .arg(format!("-c{WRK_CONNECTIONS}"))
            .arg(format!("-d{}s", duration.as_secs()))
            .arg(format!("--timeout={}s", WRK_TIMEOUT.as_secs()))
            .args(["--latency", "-H", "Connection: close", &url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let before = self.cpu_clock();
        let child = self.topology.client.spawn(command);
        let output = Process::new("wrk", child, None).wait_with_output(duration + WRK_GRACE);
        let after = self.cpu_clock();
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "wrk against {} failed ({}): {report}{}",
            setup.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let summary = parse_wrk(&report).unwrap_or_else(|error| panic!("{error}"));
        Measurement {
            connections_per_s: summary.requests_per_s,
            p50_ms: summary.p50_ms,
            p99_ms: summary.p99_ms,
            errors: summary.errors,
            cpu: after.since(&before),
        }
    }

    fn cpu_clock(&self) -> CpuClock {
        CpuClock {
            at: Instant::now(),
            machine: machine_ticks(),
            children: children_cpu_s(),
            servers: self.servers.iter().map(Process::cpu_ticks).collect(),
            haproxy: self.haproxy.cpu_ticks(),
            lbd: process_ticks(self.lbd_pid),
        }
    }
}

/// The daemon's process id, from the pid file its config names.
fn pid_of(lbd: &Lbd) -> u32 {
    let config = lb_userspace::config::load(lbd.config_path()).unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(&config.pid_file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", config.pid_file.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{text:?} in {}: {e}", config.pid_file.display()))
}

/// A child process, killed and reaped when dropped.
struct Process {
    what: String,
    child: Option<Child>,
    /// Where it writes what it has to say, if anywhere.
    log: Option<PathBuf>,
}

impl Process {
    fn new(what: impl Into<String>, child: Child, log: Option<PathBuf>) -> Process {
        Process {
            what: what.into(),
            child: Some(child),
            log,
        }
    }

    /// Whether it still runs, and its log.
    fn describe(&self) -> String {
        let pid = self.child.as_ref().map(Child::id);
        // A zombie keeps its /proc entry until reaped: look at its state.
        let running = pid
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .and_then(|stat| Some(stat.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
            .unwrap_or(false);
        let log = self
            .log
            .as_ref()
            .map(|log| std::fs::read_to_string(log).unwrap_or_default())
            .unwrap_or_default();
        format!(
            "{} {}; its log:\n{log}",
            self.what,
            if running { "runs" } else { "has exited" }
        )
    }

    /// User and system ticks it has used so far (0 once it is gone).
    fn cpu_ticks(&self) -> u64 {
        self.child
            .as_ref()
            .map_or(0, |child| process_ticks(child.id()))
    }

    /// Waits for it to exit and collects its output; kills it and panics after `limit`.
    fn wait_with_output(mut self, limit: Duration) -> std::process::Output {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().expect("not yet waited for");
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                // Dropping `self` kills it.
                Ok(None) if Instant::now() >= deadline => {
                    panic!("{} still running after {limit:?}", self.what)
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(error) => panic!("waiting for {}: {error}", self.what),
            }
        }
        let child = self.child.take().expect("not yet waited for");
        child
            .wait_with_output()
            .unwrap_or_else(|error| panic!("reading {}'s output: {error}", self.what))
    }

    /// Panics with its log if it has exited.
    fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("not yet waited for");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{} exited with {status}; {}", self.what, self.describe());
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// nginx in `real`, one process in the foreground, answering every request with `name` on
/// ports 80 and [`NFT_REAL_PORT`].
fn nginx(real: &Netns, name: &str, files: &Path) -> Process {
    let dir = files.join(name);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let dir_text = dir.display();
    let config = format!(
        "worker_processes 1;
daemon off;
master_process off;
pid {dir_text}/nginx.pid;
error_log {dir_text}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir_text}/body;
    proxy_temp_path {dir_text}/proxy;
    fastcgi_temp_path {dir_text}/fastcgi;
    uwsgi_temp_path {dir_text}/uwsgi;
    scgi_temp_path {dir_text}/scgi;
    default_type text/plain;
    server {{
        listen 80 backlog=4096;
        listen {NFT_REAL_PORT} backlog=4096;
        listen {LBD_ONE_REAL_PORT} backlog=4096;
        location / {{ return 200 \"{name}\\n\"; }}
    }}
}}
"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    let log = dir.join("error.log");
    let mut command = Command::new("nginx");
    command
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(&log)
        .arg("-c")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut process = Process::new(format!("nginx on {name}"), real.spawn(command), Some(log));
    std::thread::sleep(Duration::from_millis(100));
    process.assert_running();
    process
}

/// HAProxy in `lb`, in the foreground, `mode tcp` round robin over the reals' port 80.
fn haproxy(lb: &Netns, files: &Path) -> Process {
    let mut servers = String::new();
    for (index, name) in REALS.iter().enumerate() {
        let ip = crate::topology::real_ip(index);
        let _ = writeln!(servers, "    server {name} {ip}:80");
    }
    // One thread: the two CPUs also carry the client, the reals and the kernel's forwarding.
    // maxconn far above wrk's connections in flight, yet within the descriptors a container
    // may allow (HAProxy refuses to start when it cannot have two per connection).
    let config = format!(
        "global
    nbthread 1
    maxconn 4096
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend bench
    bind {HAPROXY_IP}:80
    default_backend reals
backend reals
    balance roundrobin
{servers}"
    );
    let path = files.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    let log_path = files.join("haproxy.log");
    let log = std::fs::File::create(&log_path).expect("creating haproxy's log");
    let mut command = Command::new("haproxy");
    command
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log);
    let mut process = Process::new("haproxy", lb.spawn(command), Some(log_path));
    std::thread::sleep(Duration::from_millis(100));
    process.assert_running();
    process
}

fn lbd_config() -> String {
    let mut reals = String::new();
    for index in 0..REALS.len() {
        let _ = writeln!(
            reals,
            "      - address: {}",
            crate::topology::real_ip(index)
        );
    }
    format!(
        "interfaces:
  - name: eth0
    xdp_mode: native
services:
  - vip: {VIP}
    port: 80
    protocol: tcp
    scheduler: rr
    reals:
{reals}  - vip: {VIP}
    port: {LBD_ONE_REAL_PORT}
    protocol: tcp
    reals:
      - address: {}
timeouts: {{tcp: 900s, tcp_fin: {FIN_TIMEOUT_S}s, udp: 300s}}
limits: {{flows: 1000000, services: 16, reals: 64}}
",
        crate::topology::real_ip(0)
    )
}

/// The nftables balancer's table in the balancer's namespace, deleted on drop.
struct NftTable {
    netns: String,
}

impl NftTable {
    fn add(lb: &Netns) -> NftTable {
        let reals = (0..REALS.len())
            .map(|index| crate::topology::real_ip(index).to_string())
            .collect::<Vec<_>>();
        let map = reals
            .iter()
            .enumerate()
            .map(|(index, ip)| format!("{index} : {ip}"))
            .collect::<Vec<_>>()
            .join(", ");
        let real_set = reals.join(", ");
        let count = REALS.len();
        // The nat hook turns conntrack on for the whole namespace: HAProxy's connections are
        // exempted (raw priority, before conntrack), so only nftables pays for it.
        let rules = format!(
            "table ip {NFT_TABLE} {{
    chain untracked_in {{
        type filter hook prerouting priority raw; policy accept;
        ip daddr {HAPROXY_IP} notrack
        ip saddr {{ {real_set} }} tcp sport 80 notrack
    }}
    chain untracked_out {{
        type filter hook output priority raw; policy accept;
        ip saddr {HAPROXY_IP} notrack
        ip daddr {{ {real_set} }} tcp dport 80 notrack
    }}
    chain balance {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {NFT_IP} tcp dport 80 \
            dnat to numgen inc mod {count} map {{ {map} }} : {NFT_REAL_PORT}
    }}
}}
"
        );
        let table = NftTable {
            netns: lb.name().to_owned(),
        };
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", lb.name(), "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawning nft");
        std::io::Write::write_all(
            &mut child.stdin.take().expect("nft's stdin"),
            rules.as_bytes(),
        )
        .expect("writing nft's rules");
        let output = child.wait_with_output().expect("waiting for nft");
        assert!(
            output.status.success(),
            "nft refused:\n{rules}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        table
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        let deleted = Command::new("ip")
            .args(["netns", "exec", &self.netns, "nft", "delete", "table", "ip"])
            .arg(NFT_TABLE)
            .output();
        if !deleted.is_ok_and(|output| output.status.success()) {
            eprintln!("could not delete nft table {NFT_TABLE} in {}", self.netns);
        }
    }
}

/// A directory for the servers' configs and logs, removed on drop.
struct Files {
    path: PathBuf,
}

impl Files {
    fn create(path: PathBuf) -> Files {
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Files { path }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

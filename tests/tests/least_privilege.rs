//! Least privilege and abuse of the admin socket, through the real `lbd` binary: what it
//! keeps after start-up (every thread, and the hooks it runs), that it still does its work
//! with only that, who may use its socket, and the bounds on what clients take. Needs root.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{IpAddr, SocketAddr},
    os::unix::{fs::MetadataExt as _, net::UnixStream},
    path::Path,
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use lb_tests::{
    DrTopology, VIP,
    ha::{Pair, state, wait_for_state},
    http::{self},
    lbd::{Lbd, binary},
    netns,
    privilege::{assert_threads_hold_only, require_root},
    topology::real_ip,
};
use lb_userspace::{
    admin::{
        MAX_REQUEST_BYTES,
        admission::{MAX_CONNECTIONS, REQUEST_BURST},
    },
    daemon::privileges::{CapabilitySet, ThreadCapabilities},
};

const TIMEOUT: Duration = Duration::from_secs(5);

fn assert_holds_only(lbd: &Lbd, kept: CapabilitySet, when: &str) {
    let threads = assert_threads_hold_only(lbd.pid().expect("lbd is running"), kept, &|| lbd.log());
    println!("{when}: all {threads} of lbd's threads hold only {kept}");
}

/// The nice value of lbd's `vrrp` thread (field 19 of its `stat`, after the name in
/// parentheses).
fn vrrp_thread_nice(pid: u32) -> Option<i64> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
        let (name, rest) = stat.split_once(") ")?;
        if name.ends_with("(vrrp") {
            return rest.split_whitespace().nth(16)?.parse().ok();
        }
    }
    None
}

#[test]
fn after_start_up_lbd_holds_only_bpf_net_admin_and_net_raw_and_still_works() {
    if !require_root("the least-privilege test") {
        return;
    }
    let prefix = format!("lbt-priv-{}-", std::process::id());
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build(&prefix, &["real1", "real2"]);
    topology.attach_pass_program();
    let _servers = topology.serve_http();
    let dir = std::env::temp_dir().join(format!("lbt-priv-hook-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a directory for the hook");
    // The hook records the capabilities it runs with: lbd runs it as root, and a root exec
    // regains everything in the bounding set, so this shows the bounding set was lowered.
    let hook = dir.join("on_master");
    let hook_record = dir.join("capabilities");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ngrep ^Cap /proc/self/status > {}.tmp && mv {0}.tmp {0}\n",
            hook_record.display()
        ),
    )
    .expect("writing the hook");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("making the hook executable");
    // A lone router: it becomes master after the master-down interval, well after start-up,
    // so adding the VIP and announcing it happen with the reduced set.
    let pair = Pair {
        priority: 100,
        advert: Duration::from_millis(100),
        unicast_peer: None,
        sync_peer: None,
        preempt: true,
    };
    let config = pair.config(
        &[real_ip(0), real_ip(1)],
        &format!("    hooks: {{on_master: {}}}\n", hook.display()),
    );
    let mut lbd = Lbd::start(
        &topology.lb,
        &format!("lbt-priv-{}", std::process::id()),
        &config,
    );
    let kept = CapabilitySet::after_start(true);
    assert!(
        lbd.wait_for_log(
            "capabilities kept: CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF",
            TIMEOUT
        ),
        "{}",
        lbd.log()
    );
    assert_holds_only(&lbd, kept, "after start-up");
    // The routers' thread was raised before CAP_SYS_NICE went.
    assert_eq!(
        vrrp_thread_nice(lbd.pid().expect("lbd is running")),
        Some(-10),
        "{}",
        lbd.log()
    );

    // VRRP after the drop: the VIP added (CAP_NET_ADMIN), adverts and announcements sent
    // (CAP_NET_RAW), the hook run.
    wait_for_state(&lbd, "MASTER", Duration::from_secs(5));
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let addresses = topology.lb.ip(&["-o", "addr", "show", "dev", "eth0"]);
        if addresses.contains(&format!("{VIP}/32")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the master did not add the VIP:\n{addresses}\n{}",
            lbd.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    while !hook_record.exists() {
        assert!(
            Instant::now() < deadline,
            "the hook never ran:\n{}",
            lbd.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let hook_capabilities = ThreadCapabilities::parse(
        &std::fs::read_to_string(&hook_record).expect("the hook's record"),
    )
    .expect("Cap* lines");
    assert!(
        hook_capabilities.effective & !kept.0 == 0 && hook_capabilities.bounding & !kept.0 == 0,
        "the hook ran with more than {kept}: {hook_capabilities:x?}"
    );

    // Forwarding, map writes from an edit and a reload, listings: all with the reduced set.
    let vip = SocketAddr::new(IpAddr::V4(VIP), 80);
    let results = http::connections(&topology.client, vip, 20, 2, TIMEOUT);
    let failed: Vec<_> = results.iter().filter(|result| result.is_err()).collect();
    assert!(
        failed.is_empty(),
        "requests failed: {failed:?}\n{}",
        lbd.log()
    );
    lbd.lbadm(&["-e", "-t", "192.0.2.100:80", "-r", "192.0.2.12", "-w", "0"]);
    lbd.signal(libc::SIGHUP);
    assert!(
        lbd.wait_for_log("reload applied", TIMEOUT),
        "no reload logged:\n{}",
        lbd.log()
    );
    lbd.lbadm(&["-L", "-n", "-c"]);
    assert_eq!(state(&lbd), "MASTER");
    // Threads started since (blocking threads, hook waiters) inherited the reduced set.
    assert_holds_only(&lbd, kept, "after VRRP, traffic, an edit and a reload");
    let log = lbd.log();
    let lowercase = log.to_lowercase();
    assert!(
        !lowercase.contains("operation not permitted") && !lowercase.contains("permission denied"),
        "something lbd does after start-up lacked a capability:\n{log}"
    );
    lbd.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_admin_socket_belongs_to_root_or_its_group_and_bounds_its_clients() {
    if !require_root("the admin socket abuse test") {
        return;
    }
    let prefix = format!("lbt-adm-{}-", std::process::id());
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build(&prefix, &["real1"]);
    let instance = format!("lbt-adm-{}", std::process::id());
    let dir = std::env::temp_dir().join(&instance);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the daemon's directory");
    let socket = dir.join("lbd.sock");
    let config = dir.join("lbd.yaml");
    const GROUP: u32 = 4242;
    std::fs::write(
        &config,
        format!(
            "instance: {instance}
admin: {{socket: {}, group: {GROUP}}}
pid_file: {}
interfaces: [{{name: eth0, xdp_mode: native}}]
services:
  - {{vip: 192.0.2.100, port: 80, protocol: tcp, scheduler: rr, reals: [{{address: 192.0.2.11}}]}}
",
            socket.display(),
            dir.join("lbd.pid").display()
        ),
    )
    .expect("writing the config");
    let lbd = Lbd::start_with_config(&topology.lb, &config, dir.clone());
    // Without VRRP, not even CAP_NET_RAW.
    assert!(lbd.wait_for_log("capabilities kept: CAP_NET_ADMIN, CAP_BPF", TIMEOUT));
    assert_holds_only(&lbd, CapabilitySet::after_start(false), "without VRRP");

    let metadata = std::fs::metadata(&socket).expect("the socket exists");
    assert_eq!(
        (metadata.mode() & 0o777, metadata.uid(), metadata.gid()),
        (0o660, 0, GROUP),
        "the socket's mode, owner and group"
    );

    // A request line longer than the bound is refused, unread beyond it.
    let refused = exchange(&socket, &vec![b'x'; MAX_REQUEST_BYTES + 1024]);
    assert!(
        refused.contains("longer than 16777216 bytes"),
        "oversized: {refused}"
    );

    // Connections beyond the bound are refused at once, and served again once they close.
    let idle: Vec<UnixStream> = (0..MAX_CONNECTIONS)
        .map(|_| UnixStream::connect(&socket).expect("connecting"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let busy = exchange(&socket, b"{\"request\":\"status\"}\n");
    assert!(
        busy.contains(&format!("busy: {MAX_CONNECTIONS} admin connections")),
        "with {MAX_CONNECTIONS} idle connections: {busy}"
    );
    drop(idle);
    std::thread::sleep(Duration::from_millis(200));
    lbd.lbadm(&["-L", "-n"]);

    // A flood of requests (malformed: cheap to answer) meets the rate bound; the daemon
    // serves again a moment later.
    let sent = AtomicUsize::new(0);
    let rate_refused = AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                while sent.fetch_add(1, Ordering::Relaxed) < 4 * REQUEST_BURST as usize
                    && rate_refused.load(Ordering::Relaxed) == 0
                    && Instant::now() < deadline
                {
                    if exchange(&socket, b"not json\n").contains("requests per second") {
                        rate_refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert!(
        rate_refused.load(Ordering::Relaxed) > 0,
        "{} requests at once were never refused",
        sent.load(Ordering::Relaxed)
    );
    std::thread::sleep(Duration::from_secs(1));
    lbd.lbadm(&["-L", "-n"]);

    // lbadm will not talk to a socket another user owns: whoever owns it could pose as lbd.
    let foreign = dir.join("foreign.sock");
    let listener = std::os::unix::net::UnixListener::bind(&foreign).expect("binding");
    listener.set_nonblocking(true).expect("non-blocking");
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).expect("chown");
    let output = Command::new(binary("lbadm"))
        .args(["-L", "-n", "--socket"])
        .arg(&foreign)
        .output()
        .expect("running lbadm");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "lbadm: {stderr}");
    assert!(
        stderr.contains("refusing") && stderr.contains("uid 65534"),
        "lbadm said: {stderr}"
    );
    assert!(
        listener.accept().is_err(),
        "lbadm connected to the foreign socket"
    );

    // Nor to one whose file is root's but whose listener runs as another user (the file
    // swapped after lbadm looked at it): the peer's credentials give it away.
    let open_dir = dir.join("open");
    std::fs::create_dir(&open_dir).expect("a directory anyone may write");
    std::fs::set_permissions(
        &open_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let impostor = open_dir.join("impostor.sock");
    let listener = {
        let impostor = impostor.clone();
        // setresuid as a raw system call changes only the calling thread's user.
        std::thread::spawn(move || {
            // SAFETY: plain system calls with no memory arguments.
            unsafe {
                assert_eq!(libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534), 0);
                assert_eq!(libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534), 0);
            }
            std::os::unix::net::UnixListener::bind(&impostor).expect("binding as uid 65534")
        })
        .join()
        .expect("the impostor's thread")
    };
    std::os::unix::fs::chown(&impostor, Some(0), Some(0)).expect("chown to root");
    let output = Command::new(binary("lbadm"))
        .args(["-L", "-n", "--socket"])
        .arg(&impostor)
        .output()
        .expect("running lbadm");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "lbadm: {stderr}");
    assert!(
        stderr.contains("the process listening on it runs as uid 65534"),
        "lbadm said: {stderr}"
    );
    drop(listener);
    drop(lbd);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends `request` on a new connection and returns the reply line ("" if none came).
fn exchange(socket: &Path, request: &[u8]) -> String {
    let mut stream = UnixStream::connect(socket).expect("connecting to lbd");
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("a read timeout");
    // The daemon may answer and close before reading all of an oversized request.
    let _ = stream.write_all(request);
    let mut reply = String::new();
    let _ = BufReader::new(&mut stream).read_line(&mut reply);
    let _ = stream.read_to_string(&mut String::new());
    reply
}

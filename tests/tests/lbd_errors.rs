//! lbd refuses what it cannot run, with one line naming what and where, and changes nothing:
//! no pins, no socket, and a daemon already running keeps running. Needs root.

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use lb_tests::{
    DrTopology, Netns,
    lbd::{Lbd, binary},
    netns,
    privilege::require_root,
};

const SERVICE: &str = "
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    reals: [{address: REAL}]
";

/// Runs lbd with `config` inside `netns` (bounded: it must fail fast) and returns its output.
fn failing_lbd(netns: &Netns, config: &Path) -> Output {
    let mut command = Command::new(binary("lbd"));
    command
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = netns.spawn(command);
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("waiting for lbd").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("lbd --config {} did not fail within 20 s", config.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("lbd output")
}

#[test]
fn lbd_refuses_what_it_cannot_run_and_leaves_nothing_behind() {
    if !require_root("lbd_errors") {
        return;
    }
    let pid = std::process::id();
    let prefix = format!("lbt-err-{pid}-");
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build(&prefix, &["real1"]);
    topology.attach_pass_program();
    let running = Lbd::start(
        &topology.lb,
        &format!("lbt-err-{pid}"),
        &format!(
            "interfaces: [{{name: eth0}}]\n{}",
            SERVICE.replace("REAL", "192.0.2.11")
        ),
    );
    let dir = std::env::temp_dir().join(format!("lbt-err-{pid}-configs"));
    std::fs::create_dir_all(&dir).unwrap();

    let cases = [
        (
            "missing_interface",
            format!(
                "interfaces: [{{name: eth9}}]\n{}",
                SERVICE.replace("REAL", "192.0.2.11")
            ),
            "eth9",
        ),
        (
            "real_off_subnet",
            format!(
                "interfaces: [{{name: eth0}}]\n{}",
                SERVICE.replace("REAL", "198.51.100.5")
            ),
            "real 198.51.100.5 of TCP 192.0.2.100:80 is not on a subnet of any XDP interface or VLAN on one (eth0: 192.0.2.2/24",
        ),
    ];
    for (name, body, expected) in &cases {
        let instance = format!("lbt-err-{pid}-{}", name.replace('_', "-"));
        let socket = dir.join(format!("{name}.sock"));
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "instance: {instance}\nadmin: {{socket: {}}}\n{body}",
                socket.display()
            ),
        )
        .unwrap();
        let output = failing_lbd(&topology.lb, &config);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("");
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            last.starts_with("lbd: ") && last.contains(expected),
            "{name}: expected {expected:?} in {stderr}"
        );
        assert!(
            !Path::new("/sys/fs/bpf/lb").join(&instance).exists(),
            "{name}: pins left behind"
        );
        assert!(!socket.exists(), "{name}: admin socket left behind");
    }

    // A second daemon of the running instance is refused by the pid file's lock, before it
    // touches anything, and does not disturb the first.
    let output = failing_lbd(&topology.lb, running.config_path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("already runs this instance") && stderr.contains(".pid"),
        "{stderr}"
    );
    let listing = running.listing();
    assert!(
        listing.services[0].reals[0].available,
        "the first daemon still serves: {listing:?}"
    );

    // New limits cannot resize pinned maps: a restart with them is refused before anything
    // is adopted, and the old limits start as before.
    let mut running = running;
    let status = running.stop();
    assert!(status.success(), "{status}");
    running.edit_config("interfaces:", "limits: {flows: 4096}\ninterfaces:");
    let output = failing_lbd(&topology.lb, running.config_path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("map {} pinned at", lb_common::MAP_FLOWS))
            && stderr.contains("but the config's limits ask for 4096"),
        "{stderr}"
    );
    assert!(
        running.pin_dir().join(lb_common::MAP_FLOWS).exists(),
        "pins untouched"
    );
    running.edit_config("limits: {flows: 4096}\n", "");
    running.restart(&topology.lb);
    assert!(
        running.log().contains("adopting pinned maps"),
        "{}",
        running.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

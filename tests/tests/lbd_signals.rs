//! Signals as an init system sends them: SIGHUP (`systemctl reload`) never stops lbd; it
//! reloads the config and says so in the log; a broken config is reported and changes
//! nothing. SIGTERM and SIGINT stop it cleanly, leaving the
//! program forwarding. Needs root.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use lb_tests::{
    DrTopology, VIP,
    http::{self, HttpServer},
    lbd::Lbd,
    netns,
    privilege::require_root,
};

const TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn sighup_validates_the_config_and_sigterm_and_sigint_stop_cleanly() {
    if !require_root("lbd_signals") {
        return;
    }
    let pid = std::process::id();
    let prefix = format!("lbt-sig-{pid}-");
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build(&prefix, &["real1"]);
    topology.attach_pass_program();
    let (_, real_ns, _) = &topology.reals[0];
    let _server = HttpServer::start(real_ns, "0.0.0.0:80".parse().unwrap(), "real1");
    let mut lbd = Lbd::start(
        &topology.lb,
        &format!("lbt-sig-{pid}"),
        "interfaces: [{name: eth0}]\nservices:\n  - {vip: 192.0.2.100, port: 80, protocol: tcp, reals: [{address: 192.0.2.11}]}\n",
    );
    let vip = SocketAddr::new(IpAddr::V4(VIP), 80);
    let get = || topology.client.run(|| http::get(vip, "/", TIMEOUT));

    // A valid config: applied (the same file: no change), and the daemon runs on.
    lbd.signal(libc::SIGHUP);
    assert!(lbd.wait_for_log("reload applied", TIMEOUT), "{}", lbd.log());
    assert!(lbd.log().contains("no change"), "{}", lbd.log());
    assert!(lbd.running(), "SIGHUP stopped lbd:\n{}", lbd.log());

    // A broken one: the error names file, line and key; nothing changes.
    lbd.edit_config(
        "services:",
        "services:\n  - {vip: 192.0.2.101, port: 80, protocol: tcp, helth_check: {}}",
    );
    lbd.signal(libc::SIGHUP);
    assert!(lbd.wait_for_log("reload refused", TIMEOUT), "{}", lbd.log());
    let log = lbd.log();
    let rejection = log
        .lines()
        .find(|line| line.contains("reload refused"))
        .unwrap();
    assert!(
        rejection.contains("lbd.yaml:") && rejection.contains("services[0].helth_check"),
        "{rejection}"
    );
    assert!(lbd.running(), "a bad config on SIGHUP stopped lbd:\n{log}");
    assert_eq!(
        lbd.listing().services.len(),
        1,
        "the running services are unchanged"
    );
    assert_eq!(
        get().expect("HTTP through the VIP after two SIGHUPs"),
        "real1\n"
    );
    lbd.edit_config(
        "  - {vip: 192.0.2.101, port: 80, protocol: tcp, helth_check: {}}\n",
        "",
    );

    // SIGTERM: a clean exit, and the program keeps forwarding.
    let status = lbd.stop();
    assert!(
        status.success(),
        "lbd exit on SIGTERM: {status}\n{}",
        lbd.log()
    );
    assert!(lbd.log().contains("SIGTERM: stopping"), "{}", lbd.log());
    assert_eq!(
        get().expect("HTTP through the VIP with lbd stopped"),
        "real1\n"
    );

    // SIGINT likewise; this time as systemd's Type=notify starts it, with a socket for
    // readiness messages.
    let notify_path = std::env::temp_dir().join(format!("lbt-sig-{pid}-notify.sock"));
    let _ = std::fs::remove_file(&notify_path);
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(TIMEOUT)).unwrap();
    let next_message = || {
        let mut buffer = [0u8; 256];
        let length = notify
            .recv(&mut buffer)
            .expect("a message to NOTIFY_SOCKET");
        String::from_utf8_lossy(&buffer[..length]).into_owned()
    };
    lbd.set_env("NOTIFY_SOCKET", notify_path.to_str().unwrap());
    lbd.restart(&topology.lb);
    assert_eq!(next_message(), "READY=1");
    lbd.signal(libc::SIGHUP);
    let reloading = next_message();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    assert_eq!(next_message(), "READY=1");
    let status = lbd.stop_with(libc::SIGINT);
    assert!(
        status.success(),
        "lbd exit on SIGINT: {status}\n{}",
        lbd.log()
    );
    assert!(lbd.log().contains("SIGINT: stopping"), "{}", lbd.log());
    assert_eq!(next_message(), "STOPPING=1");
    let _ = std::fs::remove_file(&notify_path);
    assert_eq!(get().expect("HTTP through the VIP after SIGINT"), "real1\n");
}

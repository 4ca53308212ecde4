//! Every ipvsadm verb of lbadm against a running `lbd`, with HTTP traffic through the VIP: a
//! balancer that starts with no service is built up with `-A`/`-a`, reweighted with `-e`,
//! thinned with `-d`, saved with `-S`, cleared with `-C` and restored with `-R`; bad lines
//! change nothing and exit as ipvsadm's do. Needs root.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use lb_tests::{
    DrTopology, VIP,
    http::{self, HttpClient},
    lbd::{Lbd, binary},
    netns,
    privilege::require_root,
};

const TIMEOUT: Duration = Duration::from_secs(5);
const SERVICE: &str = "192.0.2.100:80";

/// No service: lbadm adds them.
const CONFIG: &str = "
interfaces:
  - name: eth0
    xdp_mode: native
limits: {flows: 65536, services: 16, reals: 64}
";

fn vip() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(VIP), 80)
}

/// `lbadm ARGS` against `lbd`, with `stdin` fed to it; its output, whatever its status.
fn lbadm(lbd: &Lbd, args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(binary("lbadm"))
        .args(args)
        .arg("--socket")
        .arg(lbd.socket())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running lbadm");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("lbadm's output")
}

#[track_caller]
fn ok(lbd: &Lbd, args: &[&str]) -> String {
    let output = lbadm(lbd, args, "");
    assert!(
        output.status.success(),
        "lbadm {args:?}: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        lbd.log()
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `count` connections of two requests each; how many each real answered.
fn split(topology: &DrTopology, lbd: &Lbd, count: usize) -> HashMap<String, u64> {
    let results = http::connections(&topology.client, vip(), count, 2, TIMEOUT);
    http::connections_per_server(&results, 2, || lbd.log())
}

#[test]
fn every_ipvsadm_verb_changes_what_the_traffic_sees() {
    if !require_root("e2e_lbadm") {
        return;
    }
    let prefix = format!("lbt-adm-{}-", std::process::id());
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build(&prefix, &["real1", "real2", "real3"]);
    topology.attach_pass_program();
    let _servers = topology.serve_http();
    let lbd = Lbd::start(
        &topology.lb,
        &format!("lbt-adm-{}", std::process::id()),
        CONFIG,
    );

    // -A and -a: a service from nothing, and traffic flows to every real.
    ok(&lbd, &["-A", "-t", SERVICE, "-s", "wrr"]);
    for (real, weight) in [
        ("192.0.2.11", "1"),
        ("192.0.2.12", "1"),
        ("192.0.2.13", "2"),
    ] {
        ok(&lbd, &["-a", "-t", SERVICE, "-r", real, "-g", "-w", weight]);
    }
    let table = ok(&lbd, &["-Ln"]);
    assert!(table.contains("TCP  192.0.2.100:80 wrr\n"), "{table}");
    assert!(
        table.contains("  -> 192.0.2.13:80                Route   2      "),
        "{table}"
    );
    let first = split(&topology, &lbd, 40);
    assert_eq!(first.len(), 3, "every real takes flows: {first:?}");
    assert!(
        first["real3"] > first["real1"],
        "weight 2 over 1: {first:?}"
    );

    // -e: the split follows the new weights; weight 0 takes no new flow.
    ok(&lbd, &["-e", "-t", SERVICE, "-r", "192.0.2.11", "-w", "3"]);
    ok(
        &lbd,
        &[
            "--edit-server",
            "--tcp-service",
            SERVICE,
            "--real-server",
            "192.0.2.13:80",
            "--weight",
            "0",
        ],
    );
    let reweighted = split(&topology, &lbd, 40);
    assert_eq!(reweighted.get("real3"), None, "drained: {reweighted:?}");
    assert!(
        reweighted["real1"] > 2 * reweighted["real2"],
        "3 to 1: {reweighted:?}"
    );

    // -d: a deleted real's flows leave it; new ones never reach it.
    let mut kept = topology
        .client
        .run(|| HttpClient::connect(vip(), TIMEOUT))
        .unwrap();
    let kept_on = kept.get("/").unwrap().trim_end().to_owned();
    let kept_address = format!("192.0.2.1{}", &kept_on["real".len()..]);
    ok(&lbd, &["-d", "-t", SERVICE, "-r", &kept_address]);
    if let Ok(answer) = kept.get("/") {
        assert_ne!(
            answer.trim_end(),
            kept_on,
            "the flow stayed on a deleted real"
        );
    }
    let after_delete = split(&topology, &lbd, 20);
    assert_eq!(after_delete.get(&kept_on), None, "{after_delete:?}");
    let connections = ok(&lbd, &["-Lnc"]);
    assert!(
        !connections.contains(&format!("{kept_address}:80\n")),
        "{connections}"
    );
    ok(&lbd, &["-a", "-t", SERVICE, "-r", &kept_address, "-w", "1"]);

    // Refusals change nothing, with ipvsadm's status and words.
    let saved = ok(&lbd, &["-S", "-n"]);
    let refusals: [(&[&str], i32, &str); 4] = [
        (
            &["-A", "-t", SERVICE, "-s", "rr"],
            255,
            "Service already exists: TCP 192.0.2.100:80",
        ),
        (
            &["-d", "-t", SERVICE, "-r", "192.0.2.99"],
            255,
            "No such destination",
        ),
        (
            &["-a", "-t", "192.0.2.100:81", "-r", "192.0.2.11"],
            255,
            "No such service: TCP 192.0.2.100:81",
        ),
        (
            &["-E", "-t", SERVICE, "-s", "fastest"],
            255,
            "services[0].scheduler",
        ),
    ];
    for (args, status, words) in refusals {
        let output = lbadm(&lbd, args, "");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(status), "{args:?}: {stderr}");
        assert!(stderr.contains(words), "{args:?}: {stderr}");
    }
    let bad_restore = "-C\n-A -t 192.0.2.100:443 -s rr\n-a -t 192.0.2.100:443 -r 192.0.2.300 -g\n";
    let output = lbadm(&lbd, &["-R"], bad_restore);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("line 3: -r 192.0.2.300"));
    // lbd refuses the third change; lbadm names its line (comments and blanks count).
    let late_failure =
        "# rules\n\n-C\n-A -t 192.0.2.100:443 -s rr\n-a -t 192.0.2.100:444 -r 192.0.2.11\n";
    let output = lbadm(&lbd, &["-R"], late_failure);
    assert_eq!(output.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 5 (add a real to TCP 192.0.2.100:444): No such service")
            && stderr.contains("nothing changed"),
        "{stderr}"
    );
    assert_eq!(
        ok(&lbd, &["-S"]),
        saved,
        "refused changes changed something"
    );

    // -S, -C, -R: the same rules, and the traffic flows again.
    ok(&lbd, &["-C"]);
    assert!(!ok(&lbd, &["-Ln"]).contains("TCP "));
    let refused = topology
        .client
        .run(|| HttpClient::connect(vip(), Duration::from_millis(500)));
    assert!(refused.is_err(), "the VIP answered with no service");
    let output = lbadm(&lbd, &["-R"], &saved);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(ok(&lbd, &["-S"]), saved);
    let restored = split(&topology, &lbd, 20);
    assert_eq!(restored.values().sum::<u64>(), 20, "{restored:?}");

    // --rate: the estimator sees traffic sent over a few of its periods; top shows it.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        split(&topology, &lbd, 10);
    }
    let rate = lbd.listing().services[0].rate;
    assert!(
        rate.cps > 0 && rate.in_pps > 0 && rate.in_bps > 0,
        "{rate:?}"
    );
    let table = ok(&lbd, &["-Ln", "--rate"]);
    assert!(
        table.contains("CPS    InPPS   OutPPS    InBPS   OutBPS"),
        "{table}"
    );
    let top = ok(&lbd, &["top", "--count", "1"]);
    assert!(top.contains("TCP  192.0.2.100:80"), "{top}");

    // -Z zeroes; --set sets the timeouts -L --timeout lists.
    ok(&lbd, &["-Z", "-t", SERVICE]);
    let stats = ok(&lbd, &["-Ln", "--stats", "--exact"]);
    assert!(
        stats.contains("TCP  192.0.2.100:80                      0        0"),
        "{stats}"
    );
    ok(&lbd, &["--set", "600", "0", "60"]);
    assert_eq!(
        ok(&lbd, &["-L", "--timeout"]),
        "Timeout (tcp tcpfin udp): 600 120 60\n"
    );

    // status: attachment, map fill, every real.
    let status = ok(&lbd, &["status"]);
    assert!(
        status.contains("eth0") && status.contains("native"),
        "{status}"
    );
    assert!(
        status.contains("flows ") && status.contains("192.0.2.12:80"),
        "{status}"
    );
}

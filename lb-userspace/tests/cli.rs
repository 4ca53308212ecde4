//! The binaries' contract for bad input: one line on stderr naming what and where, non-zero
//! exit, nothing done. No root needed: these fail before anything privileged happens.

use std::process::{Command, Output};

fn lbd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lbd"))
        .args(args)
        .output()
        .expect("running lbd")
}

fn lbadm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lbadm"))
        .args(args)
        .output()
        .expect("running lbadm")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes `text` to a fresh file named `name` and returns its path.
fn config_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lb-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const GOOD: &str = "instance: t1
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    reals:
      - {address: 192.0.2.11, weight: 2}
      - {address: 192.0.2.12}
";

#[test]
fn check_accepts_a_good_config() {
    let path = config_file("good.yaml", GOOD);
    let output = lbd(&["--check", "--config", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("ok (instance t1, 1 services, 2 reals)"),
        "{stdout}"
    );
}

#[test]
fn check_accepts_every_forwarding_method() {
    let text = GOOD.replace(
        "    reals:",
        "    forward: tun\n    tunnel: gue\n    snat_pool: [192.0.2.3]\n    reals:",
    ) + "      - {address: 2001:db8::13}\n      - {address: 192.0.2.14, forward: nat, port: 8080}\n      - {address: 192.0.2.15, forward: fullnat, port: 8080}\n";
    let path = config_file("forwarding.yaml", &text);
    let output = lbd(&["--check", "--config", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("1 services, 5 reals"), "{stdout}");
}

#[test]
fn bad_configs_fail_with_one_line_naming_key_and_line() {
    let cases = [
        (
            "typo.yaml",
            GOOD.replace("    reals:", "    reels:"),
            ":7:5: services[0].reels: unknown key",
        ),
        (
            "address.yaml",
            GOOD.replace("192.0.2.12", "192.0.2.300"),
            ":9:19: services[0].reals[1].address",
        ),
        (
            "family.yaml",
            GOOD.replace("192.0.2.12", "2001:db8::12"),
            "services[0].reals[1].address",
        ),
        (
            "syntax.yaml",
            GOOD.replace("  - vip:", "  -vip: ["),
            "invalid YAML",
        ),
        (
            "scheduler.yaml",
            GOOD.replace("protocol: tcp", "protocol: tcp\n    scheduler: fastest"),
            "unknown scheduler \"fastest\"",
        ),
        (
            "tunnel-port.yaml",
            GOOD.replace(
                "{address: 192.0.2.12}",
                "{address: 192.0.2.12, forward: tun, port: 8080}",
            ),
            ":9:51: services[0].reals[1].port: dr and tun cannot change the port",
        ),
        (
            "gue-port.yaml",
            GOOD.replace("protocol: tcp", "protocol: tcp\n    gue_port: 5555"),
            ":7:5: services[0].gue_port: only means something with `tunnel: gue`",
        ),
    ];
    for (name, text, expected) in cases {
        let path = config_file(name, &text);
        // Without --check too: the daemon must refuse before touching anything.
        for check in [true, false] {
            let mut args = vec!["--config", path.to_str().unwrap()];
            if check {
                args.push("--check");
            }
            let output = lbd(&args);
            let message = stderr(&output);
            assert_eq!(output.status.code(), Some(1), "{name}: {message}");
            assert_eq!(
                message.lines().count(),
                1,
                "{name}: one line, got {message:?}"
            );
            assert!(
                message.starts_with(&format!("lbd: {}", path.display())),
                "{name}: {message}"
            );
            assert!(
                message.contains(expected),
                "{name}: expected {expected:?} in {message}"
            );
        }
    }
}

#[test]
fn a_missing_config_file_is_named() {
    let output = lbd(&["--config", "/nonexistent/lb.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("/nonexistent/lb.yaml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn lbd_decap_refuses_bad_input_in_one_line() {
    for (args, code, expected) in [
        (
            &["decap", "--interface", "nosuch0"][..],
            1,
            "lbd: no interface named \"nosuch0\"",
        ),
        (
            &["decap", "--interface", "nosuch0", "--vip", "127.0.0.1"][..],
            1,
            "lbd: --vip 127.0.0.1: a loopback address is never a tunnel's destination",
        ),
        (
            &["decap", "--interface", "eth0", "--vip", "192.0.2.300"][..],
            2,
            "invalid value '192.0.2.300' for '--vip <ADDR>'",
        ),
        (
            &["decap", "--interface", "eth0", "--xdp-mode", "fast"][..],
            2,
            "invalid value 'fast' for '--xdp-mode <MODE>'",
        ),
        (
            &["--config", "/x.yaml", "decap", "--interface", "eth0"][..],
            2,
            "the subcommand 'decap' cannot be used with '--config <FILE>'",
        ),
    ] {
        let output = lbd(args);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {message}");
        assert!(message.contains(expected), "{args:?}: {message}");
        if code == 1 {
            assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
        }
    }
}

/// ipvsadm's exit status 2 and its words for command lines that do not parse or check,
/// before any daemon is asked.
#[test]
fn lbadm_refuses_bad_command_lines_as_ipvsadm_does() {
    let cases: [(&[&str], &str); 5] = [
        (&["-A", "-L"], "lbadm: multiple commands specified"),
        (
            &["-A", "-t", "192.0.2.100:80", "-w", "2"],
            "lbadm: Illegal 'weight' option with the 'add-service' command",
        ),
        (
            &["-a", "-t", "192.0.2.100:80"],
            "lbadm: You need to supply the 'real-server' option for the 'add-server' command",
        ),
        (
            &["-L", "-n", "-t", "192.0.2.300:80"],
            "lbadm: -t 192.0.2.300:80: illegal virtual server address[:port] specified",
        ),
        (
            &["-a", "-t", "192.0.2.100:80", "-r", "192.0.2.11", "-w", "x"],
            "lbadm: -w x: illegal weight specified",
        ),
    ];
    for (args, expected) in cases {
        let mut args = args.to_vec();
        args.extend(["--socket", "/nonexistent.sock"]);
        let output = lbadm(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn lbadm_without_a_daemon_names_the_socket() {
    let output = lbadm(&["-L", "-n", "--socket", "/nonexistent/lbd.sock"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "ipvsadm's status without IPVS"
    );
    let message = stderr(&output);
    assert!(
        message.contains("cannot reach lbd at /nonexistent/lbd.sock"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[test]
fn lbadm_makes_completions_and_a_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let output = lbadm(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(
            script.contains("add-service") && script.contains("import-keepalived"),
            "{shell}"
        );
    }
    let output = lbadm(&["man"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let page = String::from_utf8_lossy(&output.stdout);
    assert!(
        page.contains(".TH lbadm 1") && page.contains(r"add\-service"),
        "{page}"
    );
}

/// `lbadm import-keepalived FILE`: the YAML on stdout passes `lbd --check`; every directive
/// not converted is on stderr with its file and line, and the status is 0.
#[test]
fn lbadm_imports_keepalived_conf_for_lbd_check() {
    let conf = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/lbadm/import_keepalived/testdata/keepalived.conf"
    );
    let output = lbadm(&["import-keepalived", conf]);
    assert!(output.status.success(), "{}", stderr(&output));
    let yaml = String::from_utf8(output.stdout.clone()).unwrap();
    let path = config_file("imported.yaml", &yaml);
    let check = lbd(&["--check", "--config", path.to_str().unwrap()]);
    assert!(check.status.success(), "{}\n{yaml}", stderr(&check));
    let listed = stderr(&output);
    assert!(
        listed.contains("keepalived.conf:19: authentication: not converted")
            && listed.contains("conf.d/10-dns.conf:9: MISC_CHECK: not converted"),
        "{listed}"
    );
    assert!(listed.contains("lbadm: 11 directives"), "{listed}");
    let missing = lbadm(&["import-keepalived", "/nonexistent/keepalived.conf"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("/nonexistent/keepalived.conf: cannot read"),
        "{}",
        stderr(&missing)
    );
}

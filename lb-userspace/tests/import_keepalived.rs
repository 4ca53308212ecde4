//! What `lbadm import-keepalived` prints is a config `lbd --check --config FILE` accepts:
//! the library converts keepalived.conf, the binary checks the result. No root needed.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use lb_userspace::lbadm::import_keepalived::{ImportOptions, import};

/// The unit tests' config: services of every method, checks, VRRP, includes.
fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/lbadm/import_keepalived/testdata")
        .join(name)
}

/// Writes `yaml` to a file of its own and runs `lbd --check --config` on it.
fn lbd_check(name: &str, yaml: &str) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("lb-import-keepalived-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lbd"))
        .args(["--check", "--config"])
        .arg(&path)
        .output()
        .expect("running lbd");
    std::fs::remove_file(&path).unwrap();
    output
}

#[test]
fn lbd_check_accepts_the_converted_testdata_config() {
    let converted = import(&testdata("keepalived.conf"), &ImportOptions::default())
        .unwrap_or_else(|error| panic!("{error}"));
    let output = lbd_check("testdata.yaml", &converted.yaml);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "lbd --check refused:\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        converted.yaml
    );
    assert!(
        stdout.contains("ok (instance lb1-example-com, 4 services, 8 reals, 2 VRRP routers)"),
        "{stdout}"
    );
    assert!(!converted.unconverted.is_empty());
}

#[test]
fn lbd_check_accepts_a_config_with_keepalived_defaults_and_given_interfaces() {
    let dir = std::env::temp_dir().join(format!("lb-import-defaults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keepalived.conf");
    std::fs::write(
        &path,
        "virtual_server 2001:db8::53 53 {
    sorry_server 2001:db8::99 53
    real_server 2001:db8::11 5353 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
",
    )
    .unwrap();
    let options = ImportOptions {
        interfaces: vec!["ens1".into()],
    };
    let converted = import(&path, &options).unwrap_or_else(|error| panic!("{error}"));
    std::fs::remove_dir_all(&dir).unwrap();
    let output = lbd_check("defaults.yaml", &converted.yaml);
    assert!(
        output.status.success(),
        "lbd --check refused:\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        converted.yaml
    );
}

#[test]
fn lbd_check_accepts_the_converted_vrrp_instances_and_sync() {
    let dir = std::env::temp_dir().join(format!("lb-import-vrrp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keepalived.conf");
    std::fs::write(
        &path,
        "global_defs {
    router_id lb1
    lvs_sync_daemon eth1 VI_WEB
}
vrrp_instance VI_WEB {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 0.05
    unicast_peer {
        10.0.0.3
    }
    virtual_ipaddress {
        192.0.2.10/24
    }
    track_interface {
        eth1 weight -20
        eth2 weight 10
        eth3
    }
    notify \"/usr/local/bin/notify.sh\"
    notify_master \"/usr/local/bin/notify.sh master\"
}
vrrp_instance VI_WEB6 {
    interface eth0
    virtual_router_id 51
    advert_int 0.1
    nopreempt
    virtual_ipaddress {
        2001:db8::10
    }
    notify_fault /usr/local/bin/fault
}
virtual_server 192.0.2.10 80 {
    protocol TCP
    lb_kind DR
    real_server 10.0.0.11 80 {
    }
}
",
    )
    .unwrap();
    let converted =
        import(&path, &ImportOptions::default()).unwrap_or_else(|error| panic!("{error}"));
    std::fs::remove_dir_all(&dir).unwrap();
    for expected in [
        "\nvrrp:\n  # keepalived.conf:5: vrrp_instance VI_WEB\n",
        "    priority: 160\n",
        "    advert_interval: 50ms\n",
        "    unicast_peers: [10.0.0.3]\n",
        "    track_interfaces: [{name: eth1, weight: -20}, {name: eth2, weight: -10}, eth3]\n",
        "      on_master: \"/usr/local/bin/notify.sh master\"\n      on_backup: \
         /usr/local/bin/notify.sh\n",
        "    advert_interval: 100ms\n    preempt: false\n",
        "\nsync:\n  peer: 10.0.0.3\n",
    ] {
        assert!(
            converted.yaml.contains(expected),
            "{expected:?} missing:\n{}",
            converted.yaml
        );
    }
    let output = lbd_check("vrrp.yaml", &converted.yaml);
    assert!(
        output.status.success(),
        "lbd --check refused:\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        converted.yaml
    );
    // notify_master overrides notify on MASTER; keepalived ran both.
    let listed: Vec<String> = converted
        .unconverted
        .iter()
        .map(|entry| format!("{}:{}", entry.line, entry.directive))
        .collect();
    assert_eq!(listed, ["22:notify"], "{:#?}", converted.unconverted);
}

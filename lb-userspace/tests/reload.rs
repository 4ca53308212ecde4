//! Live reconfiguration with the in-memory data plane: reloads of the config file and edits
//! over the admin socket, driven in-process (no root, no network).

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    sync::Arc,
};

use lb_userspace::{
    admin::{self, Edit, Reply, Request, ServiceRef},
    config::{self, Protocol},
    daemon::{self, Control, ControlHandle, Daemon, Host},
    dataplane::{FakeDataplane, FakeReader},
    health::HealthBoard,
    neighbour::{InterfaceInfo, Routes},
    reconcile::Desired,
};
use serde_json::json;

const CONFIG: &str = "
instance: reload-test
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    scheduler: wrr
    reals:
      - {address: 192.0.2.11, weight: 1}
      - {address: 192.0.2.12, weight: 2}
      - {address: 192.0.2.13, weight: 1}
  - vip: 192.0.2.100
    port: 53
    protocol: udp
    reals: [{address: 192.0.2.21}]
limits: {flows: 1000, services: 16, reals: 64}
";

fn eth0() -> InterfaceInfo {
    InterfaceInfo {
        name: "eth0".into(),
        index: 3,
        mac: [2, 0, 0, 0, 0, 2],
        prefixes: vec![(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 24)],
        mtu: 1500,
        vlan: None,
        egress: 3,
    }
}

/// Every address of 192.0.2.0/24 answers ARP, with a MAC ending in its last byte.
fn macs() -> Vec<(u32, IpAddr, [u8; 6])> {
    (1..=254u8)
        .map(|host| {
            (
                3,
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, host)),
                [2, 0, 0, 0, 1, host],
            )
        })
        .collect()
}

struct Running {
    dir: PathBuf,
    config_path: PathBuf,
    socket: PathBuf,
    control: ControlHandle,
    desired: Arc<arc_swap::ArcSwap<Desired>>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("lb-reload-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = dir.join("lbd.yaml");
        std::fs::write(&config_path, CONFIG).unwrap();
        let (config, document) = config::load_with_document(&config_path).unwrap();
        let mut desired = Desired::new(&config, vec![eth0()], &Routes::new()).unwrap();
        let all: std::collections::HashMap<IpAddr, [u8; 6]> = macs()
            .into_iter()
            .map(|(_, addr, mac)| (addr, mac))
            .collect();
        desired.set_neighbours(3, &all);
        let mut daemon = Daemon::new(
            &config.instance,
            config.limits.flows,
            desired,
            Box::new(FakeDataplane::default()),
            Arc::new(FakeReader::default()),
        )
        .unwrap();
        let desired = daemon.context().desired.clone();
        let control = daemon.start_control(Control::new(
            Some(config_path.clone()),
            config,
            document,
            Host::Fixed {
                interfaces: vec![eth0()],
                routes: Routes::new(),
                macs: macs(),
            },
            daemon.inputs(),
            Arc::new(HealthBoard::default()),
            &daemon.desired(),
        ));
        let socket = dir.join("lbd.sock");
        let listener = admin::bind_admin_socket(&socket, None).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(daemon::run(daemon, listener, async {
            let _ = stopped.await;
        }));
        Running {
            dir,
            config_path,
            socket,
            control,
            desired,
            stop,
            server,
        }
    }

    /// (service, real address, real id, weight) of every real, as published.
    fn reals(&self) -> Vec<(String, IpAddr, u32, u32)> {
        let desired = self.desired.load();
        desired
            .services
            .iter()
            .flat_map(|service| {
                service.reals.iter().map(move |real| {
                    (
                        service.config.name(),
                        real.config.address,
                        real.id,
                        real.config.weight,
                    )
                })
            })
            .collect()
    }

    fn id_of(&self, address: &str) -> Option<u32> {
        let address: IpAddr = address.parse().unwrap();
        self.reals()
            .into_iter()
            .find(|(_, real, _, _)| *real == address)
            .map(|(_, _, id, _)| id)
    }

    /// A change request's outcome: what changed, or the daemon's refusal.
    async fn ask(&self, request: Request) -> Result<String, String> {
        let socket = self.socket.clone();
        let reply = tokio::task::spawn_blocking(move || admin::request(&socket, &request))
            .await
            .unwrap();
        match reply {
            Ok(Reply::Done { message }) => Ok(message),
            Ok(other) => panic!("{other:?}"),
            Err(admin::ClientError::Daemon(message)) => Err(message),
            Err(error) => panic!("{error}"),
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn http() -> ServiceRef {
    ServiceRef {
        protocol: Protocol::Tcp,
        vip: "192.0.2.100".parse().unwrap(),
        port: 80,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_ids_of_reals_that_stay_and_applies_everything_else() {
    let running = Running::start("apply").await;
    let kept = (running.id_of("192.0.2.11"), running.id_of("192.0.2.12"));
    let removed = running.id_of("192.0.2.13").unwrap();

    let changed = CONFIG
        .replace("scheduler: wrr", "scheduler: wlc")
        .replace(
            "{address: 192.0.2.11, weight: 1}",
            "{address: 192.0.2.11, weight: 5}",
        )
        .replace(
            "      - {address: 192.0.2.13, weight: 1}\n",
            "      - {address: 192.0.2.14}\n",
        );
    write(&running.config_path, &changed);
    let summary = running.control.reload().await.unwrap();
    assert!(summary.contains("changed TCP 192.0.2.100:80"), "{summary}");
    assert!(
        summary.contains("weight of 192.0.2.11:80 in TCP 192.0.2.100:80: 1 → 5"),
        "{summary}"
    );
    assert!(summary.contains("added real 192.0.2.14:80"), "{summary}");
    assert!(summary.contains("removed real 192.0.2.13:80"), "{summary}");

    assert_eq!(
        (running.id_of("192.0.2.11"), running.id_of("192.0.2.12")),
        kept
    );
    assert_eq!(running.id_of("192.0.2.13"), None);
    let added = running.id_of("192.0.2.14").unwrap();
    assert_ne!(
        added, removed,
        "a new real never takes a removed real's id (its old flows)"
    );
    let desired = running.desired.load();
    let service = &desired.services[0];
    assert_eq!(service.config.scheduler, config::Scheduler::Wlc);
    assert!(
        service.reals.iter().all(|real| real.schedulable()),
        "the new real's MAC was read before the switch"
    );
    drop(desired);

    // Nothing to change: the same file again.
    assert_eq!(running.control.reload().await.unwrap(), "no change");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_is_refused_whole_and_changes_nothing() {
    let running = Running::start("refuse").await;
    let before = running.reals();
    let cases = [
        (
            CONFIG.replace("scheduler: wrr", "scheduler: wrr\n    shceduler: rr"),
            "lbd.yaml:9:5: services[0].shceduler: unknown key",
        ),
        (
            CONFIG.replace(
                "{address: 192.0.2.12, weight: 2}",
                "{address: 192.0.2.12, weight: -2}",
            ),
            "lbd.yaml:11:39: services[0].reals[1].weight: weight -2 is out of range",
        ),
        (
            CONFIG.replace("flows: 1000", "flows: 2000"),
            "limits (map sizes) cannot change while lbd runs",
        ),
        (
            format!(
                "{CONFIG}bgp:\n  local_as: 64512\n  router_id: 192.0.2.2\n  neighbors: [{{address: 192.0.2.1, as: 64500}}]\n"
            ),
            "bgp cannot change while lbd runs",
        ),
        (
            format!(
                "{CONFIG}vrrp:\n  - {{name: VI_1, interface: eth0, vrid: 51, virtual_addresses: [192.0.2.100]}}\n"
            ),
            "the vrrp routers (none → VI_1) cannot change while lbd runs",
        ),
        (
            // A real on no interface's subnet: placement fails after validation passed.
            CONFIG.replace("192.0.2.21", "198.51.100.21"),
            "real 198.51.100.21 of UDP 192.0.2.100:53 is not on a subnet",
        ),
    ];
    for (text, expected) in cases {
        write(&running.config_path, &text);
        let error = running.control.reload().await.unwrap_err();
        assert!(error.contains(expected), "{error}\nexpected: {expected}");
        assert!(
            error.starts_with("reload refused, nothing changed") || !error.contains("lbd.yaml")
        );
        assert_eq!(running.reals(), before);
    }
    // The socket's reload says the same.
    let error = running.ask(Request::Reload).await.unwrap_err();
    assert!(error.contains("198.51.100.21"), "{error}");
    // Draining a node that announces nothing is refused, saying why.
    let error = running.ask(Request::DrainNode).await.unwrap_err();
    assert!(error.contains("its config has no `bgp` key"), "{error}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_edits_apply_at_once_and_a_reload_replaces_them() {
    let running = Running::start("edits").await;
    let object = |value: serde_json::Value| value.as_object().unwrap().clone();
    let change = |edit| Request::Change(edit);

    let reply = running
        .ask(change(Edit::AddReal {
            service: http(),
            real: object(json!({"address": "192.0.2.15", "weight": 4})),
        }))
        .await;
    assert!(reply.unwrap().contains("added real 192.0.2.15:80"));
    assert!(running.id_of("192.0.2.15").is_some());

    let reply = running
        .ask(change(Edit::EditReal {
            service: http(),
            address: "192.0.2.12".parse().unwrap(),
            port: 80,
            set: object(json!({"weight": 0})),
        }))
        .await;
    reply.unwrap();
    assert!(running.reals().contains(&(
        "TCP 192.0.2.100:80".into(),
        "192.0.2.12".parse().unwrap(),
        running.id_of("192.0.2.12").unwrap(),
        0
    )));

    let reply = running
        .ask(change(Edit::AddService {
            service: object(json!({
                "vip": "192.0.2.101", "port": 443, "protocol": "tcp", "scheduler": "mh",
                "reals": [{"address": "192.0.2.31"}]
            })),
        }))
        .await;
    reply.unwrap();

    // Refusals: each names what is wrong, and nothing changes.
    let before = running.reals();
    let refusals = [
        (
            Edit::AddService {
                service: object(json!({"vip": "192.0.2.101", "port": 443, "protocol": "tcp"})),
            },
            "Service already exists: TCP 192.0.2.101:443",
        ),
        (
            Edit::AddReal {
                service: http(),
                real: object(json!({"address": "192.0.2.15"})),
            },
            "already has real 192.0.2.15:80",
        ),
        (
            Edit::DeleteReal {
                service: http(),
                address: "192.0.2.99".parse().unwrap(),
                port: 80,
            },
            "TCP 192.0.2.100:80 has no real 192.0.2.99:80",
        ),
        (
            Edit::DeleteService {
                service: ServiceRef {
                    port: 8080,
                    ..http()
                },
            },
            "No such service: TCP 192.0.2.100:8080",
        ),
        (
            Edit::EditService {
                service: http(),
                set: object(json!({"scheduler": "fastest"})),
            },
            "services[0].scheduler",
        ),
        (
            Edit::AddReal {
                service: http(),
                real: object(json!({"address": "2001:db8::5"})),
            },
            "services[0].reals[4].address",
        ),
    ];
    for (edit, expected) in refusals {
        let error = running.ask(change(edit)).await.unwrap_err();
        assert!(error.contains(expected), "{error}\nexpected: {expected}");
        assert_eq!(running.reals(), before);
    }

    let zeroed = running
        .ask(Request::ZeroCounters {
            service: Some(http()),
        })
        .await
        .unwrap();
    assert!(zeroed.contains("TCP 192.0.2.100:80"), "{zeroed}");

    // The file wins at the next reload: the runtime changes are gone.
    let reply = running.ask(Request::Reload).await;
    assert!(reply.unwrap().contains("removed TCP 192.0.2.101:443"));
    assert_eq!(running.id_of("192.0.2.15"), None);
    assert_eq!(running.id_of("192.0.2.31"), None);

    let reply = running.ask(change(Edit::Clear)).await;
    reply.unwrap();
    assert!(running.reals().is_empty());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_deleted_a_moment_ago_does_not_hand_its_id_to_the_next_one() {
    let running = Running::start("quarantine").await;
    let deleted = running.id_of("192.0.2.12").unwrap();
    running
        .control
        .edit(vec![Edit::DeleteReal {
            service: http(),
            address: "192.0.2.12".parse().unwrap(),
            port: 80,
        }])
        .await
        .unwrap();
    // The flow sweep has not run yet: the deleted real's flows may still be in the table,
    // and must not land on the next real.
    running
        .control
        .edit(vec![Edit::AddReal {
            service: http(),
            real: json!({"address": "192.0.2.16"})
                .as_object()
                .unwrap()
                .clone(),
        }])
        .await
        .unwrap();
    let added = running.id_of("192.0.2.16").unwrap();
    assert_ne!(added, deleted);
    running.stop().await;
}

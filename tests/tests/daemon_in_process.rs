//! The daemon's library driven in-process, without spawning `lbd`: start it in the balancer's
//! namespace, reload through its control handle, stop it (forwarding goes on), start it
//! again over its pinned maps. A long-lived connection keeps its real throughout. Needs root.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::mpsc as std_mpsc,
    time::Duration,
};

use lb_tests::{
    DrTopology, VIP,
    http::{self, HttpClient},
    netns,
    privilege::require_root,
};
use lb_userspace::{config, daemon, dataplane::loader};
use tokio::sync::{mpsc, oneshot};

const TIMEOUT: Duration = Duration::from_secs(5);

enum Command {
    Reload(oneshot::Sender<Result<String, String>>),
    Stop,
}

/// A daemon running on a thread of the balancer's namespace, on a single-threaded runtime
/// (so every socket it opens, health checks included, is in that namespace).
struct InProcess {
    commands: mpsc::Sender<Command>,
    thread: std::thread::JoinHandle<()>,
}

impl InProcess {
    fn start(topology: &DrTopology, config_path: PathBuf) -> InProcess {
        let (commands, mut received) = mpsc::channel(4);
        let (ready, started) = std_mpsc::channel();
        let thread = topology.lb.spawn_thread(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let started = match daemon::start(config_path).await {
                    Ok(started) => started,
                    Err(error) => {
                        let _ = ready.send(Err(error.to_string()));
                        return;
                    }
                };
                let control = started.control();
                let _ = ready.send(Ok(()));
                let (stop, stopped) = oneshot::channel::<()>();
                tokio::spawn(async move {
                    let mut stop = Some(stop);
                    while let Some(command) = received.recv().await {
                        match command {
                            Command::Reload(done) => {
                                let _ = done.send(control.reload().await);
                            }
                            Command::Stop => {
                                if let Some(stop) = stop.take() {
                                    let _ = stop.send(());
                                }
                            }
                        }
                    }
                });
                started
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        started
            .recv_timeout(Duration::from_secs(30))
            .expect("the daemon started or failed")
            .unwrap_or_else(|error| panic!("start: {error}"));
        InProcess { commands, thread }
    }

    fn reload(&self) -> Result<String, String> {
        let (done, answer) = oneshot::channel();
        self.commands
            .blocking_send(Command::Reload(done))
            .expect("the daemon runs");
        answer.blocking_recv().expect("an answer")
    }

    fn stop(self) {
        self.commands
            .blocking_send(Command::Stop)
            .expect("the daemon runs");
        self.thread.join().expect("the daemon's thread");
    }
}

/// Detaches and unpins the instance however the test ends.
struct Unpin(PathBuf);

impl Drop for Unpin {
    fn drop(&mut self) {
        let _ = loader::unpin_all(&self.0);
    }
}

#[test]
fn start_reload_stop_and_restart_in_process_keep_a_connection() {
    if !require_root("daemon_in_process") {
        return;
    }
    let pid = std::process::id();
    let prefix = format!("lbt-inp-{pid}-");
    netns::remove_leftovers(&prefix);
    let topology = DrTopology::build(&prefix, &["real1", "real2", "real3"]);
    topology.attach_pass_program();
    let _servers = topology.serve_http();
    let dir = std::env::temp_dir().join(format!("lbt-inp-{pid}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("lbd.yaml");
    let text = format!(
        "instance: lbt-inp-{pid}
admin: {{socket: {}}}
pid_file: {}
interfaces: [{{name: eth0, xdp_mode: native}}]
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    reals:
      - {{address: 192.0.2.11, weight: 1}}
      - {{address: 192.0.2.12, weight: 1}}
      - {{address: 192.0.2.13, weight: 1}}
",
        dir.join("lbd.sock").display(),
        dir.join("lbd.pid").display()
    );
    std::fs::write(&config_path, &text).unwrap();
    let pins = config::load(&config_path).unwrap().pin_dir;
    let _unpin = Unpin(pins.clone());
    let vip = SocketAddr::new(IpAddr::V4(VIP), 80);
    let get = || topology.client.run(|| http::get(vip, "/", TIMEOUT));

    let running = InProcess::start(&topology, config_path.clone());
    let mut kept = topology
        .client
        .run(|| HttpClient::connect(vip, TIMEOUT))
        .expect("a connection through the in-process daemon");
    let real = kept.get("/").expect("an answer").trim_end().to_owned();

    // Drain the two other reals by a reload: new connections all go to the kept one's real.
    let drained =
        ["real1", "real2", "real3"]
            .iter()
            .enumerate()
            .fold(text.clone(), |text, (index, name)| {
                if *name == real {
                    text
                } else {
                    text.replace(
                        &format!("{{address: 192.0.2.1{}, weight: 1}}", index + 1),
                        &format!("{{address: 192.0.2.1{}, weight: 0}}", index + 1),
                    )
                }
            });
    std::fs::write(&config_path, &drained).unwrap();
    let summary = running.reload().expect("the reload applies");
    assert!(summary.contains("→ 0"), "{summary}");
    for index in 0..10 {
        let body = get().unwrap_or_else(|e| panic!("request {index}: {e}"));
        assert_eq!(
            body.trim_end(),
            real,
            "request {index} went to a drained real"
        );
    }
    assert_eq!(kept.get("/").unwrap().trim_end(), real);

    // Stopped: forwarding goes on from the pinned maps.
    running.stop();
    assert_eq!(
        get()
            .expect("forwarding with the daemon stopped")
            .trim_end(),
        real
    );
    assert_eq!(kept.get("/").unwrap().trim_end(), real);

    // Started again over its pins: the connection stays on its real.
    let running = InProcess::start(&topology, config_path.clone());
    assert_eq!(kept.get("/").unwrap().trim_end(), real);
    assert_eq!(get().expect("after the restart").trim_end(), real);
    running.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

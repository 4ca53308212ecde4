//! Which VIPs are announced, the BIRD configuration written for them, and the speaker against
//! a fake BIRD control socket.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use super::{
    Speaker,
    announce::{VipVerdict, Withheld, verdicts},
    bird_config::{DRAINED_MARK, render},
};
use crate::{
    config::{Config, parse},
    neighbour::{InterfaceInfo, Routes},
    reconcile::Desired,
};

const CONFIG: &str = "\
instance: lb1
interfaces: [{name: eth0}]
services:
  - {vip: 192.0.2.10, port: 80, protocol: tcp, scheduler: mh, reals: [{address: 198.51.100.21}, {address: 198.51.100.22}]}
  - {vip: 192.0.2.10, port: 443, protocol: tcp, scheduler: mh, reals: [{address: 198.51.100.21}]}
  - {vip: 192.0.2.20, port: 53, protocol: udp, reals: [{address: 198.51.100.23}]}
  - {vip: '2001:db8::10', port: 80, protocol: tcp, reals: [{address: '2001:db8:1::21'}]}
bgp:
  local_as: 64512
  router_id: 198.51.100.11
  bird_config: /run/lb/lb1.bird.conf
  neighbors:
    - {address: 198.51.100.1, as: 64500, hold_time: 3s, bfd: true}
    - {address: '2001:db8::1', as: 64512}
  vips:
    - {address: 192.0.2.10, med: 10, communities: ['64500:100', '64500:1:2']}
";

fn config(text: &str) -> Config {
    parse(text, "lb1.yaml").unwrap_or_else(|error| panic!("config refused: {error}"))
}

/// The desired state of `config` with every real's neighbour resolved.
fn desired(config: &Config) -> Desired {
    let eth0 = InterfaceInfo {
        name: "eth0".into(),
        index: 2,
        mac: [2, 0, 0, 0, 0, 2],
        prefixes: vec![
            (IpAddr::V4(Ipv4Addr::new(198, 51, 100, 11)), 0),
            (IpAddr::V6("2001:db8::11".parse().unwrap()), 0),
        ],
        mtu: 1500,
        vlan: None,
        egress: 2,
    };
    let mut desired = Desired::new(config, vec![eth0], &Routes::new()).expect("placed");
    let all: HashMap<IpAddr, [u8; 6]> = desired
        .next_hops()
        .into_iter()
        .map(|(_, address)| (address, [2, 0, 0, 0, 0, 3]))
        .collect();
    desired.set_neighbours(2, &all);
    desired
}

fn verdict(vip: &str, withheld: Option<Withheld>) -> VipVerdict {
    VipVerdict {
        vip: vip.parse().unwrap(),
        withheld,
    }
}

#[test]
fn a_vip_is_announced_while_one_of_its_services_has_a_healthy_real() {
    let config = config(CONFIG);
    let mut desired = desired(&config);
    assert_eq!(
        verdicts(&desired, false, false),
        vec![
            verdict("192.0.2.10", None),
            verdict("192.0.2.20", None),
            verdict("2001:db8::10", None),
        ]
    );

    // Port 80's reals both down: port 443's real still serves the VIP.
    for real in &mut desired.services[0].reals {
        real.healthy = false;
    }
    assert!(verdicts(&desired, false, false)[0].announced());
    // Then 443's too: withdrawn. Weight 0 (drained) counts as no real for new flows.
    desired.services[1].reals[0].healthy = false;
    desired.services[2].reals[0].config.weight = 0;
    assert_eq!(
        verdicts(&desired, false, false)[..2],
        [
            verdict("192.0.2.10", Some(Withheld::NoHealthyReal)),
            verdict("192.0.2.20", Some(Withheld::NoHealthyReal)),
        ]
    );

    // Drained or stopping: everything goes, whatever the reals.
    let fresh = self::desired(&config);
    assert!(
        verdicts(&fresh, true, false)
            .iter()
            .all(|verdict| verdict.withheld == Some(Withheld::Drained))
    );
    assert!(
        verdicts(&fresh, false, true)
            .iter()
            .all(|verdict| verdict.withheld == Some(Withheld::Stopping))
    );

    // A VIP that VRRP has on standby here is not forwarded, so not announced.
    let mut standby = self::desired(&config);
    standby.standby.insert("192.0.2.20".parse().unwrap());
    assert_eq!(
        verdicts(&standby, false, false)[1],
        verdict("192.0.2.20", Some(Withheld::VrrpStandby))
    );
}

/// The file as BIRD reads it: sessions per neighbour with their family's table, attributes on
/// the routes, a withheld VIP absent.
#[test]
fn the_bird_configuration_holds_a_route_per_announced_vip() {
    let config = config(CONFIG);
    let bgp = config.bgp.unwrap();
    let verdicts = [
        verdict("192.0.2.10", None),
        verdict("192.0.2.20", Some(Withheld::NoHealthyReal)),
        verdict("2001:db8::10", None),
    ];
    let expected = "\
# Written by lbd (instance lb1) from its `bgp` key, again on every change: do not edit.
# BIRD reads it through `include \"/run/lb/lb1.bird.conf\";` in bird.conf.

router id 198.51.100.11;

ipv4 table lbd_lb1_vips4;
ipv6 table lbd_lb1_vips6;

protocol static lbd_lb1_routes4 {
\tipv4 { table lbd_lb1_vips4; };
\troute 192.0.2.10/32 blackhole {
\t\tbgp_med = 10;
\t\tbgp_community.add((64500, 100));
\t\tbgp_large_community.add((64500, 1, 2));
\t};
}

protocol static lbd_lb1_routes6 {
\tipv6 { table lbd_lb1_vips6; };
\troute 2001:db8::10/128 blackhole;
}

protocol bfd lbd_lb1_bfd {
\tinterface \"*\" {
\t\tmin rx interval 100 ms;
\t\tmin tx interval 100 ms;
\t\tmultiplier 3;
\t};
}

protocol bgp lbd_lb1_peer1 {
\tdescription \"lbd lb1 to 198.51.100.1\";
\tlocal as 64512;
\tneighbor 198.51.100.1 as 64500;
\tdirect;
\thold time 3;
\tbfd on;
\tipv4 {
\t\ttable lbd_lb1_vips4;
\t\timport none;
\t\texport filter {
\t\t\tif defined(bgp_med) then bgp_med = bgp_med;
\t\t\taccept;
\t\t};
\t\tnext hop self;
\t};
}

protocol bgp lbd_lb1_peer2 {
\tdescription \"lbd lb1 to 2001:db8::1\";
\tlocal as 64512;
\tneighbor 2001:db8::1 as 64512;
\tdirect;
\tipv6 {
\t\ttable lbd_lb1_vips6;
\t\timport none;
\t\texport filter {
\t\t\tif defined(bgp_med) then bgp_med = bgp_med;
\t\t\taccept;
\t\t};
\t\tnext hop self;
\t};
}

";
    let text = render(&bgp, "lb1", &verdicts, false);
    assert_eq!(text, expected, "rendered:\n{text}");
    assert!(!text.contains(DRAINED_MARK));
    let drained = render(&bgp, "lb1", &[], true);
    assert!(drained.lines().any(|line| line == DRAINED_MARK));
    assert!(!drained.contains("route "));
    bird_parses(&[&text]);
    bird_parses(&[&drained]);

    // An internal session with BFD (BIRD takes internal sessions for multihop unless told
    // `direct`, and refuses BFD on multihop without a local address).
    let mut internal = bgp.clone();
    internal.neighbors[0].remote_as = internal.local_as;
    bird_parses(&[&render(&internal, "lb1", &verdicts, false)]);
    // Two instances of lbd sharing one BIRD: no name of one is the other's.
    let other = render(&bgp, "lb-2", &verdicts, false);
    assert!(other.contains("protocol bgp lbd_lb_2_peer1 {"), "{other}");
    bird_parses(&[&text, &other]);
}

/// BIRD itself reads the text (`bird -p`: parse and exit), when it is installed (`cargo xtask
/// setup` installs it; the scale-out test runs it for real).
fn bird_parses(texts: &[&str]) {
    let bird = std::path::Path::new("/usr/sbin/bird");
    if !bird.exists() {
        eprintln!("BIRD is not installed: the text is not checked by BIRD itself");
        return;
    }
    // As the README's bird.conf has it: the operator's own device protocol, then lbd's files.
    let dir = std::env::temp_dir().join(format!(
        "lbd-bird-parse-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut main = String::from("protocol device {\n}\n");
    for (index, text) in texts.iter().enumerate() {
        let file = dir.join(format!("lbd{index}.conf"));
        std::fs::write(&file, text).unwrap();
        main.push_str(&format!("include \"{}\";\n", file.display()));
    }
    let main_file = dir.join("bird.conf");
    std::fs::write(&main_file, &main).unwrap();
    let output = std::process::Command::new(bird)
        .arg("-p")
        .arg("-c")
        .arg(&main_file)
        .output()
        .expect("running bird -p");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "BIRD refuses the configuration: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        texts.join("\n")
    );
}

/// A stand-in for BIRD's control socket: answers `configure` (recording the file lbd wrote,
/// as BIRD would read it) and `show protocols`, or refuses while told to; `included` false
/// stands for a bird.conf without lbd's file (BIRD then lists none of lbd's protocols).
struct FakeBird {
    configured: Arc<Mutex<Vec<String>>>,
    refuse: Arc<AtomicBool>,
    included: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeBird {
    fn listen(socket: &Path, file: PathBuf) -> FakeBird {
        let listener = tokio::net::UnixListener::bind(socket).expect("binding the fake BIRD");
        let configured = Arc::new(Mutex::new(Vec::new()));
        let refuse = Arc::new(AtomicBool::new(false));
        let included = Arc::new(AtomicBool::new(true));
        let (seen, refusing, including) = (configured.clone(), refuse.clone(), included.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (reader, mut writer) = stream.into_split();
                let mut lines = BufReader::new(reader).lines();
                writer.write_all(b"0001 BIRD fake ready.\n").await.unwrap();
                let Ok(Some(command)) = lines.next_line().await else {
                    continue;
                };
                let reply = match command.as_str() {
                    "configure" if refusing.load(Ordering::SeqCst) => {
                        "0002-Reading configuration from bird.conf\n8002 lbd.conf:3:1 syntax error\n".to_owned()
                    }
                    "configure" => {
                        seen.lock().unwrap().push(std::fs::read_to_string(&file).unwrap());
                        "0002-Reading configuration from bird.conf\n0003 Reconfigured\n".to_owned()
                    }
                    "show protocols" if !including.load(Ordering::SeqCst) => {
                        "2002-Name       Proto      Table      State  Since         Info\n\
                         1002-device1    Device     ---        up     06:41:08.456\n\
                         0000 \n"
                            .to_owned()
                    }
                    "show protocols" => "2002-Name       Proto      Table      State  Since         Info\n\
                         1002-device1    Device     ---        up     06:41:08.456\n\
                         1002-lbd_lb1_routes4 Static lbd_lb1_vips4 up 06:41:08.456\n\
                         1002-lbd_lb1_peer1  BGP        ---        up     06:41:08.456  Established\n\
                         1002-lbd_lb1_peer2  BGP        ---        start  06:41:08.456  Active        Socket: Connection refused\n\
                         0000 \n"
                        .to_owned(),
                    _ => "9001 syntax error\n".to_owned(),
                };
                let _ = writer.write_all(reply.as_bytes()).await;
            }
        });
        FakeBird {
            configured,
            refuse,
            included,
            task,
        }
    }

    fn last(&self) -> Option<String> {
        self.configured.lock().unwrap().last().cloned()
    }
}

impl Drop for FakeBird {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 10 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The speaker against a fake BIRD: it retries while BIRD is away, has BIRD take each change
/// (health, drain), reports a refusal, and withdraws everything when stopped.
#[tokio::test]
async fn the_speaker_keeps_bird_in_step_with_health_and_drain() {
    let dir = std::env::temp_dir().join(format!("lbd-bgp-speaker-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("bird.ctl");
    let file = dir.join("lbd.bird.conf");
    let text = CONFIG
        .replace("/run/lb/lb1.bird.conf", &file.display().to_string())
        .replace(
            "  local_as:",
            &format!("  bird_socket: {}\n  local_as:", socket.display()),
        );
    let config = config(&text);
    let desired = Arc::new(ArcSwap::from_pointee(desired(&config)));
    let (speaker, board) = Speaker::start(config.bgp.clone().unwrap(), "lb1", desired.clone());

    // No BIRD yet: said so, and the file is there for BIRD to read when it starts.
    wait_for("an unreachable BIRD reported", || {
        board
            .snapshot()
            .bird_error
            .is_some_and(|error| error.contains("cannot reach BIRD"))
    })
    .await;
    assert!(!board.snapshot().bird_up_to_date);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("route 192.0.2.10/32 blackhole")
    );

    let bird = FakeBird::listen(&socket, file.clone());
    wait_for("BIRD configured", || board.snapshot().bird_up_to_date).await;
    let taken = bird.last().expect("a configure");
    assert!(taken.contains("route 192.0.2.10/32 blackhole"), "{taken}");
    assert!(
        taken.contains("route 2001:db8::10/128 blackhole"),
        "{taken}"
    );
    wait_for("sessions read", || {
        board
            .snapshot()
            .neighbors
            .first()
            .is_some_and(|n| n.state == "Established")
    })
    .await;
    let status = board.snapshot();
    assert_eq!(status.neighbors[1].state, "Active");
    assert_eq!(status.neighbors[1].info, "Socket: Connection refused");
    assert!(status.vips.iter().all(|vip| vip.announced), "{status:?}");

    // Drain: answered once BIRD took a file with no route and the mark.
    let message = board.set_drained(true).await.expect("drained");
    assert_eq!(message, "node drained: 0 of 3 VIPs announced through BIRD");
    let taken = bird.last().unwrap();
    assert!(!taken.contains("route "), "{taken}");
    assert!(taken.lines().any(|line| line == DRAINED_MARK), "{taken}");

    // BIRD refusing: the undrain says so, and lbd keeps trying until BIRD takes it.
    bird.refuse.store(true, Ordering::SeqCst);
    let refused = board.set_drained(false).await.expect_err("BIRD refused");
    assert!(refused.contains("syntax error"), "{refused}");
    assert!(board.snapshot().configure_failures >= 1);
    assert!(!board.snapshot().bird_up_to_date);
    bird.refuse.store(false, Ordering::SeqCst);
    wait_for("BIRD taking the undrain on a retry", || {
        board.snapshot().bird_up_to_date
    })
    .await;
    assert!(
        bird.last()
            .unwrap()
            .contains("route 192.0.2.10/32 blackhole")
    );

    // Health: 192.0.2.20's only real fails its check; its route goes at the next check.
    let mut failed = (*desired.load_full()).clone();
    failed.services[2].reals[0].healthy = false;
    desired.store(Arc::new(failed));
    wait_for("192.0.2.20 withdrawn", || {
        bird.last()
            .is_some_and(|taken| !taken.contains("192.0.2.20"))
    })
    .await;
    assert!(
        bird.last()
            .unwrap()
            .contains("route 192.0.2.10/32 blackhole")
    );

    // A bird.conf without lbd's file: `configure` succeeds, but BIRD has none of lbd's
    // protocols, which must not pass for "took it".
    bird.included.store(false, Ordering::SeqCst);
    wait_for("a BIRD without lbd's file reported", || {
        board
            .snapshot()
            .bird_error
            .is_some_and(|error| error.contains("bird.conf must include"))
    })
    .await;
    assert!(!board.snapshot().bird_up_to_date);
    bird.included.store(true, Ordering::SeqCst);
    wait_for("BIRD with lbd's file again", || {
        board.snapshot().bird_up_to_date
    })
    .await;

    // Stopping withdraws everything, BIRD told before stop returns.
    speaker.stop().await;
    let taken = bird.last().unwrap();
    assert!(!taken.contains("route "), "{taken}");
    assert!(!taken.contains(DRAINED_MARK));
    drop(bird);
    let _ = std::fs::remove_dir_all(&dir);
}

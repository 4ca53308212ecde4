//! The pages from a fake data plane and a health board a test sets, and the HTTP server over
//! an in-memory stream (no sockets).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use arc_swap::ArcSwap;
use lb_common::{ConnCounts, Counters, Flow, FlowKey, OutCounters, Reason};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Pages, http::serve_connection};
use crate::{
    admin::{AdminContext, InterfaceStatus},
    config::{self, CheckKind, HealthCheckConfig},
    dataplane::{DataplaneError, DataplaneReader, FakeReader},
    health::{CheckReport, HealthBoard, HealthKey, RealHealth},
    neighbour::{InterfaceInfo, Routes},
    reconcile::{Desired, service_key},
};

const CONFIG: &str = "
instance: metrics-test
interfaces: [{name: eth0}]
services:
  - vip: 192.0.2.10
    port: 80
    protocol: tcp
    scheduler: wrr
    reals:
      - {address: 192.0.2.11, weight: 1}
      - {address: 192.0.2.12, weight: 2}
limits: {flows: 1000, services: 16, reals: 64}
";

/// A reader whose counters a test changes between two views.
#[derive(Default)]
struct SharedReader(Mutex<FakeReader>);

impl SharedReader {
    fn with<T>(&self, read: impl FnOnce(&FakeReader) -> T) -> T {
        read(&self.0.lock().unwrap())
    }
}

impl DataplaneReader for SharedReader {
    fn service_counters(&self, service_id: u32) -> Result<Counters, DataplaneError> {
        self.with(|reader| reader.service_counters(service_id))
    }

    fn real_counters(&self, real_id: u32) -> Result<Counters, DataplaneError> {
        self.with(|reader| reader.real_counters(real_id))
    }

    fn service_out_counters(&self, service_id: u32) -> Result<OutCounters, DataplaneError> {
        self.with(|reader| reader.service_out_counters(service_id))
    }

    fn real_out_counters(&self, real_id: u32) -> Result<OutCounters, DataplaneError> {
        self.with(|reader| reader.real_out_counters(real_id))
    }

    fn reason_counters(&self) -> Result<Vec<(Reason, Counters)>, DataplaneError> {
        self.with(|reader| reader.reason_counters())
    }

    fn connections(&self, real_id: u32) -> Result<ConnCounts, DataplaneError> {
        self.with(|reader| reader.connections(real_id))
    }

    fn for_each_flow(&self, visit: &mut dyn FnMut(&FlowKey, &Flow)) -> Result<(), DataplaneError> {
        self.with(|reader| reader.for_each_flow(visit))
    }

    fn merge_flow(&self, key: &FlowKey, flow: &Flow) -> Result<bool, DataplaneError> {
        self.with(|reader| reader.merge_flow(key, flow))
    }

    fn reply(&self, key: &FlowKey) -> Result<Option<lb_common::Reply>, DataplaneError> {
        self.with(|reader| reader.reply(key))
    }

    fn merge_reply(
        &self,
        key: &FlowKey,
        reply: &lb_common::Reply,
        may_replace: &dyn Fn(&lb_common::Reply) -> bool,
    ) -> Result<crate::dataplane::ReplyMerge, DataplaneError> {
        self.with(|reader| reader.merge_reply(key, reply, may_replace))
    }
}

struct Fixture {
    pages: Arc<Pages>,
    context: Arc<AdminContext>,
    reader: Arc<SharedReader>,
    board: Arc<HealthBoard>,
    /// 192.0.2.11:80, whose checks the board has; 192.0.2.12 has none yet.
    checked: HealthKey,
}

/// One TCP service with a TCP health check and two reals: 192.0.2.11 (id 1) resolved, with
/// counters and a passed check on the board; 192.0.2.12 (id 2) unresolved, not checked yet.
fn fixture() -> Fixture {
    let mut config = config::parse(CONFIG, "metrics.yaml").unwrap();
    config.services[0].health_check = Some(HealthCheckConfig {
        kind: CheckKind::Tcp,
        port: None,
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        rise: 2,
        fall: 3,
        source: None,
    });
    let eth0 = InterfaceInfo {
        name: "eth0".into(),
        index: 3,
        mac: [2, 0, 0, 0, 0, 2],
        prefixes: vec![(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 24)],
        mtu: 1500,
        vlan: None,
        egress: 3,
    };
    let mut desired = Desired::new(&config, vec![eth0], &Routes::new()).unwrap();
    let real_11 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11));
    desired.set_neighbours(3, &HashMap::from([(real_11, [2, 0, 0, 0, 0, 0x0b])]));

    let mut fake = FakeReader::default();
    fake.service_stats.insert(
        1,
        Counters {
            packets: 600,
            bytes: 40_000,
            new_flows: 100,
        },
    );
    fake.real_stats.insert(
        1,
        Counters {
            packets: 400,
            bytes: 26_000,
            new_flows: 67,
        },
    );
    fake.service_out_stats.insert(
        1,
        OutCounters {
            packets: 500,
            bytes: 700_000,
        },
    );
    fake.real_out_stats.insert(
        1,
        OutCounters {
            packets: 300,
            bytes: 450_000,
        },
    );
    fake.connections.insert(
        1,
        ConnCounts {
            active: 2,
            inactive: 5,
        },
    );
    let reader = Arc::new(SharedReader(Mutex::new(fake)));

    let board = Arc::new(HealthBoard::default());
    let checked = HealthKey {
        service: service_key(&config.services[0]),
        address: real_11,
        port: 80,
    };
    board.set(checked, health(true));

    let context = AdminContext::new(
        config.instance.clone(),
        config.limits.flows,
        Arc::new(ArcSwap::from_pointee(desired)),
        reader.clone(),
        vec![InterfaceStatus {
            name: "eth0".into(),
            ifindex: 3,
            requested_mode: "auto".into(),
            attached_mode: Some("native".into()),
            program_id: Some(42),
            mtu: 1500,
        }],
    );
    let context = Arc::new(context);
    let pages = Arc::new(Pages::new(context.clone(), board.clone(), config.limits));
    Fixture {
        pages,
        context,
        reader,
        board,
        checked,
    }
}

/// Ten checks, one failed, the last passed in 1.5 ms.
fn health(up: bool) -> RealHealth {
    RealHealth {
        up,
        last: Some(CheckReport {
            ok: up,
            latency: Duration::from_micros(1500),
            detail: if up {
                "connected".into()
            } else {
                "connect: <refused> & \"gone\"".into()
            },
            at: SystemTime::now(),
        }),
        transitions: u64::from(!up),
        checks: 10,
        failures: if up { 1 } else { 4 },
    }
}

const SERVICE_LABELS: &str =
    "service=\"tcp/192.0.2.10:80\",vip=\"192.0.2.10\",port=\"80\",protocol=\"tcp\"";

#[test]
fn metrics_text_holds_the_listing_counters_under_one_header_each() {
    let text = fixture().pages.metrics_text().unwrap();
    let real = |address: &str| format!("{{{SERVICE_LABELS},real=\"{address}:80\"}}");
    let (r11, r12) = (real("192.0.2.11"), real("192.0.2.12"));
    for block in [
        format!(
            "# HELP lb_service_packets_total Packets from clients to the service that the program handled.\n\
             # TYPE lb_service_packets_total counter\n\
             lb_service_packets_total{{{SERVICE_LABELS}}} 600\n"
        ),
        format!("# TYPE lb_service_bytes_total counter\nlb_service_bytes_total{{{SERVICE_LABELS}}} 40000\n"),
        format!(
            "# TYPE lb_service_connections_total counter\n\
             lb_service_connections_total{{{SERVICE_LABELS}}} 100\n"
        ),
        format!(
            "# TYPE lb_real_packets_total counter\n\
             lb_real_packets_total{r11} 400\nlb_real_packets_total{r12} 0\n"
        ),
        format!("lb_real_bytes_total{r11} 26000\nlb_real_bytes_total{r12} 0\n"),
        format!("lb_real_connections_total{r11} 67\n"),
        format!(
            "# TYPE lb_service_out_packets_total counter\n\
             lb_service_out_packets_total{{{SERVICE_LABELS}}} 500\n"
        ),
        format!("lb_service_out_bytes_total{{{SERVICE_LABELS}}} 700000\n"),
        format!("lb_real_out_packets_total{r11} 300\nlb_real_out_packets_total{r12} 0\n"),
        format!("lb_real_out_bytes_total{r11} 450000\n"),
        format!(
            "# TYPE lb_real_active_connections gauge\n\
             lb_real_active_connections{r11} 2\nlb_real_active_connections{r12} 0\n"
        ),
        format!("lb_real_inactive_connections{r11} 5\n"),
        format!("lb_real_weight{r11} 1\nlb_real_weight{r12} 2\n"),
        // .12 has no check result yet: up, as the reconciler takes it meanwhile.
        format!("lb_real_up{r11} 1\nlb_real_up{r12} 1\n"),
        format!("lb_real_available{r11} 1\nlb_real_available{r12} 0\n"),
        format!(
            "# TYPE lb_real_check_latency_seconds gauge\nlb_real_check_latency_seconds{r11} 0.0015\n# HELP"
        ),
        format!("# TYPE lb_real_health_checks_total counter\nlb_real_health_checks_total{r11} 10\n# HELP"),
        format!("lb_real_health_check_failures_total{r11} 1\n"),
        format!("lb_real_health_transitions_total{r11} 0\n"),
        "lb_packets_by_reason_total{reason=\"forwarded_tx\"} 0\n".to_owned(),
        "# TYPE lb_flow_table_entries gauge\nlb_flow_table_entries 7\n".to_owned(),
        "lb_flow_table_size 1000\n".to_owned(),
        "lb_services 1\n".to_owned(),
        "lb_services_limit 15\n".to_owned(),
        "lb_reals 2\n".to_owned(),
        "lb_reals_limit 63\n".to_owned(),
        format!(
            "lb_build_info{{version=\"{}\",lb_instance=\"metrics-test\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        ),
        "lb_interface_info{interface=\"eth0\",requested_mode=\"auto\",attached_mode=\"native\"} 1\n"
            .to_owned(),
    ] {
        assert!(text.contains(&block), "missing\n{block}\nin\n{text}");
    }
    assert_well_formed(&text);
}

#[test]
fn metrics_text_holds_the_vrrp_routers_and_sync() {
    use crate::admin::{RouterStatus, SyncStatus};
    let fixture = fixture();
    let routers = crate::vrrp::Board::new(vec![RouterStatus {
        name: "VI_1".into(),
        interface: "eth0".into(),
        vrid: 51,
        state: "BACKUP".into(),
        priority: 90,
        adverts_sent: 4,
        adverts_not_sent: 1,
        adverts_received: 30,
        adverts_ignored: vec![("checksum".into(), 2), ("ttl".into(), 1)],
        transitions: 3,
        ..RouterStatus::default()
    }]);
    let _ = fixture.context.vrrp.set(Arc::new(routers));
    let sync = crate::sync::SyncBoard::default();
    sync.set(SyncStatus {
        peer: "192.0.2.3:8849".into(),
        complete: true,
        flows_received: 200,
        batches_lost: 1,
        pending: 5,
        lag_ms: 1500,
        ..SyncStatus::default()
    });
    let _ = fixture.context.sync.set(Arc::new(sync));
    let text = fixture.pages.metrics_text().unwrap();
    let router = "vrrp_instance=\"VI_1\",interface=\"eth0\",vrid=\"51\"";
    for line in [
        format!("lb_vrrp_state{{{router},state=\"BACKUP\"}} 1"),
        format!("lb_vrrp_state{{{router},state=\"MASTER\"}} 0"),
        format!("lb_vrrp_priority{{{router}}} 90"),
        format!("lb_vrrp_transitions_total{{{router}}} 3"),
        format!("lb_vrrp_adverts_sent_total{{{router}}} 4"),
        format!("lb_vrrp_adverts_not_sent_total{{{router}}} 1"),
        format!("lb_vrrp_adverts_received_total{{{router}}} 30"),
        format!("lb_vrrp_adverts_ignored_total{{{router},reason=\"checksum\"}} 2"),
        format!("lb_vrrp_adverts_ignored_total{{{router},reason=\"ttl\"}} 1"),
        "lb_sync_copy_complete{peer=\"192.0.2.3:8849\"} 1".to_owned(),
        "lb_sync_flows_received_total{peer=\"192.0.2.3:8849\"} 200".to_owned(),
        "lb_sync_batches_lost_total{peer=\"192.0.2.3:8849\"} 1".to_owned(),
        "lb_sync_pending_entries{peer=\"192.0.2.3:8849\"} 5".to_owned(),
        "lb_sync_lag_seconds{peer=\"192.0.2.3:8849\"} 1.5".to_owned(),
    ] {
        assert!(
            text.lines().any(|written| written == line),
            "missing {line} in\n{text}"
        );
    }
    assert_well_formed(&text);
}

/// Every family once, HELP then TYPE, then only samples of that name; counters end `_total`.
#[track_caller]
fn assert_well_formed(text: &str) {
    let mut seen = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(help) = lines.next() {
        let name = help
            .strip_prefix("# HELP ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("expected a HELP line, got {help:?}"));
        assert!(!seen.contains(&name), "{name} has two headers");
        seen.push(name);
        let kind = lines
            .next()
            .unwrap()
            .strip_prefix(&format!("# TYPE {name} "))
            .unwrap();
        assert!(matches!(kind, "counter" | "gauge"), "{name}: {kind}");
        assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
        let mut samples = 0;
        while let Some(line) = lines.next_if(|line| !line.starts_with('#')) {
            let series = line.rsplit_once(' ').unwrap().0;
            assert_eq!(series.split('{').next(), Some(name), "{line}");
            samples += 1;
        }
        assert!(samples > 0, "{name} has no samples");
    }
    assert!(seen.contains(&"lb_start_time_seconds"));
}

#[test]
fn page_shows_health_from_the_board_escaped() {
    let fixture = fixture();
    let row = |html: &str, real: &str| {
        html.lines()
            .find(|line| line.contains(&format!("<td class=\"name\">{real}</td>")))
            .unwrap_or_else(|| panic!("no row for {real} in\n{html}"))
            .to_owned()
    };
    let html = fixture.pages.status_page().unwrap();
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    assert!(html.contains("<h1>lbd metrics-test</h1>"), "{html}");
    assert!(html.contains("<td>native</td>"), "interface mode: {html}");
    let up = row(&html, "192.0.2.11:80");
    assert!(up.starts_with("<tr class=\"up\">"), "{up}");
    assert!(up.contains("<td>UP</td>"), "{up}");
    assert!(up.contains("connected in 1.5 ms"), "{up}");
    let pending = row(&html, "192.0.2.12:80");
    assert!(pending.contains("<td>pending</td>"), "{pending}");
    assert!(pending.contains("<td>no <span"), "unresolved: {pending}");

    fixture.board.set(fixture.checked, health(false));
    let html = fixture.pages.status_page().unwrap();
    let down = row(&html, "192.0.2.11:80");
    assert!(down.starts_with("<tr class=\"down\">"), "{down}");
    assert!(down.contains("<td>DOWN</td>"), "{down}");
    assert!(
        down.contains("connect: &lt;refused&gt; &amp; &quot;gone&quot;"),
        "detail escaped: {down}"
    );
    assert!(!html.contains("<refused>"));
    let metrics = fixture.pages.metrics_text().unwrap();
    assert!(metrics.contains(&format!(
        "lb_real_up{{{SERVICE_LABELS},real=\"192.0.2.11:80\"}} 0\n"
    )));
}

#[test]
fn page_rates_come_from_the_previous_view() {
    let fixture = fixture();
    let start = Instant::now();
    let html = fixture.pages.status_page_at(start).unwrap();
    // Conns, Conn/s, Packets, Pkt/s, Bytes, Bytes/s of 192.0.2.11.
    assert!(
        html.contains("<td>67</td><td>-</td><td>400</td><td>-</td><td>26000</td><td>-</td>"),
        "{html}"
    );
    fixture.reader.0.lock().unwrap().real_stats.insert(
        1,
        Counters {
            packets: 600,
            bytes: 36_000,
            new_flows: 77,
        },
    );
    let html = fixture
        .pages
        .status_page_at(start + Duration::from_secs(2))
        .unwrap();
    assert!(
        html.contains(
            "<td>77</td><td>5.0</td><td>600</td><td>100.0</td><td>36000</td><td>5000.0</td>"
        ),
        "{html}"
    );
    // The service's counters did not move: a rate of 0, not "-".
    assert!(
        html.contains("<th>100</th><th>0.0</th><th>600</th><th>0.0</th>"),
        "{html}"
    );
}

/// Sends `request` to a connection served in memory; returns the whole answer.
async fn exchange(pages: &Arc<Pages>, request: &[u8]) -> String {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let pages = pages.clone();
    let served = tokio::spawn(async move { serve_connection(server, &pages).await });
    client.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    served.await.unwrap().unwrap();
    String::from_utf8(answer).unwrap()
}

fn status_and_body(answer: &str) -> (&str, &str) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap();
    assert!(
        head.lines().any(|line| line == "Connection: close"),
        "{head}"
    );
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    if !status.is_empty() && !body.is_empty() {
        assert_eq!(length, body.len(), "{head}");
    }
    (status, body)
}

#[tokio::test]
async fn http_serves_metrics_and_the_page() {
    let pages = fixture().pages;
    let answer = exchange(&pages, b"GET /metrics HTTP/1.1\r\nHost: lb\r\n\r\n").await;
    let (status, body) = status_and_body(&answer);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(answer.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert!(body.contains("lb_flow_table_size 1000\n"), "{body}");

    let answer = exchange(&pages, b"GET /?refresh=1 HTTP/1.1\r\nHost: lb\r\n\r\n").await;
    let (status, body) = status_and_body(&answer);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(answer.contains("Content-Type: text/html; charset=utf-8\r\n"));
    assert!(body.starts_with("<!DOCTYPE html>"));

    let answer = exchange(&pages, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    let (status, body) = status_and_body(&answer);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "", "HEAD has no body");
    assert!(!answer.contains("Content-Length: 0\r\n"), "{answer}");
}

#[tokio::test]
async fn http_refuses_what_it_does_not_serve() {
    let pages = fixture().pages;
    for (request, expected) in [
        (&b"GET /nope HTTP/1.1\r\n\r\n"[..], "HTTP/1.1 404 Not Found"),
        (
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 405 Method Not Allowed",
        ),
        (b"GARBAGE\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (
            b"GET / HTTP/1.1\r\nbroken header\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
    ] {
        let answer = exchange(&pages, request).await;
        assert_eq!(status_and_body(&answer).0, expected, "{answer}");
    }
    let answer = exchange(&pages, b"DELETE / HTTP/1.1\r\n\r\n").await;
    assert!(answer.contains("\r\nAllow: GET, HEAD\r\n"), "{answer}");

    let mut long = b"GET / HTTP/1.1\r\n".to_vec();
    while long.len() <= super::MAX_HEAD_BYTES {
        long.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let answer = exchange(&pages, &long).await;
    assert_eq!(
        status_and_body(&answer).0,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
}

//! `/metrics`: the Prometheus text exposition format (version 0.0.4), written by hand.
//!
//! Every metric is declared once below, with its type and help; [`Exposition`] groups the
//! samples of one name under one `# HELP`/`# TYPE` header, whatever order they are added in.
//! Counters end in `_total`; units are base units (bytes, seconds).

use std::{collections::HashMap, fmt::Write as _, time::UNIX_EPOCH};

use super::{Health, View};

/// The `Content-Type` of the text format.
pub(super) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

struct Metric {
    name: &'static str,
    kind: Kind,
    help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Counter,
        help,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Gauge,
        help,
    }
}

const BUILD_INFO: Metric = gauge(
    "lb_build_info",
    "Always 1; the labels say which lbd version runs which instance.",
);
const START_TIME: Metric = gauge(
    "lb_start_time_seconds",
    "When this lbd started, in seconds since the Unix epoch.",
);
const SERVICE_PACKETS: Metric = counter(
    "lb_service_packets_total",
    "Packets from clients to the service that the program handled.",
);
const SERVICE_BYTES: Metric = counter(
    "lb_service_bytes_total",
    "Bytes of those packets, Ethernet header included.",
);
const SERVICE_CONNECTIONS: Metric = counter(
    "lb_service_connections_total",
    "New flows the service scheduled (ipvsadm's Conns).",
);
const REAL_PACKETS: Metric = counter(
    "lb_real_packets_total",
    "Packets from clients sent to the real server.",
);
const REAL_BYTES: Metric = counter(
    "lb_real_bytes_total",
    "Bytes of those packets as received, Ethernet header included.",
);
const REAL_CONNECTIONS: Metric = counter(
    "lb_real_connections_total",
    "New flows scheduled to the real server.",
);
const SERVICE_OUT_PACKETS: Metric = counter(
    "lb_service_out_packets_total",
    "Packets the balancer sent back to the service's clients: NAT and full-NAT replies it \
     translated (ipvsadm's OutPkts). Direct-routing and tunnel replies bypass it: 0.",
);
const SERVICE_OUT_BYTES: Metric = counter(
    "lb_service_out_bytes_total",
    "Bytes of those replies as received from the reals, Ethernet header included.",
);
const REAL_OUT_PACKETS: Metric = counter(
    "lb_real_out_packets_total",
    "Replies of the real server the balancer translated back to clients (NAT, full NAT).",
);
const REAL_OUT_BYTES: Metric = counter(
    "lb_real_out_bytes_total",
    "Bytes of those replies as received, Ethernet header included.",
);
const REAL_ACTIVE: Metric = gauge(
    "lb_real_active_connections",
    "Established TCP connections on the real server (ipvsadm's ActiveConn).",
);
const REAL_INACTIVE: Metric = gauge(
    "lb_real_inactive_connections",
    "Other flows on the real server: TCP opening or closing, UDP (ipvsadm's InActConn).",
);
const REAL_WEIGHT: Metric = gauge(
    "lb_real_weight",
    "Configured weight of the real server; 0 drains it.",
);
const REAL_UP: Metric = gauge(
    "lb_real_up",
    "1 if the health checks say the real server is up (always 1 without a health check), else 0.",
);
const REAL_AVAILABLE: Metric = gauge(
    "lb_real_available",
    "1 if the real server takes packets of its flows (next hop resolved and answering), else 0.",
);
const REAL_CHECK_LATENCY: Metric = gauge(
    "lb_real_check_latency_seconds",
    "How long the last health check of the real server took.",
);
const REAL_TRANSITIONS: Metric = counter(
    "lb_real_health_transitions_total",
    "Up to down and down to up changes of the real server since lbd started.",
);
const REAL_CHECKS: Metric = counter(
    "lb_real_health_checks_total",
    "Health checks of the real server since lbd started.",
);
const REAL_CHECK_FAILURES: Metric = counter(
    "lb_real_health_check_failures_total",
    "Failed health checks of the real server since lbd started.",
);
const REASON_PACKETS: Metric = counter(
    "lb_packets_by_reason_total",
    "Packets the program handled, by verdict reason, all services together.",
);
const REASON_BYTES: Metric = counter(
    "lb_bytes_by_reason_total",
    "Bytes of those packets, by verdict reason.",
);
const FLOW_TABLE_ENTRIES: Metric = gauge(
    "lb_flow_table_entries",
    "Live flows, counted as the sum of the reals' active and inactive connections (the table is not walked).",
);
const FLOW_TABLE_SIZE: Metric = gauge(
    "lb_flow_table_size",
    "Entries the flow table has room for (limits.flows).",
);
const SERVICES: Metric = gauge("lb_services", "Services configured.");
const SERVICES_LIMIT: Metric = gauge(
    "lb_services_limit",
    "Services the maps have room for (limits.services less the unused id 0).",
);
const REALS: Metric = gauge(
    "lb_reals",
    "Real servers configured, over all services (sorry servers not included).",
);
const SORRY_STANDING_IN: Metric = gauge(
    "lb_sorry_server_standing_in",
    "1 while the service's sorry server takes its new flows (no real can), else 0.",
);
const REALS_LIMIT: Metric = gauge(
    "lb_reals_limit",
    "Real servers the maps have room for (limits.reals less the unused id 0).",
);
const INTERFACE_INFO: Metric = gauge(
    "lb_interface_info",
    "Always 1, per interface the program runs on: the XDP mode asked for and the one attached (none if not attached).",
);

const VRRP_STATE: Metric = gauge(
    "lb_vrrp_state",
    "Per VRRP router: 1 for its current state (INIT, BACKUP, MASTER, FAULT), 0 for the others.",
);
const VRRP_PRIORITY: Metric = gauge(
    "lb_vrrp_priority",
    "The priority the router advertises now (after track weights).",
);
const VRRP_TRANSITIONS: Metric = counter(
    "lb_vrrp_transitions_total",
    "State changes of the router since lbd started.",
);
const VRRP_ADVERTS_SENT: Metric = counter("lb_vrrp_adverts_sent_total", "Adverts the router sent.");
const VRRP_ADVERTS_NOT_SENT: Metric = counter(
    "lb_vrrp_adverts_not_sent_total",
    "Adverts the socket refused to send (the interface down, the source address gone).",
);
const VRRP_ADVERTS_RECEIVED: Metric = counter(
    "lb_vrrp_adverts_received_total",
    "Valid adverts the router heard for its vrid.",
);
const VRRP_ADVERTS_IGNORED: Metric = counter(
    "lb_vrrp_adverts_ignored_total",
    "Adverts the router ignored, by reason (ttl, checksum, version, unknown_peer, other_vrid, ...).",
);
const SYNC_COMPLETE: Metric = gauge(
    "lb_sync_copy_complete",
    "1 while this node holds (backup) or has sent (master) a full copy of the master's flows.",
);
const SYNC_FLOWS_SENT: Metric = counter(
    "lb_sync_flows_sent_total",
    "Flows sent to the peer (bulk copies and changes).",
);
const SYNC_FLOWS_RECEIVED: Metric = counter(
    "lb_sync_flows_received_total",
    "Flows received from the peer.",
);
const SYNC_FLOWS_UNMATCHED: Metric = counter(
    "lb_sync_flows_unmatched_total",
    "Flows received that name a service or real this node lacks, or do not fit its config.",
);
const SYNC_FLOWS_NOT_HELD: Metric = counter(
    "lb_sync_flows_not_held_total",
    "Flows received that the flow table had no room for.",
);
const SYNC_FLOWS_WITHOUT_REPLY: Metric = counter(
    "lb_sync_flows_without_reply_total",
    "NAT and full-NAT flows received without their reply entry (no way back came, or this \
     node's own flow holds its key): they break on a takeover.",
);
const SYNC_BATCHES_LOST: Metric = counter(
    "lb_sync_batches_lost_total",
    "Batches found missing (a gap in the sequence); each restarts the copy.",
);
const SYNC_PENDING: Metric = gauge(
    "lb_sync_pending_entries",
    "Changes found but not yet written to the peer.",
);
const SYNC_LAG: Metric = gauge(
    "lb_sync_lag_seconds",
    "How long a change may take to reach the backup: the scan interval plus the last scan's duration.",
);

const BGP_DRAINED: Metric = gauge(
    "lb_bgp_drained",
    "1 while the node is drained (lbadm drain-node): every VIP withdrawn from BGP.",
);
const BGP_BIRD_UP_TO_DATE: Metric = gauge(
    "lb_bgp_bird_up_to_date",
    "1 when BIRD took lbd's last BIRD configuration; 0 while BIRD is unreachable or refuses it.",
);
const BGP_CONFIGURE_FAILURES: Metric = counter(
    "lb_bgp_configure_failures_total",
    "Times BIRD could not be reached or refused lbd's configuration.",
);
const BGP_VIP_ANNOUNCED: Metric = gauge(
    "lb_bgp_vip_announced",
    "1 while lbd has the VIP announced (a healthy real, node not drained), else 0.",
);
const BGP_SESSION_ESTABLISHED: Metric = gauge(
    "lb_bgp_session_established",
    "1 while BIRD's BGP session with the neighbour is Established, as last read from BIRD.",
);

/// The BGP speaker's figures.
fn render_bgp(out: &mut Exposition, view: &View) {
    let Some(board) = view.context.bgp.get() else {
        return;
    };
    let bgp = board.snapshot();
    out.add(&BGP_DRAINED, &[], bgp.drained);
    out.add(&BGP_BIRD_UP_TO_DATE, &[], bgp.bird_up_to_date);
    out.add(&BGP_CONFIGURE_FAILURES, &[], bgp.configure_failures);
    for vip in &bgp.vips {
        out.add(
            &BGP_VIP_ANNOUNCED,
            &[("prefix", vip.prefix.as_str())],
            vip.announced,
        );
    }
    for neighbor in &bgp.neighbors {
        out.add(
            &BGP_SESSION_ESTABLISHED,
            &[("neighbor", neighbor.address.as_str())],
            neighbor.state == "Established",
        );
    }
}

/// The VRRP routers' and connection sync's figures.
fn render_high_availability(out: &mut Exposition, view: &View) {
    if let Some(board) = view.context.vrrp.get() {
        for router in board.snapshot() {
            let vrid = router.vrid.to_string();
            let labels = [
                ("vrrp_instance", router.name.as_str()),
                ("interface", router.interface.as_str()),
                ("vrid", vrid.as_str()),
            ];
            for state in ["INIT", "BACKUP", "MASTER", "FAULT"] {
                let mut with_state = labels.to_vec();
                with_state.push(("state", state));
                out.add(&VRRP_STATE, &with_state, router.state == state);
            }
            out.add(&VRRP_PRIORITY, &labels, u64::from(router.priority));
            out.add(&VRRP_TRANSITIONS, &labels, router.transitions);
            out.add(&VRRP_ADVERTS_SENT, &labels, router.adverts_sent);
            out.add(&VRRP_ADVERTS_NOT_SENT, &labels, router.adverts_not_sent);
            out.add(&VRRP_ADVERTS_RECEIVED, &labels, router.adverts_received);
            for (reason, count) in &router.adverts_ignored {
                let mut with_reason = labels.to_vec();
                with_reason.push(("reason", reason.as_str()));
                out.add(&VRRP_ADVERTS_IGNORED, &with_reason, *count);
            }
        }
    }
    if let Some(board) = view.context.sync.get() {
        let sync = board.snapshot();
        let labels = [("peer", sync.peer.as_str())];
        out.add(&SYNC_COMPLETE, &labels, sync.complete);
        out.add(&SYNC_FLOWS_SENT, &labels, sync.flows_sent);
        out.add(&SYNC_FLOWS_RECEIVED, &labels, sync.flows_received);
        out.add(&SYNC_FLOWS_UNMATCHED, &labels, sync.flows_unmatched);
        out.add(&SYNC_FLOWS_NOT_HELD, &labels, sync.flows_not_held);
        out.add(&SYNC_FLOWS_WITHOUT_REPLY, &labels, sync.flows_without_reply);
        out.add(&SYNC_BATCHES_LOST, &labels, sync.batches_lost);
        out.add(&SYNC_PENDING, &labels, sync.pending);
        out.add(&SYNC_LAG, &labels, sync.lag_ms as f64 / 1000.0);
    }
}

/// Renders everything the view holds.
pub(super) fn render(view: &View) -> String {
    let mut out = Exposition::default();
    let listing = &view.listing;
    out.add(
        &BUILD_INFO,
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("lb_instance", &listing.instance),
        ],
        1u64,
    );
    let started = view
        .started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    out.add(&START_TIME, &[], started);

    for service in view.services() {
        let (vip, port) = (
            service.listing.vip.to_string(),
            service.listing.port.to_string(),
        );
        let labels = [
            ("service", service.label.as_str()),
            ("vip", vip.as_str()),
            ("port", port.as_str()),
            ("protocol", service.listing.protocol.as_str()),
        ];
        let stats = service.listing.stats;
        out.add(&SERVICE_PACKETS, &labels, stats.in_packets);
        out.add(&SERVICE_BYTES, &labels, stats.in_bytes);
        out.add(&SERVICE_CONNECTIONS, &labels, stats.conns);
        out.add(&SERVICE_OUT_PACKETS, &labels, stats.out_packets);
        out.add(&SERVICE_OUT_BYTES, &labels, stats.out_bytes);
        for real in service.reals() {
            let mut labels = labels.to_vec();
            labels.push(("real", real.label.as_str()));
            // Not a real: alerts on the reals' health must not count it.
            if real.listing.sorry_server {
                out.add(&SORRY_STANDING_IN, &labels, real.listing.standing_in);
                continue;
            }
            let (listing, stats) = (real.listing, real.listing.stats);
            out.add(&REAL_PACKETS, &labels, stats.in_packets);
            out.add(&REAL_BYTES, &labels, stats.in_bytes);
            out.add(&REAL_CONNECTIONS, &labels, stats.conns);
            out.add(&REAL_OUT_PACKETS, &labels, stats.out_packets);
            out.add(&REAL_OUT_BYTES, &labels, stats.out_bytes);
            out.add(&REAL_ACTIVE, &labels, listing.active_conn);
            out.add(&REAL_INACTIVE, &labels, listing.inactive_conn);
            out.add(&REAL_WEIGHT, &labels, listing.weight);
            out.add(&REAL_UP, &labels, real.health.up());
            out.add(&REAL_AVAILABLE, &labels, listing.available);
            if let Health::Checked(health) = real.health {
                if let Some(last) = &health.last {
                    out.add(&REAL_CHECK_LATENCY, &labels, last.latency.as_secs_f64());
                }
                out.add(&REAL_TRANSITIONS, &labels, health.transitions);
                out.add(&REAL_CHECKS, &labels, health.checks);
                out.add(&REAL_CHECK_FAILURES, &labels, health.failures);
            }
        }
    }

    for reason in &listing.reasons {
        let labels = [("reason", reason.reason.as_str())];
        out.add(&REASON_PACKETS, &labels, reason.packets);
        out.add(&REASON_BYTES, &labels, reason.bytes);
    }

    out.add(&FLOW_TABLE_ENTRIES, &[], view.live_flows());
    out.add(&FLOW_TABLE_SIZE, &[], listing.flow_table_size);
    out.add(&SERVICES, &[], listing.services.len());
    out.add(&SERVICES_LIMIT, &[], view.limits.services.saturating_sub(1));
    out.add(&REALS, &[], view.real_count());
    out.add(&REALS_LIMIT, &[], view.limits.reals.saturating_sub(1));
    for interface in view.context.interfaces().iter() {
        out.add(
            &INTERFACE_INFO,
            &[
                ("interface", interface.name.as_str()),
                ("requested_mode", interface.requested_mode.as_str()),
                (
                    "attached_mode",
                    interface.attached_mode.as_deref().unwrap_or("none"),
                ),
            ],
            1u64,
        );
    }
    render_high_availability(&mut out, view);
    render_bgp(&mut out, view);
    out.finish()
}

/// A sample's value: counts as integers, so large counters keep every digit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Integer(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(value: u64) -> Self {
        Value::Integer(value)
    }
}

impl From<u32> for Value {
    fn from(value: u32) -> Self {
        Value::Integer(value.into())
    }
}

impl From<usize> for Value {
    fn from(value: usize) -> Self {
        Value::Integer(value as u64)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Integer(value.into())
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Float(value)
    }
}

/// Families in the order their first sample came, each with its samples' lines.
#[derive(Default)]
struct Exposition {
    families: Vec<(&'static Metric, String)>,
    index: HashMap<&'static str, usize>,
}

impl Exposition {
    fn add(&mut self, metric: &'static Metric, labels: &[(&str, &str)], value: impl Into<Value>) {
        let families = &mut self.families;
        let at = *self.index.entry(metric.name).or_insert_with(|| {
            families.push((metric, String::new()));
            families.len() - 1
        });
        let lines = &mut self.families[at].1;
        lines.push_str(metric.name);
        if !labels.is_empty() {
            lines.push('{');
            for (position, (name, value)) in labels.iter().enumerate() {
                if position > 0 {
                    lines.push(',');
                }
                let _ = write!(lines, "{name}=\"{}\"", escape_label_value(value));
            }
            lines.push('}');
        }
        let _ = match value.into() {
            Value::Integer(value) => writeln!(lines, " {value}"),
            Value::Float(value) => writeln!(lines, " {value}"),
        };
    }

    fn finish(self) -> String {
        let mut text = String::new();
        for (metric, lines) in self.families {
            let kind = match metric.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(text, "# HELP {} {}", metric.name, escape_help(metric.help));
            let _ = writeln!(text, "# TYPE {} {kind}", metric.name);
            text.push_str(&lines);
        }
        text
    }
}

/// Label values may hold anything; the format escapes backslash, double quote and newline.
fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Help text escapes backslash and newline (a double quote stays as it is).
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label_value("a\\b \"c\"\nd"), "a\\\\b \\\"c\\\"\\nd");
        assert_eq!(escape_help("a\\b \"c\"\nd"), "a\\\\b \"c\"\\nd");

        const WEIRD: Metric = gauge("lb_test", "line one\nline \\two");
        let mut out = Exposition::default();
        out.add(&WEIRD, &[("name", "eth\"0\"\n\\")], 1.5);
        out.add(&WEIRD, &[], 2u64);
        assert_eq!(
            out.finish(),
            "# HELP lb_test line one\\nline \\\\two\n\
             # TYPE lb_test gauge\n\
             lb_test{name=\"eth\\\"0\\\"\\n\\\\\"} 1.5\n\
             lb_test 2\n"
        );
    }

    #[test]
    fn samples_of_one_name_stay_under_one_header() {
        let mut out = Exposition::default();
        out.add(&REAL_UP, &[("real", "a")], true);
        out.add(&REAL_WEIGHT, &[("real", "a")], 3u32);
        out.add(&REAL_UP, &[("real", "b")], false);
        let text = out.finish();
        assert_eq!(text.matches("# TYPE lb_real_up gauge").count(), 1);
        assert!(
            text.contains(
                "lb_real_up{real=\"a\"} 1\nlb_real_up{real=\"b\"} 0\n# HELP lb_real_weight"
            ),
            "{text}"
        );
    }
}

//! `/`: the status page, like HAProxy's: plain HTML rendered on the server, inline CSS, no
//! scripts or external assets, reloading itself every few seconds. Per service, a table of
//! its reals with health, connections, counters and rates, and a totals row.
//!
//! Everything that comes from the config, the host or a health check is escaped.

use std::{
    fmt::{Display, Write as _},
    time::{Duration, SystemTime},
};

use super::{
    Health, RealRow, ServiceRow, View,
    rates::{Rate, Rates, Row},
};
use crate::admin::Stats;

pub(super) const CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// Seconds between the page's reloads.
const REFRESH_S: u32 = 5;

const STYLE: &str = "\
body{font-family:sans-serif;font-size:13px;margin:1em;color:#222}\
h1{font-size:18px;margin:0 0 .3em}h2{font-size:15px;margin:1.2em 0 .3em}\
h2 small{font-weight:normal;color:#555}\
table{border-collapse:collapse;margin-bottom:.5em}\
th,td{border:1px solid #bbb;padding:2px 6px;text-align:right}\
th{background:#dde}td.name,th.name{text-align:left}\
tr.up td{background:#e4f8e4}tr.down td{background:#f8d8d8}\
tr.unavailable td{background:#f8ecd0}tr.drain td{background:#e8e8f4}\
tfoot th{background:#eee}.detail{color:#555;font-size:11px}\
p.info{margin:.2em 0 .8em}";

const REAL_COLUMNS: [&str; 14] = [
    "Real",
    "Forward",
    "Weight",
    "Health",
    "Last check",
    "Available",
    "Active",
    "Inactive",
    "Conns",
    "Conn/s",
    "Packets",
    "Pkt/s",
    "Bytes",
    "Bytes/s",
];

/// The page for `view`, with `rates` from the previous view, `uptime` since lbd started.
pub(super) fn render(view: &View, rates: &Rates, uptime: Duration) -> String {
    let listing = &view.listing;
    let instance = escape(&listing.instance);
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\
         <title>lbd {instance}</title><style>{STYLE}</style></head><body>\n\
         <h1>lbd {instance}</h1>\n\
         <p class=\"info\">version {version} · up {uptime} · flows {flows} of {flow_table_size} \
         · services {services} of {services_limit} · reals {reals} of {reals_limit}</p>\n",
        version = env!("CARGO_PKG_VERSION"),
        uptime = format_uptime(uptime),
        flows = view.live_flows(),
        flow_table_size = listing.flow_table_size,
        services = listing.services.len(),
        services_limit = view.limits.services.saturating_sub(1),
        reals = view.real_count(),
        reals_limit = view.limits.reals.saturating_sub(1),
    );
    interfaces(&mut html, view);
    let now = SystemTime::now();
    for service in view.services() {
        service_table(&mut html, &service, rates, now);
    }
    reasons(&mut html, view);
    html.push_str("</body></html>\n");
    html
}

fn interfaces(html: &mut String, view: &View) {
    html.push_str(
        "<table><thead><tr><th class=\"name\">Interface</th><th>ifindex</th>\
         <th>XDP mode asked</th><th>attached</th><th>program</th><th>MTU</th></tr></thead>\
         <tbody>\n",
    );
    for interface in view.context.interfaces().iter() {
        let _ = writeln!(
            html,
            "<tr><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td></tr>",
            escape(&interface.name),
            interface.ifindex,
            escape(&interface.requested_mode),
            escape(interface.attached_mode.as_deref().unwrap_or("not attached")),
            interface
                .program_id
                .map_or_else(|| "-".to_owned(), |id| id.to_string()),
            interface.mtu,
        );
    }
    html.push_str("</tbody></table>\n");
}

fn service_table(html: &mut String, service: &ServiceRow<'_>, rates: &Rates, now: SystemTime) {
    let listing = service.listing;
    let mut options = vec![listing.scheduler.clone(), listing.forward.clone()];
    if let Some(seconds) = listing.persistent_s {
        options.push(format!("persistent {seconds}s"));
    }
    let _ = write!(
        html,
        "<h2>{} <small>{}</small></h2>\n<table><thead><tr>",
        escape(&service.label),
        escape(&options.join(" · ")),
    );
    for (index, column) in REAL_COLUMNS.iter().enumerate() {
        let class = if index == 0 { " class=\"name\"" } else { "" };
        let _ = write!(html, "<th{class}>{column}</th>");
    }
    html.push_str("</tr></thead><tbody>\n");
    for real in service.reals() {
        real_row(html, &real, rates, now);
    }
    let (active, inactive) = listing
        .reals
        .iter()
        .fold((0, 0), |(active, inactive), real| {
            (active + real.active_conn, inactive + real.inactive_conn)
        });
    let _ = writeln!(
        html,
        "</tbody><tfoot><tr><th class=\"name\">Total</th><th></th><th></th><th></th><th></th>\
         <th></th><th>{active}</th><th>{inactive}</th>{}</tr></tfoot></table>",
        counters(
            &listing.stats,
            rates.get(&Row::Service(service.key())),
            "th"
        ),
    );
}

fn real_row(html: &mut String, real: &RealRow<'_>, rates: &Rates, now: SystemTime) {
    let listing = real.listing;
    let (health, last_check) = match &real.health {
        Health::Unchecked => ("unchecked", String::new()),
        Health::Pending { .. } => ("pending", "no check yet".to_owned()),
        Health::Checked(health) => {
            let last = match &health.last {
                Some(last) => format!(
                    "{} in {}{}",
                    escape(&last.detail),
                    format_duration(last.latency),
                    now.duration_since(last.at)
                        .map(|ago| format!(", {} ago", format_uptime(ago)))
                        .unwrap_or_default(),
                ),
                None => "no check yet".to_owned(),
            };
            let totals = format!(
                "{} checks, {} failed, {} changes",
                health.checks, health.failures, health.transitions
            );
            let state = if health.up { "UP" } else { "DOWN" };
            (
                state,
                format!("{last}<br><span class=\"detail\">{totals}</span>"),
            )
        }
    };
    let class = if !real.health.up() {
        "down"
    } else if !listing.available {
        "unavailable"
    } else if listing.weight == 0 {
        "drain"
    } else {
        "up"
    };
    let available = if listing.available {
        "yes".to_owned()
    } else {
        format!(
            "no <span class=\"detail\">{}</span>",
            escape(&listing.neighbour)
        )
    };
    // The sorry server is not checked: its row says what it is, and whether it stands in.
    let (health, last_check, name) = if listing.sorry_server {
        let state = if listing.standing_in {
            "standing in"
        } else {
            "idle"
        };
        (
            "sorry server",
            state.to_owned(),
            format!("{} (sorry server)", real.label),
        )
    } else {
        (health, last_check, real.label.clone())
    };
    let _ = writeln!(
        html,
        "<tr class=\"{class}\"><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{health}</td>\
         <td class=\"name\">{last_check}</td><td>{available}</td><td>{}</td><td>{}</td>{}</tr>",
        escape(&name),
        escape(&listing.forward),
        listing.weight,
        listing.active_conn,
        listing.inactive_conn,
        counters(&listing.stats, rates.get(&Row::Real(real.key)), "td"),
    );
}

/// The Conns, Conn/s, Packets, Pkt/s, Bytes, Bytes/s cells.
fn counters(stats: &Stats, rate: Option<&Rate>, cell: &str) -> String {
    let per_second = |value: fn(&Rate) -> f64| {
        rate.map_or_else(|| "-".to_owned(), |rate| format!("{:.1}", value(rate)))
    };
    [
        stats.conns.to_string(),
        per_second(|rate| rate.connections),
        stats.in_packets.to_string(),
        per_second(|rate| rate.packets),
        stats.in_bytes.to_string(),
        per_second(|rate| rate.bytes),
    ]
    .iter()
    .map(|text| format!("<{cell}>{text}</{cell}>"))
    .collect()
}

fn reasons(html: &mut String, view: &View) {
    html.push_str(
        "<h2>Verdicts <small>all services together</small></h2>\n<table><thead><tr>\
         <th class=\"name\">Reason</th><th>Packets</th><th>Bytes</th></tr></thead><tbody>\n",
    );
    for reason in &view.listing.reasons {
        let _ = writeln!(
            html,
            "<tr><td class=\"name\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&reason.reason),
            reason.packets,
            reason.bytes,
        );
    }
    html.push_str("</tbody></table>\n");
}

/// `3d 04h 05m 06s`, the larger units only when needed.
fn format_uptime(uptime: Duration) -> String {
    let seconds = uptime.as_secs();
    let (days, hours, minutes, seconds) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m {seconds:02}s"),
        (0, _, _) => format!("{hours}h {minutes:02}m {seconds:02}s"),
        _ => format!("{days}d {hours:02}h {minutes:02}m {seconds:02}s"),
    }
}

/// A check's latency: milliseconds below a second.
fn format_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", duration.as_secs_f64())
    }
}

/// Text as HTML, safe in element content and in quoted attribute values.
fn escape(text: &(impl Display + ?Sized)) -> String {
    let text = text.to_string();
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href='x'>\"&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn durations_read_like_uptime() {
        assert_eq!(format_uptime(Duration::from_secs(7)), "7s");
        assert_eq!(format_uptime(Duration::from_secs(65)), "1m 05s");
        assert_eq!(
            format_uptime(Duration::from_secs(3 * 3600 + 5)),
            "3h 00m 05s"
        );
        assert_eq!(
            format_uptime(Duration::from_secs(2 * 86_400 + 3600 + 61)),
            "2d 01h 01m 01s"
        );
        assert_eq!(format_duration(Duration::from_micros(1500)), "1.5 ms");
        assert_eq!(format_duration(Duration::from_millis(2500)), "2.50 s");
    }
}

//! `lbadm -L -n [--stats|--rate|--thresholds] [--exact] [--nosort] [-t|-u VIP:PORT] [-o json]`
//! and `-L --timeout`, `-L --daemon`: ipvsadm `-L`. `--watch` redraws `--stats` or `--rate`
//! in place (as `lbadm top` does).

use std::{io::Write as _, time::Duration};

use super::{
    Failure, Output,
    command::{ListKind, ListOptions},
    table::{self, Format, Layout},
};
use crate::admin::{self, Listing, Reply, Request};

pub fn run(
    socket: &std::path::Path,
    options: &ListOptions,
    output: Output,
) -> Result<String, Failure> {
    match options.kind {
        ListKind::Connections => return super::connections::run(socket, output),
        // No IPVS sync daemon runs (lbd syncs through its `sync` key): ipvsadm then prints
        // nothing.
        ListKind::Daemons => return Ok(String::new()),
        _ => {}
    }
    let listing = listed(socket, options)?;
    Ok(match (output, options.kind) {
        (Output::Json, ListKind::Timeouts) => json(&listing.timeouts),
        (Output::Json, _) => json(&listing),
        (Output::Table, ListKind::Timeouts) => table::timeouts(&listing.timeouts),
        (Output::Table, kind) => table::services(&listing, format(options, kind)),
    })
}

/// Redraws the listing every `interval` in place (`--watch`), `count` times or until
/// interrupted.
pub fn watch(
    socket: &std::path::Path,
    options: &ListOptions,
    interval: Duration,
    count: Option<u64>,
) -> Result<String, Failure> {
    let mut stdout = std::io::stdout();
    let mut drawn = 0;
    loop {
        let text = table::services(&listed(socket, options)?, format(options, options.kind));
        // Home, clear to the end of the screen: the table redraws where it was.
        let _ = write!(stdout, "\x1b[H\x1b[J{text}");
        let _ = stdout.flush();
        drawn += 1;
        if count.is_some_and(|count| drawn >= count) {
            return Ok(String::new());
        }
        std::thread::sleep(interval);
    }
}

/// The listing, narrowed to the service `-t`/`-u` named (ipvsadm: "No such service", exit 1).
pub fn listed(socket: &std::path::Path, options: &ListOptions) -> Result<Listing, Failure> {
    let Reply::Listing(mut listing) = admin::request(socket, &Request::List)? else {
        return Err(Failure::Unexpected("a list request"));
    };
    if let Some(named) = options.service {
        listing.services.retain(|service| {
            service.protocol == named.protocol.name()
                && service.vip == named.vip
                && service.port == named.port
        });
        if listing.services.is_empty() {
            return Err(Failure::NotFound(format!("No such service: {named}")));
        }
    }
    Ok(listing)
}

fn format(options: &ListOptions, kind: ListKind) -> Format {
    Format {
        layout: match kind {
            ListKind::Stats => Layout::Stats,
            ListKind::Rate => Layout::Rate,
            ListKind::Thresholds => Layout::Thresholds,
            _ => Layout::Services,
        },
        exact: options.exact,
        sort: options.sort,
        version_line: options.service.is_none(),
    }
}

pub fn json(value: &impl serde::Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("listings always serialize");
    text.push('\n');
    text
}

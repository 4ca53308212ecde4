//! `lbadm -L -n [--stats] [--exact] [-t|-u VIP:PORT] [-o json]`: ipvsadm `-L -n`.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};

use super::{Cli, Output, table};
use crate::admin::{self, Listing, Reply, Request};

pub fn run(cli: &Cli) -> anyhow::Result<String> {
    if cli.rate {
        bail!("--rate is not supported by this version yet (use --stats)");
    }
    let filter = service_filter(cli)?;
    let Reply::Listing(mut listing) = admin::request(&cli.socket, &Request::List)? else {
        bail!("lbd answered a list request with something else");
    };
    if let Some((protocol, addr)) = filter {
        listing.services.retain(|service| {
            service.protocol == protocol && service.vip == addr.ip() && service.port == addr.port()
        });
        if listing.services.is_empty() {
            bail!("no such service: {} {addr}", protocol.to_uppercase());
        }
    }
    Ok(match cli.output {
        Output::Json => json(&listing),
        Output::Table if cli.stats => table::stats(&listing, cli.exact),
        Output::Table => table::services(&listing),
    })
}

fn json(listing: &Listing) -> String {
    let mut text = serde_json::to_string_pretty(listing).expect("listings always serialize");
    text.push('\n');
    text
}

fn service_filter(cli: &Cli) -> anyhow::Result<Option<(&'static str, SocketAddr)>> {
    let (protocol, text) = match (&cli.tcp_service, &cli.udp_service) {
        (Some(text), _) => ("tcp", text),
        (None, Some(text)) => ("udp", text),
        (None, None) => return Ok(None),
    };
    let addr = text
        .parse::<SocketAddr>()
        .with_context(|| format!("-{}: `{text}` is not VIP:PORT", &protocol[..1]))?;
    Ok(Some((protocol, addr)))
}

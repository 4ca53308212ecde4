//! `lbadm -L -n -c [-o json]`: ipvsadm `-L -n -c`, the connection (flow) table.

use anyhow::bail;

use super::{Cli, Output, table};
use crate::admin::{self, Reply, Request};

pub fn run(cli: &Cli) -> anyhow::Result<String> {
    if cli.stats || cli.rate {
        bail!("-c lists connections; --stats and --rate go with the service listing");
    }
    if cli.tcp_service.is_some() || cli.udp_service.is_some() {
        bail!("-c lists every connection; -t/-u filters are for the service listing");
    }
    let Reply::Connections(listing) = admin::request(&cli.socket, &Request::Connections)? else {
        bail!("lbd answered a connection listing request with something else");
    };
    Ok(match cli.output {
        Output::Json => {
            let mut text =
                serde_json::to_string_pretty(&listing).expect("listings always serialize");
            text.push('\n');
            text
        }
        Output::Table => table::connections(&listing),
    })
}

//! `lbadm status [-o json]`: the daemon, and where and how its XDP program is attached (no
//! ipvsadm equivalent). `auto` may have fallen back to generic mode; this says which it is.

use anyhow::bail;

use super::{Cli, Output, table};
use crate::admin::{self, Reply, Request};

pub fn run(cli: &Cli) -> anyhow::Result<String> {
    let Reply::Status(status) = admin::request(&cli.socket, &Request::Status)? else {
        bail!("lbd answered a status request with something else");
    };
    Ok(match cli.output {
        Output::Json => {
            let mut text = serde_json::to_string_pretty(&status).expect("status serializes");
            text.push('\n');
            text
        }
        Output::Table => table::status(&status),
    })
}

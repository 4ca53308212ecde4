//! `lbadm -L -n -c [-o json]`: ipvsadm `-L -n -c`, the connection (flow) table.

use super::{Failure, Output, list::json, table};
use crate::admin::{self, Reply, Request};

pub fn run(socket: &std::path::Path, output: Output) -> Result<String, Failure> {
    let Reply::Connections(listing) = admin::request(socket, &Request::Connections)? else {
        return Err(Failure::Unexpected("a connection listing request"));
    };
    Ok(match output {
        Output::Json => json(&listing),
        Output::Table => table::connections(&listing),
    })
}

//! `lbadm status [-o json]` (no ipvsadm equivalent): the daemon, where and how its XDP
//! program is attached (`auto` may have fallen back to generic mode; this says which), how
//! full its maps are, and every real with its health check's last result.

use super::{Failure, Output, list::json, table};
use crate::admin::{self, Reply, Request};

pub fn run(socket: &std::path::Path, output: Output) -> Result<String, Failure> {
    let Reply::Status(status) = admin::request(socket, &Request::Status)? else {
        return Err(Failure::Unexpected("a status request"));
    };
    Ok(match output {
        Output::Json => json(&status),
        Output::Table => table::status(&status),
    })
}

//! `lbadm drain-node` / `lbadm undrain-node` (no ipvsadm equivalent; scale-out): withdraw this
//! node's VIPs from BGP so the routers send its traffic to the other balancers, or announce
//! them again. Prints what BIRD now announces; fails (255) when BIRD did not take it.

use std::path::Path;

use super::Failure;
use crate::admin::{self, Reply, Request};

pub fn run(socket: &Path, drained: bool) -> Result<String, Failure> {
    let request = if drained {
        Request::DrainNode
    } else {
        Request::UndrainNode
    };
    match admin::request(socket, &request)? {
        Reply::Done { message } => Ok(format!("{message}\n")),
        _ => Err(Failure::Unexpected("a drain")),
    }
}

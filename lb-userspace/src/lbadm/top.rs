//! `lbadm top [--interval SECONDS] [--count N]`: a live view of every service's rates,
//! redrawn in place: `-L -n --rate --watch` under another name, as operators reach for `top`.

use std::time::Duration;

use super::{
    Failure,
    command::{ListKind, ListOptions},
    list,
};

pub fn run(socket: &std::path::Path, interval: u64, count: Option<u64>) -> Result<String, Failure> {
    let options = ListOptions {
        kind: ListKind::Rate,
        service: None,
        exact: false,
        sort: true,
    };
    list::watch(
        socket,
        &options,
        Duration::from_secs(interval.max(1)),
        count,
    )
}

//! `lbadm --set TCP TCPFIN UDP`: ipvsadm `--set`, the flow timeouts in seconds; 0 keeps one.

use serde_json::{Map, Value};

use crate::config::edit::Edit;

pub fn edit(seconds: [Option<u64>; 3]) -> Edit {
    let mut set = Map::new();
    for (key, value) in ["tcp", "tcp_fin", "udp"].into_iter().zip(seconds) {
        if let Some(value) = value {
            set.insert(key.into(), Value::String(format!("{value}s")));
        }
    }
    Edit::SetTimeouts { set }
}

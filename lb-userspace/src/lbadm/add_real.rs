//! `lbadm -a -t|-u VIP:PORT -r RIP[:PORT] [-g|-i|-m|--forward fullnat] [-w WEIGHT]`: ipvsadm
//! `-a`, add a real server. The weight defaults to 1, as ipvsadm's; without a method the real
//! takes the service's (`--forward` on -A; direct routing by default, as ipvsadm's).

use serde_json::{Map, Value};

use super::command::RealRule;
use crate::config::edit::Edit;

pub fn edit(rule: &RealRule) -> Edit {
    let mut real = Map::new();
    real.insert("address".into(), Value::String(rule.address.to_string()));
    real.insert("port".into(), Value::from(rule.port()));
    real.insert("weight".into(), Value::from(rule.weight.unwrap_or(1)));
    if let Some(forward) = rule.forward {
        real.insert("forward".into(), Value::String(forward.into()));
    }
    Edit::AddReal {
        service: rule.service,
        real,
    }
}

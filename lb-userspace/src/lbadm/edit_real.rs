//! `lbadm -e -t|-u VIP:PORT -r RIP[:PORT] [-g|-i|-m|--forward fullnat] [-w WEIGHT]`: ipvsadm
//! `-e`, edit a real server. As with ipvsadm, the line says what the real is: the weight falls
//! back to 1 when not given, and the method to the service's.

use serde_json::{Map, Value};

use super::command::RealRule;
use crate::config::edit::Edit;

pub fn edit(rule: &RealRule) -> Edit {
    let mut set = Map::new();
    set.insert("weight".into(), Value::from(rule.weight.unwrap_or(1)));
    set.insert(
        "forward".into(),
        rule.forward
            .map_or(Value::Null, |forward| Value::String(forward.into())),
    );
    Edit::EditReal {
        service: rule.service,
        address: rule.address,
        port: rule.port(),
        set,
    }
}

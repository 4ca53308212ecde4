//! `lbadm -E -t|-u VIP:PORT [-s SCHED] [-p [SECONDS]] [-M NETMASK] [lbd's options]`: ipvsadm
//! `-E`, edit a virtual service. As with ipvsadm, the line says what the service is: the
//! scheduler falls back to wlc and persistence goes when not given. lbd's own options
//! (`--forward`, `--check`, …) change only when given (`none` removes one).

use serde_json::{Map, Value};

use super::{
    Failure,
    add_service::{DEFAULT_SCHEDULER, extra_keys, ipvsadm_keys},
    command::ServiceRule,
};
use crate::config::edit::Edit;

pub fn edit(rule: &ServiceRule) -> Result<Edit, Failure> {
    let mut set = Map::new();
    let scheduler = rule.scheduler.as_deref().unwrap_or(DEFAULT_SCHEDULER);
    set.insert("scheduler".into(), Value::String(scheduler.into()));
    // A table size belongs to mh alone: a line moving the service off mh takes it away.
    if scheduler != "mh" && rule.extra.mh_table_size.is_none() {
        set.insert("mh_table_size".into(), Value::Null);
    }
    for (key, value) in ipvsadm_keys(rule)? {
        set.insert(key.into(), value);
    }
    for (key, value) in extra_keys(&rule.extra)? {
        set.insert(key.into(), value);
    }
    Ok(Edit::EditService {
        service: rule.service,
        set,
    })
}

//! `lbadm -d -t|-u VIP:PORT -r RIP[:PORT]`: ipvsadm `-d`, delete a real server. Its flows
//! move to the other reals.

use super::command::RealRule;
use crate::config::edit::Edit;

pub fn edit(rule: &RealRule) -> Edit {
    Edit::DeleteReal {
        service: rule.service,
        address: rule.address,
        port: rule.port(),
    }
}

//! `lbadm -D -t|-u VIP:PORT`: ipvsadm `-D`, delete a virtual service and its reals.

use crate::config::edit::{Edit, ServiceRef};

pub fn edit(service: ServiceRef) -> Edit {
    Edit::DeleteService { service }
}

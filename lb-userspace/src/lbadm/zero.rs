//! `lbadm -Z [-t|-u VIP:PORT]`: ipvsadm `-Z`, zero the counters of one service (and its reals)
//! or of every service.

use crate::{admin::Request, config::edit::ServiceRef};

pub fn request(service: Option<ServiceRef>) -> Request {
    Request::ZeroCounters { service }
}

//! Health checks of real servers (keepalived's TCP_CHECK and HTTP_GET).
//!
//! The monitor checks every real of every service with a `health_check`, counts consecutive
//! results against `rise` and `fall`, and tells the reconciler when a real goes down or comes
//! back. What each check last said is kept on a [`HealthBoard`] that readers (the admin
//! socket, metrics, the status page) look at without asking anybody.
//!
//! # Layout
//!
//! - this file: the types others read ([`HealthKey`], [`CheckReport`], [`RealHealth`], the
//!   [`HealthBoard`]);
//! - `probe.rs`: one check (TCP connect, HTTP GET) and the [`Probe`] seam the monitor runs
//!   checks through;
//! - `checker.rs`: [`RiseFall`], the pure rise/fall thresholds of one real;
//! - `monitor.rs`: [`HealthMonitor`], a task per real and a bound on probes in flight; its
//!   [`Transition`]s are what the reconciler hears.

mod checker;
mod monitor;
mod probe;

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, SystemTime},
};

pub use checker::RiseFall;
use lb_common::{PROTO_TCP, PROTO_UDP, ServiceKey};
pub use monitor::{DEFAULT_MAX_CONCURRENT_PROBES, HealthMonitor, Target, Transition};
pub use probe::{MAX_RESPONSE_BYTES, NetworkProbe, Probe, check};

use crate::config::socket_text;

/// Which real of which service: the service's key, the real's address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HealthKey {
    pub service: ServiceKey,
    pub address: IpAddr,
    pub port: u16,
}

/// `TCP 192.0.2.10:80 real 10.0.0.11:80`, for logs.
impl fmt::Display for HealthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let service = &self.service;
        let protocol = match service.protocol {
            PROTO_TCP => "TCP".to_owned(),
            PROTO_UDP => "UDP".to_owned(),
            other => format!("protocol {other}"),
        };
        let vip = crate::reconcile::address_from_bytes(&service.vip, service.family);
        write!(
            f,
            "{protocol} {} real {}",
            socket_text(vip, u16::from_be(service.port_be)),
            socket_text(self.address, self.port)
        )
    }
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub ok: bool,
    /// From the start of the connect to the verdict.
    pub latency: Duration,
    /// A few words for operators: `connected`, `HTTP 200`, `HTTP 503 (expected 200-299)`,
    /// `body lacks "ok"`, `malformed status line`, `connect: Connection refused`,
    /// `timed out after 500ms`, …
    pub detail: String,
    /// When the check started.
    pub at: SystemTime,
}

/// A checked real's standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealHealth {
    pub up: bool,
    pub last: Option<CheckReport>,
    /// Up → down and down → up changes since lbd started.
    pub transitions: u64,
    pub checks: u64,
    pub failures: u64,
}

/// What the checks last said about every checked real; readers copy out what they need.
#[derive(Debug, Default)]
pub struct HealthBoard {
    reals: Mutex<HashMap<HealthKey, RealHealth>>,
}

impl HealthBoard {
    pub fn get(&self, key: &HealthKey) -> Option<RealHealth> {
        self.lock().get(key).cloned()
    }

    pub fn snapshot(&self) -> HashMap<HealthKey, RealHealth> {
        self.lock().clone()
    }

    pub fn set(&self, key: HealthKey, health: RealHealth) {
        self.lock().insert(key, health);
    }

    /// Replaces the entry of a real that is on the board, and only then: a check that ends
    /// just after its real was dropped (by [`retain`](Self::retain)) must not bring it back.
    pub fn update(&self, key: &HealthKey, health: RealHealth) {
        if let Some(entry) = self.lock().get_mut(key) {
            *entry = health;
        }
    }

    /// Forgets every real not in `keep` (no longer configured or no longer checked).
    pub fn retain(&self, keep: impl Fn(&HealthKey) -> bool) {
        self.lock().retain(|key, _| keep(key));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<HealthKey, RealHealth>> {
        // A panic elsewhere while holding it leaves a map that is still whole.
        self.reals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

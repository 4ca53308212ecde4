//! Health checks of real servers (keepalived's TCP_CHECK and HTTP_GET).
//!
//! The monitor checks every real of every service with a `health_check`, counts consecutive
//! results against `rise` and `fall`, and tells the reconciler when a real goes down or comes
//! back. What each check last said is kept on a [`HealthBoard`] that readers (the admin
//! socket, metrics, the status page) look at without asking anybody.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, SystemTime},
};

use lb_common::ServiceKey;

/// Which real of which service: the service's key, the real's address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HealthKey {
    pub service: ServiceKey,
    pub address: IpAddr,
    pub port: u16,
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub ok: bool,
    /// From the start of the connect to the verdict.
    pub latency: Duration,
    /// `connected`, `HTTP 200`, `connect: connection refused`, `timed out after 500ms`, …
    pub detail: String,
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

//! Where the routers publish their state, for `lbadm status` and the metrics.

use std::{collections::BTreeMap, sync::Mutex, time::SystemTime};

use crate::admin::RouterStatus;

/// Every router's status, by its index in the config.
#[derive(Default)]
pub struct Board {
    routers: Mutex<Vec<RouterStatus>>,
}

impl Board {
    pub fn new(routers: Vec<RouterStatus>) -> Self {
        Self {
            routers: Mutex::new(routers),
        }
    }

    pub fn snapshot(&self) -> Vec<RouterStatus> {
        self.routers.lock().expect("vrrp board lock").clone()
    }

    /// Changes router `index`'s entry.
    pub fn update(&self, index: usize, change: impl FnOnce(&mut RouterStatus)) {
        if let Some(router) = self.routers.lock().expect("vrrp board lock").get_mut(index) {
            change(router);
        }
    }
}

/// Counts an ignored advert under `kind`.
pub fn count_ignored(router: &mut RouterStatus, kind: &str) {
    let mut counts: BTreeMap<String, u64> = router.adverts_ignored.drain(..).collect();
    *counts.entry(kind.to_owned()).or_default() += 1;
    router.adverts_ignored = counts.into_iter().collect();
}

pub fn epoch_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

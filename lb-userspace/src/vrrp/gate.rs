//! Which VIPs the program forwards: a VIP of a VRRP router is forwarded only while that
//! router is master here. The reconciler keeps the others' services hidden (standby).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{config::ha::VrrpInstanceConfig, reconcile::Input};

pub struct VipGate {
    /// Each router's addresses, by name.
    routers: BTreeMap<String, Vec<IpAddr>>,
    /// Routers that are master here. Held across the reconciler's answer, so two routers'
    /// changes reach the maps in the order they were made.
    masters: Mutex<BTreeSet<String>>,
    inputs: mpsc::Sender<Input>,
}

impl VipGate {
    pub fn new(routers: &[VrrpInstanceConfig], inputs: mpsc::Sender<Input>) -> Self {
        Self {
            routers: routers
                .iter()
                .map(|router| {
                    let addresses = router
                        .virtual_addresses
                        .iter()
                        .map(|address| address.address)
                        .collect();
                    (router.name.clone(), addresses)
                })
                .collect(),
            masters: Mutex::new(BTreeSet::new()),
            inputs,
        }
    }

    /// Starts (`serve`) or stops forwarding `router`'s VIPs; returns once the maps say so.
    pub async fn serve(&self, router: &str, serve: bool) -> Result<(), String> {
        let mut masters = self.masters.lock().await;
        if serve {
            masters.insert(router.to_owned());
        } else {
            masters.remove(router);
        }
        let standby: BTreeSet<IpAddr> = self
            .routers
            .iter()
            .filter(|(name, _)| !masters.contains(*name))
            .flat_map(|(_, addresses)| addresses.iter().copied())
            .collect();
        let (done, answer) = oneshot::channel();
        self.inputs
            .send(Input::Standby {
                vips: standby,
                done,
            })
            .await
            .map_err(|_| "the reconciler has stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the reconciler has stopped".to_owned())?
    }
}

//! Sync groups (keepalived's `vrrp_sync_group`): routers that fault together.
//!
//! A two-armed balancer (clients on one interface, the reals' gateway on another) runs a
//! router per interface. Were the reals' side to fail on the master, its router there would
//! go to FAULT and hand the gateway to the peer, while the router for the VIPs kept them: the
//! clients' packets would arrive where the reals' replies cannot. In a group, a router in
//! FAULT for a reason of its own (a link down, a tracked interface or service, its interface
//! missing) puts every other member in FAULT too, so the peer takes all of them.
//!
//! Only faults are shared: priorities are each router's own, as without a group (keepalived's
//! groups move their members to BACKUP and MASTER together too; with the same priorities on
//! every router of a node, as a pair is usually configured, an election moves them together
//! anyway).

use std::{collections::BTreeMap, sync::Arc};

use tokio::sync::watch;

use crate::config::ha::VrrpInstanceConfig;

/// What a member has said of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    /// Nothing yet: its tracking has not spoken (its fellows wait, a while, before they
    /// start: were it faulty, they would claim the role for a moment).
    Starting,
    Clear,
    /// In FAULT for a reason of its own.
    Fault(String),
}

/// Each member's word on itself, by router name.
pub type MemberFaults = BTreeMap<String, Member>;

/// One sync group's members and their own faults.
pub struct SyncGroup {
    name: String,
    faults: watch::Sender<MemberFaults>,
}

impl SyncGroup {
    /// The groups of `routers`, by group name; every member starts [`Member::Starting`].
    pub fn of(routers: &[VrrpInstanceConfig]) -> BTreeMap<String, Arc<SyncGroup>> {
        let mut members: BTreeMap<&str, MemberFaults> = BTreeMap::new();
        for router in routers {
            if let Some(group) = &router.sync_group {
                members
                    .entry(group)
                    .or_default()
                    .insert(router.name.clone(), Member::Starting);
            }
        }
        members
            .into_iter()
            .map(|(name, faults)| {
                let group = SyncGroup {
                    name: name.to_owned(),
                    faults: watch::Sender::new(faults),
                };
                (name.to_owned(), Arc::new(group))
            })
            .collect()
    }

    /// A member says what its own fault is now (`None`: it has none).
    pub fn report(&self, member: &str, fault: Option<String>) {
        let word = fault.map_or(Member::Clear, Member::Fault);
        self.faults.send_if_modified(|faults| {
            let entry = faults.entry(member.to_owned()).or_insert(Member::Starting);
            let changed = *entry != word;
            *entry = word;
            changed
        });
    }

    /// The members' faults, changing as they report.
    pub fn watch(&self) -> watch::Receiver<MemberFaults> {
        self.faults.subscribe()
    }

    /// The fault `member` takes from the others: the first other member's own fault.
    pub fn fellows_fault(&self, faults: &MemberFaults, member: &str) -> Option<String> {
        fellows_fault(&self.name, faults, member)
    }
}

/// What `member` of group `group` takes from the other members' own `faults`.
fn fellows_fault(group: &str, faults: &MemberFaults, member: &str) -> Option<String> {
    faults
        .iter()
        .filter(|(name, _)| name.as_str() != member)
        .find_map(|(name, word)| match word {
            Member::Fault(fault) => {
                Some(format!("sync group {group}: {name} is in FAULT ({fault})"))
            }
            Member::Starting | Member::Clear => None,
        })
}

/// Whether a member other than `member` has not spoken yet.
pub fn fellows_starting(faults: &MemberFaults, member: &str) -> bool {
    faults
        .iter()
        .any(|(name, word)| name.as_str() != member && *word == Member::Starting)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(entries: &[(&str, Option<&str>)]) -> MemberFaults {
        entries
            .iter()
            .map(|(name, fault)| {
                let word = fault.map_or(Member::Clear, |fault| Member::Fault(fault.to_owned()));
                ((*name).to_owned(), word)
            })
            .collect()
    }

    #[test]
    fn a_member_takes_the_first_fault_of_another_never_its_own() {
        let none = faults(&[("VI_EXT", None), ("VI_INT", None)]);
        assert_eq!(fellows_fault("VG", &none, "VI_EXT"), None);
        let internal_down = faults(&[("VI_EXT", None), ("VI_INT", Some("eth1 is down"))]);
        assert_eq!(
            fellows_fault("VG", &internal_down, "VI_EXT").as_deref(),
            Some("sync group VG: VI_INT is in FAULT (eth1 is down)")
        );
        // Its own fault is its own to report, not taken back from the group.
        assert_eq!(fellows_fault("VG", &internal_down, "VI_INT"), None);
        let both = faults(&[
            ("VI_EXT", Some("eth0 is down")),
            ("VI_INT", Some("eth1 is down")),
        ]);
        assert_eq!(
            fellows_fault("VG", &both, "VI_INT").as_deref(),
            Some("sync group VG: VI_EXT is in FAULT (eth0 is down)")
        );
    }

    #[test]
    fn groups_are_built_from_the_routers_and_reports_wake_only_on_change() {
        let config = crate::config::parse(
            "instance: a
interfaces: [{name: eth0}, {name: eth1}]
vrrp:
  - {name: VI_EXT, interface: eth0, vrid: 51, virtual_addresses: [192.0.2.10], sync_group: VG}
  - {name: VI_INT, interface: eth1, vrid: 52, virtual_addresses: [198.51.100.1], sync_group: VG}
  - {name: VI_ALONE, interface: eth0, vrid: 53, virtual_addresses: [192.0.2.20]}
",
            "test.yaml",
        )
        .expect("parses");
        let groups = SyncGroup::of(&config.vrrp);
        assert_eq!(groups.keys().collect::<Vec<_>>(), ["VG"]);
        let group = &groups["VG"];
        let mut watching = group.watch();
        let start = watching.borrow_and_update().clone();
        assert!(
            start.values().all(|word| *word == Member::Starting),
            "{start:?}"
        );
        assert!(fellows_starting(&start, "VI_EXT"));
        assert_eq!(
            group.fellows_fault(&start, "VI_EXT"),
            None,
            "starting is no fault"
        );
        group.report("VI_INT", None);
        assert!(watching.has_changed().unwrap());
        let spoken = watching.borrow_and_update().clone();
        assert!(!fellows_starting(&spoken, "VI_EXT"));
        assert!(fellows_starting(&spoken, "VI_INT"), "VI_EXT has not spoken");
        group.report("VI_INT", None);
        assert!(!watching.has_changed().unwrap(), "nothing changed");
        group.report("VI_INT", Some("eth1 is down".into()));
        assert!(watching.has_changed().unwrap());
        let now = watching.borrow_and_update().clone();
        assert!(group.fellows_fault(&now, "VI_EXT").is_some());
    }
}

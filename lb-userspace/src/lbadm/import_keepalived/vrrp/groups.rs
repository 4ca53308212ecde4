//! `vrrp_sync_group` → the `sync_group` of each member lbd converted.
//!
//! lbd's groups share their members' faults only: keepalived's also move them to BACKUP and
//! MASTER together, which an election does anyway when a node's routers have the same
//! priorities (each converted group's comment says so).

use std::collections::BTreeMap;

use super::super::{
    convert::{Notes, valid_name},
    parse::Directive,
    yaml::Vrrp,
};

/// Gives each converted member of `blocks`' groups its `sync_group`. A group left with fewer
/// than two converted members, a member that is no converted instance or already in a group,
/// and the groups' own settings (hooks, tracking) are listed.
pub(super) fn sync_groups(
    notes: &mut Notes,
    blocks: &[&Directive],
    converted: &mut [(String, Vrrp)],
) {
    // lbd's group name → where its group is written.
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for block in blocks {
        let written = block.value().unwrap_or_default();
        let name = valid_name(written);
        if name.is_empty() {
            notes.skip(block, "it has no name");
            continue;
        }
        if let Some(earlier) = taken.get(&name) {
            notes.skip(
                block,
                format!("its name, as lbd writes it, is {name}, as is the group's at {earlier}"),
            );
            continue;
        }
        // Indexes into `converted` of this group's members.
        let mut members: Vec<usize> = Vec::new();
        for directive in block.children() {
            if directive.keyword != "group" {
                notes.skip(directive, reason(&directive.keyword));
                continue;
            }
            for member in directive.children() {
                match converted
                    .iter()
                    .position(|(written_name, _)| *written_name == member.keyword)
                {
                    None => notes.skip(
                        member,
                        "no vrrp_instance of that name was converted, so it joins no group",
                    ),
                    Some(index) if members.contains(&index) => {
                        notes.skip(member, "it is listed twice")
                    }
                    Some(index) => match &converted[index].1.sync_group {
                        Some(other) => notes.skip(
                            member,
                            format!("it is already in sync group {other}; an instance is in one"),
                        ),
                        None => members.push(index),
                    },
                }
            }
        }
        if members.len() < 2 {
            notes.skip(
                block,
                "fewer than two of its instances were converted, and a group of one moves \
                 nothing",
            );
            continue;
        }
        for index in members {
            let vrrp = &mut converted[index].1;
            vrrp.sync_group = Some(name.clone());
            vrrp.comment.push_str(&format!(
                "\nsync_group {name}: keepalived's vrrp_sync_group {written} at {}; in lbd \
                 its routers\nfault together (priorities stay each router's own)",
                block.at.place()
            ));
        }
        taken.insert(name, block.at.place());
    }
}

fn reason(keyword: &str) -> &'static str {
    match keyword {
        "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify" => {
            "lbd runs each router's hooks, not a group's: put the command in the members' \
             hooks"
        }
        "track_interface" | "track_script" | "track_file" | "track_process" | "track_bfd" => {
            "lbd's groups track nothing of their own: track on a member, and the group \
             faults with it"
        }
        "global_tracking" | "sync_group_tracking_weight" => {
            "lbd's groups share faults only, not tracking weights"
        }
        "smtp_alert" => "lbd sends no mail",
        _ => "lbd's sync groups have no such setting",
    }
}

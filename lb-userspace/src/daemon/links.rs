//! The program's attachments to interfaces, at start-up and when a change adds or removes an
//! interface: attach (or swap into a pinned link), detach, and what the kernel reports.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use crate::{
    admin::{AdminContext, InterfaceStatus},
    config::InterfaceConfig,
    dataplane::loader::{self, Attachment, LoadError},
    neighbour::{InterfaceInfo, NeighbourError, Neighbours},
};

/// The loaded program and where its links are pinned.
pub struct Links {
    ebpf: Arc<Mutex<aya::Ebpf>>,
    pin_dir: PathBuf,
    /// Reads how XDP is attached, for the statuses.
    neighbours: Neighbours,
    /// Where the statuses are shown (`lbadm status`, metrics, the status page).
    context: Arc<AdminContext>,
}

impl Links {
    pub fn new(
        ebpf: Arc<Mutex<aya::Ebpf>>,
        pin_dir: PathBuf,
        context: Arc<AdminContext>,
    ) -> Result<Self, NeighbourError> {
        Ok(Self {
            ebpf,
            pin_dir,
            neighbours: Neighbours::new()?,
            context,
        })
    }

    /// Attaches the program to `interface` (or swaps it into the link pinned for it) and logs
    /// how the kernel attached it.
    pub async fn attach(
        &self,
        interface: &InterfaceConfig,
        info: &InterfaceInfo,
    ) -> Result<InterfaceStatus, LoadError> {
        let how = {
            let mut ebpf = self
                .ebpf
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            loader::attach(
                &mut ebpf,
                &interface.name,
                info.index,
                info.mtu,
                interface.xdp_mode,
                Some(&self.pin_dir),
            )?
        };
        let status = self.status(interface, info).await;
        let verb = match how {
            Attachment::Attached => "attached to",
            Attachment::Replaced => "replaced the program on",
        };
        log::info!(
            "{verb} {} (xdp mode {}, requested {}; MTU {})",
            interface.name,
            status.attached_mode.as_deref().unwrap_or("unknown"),
            interface.xdp_mode.name(),
            info.mtu
        );
        Ok(status)
    }

    /// Detaches the program from `name` and removes its pinned link.
    pub fn detach(&self, name: &str) {
        match loader::detach_link(&self.pin_dir, name) {
            Ok(()) => log::info!("detached from {name}"),
            Err(error) => log::warn!(
                "detaching from {name} ({}): {error}",
                loader::link_pin_path(&self.pin_dir, name).display()
            ),
        }
    }

    /// What the kernel reports about the program on `info`'s interface.
    pub async fn status(
        &self,
        interface: &InterfaceConfig,
        info: &InterfaceInfo,
    ) -> InterfaceStatus {
        let attachment = self
            .neighbours
            .xdp_attachment(info.index)
            .await
            .unwrap_or_else(|error| {
                log::warn!("reading how XDP is attached to {}: {error}", interface.name);
                None
            });
        InterfaceStatus {
            name: interface.name.clone(),
            ifindex: info.index,
            requested_mode: interface.xdp_mode.name().to_owned(),
            attached_mode: attachment.map(|a| a.mode.to_owned()),
            program_id: attachment.map(|a| a.program_id),
            mtu: info.mtu,
        }
    }

    /// The loaded program, for the daemon to keep.
    pub fn program(&self) -> Arc<Mutex<aya::Ebpf>> {
        self.ebpf.clone()
    }

    /// Shows `statuses` from now on.
    pub fn publish(&self, statuses: Vec<InterfaceStatus>) {
        self.context.set_interfaces(statuses);
    }
}

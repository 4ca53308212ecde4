//! Notify hooks: the program configured for a state, run with keepalived's `notify`
//! arguments appended (`INSTANCE`, the router's name, the state, the priority). Run without
//! a shell, not waited for (a slow hook must not delay adverts); one that fails is logged.

use std::process::Stdio;

use super::machine::State;
use crate::config::ha::VrrpInstanceConfig;

pub fn run(config: &VrrpInstanceConfig, state: State, priority: u8) {
    let (command, word) = match state {
        State::Master => (&config.hooks.on_master, "MASTER"),
        State::Backup => (&config.hooks.on_backup, "BACKUP"),
        State::Fault => (&config.hooks.on_fault, "FAULT"),
        State::Initialize => (&config.hooks.on_stop, "STOP"),
    };
    let Some(command) = command else {
        return;
    };
    let Some((program, arguments)) = command.split_first() else {
        return;
    };
    let spawned = tokio::process::Command::new(program)
        .args(arguments)
        .args(["INSTANCE", &config.name, word, &priority.to_string()])
        .stdin(Stdio::null())
        .kill_on_drop(false)
        .spawn();
    let name = config.name.clone();
    let program = program.clone();
    match spawned {
        Ok(mut child) => {
            tokio::spawn(async move {
                match child.wait().await {
                    Ok(status) if status.success() => {}
                    Ok(status) => log::warn!("vrrp {name}: hook {program} {word}: {status}"),
                    Err(error) => log::warn!("vrrp {name}: hook {program} {word}: {error}"),
                }
            });
        }
        Err(error) => log::warn!("vrrp {name}: running hook {program} {word}: {error}"),
    }
}

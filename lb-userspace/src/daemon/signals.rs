//! Signals: SIGTERM and SIGINT stop lbd cleanly (the XDP program keeps forwarding); SIGHUP
//! re-reads and validates the config file and says so in the log. Until live reconfiguration
//! lands, a valid new config is not applied: the log says to restart.
//!
//! The handlers are installed before anything slow happens at start-up, so that a SIGHUP
//! sent by `systemctl reload` at any moment never kills the daemon (the default action).

use std::{io, path::PathBuf};

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::config;

pub struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    pub fn install() -> io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Completes on SIGTERM or SIGINT; meanwhile answers every SIGHUP by validating the
    /// config at `config_path`.
    pub async fn stopped(mut self, config_path: PathBuf) {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => {
                    log::info!("SIGTERM: stopping");
                    return;
                }
                _ = self.interrupt.recv() => {
                    log::info!("SIGINT: stopping");
                    return;
                }
                _ = self.hangup.recv() => {
                    let path = config_path.clone();
                    // Parsing a large config takes a while: not on the runtime's threads.
                    let _ = tokio::task::spawn_blocking(move || reload_requested(&path)).await;
                }
            }
        }
    }
}

fn reload_requested(config_path: &std::path::Path) {
    match config::load(config_path) {
        Ok(config) => log::warn!(
            "SIGHUP: {} is valid ({} services) but NOT applied: live reload is not implemented \
             yet; restart lbd to apply it (forwarding continues across a restart)",
            config_path.display(),
            config.services.len()
        ),
        Err(error) => log::error!("SIGHUP: config rejected, nothing changed: {error}"),
    }
}

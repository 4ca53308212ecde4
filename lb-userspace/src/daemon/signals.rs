//! Signals: SIGTERM and SIGINT stop lbd cleanly (the XDP program keeps forwarding); SIGHUP
//! reloads the config file (the control task applies it, or refuses it whole and logs why).
//!
//! The handlers are installed before anything slow happens at start-up, so that a SIGHUP
//! sent by `systemctl reload` at any moment never kills the daemon (the default action).

use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{ControlHandle, notify};

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

    /// Completes on SIGTERM or SIGINT; meanwhile answers every SIGHUP with a reload.
    pub async fn stopped(mut self, control: ControlHandle) {
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
                    log::info!("SIGHUP: reloading the config");
                    // On a task of its own, so that a SIGTERM during a reload is heard; the
                    // control task applies reloads one after the other, and logs each outcome.
                    let control = control.clone();
                    tokio::spawn(async move {
                        notify::reloading();
                        let _ = control.reload().await;
                        notify::ready();
                    });
                }
            }
        }
    }
}

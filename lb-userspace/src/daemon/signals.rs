//! Signals: SIGTERM and SIGINT stop lbd cleanly (the XDP program keeps forwarding); SIGHUP
//! reloads the config file (the control task applies it, or refuses it whole and logs why).
//!
//! The handlers are installed before anything slow happens at start-up, so that a SIGHUP
//! sent by `systemctl reload` at any moment never kills the daemon (the default action).

use std::{io, sync::Arc};

use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::Notify,
};

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

    /// Completes on SIGTERM or SIGINT; meanwhile answers SIGHUP with a reload. Reloads run
    /// on a task of their own, so a SIGTERM during one is heard; SIGHUPs that come during a
    /// reload make one more after it (the file is read then), not one each.
    pub async fn stopped(mut self, control: ControlHandle) {
        let requested = Arc::new(Notify::new());
        let reloader = tokio::spawn(reload_when_asked(requested.clone(), control));
        loop {
            tokio::select! {
                _ = self.terminate.recv() => {
                    log::info!("SIGTERM: stopping");
                    break;
                }
                _ = self.interrupt.recv() => {
                    log::info!("SIGINT: stopping");
                    break;
                }
                _ = self.hangup.recv() => {
                    log::info!("SIGHUP: reloading the config");
                    requested.notify_one();
                }
            }
        }
        // A reload cut short here leaves the state as it was (the control task applies a
        // change whole or not at all), and no READY=1 follows STOPPING=1.
        reloader.abort();
        let _ = reloader.await;
    }
}

/// Runs a reload each time one is asked for (asks while one runs make a single one after).
async fn reload_when_asked(requested: Arc<Notify>, control: ControlHandle) {
    loop {
        requested.notified().await;
        notify::reloading();
        // The outcome is logged by the control task.
        let _ = control.reload().await;
        notify::ready();
    }
}

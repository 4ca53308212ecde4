//! systemd's readiness protocol (`sd_notify`), for `Type=notify` units: a datagram to the
//! socket named by `$NOTIFY_SOCKET`. Without that variable (not started by systemd) every
//! call does nothing.

use std::{
    os::{linux::net::SocketAddrExt, unix::net::UnixDatagram},
    time::Duration,
};

/// Start-up is done: the program forwards and the admin socket answers.
pub fn ready() {
    send("READY=1");
}

/// A reload begins; [`ready`] says it ended. systemd wants the monotonic clock's reading
/// with it, to tell this reload from an earlier one.
pub fn reloading() {
    let now = monotonic_now();
    send(&format!("RELOADING=1\nMONOTONIC_USEC={}", now.as_micros()));
}

/// lbd is stopping (the program keeps forwarding).
pub fn stopping() {
    send("STOPPING=1");
}

fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = (|| {
        let socket = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        // `@name` is a socket in the abstract namespace.
        if let Some(name) = bytes.strip_prefix(b"@") {
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &address)?;
        } else {
            socket.send_to(state.as_bytes(), &path)?;
        }
        std::io::Result::Ok(())
    })();
    if let Err(error) = result {
        log::warn!("telling systemd {state:?}: {error}");
    }
}

fn monotonic_now() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write to; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

//! Named network namespaces (`ip netns`), removed on drop, and ways to run code inside them.
//!
//! Three ways in, for three needs:
//! - [`Netns::exec`] / [`Netns::ip`]: configuration commands (`ip netns exec` also gives the
//!   command a private /sys showing the namespace's interfaces).
//! - [`Netns::run`]: Rust code (sockets, aya loads) on a thread that joined the namespace.
//! - [`Netns::spawn`]: a long-running process (a daemon) that joins the network namespace only,
//!   so that it still sees the host's mounts, /sys/fs/bpf included.

use std::{
    fs::File,
    net::SocketAddr,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::PathBuf,
    process::{Child, Command, Output},
};

/// A network namespace created by the test, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` (`ip netns add`). Panics if it exists or cannot be made.
    pub fn create(name: &str) -> Netns {
        checked(Command::new("ip").args(["netns", "add", name]));
        Netns {
            name: name.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's handle in the filesystem, `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `ip netns exec NAME args...` and returns its stdout; panics with its stderr if it
    /// fails.
    pub fn exec(&self, args: &[&str]) -> String {
        checked(
            Command::new("ip")
                .args(["netns", "exec", &self.name])
                .args(args),
        )
    }

    /// Runs `ip -n NAME args...` and returns its stdout; panics with its stderr if it fails.
    pub fn ip(&self, args: &[&str]) -> String {
        checked(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Sets a sysctl of this namespace, e.g. `sysctl("net.ipv4.conf.all.arp_ignore", "1")`.
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        // /proc/sys/net shows the namespace of the thread that opens it.
        self.run(|| {
            std::fs::write(&path, value).unwrap_or_else(|error| {
                panic!("sysctl {key}={value} in netns {}: {error}", self.name)
            })
        });
    }

    /// Runs `f` on a new thread that has joined this namespace, and returns its result.
    ///
    /// A socket keeps the namespace it was created in, so listeners bound here may be served
    /// from any thread afterwards. A panic in `f` is propagated.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let handle = self.open();
        std::thread::scope(|scope| {
            let thread = std::thread::Builder::new()
                .name(format!("netns {}", self.name))
                .spawn_scoped(scope, move || {
                    // SAFETY: setns on a valid namespace fd; it changes only this thread.
                    if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        panic!(
                            "setns into netns {}: {}",
                            self.name,
                            std::io::Error::last_os_error()
                        );
                    }
                    drop(handle);
                    f()
                })
                .unwrap_or_else(|error| {
                    panic!("spawning a thread for netns {}: {error}", self.name)
                });
            match thread.join() {
                Ok(result) => result,
                Err(payload) => std::panic::resume_unwind(payload),
            }
        })
    }

    /// Like [`Netns::run`], but the thread runs on while the caller goes on: for traffic that
    /// runs while a test changes things. Join the handle to get `f`'s result.
    pub fn spawn_thread<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> std::thread::JoinHandle<R> {
        let handle = self.open();
        let name = self.name.clone();
        std::thread::Builder::new()
            .name(format!("netns {name}"))
            .spawn(move || {
                // SAFETY: setns on a valid namespace fd; it changes only this thread.
                if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    panic!(
                        "setns into netns {name}: {}",
                        std::io::Error::last_os_error()
                    );
                }
                drop(handle);
                f()
            })
            .unwrap_or_else(|error| panic!("spawning a thread for netns {}: {error}", self.name))
    }

    /// Spawns `command` inside this namespace. Unlike `ip netns exec`, only the network
    /// namespace changes: the child keeps the host's mount namespace, so it sees the real
    /// /sys/fs/bpf (pinned maps) — but /sys/class/net still lists the host's interfaces.
    pub fn spawn(&self, mut command: Command) -> Child {
        let handle = self.open();
        let fd = handle.as_raw_fd();
        // SAFETY: the closure runs between fork and exec and only calls setns, which is
        // async-signal-safe. `handle` outlives the spawn, so fd is open in the child (it is
        // O_CLOEXEC, closed only by the exec).
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("spawning {command:?} in netns {}: {error}", self.name));
        drop(handle);
        child
    }

    /// Sends one raw Ethernet frame out of `interface` of this namespace (AF_PACKET), e.g. a
    /// gratuitous ARP that no tool here would send.
    pub fn send_frame(&self, interface: &str, frame: &[u8]) {
        self.send_frames(interface, std::iter::once(frame.to_vec()));
    }

    /// Sends each of `frames` out of `interface` of this namespace, on one AF_PACKET socket
    /// (a flood of crafted frames, bounded by the iterator).
    pub fn send_frames(&self, interface: &str, frames: impl Iterator<Item = Vec<u8>> + Send) {
        self.run(|| {
            let name = std::ffi::CString::new(interface).expect("interface name");
            // SAFETY: plain syscalls on a socket we own; sockaddr_ll is zeroed then filled.
            unsafe {
                let ifindex = libc::if_nametoindex(name.as_ptr());
                assert_ne!(
                    ifindex, 0,
                    "no interface {interface} in netns {}",
                    self.name
                );
                let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
                assert!(
                    fd >= 0,
                    "AF_PACKET socket: {}",
                    std::io::Error::last_os_error()
                );
                for frame in frames {
                    let mut address: libc::sockaddr_ll = std::mem::zeroed();
                    address.sll_family = libc::AF_PACKET as u16;
                    address.sll_ifindex = ifindex as i32;
                    address.sll_halen = 6;
                    address.sll_addr[..6].copy_from_slice(&frame[..6]);
                    let sent = libc::sendto(
                        fd,
                        frame.as_ptr().cast(),
                        frame.len(),
                        0,
                        (&address as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    );
                    if sent != frame.len() as isize {
                        let error = std::io::Error::last_os_error();
                        libc::close(fd);
                        panic!("sending on {interface}: {error}");
                    }
                }
                libc::close(fd);
            }
        });
    }

    /// Peers of the established TCP connections whose local port is `port`, as `ss` lists
    /// them (IPv4-mapped IPv6 addresses written as IPv4): whom a server believes it talks to.
    pub fn tcp_peers(&self, port: u16) -> Vec<SocketAddr> {
        let filter = format!("( sport = :{port} )");
        let listing = self.exec(&["ss", "-Htn", "state", "established", &filter]);
        listing
            .lines()
            .filter_map(|line| line.split_whitespace().last())
            .map(|peer| {
                let peer: SocketAddr = peer
                    .parse()
                    .unwrap_or_else(|e| panic!("peer {peer:?} in {listing:?}: {e}"));
                SocketAddr::new(peer.ip().to_canonical(), peer.port())
            })
            .collect()
    }

    fn open(&self) -> File {
        File::open(self.path())
            .unwrap_or_else(|error| panic!("opening {}: {error}", self.path().display()))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Never panic here: drops also run while a failing test unwinds.
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .output()
        {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "ip netns del {}: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(error) => eprintln!("ip netns del {}: {error}", self.name),
        }
    }
}

/// Names of all named network namespaces (`ip netns list`).
pub fn list() -> Vec<String> {
    checked(Command::new("ip").args(["netns", "list"]))
        .lines()
        // Lines look like `name (id: 3)` or just `name`.
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Deletes the namespaces whose names start with `prefix`: leftovers of an earlier run that
/// was killed before its guards could clean up.
pub fn remove_leftovers(prefix: &str) {
    assert!(
        !prefix.is_empty(),
        "remove_leftovers needs a prefix; an empty one matches every namespace"
    );
    for name in list().into_iter().filter(|name| name.starts_with(prefix)) {
        checked(Command::new("ip").args(["netns", "del", &name]));
    }
}

/// Runs a command to completion; returns its stdout, panics with its stderr if it fails.
pub(crate) fn checked(command: &mut Command) -> String {
    let output: Output = command
        .output()
        .unwrap_or_else(|error| panic!("running {command:?}: {error}"));
    if !output.status.success() {
        panic!(
            "{command:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;

    use super::*;
    use crate::privilege::require_root;

    #[test]
    fn netns_runs_code_and_processes_and_cleans_up() {
        if !require_root("netns_runs_code_and_processes_and_cleans_up") {
            return;
        }
        let prefix = format!("lbt-n-{}-", std::process::id());
        remove_leftovers(&prefix);
        {
            let netns = Netns::create(&format!("{prefix}a"));
            netns.ip(&["addr", "add", "198.51.100.1/32", "dev", "lo"]);
            netns.ip(&["link", "set", "lo", "up"]);

            // A socket made in `run` belongs to the namespace: its address exists only there.
            let bound = netns.run(|| std::net::UdpSocket::bind("198.51.100.1:0").map(|_| ()));
            assert!(bound.is_ok(), "{bound:?}");
            assert!(
                std::net::UdpSocket::bind("198.51.100.1:0").is_err(),
                "address leaked to the root namespace"
            );

            netns.sysctl("net.ipv4.ip_forward", "1");
            assert_eq!(
                netns.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
                "1"
            );

            let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                netns.run(|| panic!("inside"))
            }));
            let payload = panic.expect_err("the panic in run must propagate");
            assert_eq!(payload.downcast_ref::<&str>(), Some(&"inside"));

            // spawn: the network namespace changes, the mounts do not.
            let mut command = Command::new("ip");
            command
                .args(["-o", "addr", "show", "dev", "lo"])
                .stdout(Stdio::piped());
            let output = netns
                .spawn(command)
                .wait_with_output()
                .expect("waiting for ip");
            assert!(String::from_utf8_lossy(&output.stdout).contains("198.51.100.1/32"));
        }
        let left = list()
            .into_iter()
            .filter(|name| name.starts_with(&prefix))
            .collect::<Vec<_>>();
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
    }

    #[test]
    fn remove_leftovers_takes_only_the_prefix() {
        if !require_root("remove_leftovers_takes_only_the_prefix") {
            return;
        }
        let prefix = format!("lbt-l-{}-", std::process::id());
        let other = Netns::create(&format!("{prefix}keep"));
        // Simulates a run killed before its guards ran: nothing will delete these but us.
        checked(Command::new("ip").args(["netns", "add", &format!("{prefix}x-1")]));
        checked(Command::new("ip").args(["netns", "add", &format!("{prefix}x-2")]));
        remove_leftovers(&format!("{prefix}x-"));
        let left = list()
            .into_iter()
            .filter(|name| name.starts_with(&prefix))
            .collect::<Vec<_>>();
        assert_eq!(left, [other.name()]);
    }
}

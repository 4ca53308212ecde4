//! keepalived (Debian's package, `cargo xtask setup` installs it) as lbd's VRRP peer, in a
//! test namespace: its config, pid files and log in a directory of its own.

use std::{
    fs::File,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::netns::Netns;

pub struct Keepalived {
    dir: PathBuf,
    child: Option<Child>,
    netns_name: String,
}

/// A `vrrp_instance` for the VIP (IPv4 or IPv6: the instance's family) on eth0, VRRPv3,
/// multicast (224.0.0.18, or ff02::12 from the link-local address) unless `unicast` names the
/// source and the peer. With a peer, keepalived accepts adverts from that peer only
/// (`check_unicast_src`; it takes them from any source otherwise), as lbd does.
pub fn config(
    priority: u8,
    advert_s: f64,
    vip: &str,
    unicast: Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)>,
) -> String {
    let unicast = unicast
        .map(|(source, peer)| {
            format!(
                "  unicast_src_ip {source}\n  check_unicast_src\n  \
                 unicast_peer {{\n    {peer}\n  }}\n"
            )
        })
        .unwrap_or_default();
    let prefix_len = if vip.contains(':') { 128 } else { 32 };
    format!(
        "global_defs {{
  router_id lbtest
  vrrp_version 3
}}
vrrp_instance VI_1 {{
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority {priority}
  advert_int {advert_s}
{unicast}  virtual_ipaddress {{
    {vip}/{prefix_len}
  }}
}}
"
    )
}

impl Keepalived {
    /// Starts keepalived (VRRP only, in the foreground, logging to a file) in `netns` with
    /// `config`, files under a directory named after `name`.
    pub fn start(netns: &Netns, name: &str, config: &str) -> Keepalived {
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let conf = dir.join("keepalived.conf");
        std::fs::write(&conf, config).expect("writing keepalived.conf");
        let log = File::create(dir.join("keepalived.log")).expect("creating the keepalived log");
        let mut command = Command::new("keepalived");
        command
            .arg("--dont-fork")
            .arg("--log-console")
            .arg("--log-detail")
            .arg("--vrrp")
            .arg(format!("--use-file={}", conf.display()))
            .arg(format!("--pid={}", dir.join("keepalived.pid").display()))
            .arg(format!("--vrrp_pid={}", dir.join("vrrp.pid").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        let child = netns.spawn(command);
        Keepalived {
            dir,
            child: Some(child),
            netns_name: netns.name().to_owned(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("keepalived.log")).unwrap_or_default()
    }

    /// Waits (bounded) until the log contains `text`.
    pub fn wait_for_log(&self, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.log().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn signal(&self, signal: libc::c_int) {
        if let Some(child) = &self.child {
            // SAFETY: kill with a pid we own and have not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }

    /// Kills keepalived as a crash would, without a priority-0 advert. Its VRRP work runs in a
    /// child process that the parent's death sends SIGTERM (a graceful stop), and that the
    /// parent restarts when it dies alone: so the child is frozen first, then both are killed.
    pub fn kill(&mut self) {
        let child_pid = std::fs::read_to_string(self.dir.join("vrrp.pid"))
            .ok()
            .and_then(|text| text.trim().parse::<libc::pid_t>().ok());
        // SAFETY: kill with pids keepalived wrote (its VRRP child) or we own.
        if let Some(pid) = child_pid {
            unsafe { libc::kill(pid, libc::SIGSTOP) };
        }
        if let Some(mut parent) = self.child.take() {
            let _ = parent.kill();
            let _ = parent.wait();
        }
        if let Some(pid) = child_pid {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    /// SIGTERM (keepalived then sends its priority-0 advert and removes its addresses), and
    /// a bounded wait; SIGKILL after the bound.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: as in `signal`.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("keepalived in {} did not stop: killing it", self.netns_name);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

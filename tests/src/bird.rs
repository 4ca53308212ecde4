//! BIRD 2 (Debian's `bird2`, `cargo xtask setup` installs it) in a test namespace: the BGP
//! speaker of the scale-out tests, on the router and on each balancer.
//!
//! [`Bird`] runs `bird -f` (in the foreground, so that the child is BIRD itself and a kill
//! reaches it) with its config, control socket, pid file and log in a directory of its own,
//! and waits until `birdc` gets an answer on the socket. Dropping it kills BIRD and removes
//! the directory, also while a failing test unwinds (then the log is printed first).

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::netns::Netns;

/// How long BIRD may take to read its config and open its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one birdc command may take.
const BIRDC_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Bird {
    dir: PathBuf,
    socket: PathBuf,
    child: Option<Child>,
    netns_name: String,
}

impl Bird {
    /// Starts BIRD in `netns` with `config` (logging to the directory's `bird.log` is added
    /// in front of it); its files go to the directory `<temp>/<name>`, made afresh. Returns
    /// once BIRD answers on its control socket; panics with its output if it exits first.
    pub fn start(netns: &Netns, name: &str, config: &str) -> Bird {
        let dir = Bird::make_dir(name);
        Bird::start_in(netns, dir, config)
    }

    /// Makes (afresh) the directory [`Bird::start`] would use for `name`, for a caller that
    /// puts files there before BIRD starts (an include file another process writes). Pass it
    /// to [`Bird::start_in`].
    pub fn make_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        dir
    }

    /// [`Bird::start`] in a directory made by [`Bird::make_dir`] (removed on drop).
    pub fn start_in(netns: &Netns, dir: PathBuf, config: &str) -> Bird {
        let conf = dir.join("bird.conf");
        let log = dir.join("bird.log");
        std::fs::write(&conf, format!("log \"{}\" all;\n{config}", log.display()))
            .unwrap_or_else(|e| panic!("writing {}: {e}", conf.display()));
        let output = File::create(dir.join("bird.out")).expect("creating BIRD's output file");
        let socket = Bird::socket_in(&dir);
        let mut command = Command::new("bird");
        command
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(dir.join("bird.pid"))
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("output fd"))
            .stderr(output);
        let mut bird = Bird {
            dir,
            socket,
            child: None,
            netns_name: netns.name().to_owned(),
        };
        bird.child = Some(netns.spawn(command));
        bird.wait_ready();
        bird
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "BIRD in {} exited with {status} while starting:\n{}",
                    self.netns_name,
                    self.output()
                );
            }
            if let Ok(output) = self.try_birdc(&["show", "status"])
                && output.status.success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "BIRD in {} not answering on {} after {START_TIMEOUT:?}:\n{}",
                self.netns_name,
                self.socket.display(),
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The control socket BIRD started by [`Bird::start_in`]`(dir)` will have: for a
    /// config naming it before BIRD runs (lbd's `bgp.bird_socket`).
    pub fn socket_in(dir: &Path) -> PathBuf {
        dir.join("bird.ctl")
    }

    /// The control socket (`-s`), e.g. for lbd's `bgp.bird_socket`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The directory holding BIRD's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `birdc -s SOCKET ARGS...`: its output; panics if birdc fails (BIRD down, or an
    /// error reply).
    pub fn birdc(&self, args: &[&str]) -> String {
        let output = self
            .try_birdc(args)
            .unwrap_or_else(|e| panic!("running birdc {args:?}: {e}"));
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "birdc {args:?} on {} failed ({}): {text}{}",
            self.netns_name,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        text
    }

    /// `birdc -s SOCKET ARGS...` as it went. The socket is a file: birdc needs no namespace.
    pub fn try_birdc(&self, args: &[&str]) -> std::io::Result<Output> {
        let mut child = Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // A wedged BIRD whose socket still accepts must not hang the test.
        let deadline = Instant::now() + BIRDC_TIMEOUT;
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("birdc {args:?} did not finish within {BIRDC_TIMEOUT:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait_with_output()
    }

    /// `birdc configure`: BIRD reads its config (and what it includes) again. Panics unless
    /// BIRD says it reconfigured (or that nothing changed).
    pub fn configure(&self) {
        let reply = self.birdc(&["configure"]);
        assert!(
            reply.contains("Reconfigured") || reply.contains("Reconfiguration in progress"),
            "birdc configure in {}: {reply}",
            self.netns_name
        );
    }

    /// The state column of `show protocols` for protocol `name` (e.g. `up`, `start`), with
    /// its info column (e.g. `Established`).
    pub fn protocol_state(&self, name: &str) -> Option<String> {
        let listing = self.birdc(&["show", "protocols", name]);
        listing
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .map(|line| {
                let columns: Vec<&str> = line.split_whitespace().collect();
                // Name Proto Table State Since(time) Info...
                let state = columns.get(3).copied().unwrap_or("");
                let info = columns
                    .get(5..)
                    .map(|info| info.join(" "))
                    .unwrap_or_default();
                format!("{state} {info}").trim().to_owned()
            })
    }

    /// What BIRD logged (its `log` file) and printed.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default();
        format!("{log}{}", self.output())
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("bird.out")).unwrap_or_default()
    }

    /// Whether BIRD is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().ok().flatten().is_none())
    }

    /// SIGKILL, as a crash: BIRD sends no notification, though the kernel still closes its
    /// TCP sessions (a FIN to each peer) unless its link is down first.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "BIRD log ({} in {}):\n{}",
                self.dir.display(),
                self.netns_name,
                self.log()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privilege::require_root;

    #[test]
    fn bird_starts_answers_reconfigures_and_cleans_up() {
        if !require_root("bird_starts_answers_reconfigures_and_cleans_up") {
            return;
        }
        let prefix = format!("lbso-bird-{}-", std::process::id());
        crate::netns::remove_leftovers(&prefix);
        let netns = Netns::create(&format!("{prefix}a"));
        let name = format!("{prefix}files");
        let (dir, pid) = {
            let mut bird = Bird::start(
                &netns,
                &name,
                "router id 198.51.100.1;\nprotocol device {}\n",
            );
            assert!(
                bird.birdc(&["show", "status"])
                    .contains("Daemon is up and running"),
                "{}",
                bird.log()
            );
            assert_eq!(bird.protocol_state("device1").as_deref(), Some("up"));
            bird.configure();
            assert!(bird.running());
            let pid = bird.child.as_ref().map(Child::id).expect("BIRD runs");
            (bird.dir().to_path_buf(), pid)
        };
        assert!(!dir.exists(), "{} left behind", dir.display());
        // SAFETY: signal 0 only asks whether the pid exists.
        let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
        assert!(!alive, "BIRD (pid {pid}) still runs after the drop");
    }

    #[test]
    fn a_bad_config_is_reported_with_birds_words() {
        if !require_root("a_bad_config_is_reported_with_birds_words") {
            return;
        }
        let prefix = format!("lbso-birdbad-{}-", std::process::id());
        crate::netns::remove_leftovers(&prefix);
        let netns = Netns::create(&format!("{prefix}a"));
        let name = format!("{prefix}files");
        let started =
            std::panic::catch_unwind(|| Bird::start(&netns, &name, "protocol nonsense;\n"));
        let message = started.err().expect("BIRD must refuse the config");
        let message = message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(
            message.contains("exited") && message.contains("syntax error"),
            "{message}"
        );
    }
}

//! The pid file: holds lbd's pid, and an exclusive lock on it for as long as lbd runs, so a
//! second daemon for the same instance refuses to start instead of fighting the first over
//! the maps. The lock goes with the process, however it ends: a file left by a daemon that
//! was killed is not locked, and is taken over (the log says so).

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, Write},
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("pid file {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another lbd{} already runs this instance (it holds the lock on {}); stop it first",
        .pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default(),
        .path.display()
    )]
    Locked { path: PathBuf, pid: Option<u32> },
}

/// The locked pid file; removed when dropped (a clean stop).
pub struct PidFile {
    path: PathBuf,
    /// Holds the lock until it closes.
    _file: File,
}

impl PidFile {
    /// Locks `path` (creating it and its directory) and writes this process's pid into it.
    pub fn lock(path: &Path) -> Result<PidFile, PidFileError> {
        let io = |source| PidFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        // A daemon stopping removes its file while holding the lock: a file opened just
        // before that is locked in vain, as nobody else will open it again. Retried on the
        // file now at the path.
        for _ in 0..LOCK_ATTEMPTS {
            let (mut file, previous) = open_and_lock(path)?;
            let opened = file.metadata().map_err(io)?;
            let at_path = match std::fs::metadata(path) {
                Ok(metadata) => metadata,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io(error)),
            };
            if (opened.dev(), opened.ino()) != (at_path.dev(), at_path.ino()) {
                continue;
            }
            if let Some(pid) = previous {
                log::warn!(
                    "pid file {} names pid {pid}, which holds no lock (a daemon that was \
                     killed or crashed): taking it over",
                    path.display()
                );
            }
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            writeln!(file, "{}", std::process::id()).map_err(io)?;
            return Ok(PidFile {
                path: path.to_path_buf(),
                _file: file,
            });
        }
        Err(io(std::io::Error::other(
            "the file kept being replaced while lbd locked it",
        )))
    }
}

/// Tries before giving up on a pid file that keeps being replaced.
const LOCK_ATTEMPTS: usize = 5;

/// Opens (or creates) the file and takes its lock; also the pid it held.
fn open_and_lock(path: &Path) -> Result<(File, Option<u32>), PidFileError> {
    let io = |source| PidFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    let mut previous = String::new();
    let _ = file.read_to_string(&mut previous);
    let previous: Option<u32> = previous.trim().parse().ok();
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(PidFileError::Locked {
                path: path.to_path_buf(),
                pid: previous,
            });
        }
        return Err(io(error));
    }
    Ok((file, previous))
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Removed while still locked (the file closes after this), so no other daemon locks the
        // file in between and then loses it.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_a_stale_file_is_taken_over() {
        let dir = std::env::temp_dir().join(format!("lb-pidfile-{}", std::process::id()));
        let path = dir.join("lb1.pid");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, "999999\n").unwrap();
        let held = PidFile::lock(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        // flock locks belong to the open file description: a second open is refused.
        let refused = PidFile::lock(&path).err().unwrap().to_string();
        assert!(
            refused.contains(&format!("(pid {})", std::process::id()))
                && refused.contains("already runs this instance"),
            "{refused}"
        );
        drop(held);
        assert!(!path.exists(), "a clean stop removes the pid file");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! lbadm's side of the admin socket.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{Reply, Request};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach lbd at {path}: {source} (is lbd running? is --socket right?)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to lbd at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lbd at {path} sent a reply this lbadm does not understand: {source}")]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("lbd: {0}")]
    Daemon(String),
    #[error(
        "refusing {path}: the socket belongs to uid {owner}, neither root nor you (uid {me}); \
         another user's process may be posing as lbd"
    )]
    ForeignOwner { path: PathBuf, owner: u32, me: u32 },
}

/// Connects to lbd's socket. A socket owned by someone other than root or the caller is
/// refused before connecting: whoever owns it could answer in lbd's place (a listing that
/// hides a service, a dump that shows made-up packets) and would read what lbadm sends.
pub fn connect(socket: &Path) -> Result<UnixStream, ClientError> {
    let connect_error = |source| ClientError::Connect {
        path: socket.to_path_buf(),
        source,
    };
    let owner =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(socket).map_err(connect_error)?);
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if owner != 0 && owner != me {
        return Err(ClientError::ForeignOwner {
            path: socket.to_path_buf(),
            owner,
            me,
        });
    }
    UnixStream::connect(socket).map_err(connect_error)
}

/// Sends one request to the daemon at `socket` and waits (bounded) for its reply.
pub fn request(socket: &Path, request: &Request) -> Result<Reply, ClientError> {
    let io_error = |source| ClientError::Io {
        path: socket.to_path_buf(),
        source,
    };
    let mut stream = connect(socket)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io_error)?;
    let mut line = serde_json::to_string(request).expect("requests always serialize");
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io_error)?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(io_error)?;
    let reply: Reply = serde_json::from_str(&reply).map_err(|source| ClientError::Decode {
        path: socket.to_path_buf(),
        source,
    })?;
    match reply {
        Reply::Error { message } => Err(ClientError::Daemon(message)),
        reply => Ok(reply),
    }
}

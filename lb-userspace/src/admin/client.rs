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
    #[error(
        "refusing {path}: the process listening on it runs as uid {peer}, neither root nor you \
         (uid {me}); another user's process may be posing as lbd"
    )]
    ForeignPeer { path: PathBuf, peer: u32, me: u32 },
}

/// Connects to lbd's socket. A socket owned by someone other than root or the caller is
/// refused before connecting: whoever owns it could answer in lbd's place (a listing that
/// hides a service, a dump that shows made-up packets) and would read what lbadm sends. So is
/// one whose listening process runs as someone else (checked once connected, before anything
/// is sent: the file may have been swapped between the check and the connect).
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
    let stream = UnixStream::connect(socket).map_err(connect_error)?;
    let peer = peer_uid(&stream).map_err(connect_error)?;
    if peer != 0 && peer != me {
        return Err(ClientError::ForeignPeer {
            path: socket.to_path_buf(),
            peer,
            me,
        });
    }
    Ok(stream)
}

/// The user the process at the other end of `stream` ran as when it listened.
fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: ucred is plain data; getsockopt writes at most `length` bytes into it.
    unsafe {
        let mut credentials: libc::ucred = std::mem::zeroed();
        let mut length = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        if libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut credentials as *mut libc::ucred).cast(),
            &mut length,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(credentials.uid)
    }
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
    // A daemon that refuses the connection (busy) answers before reading the request and
    // closes: the write may fail while its reply waits to be read.
    let written = stream.write_all(line.as_bytes());
    let mut reply = String::new();
    let read = BufReader::new(stream).read_line(&mut reply);
    match (written, read) {
        (_, Ok(length)) if length > 0 => {}
        (Err(error), _) | (Ok(()), Err(error)) => return Err(io_error(error)),
        (Ok(()), Ok(_)) => {}
    }
    let reply: Reply = serde_json::from_str(&reply).map_err(|source| ClientError::Decode {
        path: socket.to_path_buf(),
        source,
    })?;
    match reply {
        Reply::Error { message } => Err(ClientError::Daemon(message)),
        reply => Ok(reply),
    }
}

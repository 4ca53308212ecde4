//! Bulk TCP transfers: a server that sends a fixed number of bytes on every connection, and a
//! download that tells a path-MTU black hole (the transfer stalls) from a finished transfer.
//!
//! Full-size segments are what a path-MTU problem breaks, so this is the traffic that shows
//! whether ICMP fragmentation-needed / packet-too-big reached the sender. Everything is
//! bounded: the server's writes time out and it stops when dropped; the download gives up
//! after an idle or a total timeout.

use std::{
    io::{self, Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    netns::Netns,
    server::{ServerThread, accept_each, tcp_listener},
};

/// How often the server's threads look at the stop flag.
const POLL: Duration = Duration::from_millis(20);
/// Size of each write: a few full-size segments at least.
const CHUNK: usize = 64 * 1024;
/// A connection whose peer takes no byte for this long is given up.
const SERVER_STALL: Duration = Duration::from_secs(30);

/// A TCP server on a thread, bound inside a namespace, that writes `size` bytes to each
/// accepted connection and then closes it. Stops (and joins its threads) on drop.
pub struct BulkServer {
    server: ServerThread,
}

impl BulkServer {
    /// Binds `addr` inside `netns` (port 0 picks a free port: see [`BulkServer::addr`]) and
    /// serves on a thread.
    pub fn start(netns: &Netns, addr: SocketAddr, size: usize) -> BulkServer {
        let (listener, addr) = tcp_listener(netns, addr);
        let server = ServerThread::spawn("bulk server", addr, move |serving| {
            accept_loop(listener, size, serving.stop, serving.served)
        });
        BulkServer { server }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Connections that got all their bytes handed to the kernel and were closed.
    pub fn completed(&self) -> usize {
        self.server.served()
    }
}

fn accept_loop(
    listener: TcpListener,
    size: usize,
    stop: Arc<AtomicBool>,
    completed: Arc<AtomicUsize>,
) {
    let flag = Arc::clone(&stop);
    accept_each(&listener, &flag, "bulk conn", move |stream, peer| {
        match send(stream, size, &stop) {
            Ok(true) => {
                completed.fetch_add(1, Ordering::SeqCst);
            }
            Ok(false) => {} // the server stopped first
            Err(error) => eprintln!("bulk connection from {peer}: {error}"),
        }
    });
}

/// Writes `size` bytes then closes. `Ok(false)` if the server stopped before the end.
fn send(mut stream: TcpStream, size: usize, stop: &AtomicBool) -> io::Result<bool> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(POLL))?;
    // A recognisable pattern rather than zeros, should anyone look at a capture.
    let chunk: Vec<u8> = (0..CHUNK).map(|index| (index % 251) as u8).collect();
    let (mut sent, mut last_progress) = (0, Instant::now());
    while sent < size {
        if stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let want = (size - sent).min(CHUNK);
        match stream.write(&chunk[..want]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                sent += written;
                last_progress = Instant::now();
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if last_progress.elapsed() > SERVER_STALL {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("peer took nothing for {SERVER_STALL:?} after {sent} bytes"),
                    ));
                }
            }
            Err(error) => return Err(error),
        }
    }
    stream.shutdown(Shutdown::Write)?;
    Ok(true)
}

/// Connects to `addr` and reads until the server closes; returns the bytes received. Fails
/// when no byte arrives for `idle_timeout` (what a path-MTU black hole looks like: the
/// handshake's small segments pass, full-size ones vanish) or the whole transfer takes longer
/// than `total_timeout`; the error says how many bytes had arrived. The connect itself must
/// succeed within `idle_timeout`. The socket belongs to the namespace of the calling thread:
/// call it inside [`Netns::run`].
pub fn download(
    addr: SocketAddr,
    idle_timeout: Duration,
    total_timeout: Duration,
) -> io::Result<usize> {
    let start = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, idle_timeout)?;
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0;
    loop {
        let left = total_timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "download from {addr}: {received} bytes after {total_timeout:?}, still not \
                     finished"
                ),
            ));
        }
        let wait = idle_timeout.min(left);
        stream.set_read_timeout(Some(wait))?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(received),
            Ok(read) => received += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if wait < idle_timeout {
                    continue; // the total timeout's turn, reported above
                }
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "download from {addr} stalled: no byte for {idle_timeout:?} after \
                         {received} bytes"
                    ),
                ));
            }
            Err(error) => {
                return Err(io::Error::new(
                    error.kind(),
                    format!("download from {addr} after {received} bytes: {error}"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;

    fn loopback_server(size: usize) -> BulkServer {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = ServerThread::spawn("bulk server", addr, move |serving| {
            accept_loop(listener, size, serving.stop, serving.served)
        });
        BulkServer { server }
    }

    #[test]
    fn downloads_every_byte() {
        let server = loopback_server(3 * CHUNK + 17);
        for _ in 0..2 {
            let got = download(
                server.addr(),
                Duration::from_secs(2),
                Duration::from_secs(10),
            )
            .unwrap();
            assert_eq!(got, 3 * CHUNK + 17);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while server.completed() < 2 && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        assert_eq!(server.completed(), 2);
    }

    #[test]
    fn a_silent_peer_is_an_idle_timeout_that_counts_bytes() {
        // Accepts (in the kernel's backlog) but never sends.
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let error = download(
            listener.local_addr().unwrap(),
            Duration::from_millis(200),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(
            error
                .to_string()
                .contains("no byte for 200ms after 0 bytes"),
            "{error}"
        );
    }

    #[test]
    fn the_total_timeout_bounds_a_slow_transfer() {
        // A peer that sends a byte every 50 ms: never idle, never done.
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let dribbler = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let (mut stream, _) = listener.accept().unwrap();
                while !stop.load(Ordering::SeqCst) && stream.write_all(b"x").is_ok() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let error = download(addr, Duration::from_secs(1), Duration::from_millis(300)).unwrap_err();
        stop.store(true, Ordering::SeqCst);
        dribbler.join().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(error.to_string().contains("still not finished"), "{error}");
    }
}

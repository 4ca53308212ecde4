//! Bulk TCP transfers both ways, checked byte for byte: a server that sends a fixed number of
//! bytes on every connection ([`BulkServer`], fetched with [`download`]), and one that takes
//! whatever a connection sends and says what arrived ([`BulkSink`], fed by [`upload`]). Both
//! tell a path-MTU black hole (the transfer stalls) from a finished transfer.
//!
//! Every transfer carries the same byte stream ([`fill_pattern`]): 64 KiB of pseudo-random
//! bytes, rotated by a different amount in each 64 KiB block, so that no two full-size
//! segments of a transfer carry the same bytes. The receiver compares each byte with the one
//! the stream has at that offset (a checksum, but one that says where the first wrong byte
//! is): a segment corrupted, duplicated, or delivered at the wrong place is caught, not just a
//! short count.
//!
//! Full-size segments are what a path-MTU problem breaks, so this is also the traffic that
//! shows whether ICMP fragmentation-needed / packet-too-big reached the sender. Everything is
//! bounded: the servers' reads and writes time out and they stop when dropped; the client side
//! gives up after an idle or a total timeout.

use std::{
    io::{self, Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, OnceLock,
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
/// Size of each write and read: a few full-size segments at least.
const CHUNK: usize = 64 * 1024;
/// A connection whose peer takes (or sends) no byte for this long is given up.
const SERVER_STALL: Duration = Duration::from_secs(30);
/// Length of the pattern's block, and of its table.
const BLOCK: usize = 64 * 1024;
/// How far each block is rotated from the one before: odd, so 65,536 blocks (4 GiB) pass
/// before a rotation repeats.
const BLOCK_ROTATION: u64 = 4099;

/// The pattern's 64 KiB table (splitmix64 output from a fixed seed).
fn pattern_table() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut state: u64 = 0x5eed_1b7e_5a11_0c8e;
        let mut table = Vec::with_capacity(BLOCK);
        while table.len() < BLOCK {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut word = state;
            word = (word ^ (word >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            word = (word ^ (word >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            word ^= word >> 31;
            table.extend_from_slice(&word.to_le_bytes());
        }
        table
    })
}

/// Fills `buf` with the transfer stream's bytes from `offset` on: byte `j` of block `k` (of
/// 64 KiB) is the table's byte `(j + k × 4099) mod 65536`. Copies, no per-byte arithmetic, so
/// that 50 MB cost little even in a debug build.
pub fn fill_pattern(buf: &mut [u8], offset: u64) {
    let table = pattern_table();
    let (mut filled, mut at) = (0, offset);
    while filled < buf.len() {
        let block = at / BLOCK as u64;
        let within = (at % BLOCK as u64) as usize;
        let start = ((within as u64 + block.wrapping_mul(BLOCK_ROTATION)) % BLOCK as u64) as usize;
        let run = (buf.len() - filled).min(BLOCK - within).min(BLOCK - start);
        buf[filled..filled + run].copy_from_slice(&table[start..start + run]);
        filled += run;
        at += run as u64;
    }
}

/// What a receiver made of a stream: how many bytes arrived, and the offset of the first that
/// differs from [`fill_pattern`]'s (none if every byte matched).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub bytes: u64,
    pub first_mismatch: Option<u64>,
}

impl Received {
    /// Takes the next bytes of the stream; `expected` is scratch space at least as long.
    fn check(&mut self, data: &[u8], expected: &mut [u8]) {
        if self.first_mismatch.is_none() {
            let expected = &mut expected[..data.len()];
            fill_pattern(expected, self.bytes);
            if data != &expected[..] {
                let at = data
                    .iter()
                    .zip(expected.iter())
                    .position(|(got, want)| got != want)
                    .expect("slices differ somewhere");
                self.first_mismatch = Some(self.bytes + at as u64);
            }
        }
        self.bytes += data.len() as u64;
    }

    /// The bytes received if every one was right, an `InvalidData` error naming the first wrong
    /// one otherwise.
    fn intact(self, what: &str) -> io::Result<usize> {
        match self.first_mismatch {
            None => Ok(self.bytes as usize),
            Some(at) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{what}: byte {at} (of {} received) differs from what was sent",
                    self.bytes
                ),
            )),
        }
    }
}

/// A TCP server on a thread, bound inside a namespace, that writes `size` bytes of the stream
/// to each accepted connection and then closes it. Stops (and joins its threads) on drop.
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

/// Writes `size` bytes of the stream then closes. `Ok(false)` if the server stopped before
/// the end.
fn send(mut stream: TcpStream, size: usize, stop: &AtomicBool) -> io::Result<bool> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(POLL))?;
    let mut chunk = vec![0u8; CHUNK];
    let (mut sent, mut last_progress) = (0, Instant::now());
    while sent < size {
        if stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let want = (size - sent).min(CHUNK);
        // Regenerated from `sent` each time: a partial write resumes mid-chunk.
        fill_pattern(&mut chunk[..want], sent as u64);
        match stream.write(&chunk[..want]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                sent += written;
                last_progress = Instant::now();
            }
            Err(error) if is_timeout(&error) => {
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

/// A TCP server on a thread, bound inside a namespace, that reads each accepted connection to
/// its end, checking every byte against the stream, then answers with one line — `<bytes>
/// intact` or `<bytes> mismatch <offset>` — and closes. Stops (and joins its threads) on drop.
pub struct BulkSink {
    server: ServerThread,
}

impl BulkSink {
    /// Binds `addr` inside `netns` (port 0 picks a free port) and serves on a thread.
    pub fn start(netns: &Netns, addr: SocketAddr) -> BulkSink {
        let (listener, addr) = tcp_listener(netns, addr);
        BulkSink::serve(listener, addr)
    }

    /// Serves on a bound, nonblocking listener.
    fn serve(listener: TcpListener, addr: SocketAddr) -> BulkSink {
        let server = ServerThread::spawn("bulk sink", addr, move |serving| {
            let (stop, completed) = (serving.stop, serving.served);
            let flag = Arc::clone(&stop);
            accept_each(
                &listener,
                &flag,
                "sink conn",
                move |stream, peer| match sink(stream, &stop) {
                    Ok(true) => {
                        completed.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(false) => {}
                    Err(error) => eprintln!("bulk sink connection from {peer}: {error}"),
                },
            );
        });
        BulkSink { server }
    }

    /// The address the sink listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Connections read to their end and answered.
    pub fn completed(&self) -> usize {
        self.server.served()
    }
}

/// Reads to the end, then reports. `Ok(false)` if the server stopped first.
fn sink(mut stream: TcpStream, stop: &AtomicBool) -> io::Result<bool> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL))?;
    let (mut buf, mut expected) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let (mut received, mut last_progress) = (Received::default(), Instant::now());
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(read) => {
                received.check(&buf[..read], &mut expected);
                last_progress = Instant::now();
            }
            Err(error) if is_timeout(&error) => {
                if last_progress.elapsed() > SERVER_STALL {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "peer sent nothing for {SERVER_STALL:?} after {} bytes",
                            received.bytes
                        ),
                    ));
                }
            }
            Err(error) => return Err(error),
        }
    }
    let verdict = match received.first_mismatch {
        None => format!("{} intact\n", received.bytes),
        Some(at) => format!("{} mismatch {at}\n", received.bytes),
    };
    stream.set_write_timeout(Some(SERVER_STALL))?;
    stream.write_all(verdict.as_bytes())?;
    stream.shutdown(Shutdown::Write)?;
    Ok(true)
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Connects to `addr` (a [`BulkServer`]) and reads until the server closes; returns the bytes
/// received, every one checked against the stream (an `InvalidData` error names the first
/// wrong one). Fails when no byte arrives for `idle_timeout` (what a path-MTU black hole looks
/// like: the handshake's small segments pass, full-size ones vanish) or the whole transfer
/// takes longer than `total_timeout`; the error says how many bytes had arrived. The connect
/// itself must succeed within `idle_timeout`. The socket belongs to the namespace of the
/// calling thread: call it inside [`Netns::run`].
pub fn download(
    addr: SocketAddr,
    idle_timeout: Duration,
    total_timeout: Duration,
) -> io::Result<usize> {
    let start = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, idle_timeout)?;
    let (mut buf, mut expected) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut received = Received::default();
    loop {
        let left = total_timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "download from {addr}: {} bytes after {total_timeout:?}, still not \
                     finished",
                    received.bytes
                ),
            ));
        }
        let wait = idle_timeout.min(left);
        stream.set_read_timeout(Some(wait))?;
        match stream.read(&mut buf) {
            Ok(0) => return received.intact(&format!("download from {addr}")),
            Ok(read) => received.check(&buf[..read], &mut expected),
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
                         {} bytes",
                        received.bytes
                    ),
                ));
            }
            Err(error) => {
                return Err(io::Error::new(
                    error.kind(),
                    format!(
                        "download from {addr} after {} bytes: {error}",
                        received.bytes
                    ),
                ));
            }
        }
    }
}

/// Connects to `addr` (a [`BulkSink`]), sends `size` bytes of the stream, and returns how
/// many the sink says arrived, all of them right (an `InvalidData` error names the first
/// wrong byte). Fails when the kernel takes no byte for `idle_timeout` (the send buffer full
/// of segments that never get acknowledged: a path-MTU black hole), when the sink's answer
/// does not come within `idle_timeout` of the last byte, or when the whole exchange takes
/// longer than `total_timeout`; the error says how far it got. The socket belongs to the
/// namespace of the calling thread: call it inside [`Netns::run`].
pub fn upload(
    addr: SocketAddr,
    size: usize,
    idle_timeout: Duration,
    total_timeout: Duration,
) -> io::Result<usize> {
    let start = Instant::now();
    let left = |what: &str, progress: &str| {
        let left = total_timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "upload to {addr}: {what} after {total_timeout:?}, still not finished \
                     ({progress})"
                ),
            ))
        } else {
            Ok(idle_timeout.min(left))
        }
    };
    let mut stream = TcpStream::connect_timeout(&addr, idle_timeout)?;
    let mut chunk = vec![0u8; CHUNK];
    let (mut sent, mut last_progress) = (0, Instant::now());
    while sent < size {
        stream.set_write_timeout(Some(left("sending", &format!("{sent} bytes sent"))?))?;
        let want = (size - sent).min(CHUNK);
        fill_pattern(&mut chunk[..want], sent as u64);
        match stream.write(&chunk[..want]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                sent += written;
                last_progress = Instant::now();
            }
            Err(error) if is_timeout(&error) => {
                if last_progress.elapsed() >= idle_timeout {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "upload to {addr} stalled: the kernel took no byte for \
                             {idle_timeout:?} after {sent} bytes"
                        ),
                    ));
                }
            }
            Err(error) => {
                return Err(io::Error::new(
                    error.kind(),
                    format!("upload to {addr} after {sent} bytes: {error}"),
                ));
            }
        }
    }
    stream.shutdown(Shutdown::Write)?;

    // The verdict comes once the sink has read everything still in flight.
    let mut verdict = Vec::new();
    let mut buf = [0u8; 128];
    loop {
        stream.set_read_timeout(Some(left("waiting for the verdict", "all bytes sent")?))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(read) => verdict.extend_from_slice(&buf[..read]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if is_timeout(&error) => {
                if start.elapsed() < total_timeout {
                    // An idle wait ran out: the sink is not reading what is in flight.
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "upload to {addr} stalled: all {sent} bytes sent, no verdict \
                             within {idle_timeout:?}"
                        ),
                    ));
                }
            }
            Err(error) => {
                return Err(io::Error::new(
                    error.kind(),
                    format!("upload to {addr}: waiting for the verdict: {error}"),
                ));
            }
        }
    }
    let verdict = String::from_utf8_lossy(&verdict);
    let words: Vec<&str> = verdict.split_whitespace().collect();
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("upload to {addr}: the sink answered {verdict:?}"),
        )
    };
    let bytes: u64 = words.first().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
    let first_mismatch = match words.get(1..) {
        Some(["intact"]) => None,
        Some(["mismatch", at]) => Some(at.parse().map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    Received {
        bytes,
        first_mismatch,
    }
    .intact(&format!("upload to {addr}"))
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

    fn loopback_sink() -> BulkSink {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        BulkSink::serve(listener, addr)
    }

    #[test]
    fn the_pattern_is_the_same_from_any_offset_and_differs_between_blocks() {
        let mut whole = vec![0u8; 3 * BLOCK + 100];
        fill_pattern(&mut whole, 0);
        for (offset, len) in [(0, 10), (1, 1), (BLOCK - 3, 7), (2 * BLOCK + 5, BLOCK)] {
            let mut part = vec![0u8; len];
            fill_pattern(&mut part, offset as u64);
            assert_eq!(
                part,
                whole[offset..offset + len],
                "{len} bytes from {offset}"
            );
        }
        // Every 1,448-byte piece (a full-size segment) of the first blocks is unique.
        let mut pieces: Vec<&[u8]> = whole.chunks_exact(1448).collect();
        let count = pieces.len();
        pieces.sort();
        pieces.dedup();
        assert_eq!(pieces.len(), count);
    }

    #[test]
    fn a_wrong_byte_is_named_by_its_offset() {
        let mut received = Received::default();
        let mut expected = vec![0u8; CHUNK];
        let mut data = vec![0u8; 5000];
        fill_pattern(&mut data, 0);
        received.check(&data[..3000], &mut expected);
        data[4321] ^= 1;
        received.check(&data[3000..], &mut expected);
        assert_eq!(
            received,
            Received {
                bytes: 5000,
                first_mismatch: Some(4321)
            }
        );
        let error = received.intact("test").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("byte 4321 (of 5000"), "{error}");
    }

    #[test]
    fn a_download_of_wrong_bytes_fails() {
        // A server that sends the stream with one byte flipped.
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut data = vec![0u8; 200_000];
            fill_pattern(&mut data, 0);
            data[150_001] = data[150_001].wrapping_add(1);
            stream.write_all(&data).unwrap();
        });
        let error = download(addr, Duration::from_secs(2), Duration::from_secs(10)).unwrap_err();
        server.join().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        assert!(
            error.to_string().contains("byte 150001 (of 200000"),
            "{error}"
        );
    }

    #[test]
    fn uploads_every_byte_and_the_sink_checks_them() {
        let sink = loopback_sink();
        for size in [0, 1, 3 * CHUNK + 17] {
            let got = upload(
                sink.addr(),
                size,
                Duration::from_secs(2),
                Duration::from_secs(10),
            )
            .unwrap();
            assert_eq!(got, size);
        }
        // The sink counts a stream once its thread has read it to the end, which may be a
        // moment after the upload returns.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.completed() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(sink.completed(), 3);

        // Bytes that are not the stream: the sink says where they went wrong.
        let mut raw = TcpStream::connect(sink.addr()).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut data = vec![0u8; 70_000];
        fill_pattern(&mut data, 0);
        data[66_000] ^= 0x80;
        raw.write_all(&data).unwrap();
        raw.shutdown(Shutdown::Write).unwrap();
        let mut verdict = String::new();
        raw.read_to_string(&mut verdict).unwrap();
        assert_eq!(verdict, "70000 mismatch 66000\n");
    }

    #[test]
    fn an_upload_nobody_reads_stalls() {
        // Accepts (in the kernel's backlog) but never reads: the buffers fill, then nothing.
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let error = upload(
            listener.local_addr().unwrap(),
            64 * 1024 * 1024,
            Duration::from_millis(300),
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(error.to_string().contains("stalled"), "{error}");
    }
}

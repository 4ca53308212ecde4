//! `lbadm dump [-t|-u VIP:PORT] [-r RIP[:PORT]] [-c COUNT] [-w FILE.pcap]`: packets as the XDP
//! program saw them, with its verdict and real. ipvsadm has no such verb; tcpdump is the
//! model, since it never sees what XDP sends back out (`XDP_TX`): the program copies the
//! packets itself, as they leave it, while the dump runs.
//!
//! One line per packet: time, interface (`>` where it left, when another), action and
//! reason, service and real, then tcpdump's summary of the frame as it left; a packet a
//! forwarding program rewrote (NAT, full NAT, tunnel, NAT reply) ends with how it arrived.
//! With `-w`, a classic pcap file instead (Ethernet, snap length 256), complete on Ctrl-C.
//!
//! - `pcap.rs`: the pcap file format;
//! - `summary.rs`: tcpdump's one-line summary of a frame.

pub mod pcap;
pub mod summary;

use std::{
    io::{BufWriter, ErrorKind, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use base64::Engine as _;
use lb_common::capture::CAPTURE_SNAP_LEN;

use super::{Failure, command::address_port};
use crate::{
    admin::{ClientError, DumpRequest, DumpedPacket, RealRef, Reply, Request, ServiceRef},
    config::Protocol,
};

/// How often a quiet capture looks at whether Ctrl-C was pressed.
const INTERRUPT_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Default, clap::Args)]
pub struct DumpArgs {
    /// Only packets of this TCP service (to its reals, and its NAT replies).
    #[arg(
        short = 't',
        long = "tcp-service",
        value_name = "VIP:PORT",
        conflicts_with = "udp_service"
    )]
    pub tcp_service: Option<String>,
    /// Only packets of this UDP service.
    #[arg(short = 'u', long = "udp-service", value_name = "VIP:PORT")]
    pub udp_service: Option<String>,
    /// Only packets to (or, NAT, from) this real server.
    #[arg(short = 'r', long = "real-server", value_name = "RIP[:PORT]")]
    pub real_server: Option<String>,
    /// Stop after COUNT packets (default: until Ctrl-C).
    #[arg(short = 'c', long = "count", value_name = "COUNT")]
    pub count: Option<u64>,
    /// Write the packets to a pcap file instead of printing them.
    #[arg(short = 'w', long = "write", value_name = "FILE.pcap")]
    pub write: Option<PathBuf>,
}

/// Runs a dump against the lbd at `socket` until its count, Ctrl-C or lbd ends it. Lines go
/// to `out` (nothing with `-w`, whose file is created once lbd has armed the capture: a
/// refused dump leaves it as it was); what the capture takes, and how many packets it got,
/// to stderr, as tcpdump does.
///
/// Fails as ipvsadm does: [`Failure::Usage`] for arguments that do not check,
/// [`Failure::Unreachable`] without an lbd, [`Failure::Refused`] for a dump lbd refuses (a
/// missing service or real, another capture running), [`Failure::Io`] for the rest.
pub fn run(socket: &Path, args: &DumpArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let request = request(args)?;
    let talking = |source| {
        Failure::Unreachable(ClientError::Io {
            path: socket.to_path_buf(),
            source,
        })
    };
    let mut stream = crate::admin::connect(socket).map_err(Failure::Unreachable)?;
    let mut line = serde_json::to_string(&Request::Dump(request)).expect("requests serialize");
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(talking)?;
    stream
        .set_read_timeout(Some(INTERRUPT_POLL))
        .map_err(talking)?;

    let interrupt = Interrupt::catch();
    let mut lines = Lines::default();
    let mut pcap = None;
    let mut captured = 0u64;
    let file_error = |error: std::io::Error| {
        let path = args.write.as_deref().unwrap_or(Path::new("?"));
        Failure::Io(format!("-w {}: {error}", path.display()))
    };
    let out_error = |error: std::io::Error| Failure::Io(format!("writing the packets: {error}"));
    let ended = loop {
        if interrupt.happened() {
            // lbd sees the connection close and turns the capture off.
            let _ = stream.shutdown(std::net::Shutdown::Both);
            break format!("{captured} packets captured (interrupted)");
        }
        let Some(text) = lines.next(&mut stream)? else {
            continue;
        };
        let reply: Reply = serde_json::from_str(&text).map_err(|_| {
            Failure::Io(format!(
                "lbd sent a line this lbadm does not understand: {text}"
            ))
        })?;
        match reply {
            Reply::Capturing { message } => {
                eprintln!("lbadm: {message}");
                if let Some(path) = &args.write {
                    let file = std::fs::File::create(path).map_err(file_error)?;
                    pcap = Some(
                        pcap::PcapWriter::new(BufWriter::new(file), CAPTURE_SNAP_LEN as u32)
                            .map_err(file_error)?,
                    );
                }
            }
            Reply::Packet(packet) => {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(&packet.data)
                    .map_err(|_| {
                        Failure::Io("lbd sent a packet whose bytes are not base64".to_owned())
                    })?;
                match (&mut pcap, &args.write) {
                    (Some(pcap), _) => pcap
                        .write(packet.time_ns, packet.frame_len, &data)
                        .map_err(file_error)?,
                    (None, None) => {
                        writeln!(out, "{}", line_of(&packet, &data)).map_err(out_error)?
                    }
                    // A packet before lbd said it captures.
                    (None, Some(_)) => return Err(Failure::Unexpected("a dump")),
                }
                captured += 1;
            }
            Reply::Done { message } => break message,
            Reply::Error { message } => return Err(ClientError::Daemon(message).into()),
            _ => return Err(Failure::Unexpected("a dump")),
        }
    };
    if let Some(pcap) = &mut pcap {
        pcap.flush().map_err(file_error)?;
    }
    out.flush().map_err(out_error)?;
    eprintln!("lbadm: {ended}");
    Ok(())
}

/// The request `args` make: the service and real named, checked for form here (lbd checks
/// that they exist).
pub fn request(args: &DumpArgs) -> Result<DumpRequest, Failure> {
    let service = match (&args.tcp_service, &args.udp_service) {
        (Some(text), _) => Some(service_ref(Protocol::Tcp, "-t", text)?),
        (None, Some(text)) => Some(service_ref(Protocol::Udp, "-u", text)?),
        (None, None) => None,
    };
    // Read as the rest of lbadm reads addresses (`[IPv6]:PORT`, ports by name).
    let protocol = service.map_or(Protocol::Tcp, |service| service.protocol);
    let real = match &args.real_server {
        Some(text) => {
            let (address, port) = address_port(text, protocol)
                .ok_or_else(|| Failure::Usage(format!("-r: `{text}` is not RIP or RIP:PORT")))?;
            Some(RealRef { address, port })
        }
        None => None,
    };
    if args.count == Some(0) {
        return Err(Failure::Usage(
            "-c: the count must be at least 1".to_owned(),
        ));
    }
    Ok(DumpRequest {
        service,
        real,
        count: args.count,
    })
}

/// `-t`/`-u`: a dump names a service by VIP and port, the port required.
fn service_ref(protocol: Protocol, flag: &str, text: &str) -> Result<ServiceRef, Failure> {
    match address_port(text, protocol) {
        Some((vip, Some(port))) => Ok(ServiceRef {
            protocol,
            vip,
            port,
        }),
        _ => Err(Failure::Usage(format!("{flag}: `{text}` is not VIP:PORT"))),
    }
}

/// The line printed for a packet: `12:00:00.000001 eth0 tx forwarded_tx TCP 192.0.2.10:80
/// real 192.0.2.11:80: IP 192.0.2.1.40000 > 192.0.2.10.80: Flags [S], seq 1, length 0`.
pub fn line_of(packet: &DumpedPacket, data: &[u8]) -> String {
    let mut line = format!("{} {}", clock_text(packet.time_ns), packet.interface);
    if let Some(egress) = &packet.egress_interface
        && *egress != packet.interface
    {
        line += &format!(">{egress}");
    }
    line += &format!(" {} {}", packet.action, packet.reason);
    if let Some(service) = &packet.service {
        line += &format!(" {service}");
    }
    if let Some(real) = &packet.real {
        line += &format!(" real {real}");
    }
    line += &format!(": {}", summary::frame(data));
    if (data.len() as u32) < packet.frame_len {
        line += &format!(" [{} of {} bytes]", data.len(), packet.frame_len);
    }
    if let Some(original) = &packet.original {
        line += &format!(
            " (arrived {} {} > {})",
            original.protocol.to_uppercase(),
            original.source,
            original.destination
        );
    }
    line
}

/// Local time of day, to the microsecond, as tcpdump prints it.
fn clock_text(time_ns: u64) -> String {
    let seconds = (time_ns / 1_000_000_000) as libc::time_t;
    // SAFETY: `tm` is a valid out-pointer, zeroed; `seconds` a valid time_t.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&seconds, &mut tm) };
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        time_ns % 1_000_000_000 / 1_000
    )
}

/// JSON lines from lbd, read a piece at a time so that a quiet capture still notices Ctrl-C
/// (the socket's read timeout).
#[derive(Default)]
struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// The next whole line, `None` if none came within the read timeout; an error once lbd
    /// closes the connection without saying the dump is done.
    fn next(&mut self, stream: &mut UnixStream) -> Result<Option<String>, Failure> {
        loop {
            if let Some(end) = self.pending.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(Some(String::from_utf8_lossy(&line).trim_end().to_owned()));
            }
            let mut buffer = [0u8; 16 * 1024];
            match stream.read(&mut buffer) {
                Ok(0) => {
                    return Err(Failure::Io(
                        "lbd closed the connection before the dump was done".to_owned(),
                    ));
                }
                Ok(read) => self.pending.extend_from_slice(&buffer[..read]),
                Err(error)
                    if matches!(
                        error.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    return Ok(None);
                }
                Err(error) => return Err(Failure::Io(format!("reading from lbd: {error}"))),
            }
        }
    }
}

/// Ctrl-C (SIGINT) while a dump runs: noted, so the dump ends cleanly (the pcap file
/// flushed whole, the capture turned off); the previous disposition comes back after.
struct Interrupt {
    previous: libc::sighandler_t,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

impl Interrupt {
    fn catch() -> Self {
        INTERRUPTED.store(false, Ordering::SeqCst);
        let handler = note_interrupt as extern "C" fn(libc::c_int);
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let previous = unsafe { libc::signal(libc::SIGINT, handler as libc::sighandler_t) };
        Self { previous }
    }

    fn happened(&self) -> bool {
        INTERRUPTED.load(Ordering::SeqCst)
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        // SAFETY: restores what `signal` returned.
        unsafe { libc::signal(libc::SIGINT, self.previous) };
    }
}

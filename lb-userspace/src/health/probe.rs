//! One check of one real: a TCP connect (keepalived's TCP_CHECK) or an HTTP/1.1 GET
//! (HTTP_GET), the whole of it bounded by the check's timeout.
//!
//! The HTTP exchange is generic over the stream, so its tests run over an in-memory pipe;
//! the TCP path is tested end to end, in network namespaces.

use std::{
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    time::SystemTime,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    time::Instant,
};

use super::{CheckReport, Target};
use crate::config::{CheckKind, HealthCheckConfig, HttpCheck, duration_text, socket_text};

/// The most of an answer an HTTP check reads; the final status line (after any interim
/// answers), and `expect_body`, must be within it. Health pages are small, and a real must not make the balancer buffer much.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Longest `expect_body` quoted whole in a report; reports are one short line.
const MAX_QUOTED_CHARS: usize = 40;

/// Runs one check of a target: the monitor's seam, so that its tests script the results and
/// run under a paused clock.
pub trait Probe: Send + Sync + 'static {
    fn check(&self, target: &Target) -> impl Future<Output = CheckReport> + Send;
}

/// Checks over the network, with [`check`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NetworkProbe;

impl Probe for NetworkProbe {
    fn check(&self, target: &Target) -> impl Future<Output = CheckReport> + Send {
        check(target.address, target.port, &target.check)
    }
}

/// Checks `address:port` as `config` says: connect (from `config.source` if given), and for
/// HTTP send a GET and judge the answer; all within `config.timeout`.
pub async fn check(address: IpAddr, port: u16, config: &HealthCheckConfig) -> CheckReport {
    let at = SystemTime::now();
    let started = Instant::now();
    let verdict = tokio::time::timeout(config.timeout, connect_and_check(address, port, config))
        .await
        .unwrap_or_else(|_| {
            Verdict::failed(format!("timed out after {}", duration_text(config.timeout)))
        });
    CheckReport {
        ok: verdict.ok,
        latency: started.elapsed(),
        detail: verdict.detail,
        at,
    }
}

/// Whether a check passed, and why, in a few words.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    ok: bool,
    detail: String,
}

impl Verdict {
    fn passed(detail: impl Into<String>) -> Self {
        Verdict {
            ok: true,
            detail: detail.into(),
        }
    }

    fn failed(detail: impl Into<String>) -> Self {
        Verdict {
            ok: false,
            detail: detail.into(),
        }
    }
}

async fn connect_and_check(address: IpAddr, port: u16, config: &HealthCheckConfig) -> Verdict {
    let http = match &config.kind {
        CheckKind::None => return Verdict::passed("not checked"),
        CheckKind::Tcp => None,
        CheckKind::Http(http) => Some(http),
    };
    let mut stream = match connect(SocketAddr::new(address, port), config.source).await {
        Ok(stream) => stream,
        Err(detail) => return Verdict::failed(detail),
    };
    match http {
        // Dropping the stream closes the connection.
        None => Verdict::passed("connected"),
        Some(http) => {
            let host = match &http.host {
                Some(host) => host.clone(),
                None => default_host(address, port),
            };
            http_exchange(&mut stream, http, &host).await
        }
    }
}

async fn connect(destination: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, String> {
    let socket = if destination.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|error| format!("socket: {}", os_message(&error)))?;
    if let Some(source) = source {
        // Without it, bind picks the port alone and cannot reuse one a check to another real
        // left in TIME_WAIT: with enough reals, every bind fails at once and every real goes
        // down. With it, the port is picked at connect, per destination.
        let enable: libc::c_int = 1;
        // SAFETY: setsockopt on a socket we own, with a pointer to a c_int and its size.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&enable as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            return Err(format!("IP_BIND_ADDRESS_NO_PORT: {}", os_message(&error)));
        }
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|error| format!("bind {source}: {}", os_message(&error)))?;
    }
    socket
        .connect(destination)
        .await
        .map_err(|error| format!("connect: {}", os_message(&error)))
}

/// The Host header when the check gives none: the real's address (IPv6 in brackets), with
/// the port unless it is HTTP's own.
fn default_host(address: IpAddr, port: u16) -> String {
    match (address, port) {
        (IpAddr::V4(v4), 80) => v4.to_string(),
        (IpAddr::V6(v6), 80) => format!("[{v6}]"),
        _ => socket_text(address, port),
    }
}

/// `Connection refused`: the OS's words without std's ` (os error 111)`.
fn os_message(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

/// Sends the GET and judges the answer, reading no more of it than the verdict needs (and
/// at most [`MAX_RESPONSE_BYTES`]).
async fn http_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    http: &HttpCheck,
    host: &str,
) -> Verdict {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lbd-health-check\r\nConnection: close\r\n\r\n",
        http.path
    );
    if let Err(error) = stream.write_all(request.as_bytes()).await {
        return Verdict::failed(format!("send: {}", os_message(&error)));
    }
    if let Err(error) = stream.flush().await {
        return Verdict::failed(format!("send: {}", os_message(&error)));
    }
    let mut response = Vec::with_capacity(4096);
    let mut judge = Judge::new(http);
    loop {
        let room = MAX_RESPONSE_BYTES - response.len();
        let read = match (&mut *stream)
            .take(room as u64)
            .read_buf(&mut response)
            .await
        {
            Ok(read) => read,
            Err(error) => return Verdict::failed(format!("read: {}", os_message(&error))),
        };
        let complete = read == 0 || response.len() >= MAX_RESPONSE_BYTES;
        if let Some(verdict) = judge.judge(&response, complete) {
            return verdict;
        }
    }
}

/// Judges an answer as it comes in. Every read hands it the whole answer so far and it goes
/// on from where it stopped, so that each byte is looked at about once: a real that trickles
/// its answer in small pieces costs no more than one that sends it whole.
struct Judge<'a> {
    http: &'a HttpCheck,
    /// The lines of the heads, as far as they have been read.
    lines: Lines,
    stage: Stage,
}

enum Stage {
    /// Before an answer's status line; `after` names the interim answer before it, if any.
    StatusLine { after: Option<u16> },
    /// In the head of an interim answer, which says nothing about the real.
    InterimHead { status: u16 },
    /// In the head of the final answer: its headers say how the body ends.
    FinalHead { status: u16, framing: Framing },
    /// In the body of the final answer, looking for `expect_body`.
    Body {
        status: u16,
        body: Body,
        search: Search,
    },
}

impl<'a> Judge<'a> {
    fn new(http: &'a HttpCheck) -> Self {
        Judge {
            http,
            lines: Lines::at(0),
            stage: Stage::StatusLine { after: None },
        }
    }

    /// The verdict on the answer read so far, or `None` while more of it could change the
    /// verdict. `response` is what was read before, and then some; `complete`: nothing more
    /// will come (end of stream, or the read limit).
    fn judge(&mut self, response: &[u8], complete: bool) -> Option<Verdict> {
        loop {
            match &mut self.stage {
                Stage::StatusLine { after } => {
                    let status_line = match self.lines.next(response) {
                        Some(line) => line,
                        None if !complete => return None,
                        None => {
                            let rest = self.lines.rest(response);
                            if rest.is_empty() {
                                return Some(Verdict::failed(match after {
                                    Some(interim) => {
                                        format!("no final answer after HTTP {interim}")
                                    }
                                    None => "connection closed without an answer".to_owned(),
                                }));
                            }
                            rest
                        }
                    };
                    let Some(status) = status_code(status_line) else {
                        return Some(Verdict::failed("malformed status line"));
                    };
                    if is_interim(status) {
                        self.stage = Stage::InterimHead { status };
                        continue;
                    }
                    if !self.http.expect_status.contains(&status) {
                        return Some(Verdict::failed(format!(
                            "HTTP {status} (expected {})",
                            status_range_text(&self.http.expect_status)
                        )));
                    }
                    if self.http.expect_body.is_none() {
                        return Some(Verdict::passed(format!("HTTP {status}")));
                    }
                    self.stage = Stage::FinalHead {
                        status,
                        framing: Framing::UntilClose,
                    };
                }
                Stage::InterimHead { status } => match self.lines.next(response) {
                    Some([]) => {
                        self.stage = Stage::StatusLine {
                            after: Some(*status),
                        }
                    }
                    Some(_) => {}
                    None if complete => {
                        return Some(Verdict::failed(format!(
                            "no final answer after HTTP {status}"
                        )));
                    }
                    None => return None,
                },
                Stage::FinalHead { status, framing } => match self.lines.next(response) {
                    Some([]) => {
                        let start = self.lines.start;
                        self.stage = Stage::Body {
                            status: *status,
                            body: Body::new(*framing, start),
                            search: Search::default(),
                        };
                    }
                    Some(header) => framing.take_header(header),
                    None if complete => return Some(self.lacks_body()),
                    None => return None,
                },
                Stage::Body {
                    status,
                    body,
                    search,
                } => {
                    let expected = self.http.expect_body.as_deref().unwrap_or_default();
                    let (data, finished) = body.so_far(response);
                    return if search.finds(expected.as_bytes(), data) {
                        Some(Verdict::passed(format!("HTTP {status}")))
                    } else if complete || finished {
                        Some(self.lacks_body())
                    } else {
                        None
                    };
                }
            }
        }
    }

    fn lacks_body(&self) -> Verdict {
        let expected = self.http.expect_body.as_deref().unwrap_or_default();
        Verdict::failed(format!("body lacks {}", quoted(expected)))
    }
}

/// `HTTP/1.1 200 OK` → 200; `None` unless it is an HTTP status line with a three-digit code.
fn status_code(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut words = line.splitn(3, ' ');
    let version = words.next()?;
    let code = words.next()?;
    if !version.starts_with("HTTP/") || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    code.parse().ok()
}

/// Whether `status` announces another answer to come (100 Continue, 103 Early Hints, …),
/// so that the check judges the next one. 101 Switching Protocols is the last answer in
/// HTTP/1.1: what follows is another protocol.
fn is_interim(status: u16) -> bool {
    (100..200).contains(&status) && status != 101
}

/// The lines of an answer that grows, each handed out once it is whole. Lines end in CRLF
/// or, from servers that write them by hand (an inetd script's `printf`), in a bare LF,
/// which RFC 9112 section 2.2 lets a recipient accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lines {
    /// Where the next line starts.
    start: usize,
    /// Up to here, the next line was searched for its end and has none.
    scanned: usize,
}

impl Lines {
    fn at(start: usize) -> Self {
        Lines {
            start,
            scanned: start,
        }
    }

    /// The next whole line, without its line end.
    fn next<'r>(&mut self, response: &'r [u8]) -> Option<&'r [u8]> {
        let Some(offset) = response[self.scanned..]
            .iter()
            .position(|byte| *byte == b'\n')
        else {
            self.scanned = response.len();
            return None;
        };
        let end = self.scanned + offset;
        let line = &response[self.start..end];
        *self = Lines::at(end + 1);
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }

    /// What follows the lines handed out so far.
    fn rest<'r>(&self, response: &'r [u8]) -> &'r [u8] {
        &response[self.start..]
    }

    /// Passes over `count` bytes that are not lines (a chunk's data).
    fn skip(&mut self, count: usize) {
        *self = Lines::at(self.start + count);
    }
}

/// How the body's end is known (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Chunked,
    Length(usize),
    UntilClose,
}

impl Framing {
    /// Takes one header line of the head into account.
    fn take_header(&mut self, line: &[u8]) {
        if *self == Framing::Chunked {
            // Chunked framing wins over any Content-Length.
            return;
        }
        let Some((name, value)) = std::str::from_utf8(line)
            .ok()
            .and_then(|line| line.split_once(':'))
        else {
            return;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            *self = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("content-length")
            && let Ok(length) = value.parse()
        {
            *self = Framing::Length(length);
        }
    }
}

/// The body of the final answer, from `start` in the answer.
enum Body {
    Length { start: usize, length: usize },
    UntilClose { start: usize },
    Chunked(Dechunk),
}

impl Body {
    fn new(framing: Framing, start: usize) -> Self {
        match framing {
            Framing::Length(length) => Body::Length { start, length },
            Framing::UntilClose => Body::UntilClose { start },
            Framing::Chunked => Body::Chunked(Dechunk::at(start)),
        }
    }

    /// The body's data so far, and whether it has ended.
    fn so_far<'s>(&'s mut self, response: &'s [u8]) -> (&'s [u8], bool) {
        match self {
            Body::Length { start, length } => {
                let data = &response[*start..];
                (&data[..data.len().min(*length)], data.len() >= *length)
            }
            Body::UntilClose { start } => (&response[*start..], false),
            Body::Chunked(dechunk) => {
                dechunk.advance(response);
                (&dechunk.data, dechunk.next == ChunkPart::None)
            }
        }
    }
}

/// Decodes a chunked body (RFC 9112 section 7.1) as it comes in, each byte once. A
/// malformed body counts as ended: no more of it would make sense.
struct Dechunk {
    /// Where the undecoded rest starts.
    lines: Lines,
    next: ChunkPart,
    /// The chunks' data so far.
    data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkPart {
    /// A chunk's size line (and extensions).
    Size,
    /// `left` more bytes of a chunk's data.
    Data { left: usize },
    /// The line end after a chunk's data.
    DataEnd,
    /// Nothing: the last chunk has come, or what came was not chunks.
    None,
}

impl Dechunk {
    fn at(start: usize) -> Self {
        Dechunk {
            lines: Lines::at(start),
            next: ChunkPart::Size,
            data: Vec::new(),
        }
    }

    /// Decodes what `response` holds past what was decoded before.
    fn advance(&mut self, response: &[u8]) {
        loop {
            match self.next {
                ChunkPart::Size => {
                    let Some(line) = self.lines.next(response) else {
                        return;
                    };
                    let size = line
                        .split(|byte| *byte == b';')
                        .next()
                        .and_then(|size| std::str::from_utf8(size).ok())
                        .and_then(|size| usize::from_str_radix(size.trim(), 16).ok());
                    self.next = match size {
                        None | Some(0) => ChunkPart::None,
                        Some(left) => ChunkPart::Data { left },
                    };
                }
                ChunkPart::Data { left } => {
                    let come = self.lines.rest(response);
                    let taken = come.len().min(left);
                    self.data.extend_from_slice(&come[..taken]);
                    self.lines.skip(taken);
                    if taken < left {
                        self.next = ChunkPart::Data { left: left - taken };
                        return;
                    }
                    self.next = ChunkPart::DataEnd;
                }
                ChunkPart::DataEnd => match self.lines.rest(response) {
                    [b'\r', b'\n', ..] => {
                        self.lines.skip(2);
                        self.next = ChunkPart::Size;
                    }
                    [b'\n', ..] => {
                        self.lines.skip(1);
                        self.next = ChunkPart::Size;
                    }
                    [] | [b'\r'] => return,
                    _ => self.next = ChunkPart::None,
                },
                ChunkPart::None => return,
            }
        }
    }
}

/// A search for `expect_body` in data that grows, looking again only at the few bytes
/// before the new ones that a match could start in.
#[derive(Debug, Default)]
struct Search {
    /// How much of the data was searched.
    searched: usize,
}

impl Search {
    fn finds(&mut self, needle: &[u8], data: &[u8]) -> bool {
        let from = self.searched.saturating_sub(needle.len().saturating_sub(1));
        self.searched = data.len();
        find(&data[from..], needle).is_some()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// `200-299`, or `200` for a single code.
fn status_range_text(range: &std::ops::RangeInclusive<u16>) -> String {
    if range.start() == range.end() {
        range.start().to_string()
    } else {
        format!("{}-{}", range.start(), range.end())
    }
}

/// `"ok"`; a long text cut short, so the report stays one short line.
fn quoted(text: &str) -> String {
    if text.chars().count() > MAX_QUOTED_CHARS {
        let shown: String = text.chars().take(MAX_QUOTED_CHARS).collect();
        format!("{shown:?}...")
    } else {
        format!("{text:?}")
    }
}

#[cfg(test)]
mod tests;

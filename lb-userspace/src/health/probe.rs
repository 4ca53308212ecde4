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
mod tests {
    use std::net::Ipv6Addr;

    use tokio::io::DuplexStream;

    use super::*;

    fn http_check(expect_body: Option<&str>) -> HttpCheck {
        HttpCheck {
            path: "/healthz".into(),
            expect_status: 200..=299,
            host: None,
            expect_body: expect_body.map(str::to_owned),
        }
    }

    /// Runs the exchange against a server that reads the request and writes `answer`, then
    /// closes the connection if `close`, or else holds it open (so that only the answer's
    /// own framing can end the read). Returns the verdict and the request the server read.
    async fn exchange(http: &HttpCheck, answer: Vec<u8>, close: bool) -> (Verdict, String) {
        exchange_in_pieces(http, answer, close, 256 * 1024).await
    }

    /// [`exchange`], the answer coming in reads of at most `piece` bytes.
    async fn exchange_in_pieces(
        http: &HttpCheck,
        answer: Vec<u8>,
        close: bool,
        piece: usize,
    ) -> (Verdict, String) {
        let (mut client, server) = tokio::io::duplex(piece);
        let (request_tx, request_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(serve(server, answer, close, request_tx));
        let verdict = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            http_exchange(&mut client, http, "10.0.0.11"),
        )
        .await
        .expect("the exchange waited for more than its answer's framing promised");
        (verdict, request_rx.await.unwrap())
    }

    async fn serve(
        mut server: DuplexStream,
        answer: Vec<u8>,
        close: bool,
        request_tx: tokio::sync::oneshot::Sender<String>,
    ) {
        let mut request = Vec::new();
        while find(&request, b"\r\n\r\n").is_none() {
            let mut byte = [0u8; 1];
            if server.read_exact(&mut byte).await.is_err() {
                break;
            }
            request.push(byte[0]);
        }
        request_tx
            .send(String::from_utf8(request).unwrap())
            .unwrap();
        server.write_all(&answer).await.unwrap();
        if !close {
            std::future::pending::<()>().await;
        }
    }

    fn answer(text: &str) -> Vec<u8> {
        text.as_bytes().to_vec()
    }

    /// The verdict on `response` read in one piece.
    fn judge(response: &[u8], complete: bool, http: &HttpCheck) -> Option<Verdict> {
        Judge::new(http).judge(response, complete)
    }

    /// The verdict on `response` read a byte at a time, the last read ending the stream.
    fn judge_byte_by_byte(response: &[u8], http: &HttpCheck) -> Verdict {
        let mut judge = Judge::new(http);
        for read in 1..response.len() {
            if let Some(verdict) = judge.judge(&response[..read], false) {
                return verdict;
            }
        }
        judge
            .judge(response, true)
            .expect("the end of the stream decides")
    }

    /// A chunked body decoded from one piece: its data, and whether it ended.
    fn dechunk(body: &[u8]) -> (Vec<u8>, bool) {
        let mut dechunk = Dechunk::at(0);
        dechunk.advance(body);
        (dechunk.data, dechunk.next == ChunkPart::None)
    }

    /// [`dechunk`], the body coming a byte at a time.
    fn dechunk_byte_by_byte(body: &[u8]) -> (Vec<u8>, bool) {
        let mut dechunk = Dechunk::at(0);
        for read in 1..=body.len() {
            dechunk.advance(&body[..read]);
        }
        (dechunk.data, dechunk.next == ChunkPart::None)
    }

    #[tokio::test]
    async fn the_request_is_a_plain_get_that_asks_to_close() {
        let (verdict, request) = exchange(
            &http_check(None),
            answer("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            true,
        )
        .await;
        assert_eq!(
            request,
            "GET /healthz HTTP/1.1\r\nHost: 10.0.0.11\r\nUser-Agent: lbd-health-check\r\n\
             Connection: close\r\n\r\n"
        );
        assert_eq!(verdict, Verdict::passed("HTTP 200"));
    }

    #[tokio::test]
    async fn without_expect_body_the_status_line_is_enough() {
        // The connection stays open and the headers never end: the status line decides.
        let (verdict, _) = exchange(
            &http_check(None),
            answer("HTTP/1.1 204 No Content\r\n"),
            false,
        )
        .await;
        assert_eq!(verdict, Verdict::passed("HTTP 204"));
    }

    #[tokio::test]
    async fn a_status_outside_the_range_fails_naming_both() {
        let (verdict, _) = exchange(
            &http_check(Some("ok")),
            answer("HTTP/1.1 503 Service Unavailable\r\n\r\nok"),
            true,
        )
        .await;
        assert_eq!(verdict, Verdict::failed("HTTP 503 (expected 200-299)"));

        let mut exactly_200 = http_check(None);
        exactly_200.expect_status = 200..=200;
        let (verdict, _) = exchange(
            &exactly_200,
            answer("HTTP/1.0 204 No Content\r\n\r\n"),
            true,
        )
        .await;
        assert_eq!(verdict, Verdict::failed("HTTP 204 (expected 200)"));
    }

    #[tokio::test]
    async fn the_body_must_hold_expect_body() {
        let check = http_check(Some("ok"));
        // Content-Length ends the body; the connection stays open.
        let (verdict, _) = exchange(
            &check,
            answer("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot ready"),
            false,
        )
        .await;
        assert_eq!(verdict, Verdict::failed("body lacks \"ok\""));
        let (verdict, _) = exchange(
            &check,
            answer("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nall ok"),
            false,
        )
        .await;
        assert_eq!(verdict, Verdict::passed("HTTP 200"));
        // What follows the Content-Length bytes is not the body.
        let (verdict, _) = exchange(
            &check,
            answer("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbusyok"),
            false,
        )
        .await;
        assert_eq!(verdict, Verdict::failed("body lacks \"ok\""));
        // Without framing, the end of the stream ends the body.
        let (verdict, _) = exchange(&check, answer("HTTP/1.0 200 OK\r\n\r\nnope"), true).await;
        assert_eq!(verdict, Verdict::failed("body lacks \"ok\""));
        let (verdict, _) = exchange(&check, answer("HTTP/1.0 200 OK\r\n"), true).await;
        assert_eq!(verdict, Verdict::failed("body lacks \"ok\""));
    }

    #[tokio::test]
    async fn lines_may_end_in_a_bare_lf() {
        let check = http_check(Some("ok"));
        // What `printf "HTTP/1.0 200 OK\n\nok"` in an inetd script answers.
        let (verdict, _) = exchange(&check, answer("HTTP/1.0 200 OK\n\nok"), true).await;
        assert_eq!(verdict, Verdict::passed("HTTP 200"));
        // Its headers are read too: Content-Length ends the body on an open connection.
        let (verdict, _) = exchange(
            &check,
            answer("HTTP/1.1 200 OK\nContent-Length: 4\n\nbusy"),
            false,
        )
        .await;
        assert_eq!(verdict, Verdict::failed("body lacks \"ok\""));
        let (verdict, _) = exchange(
            &check,
            answer("HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nok"),
            false,
        )
        .await;
        assert_eq!(verdict, Verdict::passed("HTTP 200"));
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line_whatever_its_line_ending() {
        // Were the head to end at the CRLF pair, the body would be "ok".
        assert_eq!(
            judge(
                b"HTTP/1.1 200 OK\nContent-Length: 4\n\nbusy\r\n\r\nok",
                false,
                &http_check(Some("ok"))
            ),
            Some(Verdict::failed("body lacks \"ok\""))
        );
        let mut lines = Lines::at(0);
        let text = b"HTTP/1.1 200 OK\r\nA: b\n\r";
        assert_eq!(lines.next(text), Some(&b"HTTP/1.1 200 OK"[..]));
        assert_eq!(lines.next(text), Some(&b"A: b"[..]));
        // A CR may be the start of a CRLF.
        assert_eq!(lines.next(text), None);
        let text = b"HTTP/1.1 200 OK\r\nA: b\n\r\nok\n\n";
        assert_eq!(lines.next(text), Some(&b""[..]));
        assert_eq!(lines.rest(text), b"ok\n\n");
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_the_final_one_judged() {
        let (verdict, _) = exchange(
            &http_check(Some("ok")),
            answer(
                "HTTP/1.1 100 Continue\r\n\r\n\
                 HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ),
            false,
        )
        .await;
        assert_eq!(verdict, Verdict::passed("HTTP 200"));
        // Several of them, with headers of their own, and bare LFs.
        let (verdict, _) = exchange(
            &http_check(None),
            answer(
                "HTTP/1.1 100 Continue\n\n\
                 HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
                 HTTP/1.1 503 Service Unavailable\r\n\r\n",
            ),
            false,
        )
        .await;
        assert_eq!(verdict, Verdict::failed("HTTP 503 (expected 200-299)"));
        // 101 is the last answer in HTTP/1.1: a switch of protocol, which no health page asks.
        let (verdict, _) = exchange(
            &http_check(None),
            answer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"),
            false,
        )
        .await;
        assert_eq!(verdict, Verdict::failed("HTTP 101 (expected 200-299)"));
        let (verdict, _) = exchange(
            &http_check(None),
            answer("HTTP/1.1 100 Continue\r\n\r\n"),
            true,
        )
        .await;
        assert_eq!(verdict, Verdict::failed("no final answer after HTTP 100"));
    }

    #[test]
    fn an_interim_answer_cut_short_waits_for_more() {
        let check = http_check(None);
        assert_eq!(judge(b"HTTP/1.1 100 Continue\r\n", false, &check), None);
        assert_eq!(
            judge(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2", false, &check),
            None
        );
        assert_eq!(
            judge(b"HTTP/1.1 100 Continue\r\n", true, &check),
            Some(Verdict::failed("no final answer after HTTP 100"))
        );
    }

    #[tokio::test]
    async fn a_chunked_body_is_searched_whole() {
        let check = http_check(Some("ok"));
        // "o" and "k" in two chunks; the last chunk ends the body on an open connection.
        let (verdict, _) = exchange(
            &check,
            answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nis \r\n1\r\no\r\n1;x=y\r\nk\r\n0\r\n\r\n"),
            false,
        )
        .await;
        assert_eq!(verdict, Verdict::passed("HTTP 200"));
        let (verdict, _) = exchange(
            &check,
            answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\n0\r\n\r\n"),
            false,
        )
        .await;
        assert_eq!(verdict, Verdict::failed("body lacks \"ok\""));
    }

    #[tokio::test]
    async fn at_most_64_kib_of_the_answer_is_read() {
        let mut text = answer("HTTP/1.1 200 OK\r\n\r\n");
        text.extend(std::iter::repeat_n(b'a', 70 * 1024));
        text.extend(b"ok");
        let (verdict, _) = exchange(&http_check(Some("ok")), text, false).await;
        assert_eq!(verdict, Verdict::failed("body lacks \"ok\""));
    }

    #[tokio::test]
    async fn an_answer_read_in_small_pieces_is_looked_at_once() {
        // Looking again at all that came before on every read would take a few hundred
        // million steps here, far past the exchange's time limit (in a debug build, tens of
        // seconds against a fraction of one).
        let head = "HTTP/1.1 200 OK\r\n\r\n";
        let mut text = answer(head);
        text.extend(std::iter::repeat_n(
            b'a',
            MAX_RESPONSE_BYTES - head.len() - 2,
        ));
        text.extend(b"ok");
        let (verdict, _) = exchange_in_pieces(&http_check(Some("ok")), text, false, 16).await;
        assert_eq!(verdict, Verdict::passed("HTTP 200"));

        let mut text = answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        for _ in 0..600 {
            text.extend(b"64\r\n");
            text.extend([b'a'; 100]);
            text.extend(b"\r\n");
        }
        text.extend(b"2\r\nok\r\n0\r\n\r\n");
        assert!(text.len() <= MAX_RESPONSE_BYTES);
        let (verdict, _) = exchange_in_pieces(&http_check(Some("ok")), text, false, 16).await;
        assert_eq!(verdict, Verdict::passed("HTTP 200"));
    }

    #[tokio::test]
    async fn what_is_not_http_fails() {
        for (text, detail) in [
            ("SSH-2.0-OpenSSH_9.6\r\n", "malformed status line"),
            ("HTTP/1.1 2000 OK\r\n", "malformed status line"),
            ("HTTP/1.1\r\n", "malformed status line"),
            ("", "connection closed without an answer"),
        ] {
            let (verdict, _) = exchange(&http_check(None), answer(text), true).await;
            assert_eq!(verdict, Verdict::failed(detail), "{text:?}");
        }
    }

    #[test]
    fn a_long_expect_body_is_quoted_short() {
        let expected = "x".repeat(50);
        let verdict = judge(
            b"HTTP/1.1 200 OK\r\n\r\n",
            true,
            &http_check(Some(&expected)),
        );
        assert_eq!(
            verdict,
            Some(Verdict::failed(format!(
                "body lacks \"{}\"...",
                "x".repeat(40)
            )))
        );
    }

    #[test]
    fn an_answer_cut_short_waits_for_more() {
        let check = http_check(Some("ok"));
        assert_eq!(judge(b"HTTP/1.1 2", false, &check), None);
        assert_eq!(judge(b"HTTP/1.1 200 OK\r\nContent-Le", false, &check), None);
        assert_eq!(
            judge(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nno",
                false,
                &check
            ),
            None
        );
    }

    #[test]
    fn dechunk_follows_the_chunks() {
        let cases: [(&[u8], &[u8], bool); 7] = [
            (b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n", b"abc", true),
            (b"2\r\nab\r\n5\r\ncd", b"abcd", false),
            (b"2\r\nab", b"ab", false),
            (b"A\r\n0123456789\r\n", b"0123456789", false),
            (b"zz\r\nab\r\n", b"", true),
            (b"2\r\nabcd", b"ab", true),
            (b"2\nab\n1;x=y\nc\n0\n\n", b"abc", true),
        ];
        for (body, data, ended) in cases {
            let expected = (data.to_vec(), ended);
            assert_eq!(dechunk(body), expected, "{body:?}");
            assert_eq!(
                dechunk_byte_by_byte(body),
                expected,
                "{body:?} byte by byte"
            );
        }
    }

    #[test]
    fn an_answer_read_in_pieces_gets_the_verdict_of_one_read() {
        let answers = [
            "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nall ok",
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot ready",
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbusyok",
            "HTTP/1.0 200 OK\n\nok",
            "HTTP/1.0 200 OK\r\n\r\nnope",
            "HTTP/1.0 200 OK\r\n",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nok",
            "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 503 Busy\r\n\r\n",
            "HTTP/1.1 100 Continue\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\no\r\n1\r\nk\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nnoXXok",
            "SSH-2.0-OpenSSH_9.6\r\n",
        ];
        for text in answers {
            for check in [http_check(None), http_check(Some("ok"))] {
                assert_eq!(
                    judge_byte_by_byte(text.as_bytes(), &check),
                    judge(text.as_bytes(), true, &check).unwrap(),
                    "{text:?} expecting {:?}",
                    check.expect_body
                );
            }
        }
    }

    #[test]
    fn the_default_host_is_the_address_and_any_port_but_80() {
        let v4: IpAddr = "10.0.0.11".parse().unwrap();
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11));
        assert_eq!(default_host(v4, 80), "10.0.0.11");
        assert_eq!(default_host(v4, 8080), "10.0.0.11:8080");
        assert_eq!(default_host(v6, 80), "[2001:db8::11]");
        assert_eq!(default_host(v6, 8080), "[2001:db8::11]:8080");
    }

    #[test]
    fn os_errors_read_without_their_number() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(
            format!("connect: {}", os_message(&refused)),
            "connect: Connection refused"
        );
        assert_eq!(os_message(&io::Error::other("odd")), "odd");
    }
}

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
        if let Some(verdict) = judge(&response, complete, http) {
            return verdict;
        }
    }
}

/// The verdict on the answer read so far, or `None` while more of it could change the
/// verdict. `complete`: nothing more will come (end of stream, or the read limit).
fn judge(response: &[u8], complete: bool, http: &HttpCheck) -> Option<Verdict> {
    let mut response = response;
    let mut interim = None;
    let status = loop {
        let status_line = match find(response, b"\n") {
            Some(end) => &response[..end],
            None if !complete => return None,
            None if response.is_empty() => {
                return Some(Verdict::failed(match interim {
                    Some(interim) => format!("no final answer after HTTP {interim}"),
                    None => "connection closed without an answer".to_owned(),
                }));
            }
            None => response,
        };
        let Some(status) = status_code(status_line) else {
            return Some(Verdict::failed("malformed status line"));
        };
        if !is_interim(status) {
            break status;
        }
        match split_head(response) {
            Some((_, next)) => {
                response = next;
                interim = Some(status);
            }
            None if complete => {
                return Some(Verdict::failed(format!(
                    "no final answer after HTTP {status}"
                )));
            }
            None => return None,
        }
    };
    if !http.expect_status.contains(&status) {
        return Some(Verdict::failed(format!(
            "HTTP {status} (expected {})",
            status_range_text(&http.expect_status)
        )));
    }
    let Some(expected) = &http.expect_body else {
        return Some(Verdict::passed(format!("HTTP {status}")));
    };
    let lacks_body = || Verdict::failed(format!("body lacks {}", quoted(expected)));
    let Some((headers, body)) = split_head(response) else {
        return complete.then(lacks_body);
    };
    let framing = Framing::of(headers);
    let (body, body_complete) = match framing {
        Framing::Chunked => {
            let (decoded, finished) = dechunk(body);
            (std::borrow::Cow::Owned(decoded), finished)
        }
        Framing::Length(length) => (body.into(), body.len() >= length),
        Framing::UntilClose => (body.into(), false),
    };
    if find(&body, expected.as_bytes()).is_some() {
        Some(Verdict::passed(format!("HTTP {status}")))
    } else if complete || body_complete {
        Some(lacks_body())
    } else {
        None
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

/// The head (status line and headers) and the body after the blank line, if it has come.
/// Lines end in CRLF or, from servers that write them by hand (an inetd script's `printf`),
/// in a bare LF, which RFC 9112 section 2.2 lets a recipient accept: the head ends at the
/// first line that is empty or only a CR.
fn split_head(response: &[u8]) -> Option<(&[u8], &[u8])> {
    let line_ends = response
        .iter()
        .enumerate()
        .filter_map(|(at, byte)| (*byte == b'\n').then_some(at));
    for end in line_ends {
        let after = &response[end + 1..];
        if let Some(body) = after.strip_prefix(b"\n").or(after.strip_prefix(b"\r\n")) {
            let head = &response[..end];
            return Some((head.strip_suffix(b"\r").unwrap_or(head), body));
        }
    }
    None
}

/// How the body's end is known (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Chunked,
    Length(usize),
    UntilClose,
}

impl Framing {
    fn of(head: &[u8]) -> Framing {
        let mut framing = Framing::UntilClose;
        for line in head.split(|byte| *byte == b'\n').skip(1) {
            let Some((name, value)) = std::str::from_utf8(line)
                .ok()
                .and_then(|line| line.split_once(':'))
            else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
            {
                // Chunked framing wins over any Content-Length.
                return Framing::Chunked;
            }
            if name.eq_ignore_ascii_case("content-length")
                && let Ok(length) = value.parse()
            {
                framing = Framing::Length(length);
            }
        }
        framing
    }
}

/// The data of a chunked body so far, and whether its last chunk has come. A malformed body
/// counts as finished: no more of it would make sense.
fn dechunk(mut body: &[u8]) -> (Vec<u8>, bool) {
    let mut data = Vec::with_capacity(body.len());
    loop {
        let Some(line_end) = find(body, b"\r\n") else {
            return (data, false);
        };
        let size_text = body[..line_end]
            .split(|byte| *byte == b';')
            .next()
            .and_then(|size| std::str::from_utf8(size).ok())
            .map(str::trim);
        let Some(size) = size_text.and_then(|size| usize::from_str_radix(size, 16).ok()) else {
            return (data, true);
        };
        if size == 0 {
            return (data, true);
        }
        let chunk = &body[line_end + 2..];
        if chunk.len() < size {
            data.extend_from_slice(chunk);
            return (data, false);
        }
        data.extend_from_slice(&chunk[..size]);
        match chunk[size..].strip_prefix(b"\r\n") {
            Some(rest) => body = rest,
            None if chunk.len() < size + 2 => return (data, false),
            None => return (data, true),
        }
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
        let (mut client, server) = tokio::io::duplex(256 * 1024);
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
        assert_eq!(
            split_head(b"HTTP/1.0 200 OK\n\nok\r\n\r\n"),
            Some((&b"HTTP/1.0 200 OK"[..], &b"ok\r\n\r\n"[..]))
        );
        assert_eq!(
            split_head(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nok\n\n"),
            Some((&b"HTTP/1.1 200 OK\r\nA: b"[..], &b"ok\n\n"[..]))
        );
        assert_eq!(split_head(b"HTTP/1.1 200 OK\r\nA: b\r\n\r"), None);
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
        assert_eq!(
            dechunk(b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"),
            (b"abc".to_vec(), true)
        );
        assert_eq!(dechunk(b"2\r\nab\r\n5\r\ncd"), (b"abcd".to_vec(), false));
        assert_eq!(dechunk(b"2\r\nab"), (b"ab".to_vec(), false));
        assert_eq!(
            dechunk(b"A\r\n0123456789\r\n"),
            (b"0123456789".to_vec(), false)
        );
        assert_eq!(dechunk(b"zz\r\nab\r\n"), (Vec::new(), true));
        assert_eq!(dechunk(b"2\r\nabcd"), (b"ab".to_vec(), true));
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

//! A small HTTP/1.1 server for `/metrics` and `/`: one request per connection, answered and
//! closed. Enough for Prometheus and a browser; nothing else needs it, so no HTTP library.
//!
//! Whoever can reach the port could otherwise hold connections open or send endless headers,
//! so the request head is bounded in size ([`MAX_HEAD_BYTES`]) and time ([`READ_TIMEOUT`]),
//! the answer's writing in time, and at most [`MAX_CONNECTIONS`] are served at once (the rest
//! wait in the listen queue).

use std::{future::Future, io, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
    sync::Semaphore,
    task::JoinSet,
    time::timeout,
};

use super::{Document, Pages, page, prometheus};

/// Longest request head (request line and headers) read; longer ones get 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// How long a client has to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Pause after a failed accept (out of file descriptors, …), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `pages` on `listener` until `shutdown` completes; connections still open then are
/// dropped.
pub async fn serve(listener: TcpListener, pages: Arc<Pages>, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    log::warn!("metrics listener accept: {error}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let pages = pages.clone();
        connections.spawn(async move {
            let _slot = slot;
            if let Err(error) = serve_connection(stream, &pages).await {
                log::debug!("metrics connection: {error}");
            }
        });
    }
}

/// Reads one request from `stream`, answers it and closes.
pub(super) async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    pages: &Arc<Pages>,
) -> io::Result<()> {
    let (response, head_only) = match timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => (
            Response::text(408, "request head not received in time\n"),
            false,
        ),
        Ok(Err(HeadError::Io(error))) => return Err(error),
        // Nothing asked, nothing to answer.
        Ok(Err(HeadError::Closed)) => return Ok(()),
        Ok(Err(HeadError::TooLarge)) => (
            Response::text(
                431,
                &format!("request head longer than {MAX_HEAD_BYTES} bytes\n"),
            ),
            false,
        ),
        Ok(Ok(head)) => match parse_request(&head) {
            Err(message) => (Response::text(400, &format!("{message}\n")), false),
            Ok(request) => (respond(&request, pages).await, request.method == "HEAD"),
        },
    };
    let bytes = response.to_bytes(head_only);
    match timeout(WRITE_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await
    {
        Ok(written) => written,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client did not take the answer in time",
        )),
    }
}

async fn respond(request: &Request<'_>, pages: &Arc<Pages>) -> Response {
    if !matches!(request.method, "GET" | "HEAD") {
        let mut response = Response::text(405, "only GET and HEAD\n");
        response.headers.push(("Allow", "GET, HEAD".to_owned()));
        return response;
    }
    let (document, content_type) = match request.path {
        "/metrics" => (Document::Metrics, prometheus::CONTENT_TYPE),
        "/" => (Document::StatusPage, page::CONTENT_TYPE),
        _ => return Response::text(404, "not found: try /metrics or /\n"),
    };
    match pages.render(document).await {
        Ok(body) => Response {
            status: 200,
            headers: vec![
                ("Content-Type", content_type.to_owned()),
                ("Cache-Control", "no-store".to_owned()),
            ],
            body: body.into_bytes(),
        },
        Err(error) => {
            log::warn!("metrics: {error}");
            Response::text(500, &format!("{error}\n"))
        }
    }
}

#[derive(Debug)]
enum HeadError {
    Io(io::Error),
    /// The client closed before the head was complete.
    Closed,
    TooLarge,
}

/// Reads up to the blank line that ends the head; what follows (a body) is left unread.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let read = stream.read(&mut chunk).await.map_err(HeadError::Io)?;
        if read == 0 {
            return Err(HeadError::Closed);
        }
        let searched_from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..read]);
        if let Some(end) = head_end(&head[searched_from..]) {
            head.truncate(searched_from + end);
            return Ok(head);
        }
        if head.len() >= MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Where the head in `bytes` ends (after its blank line). Lines may end in a bare LF, which
/// RFC 9112 lets servers accept.
fn head_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find_map(|at| {
        let rest = &bytes[at..];
        [&b"\r\n\r\n"[..], b"\n\r\n", b"\n\n"]
            .iter()
            .find(|blank| rest.starts_with(blank))
            .map(|blank| at + blank.len())
    })
}

#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a str,
    /// Without the query string.
    path: &'a str,
}

/// The request line (`GET /metrics HTTP/1.1`) and the headers' shape; header values are not
/// needed.
fn parse_request(head: &[u8]) -> Result<Request<'_>, &'static str> {
    let head = std::str::from_utf8(head).map_err(|_| "request head is not text")?;
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line: expected METHOD TARGET HTTP/1.1");
    };
    if method.is_empty() || !method.bytes().all(|byte| byte.is_ascii_uppercase()) {
        return Err("malformed method");
    }
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err("only HTTP/1.0 and HTTP/1.1");
    }
    // Absolute form (`http://host/metrics`), which proxies send, names the same path.
    let target = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |at| &rest[at..]),
        None => target,
    };
    let path = target.split('?').next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err("malformed request target");
    }
    for line in lines.take_while(|line| !line.is_empty()) {
        match line.split_once(':') {
            Some((name, _)) if !name.is_empty() && !name.contains([' ', '\t']) => {}
            _ => return Err("malformed header line"),
        }
    }
    Ok(Request { method, path })
}

struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".to_owned())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// The answer on the wire; `head_only` for HEAD, whose Content-Length is still the body's.
    fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut bytes = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            bytes.push_str(&format!("{name}: {value}\r\n"));
        }
        bytes.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut bytes = bytes.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_parse_or_say_what_is_wrong() {
        fn parse(text: &str) -> Result<(&str, &str), &'static str> {
            parse_request(text.as_bytes()).map(|request| (request.method, request.path))
        }
        assert_eq!(
            parse("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(("GET", "/metrics"))
        );
        assert_eq!(parse("HEAD /?x=1 HTTP/1.0\n\n"), Ok(("HEAD", "/")));
        assert_eq!(
            parse("GET http://lb1:9105/metrics HTTP/1.1\r\n\r\n"),
            Ok(("GET", "/metrics"))
        );
        assert_eq!(
            parse("GET http://lb1:9105 HTTP/1.1\r\n\r\n"),
            Ok(("GET", "/"))
        );
        for bad in [
            "GET /metrics\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "get / HTTP/1.1\r\n\r\n",
            "GET / HTTP/2\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nno colon\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_request(b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n").is_err());
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nbody"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }
}

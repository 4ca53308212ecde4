//! A minimal HTTP/1.1 server and client over std sockets: enough to see which real answered.
//!
//! The server answers every `GET` with `200 OK` and the body `<name>\n`, keeping connections
//! alive; the client sends `GET`s over one kept-alive connection. Both parse headers and
//! `Content-Length` across partial reads. Nothing here runs unbounded: every socket has a
//! timeout and the server stops when dropped.

use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::{
    netns::Netns,
    server::{ServerThread, accept_each, tcp_listener},
};

/// Longest request or response head (start line + headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Longest body accepted.
const MAX_BODY: usize = 1024 * 1024;
/// How often the server's threads look at the stop flag.
const POLL: Duration = Duration::from_millis(20);
/// Write timeout of the server's connections.
const SERVER_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// An HTTP server on a thread, bound inside a namespace. Stops (and joins its threads) on drop.
pub struct HttpServer {
    server: ServerThread,
}

impl HttpServer {
    /// Binds `addr` inside `netns` and serves on a thread; answers `GET`s with `name` + "\n".
    ///
    /// On an LVS-DR real, bind `0.0.0.0:PORT` (or the VIP) to accept connections to the VIP;
    /// the real's own address only accepts connections to that address. Port 0 picks a free
    /// port: see [`HttpServer::addr`].
    pub fn start(netns: &Netns, addr: SocketAddr, name: &str) -> HttpServer {
        let (listener, addr) = tcp_listener(netns, addr);
        let body = Arc::<str>::from(format!("{name}\n"));
        let server = ServerThread::spawn("HTTP server", addr, move |serving| {
            accept_loop(listener, body, serving.stop, serving.served)
        });
        HttpServer { server }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `GET`s answered so far.
    pub fn requests(&self) -> usize {
        self.server.served()
    }
}

fn accept_loop(
    listener: TcpListener,
    body: Arc<str>,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
) {
    let flag = Arc::clone(&stop);
    accept_each(&listener, &flag, "http conn", move |stream, peer| {
        if let Err(error) = serve(stream, &body, &stop, &requests) {
            eprintln!("HTTP connection from {peer}: {error}");
        }
    });
}

/// Serves one connection until the peer closes it, asks to close, errs, or the server stops.
fn serve(
    stream: TcpStream,
    body: &str,
    stop: &AtomicBool,
    requests: &AtomicUsize,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(POLL))?;
    stream.set_write_timeout(Some(SERVER_WRITE_TIMEOUT))?;
    let mut conn = Conn::new(stream, Some(stop));
    loop {
        let Some(head) = conn.read_head()? else {
            return Ok(()); // closed between requests
        };
        let mut words = head.start.split(' ');
        let (method, version) = (words.next().unwrap_or(""), words.nth(1).unwrap_or(""));
        let Ok(length) = head.content_length() else {
            conn.stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        };
        conn.read_body(length)?;
        if method != "GET" {
            conn.stream.write_all(
                b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        }
        let connection = head.header("connection").unwrap_or("").to_ascii_lowercase();
        let close = connection == "close" || (version == "HTTP/1.0" && connection != "keep-alive");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" },
        );
        // Counted before the answer leaves, so that a client that got it never finds the
        // count behind.
        requests.fetch_add(1, Ordering::SeqCst);
        conn.stream.write_all(response.as_bytes())?;
        if close {
            return Ok(());
        }
    }
}

/// An HTTP/1.1 client over one kept-alive connection. Its socket belongs to the namespace of
/// the thread that connects: call [`HttpClient::connect`] inside [`Netns::run`].
pub struct HttpClient {
    conn: Conn<'static>,
    host: String,
}

impl HttpClient {
    /// Connects within `timeout`; reads and writes then time out after `timeout` as well.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<HttpClient> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(HttpClient {
            conn: Conn::new(stream, None),
            host: addr.to_string(),
        })
    }

    /// `GET path` on the connection; returns the body of a `200` response, an error otherwise
    /// (including any other status, with the status line in the message).
    pub fn get(&mut self, path: &str) -> io::Result<String> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.conn.stream.write_all(request.as_bytes())?;
        let head = self.conn.read_head()?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            )
        })?;
        let length = head.content_length()?;
        let body = self.conn.read_body(length)?;
        let body = String::from_utf8(body).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, "response body is not UTF-8")
        })?;
        if head.start.split(' ').nth(1) != Some("200") {
            return Err(io::Error::other(format!("{}: {body:?}", head.start)));
        }
        Ok(body)
    }

    /// The client's end of the connection (its source port identifies the flow).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.conn.stream.local_addr()
    }
}

/// One `GET` on a fresh connection: a new flow for the balancer each time.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<String> {
    HttpClient::connect(addr, timeout)?.get(path)
}

/// A request or response head: start line and headers.
struct Head {
    start: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: &[u8]) -> io::Result<Head> {
        let text = std::str::from_utf8(raw).map_err(|_| invalid("head is not UTF-8"))?;
        let mut lines = text.split("\r\n");
        let start = lines.next().unwrap_or("").to_owned();
        let headers = lines
            .filter(|line| !line.is_empty())
            .map(|line| {
                let (name, value) = line
                    .split_once(':')
                    .ok_or_else(|| invalid("header without ':'"))?;
                Ok((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            })
            .collect::<io::Result<_>>()?;
        Ok(Head { start, headers })
    }

    /// First value of a header; `name` in lower case.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn content_length(&self) -> io::Result<usize> {
        if self.header("transfer-encoding").is_some() {
            return Err(invalid("Transfer-Encoding is not supported"));
        }
        let length = match self.header("content-length") {
            None => 0,
            Some(value) => value.parse().map_err(|_| invalid("bad Content-Length"))?,
        };
        if length > MAX_BODY {
            return Err(invalid("body too long"));
        }
        Ok(length)
    }
}

/// A stream plus the bytes read past the current message.
struct Conn<'a> {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Server side: read timeouts are polls of this flag rather than errors.
    stop: Option<&'a AtomicBool>,
}

impl<'a> Conn<'a> {
    fn new(stream: TcpStream, stop: Option<&'a AtomicBool>) -> Conn<'a> {
        Conn {
            stream,
            buf: Vec::new(),
            stop,
        }
    }

    /// Reads more bytes into `buf`; returns how many (0 at end of stream, or once the server
    /// stops).
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(read) => {
                    self.buf.extend_from_slice(&chunk[..read]);
                    return Ok(read);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    match self.stop {
                        None => return Err(error),
                        // The server is stopping: end the connection as if the peer had.
                        Some(stop) if stop.load(Ordering::SeqCst) => return Ok(0),
                        Some(_) => {}
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Reads up to the blank line ending a head. `None` if the stream ends before any byte of
    /// it (a clean close between messages).
    fn read_head(&mut self) -> io::Result<Option<Head>> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|window| window == b"\r\n\r\n") {
                let head = Head::parse(&self.buf[..end])?;
                self.buf.drain(..end + 4);
                return Ok(Some(head));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("head too long"));
            }
            if self.fill()? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "stream ended inside a head",
                    ))
                };
            }
        }
    }

    fn read_body(&mut self, length: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < length {
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended inside a body",
                ));
            }
        }
        Ok(self.buf.drain(..length).collect())
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Opens `connections` connections to `target` from inside `client`, one after another, and
/// sends `requests` GETs on each. Returns, per connection, the bodies it got (or the first
/// error). Bounded: every connect, read and write times out after `timeout`.
pub fn connections(
    client: &crate::Netns,
    target: SocketAddr,
    connections: usize,
    requests: usize,
    timeout: Duration,
) -> Vec<io::Result<Vec<String>>> {
    client.run(|| {
        // One CPU sends every SYN, and veth processes a frame on the sender's CPU: so the
        // balancer schedules all these connections on one CPU, one cursor, in ring order.
        crate::fixture::pin_to_current_cpu();
        (0..connections)
            .map(|_| {
                let mut connection = HttpClient::connect(target, timeout)?;
                (0..requests).map(|_| connection.get("/")).collect()
            })
            .collect()
    })
}

/// How many connections each server answered, from what [`connections`] returned: every
/// connection must have got its `requests` answers, all from one server (`served_by`).
/// `context` (say, the balancer's log) is printed with a failure.
pub fn connections_per_server(
    results: &[io::Result<Vec<String>>],
    requests: usize,
    context: impl Fn() -> String,
) -> std::collections::HashMap<String, u64> {
    let mut per_server = std::collections::HashMap::new();
    for (index, result) in results.iter().enumerate() {
        let bodies = result
            .as_ref()
            .unwrap_or_else(|error| panic!("connection {index}: {error}\n{}", context()));
        assert_eq!(bodies.len(), requests, "answers on connection {index}");
        *per_server.entry(served_by(bodies)).or_default() += 1;
    }
    per_server
}

/// The server that answered every request of one connection (the body names it), checking
/// that they all came from the same one.
pub fn served_by(bodies: &[String]) -> String {
    let first = bodies.first().expect("at least one response");
    assert!(
        bodies.iter().all(|body| body == first),
        "one connection, several servers: {bodies:?}"
    );
    first.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use std::{
        net::{Ipv4Addr, SocketAddrV4},
        thread::JoinHandle,
    };

    use super::*;

    /// A server on loopback of the test's own namespace, driven byte by byte: no root needed.
    fn loopback_server(
        name: &str,
    ) -> (
        Arc<AtomicBool>,
        SocketAddr,
        JoinHandle<()>,
        Arc<AtomicUsize>,
    ) {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, requests) = (Arc::clone(&stop), Arc::clone(&requests));
            let body = Arc::<str>::from(format!("{name}\n"));
            std::thread::spawn(move || accept_loop(listener, body, stop, requests))
        };
        (stop, addr, thread, requests)
    }

    #[test]
    fn keep_alive_and_partial_reads() {
        let (stop, addr, thread, requests) = loopback_server("real1");
        let timeout = Duration::from_secs(2);

        let mut client = HttpClient::connect(addr, timeout).unwrap();
        for _ in 0..3 {
            assert_eq!(client.get("/").unwrap(), "real1\n");
        }

        // A request dribbled out in pieces, then two pipelined in one write.
        let mut raw = TcpStream::connect(addr).unwrap();
        raw.set_read_timeout(Some(timeout)).unwrap();
        for piece in ["GE", "T / HT", "TP/1.1\r\nHo", "st: x\r", "\n", "\r\n"] {
            raw.write_all(piece.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        raw.write_all(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut all = String::new();
        raw.read_to_string(&mut all).unwrap();
        assert_eq!(all.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{all}");
        assert!(all.ends_with("Connection: close\r\n\r\nreal1\n"), "{all}");

        stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
        assert_eq!(requests.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn other_methods_are_refused() {
        let (stop, addr, thread, _) = loopback_server("x");
        let mut raw = TcpStream::connect(addr).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        raw.write_all(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
            .unwrap();
        let mut all = String::new();
        raw.read_to_string(&mut all).unwrap();
        assert!(all.starts_with("HTTP/1.1 405 "), "{all}");
        stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
    }

    #[test]
    fn client_reports_status_and_truncation() {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut conn = Conn::new(stream.try_clone().unwrap(), None);
            conn.read_head().unwrap().unwrap();
            stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
                .unwrap();
            conn.read_head().unwrap().unwrap();
            // Promises 10 bytes, sends 3, closes.
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                .unwrap();
        });
        let mut client = HttpClient::connect(addr, Duration::from_secs(2)).unwrap();
        let error = client.get("/").unwrap_err();
        assert!(error.to_string().contains("503"), "{error}");
        let error = client.get("/").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
        server.join().unwrap();
    }
}

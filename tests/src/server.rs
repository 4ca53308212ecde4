//! What the test servers (HTTP, UDP echo, bulk) share: a thread that serves inside a
//! namespace until a stop flag it polls is set, a count of what it served, and a join when
//! the server is dropped, so that no server outlives its test.

use std::{
    io,
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::netns::Netns;

/// A serving thread. Dropping it sets the stop flag and joins the thread.
pub struct ServerThread {
    /// What serves ("HTTP server", …), for messages.
    what: &'static str,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

/// What a serving thread is handed: the flag to poll, and the count to bump.
pub struct Serving {
    pub stop: Arc<AtomicBool>,
    pub served: Arc<AtomicUsize>,
}

impl ServerThread {
    /// Runs `serve` on a thread named after `what` and `addr`.
    pub fn spawn(
        what: &'static str,
        addr: SocketAddr,
        serve: impl FnOnce(Serving) + Send + 'static,
    ) -> ServerThread {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let serving = Serving {
            stop: Arc::clone(&stop),
            served: Arc::clone(&served),
        };
        let thread = std::thread::Builder::new()
            .name(format!("{what} {addr}"))
            .spawn(move || serve(serving))
            .unwrap_or_else(|error| panic!("spawning the {what} thread for {addr}: {error}"));
        ServerThread {
            what,
            addr,
            stop,
            served,
            thread: Some(thread),
        }
    }

    /// The address the server is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests (or datagrams, or connections) it has served.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("the {} on {} panicked", self.what, self.addr);
        }
    }
}

/// A nonblocking TCP listener bound to `addr` inside `netns`, and the address it got (port 0
/// picks a free port).
pub fn tcp_listener(netns: &Netns, addr: SocketAddr) -> (TcpListener, SocketAddr) {
    let listener = netns
        .run(|| TcpListener::bind(addr))
        .unwrap_or_else(|error| panic!("binding {addr} in netns {}: {error}", netns.name()));
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|error| panic!("making the listener on {addr} nonblocking: {error}"));
    let bound = listener
        .local_addr()
        .unwrap_or_else(|error| panic!("local address of the listener on {addr}: {error}"));
    (listener, bound)
}

/// How often an accepting server looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// Accepts connections on a nonblocking `listener` until `stop` is set, each handed to
/// `handle` on a thread of its own (named `what` and the peer); joins them all before
/// returning.
pub fn accept_each<F>(listener: &TcpListener, stop: &AtomicBool, what: &str, handle: F)
where
    F: Fn(TcpStream, SocketAddr) + Clone + Send + 'static,
{
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let handle = handle.clone();
                let worker = std::thread::Builder::new()
                    .name(format!("{what} {peer}"))
                    .spawn(move || handle(stream, peer));
                match worker {
                    Ok(worker) => workers.push(worker),
                    Err(error) => eprintln!("spawning a thread for {peer}: {error}"),
                }
                workers.retain(|worker| !worker.is_finished());
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL)
            }
            Err(error) => {
                eprintln!("{what}: accept: {error}");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
    for worker in workers {
        let _ = worker.join();
    }
}

//! What the test servers (HTTP, UDP echo, bulk) share: a thread that serves inside a
//! namespace until a stop flag it polls is set, a count of what it served, and a join when
//! the server is dropped, so that no server outlives its test.

use std::{
    net::{SocketAddr, TcpListener},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
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

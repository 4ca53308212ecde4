//! Traffic through the VIP while a scenario breaks something: a request loop of new
//! connections and long-lived connections, every outcome recorded with its time so the
//! scenario can say afterwards which failures it excuses.

use std::{
    collections::BTreeMap,
    io,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    VIP,
    http::{self, HttpClient},
    netns::Netns,
};

/// A new connection (one `GET`) this often.
const REQUEST_EVERY: Duration = Duration::from_millis(20);
/// The long-lived connections each get a `GET` this often.
const ROUND_EVERY: Duration = Duration::from_millis(100);
/// Connect, read and write timeout of every request: beyond a SYN's first retransmission
/// (1 s), so a link down for less than that costs time, not a failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Bounds of the loops, whatever the scenario does.
const MAX_REQUESTS: usize = 10_000;
const MAX_DURATION: Duration = Duration::from_secs(180);
/// Errors kept for the report.
const ERRORS_KEPT: usize = 8;

/// How a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A RST: refused, reset, or a broken pipe.
    Reset,
    /// No answer within [`REQUEST_TIMEOUT`].
    Timeout,
    /// The peer closed the connection (a FIN) before answering.
    Closed,
    /// Another real answered a long-lived connection: the flow moved.
    Moved,
    Other,
}

impl FailureKind {
    fn of(error: &io::Error) -> FailureKind {
        use io::ErrorKind::*;
        match error.kind() {
            ConnectionReset | ConnectionRefused | ConnectionAborted | BrokenPipe => {
                FailureKind::Reset
            }
            WouldBlock | TimedOut => FailureKind::Timeout,
            UnexpectedEof => FailureKind::Closed,
            _ => FailureKind::Other,
        }
    }
}

#[derive(Debug, Clone)]
struct Failure {
    at: Instant,
    kind: FailureKind,
    detail: String,
}

/// A request of the loop: when it was made, and the real that answered or how it failed.
type Outcome = (Instant, Result<String, Failure>);

/// A long-lived connection: the real that answered its first request, and how it broke.
#[derive(Debug, Clone)]
struct Kept {
    real: String,
    broken: Option<Failure>,
    /// When its own real last answered it.
    answered: Option<Instant>,
}

/// Which failures a scenario expects: those of flows on `real` (a real it killed), and those
/// of new connections made between `from` and `until` (before the balancer could know).
#[derive(Debug, Clone, Default)]
pub struct Excused {
    pub real: Option<String>,
    pub from: Option<Instant>,
    pub until: Option<Instant>,
}

impl Excused {
    /// Whether a request that ran from `made` to `ended` overlaps the excused window.
    fn window_overlaps(&self, made: Instant, ended: Instant) -> bool {
        match (self.from, self.until) {
            (Some(from), Some(until)) => made <= until && ended >= from,
            _ => false,
        }
    }
}

/// What the traffic saw.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Requests of the loop (each a new connection).
    pub requests: usize,
    pub failed: usize,
    /// Of `failed`, those [`Excused`].
    pub failed_excused: usize,
    pub long_lived: usize,
    pub broken: usize,
    /// Of `broken`, those on the excused real.
    pub broken_excused: usize,
    /// Failures and breaks that were a RST.
    pub resets: usize,
    /// Failures and breaks that were a timeout.
    pub timeouts: usize,
    /// Requests of the loop answered, per real.
    pub served: BTreeMap<String, usize>,
    /// The first unexcused errors, with when they happened (since the traffic started).
    pub errors: Vec<String>,
}

/// The request loop and the long-lived connections, running until [`Traffic::stop`] (or their
/// bounds: [`MAX_REQUESTS`], [`MAX_DURATION`]).
pub struct Traffic {
    started: Instant,
    stop: Arc<AtomicBool>,
    /// The loop's outcomes by when each request was made: the real that answered, or how it
    /// failed.
    requests: Arc<Mutex<Vec<Outcome>>>,
    kept: Arc<Mutex<Vec<Kept>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Traffic {
    /// Opens `long_lived` connections from `client` to the VIP (port 80), each answered once,
    /// then starts the request loop and the rounds on the long-lived connections.
    pub fn start(client: &Netns, long_lived: usize) -> Traffic {
        Traffic::start_to(client, SocketAddr::new(IpAddr::V4(VIP), 80), long_lived)
    }

    /// [`Traffic::start`] toward another service address than the DR topology's VIP.
    pub fn start_to(client: &Netns, vip: SocketAddr, long_lived: usize) -> Traffic {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let (connections, kept): (Vec<HttpClient>, Vec<Kept>) = client.run(|| {
            (0..long_lived)
                .map(|index| {
                    let mut connection = HttpClient::connect(vip, REQUEST_TIMEOUT)
                        .unwrap_or_else(|e| panic!("long-lived connection {index}: {e}"));
                    let real = connection
                        .get("/")
                        .unwrap_or_else(|e| panic!("long-lived connection {index}: {e}"));
                    let kept = Kept {
                        real,
                        broken: None,
                        answered: Some(Instant::now()),
                    };
                    (connection, kept)
                })
                .unzip()
        });
        let kept = Arc::new(Mutex::new(kept));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let rounds = {
            let (stop, kept) = (stop.clone(), kept.clone());
            std::thread::spawn(move || check_in_rounds(connections, &kept, &stop, started))
        };
        let request_loop = {
            let (stop, requests) = (stop.clone(), requests.clone());
            client.spawn_thread(move || {
                for _ in 0..MAX_REQUESTS {
                    if stop.load(Ordering::SeqCst) || started.elapsed() > MAX_DURATION {
                        break;
                    }
                    let made = Instant::now();
                    let outcome = http::get(vip, "/", REQUEST_TIMEOUT).map_err(|error| Failure {
                        at: Instant::now(),
                        kind: FailureKind::of(&error),
                        detail: error.to_string(),
                    });
                    lock(&requests).push((made, outcome));
                    std::thread::sleep(REQUEST_EVERY);
                }
            })
        };
        Traffic {
            started,
            stop,
            requests,
            kept,
            threads: vec![rounds, request_loop],
        }
    }

    /// Requests of the loop answered since `since`, per real.
    pub fn served_since(&self, since: Instant) -> BTreeMap<String, usize> {
        let mut served = BTreeMap::new();
        for (at, outcome) in lock(&self.requests).iter() {
            if let (true, Ok(real)) = (*at >= since, outcome) {
                *served.entry(real.trim().to_owned()).or_default() += 1;
            }
        }
        served
    }

    /// Requests of the loop so far (answered or not).
    pub fn requests_so_far(&self) -> usize {
        lock(&self.requests).len()
    }

    /// The real (as its server names itself) of each long-lived connection.
    pub fn long_lived_reals(&self) -> Vec<String> {
        lock(&self.kept)
            .iter()
            .map(|kept| kept.real.trim().to_owned())
            .collect()
    }

    /// How many long-lived connections their own real answered after `since`, and the
    /// descriptions of those broken so far (an error, or another real answering): for a
    /// scenario that checks them between its steps.
    pub fn long_lived_since(&self, since: Instant) -> (usize, Vec<String>) {
        let kept = lock(&self.kept);
        let answered = kept
            .iter()
            .filter(|kept| kept.broken.is_none() && kept.answered.is_some_and(|at| at > since))
            .count();
        let broken = kept
            .iter()
            .enumerate()
            .filter_map(|(index, kept)| {
                let failure = kept.broken.as_ref()?;
                Some(format!(
                    "long-lived {index} on {} at {:?}: {:?} {}",
                    kept.real.trim(),
                    failure.at.duration_since(self.started),
                    failure.kind,
                    failure.detail
                ))
            })
            .collect();
        (answered, broken)
    }

    /// Stops both loops and counts what they saw; `excused` says which failures the scenario
    /// expected.
    pub fn stop(mut self, excused: &Excused) -> Figures {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            thread.join().expect("a traffic thread panicked");
        }
        let mut figures = Figures::default();
        let since = |at: Instant| at.duration_since(self.started);
        let count_kind = |figures: &mut Figures, kind: FailureKind| match kind {
            FailureKind::Reset => figures.resets += 1,
            FailureKind::Timeout => figures.timeouts += 1,
            _ => {}
        };
        for (at, outcome) in lock(&self.requests).iter() {
            figures.requests += 1;
            match outcome {
                Ok(real) => *figures.served.entry(real.trim().to_owned()).or_default() += 1,
                Err(failure) => {
                    figures.failed += 1;
                    count_kind(&mut figures, failure.kind);
                    if excused.window_overlaps(*at, failure.at) {
                        figures.failed_excused += 1;
                    } else if figures.errors.len() < ERRORS_KEPT {
                        figures.errors.push(format!(
                            "request at {:?}: {:?} {}",
                            since(failure.at),
                            failure.kind,
                            failure.detail
                        ));
                    }
                }
            }
        }
        for kept in lock(&self.kept).iter() {
            figures.long_lived += 1;
            let Some(failure) = &kept.broken else {
                continue;
            };
            figures.broken += 1;
            count_kind(&mut figures, failure.kind);
            if excused.real.as_deref() == Some(kept.real.trim()) {
                figures.broken_excused += 1;
            } else if figures.errors.len() < ERRORS_KEPT {
                figures.errors.push(format!(
                    "long-lived on {} at {:?}: {:?} {}",
                    kept.real.trim(),
                    since(failure.at),
                    failure.kind,
                    failure.detail
                ));
            }
        }
        figures
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A `GET` on every unbroken connection each [`ROUND_EVERY`]; a connection that fails (or is
/// answered by another real) is marked broken and left alone from then on.
fn check_in_rounds(
    mut connections: Vec<HttpClient>,
    kept: &Mutex<Vec<Kept>>,
    stop: &AtomicBool,
    started: Instant,
) {
    let mut broken = vec![false; connections.len()];
    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_DURATION {
        for (index, connection) in connections.iter_mut().enumerate() {
            if broken[index] {
                continue;
            }
            let real = lock(kept)[index].real.clone();
            let failure = match connection.get("/") {
                Ok(body) if body == real => None,
                Ok(body) => Some((FailureKind::Moved, format!("answered by {}", body.trim()))),
                Err(error) => Some((FailureKind::of(&error), error.to_string())),
            };
            if failure.is_none() {
                lock(kept)[index].answered = Some(Instant::now());
            }
            if let Some((kind, detail)) = failure {
                broken[index] = true;
                lock(kept)[index].broken = Some(Failure {
                    at: Instant::now(),
                    kind,
                    detail,
                });
            }
        }
        std::thread::sleep(ROUND_EVERY);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

//! [`EbpfCapturer`]: captures through the program's capture map and ring buffer.
//!
//! Arming writes a new session number, the filter and an expiry [`LEASE`] ahead into
//! `LB_CAPTURE_V1`; a task reads the ring (woken through epoll on its descriptor), passes on
//! the records of that session, and pushes the expiry on every [`RENEW`]. Ending the session
//! writes 0 back first, so the program stops recording before the reader goes. A daemon
//! killed while capturing pushes nothing on: the program stops recording [`LEASE`] later at
//! most, even if no lbd ever starts again. Session numbers start from the clock, so records a
//! crashed predecessor left in the (pinned) ring never pass for this daemon's.

use std::{
    os::fd::{AsFd, OwnedFd},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use aya::maps::{Array, Map, MapData, MapError, RingBuf};
use lb_common::capture::{CAPTURE_SECTION, Capture, MAP_CAPTURE, MAP_CAPTURE_RING};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, oneshot},
};

use super::{map_err, take, typed};
use crate::dataplane::{
    DataplaneError,
    capture::{CaptureError, CaptureFilter, CaptureSession, CapturedPacket, Capturer},
};

/// Packets waiting for the client before lbd drops the newest (a client slower than the
/// traffic loses packets; the program never waits).
const QUEUE: usize = 4096;
/// How long the reader sleeps at most without a wake-up, in case one was missed.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// Records read before the reader lets other tasks run and looks whether its capture ended.
const BATCH: usize = 256;
/// How long an armed capture lasts unless its expiry is pushed on.
pub const LEASE: Duration = Duration::from_secs(5);
/// How often the reader pushes the expiry on: a few times within [`LEASE`], so a busy daemon
/// never lets a running capture lapse.
pub const RENEW: Duration = Duration::from_secs(1);

/// The program's capture map and ring, taken out of the loaded object.
pub struct CaptureMaps {
    control: Array<MapData, Capture>,
    ring: RingBuf<MapData>,
}

impl CaptureMaps {
    pub(super) fn take(ebpf: &mut aya::Ebpf) -> Result<Self, DataplaneError> {
        // The program's global, which aya made an array of one entry named after its section.
        let control = typed(take(ebpf, CAPTURE_SECTION)?, MAP_CAPTURE)?;
        let ring = match take(ebpf, MAP_CAPTURE_RING)? {
            raw @ Map::RingBuf(_) => typed(raw, MAP_CAPTURE_RING)?,
            _ => {
                return Err(DataplaneError::MissingMap {
                    map: MAP_CAPTURE_RING,
                });
            }
        };
        Ok(Self { control, ring })
    }

    /// The capture entry as the program reads it.
    pub fn armed(&self) -> Result<Capture, DataplaneError> {
        self.control.get(&0, 0).map_err(map_err(MAP_CAPTURE))
    }

    fn set(&mut self, capture: Capture) -> Result<(), DataplaneError> {
        self.control
            .set(0, capture, 0)
            .map_err(map_err(MAP_CAPTURE))
    }

    /// Arms a capture for `session` until `expires_ns` (CLOCK_MONOTONIC; tests, lbd goes
    /// through [`EbpfCapturer`]).
    pub fn arm(
        &mut self,
        session: u32,
        filter: CaptureFilter,
        expires_ns: u64,
    ) -> Result<(), DataplaneError> {
        self.set(entry(session, filter, expires_ns))
    }

    pub fn disarm(&mut self) -> Result<(), DataplaneError> {
        self.set(Capture::default())
    }

    /// The next record in the ring, if any, with its session (tests; lbd reads it on a task).
    pub fn next_record(&mut self) -> Option<(u32, CapturedPacket)> {
        let item = self.ring.next()?;
        CapturedPacket::from_record(&item)
    }
}

/// Captures through the program's maps, one at a time.
pub struct EbpfCapturer {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Held by the task reading it; a new capture's task waits for the last one's to let go.
    ring: Arc<tokio::sync::Mutex<RingBuf<MapData>>>,
    next_session: AtomicU32,
}

/// The capture entry and the session it is armed for, under one lock, and the entry only
/// written while holding it: a stop (SIGTERM) that comes while a start arms either finds the
/// session and disarms it, or comes before the start is recorded; it never writes its 0
/// before the start's entry lands, which would leave the program armed for nobody.
struct State {
    control: Array<MapData, Capture>,
    current: Option<Running>,
}

/// The capture running now.
struct Running {
    session: u32,
    filter: CaptureFilter,
    /// Ends its reader.
    stop: oneshot::Sender<()>,
}

/// The entry that arms `session` for `filter` until `expires_ns`.
fn entry(session: u32, filter: CaptureFilter, expires_ns: u64) -> Capture {
    Capture {
        session,
        service_id: filter.service_id,
        real_id: filter.real_id,
        _pad: 0,
        expires_ns,
    }
}

/// CLOCK_MONOTONIC [`LEASE`] from now, as the program's `bpf_ktime_get_ns()` counts.
fn lease_end() -> u64 {
    crate::admin::monotonic_now_ns() + LEASE.as_nanos() as u64
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the capture of `session` (any, with `None`) if it is the one running: 0 written
    /// first, so the program records nothing more, then its reader stopped.
    fn end(&self, session: Option<u32>) {
        let mut state = self.state();
        match (state.current.as_ref(), session) {
            (Some(running), Some(session)) if running.session != session => return,
            (None, _) => return,
            _ => {}
        }
        if let Err(error) = state.control.set(0, Capture::default(), 0) {
            log::error!("turning the capture off ({MAP_CAPTURE}): {error}");
        }
        if let Some(running) = state.current.take() {
            let _ = running.stop.send(());
        }
    }

    /// Pushes the expiry of `session` on to [`LEASE`] from now, if it is the one running;
    /// false if it is not (it ended).
    fn renew(&self, session: u32) -> bool {
        let mut state = self.state();
        let Some(filter) = state
            .current
            .as_ref()
            .filter(|running| running.session == session)
            .map(|running| running.filter)
        else {
            return false;
        };
        if let Err(error) = state.control.set(0, entry(session, filter, lease_end()), 0) {
            log::error!("capture: pushing its expiry on ({MAP_CAPTURE}): {error}");
        }
        true
    }
}

impl EbpfCapturer {
    /// Takes over the capture maps, turning off a capture an earlier lbd left armed (it
    /// crashed, or was killed, while a dump ran): the program would otherwise go on filling
    /// the ring for nobody until the capture expires.
    pub fn new(maps: CaptureMaps) -> Result<Self, DataplaneError> {
        let CaptureMaps { mut control, ring } = maps;
        turn_off_left(&mut control)?;
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    control,
                    current: None,
                }),
                ring: Arc::new(tokio::sync::Mutex::new(ring)),
                next_session: AtomicU32::new(clock.subsec_nanos() ^ clock.as_secs() as u32),
            }),
        })
    }
}

/// Turns off a capture an earlier lbd left armed in the capture map pinned in `pin_dir`, if
/// one is pinned there: for the start of lbd, before any step that can fail (a start that
/// fails never gets to [`EbpfCapturer::new`]).
///
/// A map of another layout (a development build's: the entry grew before any release) is
/// unpinned instead, so the loader makes one the program can read; the program that used it
/// keeps it until it is replaced.
pub fn turn_off_left_capture(pin_dir: &Path) -> Result<(), DataplaneError> {
    let path = pin_dir.join(MAP_CAPTURE);
    if !path.exists() {
        return Ok(());
    }
    let data = MapData::from_pin(&path).map_err(map_err(MAP_CAPTURE))?;
    match Array::<_, Capture>::try_from(Map::Array(data)) {
        Ok(mut control) => turn_off_left(&mut control),
        Err(MapError::InvalidValueSize { size, expected }) => {
            log::warn!(
                "{} holds {size}-byte entries where this lbd's are {expected}: unpinned, for a \
                 new one",
                path.display()
            );
            std::fs::remove_file(&path).map_err(|source| DataplaneError::Syscall {
                map: MAP_CAPTURE,
                call: "unlink",
                source,
            })
        }
        Err(error) => Err(map_err(MAP_CAPTURE)(error)),
    }
}

fn turn_off_left(control: &mut Array<MapData, Capture>) -> Result<(), DataplaneError> {
    let left = control.get(&0, 0).map_err(map_err(MAP_CAPTURE))?;
    if left.session != 0 {
        control
            .set(0, Capture::default(), 0)
            .map_err(map_err(MAP_CAPTURE))?;
        log::warn!(
            "turned off a capture (lbadm dump) that an earlier lbd left armed in {MAP_CAPTURE}"
        );
    }
    Ok(())
}

/// Ends a session (if still the one running): the capture off, its reader stopped.
struct End {
    shared: Arc<Shared>,
    session: u32,
}

impl Drop for End {
    fn drop(&mut self) {
        self.shared.end(Some(self.session));
    }
}

impl Capturer for EbpfCapturer {
    fn start(&self, filter: CaptureFilter) -> Result<CaptureSession, CaptureError> {
        let shared = &self.shared;
        let session = loop {
            let session = shared.next_session.fetch_add(1, Ordering::Relaxed);
            if session != 0 {
                break session;
            }
        };
        let (packets, receiver) = mpsc::channel(QUEUE);
        let (stop, stopped) = oneshot::channel();
        {
            let mut state = shared.state();
            if state.current.is_some() {
                return Err(CaptureError::Busy);
            }
            state
                .control
                .set(0, entry(session, filter, lease_end()), 0)
                .map_err(map_err(MAP_CAPTURE))?;
            state.current = Some(Running {
                session,
                filter,
                stop,
            });
        }
        // From here, whatever happens, the session's end turns the capture off.
        let end = End {
            shared: shared.clone(),
            session,
        };
        tokio::spawn(read_ring(shared.clone(), session, packets, stopped));
        Ok(CaptureSession::new(receiver, Box::new(end)))
    }

    fn stop(&self) {
        self.shared.end(None);
    }
}

/// Passes the ring's records of `session` on to `packets`, and keeps the capture from
/// expiring, until told to stop or nobody reads.
async fn read_ring(
    shared: Arc<Shared>,
    session: u32,
    packets: mpsc::Sender<CapturedPacket>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut ring = tokio::select! {
        ring = shared.ring.clone().lock_owned() => ring,
        _ = &mut stopped => return,
    };
    let registered = ring.as_fd().try_clone_to_owned().and_then(|fd| {
        // SAFETY: an `OwnedFd` owns its open descriptor, and only the `AsyncFd` holds it.
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|error| error.into_parts().1)
    });
    let readiness = match registered {
        Ok(readiness) => readiness,
        Err(error) => {
            log::error!("capture: waiting on {MAP_CAPTURE_RING}: {error}");
            return;
        }
    };
    let mut dropped = 0u64;
    let mut renewed = Instant::now();
    loop {
        if renewed.elapsed() >= RENEW {
            if !shared.renew(session) {
                return;
            }
            renewed = Instant::now();
        }
        // What is there now, a batch at a time; a record submitted after the last one read
        // wakes the descriptor again (the ring notifies a reader that has caught up).
        let mut read = 0;
        while read < BATCH
            && let Some(item) = ring.next()
        {
            read += 1;
            let Some((of, packet)) = CapturedPacket::from_record(&item) else {
                continue;
            };
            if of != session {
                continue;
            }
            match packets.try_send(packet) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        if read == BATCH {
            // Traffic that keeps the ring full would otherwise hold this worker thread for
            // good, and never see the capture end.
            tokio::task::yield_now().await;
            if packets.is_closed()
                || !matches!(stopped.try_recv(), Err(oneshot::error::TryRecvError::Empty))
            {
                return;
            }
            continue;
        }
        if dropped > 0 {
            log::warn!("capture: the client is slower than the traffic: {dropped} packets lost");
            dropped = 0;
        }
        tokio::select! {
            _ = &mut stopped => return,
            () = packets.closed() => return,
            ready = wait(&readiness) => if !ready { return },
        }
    }
}

/// Waits until the ring may hold records (or a while has passed); false if it cannot wait.
async fn wait(readiness: &AsyncFd<OwnedFd>) -> bool {
    match tokio::time::timeout(IDLE_POLL, readiness.readable()).await {
        Ok(Ok(mut guard)) => {
            guard.clear_ready();
            true
        }
        Ok(Err(error)) => {
            log::error!("capture: waiting on {MAP_CAPTURE_RING}: {error}");
            false
        }
        Err(_) => true,
    }
}

//! Captures for `lbadm dump`: the program copies the packets it finishes into a ring buffer
//! while one is armed (`lb_common::capture`), and lbd hands them to the client that asked.
//!
//! [`Capturer`] is the seam: [`EbpfCapturer`] (`ebpf/capture.rs`) arms the program's capture
//! map and reads its ring; [`FakeCapturer`] lets the admin socket's dump be tested without
//! root. One capture runs at a time; the [`CaptureSession`] a start returns turns it off when
//! dropped, whichever way the dump ends.

use std::sync::Mutex;

use lb_common::{
    FlowKey,
    capture::{CAPTURE_HAS_ORIGINAL, CaptureRecord},
};
use tokio::sync::mpsc;

pub use super::ebpf::{EbpfCapturer, LEASE, turn_off_left_capture};

/// Which packets a capture takes: those counted under this service and this real (0: any).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureFilter {
    pub service_id: u32,
    pub real_id: u32,
}

/// One packet as the program recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedPacket {
    /// The XDP action (`XDP_PASS` 2, …).
    pub action: u32,
    /// The `lb_common::Reason` number it was counted under.
    pub reason: u32,
    pub service_id: u32,
    pub real_id: u32,
    pub ingress_ifindex: u32,
    /// Where it left (`XDP_TX`: the ingress interface; `XDP_REDIRECT`: the target); 0 if it
    /// did not.
    pub egress_ifindex: u32,
    /// The frame's whole length as it left the program.
    pub frame_len: u32,
    /// CLOCK_MONOTONIC, as the program read it.
    pub monotonic_ns: u64,
    /// The 5-tuple as the packet arrived, for packets a forwarding program rewrote.
    pub original: Option<FlowKey>,
    /// The frame's first bytes as it left (at most the snap length).
    pub data: Vec<u8>,
}

impl CapturedPacket {
    /// The packet in a ring-buffer record, and the session it was recorded for; `None` for a
    /// record of another size (another layout).
    pub fn from_record(bytes: &[u8]) -> Option<(u32, CapturedPacket)> {
        if bytes.len() != size_of::<CaptureRecord>() {
            return None;
        }
        // SAFETY: exactly a `CaptureRecord`'s bytes; every bit pattern is valid for it.
        let record: CaptureRecord =
            unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<CaptureRecord>()) };
        let captured = (record.captured_len as usize).min(record.data.len());
        Some((
            record.session,
            CapturedPacket {
                action: record.action,
                reason: record.reason,
                service_id: record.service_id,
                real_id: record.real_id,
                ingress_ifindex: record.ingress_ifindex,
                egress_ifindex: record.egress_ifindex,
                frame_len: record.frame_len,
                monotonic_ns: record.time_ns,
                original: (record.flags & CAPTURE_HAS_ORIGINAL != 0).then_some(record.original),
                data: record.data[..captured].to_vec(),
            },
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("a capture is already running (lbadm dump takes one at a time); stop it first")]
    Busy,
    #[error(transparent)]
    Dataplane(#[from] super::DataplaneError),
}

/// A running capture. Dropping it turns the capture off.
pub struct CaptureSession {
    packets: mpsc::Receiver<CapturedPacket>,
    _end: Box<dyn Send + Sync>,
}

impl CaptureSession {
    /// A session fed by `packets`; `end` is dropped (and turns the capture off) with it.
    pub fn new(packets: mpsc::Receiver<CapturedPacket>, end: Box<dyn Send + Sync>) -> Self {
        Self { packets, _end: end }
    }

    /// The next packet captured; `None` once the capture was stopped from elsewhere.
    pub async fn next(&mut self) -> Option<CapturedPacket> {
        self.packets.recv().await
    }
}

/// Starts captures.
pub trait Capturer: Send + Sync {
    /// Arms a capture of the packets `filter` takes; refused while another runs.
    fn start(&self, filter: CaptureFilter) -> Result<CaptureSession, CaptureError>;
    /// Turns off whatever capture runs (lbd is stopping); its session then ends.
    fn stop(&self);
}

/// A capturer for tests: [`FakeCapturer::send`] is what the program would record.
#[derive(Default)]
pub struct FakeCapturer {
    state: std::sync::Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    /// The session running, and its filter.
    armed: Option<(u64, CaptureFilter)>,
    packets: Option<mpsc::Sender<CapturedPacket>>,
    /// The last session started.
    last_session: u64,
}

impl FakeCapturer {
    /// The filter of the capture running now, if one is.
    pub fn armed(&self) -> Option<CaptureFilter> {
        self.state.lock().unwrap().armed.map(|(_, filter)| filter)
    }

    /// Hands the running capture a packet; false if none runs (or it is not reading).
    pub fn send(&self, packet: CapturedPacket) -> bool {
        let state = self.state.lock().unwrap();
        state
            .packets
            .as_ref()
            .is_some_and(|sender| sender.try_send(packet).is_ok())
    }
}

/// Turns the fake's capture off when its session ends, if it is still the one running (a
/// session stopped by lbd and outlived by a newer one must leave the newer one alone).
struct FakeEnd {
    state: std::sync::Arc<Mutex<FakeState>>,
    session: u64,
}

impl Drop for FakeEnd {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap();
        if state
            .armed
            .is_some_and(|(running, _)| running == self.session)
        {
            state.armed = None;
            state.packets = None;
        }
    }
}

impl Capturer for FakeCapturer {
    fn start(&self, filter: CaptureFilter) -> Result<CaptureSession, CaptureError> {
        let mut state = self.state.lock().unwrap();
        if state.armed.is_some() {
            return Err(CaptureError::Busy);
        }
        let (sender, receiver) = mpsc::channel(64);
        state.last_session += 1;
        let session = state.last_session;
        state.armed = Some((session, filter));
        state.packets = Some(sender);
        Ok(CaptureSession::new(
            receiver,
            Box::new(FakeEnd {
                state: self.state.clone(),
                session,
            }),
        ))
    }

    fn stop(&self) {
        let mut state = self.state.lock().unwrap();
        state.armed = None;
        state.packets = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_session_ending_late_leaves_the_next_one_running() {
        let capturer = FakeCapturer::default();
        let first = capturer.start(CaptureFilter::default()).unwrap();
        capturer.stop();
        let filter = CaptureFilter {
            service_id: 1,
            real_id: 2,
        };
        let _second = capturer.start(filter).unwrap();
        drop(first);
        assert_eq!(capturer.armed(), Some(filter));
    }
}

//! `lbadm dump`: the program copies the packets it finishes into a ring buffer, with what it
//! did to them, while a capture is armed.
//!
//! | map | key → value | written by | read by |
//! | --- | --- | --- | --- |
//! | [`MAP_CAPTURE`] | 0 → [`Capture`] (array of one: the program's [`CAPTURE_SECTION`]) | lbd (a dump request) | XDP |
//! | [`MAP_CAPTURE_RING`] | ring buffer of [`CaptureRecord`] | XDP | lbd |
//!
//! [`Capture::session`] 0 means no capture: reading it is all a packet pays when nobody dumps
//! (one load of the program's global, no lookup, and a branch). A capture is armed by
//! writing a new session number, the filter and an expiry that lbd pushes on while the dump
//! runs, so a capture whose lbd was killed stops recording by itself, whether or not another
//! lbd comes to turn it off. Records carry the session they were made for, so lbd skips
//! records of an earlier capture still in the ring (a program run that read the entry just
//! before it changed, or a daemon that crashed while capturing).

use crate::FlowKey;

/// The capture's switch and filter (array of one [`Capture`]). Pinned: a restarted lbd
/// turns off a capture its crashed predecessor left armed.
pub const MAP_CAPTURE: &str = "LB_CAPTURE_V1";
/// The section of the program's object that holds its [`Capture`], a global it reads in
/// place (a load, where a map costs a lookup); aya makes the section an array of one entry,
/// named after it, which lbd pins as [`MAP_CAPTURE`].
pub const CAPTURE_SECTION: &str = ".bss.capture";
/// Captured packets ([`CaptureRecord`] each). A ring buffer (`BPF_MAP_TYPE_RINGBUF`) of
/// [`CAPTURE_RING_BYTES`].
pub const MAP_CAPTURE_RING: &str = "LB_CAP_RING_V1";

/// Bytes of each packet a record holds at most (the pcap snap length).
pub const CAPTURE_SNAP_LEN: usize = 256;
/// The ring's size: a power of two, a multiple of the page size; about 2,900 records.
pub const CAPTURE_RING_BYTES: u32 = 1 << 20;

/// The one entry of [`MAP_CAPTURE`]. Written whole by lbd (a copy the program may read
/// half-way: a new session with the old filter records nothing wrong for more than one
/// packet's run, and lbd skips records whose session is not the one it armed).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capture {
    /// Which capture records are made for; 0 = none (the program records nothing).
    pub session: u32,
    /// Only packets counted under this service (forwarded to one of its reals, or one of its
    /// NAT replies); 0 = any packet, passed and dropped ones included.
    pub service_id: u32,
    /// Only packets counted under this real; 0 = any.
    pub real_id: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) from which the program records nothing more,
    /// as if [`Capture::session`] were 0: read only while a session is armed.
    pub expires_ns: u64,
}
const _: () = assert!(core::mem::size_of::<Capture>() == 24);

impl Capture {
    /// No capture (what the program's global starts as).
    pub const OFF: Capture = Capture {
        session: 0,
        service_id: 0,
        real_id: 0,
        _pad: 0,
        expires_ns: 0,
    };
}

/// [`CaptureRecord::flags`]: [`CaptureRecord::original`] holds the packet's 5-tuple as it
/// arrived (packets the NAT, full-NAT, tunnel and reply programs sent on, rewritten). Without
/// it, the frame's own headers are as the packet arrived, but for its Ethernet header.
pub const CAPTURE_HAS_ORIGINAL: u32 = 1;

/// One captured packet: what the program did with it, then its first bytes as it left the
/// program (rewritten, encapsulated; for a pass or a drop, as it came).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureRecord {
    /// The [`Capture::session`] it was made for.
    pub session: u32,
    /// The XDP action returned (`XDP_PASS` 2, `XDP_TX` 3, `XDP_REDIRECT` 4, `XDP_DROP` 1).
    pub action: u32,
    /// The [`crate::Reason`] it was counted under.
    pub reason: u32,
    /// Service and real it was counted under; 0 for none (passed, dropped).
    pub service_id: u32,
    pub real_id: u32,
    /// The interface it arrived on.
    pub ingress_ifindex: u32,
    /// Where it left: the ingress interface for `XDP_TX`, the target of `XDP_REDIRECT`, 0
    /// otherwise.
    pub egress_ifindex: u32,
    /// The frame's length as it left the program (all buffers).
    pub frame_len: u32,
    /// Bytes of [`CaptureRecord::data`] that hold the frame: at most [`CAPTURE_SNAP_LEN`].
    pub captured_len: u32,
    /// `CAPTURE_*` bits.
    pub flags: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when it was recorded.
    pub time_ns: u64,
    /// With [`CAPTURE_HAS_ORIGINAL`]: the packet's 5-tuple as it arrived.
    pub original: FlowKey,
    pub data: [u8; CAPTURE_SNAP_LEN],
}
const _: () = assert!(core::mem::size_of::<CaptureRecord>() == 344);
const _: () = assert!(core::mem::align_of::<CaptureRecord>() == 8);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), Copy, explicit padding, no invalid bit patterns.
    unsafe impl aya::Pod for super::Capture {}
}

//! Connection states, their timeouts, and the state machine, shared by the program (which
//! moves flows between states) and lbd (which lists them, counts them and sweeps expired
//! ones).
//!
//! The machine is IPVS's "input only" TCP table: in direct routing (and tunnel) mode the
//! balancer sees only the client's half of a connection, so its states are what the client's
//! flags say. A SYN opens (`SYN_RECV`), an ACK establishes, a FIN starts the close
//! (`FIN_WAIT`), a RST closes. UDP flows have one state.

/// [`crate::Flow::state`] values. 0 is never stored in a flow.
pub const STATE_NONE: u8 = 0;
pub const STATE_SYN_RECV: u8 = 1;
pub const STATE_ESTABLISHED: u8 = 2;
pub const STATE_FIN_WAIT: u8 = 3;
pub const STATE_TIME_WAIT: u8 = 4;
pub const STATE_CLOSE: u8 = 5;
pub const STATE_UDP: u8 = 6;

/// Slots of [`Settings::timeouts_s`]: states are below this.
pub const STATE_SLOTS: usize = 8;

/// The state's name as `ipvsadm -Lnc` prints it.
pub const fn state_name(state: u8) -> &'static str {
    match state {
        STATE_SYN_RECV => "SYN_RECV",
        STATE_ESTABLISHED => "ESTABLISHED",
        STATE_FIN_WAIT => "FIN_WAIT",
        STATE_TIME_WAIT => "TIME_WAIT",
        STATE_CLOSE => "CLOSE",
        STATE_UDP => "UDP",
        _ => "NONE",
    }
}

/// Whether a flow in this state counts as an active connection (`ActiveConn`); every other
/// state counts as inactive (`InActConn`), as in IPVS, UDP included.
#[inline(always)]
pub const fn is_active(state: u8) -> bool {
    state == STATE_ESTABLISHED
}

/// IPVS's default timeouts in seconds, per state (`ipvsadm --set` changes `ESTABLISHED`,
/// `FIN_WAIT` and `UDP`; the others are fixed, as there).
pub const DEFAULT_TIMEOUTS_S: [u32; STATE_SLOTS] = [
    2,   // NONE
    60,  // SYN_RECV
    900, // ESTABLISHED
    120, // FIN_WAIT
    120, // TIME_WAIT
    10,  // CLOSE
    300, // UDP
    2,   // unused
];

/// A flow's `last_seen_ns` is rewritten at most this often (unless its state changes), to
/// keep shared cache lines quiet. So it may be this much older than the flow's last packet,
/// and a flow expires between its timeout and its timeout plus this after its last packet
/// (see [`Settings::expires_after_ns`]).
pub const LAST_SEEN_GRANULARITY_NS: u64 = 1_000_000_000;

/// TCP header flags the machine reads.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Whether a TCP segment with these flags may open a connection: a SYN without ACK, RST or
/// FIN. Anything else without a flow is mid-stream (IPVS schedules only SYNs too).
#[inline(always)]
pub const fn opens_connection(flags: u8) -> bool {
    flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN
}

/// The state a TCP flow in `state` moves to when the client sends a segment with `flags`:
/// IPVS's input-only table. RST wins over SYN, SYN over FIN, FIN over ACK; a segment with
/// none of them changes nothing.
#[inline(always)]
pub const fn next_tcp_state(state: u8, flags: u8) -> u8 {
    if flags & TCP_RST != 0 {
        // A RST during the handshake is ignored (it may be forged); otherwise it closes.
        return if state == STATE_SYN_RECV {
            STATE_SYN_RECV
        } else {
            STATE_CLOSE
        };
    }
    if flags & TCP_SYN != 0 {
        // An established connection stays; any other reopens.
        return if state == STATE_ESTABLISHED {
            STATE_ESTABLISHED
        } else {
            STATE_SYN_RECV
        };
    }
    if flags & TCP_FIN != 0 {
        return match state {
            STATE_ESTABLISHED | STATE_FIN_WAIT => STATE_FIN_WAIT,
            STATE_SYN_RECV | STATE_TIME_WAIT => STATE_TIME_WAIT,
            _ => STATE_CLOSE,
        };
    }
    if flags & TCP_ACK != 0 {
        return match state {
            STATE_SYN_RECV | STATE_ESTABLISHED => STATE_ESTABLISHED,
            STATE_NONE => STATE_CLOSE,
            other => other,
        };
    }
    state
}

/// The one entry of [`crate::MAP_SETTINGS`]: knobs lbd may change while the program runs.
///
/// Each field is read on its own, so a program reading while lbd rewrites the entry sees, per
/// state, the old timeout or the new one: either is valid.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Idle time after which a flow in each state is gone, in seconds; 0 means the state's
    /// entry of [`DEFAULT_TIMEOUTS_S`] (so an unwritten entry behaves like IPVS).
    pub timeouts_s: [u32; STATE_SLOTS],
    /// `SETTINGS_*` bits.
    pub flags: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<Settings>() == 40);

/// [`Settings::flags`]: some real is NAT or full NAT, so packets that are for no service
/// may be replies to translate back (looked up in `MAP_REPLIES`). Without it, traffic that
/// is not ours pays nothing for NAT.
pub const SETTINGS_TRANSLATES_REPLIES: u32 = 1;
/// [`Settings::flags`]: no service is an all-ports one (port 0), so a destination that misses
/// its exact VIP:port needs no second lookup. Set only when known: an unwritten settings entry
/// (or one an older lbd wrote) leaves the second lookup on, which is always correct.
pub const SETTINGS_NO_ALL_PORTS_SERVICE: u32 = 2;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeouts_s: DEFAULT_TIMEOUTS_S,
            flags: 0,
            _pad: 0,
        }
    }
}

impl Settings {
    /// The timeout of `state` in nanoseconds.
    #[inline(always)]
    pub fn timeout_ns(&self, state: u8) -> u64 {
        let slot = state as usize % STATE_SLOTS;
        let mut seconds = self.timeouts_s[slot];
        if seconds == 0 {
            seconds = DEFAULT_TIMEOUTS_S[slot];
        }
        seconds as u64 * 1_000_000_000
    }

    /// How long after its `last_seen_ns` a flow in `state` is gone: its timeout, plus the
    /// granularity of `last_seen_ns` (a flow whose packets keep coming is never expired).
    #[inline(always)]
    pub fn expires_after_ns(&self, state: u8) -> u64 {
        self.timeout_ns(state) + LAST_SEEN_GRANULARITY_NS
    }
}

/// A real's connections by kind, kept by the program with atomic adds as flows enter and
/// leave states, and by lbd's sweep as it removes expired flows. Two's complement: a count
/// read while a decrement races its increment may be briefly -1 (lbd shows 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnCounts {
    /// Established TCP connections (`ActiveConn`).
    pub active: u64,
    /// Every other flow: TCP opening or closing, UDP (`InActConn`).
    pub inactive: u64,
}
const _: () = assert!(core::mem::size_of::<ConnCounts>() == 16);

impl ConnCounts {
    /// The counter a flow in `state` counts under, inside the shared entry at `counts`
    /// (both sides change it with atomic adds through this pointer, never through a
    /// reference).
    ///
    /// # Safety
    /// `counts` must point at a live `ConnCounts`.
    #[inline(always)]
    pub unsafe fn counter(counts: *mut ConnCounts, state: u8) -> *mut u64 {
        // SAFETY: the caller's; no reference is made, only a field address.
        unsafe {
            if is_active(state) {
                &raw mut (*counts).active
            } else {
                &raw mut (*counts).inactive
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_normal_connection_goes_through_syn_recv_established_fin_wait() {
        let mut state = STATE_SYN_RECV;
        state = next_tcp_state(state, TCP_ACK);
        assert_eq!(state, STATE_ESTABLISHED);
        state = next_tcp_state(state, TCP_ACK | 0x08);
        assert_eq!(state, STATE_ESTABLISHED);
        state = next_tcp_state(state, TCP_FIN | TCP_ACK);
        assert_eq!(state, STATE_FIN_WAIT);
        state = next_tcp_state(state, TCP_ACK);
        assert_eq!(state, STATE_FIN_WAIT);
    }

    #[test]
    fn ipvs_input_only_table() {
        // (state, flags, expected), read off IPVS's INPUT-ONLY rows.
        let table = [
            (STATE_SYN_RECV, TCP_RST, STATE_SYN_RECV),
            (STATE_ESTABLISHED, TCP_RST, STATE_CLOSE),
            (STATE_FIN_WAIT, TCP_RST | TCP_ACK, STATE_CLOSE),
            (STATE_CLOSE, TCP_SYN, STATE_SYN_RECV),
            (STATE_TIME_WAIT, TCP_SYN, STATE_SYN_RECV),
            (STATE_ESTABLISHED, TCP_SYN, STATE_ESTABLISHED),
            (STATE_SYN_RECV, TCP_FIN, STATE_TIME_WAIT),
            (STATE_CLOSE, TCP_FIN, STATE_CLOSE),
            (STATE_CLOSE, TCP_ACK, STATE_CLOSE),
            (STATE_TIME_WAIT, TCP_ACK, STATE_TIME_WAIT),
            (STATE_ESTABLISHED, 0x08, STATE_ESTABLISHED),
        ];
        for (state, flags, expected) in table {
            assert_eq!(
                next_tcp_state(state, flags),
                expected,
                "{} + flags {flags:#04x}",
                state_name(state)
            );
        }
    }

    #[test]
    fn only_a_bare_syn_opens() {
        assert!(opens_connection(TCP_SYN));
        assert!(opens_connection(TCP_SYN | 0x08 | 0x40));
        assert!(!opens_connection(TCP_SYN | TCP_ACK));
        assert!(!opens_connection(TCP_SYN | TCP_RST));
        assert!(!opens_connection(TCP_ACK));
        assert!(!opens_connection(0));
    }

    #[test]
    fn zero_timeouts_fall_back_to_ipvs_defaults() {
        let settings = Settings {
            timeouts_s: [0; STATE_SLOTS],
            ..Settings::default()
        };
        assert_eq!(settings.timeout_ns(STATE_ESTABLISHED), 900_000_000_000);
        assert_eq!(settings.timeout_ns(STATE_UDP), 300_000_000_000);
    }
}

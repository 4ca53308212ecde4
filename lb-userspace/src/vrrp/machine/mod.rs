//! The RFC 5798 (VRRPv3) state machine of one virtual router, pure: no sockets, no clock.
//!
//! The caller owns the I/O. It hands the machine what happened (`start`, `receive` of an
//! advert that passed validation, `poll` when [`Machine::next_deadline`] comes, faults,
//! priority and preempt-hold changes), each with `now`, a [`Duration`] since an epoch of
//! its choosing, and performs the [`Action`]s it gets back, in order: send an advert, add or
//! remove the virtual addresses on a transition, announce them again. So the tests run the
//! machine on a fake clock and a fake network, without root.
//!
//! # Timers
//!
//! As the RFC (§6.1), with the local effective priority `p` and the master's advert interval:
//!
//! ```text
//! Skew_Time            = ((256 - p) × Master_Adver_Interval) / 256
//! Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time
//! ```
//!
//! computed in nanoseconds with the division truncating (see [`skew_time`]): priority 100 at
//! 1 s gives a skew of exactly 609.375 ms and a master down interval of 3.609375 s, as
//! keepalived (which counts in microseconds) has it. The RFC's own unit, the centisecond,
//! would truncate that skew to 600 ms, and at a 10 ms interval to 0 for every priority, so
//! backups of different priorities would all time out together; nanoseconds keep the skew
//! strictly falling as the priority rises, at every interval the wire can carry.
//!
//! # Where the RFC is silent
//!
//! keepalived's answers:
//!
//! - `preempt_delay`: a lower-priority master is tolerated for this long after startup,
//!   after leaving FAULT, and after the first lower-priority advert that follows one of
//!   priority ≥ ours; after that its adverts are discarded and Master_Down preempts it.
//! - `initial_state: Master` (`state MASTER`) does not jump to MASTER: it waits as BACKUP
//!   for one advert interval plus Skew_Time (keepalived: plus a minimal skew) instead of
//!   Master_Down_Interval, so a live master of higher priority is heard before we add its
//!   addresses and steal its traffic. An address owner (priority 255) becomes master at
//!   once, as the RFC says, and always preempts, without delay, whatever `preempt` says.
//! - FAULT (tracked interface down…): a master sends priority 0 first, so the backup takes
//!   over within Skew_Time; no timers run and adverts are ignored. Leaving FAULT is a fresh
//!   startup (BACKUP, or MASTER for an address owner).
//!
//! Ours:
//!
//! - A master that hears a lower-priority master, or a priority-0 goodbye, keeps its role,
//!   answers with an advert at once and asks for its addresses to be announced again: the
//!   other side had moved the traffic to itself (a healed split brain, keepalived#166).
//! - Preempt hold (connection sync has not caught up) blocks preemption like
//!   `preempt: false`, and also an owner's and `initial_state: Master`'s early start (they
//!   wait Master_Down_Interval); a silent master or a priority-0 advert still hands over.
//! - An advert from our own primary address (looped back) is ignored.
//! - An advert's Max Adver Int is read within 10 ms..=40.95 s: a 0 would make Master_Down
//!   fire at once and the role flap.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

#[cfg(test)]
mod tests;

/// The priority of the router that owns the virtual addresses (RFC §5.2.4).
pub const OWNER_PRIORITY: u8 = 255;
/// The priority a master sends as it stops, so a backup takes over within Skew_Time.
pub const STOP_PRIORITY: u8 = 0;
/// The advert interval's unit on the wire, and so the finest interval there is.
pub const INTERVAL_UNIT: Duration = Duration::from_millis(10);
/// The longest interval the 12-bit Max Adver Int field carries: 4095 centiseconds.
pub const MAX_INTERVAL: Duration = Duration::from_millis(40_950);

/// Skew_Time = ((256 − priority) × master_adver_interval) / 256, in nanoseconds, truncated.
///
/// Exact to half a nanosecond for any interval that is a whole number of centiseconds.
pub fn skew_time(priority: u8, master_adver_interval: Duration) -> Duration {
    let nanos = (256 - u128::from(priority)) * master_adver_interval.as_nanos() / 256;
    duration_from_nanos(nanos)
}

/// Master_Down_Interval = 3 × master_adver_interval + Skew_Time.
pub fn master_down_interval(priority: u8, master_adver_interval: Duration) -> Duration {
    3 * master_adver_interval + skew_time(priority, master_adver_interval)
}

fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let seconds = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // The remainder is below 10⁹, so it fits.
    Duration::new(seconds, (nanos % NANOS_PER_SEC) as u32)
}

/// The state the configuration asks for at startup (keepalived's `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialState {
    Backup,
    Master,
}

/// One virtual router's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// 1..=255.
    pub vrid: u8,
    /// Configured, 1..=255; 255 means address owner (always master when alive).
    pub priority: u8,
    /// A whole number of centiseconds, 10 ms..=40.95 s.
    pub advert_interval: Duration,
    /// Whether a higher-priority backup takes over from a lower-priority master.
    /// Ignored for an owner, which always preempts.
    pub preempt: bool,
    /// How long a lower-priority master is tolerated after startup, after leaving FAULT, or
    /// after the first lower-priority advert following one of priority ≥ ours (keepalived's
    /// meaning). Ignored for an owner, and without `preempt`.
    pub preempt_delay: Duration,
    pub initial_state: InitialState,
    /// Ours: the source of our adverts, and the equal-priority tie-break (higher wins).
    pub primary_address: IpAddr,
}

/// Why [`Params`] cannot run a virtual router.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("vrid 0 is not valid: virtual router ids are 1..=255")]
    Vrid,
    #[error("priority 0 is not valid: it is what a stopping master sends; configure 1..=255")]
    Priority,
    #[error(
        "advert interval {0:?} is not valid: VRRPv3 carries whole centiseconds \
         from 10ms to 40.95s"
    )]
    AdvertInterval(Duration),
}

impl Params {
    pub fn validate(&self) -> Result<(), ParamsError> {
        if self.vrid == 0 {
            return Err(ParamsError::Vrid);
        }
        if self.priority == STOP_PRIORITY {
            return Err(ParamsError::Priority);
        }
        let interval = self.advert_interval;
        if interval < INTERVAL_UNIT
            || interval > MAX_INTERVAL
            || !interval.as_nanos().is_multiple_of(INTERVAL_UNIT.as_nanos())
        {
            return Err(ParamsError::AdvertInterval(interval));
        }
        Ok(())
    }
}

/// The RFC's states, named as keepalived prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not running: before `start`, after `shutdown`.
    Initialize,
    Backup,
    Master,
    /// Not in the election (tracked interface down…): no adverts, no timers.
    Fault,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        })
    }
}

/// Why a transition happened. `Display` gives the sentence an operator reads in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Initialize → Backup.
    Startup,
    /// Initialize → Master.
    AddressOwner,
    /// Backup → Master: Master_Down_Timer ran out (`waited` is the interval it was set to).
    MasterDown { waited: Duration },
    /// Backup → Master for `initial_state: Master`: no master spoke within one interval
    /// plus Skew_Time of startup.
    InitialMaster { waited: Duration },
    /// Backup → Master: we discarded a lower-priority master's adverts until Master_Down.
    Preempting {
        peer: IpAddr,
        peer_priority: u8,
        ours: u8,
    },
    /// Backup → Master: the master said goodbye with priority 0.
    MasterStopped { peer: IpAddr },
    /// Master → Backup.
    HigherPriority {
        peer: IpAddr,
        peer_priority: u8,
        ours: u8,
    },
    /// Master → Backup: same priority, and the peer's primary address is the higher.
    HigherAddress { peer: IpAddr, priority: u8 },
    /// To Fault; the caller's words ("tracked interface eth1 down").
    Fault(String),
    /// Fault → Backup or Master; `was` is the fault that ended.
    FaultCleared { was: String },
    /// To Initialize.
    Shutdown,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Startup => f.write_str("startup"),
            Reason::AddressOwner => {
                write!(f, "address owner (priority {OWNER_PRIORITY}) at startup")
            }
            Reason::MasterDown { waited } => write!(
                f,
                "no advert for {} (master down interval)",
                seconds_text(*waited)
            ),
            Reason::InitialMaster { waited } => write!(
                f,
                "initial state MASTER, no master heard for {}",
                seconds_text(*waited)
            ),
            Reason::Preempting {
                peer,
                peer_priority,
                ours,
            } => write!(
                f,
                "preempting master {peer}: its priority {peer_priority} < ours {ours}"
            ),
            Reason::MasterStopped { peer } => write!(
                f,
                "priority {STOP_PRIORITY} advert from {peer} (its master stopped)"
            ),
            Reason::HigherPriority {
                peer,
                peer_priority,
                ours,
            } => write!(
                f,
                "advert from {peer} with priority {peer_priority} > ours {ours}"
            ),
            Reason::HigherAddress { peer, priority } => write!(
                f,
                "equal priority {priority}, its primary address {peer} is higher"
            ),
            Reason::Fault(fault) => f.write_str(fault),
            Reason::FaultCleared { was } => write!(f, "fault cleared (was: {was})"),
            Reason::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// `3.609s`: milliseconds are as fine as an operator needs (every interval shown is ≥ 10 ms).
fn seconds_text(duration: Duration) -> String {
    let millis = (duration.as_nanos() + 500_000) / 1_000_000;
    let (whole, fraction) = (millis / 1000, millis % 1000);
    if fraction == 0 {
        return format!("{whole}s");
    }
    let fraction = format!("{fraction:03}");
    format!("{whole}.{}s", fraction.trim_end_matches('0'))
}

/// What the caller must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority (0 on shutdown) and Max Adver Int = our
    /// advert_interval.
    SendAdvert { priority: u8 },
    /// The state changed. The caller adds/removes the virtual addresses, sends gratuitous
    /// ARP / unsolicited NA on entering Master, runs the notify hooks.
    Transition {
        from: State,
        to: State,
        reason: Reason,
    },
    /// Still master, but a peer claimed the role (lower priority, or its priority-0
    /// goodbye): the network may have learned its MAC for our addresses (a healed split
    /// brain, keepalived#166), so announce them again as on becoming master.
    Reannounce { peer: IpAddr },
}

/// The one timer that runs: Adver_Timer in Master, Master_Down_Timer in Backup.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Timer {
    Stopped,
    Advert {
        due: Duration,
    },
    MasterDown {
        due: Duration,
        /// What it was set to, for the reason when it fires.
        waited: Duration,
        set_by: MasterDownCause,
        /// The lower-priority master whose adverts we discarded since it was set: if it
        /// fires, we are preempting that master.
        discarded_master: Option<(IpAddr, u8)>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MasterDownCause {
    /// Startup or an accepted advert: Master_Down_Interval.
    Silence,
    /// `initial_state: Master`: one interval plus Skew_Time.
    QuickStart,
    /// A priority-0 advert: Skew_Time.
    MasterStopped(IpAddr),
}

/// keepalived's preempt_delay window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreemptDelay {
    /// The next lower-priority advert opens a window.
    Unarmed,
    /// Lower-priority masters are tolerated until then.
    Until(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TransitionRecord {
    at: Duration,
    from: State,
    to: State,
    reason: Reason,
}

/// One virtual router's state machine (RFC 5798 §6.4).
#[derive(Debug, Clone)]
pub struct Machine {
    params: Params,
    state: State,
    /// Effective: configured, adjusted by the caller's tracking; an owner's stays 255.
    priority: u8,
    master_adver_interval: Duration,
    /// Backup: the last master heard from.
    master_address: Option<IpAddr>,
    timer: Timer,
    preempt_hold: bool,
    preempt_delay: PreemptDelay,
    /// Kept while not running too, so `start` enters FAULT at once.
    fault: Option<String>,
    last_transition: Option<TransitionRecord>,
}

impl Machine {
    /// A machine in Initialize.
    ///
    /// # Panics
    ///
    /// If `params` fail [`Params::validate`], which config validation runs first.
    pub fn new(params: Params) -> Self {
        match Self::try_new(params) {
            Ok(machine) => machine,
            Err(error) => panic!("VRRP parameters were not validated: {error}"),
        }
    }

    pub fn try_new(params: Params) -> Result<Self, ParamsError> {
        params.validate()?;
        Ok(Machine {
            state: State::Initialize,
            priority: params.priority,
            master_adver_interval: params.advert_interval,
            master_address: None,
            timer: Timer::Stopped,
            preempt_hold: false,
            preempt_delay: PreemptDelay::Unarmed,
            fault: None,
            last_transition: None,
            params,
        })
    }

    /// The RFC's Startup event. Does nothing unless in Initialize.
    pub fn start(&mut self, now: Duration) -> Vec<Action> {
        if self.state != State::Initialize {
            return Vec::new();
        }
        if let Some(fault) = &self.fault {
            let reason = Reason::Fault(fault.clone());
            return vec![self.transition(now, State::Fault, reason)];
        }
        let reason = if self.is_owner() && !self.preempt_hold {
            Reason::AddressOwner
        } else {
            Reason::Startup
        };
        self.enter_election(now, reason)
    }

    /// The RFC's Shutdown event: a master says goodbye with priority 0; every state goes to
    /// Initialize with its timers stopped.
    pub fn shutdown(&mut self, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        match self.state {
            State::Initialize => return actions,
            State::Master => actions.push(Action::SendAdvert {
                priority: STOP_PRIORITY,
            }),
            State::Backup | State::Fault => {}
        }
        self.timer = Timer::Stopped;
        self.master_address = None;
        actions.push(self.transition(now, State::Initialize, Reason::Shutdown));
        actions
    }

    /// An advert for our vrid that passed validation, from `from` (its primary address).
    pub fn receive(
        &mut self,
        now: Duration,
        from: IpAddr,
        priority: u8,
        max_advert_interval: Duration,
    ) -> Vec<Action> {
        if from == self.params.primary_address {
            // Our own advert looped back (or a duplicate address): not a peer.
            return Vec::new();
        }
        match self.state {
            State::Initialize | State::Fault => Vec::new(),
            State::Backup => self.backup_receive(now, from, priority, max_advert_interval),
            State::Master => self.master_receive(now, from, priority, max_advert_interval),
        }
    }

    fn backup_receive(
        &mut self,
        now: Duration,
        from: IpAddr,
        priority: u8,
        max_advert_interval: Duration,
    ) -> Vec<Action> {
        if priority == STOP_PRIORITY {
            let skew = self.skew_time();
            self.timer = Timer::MasterDown {
                due: now + skew,
                waited: skew,
                set_by: MasterDownCause::MasterStopped(from),
                discarded_master: None,
            };
            return Vec::new();
        }
        if priority >= self.priority {
            self.preempt_delay = PreemptDelay::Unarmed;
        } else if !self.tolerates_lower_master(now) {
            // Discarded, so Master_Down_Timer runs out and we preempt it.
            if let Timer::MasterDown {
                discarded_master, ..
            } = &mut self.timer
            {
                *discarded_master = Some((from, priority));
            }
            self.master_address = Some(from);
            return Vec::new();
        }
        self.follow(now, from, max_advert_interval);
        Vec::new()
    }

    fn master_receive(
        &mut self,
        now: Duration,
        from: IpAddr,
        priority: u8,
        max_advert_interval: Duration,
    ) -> Vec<Action> {
        let reason = if priority == STOP_PRIORITY {
            None
        } else if priority > self.priority {
            Some(Reason::HigherPriority {
                peer: from,
                peer_priority: priority,
                ours: self.priority,
            })
        } else if priority == self.priority
            && address_number(from) > address_number(self.params.primary_address)
        {
            Some(Reason::HigherAddress {
                peer: from,
                priority,
            })
        } else {
            None
        };
        if let Some(reason) = reason {
            self.preempt_delay = PreemptDelay::Unarmed;
            self.follow(now, from, max_advert_interval);
            // One last advert at our own priority before standing down: after a split brain
            // heals, the winner's advert may reach us before ours reach it, and then it would
            // never learn that the segment's ARP caches may point here. Hearing a lower
            // priority master, it announces its addresses again (as keepalived does; RFC
            // 5798 says nothing either way).
            return vec![
                Action::SendAdvert {
                    priority: self.priority,
                },
                self.transition(now, State::Backup, reason),
            ];
        }
        self.timer = Timer::Advert {
            due: now + self.params.advert_interval,
        };
        vec![
            Action::SendAdvert {
                priority: self.priority,
            },
            Action::Reannounce { peer: from },
        ]
    }

    /// Accept `from` as master: learn its interval, reset Master_Down_Timer.
    fn follow(&mut self, now: Duration, from: IpAddr, max_advert_interval: Duration) {
        // 0 cannot be sent by a sane peer; read literally it would make Master_Down fire at
        // once and the role flap, so it counts as the shortest interval instead.
        self.master_adver_interval = max_advert_interval.clamp(INTERVAL_UNIT, MAX_INTERVAL);
        let wait = self.master_down_interval();
        self.timer = Timer::MasterDown {
            due: now + wait,
            waited: wait,
            set_by: MasterDownCause::Silence,
            discarded_master: None,
        };
        self.master_address = Some(from);
    }

    /// Whether a backup accepts a lower-priority master's advert rather than preempt it.
    fn tolerates_lower_master(&mut self, now: Duration) -> bool {
        if !self.preempts() || self.preempt_hold {
            return true;
        }
        let delay = self.preempt_delay_length();
        if delay.is_zero() {
            return false;
        }
        match self.preempt_delay {
            PreemptDelay::Unarmed => {
                self.preempt_delay = PreemptDelay::Until(now + delay);
                true
            }
            PreemptDelay::Until(end) => now < end,
        }
    }

    /// Fires every timer due at `now`.
    pub fn poll(&mut self, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        // Each firing sets the timer at least one advert interval (≥ 10 ms) ahead, so this
        // ends; it loops only so that a late poll catches up.
        loop {
            match self.timer {
                Timer::Advert { due } if due <= now => {
                    self.timer = Timer::Advert {
                        due: now + self.params.advert_interval,
                    };
                    actions.push(Action::SendAdvert {
                        priority: self.priority,
                    });
                }
                Timer::MasterDown {
                    due,
                    waited,
                    set_by,
                    discarded_master,
                } if due <= now => {
                    let reason = match (set_by, discarded_master) {
                        (MasterDownCause::MasterStopped(peer), _) => Reason::MasterStopped { peer },
                        (_, Some((peer, peer_priority))) => Reason::Preempting {
                            peer,
                            peer_priority,
                            ours: self.priority,
                        },
                        (MasterDownCause::QuickStart, None) => Reason::InitialMaster { waited },
                        (MasterDownCause::Silence, None) => Reason::MasterDown { waited },
                    };
                    actions.extend(self.become_master(now, reason));
                }
                _ => return actions,
            }
        }
    }

    /// When `poll` must next be called, if any timer runs. The end of a preempt delay is not
    /// one: it changes only how the next advert is treated.
    pub fn next_deadline(&self) -> Option<Duration> {
        match self.timer {
            Timer::Stopped => None,
            Timer::Advert { due } | Timer::MasterDown { due, .. } => Some(due),
        }
    }

    /// `Some(why)`: out of the election (a master says goodbye with priority 0 first).
    /// `None`: back in, as at startup. The caller combines its fault sources: `None` means
    /// all are clear. A new `Some` while in FAULT only replaces the words.
    pub fn set_fault(&mut self, now: Duration, fault: Option<String>) -> Vec<Action> {
        match fault {
            Some(fault) => {
                self.fault = Some(fault.clone());
                let mut actions = Vec::new();
                match self.state {
                    State::Initialize | State::Fault => return actions,
                    State::Master => actions.push(Action::SendAdvert {
                        priority: STOP_PRIORITY,
                    }),
                    State::Backup => {}
                }
                self.timer = Timer::Stopped;
                self.master_address = None;
                actions.push(self.transition(now, State::Fault, Reason::Fault(fault)));
                actions
            }
            None => {
                let Some(was) = self.fault.take() else {
                    return Vec::new();
                };
                if self.state != State::Fault {
                    return Vec::new();
                }
                self.enter_election(now, Reason::FaultCleared { was })
            }
        }
    }

    /// The effective priority after tracking, clamped to 1..=254; an owner's stays 255.
    /// A master's next advert carries it; a backup's Skew_Time and Master_Down_Interval
    /// follow it from the next advert on (the running timer is left as set, as the RFC
    /// recomputes only on adverts). Returns no actions today: the election moves on the
    /// next advert.
    pub fn set_priority(&mut self, _now: Duration, effective: u8) -> Vec<Action> {
        if !self.is_owner() {
            self.priority = effective.clamp(1, OWNER_PRIORITY - 1);
        }
        Vec::new()
    }

    /// A reload's settings: the configured priority, the advert interval, preempt and its
    /// delay. What makes the router another one (its vrid, its address, owning the
    /// addresses or not, the start state) stays: lbd refuses such a reload. A master sends at
    /// the new interval from its next advert; a backup's timers follow the master's adverts
    /// as always. The effective priority comes with [`Machine::set_priority`] (the tracker
    /// applies the weights to the new configured one). Returns no actions: the election
    /// moves on the next advert.
    pub fn reconfigure(&mut self, params: Params) -> Result<Vec<Action>, ParamsError> {
        params.validate()?;
        let owner = self.is_owner();
        self.params = Params {
            vrid: self.params.vrid,
            priority: if owner {
                OWNER_PRIORITY
            } else {
                params.priority.min(OWNER_PRIORITY - 1)
            },
            initial_state: self.params.initial_state,
            primary_address: self.params.primary_address,
            ..params
        };
        Ok(Vec::new())
    }

    /// While `hold` is true (connection sync has not copied the master's flows yet) this
    /// router does not preempt a live master; Master_Down and priority 0 still make it
    /// master. Returns no actions: the next advert is treated by the new rule.
    pub fn set_preempt_hold(&mut self, _now: Duration, hold: bool) -> Vec<Action> {
        self.preempt_hold = hold;
        Vec::new()
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Effective.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn preempt_hold(&self) -> bool {
        self.preempt_hold
    }

    pub fn fault(&self) -> Option<&str> {
        self.fault.as_deref()
    }

    /// Ourselves when master; the last master heard from as backup.
    pub fn master_address(&self) -> Option<IpAddr> {
        match self.state {
            State::Master => Some(self.params.primary_address),
            State::Backup => self.master_address,
            State::Initialize | State::Fault => None,
        }
    }

    /// Learned from the master's adverts in Backup; ours otherwise.
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    pub fn skew_time(&self) -> Duration {
        skew_time(self.priority, self.master_adver_interval)
    }

    pub fn master_down_interval(&self) -> Duration {
        master_down_interval(self.priority, self.master_adver_interval)
    }

    /// When, from, to, why.
    pub fn last_transition(&self) -> Option<(Duration, State, State, &Reason)> {
        self.last_transition
            .as_ref()
            .map(|record| (record.at, record.from, record.to, &record.reason))
    }

    fn is_owner(&self) -> bool {
        self.params.priority == OWNER_PRIORITY
    }

    fn preempts(&self) -> bool {
        self.params.preempt || self.is_owner()
    }

    fn preempt_delay_length(&self) -> Duration {
        if self.is_owner() {
            Duration::ZERO
        } else {
            self.params.preempt_delay
        }
    }

    /// RFC §6.4.1, for startup and for leaving FAULT.
    fn enter_election(&mut self, now: Duration, reason: Reason) -> Vec<Action> {
        self.master_adver_interval = self.params.advert_interval;
        self.preempt_delay = PreemptDelay::Until(now + self.preempt_delay_length());
        if self.is_owner() && !self.preempt_hold {
            return self.become_master(now, reason);
        }
        let quick_start = self.params.initial_state == InitialState::Master && !self.preempt_hold;
        let (wait, set_by) = if quick_start {
            (
                self.master_adver_interval + self.skew_time(),
                MasterDownCause::QuickStart,
            )
        } else {
            (self.master_down_interval(), MasterDownCause::Silence)
        };
        self.timer = Timer::MasterDown {
            due: now + wait,
            waited: wait,
            set_by,
            discarded_master: None,
        };
        self.master_address = None;
        vec![self.transition(now, State::Backup, reason)]
    }

    /// Send an advert, then the transition (whose caller announces the addresses).
    fn become_master(&mut self, now: Duration, reason: Reason) -> Vec<Action> {
        self.master_adver_interval = self.params.advert_interval;
        self.timer = Timer::Advert {
            due: now + self.params.advert_interval,
        };
        vec![
            Action::SendAdvert {
                priority: self.priority,
            },
            self.transition(now, State::Master, reason),
        ]
    }

    fn transition(&mut self, now: Duration, to: State, reason: Reason) -> Action {
        let from = self.state;
        self.state = to;
        self.last_transition = Some(TransitionRecord {
            at: now,
            from,
            to,
            reason: reason.clone(),
        });
        Action::Transition { from, to, reason }
    }
}

/// An address as the number the RFC compares (§6.4.3): IPv4 as 32 bits, IPv6 as 128. A
/// virtual router speaks one family, so mixing never decides a real election; the common
/// scale keeps both sides agreeing on a winner if it ever does.
fn address_number(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

//! VRRPv3 (RFC 5798): an active/standby pair shares the VIPs, keepalived style.
//!
//! - `packet.rs`: adverts parsed and emitted byte for byte (checksums with the pseudo-header),
//!   and the gratuitous ARP / unsolicited neighbour advertisement frames a new master sends;
//! - `machine.rs`: the RFC's state machine, pure, on a clock and a network it is handed (tests
//!   run it on fake ones, without root).

pub mod machine;
pub mod packet;

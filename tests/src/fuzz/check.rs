//! The properties checked on every frame, each failure described precisely: never
//! `XDP_ABORTED`; the verdict and reason the model expects; a passed frame byte for byte as it
//! came; a forwarded one sent to the real the model names (any real of the service only
//! where the model has no answer, which the config leaves no room for), counted under it,
//! equal to the exact rewrite for that real, with valid checksums whenever the input's were
//! valid.

use lb_common::Reason;

use super::{
    classify::{Datagram, Key, Kind},
    config::Mode,
    model::{Choice, Expect, Model},
    rewrite::{self, Expected},
};
use crate::{
    fixture::{XDP_DROP, XDP_PASS, XDP_TX, real_mac_for},
    packet::check_checksums,
    pcap::field_diff,
};

/// What the program did, as the fuzzer saw it.
pub struct Seen<'a> {
    pub action: u32,
    pub reason: Option<Reason>,
    /// The real id the program counted the frame under (0: none).
    pub counted_real: u32,
    pub output: &'a [u8],
}

/// A forwarded frame's real, and for a new full-NAT flow the local port it got: what the model
/// records.
pub struct Placed {
    pub real: usize,
    pub local_port: u16,
}

pub fn action_name(action: u32) -> &'static str {
    match action {
        0 => "XDP_ABORTED",
        XDP_DROP => "XDP_DROP",
        XDP_PASS => "XDP_PASS",
        XDP_TX => "XDP_TX",
        4 => "XDP_REDIRECT",
        _ => "unknown action",
    }
}

fn verdict(action: u32, reason: Reason, seen: &Seen) -> Result<(), String> {
    if seen.action != action || seen.reason != Some(reason) {
        return Err(format!(
            "expected {} ({}), got {} ({})",
            action_name(action),
            reason.name(),
            action_name(seen.action),
            seen.reason.map_or("no capture record", Reason::name)
        ));
    }
    Ok(())
}

/// Compares an output with the expected frame, checksum fields up to the form of zero.
fn same_frame(expected: &Expected, output: &[u8]) -> Result<(), String> {
    let want = &expected.frame;
    let mut got = output.to_vec();
    if want.len() == got.len() {
        for field in &expected.checksums {
            let at = field.at;
            let (w, g) = (
                u16::from_be_bytes([want[at], want[at + 1]]),
                u16::from_be_bytes([got[at], got[at + 1]]),
            );
            let zero = |v: u16| v == 0 || v == 0xffff;
            if w != g && zero(w) && zero(g) && !field.zero_is_none {
                got[at..at + 2].copy_from_slice(&w.to_be_bytes());
            }
        }
    }
    if *want == got {
        return Ok(());
    }
    Err(format!(
        "output differs from the expected rewrite:\n{}",
        field_diff(&expected.frame, output)
    ))
}

/// Checks one frame's outcome against the model's expectation; on success, where a forwarded
/// frame went.
pub fn check(
    model: &Model,
    input: &[u8],
    d: Option<&Datagram>,
    expect: &Expect,
    seen: &Seen,
) -> Result<Option<Placed>, String> {
    if seen.action == 0 {
        return Err("XDP_ABORTED".into());
    }
    match expect {
        Expect::Pass(reason) => {
            verdict(XDP_PASS, *reason, seen)?;
            if seen.output != input {
                return Err(format!(
                    "passed frame changed:\n{}",
                    field_diff(input, seen.output)
                ));
            }
            Ok(None)
        }
        Expect::Drop(reason) => {
            verdict(XDP_DROP, *reason, seen)?;
            Ok(None)
        }
        Expect::Reply { entry } => {
            let d = d.expect("a reply is a datagram");
            verdict(XDP_TX, Reason::ForwardedReply, seen)?;
            counted_under(model, entry.service, entry.real, seen)?;
            same_frame(&rewrite::reply_to_client(input, d, entry), seen.output)?;
            checksums_kept(input, seen.output)?;
            Ok(None)
        }
        Expect::ToReal(to_real) => {
            let d = d.expect("forwarded frames are datagrams");
            let spec = &model.services[to_real.service];
            // A new full-NAT flow finds no local port only when 32 in a row are held toward
            // its real (any of them, where the model leaves the choice free).
            let no_port_anywhere = |key: &Key| match to_real.choice {
                Choice::Exactly(real) => {
                    model.free_local_port(to_real.service, real, key).is_none()
                }
                Choice::Any => (0..spec.reals.len())
                    .all(|real| model.free_local_port(to_real.service, real, key).is_none()),
            };
            if seen.action == XDP_DROP
                && seen.reason == Some(Reason::DropNatNoPort)
                && spec.mode == Mode::FullNat
                && to_real.new_flow.as_ref().is_some_and(no_port_anywhere)
            {
                return Ok(None);
            }
            verdict(XDP_TX, to_real.reason, seen)?;
            if seen.output.len() < 14 {
                return Err(format!("forwarded a {}-byte frame", seen.output.len()));
            }
            let real = spec
                .reals
                .iter()
                .position(|real| seen.output[0..6] == real_mac_for(real.addr))
                .ok_or_else(|| {
                    format!(
                        "forwarded to MAC {:02x?}, no real of service {}",
                        &seen.output[0..6],
                        spec.name()
                    )
                })?;
            if let Choice::Exactly(wanted) = to_real.choice
                && wanted != real
            {
                return Err(format!(
                    "went to real {} of {}, the model holds it to {}",
                    spec.reals[real].addr,
                    spec.name(),
                    spec.reals[wanted].addr
                ));
            }
            counted_under(model, to_real.service, real, seen)?;
            let real_spec = &spec.reals[real];
            let mut local_port = to_real.local_port;
            if let (Mode::FullNat, Some(key)) = (spec.mode, to_real.new_flow) {
                local_port = model
                    .free_local_port(to_real.service, real, &key)
                    .ok_or("forwarded a new full-NAT flow the model finds no local port for")?;
            }
            let full = (spec.mode == Mode::FullNat).then_some(local_port);
            let expected = match (spec.mode, d.kind) {
                (Mode::Dr, _) => rewrite::direct_routed(input, d, real_spec.addr),
                (Mode::Ipip | Mode::Gue, _) => rewrite::tunnelled(
                    input,
                    d,
                    real_spec.addr,
                    spec.mode == Mode::Gue,
                    &to_real.handed,
                ),
                (Mode::Nat | Mode::FullNat, Kind::IcmpError) => {
                    rewrite::icmp_error_to_nat_real(input, d, real_spec.addr, real_spec.port, full)
                }
                (Mode::Nat | Mode::FullNat, _) => {
                    rewrite::nat_to_real(input, d, real_spec.addr, real_spec.port, full)
                }
            };
            same_frame(&expected, seen.output)?;
            checksums_kept(input, seen.output)?;
            Ok(Some(Placed { real, local_port }))
        }
    }
}

/// The program counted the frame under the real it sent it to (or, for a reply, came from).
fn counted_under(model: &Model, service: usize, real: usize, seen: &Seen) -> Result<(), String> {
    let addr = model.services[service].reals[real].addr;
    let id = model.real_id(addr);
    if seen.counted_real != id {
        return Err(format!(
            "sent for real {addr} (id {id}) but counted under real id {}",
            seen.counted_real
        ));
    }
    Ok(())
}

/// A frame whose checksums were all valid leaves with valid ones.
fn checksums_kept(input: &[u8], output: &[u8]) -> Result<(), String> {
    if check_checksums(input).is_ok() {
        check_checksums(output).map_err(|e| format!("valid checksums in, bad out: {e}"))?;
    }
    Ok(())
}

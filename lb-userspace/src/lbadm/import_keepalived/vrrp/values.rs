//! The values of an instance's directives read as lbd's: hooks, intervals, addresses, and
//! why what has no key is listed.

use std::{net::IpAddr, time::Duration};

use super::{
    super::{convert::Notes, parse::Directive},
    HOOKS, MAX_ADVERT_CENTISECONDS,
};
use crate::config::ha::VirtualAddress;

/// The index in [`HOOKS`] of `keyword`, a `notify_STATE`.
pub(super) fn hook_index(keyword: &str) -> Option<usize> {
    HOOKS.iter().position(|(notify, _)| *notify == keyword)
}

/// The command of `notify_STATE "COMMAND" [USER [GROUP]]` as lbd runs it (its words
/// separated by single spaces), or `None` when lbd could not run it as keepalived does
/// (listed).
pub(super) fn hook_command(notes: &mut Notes, directive: &Directive) -> Option<String> {
    let keyword = &directive.keyword;
    let Some(command) = directive.value() else {
        notes.skip(directive, format!("{keyword} has no command"));
        return None;
    };
    if directive.args.len() > 1 {
        notes.skip(
            directive,
            format!(
                "{}: lbd runs hooks as the user it runs as; it has no user or group for them",
                directive.args[1..].join(" ")
            ),
        );
    }
    let problem = if command.contains(['"', '\'', '\\']) {
        Some(
            "keepalived reads quotes and backslashes inside a command; lbd splits a hook at \
             blanks, without a shell: put the command in a script and name that",
        )
    } else if command.contains(|c: char| c.is_control() && c != '\t') {
        Some("a control character in the command")
    } else {
        None
    };
    if let Some(problem) = problem {
        notes.skip(directive, problem);
        return None;
    }
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.first() {
        None => {
            notes.skip(directive, format!("{keyword} has no command"));
            None
        }
        Some(program) if !program.starts_with('/') => {
            notes.skip(
                directive,
                format!(
                    "{program:?} is not an absolute path; lbd runs hooks without a shell or \
                     PATH: write the program's full path"
                ),
            );
            None
        }
        Some(_) => Some(words.join(" ")),
    }
}

/// `advert_int`: keepalived's seconds, 0.01 to 255 with a fraction; lbd's VRRPv3 interval,
/// whole centiseconds from 0.01s to 40.95s, taken only when exact.
pub(super) fn advert_interval(text: &str) -> Result<Duration, String> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits(whole) || !digits(fraction) {
        return Err(format!("{text:?} is not a number of seconds"));
    }
    let (hundredths, beyond) = fraction.split_at(fraction.len().min(2));
    let out_of_range =
        || format!("{text}s is outside VRRPv3's 0.01s to 40.95s (12 bits of centiseconds)");
    let whole: u64 = match whole {
        "" => 0,
        whole => whole.parse().map_err(|_| out_of_range())?,
    };
    let centiseconds = whole
        .checked_mul(100)
        .and_then(|centiseconds| {
            centiseconds.checked_add(format!("{hundredths:0<2}").parse().ok()?)
        })
        .ok_or_else(out_of_range)?;
    if beyond.chars().any(|c| c != '0') {
        let suggestion = if centiseconds == 0 {
            seconds_text(1)
        } else {
            format!(
                "{} or {}",
                seconds_text(centiseconds),
                seconds_text(centiseconds + 1)
            )
        };
        return Err(format!(
            "{text}s falls between two centiseconds, VRRPv3's unit; keepalived rounds it, lbd \
             takes it exact: write {suggestion}"
        ));
    }
    if !(1..=MAX_ADVERT_CENTISECONDS).contains(&centiseconds) {
        return Err(out_of_range());
    }
    Ok(Duration::from_millis(centiseconds * 10))
}

/// `5` centiseconds → `0.05`.
fn seconds_text(centiseconds: u64) -> String {
    format!("{}.{:02}", centiseconds / 100, centiseconds % 100)
}

/// `192.0.2.10` → `192.0.2.10/32`; `2001:db8::1/64` as written; a prefix of 0 or beyond the
/// family's is none.
pub(super) fn virtual_address(text: &str) -> Option<VirtualAddress> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (
            address.parse::<IpAddr>().ok()?,
            Some(prefix.parse::<u8>().ok()?),
        ),
        None => (text.parse::<IpAddr>().ok()?, None),
    };
    let full = if address.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(full);
    (1..=full)
        .contains(&prefix)
        .then_some(VirtualAddress { address, prefix })
}

pub(super) fn reason(keyword: &str) -> &'static str {
    match keyword {
        "authentication" => "VRRPv3, which lbd speaks, has no authentication",
        "track_script" | "track_process" | "track_file" | "track_bfd" => {
            "lbd runs no trackers to adjust VRRP priorities (its track_services follows the \
             reals' health checks)"
        }
        "notify_master_rx_lower_pri" | "notify_deleted" => {
            "lbd's hooks are on_master, on_backup, on_fault and on_stop"
        }
        "smtp_alert" => "lbd sends no mail",
        "virtual_ipaddress_excluded" => {
            "lbd's vrrp has no addresses left out of adverts; list them in virtual_addresses \
             (those of the other family in an instance of their own)"
        }
        "virtual_routes" | "virtual_rules" => "lbd does not manage routes or rules with VRRP",
        "version" => "lbd speaks VRRPv3 only, so its peer must too",
        "use_vmac" | "vmac_xmit_base" => "lbd's vrrp has no virtual MAC",
        "dont_track_primary" => {
            "lbd always tracks the instance's interface: its link down means FAULT"
        }
        "lvs_sync_daemon_interface" => {
            "keepalived runs one sync daemon, the first configured; it ignores this one too"
        }
        _ => "lbd's vrrp has no key for it",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str, prefix: u8) -> Option<VirtualAddress> {
        Some(VirtualAddress {
            address: text.parse().unwrap(),
            prefix,
        })
    }

    #[test]
    fn virtual_addresses_get_a_prefix() {
        assert_eq!(virtual_address("192.0.2.10"), address("192.0.2.10", 32));
        assert_eq!(virtual_address("192.0.2.10/24"), address("192.0.2.10", 24));
        assert_eq!(
            virtual_address("2001:db8::10"),
            address("2001:db8::10", 128)
        );
        assert_eq!(virtual_address("192.0.2.10/33"), None);
        assert_eq!(virtual_address("192.0.2.10/0"), None);
        assert_eq!(virtual_address("eth0"), None);
    }

    #[test]
    fn advert_intervals_convert_exactly_or_say_why_not() {
        let millis = |text: &str| advert_interval(text).map(|interval| interval.as_millis());
        assert_eq!(millis("1"), Ok(1000));
        assert_eq!(millis("0.1"), Ok(100));
        assert_eq!(millis("0.05"), Ok(50));
        assert_eq!(millis(".5"), Ok(500));
        assert_eq!(millis("0.010000"), Ok(10));
        assert_eq!(millis("40.95"), Ok(40_950));
        let problem = |text: &str| advert_interval(text).unwrap_err();
        assert!(
            problem("0.055").contains("write 0.05 or 0.06"),
            "{}",
            problem("0.055")
        );
        assert!(
            problem("0.001").contains("write 0.01"),
            "{}",
            problem("0.001")
        );
        for text in ["0", "0.00", "41", "255", "99999999999999999999"] {
            assert!(
                problem(text).contains("outside VRRPv3's 0.01s to 40.95s"),
                "{text}"
            );
        }
        for text in ["", ".", "1s", "-1", "1.2.3"] {
            assert!(problem(text).contains("not a number of seconds"), "{text}");
        }
    }
}

//! `lbadm import-keepalived FILE`: keepalived.conf (keepalived 2.2 syntax) → our YAML, and
//! the list of every directive that could not be converted, with its file and line. Nothing
//! is dropped silently: a directive is either expressed in the YAML or listed.
//!
//! Pure apart from reading the config files: [`import`] returns the YAML text and the list;
//! the verb prints one on stdout and the other on stderr. The YAML always passes
//! [`config::parse`] (checked before it is returned), so `lbd --check` accepts it.
//!
//! # Layout
//!
//! - this file: the entry point and the types the verb sees;
//! - `parse.rs`: keepalived's syntax (comments, quotes, braces, `include`) → a tree of
//!   directives, as keepalived's `lib/parser.c` reads it; `grammar.rs`: which `{` opens a
//!   block (keepalived decides by keyword, and reports and reads past stray braces, which
//!   are listed); `macros.rs`: `$NAME` definitions, expanded;
//! - `glob.rs`: the `include` patterns (glob(3) with `GLOB_BRACE`);
//! - `convert.rs`: the top-level blocks, `global_defs`, a `virtual_server`'s own settings;
//!   `reals.rs`: a `virtual_server` and its `real_server`s → a service; `check.rs`: the
//!   reals' checkers → one `health_check` per service; `vrrp.rs`: `vrrp_instance` → an
//!   entry of `vrrp:`, the LVS sync daemon → `sync:`;
//! - `yaml.rs`: the converted config as YAML text, keys in SPEC.md's order.
//!
//! # Mapping
//!
//! keepalived fills in defaults that ipvsadm would not, and the YAML spells them out so that
//! the converted service behaves as keepalived's did: a `virtual_server` without `protocol`
//! is UDP (keepalived 2.x), without `lvs_sched` `wlc`, without `lvs_method` `nat`, on port
//! 0 (all ports) without `persistence_timeout` persistent for 360 s. A value keepalived
//! reports and ignores is listed and left out, so keepalived's default applies.
//!
//! - `global_defs`: `router_id` → `instance` (characters outside `A-Za-z0-9_-` become `-`,
//!   at most 32; without one, `lb`); `lvs_timeouts tcp N tcpfin N udp N` → `timeouts`, each
//!   option alone (a 0, "keep the kernel's", is left out; beyond 31 days keepalived ignores
//!   it); the rest is listed.
//! - `virtual_server IP [PORT]` (IPv4, IPv6; a `/mask` or `-range` after the address is
//!   dropped, as keepalived drops it, and listed) → a service: `lvs_sched`/`lb_algo` →
//!   `scheduler` (the six lbd has; another is listed and the service gets `wlc`);
//!   `lvs_method`/`lb_kind` `DR`/`NAT`/`TUN` → `forward` (a real's own `lvs_method` → its
//!   `forward`), `TUN type gue port N` → `tunnel: gue`, `gue_port: N` (a bad tunnel option
//!   keeps the method and the tunnel it had, as keepalived keeps them, and is listed);
//!   `persistence_timeout [N]` → `persistence` (360 s without N, keepalived's default);
//!   `persistence_granularity` → `persistence_netmask`; `weight` → the weight of its reals
//!   that have none; `sorry_server IP [PORT]` → `sorry_server` (its port as a real's);
//!   `inhibit_on_failure` → `on_failure: inhibit` (in a `virtual_server` whatever its
//!   argument: keepalived's handler ignores it). `fwmark` and `group` services, `quorum`,
//!   `alpha`, `omega`, `hysteresis`, notifications and the like are listed.
//! - `real_server IP [PORT]` → a real: `weight` (written only when not 1; above lbd's 65535,
//!   65535, listed); the port is always written. dr and tun cannot change the port (IPVS
//!   ignores a DR real's port too), so such a real gets the service's port, and the change
//!   is listed; keepalived checks the port written, and so does the `health_check`. Reals
//!   beyond what lbd schedules (256 with a non-zero weight under lc/wlc, 1024 under any)
//!   get weight 0, listed.
//! - keepalived checks each real with its own checkers; lbd has one `health_check` per
//!   service. The first real's first `TCP_CHECK` or `HTTP_GET` becomes the service's; a real
//!   whose check differs, or a second checker of one real, is listed. An `HTTP_GET` checks
//!   its first `url` with a `path` (keepalived drops one without); all its `status_code`
//!   lines make one set of codes, as keepalived ORs them. `SSL_GET`, `MISC_CHECK`,
//!   `SMTP_CHECK`, `DNS_CHECK`, `BFD_CHECK`, … are listed (lbd has no TLS, script or
//!   protocol checks).
//! - `vrrp_instance` → an entry of `vrrp:`: `interface`, `virtual_router_id` → `vrid`,
//!   `priority`, `advert_int` → `advert_interval` (when it is whole centiseconds, VRRPv3's
//!   unit; else listed), `nopreempt`, `preempt_delay`, `state` → `initial_state`,
//!   `unicast_peer` → `unicast_peers`, `virtual_ipaddress` → `virtual_addresses` (of the
//!   family of the first address, as keepalived keeps them; the others listed),
//!   `track_interface` → `track_interfaces` (a positive weight, which keepalived adds while
//!   the link is up, raises the priority and is negated: lbd moves the priority while a link
//!   is down), `notify_master`/`_backup`/`_fault`/`_stop` → `hooks` (an absolute program
//!   with blank-separated arguments; else listed), `notify` → each hook no `notify_STATE`
//!   sets (lbd gives every hook the arguments keepalived gives `notify`). An instance without
//!   an interface, a router id or an address lbd can carry, or that clashes with an earlier
//!   one, is listed. `authentication`, `unicast_src_ip`, `track_script`, … are listed.
//! - `lvs_sync_daemon` (global) or `lvs_sync_daemon_interface` (an instance's) → `sync:
//!   {peer}` when its instance has one unicast peer; else listed. `vrrp_sync_group` (lbd's
//!   instances run alone), `vrrp_script`, `static_ipaddress`, … are listed.
//! - `interfaces` (required): [`ImportOptions::interfaces`] if given, else the
//!   `vrrp_instance`s' `interface`s, else `eth0`, with a note that it is a guess.
//! - `limits`: written only where the services need more than lbd's default map sizes.
//!
//! Text from the input (names, file names) is escaped wherever the YAML or stderr carries
//! it, so it cannot end a line early.
//!
//! # Health check timing
//!
//! keepalived (`check_tcp.c`, `check_http.c`): a checker starts up (unless `alpha`); while
//! up, a failed check is retried `retry` times, `delay_before_retry` apart, and the real goes
//! down after `retry + 1` consecutive failures; while down, the first success brings it back
//! up; otherwise checks run every `delay_loop`. Each value is the checker's, else its real
//! server's, else its virtual server's, else the default: `delay_loop` 60 s,
//! `connect_timeout` 5 s, `retry` 1 (`nb_get_retry` is HTTP_GET's old name for it),
//! `delay_before_retry` 1 s (TCP_CHECK) or 3 s (HTTP_GET).
//!
//! lbd's checker also starts a real up and counts consecutive results, so:
//!
//! - `rise: 1`: one success brings a keepalived real back; a larger `rise` would keep reals
//!   out longer than keepalived did.
//! - `fall: retry + 1`: the same number of consecutive failures takes a real out.
//! - `interval: delay_loop`: lbd checks at one cadence, after a failure too. A written
//!   `delay_before_retry` that differs from it is listed: a failing real now leaves after
//!   `fall × delay_loop` rather than `delay_loop + retry × delay_before_retry`.
//! - `timeout: connect_timeout`, at most the interval (a check ends before the next starts).

mod check;
mod convert;
mod glob;
mod grammar;
mod macros;
mod parse;
mod reals;
#[cfg(test)]
mod tests;
mod vrrp;
mod yaml;

use std::{
    borrow::Cow,
    fmt,
    path::{Path, PathBuf},
};

use crate::config::{self, ConfigError};

/// What the caller decides that keepalived.conf cannot say.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The interfaces the XDP program attaches to; empty: the `vrrp_instance`s' interfaces.
    pub interfaces: Vec<String>,
}

/// A converted config.
#[derive(Debug, Clone)]
pub struct Import {
    /// Our config, valid for `lbd --check`.
    pub yaml: String,
    /// Every directive the YAML does not carry, in the order keepalived reads them.
    pub unconverted: Vec<Unconverted>,
}

/// A directive the YAML does not carry (or carries only in part), and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Unconverted {
    /// The file it is in, as the include pattern named it.
    pub file: PathBuf,
    /// 1-based; 0 for a note about the file as a whole (something it does not say).
    pub line: usize,
    /// Its keyword, as written (`MISC_CHECK`).
    pub directive: String,
    pub reason: String,
}

/// `FILE:LINE: DIRECTIVE: not converted: REASON` (`FILE: …` for a note about the whole file).
impl fmt::Display for Unconverted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", shown_path(&self.file))?;
        if self.line != 0 {
            write!(f, ":{}", self.line)?;
        }
        write!(
            f,
            ": {}: not converted: {}",
            escape_controls(&self.directive),
            escape_controls(&self.reason)
        )
    }
}

/// Why nothing could be converted. Each names the file and, where there is one, the line.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: cannot read: {source}", shown_path(.path))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An included file that exists but cannot be read (a pattern that matches nothing is
    /// skipped and listed, as keepalived skips it).
    #[error("{}:{line}: include: cannot read {}: {source}", shown_path(.file), shown_path(.included))]
    ReadIncluded {
        file: PathBuf,
        line: usize,
        included: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}:{line}: include loop: {} is already being read (it includes itself)",
        shown_path(.file),
        shown_path(.included)
    )]
    IncludeLoop {
        file: PathBuf,
        line: usize,
        included: PathBuf,
    },
    /// One of [`ImportOptions::interfaces`].
    #[error(
        "interface {name:?}: not a Linux interface name (1 to {} bytes, without '/', ':' or \
         blanks)",
        config::MAX_INTERFACE_NAME_LEN
    )]
    Interface { name: String },
    /// A conversion the validator rejects: a bug of the converter, never the user's YAML.
    #[error(
        "{}: the converted YAML does not pass lbd's validation (a bug of lbadm \
         import-keepalived; please report it with the config): {source}",
        shown_path(.path)
    )]
    Invalid { path: PathBuf, source: ConfigError },
}

/// `path` as messages show it, its control characters escaped.
pub(crate) fn shown_path(path: &Path) -> String {
    escape_controls(&path.display().to_string()).into_owned()
}

/// `text` with its control characters (and the characters some YAML readers take for line
/// breaks) escaped as Rust writes them (`\r`, `\u{85}`), so that text from keepalived.conf
/// or a file name cannot end a line of the YAML (a comment, say) or of stderr early.
pub(crate) fn escape_controls(text: &str) -> Cow<'_, str> {
    let escaped = |c: char| {
        c.is_control()
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
            )
    };
    if !text.contains(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Converts the keepalived config at `path` (and the files it includes).
pub fn import(path: &Path, options: &ImportOptions) -> Result<Import, ImportError> {
    check_interfaces(options)?;
    let parsed = parse::read(path)?;
    converted(parsed, path, options)
}

/// [`import`] of `text`, as if it were the file at `path`, without touching a file: its
/// `include` lines are listed, not read. The parser fuzz target (`lb-userspace/fuzz`) runs
/// the importer through it.
pub fn import_text(
    text: &str,
    path: &Path,
    options: &ImportOptions,
) -> Result<Import, ImportError> {
    check_interfaces(options)?;
    converted(parse::read_text(path, text)?, path, options)
}

fn check_interfaces(options: &ImportOptions) -> Result<(), ImportError> {
    match options
        .interfaces
        .iter()
        .find(|name| !config::is_valid_interface_name(name))
    {
        Some(name) => Err(ImportError::Interface { name: name.clone() }),
        None => Ok(()),
    }
}

/// The parsed config (from `path`) → the YAML, checked by lbd's validation, and the list.
fn converted(
    parsed: parse::Parsed,
    path: &Path,
    options: &ImportOptions,
) -> Result<Import, ImportError> {
    let converted = convert::convert(&parsed.directives, path, options);
    let yaml = yaml::render(&converted.config);
    config::parse(&yaml, &format!("YAML converted from {}", shown_path(path))).map_err(
        |source| ImportError::Invalid {
            path: path.to_owned(),
            source,
        },
    )?;
    let mut skipped = parsed.skipped;
    skipped.extend(converted.skipped);
    Ok(Import {
        yaml,
        unconverted: in_reading_order(skipped),
    })
}

/// A directive left out, and where keepalived reads it.
#[derive(Debug, Clone)]
struct Skipped {
    /// Position in the whole config, includes spliced in; `usize::MAX` for notes about the
    /// whole file, which come last.
    order: usize,
    unconverted: Unconverted,
}

/// Sorted as keepalived reads the directives; a note made twice (a virtual server's `retry`
/// inherited by two reals) listed once.
fn in_reading_order(mut skipped: Vec<Skipped>) -> Vec<Unconverted> {
    skipped.sort_by_key(|entry| entry.order);
    let mut seen = std::collections::HashSet::new();
    skipped
        .into_iter()
        .filter(|entry| seen.insert((entry.order, entry.unconverted.clone())))
        .map(|entry| entry.unconverted)
        .collect()
}

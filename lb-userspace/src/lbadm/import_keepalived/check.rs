//! keepalived's checkers, one set per real server → lbd's one `health_check` per service.
//! The timing rules (`retry` → `fall`, `rise: 1`, `delay_loop` → `interval`) are in the
//! module doc of `import_keepalived`.

use std::{collections::HashSet, net::IpAddr, ops::RangeInclusive, time::Duration};

use super::{
    Skipped,
    convert::{self, Notes, ServiceSettings},
    parse::Directive,
    reals::RealSettings,
    yaml::{Check, CheckKind, Service},
};
use crate::config::{HttpCheck, duration_text};

/// keepalived's defaults (`KEEPALIVED_DEFAULT_DELAY`, the virtual server's connect
/// timeout, `default_retry` of TCP_CHECK and HTTP_GET).
const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_RETRY: u32 = 1;
/// The status codes keepalived takes (`HTTP_STATUS_CODE_MIN`, `_MAX`).
const STATUS_CODES: RangeInclusive<u16> = 100..=599;
/// lbd's bounds on `interval` and on `rise`/`fall` (see `config::validate::health`).
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
const MAX_FALL: u32 = 100;

/// A value and the directive that set it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Setting<'d, T> {
    pub(super) value: T,
    pub(super) at: &'d Directive,
}

/// The timing directives a checker, a real server or a virtual server may carry; each
/// level's fill the gaps of the one inside it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Timing<'d> {
    delay_loop: Option<Setting<'d, Duration>>,
    connect_timeout: Option<Setting<'d, Duration>>,
    retry: Option<Setting<'d, u32>>,
    delay_before_retry: Option<Setting<'d, Duration>>,
}

impl<'d> Timing<'d> {
    /// Takes `directive` if it is a timing directive (true), listing a value keepalived
    /// would refuse. `in_checker`: it is written in a checker, not in a real or virtual
    /// server, whose `retry` keepalived takes from 1 (a checker's from 0).
    pub(super) fn read(
        &mut self,
        notes: &mut Notes,
        directive: &'d Directive,
        in_checker: bool,
    ) -> bool {
        let value = directive.value().unwrap_or_default();
        let slot = match directive.keyword.as_str() {
            "delay_loop" => &mut self.delay_loop,
            "connect_timeout" => &mut self.connect_timeout,
            "delay_before_retry" => &mut self.delay_before_retry,
            "retry" => return self.read_retry(notes, directive, u32::from(!in_checker)),
            // HTTP_GET's old name for it.
            "nb_get_retry" if in_checker => return self.read_retry(notes, directive, 0),
            _ => return false,
        };
        // keepalived waits no time before a retry if told so; the other times are above 0.
        let least = if directive.keyword == "delay_before_retry" {
            Duration::ZERO
        } else {
            Duration::from_millis(1)
        };
        match convert::seconds(value).filter(|time| *time >= least) {
            Some(value) => {
                *slot = Some(Setting {
                    value,
                    at: directive,
                })
            }
            None => notes.skip(
                directive,
                format!(
                    "{value:?} is not a time in seconds{} with at most milliseconds; keepalived \
                     ignores it too",
                    if least.is_zero() { "" } else { " above 0" }
                ),
            ),
        }
        true
    }

    fn read_retry(&mut self, notes: &mut Notes, directive: &'d Directive, least: u32) -> bool {
        let value = directive.value().unwrap_or_default();
        match value.parse::<u32>() {
            Ok(count) if count >= least => {
                self.retry = Some(Setting {
                    value: count,
                    at: directive,
                });
            }
            _ => notes.skip(
                directive,
                format!(
                    "{value:?} is not a count from {least} (here); keepalived ignores it, and \
                     its default or the next level's applies"
                ),
            ),
        }
        true
    }

    /// `self`, its gaps filled from `outer`.
    fn within(self, outer: Timing<'d>) -> Timing<'d> {
        Timing {
            delay_loop: self.delay_loop.or(outer.delay_loop),
            connect_timeout: self.connect_timeout.or(outer.connect_timeout),
            retry: self.retry.or(outer.retry),
            delay_before_retry: self.delay_before_retry.or(outer.delay_before_retry),
        }
    }
}

/// Whether `keyword` is a checker block of a real server.
pub(super) fn is_checker(keyword: &str) -> bool {
    keyword.ends_with("_CHECK") || matches!(keyword, "HTTP_GET" | "SSL_GET")
}

/// Why lbd cannot run a checker of this kind.
fn unsupported_reason(keyword: &str) -> String {
    let reason = match keyword {
        "SSL_GET" => "lbd has no TLS (HTTPS) checks",
        "MISC_CHECK" => "lbd runs no scripts as checks",
        "SMTP_CHECK" => "lbd has no SMTP check",
        "DNS_CHECK" => "lbd has no DNS check",
        "BFD_CHECK" => "lbd has no BFD",
        "UDP_CHECK" => "lbd has no UDP check",
        "PING_CHECK" => "lbd has no ICMP check",
        "FILE_CHECK" => "lbd reads no files as checks",
        _ => "lbd has no such check",
    };
    reason.to_owned()
}

/// A converted checker of one real, and what of it is not converted (listed only if the
/// check is used).
struct Candidate<'d> {
    at: &'d Directive,
    check: Check,
    skipped: Vec<Skipped>,
}

/// The service's `health_check`: the first real's first convertible checker. Checkers that
/// differ from it, second checkers and checkers lbd has not are listed.
pub(super) fn service_check(
    notes: &mut Notes,
    settings: &ServiceSettings,
    reals: &[&RealSettings],
    service: &Service,
    vips: &HashSet<IpAddr>,
) -> Option<Check> {
    let mut chosen: Vec<Option<Candidate>> = Vec::new();
    let mut unsupported: Vec<(&Directive, String)> = Vec::new();
    for (real, converted) in reals.iter().zip(&service.reals) {
        let mut first: Option<Candidate> = None;
        for &directive in &real.checks {
            if !matches!(directive.keyword.as_str(), "TCP_CHECK" | "HTTP_GET") {
                unsupported.push((directive, unsupported_reason(&directive.keyword)));
                continue;
            }
            match (
                candidate(directive, real, settings, service, converted.port, vips),
                &first,
            ) {
                (Ok(candidate), None) => first = Some(candidate),
                (Ok(_), Some(earlier)) => notes.skip(
                    directive,
                    format!(
                        "a second checker of this real; lbd checks a real one way, so only the \
                         first ({}) is converted",
                        place(earlier.at)
                    ),
                ),
                (Err(reason), _) => unsupported.push((directive, reason)),
            }
        }
        chosen.push(first);
    }

    let service_check = chosen
        .iter()
        .flatten()
        .next()
        .map(|first| (first.check.clone(), first.at));
    for (real, candidate) in reals.iter().zip(chosen) {
        match (candidate, &service_check) {
            (Some(candidate), Some((check, _))) if candidate.check == *check => {
                notes.skipped.extend(candidate.skipped);
            }
            (Some(candidate), Some((check, from))) => notes.skip(
                candidate.at,
                format!(
                    "differs from the service's check ({}): {}; lbd's health_check is per \
                     service, so this real is checked like the first",
                    place(from),
                    differences(check, &candidate.check).join(", ")
                ),
            ),
            (None, Some((_, from))) if real.checks.is_empty() => notes.skip(
                real.at,
                format!(
                    "has no checker (keepalived keeps it up), but lbd checks every real of the \
                     service with its health_check ({})",
                    place(from)
                ),
            ),
            _ => {}
        }
    }
    for (directive, reason) in unsupported {
        let consequence = match &service_check {
            None => "; the service has no health_check, so its reals are always up".to_owned(),
            Some((_, from)) => {
                format!("; the real is checked with the service's ({})", place(from))
            }
        };
        notes.skip(directive, format!("{reason}{consequence}"));
    }
    service_check.map(|(check, _)| check)
}

/// `TCP_CHECK at keepalived.conf:25`.
fn place(directive: &Directive) -> String {
    format!("{} at {}", directive.keyword, directive.at.place())
}

/// A `TCP_CHECK` or `HTTP_GET` of `real` (at `port` in lbd) as lbd's check; `Err` when lbd
/// cannot run it at all.
fn candidate<'d>(
    directive: &'d Directive,
    real: &RealSettings<'d>,
    settings: &ServiceSettings<'d>,
    service: &Service,
    port: u16,
    vips: &HashSet<IpAddr>,
) -> Result<Candidate<'d>, String> {
    let http = directive.keyword == "HTTP_GET";
    let mut notes = Notes::default();
    let mut timing = Timing::default();
    let mut check_port = None;
    let mut source = None;
    let mut urls = Vec::new();
    let mut virtualhost = None;
    for child in directive.children() {
        if timing.read(&mut notes, child, true) {
            continue;
        }
        let value = child.value().unwrap_or_default();
        match child.keyword.as_str() {
            "connect_port" => match value.parse::<u16>() {
                Ok(connect) if connect != 0 => check_port = Some(connect),
                _ => notes.skip(child, format!("{value:?} is not a port")),
            },
            "connect_ip" => match convert::address(value) {
                Some((address, dropped)) if address == real.address => {
                    if let Some(dropped) = dropped {
                        notes.skip(child, convert::dropped_suffix(address, dropped));
                    }
                }
                _ => notes.skip(child, "lbd checks the real's own address"),
            },
            "bindto" => match convert::address(value) {
                Some((address, dropped))
                    if source_fits(address, service) && !vips.contains(&address) =>
                {
                    source = Some(address);
                    if let Some(dropped) = dropped {
                        notes.skip(child, convert::dropped_suffix(address, dropped));
                    }
                }
                Some(_) => notes.skip(
                    child,
                    "lbd's check source must be a unicast address, no VIP, in the family of \
                     every real of the service (and of the VIP, unless tunnelled)",
                ),
                None => notes.skip(child, format!("{value:?} is not an IP address")),
            },
            "url" if http => urls.push(child),
            "virtualhost" if http && !value.is_empty() => virtualhost = Some(value.to_owned()),
            "http_protocol" if http && value == "1.1" => {}
            keyword => notes.skip(child, checker_reason(keyword)),
        }
    }

    let kind = if http {
        // keepalived drops a url without a path (url_check), and a checker without a url.
        let has_path = |url: &&Directive| {
            url.block
                .iter()
                .flatten()
                .any(|child| child.keyword == "path" && child.value().is_some())
        };
        let Some(first) = urls.iter().copied().find(has_path) else {
            return Err("HTTP_GET without a url with a path; keepalived drops it too".to_owned());
        };
        for &other in &urls {
            if !has_path(&other) {
                notes.skip(other, "a url without a path; keepalived drops it too");
            } else if !std::ptr::eq(other, first) {
                notes.skip(
                    other,
                    "lbd checks one URL per real, the first; keepalived wanted each to answer",
                );
            }
        }
        let host = virtualhost
            .or_else(|| real.virtualhost.clone())
            .or_else(|| settings.virtualhost.clone());
        url(&mut notes, first, host)?
    } else {
        CheckKind::Tcp
    };
    // keepalived's checker copies the real's address and port as written, before a DR or TUN
    // real's port becomes the service's (check_api.c, check_data.c): its check goes there.
    let written = real.port.filter(|&written| written != 0);
    check_port = check_port.or(written);
    if check_port == Some(port) {
        check_port = None;
    }
    if check_port.is_none() && service.port == 0 {
        return Err(
            "the service has all ports (0), so lbd needs connect_port to know where to check"
                .to_owned(),
        );
    }

    let timing = timing.within(real.timing).within(settings.timing);
    let check = Check {
        kind,
        port: check_port,
        interval: interval(&mut notes, &timing),
        timeout: Duration::ZERO,
        rise: 1,
        fall: fall(&mut notes, &timing),
        source,
    };
    let check = Check {
        timeout: timeout(&mut notes, &timing, check.interval),
        ..check
    };
    retry_delay(&mut notes, &timing, &check);
    Ok(Candidate {
        at: directive,
        check,
        skipped: notes.skipped,
    })
}

/// The first `url { path …; status_code …; virtualhost … }` with a path as an HTTP check.
fn url(notes: &mut Notes, url: &Directive, host: Option<String>) -> Result<CheckKind, String> {
    let mut path = None;
    let mut codes = StatusCodes::default();
    let mut host = host;
    for child in url.children() {
        let value = child.value().unwrap_or_default();
        match child.keyword.as_str() {
            "path" => path = Some(value.to_owned()),
            "status_code" => codes.read(notes, child),
            "virtualhost" if !value.is_empty() => host = Some(value.to_owned()),
            "digest" => notes.skip(
                child,
                "lbd does not compare the page's digest; only the status",
            ),
            keyword if keyword.starts_with("regex") => {
                notes.skip(
                    child,
                    "lbd does not match the page against a regex; only the status",
                );
            }
            _ => notes.skip(child, "lbd's HTTP check has no equivalent"),
        }
    }
    let path = path.expect("the url has a path");
    let expect_status = codes.expected(notes);
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "path {path:?}: lbd sends a path that starts with / and has no spaces"
        ));
    }
    if let Some(name) = &host
        && (name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        notes.skip(
            url,
            format!("virtualhost {name:?} is not a host name; the check sends none"),
        );
        host = None;
    }
    Ok(CheckKind::Http {
        path,
        expect_status,
        host,
    })
}

/// The codes of a url's `status_code` lines, all of them: keepalived ORs them into one set.
#[derive(Default)]
struct StatusCodes<'d> {
    /// Index `code - 100`, for 100 to 599.
    set: Vec<bool>,
    /// The first code written, and where.
    first: Option<(u16, &'d Directive)>,
}

impl<'d> StatusCodes<'d> {
    /// Takes a `status_code` line: codes (`200`) and ranges (`200-299`) from 100 to 599,
    /// each read alone as keepalived reads them.
    fn read(&mut self, notes: &mut Notes, directive: &'d Directive) {
        self.set.resize(STATUS_CODES.len(), false);
        for word in &directive.args {
            let (low, high) = word.split_once('-').unwrap_or((word, word));
            let range = low.parse::<u16>().ok().zip(high.parse::<u16>().ok());
            match range {
                Some((low, high))
                    if STATUS_CODES.contains(&low)
                        && (low..=*STATUS_CODES.end()).contains(&high) =>
                {
                    for code in low..=high {
                        self.set[usize::from(code - STATUS_CODES.start())] = true;
                    }
                    self.first.get_or_insert((low, directive));
                }
                _ => notes.skip(
                    directive,
                    format!(
                        "{word:?} is not a status code from 100 to 599; keepalived ignores it too"
                    ),
                ),
            }
        }
    }

    /// The range lbd expects: all the codes if they are one range (keepalived's 200-299
    /// without any), else the range that holds the first code written, listed.
    fn expected(&self, notes: &mut Notes) -> RangeInclusive<u16> {
        let Some((first, at)) = self.first else {
            return HttpCheck::DEFAULT_EXPECT_STATUS;
        };
        let set = |code: u16| self.set[usize::from(code - STATUS_CODES.start())];
        let mut low = first;
        while low > *STATUS_CODES.start() && set(low - 1) {
            low -= 1;
        }
        let mut high = first;
        while high < *STATUS_CODES.end() && set(high + 1) {
            high += 1;
        }
        let all = STATUS_CODES.filter(|&code| set(code)).count() == usize::from(high - low + 1);
        if !all {
            notes.skip(
                at,
                format!(
                    "lbd expects one range of codes; it expects {low}-{high}, the range of the \
                     first code given (keepalived took any of them)"
                ),
            );
        }
        low..=high
    }
}

/// `bindto` is the source of the service's one check: it must be of every real's family,
/// and for a method that keeps the family the VIP's.
fn source_fits(source: IpAddr, service: &Service) -> bool {
    let same_family = |address: IpAddr| address.is_ipv4() == source.is_ipv4();
    service.reals.iter().all(|real| same_family(real.address))
        && (!service.forward.keeps_family() || same_family(service.vip))
        && convert::unusable(source).is_none()
}

/// `delay_loop`, within lbd's bounds.
fn interval(notes: &mut Notes, timing: &Timing) -> Duration {
    let Some(delay_loop) = timing.delay_loop else {
        return DEFAULT_DELAY_LOOP;
    };
    let interval = delay_loop.value.clamp(MIN_INTERVAL, MAX_INTERVAL);
    if interval != delay_loop.value {
        notes.skip(
            delay_loop.at,
            format!(
                "lbd checks between every {} and every {}; the interval is {}",
                duration_text(MIN_INTERVAL),
                duration_text(MAX_INTERVAL),
                duration_text(interval)
            ),
        );
    }
    interval
}

/// `connect_timeout`, at most the interval.
fn timeout(notes: &mut Notes, timing: &Timing, interval: Duration) -> Duration {
    let wanted = timing
        .connect_timeout
        .map_or(DEFAULT_CONNECT_TIMEOUT, |setting| setting.value);
    if wanted <= interval {
        return wanted;
    }
    // keepalived's own default longer than a short delay_loop is no directive to list.
    if let Some(setting) = timing.connect_timeout {
        notes.skip(
            setting.at,
            format!(
                "longer than the interval ({}); lbd ends a check before the next starts, so \
                 the timeout is {}",
                duration_text(interval),
                duration_text(interval)
            ),
        );
    }
    interval
}

/// `retry + 1` consecutive failures take a keepalived real out.
fn fall(notes: &mut Notes, timing: &Timing) -> u32 {
    let retry = timing.retry.map_or(DEFAULT_RETRY, |setting| setting.value);
    let fall = retry.saturating_add(1);
    if fall <= MAX_FALL {
        return fall;
    }
    if let Some(setting) = timing.retry {
        notes.skip(
            setting.at,
            format!("lbd's fall is at most {MAX_FALL}; it is {MAX_FALL}"),
        );
    }
    MAX_FALL
}

/// lbd checks at one cadence: a `delay_before_retry` other than the interval is listed.
fn retry_delay(notes: &mut Notes, timing: &Timing, check: &Check) {
    let Some(delay) = timing.delay_before_retry else {
        return;
    };
    if delay.value == check.interval || check.fall == 1 {
        return;
    }
    let retries = check.fall - 1;
    notes.skip(
        delay.at,
        format!(
            "lbd checks every interval ({}), after a failure too: a failing real leaves after \
             {} failed checks, {}, where keepalived took about {} + {retries} × {}",
            duration_text(check.interval),
            check.fall,
            duration_text(check.interval * check.fall),
            duration_text(check.interval),
            duration_text(delay.value)
        ),
    );
}

fn checker_reason(keyword: &str) -> &'static str {
    match keyword {
        "bind_port" => "lbd lets the kernel pick a check's source port",
        "bind_if" => "lbd sends checks by the routing table; it binds no interface",
        "fwmark" => "lbd marks no check packets",
        "warmup" => "lbd spreads first checks over one interval; it has no warmup",
        "alpha" => "lbd starts reals up (keepalived without alpha); starting them down has no key",
        "log_all_failures" => "lbd logs state changes; it has no per-check logging switch",
        "http_protocol" => "lbd's HTTP check speaks HTTP/1.1",
        "enable_sni" | "sni_name" | "tls_compliant" => "lbd has no TLS checks",
        "fast_recovery" => "lbd has no fast recovery; a real comes back after rise successes",
        _ => "lbd's checks have no equivalent",
    }
}

/// What differs between two checks, in words (`interval 10s, not 6s`).
fn differences(service: &Check, real: &Check) -> Vec<String> {
    let mut differences = Vec::new();
    let mut differ = |what: &str, theirs: String, ours: String| {
        if theirs != ours {
            differences.push(format!("{what} {theirs}, not {ours}"));
        }
    };
    let kind = |check: &Check| match &check.kind {
        CheckKind::Tcp => "tcp".to_owned(),
        CheckKind::Http {
            path,
            expect_status,
            host,
        } => format!(
            "http {path} (status {}-{}{})",
            expect_status.start(),
            expect_status.end(),
            host.as_ref()
                .map(|host| format!(", host {host}"))
                .unwrap_or_default()
        ),
    };
    let port = |check: &Check| {
        check
            .port
            .map_or("the real's".to_owned(), |port| port.to_string())
    };
    let source = |check: &Check| {
        check
            .source
            .map_or("any".to_owned(), |source| source.to_string())
    };
    differ("type", kind(real), kind(service));
    differ("port", port(real), port(service));
    differ(
        "interval",
        duration_text(real.interval),
        duration_text(service.interval),
    );
    differ(
        "timeout",
        duration_text(real.timeout),
        duration_text(service.timeout),
    );
    differ("fall", real.fall.to_string(), service.fall.to_string());
    differ("source", source(real), source(service));
    differences
}

//! The daemon's YAML config file → a validated, typed [`Config`].
//!
//! Parsing happens in two steps, like the rest of the house: serde fills raw structs
//! (`#[serde(deny_unknown_fields)]`, every key optional) and [`Validator`] turns them into the
//! typed [`Config`], applying defaults and checking everything serde cannot: ranges, address
//! families, duplicates, map limits, keys this version does not implement yet.
//!
//! Every error is one line, `FILE:LINE:COLUMN: KEY.PATH: what is wrong`. serde-saphyr reports
//! the line and column of syntax and type errors but not the key path, and after parsing the
//! positions are gone. So the text is read twice: first into a [`SourceMap`] (every key path with
//! the positions of its key and value, built from serde-saphyr's `Spanned`), which turns an
//! error position into a key path and a key path into a position; then into the raw structs.
//! Raw keys are optional so that a missing key is reported by the validator with its path, rather
//! than by serde wherever the parser happened to be.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

/// Where the admin socket lives when the config does not say.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/lb/lbd.sock";
/// The bpffs directory under which each instance pins its maps (`<root>/<instance>`).
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/lb";

/// Longest instance name; it becomes a path component (pin dir), so keep it short and plain.
const MAX_INSTANCE_NAME_LEN: usize = 32;
/// Linux `IFNAMSIZ` (16) minus the terminating NUL.
const MAX_INTERFACE_NAME_LEN: usize = 15;
/// `sizeof(sockaddr_un.sun_path)` (108) minus the terminating NUL.
const MAX_UNIX_SOCKET_PATH_LEN: usize = 107;
/// Weights are 16-bit like ipvsadm's, which keeps the ring scaling in `schedule.rs` simple.
const MAX_WEIGHT: u32 = 65535;

/// The validated configuration of one `lbd` instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[A-Za-z0-9_-]{1,32}`; names the pin directory, so several daemons can share a host.
    pub instance: String,
    /// Non-empty, unique names.
    pub interfaces: Vec<InterfaceConfig>,
    /// Key `admin: {socket: PATH}`; default [`DEFAULT_ADMIN_SOCKET`].
    pub admin_socket: PathBuf,
    /// Key `pin_dir`; default `<DEFAULT_PIN_ROOT>/<instance>`.
    pub pin_dir: PathBuf,
    /// May be empty; in file order (service ids follow it).
    pub services: Vec<ServiceConfig>,
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceConfig {
    pub name: String,
    pub xdp_mode: XdpMode,
}

/// How the XDP program is attached (`xdp_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver; fails if the driver has no XDP support.
    Native,
    /// In the generic (skb) hook; works everywhere, slower.
    Generic,
    /// Native if the driver supports it, generic otherwise.
    Auto,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub vip: IpAddr,
    /// 0 = all ports.
    pub port: u16,
    pub protocol: Protocol,
    pub scheduler: Scheduler,
    /// The service's default; each real carries its own (possibly overridden) method.
    pub forward: Forward,
    pub reals: Vec<RealConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// Round robin, ignoring weights (except that weight 0 still drains).
    Rr,
    /// Weighted round robin.
    Wrr,
}

/// How packets reach a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Direct routing: rewrite the destination MAC, keep the IP header (LVS-DR).
    Dr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RealConfig {
    pub address: IpAddr,
    /// Always equal to the service port under direct routing (checked).
    pub port: u16,
    /// 0..=65535; 0 drains the real.
    pub weight: u32,
    pub forward: Forward,
}

/// Map sizes (key `limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries of the flow table (LRU).
    pub flows: u32,
    /// Slots of the service arrays; id 0 means none, so `services - 1` services fit.
    pub services: u32,
    /// Slots of the real arrays; id 0 means none, so `reals - 1` reals fit.
    pub reals: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            flows: lb_common::DEFAULT_MAX_FLOWS,
            services: lb_common::DEFAULT_MAX_SERVICES,
            reals: lb_common::DEFAULT_MAX_REALS,
        }
    }
}

/// A word (`wrr`, `tun`, …) that names none of the variants of a config enum. Shared by the
/// config and the CLI, so both explain the same way what is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The word is in SPEC.md, but this version does not implement it.
    #[error("{kind} `{name}` is not supported yet (this version has {supported})")]
    NotSupportedYet {
        kind: &'static str,
        name: String,
        supported: String,
    },
    #[error("unknown {kind} {name:?} (expected one of {supported})")]
    Unknown {
        kind: &'static str,
        name: String,
        supported: String,
    },
}

/// Looks `word` up among `all` by [`name`]; `planned` are the SPEC.md words not implemented yet.
fn parse_name<T: Copy>(
    kind: &'static str,
    word: &str,
    all: &[T],
    name: fn(T) -> &'static str,
    planned: &[&str],
) -> Result<T, NameError> {
    if let Some(found) = all
        .iter()
        .copied()
        .find(|candidate| name(*candidate) == word)
    {
        return Ok(found);
    }
    let supported = all
        .iter()
        .map(|candidate| name(*candidate))
        .collect::<Vec<_>>()
        .join(", ");
    if planned.contains(&word) {
        Err(NameError::NotSupportedYet {
            kind,
            name: word.to_owned(),
            supported,
        })
    } else {
        Err(NameError::Unknown {
            kind,
            name: word.to_owned(),
            supported,
        })
    }
}

impl XdpMode {
    pub const ALL: [XdpMode; 3] = [XdpMode::Native, XdpMode::Generic, XdpMode::Auto];

    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Auto => "auto",
        }
    }
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Tcp, Protocol::Udp];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl Scheduler {
    pub const ALL: [Scheduler; 2] = [Scheduler::Rr, Scheduler::Wrr];
    /// In SPEC.md, not implemented yet.
    const PLANNED: [&str; 4] = ["lc", "wlc", "sh", "mh"];

    pub fn name(self) -> &'static str {
        match self {
            Scheduler::Rr => "rr",
            Scheduler::Wrr => "wrr",
        }
    }
}

impl Forward {
    pub const ALL: [Forward; 1] = [Forward::Dr];
    /// In SPEC.md, not implemented yet.
    const PLANNED: [&str; 3] = ["tun", "nat", "fullnat"];

    pub fn name(self) -> &'static str {
        match self {
            Forward::Dr => "dr",
        }
    }

    /// Whether a real may listen on another port than the service: only when the balancer
    /// rewrites the transport header, which direct routing never does.
    fn can_change_port(self) -> bool {
        match self {
            Forward::Dr => false,
        }
    }
}

impl FromStr for XdpMode {
    type Err = NameError;
    fn from_str(word: &str) -> Result<Self, NameError> {
        parse_name("XDP mode", word, &XdpMode::ALL, XdpMode::name, &[])
    }
}

impl FromStr for Protocol {
    type Err = NameError;
    fn from_str(word: &str) -> Result<Self, NameError> {
        parse_name("protocol", word, &Protocol::ALL, Protocol::name, &[])
    }
}

impl FromStr for Scheduler {
    type Err = NameError;
    fn from_str(word: &str) -> Result<Self, NameError> {
        parse_name(
            "scheduler",
            word,
            &Scheduler::ALL,
            Scheduler::name,
            &Scheduler::PLANNED,
        )
    }
}

impl FromStr for Forward {
    type Err = NameError;
    fn from_str(word: &str) -> Result<Self, NameError> {
        parse_name(
            "forwarding method",
            word,
            &Forward::ALL,
            Forward::name,
            &Forward::PLANNED,
        )
    }
}

macro_rules! display_by_name {
    ($($name_type:ty),*) => {$(
        impl fmt::Display for $name_type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    )*};
}
display_by_name!(XdpMode, Protocol, Scheduler, Forward);

/// Line and column in the config text, both 1-based; columns count characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl Position {
    fn from_yaml(location: serde_saphyr::Location) -> Option<Position> {
        // serde-saphyr marks an unknown location as line 0.
        (location.line() != 0).then(|| Position {
            line: location.line(),
            column: location.column(),
        })
    }
}

/// The file (as named by the caller) and, when known, the position an error points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub position: Option<Position>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(Position { line, column }) => write!(f, "{}:{line}:{column}", self.file),
            None => f.write_str(&self.file),
        }
    }
}

/// Why a config was rejected. Each displays as one line naming the file, the position when
/// known, and the key path (`services[0].reals[1].address`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the config file: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not a single well-formed YAML document.
    #[error("{location}: invalid YAML: {message}")]
    Syntax { location: Location, message: String },
    /// Well-formed YAML that is not a valid config: unknown or missing key, wrong type or
    /// value, or keys that contradict each other. `key` is empty for the document itself.
    #[error("{location}: {}{message}", key_prefix(.key))]
    Invalid {
        location: Location,
        key: String,
        message: String,
    },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

/// Reads and validates the config file at `path`; errors name the path as given.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates config `text`; `source` names it in error messages (usually the path).
pub fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
    let source_map = SourceMap::build(text, source)?;
    let raw: RawConfig =
        serde_saphyr::from_str(text).map_err(|error| source_map.structure_error(&error))?;
    Validator {
        source_map: &source_map,
    }
    .config(raw)
}

/// True if `name` is accepted by the kernel as a network interface name (`dev_valid_name`).
pub fn is_valid_interface_name(name: &str) -> bool {
    (1..=MAX_INTERFACE_NAME_LEN).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

fn is_valid_instance_name(name: &str) -> bool {
    (1..=MAX_INSTANCE_NAME_LEN).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

// ---------------------------------------------------------------------------------------------
// Source map: key paths ↔ positions.

/// Any YAML node, with the position of every key and value; only used to build a [`SourceMap`].
enum YamlNode {
    Mapping(Vec<(Spanned<YamlNode>, Spanned<YamlNode>)>),
    Sequence(Vec<Spanned<YamlNode>>),
    Scalar(String),
    Null,
}

impl<'de> Deserialize<'de> for YamlNode {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(YamlNodeVisitor)
    }
}

struct YamlNodeVisitor;

impl<'de> Visitor<'de> for YamlNodeVisitor {
    type Value = YamlNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, value: bool) -> Result<YamlNode, E> {
        Ok(YamlNode::Scalar(value.to_string()))
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<YamlNode, E> {
        Ok(YamlNode::Scalar(value.to_string()))
    }
    fn visit_i128<E: de::Error>(self, value: i128) -> Result<YamlNode, E> {
        Ok(YamlNode::Scalar(value.to_string()))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<YamlNode, E> {
        Ok(YamlNode::Scalar(value.to_string()))
    }
    fn visit_u128<E: de::Error>(self, value: u128) -> Result<YamlNode, E> {
        Ok(YamlNode::Scalar(value.to_string()))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<YamlNode, E> {
        Ok(YamlNode::Scalar(value.to_string()))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<YamlNode, E> {
        Ok(YamlNode::Scalar(value.to_owned()))
    }
    fn visit_string<E: de::Error>(self, value: String) -> Result<YamlNode, E> {
        Ok(YamlNode::Scalar(value))
    }
    fn visit_bytes<E: de::Error>(self, value: &[u8]) -> Result<YamlNode, E> {
        Ok(YamlNode::Scalar(
            String::from_utf8_lossy(value).into_owned(),
        ))
    }
    fn visit_unit<E: de::Error>(self) -> Result<YamlNode, E> {
        Ok(YamlNode::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<YamlNode, E> {
        Ok(YamlNode::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, inner: D) -> Result<YamlNode, D::Error> {
        YamlNode::deserialize(inner)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(
        self,
        inner: D,
    ) -> Result<YamlNode, D::Error> {
        YamlNode::deserialize(inner)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<YamlNode, A::Error> {
        let mut sequence = Vec::new();
        while let Some(item) = items.next_element()? {
            sequence.push(item);
        }
        Ok(YamlNode::Sequence(sequence))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<YamlNode, A::Error> {
        let mut mapping = Vec::new();
        while let Some((key, value)) = entries.next_entry()? {
            mapping.push((key, value));
        }
        Ok(YamlNode::Mapping(mapping))
    }
}

/// One key path of the document: `services[0].reals[1].address`.
struct SourceEntry {
    path: String,
    /// Where the key is written; `None` for sequence items and the document itself.
    key_position: Option<Position>,
    /// Where the value starts (for a block mapping: its first key).
    value_position: Option<Position>,
    /// The value as an error message names it: `"abc"`, `a mapping`, ….
    value_description: String,
}

/// Every key path of the document with its positions, in document order (parents first).
struct SourceMap {
    file: String,
    entries: Vec<SourceEntry>,
    index_by_path: HashMap<String, usize>,
}

impl SourceMap {
    fn build(text: &str, file: &str) -> Result<SourceMap, ConfigError> {
        let root: Spanned<YamlNode> =
            serde_saphyr::from_str(text).map_err(|error| ConfigError::Syntax {
                location: Location {
                    file: file.to_owned(),
                    position: error.location().and_then(Position::from_yaml),
                },
                message: yaml_message(innermost_error(&error)),
            })?;
        let root_error = |message: String| ConfigError::Invalid {
            location: Location {
                file: file.to_owned(),
                position: Position::from_yaml(root.referenced),
            },
            key: String::new(),
            message,
        };
        match &root.value {
            YamlNode::Mapping(_) => {}
            YamlNode::Null => {
                return Err(root_error(
                    "the config is empty; it needs at least `instance` and `interfaces`".into(),
                ));
            }
            other => {
                return Err(root_error(format!(
                    "expected a mapping of keys (instance, interfaces, services, ...), found {}",
                    describe(other, None)
                )));
            }
        }
        let mut source_map = SourceMap {
            file: file.to_owned(),
            entries: Vec::new(),
            index_by_path: HashMap::new(),
        };
        source_map.add(text, &root, String::new(), None);
        Ok(source_map)
    }

    fn add(
        &mut self,
        text: &str,
        node: &Spanned<YamlNode>,
        path: String,
        key_position: Option<Position>,
    ) {
        self.index_by_path
            .entry(path.clone())
            .or_insert(self.entries.len());
        self.entries.push(SourceEntry {
            path: path.clone(),
            key_position,
            value_position: Position::from_yaml(node.referenced),
            value_description: describe(&node.value, source_text(text, node.defined)),
        });
        match &node.value {
            YamlNode::Mapping(mapping) => {
                for (key, value) in mapping {
                    let segment = match &key.value {
                        YamlNode::Scalar(name) => name.clone(),
                        // Not a key any config struct accepts; serde reports it.
                        _ => "?".to_owned(),
                    };
                    self.add(
                        text,
                        value,
                        join_key(&path, &segment),
                        Position::from_yaml(key.referenced),
                    );
                }
            }
            YamlNode::Sequence(items) => {
                for (index, item) in items.iter().enumerate() {
                    self.add(text, item, format!("{path}[{index}]"), None);
                }
            }
            YamlNode::Scalar(_) | YamlNode::Null => {}
        }
    }

    fn entry(&self, path: &str) -> Option<&SourceEntry> {
        self.index_by_path
            .get(path)
            .map(|&index| &self.entries[index])
    }

    fn contains(&self, path: &str) -> bool {
        self.index_by_path.contains_key(path)
    }

    /// Where the value of `path` starts; for a key that is absent, where its parent starts
    /// (the mapping it is missing from). Top-level keys have no useful parent position.
    fn value_position(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(entry) = self.entry(path) {
                return entry.value_position;
            }
            path = parent_path(path).filter(|parent| !parent.is_empty())?;
        }
    }

    /// Where the key of `path` is written, falling back to [`Self::value_position`].
    fn key_position(&self, path: &str) -> Option<Position> {
        self.entry(path)
            .and_then(|entry| entry.key_position)
            .or_else(|| self.value_position(path))
    }

    /// The key path that an error at `position` is about. serde-saphyr reports unknown keys at
    /// the key and wrong values where the value starts; a block mapping starts at its first
    /// key, so for values the outermost match wins (it comes first in document order).
    fn path_at(
        &self,
        position: Option<Position>,
        unknown_key: Option<&str>,
    ) -> Option<&SourceEntry> {
        let position = position?;
        let key_match = |entry: &&SourceEntry| {
            entry.key_position == Some(position)
                && unknown_key.is_none_or(|key| entry.path.ends_with(&join_key("", key)))
        };
        let value_match = |entry: &&SourceEntry| entry.value_position == Some(position);
        let exact = if unknown_key.is_some() {
            self.entries.iter().find(key_match)
        } else {
            self.entries
                .iter()
                .find(value_match)
                .or_else(|| self.entries.iter().find(key_match))
        };
        // Otherwise the closest thing written before the error is the best guess.
        exact.or_else(|| {
            self.entries
                .iter()
                .filter(|entry| entry.value_position.is_some_and(|start| start <= position))
                .max_by_key(|entry| entry.value_position)
        })
    }

    /// Turns an error from the typed pass (unknown key, wrong type) into a [`ConfigError`].
    fn structure_error(&self, error: &serde_saphyr::Error) -> ConfigError {
        // The outer error's position: for a value reached through an alias it is where the
        // alias is used (the key path in question), not where the anchor defines the value.
        let position = error.location().and_then(Position::from_yaml);
        let error = innermost_error(error);
        let (key, message) = match error {
            serde_saphyr::Error::SerdeUnknownField {
                field, expected, ..
            } => {
                let key = self
                    .path_at(position, Some(field))
                    .map_or_else(|| join_key("", field), |entry| entry.path.clone());
                (key, unknown_key_message(field, expected))
            }
            serde_saphyr::Error::InvalidScalar { ty, .. } => {
                let entry = self.path_at(position, None);
                let found = entry.map_or_else(String::new, |entry| {
                    format!(", found {}", entry.value_description)
                });
                (
                    entry_path(entry),
                    format!("expected {}{found}", describe_rust_type(ty)),
                )
            }
            serde_saphyr::Error::Unexpected { expected, .. } => {
                let entry = self.path_at(position, None);
                let found = entry.map_or_else(String::new, |entry| {
                    format!(", found {}", entry.value_description)
                });
                (
                    entry_path(entry),
                    format!("expected {}{found}", describe_yaml_expectation(expected)),
                )
            }
            other => (
                entry_path(self.path_at(position, None)),
                yaml_message(other),
            ),
        };
        ConfigError::Invalid {
            location: Location {
                file: self.file.clone(),
                position,
            },
            key,
            message,
        }
    }
}

fn entry_path(entry: Option<&SourceEntry>) -> String {
    entry.map_or_else(String::new, |entry| entry.path.clone())
}

/// `parent.key`, or `parent["odd key"]` when the key would not read as one path segment.
fn join_key(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{key:?}]"),
    }
}

/// `a.b[1].c` → `a.b[1]` → `a.b` → `a` → ``; `None` above the document.
fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    Some(path.rfind(['.', '[']).map_or("", |split| &path[..split]))
}

/// serde-saphyr wraps errors for snippet rendering and alias replay; the message is that of
/// the error inside.
fn innermost_error(error: &serde_saphyr::Error) -> &serde_saphyr::Error {
    let mut error = error;
    while let serde_saphyr::Error::WithSnippet { error: inner, .. }
    | serde_saphyr::Error::AliasError { error: inner, .. } = error
    {
        error = inner;
    }
    error
}

/// serde-saphyr's message for `error` without its position suffix, on one line.
fn yaml_message(error: &serde_saphyr::Error) -> String {
    single_line(&UserMessageFormatter.format_message(error))
}

fn single_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

/// The text of the node at `location` as written (`1e3`, not `1000`), when serde-saphyr knows it.
fn source_text(text: &str, location: serde_saphyr::Location) -> Option<&str> {
    let span = location.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    text.get(start..start.checked_add(len)?)
        .filter(|written| !written.is_empty())
}

/// The value as an error message names it; scalars as written in the file when known.
fn describe(node: &YamlNode, written: Option<&str>) -> String {
    // Long scalars would push the rest of the message off the line; the position finds them.
    const MAX_SHOWN_CHARS: usize = 40;
    match node {
        YamlNode::Mapping(_) => "a mapping".to_owned(),
        YamlNode::Sequence(_) => "a list".to_owned(),
        YamlNode::Null => "an empty value".to_owned(),
        YamlNode::Scalar(parsed) => {
            let text = written.unwrap_or(parsed);
            if text.chars().count() > MAX_SHOWN_CHARS {
                let shown: String = text.chars().take(MAX_SHOWN_CHARS).collect();
                format!("{shown:?}...")
            } else {
                format!("{text:?}")
            }
        }
    }
}

fn describe_rust_type(type_name: &str) -> String {
    match type_name {
        "i64" => "a whole number".to_owned(),
        "bool" => "true or false".to_owned(),
        other => format!("a value of type {other}"),
    }
}

fn describe_yaml_expectation(expected: &str) -> String {
    match expected {
        "string scalar" => "a single value (not a list or mapping)".to_owned(),
        "sequence start" => "a list".to_owned(),
        "mapping start" => "a mapping".to_owned(),
        other => other.to_owned(),
    }
}

fn unknown_key_message(key: &str, known: &[&str]) -> String {
    let suggestion = known
        .iter()
        .map(|candidate| (edit_distance(key, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= candidate.len().div_ceil(3))
        .min_by_key(|(distance, _)| *distance)
        .map_or_else(String::new, |(_, candidate)| {
            format!("; did you mean `{candidate}`?")
        });
    format!(
        "unknown key{suggestion} (keys allowed here: {})",
        known.join(", ")
    )
}

/// Levenshtein distance, for "did you mean" on misspelt keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous_row: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut row = vec![i + 1; b.len() + 1];
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous_row[j] + usize::from(a_char != *b_char);
            row[j + 1] = substitution.min(previous_row[j + 1] + 1).min(row[j] + 1);
        }
        previous_row = row;
    }
    previous_row[b.len()]
}

// ---------------------------------------------------------------------------------------------
// Raw structs: the shape of the file. Every key is optional; the validator reports missing ones.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    instance: Option<String>,
    interfaces: Option<Vec<RawInterface>>,
    admin: Option<RawAdmin>,
    pin_dir: Option<String>,
    services: Option<Vec<RawService>>,
    limits: Option<RawLimits>,
    #[serde(default)]
    metrics: PlannedKey,
    #[serde(default)]
    timeouts: PlannedKey,
    #[serde(default)]
    vrrp: PlannedKey,
    #[serde(default)]
    sync: PlannedKey,
    #[serde(default)]
    bgp: PlannedKey,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: Option<String>,
    xdp_mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    socket: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    vip: Option<String>,
    port: Option<i64>,
    protocol: Option<String>,
    scheduler: Option<String>,
    forward: Option<String>,
    reals: Option<Vec<RawReal>>,
    #[serde(default)]
    persistence: PlannedKey,
    #[serde(default)]
    health_check: PlannedKey,
    #[serde(default)]
    on_failure: PlannedKey,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReal {
    address: Option<String>,
    port: Option<i64>,
    weight: Option<i64>,
    forward: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    flows: Option<i64>,
    services: Option<i64>,
    reals: Option<i64>,
}

/// A key from SPEC.md that this version does not implement. It accepts any value so that the
/// validator can say "not supported yet" rather than serde saying "unknown key"; it is not an
/// `Option` because `health_check:` with an empty value must be rejected too.
#[derive(Default)]
struct PlannedKey {
    present: bool,
}

impl<'de> Deserialize<'de> for PlannedKey {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer)?;
        Ok(PlannedKey { present: true })
    }
}

// ---------------------------------------------------------------------------------------------
// Validation: raw structs → Config.

/// Checks raw values and builds the typed [`Config`]; errors point into the source map.
struct Validator<'a> {
    source_map: &'a SourceMap,
}

impl Validator<'_> {
    /// An error about the value at `key`.
    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            location: self.location(self.source_map.value_position(key)),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// An error about the key itself (its presence), pointing at where the key is written.
    fn invalid_key(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            location: self.location(self.source_map.key_position(key)),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn location(&self, position: Option<Position>) -> Location {
        Location {
            file: self.source_map.file.clone(),
            position,
        }
    }

    fn required<T>(&self, value: Option<T>, key: &str, what: &str) -> Result<T, ConfigError> {
        value.ok_or_else(|| {
            if self.source_map.contains(key) {
                self.invalid(key, format!("needs a value ({what})"))
            } else {
                self.invalid(key, format!("required key is missing ({what})"))
            }
        })
    }

    fn reject_planned(
        &self,
        parent: &str,
        planned: &[(&str, &PlannedKey)],
    ) -> Result<(), ConfigError> {
        match planned.iter().find(|(_, key)| key.present) {
            Some((name, _)) => Err(self.invalid_key(
                &join_key(parent, name),
                "not supported yet by this version (remove it to run without it)",
            )),
            None => Ok(()),
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        self.reject_planned(
            "",
            &[
                ("metrics", &raw.metrics),
                ("timeouts", &raw.timeouts),
                ("vrrp", &raw.vrrp),
                ("sync", &raw.sync),
                ("bgp", &raw.bgp),
            ],
        )?;

        let instance = self.required(raw.instance, "instance", "a name for this daemon")?;
        if !is_valid_instance_name(&instance) {
            return Err(self.invalid(
                "instance",
                format!(
                    "invalid instance name {instance:?}: use 1 to {MAX_INSTANCE_NAME_LEN} of \
                     A-Z a-z 0-9 _ - (it becomes part of file paths)"
                ),
            ));
        }

        let interfaces = self.interfaces(self.required(
            raw.interfaces,
            "interfaces",
            "where the XDP program attaches",
        )?)?;

        let admin_socket = match raw.admin.and_then(|admin| admin.socket) {
            Some(socket) => {
                self.check_path("admin.socket", &socket)?;
                if socket.len() > MAX_UNIX_SOCKET_PATH_LEN {
                    return Err(self.invalid(
                        "admin.socket",
                        format!(
                            "socket path is {} bytes; a Unix socket path can have at most {}",
                            socket.len(),
                            MAX_UNIX_SOCKET_PATH_LEN
                        ),
                    ));
                }
                PathBuf::from(socket)
            }
            None => PathBuf::from(DEFAULT_ADMIN_SOCKET),
        };

        let pin_dir = match raw.pin_dir {
            Some(pin_dir) => {
                self.check_path("pin_dir", &pin_dir)?;
                PathBuf::from(pin_dir)
            }
            None => Path::new(DEFAULT_PIN_ROOT).join(&instance),
        };

        let limits = self.limits(raw.limits)?;
        let services = self.services(raw.services.unwrap_or_default(), &limits)?;

        Ok(Config {
            instance,
            interfaces,
            admin_socket,
            pin_dir,
            services,
            limits,
        })
    }

    fn check_path(&self, key: &str, path: &str) -> Result<(), ConfigError> {
        if path.is_empty() {
            return Err(self.invalid(key, "must not be empty"));
        }
        if path.contains('\0') {
            return Err(self.invalid(key, "must not contain a NUL character"));
        }
        Ok(())
    }

    fn interfaces(&self, raw: Vec<RawInterface>) -> Result<Vec<InterfaceConfig>, ConfigError> {
        if raw.is_empty() {
            return Err(self.invalid(
                "interfaces",
                "at least one interface is required (where the XDP program attaches)",
            ));
        }
        let max_interfaces = lb_common::MAX_INTERFACES as usize;
        if raw.len() > max_interfaces {
            return Err(self.invalid(
                "interfaces",
                format!(
                    "{} interfaces listed; at most {max_interfaces} are supported",
                    raw.len()
                ),
            ));
        }
        let mut interfaces: Vec<InterfaceConfig> = Vec::with_capacity(raw.len());
        for (index, raw_interface) in raw.into_iter().enumerate() {
            let key = format!("interfaces[{index}]");
            let name_key = format!("{key}.name");
            let name = self.required(raw_interface.name, &name_key, "a network interface")?;
            if !is_valid_interface_name(&name) {
                return Err(self.invalid(
                    &name_key,
                    format!(
                        "invalid interface name {name:?}: Linux interface names are 1 to \
                         {MAX_INTERFACE_NAME_LEN} bytes without '/', ':' or whitespace"
                    ),
                ));
            }
            if let Some(first) = interfaces
                .iter()
                .position(|interface| interface.name == name)
            {
                return Err(self.invalid(
                    &name_key,
                    format!("interface {name:?} is listed twice (also interfaces[{first}])"),
                ));
            }
            let xdp_mode = match raw_interface.xdp_mode {
                Some(word) => self.parse_word(&word, &format!("{key}.xdp_mode"))?,
                None => XdpMode::Auto,
            };
            interfaces.push(InterfaceConfig { name, xdp_mode });
        }
        Ok(interfaces)
    }

    fn limits(&self, raw: Option<RawLimits>) -> Result<Limits, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Limits::default());
        };
        let defaults = Limits::default();
        let limit = |name: &str, value: Option<i64>, default: u32| -> Result<u32, ConfigError> {
            let Some(value) = value else {
                return Ok(default);
            };
            let key = format!("limits.{name}");
            if value < 1 {
                return Err(self.invalid(
                    &key,
                    format!("must be at least 1 (it sizes a map), got {value}"),
                ));
            }
            u32::try_from(value)
                .map_err(|_| self.invalid(&key, format!("{value} is more than {}", u32::MAX)))
        };
        let limits = Limits {
            flows: limit("flows", raw.flows, defaults.flows)?,
            services: limit("services", raw.services, defaults.services)?,
            reals: limit("reals", raw.reals, defaults.reals)?,
        };
        // The ring map holds RING_SLOTS_PER_SERVICE entries per service, indexed by a u32.
        if limits
            .services
            .checked_mul(lb_common::RING_SLOTS_PER_SERVICE)
            .is_none()
        {
            return Err(self.invalid(
                "limits.services",
                format!(
                    "{} services × {} ring slots each does not fit the ring map's u32 index; \
                     at most {} services",
                    limits.services,
                    lb_common::RING_SLOTS_PER_SERVICE,
                    u32::MAX / lb_common::RING_SLOTS_PER_SERVICE
                ),
            ));
        }
        Ok(limits)
    }

    fn services(
        &self,
        raw: Vec<RawService>,
        limits: &Limits,
    ) -> Result<Vec<ServiceConfig>, ConfigError> {
        let mut services: Vec<ServiceConfig> = Vec::with_capacity(raw.len());
        let mut index_by_identity: HashMap<(IpAddr, u16, Protocol), usize> = HashMap::new();
        for (index, raw_service) in raw.into_iter().enumerate() {
            let key = format!("services[{index}]");
            let service = self.service(raw_service, &key)?;
            let identity = (service.vip, service.port, service.protocol);
            if let Some(first) = index_by_identity.insert(identity, index) {
                return Err(self.invalid(
                    &key,
                    format!(
                        "duplicate service: services[{first}] and services[{index}] are both {}",
                        service_name(&service)
                    ),
                ));
            }
            services.push(service);
        }

        // Ids start at 1 because id 0 means "none" in the id-indexed maps.
        if services.len() >= limits.services as usize {
            return Err(self.invalid_key(
                "services",
                format!(
                    "{} configured, but limits.services = {} leaves room for {} (service ids \
                     start at 1; 0 means none); raise limits.services",
                    services.len(),
                    limits.services,
                    limits.services - 1
                ),
            ));
        }
        let total_reals: usize = services.iter().map(|service| service.reals.len()).sum();
        if total_reals >= limits.reals as usize {
            return Err(self.invalid_key(
                "services",
                format!(
                    "{total_reals} reals configured over all services, but limits.reals = {} \
                     leaves room for {} (real ids start at 1; 0 means none); raise limits.reals",
                    limits.reals,
                    limits.reals - 1
                ),
            ));
        }
        Ok(services)
    }

    fn service(&self, raw: RawService, key: &str) -> Result<ServiceConfig, ConfigError> {
        self.reject_planned(
            key,
            &[
                ("persistence", &raw.persistence),
                ("health_check", &raw.health_check),
                ("on_failure", &raw.on_failure),
            ],
        )?;

        let vip_key = format!("{key}.vip");
        let vip = self.address(raw.vip, &vip_key, "VIP")?;
        if vip.is_ipv6() {
            return Err(self.invalid(
                &vip_key,
                format!(
                    "{vip}: IPv6 services are not supported yet (the data plane passes IPv6 \
                     traffic to the kernel untouched for now)"
                ),
            ));
        }

        let port_key = format!("{key}.port");
        let port = self.port(
            self.required(raw.port, &port_key, "0 means all ports")?,
            &port_key,
        )?;

        let protocol_key = format!("{key}.protocol");
        let protocol = self.parse_word(
            &self.required(raw.protocol, &protocol_key, "tcp or udp")?,
            &protocol_key,
        )?;
        let scheduler = self.word(raw.scheduler, &format!("{key}.scheduler"), Scheduler::Wrr)?;
        let forward = self.word(raw.forward, &format!("{key}.forward"), Forward::Dr)?;

        let mut service = ServiceConfig {
            vip,
            port,
            protocol,
            scheduler,
            forward,
            reals: Vec::new(),
        };
        for (index, raw_real) in raw.reals.unwrap_or_default().into_iter().enumerate() {
            let real_key = format!("{key}.reals[{index}]");
            let real = self.real(raw_real, &real_key, &service)?;
            if let Some(first) = service
                .reals
                .iter()
                .position(|other| (other.address, other.port) == (real.address, real.port))
            {
                return Err(self.invalid(
                    &real_key,
                    format!(
                        "duplicate real: {key}.reals[{first}] and {key}.reals[{index}] are both {}",
                        socket_name(real.address, real.port)
                    ),
                ));
            }
            service.reals.push(real);
        }
        Ok(service)
    }

    fn real(
        &self,
        raw: RawReal,
        key: &str,
        service: &ServiceConfig,
    ) -> Result<RealConfig, ConfigError> {
        let address_key = format!("{key}.address");
        let address = self.address(raw.address, &address_key, "real server")?;
        if address.is_ipv4() != service.vip.is_ipv4() {
            return Err(self.invalid(
                &address_key,
                format!(
                    "real {address} is {} but the VIP {} is {}; a real must be in the VIP's \
                     address family",
                    family_name(address),
                    service.vip,
                    family_name(service.vip)
                ),
            ));
        }

        let forward = self.word(raw.forward, &format!("{key}.forward"), service.forward)?;

        let port_key = format!("{key}.port");
        let port = match raw.port {
            Some(value) => self.port(value, &port_key)?,
            None => service.port,
        };
        if port != service.port && !forward.can_change_port() {
            let message = if service.port == 0 {
                format!(
                    "the service has port 0 (all ports), so the real keeps each packet's port; \
                     omit `port` or set it to 0 (got {port})"
                )
            } else {
                format!(
                    "direct routing cannot change the port: real port {port} differs from \
                     service port {}; omit `port` or set it to {}",
                    service.port, service.port
                )
            };
            return Err(self.invalid(&port_key, message));
        }

        let weight = match raw.weight {
            Some(value) => u32::try_from(value)
                .ok()
                .filter(|weight| *weight <= MAX_WEIGHT)
                .ok_or_else(|| {
                    self.invalid(
                        &format!("{key}.weight"),
                        format!(
                            "weight {value} is out of range 0..={MAX_WEIGHT} (0 drains the real)"
                        ),
                    )
                })?,
            None => 1,
        };

        Ok(RealConfig {
            address,
            port,
            weight,
            forward,
        })
    }

    /// A unicast IP address (`role` names it in messages: "VIP", "real server").
    fn address(&self, text: Option<String>, key: &str, role: &str) -> Result<IpAddr, ConfigError> {
        let text = self.required(text, key, &format!("the {role}'s IP address"))?;
        let address: IpAddr = text
            .parse()
            .map_err(|_| self.invalid(key, format!("invalid IP address {text:?}")))?;
        let problem = if address.is_unspecified() {
            Some("the unspecified address")
        } else if address.is_multicast() {
            Some("a multicast address")
        } else if matches!(address, IpAddr::V4(v4) if v4.is_broadcast()) {
            Some("the broadcast address")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(self.invalid(
                key,
                format!("{address} is {problem}; a {role} address must be a unicast address"),
            )),
            None => Ok(address),
        }
    }

    fn port(&self, value: i64, key: &str) -> Result<u16, ConfigError> {
        u16::try_from(value)
            .map_err(|_| self.invalid(key, format!("port {value} is out of range 0..=65535")))
    }

    /// One of a config enum's words, or `default` when the key is absent.
    fn word<T: FromStr<Err = NameError>>(
        &self,
        word: Option<String>,
        key: &str,
        default: T,
    ) -> Result<T, ConfigError> {
        match word {
            Some(word) => self.parse_word(&word, key),
            None => Ok(default),
        }
    }

    fn parse_word<T: FromStr<Err = NameError>>(
        &self,
        word: &str,
        key: &str,
    ) -> Result<T, ConfigError> {
        word.parse()
            .map_err(|error: NameError| self.invalid(key, error.to_string()))
    }
}

fn family_name(address: IpAddr) -> &'static str {
    if address.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// `192.0.2.10:80`, `[2001:db8::1]:80`.
fn socket_name(address: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(address, port).to_string()
}

/// `192.0.2.10:80/tcp`, as the CLI names services.
fn service_name(service: &ServiceConfig) -> String {
    format!(
        "{}/{}",
        socket_name(service.vip, service.port),
        service.protocol
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// Parses `text`, expecting an error; returns its one-line message.
    fn error_of(text: &str) -> String {
        match parse(text, "demo.yaml") {
            Ok(config) => panic!("expected an error, got {config:#?}\nfor config:\n{text}"),
            Err(error) => {
                let message = error.to_string();
                assert!(
                    !message.contains('\n'),
                    "error is not one line: {message:?}"
                );
                assert!(
                    message.starts_with("demo.yaml"),
                    "error does not name the file: {message}"
                );
                message
            }
        }
    }

    #[track_caller]
    fn assert_mentions(message: &str, expected: &[&str]) {
        for fragment in expected {
            assert!(
                message.contains(fragment),
                "error {message:?} should contain {fragment:?}"
            );
        }
    }

    fn parse_ok(text: &str) -> Config {
        parse(text, "demo.yaml")
            .unwrap_or_else(|error| panic!("config should parse: {error}\n{text}"))
    }

    /// One interface; the service starts on line 4, `service_extra` on line 7, the first real on
    /// line 8 (with `service_extra` empty), `real_extra` from line 9. Tests splice keys in.
    fn minimal_with_service(service_extra: &str, real_extra: &str) -> String {
        format!(
            "instance: lb1\n\
             interfaces: [{{name: eth0}}]\n\
             services:\n\
             \x20 - vip: 192.0.2.10\n\
             \x20   port: 80\n\
             \x20   protocol: tcp\n{service_extra}\
             \x20   reals:\n\
             \x20     - address: 10.0.0.11\n{real_extra}"
        )
    }

    #[test]
    fn full_config_parses_with_defaults_applied() {
        let text = "\
instance: lb1
interfaces:
  - name: eth0
    xdp_mode: native
  - name: veth-lb1
admin:
  socket: /run/lb/lb1.sock
pin_dir: /sys/fs/bpf/test/lb1
services:
  - vip: 192.0.2.10
    port: 80
    protocol: tcp
    scheduler: rr
    forward: dr
    reals:
      - address: 10.0.0.11
        port: 80
        weight: 3
        forward: dr
      - address: 10.0.0.12
      - {address: 10.0.0.13, weight: 0}
  - vip: 192.0.2.10
    port: 0
    protocol: udp
    reals: []
  - vip: 192.0.2.11
    port: 53
    protocol: udp
limits: {flows: 1000, services: 16, reals: 64}
";
        let real = |last_octet: u8, weight: u32| RealConfig {
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last_octet)),
            port: 80,
            weight,
            forward: Forward::Dr,
        };
        let expected = Config {
            instance: "lb1".into(),
            interfaces: vec![
                InterfaceConfig {
                    name: "eth0".into(),
                    xdp_mode: XdpMode::Native,
                },
                InterfaceConfig {
                    name: "veth-lb1".into(),
                    xdp_mode: XdpMode::Auto,
                },
            ],
            admin_socket: PathBuf::from("/run/lb/lb1.sock"),
            pin_dir: PathBuf::from("/sys/fs/bpf/test/lb1"),
            services: vec![
                ServiceConfig {
                    vip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
                    port: 80,
                    protocol: Protocol::Tcp,
                    scheduler: Scheduler::Rr,
                    forward: Forward::Dr,
                    reals: vec![real(11, 3), real(12, 1), real(13, 0)],
                },
                ServiceConfig {
                    vip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
                    port: 0,
                    protocol: Protocol::Udp,
                    scheduler: Scheduler::Wrr,
                    forward: Forward::Dr,
                    reals: vec![],
                },
                ServiceConfig {
                    vip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)),
                    port: 53,
                    protocol: Protocol::Udp,
                    scheduler: Scheduler::Wrr,
                    forward: Forward::Dr,
                    reals: vec![],
                },
            ],
            limits: Limits {
                flows: 1000,
                services: 16,
                reals: 64,
            },
        };
        assert_eq!(parse_ok(text), expected);
    }

    #[test]
    fn omitted_keys_get_their_defaults() {
        let config = parse_ok("instance: edge-2\ninterfaces:\n  - name: eth1\n");
        assert_eq!(config.admin_socket, PathBuf::from(DEFAULT_ADMIN_SOCKET));
        assert_eq!(config.pin_dir, PathBuf::from("/sys/fs/bpf/lb/edge-2"));
        assert_eq!(config.services, vec![]);
        assert_eq!(
            config.limits,
            Limits {
                flows: lb_common::DEFAULT_MAX_FLOWS,
                services: lb_common::DEFAULT_MAX_SERVICES,
                reals: lb_common::DEFAULT_MAX_REALS,
            }
        );
        assert_eq!(config.interfaces[0].xdp_mode, XdpMode::Auto);
    }

    #[test]
    fn real_inherits_service_forward_and_port_zero_service_accepts_port_zero_real() {
        let config = parse_ok(
            "instance: a\ninterfaces: [{name: eth0}]\nservices:\n  - vip: 192.0.2.1\n    \
             port: 0\n    protocol: tcp\n    reals:\n      - {address: 10.0.0.1, port: 0}\n      \
             - {address: 10.0.0.2}\n",
        );
        let reals = &config.services[0].reals;
        assert_eq!((reals[0].port, reals[1].port), (0, 0));
        assert_eq!(reals[1].forward, Forward::Dr);
    }

    #[test]
    fn load_names_the_path_when_the_file_is_missing() {
        let path = Path::new("/nonexistent/lb-config-test.yaml");
        let message = match load(path) {
            Ok(config) => panic!("loading a missing file succeeded: {config:?}"),
            Err(error) => error.to_string(),
        };
        assert_mentions(
            &message,
            &["/nonexistent/lb-config-test.yaml", "cannot read"],
        );
    }

    #[test]
    fn malformed_yaml_names_the_line() {
        let message = error_of("instance: lb1\ninterfaces:\n  - name: eth0\n   xdp_mode: native\n");
        assert_mentions(&message, &["demo.yaml:4:", "invalid YAML"]);

        let message = error_of("instance: lb1\ninterfaces: [{name: eth0}\n");
        assert_mentions(&message, &["demo.yaml:2:", "invalid YAML"]);
    }

    #[test]
    fn empty_or_non_mapping_document_is_rejected() {
        assert_mentions(&error_of(""), &["empty", "instance"]);
        assert_mentions(
            &error_of("- a\n- b\n"),
            &["demo.yaml:1:1:", "expected a mapping", "a list"],
        );
    }

    #[test]
    fn misspelt_key_is_an_error_naming_key_and_line() {
        let text = minimal_with_service("    helth_check: {type: tcp}\n", "");
        let message = error_of(&text);
        assert_mentions(
            &message,
            &[
                "demo.yaml:7:5:",
                "services[0].helth_check",
                "unknown key",
                "did you mean `health_check`?",
            ],
        );

        let message = error_of("instance: a\ninterfaces: [{name: eth0, xdp: native}]\n");
        assert_mentions(
            &message,
            &["demo.yaml:2:27:", "interfaces[0].xdp: unknown key"],
        );
    }

    #[test]
    fn wrong_value_type_names_key_and_line() {
        let message = error_of(&minimal_with_service("", "        weight: heavy\n"));
        assert_mentions(
            &message,
            &[
                "demo.yaml:9:17:",
                "services[0].reals[0].weight",
                "expected a whole number",
                "\"heavy\"",
            ],
        );

        let message = error_of("instance: [a, b]\ninterfaces: [{name: eth0}]\n");
        assert_mentions(
            &message,
            &[
                "demo.yaml:1:11:",
                "instance: expected a single value",
                "a list",
            ],
        );

        // Through an alias, the error is where the alias is used.
        let message =
            error_of("instance: &n eth0\ninterfaces: [{name: eth0}]\nlimits:\n  flows: *n\n");
        assert_mentions(
            &message,
            &[
                "demo.yaml:4:10:",
                "limits.flows: expected a whole number",
                "\"eth0\"",
            ],
        );

        let message = error_of("instance: a\ninterfaces: eth0\n");
        assert_mentions(
            &message,
            &["demo.yaml:2:13:", "interfaces: expected a list", "\"eth0\""],
        );
    }

    #[test]
    fn duplicate_yaml_key_is_rejected() {
        let message = error_of("instance: a\ninstance: b\ninterfaces: [{name: eth0}]\n");
        assert_mentions(&message, &["demo.yaml:2:1:", "duplicate"]);
    }

    #[test]
    fn bad_real_address_names_the_key_path_and_line() {
        let real_extra = "      - address: 10.0.0.12\n      - address: 10.0.0.300\n";
        let message = error_of(&minimal_with_service("", real_extra));
        assert_eq!(
            message,
            "demo.yaml:10:18: services[0].reals[2].address: invalid IP address \"10.0.0.300\""
        );
    }

    #[test]
    fn special_addresses_are_rejected() {
        for (vip, problem) in [
            ("0.0.0.0", "unspecified"),
            ("224.0.0.18", "multicast"),
            ("255.255.255.255", "broadcast"),
        ] {
            let text = minimal_with_service("", "").replace("192.0.2.10", vip);
            assert_mentions(
                &error_of(&text),
                &["demo.yaml:4:10:", "services[0].vip", problem],
            );
        }
        let text = minimal_with_service("", "").replace("10.0.0.11", "239.1.1.1");
        assert_mentions(
            &error_of(&text),
            &["services[0].reals[0].address", "multicast"],
        );
    }

    #[test]
    fn ipv6_vip_is_not_supported_yet() {
        let text = minimal_with_service("", "").replace("192.0.2.10", "2001:db8::10");
        assert_mentions(
            &error_of(&text),
            &[
                "demo.yaml:4:10:",
                "services[0].vip",
                "IPv6 services are not supported yet",
            ],
        );
    }

    #[test]
    fn real_of_the_other_family_names_both_addresses() {
        let text = minimal_with_service("", "").replace("10.0.0.11", "2001:db8::11");
        assert_mentions(
            &error_of(&text),
            &[
                "demo.yaml:8:18:",
                "services[0].reals[0].address",
                "2001:db8::11",
                "192.0.2.10",
                "IPv6",
                "IPv4",
            ],
        );
    }

    #[test]
    fn duplicate_service_names_both_indices() {
        let text = "instance: a\ninterfaces: [{name: eth0}]\nservices:\n\
                    \x20 - {vip: 192.0.2.1, port: 80, protocol: tcp}\n\
                    \x20 - {vip: 192.0.2.1, port: 80, protocol: udp}\n\
                    \x20 - {vip: 192.0.2.1, port: 80, protocol: tcp, scheduler: rr}\n";
        assert_mentions(
            &error_of(text),
            &[
                "demo.yaml:6:5:",
                "services[2]: duplicate service",
                "services[0]",
                "192.0.2.1:80/tcp",
            ],
        );
    }

    #[test]
    fn duplicate_real_names_both_indices() {
        let real_extra =
            "      - address: 10.0.0.12\n      - address: 10.0.0.11\n        weight: 2\n";
        assert_mentions(
            &error_of(&minimal_with_service("", real_extra)),
            &[
                "demo.yaml:10:",
                "services[0].reals[2]: duplicate real",
                "reals[0]",
                "10.0.0.11:80",
            ],
        );
    }

    #[test]
    fn keys_not_implemented_yet_are_rejected_by_name() {
        let message = error_of(&minimal_with_service(
            "    health_check:\n      type: tcp\n",
            "",
        ));
        assert_mentions(
            &message,
            &[
                "demo.yaml:7:5:",
                "services[0].health_check: not supported yet",
            ],
        );
        assert!(!message.contains("unknown"), "{message}");

        // An empty value still names a feature the user expects; it must not pass silently.
        let message = error_of(&minimal_with_service("    persistence:\n", ""));
        assert_mentions(&message, &["services[0].persistence: not supported yet"]);

        for key in ["metrics", "timeouts", "vrrp", "sync", "bgp"] {
            let text = format!("instance: a\ninterfaces: [{{name: eth0}}]\n{key}: {{}}\n");
            assert_mentions(
                &error_of(&text),
                &["demo.yaml:3:1:", &format!("{key}: not supported yet")],
            );
        }
    }

    #[test]
    fn scheduler_and_forward_not_implemented_yet_say_so() {
        let message = error_of(&minimal_with_service("    scheduler: wlc\n", ""));
        assert_mentions(
            &message,
            &[
                "demo.yaml:7:16:",
                "services[0].scheduler",
                "scheduler `wlc` is not supported yet (this version has rr, wrr)",
            ],
        );

        let message = error_of(&minimal_with_service("    scheduler: fastest\n", ""));
        assert_mentions(&message, &["unknown scheduler \"fastest\"", "rr, wrr"]);

        let message = error_of(&minimal_with_service("", "        forward: tun\n"));
        assert_mentions(
            &message,
            &[
                "demo.yaml:9:18:",
                "services[0].reals[0].forward",
                "`tun` is not supported yet",
            ],
        );

        let message = error_of(&minimal_with_service("    forward: fullnat\n", ""));
        assert_mentions(
            &message,
            &["services[0].forward", "`fullnat` is not supported yet"],
        );
    }

    #[test]
    fn weight_out_of_range() {
        for weight in ["65536", "-1"] {
            let message = error_of(&minimal_with_service(
                "",
                &format!("        weight: {weight}\n"),
            ));
            assert_mentions(
                &message,
                &[
                    "demo.yaml:9:17:",
                    "services[0].reals[0].weight",
                    "out of range",
                ],
            );
        }
    }

    #[test]
    fn direct_routing_cannot_change_the_port() {
        let message = error_of(&minimal_with_service("", "        port: 8080\n"));
        assert_mentions(
            &message,
            &[
                "demo.yaml:9:15:",
                "services[0].reals[0].port",
                "cannot change the port",
                "8080",
                "80",
            ],
        );

        let text = minimal_with_service("", "        port: 80\n")
            .replace("port: 80\n    protocol", "port: 0\n    protocol");
        assert_mentions(
            &error_of(&text),
            &["services[0].reals[0].port", "port 0 (all ports)"],
        );
    }

    #[test]
    fn service_port_is_required_and_in_range() {
        let text = minimal_with_service("", "").replace("    port: 80\n", "");
        assert_mentions(
            &error_of(&text),
            &[
                "demo.yaml:4:5:",
                "services[0].port: required key is missing",
            ],
        );

        let text = minimal_with_service("", "").replace("port: 80", "port: 65536");
        assert_mentions(
            &error_of(&text),
            &["demo.yaml:5:11:", "services[0].port", "out of range"],
        );

        let text = minimal_with_service("", "").replace("    protocol: tcp\n", "");
        assert_mentions(
            &error_of(&text),
            &["services[0].protocol: required key is missing"],
        );

        let text = minimal_with_service("", "").replace("protocol: tcp", "protocol: sctp");
        assert_mentions(
            &error_of(&text),
            &["services[0].protocol", "unknown protocol \"sctp\""],
        );
    }

    #[test]
    fn interfaces_must_be_present_non_empty_unique_and_valid() {
        assert_mentions(
            &error_of("instance: a\n"),
            &["demo.yaml: interfaces: required key is missing"],
        );
        assert_mentions(
            &error_of("instance: a\ninterfaces: []\n"),
            &["demo.yaml:2:13: interfaces:", "at least one"],
        );
        assert_mentions(
            &error_of("instance: a\ninterfaces:\n  - name: eth0\n  - name: eth0\n"),
            &[
                "demo.yaml:4:11:",
                "interfaces[1].name",
                "listed twice",
                "interfaces[0]",
            ],
        );
        for bad_name in ["eth0/1", "a-very-long-name-x", "\"eth 0\""] {
            let text = format!("instance: a\ninterfaces:\n  - name: {bad_name}\n");
            assert_mentions(
                &error_of(&text),
                &[
                    "demo.yaml:3:11:",
                    "interfaces[0].name",
                    "invalid interface name",
                ],
            );
        }
        assert_mentions(
            &error_of("instance: a\ninterfaces:\n  - {name: eth0, xdp_mode: fast}\n"),
            &[
                "interfaces[0].xdp_mode",
                "unknown XDP mode \"fast\"",
                "native, generic, auto",
            ],
        );
    }

    #[test]
    fn bad_instance_name() {
        for bad_name in [
            "\"lb 1\"",
            "../etc",
            "a23456789012345678901234567890123",
            "\"\"",
        ] {
            let text = format!("instance: {bad_name}\ninterfaces: [{{name: eth0}}]\n");
            assert_mentions(
                &error_of(&text),
                &["demo.yaml:1:11: instance: invalid instance name"],
            );
        }
        assert_mentions(
            &error_of("instance:\ninterfaces: [{name: eth0}]\n"),
            &["instance: needs a value"],
        );
    }

    #[test]
    fn limits_are_checked_against_ids_and_the_ring() {
        let base = minimal_with_service("", "      - address: 10.0.0.12\n");
        let message = error_of(&format!("{base}limits: {{services: 0}}\n"));
        assert_mentions(
            &message,
            &["demo.yaml:10:20:", "limits.services", "at least 1"],
        );

        // One service needs two slots: id 0 is reserved.
        let message = error_of(&format!("{base}limits: {{services: 1}}\n"));
        assert_mentions(
            &message,
            &[
                "demo.yaml:3:1:",
                "services:",
                "service ids start at 1",
                "raise limits.services",
            ],
        );
        parse_ok(&format!("{base}limits: {{services: 2, reals: 3}}\n"));
        let message = error_of(&format!("{base}limits: {{reals: 2}}\n"));
        assert_mentions(
            &message,
            &["2 reals", "limits.reals = 2", "raise limits.reals"],
        );

        let too_many_services = u32::MAX / lb_common::RING_SLOTS_PER_SERVICE + 1;
        let message = error_of(&format!(
            "{base}limits: {{services: {too_many_services}}}\n"
        ));
        assert_mentions(&message, &["limits.services", "ring", "u32"]);

        let message = error_of(&format!("{base}limits: {{flows: 4294967296}}\n"));
        assert_mentions(&message, &["limits.flows", "4294967296"]);
    }

    #[test]
    fn admin_socket_path_must_fit_a_unix_socket() {
        let long = format!("/run/{}.sock", "x".repeat(120));
        let text =
            format!("instance: a\ninterfaces: [{{name: eth0}}]\nadmin: {{socket: {long}}}\n");
        assert_mentions(
            &error_of(&text),
            &["demo.yaml:3:17:", "admin.socket", "at most 107"],
        );
    }

    #[test]
    fn names_round_trip_through_from_str() {
        for protocol in Protocol::ALL {
            assert_eq!(protocol.name().parse::<Protocol>(), Ok(protocol));
        }
        for scheduler in Scheduler::ALL {
            assert_eq!(scheduler.name().parse::<Scheduler>(), Ok(scheduler));
        }
        for forward in Forward::ALL {
            assert_eq!(forward.name().parse::<Forward>(), Ok(forward));
        }
        for mode in XdpMode::ALL {
            assert_eq!(mode.name().parse::<XdpMode>(), Ok(mode));
        }
        assert_eq!(
            "lc".parse::<Scheduler>().map_err(|error| error.to_string()),
            Err("scheduler `lc` is not supported yet (this version has rr, wrr)".to_owned())
        );
        assert_eq!(
            "nat".parse::<Forward>().map_err(|error| error.to_string()),
            Err("forwarding method `nat` is not supported yet (this version has dr)".to_owned())
        );
    }
}

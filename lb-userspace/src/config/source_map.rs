//! Key paths ↔ positions in the config text.
//!
//! serde-saphyr reports the line and column of syntax and type errors but not the key path, and
//! after parsing the positions are gone. So the text is read twice: first into a [`SourceMap`]
//! (every key path with the positions of its key and value, built from serde-saphyr's `Spanned`),
//! which turns an error position into a key path and a key path into a position; then into the
//! raw structs.

use std::{collections::HashMap, fmt};

use serde::{
    Deserialize,
    de::{self, MapAccess, SeqAccess, Visitor},
};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

use super::{ConfigError, Location, Position};

/// Any YAML node, with the position of every key and value; only used to build a [`SourceMap`].
pub(super) enum YamlNode {
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

pub(super) struct YamlNodeVisitor;

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
pub(super) struct SourceEntry {
    pub(super) path: String,
    /// Where the key is written; `None` for sequence items and the document itself.
    pub(super) key_position: Option<Position>,
    /// Where the value starts (for a block mapping: its first key).
    pub(super) value_position: Option<Position>,
    /// The value as an error message names it: `"abc"`, `a mapping`, ….
    pub(super) value_description: String,
}

/// Every key path of the document with its positions, in document order (parents first).
pub(super) struct SourceMap {
    pub(super) file: String,
    pub(super) entries: Vec<SourceEntry>,
    pub(super) index_by_path: HashMap<String, usize>,
}

impl SourceMap {
    pub(super) fn build(text: &str, file: &str) -> Result<SourceMap, ConfigError> {
        let root: Spanned<YamlNode> =
            super::read_yaml(text).map_err(|error| ConfigError::Syntax {
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

    pub(super) fn entry(&self, path: &str) -> Option<&SourceEntry> {
        self.index_by_path
            .get(path)
            .map(|&index| &self.entries[index])
    }

    pub(super) fn contains(&self, path: &str) -> bool {
        self.index_by_path.contains_key(path)
    }

    /// Where the value of `path` starts; for a key that is absent, where its parent starts
    /// (the mapping it is missing from). Top-level keys have no useful parent position.
    pub(super) fn value_position(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(entry) = self.entry(path) {
                return entry.value_position;
            }
            path = parent_path(path).filter(|parent| !parent.is_empty())?;
        }
    }

    /// Where the key of `path` is written, falling back to [`Self::value_position`].
    pub(super) fn key_position(&self, path: &str) -> Option<Position> {
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
    pub(super) fn structure_error(&self, error: &serde_saphyr::Error) -> ConfigError {
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

pub(super) fn entry_path(entry: Option<&SourceEntry>) -> String {
    entry.map_or_else(String::new, |entry| entry.path.clone())
}

/// `parent.key`, or `parent["odd key"]` when the key would not read as one path segment.
pub(super) fn join_key(parent: &str, key: &str) -> String {
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
pub(super) fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    Some(path.rfind(['.', '[']).map_or("", |split| &path[..split]))
}

/// serde-saphyr wraps errors for snippet rendering and alias replay; the message is that of
/// the error inside.
pub(super) fn innermost_error(error: &serde_saphyr::Error) -> &serde_saphyr::Error {
    let mut error = error;
    while let serde_saphyr::Error::WithSnippet { error: inner, .. }
    | serde_saphyr::Error::AliasError { error: inner, .. } = error
    {
        error = inner;
    }
    error
}

/// serde-saphyr's message for `error` without its position suffix, on one line.
pub(super) fn yaml_message(error: &serde_saphyr::Error) -> String {
    single_line(&UserMessageFormatter.format_message(error))
}

pub(super) fn single_line(text: &str) -> String {
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
pub(super) fn source_text(text: &str, location: serde_saphyr::Location) -> Option<&str> {
    let span = location.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    text.get(start..start.checked_add(len)?)
        .filter(|written| !written.is_empty())
}

/// The value as an error message names it; scalars as written in the file when known.
pub(super) fn describe(node: &YamlNode, written: Option<&str>) -> String {
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

pub(super) fn describe_rust_type(type_name: &str) -> String {
    match type_name {
        "i64" => "a whole number".to_owned(),
        "bool" => "true or false".to_owned(),
        other => format!("a value of type {other}"),
    }
}

pub(super) fn describe_yaml_expectation(expected: &str) -> String {
    match expected {
        "string scalar" => "a single value (not a list or mapping)".to_owned(),
        "sequence start" => "a list".to_owned(),
        "mapping start" => "a mapping".to_owned(),
        other => other.to_owned(),
    }
}

pub(super) fn unknown_key_message(key: &str, known: &[&str]) -> String {
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
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
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

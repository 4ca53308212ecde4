//! Config text → [`Config`]: reading the file, the YAML parser's limits, and the config as a
//! [`Document`] that runtime changes edit and validate again.

use std::path::Path;

use super::{
    Config, ConfigError, Location, raw::RawConfig, source_map::SourceMap, validate::Validator,
};

/// Reads and validates the config file at `path`; errors name the path as given.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    parse(&read(path)?, &path.display().to_string())
}

/// A config as its keys and values (the file's, or as changed since over the admin socket):
/// a change edits it, then [`from_document`] validates the whole of it again, so a runtime
/// change passes exactly the checks the file does.
pub type Document = serde_json::Value;

/// What [`from_document`] names in its error messages.
pub const RUNTIME_SOURCE: &str = "runtime change";

/// [`load`], and the file as a [`Document`].
pub fn load_with_document(path: &Path) -> Result<(Config, Document), ConfigError> {
    parse_with_document(&read(path)?, &path.display().to_string())
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// [`parse`], and the text as a [`Document`].
pub fn parse_with_document(text: &str, source: &str) -> Result<(Config, Document), ConfigError> {
    let config = parse(text, source)?;
    let document = read_yaml(text).map_err(|error| ConfigError::Syntax {
        location: Location {
            file: source.to_owned(),
            position: None,
        },
        message: error.to_string(),
    })?;
    Ok((config, document))
}

/// Validates a [`Document`] as a config file (errors name the key path; their line numbers
/// are those of the document printed as JSON).
pub fn from_document(document: &Document) -> Result<Config, ConfigError> {
    let text = serde_json::to_string_pretty(document).expect("a JSON value always prints");
    parse(&text, RUNTIME_SOURCE)
}

/// The YAML parser's limits, raised from its defaults (250,000 nodes) to what the largest
/// table the maps hold takes: 65,536 reals of a few keys each, and their services. The file
/// is the administrator's own, not untrusted input; the limits still bound a runaway one.
const MAX_YAML_NODES: usize = 4_000_000;
const MAX_YAML_EVENTS: usize = 16_000_000;

/// `text` read as YAML into `T`, within [`MAX_YAML_NODES`].
pub(crate) fn read_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<T, serde_saphyr::Error> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: MAX_YAML_NODES,
            max_events: MAX_YAML_EVENTS,
        },
    };
    serde_saphyr::from_str_with_options(text, options)
}

/// Parses and validates config `text`; `source` names it in error messages (usually the path).
pub fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
    // The two readings of the text are independent until an error needs the map: on another
    // thread, the map costs a large config (4,000 services) no wall-clock time.
    let (source_map, raw) = std::thread::scope(|scope| {
        let source_map = scope.spawn(|| SourceMap::build(text, source));
        let raw: Result<RawConfig, _> = read_yaml(text);
        let source_map = source_map
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (source_map, raw)
    });
    let source_map = source_map?;
    let raw = raw.map_err(|error| source_map.structure_error(&error))?;
    Validator {
        source_map: &source_map,
    }
    .config(raw)
}

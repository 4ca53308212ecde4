//! `import`: keepalived.conf in, YAML that lbd's validator accepts out, every directive it
//! leaves out listed with file and line.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
};

use super::*;
use crate::config::Config;

/// Health checks: the timing rules and one check per service.
mod checks;
/// Bad input: each error names the file and line.
mod errors;
/// The testdata config: the typed config and the exact list of what is left out.
mod fixture;
/// What keepalived has no bound for and lbd has: listed, never a YAML lbd refuses.
mod limits;
/// Services, reals, sorry servers, interfaces and the rest of the mapping.
mod services;
/// keepalived's syntax: braces, quotes, definitions, as keepalived reads them.
mod syntax;
/// VRRP instances and the sync daemon.
mod vrrp;

/// A directory of its own, removed when dropped.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lb-import-keepalived-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    /// Writes `text` to `name` (under the directory) and returns its path.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A converted config: the validated YAML and what was left out, as (file relative to the
/// top file's directory, line, directive).
struct Converted {
    config: Config,
    yaml: String,
    listed: Vec<(String, usize, String)>,
    unconverted: Vec<Unconverted>,
}

/// Imports `path` and validates the YAML as `lbd --check` does.
fn convert_file(path: &Path, options: &ImportOptions) -> Converted {
    let import = import(path, options).unwrap_or_else(|error| panic!("import failed: {error}"));
    let config = config::parse(&import.yaml, "converted.yaml")
        .unwrap_or_else(|error| panic!("{error}\nin:\n{}", import.yaml));
    let directory = path.parent().unwrap();
    let listed = import
        .unconverted
        .iter()
        .map(|entry| {
            let file = entry.file.strip_prefix(directory).unwrap_or(&entry.file);
            (
                file.display().to_string(),
                entry.line,
                entry.directive.clone(),
            )
        })
        .collect();
    Converted {
        config,
        yaml: import.yaml,
        listed,
        unconverted: import.unconverted,
    }
}

/// Converts `text` as keepalived.conf, attached to eth0 (so that no guess is listed); the
/// directory is gone afterwards.
fn convert(text: &str) -> Converted {
    let scratch = Scratch::new();
    convert_file(&scratch.write("keepalived.conf", text), &on_eth0())
}

fn on_eth0() -> ImportOptions {
    ImportOptions {
        interfaces: vec!["eth0".to_owned()],
    }
}

/// The reasons given for `directive` at `line`; panics when it is not listed.
#[track_caller]
fn reason(converted: &Converted, line: usize, directive: &str) -> String {
    converted
        .unconverted
        .iter()
        .find(|entry| entry.line == line && entry.directive == directive)
        .map(|entry| entry.reason.clone())
        .unwrap_or_else(|| {
            panic!(
                "{directive} at line {line} is not listed; listed: {:#?}",
                converted.listed
            )
        })
}

/// (line, directive) of what `converted` lists from keepalived.conf itself.
fn lines(converted: &Converted) -> Vec<(usize, &str)> {
    converted
        .listed
        .iter()
        .filter(|(file, ..)| file == "keepalived.conf")
        .map(|(_, line, directive)| (*line, directive.as_str()))
        .collect()
}

//! keepalived's config syntax → a tree of [`Directive`]s, read the way keepalived's
//! `lib/parser.c` reads it:
//!
//! - line by line (a line ends at `\n`; keepalived ignores a line longer than 1023
//!   characters, or one holding a NUL); `#` and `!` start a comment anywhere outside double
//!   quotes (`\#` and `\!` are the characters themselves);
//! - a line that starts with `$NAME=` defines NAME, and later uses of `$NAME` are replaced
//!   (`macros.rs`);
//! - a line that starts with `include` (or `includer`, `includem`, `includew`, `includeb`,
//!   `includea`) reads the files its glob pattern matches in its place, so a block may open
//!   in one file and close in another. A relative pattern is relative to the directory of
//!   the file it is in: keepalived changes into that directory while it reads the file.
//!   Directories and executable files are skipped, as keepalived skips them;
//! - the first `{` or `}` outside quotes ends the line: it stands as a line of its own, and
//!   what follows it is the next line, read as any line is (so `real_server 10.0.0.1 80 {
//!   weight 2 }` is four lines, and `virtual_server 192.0.2.10 80 { include reals.conf`
//!   includes a file);
//! - a line is split into words at blanks; a double-quoted string is one word, without its
//!   quotes. An unterminated quote ends the line: keepalived reports it and drops the rest;
//! - which `{` opens a block is keepalived's grammar (`grammar.rs`).
//!
//! keepalived's lines for one system (`@SYSTEM`) and its `~SEQ` and `~LST` repetitions are
//! listed, not expanded.

use std::{
    cell::Cell,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    rc::Rc,
};

use super::{
    ImportError, Skipped, Unconverted, glob, grammar,
    macros::{MAX_LINE, Macros},
};

/// One statement: a keyword, its arguments and, when `{` follows it, its block.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Directive {
    pub(super) at: Location,
    pub(super) keyword: String,
    pub(super) args: Vec<String>,
    pub(super) block: Option<Vec<Directive>>,
    /// Whether the converter has read it: see [`Directive::children`].
    pub(super) read: Cell<bool>,
}

impl Directive {
    /// The directives inside its block (none without one), marked as read. The converter
    /// handles every directive of a block it reads (converts or lists it), so a directive
    /// never marked sits in a block nobody read, and is listed as such at the end.
    pub(super) fn children(&self) -> &[Directive] {
        let children = self.block.as_deref().unwrap_or_default();
        for child in children {
            child.read.set(true);
        }
        children
    }

    /// Its first argument, if any.
    pub(super) fn value(&self) -> Option<&str> {
        self.args.first().map(String::as_str)
    }
}

/// Where a directive is written.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Location {
    /// As the include pattern named it (joined to the including file's directory).
    pub(super) file: Rc<Path>,
    pub(super) line: usize,
    /// Its place in the whole config, includes spliced in.
    pub(super) order: usize,
    /// `file` as comments and messages show it: relative to the top file's directory.
    pub(super) shown: Rc<str>,
}

impl Location {
    /// `conf.d/web.conf:12`.
    pub(super) fn place(&self) -> String {
        format!("{}:{}", self.shown, self.line)
    }

    /// A note that the directive `keyword` written here is not converted.
    pub(super) fn skipped(&self, keyword: &str, reason: impl Into<String>) -> Skipped {
        Skipped {
            order: self.order,
            unconverted: Unconverted {
                file: self.file.to_path_buf(),
                line: self.line,
                directive: keyword.to_owned(),
                reason: reason.into(),
            },
        }
    }
}

/// The config as a tree, and what reading it left out.
pub(super) struct Parsed {
    pub(super) directives: Vec<Directive>,
    pub(super) skipped: Vec<Skipped>,
}

/// Reads `path` and the files it includes.
pub(super) fn read(path: &Path) -> Result<Parsed, ImportError> {
    let bytes = fs::read(path).map_err(|source| ImportError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = Reader {
        top_directory: path.parent().unwrap_or(Path::new("")).to_owned(),
        ..Reader::default()
    };
    let identity = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    reader.open.push(identity);
    reader.lines(Rc::from(path), &String::from_utf8_lossy(&bytes))?;
    Ok(reader.parsed())
}

/// Reads `text` as the file `path` would hold it, touching no file: its `include` lines are
/// listed, not read.
pub(super) fn read_text(path: &Path, text: &str) -> Result<Parsed, ImportError> {
    let mut reader = Reader {
        top_directory: path.parent().unwrap_or(Path::new("")).to_owned(),
        includes: Includes::List,
        ..Reader::default()
    };
    reader.lines(Rc::from(path), text)?;
    Ok(reader.parsed())
}

/// What an `include` line does.
#[derive(Debug, Default, PartialEq, Eq)]
enum Includes {
    /// Reads the files its pattern matches, as keepalived does.
    #[default]
    Read,
    /// Lists it (the config was given as text, without its files).
    List,
}

impl Reader {
    fn parsed(self) -> Parsed {
        let (directives, mut skipped) = grammar::build(self.items);
        skipped.extend(self.skipped);
        Parsed {
            directives,
            skipped,
        }
    }
}

/// A piece of a line: what the tree is built from.
#[derive(Debug)]
pub(super) enum Item {
    Words(Vec<String>),
    Open,
    Close,
}

/// keepalived's blanks between words (`WHITE_SPACE_STR`).
const BLANKS: [char; 5] = [' ', '\t', '\x0c', '\r', '\x0b'];

#[derive(Default)]
struct Reader {
    items: Vec<(Location, Item)>,
    skipped: Vec<Skipped>,
    macros: Macros,
    /// The files being read, outermost first (canonical paths): an include of one of them
    /// would never end.
    open: Vec<PathBuf>,
    order: usize,
    /// What shown file names are relative to.
    top_directory: PathBuf,
    /// The name of the file being read, relative to `top_directory`.
    shown: Option<Rc<str>>,
    includes: Includes,
}

impl Reader {
    fn location(&mut self, file: &Rc<Path>, line: usize) -> Location {
        self.order += 1;
        Location {
            file: Rc::clone(file),
            line,
            order: self.order,
            shown: Rc::clone(self.shown.as_ref().expect("set while a file is read")),
        }
    }

    /// Lists `what` (its first word names it) at `line`.
    fn skip(&mut self, file: &Rc<Path>, line: usize, what: &str, reason: impl Into<String>) {
        let at = self.location(file, line);
        let keyword = what.split(BLANKS).next().unwrap_or_default();
        self.skipped.push(at.skipped(keyword, reason));
    }

    fn lines(&mut self, file: Rc<Path>, text: &str) -> Result<(), ImportError> {
        let shown = file.strip_prefix(&self.top_directory).unwrap_or(&file);
        let outer = self.shown.replace(Rc::from(shown.display().to_string()));
        let result = self.lines_of(&file, text);
        self.shown = outer;
        result
    }

    fn lines_of(&mut self, file: &Rc<Path>, text: &str) -> Result<(), ImportError> {
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            let raw = raw.trim_end_matches('\r');
            if raw.contains('\0') || raw.len() > MAX_LINE {
                let problem = if raw.contains('\0') {
                    "holds a NUL character"
                } else {
                    "is longer than 1023 characters"
                };
                self.skip(
                    file,
                    line,
                    raw.split('\0').next().unwrap_or_default(),
                    format!("the line {problem}; keepalived ignores it too"),
                );
                self.macros.continue_definition(None);
                continue;
            }
            let (text, _) = decomment(raw);
            if self.macros.continuing() {
                // keepalived reads comment lines inside a definition as nothing, and ends
                // it at an empty line.
                if raw.is_empty() {
                    self.macros.continue_definition(None);
                } else if !text.is_empty() {
                    self.macros.continue_definition(Some(&text));
                }
                continue;
            }
            let mut next = Some(text);
            while let Some(text) = next.take().filter(|text| !text.is_empty()) {
                next = self.logical_line(file, line, text)?;
            }
        }
        Ok(())
    }

    /// One line as keepalived's `read_line` hands it on, the remainder of the physical line
    /// after a brace included; returns what follows its first brace, the next line.
    fn logical_line(
        &mut self,
        file: &Rc<Path>,
        line: usize,
        text: String,
    ) -> Result<Option<String>, ImportError> {
        if let Some(reason) = listed_line(&text) {
            self.skip(file, line, &text, reason);
            return Ok(None);
        }
        if let Some((name, lines)) = self.macros.define(&text) {
            if lines {
                self.skip(
                    file,
                    line,
                    &format!("${name}"),
                    "a multi-line definition; lbadm import-keepalived does not expand it, and \
                     lists the lines that use it",
                );
            }
            return Ok(None);
        }
        let expanded = self.macros.expand(&text);
        let text = if expanded.changed {
            decomment(&expanded.text).0
        } else {
            text
        };
        if !expanded.unexpanded.is_empty() {
            self.skip(
                file,
                line,
                &text,
                format!(
                    "keepalived replaces {}; the line is read as written",
                    expanded.unexpanded.join("; ")
                ),
            );
        }
        if let Some(pattern) = include_pattern(&text) {
            let at = self.location(file, line);
            self.include(&at, pattern)?;
            return Ok(None);
        }
        let (before, brace, rest) = split_at_brace(&text);
        let (words, dropped) = words(before);
        if let Some(dropped) = dropped {
            self.skip(
                file,
                line,
                words.first().map_or("\"", String::as_str),
                format!(
                    "an unterminated quote; keepalived reads the words before it and drops \
                     {dropped:?}"
                ),
            );
        }
        if !words.is_empty() {
            let at = self.location(file, line);
            self.items.push((at, Item::Words(words)));
        }
        if let Some(brace) = brace {
            let at = self.location(file, line);
            self.items.push((at, brace));
        }
        Ok(rest.map(str::to_owned))
    }

    /// Reads the files `pattern` (written at `at`) matches, in glob's order.
    fn include(&mut self, at: &Location, pattern: &str) -> Result<(), ImportError> {
        if self.includes == Includes::List {
            self.skipped.push(at.skipped(
                "include",
                format!("{pattern}: not read (the config was given as text, without its files)"),
            ));
            return Ok(());
        }
        // keepalived reads a file from its own directory, so a relative pattern is relative
        // to the including file (for the top file: the current directory, where it is).
        let directory = at.file.parent().unwrap_or(Path::new(""));
        let full = directory.join(pattern);
        let Some(matches) = glob::expand(&full.to_string_lossy()) else {
            self.skipped.push(at.skipped(
                "include",
                format!(
                    "{pattern}: its braces make more than {} patterns; lbadm import-keepalived \
                     reads none of them",
                    glob::MAX_ALTERNATIVES
                ),
            ));
            return Ok(());
        };
        if matches.is_empty() {
            self.skipped.push(at.skipped(
                "include",
                format!("{pattern} matches no file (keepalived skips it too)"),
            ));
        }
        for included in matches {
            let read_error = |source| ImportError::ReadIncluded {
                file: at.file.to_path_buf(),
                line: at.line,
                included: included.clone(),
                source,
            };
            let metadata = fs::metadata(&included).map_err(read_error)?;
            if !metadata.is_file() || metadata.permissions().mode() & 0o111 != 0 {
                self.skipped.push(at.skipped(
                    "include",
                    format!(
                        "{} is not a regular, non-executable file (keepalived skips it too)",
                        included.display()
                    ),
                ));
                continue;
            }
            let identity = fs::canonicalize(&included).map_err(read_error)?;
            if self.open.contains(&identity) {
                return Err(ImportError::IncludeLoop {
                    file: at.file.to_path_buf(),
                    line: at.line,
                    included,
                });
            }
            let bytes = fs::read(&included).map_err(read_error)?;
            self.open.push(identity);
            self.lines(
                Rc::from(included.as_path()),
                &String::from_utf8_lossy(&bytes),
            )?;
            self.open.pop();
        }
        Ok(())
    }
}

/// The line without its comment and surrounding blanks, and whether a quote is left open
/// (keepalived's `decomment` reports it and keeps the line).
fn decomment(line: &str) -> (String, bool) {
    let mut kept = String::with_capacity(line.len());
    let mut quoted = false;
    let mut chars = line.trim_start_matches([' ', '\t']).chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if !quoted && matches!(chars.peek(), Some('#' | '!')) => {
                kept.extend(chars.next());
                continue;
            }
            '\\' => {
                // Any other escape stays as written, and hides the character after it.
                kept.push(c);
                kept.extend(chars.next());
                continue;
            }
            '#' | '!' if !quoted => break,
            _ => {}
        }
        kept.push(c);
    }
    kept.truncate(kept.trim_end_matches([' ', '\t']).len());
    (kept, quoted)
}

/// The pattern of an `include` line (keepalived's `is_include`: `include` and one of
/// `r m w b a`, which only change how missing files are reported, then a blank).
fn include_pattern(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("include")?;
    let space = |c: char| c.is_ascii_whitespace() || c == '\x0b';
    let rest = match rest.chars().next()? {
        c if space(c) => rest,
        'r' | 'm' | 'w' | 'b' | 'a' if rest[1..].starts_with(space) => &rest[1..],
        _ => return None,
    };
    Some(rest[1..].trim_start_matches([' ', '\t']))
}

/// Why a line of keepalived's macro language is listed rather than read.
fn listed_line(line: &str) -> Option<&'static str> {
    if line.starts_with('@') {
        Some(
            "lines for one system (@SYSTEM_ID) are not converted: keepalived reads them only on that system",
        )
    } else if line.starts_with("~SEQ") || line.starts_with("~LST") {
        Some("keepalived's ~SEQ and ~LST repetitions are not expanded")
    } else {
        None
    }
}

/// A line split at its first brace outside quotes, as keepalived's `read_line` does: the
/// text before it, the brace, and the text after it (the next line). A line that starts
/// with a brace is the brace alone. An unterminated quote hides any brace after it.
fn split_at_brace(line: &str) -> (&str, Option<Item>, Option<&str>) {
    let brace = |c: char| match c {
        '{' => Some(Item::Open),
        '}' => Some(Item::Close),
        _ => None,
    };
    let mut quoted = false;
    for (index, c) in line.char_indices() {
        if c == '"' {
            quoted = !quoted;
            continue;
        }
        if quoted {
            continue;
        }
        let Some(item) = brace(c) else { continue };
        let rest = line[index + 1..].trim_start_matches([' ', '\t']);
        if index == 0 {
            return ("", Some(item), Some(rest).filter(|rest| !rest.is_empty()));
        }
        let before = line[..index].trim_end_matches([' ', '\t']);
        // The brace starts the next line, which then gives it a line of its own.
        return (before, None, Some(&line[index..]));
    }
    (line, None, None)
}

/// A line → its words (a double-quoted string is one, without its quotes, even when empty),
/// and what an unterminated quote drops.
fn words(line: &str) -> (Vec<String>, Option<&str>) {
    let mut words = Vec::new();
    let mut rest = line;
    loop {
        rest = rest.trim_start_matches(BLANKS);
        if rest.is_empty() {
            return (words, None);
        }
        if let Some(quoted) = rest.strip_prefix('"') {
            let Some((word, after)) = quoted.split_once('"') else {
                return (words, Some(rest));
            };
            words.push(word.to_owned());
            rest = after;
        } else {
            let end = rest
                .find(|c: char| BLANKS.contains(&c) || c == '"')
                .unwrap_or(rest.len());
            words.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
}

#[cfg(test)]
mod tests;

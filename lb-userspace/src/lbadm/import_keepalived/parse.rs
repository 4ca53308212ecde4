//! keepalived's config syntax → a tree of [`Directive`]s, read the way keepalived's
//! `lib/parser.c` reads it:
//!
//! - line by line; `#` and `!` start a comment anywhere outside double quotes (`\#` and
//!   `\!` are the characters themselves);
//! - a line is split into words at blanks; a double-quoted string is one word, without its
//!   quotes;
//! - `{` and `}` outside quotes stand on their own, wherever they are on the line, so
//!   `real_server 10.0.0.1 80 { weight 2 }` is three lines to keepalived and to us;
//! - a line that starts with `include` (or `includer`, `includem`, `includew`, `includeb`,
//!   `includea`) reads the files its glob pattern matches in its place, so a block may open
//!   in one file and close in another. A relative pattern is relative to the directory of
//!   the file it is in: keepalived changes into that directory while it reads the file.
//!   Directories and executable files are skipped, as keepalived skips them.
//!
//! keepalived's macro lines (`$NAME=…` definitions, `@SYSTEM` conditions, `~SEQ`, `~LST`)
//! are listed, not expanded.

use std::{
    cell::Cell,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    rc::Rc,
};

use super::{ImportError, Skipped, Unconverted, glob};

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
    Ok(Parsed {
        directives: build(reader.items)?,
        skipped: reader.skipped,
    })
}

/// A piece of a line: what the tree is built from.
#[derive(Debug)]
enum Item {
    Words(Vec<String>),
    Open,
    Close,
}

#[derive(Default)]
struct Reader {
    items: Vec<(Location, Item)>,
    skipped: Vec<Skipped>,
    /// The files being read, outermost first (canonical paths): an include of one of them
    /// would never end.
    open: Vec<PathBuf>,
    order: usize,
    /// What shown file names are relative to.
    top_directory: PathBuf,
    /// The name of the file being read, relative to `top_directory`.
    shown: Option<Rc<str>>,
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
            let unterminated = || ImportError::UnterminatedQuote {
                file: file.to_path_buf(),
                line,
            };
            let text = decomment(raw.trim_end_matches('\r')).ok_or_else(unterminated)?;
            if text.is_empty() {
                continue;
            }
            if let Some(pattern) = include_pattern(&text) {
                let at = self.location(file, line);
                self.include(&at, pattern)?;
                continue;
            }
            if let Some(reason) = macro_line(&text) {
                let at = self.location(file, line);
                let keyword = text.split_whitespace().next().unwrap_or_default();
                self.skipped.push(at.skipped(keyword, reason));
                continue;
            }
            for item in split(&text).ok_or_else(unterminated)? {
                let at = self.location(file, line);
                self.items.push((at, item));
            }
        }
        Ok(())
    }

    /// Reads the files `pattern` (written at `at`) matches, in glob's order.
    fn include(&mut self, at: &Location, pattern: &str) -> Result<(), ImportError> {
        // keepalived reads a file from its own directory, so a relative pattern is relative
        // to the including file (for the top file: the current directory, where it is).
        let directory = at.file.parent().unwrap_or(Path::new(""));
        let full = directory.join(pattern);
        let matches = glob::expand(&full.to_string_lossy());
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

/// The line without its comment and surrounding blanks; `None` for an unterminated quote.
fn decomment(line: &str) -> Option<String> {
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
    if quoted {
        return None;
    }
    kept.truncate(kept.trim_end_matches([' ', '\t']).len());
    Some(kept)
}

/// The pattern of an `include` line (keepalived's `is_include`: `include` and one of
/// `r m w b a`, which only change how missing files are reported, then a blank).
fn include_pattern(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("include")?;
    let rest = match rest.chars().next()? {
        ' ' | '\t' => rest,
        'r' | 'm' | 'w' | 'b' | 'a' if rest[1..].starts_with([' ', '\t']) => &rest[1..],
        _ => return None,
    };
    Some(rest.trim_start_matches([' ', '\t']))
}

/// Why a line of keepalived's macro language is listed rather than read.
fn macro_line(line: &str) -> Option<&'static str> {
    if line.starts_with('$') && line.contains('=') {
        Some("keepalived's $NAME definitions are not expanded; uses of $NAME stay as written")
    } else if line.starts_with('@') {
        Some(
            "lines for one system (@SYSTEM_ID) are not converted: keepalived reads them only on that system",
        )
    } else if line.starts_with("~SEQ") || line.starts_with("~LST") {
        Some("keepalived's ~SEQ and ~LST repetitions are not expanded")
    } else {
        None
    }
}

/// A decommented line → words and braces; `None` for an unterminated quote.
fn split(line: &str) -> Option<Vec<Item>> {
    let mut items = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => words.extend(word.take()),
            '"' => {
                // A quote ends the word before it and is a word of its own, even when empty.
                words.extend(word.take());
                let mut quoted = String::new();
                loop {
                    match chars.next()? {
                        '"' => break,
                        inner => quoted.push(inner),
                    }
                }
                words.push(quoted);
            }
            '{' | '}' => {
                words.extend(word.take());
                if !words.is_empty() {
                    items.push(Item::Words(std::mem::take(&mut words)));
                }
                items.push(if c == '{' { Item::Open } else { Item::Close });
            }
            _ => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    if !words.is_empty() {
        items.push(Item::Words(words));
    }
    Some(items)
}

/// Items → the tree: `{` gives its block to the directive just before it.
fn build(items: Vec<(Location, Item)>) -> Result<Vec<Directive>, ImportError> {
    // The directives of each open block, outermost first, with where the block opened.
    let mut open: Vec<(Vec<Directive>, Location)> = Vec::new();
    let mut current: Vec<Directive> = Vec::new();
    let mut follows_words = false;
    for (at, item) in items {
        match item {
            Item::Words(mut words) => {
                let keyword = words.remove(0);
                current.push(Directive {
                    at,
                    keyword,
                    args: words,
                    block: None,
                    read: Cell::new(false),
                });
                follows_words = true;
            }
            Item::Open => {
                if !follows_words {
                    return Err(ImportError::OrphanOpen {
                        file: at.file.to_path_buf(),
                        line: at.line,
                    });
                }
                open.push((std::mem::take(&mut current), at));
                follows_words = false;
            }
            Item::Close => {
                let Some((mut parent, _)) = open.pop() else {
                    return Err(ImportError::UnexpectedClose {
                        file: at.file.to_path_buf(),
                        line: at.line,
                    });
                };
                let owner = parent.last_mut().expect("a block opens after a directive");
                owner.block = Some(std::mem::take(&mut current));
                current = parent;
                follows_words = false;
            }
        }
    }
    match open.pop() {
        Some((_, at)) => Err(ImportError::Unclosed {
            file: at.file.to_path_buf(),
            line: at.line,
        }),
        None => Ok(current),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        match split(&decomment(line).unwrap()).unwrap().as_slice() {
            [Item::Words(words)] => words.clone(),
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn comments_quotes_and_escapes() {
        assert_eq!(words("  weight 2 # two"), ["weight", "2"]);
        assert_eq!(words("weight 2! two"), ["weight", "2"]);
        assert_eq!(
            words(r#"notify_master "/bin/notify master # !" x"#),
            ["notify_master", "/bin/notify master # !", "x"]
        );
        assert_eq!(words(r"path /a\#b"), ["path", "/a#b"]);
        assert_eq!(words(r#"a"b c""#), ["a", "b c"]);
        assert_eq!(decomment("# only a comment").as_deref(), Some(""));
        assert_eq!(decomment(r#"path "/open"#), None);
    }

    #[test]
    fn braces_stand_on_their_own() {
        let items = split("real_server 10.0.0.1 80 {weight 2}").unwrap();
        let shape: Vec<String> = items
            .iter()
            .map(|item| match item {
                Item::Words(words) => words.join(" "),
                Item::Open => "{".into(),
                Item::Close => "}".into(),
            })
            .collect();
        assert_eq!(shape, ["real_server 10.0.0.1 80", "{", "weight 2", "}"]);
        // Inside quotes a brace is a character.
        assert_eq!(words(r#"path "/{x}""#), ["path", "/{x}"]);
    }

    #[test]
    fn include_lines() {
        assert_eq!(
            include_pattern("include conf.d/*.conf"),
            Some("conf.d/*.conf")
        );
        assert_eq!(include_pattern("includer\t/etc/x"), Some("/etc/x"));
        assert_eq!(include_pattern("include_x 1"), None);
        assert_eq!(include_pattern("includes x"), None);
        assert_eq!(include_pattern("include"), None);
    }

    fn tree(text: &str) -> Result<Vec<Directive>, ImportError> {
        let mut reader = Reader::default();
        reader.lines(Rc::from(Path::new("k.conf")), text)?;
        build(reader.items)
    }

    #[test]
    fn blocks_nest_and_may_open_on_the_next_line() {
        let directives = tree(
            "virtual_server 192.0.2.1 80\n{\n  real_server 10.0.0.1 80 { TCP_CHECK { } }\n}\nx 1\n",
        )
        .unwrap();
        assert_eq!(directives.len(), 2);
        let service = &directives[0];
        assert_eq!(
            (service.keyword.as_str(), service.at.line),
            ("virtual_server", 1)
        );
        let real = &service.children()[0];
        assert_eq!(real.args, ["10.0.0.1", "80"]);
        assert_eq!(real.at.line, 3);
        assert_eq!(real.children()[0].keyword, "TCP_CHECK");
        assert_eq!(real.children()[0].block, Some(vec![]));
        assert_eq!(directives[1].block, None);
    }

    #[test]
    fn unbalanced_braces_name_the_line() {
        let error = tree("a {\n b\n}\n}\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "k.conf:4: unbalanced braces: this `}` closes no block"
        );
        let error = tree("a {\n b {\n}\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "k.conf:1: unbalanced braces: this `{` is never closed"
        );
        let error = tree("{\n}\n").unwrap_err();
        assert!(
            matches!(error, ImportError::OrphanOpen { line: 1, .. }),
            "{error}"
        );
    }
}

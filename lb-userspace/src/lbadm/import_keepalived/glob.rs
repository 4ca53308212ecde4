//! `include` patterns, as keepalived hands them to glob(3) with `GLOB_BRACE`: `{a,b}`
//! alternatives, then `*`, `?` and `[…]` within one path component. `*` and `?` do not match
//! a name's leading dot; each alternative's matches come sorted; a pattern without
//! wildcards names a file only if it exists. Errors reading a directory are no match, as
//! glob without `GLOB_ERR` treats them.

use std::path::{Path, PathBuf};

/// Brace alternatives one pattern may expand to (`{a,b}` twenty times over is a million).
pub(super) const MAX_ALTERNATIVES: usize = 1024;

/// The existing paths `pattern` matches; `None` when its braces expand to more than
/// [`MAX_ALTERNATIVES`] patterns.
pub(super) fn expand(pattern: &str) -> Option<Vec<PathBuf>> {
    let mut budget = MAX_ALTERNATIVES;
    let alternatives = alternatives(pattern, &mut budget)?;
    Some(
        alternatives
            .iter()
            .flat_map(|alternative| expand_one(alternative))
            .collect(),
    )
}

fn expand_one(pattern: &str) -> Vec<PathBuf> {
    if !has_wildcard(pattern) {
        let path = PathBuf::from(pattern);
        return if path.exists() { vec![path] } else { vec![] };
    }
    let mut candidates = vec![if pattern.starts_with('/') {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    }];
    for component in pattern.split('/').filter(|part| !part.is_empty()) {
        if !has_wildcard(component) {
            for candidate in &mut candidates {
                candidate.push(unescape(component));
            }
            continue;
        }
        candidates = candidates
            .iter()
            .flat_map(|directory| {
                let listing = if directory.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    directory
                };
                let mut names: Vec<String> = std::fs::read_dir(listing)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|entry| entry.file_name().into_string().ok())
                    .filter(|name| matches(component, name))
                    .collect();
                names.sort();
                names.into_iter().map(move |name| directory.join(name))
            })
            .collect();
    }
    candidates.retain(|path| path.exists());
    candidates.sort();
    candidates
}

fn has_wildcard(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

fn unescape(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        plain.extend(if c == '\\' { chars.next() } else { Some(c) });
    }
    plain
}

/// `a{b,c{d,e}}f` → `abf`, `acdf`, `acef`; an unmatched `{` is a character. `None` once
/// more than `budget` patterns come out.
fn alternatives(pattern: &str, budget: &mut usize) -> Option<Vec<String>> {
    let bytes = pattern.as_bytes();
    let Some(open) = (0..bytes.len()).find(|&i| bytes[i] == b'{' && !escaped(bytes, i)) else {
        *budget = budget.checked_sub(1)?;
        return Some(vec![pattern.to_owned()]);
    };
    let mut depth = 0;
    let mut commas = Vec::new();
    let mut close = None;
    for i in open..bytes.len() {
        if escaped(bytes, i) {
            continue;
        }
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            b',' if depth == 1 => commas.push(i),
            _ => {}
        }
    }
    let Some(close) = close else {
        *budget = budget.checked_sub(1)?;
        return Some(vec![pattern.to_owned()]);
    };
    let (prefix, suffix) = (&pattern[..open], &pattern[close + 1..]);
    let mut bounds = vec![open];
    bounds.extend(commas);
    bounds.push(close);
    let mut all = Vec::new();
    for pair in bounds.windows(2) {
        let alternative = format!("{prefix}{}{suffix}", &pattern[pair[0] + 1..pair[1]]);
        all.extend(alternatives(&alternative, budget)?);
    }
    Some(all)
}

fn escaped(bytes: &[u8], index: usize) -> bool {
    index > 0 && bytes[index - 1] == b'\\'
}

/// fnmatch(3) for one name: `*`, `?`, `[abc]`, `[a-z]`, `[!x]` (or `[^x]`), `\x`.
pub(super) fn matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let tokens = tokens(pattern);
    let name: Vec<char> = name.chars().collect();
    // Two pointers, going back only to just after the last `*` (which then takes one more
    // character): at most |pattern| × |name| steps, however many stars, and no recursion.
    let (mut at, mut next) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while next < name.len() {
        match tokens.get(at) {
            Some(Token::Star) => {
                last_star = Some((at, next));
                at += 1;
            }
            Some(token) if token.accepts(name[next]) => {
                at += 1;
                next += 1;
            }
            _ => match last_star {
                Some((star, taken)) => {
                    last_star = Some((star, taken + 1));
                    at = star + 1;
                    next = taken + 1;
                }
                None => return false,
            },
        }
    }
    tokens[at..].iter().all(|token| *token == Token::Star)
}

/// One element of a pattern.
#[derive(Debug, PartialEq)]
enum Token {
    Star,
    Any,
    Char(char),
    /// `[…]`: its ranges, and whether it is negated.
    Class(Vec<(char, char)>, bool),
}

impl Token {
    /// Whether it matches `c` (never called for a star).
    fn accepts(&self, c: char) -> bool {
        match self {
            Token::Star | Token::Any => true,
            Token::Char(own) => *own == c,
            Token::Class(ranges, negated) => {
                ranges.iter().any(|&(low, high)| (low..=high).contains(&c)) != *negated
            }
        }
    }
}

fn tokens(pattern: &str) -> Vec<Token> {
    let pattern: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut index = 0;
    while let Some(&c) = pattern.get(index) {
        index += 1;
        tokens.push(match c {
            '*' => Token::Star,
            '?' => Token::Any,
            '[' => match class(&pattern[index - 1..]) {
                Some((token, length)) => {
                    index += length - 1;
                    token
                }
                // An unclosed `[` is a character.
                None => Token::Char('['),
            },
            '\\' if index < pattern.len() => {
                index += 1;
                Token::Char(pattern[index - 1])
            }
            _ => Token::Char(c),
        });
    }
    tokens
}

/// The bracket expression at the start of `pattern`, and its length.
fn class(pattern: &[char]) -> Option<(Token, usize)> {
    let mut index = 1;
    let negated = matches!(pattern.get(index), Some('!' | '^'));
    if negated {
        index += 1;
    }
    let mut ranges = Vec::new();
    // A `]` right after the opening (and negation) is a member.
    let first = index;
    loop {
        let &c = pattern.get(index)?;
        if c == ']' && index > first {
            break;
        }
        if pattern.get(index + 1) == Some(&'-')
            && pattern.get(index + 2).is_some_and(|&end| end != ']')
        {
            ranges.push((c, pattern[index + 2]));
            index += 3;
        } else {
            ranges.push((c, c));
            index += 1;
        }
    }
    Some((Token::Class(ranges, negated), index + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(matches("*.conf", "10-web.conf"));
        assert!(!matches("*.conf", "10-web.conf.orig"));
        assert!(!matches("*.conf", ".hidden.conf"));
        assert!(matches(".*.conf", ".hidden.conf"));
        assert!(matches("web?.conf", "web1.conf"));
        assert!(matches("[0-9]*-[!x]*", "10-web"));
        assert!(!matches("[0-9]*-[!x]*", "10-xweb"));
        assert!(matches("[]a]", "]"));
        assert!(matches(r"a\*", "a*"));
        assert!(!matches(r"a\*", "ab"));
        assert!(matches("a*", "a"));
        assert!(matches("*b*", "abc"));
        assert!(!matches("a*c", "abcd"));
        assert!(matches("a*c*", "abcd"));
        assert!(matches(r"x\", r"x\"));
        assert!(matches("[x", "[x"));
    }

    #[test]
    fn stars_take_linear_time_and_no_stack() {
        // Backtracking per star would take 2^30 steps here, and recursing per character a
        // frame per character of a long name.
        let pattern = format!("{}b", "*a".repeat(30));
        assert!(!matches(&pattern, &"a".repeat(60)));
        assert!(matches(&pattern, &format!("{}b", "a".repeat(60))));
        assert!(matches("*", &"x".repeat(1_000_000)));
    }

    #[test]
    fn braces() {
        let all = |pattern: &str| {
            let mut budget = MAX_ALTERNATIVES;
            alternatives(pattern, &mut budget)
        };
        assert_eq!(all("a{b,c{d,e}}f").unwrap(), ["abf", "acdf", "acef"]);
        assert_eq!(all("/etc/{x").unwrap(), ["/etc/{x"]);
        assert_eq!(all("plain").unwrap(), ["plain"]);
        // 2^10 fit, 2^11 do not; 2^100 end as soon.
        assert_eq!(all(&"{a,b}".repeat(10)).unwrap().len(), 1024);
        assert_eq!(all(&"{a,b}".repeat(11)), None);
        assert_eq!(all(&"{a,b}".repeat(100)), None);
    }

    #[test]
    fn files_in_order() {
        let dir = std::env::temp_dir().join(format!("lb-import-glob-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        for name in ["b.conf", "a.conf", "c.txt", ".d.conf"] {
            std::fs::write(dir.join("conf.d").join(name), "").unwrap();
        }
        let base = dir.display();
        let expand = |pattern: &str| super::expand(pattern).unwrap();
        assert_eq!(
            expand(&format!("{base}/conf.d/*.conf")),
            [dir.join("conf.d/a.conf"), dir.join("conf.d/b.conf")]
        );
        assert_eq!(
            expand(&format!("{base}/*/{{c.txt,a.conf}}")),
            [dir.join("conf.d/c.txt"), dir.join("conf.d/a.conf")]
        );
        assert!(expand(&format!("{base}/conf.d/missing.conf")).is_empty());
        assert!(expand(&format!("{base}/nothere/*.conf")).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! keepalived's `$NAME` definitions, as `lib/parser.c` reads them:
//!
//! - `$NAME=VALUE` at the start of a line defines NAME (`[A-Za-z_][A-Za-z0-9_]*`) from that
//!   line on; VALUE starts after the `=` and its blanks. A VALUE that ends in `\` goes on
//!   over the following lines: a multi-line definition.
//! - In every later line, `$NAME` (followed by a blank, `,`, `)` or the end of the line) and
//!   `${NAME}` are replaced by the value of a defined NAME, and the replacement is scanned
//!   again; an undefined NAME stays as written. keepalived defines `_HASH` (`#`), `_BANG`
//!   (`!`), `_PWD`, `_INSTANCE`, `_RANDOM` and `_ENV` itself.
//!
//! Single-line definitions and `_HASH`/`_BANG` are expanded here. The others stand for what
//! only the running keepalived knows (its directory, instance name, environment, a random
//! number) or for several lines; a line that uses one is read as written, and listed.

use std::collections::HashMap;

/// keepalived's longest line (`MAXBUF` less its terminator): it ignores a longer line, and
/// stops a replacement that would make one.
pub(super) const MAX_LINE: usize = 1023;
/// Replacements in one line before it counts as a definition that uses itself (keepalived
/// would go on for ever).
const MAX_REPLACEMENTS: usize = 100;

/// What a name stands for.
#[derive(Debug, Clone)]
enum Value {
    Text(String),
    /// A multi-line definition, replaced only where its name ends the line.
    Lines,
    /// One of keepalived's own that only it knows: why, and whether it takes parameters.
    Unknown(&'static str, bool),
}

/// The definitions made so far.
#[derive(Debug)]
pub(super) struct Macros {
    defined: HashMap<String, Value>,
    /// Whether the last line read ends in `\` inside a multi-line definition.
    continuing: bool,
}

impl Default for Macros {
    fn default() -> Self {
        let mut defined = HashMap::new();
        defined.insert("_HASH".to_owned(), Value::Text("#".to_owned()));
        defined.insert("_BANG".to_owned(), Value::Text("!".to_owned()));
        for (name, what, parameters) in [
            ("_PWD", "the directory keepalived reads the file in", false),
            (
                "_INSTANCE",
                "keepalived's instance name (its -i option)",
                false,
            ),
            ("_RANDOM", "a random number", true),
            (
                "_ENV",
                "an environment variable of the keepalived process",
                true,
            ),
        ] {
            defined.insert(name.to_owned(), Value::Unknown(what, parameters));
        }
        Macros {
            defined,
            continuing: false,
        }
    }
}

/// A line after replacement.
#[derive(Debug, PartialEq)]
pub(super) struct Expanded {
    pub(super) text: String,
    /// Whether anything was replaced.
    pub(super) changed: bool,
    /// Why uses left as written would have been replaced by keepalived (`$_ENV: …`).
    pub(super) unexpanded: Vec<String>,
}

impl Macros {
    /// Whether the next line continues a multi-line definition.
    pub(super) fn continuing(&self) -> bool {
        self.continuing
    }

    /// Takes a line of a multi-line definition (decommented; `None` for an empty line,
    /// which ends it).
    pub(super) fn continue_definition(&mut self, line: Option<&str>) {
        self.continuing = line.is_some_and(|line| line.ends_with('\\'));
    }

    /// Takes `line` if it is a definition: its name, and whether it is a multi-line one.
    pub(super) fn define(&mut self, line: &str) -> Option<(String, bool)> {
        let rest = line.strip_prefix('$')?;
        let (name, value) = rest.split_once('=')?;
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return None;
        }
        let value = value.trim_start_matches([' ', '\t']);
        let lines = value.ends_with('\\');
        self.continuing = lines;
        let value = if lines {
            Value::Lines
        } else {
            Value::Text(value.to_owned())
        };
        self.defined.insert(name.to_owned(), value);
        Some((name.to_owned(), lines))
    }

    /// `line` with the uses of defined names replaced.
    pub(super) fn expand(&self, line: &str) -> Expanded {
        let mut text = line.to_owned();
        let mut changed = false;
        let mut unexpanded = Vec::new();
        let mut replacements = 0;
        let mut from = 0;
        while let Some(offset) = text[from..].find('$') {
            let at = from + offset;
            let Some((length, value)) = self.lookup(&text[at + 1..]) else {
                from = at + 1;
                continue;
            };
            match value {
                Lookup::Text(value) => {
                    replacements += 1;
                    if replacements > MAX_REPLACEMENTS
                        || text.len() - (length + 1) + value.len() > MAX_LINE
                    {
                        unexpanded.push(format!(
                            "{}: the replacements do not end within {MAX_LINE} characters \
                             (a definition that uses itself?); keepalived stops there too",
                            &text[at..at + 1 + length]
                        ));
                        break;
                    }
                    // The replacement is scanned again, as keepalived does.
                    text.replace_range(at..at + 1 + length, value);
                    changed = true;
                }
                Lookup::Unknown(why) => {
                    unexpanded.push(format!("{}: {why}", &text[at..at + 1 + length]));
                    from = at + 1;
                }
            }
        }
        Expanded {
            text,
            changed,
            unexpanded,
        }
    }

    /// The use at the start of `rest` (just after a `$`): its length and what replaces it.
    fn lookup<'m>(&'m self, rest: &str) -> Option<(usize, Lookup<'m>)> {
        let braced = rest.starts_with('{');
        let name_start = usize::from(braced);
        let name_length = rest[name_start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len() - name_start);
        let name = &rest[name_start..name_start + name_length];
        if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return None;
        }
        let after = &rest[name_start + name_length..];
        let (length, parameters) = if braced {
            // `${NAME}` or `${NAME PARAMETERS}`: words of letters, digits and `_`.
            let inner_length = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | ' ' | '\t')))
                .unwrap_or(after.len());
            let inner = &after[..inner_length];
            if !after[inner_length..].starts_with('}') || inner.ends_with([' ', '\t']) {
                return None;
            }
            (1 + name_length + inner_length + 1, !inner.trim().is_empty())
        } else {
            if !(after.is_empty() || after.starts_with([' ', '\t', ',', ')'])) {
                return None;
            }
            (name_length, false)
        };
        let ends_line = rest.len() == length;
        match self.defined.get(name)? {
            Value::Text(value) if !parameters => Some((length, Lookup::Text(value))),
            Value::Lines if !parameters && ends_line => Some((
                length,
                Lookup::Unknown(
                    "a multi-line definition, which lbadm import-keepalived does not expand",
                ),
            )),
            Value::Unknown(what, takes) if *takes || !parameters => {
                Some((length, Lookup::Unknown(what)))
            }
            _ => None,
        }
    }
}

enum Lookup<'m> {
    Text(&'m str),
    Unknown(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn macros(lines: &[&str]) -> Macros {
        let mut macros = Macros::default();
        for line in lines {
            assert!(macros.define(line).is_some(), "{line}");
        }
        macros
    }

    #[test]
    fn definitions() {
        let mut macros = Macros::default();
        assert_eq!(
            macros.define("$VIP=192.0.2.10"),
            Some(("VIP".into(), false))
        );
        assert_eq!(macros.define("$_X1=  a b"), Some(("_X1".into(), false)));
        assert_eq!(
            macros.define("$REALS=real_server \\"),
            Some(("REALS".into(), true))
        );
        assert!(macros.continuing());
        macros.continue_definition(Some("weight 2 \\"));
        assert!(macros.continuing());
        macros.continue_definition(Some("}"));
        assert!(!macros.continuing());
        assert_eq!(macros.define("$1X=a"), None);
        assert_eq!(macros.define("$X Y=a"), None);
        assert_eq!(macros.define("$X"), None);
    }

    #[test]
    fn uses_are_replaced_and_scanned_again() {
        let macros = macros(&["$VIP=192.0.2.10", "$PORT=80", "$VS=$VIP $PORT", "$ID=lb1"]);
        let expanded = |line: &str| macros.expand(line);
        assert_eq!(
            expanded("virtual_server $VS {").text,
            "virtual_server 192.0.2.10 80 {"
        );
        assert_eq!(
            expanded("router_id ${ID}.example").text,
            "router_id lb1.example"
        );
        assert_eq!(expanded("a $VIP,$PORT)").text, "a 192.0.2.10,80)");
        // Not a use: followed by another character, undefined, or not a name.
        for line in [
            "a $VIP:80",
            "a $UNDEFINED",
            "a $1",
            "a $",
            "a ${VIP 1}",
            "a ${VIP",
        ] {
            let result = expanded(line);
            assert_eq!((result.text.as_str(), result.changed), (line, false));
            assert!(result.unexpanded.is_empty(), "{line}");
        }
        assert_eq!(expanded("x $_HASH").text, "x #");
    }

    #[test]
    fn what_only_keepalived_knows_is_left_and_named() {
        let macros = macros(&["$REALS=a \\"]);
        let result = macros.expand("router_id $_INSTANCE");
        assert_eq!(result.text, "router_id $_INSTANCE");
        assert_eq!(result.unexpanded.len(), 1);
        assert!(result.unexpanded[0].starts_with("$_INSTANCE: keepalived's instance name"));
        assert_eq!(macros.expand("x ${_ENV HOME}").unexpanded.len(), 1);
        // A multi-line definition is replaced only where it ends the line.
        assert_eq!(macros.expand("$REALS").unexpanded.len(), 1);
        assert!(macros.expand("$REALS x").unexpanded.is_empty());
    }

    #[test]
    fn a_definition_that_uses_itself_ends() {
        let macros = macros(&["$A=$A", "$B=$B$B"]);
        for line in ["x $A", "x $B"] {
            let result = macros.expand(line);
            assert_eq!(result.unexpanded.len(), 1, "{line}: {result:?}");
            assert!(result.text.len() <= MAX_LINE);
        }
    }
}

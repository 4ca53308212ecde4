//! `lbadm -R`: ipvsadm `-R`, rules from stdin (as `lbadm -S` prints them, or as ipvsadm-save
//! wrote them), applied all or nothing.
//!
//! Lines are read as ipvsadm reads them: words separated by blanks, `#` starts a comment, a
//! leading `ipvsadm` (or `lbadm`) word is skipped, blank lines are ignored. Words may be
//! quoted as in a shell (`--check '{type: tcp}'`), which ipvsadm's own rules never need. Every
//! line is parsed and checked before anything is sent; lbd then makes the changes one after
//! the other and applies the result only if every one of them is valid, so a bad line changes
//! nothing, and the error names its line.

use clap::Parser;

use super::{
    Failure, add_real, add_service,
    cli::IpvsadmArgs,
    command::{Command, command},
    delete_real, delete_service, edit_real, edit_service, set_timeouts,
};
use crate::config::edit::Edit;

/// One rule, parsed with lbadm's own options.
#[derive(Debug, Parser)]
#[command(no_binary_name = true, disable_help_flag = true)]
struct RuleLine {
    #[command(flatten)]
    args: IpvsadmArgs,
}

/// The changes `text`'s rules make, in order, each with its line number.
pub fn edits(text: &str) -> Result<Vec<(usize, Edit)>, Failure> {
    let mut edits = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let at = |message: String| Failure::Usage(format!("line {number}: {message}"));
        let mut words = words(line).map_err(at)?;
        if matches!(words.first().map(String::as_str), Some("ipvsadm" | "lbadm")) {
            words.remove(0);
        }
        if words.is_empty() {
            continue;
        }
        let parsed = RuleLine::try_parse_from(&words).map_err(|error| {
            let text = error.to_string();
            at(text
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_owned())
        })?;
        let edit = match command(&parsed.args).map_err(|failure| at(failure.to_string()))? {
            Command::AddService(rule) => add_service::edit(&rule),
            Command::EditService(rule) => edit_service::edit(&rule),
            Command::DeleteService(service) => Ok(delete_service::edit(service)),
            Command::AddReal(rule) => Ok(add_real::edit(&rule)),
            Command::EditReal(rule) => Ok(edit_real::edit(&rule)),
            Command::DeleteReal(rule) => Ok(delete_real::edit(&rule)),
            Command::Clear => Ok(Edit::Clear),
            Command::SetTimeouts(seconds) => Ok(set_timeouts::edit(seconds)),
            other => Err(Failure::Usage(format!(
                "{} is not a rule (-R takes -A -E -D -a -e -d -C --set)",
                describe(&other)
            ))),
        }
        .map_err(|failure| at(failure.to_string()))?;
        edits.push((number, edit));
    }
    Ok(edits)
}

fn describe(command: &Command) -> &'static str {
    match command {
        Command::Zero(_) => "-Z",
        Command::Save => "-S",
        Command::Restore => "-R",
        Command::List(_) => "-L",
        _ => "this command",
    }
}

/// A line's words: blanks separate them, `#` outside quotes starts a comment, and single or
/// double quotes group (a backslash escapes the next character inside double quotes and
/// outside quotes).
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("a single quote is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err("a double quote is not closed".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("a double quote is not closed".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_ipvsadm_and_quote_like_a_shell() {
        assert_eq!(
            words("-A -t 192.0.2.10:80 -s wrr   # web").unwrap(),
            ["-A", "-t", "192.0.2.10:80", "-s", "wrr"]
        );
        assert_eq!(
            words(r#"--check '{type: http, path: "/a b"}' --x "it\"s""#).unwrap(),
            ["--check", r#"{type: http, path: "/a b"}"#, "--x", "it\"s"]
        );
        assert_eq!(words("'it'\\''s'").unwrap(), ["it's"]);
        assert!(words("# only a comment").unwrap().is_empty());
        assert!(words("--check '{type: tcp}").is_err());
    }

    #[test]
    fn a_bad_line_is_named_and_nothing_is_returned() {
        let text = "-A -t 192.0.2.10:80 -s rr\n\n-a -t 192.0.2.10:80 -r 192.0.2.300 -g\n";
        let error = edits(text).unwrap_err().to_string();
        assert!(
            error.starts_with("line 3: -r 192.0.2.300: illegal real server"),
            "{error}"
        );
        let error = edits("-L -n\n").unwrap_err().to_string();
        assert_eq!(
            error,
            "line 1: -L is not a rule (-R takes -A -E -D -a -e -d -C --set)"
        );
        let error = edits("-A -t 192.0.2.10:80 --bogus\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("line 1: unexpected argument '--bogus'"),
            "{error}"
        );
    }

    #[test]
    fn ipvsadm_save_output_reads() {
        // As ipvsadm-save writes it (and with a leading `ipvsadm`, as some scripts keep).
        let text = "\
-A -t 192.0.2.10:80 -s wrr -p 300 -M 255.255.255.0
-a -t 192.0.2.10:80 -r 192.0.2.11:80 -g -w 3
ipvsadm -a -t 192.0.2.10:80 -r 192.0.2.12:80 -g -w 1 -x 0 -y 0
-A -u [2001:db8::10]:53 -s rr
-a -u [2001:db8::10]:53 -r [2001:db8::11]:5353 -m -w 1
";
        let edits = edits(text).unwrap();
        assert_eq!(edits.len(), 5);
        let (_, Edit::AddService { service }) = &edits[0] else {
            panic!("{:?}", edits[0]);
        };
        assert_eq!(service["persistence"], "300s");
        assert_eq!(service["persistence_netmask"], "255.255.255.0");
        let (line, Edit::AddReal { real, .. }) = &edits[4] else {
            panic!("{:?}", edits[4]);
        };
        assert_eq!(*line, 5);
        assert_eq!(real["address"], "2001:db8::11");
        assert_eq!(real["port"], 5353);
        assert_eq!(real["forward"], "nat");
    }
}

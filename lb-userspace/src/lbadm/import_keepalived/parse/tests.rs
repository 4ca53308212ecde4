use super::*;

/// The words of a line that holds no brace.
fn words_of(line: &str) -> Vec<String> {
    let (text, _) = decomment(line);
    let (before, brace, rest) = split_at_brace(&text);
    assert!(brace.is_none() && rest.is_none(), "{line:?} has a brace");
    words(before).0
}

#[test]
fn comments_quotes_and_escapes() {
    assert_eq!(words_of("  weight 2 # two"), ["weight", "2"]);
    assert_eq!(words_of("weight 2! two"), ["weight", "2"]);
    assert_eq!(
        words_of(r#"notify_master "/bin/notify master # !" x"#),
        ["notify_master", "/bin/notify master # !", "x"]
    );
    assert_eq!(words_of(r"path /a\#b"), ["path", "/a#b"]);
    assert_eq!(words_of(r#"a"b c""#), ["a", "b c"]);
    assert_eq!(words_of(r#"a "" b"#), ["a", "", "b"]);
    // keepalived's blanks: a carriage return or form feed inside a line splits words.
    assert_eq!(
        words_of("router_id a\rb\x0cc"),
        ["router_id", "a", "b", "c"]
    );
    assert_eq!(decomment("# only a comment").0, "");
    assert_eq!(
        decomment(r#"path "/open # x"#),
        (r#"path "/open # x"#.to_owned(), true)
    );
    assert_eq!(
        words(r#"path "/open # x"#),
        (vec!["path".to_owned()], Some(r#""/open # x"#))
    );
}

#[test]
fn the_first_brace_ends_the_line() {
    let split = |line| {
        let (before, brace, rest) = split_at_brace(line);
        let brace = brace.map(|item| format!("{item:?}"));
        (before, brace, rest)
    };
    assert_eq!(
        split("real_server 10.0.0.1 80 {weight 2}"),
        ("real_server 10.0.0.1 80", None, Some("{weight 2}"))
    );
    assert_eq!(
        split("{weight 2}"),
        ("", Some("Open".to_owned()), Some("weight 2}"))
    );
    assert_eq!(split("}"), ("", Some("Close".to_owned()), None));
    // Inside quotes a brace is a character, and an unterminated quote hides the rest.
    assert_eq!(
        split(r#"path "/{x}" {"#),
        (r#"path "/{x}""#, None, Some("{"))
    );
    assert_eq!(split(r#"path "/{x {"#), (r#"path "/{x {"#, None, None));
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

/// `text` as keepalived.conf (no includes): the tree, and what is listed as
/// `(line, directive)`.
fn tree(text: &str) -> (Vec<Directive>, Vec<(usize, String)>) {
    let mut reader = Reader::default();
    reader.lines(Rc::from(Path::new("k.conf")), text).unwrap();
    let (directives, mut skipped) = grammar::build(reader.items);
    skipped.extend(reader.skipped);
    skipped.sort_by_key(|entry| entry.order);
    let listed = skipped
        .into_iter()
        .map(|entry| (entry.unconverted.line, entry.unconverted.directive))
        .collect();
    (directives, listed)
}

/// A tree as `keyword args { … }`, to compare shapes.
fn shape(directives: &[Directive]) -> String {
    let parts: Vec<String> = directives
        .iter()
        .map(|directive| {
            let mut text = std::iter::once(directive.keyword.as_str())
                .chain(directive.args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            if let Some(block) = &directive.block {
                text.push_str(&format!(" {{ {} }}", shape(block)));
            }
            text
        })
        .collect();
    parts.join("; ")
}

fn listed(entries: &[(usize, &str)]) -> Vec<(usize, String)> {
    entries
        .iter()
        .map(|(line, directive)| (*line, (*directive).to_owned()))
        .collect()
}

#[test]
fn blocks_nest_and_may_open_on_the_next_line() {
    let (directives, notes) = tree(
        "virtual_server 192.0.2.1 80\n{\n  real_server 10.0.0.1 80 { TCP_CHECK { } }\n}\nx 1\n",
    );
    assert_eq!(
        shape(&directives),
        "virtual_server 192.0.2.1 80 { real_server 10.0.0.1 80 { TCP_CHECK {  } } }; x 1"
    );
    assert_eq!(notes, []);
    let real = &directives[0].children()[0];
    assert_eq!(real.at.line, 3);
    assert_eq!(real.children()[0].block, Some(vec![]));
    assert_eq!(directives[1].block, None);
}

#[test]
fn a_brace_where_keepalived_expects_none_is_ignored_as_keepalived_ignores_it() {
    // `weight` opens no block: keepalived reads inhibit_on_failure in the real, the `}`
    // meant for weight closes the real, the real's closes the virtual server, and the
    // virtual server's closes nothing.
    let (directives, notes) = tree(
        "virtual_server 192.0.2.1 80 {
    real_server 10.0.0.1 80 {
        weight 2 {
            inhibit_on_failure
        }
        alpha
    }
}
",
    );
    assert_eq!(
        shape(&directives),
        "virtual_server 192.0.2.1 80 { real_server 10.0.0.1 80 { weight 2; inhibit_on_failure \
         }; alpha }"
    );
    assert_eq!(notes, listed(&[(3, "{"), (8, "}")]));
}

#[test]
fn unbalanced_braces_are_listed_and_reading_goes_on() {
    let (directives, notes) = tree("global_defs {\n b\n}\n}\n{\nc\nvirtual_server 192.0.2.1 {\n");
    assert_eq!(
        shape(&directives),
        "global_defs { b }; c; virtual_server 192.0.2.1 {  }"
    );
    assert_eq!(notes, listed(&[(4, "}"), (5, "{"), (7, "virtual_server")]));
}

#[test]
fn a_block_keyword_without_its_brace_opens_its_block_all_the_same() {
    let (directives, notes) = tree("virtual_server 192.0.2.1 80\nprotocol TCP\n}\nx\n");
    assert_eq!(
        shape(&directives),
        "virtual_server 192.0.2.1 80 { protocol TCP }; x"
    );
    assert_eq!(notes, listed(&[(1, "virtual_server")]));
}

#[test]
fn a_value_blocks_brace_is_a_value_and_its_first_close_ends_it() {
    let (directives, notes) =
        tree("vrrp_instance V {\n virtual_ipaddress {\n  192.0.2.1 {\n }\n}\n");
    assert_eq!(
        shape(&directives),
        "vrrp_instance V { virtual_ipaddress { 192.0.2.1; { } }"
    );
    assert_eq!(notes, []);
}

#[test]
fn an_unterminated_quote_drops_the_rest_of_its_line() {
    let (directives, notes) = tree("global_defs {\n router_id \"lb1 { x\n}\n");
    assert_eq!(shape(&directives), "global_defs { router_id }");
    assert_eq!(notes, listed(&[(2, "router_id")]));
}

#[test]
fn lines_keepalived_ignores_are_listed() {
    let long = format!("router_id {}", "x".repeat(1100));
    let (directives, notes) = tree(&format!("a\0b\n{long}\nc\n"));
    assert_eq!(shape(&directives), "c");
    assert_eq!(notes, listed(&[(1, "a"), (2, "router_id")]));
}

#[test]
fn nesting_is_bounded_by_keepalived_s_blocks() {
    // Each `{` opens no block, so the tree stays flat: no deep recursion when it is dropped.
    let text = "a {\n".repeat(100_000);
    let (directives, notes) = tree(&text);
    assert_eq!(directives.len(), 100_000);
    assert!(directives.iter().all(|directive| directive.block.is_none()));
    assert_eq!(notes.len(), 100_000);
}

#[test]
fn definitions_are_expanded_where_they_are_used() {
    let (directives, notes) = tree(
        "$VS=192.0.2.10 80
$CHECK=TCP_CHECK { connect_port 8080 }
$LINES=a \\
  b
virtual_server $VS {
    real_server 10.0.0.11 80 { $CHECK
    }
    $LINES
}
",
    );
    assert_eq!(
        shape(&directives),
        "virtual_server 192.0.2.10 80 { real_server 10.0.0.11 80 { TCP_CHECK { connect_port \
         8080 } }; $LINES }"
    );
    assert_eq!(notes, listed(&[(3, "$LINES"), (8, "$LINES")]));
}

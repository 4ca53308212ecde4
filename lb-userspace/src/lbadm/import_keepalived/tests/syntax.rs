//! keepalived's syntax as keepalived reads it: what follows a brace is a line of its own,
//! braces and quotes it reports and carries on past are listed, `$NAME` is expanded.

use super::*;

#[test]
fn what_follows_a_brace_is_a_line_of_its_own_an_include_too() {
    let scratch = Scratch::new();
    let top = scratch.write(
        "keepalived.conf",
        "virtual_server 192.0.2.10 80 { include reals.conf\n}\n",
    );
    scratch.write(
        "reals.conf",
        "protocol TCP\nreal_server 10.0.0.11 80 { weight 2 }\n",
    );
    let converted = convert_file(&top, &on_eth0());
    let service = &converted.config.services[0];
    assert_eq!(service.protocol, crate::config::Protocol::Tcp);
    assert_eq!(service.reals[0].weight, 2);
    assert_eq!(converted.listed, []);
}

#[test]
fn braces_keepalived_reports_and_reads_past_are_listed_where_written() {
    let scratch = Scratch::new();
    // Blocks may span files: the reals close the virtual server that includes them, and
    // one brace more.
    let top = scratch.write(
        "keepalived.conf",
        "virtual_server 192.0.2.10 80 {\n    protocol TCP\ninclude reals.inc\n\
         virtual_server 192.0.2.20 80 {\n    protocol TCP\n    real_server 10.0.0.12 80 {\n    }\n",
    );
    scratch.write("reals.inc", "real_server 10.0.0.11 80 {\n}\n}\n}\n");
    let converted = convert_file(&top, &on_eth0());
    assert_eq!(
        converted.listed,
        [
            ("reals.inc".to_owned(), 4, "}".to_owned()),
            ("keepalived.conf".to_owned(), 4, "virtual_server".to_owned()),
        ]
    );
    let never_closed = &converted.unconverted[1];
    assert!(
        never_closed
            .reason
            .contains("not closed; keepalived ends it at the end"),
        "{never_closed}"
    );
    // Both services are converted as keepalived has them.
    assert_eq!(converted.config.services.len(), 2);
}
#[test]
fn a_brace_where_keepalived_expects_none_is_ignored_and_listed() {
    let converted = convert(
        "virtual_server 192.0.2.10 80 {
    protocol TCP
    lvs_method DR
    real_server 10.0.0.11 80 {
        weight 2 {
            inhibit_on_failure
        }
        TCP_CHECK {
        }
    }
}
",
    );
    // keepalived reads inhibit_on_failure in the real, whose block the `}` meant for
    // weight's closes: the TCP_CHECK is then the virtual server's, which has none, so its
    // `{` is ignored too, and its `}` closes the virtual server.
    let service = &converted.config.services[0];
    assert_eq!(service.reals[0].weight, 2);
    assert_eq!(service.health_check, None);
    assert_eq!(
        lines(&converted),
        [
            (5, "{"),
            (6, "inhibit_on_failure"),
            (8, "TCP_CHECK"),
            (8, "{"),
            (10, "}"),
            (11, "}")
        ]
    );
}

#[test]
fn an_unterminated_quote_is_listed_and_the_words_before_it_read() {
    let converted = convert(
        "vrrp_instance VI_1 {\n    interface eth1\n    notify_master \"/bin/notify master\n}\n",
    );
    // Listed twice: for the quote, and as a hook without a command.
    assert_eq!(
        lines(&converted),
        [
            (1, "vrrp_instance"),
            (3, "notify_master"),
            (3, "notify_master")
        ]
    );
    assert!(reason(&converted, 3, "notify_master").contains("unterminated quote"));
}

#[test]
fn definitions_are_expanded_and_what_only_keepalived_knows_is_listed() {
    let converted = convert(
        "$HOST=lb1
$VIP=192.0.2.10
global_defs {
    router_id $HOST
}
virtual_server ${VIP} 80 {
    protocol TCP
    virtualhost $_INSTANCE
    real_server 10.0.0.11 80 {
    }
}
",
    );
    assert_eq!(converted.config.instance, "lb1");
    assert_eq!(
        converted.config.services[0].vip,
        "192.0.2.10".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(lines(&converted), [(8, "virtualhost")]);
    assert!(
        reason(&converted, 8, "virtualhost").contains("$_INSTANCE: keepalived's instance name")
    );
}

#[test]
fn control_characters_of_the_input_never_break_a_line_of_the_yaml_or_of_stderr() {
    let scratch = Scratch::new();
    let top = scratch.write(
        "keepalived.conf",
        "global_defs {\n    router_id \"lb1\rinstance: evil\"\n}\n\
         vrrp_instance \"VI\r  - name: evil\u{85}\" {\n    interface eth0\n    \
         virtual_router_id 1\n    virtual_ipaddress {\n        192.0.2.1\n    }\n    \
         notify_master \"/bin/x\rb\"\n}\n\
         virtual_server 192.0.2.10 80 { \"\u{1b}[31m\" }\ninclude conf\u{1b}.d/*.conf\n",
    );
    scratch.write("conf\u{1b}.d/a\u{7}.conf", "x\u{85}y\n");
    let converted = convert_file(&top, &on_eth0());
    assert!(
        !converted
            .yaml
            .contains(|c: char| c.is_control() && c != '\n'),
        "{:?}",
        converted.yaml
    );
    assert!(
        converted
            .yaml
            .contains(r"# instance: keepalived's router_id lb1\rinstance: evil")
    );
    assert_eq!(converted.config.instance, "lb1-instance--evil");
    for entry in &converted.unconverted {
        let line = entry.to_string();
        assert!(!line.contains(|c: char| c.is_control()), "{line:?}");
    }
    // The vrrp instance gets a valid name, its comment the name as written, escaped; a
    // command with a control character is listed, not run.
    assert_eq!(converted.config.vrrp[0].name, "VI-----name--evil-");
    assert!(
        converted
            .yaml
            .contains(r"# keepalived.conf:4: vrrp_instance VI\r  - name: evil\u{85}, named"),
        "{}",
        converted.yaml
    );
    assert_eq!(converted.config.vrrp[0].hooks.on_master, None);
    assert_eq!(
        reason(&converted, 10, "notify_master"),
        "a control character in the command"
    );
}

#[test]
fn an_include_whose_braces_make_too_many_patterns_is_listed() {
    // 2^40 patterns: glob(3) would try each.
    let converted = convert(&format!("include conf.d/{}.conf\n", "{a,b}".repeat(40)));
    assert_eq!(lines(&converted), [(1, "include")]);
    assert!(reason(&converted, 1, "include").contains("more than 1024 patterns"));
}

#[test]
fn text_reads_as_its_file_would_its_includes_listed_not_read() {
    let scratch = Scratch::new();
    let own = "virtual_server 192.0.2.10 80 {\n    protocol TCP\n    \
               real_server 192.0.2.11 80 { weight 2 }\n}\n";
    let included = "virtual_server 192.0.2.20 80 {\n    protocol TCP\n    \
                    real_server 192.0.2.21 80 { weight 1 }\n}\n";
    scratch.write("conf.d/web.conf", included);
    let text = format!("{own}include conf.d/*.conf\n");
    let path = scratch.write("keepalived.conf", &text);

    let from_text = import_text(&text, &path, &on_eth0())
        .unwrap_or_else(|error| panic!("import_text failed: {error}"));
    let from_file = convert_file(&path, &on_eth0());
    assert!(from_file.yaml.contains("192.0.2.20"), "{}", from_file.yaml);
    assert!(!from_text.yaml.contains("192.0.2.20"), "{}", from_text.yaml);
    let listed: Vec<_> = from_text
        .unconverted
        .iter()
        .map(|entry| (entry.line, entry.directive.as_str(), entry.reason.as_str()))
        .collect();
    assert_eq!(
        listed,
        [(
            5,
            "include",
            "conf.d/*.conf: not read (the config was given as text, without its files)"
        )]
    );

    // Without the include, text and file give the same YAML and the same list.
    let path = scratch.write("own.conf", own);
    let from_text = import_text(own, &path, &on_eth0()).unwrap();
    let from_file = convert_file(&path, &on_eth0());
    assert_eq!(from_text.yaml, from_file.yaml);
    assert_eq!(from_text.unconverted, from_file.unconverted);
}

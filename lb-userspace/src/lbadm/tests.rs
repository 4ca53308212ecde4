//! Command lines as ipvsadm users type them: combined short flags, long forms, IPv6, optional
//! values, and ipvsadm's refusals with its words and exit status.

use clap::Parser as _;

use super::{
    Cli, Command, Failure,
    command::{ListKind, command},
};
use crate::config::{Protocol, edit::Edit};

fn parse(line: &str) -> Result<Command, Failure> {
    let words = std::iter::once("lbadm").chain(line.split_whitespace());
    let cli = Cli::try_parse_from(words).map_err(|error| Failure::Usage(error.to_string()))?;
    command(&cli.ipvsadm)
}

#[track_caller]
fn refused(line: &str) -> String {
    match parse(line) {
        Err(failure) => {
            assert_eq!(failure.exit_code(), 2, "{line}: {failure}");
            failure.to_string()
        }
        Ok(command) => panic!("{line} parsed as {command:?}"),
    }
}

#[test]
fn combined_short_flags_and_long_forms_list() {
    for line in ["-Ln", "-L -n", "-l -n", "--list --numeric", "-nL", ""] {
        let Ok(Command::List(options)) = parse(line) else {
            panic!("{line}: {:?}", parse(line));
        };
        assert_eq!(options.kind, ListKind::Services, "{line}");
        assert!(options.sort);
    }
    let Ok(Command::List(options)) = parse("-Lnc") else {
        panic!()
    };
    assert_eq!(options.kind, ListKind::Connections);
    let Ok(Command::List(options)) = parse("-Ln --stats --exact -t 192.0.2.10:80") else {
        panic!()
    };
    assert_eq!((options.kind, options.exact), (ListKind::Stats, true));
    assert_eq!(options.service.unwrap().port, 80);
    let Ok(Command::List(options)) = parse("-LnX --rate --nosort") else {
        panic!()
    };
    assert_eq!(
        (options.kind, options.exact, options.sort),
        (ListKind::Rate, true, false)
    );
    let Ok(Command::List(options)) = parse("-L --timeout") else {
        panic!()
    };
    assert_eq!(options.kind, ListKind::Timeouts);
}

#[test]
fn services_and_reals_in_every_spelling() {
    let Ok(Command::AddService(rule)) = parse("-A -t 192.0.2.10:80 -s rr -p") else {
        panic!()
    };
    assert_eq!(
        rule.persistent_s,
        Some(300),
        "ipvsadm's default persistence"
    );
    let Ok(Command::AddService(rule)) =
        parse("--add-service --udp-service [2001:db8::10]:53 --scheduler mh --persistent 60 -M 64")
    else {
        panic!()
    };
    assert_eq!(rule.service.protocol, Protocol::Udp);
    assert_eq!(rule.service.vip.to_string(), "2001:db8::10");
    assert_eq!(
        (rule.persistent_s, rule.netmask.as_deref()),
        (Some(60), Some("64"))
    );
    let Ok(Command::AddService(rule)) = parse("-At 192.0.2.10:80 -s wrr") else {
        panic!()
    };
    assert_eq!(rule.scheduler.as_deref(), Some("wrr"));

    let Ok(Command::AddReal(rule)) = parse("-a -t 192.0.2.10:80 -r 192.0.2.11:8080 -m -w 3") else {
        panic!()
    };
    assert_eq!(
        (rule.port(), rule.forward, rule.weight),
        (8080, Some("nat"), Some(3))
    );
    // Direct routing keeps the service's port, as ipvsadm quietly makes it.
    let Ok(Command::AddReal(rule)) = parse("-a -t 192.0.2.10:80 -r 192.0.2.11:8080 -g") else {
        panic!()
    };
    assert_eq!(rule.port(), 80);
    let Ok(Command::AddReal(rule)) = parse(
        "--add-server --tcp-service 192.0.2.10:80 --real-server [2001:db8::11]:80 --forward fullnat",
    ) else {
        panic!()
    };
    assert_eq!(rule.forward, Some("fullnat"));
    let Ok(Command::DeleteReal(rule)) = parse("-d -t 192.0.2.10:80 -r 192.0.2.11") else {
        panic!()
    };
    assert_eq!(rule.port(), 80, "no port: the service's");
    assert!(matches!(
        parse("-D -t 192.0.2.10:80"),
        Ok(Command::DeleteService(_))
    ));
    assert!(matches!(parse("-C"), Ok(Command::Clear)));
    assert!(matches!(parse("--clear"), Ok(Command::Clear)));
    assert!(matches!(parse("-Z"), Ok(Command::Zero(None))));
    assert!(matches!(
        parse("-Z -u 192.0.2.10:53"),
        Ok(Command::Zero(Some(_)))
    ));
    assert!(matches!(parse("-S -n"), Ok(Command::Save)));
    assert!(matches!(parse("--restore"), Ok(Command::Restore)));
    assert!(matches!(
        parse("--set 900 0 300"),
        Ok(Command::SetTimeouts([Some(900), None, Some(300)]))
    ));
}

#[test]
fn edits_say_what_ipvsadm_would_set() {
    // -E without -s or -p: ipvsadm's wlc, and persistence gone.
    let Ok(Command::EditService(rule)) = parse("-E -t 192.0.2.10:80") else {
        panic!()
    };
    let Edit::EditService { set, .. } = super::edit_service::edit(&rule).unwrap() else {
        panic!()
    };
    assert_eq!(set["scheduler"], "wlc");
    assert!(set["persistence"].is_null() && set["persistence_netmask"].is_null());
    assert!(
        !set.contains_key("health_check"),
        "lbd's options change only when given"
    );
    // -e without -w: weight 1, as ipvsadm's.
    let Ok(Command::EditReal(rule)) = parse("-e -t 192.0.2.10:80 -r 192.0.2.11") else {
        panic!()
    };
    let Edit::EditReal { set, port, .. } = super::edit_real::edit(&rule) else {
        panic!()
    };
    assert_eq!((set["weight"].as_u64(), port), (Some(1), 80));
    // Our options, as config keys.
    let Ok(Command::AddService(rule)) = parse(
        "-A -t 192.0.2.10:80 -s mh --forward fullnat --snat-pool 192.0.2.3,192.0.2.4 \
         --on-failure inhibit --sorry-server 192.0.2.99:80 --mh-table-size 251",
    ) else {
        panic!()
    };
    let Edit::AddService { service } = super::add_service::edit(&rule).unwrap() else {
        panic!()
    };
    assert_eq!(
        service["snat_pool"],
        serde_json::json!(["192.0.2.3", "192.0.2.4"])
    );
    assert_eq!(service["mh_table_size"], 251);
    assert_eq!(service["forward"], "fullnat");
    let words = [
        "lbadm",
        "-A",
        "-t",
        "192.0.2.10:80",
        "--check",
        "{type: http, path: /h}",
    ];
    let cli = Cli::try_parse_from(words).unwrap();
    let Ok(Command::AddService(rule)) = command(&cli.ipvsadm) else {
        panic!()
    };
    let Edit::AddService { service } = super::add_service::edit(&rule).unwrap() else {
        panic!()
    };
    assert_eq!(
        service["health_check"],
        serde_json::json!({"type": "http", "path": "/h"})
    );
}

#[test]
fn refusals_use_ipvsadms_words() {
    assert_eq!(refused("-A -L"), "multiple commands specified");
    assert_eq!(
        refused("-A -s rr"),
        "You need to supply the 'service-address' option for the 'add-service' command"
    );
    assert_eq!(
        refused("-A -t 192.0.2.10:80 -w 2"),
        "Illegal 'weight' option with the 'add-service' command"
    );
    assert_eq!(
        refused("-a -t 192.0.2.10:80"),
        "You need to supply the 'real-server' option for the 'add-server' command"
    );
    assert_eq!(
        refused("-L -c -t 192.0.2.10:80"),
        "The option 'service-address' conflicts with the 'connection' option in the 'list' command"
    );
    assert_eq!(
        refused("-L -c --stats"),
        "options conflicts in the list command"
    );
    // Port 0 is every port of the VIP, persistent or not (IPVS needs persistence there only
    // because it has fwmark services).
    assert!(matches!(
        parse("-A -t 192.0.2.10 -s rr"),
        Ok(Command::AddService(_))
    ));
    assert!(
        refused("-A -t 192.0.2.300:80").starts_with("-t 192.0.2.300:80: illegal virtual server")
    );
    assert!(refused("-a -t 192.0.2.10:80 -r 192.0.2.11 -w 65536").contains("illegal weight"));
    assert!(refused("-a -t 192.0.2.10:80 -r 192.0.2.11 -g -m").contains("forwarding-method"));
    assert!(refused("-A -t 192.0.2.10:80 -p 0").contains("invalid timeout value"));
    assert!(refused("-a -t 192.0.2.10:80 -r 192.0.2.11 -x 5").contains("thresholds"));
    assert!(refused("-A -f 1").contains("firewall-mark"));
    assert!(refused("--start-daemon master").contains("sync"));
    assert!(refused("-Ln --rate --watch -o json").contains("--watch redraws a table"));
    // ipvsadm exits 255 when it finds no command (tryhelp_exit(-1)).
    let Err(failure) = parse("-t 192.0.2.10:80") else {
        panic!()
    };
    assert_eq!(failure.exit_code(), 255);
    assert!(
        failure.to_string().contains("no command specified"),
        "{failure}"
    );
    assert!(refused("--set 1 2 x").contains("invalid timeout value"));
}

#[test]
fn ports_by_name_netmasks_and_listing_priorities_as_ipvsadm() {
    // ipvsadm -S without -n writes service names.
    let Ok(Command::AddReal(rule)) = parse("-a -t 192.0.2.10:http -r 192.0.2.11:https -m") else {
        panic!(
            "{:?}",
            parse("-a -t 192.0.2.10:http -r 192.0.2.11:https -m")
        );
    };
    assert_eq!((rule.service.port, rule.port()), (80, 443));
    assert!(refused("-A -t 192.0.2.10:nosuchservice").contains("illegal virtual server"));
    // -M without -p means nothing (ipvsadm accepts it); a prefix length on IPv4 is one.
    let Ok(Command::AddService(rule)) = parse("-A -t 192.0.2.10:80 -M 255.255.255.0") else {
        panic!()
    };
    let Edit::AddService { service } = super::add_service::edit(&rule).unwrap() else {
        panic!()
    };
    assert!(!service.contains_key("persistence_netmask"), "{service:?}");
    let Ok(Command::AddService(rule)) = parse("-A -t 192.0.2.10:80 -p 60 -M 24") else {
        panic!()
    };
    let Edit::AddService { service } = super::add_service::edit(&rule).unwrap() else {
        panic!()
    };
    assert_eq!(service["persistence_netmask"], 24);
    let Ok(Command::AddService(rule)) = parse("-A -t [2001:db8::1]:80 -p 60 -M 0") else {
        panic!()
    };
    assert!(
        super::add_service::edit(&rule).is_err(),
        "ipvsadm takes 1..128"
    );
    // --stats and --rate together: --stats, as ipvsadm prints.
    let Ok(Command::List(options)) = parse("-Ln --stats --rate") else {
        panic!()
    };
    assert_eq!(options.kind, ListKind::Stats);
}

#[test]
fn a_restore_failure_names_its_line() {
    let lines = [3, 4, 9];
    assert_eq!(
        super::name_the_line(
            "change 2 of 3 (add a service): Service already exists: TCP 192.0.2.10:80; nothing changed",
            &lines
        ),
        "line 4 (add a service): Service already exists: TCP 192.0.2.10:80; nothing changed"
    );
    assert_eq!(
        super::name_the_line("services[0].scheduler: bad", &lines),
        "services[0].scheduler: bad"
    );
}

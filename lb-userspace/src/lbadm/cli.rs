//! lbadm's command line, as clap reads it: ipvsadm's commands and options (short and long
//! forms, combined short flags such as `-Ln`), our own options for what ipvsadm cannot say
//! (`--forward fullnat`, `--check`, …), and word verbs ipvsadm does not have (`status`, `top`,
//! `dump`, `import-keepalived`, `completions`). Which options go with which command is
//! checked afterwards, in `command.rs`, with ipvsadm's table and words.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::config::DEFAULT_ADMIN_SOCKET;

#[derive(Debug, Parser)]
#[command(
    name = "lbadm",
    version,
    about = "ipvsadm-like control of a running lbd",
    long_about = "ipvsadm-like control of a running lbd.\n\n\
        Commands, options and output follow ipvsadm: `lbadm -A -t 192.0.2.10:80 -s wrr`, \
        `lbadm -a -t 192.0.2.10:80 -r 192.0.2.11 -g -w 2`, `lbadm -Ln --stats`, `lbadm -S`. \
        Changes apply at once to the running data plane and are runtime state, like \
        ipvsadm's, until saved (`lbadm -S`) or replaced by the config file (a reload).",
    disable_version_flag = true,
    args_conflicts_with_subcommands = true,
    after_help = "Exit status: 0 done; 1 a listed service does not exist; 2 the command line \
        is wrong or lbd cannot be reached; 255 lbd refused the change (nothing changed)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub verb: Option<Verb>,
    #[command(flatten)]
    pub ipvsadm: IpvsadmArgs,
    /// lbd's admin socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_ADMIN_SOCKET, global = true)]
    pub socket: PathBuf,
    /// Print the version (ipvsadm -v).
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,
}

/// ipvsadm's commands and options, with ours beside them.
#[derive(Debug, Default, Args)]
pub struct IpvsadmArgs {
    // ---- Commands (exactly one) ----
    /// Add a virtual service (ipvsadm -A).
    #[arg(short = 'A', long = "add-service", help_heading = "Commands")]
    pub add_service: bool,
    /// Edit a virtual service (ipvsadm -E).
    #[arg(short = 'E', long = "edit-service", help_heading = "Commands")]
    pub edit_service: bool,
    /// Delete a virtual service (ipvsadm -D).
    #[arg(short = 'D', long = "delete-service", help_heading = "Commands")]
    pub delete_service: bool,
    /// Clear the whole table (ipvsadm -C).
    #[arg(short = 'C', long = "clear", help_heading = "Commands")]
    pub clear: bool,
    /// Restore rules from stdin, all or nothing (ipvsadm -R).
    #[arg(short = 'R', long = "restore", help_heading = "Commands")]
    pub restore: bool,
    /// Save rules to stdout, in the form -R reads (ipvsadm -S).
    #[arg(short = 'S', long = "save", help_heading = "Commands")]
    pub save: bool,
    /// Add a real server (ipvsadm -a).
    #[arg(short = 'a', long = "add-server", help_heading = "Commands")]
    pub add_server: bool,
    /// Edit a real server (ipvsadm -e).
    #[arg(short = 'e', long = "edit-server", help_heading = "Commands")]
    pub edit_server: bool,
    /// Delete a real server (ipvsadm -d).
    #[arg(short = 'd', long = "delete-server", help_heading = "Commands")]
    pub delete_server: bool,
    /// List the table (ipvsadm -L, -l).
    #[arg(
        short = 'L',
        long = "list",
        short_alias = 'l',
        help_heading = "Commands"
    )]
    pub list: bool,
    /// Zero counters of a service or all (ipvsadm -Z).
    #[arg(short = 'Z', long = "zero", help_heading = "Commands")]
    pub zero: bool,
    /// Set the tcp, tcpfin and udp timeouts in seconds; 0 keeps one (ipvsadm --set).
    #[arg(long = "set", num_args = 3, value_names = ["TCP", "TCPFIN", "UDP"], help_heading = "Commands")]
    pub set: Option<Vec<String>>,
    /// Start a connection sync daemon (refused: sync is configured in lbd's config).
    #[arg(long = "start-daemon", value_name = "STATE", hide = true)]
    pub start_daemon: Option<String>,
    /// Stop a connection sync daemon (refused: sync is configured in lbd's config).
    #[arg(long = "stop-daemon", value_name = "STATE", hide = true)]
    pub stop_daemon: Option<String>,

    // ---- ipvsadm's options ----
    /// TCP service VIP:PORT ([VIP]:PORT for IPv6).
    #[arg(short = 't', long = "tcp-service", value_name = "VIP:PORT")]
    pub tcp_service: Option<String>,
    /// UDP service VIP:PORT ([VIP]:PORT for IPv6).
    #[arg(short = 'u', long = "udp-service", value_name = "VIP:PORT")]
    pub udp_service: Option<String>,
    /// Firewall-mark service (refused: lbd has no fwmark services).
    #[arg(short = 'f', long = "fwmark-service", value_name = "MARK")]
    pub fwmark_service: Option<String>,
    /// Scheduler: rr, wrr, lc, wlc, sh, mh (default wlc, as ipvsadm's).
    #[arg(short = 's', long = "scheduler", value_name = "SCHEDULER")]
    pub scheduler: Option<String>,
    /// Persistent service, for SECONDS (default 300).
    #[arg(short = 'p', long = "persistent", value_name = "SECONDS", num_args = 0..=1, default_missing_value = "300")]
    pub persistent: Option<String>,
    /// Persistence granularity: a netmask (IPv4) or prefix length (IPv6).
    #[arg(short = 'M', long = "netmask", value_name = "NETMASK")]
    pub netmask: Option<String>,
    /// Real server RIP[:PORT] ([RIP]:PORT for IPv6).
    #[arg(short = 'r', long = "real-server", value_name = "RIP[:PORT]")]
    pub real_server: Option<String>,
    /// Direct routing (LVS-DR): the real keeps the service's port.
    #[arg(short = 'g', long = "gatewaying")]
    pub gatewaying: bool,
    /// Tunnelling (LVS-TUN, IPIP or GUE as the service's --tunnel says).
    #[arg(short = 'i', long = "ipip")]
    pub ipip: bool,
    /// NAT (LVS-NAT, masquerading).
    #[arg(short = 'm', long = "masquerading")]
    pub masquerading: bool,
    /// Weight of the real server, 0..65535 (0 drains it; default 1).
    #[arg(short = 'w', long = "weight", value_name = "WEIGHT")]
    pub weight: Option<String>,
    /// Upper connection threshold (only 0, none, is accepted).
    #[arg(short = 'x', long = "u-threshold", value_name = "N")]
    pub u_threshold: Option<String>,
    /// Lower connection threshold (only 0, none, is accepted).
    #[arg(short = 'y', long = "l-threshold", value_name = "N")]
    pub l_threshold: Option<String>,
    /// Numeric output (addresses are always numeric).
    #[arg(short = 'n', long = "numeric")]
    pub numeric: bool,
    /// With -L: the connection (flow) table.
    #[arg(short = 'c', long = "connection")]
    pub connection: bool,
    /// With -L: the tcp, tcpfin and udp timeouts.
    #[arg(long = "timeout")]
    pub timeout: bool,
    /// With -L: IPVS's sync daemons (none run: lbd's connection sync is its `sync` key).
    #[arg(long = "daemon")]
    pub daemon: bool,
    /// With -L: connections, packets and bytes.
    #[arg(long = "stats")]
    pub stats: bool,
    /// With -L: connections, packets and bytes per second.
    #[arg(long = "rate")]
    pub rate: bool,
    /// With -L: the connection thresholds.
    #[arg(long = "thresholds")]
    pub thresholds: bool,
    /// With -L: persistent connections (refused: not counted).
    #[arg(long = "persistent-conn")]
    pub persistent_conn: bool,
    /// With -L: keep the config's order instead of sorting.
    #[arg(long = "nosort")]
    pub nosort: bool,
    /// With -L: sort (the default; kept for ipvsadm scripts).
    #[arg(long = "sort")]
    pub sort: bool,
    /// With -L: exact numbers, not abbreviated with K, M, G, T.
    #[arg(short = 'X', long = "exact")]
    pub exact: bool,
    /// With -f: an IPv6 fwmark service (refused with -f).
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,
    /// Persistence engine (refused: none is supported).
    #[arg(long = "pe", value_name = "ENGINE")]
    pub pe: Option<String>,
    /// One-packet scheduling (refused: lbd schedules flows).
    #[arg(long = "ops")]
    pub ops: bool,
    /// Sync daemon's interface (refused).
    #[arg(long = "mcast-interface", value_name = "IFACE", hide = true)]
    pub mcast_interface: Option<String>,
    /// Sync id (refused).
    #[arg(long = "syncid", value_name = "ID", hide = true)]
    pub syncid: Option<String>,

    // ---- Ours ----
    /// Listing format: table (ipvsadm's layout) or json.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table, help_heading = "lbd's options")]
    pub output: Output,
    /// With -L --rate (or --stats): redraw every --interval seconds until interrupted.
    #[arg(long = "watch", help_heading = "lbd's options")]
    pub watch: bool,
    /// With --watch: seconds between redraws.
    #[arg(
        long = "interval",
        value_name = "SECONDS",
        default_value_t = 2,
        help_heading = "lbd's options"
    )]
    pub interval: u64,
    /// With --watch: stop after this many redraws (default: until interrupted).
    #[arg(long = "count", value_name = "N", help_heading = "lbd's options")]
    pub count: Option<u64>,
    /// -A/-E: the service's forwarding method (dr, tun, nat, fullnat); -a/-e: the real's
    /// (fullnat has no ipvsadm switch).
    #[arg(
        long = "forward",
        value_name = "METHOD",
        help_heading = "lbd's options"
    )]
    pub forward: Option<String>,
    /// -A/-E: encapsulation of tun reals: ipip or gue.
    #[arg(long = "tunnel", value_name = "TYPE", help_heading = "lbd's options")]
    pub tunnel: Option<String>,
    /// -A/-E: the reals' UDP port for GUE.
    #[arg(long = "gue-port", value_name = "PORT", help_heading = "lbd's options")]
    pub gue_port: Option<String>,
    /// -A/-E: full NAT's local addresses, comma-separated (`none` removes them).
    #[arg(
        long = "snat-pool",
        value_name = "ADDR,…",
        help_heading = "lbd's options"
    )]
    pub snat_pool: Option<String>,
    /// -A/-E: tunnels' outer source addresses, comma-separated (`none` removes them).
    #[arg(
        long = "tunnel-source",
        value_name = "ADDR,…",
        help_heading = "lbd's options"
    )]
    pub tunnel_source: Option<String>,
    /// -A/-E: Maglev table size (mh only), a prime.
    #[arg(
        long = "mh-table-size",
        value_name = "SIZE",
        help_heading = "lbd's options"
    )]
    pub mh_table_size: Option<String>,
    /// -A/-E: the health check, as the config's `health_check` in YAML flow style, e.g.
    /// '{type: http, path: /healthz, interval: 1s}' (`none` removes it).
    #[arg(long = "check", value_name = "YAML", help_heading = "lbd's options")]
    pub check: Option<String>,
    /// -A/-E: what a failed check does: remove or inhibit (weight 0).
    #[arg(
        long = "on-failure",
        value_name = "ACTION",
        help_heading = "lbd's options"
    )]
    pub on_failure: Option<String>,
    /// -A/-E: takes new flows while every real is down, ADDR:PORT (`none` removes it).
    #[arg(
        long = "sorry-server",
        value_name = "ADDR:PORT",
        help_heading = "lbd's options"
    )]
    pub sorry_server: Option<String>,
}

/// Verbs ipvsadm does not have.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Where the program is attached and how, map fill levels, and every real with its
    /// health check's last result.
    Status {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// A live view of rates and connections, redrawn in place (like `-L -n --rate --watch`).
    Top {
        /// Seconds between redraws.
        #[arg(long, value_name = "SECONDS", default_value_t = 2)]
        interval: u64,
        /// Stop after this many redraws (default: until interrupted).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Packets as the XDP program saw them, with its verdict and the real it chose (what
    /// tcpdump cannot see: frames it sends back out with XDP_TX); lines, or a pcap file.
    Dump(super::dump::DumpArgs),
    /// keepalived.conf → lbd's YAML on stdout; every directive not converted is listed on
    /// stderr with its file and line.
    ImportKeepalived {
        /// The keepalived.conf to convert (its includes are followed).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The interfaces lbd attaches to (default: those of the vrrp_instances).
        #[arg(long = "interface", value_name = "IFACE")]
        interfaces: Vec<String>,
    },
    /// Scale-out: withdraw this node's VIPs from BGP (through BIRD), so the routers send new
    /// flows to the other balancers; kept across restarts of lbd until undrain-node.
    DrainNode,
    /// Scale-out: announce this node's VIPs again (those with a healthy real).
    UndrainNode,
    /// A shell completion script on stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The man page, in roff (`cargo xtask man` installs it under target/man).
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    #[default]
    Table,
    Json,
}

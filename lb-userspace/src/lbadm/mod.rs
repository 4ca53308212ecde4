//! lbadm, the ipvsadm-like CLI: one module per verb, table rendering in [`table`].
//!
//! Flags follow ipvsadm (`-L -n --stats -t VIP:PORT`), so muscle memory and scripts carry over;
//! verbs ipvsadm does not have are words (`lbadm status`). The command line becomes one
//! [`Command`], and each command is a file of its own.

mod connections;
pub mod dump;
mod list;
mod status;
pub mod table;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, ValueEnum};

use crate::config::DEFAULT_ADMIN_SOCKET;

/// ipvsadm verbs that later versions add; named here so the error says so instead of
/// "unexpected argument".
const LATER_VERBS: [(&str, &str); 12] = [
    ("-A", "add service"),
    ("-E", "edit service"),
    ("-D", "delete service"),
    ("-a", "add real server"),
    ("-e", "edit real server"),
    ("-d", "delete real server"),
    ("-C", "clear all services"),
    ("-Z", "zero counters"),
    ("-S", "save rules"),
    ("--save", "save rules"),
    ("-R", "restore rules"),
    ("--restore", "restore rules"),
];

#[derive(Debug, Parser)]
#[command(
    name = "lbadm",
    version,
    about = "ipvsadm-like control of a running lbd"
)]
pub struct Cli {
    /// List services and real servers (ipvsadm -L).
    #[arg(short = 'L', long = "list", short_alias = 'l')]
    pub list: bool,
    /// Numeric output. Addresses are always printed numerically; accepted for ipvsadm habits.
    #[arg(short = 'n', long = "numeric")]
    pub numeric: bool,
    /// With -L: list connections (the flow table) instead of services (ipvsadm -L -n -c).
    #[arg(short = 'c', long = "connection")]
    pub connection: bool,
    /// Show counters: connections, packets and bytes (ipvsadm --stats).
    #[arg(long)]
    pub stats: bool,
    /// Show rates (ipvsadm --rate).
    #[arg(long)]
    pub rate: bool,
    /// Print exact numbers instead of abbreviating large ones with K/M/G.
    #[arg(long = "exact", short = 'X')]
    pub exact: bool,
    /// Only this TCP service.
    #[arg(
        short = 't',
        long = "tcp-service",
        value_name = "VIP:PORT",
        conflicts_with = "udp_service"
    )]
    pub tcp_service: Option<String>,
    /// Only this UDP service.
    #[arg(short = 'u', long = "udp-service", value_name = "VIP:PORT")]
    pub udp_service: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// lbd's admin socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_ADMIN_SOCKET)]
    pub socket: PathBuf,
    /// A verb ipvsadm does not have: `status` (where the program runs, in which XDP mode).
    #[arg(value_name = "VERB")]
    pub verb: Option<String>,
}

/// What one command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `-L`: services and reals (`list.rs`).
    List,
    /// `-L -c`: connections (`connections.rs`).
    Connections,
    /// `status`: the daemon and its attachments (`status.rs`).
    Status,
}

impl Cli {
    pub fn command(&self) -> anyhow::Result<Command> {
        if self.connection && !self.list {
            anyhow::bail!("-c lists connections and goes with -L (lbadm -L -n -c)");
        }
        match (self.list, self.verb.as_deref()) {
            (true, None) if self.connection => Ok(Command::Connections),
            (true, None) => Ok(Command::List),
            (false, Some("status")) => Ok(Command::Status),
            (true, Some(verb)) => anyhow::bail!("-L takes no verb, got `{verb}`"),
            (false, Some(verb)) => {
                anyhow::bail!("unknown verb `{verb}` (this version has: status; see --help)")
            }
            (false, None) => {
                anyhow::bail!("nothing to do: give a command such as -L -n (see --help)")
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // TEMPORARY HOOK for `lbadm dump` (its own parser, `dump::TemporaryCli`, with
    // `--socket`) until the CLI rewrite makes `dump` a verb of `Cli`; remove it then.
    if args.get(1).map(String::as_str) == Some("dump") {
        return dump::temporary_main(&args[1..]);
    }
    if let Some((flag, what)) = LATER_VERBS
        .iter()
        .find(|(flag, _)| args.iter().skip(1).any(|a| a == flag))
    {
        eprintln!(
            "lbadm: {flag} ({what}) is not supported by this version yet; it supports -L, -L -c and status"
        );
        return ExitCode::from(2);
    }
    let cli = Cli::parse_from(args);
    match run(&cli) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("lbadm: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command line, returning what it prints.
pub fn run(cli: &Cli) -> anyhow::Result<String> {
    match cli.command()? {
        Command::List => list::run(cli),
        Command::Connections => connections::run(cli),
        Command::Status => status::run(cli),
    }
}

//! lbadm, the ipvsadm-like CLI: one module per verb, table rendering in [`table`].
//!
//! Flags follow ipvsadm (`-L -n --stats -t VIP:PORT`), so muscle memory and scripts carry over.

mod list;
pub mod table;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, ValueEnum};

/// Default admin socket of lbd (`admin.socket` in its config).
pub const DEFAULT_SOCKET: &str = "/run/lb/lbd.sock";

/// ipvsadm verbs that later versions add; named here so the error says so instead of
/// "unexpected argument".
const LATER_VERBS: [(&str, &str); 14] = [
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
    ("-c", "list connections"),
    ("status", "daemon status"),
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
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some((flag, what)) = LATER_VERBS
        .iter()
        .find(|(flag, _)| args.iter().skip(1).any(|a| a == flag))
    {
        eprintln!("lbadm: {flag} ({what}) is not supported by this version yet; it supports -L");
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
    if cli.list {
        return list::run(cli);
    }
    anyhow::bail!("nothing to do: give a command such as -L -n (see --help)")
}

//! lbadm, the ipvsadm-like CLI.
//!
//! ipvsadm's commands, options, output and exit statuses, so muscle memory and scripts carry
//! over; verbs ipvsadm does not have are words (`lbadm status`). The command line (clap, in
//! `cli.rs`) becomes one [`Command`] (`command.rs`, with ipvsadm's checks and words), and
//! each command is a file of its own, named after it, whose doc comment names its ipvsadm
//! equivalent. Tables are rendered in one place, `table/`.
//!
//! Changes (`-A -E -D -a -e -d -C --set`, and `-R` as one batch) become config edits
//! (`config::edit::Edit`) that lbd validates and applies whole, or refuses with nothing
//! changed.
//!
//! Exit statuses are ipvsadm's: 0 done; 1 a listed service does not exist; 2 a command line
//! that does not parse or check, or no lbd to talk to; 255 lbd refused the change.

mod add_real;
mod add_service;
mod clear;
pub mod cli;
mod command;
mod completions;
mod connections;
mod delete_real;
mod delete_service;
mod drain_node;
pub mod dump;
mod edit_real;
mod edit_service;
pub mod import_keepalived;
mod list;
pub mod restore;
mod save;
mod set_timeouts;
mod status;
pub mod table;
#[cfg(test)]
mod tests;
mod top;
mod zero;

use std::{io::Read as _, path::Path, process::ExitCode, time::Duration};

use clap::{CommandFactory as _, Parser as _};
pub use cli::{Cli, Output, Verb};
pub use command::{Command, address_port};

use crate::admin::{self, ClientError, Reply, Request};

/// Why a command did not do what it asked, and so lbadm's exit status.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The command line does not check (ipvsadm's `fail(2, …)`).
    #[error("{0}")]
    Usage(String),
    /// The command line does not parse, or names no command (ipvsadm's popt errors and
    /// `tryhelp_exit(-1)`: 255).
    #[error("{0}")]
    Syntax(String),
    /// No lbd answers at the socket (ipvsadm: "Can't initialize ipvs", 2).
    #[error(transparent)]
    Unreachable(ClientError),
    /// lbd refused the change; nothing changed (ipvsadm's -1 from the kernel: 255).
    #[error("{0}")]
    Refused(String),
    /// A listed service does not exist (ipvsadm's `exit(1)`).
    #[error("{0}")]
    NotFound(String),
    #[error("lbd answered {0} with something else")]
    Unexpected(&'static str),
    #[error("{0}")]
    Io(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) | Failure::Unreachable(_) => 2,
            Failure::Refused(_) | Failure::Syntax(_) => 255,
            Failure::NotFound(_) | Failure::Unexpected(_) | Failure::Io(_) => 1,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Daemon(message) => Failure::Refused(message),
            other => Failure::Unreachable(other),
        }
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                // ipvsadm's status for an option popt cannot parse.
                ExitCode::from(255)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(&cli) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("lbadm: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Runs one command line, returning what it prints on stdout.
pub fn run(cli: &Cli) -> Result<String, Failure> {
    let socket = cli.socket.as_path();
    match &cli.verb {
        Some(Verb::Status { output }) => return status::run(socket, *output),
        Some(Verb::Top { interval, count }) => return top::run(socket, *interval, *count),
        Some(Verb::ImportKeepalived { file, interfaces }) => {
            return import(file, interfaces);
        }
        Some(Verb::DrainNode) => return drain_node::run(socket, true),
        Some(Verb::UndrainNode) => return drain_node::run(socket, false),
        Some(Verb::Completions { shell }) => return Ok(completions::run(*shell)),
        Some(Verb::Dump(args)) => {
            return dump::run(socket, args, &mut std::io::stdout().lock()).map(|()| String::new());
        }
        Some(Verb::Man) => return man_page(),
        None => {}
    }
    let args = &cli.ipvsadm;
    match command::command(args)? {
        Command::List(options) if args.watch || args.count.is_some() => list::watch(
            socket,
            &options,
            Duration::from_secs(args.interval.max(1)),
            args.count,
        ),
        Command::List(options) => list::run(socket, &options, args.output),
        Command::Save => save(socket),
        Command::Restore => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|error| Failure::Io(format!("reading the rules from stdin: {error}")))?;
            restore(socket, &text)
        }
        Command::AddService(rule) => change(socket, Request::Change(add_service::edit(&rule)?)),
        Command::EditService(rule) => change(socket, Request::Change(edit_service::edit(&rule)?)),
        Command::DeleteService(service) => {
            change(socket, Request::Change(delete_service::edit(service)))
        }
        Command::AddReal(rule) => {
            let rule = port_as_ipvsadm_takes_it(socket, rule)?;
            change(socket, Request::Change(add_real::edit(&rule)))
        }
        Command::EditReal(rule) => {
            let rule = port_as_ipvsadm_takes_it(socket, rule)?;
            change(socket, Request::Change(edit_real::edit(&rule)))
        }
        Command::DeleteReal(rule) => change(socket, Request::Change(delete_real::edit(&rule))),
        Command::Clear => change(socket, Request::Change(clear::edit())),
        Command::Zero(service) => change(socket, zero::request(service)),
        Command::SetTimeouts(seconds) => {
            change(socket, Request::Change(set_timeouts::edit(seconds)))
        }
    }
}

/// Sends a change; like ipvsadm, prints nothing when it is done.
fn change(socket: &Path, request: Request) -> Result<String, Failure> {
    match admin::request(socket, &request)? {
        Reply::Done { .. } => Ok(String::new()),
        _ => Err(Failure::Unexpected("a change")),
    }
}

/// `-R`: the rules as one batch. lbd names a change that fails by its place in the batch;
/// the operator wants its line.
fn restore(socket: &Path, text: &str) -> Result<String, Failure> {
    let numbered = restore::edits(text)?;
    let lines: Vec<usize> = numbered.iter().map(|(line, _)| *line).collect();
    let request = Request::Changes {
        edits: numbered.into_iter().map(|(_, edit)| edit).collect(),
    };
    let size = serde_json::to_string(&request).map_or(0, |text| text.len());
    if size >= admin::MAX_REQUEST_BYTES {
        return Err(Failure::Usage(format!(
            "the rules make a request of {size} bytes; lbd takes at most {} (restore them in \
             parts, or put them in the config file)",
            admin::MAX_REQUEST_BYTES
        )));
    }
    change(socket, request).map_err(|failure| match failure {
        Failure::Refused(message) => Failure::Refused(name_the_line(&message, &lines)),
        other => other,
    })
}

/// `change K of N (…): …` → `line L (…): …`.
fn name_the_line(message: &str, lines: &[usize]) -> String {
    let Some(rest) = message.strip_prefix("change ") else {
        return message.to_owned();
    };
    let Some((index, rest)) = rest.split_once(" of ") else {
        return message.to_owned();
    };
    let Some((_, rest)) = rest.split_once(' ') else {
        return message.to_owned();
    };
    match index
        .parse::<usize>()
        .ok()
        .and_then(|k| lines.get(k.wrapping_sub(1)))
    {
        Some(line) => format!("line {line} {rest}"),
        None => message.to_owned(),
    }
}

/// `-a`/`-e` without a method and with a port of its own: ipvsadm would route directly and
/// use the service's port. Here the real takes its service's method, so the running config
/// says whether that method keeps the port (dr, tun: the service's is used) or may change it.
fn port_as_ipvsadm_takes_it(
    socket: &Path,
    mut rule: command::RealRule,
) -> Result<command::RealRule, Failure> {
    if rule.forward.is_some() || rule.port.is_none_or(|port| port == rule.service.port) {
        return Ok(rule);
    }
    let config = running_config(socket)?;
    let named = rule.service;
    let keeps_port = config
        .services
        .iter()
        .find(|service| named.names(service))
        .is_some_and(|service| !service.forward.can_change_port());
    if keeps_port {
        rule.port = None;
    }
    Ok(rule)
}

fn running_config(socket: &Path) -> Result<crate::config::Config, Failure> {
    let Reply::Config { document } = admin::request(socket, &Request::Config)? else {
        return Err(Failure::Unexpected("a config request"));
    };
    crate::config::from_document(&document).map_err(|error| {
        Failure::Io(format!(
            "lbd's running config does not validate here (is this lbadm from another \
             version?): {error}"
        ))
    })
}

/// `-S`: rules from the running config.
fn save(socket: &Path) -> Result<String, Failure> {
    Ok(save::rules(&running_config(socket)?))
}

/// `import-keepalived`: the YAML on stdout; on stderr, every directive it does not carry.
fn import(file: &Path, interfaces: &[String]) -> Result<String, Failure> {
    let options = import_keepalived::ImportOptions {
        interfaces: interfaces.to_vec(),
    };
    let imported = import_keepalived::import(file, &options)
        .map_err(|error| Failure::Io(error.to_string()))?;
    for unconverted in &imported.unconverted {
        eprintln!("{unconverted}");
    }
    if !imported.unconverted.is_empty() {
        eprintln!(
            "lbadm: {} directives of {} not converted (listed above); the YAML passes lbd --check",
            imported.unconverted.len(),
            import_keepalived::shown_path(file)
        );
    }
    Ok(imported.yaml)
}

/// The man page, in roff, from the command line's definition (`cargo xtask man` writes it).
fn man_page() -> Result<String, Failure> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|error| Failure::Io(error.to_string()))?;
    Ok(String::from_utf8_lossy(&page).into_owned())
}

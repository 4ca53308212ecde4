//! `lbadm completions SHELL`: a completion script for bash, zsh, fish, elvish or PowerShell,
//! generated from the command line's definition, so it never falls behind it.

use clap::CommandFactory;

use super::cli::Cli;

pub fn run(shell: clap_complete::Shell) -> String {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "lbadm", &mut script);
    String::from_utf8_lossy(&script).into_owned()
}

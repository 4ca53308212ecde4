//! `cargo xtask …`: the single front door. `setup` installs what a fresh machine lacks,
//! `build` builds everything, `test` runs every test, `demo` shows the balancer at work,
//! `bench` measures lbd against references, `man` writes lbadm's man page and completions,
//! `fuzz` fuzzes the parsers and the data path.

mod fuzz;
mod previous;
mod setup;
mod soak;

use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Args {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what is missing: rust-src for nightly, LLVM 22, bpf-linker, ethtool, cargo-fuzz.
    Setup,
    /// Set up, then build the XDP program, the daemon, the CLI and the tests.
    Build,
    /// Set up, build, and run every test, then each parser fuzz target briefly. Most tests need
    /// root (namespaces, BPF): without root this refuses to run, unless asked for the
    /// unprivileged part only.
    Test {
        /// Without root: run only the tests that need no privileges; the others are skipped,
        /// each saying so.
        #[arg(long)]
        unprivileged: bool,
        /// Passed to `cargo test` after `--` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run the demo: a client, the balancer and three reals in network
    /// namespaces, with real HTTP traffic through the XDP program. Needs root.
    Demo,
    /// Set up, build (release), and measure lbd against references in the same run: per
    /// packet (BPF_PROG_TEST_RUN), throughput and connection rates through namespaces, scale,
    /// VRRP takeover. Prints tables and writes target/bench/report.md with charts. Needs root.
    Bench {
        /// Only these parts: per-packet, throughput, connections, scale, takeover.
        parts: Vec<String>,
    },
    /// Set up, build (release), and run lbd under steady load with connection churn for a
    /// while, sampling the flow table, its memory, descriptors and threads: fails if any grows
    /// or its counters disagree with the client's. Needs root.
    Soak {
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Prefix of the soak's network namespaces (default `lbsoak-<pid>-`).
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Set up, then fuzz each parser (YAML config, VRRP adverts, admin requests, `lbadm -R`
    /// rules, keepalived.conf) with libFuzzer for SECONDS each, then the data path with
    /// lb-fuzz. Prints a table; a failing input is written under lb-userspace/fuzz/artifacts/.
    Fuzz {
        /// How long each parser target runs.
        #[arg(long, default_value_t = 300)]
        seconds: u64,
    },
    /// Build lbadm and write its man page (target/man/man1/lbadm.1) and shell completions
    /// (target/completions/), for packaging or `install`.
    Man,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Task::Setup => {
            setup::run()?;
            setup::bench_tools()
        }
        Task::Build => {
            setup::run()?;
            build()
        }
        Task::Test { unprivileged, args } => {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let root = unsafe { libc::geteuid() } == 0;
            if !root && !unprivileged {
                bail!(
                    "most tests need root (network namespaces, BPF) and would be skipped: run \
                     `sudo -E cargo xtask test`, or `cargo xtask test --unprivileged` to run \
                     only the tests that need no privileges"
                );
            }
            setup::run()?;
            build()?;
            let mut test = cargo();
            test.args(["test", "--"]).args(&args);
            match previous::for_tests(&workspace_root())? {
                Ok(lbd) => test.env("LB_PREVIOUS_LBD", lbd),
                Err(reason) => test.env("LB_PREVIOUS_LBD_MISSING", reason),
            };
            if unprivileged {
                // lb_tests::privilege::require_root reads this: skip, even under CI.
                test.env("LB_TESTS_UNPRIVILEGED", "1");
            }
            status(&mut test)?;
            // Needs no privileges. Skipped when a filter names other tests.
            if args.is_empty() || args.iter().any(|arg| arg.contains("fuzz")) {
                fuzz::short(fuzz::SHORT_RUN_SECONDS)?;
            }
            Ok(())
        }
        Task::Fuzz { seconds } => {
            setup::run()?;
            fuzz::long(seconds)
        }
        Task::Demo => {
            setup::run()?;
            build()?;
            // Ctrl-C reaches the whole process group; the demo handles it by cleaning up, and
            // xtask must wait for that instead of returning to the shell first.
            // SAFETY: ignoring a signal has no preconditions.
            unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
            run_harness_binary("lb-demo")
        }
        Task::Soak { minutes, prefix } => soak::run(minutes, prefix.as_deref()),
        Task::Man => {
            setup::run()?;
            status(cargo().args(["build", "--package", "lb-userspace", "--bin", "lbadm"]))?;
            man_and_completions()
        }
        Task::Bench { parts } => {
            setup::run()?;
            setup::bench_tools()?;
            // The namespace parts (throughput, connections, scale, takeover) run the release lbd.
            build_release_daemon()?;
            // Release: the bench binary builds a frame between single-packet runs, and an
            // unoptimised build does that slowly enough to leave the kernel's caches colder.
            status(
                cargo()
                    .args([
                        "run",
                        "--quiet",
                        "--release",
                        "--package",
                        "lb-tests",
                        "--bin",
                        "lb-bench",
                        "--",
                    ])
                    .args(&parts),
            )
        }
    }
}

/// Runs a binary of the tests crate. The demo and the bench live there, next to the harness
/// they use: xtask itself must build on a machine that lacks the eBPF toolchain, since it is
/// what installs it.
fn run_harness_binary(name: &str) -> anyhow::Result<()> {
    status(cargo().args(["run", "--quiet", "--package", "lb-tests", "--bin", name]))
}

/// lbadm's man page and completion scripts, generated by lbadm itself from its command line.
fn man_and_completions() -> anyhow::Result<()> {
    let target = workspace_root().join("target");
    let lbadm = target.join("debug/lbadm");
    let generated = |args: &[&str]| -> anyhow::Result<Vec<u8>> {
        let output = Command::new(&lbadm)
            .args(args)
            .output()
            .with_context(|| format!("running {}", lbadm.display()))?;
        if !output.status.success() {
            bail!(
                "lbadm {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(output.stdout)
    };
    let man = target.join("man/man1");
    std::fs::create_dir_all(&man)?;
    std::fs::write(man.join("lbadm.1"), generated(&["man"])?)?;
    let completions = target.join("completions");
    std::fs::create_dir_all(&completions)?;
    for (shell, file) in [("bash", "lbadm"), ("zsh", "_lbadm"), ("fish", "lbadm.fish")] {
        std::fs::write(completions.join(file), generated(&["completions", shell])?)?;
    }
    println!(
        "wrote {} and bash, zsh and fish completions under {}",
        man.join("lbadm.1").display(),
        completions.display()
    );
    Ok(())
}

/// Binaries and test executables, once: the tests find `lbd` and `lbadm` next to themselves.
fn build() -> anyhow::Result<()> {
    status(cargo().args(["build", "--bins", "--tests"]))
}

/// lbd and lbadm, optimised: what the bench and the soak run, as lbd is deployed.
fn build_release_daemon() -> anyhow::Result<()> {
    status(cargo().args([
        "build",
        "--quiet",
        "--release",
        "--package",
        "lb-userspace",
        "--bins",
    ]))
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs `command`, failing with its command line if it fails.
fn status(command: &mut Command) -> anyhow::Result<()> {
    let described = format!("{command:?}");
    let status = command
        .status()
        .with_context(|| format!("running {described}"))?;
    if !status.success() {
        bail!("{described} failed ({status})");
    }
    Ok(())
}

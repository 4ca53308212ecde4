//! Fuzzing: lb-userspace's parsers under libFuzzer (cargo-fuzz, `lb-userspace/fuzz/`), and the
//! data-path fuzzer of the tests crate (`lb-fuzz`). `cargo xtask fuzz` runs everything for a
//! while; `cargo xtask test` runs the parser targets briefly.
//!
//! Every target must not panic, hang or grow without bound: libFuzzer stops at the first
//! input that panics, runs longer than [`TIMEOUT_SECONDS`] or allocates past the limits, and
//! writes it to `lb-userspace/fuzz/artifacts/<target>/`, where
//! `cargo +nightly fuzz run <target> <file>` (in lb-userspace/) replays it.

mod seeds;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::{cargo, status, workspace_root};

/// The parser targets (`lb-userspace/fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: [&str; 5] = [
    "config",
    "vrrp_advert",
    "admin_request",
    "restore_rules",
    "keepalived_import",
];

/// One input taking longer than this is a hang (libFuzzer's `-timeout`). The slowest parse of
/// a seed takes milliseconds, under ASan and debug assertions.
const TIMEOUT_SECONDS: u64 = 10;
/// Any one allocation (`-malloc_limit_mb`): an input of a few kilobytes never needs more.
/// The process's resident memory (`-rss_limit_mb`) holds ASan's quarantine and the corpus
/// too (the config target was at 400 MB after 3 minutes): libFuzzer's default.
const MALLOC_LIMIT_MB: u64 = 256;
const RSS_LIMIT_MB: u64 = 2048;

/// How long `cargo xtask test` runs each parser target: enough to replay the seeds and the
/// grown corpus and try some thousands of new inputs, not to search.
pub const SHORT_RUN_SECONDS: u64 = 20;

/// Codegen units of the fuzz build (cargo's default for release builds; cargo-fuzz's is 1).
const CODEGEN_UNITS: &str = "16";

/// Frames the long run feeds the data-path fuzzer.
const DATA_PATH_FRAMES: u64 = 20_000_000;

/// `cargo xtask fuzz`: every parser target for `seconds`, then the data-path fuzzer, then a
/// table of what ran. Fails if anything failed or could not run.
pub fn long(seconds: u64) -> anyhow::Result<()> {
    build(Profile::Release)?;
    let mut rows: Vec<Row> = TARGETS
        .iter()
        .map(|target| run_target(target, seconds, Profile::Release))
        .collect::<anyhow::Result<_>>()?;
    rows.push(data_path()?);
    summary(&rows)
}

/// The short run `cargo xtask test` ends with: each parser target for `seconds`.
pub fn short(seconds: u64) -> anyhow::Result<()> {
    build(Profile::Dev)?;
    let rows: Vec<Row> = TARGETS
        .iter()
        .map(|target| run_target(target, seconds, Profile::Dev))
        .collect::<anyhow::Result<_>>()?;
    summary(&rows)
}

/// Where the fuzz build, the seeds, the grown corpus and the logs go: beside the main
/// workspace's build, never in the source tree.
fn fuzz_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let target = if target.is_absolute() {
        target
    } else {
        workspace_root().join(target)
    };
    target.join("fuzz")
}

fn fuzz_crate() -> PathBuf {
    workspace_root().join("lb-userspace")
}

/// How the targets are built.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Profile {
    /// Optimised: `cargo xtask fuzz`, where runs per second matter.
    Release,
    /// Unoptimised: the short run of `cargo xtask test`, where a fresh machine's build of
    /// lb-userspace and every dependency with ASan matters more than speed (optimised, it
    /// took 18 minutes here from cold).
    Dev,
}

impl Profile {
    /// cargo's directory of the profile's build.
    fn directory(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Dev => "debug",
        }
    }
}

/// The targets, with ASan, libFuzzer's coverage and debug assertions (cargo-fuzz's
/// defaults), by the nightly compiler (sanitizers are unstable). cargo-fuzz's release builds
/// default to one codegen unit, which made lb-userspace alone take minutes on one core:
/// [`CODEGEN_UNITS`] spread it over the machine's cores.
fn build(profile: Profile) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut command = Command::new("cargo");
    command
        .current_dir(fuzz_crate())
        .args(["+nightly", "fuzz", "build"]);
    match profile {
        Profile::Release => command.args(["--codegen-units", CODEGEN_UNITS]),
        Profile::Dev => command.arg("--dev"),
    };
    status(
        command
            .arg("--target-dir")
            .arg(fuzz_dir().join("build"))
            // The targets never load the XDP program: lb-userspace's build script skips its
            // nested BPF build (minutes, cold), and embeds empty objects.
            .env("LB_SKIP_EBPF_BUILD", "1"),
    )?;
    println!(
        "fuzz: built the parser targets in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn binary(target: &str, profile: Profile) -> PathBuf {
    fuzz_dir()
        .join("build/x86_64-unknown-linux-gnu")
        .join(profile.directory())
        .join(target)
}

/// A line of the summary table.
struct Row {
    target: String,
    runs: Option<u64>,
    seconds: f64,
    result: String,
    ok: bool,
}

/// Runs `target` for `seconds` on a corpus seeded from the fixtures and grown by earlier
/// runs; its output goes to a log, whose end is shown if it fails.
fn run_target(target: &str, seconds: u64, profile: Profile) -> anyhow::Result<Row> {
    let dir = fuzz_dir();
    let seeds = dir.join("seeds").join(target);
    let seed_count = seeds::write(&workspace_root(), target, &seeds)?;
    let corpus = dir.join("corpus").join(target);
    let artifacts = fuzz_crate().join("fuzz/artifacts").join(target);
    let logs = dir.join("logs");
    for directory in [&corpus, &artifacts, &logs] {
        std::fs::create_dir_all(directory)
            .with_context(|| format!("creating {}", directory.display()))?;
    }
    let log = logs.join(format!("{target}.log"));
    println!(
        "fuzz: {target} for {seconds} s ({seed_count} seeds; log {})",
        log.display()
    );
    let started = Instant::now();
    let output = Command::new(binary(target, profile))
        .arg(&corpus)
        .arg(&seeds)
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={TIMEOUT_SECONDS}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-malloc_limit_mb={MALLOC_LIMIT_MB}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .status()
        .with_context(|| format!("running {}", binary(target, profile).display()))?;
    let elapsed = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let runs = final_stat(&text, "stat::number_of_executed_units");
    let (result, ok) = if output.success() {
        ("ok".to_owned(), true)
    } else {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!("fuzz: {target} failed; the end of its log:");
        for line in tail.into_iter().rev() {
            eprintln!("  {line}");
        }
        let artifact = text
            .lines()
            .find_map(|line| {
                line.split_once("Test unit written to ")
                    .map(|(_, path)| path)
            })
            .map(|path| format!("FAILED: {path}"))
            .unwrap_or_else(|| format!("FAILED ({output})"));
        (artifact, false)
    };
    Ok(Row {
        target: target.to_owned(),
        runs,
        seconds: elapsed,
        result,
        ok,
    })
}

/// A `stat::NAME: VALUE` line of libFuzzer's final statistics.
fn final_stat(log: &str, name: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|value| value.trim().parse().ok())
}

/// The tests crate's data-path fuzzer, if it has one: built in release, fed
/// [`DATA_PATH_FRAMES`] frames.
fn data_path() -> anyhow::Result<Row> {
    let name = "lb-fuzz";
    let manifest = workspace_root().join("tests/Cargo.toml");
    let declared = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?
        .contains(&format!("name = \"{name}\""));
    if !declared {
        eprintln!(
            "fuzz: the data-path fuzzer is missing: {} declares no {name} binary",
            manifest.display()
        );
        return Ok(Row {
            target: name.to_owned(),
            runs: None,
            seconds: 0.0,
            result: "MISSING: tests crate has no lb-fuzz binary".to_owned(),
            ok: false,
        });
    }
    status(cargo().args(["build", "--release", "-p", "lb-tests", "--bin", name]))?;
    let binary = target_dir().join("release").join(name);
    println!("fuzz: {name} for {DATA_PATH_FRAMES} frames");
    let started = Instant::now();
    let outcome = Command::new(&binary)
        .args(["--frames", &DATA_PATH_FRAMES.to_string()])
        .status()
        .with_context(|| format!("running {}", binary.display()))?;
    Ok(Row {
        target: name.to_owned(),
        runs: Some(DATA_PATH_FRAMES),
        seconds: started.elapsed().as_secs_f64(),
        result: if outcome.success() {
            "ok".to_owned()
        } else {
            format!("FAILED ({outcome})")
        },
        ok: outcome.success(),
    })
}

/// The main workspace's target dir.
fn target_dir() -> PathBuf {
    fuzz_dir()
        .parent()
        .expect("the fuzz dir is inside the target dir")
        .to_path_buf()
}

/// Prints the table; fails if a row did.
fn summary(rows: &[Row]) -> anyhow::Result<()> {
    println!();
    println!(
        "{:<20} {:>12} {:>8} {:>9}  result",
        "target", "runs", "seconds", "runs/s"
    );
    for row in rows {
        let runs = row.runs.map_or("-".to_owned(), |runs| runs.to_string());
        let rate = match row.runs {
            Some(runs) if row.seconds > 0.0 => format!("{:.0}", runs as f64 / row.seconds),
            _ => "-".to_owned(),
        };
        println!(
            "{:<20} {:>12} {:>8.0} {:>9}  {}",
            row.target, runs, row.seconds, rate, row.result
        );
    }
    let failed: Vec<&str> = rows
        .iter()
        .filter(|row| !row.ok)
        .map(|row| row.target.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("fuzzing failed: {}", failed.join(", "));
    }
    Ok(())
}

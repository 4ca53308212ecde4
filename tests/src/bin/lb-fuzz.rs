//! `lb-fuzz [--frames N] [--seed S]`: the long data-path fuzzing run of `cargo xtask fuzz`
//! (see `lb_tests::fuzz`). Exits non-zero on the first frame the program gets wrong. Needs
//! root.

use std::process::ExitCode;

const DEFAULT_FRAMES: u64 = 20_000_000;
const USAGE: &str = "usage: lb-fuzz [--frames N] [--seed S]";

fn main() -> ExitCode {
    let mut frames = DEFAULT_FRAMES;
    let mut seed = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value =
            |args: &mut dyn Iterator<Item = String>| -> Option<u64> { args.next()?.parse().ok() };
        match arg.as_str() {
            "--frames" => match value(&mut args) {
                Some(n) => frames = n,
                None => return usage_error("--frames takes a number"),
            },
            "--seed" => match value(&mut args) {
                Some(s) => seed = Some(s),
                None => return usage_error("--seed takes a number"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage_error(&format!("unknown argument {other}")),
        }
    }
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("lb-fuzz: loading the XDP program needs root");
        return ExitCode::from(2);
    }
    let seed = seed.unwrap_or_else(lb_tests::fuzz::seed_from_env);
    println!("seed {seed}; reproduce with LB_FUZZ_SEED={seed} (or --seed {seed})");
    match lb_tests::fuzz::run(frames, seed) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprint!("{failure}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(problem: &str) -> ExitCode {
    eprintln!("lb-fuzz: {problem}\n{USAGE}");
    ExitCode::from(2)
}

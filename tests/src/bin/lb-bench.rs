//! `lb-bench` (run by `cargo xtask bench [PART…]`): lbd measured against references in the
//! same run (see `lb_tests::bench`). Prints each part's table as it finishes, then writes
//! `target/bench/report.md` and a chart per part.

use std::process::ExitCode;

use lb_tests::{
    bench::{Section, connections, host, per_packet, report, scale, takeover, throughput},
    fixture::pin_to_current_cpu,
    privilege::require_root,
};

/// A part of the bench: it measures, and returns its sections.
type Part = fn() -> Vec<Section>;

/// The parts, in the order they run when none is named.
const PARTS: [(&str, Part); 5] = [
    ("per-packet", per_packet::run),
    ("throughput", throughput::run),
    ("connections", connections::run),
    ("scale", scale::run),
    ("takeover", takeover::run),
];

fn main() -> ExitCode {
    let asked: Vec<String> = std::env::args().skip(1).collect();
    if let Some(unknown) = asked
        .iter()
        .find(|name| !PARTS.iter().any(|(part, _)| part == name))
    {
        let names: Vec<&str> = PARTS.iter().map(|(part, _)| *part).collect();
        eprintln!(
            "lb-bench: no part {unknown:?}; the parts are {}",
            names.join(", ")
        );
        return ExitCode::FAILURE;
    }
    if !require_root("the benchmark") {
        return ExitCode::FAILURE;
    }
    let machine = report::machine();
    println!("{machine}");
    let mut sections = Vec::new();
    for (name, part) in PARTS {
        if !asked.is_empty() && !asked.iter().any(|asked| asked == name) {
            continue;
        }
        // Per-packet timings are per CPU: the thread stays on one for that part only. The
        // other parts spread over every CPU (their generators, servers and balancers are
        // threads and processes that would inherit the pin).
        let allowed = (name == "per-packet").then(|| {
            let allowed = host::affinity();
            pin_to_current_cpu();
            allowed
        });
        for section in part() {
            report::print(&section);
            sections.push(section);
        }
        if let Some(allowed) = allowed {
            host::set_affinity(&allowed);
        }
    }
    match report::write(&sections, &machine) {
        Ok(path) => {
            println!("\nreport: {}", path.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("lb-bench: writing the report: {error}");
            ExitCode::FAILURE
        }
    }
}

//! A short soak (~30 s) so that `cargo xtask test` catches a leak or a miscount: steady load
//! with connection churn through lbd; the flow table, lbd's memory, descriptors and threads
//! stay flat, and lbd counts exactly the connections the client opened. `cargo xtask soak`
//! runs the same for minutes. Needs root.

use std::{sync::atomic::AtomicBool, time::Duration};

use lb_tests::{
    privilege::require_root,
    soak::{self, SoakOptions},
};

#[test]
fn soak_keeps_lbd_flat_and_its_counters_consistent() {
    if !require_root("soak_keeps_lbd_flat_and_its_counters_consistent") {
        return;
    }
    let mut options = SoakOptions::for_duration(
        Duration::from_secs(30),
        &format!("cha-soak-{}-", std::process::id()),
    );
    // Gentler than lb-soak's 100/s: the test shares the machine with the others.
    options.churn_per_second = 50;
    let report = soak::run(&options, &AtomicBool::new(false));
    // The samples were printed as they came.
    eprintln!("{}", report.summary());
    assert!(report.passed(), "the soak failed:\n{}", report.summary());
    assert_eq!(report.client_failures, 0, "{}", report.summary());
}

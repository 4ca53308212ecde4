//! Data-path fuzzing, the short run: 1,000,000 generated frames through the balancer program,
//! each checked against the model (`lb_tests::fuzz`). The seed comes from `LB_FUZZ_SEED` or
//! the clock and is printed first. `cargo xtask fuzz` runs the long one (`lb-fuzz`). Needs root.

use lb_tests::{fuzz, privilege::require_root};

const FRAMES: u64 = 1_000_000;

#[test]
fn a_million_generated_frames_do_what_the_model_says() {
    if !require_root("a_million_generated_frames_do_what_the_model_says") {
        return;
    }
    let seed = fuzz::seed_from_env();
    println!("seed {seed}; reproduce with LB_FUZZ_SEED={seed}");
    match fuzz::run(FRAMES, seed) {
        Ok(report) => println!("{report}"),
        Err(failure) => panic!("{failure}"),
    }
}

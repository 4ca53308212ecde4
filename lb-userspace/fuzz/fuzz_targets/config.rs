//! The YAML config as `lbd --check` reads it (parse, then validate), from text; and, for a
//! config that passes, the document runtime changes edit, validated as lbd validates it after
//! a change.
#![no_main]

use std::path::Path;

use lb_userspace::{config, daemon};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // lbd reads the file as UTF-8 and refuses anything else before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((config, document)) = config::parse_with_document(text, "fuzz.yaml") else {
        return;
    };
    let _ = daemon::check_summary(Path::new("fuzz.yaml"), &config);
    // lbd validates the document again after each runtime change: a config the file passes
    // must pass as a document too, or no change could ever be made to it.
    if let Err(error) = config::from_document(&document) {
        panic!("the file passes, its document does not: {error}\n{text}");
    }
});

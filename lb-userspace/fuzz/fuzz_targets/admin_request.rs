//! A request line on the admin socket, decoded as lbd decodes it; a change it carries is made
//! on a running config and validated, as lbd would before applying it.
#![no_main]

use lb_userspace::admin::{Request, decode_request};
use lb_userspace_fuzz::make_changes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // lbd reads the line into a String: a line that is not UTF-8 fails before decoding.
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    match decode_request(line) {
        Ok(Request::Change(edit)) => make_changes(&[edit]),
        Ok(Request::Changes { edits }) => make_changes(&edits),
        _ => {}
    }
});

//! `lbadm -R`'s rules (ipvsadm-save lines), parsed into changes as lbadm parses them; the
//! changes are made on a running config and validated, as lbd does with a restore.
#![no_main]

use lb_userspace::lbadm::restore;
use lb_userspace_fuzz::make_changes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // lbadm reads stdin as UTF-8 and refuses anything else.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(numbered) = restore::edits(text) {
        let edits: Vec<_> = numbered.into_iter().map(|(_, edit)| edit).collect();
        make_changes(&edits);
    }
});

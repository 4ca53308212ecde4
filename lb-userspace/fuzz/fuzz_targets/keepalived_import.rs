//! `lbadm import-keepalived` on a keepalived.conf (its includes listed, not read). The
//! importer promises YAML that lbd's validation accepts: a conversion it refuses is a bug.
#![no_main]

use std::path::Path;

use lb_userspace::lbadm::import_keepalived::{ImportError, ImportOptions, import_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The importer reads files as lossy UTF-8, as keepalived reads bytes.
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/etc/keepalived/keepalived.conf");
    if let Err(error @ ImportError::Invalid { .. }) =
        import_text(&text, path, &ImportOptions::default())
    {
        panic!("{error}");
    }
});

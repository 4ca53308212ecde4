//! What the parser fuzz targets share: the running config that decoded changes are made on.

use std::sync::OnceLock;

use lb_userspace::config::{self, Document, edit::Edit};

/// A config of the kind the changes name (an IPv4 and an IPv6 service with reals, a health
/// check), as lbd holds it while running: the document admin changes edit.
const RUNNING_CONFIG: &str = "\
instance: fuzz
interfaces:
  - name: eth0
services:
  - vip: 192.0.2.100
    port: 80
    protocol: tcp
    scheduler: wrr
    forward: dr
    health_check: {type: tcp, interval: 2s}
    reals:
      - address: 192.0.2.11
        weight: 1
      - address: 192.0.2.12
        weight: 2
  - vip: 2001:db8::10
    port: 53
    protocol: udp
    scheduler: rr
    forward: nat
    reals:
      - address: 2001:db8::11
        port: 5353
";

fn running_document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        config::parse_with_document(RUNNING_CONFIG, "fuzz running config")
            .unwrap_or_else(|error| panic!("the fuzz targets' running config: {error}"))
            .1
    })
}

/// Makes `edits` on the running config and validates the result, as lbd does with a change
/// or a restore: each may be refused, none may panic.
pub fn make_changes(edits: &[Edit]) {
    let mut document = running_document().clone();
    if config::edit::apply_all(edits, &mut document).is_ok() {
        let _ = config::from_document(&document);
    }
}

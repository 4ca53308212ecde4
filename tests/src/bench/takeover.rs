//! VRRP takeover times, lbd's next to keepalived's, each from a fresh pair in namespaces
//! (`crate::takeover`): from the master's exit until the backup holds the VIP.

use std::time::Duration;

use super::{Row, Samples, Section};
use crate::takeover::{Exit, Peer, measure};

pub fn run() -> Vec<Section> {
    eprintln!("bench: VRRP takeover");
    let mut rows = Vec::new();
    let mut run = 0;
    for advert in [Duration::from_secs(1), Duration::from_millis(100)] {
        for (exit, what) in [
            (Exit::Killed, "master SIGKILLed"),
            (Exit::Stopped, "master stopped"),
        ] {
            let mut times = [Samples::default(), Samples::default()];
            for (slot, peer) in [Peer::Lbd, Peer::Keepalived].into_iter().enumerate() {
                run += 1;
                let prefix = format!("lbb-to{}-{run}-", std::process::id());
                times[slot].push(measure(&prefix, peer, advert, exit).as_secs_f64() * 1e3);
            }
            let [lbd, keepalived] = times;
            rows.push(Row::against(
                format!("{what}, {} ms adverts", advert.as_millis()),
                "ms",
                lbd,
                "keepalived",
                keepalived,
                None,
            ));
        }
    }
    vec![Section {
        title: "VRRP takeover".into(),
        method: "One sample each, lbd pair then keepalived pair, fresh namespaces. Bounds for \
                 the backup's priority 100: killed, 3 × advert + skew = 3.609 s at 1 s and \
                 361 ms at 100 ms; stopped, the skew: 609 ms and 61 ms."
            .into(),
        rows,
    }]
}

//! The shared test harness of the load balancer.
//!
//! # Layout
//!
//! - [`fixture`]: the balancer loaded but not attached, fed frames through BPF_PROG_TEST_RUN.
//! - [`decap`]: the same for `lbd decap`'s decapsulation program.
//! - [`fuzz`]: data-path fuzzing: generated frames through the program, each checked against
//!   an independent model (`fuzz_datapath.rs`, the `lb-fuzz` binary).
//! - [`conntrack`]: a model of connection tracking that fixtures check the balancer against.
//! - [`privilege`]: whether a privileged test runs or is skipped (`require_root`).
//! - [`netns`]: named network namespaces removed on drop; running code and processes inside.
//! - [`topology`]: the LVS-DR network (client, lb, reals on one bridge), every host in a
//!   namespace of its own, addresses from 192.0.2.0/24 (and 2001:db8::/64 when dual stack);
//!   optionally a router and a far client behind a smaller path MTU, and (`topology::modes`)
//!   a routed site, a second segment behind the lb and a direct link, for the other
//!   forwarding modes.
//! - [`http`]: a minimal HTTP/1.1 server (answers with its name) and keep-alive client.
//! - [`udp`]: a UDP echo server (answers with its name and the length it got) and client.
//! - [`bulk`]: TCP transfers both ways, every byte checked against a known stream: a server
//!   sending N bytes per connection and a sink reporting what arrived; a stalled transfer (a
//!   path-MTU black hole) is reported with the bytes that got through.
//! - [`lbd`]: the real `lbd` binary in a test namespace, and `lbadm` against it; `lbd decap`
//!   on a tunnel real.
//! - [`ha`]: an HA pair's config, VRRP states, long-lived connections that must survive a
//!   failover and a request loop; `topology::ha` is their network (two balancers on the
//!   switch, no VIP until VRRP adds it).
//! - [`chaos`]: traffic that runs while a chaos scenario breaks something (a request loop and
//!   long-lived connections) and the figures it yields; one report line per scenario; a
//!   daemon's footprint (memory, descriptors, threads) from /proc.
//! - [`soak`]: `lb-soak`'s core: steady load with connection churn through lbd for a while,
//!   sampling the flow table and lbd's footprint, with a verdict (flat, counters consistent).
//! - [`keepalived`]: keepalived as lbd's VRRP peer, in a namespace.
//! - [`bird`]: BIRD 2, the BGP speaker of the scale-out test (`topology::scale_out`: a router
//!   spreading a VIP over two balancers by ECMP), in a namespace.
//! - [`takeover`]: takeover times of an lbd pair and a keepalived pair, for the bench.
//! - [`bench`]: `cargo xtask bench`'s parts, its reference programs and its report.
//! - [`packet`]: the one packet builder, with checksums, for fixtures, benches and the demo.
//! - [`pcap`]: pcap dumps and field-level diffs for failing packet fixtures.
//!
//! Network rule: tests build their own hosts — namespaces and veth pairs made by the test,
//! addresses only from the documentation ranges — and never touch the root namespace.

pub mod bench;
pub mod bird;
pub mod bulk;
pub mod chaos;
pub mod conntrack;
pub mod decap;
pub mod fixture;
pub mod forwarding;
pub mod fuzz;
pub mod ha;
pub mod http;
pub mod keepalived;
pub mod lbd;
pub mod netns;
pub mod packet;
pub mod pcap;
pub mod privilege;
pub mod server;
pub mod soak;
pub mod takeover;
pub mod topology;
pub mod udp;

pub use netns::Netns;
pub use topology::{DrTopology, VIP};

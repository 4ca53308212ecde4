//! lbd and lbadm: the control plane of the XDP load balancer.
//!
//! # Layout
//!
//! Data flows one way: config → reconcile → dataplane; the neighbour watch feeds the desired
//! state; admin and metrics read.
//!
//! - [`config`]: the YAML file → a validated, typed [`config::Config`] (errors name key and line).
//! - [`schedule`]: pure functions that turn weights into the ring the kernel walks.
//! - [`reconcile`]: config + what the host says (interfaces, routes, MACs, neighbour state) → ids,
//!   rings and map entries; the one writer of the maps, and the snapshot it publishes.
//! - [`dataplane`]: the seams to the program's maps ([`dataplane::Dataplane`] to write,
//!   [`dataplane::DataplaneReader`] to read counters and flows), their eBPF implementations,
//!   in-memory fakes for tests, the loader (load, size and pin maps, attach), and the capture
//!   `lbadm dump` arms and reads ([`dataplane::capture`]).
//! - [`neighbour`]: interfaces, VLANs, routes to reals, neighbour entries and notifications
//!   over rtnetlink.
//! - [`admin`]: the admin socket protocol, its server and lbadm's client.
//! - [`metrics`]: `/metrics` (Prometheus) and the HTML status page over a small HTTP server,
//!   read from the admin socket's listing and the health board.
//! - [`daemon`]: `serve` (what lbd runs) and `run(daemon, listener, shutdown)`: the tasks.
//! - [`lbadm`]: the ipvsadm-like CLI, one module per verb.
//! - [`health`]: health checks of the reals, and the board readers see their results on.
//! - [`vrrp`]: VRRPv3 with a peer (keepalived's role): the state machine, its sockets, the
//!   virtual addresses, and which VIPs the program forwards (those of routers that are
//!   master here).
//! - [`sync`]: connection sync with that peer: the master streams its flows, the backup merges
//!   them, so a takeover keeps connections.
//! - [`bgp`]: scale-out: the VIPs with a healthy real announced over BGP through BIRD (lbd
//!   writes BIRD's configuration and has it read it), and `lbadm drain-node`.
//! - [`decap`]: `lbd decap`, the decapsulation program on the reals of tunnel-mode services
//!   (apart from the rest: it loads its own program and reads the host's addresses).

pub mod admin;
pub mod bgp;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod decap;
pub mod health;
pub mod lbadm;
pub mod metrics;
pub mod neighbour;
pub mod reconcile;
pub mod schedule;
pub mod sync;
pub mod vrrp;

/// The XDP program, built for the BPF target by build.rs.
pub const EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb"));

/// The benchmark's reference programs (lb-ebpf's `baselines`), for `cargo xtask bench`; lbd
/// never loads them.
pub const BENCH_BASELINES_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/baselines"));

/// Program names inside [`EBPF_OBJECT`].
pub const PROGRAM_BALANCER: &str = "lb_xdp";
pub const PROGRAM_PASS: &str = "xdp_pass";
/// The decapsulator `lbd decap` attaches on tunnel reals.
pub const PROGRAM_DECAP: &str = "lb_decap";

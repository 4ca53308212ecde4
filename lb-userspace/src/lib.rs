//! lbd and lbadm: the control plane of the XDP load balancer.
//!
//! # Layout
//!
//! - [`config`]: the YAML file → a validated, typed [`config::Config`] (errors name key and line).
//! - [`schedule`]: pure functions that turn weights into the ring the kernel walks.
//! - [`dataplane`]: the [`dataplane::Dataplane`] trait (what the control plane writes and reads),
//!   its eBPF implementation over the pinned maps, and an in-memory fake for tests.
//! - [`loader`]: loads the XDP program, sizes and pins its maps, attaches (or re-attaches) it.
//! - [`neighbour`]: interface and neighbour-table access over rtnetlink (real MAC resolution).
//! - [`state`]: config + neighbour MACs → ids, rings and map entries; applied to a `Dataplane`.
//! - [`admin`]: the admin socket protocol (requests, replies) and its server.
//! - [`daemon`]: `run(config, dataplane, listener, shutdown)`: the daemon's tasks.
//! - [`lbadm`]: the ipvsadm-like CLI, one module per verb.

pub mod admin;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod lbadm;
pub mod loader;
pub mod neighbour;
pub mod schedule;
pub mod state;

/// The XDP program, built for the BPF target by build.rs.
pub const EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb"));

/// Program names inside [`EBPF_OBJECT`].
pub const PROGRAM_BALANCER: &str = "lb_xdp";
pub const PROGRAM_PASS: &str = "xdp_pass";

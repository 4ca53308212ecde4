//! The admin socket: what lbadm may ask the daemon, and the daemon's answers.
//!
//! One JSON object per line each way, one request per connection. The socket is created with
//! mode 0600 (0660 with `admin.group`): whoever can use it controls the data plane. lbadm
//! refuses a socket another user owns.
//!
//! # Layout
//!
//! - `protocol.rs`: requests and replies (the wire format);
//! - `listing.rs`: answers built from the published desired state and the data plane's
//!   counters and flow table, read without waiting for the writer (the metrics pages read
//!   the same listing);
//! - `rates.rs`: per-second rates, estimated from the counters as IPVS does;
//! - `server.rs`: the daemon side of the socket;
//! - `admission.rs`: the bounds on what clients take (connections, request rate, size and
//!   time), so a runaway script cannot starve the daemon;
//! - `dump.rs`: `lbadm dump` on the daemon's side: a capture armed, its packets streamed
//!   back on the connection (the one request answered with more than one line);
//! - `client.rs`: lbadm's side.

pub mod admission;
mod client;
mod dump;
mod listing;
mod protocol;
mod rates;
mod server;

pub use client::{ClientError, connect, request};
pub use dump::{WRITE_STALL, action_name, resolve as resolve_dump};
pub use listing::{format_mac, listing, monotonic_now_ns, sample_rates};
pub use protocol::*;
pub use rates::{ESTIMATE_EVERY, RateBoard, RateKey};
pub use server::{AdminContext, SocketError, bind_admin_socket, serve_connection};

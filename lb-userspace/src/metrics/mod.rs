//! What a browser or Prometheus sees of the daemon: `/metrics` in the Prometheus text format
//! and, at `/`, a status page like HAProxy's.
//!
//! Both are read at request time from the same `View`: the admin socket's listing (the one
//! `lbadm -L -n --stats` shows, so the three cannot disagree), the desired state it was built
//! from, and the health board. Nothing here writes anything but the page's rate sample.
//!
//! # Layout
//!
//! - this file: [`Pages`] (what the server renders from) and the `View` both pages read;
//! - `http.rs`: a small HTTP/1.1 server, one request per connection;
//! - `prometheus.rs`: the text exposition format and the metrics in it;
//! - `page.rs`: the status page's HTML;
//! - `rates.rs`: per-second rates from the previous view of the page.

mod http;
mod page;
mod prometheus;
mod rates;
#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Instant, SystemTime},
};

pub use http::{MAX_CONNECTIONS, MAX_HEAD_BYTES, READ_TIMEOUT, serve};
use lb_common::ServiceKey;
use tokio::{net::TcpListener, sync::Semaphore};

use crate::{
    admin::{self, AdminContext, Listing, RealListing, ServiceListing},
    config::{CheckKind, Limits},
    dataplane::DataplaneError,
    health::{HealthBoard, HealthKey, RealHealth},
    reconcile::{Desired, DesiredService},
};

/// Renders at once at most: each walks every service's and real's counters with system calls.
const MAX_CONCURRENT_RENDERS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics listener {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("reading the data plane: {0}")]
    Dataplane(#[from] DataplaneError),
    #[error("rendering stopped: {0}")]
    Render(String),
}

/// Binds the metrics listener (`metrics.listen`).
pub async fn bind(address: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| MetricsError::Bind { address, source })
}

/// What the metrics server renders from; shared by its connections.
pub struct Pages {
    context: Arc<AdminContext>,
    health: Arc<HealthBoard>,
    /// The map sizes, for "configured of how many".
    limits: Limits,
    started: SystemTime,
    /// For the uptime: unlike `started`, it does not jump with the wall clock.
    started_instant: Instant,
    /// The page's previous sample, for its rates.
    rates: Mutex<rates::RateEstimator>,
    renders: Semaphore,
}

/// The two documents the server has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// `/metrics`.
    Metrics,
    /// `/`.
    StatusPage,
}

impl Pages {
    /// `limits` is the config's: the maps' sizes, which only a restart changes.
    pub fn new(context: Arc<AdminContext>, health: Arc<HealthBoard>, limits: Limits) -> Self {
        Self {
            context,
            health,
            limits,
            started: SystemTime::now(),
            started_instant: Instant::now(),
            rates: Mutex::new(rates::RateEstimator::default()),
            renders: Semaphore::new(MAX_CONCURRENT_RENDERS),
        }
    }

    /// The Prometheus text. Reads the maps: call it from a blocking thread.
    pub fn metrics_text(&self) -> Result<String, DataplaneError> {
        Ok(prometheus::render(&self.view()?))
    }

    /// The status page's HTML, its rates against the previous call's sample. Reads the maps:
    /// call it from a blocking thread.
    pub fn status_page(&self) -> Result<String, DataplaneError> {
        self.status_page_at(Instant::now())
    }

    fn status_page_at(&self, now: Instant) -> Result<String, DataplaneError> {
        let view = self.view()?;
        let rates = self
            .rates
            .lock()
            // A panic while holding it leaves at worst a stale sample.
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .update(now, rates::totals(&view));
        Ok(page::render(&view, &rates, now - self.started_instant))
    }

    /// Renders `document` on a blocking thread, at most `MAX_CONCURRENT_RENDERS` at once.
    pub async fn render(self: &Arc<Self>, document: Document) -> Result<String, MetricsError> {
        let _permit = self
            .renders
            .acquire()
            .await
            .map_err(|error| MetricsError::Render(error.to_string()))?;
        let pages = self.clone();
        tokio::task::spawn_blocking(move || match document {
            Document::Metrics => pages.metrics_text(),
            Document::StatusPage => pages.status_page(),
        })
        .await
        .map_err(|error| MetricsError::Render(error.to_string()))?
        .map_err(MetricsError::from)
    }

    fn view(&self) -> Result<View, DataplaneError> {
        let desired = self.context.desired.load_full();
        let listing = admin::listing(&self.context, &desired)?;
        Ok(View {
            listing,
            desired,
            health: self.health.snapshot(),
            context: self.context.clone(),
            limits: self.limits,
            started: self.started,
        })
    }
}

/// One reading of everything the pages show. The listing was built from `desired`, so their
/// services and reals are in the same order.
struct View {
    listing: Listing,
    desired: Arc<Desired>,
    health: HashMap<HealthKey, RealHealth>,
    context: Arc<AdminContext>,
    limits: Limits,
    started: SystemTime,
}

impl View {
    fn services(&self) -> impl Iterator<Item = ServiceRow<'_>> {
        debug_assert_eq!(self.listing.services.len(), self.desired.services.len());
        self.listing
            .services
            .iter()
            .zip(&self.desired.services)
            .map(|(listing, desired)| ServiceRow {
                listing,
                label: format!(
                    "{}/{}",
                    listing.protocol,
                    SocketAddr::new(listing.vip, listing.port)
                ),
                desired,
                health: &self.health,
            })
    }

    /// Flows in the table, as the reals' connection counts have them: the sum of their
    /// active and inactive connections (the table itself is not walked).
    fn live_flows(&self) -> u64 {
        self.listing
            .services
            .iter()
            .flat_map(|service| &service.reals)
            .map(|real| real.active_conn + real.inactive_conn)
            .sum()
    }

    /// Reals configured, sorry servers not included.
    fn real_count(&self) -> usize {
        self.listing
            .services
            .iter()
            .flat_map(|service| &service.reals)
            .filter(|real| !real.sorry_server)
            .count()
    }
}

struct ServiceRow<'a> {
    listing: &'a ServiceListing,
    /// `tcp/192.0.2.10:80`, `udp/[2001:db8::1]:53`.
    label: String,
    desired: &'a DesiredService,
    health: &'a HashMap<HealthKey, RealHealth>,
}

impl<'a> ServiceRow<'a> {
    fn key(&self) -> ServiceKey {
        self.desired.key
    }

    fn reals(&self) -> impl Iterator<Item = RealRow<'a>> + '_ {
        debug_assert_eq!(self.listing.reals.len(), self.desired.reals.len());
        let checked = self
            .desired
            .config
            .health_check
            .as_ref()
            .is_some_and(|check| check.kind != CheckKind::None);
        self.listing
            .reals
            .iter()
            .zip(&self.desired.reals)
            .map(move |(listing, desired)| {
                let key = HealthKey {
                    service: self.desired.key,
                    address: listing.address,
                    port: listing.port,
                };
                let health = match self.health.get(&key) {
                    Some(health) => Health::Checked(health),
                    None if checked => Health::Pending {
                        up: desired.healthy,
                    },
                    None => Health::Unchecked,
                };
                RealRow {
                    listing,
                    key,
                    label: SocketAddr::new(listing.address, listing.port).to_string(),
                    health,
                }
            })
    }
}

struct RealRow<'a> {
    listing: &'a RealListing,
    key: HealthKey,
    /// `192.0.2.11:80`, `[2001:db8::32]:443`.
    label: String,
    health: Health<'a>,
}

/// What the health checks say of a real.
enum Health<'a> {
    /// Its service has no health check: always up.
    Unchecked,
    /// Checked, but no check has reported yet; `up` is what the reconciler goes by meanwhile.
    Pending {
        up: bool,
    },
    Checked(&'a RealHealth),
}

impl Health<'_> {
    fn up(&self) -> bool {
        match self {
            Health::Unchecked => true,
            Health::Pending { up } => *up,
            Health::Checked(health) => health.up,
        }
    }
}

//! `metrics`: where the Prometheus endpoint and the status page listen.

use std::net::SocketAddr;

use super::Validator;
use crate::config::{ConfigError, raw::RawMetrics};

impl Validator<'_> {
    /// `None` when the file has no `metrics` key. A `metrics` key without `listen` is an
    /// error rather than "no metrics": whoever wrote it expects a listener.
    pub(super) fn metrics(
        &self,
        raw: Option<RawMetrics>,
    ) -> Result<Option<SocketAddr>, ConfigError> {
        const WHAT: &str = "ADDR:PORT the metrics server listens on, e.g. 127.0.0.1:9105";
        if raw.is_none() && !self.source_map.contains("metrics") {
            return Ok(None);
        }
        let raw = self.required(raw, "metrics", WHAT)?;
        let text = self.required(raw.listen, "metrics.listen", WHAT)?;
        let listen: SocketAddr = text.parse().map_err(|_| {
            self.invalid(
                "metrics.listen",
                format!(
                    "invalid address {text:?}: expected an IP address and a port, \
                     127.0.0.1:9105 or [::1]:9105 (no host names)"
                ),
            )
        })?;
        // Port 0 would listen somewhere nobody can be told to scrape.
        if listen.port() == 0 {
            return Err(self.invalid("metrics.listen", format!("{text}: the port must not be 0")));
        }
        Ok(Some(listen))
    }
}

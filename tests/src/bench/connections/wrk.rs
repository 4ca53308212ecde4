//! wrk's report, read.

/// wrk's summary, as [`parse_wrk`] reads it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct WrkSummary {
    pub(super) requests_per_s: f64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) errors: u64,
}

/// Reads `Requests/sec`, the latency distribution (`--latency`), the socket errors and
/// non-2xx answers from wrk's report.
pub(super) fn parse_wrk(report: &str) -> Result<WrkSummary, String> {
    let mut requests_per_s = None;
    let mut percentiles = [None; 2];
    let mut errors = 0;
    let mut in_distribution = false;
    for line in report.lines().map(str::trim) {
        if let Some(rate) = line.strip_prefix("Requests/sec:") {
            requests_per_s = Some(number(rate.trim())?);
        } else if line.starts_with("Latency Distribution") {
            in_distribution = true;
        } else if in_distribution && let Some((percent, latency)) = line.split_once('%') {
            let slot = match percent.trim() {
                "50" => 0,
                "99" => 1,
                _ => continue,
            };
            percentiles[slot] = Some(duration_ms(latency.trim())?);
        } else if let Some(counts) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 3, write 0, timeout 0"
            for count in counts.split(',') {
                let value = count.split_whitespace().nth(1).unwrap_or("");
                errors += number(value)? as u64;
            }
        } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += number(count.trim())? as u64;
        } else {
            in_distribution &= line.contains('%');
        }
    }
    let missing = |what: &str| format!("no {what} in wrk's report:\n{report}");
    let [p50, p99] = percentiles;
    Ok(WrkSummary {
        requests_per_s: requests_per_s.ok_or_else(|| missing("Requests/sec"))?,
        p50_ms: p50.ok_or_else(|| missing("50% latency"))?,
        p99_ms: p99.ok_or_else(|| missing("99% latency"))?,
        errors,
    })
}

fn number(text: &str) -> Result<f64, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a number"))
}

/// A duration as wrk prints it (`812.00us`, `1.53ms`, `2.00s`, `1.00m`), in milliseconds.
fn duration_ms(text: &str) -> Result<f64, String> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| format!("{text:?} has no unit"))?;
    let (value, unit) = text.split_at(split);
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return Err(format!("unknown unit in {text:?}")),
    };
    Ok(number(value)? * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 3s test @ http://192.0.2.100:80/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.91ms    1.05ms  27.01ms   91.27%
    Req/Sec     8.57k   412.33     9.11k    80.00%
  Latency Distribution
     50%    1.72ms
     75%    1.02s
     90%    2.55ms
     99%  812.00us
  25601 requests in 3.00s, 3.74MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 1
Requests/sec:   8533.59
Transfer/sec:      1.25MB
";

    #[test]
    fn reads_wrk_report() {
        assert_eq!(
            parse_wrk(REPORT),
            Ok(WrkSummary {
                requests_per_s: 8533.59,
                p50_ms: 1.72,
                p99_ms: 0.812,
                errors: 6,
            })
        );
    }

    #[test]
    fn refuses_a_report_without_latencies() {
        let report = REPORT.replace("  Latency Distribution\n", "");
        assert!(parse_wrk(&report).is_err());
    }
}

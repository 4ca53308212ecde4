//! What the admin socket lets clients take: connections at once, requests per second, time
//! to send a request, and memory for requests being read.
//!
//! Only root (or the configured group) can connect, so these bounds are against runaway
//! scripts and broken clients more than against strangers: a loop calling `lbadm` as fast as
//! it can, a client that connects and never writes, a thousand restores at once. Each is
//! refused with an error reply naming the bound, cheaply, while traffic and the other tasks
//! go on; requests within the bounds are never refused.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt as _},
    sync::{OwnedSemaphorePermit, Semaphore},
};

use super::MAX_REQUEST_BYTES;

/// Connections served at once, `lbadm dump`s included.
pub const MAX_CONNECTIONS: usize = 32;
/// Requests accepted per second, on average: a cheap request (status, an edit) costs well
/// under a millisecond, so this keeps a runaway loop to a fraction of a core, far above any
/// monitoring's polling.
pub const REQUESTS_PER_SECOND: u32 = 1000;
/// Requests accepted at once above the average (a script's burst of edits).
pub const REQUEST_BURST: u32 = 2000;
/// How long a client has to send its whole request line.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How long a client has to take its reply (a listing of a million flows included).
pub const REPLY_DEADLINE: Duration = Duration::from_secs(60);
/// Bytes of request lines being read at once, over all connections: two restores of a full
/// table ([`MAX_REQUEST_BYTES`]) and more, but not [`MAX_CONNECTIONS`] of them.
pub const REQUEST_BYTES_IN_FLIGHT: usize = 4 * MAX_REQUEST_BYTES;

/// The unit of the byte budget: permits are counted in KiB.
const BUDGET_UNIT: usize = 1024;

pub struct Admission {
    connections: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    bucket: Mutex<TokenBucket>,
}

/// Why a connection or request was turned away; the text is the error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("busy: {MAX_CONNECTIONS} admin connections are open; try again")]
    Connections,
    #[error(
        "busy: more than {REQUESTS_PER_SECOND} requests per second (bursts of \
         {REQUEST_BURST}); try again"
    )]
    Rate,
    #[error("request not sent within {REQUEST_DEADLINE:?}")]
    Deadline,
    #[error("request missing or longer than {MAX_REQUEST_BYTES} bytes")]
    TooLong,
    #[error("request is not UTF-8 text")]
    NotText,
    #[error("busy: requests being read take {REQUEST_BYTES_IN_FLIGHT} bytes already; try again")]
    Memory,
}

/// A connection's place: held while it is served.
pub struct Ticket {
    _connection: OwnedSemaphorePermit,
}

/// A request line, with the budget it holds until it is dropped.
pub struct RequestLine {
    pub text: String,
    _budget: Option<OwnedSemaphorePermit>,
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            bytes: Arc::new(Semaphore::new(REQUEST_BYTES_IN_FLIGHT / BUDGET_UNIT)),
            bucket: Mutex::new(TokenBucket::new(
                REQUESTS_PER_SECOND,
                REQUEST_BURST,
                Instant::now(),
            )),
        }
    }
}

impl Admission {
    /// A place for a new connection, if one is free and the rate allows another request.
    pub fn admit(&self) -> Result<Ticket, Refusal> {
        let connection = self
            .connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Connections)?;
        if !self
            .bucket
            .lock()
            .expect("the bucket's lock is never poisoned")
            .take(Instant::now())
        {
            return Err(Refusal::Rate);
        }
        Ok(Ticket {
            _connection: connection,
        })
    }

    /// Reads one request line within [`REQUEST_DEADLINE`], [`MAX_REQUEST_BYTES`] and the
    /// shared byte budget. The first 64 KiB of a line are free of the budget: every
    /// ordinary request is shorter, so only restores draw on it.
    pub async fn read_line(
        &self,
        reader: &mut (impl AsyncBufRead + Unpin),
    ) -> Result<RequestLine, Refusal> {
        tokio::time::timeout(REQUEST_DEADLINE, self.read_within_budget(reader))
            .await
            .map_err(|_| Refusal::Deadline)?
    }

    async fn read_within_budget(
        &self,
        reader: &mut (impl AsyncBufRead + Unpin),
    ) -> Result<RequestLine, Refusal> {
        const FREE: usize = 64 * 1024;
        let mut line = Vec::new();
        let mut budget: Option<OwnedSemaphorePermit> = None;
        loop {
            let available = reader.fill_buf().await.map_err(|_| Refusal::TooLong)?;
            if available.is_empty() {
                return Err(Refusal::TooLong);
            }
            let (taken, complete) = match available.iter().position(|&byte| byte == b'\n') {
                Some(end) => (end + 1, true),
                None => (available.len(), false),
            };
            if line.len() + taken > MAX_REQUEST_BYTES {
                return Err(Refusal::TooLong);
            }
            let wanted = (line.len() + taken)
                .saturating_sub(FREE)
                .div_ceil(BUDGET_UNIT);
            let held = budget.as_ref().map_or(0, |permit| permit.num_permits());
            if wanted > held {
                let more = self
                    .bytes
                    .clone()
                    .try_acquire_many_owned((wanted - held) as u32)
                    .map_err(|_| Refusal::Memory)?;
                match &mut budget {
                    Some(permit) => permit.merge(more),
                    None => budget = Some(more),
                }
            }
            line.extend_from_slice(&available[..taken]);
            reader.consume(taken);
            if complete {
                let text = String::from_utf8(line).map_err(|_| Refusal::NotText)?;
                return Ok(RequestLine {
                    text,
                    _budget: budget,
                });
            }
        }
    }
}

/// `rate` tokens a second, at most `burst` saved up; one per request.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32, now: Instant) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            at: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(REQUESTS_PER_SECOND, REQUEST_BURST, start);
        let burst = REQUEST_BURST as usize;
        assert_eq!((0..3 * burst).filter(|_| bucket.take(start)).count(), burst);
        // A tenth of a second later, a tenth of a second's worth more.
        let later = start + Duration::from_millis(100);
        let tenth = REQUESTS_PER_SECOND as usize / 10;
        assert_eq!((0..3 * burst).filter(|_| bucket.take(later)).count(), tenth);
        // Saving up stops at the burst.
        let much_later = later + Duration::from_secs(3600);
        assert_eq!(
            (0..3 * burst).filter(|_| bucket.take(much_later)).count(),
            burst
        );
    }

    #[test]
    fn connections_beyond_the_limit_are_refused_until_one_closes() {
        let admission = Admission::default();
        let tickets: Vec<_> = (0..MAX_CONNECTIONS)
            .map(|_| admission.admit().expect("within the limit"))
            .collect();
        assert_eq!(admission.admit().err(), Some(Refusal::Connections));
        drop(tickets);
        assert!(admission.admit().is_ok());
    }

    #[tokio::test]
    async fn a_line_is_read_whole_and_a_long_or_unfinished_one_refused() {
        let admission = Admission::default();
        let mut input: &[u8] = b"{\"request\":\"list\"}\nrest";
        let line = admission.read_line(&mut input).await.expect("a line");
        assert_eq!(line.text, "{\"request\":\"list\"}\n");

        let mut binary: &[u8] = b"\xff\xfe\n";
        assert_eq!(
            admission.read_line(&mut binary).await.err(),
            Some(Refusal::NotText)
        );

        let mut unfinished: &[u8] = b"{\"request\":";
        assert_eq!(
            admission.read_line(&mut unfinished).await.err(),
            Some(Refusal::TooLong)
        );

        let long = vec![b'x'; MAX_REQUEST_BYTES + 1];
        assert_eq!(
            admission.read_line(&mut long.as_slice()).await.err(),
            Some(Refusal::TooLong)
        );
    }

    #[tokio::test]
    async fn large_lines_share_a_budget_and_return_it() {
        let admission = Admission::default();
        let mut restore = vec![b'x'; MAX_REQUEST_BYTES - 1];
        restore.push(b'\n');
        let held: Vec<_> = read_lines(&admission, &restore, 4).await;
        // Four full-size lines take the whole budget (less their free 64 KiB): a fifth is
        // refused while they are held.
        assert_eq!(
            admission.read_line(&mut restore.as_slice()).await.err(),
            Some(Refusal::Memory)
        );
        drop(held);
        assert!(admission.read_line(&mut restore.as_slice()).await.is_ok());
    }

    async fn read_lines(admission: &Admission, line: &[u8], count: usize) -> Vec<RequestLine> {
        let mut lines = Vec::new();
        for _ in 0..count {
            lines.push(admission.read_line(&mut &line[..]).await.expect("fits"));
        }
        lines
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_finishes_is_cut_off() {
        let admission = Admission::default();
        let (_writer, reader) = tokio::io::duplex(64);
        let mut reader = tokio::io::BufReader::new(reader);
        assert_eq!(
            admission.read_line(&mut reader).await.err(),
            Some(Refusal::Deadline)
        );
    }
}

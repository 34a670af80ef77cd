//! The `http` sink: POSTs (or PUTs) each batch as NDJSON or a JSON array, optionally
//! gzip-compressed, authenticated (bearer or basic) and signed (HMAC-SHA256), over one
//! pooled `reqwest` client (rustls).
//!
//! How an attempt ends decides what the driver does with the batch:
//! - 2xx: delivered.
//! - no answer (connection refused or reset, DNS, TLS handshake, timeout), 408, 429 and
//!   5xx: retried, after the response's `Retry-After` when it has a usable one (seconds
//!   or an HTTP date; capped at an hour; zero or a past date means the sink's backoff),
//!   else after the sink's backoff.
//! - every other status (400, 401, 403, 404, 413, …; a 1xx or 3xx that reached us):
//!   refused for good — dead-lettered or dropped — with the status and the start of the
//!   response body in the message.
//!
//! Redirects: 307 and 308 (which keep the method and body) are followed, up to 10; 301,
//! 302 and 303 are not, because following them would turn the POST into a body-less GET
//! and count the batch as delivered — the batch is refused, naming the new location.

mod config;
#[cfg(test)]
mod tests;

use config::{BodyEncoding, Resolved};
pub use config::{HttpSinkConfig, Secret};

use super::{Payload, SendError, SinkConfig, SinkService};
use crate::config::Problems;
use crate::encoding::Format;
use crate::event::Event;
use crate::metrics::{Counter, Registry};
use futures_util::future::BoxFuture;
use reqwest::header::{self, HeaderName};
use reqwest::{StatusCode, Url, redirect};
use ring::hmac;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How much of an error response's body goes into the message.
const BODY_IN_MESSAGE: usize = 200;
/// How much of a response body is read (and dropped) so the connection can be reused.
const BODY_DRAIN_LIMIT: usize = 64 * 1024;
/// The longest `Retry-After` taken as given.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How many 307/308 redirects are followed.
const MAX_REDIRECTS: usize = 10;
/// A scratch buffer (the uncompressed body) larger than this is not kept between batches.
const SCRATCH_KEEP: usize = 8 * 1024 * 1024;

impl SinkConfig for HttpSinkConfig {
    fn validate(&self, problems: &mut Problems) {
        let mut found = Vec::new();
        self.resolve(&mut found);
        for (path, message) in found {
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            problems.at_path(&path, message);
        }
    }

    fn build(
        &self,
        name: &str,
        _data_dir: &std::path::Path,
    ) -> anyhow::Result<Arc<dyn SinkService>> {
        Ok(Arc::new(HttpService::new(self, name)?))
    }
}

/// Signs request bodies: HMAC-SHA256 over `timestamp + "." + body`.
pub(crate) struct Signer {
    key: hmac::Key,
    timestamp_header: HeaderName,
    signature_header: HeaderName,
}

impl Signer {
    fn new(key: &[u8], timestamp_header: HeaderName, signature_header: HeaderName) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            timestamp_header,
            signature_header,
        }
    }

    /// The signature header's value: `v1=<lowercase hex MAC>`.
    fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(timestamp.as_bytes());
        context.update(b".");
        context.update(body);
        let tag = context.sign();
        let mut out = String::with_capacity(3 + 64);
        out.push_str("v1=");
        for b in tag.as_ref() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
        out
    }
}

/// Per-sink response counters (`sink.<name>`), next to the driver's.
struct HttpCounters {
    status_2xx: Counter,
    status_4xx: Counter,
    status_5xx: Counter,
    status_other: Counter,
    timeouts: Counter,
    connection_errors: Counter,
}

impl HttpCounters {
    fn new(sink: &str) -> Self {
        let c = format!("sink.{sink}");
        let r = Registry::global();
        Self {
            status_2xx: r.counter(&c, "http_2xx"),
            status_4xx: r.counter(&c, "http_4xx"),
            status_5xx: r.counter(&c, "http_5xx"),
            status_other: r.counter(&c, "http_other_status"),
            timeouts: r.counter(&c, "http_timeouts"),
            connection_errors: r.counter(&c, "http_connection_errors"),
        }
    }

    fn status(&self, status: StatusCode) -> &Counter {
        match status.as_u16() {
            200..=299 => &self.status_2xx,
            400..=499 => &self.status_4xx,
            500..=599 => &self.status_5xx,
            _ => &self.status_other,
        }
    }
}

struct HttpService {
    client: reqwest::Client,
    url: Url,
    /// The URL without credentials, for messages.
    uri: String,
    method: reqwest::Method,
    encoding: BodyEncoding,
    /// The gzip level, when compressing.
    gzip: Option<u32>,
    signer: Option<Signer>,
    in_flight: usize,
    /// Idle gzip encoders with their buffer for the uncompressed body, reused between
    /// batches (at most one per batch in flight): a fresh deflate state and body buffer
    /// per batch cost allocator churn and resident memory.
    compressors: Mutex<Vec<Compressor>>,
    counters: HttpCounters,
}

impl HttpService {
    fn new(config: &HttpSinkConfig, name: &str) -> anyhow::Result<Self> {
        let mut found = Vec::new();
        let Some(resolved) = config.resolve(&mut found) else {
            let problems: Vec<String> = found
                .iter()
                .map(|(path, message)| format!("{}: {message}", path.join(".")))
                .collect();
            anyhow::bail!("sink `{name}`: {}", problems.join("; "));
        };
        let Resolved {
            url,
            display_uri,
            method,
            encoding,
            gzip,
            headers,
            signature,
            ca_certificates,
            verify,
            connect_timeout,
            request_timeout,
            in_flight,
            user_agent,
            follow_redirects,
        } = resolved;
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(user_agent)
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .redirect(redirect::Policy::custom(move |attempt| {
                follow(attempt, follow_redirects)
            }))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true);
        for certificate in ca_certificates {
            builder = builder.add_root_certificate(certificate);
        }
        if !verify {
            tracing::warn!(
                sink = %name,
                uri = %display_uri,
                "tls.verify = false: the server's certificate is not checked"
            );
            builder = builder.danger_accept_invalid_certs(true);
        }
        let client = builder
            .build()
            .map_err(|e| anyhow::anyhow!("sink `{name}`: the HTTP client: {}", chain(&e)))?;
        Ok(Self {
            client,
            url,
            uri: display_uri,
            method,
            encoding,
            gzip,
            signer: signature,
            in_flight,
            compressors: Mutex::new(Vec::new()),
            counters: HttpCounters::new(name),
        })
    }

    /// One attempt.
    async fn post(&self, body: bytes::Bytes) -> Result<(), SendError> {
        let mut request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .body(body.clone());
        if let Some(signer) = &self.signer {
            // A fresh timestamp per attempt: a retry after an outage is not stale.
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                .to_string();
            let signature = signer.sign(&timestamp, &body);
            request = request
                .header(signer.timestamp_header.clone(), timestamp)
                .header(signer.signature_header.clone(), signature);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Err(self.transport_error(e)),
        };
        let status = response.status();
        self.counters.status(status).add(1);
        if status.is_success() {
            // Read the (small) answer so the connection goes back to the pool; the batch
            // is delivered whatever happens to it.
            let _ = read_body(response, 0).await;
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| parse_retry_after(v.as_bytes(), SystemTime::now()));
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer = read_body(response, BODY_IN_MESSAGE).await;
        Err(status_error(
            status,
            retry_after,
            location.as_deref(),
            &answer,
            &self.uri,
        ))
    }

    fn transport_error(&self, e: reqwest::Error) -> SendError {
        let e = e.without_url();
        let detail = chain(&e);
        if e.is_timeout() {
            self.counters.timeouts.add(1);
            SendError::retry(format!("{}: timed out: {detail}", self.uri))
        } else if e.is_redirect() {
            SendError::reject(format!("{}: {detail}", self.uri))
        } else if e.is_builder() {
            SendError::reject(format!(
                "{}: could not make the request: {detail}",
                self.uri
            ))
        } else {
            self.counters.connection_errors.add(1);
            SendError::retry(format!("{}: {detail}", self.uri))
        }
    }
}

impl SinkService for HttpService {
    fn encode(&self, events: &[Event], out: &mut Vec<u8>) {
        let Some(level) = self.gzip else {
            encode_body(self.encoding, events, out);
            return;
        };
        let idle = self
            .compressors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let mut compressor = idle.unwrap_or_else(|| Compressor::new(level));
        compressor.plain.clear();
        encode_body(self.encoding, events, &mut compressor.plain);
        compressor.compress(out);
        if compressor.plain.capacity() > SCRATCH_KEEP {
            compressor.plain = Vec::new();
        }
        let mut idle = self.compressors.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.in_flight {
            idle.push(compressor);
        }
    }

    fn send(self: Arc<Self>, payload: Arc<Payload>) -> BoxFuture<'static, Result<(), SendError>> {
        Box::pin(async move { self.post(payload.bytes.clone()).await })
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

/// The events as NDJSON or as a JSON array, each the `json` format's object.
fn encode_body(encoding: BodyEncoding, events: &[Event], out: &mut Vec<u8>) {
    match encoding {
        BodyEncoding::Ndjson => {
            for event in events {
                Format::Json.encode(event, out);
            }
        }
        BodyEncoding::JsonArray => {
            out.push(b'[');
            for event in events {
                Format::Json.encode(event, out);
                // The encoder ends each object with a newline (never inside one: strings
                // are escaped); it becomes the separator.
                if let Some(last) = out.last_mut() {
                    *last = b',';
                }
            }
            match out.last_mut() {
                Some(last) if *last == b',' => *last = b']',
                _ => out.push(b']'),
            }
        }
    }
}

/// A gzip compressor (`crate::compress`) and the buffer the uncompressed body is built
/// in, kept for reuse.
struct Compressor {
    plain: Vec<u8>,
    gzip: crate::compress::Gzip,
}

impl Compressor {
    fn new(level: u32) -> Self {
        Self {
            plain: Vec::new(),
            gzip: crate::compress::Gzip::new(level),
        }
    }

    /// Appends `self.plain` as one gzip member to `out`.
    fn compress(&mut self, out: &mut Vec<u8>) {
        self.gzip.compress(&self.plain, out);
    }
}

/// What an HTTP status means for the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Delivered,
    Retry,
    Reject,
}

fn classify(status: StatusCode) -> Class {
    match status.as_u16() {
        200..=299 => Class::Delivered,
        408 | 429 | 500..=599 => Class::Retry,
        _ => Class::Reject,
    }
}

/// The error for a response that is not a success.
fn status_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    location: Option<&str>,
    answer: &[u8],
    uri: &str,
) -> SendError {
    let mut message = format!("{uri} answered {status}");
    if status.is_redirection() {
        match location {
            Some(location) => message.push_str(&format!(
                " to {location}: not followed (only 307/308 keep the method and body); \
                 point `uri` at the new location"
            )),
            None => message.push_str(" without a Location"),
        }
    } else if status == StatusCode::PAYLOAD_TOO_LARGE {
        message.push_str(" (lower the sink's batch_size or batch_bytes)");
    }
    let answer = String::from_utf8_lossy(answer);
    let answer = answer.trim();
    if !answer.is_empty() {
        message.push_str(": ");
        message.push_str(answer);
    }
    match classify(status) {
        Class::Retry => SendError::Retry {
            message,
            after: retry_after,
        },
        // Not reached for a 2xx (the caller handles it), but never count one as lost.
        Class::Delivered => SendError::retry(message),
        Class::Reject => SendError::reject(message),
    }
}

/// Follows 307/308 (method and body kept) up to `MAX_REDIRECTS`; anything else is
/// returned as it is.
/// Follows 307 and 308 (which keep the method and body) as `policy` allows; other
/// redirects are answers (classified like any status).
fn follow(attempt: redirect::Attempt<'_>, policy: config::FollowRedirects) -> redirect::Action {
    let status = attempt.status();
    if status != StatusCode::TEMPORARY_REDIRECT && status != StatusCode::PERMANENT_REDIRECT {
        return attempt.stop();
    }
    let first = attempt.previous().first().map(Url::origin);
    let to = attempt.url().origin();
    if policy == config::FollowRedirects::Never {
        attempt.error("a redirect, and follow_redirects = \"never\"")
    } else if first.is_some_and(|first| first != to) {
        // Not `attempt.url()` itself: its query may hold a secret.
        let to = to.ascii_serialization();
        attempt.error(format!(
            "a redirect to another origin ({to}) is not followed (follow_redirects = \"same_origin\")"
        ))
    } else if attempt.previous().len() > MAX_REDIRECTS {
        attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
    } else {
        attempt.follow()
    }
}

/// Reads a response's body: keeps its first `keep` bytes (valid UTF-8 cut at a char
/// boundary is the caller's business), drains up to `BODY_DRAIN_LIMIT` so the
/// connection can be reused, and gives up on errors.
async fn read_body(mut response: reqwest::Response, keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut read = 0;
    while read < BODY_DRAIN_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                let room = keep.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..room.min(chunk.len())]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    kept
}

/// An error and its sources, `a: b: c` (repeats left out).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A `Retry-After` value: delta-seconds or an HTTP date (IMF-fixdate, RFC 850 or asctime).
/// `None` when it does not parse, or says now or the past (then the sink's backoff
/// applies, so a server answering `Retry-After: 0` is not hammered). Capped at
/// `MAX_RETRY_AFTER`.
fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let delay = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is absurdly far anyway.
        Duration::from_secs(
            text.parse::<u64>()
                .unwrap_or(u64::MAX)
                .min(MAX_RETRY_AFTER.as_secs()),
        )
    } else {
        let at = UNIX_EPOCH + Duration::from_secs(parse_http_date(text)?);
        at.duration_since(now).ok()?
    };
    if delay.is_zero() {
        return None;
    }
    Some(delay.min(MAX_RETRY_AFTER))
}

/// An HTTP date (RFC 9110 §5.6.7) as seconds since the epoch; GMT only.
fn parse_http_date(text: &str) -> Option<u64> {
    let (day, month, year, time) = if let Some((_weekday, rest)) = text.split_once(',') {
        let parts: Vec<&str> = rest.split_ascii_whitespace().collect();
        match parts.as_slice() {
            // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
            [day, month, year, time, "GMT"] if year.len() == 4 => {
                (*day, *month, year.parse::<u64>().ok()?, *time)
            }
            // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
            [date, time, "GMT"] => {
                let mut date = date.split('-');
                let (day, month, yy) = (date.next()?, date.next()?, date.next()?);
                if date.next().is_some() || yy.len() != 2 {
                    return None;
                }
                let yy = yy.parse::<u64>().ok()?;
                (
                    day,
                    month,
                    if yy < 70 { 2000 + yy } else { 1900 + yy },
                    *time,
                )
            }
            _ => return None,
        }
    } else {
        // asctime: Sun Nov  6 08:49:37 1994
        let parts: Vec<&str> = text.split_ascii_whitespace().collect();
        match parts.as_slice() {
            [_weekday, month, day, time, year] if year.len() == 4 => {
                (*day, *month, year.parse::<u64>().ok()?, *time)
            }
            _ => return None,
        }
    };
    if day.is_empty() || day.len() > 2 || !day.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let day: u64 = day.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let mut hms = time.split(':');
    let mut field = |max: u64| -> Option<u64> {
        let f = hms.next()?;
        if f.len() != 2 {
            return None;
        }
        f.parse::<u64>().ok().filter(|v| *v <= max)
    };
    let (h, m, s) = (field(23)?, field(59)?, field(60)?);
    if hms.next().is_some() || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    let days = u64::try_from(crate::encoding::days_from_civil(
        year as i64,
        month as u32,
        day as u32,
    ))
    .ok()?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

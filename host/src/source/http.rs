//! The `http` source: apps `POST` their logs. The body is read by its `Content-Type`:
//! `application/json` — an array of records, or one record; `application/x-ndjson` —
//! one JSON record per line; anything else — plain text lines. Each record (its compact
//! JSON text) or line is one event's body; the `json` parser plugin turns records into
//! fields. `Content-Encoding: gzip` bodies are inflated (within the same size limit).
//!
//! The answer says what became of the batch:
//! - `200 {"accepted": N}` once the source's channels hold it (a `file` channel: on
//!   disk) — a client may forget what got a 200;
//! - `429` with `Retry-After: 1` when the pipeline cannot take it within
//!   `accept_timeout_ms` (its channels are full, or its worker busy): nothing of the
//!   request was taken, so sending it again duplicates nothing — backpressure, never a
//!   silent drop;
//! - `413` above `max_body_bytes` (compressed or inflated) or `max_events_per_request`,
//!   `400` for a body that is not what its type says (naming the line), `401` without
//!   the bearer token, `408` when the body does not arrive within `body_timeout_secs`,
//!   `415` for an unknown `Content-Encoding`, `503` when the agent is stopping.
//!
//! A request's events go to the pipeline as one batch, which the source's worker cuts
//! into `batch_size` / `batch_bytes` parts for the plugin chain and the channels; the
//! 200 comes once every part is in. What one request can make the agent hold is
//! bounded: `max_body_bytes` of body (read, then inflated: one at a time) and
//! `max_events_per_request` events, counted while the body is read (a body of newlines
//! or a JSON array of zeros is refused before its events are made).
//!
//! `GET /health` answers `ok`.
//!
//! Connections come through the shared [`listener`](super::listener): limits in all and
//! per peer address, an idle timeout, and TLS when `tls` is set; each is served by
//! hyper (HTTP/1.1, keep-alive; the request head must arrive within
//! `header_timeout_secs`) and closed gracefully when the agent stops.

use super::listener::{self, Limits};
use super::{Batcher, SourceConfig, SourceContext};
use crate::config::Problems;
use crate::event::Event;
use crate::sink::http::Secret;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// Where to listen: `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// The largest body taken (compressed, and again inflated).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Requests must carry `Authorization: Bearer <token>` (inline or in a file).
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<PathBuf>,
    /// Connections served at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections from one address at once.
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    /// Serve HTTPS: `{ cert_file = "…", key_file = "…" }`.
    pub tls: Option<super::tls::TlsConfig>,
    /// The most events one request may carry (records of a JSON array or NDJSON body,
    /// lines of a text body); more is refused with 413.
    #[serde(default = "default_max_events_per_request")]
    pub max_events_per_request: usize,
    /// How long a request may wait for room in the source's channels before it is
    /// answered 429 (nothing of it taken).
    #[serde(default = "default_accept_timeout_ms")]
    pub accept_timeout_ms: u64,
    /// The request line and headers must arrive within this (slow clients that hold a
    /// connection with a partial request are cut off).
    #[serde(default = "default_header_timeout_secs")]
    pub header_timeout_secs: u64,
    /// The whole body must arrive within this after the headers (408 otherwise).
    #[serde(default = "default_body_timeout_secs")]
    pub body_timeout_secs: u64,
    /// A connection with no request in progress, or whose peer sends nothing (or reads
    /// nothing of the answer), is closed after this long.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
}

fn default_max_body_bytes() -> usize {
    10 * 1024 * 1024
}

fn default_max_events_per_request() -> usize {
    10_000
}

fn default_accept_timeout_ms() -> u64 {
    5_000
}

fn default_header_timeout_secs() -> u64 {
    10
}

fn default_body_timeout_secs() -> u64 {
    30
}

fn default_idle_timeout_secs() -> u64 {
    60
}

fn default_max_connections() -> usize {
    256
}

fn default_max_connections_per_peer() -> usize {
    64
}

impl HttpSourceConfig {
    fn token(&self) -> Result<Option<String>, (&'static str, String)> {
        match (&self.bearer_token, &self.bearer_token_file) {
            (Some(_), Some(_)) => Err((
                "bearer_token_file",
                "set `bearer_token` or `bearer_token_file`, not both".into(),
            )),
            (Some(Secret(token)), None) if token.is_empty() => {
                Err(("bearer_token", "must not be empty".into()))
            }
            (Some(Secret(token)), None) => Ok(Some(token.clone())),
            (None, Some(file)) => crate::bearer::read_file(file)
                .map(Some)
                .map_err(|e| ("bearer_token_file", format!("{}: {e}", file.display()))),
            (None, None) => Ok(None),
        }
    }

    /// The connection limits, as the listener takes them.
    fn limits(&self) -> Limits {
        Limits {
            connections: self.max_connections,
            per_peer: self.max_connections_per_peer,
            idle: Duration::from_secs(self.idle_timeout_secs),
        }
    }
}

impl SourceConfig for HttpSourceConfig {
    fn validate(&self, problems: &mut Problems) {
        if self.max_body_bytes == 0 {
            problems.at("max_body_bytes", "must be at least 1");
        }
        for (key, value) in [
            ("max_events_per_request", self.max_events_per_request as u64),
            ("accept_timeout_ms", self.accept_timeout_ms),
            ("header_timeout_secs", self.header_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
        ] {
            if value == 0 {
                problems.at(key, "must be at least 1");
            }
        }
        if let Err((key, message)) = self.token() {
            problems.at(key, message);
        }
        self.limits().validate(self.tls.as_ref(), problems);
    }

    fn run(&self, cx: SourceContext) -> BoxFuture<'static, ()> {
        let config = self.clone();
        Box::pin(async move {
            let token = match config.token() {
                Ok(token) => token,
                Err((key, e)) => {
                    cx.batcher.error(&format!("{key}: {e}"), None);
                    return;
                }
            };
            let state = Arc::new(Ingest {
                batcher: Mutex::new(cx.batcher.clone_for_task()),
                max_body: config.max_body_bytes,
                max_events: config.max_events_per_request,
                accept_timeout: Duration::from_millis(config.accept_timeout_ms),
                body_timeout: Duration::from_secs(config.body_timeout_secs),
                token,
                channels: cx.batcher.channels(),
                admitted: Mutex::default(),
                deciding: tokio::sync::Mutex::new(()),
            });
            let app = axum::Router::new()
                .route("/health", axum::routing::get(|| async { "ok\n" }))
                .fallback(ingest)
                .layer(axum::extract::DefaultBodyLimit::disable())
                .with_state(state);
            let limits = config.limits();
            let header_timeout = Duration::from_secs(config.header_timeout_secs);
            let source = cx.name.clone();
            listener::serve(
                config.listen,
                limits,
                config.tls.as_ref(),
                "http",
                cx,
                move |stream, peer, _batcher, shutdown| {
                    let (app, source) = (app.clone(), source.clone());
                    async move {
                        if let Err(e) =
                            serve_connection(stream, app, header_timeout, shutdown).await
                        {
                            tracing::debug!(%source, %peer, "http: connection ended: {e}");
                        }
                    }
                },
            )
            .await;
        })
    }
}

/// Serves one connection's requests (HTTP/1.1, keep-alive) until the peer closes it,
/// or, when the agent stops, after the request in progress.
async fn serve_connection(
    stream: listener::Stream,
    app: axum::Router,
    header_timeout: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), hyper::Error> {
    let service = hyper_util::service::TowerToHyperService::new(app);
    // hyper applies its header read timeout only with a timer. Its read buffer (where a
    // request head must fit, read before the token is checked) is kept to 64 KiB per
    // connection, not hyper's ~400 KB: 256 connections hold 16 MiB at most.
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => served,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

/// The most a connection buffers of a request head (hyper's read buffer).
const MAX_HEAD_BYTES: usize = 64 * 1024;

struct Ingest {
    /// A batcher to clone for each request.
    batcher: Mutex<Batcher>,
    max_body: usize,
    max_events: usize,
    accept_timeout: Duration,
    body_timeout: Duration,
    token: Option<String>,
    /// The channels the source's worker puts into, to ask them for room.
    channels: Arc<[crate::channel::Channel]>,
    /// Requests admitted and not yet in the channels (events, estimated bytes): a
    /// request is admitted only when the channels have room for it on top of these.
    admitted: Mutex<(usize, usize)>,
    /// One admission decision at a time, so concurrent requests cannot all count the
    /// same room.
    deciding: tokio::sync::Mutex<()>,
}

impl Ingest {
    /// Waits (up to `accept_timeout`, counting the wait for earlier decisions) until
    /// the channels have room for `events` events of `bytes` on top of the requests
    /// already admitted; `None` when they do not in time.
    async fn admit(&self, events: usize, bytes: usize) -> Option<Admission<'_>> {
        tokio::time::timeout(self.accept_timeout, async {
            let _deciding = self.deciding.lock().await;
            let (pending_events, pending_bytes) = *lock(&self.admitted);
            for channel in self.channels.iter() {
                channel
                    .room(pending_events + events, pending_bytes + bytes)
                    .await;
            }
            let mut admitted = lock(&self.admitted);
            admitted.0 += events;
            admitted.1 += bytes;
            Admission {
                ingest: self,
                events,
                bytes,
            }
        })
        .await
        .ok()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// An admitted request: its events count against the room until its answer is known.
struct Admission<'a> {
    ingest: &'a Ingest,
    events: usize,
    bytes: usize,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        let mut admitted = lock(&self.ingest.admitted);
        admitted.0 -= self.events;
        admitted.1 -= self.bytes;
    }
}

fn answer(status: StatusCode, message: impl Into<String>) -> Response {
    (status, format!("{}\n", message.into())).into_response()
}

async fn ingest(
    State(ingest): State<Arc<Ingest>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if method != Method::POST && method != Method::PUT {
        return answer(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST logs here; GET /health",
        );
    }
    if let Some(token) = &ingest.token
        && !crate::bearer::matches(&headers, token)
    {
        let mut response = answer(StatusCode::UNAUTHORIZED, "a bearer token is needed");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
        return response;
    }
    let too_large = || {
        answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {} bytes", ingest.max_body),
        )
    };
    let raw = match tokio::time::timeout(
        ingest.body_timeout,
        axum::body::to_bytes(body, ingest.max_body),
    )
    .await
    {
        Ok(Ok(raw)) => raw,
        Ok(Err(_)) => return too_large(),
        Err(_) => {
            return answer(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {}s",
                    ingest.body_timeout.as_secs()
                ),
            );
        }
    };
    let body = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("identity") => raw,
        Some("gzip") => {
            let mut plain = Vec::new();
            let read = flate2::read::MultiGzDecoder::new(&raw[..])
                .take(ingest.max_body as u64 + 1)
                .read_to_end(&mut plain);
            if let Err(e) = read {
                return answer(
                    StatusCode::BAD_REQUEST,
                    format!("the gzip body does not inflate: {e}"),
                );
            }
            if plain.len() > ingest.max_body {
                return too_large();
            }
            Bytes::from(plain)
        }
        Some(other) => {
            return answer(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Encoding `{other}` is not supported (gzip is)"),
            );
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain");
    let mut batcher = ingest
        .batcher
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone_for_task();
    let records = match records(
        content_type,
        &body,
        batcher.max_line_bytes(),
        ingest.max_events,
    ) {
        Ok(records) => records,
        Err(BodyError::TooManyEvents) => {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body holds more than {} events (max_events_per_request)",
                    ingest.max_events
                ),
            );
        }
        Err(BodyError::Malformed(e)) => return answer(StatusCode::BAD_REQUEST, e),
    };
    drop(body);
    let name = batcher.event_name();
    let count = records.len();
    let mut events = Vec::with_capacity(count);
    for (record, truncated) in records {
        if truncated {
            batcher.truncated();
        }
        events.push(Event::from_body(name.clone(), record));
    }
    if events.is_empty() {
        return (StatusCode::OK, "{\"accepted\":0}\n").into_response();
    }
    let full = || {
        let mut response = answer(
            StatusCode::TOO_MANY_REQUESTS,
            "the pipeline is full; send again later",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, "1".parse().expect("valid"));
        response
    };
    // Nothing is handed over unless the channels have room for it: a 429 means nothing
    // of the request was taken, and a 200 does not wait for a stalled sink.
    let bytes = events.iter().map(Event::size_estimate).sum();
    let Some(_admission) = ingest.admit(events.len(), bytes).await else {
        return full();
    };
    match batcher.try_send_acknowledged(events) {
        Err(_) => full(),
        Ok(held) => {
            if held.await {
                (StatusCode::OK, format!("{{\"accepted\":{count}}}\n")).into_response()
            } else {
                answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the agent is stopping; send again",
                )
            }
        }
    }
}

/// Why a body gives no records.
#[derive(Debug, PartialEq)]
enum BodyError {
    /// More records than `max_events_per_request` (found while reading: the rest is
    /// never made).
    TooManyEvents,
    /// Not what its content type says (the message names the place).
    Malformed(String),
}

/// The records of a body by its content type: (bytes, whether cut at `max_line`), at
/// most `max_events` of them.
fn records(
    content_type: &str,
    body: &[u8],
    max_line: usize,
    max_events: usize,
) -> Result<Vec<(Vec<u8>, bool)>, BodyError> {
    let cut = |mut record: Vec<u8>| {
        let truncated = record.len() > max_line;
        record.truncate(max_line);
        (record, truncated)
    };
    let media = content_type.split(';').next().unwrap_or("").trim();
    let mut out = Vec::new();
    let mut push = |record: (Vec<u8>, bool)| {
        if out.len() == max_events {
            return Err(BodyError::TooManyEvents);
        }
        out.push(record);
        Ok(())
    };
    match media {
        "application/json" => {
            let mut de = serde_json::Deserializer::from_slice(body);
            let mut too_many = false;
            let seed = JsonRecords {
                each: &mut |item: serde_json::Value| {
                    let pushed = push(cut(serde_json::to_vec(&item).unwrap_or_default()));
                    too_many = pushed.is_err();
                    pushed.map_err(|_| ())
                },
            };
            match serde::de::DeserializeSeed::deserialize(seed, &mut de).and_then(|()| de.end()) {
                Ok(()) => {}
                Err(_) if too_many => return Err(BodyError::TooManyEvents),
                Err(e) => return Err(BodyError::Malformed(format!("the body is not JSON: {e}"))),
            }
        }
        "application/x-ndjson" | "application/jsonl" | "application/json-seq" => {
            for (i, line) in body.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                serde_json::from_slice::<serde::de::IgnoredAny>(line).map_err(|e| {
                    BodyError::Malformed(format!("line {} is not JSON: {e}", i + 1))
                })?;
                push(cut(line.to_vec()))?;
            }
        }
        _ => {
            let mut splitter = super::LineSplitter::new(max_line);
            let mut result = Ok(());
            splitter.feed(body, |line| {
                if result.is_ok() {
                    result = push(match line {
                        super::lines::Line::Whole(l) => (l, false),
                        super::lines::Line::Truncated(l) => (l, true),
                    });
                }
            });
            result?;
            if let Some(last) = splitter.finish() {
                push((last, false))?;
            }
        }
    }
    Ok(out)
}

/// The error a [`JsonRecords`] callback's refusal becomes (the caller knows why).
const STOPPED: &str = "stopped by the reader";

/// Reads a JSON body record by record: the items of a top-level array one at a time
/// (so a refusal stops it before the rest are made), or the one value.
struct JsonRecords<'a> {
    each: &'a mut dyn FnMut(serde_json::Value) -> Result<(), ()>,
}

impl<'de> serde::de::DeserializeSeed<'de> for JsonRecords<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonRecords<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON record or an array of records")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        while let Some(item) = items.next_element::<serde_json::Value>()? {
            (self.each)(item).map_err(|_| serde::de::Error::custom(STOPPED))?;
        }
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let value =
            serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        (self.each)(value).map_err(|_| serde::de::Error::custom(STOPPED))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.one(serde_json::Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.one(v.into())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.one(v.into())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.one(v.into())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.one(v.into())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.one(serde_json::Value::Null)
    }
}

impl JsonRecords<'_> {
    fn one<E: serde::de::Error>(self, value: serde_json::Value) -> Result<(), E> {
        (self.each)(value).map_err(|_| E::custom(STOPPED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_read_by_their_content_type() {
        let texts = |r: Vec<(Vec<u8>, bool)>| -> Vec<(String, bool)> {
            r.into_iter()
                .map(|(b, t)| (String::from_utf8(b).unwrap(), t))
                .collect()
        };
        assert_eq!(
            texts(records("application/json", br#"[{"a":1}, {"b": [2]}]"#, 100, 10).unwrap()),
            [
                ("{\"a\":1}".to_owned(), false),
                ("{\"b\":[2]}".to_owned(), false)
            ]
        );
        assert_eq!(
            texts(
                records(
                    "application/json; charset=utf-8",
                    br#"{"one":true}"#,
                    100,
                    10
                )
                .unwrap()
            ),
            [("{\"one\":true}".to_owned(), false)]
        );
        assert_eq!(
            texts(records("application/x-ndjson", b"{\"a\":1}\r\n\n{\"b\":2}", 100, 10).unwrap()),
            [
                ("{\"a\":1}".to_owned(), false),
                ("{\"b\":2}".to_owned(), false)
            ]
        );
        let e = records("application/x-ndjson", b"{\"a\":1}\nnope\n", 100, 10).unwrap_err();
        assert!(
            matches!(&e, BodyError::Malformed(m) if m.starts_with("line 2 is not JSON")),
            "{e:?}"
        );
        assert_eq!(
            texts(records("text/plain", b"one\r\ntwo long line\nthree", 5, 10).unwrap()),
            [
                ("one".to_owned(), false),
                ("two l".to_owned(), true),
                ("three".to_owned(), false)
            ]
        );
        assert!(records("application/json", b"[1,", 100, 10).is_err());
        assert!(records("application/json", b"[1] 2", 100, 10).is_err());
        assert_eq!(
            texts(records("application/json", b"[1, \"two\", null]", 100, 10).unwrap()),
            [
                ("1".to_owned(), false),
                ("\"two\"".to_owned(), false),
                ("null".to_owned(), false)
            ]
        );
    }

    #[test]
    fn a_body_with_more_records_than_allowed_is_refused_while_it_is_read() {
        for (content_type, body) in [
            ("text/plain", b"\n\n\n\n".to_vec()),
            ("text/plain", b"a\nb\nc\nd".to_vec()),
            ("application/x-ndjson", b"1\n2\n3\n4\n".to_vec()),
            ("application/json", b"[1,2,3,4]".to_vec()),
        ] {
            assert_eq!(
                records(content_type, &body, 100, 3),
                Err(BodyError::TooManyEvents),
                "{content_type} {body:?}"
            );
            assert_eq!(records(content_type, &body, 100, 4).unwrap().len(), 4);
        }
        // Stops at the limit: a 10 MiB body of newlines makes no more than it allows.
        let newlines = vec![b'\n'; 10 << 20];
        assert_eq!(
            records("text/plain", &newlines, 100, 10_000),
            Err(BodyError::TooManyEvents)
        );
    }

    /// The fuzz target of the body readers (issue 26): any body under any content type
    /// never panics, never makes more records than allowed, nor a record longer than
    /// `max_line_bytes`.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn content_type() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("application/json".to_owned()),
                Just("application/json; charset=utf-8".to_owned()),
                Just("application/x-ndjson".to_owned()),
                Just("text/plain".to_owned()),
                "[ -~]{0,30}",
            ]
        }

        fn body() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..400),
                proptest::collection::vec(
                    prop_oneof![
                        Just(b"[".to_vec()),
                        Just(b"]".to_vec()),
                        Just(b"{\"a\":".to_vec()),
                        Just(b"}".to_vec()),
                        Just(b",".to_vec()),
                        Just(b"\n".to_vec()),
                        Just(b"\r\n".to_vec()),
                        Just(b"1e999".to_vec()),
                        Just(b"\"\\u00e9\"".to_vec()),
                        Just(b"null".to_vec()),
                        proptest::collection::vec(any::<u8>(), 0..8),
                    ],
                    0..40,
                )
                .prop_map(|pieces| pieces.concat()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn any_body_is_read_within_the_limits(
                content_type in content_type(),
                body in body(),
                max_line in 1usize..64,
                max_events in 1usize..16,
            ) {
                match records(&content_type, &body, max_line, max_events) {
                    Ok(records) => {
                        prop_assert!(records.len() <= max_events);
                        for (record, truncated) in records {
                            prop_assert!(record.len() <= max_line);
                            prop_assert!(!truncated || record.len() == max_line);
                        }
                    }
                    Err(BodyError::TooManyEvents | BodyError::Malformed(_)) => {}
                }
            }
        }
    }
}

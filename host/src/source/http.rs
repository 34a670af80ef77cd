//! The `http` source: apps `POST` their logs. The body is read by its `Content-Type`:
//! `application/json` — an array of records, or one record; `application/x-ndjson` —
//! one JSON record per line; anything else — plain text lines. Each record (its compact
//! JSON text) or line is one event's body; the `json` parser plugin turns records into
//! fields. `Content-Encoding: gzip` bodies are inflated (within the same size limit).
//!
//! The answer says what became of the batch:
//! - `200 {"accepted": N}` once the source's channels hold it (a `file` channel: on
//!   disk) — a client may forget what got a 200;
//! - `429` with `Retry-After: 1` when the pipeline cannot take it now (its channels are
//!   full): backpressure, never a silent drop;
//! - `413` above `max_body_bytes` (compressed or inflated), `400` for a body that is not
//!   what its type says (naming the line), `401` without the bearer token, `415` for an
//!   unknown `Content-Encoding`, `503` when the agent is stopping.
//!
//! `GET /health` answers `ok`.
//!
//! Connections come through the shared [`listener`](super::listener): limits in all and
//! per peer address, and TLS when `tls` is set; each is served by hyper (HTTP/1.1,
//! keep-alive) and closed gracefully when the agent stops.

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
}

fn default_max_body_bytes() -> usize {
    10 * 1024 * 1024
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
            (None, Some(file)) => crate::files::read_secret(file)
                .and_then(|t| String::from_utf8(t).map_err(|_| "is not UTF-8 text".into()))
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
        }
    }
}

impl SourceConfig for HttpSourceConfig {
    fn validate(&self, problems: &mut Problems) {
        if self.max_body_bytes == 0 {
            problems.at("max_body_bytes", "must be at least 1");
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
                token,
            });
            let app = axum::Router::new()
                .route("/health", axum::routing::get(|| async { "ok\n" }))
                .fallback(ingest)
                .layer(axum::extract::DefaultBodyLimit::disable())
                .with_state(state);
            let limits = config.limits();
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
                        if let Err(e) = serve_connection(stream, app, shutdown).await {
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
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), hyper::Error> {
    let service = hyper_util::service::TowerToHyperService::new(app);
    let connection = hyper::server::conn::http1::Builder::new()
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

struct Ingest {
    /// A batcher to clone for each request.
    batcher: Mutex<Batcher>,
    max_body: usize,
    token: Option<String>,
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
    if let Some(token) = &ingest.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            let mut response = answer(StatusCode::UNAUTHORIZED, "a bearer token is needed");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
            return response;
        }
    }
    let too_large = || {
        answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {} bytes", ingest.max_body),
        )
    };
    let Ok(raw) = axum::body::to_bytes(body, ingest.max_body).await else {
        return too_large();
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
    let records = match records(content_type, &body, batcher.max_line_bytes()) {
        Ok(records) => records,
        Err(e) => return answer(StatusCode::BAD_REQUEST, e),
    };
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
    match batcher.try_send_acknowledged(events) {
        Err(_) => {
            let mut response = answer(
                StatusCode::TOO_MANY_REQUESTS,
                "the pipeline is full; send again later",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, "1".parse().expect("valid"));
            response
        }
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The records of a body by its content type: (bytes, whether cut at `max`).
fn records(content_type: &str, body: &[u8], max: usize) -> Result<Vec<(Vec<u8>, bool)>, String> {
    let cut = |mut record: Vec<u8>| {
        let truncated = record.len() > max;
        record.truncate(max);
        (record, truncated)
    };
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/json" => {
            let value: serde_json::Value =
                serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
            let items = match value {
                serde_json::Value::Array(items) => items,
                one => vec![one],
            };
            Ok(items
                .into_iter()
                .map(|item| cut(serde_json::to_vec(&item).unwrap_or_default()))
                .collect())
        }
        "application/x-ndjson" | "application/jsonl" | "application/json-seq" => body
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
            .map(|(i, line)| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                serde_json::from_slice::<serde::de::IgnoredAny>(line)
                    .map_err(|e| format!("line {} is not JSON: {e}", i + 1))?;
                Ok(cut(line.to_vec()))
            })
            .collect(),
        _ => {
            let mut lines = Vec::new();
            let mut splitter = super::LineSplitter::new(max);
            splitter.feed(body, |line| {
                lines.push(match line {
                    super::lines::Line::Whole(l) => (l, false),
                    super::lines::Line::Truncated(l) => (l, true),
                })
            });
            if let Some(last) = splitter.finish() {
                lines.push((last, false));
            }
            Ok(lines)
        }
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
            texts(records("application/json", br#"[{"a":1}, {"b": [2]}]"#, 100).unwrap()),
            [
                ("{\"a\":1}".to_owned(), false),
                ("{\"b\":[2]}".to_owned(), false)
            ]
        );
        assert_eq!(
            texts(records("application/json; charset=utf-8", br#"{"one":true}"#, 100).unwrap()),
            [("{\"one\":true}".to_owned(), false)]
        );
        assert_eq!(
            texts(records("application/x-ndjson", b"{\"a\":1}\r\n\n{\"b\":2}", 100).unwrap()),
            [
                ("{\"a\":1}".to_owned(), false),
                ("{\"b\":2}".to_owned(), false)
            ]
        );
        let e = records("application/x-ndjson", b"{\"a\":1}\nnope\n", 100).unwrap_err();
        assert!(e.starts_with("line 2 is not JSON"), "{e}");
        assert_eq!(
            texts(records("text/plain", b"one\r\ntwo long line\nthree", 5).unwrap()),
            [
                ("one".to_owned(), false),
                ("two l".to_owned(), true),
                ("three".to_owned(), false)
            ]
        );
        assert!(records("application/json", b"[1,", 100).is_err());
    }
}

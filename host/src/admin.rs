//! The admin endpoint (`[agent] admin_listen`, off unless set; meant for localhost):
//! - `GET /health` — `ok` while the agent runs;
//! - `GET /plugins` — every loaded plugin: role, code, version, SHA-256, load time,
//!   reloads and refusals, the last refusal's reason;
//! - `POST /plugins/NAME/reload` — reloads one plugin from its file: `200` with the
//!   version serving (`swapped` or `unchanged`), `404` for an unknown plugin, `409` for
//!   a built-in one, `422` with the reason when the new version is refused;
//! - `POST /config/reload` — what SIGHUP does (the config file, then every plugin
//!   file): `200` with what was started and stopped, `422` with the errors (key and
//!   line) when the new config is refused, `409` when the agent runs the embedded
//!   default.
//!
//! A web page the operator has open must not be able to drive it (a form or `fetch`
//! posting to `127.0.0.1`, or a DNS name rebound to it), so every request passes
//! [`guard`]: no `Origin` header (browsers send one with every cross-site POST), a
//! loopback `Host` when the endpoint listens on loopback (a rebound name is not one),
//! `Content-Type: application/json` on a `POST` (which a page cannot send without a
//! CORS preflight this endpoint never answers), and `Authorization: Bearer TOKEN` when
//! `[agent] admin_token_file` is set — which the config requires to listen beyond
//! loopback.

use crate::plugin::reload::{PluginSet, ReloadError, Reloaded};
use crate::topology::{ReloadOutcome, ReloadRequest};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Who may use the endpoint: see [`guard`].
#[derive(Clone)]
pub struct Access {
    /// The bearer token every request but `GET /health` must carry; `None`: no token
    /// (the config allows that only on loopback).
    pub token: Option<Arc<str>>,
    /// Whether the endpoint listens on loopback (then `Host` must name loopback).
    pub loopback: bool,
}

#[derive(Clone)]
struct Admin {
    plugins: Arc<PluginSet>,
    /// To the agent's run loop, which reloads the config between its other work.
    reloads: tokio::sync::mpsc::Sender<ReloadRequest>,
}

/// Binds `addr` (an error names it) and serves until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    token: Option<Arc<str>>,
    plugins: Arc<PluginSet>,
    reloads: tokio::sync::mpsc::Sender<ReloadRequest>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("agent.admin_listen: cannot listen on {addr}: {e}"))?;
    let access = Access {
        token,
        loopback: addr.ip().is_loopback(),
    };
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/plugins", get(list))
        .route("/plugins/{name}/reload", post(reload))
        .route("/config/reload", post(reload_config))
        .with_state(Admin { plugins, reloads })
        .layer(axum::middleware::from_fn_with_state(access, guard));
    tracing::info!(%addr, "admin endpoint listening");
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!("the admin endpoint stopped: {e}");
        }
    }))
}

/// Refuses what a browser page (or anyone without the token) could send: see the
/// module's documentation.
async fn guard(State(access): State<Access>, request: Request, next: Next) -> Response {
    match refusal(
        &access,
        request.method(),
        request.uri().path(),
        request.headers(),
    ) {
        Some((status, reason)) => {
            tracing::warn!(
                path = request.uri().path(),
                "admin endpoint: refused a request: {reason}"
            );
            (
                status,
                Json(json!({ "outcome": "refused", "error": reason })),
            )
                .into_response()
        }
        None => next.run(request).await,
    }
}

/// Why a request is refused, if it is.
fn refusal(
    access: &Access,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<(StatusCode, &'static str)> {
    if headers.contains_key(header::ORIGIN) {
        return Some((
            StatusCode::FORBIDDEN,
            "requests from web pages (with an Origin header) are not taken",
        ));
    }
    if access.loopback {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if !host.is_some_and(is_loopback_host) {
            return Some((
                StatusCode::FORBIDDEN,
                "the Host header must name this host's loopback (localhost, 127.0.0.1, [::1])",
            ));
        }
    }
    if let Some(token) = &access.token
        && !(method == Method::GET && path == "/health")
        && !crate::bearer::matches(headers, token)
    {
        return Some((
            StatusCode::UNAUTHORIZED,
            "a bearer token is needed (admin_token_file)",
        ));
    }
    if method == Method::POST {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Some((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a POST must say Content-Type: application/json",
            ));
        }
    }
    None
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn list(State(admin): State<Admin>) -> Json<serde_json::Value> {
    Json(json!({ "plugins": admin.plugins.status() }))
}

async fn reload_config(State(admin): State<Admin>) -> (StatusCode, Json<serde_json::Value>) {
    let (reply, outcome) = tokio::sync::oneshot::channel();
    let stopping = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "outcome": "failed", "error": "the agent is stopping" })),
        )
    };
    if admin.reloads.send(reply).await.is_err() {
        return stopping();
    }
    let Ok(outcome) = outcome.await else {
        return stopping();
    };
    let status = match outcome {
        ReloadOutcome::Reloaded { .. } => StatusCode::OK,
        ReloadOutcome::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ReloadOutcome::NoFile => StatusCode::CONFLICT,
    };
    (status, Json(json!(outcome)))
}

async fn reload(
    State(admin): State<Admin>,
    Path(name): Path<String>,
) -> (StatusCode, Json<serde_json::Value>) {
    let plugins = admin.plugins;
    let outcome = tokio::task::spawn_blocking(move || plugins.reload(&name)).await;
    match outcome {
        Ok(Ok(Reloaded::Swapped { version })) => (
            StatusCode::OK,
            Json(json!({ "outcome": "swapped", "version": version })),
        ),
        Ok(Ok(Reloaded::Unchanged { version })) => (
            StatusCode::OK,
            Json(json!({ "outcome": "unchanged", "version": version })),
        ),
        Ok(Err(e)) => {
            let status = match e {
                ReloadError::Unknown(_) => StatusCode::NOT_FOUND,
                ReloadError::Builtin(_) => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            (
                status,
                Json(json!({ "outcome": "refused", "error": e.to_string() })),
            )
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "outcome": "failed", "error": e.to_string() })),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn what_a_web_page_can_send_is_refused() {
        let local = Access {
            token: None,
            loopback: true,
        };
        let post = |pairs: &[(&str, &str)]| {
            refusal(&local, &Method::POST, "/config/reload", &headers(pairs)).map(|r| r.0)
        };
        let json = ("content-type", "application/json");
        assert_eq!(post(&[("host", "127.0.0.1:9000"), json]), None);
        assert_eq!(post(&[("host", "localhost"), json]), None);
        assert_eq!(post(&[("host", "[::1]:9000"), json]), None);
        // A form post from a page: text/plain, an Origin.
        assert_eq!(
            post(&[
                ("host", "127.0.0.1:9000"),
                ("content-type", "text/plain"),
                ("origin", "http://evil.example")
            ]),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            post(&[("host", "127.0.0.1:9000"), ("content-type", "text/plain")]),
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(
            post(&[("host", "127.0.0.1:9000")]),
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        // DNS rebinding: the page's own name, resolved to 127.0.0.1.
        assert_eq!(
            post(&[("host", "evil.example:9000"), json]),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(post(&[json]), Some(StatusCode::FORBIDDEN));
        assert_eq!(
            refusal(
                &local,
                &Method::GET,
                "/plugins",
                &headers(&[("host", "localhost:1")])
            ),
            None
        );
    }

    #[test]
    fn a_token_is_needed_when_set_but_for_health() {
        let remote = Access {
            token: Some("s3cret".into()),
            loopback: false,
        };
        let get = |path: &str, pairs: &[(&str, &str)]| {
            refusal(&remote, &Method::GET, path, &headers(pairs)).map(|r| r.0)
        };
        assert_eq!(get("/health", &[("host", "10.0.0.1")]), None);
        assert_eq!(
            get("/plugins", &[("host", "10.0.0.1")]),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            get("/plugins", &[("authorization", "Bearer nope")]),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(get("/plugins", &[("authorization", "Bearer s3cret")]), None);
    }
}

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

use crate::plugin::reload::{PluginSet, ReloadError, Reloaded};
use crate::topology::{ReloadOutcome, ReloadRequest};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Admin {
    plugins: Arc<PluginSet>,
    /// To the agent's run loop, which reloads the config between its other work.
    reloads: tokio::sync::mpsc::Sender<ReloadRequest>,
}

/// Binds `addr` (an error names it) and serves until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    plugins: Arc<PluginSet>,
    reloads: tokio::sync::mpsc::Sender<ReloadRequest>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("agent.admin_listen: cannot listen on {addr}: {e}"))?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the admin endpoint has no authentication and listens beyond this host");
    }
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/plugins", get(list))
        .route("/plugins/{name}/reload", post(reload))
        .route("/config/reload", post(reload_config))
        .with_state(Admin { plugins, reloads });
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

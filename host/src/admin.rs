//! The admin endpoint (`[agent] admin_listen`, off unless set; meant for localhost):
//! - `GET /health` — `ok` while the agent runs;
//! - `GET /plugins` — every loaded plugin: role, code, version, SHA-256, load time,
//!   reloads and refusals, the last refusal's reason;
//! - `POST /plugins/NAME/reload` — reloads one plugin from its file: `200` with the
//!   version serving (`swapped` or `unchanged`), `404` for an unknown plugin, `409` for
//!   a built-in one, `422` with the reason when the new version is refused.

use crate::plugin::reload::{PluginSet, ReloadError, Reloaded};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Binds `addr` (an error names it) and serves until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    plugins: Arc<PluginSet>,
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
        .with_state(plugins);
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

async fn list(State(plugins): State<Arc<PluginSet>>) -> Json<serde_json::Value> {
    Json(json!({ "plugins": plugins.status() }))
}

async fn reload(
    State(plugins): State<Arc<PluginSet>>,
    Path(name): Path<String>,
) -> (StatusCode, Json<serde_json::Value>) {
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

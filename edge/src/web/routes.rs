//! The routes: the page and its two assets, `/api/status`, `/metrics`, `/healthz`,
//! `/frame.jpg` and `/thumb/{frame}`. Every body comes from memory; no request names a file.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::frame::FrameCache;
use crate::live::{Health, Live, ModelInfo, Snapshot};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

#[derive(Clone)]
pub struct AppState {
    pub live: Arc<Live>,
    pub frames: Arc<FrameCache>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/style.css", get(style_css))
        .route("/api/status", get(status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/frame.jpg", get(frame))
        .route("/thumb/{frame}", get(thumb))
        .fallback(not_found)
        .with_state(state)
}

async fn index() -> Response {
    ([(CONTENT_TYPE, "text/html; charset=utf-8")], INDEX_HTML).into_response()
}

async fn app_js() -> Response {
    ([(CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS).into_response()
}

async fn style_css() -> Response {
    ([(CONTENT_TYPE, "text/css; charset=utf-8")], STYLE_CSS).into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 not found\n").into_response()
}

/// `/api/status`: the snapshot plus what is computed at request time.
#[derive(Serialize)]
struct Status<'a> {
    health: &'static str,
    health_detail: String,
    model: Option<&'a ModelInfo>,
    source: &'a str,
    started_at: &'a str,
    uptime_s: f64,
    last_frame_age_s: Option<f64>,
    #[serde(flatten)]
    snapshot: &'a Snapshot,
}

fn health_words(h: &Health) -> (&'static str, String) {
    match h {
        Health::Flowing => ("ok", "frames are flowing".into()),
        Health::NoFrameYet => ("waiting", "no frame yet".into()),
        Health::Stalled { secs } => ("stalled", format!("no frame for {secs} s")),
        Health::Stopped { reason } => ("stopped", format!("the loop stopped: {reason}")),
    }
}

async fn status(State(s): State<AppState>) -> Response {
    let snap = s.live.snapshot();
    let (health, health_detail) = health_words(&s.live.health());
    let body = Status {
        health,
        health_detail,
        model: s.live.info().model.as_ref(),
        source: &s.live.info().source,
        started_at: s.live.started_at(),
        uptime_s: s.live.uptime().as_secs_f64(),
        last_frame_age_s: snap.last_frame_at.map(|t| t.elapsed().as_secs_f64()),
        snapshot: &snap,
    };
    Json(body).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.live.metrics().encode(),
    )
        .into_response()
}

async fn healthz(State(s): State<AppState>) -> Response {
    let h = s.live.health();
    let (word, detail) = health_words(&h);
    let code = if h == Health::Flowing {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{word}: {detail}\n")).into_response()
}

async fn frame(State(s): State<AppState>) -> Response {
    match s.frames.jpeg(&s.live).await {
        Some(bytes) => ([(CONTENT_TYPE, "image/jpeg")], bytes).into_response(),
        None => (StatusCode::NOT_FOUND, "404 no frame yet\n").into_response(),
    }
}

async fn thumb(State(s): State<AppState>, Path(frame): Path<u64>) -> Response {
    let snap = s.live.snapshot();
    let jpeg = snap
        .transitions
        .iter()
        .find(|t| t.frame == frame)
        .and_then(|t| t.thumbnail_jpeg.clone());
    match jpeg {
        Some(b) => ([(CONTENT_TYPE, "image/jpeg")], Vec::clone(&b)).into_response(),
        None => not_found().await,
    }
}

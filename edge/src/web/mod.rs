//! `run --status`: a read-only status page, JSON, Prometheus metrics and the latest overlay,
//! served from its own thread so that nothing a browser does can slow the screening loop.

pub mod addr;
mod auth;
mod conn;
mod frame;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::live::Live;
pub use auth::Auth;
pub use conn::Limits;

/// Scripts and styles only from the page's own origin: no inline code an injected string
/// could turn into a script, no framing by another site.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The server thread; dropping it stops the server.
pub struct StatusServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl StatusServer {
    /// Binds at once, so a taken port is an error before the first frame.
    pub fn start(addr: SocketAddr, auth: Auth, limits: Limits, live: Arc<Live>) -> Result<Self> {
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("--status {addr}: cannot listen"))?;
        listener.set_nonblocking(true)?;
        let bound = listener.local_addr()?;
        let state = routes::AppState {
            live,
            frames: Arc::new(frame::FrameCache::default()),
        };
        let app = routes::router(state)
            .layer(axum::middleware::from_fn_with_state(auth, auth::guard))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                limits.handler_timeout,
            ))
            .layer(header(CONTENT_SECURITY_POLICY, CSP))
            .layer(header(X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .layer(header(X_FRAME_OPTIONS, "DENY"))
            .layer(header(REFERRER_POLICY, "no-referrer"))
            // Frames are patient tissue: nothing may linger in a browser or proxy cache.
            .layer(header(CACHE_CONTROL, "no-store"));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("status-http".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    // Overlay drawing is the only blocking work; two at most on a 4-core board.
                    .max_blocking_threads(2)
                    .build();
                match rt {
                    Ok(rt) => {
                        if let Err(e) = rt.block_on(conn::serve(listener, app, limits, rx)) {
                            tracing::error!("status page stopped: {e}");
                        }
                    }
                    Err(e) => tracing::error!("status page cannot start: {e}"),
                }
            })
            .context("cannot start the status page thread")?;
        Ok(StatusServer {
            addr: bound,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

fn header(
    name: axum::http::HeaderName,
    value: &'static str,
) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            // Open connections are abandoned with the runtime; the join waits for nothing else.
            let _ = t.join();
        }
    }
}

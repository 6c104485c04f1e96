//! Accepting connections within limits: how many at once, how big a request head, how long
//! a client may take to send it, and how long one connection may live.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Semaphore};

/// The answer to a connection over the limit, written before closing it.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
content-length: 21\r\nretry-after: 1\r\nconnection: close\r\n\r\n503 too many clients\n";

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// Request line and headers together; larger gets 431.
    pub max_head_bytes: usize,
    /// For the whole request head, and for an idle keep-alive connection's next one
    /// (slow-loris: a client trickling bytes holds a slot this long at most).
    pub header_timeout: Duration,
    /// For producing a response.
    pub handler_timeout: Duration,
    /// Then the connection is closed whatever it is doing; a browser reconnects.
    pub max_connection_age: Duration,
}

/// Defaults that a phone on the bench never comes near and a flood of connections hits early.
impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            max_head_bytes: 8 * 1024,
            header_timeout: Duration::from_secs(10),
            handler_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(300),
        }
    }
}

pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return Ok(()),
        };
        let (mut stream, _) = match accepted {
            Ok(s) => s,
            // Out of file descriptors, or a reset before accept: wait, do not spin.
            Err(e) => {
                tracing::warn!("status page: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    let _ = stream.write_all(BUSY).await;
                    let _ = stream.shutdown().await;
                })
                .await;
            });
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_head_bytes.max(8192))
                .max_header_size(limits.max_head_bytes)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(limits.max_connection_age, conn).await;
        });
    }
}

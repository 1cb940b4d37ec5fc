//! The HTTP accept loop: a bound on open connections, a deadline for request headers,
//! `TCP_NODELAY`, and graceful shutdown.
//!
//! hyper serves each connection (HTTP/1.1, upgrades to WebSocket). Its header-read
//! timer starts whenever a connection waits for a request head — the first, or the next
//! one on a kept-alive connection — so one deadline closes connections that trickle
//! headers, never send anything, or sit idle between requests. Request bodies have their
//! own deadline in the handlers that read them ([`crate::http::read_body`]). An upgraded
//! WebSocket is no longer an HTTP connection: its own rules apply (hello timeout, token
//! expiry, slow-consumer bound) and it is counted by the per-IP WebSocket limit.
//!
//! Past `limits.http_connections_max` open connections a new one is closed at once
//! (counted in `weft_connections_refused_total`): the alternative, leaving it in the
//! kernel's backlog, looks to a client like a server that hangs.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::state::AppState;

/// Longest shutdown waits for connections to drain (HTTP requests here, WebSockets in
/// [`crate::serve`]).
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until the state's shutdown flag flips, then lets the
/// connections in progress finish.
pub async fn serve(listener: TcpListener, app: Router, state: Arc<AppState>) {
    let limits = &state.config.limits;
    let open = Arc::new(Semaphore::new(limits.http_connections_max.max(1)));
    let header_timeout = Duration::from_millis(limits.request_header_timeout_ms.max(1));
    // HTTP/1.1 only (the WebSocket upgrade needs it; no client speaks h2c to us), served
    // by hyper's own HTTP/1 connection so the header timer runs from the first byte
    // awaited — a protocol-sniffing layer in front would wait for a silent client forever.
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let mut stopped = state.shutdown.subscribe();
    let stop = async move {
        // The guard `wait_for` returns is dropped here, never held across the loop's awaits.
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stop);
    loop {
        let (stream, address) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            state.metrics.connections_refused.inc();
            tracing::debug!(%address, "connection refused: limits.http_connections_max reached");
            drop(stream);
            continue;
        };
        // Acks and live changes are small frames: Nagle's algorithm would hold each one
        // back until the previous is acknowledged (up to 40 ms with delayed ACKs).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        let router = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(address));
            let mut router = router.clone();
            // A Router is always ready; `call` needs no `poll_ready` first.
            tower_service::Service::call(&mut router, request.map(axum::body::Body::new))
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let mut stopping = state.shutdown.subscribe();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let stop = async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            };
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = stop => {
                    // Finish the request in progress, then close (idle ones close now).
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::trace!(%address, %error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a permit until it ends: having them all back means none is
    // left. (Upgraded WebSockets hand theirs back at the upgrade; they drain separately.)
    // A client that stopped reading a response would hold its connection forever: the
    // wait is bounded like the WebSocket drain.
    let all = u32::try_from(limits.http_connections_max.max(1)).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_DRAIN, open.acquire_many(all)).await.is_err() {
        tracing::warn!("HTTP connections still open after {:?}; closing anyway", SHUTDOWN_DRAIN);
    }
}

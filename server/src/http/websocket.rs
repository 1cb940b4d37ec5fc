//! `GET /v1/ws`: the HTTP side of a WebSocket — the per-IP connection limit, the socket's
//! buffer and frame-size settings, the upgrade. The connection itself is served by
//! [`crate::ws`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use weft_core::protocol::ErrorCode;

use crate::error::OpError;
use crate::state::AppState;

/// Initial read buffer of a WebSocket (it grows to fit a larger frame).
const WS_READ_BUFFER_BYTES: usize = 4 << 10;
/// Bytes a WebSocket gathers before writing to the socket (every frame is flushed anyway).
const WS_WRITE_BUFFER_BYTES: usize = 8 << 10;

/// Upgrades, unless the caller's IP is at its connection limit.
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(slot) = state.connection_slot(address.ip()) else {
        let error = OpError::new(
            ErrorCode::RateLimited,
            format!(
                "too many connections from {} (limit {}: limits.connections_per_ip)",
                address.ip(),
                state.config.limits.connections_per_ip
            ),
        );
        return super::error_response(&state, &error);
    };
    // Frames up to twice the limit are read and refused with FrameTooLarge (the
    // connection stays usable); beyond that the socket layer drops the connection.
    let hard_cap = state.config.limits.frame_bytes_max.saturating_mul(2).max(64 << 10);
    // Small socket buffers that grow for large frames: tungstenite's defaults (128 KiB to
    // read, allocated and zeroed up front) made an idle connection cost ≈ 155 KiB of
    // server memory; with these it costs a few KiB (docs/benchmarks.md, `weft bench idle`).
    upgrade
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(WS_WRITE_BUFFER_BYTES)
        .max_message_size(hard_cap)
        .max_frame_size(hard_cap)
        .on_upgrade(move |socket| crate::ws::serve(state, socket, slot))
}

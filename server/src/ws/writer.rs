//! The sending half of a WebSocket connection: owns the socket's sink and writes the
//! frames the connection's session produced, in order. A socket that will not take a
//! frame for [`SEND_TIMEOUT`], or a connection whose live queue in the hub overflowed,
//! makes the client a slow consumer: it is told so and closed.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use tokio::sync::mpsc;
use weft_core::protocol::ErrorCode;

use crate::error::OpError;
use crate::hub::Overflow;
use crate::state::AppState;

/// Longest a single frame may wait for the socket before the client counts as slow.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// An encoded frame on its way to the socket.
#[derive(Debug)]
pub struct Frame {
    /// The encoded message.
    pub bytes: Vec<u8>,
    /// Its error code, if it is an error (for the metrics).
    pub code: Option<ErrorCode>,
    /// Its share of the connection's byte budget, released once it is written.
    pub budget: Budget,
}

type Sink = SplitSink<WebSocket, Message>;

/// A queued frame's share of its connection's byte budget, counted in
/// `weft_outbound_queued_bytes` until the frame is written or dropped.
#[derive(Debug)]
pub struct Budget {
    _permit: tokio::sync::OwnedSemaphorePermit,
    bytes: i64,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl Budget {
    /// Holds `permit` (worth `bytes`) and counts it in `gauge`.
    pub fn new(
        permit: tokio::sync::OwnedSemaphorePermit,
        bytes: usize,
        gauge: &prometheus_client::metrics::gauge::Gauge,
    ) -> Budget {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        gauge.inc_by(bytes);
        Budget { _permit: permit, bytes, gauge: gauge.clone() }
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        self.gauge.dec_by(self.bytes);
    }
}

/// Why the writer stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum WriterEnd {
    /// Every queued frame was sent.
    Drained,
    /// The socket failed or closed.
    SocketGone,
    /// The client could not keep up.
    SlowConsumer,
}

/// Runs until the frame queue closes (after sending everything in it), the socket
/// fails, or the client falls behind.
pub async fn run(
    state: Arc<AppState>,
    mut sink: Sink,
    mut frames: mpsc::Receiver<Frame>,
    overflow: Arc<Overflow>,
) -> WriterEnd {
    let end = loop {
        let frame = tokio::select! {
            biased;
            () = overflow.notify.notified() => break WriterEnd::SlowConsumer,
            frame = frames.recv() => match frame {
                None => break WriterEnd::Drained,
                Some(frame) => frame,
            },
        };
        if let Err(end) = send(&state, &mut sink, &overflow, frame).await {
            break end;
        }
    };
    finish(&state, sink, end).await
}

async fn send(state: &AppState, sink: &mut Sink, overflow: &Overflow, frame: Frame) -> Result<(), WriterEnd> {
    let Frame { bytes, code, budget: _budget } = frame;
    if let Some(code) = code {
        state.metrics.error(code);
    }
    state.metrics.bytes_sent.inc_by(bytes.len() as u64);
    tokio::select! {
        biased;
        () = overflow.notify.notified() => Err(WriterEnd::SlowConsumer),
        sent = tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Binary(bytes.into()))) => match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(WriterEnd::SocketGone),
            Err(_) => Err(WriterEnd::SlowConsumer),
        },
    }
}

async fn finish(state: &AppState, mut sink: Sink, end: WriterEnd) -> WriterEnd {
    if end == WriterEnd::SlowConsumer {
        let error = OpError::new(
            ErrorCode::SlowConsumer,
            "the connection fell too far behind the changes sent to it; reconnect and resume from your cursor",
        );
        state.metrics.error(ErrorCode::SlowConsumer);
        let frame = error.to_message(None, true).encode();
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Binary(frame.into()))).await;
    }
    if end != WriterEnd::SocketGone {
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    }
    end
}

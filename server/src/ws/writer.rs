//! The sending half of a WebSocket connection: owns the socket's sink, the
//! connection's subscriptions and their views, and turns live batches from the hub into
//! `Changes` / `Removed` frames.
//!
//! A subscription still catching up holds its live batches back until the reader says
//! catch-up is done, so a client's cursor never moves past a change it has not been
//! sent. Whatever cannot be sent in time — a full live queue, more held batches than the
//! queue allows, a socket that will not take a frame for [`SEND_TIMEOUT`] — makes the
//! connection a slow consumer: it is told so and closed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use tokio::sync::mpsc;
use weft_core::change::Change;
use weft_core::key::CollectionName;
use weft_core::protocol::{Cursor, ErrorCode, ServerMessage, SubscriptionId};

use crate::hub::{Listener, LiveBatch};
use crate::state::AppState;
use crate::sync::OpError;
use crate::sync::view::{View, Visibility};

/// Longest a single frame may wait for the socket before the client counts as slow.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// What the reader and the ack pipeline ask the writer to do.
#[derive(Debug)]
pub enum Outbound {
    /// Send a message (small ones: acks and errors of the ack pipeline).
    Message(Box<ServerMessage>),
    /// Send a frame the reader encoded, holding its share of the connection's byte budget
    /// until the socket has taken it.
    Frame {
        /// The encoded frame.
        bytes: Vec<u8>,
        /// Its error code, if it is an error (for the metrics).
        code: Option<ErrorCode>,
        /// Released when the frame is written (or dropped).
        budget: Budget,
    },
    /// A subscription starts (catching up: live batches are held).
    Subscribe {
        /// The subscription.
        id: SubscriptionId,
        /// Its collection.
        collection: CollectionName,
        /// What its client may see.
        view: Box<View>,
    },
    /// Catch-up is sent: release the held live batches.
    CaughtUp(SubscriptionId),
    /// The subscription ends.
    Unsubscribe(SubscriptionId),
}

struct Subscription {
    collection: CollectionName,
    view: View,
    held: Option<Vec<Arc<LiveBatch>>>,
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

/// Runs until the outbound queue closes (after sending everything in it), the socket
/// fails, or the client falls behind.
pub async fn run(
    state: Arc<AppState>,
    mut sink: Sink,
    mut outbound: mpsc::Receiver<Outbound>,
    mut listener: Listener,
) -> WriterEnd {
    let mut subscriptions: HashMap<SubscriptionId, Subscription> = HashMap::new();
    let held_max = state.config.limits.outbound_queue_frames.max(1);
    let end = loop {
        let frames = tokio::select! {
            biased;
            () = listener.overflow.notify.notified() => break WriterEnd::SlowConsumer,
            command = outbound.recv() => match command {
                None => break WriterEnd::Drained,
                Some(Outbound::Message(message)) => vec![Frame::Message(*message)],
                Some(Outbound::Frame { bytes, code, budget }) => vec![Frame::Encoded { bytes, code, _budget: budget }],
                Some(Outbound::Subscribe { id, collection, view }) => {
                    subscriptions.insert(id, Subscription { collection, view: *view, held: Some(Vec::new()) });
                    continue;
                }
                Some(Outbound::CaughtUp(id)) => {
                    let Some(subscription) = subscriptions.get_mut(&id) else { continue };
                    let held = subscription.held.take().unwrap_or_default();
                    held.iter().flat_map(|live| deliver(&state, id, subscription, live)).map(Frame::Message).collect()
                }
                Some(Outbound::Unsubscribe(id)) => {
                    subscriptions.remove(&id);
                    continue;
                }
            },
            live = listener.receiver.recv() => {
                let Some(live) = live else { break WriterEnd::Drained };
                let mut frames = Vec::new();
                let mut overflow = false;
                for (id, subscription) in subscriptions.iter_mut() {
                    if subscription.collection != live.collection {
                        continue;
                    }
                    match subscription.held.as_mut() {
                        Some(held) => {
                            held.push(Arc::clone(&live));
                            overflow |= held.len() > held_max;
                        }
                        None => frames.extend(deliver(&state, *id, subscription, &live).into_iter().map(Frame::Message)),
                    }
                }
                if overflow {
                    break WriterEnd::SlowConsumer;
                }
                frames
            }
        };
        for frame in frames {
            match send(&state, &mut sink, &listener, frame).await {
                Ok(()) => {}
                Err(end) => return finish(&state, sink, end).await,
            }
        }
    };
    finish(&state, sink, end).await
}

/// A frame on its way to the socket.
enum Frame {
    /// Encoded here.
    Message(ServerMessage),
    /// Encoded by the reader; `_budget` is released once the frame is written.
    Encoded { bytes: Vec<u8>, code: Option<ErrorCode>, _budget: Budget },
}

async fn send(state: &AppState, sink: &mut Sink, listener: &Listener, frame: Frame) -> Result<(), WriterEnd> {
    let (bytes, code, _budget) = match frame {
        Frame::Message(message) => {
            let code = match &message {
                ServerMessage::Error { code, .. } => Some(*code),
                _ => None,
            };
            (message.encode(), code, None)
        }
        Frame::Encoded { bytes, code, _budget } => (bytes, code, Some(_budget)),
    };
    if let Some(code) = code {
        state.metrics.error(code);
    }
    state.metrics.bytes_sent.inc_by(bytes.len() as u64);
    tokio::select! {
        biased;
        () = listener.overflow.notify.notified() => Err(WriterEnd::SlowConsumer),
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

/// The frames that tell one subscription about one live batch.
fn deliver(state: &AppState, id: SubscriptionId, subscription: &Subscription, live: &LiveBatch) -> Vec<ServerMessage> {
    let mut cursor = Cursor::new(state.log_id);
    let mut changes = Vec::new();
    let mut removed = Vec::new();
    for record in live.records.iter() {
        cursor.advance(record.partition, record.seq);
        match subscription.view.classify(&record.after) {
            Visibility::Inside => {
                if let Some(hlc) = record.after.max_hlc() {
                    changes.push(Change {
                        collection: record.collection.clone(),
                        key: record.key.clone(),
                        hlc,
                        state: record.after.clone(),
                    });
                }
            }
            Visibility::OutsideShape | Visibility::Hidden => {
                // Only a record the client could see before is announced as leaving.
                if record.before.as_ref().is_some_and(|before| subscription.view.classify(before) == Visibility::Inside)
                {
                    removed.push(record.key.clone());
                }
            }
        }
    }
    let mut frames = Vec::new();
    if !changes.is_empty() {
        frames.push(ServerMessage::Changes { subscription_id: id, changes, cursor: cursor.clone(), caught_up: true });
    }
    if !removed.is_empty() {
        frames.push(ServerMessage::Removed { subscription_id: id, keys: removed, cursor });
    }
    frames
}

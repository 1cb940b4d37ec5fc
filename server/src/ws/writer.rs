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
    /// Send a message.
    Message(ServerMessage),
    /// A subscription starts (catching up: live batches are held).
    Subscribe {
        /// The subscription.
        id: SubscriptionId,
        /// Its collection.
        collection: CollectionName,
        /// What its client may see.
        view: View,
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
                Some(Outbound::Message(message)) => vec![message],
                Some(Outbound::Subscribe { id, collection, view }) => {
                    subscriptions.insert(id, Subscription { collection, view, held: Some(Vec::new()) });
                    continue;
                }
                Some(Outbound::CaughtUp(id)) => {
                    let Some(subscription) = subscriptions.get_mut(&id) else { continue };
                    let held = subscription.held.take().unwrap_or_default();
                    held.iter().flat_map(|live| deliver(&state, id, subscription, live)).collect()
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
                        None => frames.extend(deliver(&state, *id, subscription, &live)),
                    }
                }
                if overflow {
                    break WriterEnd::SlowConsumer;
                }
                frames
            }
        };
        for frame in frames {
            match send(&state, &mut sink, &listener, &frame).await {
                Ok(()) => {}
                Err(end) => return finish(&state, sink, end).await,
            }
        }
    };
    finish(&state, sink, end).await
}

async fn send(
    state: &AppState,
    sink: &mut Sink,
    listener: &Listener,
    message: &ServerMessage,
) -> Result<(), WriterEnd> {
    if let ServerMessage::Error { code, .. } = message {
        state.metrics.error(*code);
    }
    let bytes = message.encode();
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

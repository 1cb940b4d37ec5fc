//! The WebSocket endpoint `/v1/ws`: one task reads and handles the client's frames in
//! order, an ack pipeline acknowledges batches in the order they were sent once they
//! are durable, and a writer ([`writer`]) owns the socket's sending half.
//!
//! Flow of a push: the reader checks the batch and appends it to the engine (logged and
//! merged, on a blocking thread), then hands the pending batch to the ack pipeline and
//! goes on reading — up to `limits.inflight_batches` batches wait for durability at
//! once, which is what lets one connection share WAL syncs with itself. Refusals travel
//! through the same pipeline, so acks and errors arrive in batch order.

pub mod writer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use tokio::sync::mpsc;
use weft_core::key::{CollectionName, PartitionId};
use weft_core::protocol::{
    BatchId, ClientMessage, Cursor, ErrorCode, PROTOCOL_VERSION, ServerMessage, SessionId, SubscriptionId,
};
use weft_storage::engine::{Appended, Engine};

use crate::auth::Principal;
use crate::auth::rules::{Access, Operation};
use crate::limits::{ConnectionSlot, RateLimiter};
use crate::metrics::TransportLabels;
use crate::state::AppState;
use crate::sync::view::View;
use crate::sync::{OpError, pull, push};
use writer::Outbound;

/// Initial read buffer of a WebSocket (it grows to fit a larger frame).
const WS_READ_BUFFER_BYTES: usize = 4 << 10;
/// Bytes a WebSocket gathers before writing to the socket (every frame is flushed anyway).
const WS_WRITE_BUFFER_BYTES: usize = 8 << 10;

/// How long a new connection has to send its hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

const WS: TransportLabels = TransportLabels { transport: "ws" };

/// `GET /v1/ws`: upgrades, unless the caller's IP is at its connection limit.
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
        return crate::http::error_response(&state, &error);
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
        .on_upgrade(move |socket| serve_connection(state, socket, slot))
}

async fn serve_connection(state: Arc<AppState>, socket: WebSocket, _slot: ConnectionSlot) {
    let _open = state.track_connection();
    let id = state.connection_id();
    state.metrics.connections.inc();
    state.metrics.connections_total.inc();
    let limits = state.config.limits.clone();
    let (sink, stream) = socket.split();
    let listener = state.hub.connect(id, limits.outbound_queue_frames);
    let (out, outbound) = mpsc::channel::<Outbound>(limits.outbound_queue_frames.max(1));
    // Boxed: a channel allocates its first block of 32 slots up front, and an idle
    // connection should not pay for 32 inline batches.
    let (acks, pending) = mpsc::channel::<Box<Pending>>(limits.inflight_batches.max(1));
    let budget_bytes = u32::try_from(limits.outbound_queue_bytes.max(1)).unwrap_or(u32::MAX);
    let writer = tokio::spawn(writer::run(Arc::clone(&state), sink, outbound, listener));
    let acker = tokio::spawn(ack_pipeline(Arc::clone(&state), pending, out.clone()));
    let mut connection = Connection {
        state: Arc::clone(&state),
        id,
        out,
        acks,
        principal: None,
        subscriptions: HashMap::new(),
        reconciling: HashMap::new(),
        next_session: 0,
        limiter: RateLimiter::new(limits.ops_per_second, limits.ops_burst),
        budget: Arc::new(tokio::sync::Semaphore::new(budget_bytes as usize)),
        budget_bytes,
    };
    let mut stream = stream;
    let shutting_down = connection.read(&mut stream).await;
    let Connection { out, acks, subscriptions, .. } = connection;
    // Every batch already read is acknowledged (or refused) before the connection ends.
    drop(acks);
    let finish = async {
        let _ = acker.await;
        if shutting_down {
            let error = OpError::new(ErrorCode::Unavailable, "the server is shutting down; reconnect later");
            let _ = out.send(Outbound::Message(Box::new(error.to_message(None, true)))).await;
        }
        drop(out);
        let _ = writer.await;
    };
    tokio::pin!(finish);
    // Keep reading (and discarding) while the last frames go out: closing a socket with
    // unread input resets it, and a reset can destroy frames the client has not read yet.
    loop {
        tokio::select! {
            () = &mut finish => break,
            frame = stream.next() => if !matches!(frame, Some(Ok(_))) {
                (&mut finish).await;
                break;
            },
        }
    }
    // The writer sent a close frame; give the client a moment to answer it.
    let _ =
        tokio::time::timeout(Duration::from_secs(2), async { while let Some(Ok(_)) = stream.next().await {} }).await;
    state.hub.disconnect(id);
    state.metrics.subscriptions.dec_by(subscriptions.len() as i64);
    state.metrics.connections.dec();
}

/// How long until `at_s` (seconds since the Unix epoch); zero if it has passed.
fn until_unix_s(at_s: u64) -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Duration::from_secs(at_s).saturating_sub(now)
}

/// A batch on its way to an ack.
enum Pending {
    Appended { batch_id: BatchId, appended: Appended, changes: usize, received: Instant },
    Refused { batch_id: BatchId, error: OpError },
}

async fn ack_pipeline(state: Arc<AppState>, mut pending: mpsc::Receiver<Box<Pending>>, out: mpsc::Sender<Outbound>) {
    while let Some(item) = pending.recv().await {
        let message = match *item {
            Pending::Refused { batch_id, error } => error.to_message(Some(batch_id), false),
            Pending::Appended { batch_id, appended, changes, received } => {
                let engine = match state.engine() {
                    Ok(engine) => Arc::clone(engine),
                    Err(error) => {
                        let _ = out.send(Outbound::Message(Box::new(error.to_message(Some(batch_id), false)))).await;
                        continue;
                    }
                };
                match tokio::task::spawn_blocking(move || engine.wait(appended)).await {
                    Ok(Ok(_)) => {
                        state.metrics.ops.get_or_create(&WS).inc_by(changes as u64);
                        state.metrics.acks.get_or_create(&WS).inc();
                        state.metrics.ack_latency.observe(received.elapsed().as_secs_f64());
                        ServerMessage::Ack { batch_id }
                    }
                    Ok(Err(error)) => OpError::from(error).to_message(Some(batch_id), false),
                    Err(_) => OpError::new(ErrorCode::Internal, "the write failed inside the server")
                        .to_message(Some(batch_id), false),
                }
            }
        };
        if out.send(Outbound::Message(Box::new(message))).await.is_err() {
            return;
        }
    }
}

struct Connection {
    state: Arc<AppState>,
    id: u64,
    out: mpsc::Sender<Outbound>,
    acks: mpsc::Sender<Box<Pending>>,
    principal: Option<Principal>,
    subscriptions: HashMap<SubscriptionId, CollectionName>,
    /// Reconciliations this server started for subscriptions whose cursor came from
    /// another log: when one ends, its subscription has caught up at the cursor kept here.
    reconciling: HashMap<SessionId, (SubscriptionId, Cursor)>,
    next_session: u32,
    limiter: RateLimiter,
    /// Bytes of encoded frames this reader may have queued for the writer
    /// (`limits.outbound_queue_bytes`): past it the reader waits — it stops reading the
    /// socket — until the client takes what was sent. A client asking for large results
    /// without reading them holds at most this much server memory, then is closed as a
    /// slow consumer when a send stalls.
    budget: Arc<tokio::sync::Semaphore>,
    budget_bytes: u32,
}

/// What to do after a frame.
enum Next {
    Continue,
    Close,
}

impl Connection {
    /// Reads frames until the client leaves, a fatal error, or shutdown (returns true).
    async fn read(&mut self, stream: &mut SplitStream<WebSocket>) -> bool {
        let mut shutdown = self.state.shutdown.subscribe();
        if *shutdown.borrow() {
            return true;
        }
        // The hello comes first, within HELLO_TIMEOUT.
        let first = tokio::time::timeout(HELLO_TIMEOUT, stream.next()).await;
        let Ok(Some(Ok(first))) = first else { return false };
        match Box::pin(self.handle_message(first)).await {
            Next::Continue if self.principal.is_some() => {}
            _ => return false,
        }
        // A session never outlives its token: at `exp` (plus leeway) it ends with
        // TokenExpired, and the client reconnects with a fresh token.
        let expires_at_s = self.principal.as_ref().and_then(|principal| principal.expires_at_s);
        let expired = async move {
            match expires_at_s {
                Some(at) => tokio::time::sleep(until_unix_s(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        loop {
            tokio::select! {
                () = &mut expired => {
                    let at = expires_at_s.unwrap_or_default();
                    let error = OpError::new(
                        ErrorCode::TokenExpired,
                        format!("the session's token expired (exp + leeway = {at} s since the epoch); reconnect with a fresh token"),
                    );
                    self.refuse(error, true).await;
                    return false;
                }
                () = self.out.closed() => return false,
                changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { return true },
                message = stream.next() => match message {
                    // Boxed: the handling of one message (queries, catch-up) needs a large
                    // future; inline, every idle connection would carry that much memory.
                    Some(Ok(message)) => if let Next::Close = Box::pin(self.handle_message(message)).await { return false },
                    _ => return false,
                },
            }
        }
    }

    async fn send(&self, message: ServerMessage) {
        let code = match &message {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        };
        let bytes = message.encode();
        drop(message);
        // A frame larger than the whole budget takes all of it (frames are capped by
        // `frame_bytes_max` and query results by their own limits).
        let wanted = u32::try_from(bytes.len()).unwrap_or(u32::MAX).clamp(1, self.budget_bytes);
        let Ok(permit) = Arc::clone(&self.budget).acquire_many_owned(wanted).await else { return };
        let budget = writer::Budget::new(permit, wanted as usize, &self.state.metrics.outbound_queued_bytes);
        let _ = self.out.send(Outbound::Frame { bytes, code, budget }).await;
    }

    async fn refuse(&self, error: OpError, fatal: bool) -> Next {
        self.send(error.to_message(None, fatal)).await;
        if fatal { Next::Close } else { Next::Continue }
    }

    async fn handle_message(&mut self, message: Message) -> Next {
        let bytes = match message {
            Message::Binary(bytes) => bytes,
            Message::Text(_) => {
                let error =
                    OpError::new(ErrorCode::Malformed, "text frame: the protocol uses binary MessagePack frames");
                return self.refuse(error, self.principal.is_none()).await;
            }
            Message::Close(_) => return Next::Close,
            Message::Ping(_) | Message::Pong(_) => return Next::Continue,
        };
        self.state.metrics.bytes_received.inc_by(bytes.len() as u64);
        let limit = self.state.config.limits.frame_bytes_max;
        if bytes.len() > limit {
            let error = OpError::new(
                ErrorCode::FrameTooLarge,
                format!("frame of {} bytes, at most {limit} allowed", bytes.len()),
            );
            return self.refuse(error, self.principal.is_none()).await;
        }
        let limits = self.state.decode_limits();
        let message = match ClientMessage::decode(&bytes, &limits) {
            Ok(message) => message,
            Err(error) => {
                let error = OpError::new(ErrorCode::from(&error), format!("frame refused: {error}"));
                // A push that does not decode is refused like any refused batch: with its
                // id, in batch order behind the acks still in flight.
                if self.principal.is_some()
                    && let Some(batch_id) = ClientMessage::push_batch_id(&bytes, &limits)
                {
                    let refused = Box::new(Pending::Refused { batch_id, error });
                    return if self.acks.send(refused).await.is_err() { Next::Close } else { Next::Continue };
                }
                return self.refuse(error, self.principal.is_none()).await;
            }
        };
        let Some(principal) = self.principal.clone() else {
            return self.hello(message).await;
        };
        match message {
            ClientMessage::Hello { .. } => {
                self.refuse(OpError::new(ErrorCode::UnexpectedMessage, "hello sent twice on one connection"), false)
                    .await
            }
            ClientMessage::Push { batch_id, changes } => self.push(principal, batch_id, changes).await,
            ClientMessage::Subscribe { subscription_id, collection, cursor, shape } => {
                self.subscribe(&principal, subscription_id, collection, cursor, shape).await
            }
            ClientMessage::Unsubscribe { subscription_id } => {
                if let Some(collection) = self.subscriptions.remove(&subscription_id) {
                    self.state.hub.unwatch(self.id, &collection);
                    self.state.metrics.subscriptions.dec();
                    let _ = self.out.send(Outbound::Unsubscribe(subscription_id)).await;
                }
                Next::Continue
            }
            ClientMessage::Reconcile { session_id, collection, step } => {
                let answer = crate::sync::reconcile::answer(&self.state, &principal, &collection, step, self.id).await;
                let finished = match answer {
                    Ok(Some(step)) => {
                        let done = step.asks_nothing();
                        self.send(ServerMessage::Reconcile { session_id, collection, step }).await;
                        done
                    }
                    Ok(None) => true,
                    Err(error) => {
                        self.send(error.to_message(None, false)).await;
                        true
                    }
                };
                if finished && let Some((subscription_id, cursor)) = self.reconciling.remove(&session_id) {
                    // The subscription's view is now the server's: catch-up is complete.
                    self.send(ServerMessage::Changes { subscription_id, changes: Vec::new(), cursor, caught_up: true })
                        .await;
                    let _ = self.out.send(Outbound::CaughtUp(subscription_id)).await;
                }
                Next::Continue
            }
            ClientMessage::Ping { nonce } => {
                self.send(ServerMessage::Pong { nonce }).await;
                Next::Continue
            }
            ClientMessage::Query { request_id, query } => {
                let state = Arc::clone(&self.state);
                let answer = tokio::task::spawn_blocking(move || {
                    let parsed = crate::sync::query::parse_text(&query)?;
                    crate::sync::query::run(&state, &principal, &parsed)
                })
                .await
                .unwrap_or_else(|_| Err(OpError::new(ErrorCode::Internal, "query failed inside the server")));
                match answer {
                    Ok(result) => self.send(crate::sync::query::result_message(request_id, &result)).await,
                    Err(mut error) => {
                        error.message = format!("query {request_id}: {}", error.message);
                        self.send(error.to_message(None, false)).await;
                    }
                }
                Next::Continue
            }
        }
    }

    async fn hello(&mut self, message: ClientMessage) -> Next {
        let ClientMessage::Hello { protocol_version, token, .. } = message else {
            return self
                .refuse(OpError::new(ErrorCode::UnexpectedMessage, "the first message must be a hello"), true)
                .await;
        };
        if protocol_version != PROTOCOL_VERSION {
            let error = OpError::new(
                ErrorCode::UnsupportedVersion,
                format!("protocol version {protocol_version} is not supported; this server speaks {PROTOCOL_VERSION}"),
            );
            return self.refuse(error, true).await;
        }
        let mut verified = self.state.authenticate(token.as_deref());
        if let (Err(crate::auth::jwt::AuthError::Invalid(_)), Some(verifier)) = (&verified, &self.state.verifier)
            && verifier.has_jwks_url()
            && verifier.refresh().await.is_ok()
        {
            // The key may have been rotated since the last fetch.
            verified = self.state.authenticate(token.as_deref());
        }
        match verified {
            Ok(principal) => {
                self.principal = Some(principal);
                let server_time_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                self.send(ServerMessage::Welcome {
                    protocol_version: PROTOCOL_VERSION,
                    server_time_ms,
                    node_id: self.state.node_id,
                    partition_map_version: 0,
                })
                .await;
                Next::Continue
            }
            Err(error) => self.refuse(OpError::new(error.code(), error.to_string()), true).await,
        }
    }

    async fn push(&mut self, principal: Principal, batch_id: BatchId, changes: Vec<weft_core::change::Change>) -> Next {
        let received = Instant::now();
        let count = changes.len();
        let pending = if !self.limiter.try_take(count) {
            let limits = &self.state.config.limits;
            let error = OpError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} changes/s (burst {}) on this connection; retry later",
                    limits.ops_per_second, limits.ops_burst
                ),
            );
            Pending::Refused { batch_id, error }
        } else {
            let state = Arc::clone(&self.state);
            let origin = self.id;
            let appended =
                tokio::task::spawn_blocking(move || push::check_and_append(&state, &principal, changes, origin)).await;
            match appended {
                Ok(Ok(appended)) => Pending::Appended { batch_id, appended, changes: count, received },
                Ok(Err(error)) => Pending::Refused { batch_id, error },
                Err(_) => Pending::Refused {
                    batch_id,
                    error: OpError::new(ErrorCode::Internal, "the write failed inside the server"),
                },
            }
        };
        if self.acks.send(Box::new(pending)).await.is_err() { Next::Close } else { Next::Continue }
    }

    async fn subscribe(
        &mut self,
        principal: &Principal,
        id: SubscriptionId,
        collection: CollectionName,
        cursor: Option<weft_core::protocol::Cursor>,
        shape: Option<weft_core::protocol::Shape>,
    ) -> Next {
        let max = self.state.config.limits.subscriptions_max;
        if !self.subscriptions.contains_key(&id) && self.subscriptions.len() >= max {
            let error = OpError::new(
                ErrorCode::TooManySubscriptions,
                format!("subscription to {collection}: at most {max} subscriptions per connection"),
            );
            return self.refuse(error, false).await;
        }
        let access = self.state.rules.access(principal, collection.as_str(), Operation::Read);
        if access == Access::Denied {
            let error =
                OpError::new(ErrorCode::Forbidden, format!("read of {collection} denied for {:?}", principal.sub));
            return self.refuse(error, false).await;
        }
        let engine = match self.state.engine() {
            Ok(engine) => Arc::clone(engine),
            Err(error) => return self.refuse(error, false).await,
        };
        if let Some(previous) = self.subscriptions.insert(id, collection.clone()) {
            self.state.hub.unwatch(self.id, &previous);
        } else {
            self.state.metrics.subscriptions.inc();
        }
        // Watch first, then read the store: every change is either in the catch-up or
        // arrives live (held by the writer until catch-up is sent).
        self.state.hub.watch(self.id, &collection);
        let view = View { access, shape };
        let _ = self
            .out
            .send(Outbound::Subscribe { id, collection: collection.clone(), view: Box::new(view.clone()) })
            .await;
        let foreign = cursor.as_ref().is_some_and(|c| c.log != self.state.log_id);
        let mut cursor = pull::start_cursor(self.state.log_id, cursor.as_ref());
        if foreign && view.shape.is_none() && view.access == Access::All {
            return self.reconcile_instead(id, collection, engine).await;
        }
        let flushed = {
            let engine = Arc::clone(&engine);
            let collection = collection.clone();
            tokio::task::spawn_blocking(move || engine.flush_collection(&collection)).await
        };
        if !matches!(flushed, Ok(Ok(_))) {
            return self
                .refuse(OpError::new(ErrorCode::Internal, "catch-up failed: storage flush failed"), false)
                .await;
        }
        loop {
            let page = {
                let (engine, collection, from, view) =
                    (Arc::clone(&engine), collection.clone(), cursor.clone(), view.clone());
                tokio::task::spawn_blocking(move || pull::next_page(&engine, &collection, &from, &view)).await
            };
            let page = match page {
                Ok(Ok(page)) => page,
                Ok(Err(error)) => return self.refuse(error, false).await,
                Err(_) => return self.refuse(OpError::new(ErrorCode::Internal, "catch-up failed"), false).await,
            };
            if !page.removed.is_empty() {
                self.send(ServerMessage::Removed { subscription_id: id, keys: page.removed, cursor: cursor.clone() })
                    .await;
            }
            cursor = page.cursor;
            let caught_up = page.caught_up;
            self.send(ServerMessage::Changes {
                subscription_id: id,
                changes: page.changes,
                cursor: cursor.clone(),
                caught_up,
            })
            .await;
            if caught_up {
                break;
            }
        }
        let _ = self.out.send(Outbound::CaughtUp(id)).await;
        Next::Continue
    }

    /// Catch-up for a client whose cursor comes from another log (a replaced data
    /// directory, another node): instead of sending the whole collection, the server
    /// starts a merkle reconciliation, which moves only the differences — both ways.
    /// Live changes after the snapshot cursor are held until it ends.
    async fn reconcile_instead(&mut self, id: SubscriptionId, collection: CollectionName, engine: Arc<Engine>) -> Next {
        let snapshot = {
            let engine = Arc::clone(&engine);
            let collection = collection.clone();
            tokio::task::spawn_blocking(move || (engine.seqs(&collection), engine.reconcile_start(&collection))).await
        };
        let Ok((seqs, step)) = snapshot else {
            return self.refuse(OpError::new(ErrorCode::Internal, "catch-up failed"), false).await;
        };
        let mut cursor = Cursor::new(self.state.log_id);
        for (index, seq) in seqs.into_iter().enumerate() {
            if let Some(partition) = u16::try_from(index).ok().and_then(PartitionId::new)
                && seq > 0
            {
                cursor.advance(partition, seq);
            }
        }
        // The client adopts this log's cursor now; what lies before it comes by
        // reconciliation, what comes after it arrives live.
        self.send(ServerMessage::Changes {
            subscription_id: id,
            changes: Vec::new(),
            cursor: cursor.clone(),
            caught_up: false,
        })
        .await;
        self.next_session += 1;
        let session_id = SessionId(SERVER_SESSION_BIT | self.next_session);
        self.reconciling.insert(session_id, (id, cursor));
        self.send(ServerMessage::Reconcile { session_id, collection, step }).await;
        Next::Continue
    }
}

/// Session ids of reconciliations the server starts have this bit set, so they never
/// collide with the client's own.
pub const SERVER_SESSION_BIT: u32 = 1 << 31;

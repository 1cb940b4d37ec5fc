//! A WebSocket connection (`/v1/ws`, upgraded in `crate::http::websocket`): the IO
//! around one protocol session (`crate::session`). One task owns the session: it reads
//! frames, feeds it the connection's live batches from the hub and the outcomes of waits
//! for durability, and carries out what it returns; a writer task ([`writer`]) owns the
//! socket's sending half; an ack task waits for pushed batches to be durable, one after
//! another in batch order.
//!
//! Flow of a push: the session checks and appends the batch (on a blocking thread) and
//! returns it as pending; the ack task waits for it while the reader goes on reading —
//! up to `limits.inflight_batches` batches wait at once, which is what lets one
//! connection share WAL syncs with itself — and hands the outcome back to the session,
//! which answers in batch order.
//!
//! While a catch-up or a query is under way no new frame is read (the client's messages
//! are answered in order), but live batches and acks keep flowing. Every frame takes its
//! size from the connection's byte budget (`limits.outbound_queue_bytes`) until the
//! socket has taken it: a client that does not read stops being read from.

pub mod writer;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weft_core::protocol::{ErrorCode, ServerMessage, SubscriptionId};

use crate::error::OpError;
use crate::hub::{Listener, LiveBatch};
use crate::limits::ConnectionSlot;
use crate::session::{Effect, PendingPush, PushTicket, Session};
use crate::state::AppState;
use writer::{Budget, Frame};

/// How long a new connection has to send its hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// A batch on its way to the ack task, and when the frame that brought it arrived.
/// Boxed, like [`Settled`]: a channel allocates its first block of 32 slots up front, and
/// an idle connection should not pay for 32 inline batches.
type Durable = Box<(PendingPush, Instant)>;
/// A batch's wait for durability, done.
type Settled = Box<(PushTicket, Result<(), OpError>)>;

/// Serves an upgraded connection until it ends; `_slot` holds its place in the per-IP
/// connection count.
pub async fn serve(state: Arc<AppState>, socket: WebSocket, _slot: ConnectionSlot) {
    let _open = state.track_connection();
    state.metrics.connections.inc();
    state.metrics.connections_total.inc();
    let limits = state.config.limits.clone();
    let session = Box::new(Session::connect(Arc::clone(&state)));
    let id = session.id();
    let Listener { receiver: live, overflow } = state.hub.connect(id, limits.outbound_queue_frames);
    let (sink, mut stream) = socket.split();
    let (frames, queue) = mpsc::channel::<Frame>(limits.outbound_queue_frames.max(1));
    let writer = tokio::spawn(writer::run(Arc::clone(&state), sink, queue, overflow));
    let inflight = limits.inflight_batches.max(1);
    // Never full: the reader stops reading at `inflight` pending batches.
    let (durable, to_wait) = mpsc::channel::<Durable>(inflight + 1);
    let (settled_sender, settled) = mpsc::channel::<Settled>(inflight + 1);
    let acker = tokio::spawn(wait_in_order(Arc::clone(&state), to_wait, settled_sender));
    let budget_bytes = u32::try_from(limits.outbound_queue_bytes.max(1)).unwrap_or(u32::MAX);
    let out = Outbox {
        frames,
        budget: Arc::new(tokio::sync::Semaphore::new(budget_bytes as usize)),
        budget_bytes,
        gauge: state.metrics.outbound_queued_bytes.clone(),
    };
    let mut connection = Connection {
        state: Arc::clone(&state),
        out,
        durable,
        settled,
        live,
        inflight,
        catch_up: VecDeque::new(),
        query: None,
        reading: true,
    };
    let session = connection.converse(session, &mut stream).await;
    let Connection { out, durable, settled, live, .. } = connection;
    drop((durable, settled, live));
    drop(session);
    let _ = acker.await;
    let finish = async {
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
    state.metrics.connections.dec();
}

/// Waits for pending batches to be durable, in the order the session appended them, and
/// hands each outcome back.
async fn wait_in_order(state: Arc<AppState>, mut pending: mpsc::Receiver<Durable>, settled: mpsc::Sender<Settled>) {
    while let Some(item) = pending.recv().await {
        let (PendingPush { ticket, appended }, received) = *item;
        let outcome = match state.engine() {
            Ok(engine) => {
                let engine = Arc::clone(engine);
                tokio::task::spawn_blocking(move || engine.wait(appended).map(drop).map_err(OpError::from))
                    .await
                    .unwrap_or_else(|_| Err(OpError::new(ErrorCode::Internal, "the write failed inside the server")))
            }
            Err(error) => Err(error),
        };
        if outcome.is_ok() && ticket.batch_id().is_some() {
            state.metrics.ack_latency.observe(received.elapsed().as_secs_f64());
        }
        if settled.send(Box::new((ticket, outcome))).await.is_err() {
            return;
        }
    }
}

/// Frames on their way to the writer, within the connection's byte budget.
struct Outbox {
    frames: mpsc::Sender<Frame>,
    /// Bytes of encoded frames this connection may have queued for the writer
    /// (`limits.outbound_queue_bytes`): past it the session task waits — it stops reading
    /// the socket — until the client takes what was sent. A client asking for large
    /// results without reading them holds at most this much server memory, then is
    /// closed as a slow consumer when a send stalls.
    budget: Arc<tokio::sync::Semaphore>,
    budget_bytes: u32,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl Outbox {
    /// Queues `message`; false when the writer is gone.
    async fn send(&self, message: ServerMessage) -> bool {
        let code = match &message {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        };
        let bytes = message.encode();
        drop(message);
        // A frame larger than the whole budget takes all of it (frames are capped by
        // `frame_bytes_max` and query results by their own limits).
        let wanted = u32::try_from(bytes.len()).unwrap_or(u32::MAX).clamp(1, self.budget_bytes);
        let Ok(permit) = Arc::clone(&self.budget).acquire_many_owned(wanted).await else { return false };
        let budget = Budget::new(permit, wanted as usize, &self.gauge);
        self.frames.send(Frame { bytes, code, budget }).await.is_ok()
    }
}

struct Connection {
    state: Arc<AppState>,
    out: Outbox,
    durable: mpsc::Sender<Durable>,
    settled: mpsc::Receiver<Settled>,
    live: mpsc::Receiver<Arc<LiveBatch>>,
    inflight: usize,
    /// Subscriptions with catch-up pages still to send, in order.
    catch_up: VecDeque<SubscriptionId>,
    /// The query being answered.
    query: Option<JoinHandle<ServerMessage>>,
    /// Whether frames are still read (false once the client left, a fatal error was
    /// sent, or shutdown began).
    reading: bool,
}

/// What woke the connection up.
enum Event {
    WriterGone,
    Shutdown,
    Settled(Settled),
    Live(Arc<LiveBatch>),
    Expiry,
    Answer(Result<ServerMessage, tokio::task::JoinError>),
    Frame(Option<Result<Message, axum::Error>>),
    CatchUp,
}

/// The session was lost: a blocking call of it panicked.
struct Lost;

/// Runs `call` on the session on the blocking pool (it may read or write the store).
async fn blocking<T: Send + 'static>(
    mut session: Box<Session>,
    call: impl FnOnce(&mut Session) -> T + Send + 'static,
) -> Result<(Box<Session>, T), Lost> {
    tokio::task::spawn_blocking(move || {
        let result = call(&mut session);
        (session, result)
    })
    .await
    .map_err(|_| Lost)
}

async fn next_answer(query: &mut Option<JoinHandle<ServerMessage>>) -> Result<ServerMessage, tokio::task::JoinError> {
    match query {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

impl Connection {
    /// The conversation: the hello, then every event until the connection ends and
    /// every batch read is answered. Returns the session (dropping it ends its
    /// subscriptions), unless a call of it panicked.
    async fn converse(&mut self, session: Box<Session>, stream: &mut SplitStream<WebSocket>) -> Option<Box<Session>> {
        let mut shutdown = self.state.shutdown.subscribe();
        let mut session = session;
        if *shutdown.borrow() {
            let effects = session.shutdown();
            Box::pin(self.apply(&mut session, effects, Instant::now())).await;
            return Some(session);
        }
        // The hello comes first, within HELLO_TIMEOUT.
        let first = tokio::time::timeout(HELLO_TIMEOUT, stream.next()).await;
        let Ok(Some(Ok(first))) = first else { return Some(session) };
        let effects;
        (session, effects) = Box::pin(self.frame(session, first)).await.ok()?;
        if !Box::pin(self.apply(&mut session, effects, Instant::now())).await || !session.is_open() {
            return Some(session);
        }
        // A session never outlives its token: `tick` ends it at `exp` (plus leeway).
        let expiry = tokio::time::sleep(Duration::from_millis(session.expires_in_ms().unwrap_or(0)));
        let mut expiring = session.expires_in_ms().is_some();
        tokio::pin!(expiry);
        let mut shutting_down = false;
        loop {
            let idle = self.catch_up.is_empty() && self.query.is_none();
            if !self.reading && idle && session.pushes_in_flight() == 0 {
                return Some(session);
            }
            let can_read = self.reading && idle && session.pushes_in_flight() < self.inflight;
            let event = tokio::select! {
                () = self.out.frames.closed() => Event::WriterGone,
                changed = shutdown.changed(), if self.reading && idle && !shutting_down => {
                    if changed.is_err() || *shutdown.borrow() { Event::Shutdown } else { continue }
                }
                Some(settled) = self.settled.recv() => Event::Settled(settled),
                Some(batch) = self.live.recv() => Event::Live(batch),
                () = &mut expiry, if expiring => Event::Expiry,
                answer = next_answer(&mut self.query) => Event::Answer(answer),
                frame = stream.next(), if can_read => Event::Frame(frame),
                () = std::future::ready(()), if !self.catch_up.is_empty() && self.query.is_none() => Event::CatchUp,
            };
            let mut received = Instant::now();
            let effects = match event {
                Event::WriterGone => return Some(session),
                Event::Shutdown => {
                    shutting_down = true;
                    self.reading = false;
                    session.shutdown()
                }
                Event::Settled(settled) => {
                    let (ticket, outcome) = *settled;
                    session.push_settled(ticket, outcome)
                }
                Event::Live(batch) => session.live(batch),
                Event::Expiry => {
                    let effects = session.tick();
                    match session.expires_in_ms() {
                        Some(left) if session.is_open() => {
                            let at = tokio::time::Instant::now() + Duration::from_millis(left.max(1));
                            expiry.as_mut().reset(at);
                        }
                        _ => expiring = false,
                    }
                    effects
                }
                Event::Answer(answer) => {
                    self.query = None;
                    let message = answer.unwrap_or_else(|_| {
                        OpError::new(ErrorCode::Internal, "query failed inside the server").to_message(None, false)
                    });
                    vec![Effect::Send(message)]
                }
                Event::Frame(Some(Ok(message))) => {
                    received = Instant::now();
                    let effects;
                    (session, effects) = Box::pin(self.frame(session, message)).await.ok()?;
                    effects
                }
                Event::Frame(_) => {
                    // The client left: answer what was read, send nothing else.
                    self.reading = false;
                    self.catch_up.clear();
                    Vec::new()
                }
                Event::CatchUp => match self.catch_up.pop_front() {
                    Some(id) => {
                        let effects;
                        (session, effects) =
                            Box::pin(blocking(session, move |session| session.catch_up(id))).await.ok()?;
                        effects
                    }
                    None => Vec::new(),
                },
            };
            // Boxed: carrying out effects (a token check may fetch keys) needs a large
            // future; inline, every idle connection would carry that much memory.
            if !Box::pin(self.apply(&mut session, effects, received)).await {
                return Some(session);
            }
        }
    }

    /// Hands one WebSocket message to the session.
    async fn frame(
        &mut self,
        mut session: Box<Session>,
        message: Message,
    ) -> Result<(Box<Session>, Vec<Effect>), Lost> {
        match message {
            Message::Binary(bytes) => {
                self.state.metrics.bytes_received.inc_by(bytes.len() as u64);
                blocking(session, move |session| session.handle_frame(&bytes)).await
            }
            Message::Text(_) => {
                let error =
                    OpError::new(ErrorCode::Malformed, "text frame: the protocol uses binary MessagePack frames");
                let effects = session.refuse(error);
                Ok((session, effects))
            }
            Message::Close(_) => {
                self.reading = false;
                Ok((session, Vec::new()))
            }
            Message::Ping(_) | Message::Pong(_) => Ok((session, Vec::new())),
        }
    }

    /// Carries out `effects` in order (`received`: when the frame that caused them
    /// arrived). False when the writer is gone.
    async fn apply(&mut self, session: &mut Session, effects: Vec<Effect>, received: Instant) -> bool {
        let mut queue = VecDeque::from(effects);
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Send(message) => {
                    if !self.out.send(message).await {
                        return false;
                    }
                }
                Effect::AwaitDurable(pending) => {
                    if self.durable.send(Box::new((pending, received))).await.is_err() {
                        return false;
                    }
                }
                Effect::CatchUp(id) => self.catch_up.push_back(id),
                Effect::Query(task) => self.query = Some(tokio::task::spawn_blocking(move || task.run())),
                Effect::Authenticate { token } => {
                    let verdict = self.state.authenticate_refreshing(token.as_deref()).await;
                    for effect in session.authenticated(verdict).into_iter().rev() {
                        queue.push_front(effect);
                    }
                }
                Effect::Close => {
                    self.reading = false;
                    self.catch_up.clear();
                    self.query = None;
                }
            }
        }
        true
    }
}

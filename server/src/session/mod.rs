//! The protocol session: the server's side of the sync protocol as plain synchronous
//! Rust, with no IO of its own — the counterpart of `weft_core::replica::Replica`. Both
//! transports drive it, and so can a deterministic simulation (no runtime, no sockets, a
//! simulated clock).
//!
//! # Inputs
//!
//! A [`Session`] is made for one caller: [`Session::connect`] for a WebSocket before its
//! hello (the hello's token is verified by the driver, see [`Effect::Authenticate`]),
//! [`Session::new`] for a connection whose caller is already known, and
//! [`Session::stateless`] for one `POST /v1/sync` request. It then takes:
//!
//! - client frames ([`Session::handle_frame`]: size check, bounded decoding, errors by
//!   code) or decoded messages ([`Session::handle`]);
//! - outcomes of waits for durability ([`Session::push_settled`]);
//! - requests for the next catch-up page ([`Session::catch_up`]);
//! - durable live batches from the hub ([`Session::live`]);
//! - the passing of time ([`Session::tick`], read from the server clock `AppState::clock`,
//!   which a simulation drives) and shutdown ([`Session::shutdown`]).
//!
//! Each returns [`Effect`]s, to be carried out in order: messages to send, batches to
//! wait for, catch-up to continue, queries to run, a token to verify, the end of the
//! connection. Calls that read or write the store block (`handle`, `catch_up`); the others
//! only compute.
//!
//! # What lives here
//!
//! The hello (version, first-message rule, `Welcome` with the server clock's time), token
//! expiry, rate and subscription limits, every authorization decision ([`access`]: one
//! read view for catch-up, live changes, queries, reconciliation and the HTTP record
//! reads; the write rules for pushes and reconciled records), catch-up paging, live
//! delivery, reconciliation (also the exchange the server starts for a cursor from
//! another log) and query dispatch.
//!
//! # Ordering guarantees
//!
//! - A pushed batch is answered only after the driver reported it durable, and the
//!   answers of one session — acks, refusals, answers to reconciliation steps carrying
//!   records — leave in the order their messages arrived, whatever order the waits end
//!   in; a batch refused at once waits behind earlier batches still pending.
//! - A subscription's live changes are held from the moment it is registered (before the
//!   store is read) until its last catch-up page (or its server-started reconciliation)
//!   has been returned, then released in the order they arrived: a client's cursor never
//!   passes a change it was not sent.
//! - Effects of one call are in sending order; [`Effect::CatchUp`] is always last.
//!
//! # How the transports drive it
//!
//! - **WebSocket** (`crate::ws`): one task owns the session; it reads frames (not while
//!   a catch-up or query is under way, and not past `limits.inflight_batches` pending
//!   batches), feeds live batches and settled batches in between, runs blocking calls on
//!   the blocking pool, sends frames through a writer task within the connection's byte
//!   budget, and waits for durability on an ack task, batch after batch.
//! - **HTTP** `POST /v1/sync` (`crate::http::sync`): a stateless session per request;
//!   each frame of the envelope is handled and its effects run to the end at once
//!   (waits, pages up to [`PULL_PAGES_MAX`], queries) before the next, so the answers
//!   are in request order. The JSON form and the record and query endpoints use the
//!   same session.

pub mod access;
mod acks;
mod effect;
mod reads;
mod subscriptions;
mod writes;

use std::collections::BTreeMap;
use std::sync::Arc;

use weft_core::key::CollectionName;
use weft_core::protocol::{
    ClientMessage, Cursor, ErrorCode, PROTOCOL_VERSION, ServerMessage, SessionId, SubscriptionId,
};

pub use effect::{Effect, PendingPush, PushTicket};
pub use reads::QueryTask;
pub use subscriptions::PULL_PAGES_MAX;

use crate::auth::Principal;
use crate::auth::jwt::AuthError;
use crate::error::OpError;
use crate::limits::RateLimiter;
use crate::state::AppState;
use subscriptions::Subscription;

/// Session ids of reconciliations the server starts have this bit set, so they never
/// collide with the client's own.
pub const SERVER_SESSION_BIT: u32 = 1 << 31;

/// Which transport's rules a session follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// A WebSocket: hello first, subscriptions kept, live changes, rate limit.
    Connection,
    /// One HTTP request: hello optional, pulls of bounded length, nothing kept.
    Stateless,
}

impl Mode {
    fn transport(self) -> &'static str {
        match self {
            Mode::Connection => "ws",
            Mode::Stateless => "http",
        }
    }
}

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing but a hello is accepted.
    AwaitingHello,
    /// The hello's token is being verified.
    Authenticating,
    /// Serving.
    Open,
    /// A fatal error was sent; only answers of pending batches still leave.
    Closed,
}

/// The server side of one client's sync conversation (see the module documentation).
#[derive(Debug)]
pub struct Session {
    state: Arc<AppState>,
    mode: Mode,
    id: u64,
    phase: Phase,
    principal: Option<Principal>,
    /// Frames handled so far: a stateless session names a refused frame by its index.
    frames: usize,
    limiter: RateLimiter,
    acks: acks::AckQueue,
    /// Boxed: a map allocates room for 11 entries at its first insertion, and a
    /// connection with one subscription should not pay for 11 inline ones.
    subscriptions: BTreeMap<SubscriptionId, Box<Subscription>>,
    /// Reconciliations this server started for subscriptions whose cursor came from
    /// another log: when one ends, its subscription has caught up at the cursor kept here.
    reconciling: BTreeMap<SessionId, (SubscriptionId, Cursor)>,
    next_session: u32,
    /// After a retryable refusal: the refused batch's first change, and the code later
    /// batches are refused with until a push starts with that change again (see
    /// `writes.rs`).
    retry_first: Option<(writes::ChangeId, ErrorCode)>,
}

impl Session {
    fn with(state: Arc<AppState>, mode: Mode, principal: Option<Principal>) -> Session {
        let limits = &state.config.limits;
        let limiter = RateLimiter::new(limits.ops_per_second, limits.ops_burst, state.now_ms());
        let (id, phase) = match mode {
            Mode::Connection => (state.connection_id(), Phase::AwaitingHello),
            // Writes over HTTP belong to no connection: every subscriber hears them.
            Mode::Stateless => (0, Phase::Open),
        };
        Session {
            state,
            mode,
            id,
            phase,
            principal,
            frames: 0,
            limiter,
            acks: acks::AckQueue::default(),
            subscriptions: BTreeMap::new(),
            reconciling: BTreeMap::new(),
            next_session: 0,
            retry_first: None,
        }
    }

    /// A WebSocket connection before its hello: the hello's token comes back as
    /// [`Effect::Authenticate`].
    pub fn connect(state: Arc<AppState>) -> Session {
        Session::with(state, Mode::Connection, None)
    }

    /// A connection whose caller is already known (a hello's token is then not looked
    /// at): what a test or a simulation drives.
    pub fn new(state: Arc<AppState>, principal: Principal) -> Session {
        Session::with(state, Mode::Connection, Some(principal))
    }

    /// One `POST /v1/sync` request (or record or query request) by `principal`.
    pub fn stateless(state: Arc<AppState>, principal: Principal) -> Session {
        Session::with(state, Mode::Stateless, Some(principal))
    }

    /// This connection's id: the hub registration to feed [`Session::live`] from, and
    /// the origin tag of its writes (so it is not sent its own changes). 0 for stateless
    /// sessions.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the hello was answered with `Welcome` and no fatal error followed.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether a fatal error ended the conversation.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Milliseconds of server-clock time until the caller's token expires (then
    /// [`Session::tick`] ends the session); `None` when it never does.
    pub fn expires_in_ms(&self) -> Option<u64> {
        let at_s = self.principal.as_ref()?.expires_at_s?;
        Some(at_s.saturating_mul(1_000).saturating_sub(self.state.now_ms()))
    }

    /// The caller; `Unauthenticated` before the hello's token was verified (nothing but
    /// a hello is handled then, but the read methods can be called on any session).
    fn caller(&self) -> Result<&Principal, OpError> {
        self.principal
            .as_ref()
            .ok_or_else(|| OpError::new(ErrorCode::Unauthenticated, "the connection has not been authenticated"))
    }

    /// Origin tag of this session's writes.
    fn origin(&self) -> u64 {
        self.id
    }

    /// One binary frame from the client: refused by code when too large or not
    /// decodable (a push that does not decode is refused with its batch id, in batch
    /// order), else handled like [`Session::handle`].
    pub fn handle_frame(&mut self, bytes: &[u8]) -> Vec<Effect> {
        let index = self.frames;
        self.frames += 1;
        if self.is_closed() {
            return Vec::new();
        }
        let limit = self.state.config.limits.frame_bytes_max;
        if bytes.len() > limit {
            let error = OpError::new(
                ErrorCode::FrameTooLarge,
                format!("frame of {} bytes, at most {limit} allowed", bytes.len()),
            );
            return self.refuse(error);
        }
        let limits = self.state.decode_limits();
        match ClientMessage::decode(bytes, &limits) {
            Ok(message) => self.handle(message),
            Err(error) => {
                let what = match self.mode {
                    Mode::Connection => "frame".to_owned(),
                    Mode::Stateless => format!("frame {index}"),
                };
                let error = OpError::new(ErrorCode::from(&error), format!("{what} refused: {error}"));
                if self.mode == Mode::Connection
                    && self.is_open()
                    && let Some(batch_id) = ClientMessage::push_batch_id(bytes, &limits)
                {
                    return self.refuse_batch(batch_id, error);
                }
                self.refuse(error)
            }
        }
    }

    /// One decoded client message. Blocking: pushes, subscriptions and reconciliation
    /// read or write the store.
    pub fn handle(&mut self, message: ClientMessage) -> Vec<Effect> {
        match self.phase {
            Phase::Closed => return Vec::new(),
            Phase::AwaitingHello | Phase::Authenticating => return self.hello(message),
            Phase::Open => {}
        }
        match message {
            ClientMessage::Hello { .. } if self.mode == Mode::Connection => {
                self.refuse(OpError::new(ErrorCode::UnexpectedMessage, "hello sent twice on one connection"))
            }
            ClientMessage::Hello { protocol_version, .. } => match check_version(protocol_version) {
                Ok(()) => vec![self.welcome()],
                Err(error) => vec![Effect::Send(error.to_message(None, true))],
            },
            ClientMessage::Push { batch_id, changes } => self.push(batch_id, changes),
            ClientMessage::Subscribe { subscription_id, collection, cursor, shape } => {
                self.subscribe(subscription_id, collection, cursor, shape)
            }
            ClientMessage::Unsubscribe { subscription_id } => self.unsubscribe(subscription_id),
            ClientMessage::Reconcile { session_id, collection, step } => self.reconcile(session_id, collection, step),
            ClientMessage::Ping { nonce } => vec![Effect::Send(ServerMessage::Pong { nonce })],
            ClientMessage::Query { request_id, query } => match self.caller() {
                Ok(principal) => {
                    let principal = principal.clone();
                    vec![Effect::Query(QueryTask::new(Arc::clone(&self.state), principal, request_id, query))]
                }
                Err(error) => self.refuse(error),
            },
        }
    }

    /// The first message of a connection: a hello of this protocol version, else a fatal
    /// error.
    fn hello(&mut self, message: ClientMessage) -> Vec<Effect> {
        let ClientMessage::Hello { protocol_version, token, .. } = message else {
            return self.fatal(OpError::new(ErrorCode::UnexpectedMessage, "the first message must be a hello"));
        };
        if self.phase == Phase::Authenticating {
            return self.fatal(OpError::new(ErrorCode::UnexpectedMessage, "hello sent twice on one connection"));
        }
        if let Err(error) = check_version(protocol_version) {
            return self.fatal(error);
        }
        if self.principal.is_none() {
            self.phase = Phase::Authenticating;
            return vec![Effect::Authenticate { token }];
        }
        self.phase = Phase::Open;
        vec![self.welcome()]
    }

    /// The verdict on the hello's token ([`Effect::Authenticate`]): `Welcome`, or a fatal
    /// error naming why the token was refused.
    pub fn authenticated(&mut self, verdict: Result<Principal, AuthError>) -> Vec<Effect> {
        if self.phase != Phase::Authenticating {
            return Vec::new();
        }
        match verdict {
            Ok(principal) => {
                self.principal = Some(principal);
                self.phase = Phase::Open;
                vec![self.welcome()]
            }
            Err(error) => self.fatal(OpError::new(error.code(), error.to_string())),
        }
    }

    fn welcome(&self) -> Effect {
        Effect::Send(ServerMessage::Welcome {
            protocol_version: PROTOCOL_VERSION,
            server_time_ms: self.state.now_ms(),
            node_id: self.state.node_id,
            partition_map_version: 0,
        })
    }

    /// Time passed: once the caller's token has expired (by the server clock), the
    /// session ends with a fatal `TokenExpired`; the client reconnects with a fresh token.
    pub fn tick(&mut self) -> Vec<Effect> {
        if self.mode == Mode::Stateless || !self.is_open() || self.expires_in_ms() != Some(0) {
            return Vec::new();
        }
        let at = self.principal.as_ref().and_then(|principal| principal.expires_at_s).unwrap_or_default();
        self.fatal(OpError::new(
            ErrorCode::TokenExpired,
            format!(
                "the session's token expired (exp + leeway = {at} s since the epoch); reconnect with a fresh token"
            ),
        ))
    }

    /// A frame the transport itself refused (a WebSocket text frame): an error, fatal
    /// before the hello was answered.
    pub fn refuse(&mut self, error: OpError) -> Vec<Effect> {
        if self.mode == Mode::Connection && !self.is_open() {
            return self.fatal(error);
        }
        vec![Effect::Send(error.to_message(None, false))]
    }

    /// Sends `error` as fatal and ends the conversation.
    fn fatal(&mut self, error: OpError) -> Vec<Effect> {
        if self.mode == Mode::Stateless {
            return vec![Effect::Send(error.to_message(None, true))];
        }
        self.phase = Phase::Closed;
        vec![Effect::Send(error.to_message(None, true)), Effect::Close]
    }

    /// The collections this session subscribes to, by subscription.
    pub fn subscriptions(&self) -> impl Iterator<Item = (SubscriptionId, &CollectionName)> {
        self.subscriptions.iter().map(|(id, subscription)| (*id, &subscription.collection))
    }
}

fn check_version(protocol_version: u32) -> Result<(), OpError> {
    if protocol_version == PROTOCOL_VERSION {
        return Ok(());
    }
    Err(OpError::new(
        ErrorCode::UnsupportedVersion,
        format!("protocol version {protocol_version} is not supported; this server speaks {PROTOCOL_VERSION}"),
    ))
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.mode == Mode::Connection {
            for subscription in self.subscriptions.values() {
                self.state.hub.unwatch(self.id, &subscription.collection);
            }
            self.state.metrics.subscriptions.dec_by(self.subscriptions.len() as i64);
        }
    }
}

//! What every request handler shares: configuration, the storage engine (once recovery
//! is done), auth, the hub, metrics and the server's clock.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use weft_core::codec::DecodeLimits;
use weft_core::hlc::{ClockSource, HlcClock, NodeId, SystemClock};
use weft_core::protocol::{ErrorCode, LogId};
use weft_storage::engine::Engine;

use crate::auth::Principal;
use crate::auth::jwt::{AuthError, Verifier};
use crate::auth::rules::Rules;
use crate::config::Config;
use crate::error::OpError;
use crate::hub::Hub;
use crate::limits::{ConnectionCounter, ConnectionSlot};
use crate::metrics::Metrics;

/// Shared server state.
pub struct AppState {
    /// The effective configuration.
    pub config: Config,
    engine: OnceLock<Arc<Engine>>,
    /// Token verification (`None` in dev mode).
    pub verifier: Option<Verifier>,
    /// Authorization rules.
    pub rules: Rules,
    /// Subscriptions and live fan-out.
    pub hub: Arc<Hub>,
    /// Secondary indexes.
    pub indexes: Arc<crate::indexes::ServerIndexes>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    connections: Arc<ConnectionCounter>,
    /// Identity of this node's change log (cursors from another log are not used).
    pub log_id: LogId,
    /// This node's HLC node id.
    pub node_id: NodeId,
    /// The server's clock: drift checks, server-stamped (JSON) writes, the time in
    /// `Welcome`, token expiry and rate limits of sessions.
    pub clock: Mutex<HlcClock<SharedClock>>,
    /// Seals listing cursors that would otherwise name unreadable rows.
    pub cursor_seal: crate::page_cursor::CursorSeal,
    next_connection: AtomicU64,
    /// Open WebSocket connections: shutdown waits for them to drain (hyper's graceful
    /// shutdown does not track upgraded connections).
    open_connections: tokio::sync::watch::Sender<usize>,
    /// Flips to true when shutdown starts.
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

/// An open WebSocket connection, counted until dropped.
#[derive(Debug)]
pub struct OpenConnection {
    state: Arc<AppState>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.state.open_connections.send_modify(|open| *open = open.saturating_sub(1));
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

/// The physical clock the server reads, shared: the operating system's in `weft serve`,
/// a simulated one (`weft_core::hlc::ManualClock`) when a test drives the server on its
/// own time.
#[derive(Clone)]
pub struct SharedClock(Arc<dyn ClockSource + Send + Sync>);

impl SharedClock {
    /// Reads time from `source`.
    pub fn new(source: Arc<dyn ClockSource + Send + Sync>) -> SharedClock {
        SharedClock(source)
    }
}

impl ClockSource for SharedClock {
    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
}

impl std::fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SharedClock").field(&self.0.now_ms()).finish()
    }
}

impl AppState {
    /// State for `config`, before the engine is opened, on the system clock.
    pub fn new(config: Config, verifier: Option<Verifier>, log_id: LogId) -> Result<AppState, String> {
        AppState::with_clock(config, verifier, log_id, Arc::new(SystemClock))
    }

    /// State for `config` reading time from `clock`: a simulation passes a clock it
    /// moves itself (`weft_core::hlc::ManualClock`). `verifier` is `None` in dev mode.
    pub fn with_clock(
        config: Config,
        verifier: Option<Verifier>,
        log_id: LogId,
        clock: Arc<dyn ClockSource + Send + Sync>,
    ) -> Result<AppState, String> {
        let rules = Rules::new(&config.collections, config.dev)?;
        let indexes = Arc::new(crate::indexes::ServerIndexes::new(&config.indexes)?);
        // The node id only has to differ between writers; derive it from the log id so
        // that it is stable for a data directory.
        let node_id = NodeId(log_id.0 | 1 << 63);
        let clock = HlcClock::new(node_id, SharedClock::new(clock)).with_max_drift_ms(config.limits.max_drift_ms);
        Ok(AppState {
            config,
            engine: OnceLock::new(),
            verifier,
            rules,
            hub: Arc::new(Hub::default()),
            indexes,
            metrics: Arc::new(Metrics::default()),
            connections: Arc::new(ConnectionCounter::default()),
            log_id,
            node_id,
            clock: Mutex::new(clock),
            cursor_seal: crate::page_cursor::CursorSeal::random()
                .map_err(|e| format!("cannot draw page cursor keys from the OS random source: {e}"))?,
            next_connection: AtomicU64::new(1),
            open_connections: tokio::sync::watch::channel(0).0,
            shutdown: tokio::sync::watch::channel(false).0,
        })
    }

    /// Installs the engine once recovery is done: from then on the server is ready.
    /// The clock first moves past every timestamp the engine holds (store and replayed
    /// WAL), so a write the server stamps after a restart is ordered after every write it
    /// accepted before — even one stamped ahead of this machine's clock.
    pub fn set_engine(&self, engine: Arc<Engine>) {
        if let Some(latest) = engine.max_hlc() {
            self.lock_clock().advance_to(latest);
        }
        let _ = self.engine.set(engine);
    }

    /// Whether recovery is done and the server is not shutting down.
    pub fn is_ready(&self) -> bool {
        self.engine.get().is_some() && !*self.shutdown.borrow()
    }

    /// The engine, or `Unavailable` while recovering.
    pub fn engine(&self) -> Result<&Arc<Engine>, OpError> {
        self.engine.get().ok_or_else(|| OpError::new(ErrorCode::Unavailable, "the server is still recovering; retry"))
    }

    /// The engine if open (for shutdown).
    pub fn engine_if_open(&self) -> Option<&Arc<Engine>> {
        self.engine.get()
    }

    /// Decode limits for client frames.
    pub fn decode_limits(&self) -> DecodeLimits {
        let limits = &self.config.limits;
        DecodeLimits {
            frame_bytes_max: limits.frame_bytes_max,
            depth_max: limits.depth_max,
            batch_len_max: limits.batch_changes_max,
            ..DecodeLimits::default()
        }
    }

    /// Checks a token (or its absence) and returns the caller.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Principal, AuthError> {
        match &self.verifier {
            None => Ok(Principal::dev()),
            Some(verifier) => verifier.verify(token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?),
        }
    }

    /// [`AppState::authenticate`], fetching the JWKS URL again (when one is configured)
    /// if the token does not verify: the key may have been rotated since the last fetch.
    pub async fn authenticate_refreshing(&self, token: Option<&str>) -> Result<Principal, AuthError> {
        let verified = self.authenticate(token);
        if let (Err(AuthError::Invalid(_)), Some(verifier)) = (&verified, &self.verifier)
            && verifier.has_jwks_url()
            && verifier.refresh().await.is_ok()
        {
            return self.authenticate(token);
        }
        verified
    }

    /// A fresh connection id (never 0: 0 tags writes with no connection).
    pub fn connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a WebSocket connection as open until the guard drops.
    pub fn track_connection(self: &Arc<Self>) -> OpenConnection {
        self.open_connections.send_modify(|open| *open += 1);
        OpenConnection { state: Arc::clone(self) }
    }

    /// Waits until every WebSocket connection has closed.
    pub async fn connections_closed(&self) {
        let mut open = self.open_connections.subscribe();
        let _ = open.wait_for(|open| *open == 0).await;
    }

    /// Takes a connection slot for `ip`, or `None` at the per-IP limit.
    pub fn connection_slot(&self, ip: IpAddr) -> Option<ConnectionSlot> {
        self.connections.acquire(ip, self.config.limits.connections_per_ip)
    }

    /// The server clock, locked.
    pub fn lock_clock(&self) -> std::sync::MutexGuard<'_, HlcClock<SharedClock>> {
        self.clock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The server's physical time, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.lock_clock().source().now_ms()
    }
}

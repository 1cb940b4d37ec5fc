//! `weft serve`: binds the listener first (so `/health/live` answers during a long
//! recovery), opens the storage engine, then reports ready. On SIGTERM or Ctrl-C it
//! stops accepting, lets every connection finish acknowledging the batches it already
//! read, checkpoints the store and exits.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use weft_core::protocol::LogId;
use weft_storage::engine::{Engine, EngineError};
use weft_storage::store::{SqliteStore, StoreError};

use crate::auth::jwt::{KeyError, Verifier};
use crate::config::{Config, ConfigError};
use crate::state::AppState;

/// File in the data directory holding the log id.
pub const LOG_ID_FILE: &str = "log-id";
/// The WAL's directory inside the data directory.
pub const WAL_DIR: &str = "wal";
/// The SQLite store inside the data directory.
pub const STORE_FILE: &str = "store.sqlite";

pub use crate::accept::SHUTDOWN_DRAIN;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Key material for tokens.
    #[error("auth keys: {0}")]
    Keys(#[from] KeyError),
    /// The data directory.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The listener.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The store.
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    /// Recovery or the engine.
    #[error("storage engine: {0}")]
    Engine(#[from] EngineError),
    /// The HTTP server.
    #[error("server: {0}")]
    Server(std::io::Error),
}

/// Reads the data directory's log id, creating it (durably) the first time.
pub fn load_log_id(data_dir: &Path) -> Result<LogId, std::io::Error> {
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join(LOG_ID_FILE);
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(id) = u64::from_str_radix(text.trim(), 16)
    {
        return Ok(LogId(id));
    }
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let id = u64::from_le_bytes(bytes) >> 1;
    let temporary = data_dir.join(format!("{LOG_ID_FILE}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    writeln!(file, "{id:016x}")?;
    file.sync_all()?;
    std::fs::rename(&temporary, &path)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(LogId(id))
}

/// Opens the engine on a data directory (recovery included).
pub fn open_engine(config: &Config) -> Result<(Engine, weft_storage::engine::OpenReport), ServeError> {
    let store = SqliteStore::open(&config.data_dir.join(STORE_FILE))?;
    Ok(Engine::open(&config.data_dir.join(WAL_DIR), Box::new(store), config.engine_config())?)
}

/// A server bound to its address, not yet serving.
pub struct Server {
    state: Arc<AppState>,
    listener: TcpListener,
}

impl Server {
    /// Checks the configuration, prepares the data directory and binds the listener.
    pub async fn bind(config: Config) -> Result<Server, ServeError> {
        config.validate()?;
        let log_id = load_log_id(&config.data_dir)
            .map_err(|source| ServeError::DataDir { path: config.data_dir.clone(), source })?;
        let verifier = if config.dev { None } else { Some(Verifier::new(&config.auth)?) };
        if let Some(verifier) = &verifier {
            verifier.refresh().await?;
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServeError::Bind { address: config.listen, source })?;
        let state = AppState::new(config, verifier, log_id).map_err(|e| ServeError::Config(ConfigError::Invalid(e)))?;
        Ok(Server { state: Arc::new(state), listener })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        self.listener.local_addr().map_err(ServeError::Server)
    }

    /// The shared state (tests and the binary use it to trigger shutdown).
    pub fn state(&self) -> Arc<AppState> {
        Arc::clone(&self.state)
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        let Server { state, listener } = self;
        let app = crate::http::router(Arc::clone(&state));
        let server = tokio::spawn(crate::accept::serve(listener, app, Arc::clone(&state)));
        let trigger = Arc::clone(&state);
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown requested: finishing in-flight batches");
            let _ = trigger.shutdown.send(true);
        });

        let config = state.config.clone();
        let started = std::time::Instant::now();
        let (engine, report) = tokio::task::spawn_blocking(move || open_engine(&config))
            .await
            .map_err(|e| ServeError::Server(std::io::Error::other(e.to_string())))??;
        let engine = Arc::new(engine);
        if let Some(torn) = &report.wal.torn_tail {
            tracing::warn!(at = %torn.at, bytes = torn.bytes, kind = ?torn.kind, "WAL: torn tail truncated");
        }
        if let Some(reason) = &report.checkpoint_corrupt {
            tracing::warn!(%reason, "store checkpoint unreadable: replayed the whole WAL");
        }
        tracing::info!(
            stored_records = report.stored_records,
            replayed_records = report.wal.records,
            replayed_bytes = report.wal.payload_bytes,
            took_ms = started.elapsed().as_millis() as u64,
            "recovery done; ready"
        );
        // Indexes are built before writes are accepted; from then on the feed keeps them.
        let built = {
            let (engine, indexes) = (Arc::clone(&engine), Arc::clone(&state.indexes));
            tokio::task::spawn_blocking(move || indexes.build(&engine))
                .await
                .map_err(|e| ServeError::Server(std::io::Error::other(e.to_string())))??
        };
        if !state.config.indexes.is_empty() {
            tracing::info!(entries = built, "secondary indexes built");
        }
        let publisher = crate::hub::start_publisher(
            Arc::clone(&engine),
            Arc::clone(&state.hub),
            Arc::clone(&state.metrics),
            Arc::clone(&state.indexes),
        )
        .map_err(ServeError::Server)?;
        state.set_engine(Arc::clone(&engine));

        let checkpointer = {
            let engine = Arc::clone(&engine);
            let every = Duration::from_secs(state.config.storage.checkpoint_interval_s.max(1));
            let mut stopped = state.shutdown.subscribe();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(every) => {}
                        _ = stopped.wait_for(|stop| *stop) => return,
                    }
                    let engine = Arc::clone(&engine);
                    if let Ok(Err(error)) = tokio::task::spawn_blocking(move || engine.checkpoint(None)).await {
                        tracing::error!(%error, "checkpoint failed");
                    }
                }
            })
        };

        server.await.map_err(|e| ServeError::Server(std::io::Error::other(e.to_string())))?;
        // WebSocket connections finish acknowledging what they read, then close.
        if tokio::time::timeout(SHUTDOWN_DRAIN, state.connections_closed()).await.is_err() {
            tracing::warn!("connections still open after {SHUTDOWN_DRAIN:?}; closing anyway");
        }
        checkpointer.abort();
        engine.stop_feed();
        let _ = tokio::task::spawn_blocking(move || publisher.join()).await;
        let final_engine = Arc::clone(&engine);
        tokio::task::spawn_blocking(move || final_engine.checkpoint(None))
            .await
            .map_err(|e| ServeError::Server(std::io::Error::other(e.to_string())))??;
        tracing::info!("store checkpointed; bye");
        Ok(())
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

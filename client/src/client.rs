//! [`Client`]: a replica kept in sync over a WebSocket, reconnecting with backoff.
//!
//! Local writes apply at once to the in-memory replica and wait in its outbox; the
//! connection task pushes them whenever connected. [`Client::synced`] resolves once the
//! server has acknowledged every write made before the call, durably.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};
use weft_core::change::Change;
use weft_core::hlc::{Hlc, NodeId, SystemClock};
use weft_core::key::{CollectionName, RecordKey};
use weft_core::protocol::{ClientMessage, ErrorCode, ServerMessage, Shape};
use weft_core::replica::{Replica, ReplicaEvent};
use weft_core::value::Document;

use crate::ClientError;
use crate::raw::{self, RawReceiver, RawSender};

/// How to reach the server.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Server URL (`ws://host:port`, `http://host:port`, or the full `/v1/ws` URL).
    pub url: String,
    /// Auth token sent in the hello.
    pub token: Option<String>,
    /// This replica's id (random by default).
    pub replica_id: NodeId,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

impl ClientConfig {
    /// Defaults for `url`: no token, a random replica id, backoff up to 5 s.
    pub fn new(url: impl Into<String>) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            token: None,
            replica_id: random_replica_id(),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// With an auth token.
    pub fn with_token(mut self, token: impl Into<String>) -> ClientConfig {
        self.token = Some(token.into());
        self
    }
}

/// A random replica id (ids only need to differ between replicas).
pub fn random_replica_id() -> NodeId {
    // RandomState is seeded from OS randomness once per process and varies per instance.
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    NodeId(hasher.finish() >> 1)
}

/// Connection state, as [`Client::status`] reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// A welcome was received and the link is up.
    pub connected: bool,
    /// Local changes not yet acknowledged.
    pub unacknowledged: usize,
    /// Collections whose subscription has caught up since the last connect.
    pub caught_up: BTreeSet<CollectionName>,
    /// The last error the server reported (code and message), if any.
    pub last_error: Option<(ErrorCode, String)>,
    /// The server refused the connection for good (bad token or version): no retries.
    pub refused: bool,
}

struct Shared {
    replica: Mutex<Replica<SystemClock>>,
    wake: Notify,
    /// Messages to send on the current connection (subscriptions made while connected).
    pending: Mutex<Vec<ClientMessage>>,
    status: watch::Sender<Status>,
    events: broadcast::Sender<ReplicaEvent>,
    closed: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn replica(&self) -> MutexGuard<'_, Replica<SystemClock>> {
        self.replica.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update_status(&self, change: impl FnOnce(&mut Status)) {
        let unacknowledged = self.replica().outbox().len();
        self.status.send_modify(|status| {
            change(status);
            status.unacknowledged = unacknowledged;
        });
    }
}

/// A replica synced with a server. Cheap to clone; the connection task ends when the
/// last clone is dropped or [`Client::close`] is called.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("status", &*self.shared.status.borrow()).finish_non_exhaustive()
    }
}

impl Client {
    /// Starts the client; it connects in the background (and keeps retrying), so this
    /// returns at once even when the server is down: writes work offline.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        Ok(Client::start(config))
    }

    /// [`Client::connect`], without being async.
    pub fn start(config: ClientConfig) -> Client {
        let shared = Arc::new(Shared {
            replica: Mutex::new(Replica::new(config.replica_id, SystemClock)),
            wake: Notify::new(),
            pending: Mutex::new(Vec::new()),
            status: watch::channel(Status::default()).0,
            events: broadcast::channel(4096).0,
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let task = tokio::spawn(connection_loop(Arc::clone(&shared), config));
        Client { shared, task: Arc::new(task) }
    }

    /// Runs `f` on the replica (reads, or writes the connection task should push).
    pub fn with_replica<T>(&self, f: impl FnOnce(&mut Replica<SystemClock>) -> T) -> T {
        let out = f(&mut self.shared.replica());
        self.shared.update_status(|_| {});
        self.shared.wake.notify_one();
        out
    }

    /// Replaces a record.
    pub fn put(&self, collection: &CollectionName, key: &RecordKey, document: Document) -> Result<Hlc, ClientError> {
        Ok(self.with_replica(|r| r.put(collection, key, document))?)
    }

    /// Sets some fields of a record.
    pub fn update(&self, collection: &CollectionName, key: &RecordKey, fields: Document) -> Result<Hlc, ClientError> {
        Ok(self.with_replica(|r| r.update(collection, key, fields))?)
    }

    /// Deletes a record.
    pub fn delete(&self, collection: &CollectionName, key: &RecordKey) -> Hlc {
        self.with_replica(|r| r.delete(collection, key))
    }

    /// A record's visible fields.
    pub fn get(&self, collection: &CollectionName, key: &str) -> Option<Document> {
        self.shared.replica().get(collection, key)
    }

    /// Every visible record of a collection, in key order.
    pub fn documents(&self, collection: &CollectionName) -> Vec<(RecordKey, Document)> {
        let replica = self.shared.replica();
        let mut out: Vec<(RecordKey, Document)> = replica
            .collection(collection)
            .map(|c| c.iter().filter_map(|(k, s)| Some((k.clone(), s.document()?))).collect())
            .unwrap_or_default();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The merkle root of the local copy of a collection.
    pub fn merkle_root(&self, collection: &CollectionName) -> u128 {
        self.shared.replica().collection(collection).map_or(0, |c| c.merkle().root())
    }

    /// Subscribes to a collection (or the part inside `shape`).
    pub fn subscribe(&self, collection: &CollectionName, shape: Option<Shape>) {
        let message = self.shared.replica().subscribe_shape(collection, shape);
        self.shared.status.send_modify(|status| {
            status.caught_up.remove(collection);
        });
        if let Some(message) = message {
            // Connected: the task sends it (after a reconnect the replica resubscribes).
            self.shared.pending.lock().unwrap_or_else(|p| p.into_inner()).push(message);
            self.shared.wake.notify_one();
        }
    }

    /// Current status.
    pub fn status(&self) -> Status {
        self.shared.status.borrow().clone()
    }

    /// Events (remote changes, acks, rejections, errors) from now on.
    pub fn events(&self) -> broadcast::Receiver<ReplicaEvent> {
        self.shared.events.subscribe()
    }

    /// Waits until every local write is acknowledged by the server.
    pub async fn synced(&self) -> Result<(), ClientError> {
        self.wait_for(|status| status.unacknowledged == 0).await
    }

    /// Waits until `collection`'s subscription has caught up.
    pub async fn caught_up(&self, collection: &CollectionName) -> Result<(), ClientError> {
        self.wait_for(|status| status.caught_up.contains(collection)).await
    }

    /// Waits until connected.
    pub async fn connected(&self) -> Result<(), ClientError> {
        self.wait_for(|status| status.connected).await
    }

    async fn wait_for(&self, done: impl Fn(&Status) -> bool) -> Result<(), ClientError> {
        let mut status = self.shared.status.subscribe();
        loop {
            {
                let current = status.borrow_and_update();
                if done(&current) {
                    return Ok(());
                }
                if current.refused {
                    let (code, message) = current.last_error.clone().unwrap_or((ErrorCode::Other(0), String::new()));
                    return Err(ClientError::Refused { code, message });
                }
            }
            status.changed().await.map_err(|_| ClientError::Closed)?;
        }
    }

    /// Local changes not yet acknowledged (what a durable outbox would persist).
    pub fn unacknowledged(&self) -> Vec<Change> {
        self.shared.replica().outbox().unacknowledged().cloned().collect()
    }

    /// Stops the connection task.
    pub fn close(&self) {
        self.shared.closed.store(true, std::sync::atomic::Ordering::Release);
        self.task.abort();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

async fn connection_loop(shared: Arc<Shared>, config: ClientConfig) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let id = shared.replica().id();
        match raw::connect(&config.url, id, config.token.clone()).await {
            Ok((sender, receiver, welcome)) => {
                backoff = Duration::from_millis(50);
                let outcome = run_connection(&shared, sender, receiver, welcome).await;
                shared.replica().disconnected();
                shared.update_status(|status| {
                    status.connected = false;
                    status.caught_up.clear();
                });
                if let Err(ClientError::Refused { code, message }) = outcome {
                    tracing::warn!(?code, %message, "server refused the connection; not retrying");
                    shared.update_status(|status| {
                        status.refused = true;
                        status.last_error = Some((code, message));
                    });
                    return;
                }
            }
            Err(ClientError::Refused { code, message }) => {
                shared.update_status(|status| {
                    status.refused = true;
                    status.last_error = Some((code, message));
                });
                return;
            }
            Err(error) => tracing::debug!(%error, "connect failed; retrying"),
        }
        if shared.closed.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(config.max_backoff);
    }
}

async fn send_all(sender: &mut RawSender, messages: Vec<ClientMessage>) -> Result<(), ClientError> {
    for message in messages {
        sender.send(&message).await?;
    }
    Ok(())
}

async fn run_connection(
    shared: &Arc<Shared>,
    mut sender: RawSender,
    mut receiver: RawReceiver,
    welcome: ServerMessage,
) -> Result<(), ClientError> {
    let mut to_send = handle(shared, welcome)?;
    shared.update_status(|status| status.connected = true);
    loop {
        send_all(&mut sender, std::mem::take(&mut to_send)).await?;
        tokio::select! {
            () = shared.wake.notified() => {
                to_send.append(&mut shared.pending.lock().unwrap_or_else(|p| p.into_inner()));
                let mut replica = shared.replica();
                while let Some(push) = replica.next_push() {
                    to_send.push(push);
                }
            }
            message = receiver.recv() => match message? {
                Some(message) => to_send = handle(shared, message)?,
                None => return Ok(()),
            },
        }
    }
}

fn handle(shared: &Arc<Shared>, message: ServerMessage) -> Result<Vec<ClientMessage>, ClientError> {
    if let ServerMessage::Error { code, message, fatal: true, batch_id: None, .. } = &message
        && matches!(
            code,
            ErrorCode::Unauthenticated
                | ErrorCode::TokenExpired
                | ErrorCode::TokenInvalid
                | ErrorCode::TokenRejected
                | ErrorCode::UnsupportedVersion
        )
    {
        return Err(ClientError::Refused { code: *code, message: message.clone() });
    }
    let handled = shared.replica().handle(message).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let mut send = handled.send;
    {
        let mut replica = shared.replica();
        while let Some(push) = replica.next_push() {
            send.push(push);
        }
    }
    for event in handled.events {
        match &event {
            ReplicaEvent::CaughtUp { collection } => {
                let collection = collection.clone();
                shared.update_status(|status| {
                    status.caught_up.insert(collection);
                });
            }
            ReplicaEvent::ServerError { code, message, .. } | ReplicaEvent::Rejected { code, message, .. } => {
                let error = (*code, message.clone());
                shared.update_status(|status| status.last_error = Some(error));
            }
            _ => {}
        }
        let _ = shared.events.send(event);
    }
    shared.update_status(|_| {});
    Ok(send)
}

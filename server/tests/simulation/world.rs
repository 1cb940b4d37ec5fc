//! The simulated world of one seed: the server (protocol sessions, engine on the
//! simulated disk, in-memory store that keeps SQLite's all-or-nothing commits), the
//! clients (real `Replica`s), the links between them, and the faults.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use weft_core::change::Change;
use weft_core::codec::DecodeLimits;
use weft_core::hlc::{ManualClock, NodeId};
use weft_core::key::CollectionName;
use weft_core::protocol::{BatchId, ClientMessage, ErrorCode, LogId, ServerMessage, SubscriptionId};
use weft_core::replica::{Replica, ReplicaEvent};
use weft_server::auth::Principal;
use weft_server::config::Config;
use weft_server::hub::LiveBatch;
use weft_server::session::{Effect, PendingPush, Session};
use weft_server::state::AppState;
use weft_storage::engine::{Engine, EngineConfig};
use weft_storage::feed::FeedReceiver;
use weft_storage::sim::{DiskFaults, SimDisk, SimRng};
use weft_storage::store::MemoryStore;
use weft_storage::wal::{Scheduling, WalConfig};

use crate::model::{self, Acked, Role};

/// The simulation's start time.
pub const T0: u64 = 1_700_000_000_000;
/// The log id of the simulated node (stable across restarts, as a data directory's is).
const LOG: LogId = LogId(0x5EED);

/// The rules every run uses: users own their todos, admins read them all, notes are
/// shared, and `secret` is not listed (denied to everyone).
const RULES: &str = r#"
[limits]
ops_per_second = 1000000
ops_burst = 1000000
outbound_queue_frames = 64
inflight_batches = 8

[collections.todos]
read = [{ role = "user", when = "owner == auth.sub" }, { role = "admin" }]
write = [{ role = "user", when = "owner == auth.sub" }]

[collections.notes]
read = [{ role = "*" }]
write = [{ role = "*" }]
delete = [{ role = "*" }]
"#;

/// Settings drawn once per seed.
#[derive(Clone, Debug)]
pub struct Settings {
    pub flush_records: usize,
    pub cache_records: usize,
    pub segment_bytes: u64,
    pub sync_fail_per_mille: u32,
    /// Records each writer works on (besides its hot one).
    pub keys: u64,
}

impl Settings {
    pub fn draw(rng: &mut SimRng) -> Settings {
        Settings {
            flush_records: [1, 2, 4, 16, 1000][rng.below(5) as usize],
            cache_records: [1, 2, 3, 5, 8, 100][rng.below(6) as usize],
            segment_bytes: [1024, 4096, 1 << 20][rng.below(3) as usize],
            sync_fail_per_mille: [0, 0, 0, 5, 30][rng.below(5) as usize],
            keys: [2, 5, 12][rng.below(3) as usize],
        }
    }
}

/// The server: its state, engine and change feed.
pub struct Server {
    pub state: Arc<AppState>,
    pub engine: Arc<Engine>,
    pub feed: FeedReceiver,
}

/// One client's connection: the server's session for it and the frames in flight.
pub struct Link {
    pub session: Session,
    pub to_server: VecDeque<Vec<u8>>,
    pub to_client: VecDeque<Vec<u8>>,
    /// Batches waiting for durability, in the order the session asked.
    pub pending: Vec<PendingPush>,
    /// Subscriptions with more catch-up pages to send.
    pub catch_up: Vec<SubscriptionId>,
    /// The changes of each batch pushed on this link (to know what an ack promises).
    pub pushed: BTreeMap<BatchId, Vec<Change>>,
    /// The session closed the connection.
    pub closed: bool,
    /// The client is gone (see [`World::zombies`]).
    pub zombie: bool,
}

/// One simulated client.
pub struct Client {
    pub name: String,
    pub role: Role,
    pub principal: Principal,
    pub replica: Replica<ManualClock>,
    pub link: Option<Link>,
    /// Writes of this client the server refused (never expected on the server).
    pub refused: usize,
    /// Batches the client was told are durable.
    pub acks_heard: usize,
}

/// Everything of one seed.
pub struct World {
    pub seed: u64,
    pub rng: SimRng,
    pub clock: ManualClock,
    pub disk: SimDisk,
    pub store: MemoryStore,
    pub settings: Settings,
    pub server: Option<Server>,
    pub clients: Vec<Client>,
    /// Links whose client is gone but whose frames the server has not finished reading:
    /// their pushes still merge and are acked into the void, while the client re-sends.
    pub zombies: Vec<Link>,
    /// Every change the server acknowledged.
    pub acked: Acked,
    pub stats: Stats,
    /// Set when a batch's wait failed (a failed fdatasync): the node must restart.
    pub needs_restart: bool,
}

/// What happened in a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub steps: u64,
    pub frames: u64,
    pub acks: u64,
    pub refusals: u64,
    pub power_losses: u64,
    pub crashes: u64,
    pub disconnects: u64,
    pub flushes: u64,
    pub held_flushes: u64,
    pub live_batches: u64,
}

fn collection(name: &str) -> CollectionName {
    CollectionName::new(name).unwrap_or_else(|e| panic!("collection name {name}: {e}"))
}

pub fn todos() -> CollectionName {
    collection("todos")
}

pub fn notes() -> CollectionName {
    collection("notes")
}

pub fn secret() -> CollectionName {
    collection("secret")
}

impl World {
    pub fn new(seed: u64) -> World {
        let mut rng = SimRng::new(seed);
        let settings = Settings::draw(&mut rng);
        let disk = SimDisk::new(rng.fork(), DiskFaults { sync_fail_per_mille: settings.sync_fail_per_mille });
        let clock = ManualClock::new(T0);
        let people: [(&str, Role, usize); 4] = [
            ("alice", Role::User, 2),
            ("bob", Role::User, 1),
            ("root", Role::Admin, 1),
            ("mallory", Role::Attacker, 1),
        ];
        let mut clients = Vec::new();
        for (sub, role, devices) in people {
            for device in 0..devices {
                let roles = vec![match role {
                    Role::Admin => "admin".to_owned(),
                    Role::User | Role::Attacker => "user".to_owned(),
                }];
                let principal =
                    Principal { sub: sub.to_owned(), roles, claims: Default::default(), expires_at_s: None };
                let id = NodeId(1 + clients.len() as u64);
                let mut replica = Replica::new(id, clock.clone());
                for name in [todos(), notes()] {
                    let _ = replica.subscribe(&name);
                }
                if role == Role::Attacker {
                    let _ = replica.subscribe(&secret());
                }
                clients.push(Client {
                    name: format!("{sub}-{device}"),
                    role,
                    principal,
                    replica,
                    link: None,
                    refused: 0,
                    acks_heard: 0,
                });
            }
        }
        let mut world = World {
            seed,
            rng,
            clock,
            disk,
            store: MemoryStore::new(),
            settings,
            server: None,
            clients,
            zombies: Vec::new(),
            acked: Acked::default(),
            stats: Stats::default(),
            needs_restart: false,
        };
        world.start_server();
        world
    }

    fn config() -> Config {
        Config::from_toml(RULES).unwrap_or_else(|e| panic!("simulation rules: {e}"))
    }

    /// Opens the engine on what the disk and the store kept, as a restarted node does.
    pub fn start_server(&mut self) {
        let config = Self::config();
        let state = AppState::with_clock(config, None, LOG, Arc::new(self.clock.clone()))
            .unwrap_or_else(|e| panic!("seed {}: state: {e}", self.seed));
        let engine_config = EngineConfig {
            wal: WalConfig {
                segment_bytes: self.settings.segment_bytes,
                disk: Arc::new(self.disk.process()),
                scheduling: Scheduling::Caller,
                ..WalConfig::default()
            },
            flush_records: self.settings.flush_records,
            // Flushes run when the simulation says (or a writer passes the bound).
            flush_interval: std::time::Duration::from_secs(3600),
            cache_records: self.settings.cache_records,
            ..EngineConfig::default()
        };
        // Opening syncs too and may meet an injected failure: a failed start, retried
        // by a new process.
        let mut attempts = 0;
        let engine = loop {
            let mut config = engine_config.clone();
            config.wal.disk = Arc::new(self.disk.process());
            match Engine::open(Path::new("/sim/wal"), Box::new(self.store.clone()), config) {
                Ok((engine, _)) => break engine,
                Err(error) if attempts < 50 && error.to_string().contains("simulated fdatasync failure") => {
                    attempts += 1;
                    self.disk.crash();
                }
                Err(error) => panic!("seed {}: the node does not start: {error}", self.seed),
            }
        };
        let engine = Arc::new(engine);
        let feed = engine.set_feed(Arc::new(|_: &CollectionName| true), 4096);
        let state = Arc::new(state);
        state.set_engine(Arc::clone(&engine));
        self.server = Some(Server { state, engine, feed });
        self.needs_restart = false;
        // Every acknowledged change must have survived.
        let server = self.server.as_ref().unwrap_or_else(|| unreachable!());
        self.acked.check(&server.engine, self.seed);
    }

    /// The node dies: power loss (unsynced sectors kept or lost) or a crash (page cache
    /// kept); then it restarts from what the disk and store hold.
    pub fn kill_server(&mut self, power_loss: bool) {
        if power_loss {
            self.disk.power_loss();
            self.stats.power_losses += 1;
        } else {
            self.disk.crash();
            self.stats.crashes += 1;
        }
        for client in &mut self.clients {
            if client.link.take().is_some() {
                client.replica.disconnected();
            }
        }
        self.zombies.clear();
        self.server = None;
        self.start_server();
    }

    fn server(&self) -> &Server {
        self.server.as_ref().unwrap_or_else(|| unreachable!("the server runs between steps"))
    }

    /// A client opens a connection and sends its hello.
    pub fn connect(&mut self, index: usize) {
        let state = Arc::clone(&self.server().state);
        let client = &mut self.clients[index];
        if client.link.is_some() {
            return;
        }
        let session = Session::new(state, client.principal.clone());
        let mut link = Link {
            session,
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            pending: Vec::new(),
            catch_up: Vec::new(),
            pushed: BTreeMap::new(),
            closed: false,
            zombie: false,
        };
        link.to_server.push_back(client.replica.hello(None).encode());
        client.link = Some(link);
    }

    /// A client's connection drops. Frames already sent may still reach the server (the
    /// link lives on as a zombie until read), or be lost.
    pub fn disconnect(&mut self, index: usize) {
        let keep = self.rng.chance(500);
        let client = &mut self.clients[index];
        let Some(mut link) = client.link.take() else { return };
        client.replica.disconnected();
        self.stats.disconnects += 1;
        if keep && !(link.to_server.is_empty() && link.pending.is_empty()) {
            link.to_client.clear();
            link.catch_up.clear();
            link.zombie = true;
            self.zombies.push(link);
        }
    }

    /// Carries out a session's effects for `link` (of client `owner`, or a zombie).
    fn run_effects(link: &mut Link, effects: Vec<Effect>, stats: &mut Stats) {
        for effect in effects {
            match effect {
                Effect::Send(message) => {
                    link.to_client.push_back(message.encode());
                }
                Effect::AwaitDurable(pending) => link.pending.push(pending),
                Effect::CatchUp(id) => link.catch_up.push(id),
                Effect::Query(task) => link.to_client.push_back(task.run().encode()),
                Effect::Close => link.closed = true,
                Effect::Authenticate { .. } => unreachable!("sessions start with a known principal"),
            }
        }
        let _ = stats;
    }

    /// The server reads the next frame of a link. A zombie's push may be read twice
    /// (`duplicate`): with its client re-sending the same batch on its new link, the
    /// server sees the same changes again and again, in the middle of flushes.
    pub fn deliver_to_server(link: &mut Link, duplicate: bool, stats: &mut Stats) {
        let Some(frame) = link.to_server.pop_front() else { return };
        if link.closed {
            return;
        }
        stats.frames += 1;
        if let Ok(ClientMessage::Push { batch_id, changes }) = ClientMessage::decode(&frame, &DecodeLimits::default()) {
            link.pushed.insert(batch_id, changes);
            if duplicate && link.zombie {
                link.to_server.push_back(frame.clone());
            }
        }
        let effects = link.session.handle_frame(&frame);
        Self::run_effects(link, effects, stats);
    }

    /// One pending batch of a link (any, not only the oldest) is waited for.
    pub fn settle(link: &mut Link, engine: &Engine, pick: usize, acked: &mut Acked, stats: &mut Stats) -> bool {
        if link.pending.is_empty() {
            return true;
        }
        let pending = link.pending.remove(pick % link.pending.len());
        let (ticket, outcome) = pending.wait(engine);
        let ok = outcome.is_ok();
        let effects = link.session.push_settled(ticket, outcome);
        for effect in &effects {
            if let Effect::Send(ServerMessage::Ack { batch_id }) = effect {
                stats.acks += 1;
                if let Some(changes) = link.pushed.get(batch_id) {
                    acked.record(changes);
                }
            }
        }
        Self::run_effects(link, effects, stats);
        ok
    }

    /// The next catch-up page of a link.
    pub fn continue_catch_up(link: &mut Link, stats: &mut Stats) {
        if link.catch_up.is_empty() {
            return;
        }
        let id = link.catch_up.remove(0);
        let effects = link.session.catch_up(id);
        Self::run_effects(link, effects, stats);
    }

    /// The client reads the next frame from its link.
    pub fn deliver_to_client(&mut self, index: usize) {
        let seed = self.seed;
        let client = &mut self.clients[index];
        let Some(link) = client.link.as_mut() else { return };
        let Some(frame) = link.to_client.pop_front() else {
            if link.closed && link.pending.is_empty() {
                client.link = None;
                client.replica.disconnected();
            }
            return;
        };
        self.stats.frames += 1;
        let message = ServerMessage::decode(&frame, &DecodeLimits::default())
            .unwrap_or_else(|e| panic!("seed {seed}: the server sent an undecodable frame: {e}"));
        model::check_received(seed, &client.name, client.role, &client.principal.sub, &message);
        let handled = match client.replica.handle(message) {
            Ok(handled) => handled,
            Err(error) => panic!("seed {seed}: {} refused a server message: {error}", client.name),
        };
        for event in &handled.events {
            match event {
                ReplicaEvent::Acknowledged { .. } => client.acks_heard += 1,
                ReplicaEvent::Rejected { code, changes, message, .. } => {
                    if std::env::var("WEFT_SIM_TRACE").is_ok() {
                        let keys: Vec<String> =
                            changes.iter().map(|c| format!("{}/{}@{}", c.collection, c.key, c.hlc)).collect();
                        eprintln!("{}: refused {code:?} {message}: {keys:?}", client.name);
                    }
                    self.stats.refusals += 1;
                    client.refused += changes.len();
                    assert!(
                        client.role == Role::Attacker || *code != ErrorCode::Forbidden,
                        "seed {seed}: {} was refused ({code:?}) a write its rules allow: {message}",
                        client.name
                    );
                }
                _ => {}
            }
        }
        let Some(link) = client.link.as_mut() else { return };
        for message in handled.send {
            link.to_server.push_back(message.encode());
        }
        // Keep up to a few batches in flight, as the clients do.
        if link.to_server.len() < 4
            && let Some(push) = client.replica.next_push()
        {
            link.to_server.push_back(push.encode());
        }
    }

    /// A client pushes what its outbox holds (when connected).
    pub fn push(&mut self, index: usize) {
        let client = &mut self.clients[index];
        let Some(link) = client.link.as_mut() else { return };
        if let Some(push) = client.replica.next_push() {
            link.to_server.push_back(push.encode());
        }
    }

    /// A connected client sends a one-shot query (SQL) over what it may read — or, for
    /// odd request ids, over the collection nobody may read. Answers are checked on
    /// arrival (`model::check_received`).
    pub fn query(&mut self, index: usize, pick: u64) {
        let client = &mut self.clients[index];
        let Some(link) = client.link.as_mut() else { return };
        if !client.replica.is_connected() {
            return;
        }
        let (request_id, text) = match pick % 4 {
            0 => (2 * pick as u32, "SELECT * FROM todos"),
            1 => (2 * pick as u32, "SELECT id, owner, count FROM todos WHERE count > 0 ORDER BY id LIMIT 3"),
            2 => (2 * pick as u32 + 1, "SELECT * FROM secret"),
            _ => (2 * pick as u32, "SELECT owner, COUNT(*) AS n FROM todos GROUP BY owner"),
        };
        let message = ClientMessage::Query { request_id, query: text.to_owned() };
        link.to_server.push_back(message.encode());
    }

    /// The server publishes the next batch of the change feed (once durable) to every
    /// session but its writer's.
    pub fn publish(&mut self) -> bool {
        let server = self.server.as_ref().unwrap_or_else(|| unreachable!());
        let Ok(batch) = server.feed.receiver.try_recv() else { return false };
        assert_eq!(server.feed.take_lost(), 0, "seed {}: the feed dropped batches", self.seed);
        if server.engine.wait_durable(batch.receipt).is_err() {
            self.needs_restart = true;
            return true;
        }
        self.stats.live_batches += 1;
        let mut by_collection: BTreeMap<CollectionName, Vec<_>> = BTreeMap::new();
        for record in batch.records {
            by_collection.entry(record.collection.clone()).or_default().push(record);
        }
        let lives: Vec<Arc<LiveBatch>> = by_collection
            .into_iter()
            .map(|(collection, records)| Arc::new(LiveBatch { collection, records: Arc::new(records) }))
            .collect();
        let stats = &mut self.stats;
        for link in self.clients.iter_mut().filter_map(|c| c.link.as_mut()) {
            if link.session.id() == batch.origin || link.closed {
                continue;
            }
            for live in &lives {
                let effects = link.session.live(Arc::clone(live));
                Self::run_effects(link, effects, stats);
            }
        }
        true
    }

    /// Links with work for the server, as (client index or zombie index).
    pub fn busy_links(&self) -> Vec<LinkRef> {
        let mut refs = Vec::new();
        for (index, client) in self.clients.iter().enumerate() {
            if let Some(link) = &client.link
                && (!link.to_server.is_empty() || !link.pending.is_empty() || !link.catch_up.is_empty())
            {
                refs.push(LinkRef::Client(index));
            }
        }
        for index in 0..self.zombies.len() {
            refs.push(LinkRef::Zombie(index));
        }
        refs
    }

    pub fn link_mut(&mut self, link: LinkRef) -> Option<&mut Link> {
        match link {
            LinkRef::Client(index) => self.clients.get_mut(index)?.link.as_mut(),
            LinkRef::Zombie(index) => self.zombies.get_mut(index),
        }
    }

    /// Drops zombies the server has finished with.
    pub fn bury_zombies(&mut self) {
        self.zombies.retain(|link| !link.to_server.is_empty() || !link.pending.is_empty());
    }

    /// Whether nothing is left to do anywhere (the feed drained by the caller).
    pub fn quiet(&self) -> bool {
        self.zombies.is_empty()
            && self.clients.iter().all(|client| {
                client.replica.outbox().is_empty()
                    && client.link.as_ref().is_some_and(|link| {
                        link.to_server.is_empty()
                            && link.to_client.is_empty()
                            && link.pending.is_empty()
                            && link.catch_up.is_empty()
                    })
            })
    }
}

/// Names a link: a client's, or a zombie's.
#[derive(Clone, Copy, Debug)]
pub enum LinkRef {
    Client(usize),
    Zombie(usize),
}

/// Keys of other owners a client holds only because it wrote them and was refused.
pub fn foreign_keys(client: &Client) -> BTreeSet<String> {
    client
        .replica
        .collection(&todos())
        .map(|c| {
            c.iter()
                .filter(|(_, state)| {
                    state.document().and_then(|d| d.get("owner").cloned())
                        != Some(weft_core::value::Value::from(client.principal.sub.as_str()))
                })
                .map(|(key, _)| key.as_str().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

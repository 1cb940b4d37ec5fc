//! Server configuration: defaults, then a TOML file, then `WEFT_*` environment
//! variables, then command-line flags (each later source wins). The effective
//! configuration is printed at start-up with secrets masked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::auth::AuthConfig;
use crate::auth::rules::RuleSpec;

/// Everything `weft serve` needs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the WAL and the SQLite store live.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Development mode: no auth, every operation allowed, loopback only.
    pub dev: bool,
    /// Allow `dev` on a non-loopback address (never do this on a network you do not own).
    pub dev_allow_remote: bool,
    /// A directory of static files served at `/` (the example app), if any.
    pub static_dir: Option<PathBuf>,
    /// Web origins (`https://app.example`) whose pages may call the API besides the
    /// server's own (and, in dev mode, loopback origins). Empty outside dev mode: any
    /// origin, since every request needs a token (see docs/server.md).
    pub allowed_origins: Vec<String>,
    /// When set, `GET /metrics` requires `Authorization: Bearer <metrics_token>`.
    pub metrics_token: Option<String>,
    /// Token verification.
    pub auth: AuthConfig,
    /// Limits on what one client may send.
    pub limits: LimitsConfig,
    /// Storage engine settings.
    pub storage: StorageConfig,
    /// Authorization rules per collection (`"*"` applies to collections not listed).
    pub collections: BTreeMap<String, RuleSpec>,
    /// Secondary indexes per collection: lists of fields (`todos = [["owner"]]`).
    pub indexes: BTreeMap<String, Vec<Vec<String>>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("./weft-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            dev: false,
            dev_allow_remote: false,
            static_dir: None,
            allowed_origins: Vec::new(),
            metrics_token: None,
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            storage: StorageConfig::default(),
            collections: BTreeMap::new(),
            indexes: BTreeMap::new(),
        }
    }
}

/// Per-client limits; each violation is answered with its error code.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest frame or HTTP body, in bytes.
    pub frame_bytes_max: usize,
    /// Most changes in one batch.
    pub batch_changes_max: usize,
    /// Deepest nesting of a frame.
    pub depth_max: usize,
    /// Sustained changes per second per connection (token bucket).
    pub ops_per_second: u32,
    /// Burst above the sustained rate.
    pub ops_burst: u32,
    /// Most subscriptions on one connection.
    pub subscriptions_max: usize,
    /// Most concurrent WebSocket connections from one IP address.
    pub connections_per_ip: usize,
    /// Frames queued for one connection before it counts as a slow consumer.
    pub outbound_queue_frames: usize,
    /// Bytes of frames (answers, live changes, acks) one WebSocket may have queued for its
    /// client; past it the server stops reading from that client until it reads.
    pub outbound_queue_bytes: usize,
    /// Most entries one record may hold — fields, set members and their tags, counter
    /// totals (`RecordTooLarge` for a write past it).
    pub record_entries_max: usize,
    /// Most bytes (estimated, encoded) one record may take (`RecordTooLarge` past it).
    pub record_bytes_max: usize,
    /// Most rows one query may return (`ResultTooLarge` past it).
    pub query_rows_max: usize,
    /// Most bytes one query's answer may take (`ResultTooLarge` past it).
    pub query_bytes_max: usize,
    /// Batches one connection may have waiting for durability.
    pub inflight_batches: usize,
    /// Largest accepted lead of a client's HLC over the server clock, in milliseconds.
    pub max_drift_ms: u64,
    /// Most open HTTP connections (WebSockets included until they upgrade); past it new
    /// connections are closed at once.
    pub http_connections_max: usize,
    /// Time a connection has to send a request's headers — also the longest a kept-alive
    /// connection may sit idle between requests — in milliseconds.
    pub request_header_timeout_ms: u64,
    /// Time a request has to send its whole body, in milliseconds.
    pub request_body_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            frame_bytes_max: weft_core::codec::FRAME_BYTES_MAX_DEFAULT,
            batch_changes_max: weft_core::codec::BATCH_LEN_MAX_DEFAULT,
            depth_max: weft_core::codec::DEPTH_MAX_DEFAULT,
            ops_per_second: 200_000,
            ops_burst: 400_000,
            subscriptions_max: 64,
            connections_per_ip: 1024,
            http_connections_max: 4096,
            request_header_timeout_ms: 10_000,
            request_body_timeout_ms: 30_000,
            outbound_queue_frames: 1024,
            outbound_queue_bytes: 16 << 20,
            query_rows_max: 10_000,
            record_entries_max: weft_core::crdt::RECORD_ENTRIES_MAX_DEFAULT,
            record_bytes_max: weft_core::crdt::RECORD_BYTES_MAX_DEFAULT,
            query_bytes_max: weft_core::codec::FRAME_BYTES_MAX_DEFAULT,
            inflight_batches: 64,
            max_drift_ms: weft_core::hlc::MAX_DRIFT_MS_DEFAULT,
        }
    }
}

/// Storage engine settings (see docs/storage.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Dirty records that trigger a flush to SQLite.
    pub flush_records: usize,
    /// Clean records cached in memory.
    pub cache_records: usize,
    /// Longest a write waits for companions before the WAL syncs, in microseconds.
    pub group_commit_delay_us: u64,
    /// Checkpoint (and drop WAL segments before it) this often, in seconds.
    pub checkpoint_interval_s: u64,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        let engine = weft_storage::engine::EngineConfig::default();
        StorageConfig {
            flush_records: engine.flush_records,
            cache_records: engine.cache_records,
            group_commit_delay_us: engine.wal.group_delay.as_micros() as u64,
            checkpoint_interval_s: 60,
        }
    }
}

impl Config {
    /// The storage engine's settings: `storage.*`, and the record limits of `limits.*`.
    pub fn engine_config(&self) -> weft_storage::engine::EngineConfig {
        let mut engine = self.storage.engine_config();
        engine.record_limits = weft_core::crdt::RecordLimits {
            entries_max: self.limits.record_entries_max,
            bytes_max: self.limits.record_bytes_max,
        };
        engine
    }
}

impl StorageConfig {
    /// The engine settings these make (record limits at their defaults: see
    /// [`Config::engine_config`]).
    pub fn engine_config(&self) -> weft_storage::engine::EngineConfig {
        let mut engine = weft_storage::engine::EngineConfig {
            flush_records: self.flush_records.max(1),
            cache_records: self.cache_records.max(1),
            ..weft_storage::engine::EngineConfig::default()
        };
        engine.wal.group_delay = Duration::from_micros(self.group_commit_delay_us);
        engine
    }
}

const ENV_SECTIONS: [&str; 3] = ["auth", "limits", "storage"];

enum EnvKind {
    Text,
    Integer,
    Bool,
    /// Comma-separated.
    List,
}

/// The type of a setting an environment variable may set, or `None` if there is none.
fn env_kind(section: Option<&str>, key: &str) -> Option<EnvKind> {
    let known: &[&str] = match section {
        None => &["data_dir", "listen", "dev", "dev_allow_remote", "static_dir", "allowed_origins", "metrics_token"],
        Some("auth") => &[
            "hs256_secret",
            "rs256_public_key",
            "eddsa_public_key",
            "jwks_file",
            "jwks_url",
            "issuer",
            "audience",
            "roles_claim",
            "leeway_seconds",
        ],
        Some("limits") => &[
            "frame_bytes_max",
            "batch_changes_max",
            "depth_max",
            "ops_per_second",
            "ops_burst",
            "subscriptions_max",
            "connections_per_ip",
            "outbound_queue_frames",
            "outbound_queue_bytes",
            "query_rows_max",
            "record_entries_max",
            "record_bytes_max",
            "query_bytes_max",
            "inflight_batches",
            "max_drift_ms",
            "http_connections_max",
            "request_header_timeout_ms",
            "request_body_timeout_ms",
        ],
        Some("storage") => &["flush_records", "cache_records", "group_commit_delay_us", "checkpoint_interval_s"],
        Some(_) => &[],
    };
    if !known.contains(&key) {
        return None;
    }
    Some(match (section, key) {
        (None, "dev" | "dev_allow_remote") => EnvKind::Bool,
        (None, "allowed_origins") => EnvKind::List,
        (Some("limits" | "storage"), _) | (Some("auth"), "leeway_seconds") => EnvKind::Integer,
        _ => EnvKind::Text,
    })
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        source: Box<toml::de::Error>,
    },
    /// A setting has an impossible value.
    #[error("config: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::from_toml(&text).map_err(|error| match error {
            ConfigError::Parse { source, .. } => ConfigError::Parse { path: path.to_path_buf(), source },
            other => other,
        })
    }

    /// The configuration from an optional TOML file with `WEFT_*` environment variables
    /// over it: `WEFT_<KEY>` for top-level keys (`WEFT_DATA_DIR`, `WEFT_LISTEN`, `WEFT_DEV`)
    /// and `WEFT_<SECTION>_<KEY>` inside `auth`, `limits` and `storage`
    /// (`WEFT_LIMITS_BATCH_CHANGES_MAX=500`). An unknown key under a section prefix is an
    /// error; other `WEFT_*` variables (`WEFT_LOG`, `WEFT_URL`, ...) are not settings.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
                text.parse::<toml::Table>()
                    .map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source: Box::new(source) })?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("WEFT_") else { continue };
            let lower = rest.to_ascii_lowercase();
            let (section, key) = match lower.split_once('_') {
                Some((section, key)) if ENV_SECTIONS.contains(&section) => (Some(section), key),
                _ => (None, lower.as_str()),
            };
            let Some(kind) = env_kind(section, key) else {
                if section.is_some() {
                    return Err(ConfigError::Invalid(format!("{name}: no such setting")));
                }
                continue;
            };
            let parsed = match kind {
                EnvKind::Text => toml::Value::String(value.clone()),
                EnvKind::List => toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(|item| toml::Value::String(item.to_owned()))
                        .collect(),
                ),
                EnvKind::Integer => toml::Value::Integer(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| ConfigError::Invalid(format!("{name}={value:?}: expected a whole number")))?,
                ),
                EnvKind::Bool => toml::Value::Boolean(match value.trim() {
                    "1" | "true" | "yes" | "on" => true,
                    "0" | "false" | "no" | "off" | "" => false,
                    _ => return Err(ConfigError::Invalid(format!("{name}={value:?}: expected true or false"))),
                }),
            };
            let target = match section {
                Some(section) => {
                    match table.entry(section.to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new())) {
                        toml::Value::Table(inner) => inner,
                        _ => return Err(ConfigError::Invalid(format!("config: `{section}` must be a table"))),
                    }
                }
                None => &mut table,
            };
            target.insert(key.to_owned(), parsed);
        }
        let path = file.map(Path::to_path_buf).unwrap_or_default();
        toml::Value::Table(table).try_into().map_err(|source| ConfigError::Parse { path, source: Box::new(source) })
    }

    /// Parses TOML text over the defaults.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse { path: PathBuf::new(), source: Box::new(source) })
    }

    /// Checks settings that depend on each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dev && !self.listen.ip().is_loopback() && !self.dev_allow_remote {
            return Err(ConfigError::Invalid(format!(
                "--dev disables authentication, so it only binds loopback addresses; {} is not one \
                 (pass --dev-allow-remote to force it)",
                self.listen
            )));
        }
        let auth = &self.auth;
        let has_key = auth.hs256_secret.is_some()
            || auth.rs256_public_key.is_some()
            || auth.eddsa_public_key.is_some()
            || auth.jwks_file.is_some()
            || auth.jwks_url.is_some();
        if !self.dev && !has_key {
            return Err(ConfigError::Invalid(
                "no token verification key configured (auth.hs256_secret, auth.rs256_public_key, \
                 auth.eddsa_public_key, auth.jwks_file or auth.jwks_url); use --dev for local development"
                    .to_owned(),
            ));
        }
        if self.limits.batch_changes_max == 0 || self.limits.frame_bytes_max < 1024 {
            return Err(ConfigError::Invalid(
                "limits.batch_changes_max must be > 0 and frame_bytes_max >= 1024".into(),
            ));
        }
        // A record must fit a frame (with room for its key and the page around it) and
        // its lists must fit a decoder's list limit, or clients could never receive it.
        if self.limits.record_bytes_max > self.limits.frame_bytes_max / 2
            || self.limits.record_entries_max > self.limits.batch_changes_max
        {
            return Err(ConfigError::Invalid(format!(
                "limits.record_bytes_max ({}) must be at most half of frame_bytes_max ({}) and \
                 limits.record_entries_max ({}) at most batch_changes_max ({})",
                self.limits.record_bytes_max,
                self.limits.frame_bytes_max,
                self.limits.record_entries_max,
                self.limits.batch_changes_max
            )));
        }
        if !(1..=1_000_000).contains(&self.limits.http_connections_max) {
            return Err(ConfigError::Invalid(format!(
                "limits.http_connections_max is {}; it must be between 1 and 1,000,000",
                self.limits.http_connections_max
            )));
        }
        // Decoders recurse once per level: the bound is what keeps a hostile frame off
        // the end of the stack, so it cannot be configured away.
        if !(8..=64).contains(&self.limits.depth_max) {
            return Err(ConfigError::Invalid(format!(
                "limits.depth_max is {}; it must be between 8 and 64",
                self.limits.depth_max
            )));
        }
        for (collection, spec) in &self.collections {
            spec.compile().map_err(|error| ConfigError::Invalid(format!("collections.{collection}: {error}")))?;
        }
        crate::indexes::ServerIndexes::new(&self.indexes).map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// The effective configuration as printed at start-up, secrets masked.
    pub fn describe(&self) -> String {
        fn opt<T: std::fmt::Debug>(value: &Option<T>) -> String {
            value.as_ref().map_or_else(|| "-".to_owned(), |v| format!("{v:?}"))
        }
        let auth = &self.auth;
        let mut out = String::new();
        let mut line = |name: &str, value: String| out.push_str(&format!("  {name:<32} {value}\n"));
        line("data_dir", self.data_dir.display().to_string());
        line("listen", self.listen.to_string());
        line("dev", self.dev.to_string());
        line("static_dir", opt(&self.static_dir));
        line("allowed_origins", format!("{:?}", self.allowed_origins));
        line("metrics_token", self.metrics_token.as_ref().map_or("-".into(), |_| "****".into()));
        line("auth.hs256_secret", auth.hs256_secret.as_ref().map_or("-".into(), |_| "****".into()));
        line("auth.rs256_public_key", opt(&auth.rs256_public_key));
        line("auth.eddsa_public_key", opt(&auth.eddsa_public_key));
        line("auth.jwks_file", opt(&auth.jwks_file));
        line("auth.jwks_url", opt(&auth.jwks_url));
        line("auth.issuer", opt(&auth.issuer));
        line("auth.audience", opt(&auth.audience));
        line("auth.roles_claim", auth.roles_claim.clone().unwrap_or_else(|| "roles".into()));
        let limits = &self.limits;
        line("limits.frame_bytes_max", limits.frame_bytes_max.to_string());
        line("limits.batch_changes_max", limits.batch_changes_max.to_string());
        line("limits.depth_max", limits.depth_max.to_string());
        line("limits.ops_per_second", format!("{} (burst {})", limits.ops_per_second, limits.ops_burst));
        line("limits.subscriptions_max", limits.subscriptions_max.to_string());
        line("limits.connections_per_ip", limits.connections_per_ip.to_string());
        line("limits.outbound_queue_frames", limits.outbound_queue_frames.to_string());
        line("limits.outbound_queue_bytes", limits.outbound_queue_bytes.to_string());
        line("limits.query_rows_max", limits.query_rows_max.to_string());
        line("limits.record_entries_max", limits.record_entries_max.to_string());
        line("limits.record_bytes_max", limits.record_bytes_max.to_string());
        line("limits.query_bytes_max", limits.query_bytes_max.to_string());
        line("limits.inflight_batches", limits.inflight_batches.to_string());
        line("limits.max_drift_ms", limits.max_drift_ms.to_string());
        line("limits.http_connections_max", limits.http_connections_max.to_string());
        line("limits.request_header_timeout_ms", limits.request_header_timeout_ms.to_string());
        line("limits.request_body_timeout_ms", limits.request_body_timeout_ms.to_string());
        let storage = &self.storage;
        line("storage.flush_records", storage.flush_records.to_string());
        line("storage.cache_records", storage.cache_records.to_string());
        line("storage.group_commit_delay_us", storage.group_commit_delay_us.to_string());
        line("storage.checkpoint_interval_s", storage.checkpoint_interval_s.to_string());
        let rules = if self.dev {
            "dev mode: every operation allowed".to_owned()
        } else if self.collections.is_empty() {
            "none (everything denied)".to_owned()
        } else {
            self.collections.keys().cloned().collect::<Vec<_>>().join(", ")
        };
        line("collections (rules)", rules);
        let indexes: Vec<String> = self
            .indexes
            .iter()
            .flat_map(|(c, list)| list.iter().map(move |fields| format!("{c}({})", fields.join(", "))))
            .collect();
        line("indexes", if indexes.is_empty() { "-".to_owned() } else { indexes.join(", ") });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_defaults_and_unknown_keys_are_refused() {
        let config = Config::from_toml("listen = \"0.0.0.0:9000\"\n[limits]\nbatch_changes_max = 5\n").unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.limits.batch_changes_max, 5);
        assert_eq!(config.limits.subscriptions_max, LimitsConfig::default().subscriptions_max);
        let error = Config::from_toml("lisen = \"0.0.0.0:9000\"").unwrap_err().to_string();
        assert!(error.contains("lisen"), "{error}");
    }

    #[test]
    fn environment_variables_override_the_file_and_typos_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weft.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\n[limits]\nbatch_changes_max = 5\nsubscriptions_max = 7\n")
            .unwrap();
        let env =
            |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let config = Config::load(
            Some(&file),
            env(&[
                ("WEFT_LIMITS_BATCH_CHANGES_MAX", "500"),
                ("WEFT_AUTH_HS256_SECRET", "12345"),
                ("WEFT_DEV", "true"),
                ("WEFT_LOG", "debug"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(config.limits.batch_changes_max, 500, "env wins over the file");
        assert_eq!(config.limits.subscriptions_max, 7, "the file wins over defaults");
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.auth.hs256_secret.as_deref(), Some("12345"), "secrets stay text");
        assert!(config.dev);
        let error = Config::load(None, env(&[("WEFT_LIMITS_BATCH_MAX", "5")])).unwrap_err().to_string();
        assert!(error.contains("WEFT_LIMITS_BATCH_MAX"), "{error}");
        let error = Config::load(None, env(&[("WEFT_LIMITS_DEPTH_MAX", "deep")])).unwrap_err().to_string();
        assert!(error.contains("whole number"), "{error}");
    }

    #[test]
    fn dev_mode_refuses_non_loopback_addresses_unless_forced() {
        let mut config = Config { dev: true, listen: "0.0.0.0:7070".parse().unwrap(), ..Config::default() };
        assert!(config.validate().unwrap_err().to_string().contains("loopback"));
        config.dev_allow_remote = true;
        config.validate().unwrap();
    }

    #[test]
    fn secrets_are_masked_when_printed() {
        let mut config = Config::default();
        config.auth.hs256_secret = Some("hunter2-very-secret".into());
        let printed = config.describe();
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("****"));
    }

    #[test]
    fn without_a_key_outside_dev_mode_start_up_is_refused() {
        assert!(Config::default().validate().unwrap_err().to_string().contains("no token verification key"));
    }
}

//! Shared helpers of the server's integration tests: servers in-process or as a real
//! `weft` process, tokens, documents.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_core::key::{CollectionName, RecordKey};
use weft_core::value::{Document, Value};
use weft_server::config::Config;
use weft_server::serve::Server;
use weft_server::state::AppState;

pub const SECRET: &str = "integration-test-secret";

/// A server running inside the test process.
pub struct InProcess {
    pub address: SocketAddr,
    pub state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl InProcess {
    pub async fn start(mut config: Config) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        if config.data_dir == Config::default().data_dir {
            config.data_dir = dir.path().to_path_buf();
        }
        config.listen = "127.0.0.1:0".parse().unwrap();
        let server = Server::bind(config).await.unwrap();
        let address = server.local_addr().unwrap();
        let state = server.state();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        let started = Instant::now();
        while !state.is_ready() {
            assert!(started.elapsed() < Duration::from_secs(20), "server did not become ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        InProcess { address, state, stop: Some(stop), task: Some(task), _dir: Some(dir) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

pub fn dev_config() -> Config {
    Config { dev: true, ..Config::default() }
}

/// A config with HS256 auth, audience "weft", issuer "weft-tests" and rules for `todos`:
/// users read and write their own rows, admins read everything.
pub fn auth_config() -> Config {
    let mut config = Config::from_toml(
        r#"
        [auth]
        issuer = "weft-tests"
        audience = "weft"
        [collections.todos]
        read = [{ role = "user", when = "owner == auth.sub" }, { role = "admin" }]
        write = [{ role = "user", when = "owner == auth.sub" }]
        delete = [{ role = "user", when = "owner == auth.sub" }]
        "#,
    )
    .unwrap();
    config.auth.hs256_secret = Some(SECRET.to_owned());
    config
}

pub fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

pub fn token_with(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A valid token for `sub` with `roles`.
pub fn token(sub: &str, roles: &[&str]) -> String {
    token_with(
        SECRET,
        serde_json::json!({"sub": sub, "roles": roles, "exp": now_s() + 600, "iss": "weft-tests", "aud": "weft"}),
    )
}

pub fn todos() -> CollectionName {
    CollectionName::new("todos").unwrap()
}

pub fn key(text: &str) -> RecordKey {
    RecordKey::new(text).unwrap()
}

pub fn doc(fields: &[(&str, Value)]) -> Document {
    fields.iter().map(|(name, value)| (name.to_string(), value.clone())).collect()
}

/// Polls `condition` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A real `weft serve --dev` process.
pub struct Process {
    pub child: Child,
    pub port: u16,
    pub data_dir: PathBuf,
}

impl Process {
    pub fn spawn(data_dir: &Path, port: u16) -> Process {
        let child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir)
            .env("WEFT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Process { child, port, data_dir: data_dir.to_path_buf() }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until /health/ready answers 200.
    pub async fn ready(&self) {
        let started = Instant::now();
        let url = format!("{}/health/ready", self.url());
        loop {
            if let Ok(response) = reqwest::get(&url).await
                && response.status().is_success()
            {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "weft serve did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Start-up, readiness, metrics and graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use weft_client::http::HttpClient;
use weft_client::{Client, ClientConfig};
use weft_core::change::Change;
use weft_core::crdt::ops;
use weft_core::hlc::{Hlc, NodeId};
use weft_core::protocol::{BatchId, ClientMessage, ErrorCode, LogId, ServerMessage};
use weft_core::value::Value;
use weft_server::state::AppState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_recovery_is_done_only_liveness_answers_then_everything_does() {
    let dir = tempfile::tempdir().unwrap();
    let config = weft_server::config::Config { data_dir: dir.path().to_path_buf(), ..dev_config() };
    let state = Arc::new(AppState::new(config.clone(), None, LogId(7)).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app =
        weft_server::http::router(Arc::clone(&state)).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let get = |path: &str| reqwest::get(format!("{url}{path}"));
    assert_eq!(get("/health/live").await.unwrap().status(), 200);
    let ready = get("/health/ready").await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.text().await.unwrap(), "recovering\n");
    let http = HttpClient::new(&url, None);
    match http.sync_json(&serde_json::json!({"pulls": [{"collection": "todos"}]})).await {
        Err(weft_client::ClientError::Http { status: 503, message }) => {
            assert!(message.contains("recovering"), "{message}")
        }
        other => panic!("expected 503 while recovering, got {other:?}"),
    }

    let (engine, _) = weft_server::serve::open_engine(&config).unwrap();
    state.set_engine(Arc::new(engine));
    assert_eq!(get("/health/ready").await.unwrap().status(), 200);
    let client = Client::connect(ClientConfig::new(&url)).await.unwrap();
    client.put(&todos(), &key("t1"), doc(&[("x", Value::from(1))])).unwrap();
    client.synced().await.unwrap();
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("weft_ops_total{transport=\"ws\"} 1"), "{metrics}");
    assert!(metrics.contains("weft_acks_total{transport=\"ws\"} 1"), "{metrics}");
    assert!(metrics.contains("weft_connections 1"), "{metrics}");
    let syncs = metrics.lines().find(|l| l.starts_with("weft_wal_sync_seconds_count")).unwrap();
    assert_ne!(syncs, "weft_wal_sync_seconds_count 0", "{metrics}");
    assert!(metrics.ends_with("# EOF\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_acknowledges_the_batches_already_read_then_closes_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Process::spawn(dir.path(), port);
    server.ready().await;
    let (mut sender, mut receiver, _) = weft_client::raw::connect(&server.url(), NodeId(9), None).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    for batch in 0..40u64 {
        let changes = (0..100)
            .map(|i| {
                let hlc = Hlc::new(now, (batch * 100 + i) as u32, NodeId(9));
                let state = ops::put(None, doc(&[("batch", Value::from(batch as i64))]), hlc);
                Change { collection: todos(), key: key(&format!("b{batch}-{i}")), hlc, state }
            })
            .collect();
        sender.send(&ClientMessage::Push { batch_id: BatchId(batch), changes }).await.unwrap();
    }
    let status = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(20));
        let status = server.terminate();
        (server, status)
    });
    let mut acked = Vec::new();
    let mut told_unavailable = false;
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(20), receiver.recv()).await.unwrap() {
        match message {
            ServerMessage::Ack { batch_id } => {
                assert_eq!(batch_id.0, acked.len() as u64, "acks in order");
                acked.push(batch_id.0);
            }
            ServerMessage::Error { code: ErrorCode::Unavailable, fatal: true, .. } => told_unavailable = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    let (server, status) = status.await.unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        told_unavailable || acked.len() == 40,
        "a connection open at shutdown is told why it closes (acked {})",
        acked.len()
    );
    drop(server);
    let server = Process::spawn(dir.path(), port);
    server.ready().await;
    let http = HttpClient::new(&server.url(), None);
    for batch in acked {
        for i in [0, 99] {
            let record = http.get_record("todos", &format!("b{batch}-{i}")).await.unwrap();
            assert!(record.is_some(), "acknowledged batch {batch} lost");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_app_is_served_from_static_dir_and_api_routes_win() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/todo");
    let config = weft_server::config::Config { static_dir: Some(root), ..dev_config() };
    let server = InProcess::start(config).await;
    let page = reqwest::get(format!("{}/", server.url())).await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.text().await.unwrap().contains("<title>Weft · Todos</title>"));
    // The app's sources (the built bundle in dist/ exists only after scripts/build-web.sh).
    let script = reqwest::get(format!("{}/public/sw.js", server.url())).await.unwrap();
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    assert!(script.text().await.unwrap().contains("caches.open"));
    assert_eq!(reqwest::get(format!("{}/health/live", server.url())).await.unwrap().text().await.unwrap(), "ok\n");
    assert_eq!(reqwest::get(format!("{}/missing.css", server.url())).await.unwrap().status(), 404);
    server.stop().await;
}

/// A write the server stamps after a restart is ordered after every write it accepted
/// before, also one a client stamped ahead of the server's clock (within the allowed
/// drift): the clock restarts past the highest timestamp in the store and the WAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stamped_writes_after_a_restart_win_over_earlier_writes_stamped_ahead() {
    for stop in ["kill -9", "SIGTERM"] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut server = Process::spawn(dir.path(), port);
        server.ready().await;
        let http = HttpClient::new(&server.url(), None);
        // A client 20 s ahead of the server (max drift is 60 s) writes first.
        let ahead = now_s() * 1000 + 20_000;
        let hlc = Hlc::new(ahead, 0, NodeId(9));
        let state = ops::update(None, doc(&[("title", Value::from("client, 20 s ahead"))]), hlc);
        let push = ClientMessage::Push {
            batch_id: BatchId(0),
            changes: vec![Change { collection: todos(), key: key("t1"), hlc, state }],
        };
        let (replies, _, _) = http.sync(&[push]).await.unwrap();
        assert!(replies.iter().any(|m| matches!(m, ServerMessage::Ack { .. })), "{replies:?}");
        let json_write = |title: &str| serde_json::json!({"writes": [{"collection": "todos", "id": "t1", "op": "update", "fields": {"title": title}}]});
        http.sync_json(&json_write("server, before restart")).await.unwrap();
        assert_eq!(http.get_record("todos", "t1").await.unwrap().unwrap()["title"], "server, before restart");
        match stop {
            "kill -9" => server.kill9(),
            _ => assert!(server.terminate().success()),
        }
        drop(server);
        let server = Process::spawn(dir.path(), port);
        server.ready().await;
        let http = HttpClient::new(&server.url(), None);
        assert_eq!(
            http.get_record("todos", "t1").await.unwrap().unwrap()["title"],
            "server, before restart",
            "{stop}: the acknowledged server write survives"
        );
        http.sync_json(&json_write("server, after restart")).await.unwrap();
        assert_eq!(
            http.get_record("todos", "t1").await.unwrap().unwrap()["title"],
            "server, after restart",
            "{stop}: a server-stamped write after the restart is the latest"
        );
    }
}

/// Found by the simulation (seed 847): after a failed `fdatasync` the WAL refuses every
/// write until a restart, and the node must say so instead of reporting ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_wal_failed_reports_not_ready_naming_it() {
    use weft_storage::engine::{Engine, EngineConfig};
    use weft_storage::sim::{DiskFaults, SimDisk, SimRng};
    use weft_storage::store::MemoryStore;
    use weft_storage::wal::{Scheduling, WalConfig};

    let disk = SimDisk::new(SimRng::new(1), DiskFaults::default());
    let config = EngineConfig {
        wal: WalConfig { disk: Arc::new(disk.clone()), scheduling: Scheduling::Caller, ..WalConfig::default() },
        ..EngineConfig::default()
    };
    let (engine, _) = Engine::open(std::path::Path::new("/sim/wal"), Box::new(MemoryStore::new()), config).unwrap();
    let engine = Arc::new(engine);
    let state = Arc::new(AppState::new(dev_config(), None, LogId(7)).unwrap());
    state.set_engine(Arc::clone(&engine));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app =
        weft_server::http::router(Arc::clone(&state)).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    assert_eq!(reqwest::get(format!("{url}/health/ready")).await.unwrap().status(), 200);

    // Every sync fails from now on: the next write poisons the WAL.
    disk.set_faults(DiskFaults { sync_fail_per_mille: 1000 });
    let hlc = Hlc::new(1_700_000_000_000, 0, NodeId(3));
    let key = weft_core::key::RecordKey::new("k").unwrap();
    let collection = weft_core::key::CollectionName::new("todos").unwrap();
    let change = Change { collection, key, hlc, state: ops::delete(None, hlc) };
    assert!(engine.apply(vec![change]).is_err(), "a write whose sync failed is not acknowledged");
    let ready = reqwest::get(format!("{url}/health/ready")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body = ready.text().await.unwrap();
    assert!(body.contains("storage failed") && body.contains("fdatasync"), "{body}");
}

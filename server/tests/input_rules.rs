//! One set of input rules, whatever the transport: value depth, unknown JSON keys, the
//! batch a refusal names and where it comes in the stream of acks, `op_index` on HTTP
//! write errors, boolean environment variables, and `/metrics` behind a token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use weft_core::change::Change;
use weft_core::crdt::ops;
use weft_core::hlc::{Hlc, NodeId};
use weft_core::protocol::{BatchId, ClientMessage, ErrorCode, ServerMessage};
use weft_core::value::Value;

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn nested(depth: usize) -> Value {
    let mut value = Value::Int(1);
    for _ in 0..depth {
        value = Value::Array(vec![value]);
    }
    value
}

/// A value nested 33 deep is refused over WebSocket as it is over HTTP (the limit is 32),
/// with the change's index; 32 deep is accepted on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_depth_is_limited_alike_on_both_transports() {
    let server = InProcess::start(dev_config()).await;
    let (mut sender, mut receiver, _) = weft_client::raw::connect(&server.url(), NodeId(8), None).await.unwrap();
    let change = |id: &str, depth: usize, n: u32| {
        let hlc = Hlc::new(now_ms(), n, NodeId(8));
        let state = ops::put(None, doc(&[("v", nested(depth))]), hlc);
        Change { collection: todos(), key: key(id), hlc, state }
    };
    sender.send(&ClientMessage::Push { batch_id: BatchId(1), changes: vec![change("ok", 32, 1)] }).await.unwrap();
    assert_eq!(receiver.recv().await.unwrap(), Some(ServerMessage::Ack { batch_id: BatchId(1) }));
    let changes = vec![change("ok2", 1, 2), change("deep", 33, 3)];
    sender.send(&ClientMessage::Push { batch_id: BatchId(2), changes }).await.unwrap();
    match receiver.recv().await.unwrap() {
        Some(ServerMessage::Error { code: ErrorCode::NestingTooDeep, batch_id, op_index, .. }) => {
            assert_eq!((batch_id, op_index), (Some(BatchId(2)), Some(1)));
        }
        other => panic!("expected NestingTooDeep, got {other:?}"),
    }
    let json = |depth: usize| {
        let mut value = serde_json::json!(1);
        for _ in 0..depth {
            value = serde_json::json!([value]);
        }
        serde_json::json!({"writes": [{"collection": "todos", "id": "j", "fields": {"v": value}}]})
    };
    let http = reqwest::Client::new();
    let url = format!("{}/v1/sync", server.url());
    assert_eq!(http.post(&url).json(&json(32)).send().await.unwrap().status(), 200);
    assert_eq!(http.post(&url).json(&json(33)).send().await.unwrap().status(), 400);
    server.stop().await;
}

/// JSON requests are read strictly: an unknown key anywhere, or `writes` that is not a
/// list, is refused naming it; a refused write carries its index in `op_index`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_requests_refuse_unknown_keys_and_name_the_write_they_refuse() {
    let server = InProcess::start(dev_config()).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/sync", server.url());
    let cases = [
        (serde_json::json!({"writes": [], "wirtes": []}), "wirtes"),
        (serde_json::json!({"writes": {"collection": "todos"}}), "`writes` must be a list"),
        (serde_json::json!({"writes": [{"collection": "todos", "id": "a", "fileds": {"x": 1}}]}), "fileds"),
        (serde_json::json!({"pulls": [{"collection": "todos", "shpae": {}}]}), "shpae"),
    ];
    for (request, named) in cases {
        let response = http.post(&url).json(&request).send().await.unwrap();
        assert_eq!(response.status(), 400, "{request}");
        let body = response.text().await.unwrap();
        assert!(body.contains(named), "{request}: {body}");
    }
    let mut writes: Vec<serde_json::Value> =
        (0..7).map(|i| serde_json::json!({"collection": "todos", "id": format!("w{i}"), "fields": {"n": i}})).collect();
    writes.push(serde_json::json!({"collection": "todos", "id": "w7", "op": "upsert"}));
    let response = http.post(&url).json(&serde_json::json!({ "writes": writes })).send().await.unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["op_index"], 7, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("write 7"), "{body}");
    server.stop().await;
}

/// A push that does not decode is refused with its batch id, after the acks of the
/// batches sent before it — the client can settle exactly that batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_does_not_decode_is_refused_by_batch_id_in_batch_order() {
    let server = InProcess::start(dev_config()).await;
    let (mut sender, mut receiver, _) = weft_client::raw::connect(&server.url(), NodeId(9), None).await.unwrap();
    for batch in 1..=20u64 {
        let hlc = Hlc::new(now_ms(), batch as u32, NodeId(9));
        let changes = (0..50)
            .map(|i| Change {
                collection: todos(),
                key: key(&format!("b{batch}-{i}")),
                hlc,
                state: ops::put(None, doc(&[("n", Value::Int(i))]), hlc),
            })
            .collect();
        sender.send(&ClientMessage::Push { batch_id: BatchId(batch), changes }).await.unwrap();
    }
    // [2, 21, [20,000 × nil]]: a push (type 2) of batch 21 with too many entries.
    let mut frame = vec![0x93, 0x02, 21, 0xdc, 0x4e, 0x20];
    frame.extend(std::iter::repeat_n(0xc0, 20_000));
    sender.send_bytes(frame).await.unwrap();
    for batch in 1..=20u64 {
        assert_eq!(receiver.recv().await.unwrap(), Some(ServerMessage::Ack { batch_id: BatchId(batch) }));
    }
    match receiver.recv().await.unwrap() {
        Some(ServerMessage::Error { code: ErrorCode::BatchTooLarge, batch_id, fatal: false, .. }) => {
            assert_eq!(batch_id, Some(BatchId(21)));
        }
        other => panic!("expected the refusal of batch 21, got {other:?}"),
    }
    server.stop().await;
}

/// `WEFT_DEV=1` (and `true`, `yes`, `on`) starts dev mode like `--dev`; `/metrics` with a
/// `metrics_token` answers only a request that carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boolean_environment_variables_and_the_metrics_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .env("WEFT_DEV", "1")
        .env("WEFT_METRICS_TOKEN", "scrape-me")
        .env("WEFT_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    while !reqwest::get(format!("{url}/health/ready")).await.is_ok_and(|r| r.status().is_success()) {
        assert!(child.try_wait().unwrap().is_none(), "WEFT_DEV=1 was refused");
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{url}/metrics")).send().await.unwrap().status(), 401);
    let wrong = http.get(format!("{url}/metrics")).bearer_auth("scrape-m3").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let right = http.get(format!("{url}/metrics")).bearer_auth("scrape-me").send().await.unwrap();
    assert_eq!(right.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Keys may look like cursors: a listing whose rows are named `s1.…` pages through them
/// all (every `next` is sealed, so a key is never mistaken for a cursor).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_through_keys_that_look_like_cursors() {
    let server = InProcess::start(dev_config()).await;
    let http = weft_client::http::HttpClient::new(&server.url(), None);
    let writes: Vec<serde_json::Value> = ["s1.a", "s1.b", "t"]
        .iter()
        .map(|id| serde_json::json!({"collection": "todos", "id": id, "fields": {"n": 1}}))
        .collect();
    http.sync_json(&serde_json::json!({ "writes": writes })).await.unwrap();
    let client = reqwest::Client::new();
    let mut after: Option<String> = None;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let mut request = client.get(format!("{}/v1/collections/todos", server.url())).query(&[("limit", "1")]);
        if let Some(after) = &after {
            request = request.query(&[("after", after.as_str())]);
        }
        let page: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
        seen.extend(page["records"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["s1.a", "s1.b", "t"]);
    server.stop().await;
}

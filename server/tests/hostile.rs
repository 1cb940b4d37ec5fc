//! Hostile and broken input: every bad frame gets its error code, the connection stays
//! usable (only auth and version errors are fatal), the server keeps serving others, and
//! nothing acknowledged is lost. Limits: rate, subscriptions, connections per IP, frame
//! size, slow consumers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use weft_client::raw::{RawReceiver, RawSender};
use weft_client::{Client, ClientConfig};
use weft_core::change::Change;
use weft_core::crdt::ops;
use weft_core::hlc::{Hlc, NodeId};
use weft_core::protocol::{BatchId, ClientMessage, ErrorCode, ServerMessage, SubscriptionId};
use weft_core::value::Value;
use weft_server::config::Config;

const WAIT: Duration = Duration::from_secs(20);

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn change(id: &str, value: Value, wall_ms: u64) -> Change {
    let hlc = Hlc::new(wall_ms, 0, NodeId(9));
    Change { collection: todos(), key: key(id), hlc, state: ops::put(None, doc(&[("v", value)]), hlc) }
}

/// [2, 1, [20,000 × nil]]: more entries than the 10,000 a batch may hold.
fn huge_batch() -> Vec<u8> {
    let mut frame = vec![0x93, 0x02, 0x01, 0xdc, 0x4e, 0x20];
    frame.extend(std::iter::repeat_n(0xc0, 20_000));
    frame
}

fn push(batch: u64, changes: Vec<Change>) -> Vec<u8> {
    ClientMessage::Push { batch_id: BatchId(batch), changes }.encode()
}

/// The next message must be an error with `code`, not fatal.
async fn expect_error(receiver: &mut RawReceiver, code: ErrorCode, what: &str) -> String {
    match receiver.recv().await.unwrap() {
        Some(ServerMessage::Error { code: got, message, fatal, .. }) => {
            assert_eq!(got, code, "{what}: {message}");
            assert!(!fatal, "{what}: must not be fatal");
            message
        }
        other => panic!("{what}: expected error {code:?}, got {other:?}"),
    }
}

async fn still_usable(sender: &mut RawSender, receiver: &mut RawReceiver, nonce: u64) {
    sender.send(&ClientMessage::Ping { nonce }).await.unwrap();
    assert_eq!(receiver.recv().await.unwrap(), Some(ServerMessage::Pong { nonce }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_error_codes_and_the_connection_and_server_keep_working() {
    let config = Config {
        limits: weft_server::config::LimitsConfig {
            frame_bytes_max: 64 << 10,
            record_bytes_max: 32 << 10,
            ..Default::default()
        },
        ..dev_config()
    };
    let server = InProcess::start(config).await;
    let url = server.url();
    let bystander = Client::connect(ClientConfig::new(&url)).await.unwrap();
    bystander.put(&todos(), &key("safe-1"), doc(&[("v", Value::from(1))])).unwrap();
    bystander.synced().await.unwrap();

    let (mut sender, mut receiver, _) = weft_client::raw::connect(&url, NodeId(9), None).await.unwrap();
    let mut nonce = 0;
    let valid = push(1, vec![change("kkkk", Value::from(1), now_ms())]);
    let mut cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        ("not MessagePack", vec![0xc1, 0xc1], ErrorCode::Malformed),
        ("truncated push", valid[..valid.len() / 2].to_vec(), ErrorCode::Malformed),
        ("empty frame", Vec::new(), ErrorCode::Malformed),
        ("unknown message type", vec![0x91, 0x63], ErrorCode::UnknownMessageType),
        // [2, 1, array32 claiming 4 billion changes]: a lying length, refused before
        // allocating anything.
        ("lying batch count", vec![0x93, 0x02, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff], ErrorCode::Malformed),
        ("batch count over the limit", huge_batch(), ErrorCode::BatchTooLarge),
        (
            "frame over the limit",
            push(2, vec![change("big", Value::from("x".repeat(80 << 10)), now_ms())]),
            ErrorCode::FrameTooLarge,
        ),
    ];
    let mut invalid_utf8 = valid.clone();
    let at = invalid_utf8.windows(4).position(|w| w == b"kkkk").unwrap();
    invalid_utf8[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xfd, 0xfc]);
    cases.push(("invalid UTF-8 key", invalid_utf8, ErrorCode::Malformed));
    let mut deep = Value::from(1);
    for _ in 0..100 {
        deep = Value::Array(vec![deep]);
    }
    cases.push(("deep nesting", push(3, vec![change("deep", deep, now_ms())]), ErrorCode::NestingTooDeep));
    for (what, frame, code) in cases {
        sender.send_bytes(frame).await.unwrap();
        expect_error(&mut receiver, code, what).await;
        nonce += 1;
        still_usable(&mut sender, &mut receiver, nonce).await;
    }
    sender.send_text("{\"hello\": true}").await.unwrap();
    expect_error(&mut receiver, ErrorCode::Malformed, "text frame").await;

    // A drifted clock refuses the batch, naming batch and change.
    let drifted =
        push(7, vec![change("ok", Value::from(1), now_ms()), change("late", Value::from(2), now_ms() + 3_600_000)]);
    sender.send_bytes(drifted).await.unwrap();
    match receiver.recv().await.unwrap() {
        Some(ServerMessage::Error { code: ErrorCode::ClockDrift, batch_id, op_index, message, .. }) => {
            assert_eq!((batch_id, op_index), (Some(BatchId(7)), Some(1)), "{message}");
            assert!(message.contains("todos/late"), "{message}");
        }
        other => panic!("expected ClockDrift, got {other:?}"),
    }
    sender.send(&ClientMessage::Hello { protocol_version: 1, replica_id: NodeId(9), token: None }).await.unwrap();
    expect_error(&mut receiver, ErrorCode::UnexpectedMessage, "second hello").await;

    // The valid write still works, and nothing of the refused batches was applied.
    sender.send_bytes(valid).await.unwrap();
    assert_eq!(receiver.recv().await.unwrap(), Some(ServerMessage::Ack { batch_id: BatchId(1) }));
    let engine = server.state.engine().unwrap();
    assert!(engine.read(&todos(), &key("ok")).unwrap().is_none(), "a refused batch is all or nothing");
    assert!(engine.read(&todos(), &key("kkkk")).unwrap().is_some());
    bystander.put(&todos(), &key("safe-2"), doc(&[("v", Value::from(2))])).unwrap();
    bystander.synced().await.unwrap();
    assert!(engine.read(&todos(), &key("safe-1")).unwrap().is_some());
    assert!(engine.read(&todos(), &key("safe-2")).unwrap().is_some());

    // Before the hello, anything else is fatal; a wrong protocol version too.
    let (mut early, mut early_rx) = weft_client::raw::open(&url).await.unwrap();
    early.send(&ClientMessage::Ping { nonce: 1 }).await.unwrap();
    assert!(matches!(
        early_rx.recv().await.unwrap(),
        Some(ServerMessage::Error { code: ErrorCode::UnexpectedMessage, fatal: true, .. })
    ));
    assert_eq!(early_rx.recv().await.unwrap(), None, "closed after a fatal error");
    let (mut old, mut old_rx) = weft_client::raw::open(&url).await.unwrap();
    old.send(&ClientMessage::Hello { protocol_version: 99, replica_id: NodeId(3), token: None }).await.unwrap();
    assert!(matches!(
        old_rx.recv().await.unwrap(),
        Some(ServerMessage::Error { code: ErrorCode::UnsupportedVersion, fatal: true, .. })
    ));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_subscription_and_connection_limits_answer_with_their_codes() {
    let mut config = dev_config();
    config.limits.ops_per_second = 10;
    config.limits.ops_burst = 10;
    config.limits.subscriptions_max = 2;
    config.limits.connections_per_ip = 3;
    let server = InProcess::start(config).await;
    let url = server.url();
    let (mut sender, mut receiver, _) = weft_client::raw::connect(&url, NodeId(9), None).await.unwrap();
    let batch: Vec<Change> = (0..8).map(|i| change(&format!("r{i}"), Value::from(i), now_ms())).collect();
    sender.send_bytes(push(1, batch.clone())).await.unwrap();
    assert_eq!(receiver.recv().await.unwrap(), Some(ServerMessage::Ack { batch_id: BatchId(1) }));
    sender.send_bytes(push(2, batch)).await.unwrap();
    match receiver.recv().await.unwrap() {
        Some(ServerMessage::Error {
            code: ErrorCode::RateLimited, batch_id: Some(BatchId(2)), fatal: false, ..
        }) => {}
        other => panic!("expected RateLimited, got {other:?}"),
    }
    for id in 1..=3 {
        let name = weft_core::key::CollectionName::new(format!("c{id}")).unwrap();
        sender
            .send(&ClientMessage::Subscribe {
                subscription_id: SubscriptionId(id),
                collection: name,
                cursor: None,
                shape: None,
            })
            .await
            .unwrap();
        let reply = receiver.recv().await.unwrap();
        if id <= 2 {
            assert!(matches!(reply, Some(ServerMessage::Changes { caught_up: true, .. })), "{reply:?}");
        } else {
            assert!(
                matches!(reply, Some(ServerMessage::Error { code: ErrorCode::TooManySubscriptions, .. })),
                "{reply:?}"
            );
        }
    }
    let _second = weft_client::raw::connect(&url, NodeId(10), None).await.unwrap();
    let _third = weft_client::raw::connect(&url, NodeId(11), None).await.unwrap();
    match weft_client::raw::connect(&url, NodeId(12), None).await {
        Err(weft_client::ClientError::Connect { reason, .. }) => assert!(reason.contains("429"), "{reason}"),
        other => panic!("expected the fourth connection to be refused, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_disconnected_and_writers_are_unaffected() {
    let mut config = dev_config();
    config.limits.outbound_queue_frames = 4;
    let server = InProcess::start(config).await;
    let url = server.url();
    let (mut slow, mut slow_rx, _) = weft_client::raw::connect(&url, NodeId(20), None).await.unwrap();
    slow.send(&ClientMessage::Subscribe {
        subscription_id: SubscriptionId(1),
        collection: todos(),
        cursor: None,
        shape: None,
    })
    .await
    .unwrap();
    assert!(matches!(slow_rx.recv().await.unwrap(), Some(ServerMessage::Changes { caught_up: true, .. })));
    // Now the slow client reads nothing while a writer pushes ~40 MB of changes.
    let (mut writer, mut writer_rx, _) = weft_client::raw::connect(&url, NodeId(21), None).await.unwrap();
    let payload = Value::from("y".repeat(4 << 10));
    for batch in 0..100u64 {
        let changes = (0..100).map(|i| change(&format!("w{batch}-{i}"), payload.clone(), now_ms())).collect();
        writer.send_bytes(push(batch, changes)).await.unwrap();
        assert_eq!(writer_rx.recv().await.unwrap(), Some(ServerMessage::Ack { batch_id: BatchId(batch) }));
    }
    let slow_consumers = || {
        let metrics = server.state.metrics.render(&Default::default());
        metrics.contains("weft_errors_total{code=\"15\"} 1")
    };
    assert!(eventually(WAIT, slow_consumers).await, "the slow consumer was not cut off");
    // Its connection ends (after whatever was already in flight).
    let drained = tokio::time::timeout(WAIT, async { while let Ok(Some(_)) = slow_rx.recv().await {} }).await;
    assert!(drained.is_ok(), "connection still open");
    drop(slow);
    server.stop().await;
}

/// Queries built to nest deeply — 4,000 ANDs as `text/plain`, an 8,000-term OR chain as
/// JSON `{"sql": …}`, 5,000 terms over the WebSocket query message — are refused with an
/// error naming why, and the server process keeps serving (they once overflowed a
/// worker's stack and aborted it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_built_to_nest_deeply_are_refused_and_the_server_survives() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Process::spawn(dir.path(), free_port());
    server.ready().await;
    let chain = |terms: usize, op: &str| {
        let mut sql = "SELECT * FROM todos WHERE n = 1".to_owned();
        for _ in 0..terms {
            sql.push_str(&format!(" {op} n = 1"));
        }
        sql
    };
    let http = reqwest::Client::new();
    let url = format!("{}/v1/query", server.url());
    let plain = http.post(&url).header("content-type", "text/plain").body(chain(4_000, "AND")).send().await.unwrap();
    assert_eq!(plain.status(), 400);
    let body = plain.text().await.unwrap();
    assert!(body.contains("too complex"), "{body}");
    let json = http.post(&url).json(&serde_json::json!({ "sql": chain(8_000, "OR") })).send().await.unwrap();
    assert_eq!(json.status(), 400);
    assert!(json.text().await.unwrap().contains("too complex"));
    let (mut sender, mut receiver, _) = weft_client::raw::connect(&server.url(), NodeId(5), None).await.unwrap();
    // 5,000 terms of "AND n=1" fit the 64 KiB query text limit.
    let mut text = "SELECT * FROM todos WHERE n=1".to_owned();
    for _ in 0..5_000 {
        text.push_str(" AND n=1");
    }
    assert!(text.len() < 64 * 1024);
    sender.send(&ClientMessage::Query { request_id: 1, query: text }).await.unwrap();
    let message = expect_error(&mut receiver, ErrorCode::Malformed, "deep WebSocket query").await;
    assert!(message.contains("too complex"), "{message}");
    still_usable(&mut sender, &mut receiver, 1).await;
    assert!(server.child.try_wait().unwrap().is_none(), "the server process is still running");
    let health = reqwest::get(format!("{}/health/ready", server.url())).await.unwrap();
    assert!(health.status().is_success());
    server.kill9();
}

/// `--dev` has no auth, so it only serves pages from loopback origins: a WebSocket
/// upgrade or a simple `text/plain` POST from another origin, or a request addressed to
/// a non-loopback name (DNS rebinding), is refused with Forbidden before it does anything.
/// Pages from loopback origins and clients that send no `Origin` work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_refuses_pages_from_other_origins_and_rebound_host_names() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = InProcess::start(dev_config()).await;
    let ws_url = format!("ws://{}/v1/ws", server.address);
    let upgrade = |origin: Option<&'static str>| {
        let mut request = ws_url.as_str().into_client_request().unwrap();
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", origin.parse().unwrap());
        }
        tokio_tungstenite::connect_async(request)
    };
    match upgrade(Some("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a cross-origin upgrade must be refused, got {:?}", other.map(|_| ())),
    }
    for origin in [Some("http://localhost:5173"), Some("http://127.0.0.1:7070"), None] {
        assert!(upgrade(origin).await.is_ok(), "upgrade from {origin:?}");
    }
    let http = reqwest::Client::new();
    for (path, body) in [("/v1/query", "SELECT * FROM todos"), ("/v1/sync", r#"{"writes":[]}"#)] {
        let url = format!("{}{path}", server.url());
        let response = http
            .post(&url)
            .header("content-type", "text/plain")
            .header("origin", "https://evil.example")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{path}");
        assert!(response.text().await.unwrap().contains("evil.example"));
        let rebound = http.post(&url).header("host", "evil.example:7070").body(body).send().await.unwrap();
        assert_eq!(rebound.status(), 403, "{path} addressed to a rebound name");
    }
    let local = http
        .post(format!("{}/v1/query", server.url()))
        .header("content-type", "text/plain")
        .header("origin", "http://localhost:3000")
        .body("SELECT * FROM todos")
        .send()
        .await
        .unwrap();
    assert_eq!(local.status(), 200);
    server.stop().await;
}

/// Outside dev mode, with `allowed_origins` set, only those origins and the server's own
/// may call the API from a browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origins_limit_which_pages_may_call_the_api() {
    let mut config = auth_config();
    config.allowed_origins = vec!["https://app.example".to_owned()];
    let server = InProcess::start(config).await;
    let http = reqwest::Client::new();
    let own = format!("http://{}", server.address);
    for (origin, status) in [("https://app.example", 200), (own.as_str(), 200), ("https://evil.example", 403)] {
        let response = http
            .post(format!("{}/v1/query", server.url()))
            .bearer_auth(token("alice", &["admin"]))
            .header("origin", origin)
            .json(&serde_json::json!({"sql": "SELECT * FROM todos"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "origin {origin}");
    }
    server.stop().await;
}

/// Reads from `stream` until the server closes it; returns what arrived and how long
/// the close took (panics past `within`).
async fn until_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> (String, Duration) {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(within.saturating_sub(started.elapsed()), stream.read(&mut buffer))
            .await
            .expect("the server should have closed the connection by now");
        match read {
            Ok(0) | Err(_) => return (String::from_utf8_lossy(&received).into_owned(), started.elapsed()),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Nothing holds a connection open for free: headers trickled a byte at a time, a
/// connection that never says anything, a body that never arrives, a body announced as
/// 10 GB; and past `http_connections_max` new connections are closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_silent_and_oversized_requests_time_out_or_are_refused() {
    use tokio::io::AsyncWriteExt;
    let mut config = dev_config();
    config.limits.request_header_timeout_ms = 500;
    config.limits.request_body_timeout_ms = 500;
    config.limits.http_connections_max = 6;
    let server = InProcess::start(config).await;
    let connect = || tokio::net::TcpStream::connect(server.address);

    // Headers at one byte per 100 ms never finish: closed at the header deadline.
    let mut trickle = connect().await.unwrap();
    let started = std::time::Instant::now();
    let request =
        b"POST /v1/query HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for byte in request {
        if trickle.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut probe = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(100), tokio::io::AsyncReadExt::read(&mut trickle, &mut probe))
                .await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a connection trickling headers was still open after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());

    // A connection that never sends a byte.
    let mut silent = connect().await.unwrap();
    until_closed(&mut silent, Duration::from_secs(5)).await;

    // A body that never arrives: 408 with Timeout.
    let mut stalled = connect().await.unwrap();
    stalled
        .write_all(b"POST /v1/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nSELECT")
        .await
        .unwrap();
    let (response, _) = until_closed(&mut stalled, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("request_body_timeout_ms"), "{response}");

    // A body announced as 10 GB: refused before reading it.
    let mut huge = connect().await.unwrap();
    huge.write_all(b"POST /v1/sync HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{\"writes\"").await.unwrap();
    let (response, _) = until_closed(&mut huge, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");

    // Six open connections fill the server; the seventh is closed at once.
    let mut held = Vec::new();
    for _ in 0..6 {
        let mut stream = connect().await.unwrap();
        stream.write_all(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = connect().await.unwrap();
    let (response, took) = until_closed(&mut extra, Duration::from_millis(400)).await;
    assert!(response.is_empty() && took < Duration::from_millis(400), "{response:?} after {took:?}");
    drop(held);
    // Once they close, the server takes connections again.
    let started = std::time::Instant::now();
    loop {
        let answer = reqwest::get(format!("{}/health/live", server.url())).await;
        if answer.is_ok_and(|response| response.status().is_success()) {
            break;
        }
        assert!(started.elapsed() < WAIT, "the server did not take connections again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

/// The gauge `name` from the server's `/metrics`.
async fn gauge(url: &str, name: &str) -> i64 {
    let text = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
    text.lines().find_map(|line| line.strip_prefix(&format!("{name} "))).unwrap().trim().parse().unwrap()
}

/// A client that asks for many large answers and never reads holds a bounded number of
/// bytes of server memory (`limits.outbound_queue_bytes`): the server stops reading from
/// it instead of queueing more. When it reads again, every answer arrives, in order.
/// Answers past `limits.query_rows_max` are refused with ResultTooLarge on both transports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_queued_for_a_client_are_bounded_in_bytes_and_results_in_size() {
    let mut config = dev_config();
    config.limits.outbound_queue_bytes = 200_000;
    config.limits.query_rows_max = 300;
    let server = InProcess::start(config).await;
    let url = server.url();
    let http = weft_client::http::HttpClient::new(&url, None);
    let padding = "x".repeat(400);
    let writes: Vec<serde_json::Value> = (0..250)
        .map(|i| serde_json::json!({"collection": "todos", "id": format!("r{i:03}"), "fields": {"pad": padding, "n": i}}))
        .collect();
    http.sync_json(&serde_json::json!({ "writes": writes })).await.unwrap();

    let (mut sender, mut receiver, _) = weft_client::raw::connect(&url, NodeId(3), None).await.unwrap();
    // Forty answers of ≈ 110 KB each (4.4 MB) asked for without reading.
    for request_id in 0..40 {
        sender.send(&ClientMessage::Query { request_id, query: "SELECT * FROM todos".into() }).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let queued = gauge(&url, "weft_outbound_queued_bytes").await;
    assert!(queued <= 200_000, "{queued} bytes queued for a client that does not read");
    for expected in 0..40 {
        match tokio::time::timeout(WAIT, receiver.recv()).await.unwrap().unwrap() {
            Some(ServerMessage::QueryResult { request_id, rows, .. }) => {
                assert_eq!((request_id, rows.len()), (expected, 250));
            }
            other => panic!("expected answer {expected}, got {other:?}"),
        }
    }
    assert_eq!(gauge(&url, "weft_outbound_queued_bytes").await, 0);

    // Past the row limit: refused by name, over both transports.
    http.sync_json(&serde_json::json!({"writes": (250..320).map(|i| serde_json::json!({"collection": "todos", "id": format!("r{i:03}"), "fields": {"n": i}})).collect::<Vec<_>>()}))
        .await
        .unwrap();
    sender.send(&ClientMessage::Query { request_id: 99, query: "SELECT n FROM todos".into() }).await.unwrap();
    let message = expect_error(&mut receiver, ErrorCode::ResultTooLarge, "320 rows").await;
    assert!(message.contains("query_rows_max"), "{message}");
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/query"))
        .json(&serde_json::json!({"sql": "SELECT n FROM todos"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    server.stop().await;
}

/// Writes that would make a record larger than a client can decode are refused with
/// RecordTooLarge naming the record — on both transports, whether the record grows in
/// one write or across many — and what was accepted stays readable and syncable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_would_grow_a_record_past_its_limits_are_refused_on_both_transports() {
    let server = InProcess::start(dev_config()).await;
    let url = server.url();
    let (mut sender, mut receiver, _) = weft_client::raw::connect(&url, NodeId(4), None).await.unwrap();
    let fields = |from: usize, count: usize| -> weft_core::value::Document {
        (from..from + count).map(|i| (format!("f{i}"), Value::Int(i as i64))).collect()
    };
    let update = |id: &str, document: weft_core::value::Document, n: u32| {
        let hlc = Hlc::new(now_ms(), n, NodeId(4));
        Change { collection: todos(), key: key(id), hlc, state: ops::update(None, document, hlc) }
    };
    // Entries: 3,000 fields, then 3,000 more (5,000 allowed).
    sender
        .send(&ClientMessage::Push { batch_id: BatchId(1), changes: vec![update("wide", fields(0, 3_000), 1)] })
        .await
        .unwrap();
    assert_eq!(receiver.recv().await.unwrap(), Some(ServerMessage::Ack { batch_id: BatchId(1) }));
    sender
        .send(&ClientMessage::Push { batch_id: BatchId(2), changes: vec![update("wide", fields(3_000, 3_000), 2)] })
        .await
        .unwrap();
    let message = expect_error(&mut receiver, ErrorCode::RecordTooLarge, "6,000 fields").await;
    assert!(message.contains("todos/wide") && message.contains("entries"), "{message}");
    // Bytes: 600 KB, then 600 KB more in another field (1 MiB allowed).
    let big = |field: &str| weft_core::value::Document::from([(field.to_owned(), Value::from("y".repeat(600_000)))]);
    sender
        .send(&ClientMessage::Push { batch_id: BatchId(3), changes: vec![update("heavy", big("a"), 3)] })
        .await
        .unwrap();
    assert_eq!(receiver.recv().await.unwrap(), Some(ServerMessage::Ack { batch_id: BatchId(3) }));
    sender
        .send(&ClientMessage::Push { batch_id: BatchId(4), changes: vec![update("heavy", big("b"), 4)] })
        .await
        .unwrap();
    let message = expect_error(&mut receiver, ErrorCode::RecordTooLarge, "1.2 MB").await;
    assert!(message.contains("todos/heavy") && message.contains("bytes"), "{message}");
    // The same limits over HTTP JSON: one 2 MiB string.
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/sync"))
        .json(&serde_json::json!({"writes": [{"collection": "todos", "id": "long", "fields": {"s": "z".repeat(2 << 20)}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], 23, "{body}");
    // What was accepted is whole and reaches a client that catches up.
    let client = Client::connect(ClientConfig::new(&url)).await.unwrap();
    client.subscribe(&todos(), None);
    client.caught_up(&todos()).await.unwrap();
    let documents = client.documents(&todos());
    let wide = documents.iter().find(|(k, _)| k.as_str() == "wide").unwrap();
    assert_eq!(wide.1.len(), 3_000);
    assert!(documents.iter().any(|(k, d)| k.as_str() == "heavy" && d.contains_key("a") && !d.contains_key("b")));
    assert!(!documents.iter().any(|(k, _)| k.as_str() == "long"));
    server.stop().await;
}

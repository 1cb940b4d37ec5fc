//! Authentication and authorization over both transports: each bad token has its own
//! code, and the rules hold for writes, pulls, subscriptions and HTTP reads alike.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use weft_client::http::HttpClient;
use weft_client::{Client, ClientConfig, ClientError};
use weft_core::hlc::NodeId;
use weft_core::protocol::{BatchId, ClientMessage, ErrorCode, ServerMessage, SubscriptionId};
use weft_core::replica::Replica;
use weft_core::value::Value;

const WAIT: Duration = Duration::from_secs(20);

async fn ws_refusal(url: &str, token: Option<String>) -> ErrorCode {
    match weft_client::raw::connect(url, NodeId(1), token).await {
        Err(ClientError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn http_refusal(url: &str, token: Option<&str>) -> (u16, u16) {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/v1/sync"))
        .header("content-type", "application/json")
        .body(r#"{"pulls":[{"collection":"todos"}]}"#);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    (status, body["error"]["code"].as_u64().unwrap() as u16)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_expired_forged_and_foreign_tokens_get_distinct_codes_on_both_transports() {
    let server = InProcess::start(auth_config()).await;
    let url = server.url();
    let claims = |exp: u64, aud: &str| serde_json::json!({"sub": "alice", "roles": ["user"], "exp": exp, "iss": "weft-tests", "aud": aud});
    let expired = token_with(SECRET, claims(now_s() - 3600, "weft"));
    let forged = token_with("not-the-secret", claims(now_s() + 600, "weft"));
    let foreign = token_with(SECRET, claims(now_s() + 600, "another-service"));
    let cases = [
        (None, ErrorCode::Unauthenticated),
        (Some(expired), ErrorCode::TokenExpired),
        (Some(forged), ErrorCode::TokenInvalid),
        (Some(foreign), ErrorCode::TokenRejected),
        (Some("garbage".to_owned()), ErrorCode::TokenInvalid),
    ];
    for (token, code) in cases {
        assert_eq!(ws_refusal(&url, token.clone()).await, code, "WebSocket, token {token:?}");
        assert_eq!(http_refusal(&url, token.as_deref()).await, (401, code.as_u16()), "HTTP, token {token:?}");
    }
    // A good token works on both.
    weft_client::raw::connect(&url, NodeId(1), Some(token("alice", &["user"]))).await.unwrap();
    let http = HttpClient::new(&url, Some(token("alice", &["user"])));
    http.sync_json(&serde_json::json!({"pulls": [{"collection": "todos"}]})).await.unwrap();

    // The native client stops retrying after a refusal and says why.
    let client = Client::connect(ClientConfig::new(&url).with_token(token_with("x", claims(now_s() + 60, "weft"))))
        .await
        .unwrap();
    match tokio::time::timeout(WAIT, client.connected()).await.unwrap() {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::TokenInvalid),
        other => panic!("expected a refusal, got {other:?}"),
    }
    server.stop().await;
}

/// With an issuer and audience configured, a correctly signed token that omits either,
/// or carries one of the wrong type, is refused on both transports; so is a token whose
/// `sub` is missing, empty or not a string (it would otherwise share `owner == ""` rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_tokens_missing_or_mistyping_iss_aud_or_sub_are_refused_on_both_transports() {
    let server = InProcess::start(auth_config()).await;
    let url = server.url();
    let good = serde_json::json!({"sub": "alice", "roles": ["user"], "exp": now_s() + 600, "iss": "weft-tests", "aud": "weft"});
    let cases: [(&str, Option<serde_json::Value>); 8] = [
        ("iss", None),
        ("iss", Some(123.into())),
        ("aud", None),
        ("aud", Some(serde_json::json!({"weft": true}))),
        ("sub", None),
        ("sub", Some("".into())),
        ("sub", Some(7.into())),
        ("sub", Some(serde_json::Value::Null)),
    ];
    for (claim, value) in cases {
        let mut claims = good.clone();
        match &value {
            Some(value) => claims[claim] = value.clone(),
            None => drop(claims.as_object_mut().unwrap().remove(claim)),
        }
        let token = token_with(SECRET, claims);
        let code = ws_refusal(&url, Some(token.clone())).await;
        assert!(matches!(code, ErrorCode::TokenInvalid | ErrorCode::TokenRejected), "WebSocket, {claim} = {value:?}");
        let (status, http_code) = http_refusal(&url, Some(&token)).await;
        assert_eq!((status, http_code), (401, code.as_u16()), "HTTP, {claim} = {value:?}");
    }
    server.stop().await;
}

/// A WebSocket session ends when its token expires (exp + leeway), with TokenExpired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_session_ends_when_its_token_expires() {
    let mut config = auth_config();
    config.auth.leeway_seconds = Some(0);
    let server = InProcess::start(config).await;
    let claims =
        serde_json::json!({"sub": "alice", "roles": ["user"], "exp": now_s() + 2, "iss": "weft-tests", "aud": "weft"});
    let (_sender, mut receiver, _) =
        weft_client::raw::connect(&server.url(), NodeId(1), Some(token_with(SECRET, claims))).await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(10), receiver.recv()).await.expect("closed within 10 s");
    match message.unwrap() {
        Some(ServerMessage::Error { code: ErrorCode::TokenExpired, fatal: true, .. }) => {}
        other => panic!("expected a fatal TokenExpired, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_only_read_subscribe_and_write_the_rows_the_rules_allow() {
    let server = InProcess::start(auth_config()).await;
    let url = server.url();
    let alice = Client::connect(ClientConfig::new(&url).with_token(token("alice", &["user"]))).await.unwrap();
    let bob = Client::connect(ClientConfig::new(&url).with_token(token("bob", &["user"]))).await.unwrap();
    let admin = Client::connect(ClientConfig::new(&url).with_token(token("root", &["admin"]))).await.unwrap();
    for client in [&alice, &bob, &admin] {
        client.subscribe(&todos(), None);
        client.caught_up(&todos()).await.unwrap();
    }
    alice.put(&todos(), &key("a1"), doc(&[("owner", Value::from("alice")), ("title", Value::from("mine"))])).unwrap();
    bob.put(&todos(), &key("b1"), doc(&[("owner", Value::from("bob")), ("title", Value::from("bob's"))])).unwrap();
    alice.synced().await.unwrap();
    bob.synced().await.unwrap();
    assert!(eventually(WAIT, || admin.documents(&todos()).len() == 2).await, "admin reads everything");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ids = |client: &Client| client.documents(&todos()).into_iter().map(|(k, _)| k.to_string()).collect::<Vec<_>>();
    assert_eq!(ids(&alice), vec!["a1"], "alice sees only her row live");
    assert_eq!(ids(&bob), vec!["b1"]);

    // Writes: someone else's row, a row for someone else, taking over a row — all refused,
    // each naming the change.
    let (mut sender, mut receiver, _) =
        weft_client::raw::connect(&url, NodeId(42), Some(token("alice", &["user"]))).await.unwrap();
    let mut replica = Replica::new(NodeId(42), weft_core::hlc::SystemClock);
    let attempts = [
        ("b1", doc(&[("owner", Value::from("bob")), ("title", Value::from("defaced"))])),
        ("x1", doc(&[("owner", Value::from("bob")), ("title", Value::from("forged"))])),
        ("b1", doc(&[("owner", Value::from("alice"))])),
    ];
    for (batch, (id, fields)) in attempts.into_iter().enumerate() {
        replica.update(&todos(), &key(id), fields).unwrap();
        let changes: Vec<_> = replica.outbox().unacknowledged().cloned().collect::<Vec<_>>().split_off(batch);
        sender.send(&ClientMessage::Push { batch_id: BatchId(batch as u64), changes }).await.unwrap();
        match receiver.recv().await.unwrap() {
            Some(ServerMessage::Error { code: ErrorCode::Forbidden, batch_id, op_index, message, .. }) => {
                assert_eq!(batch_id, Some(BatchId(batch as u64)));
                assert_eq!(op_index, Some(0));
                assert!(message.contains(&format!("todos/{id}")), "{message}");
            }
            other => panic!("expected Forbidden for {id}, got {other:?}"),
        }
    }
    // Reconciliation needs unconditional read access.
    sender
        .send(&ClientMessage::Reconcile {
            session_id: weft_core::protocol::SessionId(1),
            collection: todos(),
            step: weft_core::merkle::ReconcileStep::start(&weft_core::merkle::MerkleIndex::new()),
        })
        .await
        .unwrap();
    assert!(matches!(receiver.recv().await.unwrap(), Some(ServerMessage::Error { code: ErrorCode::Forbidden, .. })));

    // Pulls and HTTP reads apply the same rules.
    sender
        .send(&ClientMessage::Subscribe {
            subscription_id: SubscriptionId(3),
            collection: todos(),
            cursor: None,
            shape: None,
        })
        .await
        .unwrap();
    match receiver.recv().await.unwrap() {
        Some(ServerMessage::Changes { changes, .. }) => {
            let keys: Vec<String> = changes.iter().map(|c| c.key.to_string()).collect();
            assert_eq!(keys, vec!["a1"]);
        }
        other => panic!("{other:?}"),
    }
    let http = HttpClient::new(&url, Some(token("alice", &["user"])));
    assert!(http.get_record("todos", "b1").await.unwrap().is_none(), "bob's row is not readable");
    assert_eq!(http.get_record("todos", "a1").await.unwrap().unwrap()["title"], "mine");
    let (records, _) = http.list("todos", None, 100).await.unwrap();
    assert_eq!(records.len(), 1);
    let json = http.sync_json(&serde_json::json!({"pulls": [{"collection": "todos"}]})).await.unwrap();
    assert_eq!(json["pulls"][0]["records"].as_array().unwrap().len(), 1);
    let write =
        serde_json::json!({"writes": [{"collection": "todos", "id": "b1", "op": "update", "fields": {"title": "x"}}]});
    match http.sync_json(&write).await {
        Err(ClientError::Http { status: 403, message }) => assert!(message.contains("todos/b1"), "{message}"),
        other => panic!("expected 403, got {other:?}"),
    }
    // A collection without rules is denied outright.
    match http.list("secrets", None, 10).await {
        Err(ClientError::Http { status: 403, .. }) => {}
        other => panic!("expected 403, got {other:?}"),
    }
    assert_eq!(admin.get(&todos(), "b1").unwrap()["title"], Value::from("bob's"), "nothing was defaced");
    server.stop().await;
}

/// Paging a collection never names a row the caller may not read: `next` is always a
/// sealed cursor (also when a page stops among unreadable rows), and following it returns
/// exactly the readable rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_never_name_rows_the_caller_cannot_read() {
    let server = InProcess::start(auth_config()).await;
    let url = server.url();
    let write = |owner: &str, ids: Vec<String>| {
        let writes: Vec<serde_json::Value> = ids
            .into_iter()
            .map(|id| serde_json::json!({"collection": "todos", "id": id, "fields": {"owner": owner}}))
            .collect();
        serde_json::json!({ "writes": writes })
    };
    let bob = HttpClient::new(&url, Some(token("bob", &["user"])));
    for chunk in 0..12 {
        let ids = (0..1000).map(|i| format!("b{:05}", chunk * 1000 + i)).collect();
        bob.sync_json(&write("bob", ids)).await.unwrap();
    }
    let alice_token = token("alice", &["user"]);
    let alice = HttpClient::new(&url, Some(alice_token.clone()));
    alice.sync_json(&write("alice", vec!["a1".into(), "c1".into(), "c2".into()])).await.unwrap();
    let http = reqwest::Client::new();
    let mut after: Option<String> = None;
    let mut seen = Vec::new();
    let mut sealed = 0;
    for _ in 0..20 {
        let mut request = http.get(format!("{url}/v1/collections/todos")).bearer_auth(&alice_token);
        request = match &after {
            Some(after) => request.query(&[("limit", "2"), ("after", after.as_str())]),
            None => request.query(&[("limit", "2")]),
        };
        let body = request.send().await.unwrap().text().await.unwrap();
        assert!(!body.contains("\"b0") && !body.contains("\"b1"), "a page names bob's rows: {body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        for record in page["records"].as_array().unwrap() {
            seen.push(record["id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            None => break,
            Some(next) => {
                assert!(next.starts_with("s1."), "next {next:?} is not a sealed cursor");
                sealed += usize::from(next.starts_with("s1."));
                after = Some(next.to_owned());
            }
        }
    }
    assert_eq!(seen, ["a1", "c1", "c2"]);
    assert!(sealed >= 1, "the 12,000 unreadable rows exceed one page's scan budget");
    // A cursor altered by the client is refused by name.
    let response = http
        .get(format!("{url}/v1/collections/todos"))
        .bearer_auth(&alice_token)
        .query(&[("after", "s1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("cursor"));
    server.stop().await;
}

//! `POST /v1/query` and `weft sql`: SQL and the JSON query model over real HTTP, with the
//! read rules applied before filtering and aggregating.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use weft_client::ClientError;
use weft_client::http::HttpClient;
use weft_core::value::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_see_only_readable_rows_and_page_by_cursor() {
    let server = InProcess::start(auth_config()).await;
    let url = server.url();
    let alice = HttpClient::new(&url, Some(token("alice", &["user"])));
    let bob = HttpClient::new(&url, Some(token("bob", &["user"])));
    let admin = HttpClient::new(&url, Some(token("root", &["admin"])));
    for (client, owner, titles) in
        [(&alice, "alice", vec!["b-milk", "a-eggs", "c-tea"]), (&bob, "bob", vec!["z-secret"])]
    {
        let writes: Vec<serde_json::Value> = titles
            .iter()
            .enumerate()
            .map(|(i, title)| serde_json::json!({"collection": "todos", "id": format!("{owner}-{i}"), "fields": {"owner": owner, "title": title, "n": i}}))
            .collect();
        client.sync_json(&serde_json::json!({ "writes": writes })).await.unwrap();
    }

    let rows = alice.query_sql("SELECT title FROM todos ORDER BY title").await.unwrap()["rows"].clone();
    let titles: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["a-eggs", "b-milk", "c-tea"], "bob's row is invisible to alice");
    assert_eq!(alice.query_sql("SELECT COUNT(*) FROM todos").await.unwrap()["rows"][0]["count"], 3);
    assert_eq!(admin.query_sql("SELECT COUNT(*) FROM todos").await.unwrap()["rows"][0]["count"], 4);
    let grouped = admin.query_sql("SELECT owner, COUNT(*), MAX(n) FROM todos GROUP BY owner").await.unwrap();
    assert_eq!(grouped["rows"][0], serde_json::json!({"owner": "alice", "count": 3, "max_n": 2}));

    // The JSON model, paged by keyset cursor.
    let mut query =
        serde_json::json!({"collection": "todos", "where": {"ge": {"n": 0}}, "order_by": ["-n"], "limit": 2});
    let first = alice.query(&query).await.unwrap();
    assert_eq!(first["rows"].as_array().unwrap().len(), 2);
    query["after"] = first["next"].clone();
    let second = alice.query(&query).await.unwrap();
    assert_eq!(second["rows"][0]["n"], 0);
    assert_eq!(second["rows"][0]["id"], "alice-0");

    let explained = alice.query_sql("EXPLAIN SELECT * FROM todos WHERE owner = 'alice'").await.unwrap();
    assert_eq!(explained["plan"], "full scan (rows filtered by the read rules)");
    match alice.query_sql("SELECT * FROM todos WHERE a = b").await {
        Err(ClientError::Http { status: 400, message }) => {
            assert!(message.contains("comparing two fields (line 1, column 27)"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match alice.query_sql("SELECT * FROM secrets").await {
        Err(ClientError::Http { status: 403, .. }) => {}
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_sql_prints_a_table_or_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::spawn(dir.path(), free_port());
    server.ready().await;
    let http = HttpClient::new(&server.url(), None);
    let writes = serde_json::json!({"writes": [
        {"collection": "todos", "id": "t1", "fields": {"title": "milk", "done": false}},
        {"collection": "todos", "id": "t2", "fields": {"title": "tea", "done": true}},
    ]});
    http.sync_json(&writes).await.unwrap();
    let run = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_weft")).args(args).output().unwrap();
    let url = server.url();
    let output = run(&["sql", "--url", &url, "SELECT title FROM todos WHERE done = false"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(text.starts_with("id | title\n"), "{text}");
    assert!(text.contains("t1 | milk") && text.contains("(1 row)"), "{text}");
    let output = run(&["sql", "--url", &url, "--json", "SELECT * FROM todos ORDER BY title DESC"]);
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["title"], Value::from("tea").to_json());
    let output = run(&["sql", "--url", &url, "SELECT * FROM todos JOIN x ON a = b"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unsupported: JOIN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_queries_over_the_websocket_answer_with_rows_or_an_error_naming_the_request() {
    use weft_core::hlc::NodeId;
    use weft_core::protocol::{ClientMessage, ErrorCode, ServerMessage};

    let server = InProcess::start(auth_config()).await;
    let url = server.url();
    let alice = HttpClient::new(&url, Some(token("alice", &["user"])));
    let writes = serde_json::json!({"writes": [
        {"collection": "todos", "id": "a1", "fields": {"owner": "alice", "n": 2}},
        {"collection": "todos", "id": "a2", "fields": {"owner": "alice", "n": 5}},
    ]});
    alice.sync_json(&writes).await.unwrap();
    HttpClient::new(&url, Some(token("bob", &["user"])))
        .sync_json(
            &serde_json::json!({"writes": [{"collection": "todos", "id": "b1", "fields": {"owner": "bob", "n": 9}}]}),
        )
        .await
        .unwrap();
    let (mut sender, mut receiver, _) =
        weft_client::raw::connect(&url, NodeId(3), Some(token("alice", &["user"]))).await.unwrap();
    sender
        .send(&ClientMessage::Query { request_id: 4, query: "SELECT n FROM todos ORDER BY n DESC".into() })
        .await
        .unwrap();
    match receiver.recv().await.unwrap() {
        Some(ServerMessage::QueryResult { request_id: 4, rows, next: None }) => {
            let ns: Vec<Value> = rows.iter().map(|r| r["n"].clone()).collect();
            assert_eq!(ns, vec![Value::Int(5), Value::Int(2)], "bob's row is not readable");
            assert_eq!(rows[0]["id"], Value::from("a2"));
        }
        other => panic!("{other:?}"),
    }
    let json = r#"{"collection": "todos", "order_by": ["n"], "limit": 1}"#;
    sender.send(&ClientMessage::Query { request_id: 5, query: json.into() }).await.unwrap();
    match receiver.recv().await.unwrap() {
        Some(ServerMessage::QueryResult { request_id: 5, rows, next: Some(next) }) => {
            assert_eq!(rows.len(), 1);
            assert!(next.contains("a1"), "{next}");
        }
        other => panic!("{other:?}"),
    }
    sender
        .send(&ClientMessage::Query { request_id: 6, query: "SELECT * FROM todos WHERE a = b".into() })
        .await
        .unwrap();
    match receiver.recv().await.unwrap() {
        Some(ServerMessage::Error { code: ErrorCode::Malformed, message, fatal: false, .. }) => {
            assert!(message.starts_with("query 6: SQL: unsupported: comparing two fields"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

/// Asks again for up to 2 s until the answer is `expected`; returns the last answer.
async fn settled<F, Fut>(ask: F, expected: &[i64]) -> Vec<i64>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<i64>>,
{
    let mut got = ask().await;
    for _ in 0..100 {
        if got == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        got = ask().await;
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_indexes_are_built_at_start_kept_by_writes_and_chosen_by_the_planner() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config();
    config.data_dir = dir.path().to_path_buf();
    config.indexes.insert("todos".into(), vec![vec!["owner".into()], vec!["owner".into(), "n".into()]]);
    let owners = |http: &HttpClient| {
        let http = http.clone();
        async move {
            let result =
                http.query_sql("SELECT n FROM todos WHERE owner = 'ann' AND n >= 10 ORDER BY n").await.unwrap();
            result["rows"].as_array().unwrap().iter().map(|r| r["n"].as_i64().unwrap()).collect::<Vec<_>>()
        }
    };

    let server = InProcess::start(config.clone()).await;
    let http = HttpClient::new(&server.url(), None);
    let writes: Vec<serde_json::Value> = (0..40)
        .map(|i| serde_json::json!({"collection": "todos", "id": format!("t{i:02}"), "fields": {"owner": if i % 2 == 0 { "ann" } else { "bob" }, "n": i}}))
        .collect();
    http.sync_json(&serde_json::json!({ "writes": writes })).await.unwrap();
    let explained = http.query_sql("EXPLAIN SELECT n FROM todos WHERE owner = 'ann' AND n >= 10").await.unwrap();
    assert_eq!(explained["plan"], "index todos_by_owner_n: 1 equality field(s) + range");
    let expected: Vec<i64> = (10..40).filter(|n| n % 2 == 0).collect();
    // The feed updates the index once each write is durable: poll briefly.
    assert_eq!(settled(|| owners(&http), &expected).await, expected);

    // An update moves a row between index entries.
    let moved = serde_json::json!({"writes": [{"collection": "todos", "id": "t12", "op": "update", "fields": {"owner": "bob"}}]});
    http.sync_json(&moved).await.unwrap();
    let expected: Vec<i64> = expected.into_iter().filter(|n| *n != 12).collect();
    assert_eq!(settled(|| owners(&http), &expected).await, expected);
    server.stop().await;

    // Rebuilt from the store at the next start.
    let server = InProcess::start(config).await;
    assert_eq!(owners(&HttpClient::new(&server.url(), None)).await, expected);
    server.stop().await;
}

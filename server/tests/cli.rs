//! The `weft` command line: help texts, import/export round trips with clear errors,
//! and `wal verify|repair` on a real data directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;

fn weft(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weft")).args(args).env("WEFT_LOG", "warn").output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_command_has_useful_help() {
    for (args, expect) in [
        (vec!["--help"], "serve"),
        (vec!["serve", "--help"], "--data-dir"),
        (vec!["wal", "verify", "--help"], "without changing anything"),
        (vec!["import", "--help"], "JSON lines"),
        (vec!["export", "--help"], "--collection"),
        (vec!["bench", "write", "--help"], "--inflight"),
        (vec!["bench", "sync", "--help"], "--records"),
    ] {
        let output = weft(&args);
        assert!(output.status.success(), "{args:?}");
        assert!(text(&output.stdout).contains(expect), "{args:?}: {}", text(&output.stdout));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_then_export_round_trips_and_wal_verify_and_repair_work_on_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut server = Process::spawn(&data, port);
    server.ready().await;
    let url = server.url();

    let input = dir.path().join("in.jsonl");
    let mut lines = String::new();
    for i in 0..1_234 {
        lines.push_str(
            &serde_json::json!({"id": format!("p{i:05}"), "name": format!("item {i}"), "qty": i}).to_string(),
        );
        lines.push('\n');
    }
    std::fs::write(&input, &lines).unwrap();
    let output = weft(&["import", "--url", &url, "--collection", "products", input.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("imported 1234 records"), "{}", text(&output.stderr));

    let exported = dir.path().join("out.jsonl");
    let output = weft(&["export", "--url", &url, "--collection", "products", exported.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let parse = |text: &str| {
        let mut rows: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        rows.sort_by_key(|r| r["id"].as_str().unwrap().to_owned());
        rows
    };
    assert_eq!(parse(&std::fs::read_to_string(&exported).unwrap()), parse(&lines));

    // A broken line is reported with its number; nothing after it is half-imported.
    std::fs::write(&input, "{\"id\": \"ok\"}\n{\"id\": \"fine\"}\n{not json\n").unwrap();
    let output = weft(&["import", "--url", &url, "--collection", "products", input.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("line 3"), "{}", text(&output.stderr));
    std::fs::write(&input, "{\"name\": \"no id\"}\n").unwrap();
    let output = weft(&["import", "--url", &url, "--collection", "products", input.to_str().unwrap()]);
    assert!(text(&output.stderr).contains("line 1: missing string `id`"), "{}", text(&output.stderr));

    assert!(server.terminate().success());
    let data_arg = data.to_str().unwrap();
    let output = weft(&["wal", "verify", "--data-dir", data_arg]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("no damage found"), "{}", text(&output.stdout));

    // Damage a record in the middle of the log: verify names segment and offset,
    // repair keeps the valid prefix and moves the rest aside.
    let segment = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 3;
    bytes[middle] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    let output = weft(&["wal", "verify", "--data-dir", data_arg]);
    assert!(!output.status.success());
    let error = text(&output.stderr);
    assert!(error.contains("segment") || error.contains(".wal"), "{error}");
    let output = weft(&["wal", "repair", "--data-dir", data_arg]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("moved aside"), "{}", text(&output.stdout));
    assert!(weft(&["wal", "verify", "--data-dir", data_arg]).status.success());

    // Everything was checkpointed into the store at shutdown: nothing is lost.
    let server = Process::spawn(&data, port);
    server.ready().await;
    let http = weft_client::http::HttpClient::new(&server.url(), None);
    assert_eq!(http.get_record("products", "p01000").await.unwrap().unwrap()["qty"], 1000);
}

/// A failing command prints one line naming the error — no stack trace, even with
/// `RUST_BACKTRACE=1` — and exits with a failure status.
#[test]
fn a_failing_command_prints_one_line_without_a_backtrace() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["sql", "--url", &format!("http://127.0.0.1:{port}"), "SELECT * FROM todos"])
        .env("RUST_BACKTRACE", "1")
        .env("WEFT_LOG", "warn")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("backtrace") && !stderr.contains("Stack"), "{stderr}");
}

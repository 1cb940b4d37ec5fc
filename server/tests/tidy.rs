//! Layout rules of the server that review alone would miss: the transports (`ws/`,
//! `http/`) hold no authorization code — every rule is applied by the protocol session
//! (`session/`) — the session does no IO of its own, and the server's top-level modules
//! import each other without cycles.

#![allow(clippy::expect_used, reason = "a test: unreadable sources should fail it loudly")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The code of a file, line by line, without `//` comments (doc comments may name
/// anything).
fn code_lines(file: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(file).expect("readable source file");
    text.lines()
        .enumerate()
        .map(|(number, line)| (number + 1, line.split("//").next().unwrap_or_default().to_owned()))
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `word` occurs in `code` as a whole identifier.
fn has_word(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// Identifiers of the rules and of the read view: a transport naming one is deciding who
/// may see or write what, which is the session's job.
const TRANSPORT_FORBIDDEN_WORDS: [&str; 5] = ["Access", "Operation", "View", "Visibility", "Rules"];
/// Paths and calls that reach the rules or apply a read view directly.
const TRANSPORT_FORBIDDEN_TEXT: [&str; 7] =
    ["auth::rules", "sync::view", ".rules", ".access(", ".allows(", ".classify(", "check_and_append"];

#[test]
fn transports_hold_no_authorization_code() {
    let mut files = Vec::new();
    for transport in ["ws", "http"] {
        sources(&src().join(transport), &mut files);
    }
    assert!(files.len() >= 8, "found only {} transport files", files.len());
    let mut problems = Vec::new();
    for file in &files {
        for (number, code) in code_lines(file) {
            let words = TRANSPORT_FORBIDDEN_WORDS.iter().filter(|word| has_word(&code, word));
            let texts = TRANSPORT_FORBIDDEN_TEXT.iter().filter(|text| code.contains(*text));
            for found in words.chain(texts) {
                problems.push(format!("{}:{number}: `{found}`", file.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "authorization belongs to the protocol session (server/src/session), not to a transport:\n{}",
        problems.join("\n")
    );
}

/// What the session must not do: it is driven synchronously by the transports and by
/// the deterministic simulation, which own every thread, timer, socket and clock.
const SESSION_FORBIDDEN: [&str; 9] =
    ["tokio", "std::thread", "spawn(", "sleep(", "SystemTime", "Instant", "SystemClock", "std::net", "std::fs"];

#[test]
fn the_session_starts_no_threads_and_reads_no_clock_of_its_own() {
    let mut files = Vec::new();
    sources(&src().join("session"), &mut files);
    assert!(files.len() >= 3, "found only {} session files", files.len());
    let mut problems = Vec::new();
    for file in &files {
        for (number, code) in code_lines(file) {
            for word in SESSION_FORBIDDEN {
                if code.contains(word) {
                    problems.push(format!("{}:{number}: `{word}`", file.display()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "the session must stay sans-IO:\n{}", problems.join("\n"));
}

/// The top-level module a source file belongs to (`state.rs` → `state`, `ws/writer.rs`
/// → `ws`); `None` for the crate root.
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src()).expect("a file under src");
    let first = relative.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// The top-level modules `code` names through `crate::` paths, including grouped ones
/// (`use crate::{a::X, b::Y}`).
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].chars().next_back().is_some_and(is_ident) {
            continue; // `weft_crate::` or similar
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: the first identifier after `{` and after
            // each comma at depth 0.
            let mut depth = 0;
            let mut expect_name = true;
            let mut name = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => expect_name = true,
                    c if expect_name && is_ident(c) => name.push(c),
                    _ if expect_name && !name.is_empty() => {
                        found.insert(std::mem::take(&mut name));
                        expect_name = false;
                    }
                    _ => {}
                }
            }
            if !name.is_empty() {
                found.insert(name);
            }
        } else {
            let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// A cycle in `graph`, as the list of modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn server_modules_import_each_other_without_cycles() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(file) else { continue };
        // Joined, so that `use` statements over several lines are read whole.
        let code: String = code_lines(file).into_iter().map(|(_, line)| line + "\n").collect();
        let edges = graph.entry(module.clone()).or_default();
        edges.extend(crate_references(&code).into_iter().filter(|target| *target != module));
    }
    assert!(graph.len() >= 10, "found only {} modules", graph.len());
    assert!(graph.get("ws").is_some_and(|edges| !edges.is_empty()), "the parser found no imports of ws/");
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between server modules: {}\n(modules depend one way: transports → session → sync → \
             state → leaves)",
            cycle.join(" → ")
        );
    }
}

#[test]
fn the_reference_parser_reads_grouped_and_nested_imports() {
    let found = crate_references("use crate::{auth::{Principal, rules::X}, state::AppState};\nlet x = crate::hub::y;");
    assert_eq!(found, BTreeSet::from(["auth".to_owned(), "state".to_owned(), "hub".to_owned()]));
    assert!(has_word("let v: View = x;", "View"));
    assert!(!has_word("let v: ReadView = x;", "View"));
}

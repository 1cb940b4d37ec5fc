//! Code-layout rules that review alone would miss: every source file opens with a `//!`
//! comment saying what it owns, and no source file grows past the size at which it
//! should be split.

#![allow(clippy::expect_used, reason = "a test: unreadable sources should fail it loudly")]

use std::path::{Path, PathBuf};

const LINES_MAX: usize = 800;

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

#[test]
fn every_source_file_says_what_it_owns_and_stays_small() {
    // Every crate of the workspace, not only this one: the rules are the workspace's.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in ["core", "storage", "client", "server"] {
        for dir in ["src", "tests", "benches", "examples"] {
            let root = workspace.join(krate).join(dir);
            if root.is_dir() {
                sources(&root, &mut files);
            }
        }
    }
    assert!(files.len() > 60, "found only {} files under {}", files.len(), workspace.display());
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source file");
        if !text.starts_with("//!") {
            problems.push(format!("{}: does not open with a //! comment", file.display()));
        }
        let lines = text.lines().count();
        if lines > LINES_MAX {
            problems.push(format!("{}: {lines} lines (split files past {LINES_MAX})", file.display()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Words that mean a source file does IO or starts threads. The core runs in browsers,
/// in phones and under the deterministic simulation, where the host owns every thread,
/// file, socket and clock.
const CORE_FORBIDDEN: [&str; 8] =
    ["std::thread", "std::fs", "std::net", "std::process", "tokio", "std::io::Write", "std::io::Read", "spawn("];

#[test]
fn the_core_starts_no_threads_and_opens_no_files_or_sockets() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    assert!(files.len() > 30, "found only {} core source files", files.len());
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source file");
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in CORE_FORBIDDEN {
                if code.contains(word) {
                    problems.push(format!("{}:{}: `{word}` in weft-core", file.display(), number + 1));
                }
            }
        }
    }
    assert!(problems.is_empty(), "weft-core must do no IO and start no threads:\n{}", problems.join("\n"));
}

/// The project's documentation stands on its own: no file cites a document outside the
/// repository (a design note, a shared folder) that a reader of the repository cannot open.
#[test]
fn no_file_points_to_a_document_outside_the_repository() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["core", "storage", "client", "server", "wasm", "docs", "scripts", "client-js/src", "examples/todo/src"]
    {
        let root = workspace.join(dir);
        if root.is_dir() {
            texts(&root, &mut files);
        }
    }
    files.push(workspace.join("README.md"));
    let outside = ["DESIGN §", "DESIGN.md", "../shared"];
    let mut problems = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        for (number, line) in text.lines().enumerate() {
            for word in outside {
                // This test names the words it looks for.
                if line.contains(word) && !file.ends_with("tidy.rs") {
                    problems.push(format!("{}:{}: cites `{word}`", file.display(), number + 1));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Source and documentation files under `dir` (not build output or dependencies).
fn texts(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() {
            if !matches!(name, "node_modules" | "dist" | "target" | "pkg") {
                texts(&path, out);
            }
        } else if ["rs", "md", "ts", "tsx", "sh", "mjs", "toml"].iter().any(|e| name.ends_with(&format!(".{e}"))) {
            out.push(path);
        }
    }
}

//! Static files from `static_dir` (the example app) at every path no API route takes.
//! Paths are confined to the directory: `..`, hidden files and symlinks out of it are
//! refused.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The file under `root` a request path names, if it is a plain path inside it.
pub fn resolve(root: &Path, request_path: &str) -> Option<PathBuf> {
    let relative = request_path.trim_start_matches('/');
    let relative = if relative.is_empty() || relative.ends_with('/') {
        format!("{relative}index.html")
    } else {
        relative.to_owned()
    };
    let mut path = root.to_path_buf();
    for component in Path::new(&relative).components() {
        match component {
            Component::Normal(part) if !part.to_string_lossy().starts_with('.') => path.push(part),
            _ => return None,
        }
    }
    // Symlinks must not lead out of the directory, nor to a hidden file inside it: the
    // rules apply to where a path really leads, not only to how it is spelled.
    let root = root.canonicalize().ok()?;
    let resolved = path.canonicalize().ok()?;
    let inside = resolved.strip_prefix(&root).ok()?;
    let hidden = inside.components().any(|part| part.as_os_str().to_string_lossy().starts_with('.'));
    (!hidden).then_some(resolved)
}

/// The fallback handler.
pub async fn serve(State(state): State<Arc<AppState>>, uri: Uri) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "not found\n").into_response();
    let Some(root) = &state.config.static_dir else { return not_found() };
    let Some(path) = resolve(root, uri.path()) else { return not_found() };
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type(&path))], bytes).into_response(),
        Err(_) => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<p>hi</p>").unwrap();
        std::fs::write(dir.path().join(".secret"), "no").unwrap();
        assert!(resolve(dir.path(), "/").unwrap().ends_with("index.html"));
        assert!(resolve(dir.path(), "/index.html").is_some());
        assert!(resolve(dir.path(), "/../etc/passwd").is_none());
        assert!(resolve(dir.path(), "/.secret").is_none());
        assert!(resolve(dir.path(), "/missing.js").is_none());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_inside_the_directory_cannot_lead_to_a_hidden_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), "SECRET=1").unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git").join("config"), "[core]").unwrap();
        std::os::unix::fs::symlink(dir.path().join(".env"), dir.path().join("env.txt")).unwrap();
        std::os::unix::fs::symlink(dir.path().join(".git"), dir.path().join("repo")).unwrap();
        assert!(resolve(dir.path(), "/env.txt").is_none());
        assert!(resolve(dir.path(), "/repo/config").is_none());
    }
}

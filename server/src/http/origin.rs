//! Which web pages may call this server: the `Origin` check in front of every `/v1` route
//! (the WebSocket upgrade included).
//!
//! Browsers send `Origin` with every WebSocket upgrade and every cross-origin request,
//! and will send a `text/plain` POST to any site without asking first. Without a check,
//! any page a developer visits could write to, or query, their `--dev` server (which has
//! no auth), and a DNS-rebinding page could do the same through a name that resolves to
//! 127.0.0.1. The rules:
//!
//! - **Dev mode**: an `Origin` must be a loopback origin (`http(s)://localhost`,
//!   `127.0.0.1` or `[::1]`, any port), and the `Host` must be a loopback name too
//!   (unless `--dev-allow-remote`). The example app, a Vite dev server on another port,
//!   and tools like curl (no `Origin`) work; other pages do not.
//! - **Otherwise**: an `Origin` must be the server's own (same host and port as `Host`)
//!   or listed in `allowed_origins`; with no list, any origin is allowed — every request
//!   needs a bearer token there, which a browser never attaches on its own.
//!
//! Requests without `Origin` (native clients, curl) are not browser requests and pass.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use weft_core::protocol::ErrorCode;

use super::error_response;
use crate::error::OpError;
use crate::state::AppState;

/// Whether `host` (a `Host` header value or an origin's host, with or without a port)
/// names this machine's loopback interface.
fn is_loopback_host(host_and_port: &str) -> bool {
    let host = match host_and_port.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host_and_port.rsplit_once(':').map_or(host_and_port, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost") || host == "::1" || host == "127.0.0.1"
}

/// The `host[:port]` of an origin `scheme://host[:port]`, for http(s) origins only.
fn origin_authority(origin: &str) -> Option<&str> {
    let rest = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"))?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// Why a request from `origin` (to `host`) is refused, if it is.
pub fn refusal(state: &AppState, origin: Option<&str>, host: Option<&str>) -> Option<String> {
    let config = &state.config;
    if config.dev && !config.dev_allow_remote && !host.is_some_and(is_loopback_host) {
        return Some(format!(
            "dev mode answers only requests addressed to a loopback name, not Host {:?}",
            host.unwrap_or_default()
        ));
    }
    let origin = origin?;
    if config.allowed_origins.iter().any(|allowed| allowed == origin) {
        return None;
    }
    let authority = origin_authority(origin);
    if config.dev {
        if authority.is_some_and(is_loopback_host) {
            return None;
        }
        return Some(format!(
            "dev mode accepts pages from loopback origins only, not {origin:?} (list it in allowed_origins to allow it)"
        ));
    }
    if authority.is_some() && authority == host {
        return None;
    }
    if config.allowed_origins.is_empty() {
        return None;
    }
    Some(format!("origin {origin:?} is not in allowed_origins"))
}

/// The middleware: refuses with `Forbidden`, naming the origin and the rule.
pub async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let refused = {
        let headers = request.headers();
        let origin = headers.get(header::ORIGIN).map(|value| value.to_str().unwrap_or("(not ASCII)"));
        let host = headers.get(header::HOST).and_then(|value| value.to_str().ok());
        refusal(&state, origin, host)
    };
    if let Some(reason) = refused {
        return error_response(&state, &OpError::new(ErrorCode::Forbidden, reason));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_with_and_without_ports() {
        for host in ["localhost", "localhost:5173", "127.0.0.1:7070", "[::1]:7070", "[::1]", "LOCALHOST"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["evil.example", "evil.example:7070", "127.0.0.2:80", "localhost.evil.example", "10.0.0.1"] {
            assert!(!is_loopback_host(host), "{host}");
        }
        assert_eq!(origin_authority("http://localhost:5173"), Some("localhost:5173"));
        assert_eq!(origin_authority("null"), None);
        assert_eq!(origin_authority("file://"), None);
    }
}

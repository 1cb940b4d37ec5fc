//! Who is calling and what they may do: token verification ([`jwt`]) and the
//! per-collection rules ([`rules`]).

pub mod jwt;
pub mod rules;

use std::collections::BTreeMap;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// The token's `sub` (empty in dev mode).
    pub sub: String,
    /// Roles from the configured roles claim.
    pub roles: Vec<String>,
    /// Every claim of the token, for rule conditions such as `team == auth.team`.
    pub claims: BTreeMap<String, serde_json::Value>,
    /// When the token stops being valid (its `exp` plus the configured leeway), in
    /// seconds since the Unix epoch; `None` in dev mode. A WebSocket session ends then.
    pub expires_at_s: Option<u64>,
}

impl Principal {
    /// The caller in dev mode, where auth is off.
    pub fn dev() -> Principal {
        Principal { sub: "dev".to_owned(), roles: vec!["dev".to_owned()], claims: BTreeMap::new(), expires_at_s: None }
    }
}

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
}

impl Principal {
    /// The caller in dev mode, where auth is off.
    pub fn dev() -> Principal {
        Principal { sub: "dev".to_owned(), roles: vec!["dev".to_owned()], claims: BTreeMap::new() }
    }
}

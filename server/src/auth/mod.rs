//! Who is calling and what they may do: token verification ([`jwt`]) and the
//! per-collection rules ([`rules`]).

pub mod jwt;
pub mod rules;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

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

/// How tokens are verified (`[auth]` in the config file). Exactly the keys given are
/// accepted. Defined here, next to the verifier it configures, so that `auth` needs
/// nothing from `config`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Shared secret for HS256 tokens.
    pub hs256_secret: Option<String>,
    /// PEM file with the RSA public key for RS256 tokens.
    pub rs256_public_key: Option<PathBuf>,
    /// PEM file with the Ed25519 public key for EdDSA tokens.
    pub eddsa_public_key: Option<PathBuf>,
    /// A JWKS document on disk.
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL, fetched at start-up and refreshed when a token names an unknown key.
    pub jwks_url: Option<String>,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Required `aud`, if set.
    pub audience: Option<String>,
    /// The claim holding the user's roles (a string or a list of strings).
    pub roles_claim: Option<String>,
    /// Allowed clock skew when checking `exp` and `nbf`, in seconds.
    pub leeway_seconds: Option<u64>,
}

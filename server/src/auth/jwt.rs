//! JWT verification (HS256, RS256, EdDSA) with `exp` required, issuer and audience
//! checks, and keys from the config, a JWKS file or a JWKS URL.
//!
//! Each failure maps to its own protocol error code so that clients can tell "log in
//! again" (expired) from "this token is not for us" (issuer/audience) from "forged or
//! garbled" (signature).

use std::collections::BTreeMap;
use std::sync::RwLock;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use weft_core::protocol::ErrorCode;

use super::AuthConfig;
use super::Principal;

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token where one is required.
    #[error("a token is required (WebSocket hello or `Authorization: Bearer`)")]
    Missing,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// Not a token we can verify: bad signature, garbled, unknown key, missing `exp`.
    #[error("token invalid: {0}")]
    Invalid(String),
    /// A valid token for another service.
    #[error("token rejected: {0}")]
    Rejected(String),
}

impl AuthError {
    /// The protocol error code a client sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Missing => ErrorCode::Unauthenticated,
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::Invalid(_) => ErrorCode::TokenInvalid,
            AuthError::Rejected(_) => ErrorCode::TokenRejected,
        }
    }
}

/// Why the key material in the config cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key material does not parse.
    #[error("{what}: {reason}")]
    Parse {
        /// Which key.
        what: String,
        /// Why.
        reason: String,
    },
    /// The JWKS URL could not be fetched.
    #[error("fetching JWKS from {url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

struct Key {
    algorithm: Algorithm,
    kid: Option<String>,
    key: DecodingKey,
}

/// Verifies tokens against the configured keys.
pub struct Verifier {
    static_keys: Vec<Key>,
    jwks_keys: RwLock<Vec<Key>>,
    config: AuthConfig,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("static_keys", &self.static_keys.len()).finish_non_exhaustive()
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read { path: path.to_path_buf(), source })
}

fn jwks_keys(set: &JwkSet) -> Vec<Key> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let key = DecodingKey::from_jwk(jwk).ok()?;
            let algorithm = match jwk.common.key_algorithm {
                Some(algorithm) => Algorithm::from_str_lossy(&algorithm.to_string())?,
                None => match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                    _ => return None,
                },
            };
            Some(Key { algorithm, kid: jwk.common.key_id.clone(), key })
        })
        .collect()
}

trait AlgorithmName {
    fn from_str_lossy(name: &str) -> Option<Algorithm>;
}

impl AlgorithmName for Algorithm {
    fn from_str_lossy(name: &str) -> Option<Algorithm> {
        name.parse().ok()
    }
}

impl Verifier {
    /// Loads the keys named in `config` (a JWKS URL is fetched by [`Verifier::refresh`]).
    pub fn new(config: &AuthConfig) -> Result<Verifier, KeyError> {
        let mut keys = Vec::new();
        if let Some(secret) = &config.hs256_secret {
            keys.push(Key { algorithm: Algorithm::HS256, kid: None, key: DecodingKey::from_secret(secret.as_bytes()) });
        }
        if let Some(path) = &config.rs256_public_key {
            let key = DecodingKey::from_rsa_pem(&read(path)?)
                .map_err(|e| KeyError::Parse { what: path.display().to_string(), reason: e.to_string() })?;
            keys.push(Key { algorithm: Algorithm::RS256, kid: None, key });
        }
        if let Some(path) = &config.eddsa_public_key {
            let key = DecodingKey::from_ed_pem(&read(path)?)
                .map_err(|e| KeyError::Parse { what: path.display().to_string(), reason: e.to_string() })?;
            keys.push(Key { algorithm: Algorithm::EdDSA, kid: None, key });
        }
        if let Some(path) = &config.jwks_file {
            let set: JwkSet = serde_json::from_slice(&read(path)?)
                .map_err(|e| KeyError::Parse { what: path.display().to_string(), reason: e.to_string() })?;
            keys.extend(jwks_keys(&set));
        }
        Ok(Verifier { static_keys: keys, jwks_keys: RwLock::new(Vec::new()), config: config.clone() })
    }

    /// Fetches the JWKS URL, if configured, replacing the keys fetched before.
    pub async fn refresh(&self) -> Result<(), KeyError> {
        let Some(url) = &self.config.jwks_url else { return Ok(()) };
        let fetch = |reason: String| KeyError::Fetch { url: url.clone(), reason };
        let response = reqwest::get(url).await.map_err(|e| fetch(e.to_string()))?;
        let set: JwkSet = response
            .error_for_status()
            .map_err(|e| fetch(e.to_string()))?
            .json()
            .await
            .map_err(|e| fetch(e.to_string()))?;
        *self.jwks_keys.write().unwrap_or_else(|p| p.into_inner()) = jwks_keys(&set);
        Ok(())
    }

    /// Whether keys come from a JWKS URL (worth a refresh when a token names an unknown key).
    pub fn has_jwks_url(&self) -> bool {
        self.config.jwks_url.is_some()
    }

    /// Verifies `token`: signature, `exp` (required), `nbf`, issuer and audience.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let jwks = self.jwks_keys.read().unwrap_or_else(|p| p.into_inner());
        let candidates: Vec<&Key> = self
            .static_keys
            .iter()
            .chain(jwks.iter())
            .filter(|key| key.algorithm == header.alg)
            .filter(|key| match (&key.kid, &header.kid) {
                (Some(ours), Some(theirs)) => ours == theirs,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(AuthError::Invalid(format!(
                "no configured key for algorithm {:?}{}",
                header.alg,
                header.kid.as_deref().map(|kid| format!(" and key id {kid:?}")).unwrap_or_default()
            )));
        }
        let mut validation = Validation::new(header.alg);
        // A configured issuer or audience is required in every token, not only checked
        // when present; `sub` names the caller that rules compare rows with.
        let mut required = vec!["exp", "sub"];
        required.extend(self.config.issuer.as_ref().map(|_| "iss"));
        required.extend(self.config.audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = self.config.leeway_seconds.unwrap_or(30);
        match &self.config.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.config.issuer {
            validation.set_issuer(&[issuer]);
        }
        let mut last = AuthError::Invalid("no key verified the signature".to_owned());
        for key in candidates {
            match jsonwebtoken::decode::<BTreeMap<String, serde_json::Value>>(token, &key.key, &validation) {
                Ok(data) => return self.principal(data.claims),
                Err(error) => {
                    last = match error.kind() {
                        ErrorKind::ExpiredSignature => return Err(AuthError::Expired),
                        ErrorKind::InvalidIssuer => return Err(AuthError::Rejected("wrong issuer".to_owned())),
                        ErrorKind::InvalidAudience => return Err(AuthError::Rejected("wrong audience".to_owned())),
                        ErrorKind::MissingRequiredClaim(claim) => {
                            return Err(AuthError::Invalid(format!("the {claim} claim is required")));
                        }
                        ErrorKind::InvalidSignature => AuthError::Invalid("signature does not verify".to_owned()),
                        ErrorKind::Json(reason) => {
                            return Err(AuthError::Invalid(format!(
                                "a registered claim (sub, iss, aud, exp, nbf) has the wrong type: {reason}"
                            )));
                        }
                        _ => AuthError::Invalid(error.to_string()),
                    }
                }
            }
        }
        Err(last)
    }

    /// The caller named by verified claims. The library has checked the signature and
    /// the registered claims it knows; their types are checked here again, by name, so
    /// that no claim of the wrong type (`iss: 123`, `sub: 7`) is ever read as absent.
    fn principal(&self, claims: BTreeMap<String, serde_json::Value>) -> Result<Principal, AuthError> {
        let sub = match claims.get("sub") {
            Some(serde_json::Value::String(sub)) if !sub.is_empty() => sub.clone(),
            Some(serde_json::Value::String(_)) => return Err(AuthError::Invalid("the sub claim is empty".to_owned())),
            Some(_) => return Err(AuthError::Invalid("the sub claim must be a string".to_owned())),
            None => return Err(AuthError::Invalid("the sub claim is required".to_owned())),
        };
        if let Some(issuer) = &self.config.issuer {
            match claims.get("iss") {
                Some(serde_json::Value::String(iss)) if iss == issuer => {}
                Some(serde_json::Value::String(_)) => return Err(AuthError::Rejected("wrong issuer".to_owned())),
                Some(_) => return Err(AuthError::Invalid("the iss claim must be a string".to_owned())),
                None => return Err(AuthError::Invalid("the iss claim is required".to_owned())),
            }
        }
        if let Some(audience) = &self.config.audience {
            let ours = |value: &serde_json::Value| value.as_str() == Some(audience.as_str());
            let listed = match claims.get("aud") {
                None => return Err(AuthError::Invalid("the aud claim is required".to_owned())),
                Some(aud @ serde_json::Value::String(_)) => ours(aud),
                Some(serde_json::Value::Array(items)) if items.iter().all(serde_json::Value::is_string) => {
                    items.iter().any(ours)
                }
                Some(_) => {
                    return Err(AuthError::Invalid("the aud claim must be a string or a list of strings".to_owned()));
                }
            };
            if !listed {
                return Err(AuthError::Rejected("wrong audience".to_owned()));
            }
        }
        let leeway = self.config.leeway_seconds.unwrap_or(30);
        let expires_at_s = match claims.get("exp").and_then(serde_json::Value::as_f64) {
            Some(exp) if exp.is_finite() && exp >= 0.0 => Some((exp as u64).saturating_add(leeway)),
            _ => return Err(AuthError::Invalid("the exp claim must be a number of seconds".to_owned())),
        };
        let roles_claim = self.config.roles_claim.as_deref().unwrap_or("roles");
        let roles = match claims.get(roles_claim) {
            Some(serde_json::Value::String(role)) => vec![role.clone()],
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(|v| v.as_str()).map(str::to_owned).collect()
            }
            _ => Vec::new(),
        };
        Ok(Principal { sub, roles, claims, expires_at_s })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    fn config() -> AuthConfig {
        AuthConfig {
            hs256_secret: Some("secret".into()),
            issuer: Some("weft-test".into()),
            audience: Some("weft".into()),
            ..AuthConfig::default()
        }
    }

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    #[test]
    fn each_failure_has_its_own_code() {
        let verifier = Verifier::new(&config()).unwrap();
        let good = serde_json::json!({"sub": "alice", "exp": now() + 600, "iss": "weft-test", "aud": "weft", "roles": ["user"]});
        let principal = verifier.verify(&token("secret", good.clone())).unwrap();
        assert_eq!(principal.sub, "alice");
        assert_eq!(principal.roles, vec!["user".to_owned()]);

        let mut expired = good.clone();
        expired["exp"] = (now() - 3600).into();
        assert_eq!(verifier.verify(&token("secret", expired)).unwrap_err().code(), ErrorCode::TokenExpired);
        assert_eq!(verifier.verify(&token("other", good.clone())).unwrap_err().code(), ErrorCode::TokenInvalid);
        let mut audience = good.clone();
        audience["aud"] = "someone-else".into();
        assert_eq!(verifier.verify(&token("secret", audience)).unwrap_err().code(), ErrorCode::TokenRejected);
        let mut issuer = good.clone();
        issuer["iss"] = "mallory".into();
        assert_eq!(verifier.verify(&token("secret", issuer)).unwrap_err().code(), ErrorCode::TokenRejected);
        let mut no_exp = good;
        no_exp.as_object_mut().unwrap().remove("exp");
        let error = verifier.verify(&token("secret", no_exp)).unwrap_err();
        assert_eq!(error.code(), ErrorCode::TokenInvalid);
        assert!(error.to_string().contains("exp"), "{error}");
        assert_eq!(verifier.verify("not.a.token").unwrap_err().code(), ErrorCode::TokenInvalid);
    }

    /// With an issuer and an audience configured, each must be present and a string (or
    /// a list of strings, for `aud`); `sub` must be a non-empty string. Each refusal
    /// names the claim.
    #[test]
    fn configured_claims_are_required_and_sub_must_name_someone() {
        let verifier = Verifier::new(&config()).unwrap();
        let good = serde_json::json!({"sub": "alice", "exp": now() + 600, "iss": "weft-test", "aud": ["x", "weft"]});
        assert!(verifier.verify(&token("secret", good.clone())).is_ok());
        let cases: [(&str, Option<serde_json::Value>, &str); 9] = [
            ("iss", None, "iss"),
            ("iss", Some(123.into()), "iss"),
            ("aud", None, "aud"),
            ("aud", Some(7.into()), "aud"),
            ("aud", Some(serde_json::json!(["other"])), "audience"),
            ("sub", None, "sub"),
            ("sub", Some(42.into()), "sub"),
            ("sub", Some("".into()), "sub"),
            ("sub", Some(serde_json::json!({"id": "alice"})), "claim"),
        ];
        for (claim, value, named) in cases {
            let mut claims = good.clone();
            match &value {
                Some(value) => claims[claim] = value.clone(),
                None => drop(claims.as_object_mut().unwrap().remove(claim)),
            }
            let error = verifier.verify(&token("secret", claims)).unwrap_err();
            assert!(
                matches!(error.code(), ErrorCode::TokenInvalid | ErrorCode::TokenRejected),
                "{claim} = {value:?}: {error}"
            );
            assert!(error.to_string().contains(named), "{claim} = {value:?}: {error} should name {named}");
        }
        let principal = verifier.verify(&token("secret", good)).unwrap();
        assert!(principal.expires_at_s.is_some_and(|at| at >= now() + 600));
    }
}

//! Token keys other than a shared secret: RS256 and EdDSA public keys in PEM files, a
//! JWKS file, and a JWKS URL served over real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use weft_client::ClientError;
use weft_core::hlc::NodeId;
use weft_core::protocol::ErrorCode;
use weft_server::config::Config;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn signed(algorithm: Algorithm, key: &EncodingKey, kid: Option<&str>) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    let claims = serde_json::json!({"sub": "alice", "exp": now_s() + 600});
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn ed_key() -> EncodingKey {
    EncodingKey::from_ed_pem(&std::fs::read(fixture("ed25519-private.pem")).unwrap()).unwrap()
}

async fn accepted(url: &str, token: String) -> Result<(), ErrorCode> {
    match weft_client::raw::connect(url, NodeId(1), Some(token)).await {
        Ok(_) => Ok(()),
        Err(ClientError::Refused { code, .. }) => Err(code),
        Err(other) => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_eddsa_public_keys_from_pem_files() {
    let mut config = Config::default();
    config.auth.rs256_public_key = Some(fixture("rsa-public.pem"));
    config.auth.eddsa_public_key = Some(fixture("ed25519-public.pem"));
    let server = InProcess::start(config).await;
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa-private.pem")).unwrap()).unwrap();
    accepted(&server.url(), signed(Algorithm::RS256, &rsa, None)).await.unwrap();
    accepted(&server.url(), signed(Algorithm::EdDSA, &ed_key(), None)).await.unwrap();
    // No HS256 key is configured: such tokens are invalid here.
    let hs = signed(Algorithm::HS256, &EncodingKey::from_secret(b"whatever"), None);
    assert_eq!(accepted(&server.url(), hs).await, Err(ErrorCode::TokenInvalid));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_a_jwks_file_and_a_jwks_url() {
    let mut config = Config::default();
    config.auth.jwks_file = Some(fixture("jwks.json"));
    let server = InProcess::start(config).await;
    accepted(&server.url(), signed(Algorithm::EdDSA, &ed_key(), Some("ed-1"))).await.unwrap();
    assert_eq!(
        accepted(&server.url(), signed(Algorithm::EdDSA, &ed_key(), Some("unknown-kid"))).await,
        Err(ErrorCode::TokenInvalid)
    );
    server.stop().await;

    // A JWKS endpoint on a real socket.
    let jwks = std::fs::read_to_string(fixture("jwks.json")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/.well-known/jwks.json", axum::routing::get(move || async move { jwks }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut config = Config::default();
    config.auth.jwks_url = Some(format!("http://{address}/.well-known/jwks.json"));
    let server = InProcess::start(config).await;
    accepted(&server.url(), signed(Algorithm::EdDSA, &ed_key(), Some("ed-1"))).await.unwrap();
    server.stop().await;
}

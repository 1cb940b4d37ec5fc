//! The stateless HTTP endpoints: `POST /v1/sync` (MessagePack envelope or JSON) and the
//! record reads, for tools (`weft import`/`export`) and hosts without WebSockets.

use weft_core::codec::DecodeLimits;
use weft_core::protocol::{ClientMessage, ServerMessage, decode_envelope, encode_envelope};

use crate::ClientError;

/// A client of one server's HTTP API.
#[derive(Clone, Debug)]
pub struct HttpClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

fn transport(error: reqwest::Error) -> ClientError {
    // reqwest's message alone ("error sending request") hides the cause; add the chain.
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    ClientError::Http { status: error.status().map_or(0, |s| s.as_u16()), message }
}

async fn check(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|json| json.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or(text);
    Err(ClientError::Http { status: status.as_u16(), message })
}

impl HttpClient {
    /// A client of the server at `base` (`http://host:port`; `ws://` is accepted too).
    pub fn new(base: &str, token: Option<String>) -> HttpClient {
        let base = base.trim_end_matches('/');
        let base = if let Some(rest) = base.strip_prefix("ws://") {
            format!("http://{rest}")
        } else if let Some(rest) = base.strip_prefix("wss://") {
            format!("https://{rest}")
        } else {
            base.to_owned()
        };
        HttpClient { base, token, http: reqwest::Client::new() }
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.post(format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.get(format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends protocol messages in one request; returns the replies and the bytes of the
    /// request and response bodies.
    pub async fn sync(&self, messages: &[ClientMessage]) -> Result<(Vec<ServerMessage>, usize, usize), ClientError> {
        let frames: Vec<Vec<u8>> = messages.iter().map(ClientMessage::encode).collect();
        let body = encode_envelope(&frames);
        let sent = body.len();
        let response = self
            .post("/v1/sync")
            .header("content-type", "application/msgpack")
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let bytes = check(response).await?.bytes().await.map_err(transport)?;
        let limits = DecodeLimits { frame_bytes_max: 256 << 20, ..DecodeLimits::default() };
        let frames = decode_envelope(&bytes, &limits).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let replies = frames
            .into_iter()
            .map(|frame| ServerMessage::decode(frame, &limits).map_err(|e| ClientError::Protocol(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((replies, sent, bytes.len()))
    }

    /// `POST /v1/sync` with a JSON body.
    pub async fn sync_json(&self, request: &serde_json::Value) -> Result<serde_json::Value, ClientError> {
        let response = self.post("/v1/sync").json(request).send().await.map_err(transport)?;
        check(response).await?.json().await.map_err(transport)
    }

    /// `POST /v1/query` with SQL text; returns the response (`{"rows", "next"}`).
    pub async fn query_sql(&self, sql: &str) -> Result<serde_json::Value, ClientError> {
        let response =
            self.post("/v1/query").json(&serde_json::json!({ "sql": sql })).send().await.map_err(transport)?;
        check(response).await?.json().await.map_err(transport)
    }

    /// `POST /v1/query` with the JSON query model.
    pub async fn query(&self, query: &serde_json::Value) -> Result<serde_json::Value, ClientError> {
        let response = self.post("/v1/query").json(query).send().await.map_err(transport)?;
        check(response).await?.json().await.map_err(transport)
    }

    /// One page of `GET /v1/collections/{c}`: the records and the key to continue after.
    pub async fn list(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<serde_json::Value>, Option<String>), ClientError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        let response =
            self.get(&format!("/v1/collections/{collection}")).query(&query).send().await.map_err(transport)?;
        let json: serde_json::Value = check(response).await?.json().await.map_err(transport)?;
        let records = json.get("records").and_then(|r| r.as_array()).cloned().unwrap_or_default();
        let next = json.get("next").and_then(|n| n.as_str()).map(str::to_owned);
        Ok((records, next))
    }

    /// `GET /v1/collections/{c}/records/{id}` (`None` when not found or not readable).
    pub async fn get_record(&self, collection: &str, id: &str) -> Result<Option<serde_json::Value>, ClientError> {
        let response =
            self.get(&format!("/v1/collections/{collection}/records/{id}")).send().await.map_err(transport)?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        check(response).await?.json().await.map(Some).map_err(transport)
    }
}

//! A raw protocol connection: send [`ClientMessage`]s, receive [`ServerMessage`]s, no
//! replica. For load generators, tools and tests that need to speak the protocol
//! directly (including sending what a well-behaved replica never would).

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use weft_core::codec::DecodeLimits;
use weft_core::hlc::NodeId;
use weft_core::protocol::{ClientMessage, PROTOCOL_VERSION, ServerMessage};

use crate::ClientError;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The WebSocket URL for a server base URL (`http://h:p`, `ws://h:p` or a full `/v1/ws`).
pub fn ws_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        base.to_owned()
    };
    if base.ends_with("/v1/ws") { base } else { format!("{base}/v1/ws") }
}

/// The sending half.
pub struct RawSender {
    sink: SplitSink<Socket, Message>,
}

impl std::fmt::Debug for RawSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSender").finish_non_exhaustive()
    }
}

/// The receiving half.
pub struct RawReceiver {
    stream: SplitStream<Socket>,
    limits: DecodeLimits,
}

impl std::fmt::Debug for RawReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawReceiver").finish_non_exhaustive()
    }
}

/// Opens a WebSocket to `url` without saying hello.
pub async fn open(url: &str) -> Result<(RawSender, RawReceiver), ClientError> {
    let url = ws_url(url);
    // Nagle off: protocol frames are small and latency-bound.
    let (socket, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
        .await
        .map_err(|e| ClientError::Connect { url: url.clone(), reason: e.to_string() })?;
    let (sink, stream) = socket.split();
    let limits = DecodeLimits { frame_bytes_max: 64 << 20, ..DecodeLimits::default() };
    Ok((RawSender { sink }, RawReceiver { stream, limits }))
}

/// Opens a WebSocket and completes the handshake; returns the welcome.
pub async fn connect(
    url: &str,
    replica_id: NodeId,
    token: Option<String>,
) -> Result<(RawSender, RawReceiver, ServerMessage), ClientError> {
    let (mut sender, mut receiver) = open(url).await?;
    sender.send(&ClientMessage::Hello { protocol_version: PROTOCOL_VERSION, replica_id, token }).await?;
    match receiver.recv().await? {
        Some(welcome @ ServerMessage::Welcome { .. }) => Ok((sender, receiver, welcome)),
        Some(ServerMessage::Error { code, message, .. }) => Err(ClientError::Refused { code, message }),
        Some(other) => Err(ClientError::Protocol(format!("expected a welcome, got {other:?}"))),
        None => Err(ClientError::Protocol("connection closed during the handshake".to_owned())),
    }
}

impl RawSender {
    /// Sends one message.
    pub async fn send(&mut self, message: &ClientMessage) -> Result<(), ClientError> {
        self.send_bytes(message.encode()).await
    }

    /// Sends arbitrary bytes as one binary frame (for hostile-input tests).
    pub async fn send_bytes(&mut self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.sink
            .send(Message::Binary(bytes.into()))
            .await
            .map_err(|e| ClientError::Connect { url: String::new(), reason: e.to_string() })
    }

    /// Sends a text frame (which the protocol does not use).
    pub async fn send_text(&mut self, text: &str) -> Result<(), ClientError> {
        self.sink
            .send(Message::Text(text.into()))
            .await
            .map_err(|e| ClientError::Connect { url: String::new(), reason: e.to_string() })
    }

    /// Closes the connection.
    pub async fn close(&mut self) {
        let _ = self.sink.close().await;
    }
}

impl RawReceiver {
    /// The next server message; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Result<Option<ServerMessage>, ClientError> {
        Ok(self.recv_frame().await?.map(|(message, _)| message))
    }

    /// The next server message with its encoded size in bytes.
    pub async fn recv_frame(&mut self) -> Result<Option<(ServerMessage, usize)>, ClientError> {
        loop {
            let Some(frame) = self.stream.next().await else { return Ok(None) };
            let frame = match frame {
                Ok(frame) => frame,
                Err(error) => {
                    use tokio_tungstenite::tungstenite::Error;
                    return match error {
                        Error::ConnectionClosed | Error::AlreadyClosed => Ok(None),
                        Error::Protocol(_) | Error::Io(_) => Ok(None),
                        other => Err(ClientError::Connect { url: String::new(), reason: other.to_string() }),
                    };
                }
            };
            match frame {
                Message::Binary(bytes) => {
                    let message = ServerMessage::decode(&bytes, &self.limits)
                        .map_err(|e| ClientError::Protocol(format!("server frame: {e}")))?;
                    return Ok(Some((message, bytes.len())));
                }
                Message::Close(_) => return Ok(None),
                _ => continue,
            }
        }
    }
}

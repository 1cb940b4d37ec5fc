//! Stateless exchanges: one request and its response carry a whole session (hello,
//! subscriptions, pushes → welcome, changes, acks), as `POST /v1/sync` does for hosts
//! that cannot keep a WebSocket open.
//!
//! A WebSocket session treats a welcome as "new connection: push again whatever was in
//! flight". In an exchange the welcome arrives in the same response as the acks for the
//! batches sent with it, so it must not requeue them; what was not acknowledged by the
//! end of the response goes back to the queue instead.

use super::{Handled, ProtocolError, Replica, ReplicaEvent};
use crate::hlc::ClockSource;
use crate::protocol::{ClientMessage, ENVELOPE_FRAMES_MAX, PROTOCOL_VERSION, ServerMessage, SubscriptionId};

impl<C: ClockSource> Replica<C> {
    /// The messages of one exchange: the hello, every subscription (resuming at its
    /// cursor), then pending local changes, as many batches as fit one envelope. The
    /// pushed batches count as in flight until [`Replica::exchange_response`].
    pub fn exchange_request(&mut self, token: Option<String>) -> Vec<ClientMessage> {
        let mut messages = vec![self.hello(token)];
        let ids: Vec<SubscriptionId> = self.subscriptions.keys().copied().collect();
        messages.extend(ids.into_iter().map(|id| self.subscribe_message(id)));
        while messages.len() < ENVELOPE_FRAMES_MAX {
            let Some(batch) = self.outbox.take_batch(self.config.push_batch_max) else { break };
            messages.push(ClientMessage::Push { batch_id: batch.batch_id, changes: batch.changes.clone() });
        }
        messages
    }

    /// Handles the response to [`Replica::exchange_request`]. Batches it did not
    /// acknowledge return to the queue for the next exchange. Messages to send back
    /// (reconciliation answers) are returned for the next request to carry. A message
    /// that cannot be accepted stops the handling, but what was handled before it (acks
    /// included) is returned with the error, never lost.
    pub fn exchange_response(&mut self, messages: Vec<ServerMessage>) -> (Handled, Result<(), ProtocolError>) {
        let mut out = Handled::default();
        let result = self.exchange_messages(messages, &mut out);
        self.disconnected();
        (out, result)
    }

    fn exchange_messages(&mut self, messages: Vec<ServerMessage>, out: &mut Handled) -> Result<(), ProtocolError> {
        for message in messages {
            match message {
                ServerMessage::Welcome { protocol_version, server_time_ms, node_id, .. } => {
                    if protocol_version != PROTOCOL_VERSION {
                        return Err(ProtocolError::UnsupportedVersion { server: protocol_version });
                    }
                    self.clock.source_mut().align_to(server_time_ms);
                    out.events.push(ReplicaEvent::Connected { node_id });
                }
                other => {
                    let handled = self.handle(other)?;
                    out.send.extend(handled.send);
                    out.events.extend(handled.events);
                }
            }
        }
        Ok(())
    }
}

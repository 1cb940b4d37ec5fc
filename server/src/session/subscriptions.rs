//! Subscriptions and pulls: catch-up in pages, the live changes a subscription holds
//! back until its catch-up is sent, live delivery through the subscription's view, and
//! the merkle exchange the server starts for a cursor from another log.

use std::sync::Arc;

use weft_core::change::Change;
use weft_core::key::CollectionName;
use weft_core::protocol::{Cursor, ErrorCode, ServerMessage, SessionId, Shape, SubscriptionId};

use super::effect::Effect;
use super::{Mode, SERVER_SESSION_BIT, Session};
use crate::error::OpError;
use crate::hub::LiveBatch;
use crate::sync::pull;
use crate::sync::view::{View, Visibility};

/// Most catch-up pages one stateless pull (`POST /v1/sync`) returns; its last page says
/// whether to pull again.
pub const PULL_PAGES_MAX: usize = 10;

/// One subscription of a connection, or one pull of a request.
#[derive(Debug)]
pub(super) struct Subscription {
    pub(super) collection: CollectionName,
    view: View,
    /// Live batches held while catching up (`None` once caught up).
    held: Option<Vec<Arc<LiveBatch>>>,
    /// Where the next catch-up page starts, while pages remain.
    next_page: Option<Cursor>,
    /// Pages a pull may still return (`None`: a subscription, unbounded).
    pages_left: Option<usize>,
}

impl Session {
    pub(super) fn subscribe(
        &mut self,
        id: SubscriptionId,
        collection: CollectionName,
        cursor: Option<Cursor>,
        shape: Option<Shape>,
    ) -> Vec<Effect> {
        let stateless = self.mode == Mode::Stateless;
        let max = self.state.config.limits.subscriptions_max;
        if !stateless && !self.subscriptions.contains_key(&id) && self.subscriptions.len() >= max {
            let error = OpError::new(
                ErrorCode::TooManySubscriptions,
                format!("subscription to {collection}: at most {max} subscriptions per connection"),
            );
            return self.refuse(error);
        }
        let view =
            match self.caller().and_then(|caller| super::access::read_view(&self.state, caller, &collection, shape)) {
                Ok(view) => view,
                Err(error) => return self.refuse(error),
            };
        let engine = match self.state.engine() {
            Ok(engine) => Arc::clone(engine),
            Err(error) => return self.refuse(error),
        };
        let foreign = cursor.as_ref().is_some_and(|c| c.log != self.state.log_id);
        let start = pull::start_cursor(self.state.log_id, cursor.as_ref());
        if stateless {
            if let Err(error) = engine.flush_collection(&collection) {
                return self.refuse(OpError::from(error));
            }
            let pull =
                Subscription { collection, view, held: None, next_page: Some(start), pages_left: Some(PULL_PAGES_MAX) };
            self.subscriptions.insert(id, Box::new(pull));
            return vec![Effect::CatchUp(id)];
        }
        let subscription = Subscription {
            collection: collection.clone(),
            view,
            held: Some(Vec::new()),
            next_page: None,
            pages_left: None,
        };
        if let Some(previous) = self.subscriptions.insert(id, Box::new(subscription)) {
            self.state.hub.unwatch(self.id, &previous.collection);
        } else {
            self.state.metrics.subscriptions.inc();
        }
        // Watch first, then read the store: every change is either in the catch-up or
        // arrives live (held until the catch-up is sent).
        self.state.hub.watch(self.id, &collection);
        let whole = self.subscriptions.get(&id).is_some_and(|s| s.view.sees_every_row());
        if foreign && whole {
            return self.reconcile_instead(id, &collection, &engine);
        }
        if engine.flush_collection(&collection).is_err() {
            return self.refuse(OpError::new(ErrorCode::Internal, "catch-up failed: storage flush failed"));
        }
        if let Some(subscription) = self.subscriptions.get_mut(&id) {
            subscription.next_page = Some(start);
        }
        vec![Effect::CatchUp(id)]
    }

    /// Catch-up for a cursor from another log (a replaced data directory, another
    /// node): instead of sending the whole collection, the server starts a merkle
    /// reconciliation, which moves only the differences — both ways. Live changes after
    /// the snapshot cursor are held until it ends.
    fn reconcile_instead(
        &mut self,
        id: SubscriptionId,
        collection: &CollectionName,
        engine: &weft_storage::engine::Engine,
    ) -> Vec<Effect> {
        let (cursor, step) = crate::sync::reconcile::start(engine, self.state.log_id, collection);
        self.next_session += 1;
        let session_id = SessionId(SERVER_SESSION_BIT | (self.next_session & !SERVER_SESSION_BIT));
        self.reconciling.insert(session_id, (id, cursor.clone()));
        // The client adopts this log's cursor now; what lies before it comes by
        // reconciliation, what comes after it arrives live.
        vec![
            Effect::Send(ServerMessage::Changes { subscription_id: id, changes: Vec::new(), cursor, caught_up: false }),
            Effect::Send(ServerMessage::Reconcile { session_id, collection: collection.clone(), step }),
        ]
    }

    /// A server-started reconciliation ended: its subscription's view is now the
    /// server's, so its catch-up is complete.
    pub(super) fn reconciliation_ended(&mut self, session_id: SessionId) -> Vec<Effect> {
        let Some((id, cursor)) = self.reconciling.remove(&session_id) else { return Vec::new() };
        let mut effects = vec![Effect::Send(ServerMessage::Changes {
            subscription_id: id,
            changes: Vec::new(),
            cursor,
            caught_up: true,
        })];
        effects.extend(self.release(id));
        effects
    }

    pub(super) fn unsubscribe(&mut self, id: SubscriptionId) -> Vec<Effect> {
        if self.mode == Mode::Connection
            && let Some(subscription) = self.subscriptions.remove(&id)
        {
            self.state.hub.unwatch(self.id, &subscription.collection);
            self.state.metrics.subscriptions.dec();
        }
        Vec::new()
    }

    /// The next catch-up page of subscription (or pull) `id`: its frames, then either
    /// [`Effect::CatchUp`] again or, once caught up, the live changes it held. Blocking:
    /// reads the store.
    pub fn catch_up(&mut self, id: SubscriptionId) -> Vec<Effect> {
        let engine = match self.state.engine() {
            Ok(engine) => Arc::clone(engine),
            Err(error) => return self.refuse(error),
        };
        let Some(subscription) = self.subscriptions.get_mut(&id) else { return Vec::new() };
        let Some(cursor) = subscription.next_page.take() else { return Vec::new() };
        let page = match pull::next_page(&engine, &subscription.collection, &cursor, &subscription.view) {
            Ok(page) => page,
            Err(error) => return self.refuse(error),
        };
        let mut effects = Vec::new();
        if !page.removed.is_empty() {
            effects.push(Effect::Send(ServerMessage::Removed { subscription_id: id, keys: page.removed, cursor }));
        }
        let caught_up = page.caught_up;
        effects.push(Effect::Send(ServerMessage::Changes {
            subscription_id: id,
            changes: page.changes,
            cursor: page.cursor.clone(),
            caught_up,
        }));
        if let Some(left) = subscription.pages_left.as_mut() {
            *left = left.saturating_sub(1);
            if caught_up || *left == 0 {
                // A pull ends here; the client pulls again with the last cursor.
                self.subscriptions.remove(&id);
                return effects;
            }
        }
        if caught_up {
            effects.extend(self.release(id));
        } else {
            subscription.next_page = Some(page.cursor);
            effects.push(Effect::CatchUp(id));
        }
        effects
    }

    /// Ends the hold of subscription `id`: the frames of the live batches it held.
    fn release(&mut self, id: SubscriptionId) -> Vec<Effect> {
        let Some(subscription) = self.subscriptions.get_mut(&id) else { return Vec::new() };
        let held = subscription.held.take().unwrap_or_default();
        let log = self.state.log_id;
        held.iter().flat_map(|live| deliver(log, id, &subscription.view, live)).map(Effect::Send).collect()
    }

    /// A durable batch of live changes for this connection (from the hub): the frames
    /// that tell each subscription of its collection about it, through the
    /// subscription's view. A subscription still catching up holds the batch instead;
    /// holding more than `limits.outbound_queue_frames` makes the client a slow consumer.
    /// Stateless sessions have no live changes.
    pub fn live(&mut self, batch: Arc<LiveBatch>) -> Vec<Effect> {
        if self.mode == Mode::Stateless || self.is_closed() {
            return Vec::new();
        }
        let held_max = self.state.config.limits.outbound_queue_frames.max(1);
        let log = self.state.log_id;
        let mut effects = Vec::new();
        let mut overflow = false;
        for (id, subscription) in self.subscriptions.iter_mut() {
            if subscription.collection != batch.collection {
                continue;
            }
            match subscription.held.as_mut() {
                Some(held) => {
                    held.push(Arc::clone(&batch));
                    overflow |= held.len() > held_max;
                }
                None => effects.extend(deliver(log, *id, &subscription.view, &batch).into_iter().map(Effect::Send)),
            }
        }
        if overflow {
            let error = OpError::new(
                ErrorCode::SlowConsumer,
                "the connection fell too far behind the changes sent to it; reconnect and resume from your cursor",
            );
            return self.fatal(error);
        }
        effects
    }
}

/// The frames that tell one subscription about one live batch.
fn deliver(log: weft_core::protocol::LogId, id: SubscriptionId, view: &View, live: &LiveBatch) -> Vec<ServerMessage> {
    let mut cursor = Cursor::new(log);
    let mut changes = Vec::new();
    let mut removed = Vec::new();
    for record in live.records.iter() {
        cursor.advance(record.partition, record.seq);
        match view.classify(&record.after) {
            Visibility::Inside => {
                if let Some(hlc) = record.after.max_hlc() {
                    changes.push(Change {
                        collection: record.collection.clone(),
                        key: record.key.clone(),
                        hlc,
                        state: record.after.clone(),
                    });
                }
            }
            Visibility::OutsideShape | Visibility::Hidden => {
                // Only a record the client could see before is announced as leaving.
                if record.before.as_ref().is_some_and(|before| view.classify(before) == Visibility::Inside) {
                    removed.push(record.key.clone());
                }
            }
        }
    }
    let mut frames = Vec::new();
    if !changes.is_empty() {
        frames.push(ServerMessage::Changes { subscription_id: id, changes, cursor: cursor.clone(), caught_up: true });
    }
    if !removed.is_empty() {
        frames.push(ServerMessage::Removed { subscription_id: id, keys: removed, cursor });
    }
    frames
}

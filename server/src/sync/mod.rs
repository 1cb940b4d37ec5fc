//! The sync operations the protocol session runs for both transports, given a caller's
//! [`view`] decided by the session: checking and appending pushed batches ([`push`]),
//! catching up a subscription or a pull since a cursor ([`pull`]), merkle
//! reconciliation steps ([`reconcile`]), one-shot queries ([`query`], with the parallel
//! scan in [`scan`]) and plain record reads ([`records`]).

pub mod pull;
pub mod push;
pub mod query;
pub mod reconcile;
pub mod records;
pub mod scan;
pub mod view;

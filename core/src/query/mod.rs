//! Queries (docs/queries.md): the query model — a collection, a [`Predicate`], sort keys,
//! limit/offset, a keyset cursor and a projection — its comparison rules
//! ([`compare`]), its JSON form ([`json`]) and its evaluation by full scan.
//!
//! Grouped aggregates ([`AggregateQuery`]) and, with the `sql` feature, SQL `SELECT`
//! text ([`parse_sql`]) map onto the same model. The same code runs on the client (a
//! replica's collections) and on the server; the rules are documented in
//! docs/queries.md. Indexes and live queries build on this.

mod aggregate;
pub mod compare;
mod index;
pub mod json;
mod live;
mod live_aggregate;
mod model;
mod path;
mod predicate;
#[cfg(feature = "sql")]
mod sql;

pub use aggregate::{Accumulator, Aggregate, AggregateFn, AggregateQuery};
pub use index::{Index, IndexSpec, IndexValue, Plan, execute, plan};
pub use json::{
    PREDICATE_DEPTH_MAX, PREDICATE_NODES_MAX, QueryJsonError, keyset_to_json, predicate_from_json, predicate_to_json,
};
pub use live::{CHUNK_ROWS, LiveEvent, LiveQuery};
pub use live_aggregate::{AggregateEvent, LiveAggregate};
pub use model::{Keyset, Nulls, OrderBy, Query, QueryResult, Row, cmp_rows};
pub use path::{FieldPath, PATH_SEGMENTS_MAX};
pub use predicate::{FieldLookup, Predicate};
#[cfg(feature = "sql")]
pub use sql::{SQL_NESTING_TOKENS_MAX, SQL_PARSE_STACK_BYTES, SQL_TOKENS_MAX, SqlError, SqlQuery, parse_sql};

//! The opt-in SQL module of `@weft/client`: turns `SELECT` text into the JSON form of
//! Weft's query model, which the main module runs. SQL parsing (sqlparser) doubles the
//! size of the client bundle, so it lives here and is fetched only when an application
//! first passes SQL text.

use wasm_bindgen::prelude::*;
use weft_core::query::{SqlQuery, parse_sql};

/// Why a statement was refused, with its place.
pub fn translate(sql: &str) -> Result<String, String> {
    match parse_sql(sql).map_err(|error| format!("SQL: {error}"))? {
        SqlQuery::Select(query) => Ok(query.to_json().to_string()),
        SqlQuery::Aggregate(_) => Err("SQL: aggregates (COUNT, SUM, GROUP BY ...) run on the server \
             (POST /v1/query or db.sql on a server connection); a local replica runs row queries"
            .to_owned()),
        SqlQuery::Explain(_) => {
            Err("SQL: EXPLAIN runs on the server (`weft sql`); local queries scan the replica".to_owned())
        }
    }
}

/// `SELECT` text → the query's JSON form; throws an error naming what is unsupported
/// and where (line, column).
#[wasm_bindgen(js_name = sqlToQuery)]
pub fn sql_to_query(sql: &str) -> Result<String, JsError> {
    translate(sql).map_err(|message| JsError::new(&message))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use weft_core::query::Query;

    #[test]
    fn select_round_trips_through_json() {
        let sql = "SELECT title, done FROM todos WHERE done = false AND (priority > 2 OR title LIKE 'a%') \
                   ORDER BY priority DESC NULLS LAST, title LIMIT 10 OFFSET 5";
        let json = translate(sql).unwrap();
        let SqlQuery::Select(expected) = parse_sql(sql).unwrap() else { panic!("a select") };
        let back = Query::from_json(&serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(back, expected);
    }

    #[test]
    fn aggregates_and_errors_are_named() {
        assert!(translate("SELECT COUNT(*) FROM todos").unwrap_err().contains("aggregates"));
        let error = translate("SELECT * FROM todos JOIN users ON a = b").unwrap_err();
        assert!(error.contains("line"), "{error}");
    }
}

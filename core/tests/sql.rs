//! SQL `SELECT` → query model: a table of accepted statements with the model each gives,
//! a table of refused ones with their messages and positions, and aggregates evaluated.

#![cfg(feature = "sql")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use weft_core::key::{CollectionName, RecordKey};
use weft_core::query::{
    Aggregate, AggregateFn, AggregateQuery, FieldPath, Nulls, OrderBy, Predicate, Query, SqlQuery, parse_sql,
};
use weft_core::value::{Document, Value};

fn p(text: &str) -> FieldPath {
    FieldPath::parse(text).unwrap()
}

fn todos() -> CollectionName {
    CollectionName::new("todos").unwrap()
}

fn select(sql: &str) -> Query {
    match parse_sql(sql).unwrap() {
        SqlQuery::Select(query) => query,
        other => panic!("{sql}: {other:?}"),
    }
}

#[test]
fn accepted_statements_map_to_the_query_model() {
    let query = select("SELECT a, b FROM todos WHERE done = false AND owner = 'x' ORDER BY created DESC LIMIT 20");
    assert_eq!(
        query,
        Query {
            collection: todos(),
            filter: Predicate::And(vec![
                Predicate::Eq(p("done"), Value::Bool(false)),
                Predicate::Eq(p("owner"), Value::from("x")),
            ]),
            order_by: vec![OrderBy::desc(p("created"))],
            limit: Some(20),
            offset: 0,
            after: None,
            select: Some(vec![p("a"), p("b")]),
        }
    );
    let table: Vec<(&str, Predicate)> = vec![
        ("SELECT * FROM todos WHERE n <> 3", Predicate::Ne(p("n"), Value::Int(3))),
        ("SELECT * FROM todos WHERE 3 < n", Predicate::Gt(p("n"), Value::Int(3))),
        ("SELECT * FROM todos WHERE n >= -1.5", Predicate::Ge(p("n"), Value::Float(-1.5))),
        ("SELECT * FROM todos WHERE address.city = 'Lyon'", Predicate::Eq(p("address.city"), Value::from("Lyon"))),
        (
            "SELECT * FROM todos WHERE tag IN ('a', 'b')",
            Predicate::In(p("tag"), vec![Value::from("a"), Value::from("b")]),
        ),
        (
            "SELECT * FROM todos WHERE tag NOT IN (1)",
            Predicate::Not(Box::new(Predicate::In(p("tag"), vec![Value::Int(1)]))),
        ),
        (
            "SELECT * FROM todos WHERE n BETWEEN 1 AND 5",
            Predicate::And(vec![Predicate::Ge(p("n"), Value::Int(1)), Predicate::Le(p("n"), Value::Int(5))]),
        ),
        ("SELECT * FROM todos WHERE title LIKE 'buy%'", Predicate::Prefix(p("title"), "buy".into())),
        ("SELECT * FROM todos WHERE title LIKE '%milk%'", Predicate::Contains(p("title"), Value::from("milk"))),
        (
            "SELECT * FROM todos WHERE note IS NULL",
            Predicate::Or(vec![
                Predicate::Not(Box::new(Predicate::Exists(p("note")))),
                Predicate::Eq(p("note"), Value::Null),
            ]),
        ),
        (
            "SELECT * FROM todos WHERE NOT (a = 1 OR b = 2 OR c = 3)",
            Predicate::Not(Box::new(Predicate::Or(vec![
                Predicate::Eq(p("a"), Value::Int(1)),
                Predicate::Eq(p("b"), Value::Int(2)),
                Predicate::Eq(p("c"), Value::Int(3)),
            ]))),
        ),
    ];
    for (sql, expected) in table {
        assert_eq!(select(sql).filter, expected, "{sql}");
    }
    let SqlQuery::Explain(explained) = parse_sql("EXPLAIN SELECT * FROM todos WHERE a = 1").unwrap() else { panic!() };
    assert!(matches!(*explained, SqlQuery::Select(Query { filter: Predicate::Eq(..), .. })));
    let query = select("SELECT * FROM todos ORDER BY a ASC NULLS FIRST, b LIMIT 5 OFFSET 10");
    assert_eq!(query.order_by[0], OrderBy { path: p("a"), descending: false, nulls: Some(Nulls::First) });
    assert_eq!(query.order_by[1], OrderBy::asc(p("b")));
    assert_eq!((query.limit, query.offset, query.select), (Some(5), 10, None));

    let SqlQuery::Aggregate(aggregate) = parse_sql(
        "SELECT owner, COUNT(*), SUM(price) AS total, AVG(price) FROM orders WHERE paid = true GROUP BY owner",
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        aggregate,
        AggregateQuery {
            collection: CollectionName::new("orders").unwrap(),
            filter: Predicate::Eq(p("paid"), Value::Bool(true)),
            group_by: vec![p("owner")],
            aggregates: vec![
                Aggregate { function: AggregateFn::Count, name: "count".into() },
                Aggregate { function: AggregateFn::Sum(p("price")), name: "total".into() },
                Aggregate { function: AggregateFn::Avg(p("price")), name: "avg_price".into() },
            ],
            order_by: Vec::new(),
            limit: None,
        }
    );
}

#[test]
fn refused_statements_name_the_construct_and_where_it_is() {
    let table = [
        ("DELETE FROM todos", "unsupported: statements other than SELECT (line 1"),
        ("SELECT * FROM todos JOIN users ON todos.owner = users.id", "unsupported: JOIN (line 1, column 26)"),
        ("SELECT * FROM todos WHERE a = b", "unsupported: comparing two fields (line 1, column 27)"),
        ("SELECT * FROM todos WHERE a = NULL", "use IS NULL"),
        (
            "SELECT * FROM todos WHERE upper(a) = 'X'",
            "unsupported: this expression where a field name is expected (line 1, column 27)",
        ),
        ("SELECT * FROM todos WHERE title LIKE 'a%b'", "unsupported: LIKE patterns"),
        ("SELECT DISTINCT a FROM todos", "unsupported: DISTINCT"),
        (
            "SELECT a, COUNT(*) FROM todos",
            "field a must appear in GROUP BY to be selected with aggregates (line 1, column 8)",
        ),
        ("SELECT COUNT(*) FROM todos GROUP BY a HAVING COUNT(*) > 1", "unsupported: HAVING (line 1, column 46)"),
        ("SELECT * FROM todos, users", "expected exactly one collection in FROM, found 2"),
        ("SELECT * FROM todos LIMIT -1", "expected a whole number"),
        ("SELECT * FROM (SELECT * FROM todos)", "unsupported: subqueries"),
        ("SELECT median(a) FROM todos", "unsupported: function median"),
        ("SELECT * FROM todos; SELECT * FROM users", "expected one statement, found 2"),
        ("SELEC * FROM todos", "syntax:"),
        ("SELECT * FROM todos UNION SELECT * FROM users", "unsupported: UNION"),
    ];
    let mut wrong = Vec::new();
    for (sql, expected) in table {
        let message = parse_sql(sql).unwrap_err().to_string();
        if !message.contains(expected) {
            wrong.push(format!("{sql}\n  got:      {message}\n  expected: {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn aggregates_group_count_sum_min_max_avg() {
    let rows = [
        ("o1", "ann", Value::Int(10), true),
        ("o2", "ann", Value::Float(2.5), true),
        ("o3", "bob", Value::Int(7), true),
        ("o4", "bob", Value::from("n/a"), true),
        ("o5", "cat", Value::Int(100), false),
    ];
    let keys: Vec<RecordKey> = rows.iter().map(|r| RecordKey::new(r.0).unwrap()).collect();
    let documents: Vec<Document> = rows
        .iter()
        .map(|(_, owner, price, paid)| {
            Document::from([
                ("owner".to_string(), Value::from(*owner)),
                ("price".to_string(), price.clone()),
                ("paid".to_string(), Value::Bool(*paid)),
            ])
        })
        .collect();
    let SqlQuery::Aggregate(query) = parse_sql(
        "SELECT owner, COUNT(*), SUM(price), MIN(price), MAX(price), AVG(price) FROM orders \
         WHERE paid = true GROUP BY owner ORDER BY owner DESC",
    )
    .unwrap() else {
        panic!()
    };
    let out = query.run(keys.iter().zip(documents.iter().cloned()));
    assert_eq!(out.len(), 2, "cat's order is unpaid");
    assert_eq!(out[0]["owner"], Value::from("bob"));
    assert_eq!(out[0]["count"], Value::Int(2));
    assert_eq!(out[0]["sum_price"], Value::Int(7), "strings are not summed");
    assert_eq!(out[0]["max_price"], Value::from("n/a"), "max uses the cross-type order");
    assert_eq!(out[1]["sum_price"], Value::Float(12.5));
    assert_eq!(out[1]["min_price"], Value::Float(2.5));
    assert_eq!(out[1]["avg_price"], Value::Float(6.25));
    let SqlQuery::Aggregate(total) = parse_sql("SELECT COUNT(*) FROM orders WHERE price > 1000").unwrap() else {
        panic!()
    };
    assert_eq!(total.run(keys.iter().zip(documents.iter().cloned()))[0]["count"], Value::Int(0));
}

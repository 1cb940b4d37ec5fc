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

/// Runs `parse_sql` on a thread with the stack a server gives it and returns its
/// outcome; a stack overflow would abort the test binary.
fn parse_on_small_stack(sql: String) -> Result<SqlQuery, weft_core::query::SqlError> {
    std::thread::Builder::new()
        .stack_size(weft_core::query::SQL_PARSE_STACK_BYTES)
        .spawn(move || parse_sql(&sql))
        .unwrap()
        .join()
        .unwrap()
}

/// Statements shaped to build deep parse trees — long chains of every infix and postfix
/// operator, nested parentheses and NOTs — never exhaust the stack: below the bound they
/// parse (or are refused for what they ask), past it they are refused by name before a
/// tree is built. Each runs at the bound's edge and far past it (the 4,000-term chain
/// that aborted the server).
#[test]
fn statements_built_to_nest_deeply_are_refused_by_name_never_overflow_the_stack() {
    let chains: [(&str, &str, &str); 8] = [
        ("AND", "n = 1", " AND n = 1"),
        ("OR", "n = 1", " OR n = 1"),
        ("+", "n = 1", " + 1"),
        ("||", "s = 'a'", " || 'a'"),
        ("IS NULL", "n", " IS NULL"),
        ("comparison", "n", " = n"),
        ("LIKE", "s LIKE 'a%'", " AND s LIKE 'a%'"),
        ("NOT", "NOT ", "NOT "),
    ];
    for (name, first, repeated) in chains {
        for terms in [100, 300, 1_000, 4_000, 20_000] {
            let mut sql = format!("SELECT * FROM todos WHERE {first}");
            for _ in 0..terms {
                sql.push_str(repeated);
            }
            if name == "NOT" {
                sql.push_str("done");
            }
            let outcome = parse_on_small_stack(sql);
            if terms >= 4_000 {
                let error = outcome.expect_err(&format!("{name} × {terms} accepted"));
                assert!(
                    error.message.contains("too complex")
                        || error.message.contains("too long")
                        || error.message.contains("recursion"),
                    "{name} × {terms}: {error}"
                );
            }
        }
    }
    // Nested parentheses are sqlparser's own recursion limit.
    let nested = format!("SELECT * FROM todos WHERE {}n = 1{}", "(".repeat(5_000), ")".repeat(5_000));
    assert!(parse_on_small_stack(nested).is_err());
    // Long IN lists of literals are not chains: they stay allowed.
    let values: Vec<String> = (0..20_000).map(|i| i.to_string()).collect();
    let in_list = format!("SELECT * FROM todos WHERE n IN ({})", values.join(", "));
    assert!(parse_on_small_stack(in_list).is_ok());
}

/// The SQL form refuses a WHERE clause the JSON form would refuse: more than 256
/// conditions (the same limit, the same words).
#[test]
fn a_where_clause_past_the_json_forms_condition_limit_is_refused() {
    let terms: Vec<String> = (0..300).map(|i| format!("n{i} = 1")).collect();
    let sql = format!("SELECT * FROM todos WHERE {}", terms.join(" AND "));
    let error = parse_on_small_stack(sql).unwrap_err();
    assert!(error.message.contains("conditions, at most 256"), "{error}");
}

/// Every saved query input (fuzz seeds and inputs that once crashed, in
/// `tests/query_regressions/`) parses or is refused without a panic, as SQL and as JSON.
#[test]
fn query_regressions_parse_or_are_refused_without_panicking() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/query_regressions");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let Ok(text) = String::from_utf8(bytes) else { continue };
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
            let _ = Query::from_json(&json);
        }
        let _ = parse_on_small_stack(text);
        count += 1;
    }
    assert!(count >= 5, "the regression inputs are there");
}

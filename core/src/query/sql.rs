//! SQL `SELECT` text → the query model, with `sqlparser` (cargo feature `sql`).
//!
//! Accepted: `SELECT * | fields | aggregates FROM collection [WHERE ...] [GROUP BY ...]
//! [ORDER BY ... [ASC|DESC] [NULLS FIRST|LAST]] [LIMIT n] [OFFSET n]`, with `=`, `<>`,
//! `<`, `<=`, `>`, `>=`, `AND`, `OR`, `NOT`, `IN (...)`, `BETWEEN`, `IS [NOT] NULL`,
//! `LIKE 'prefix%'` and `LIKE '%text%'`, and `COUNT/SUM/MIN/MAX/AVG`. Anything else is
//! refused with an error naming the construct and its line and column.

use sqlparser::ast::{
    self, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, LimitClause, OrderByKind,
    SelectItem, SetExpr, Spanned, Statement, TableFactor, UnaryOperator,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use super::aggregate::{Aggregate, AggregateFn, AggregateQuery};
use super::json::{PREDICATE_DEPTH_MAX, PREDICATE_NODES_MAX};
use super::model::{Nulls, OrderBy, Query};
use super::path::FieldPath;
use super::predicate::Predicate;
use crate::key::CollectionName;
use crate::value::Value;

/// A statement that cannot be turned into a query.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (line {line}, column {column})")]
pub struct SqlError {
    /// What is wrong or unsupported.
    pub message: String,
    /// 1-based line (0 when unknown).
    pub line: u64,
    /// 1-based column (0 when unknown).
    pub column: u64,
}

/// What a statement asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlQuery {
    /// Rows.
    Select(Query),
    /// Grouped aggregates.
    Aggregate(AggregateQuery),
    /// `EXPLAIN` of a query: show the plan instead of running it.
    Explain(Box<SqlQuery>),
}

fn unsupported(what: &str, node: &impl Spanned) -> SqlError {
    let start = node.span().start;
    SqlError { message: format!("unsupported: {what}"), line: start.line, column: start.column }
}

fn invalid(message: String, node: &impl Spanned) -> SqlError {
    let start = node.span().start;
    SqlError { message, line: start.line, column: start.column }
}

/// Most tokens of a statement that can each add a level to the parsed tree: everything
/// but whitespace, commas, parentheses, numbers and quoted strings (so `IN` lists of
/// literals stay unlimited). sqlparser bounds its own recursion, but not chains of
/// infix or postfix operators (`a = 1 AND a = 1 AND …`, `x IS NULL IS NULL …`): each
/// term adds a level to a tree that its `Drop`, its span walk and our translation then
/// recurse over. This bound, checked on the tokens before parsing, keeps every such walk
/// within a thread stack of [`SQL_PARSE_STACK_BYTES`].
pub const SQL_NESTING_TOKENS_MAX: usize = 1_024;

/// Stack a thread needs to parse any statement [`parse_sql`] accepts or refuses: the
/// nesting bound times the largest frame of the walks over a parse tree (sqlparser's
/// span and drop, this module's translation), in a debug build, with a wide margin. A
/// server runs the parse on a thread of its own with this stack (tested at this size).
pub const SQL_PARSE_STACK_BYTES: usize = 64 << 20;

/// Most tokens of any kind in a statement (bounds the work of parsing one).
pub const SQL_TOKENS_MAX: usize = 100_000;

/// Refuses statements whose parse tree could be deep enough to exhaust the stack, before
/// any tree exists (see [`SQL_NESTING_TOKENS_MAX`]). The tokenizer is iterative.
fn check_size(sql: &str) -> Result<(), SqlError> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql).tokenize_with_location().map_err(|error| SqlError {
        message: format!("syntax: {}", error.message),
        line: error.location.line,
        column: error.location.column,
    })?;
    if tokens.len() > SQL_TOKENS_MAX {
        let at = tokens[SQL_TOKENS_MAX].span.start;
        return Err(SqlError {
            message: format!("statement too long: more than {SQL_TOKENS_MAX} tokens"),
            line: at.line,
            column: at.column,
        });
    }
    let mut nesting = 0;
    for token in &tokens {
        let counted = !matches!(
            token.token,
            Token::Whitespace(_)
                | Token::Comma
                | Token::LParen
                | Token::RParen
                | Token::Number(..)
                | Token::SingleQuotedString(_)
                | Token::DoubleQuotedString(_)
                | Token::EOF
        );
        nesting += usize::from(counted);
        if nesting > SQL_NESTING_TOKENS_MAX {
            let at = token.span.start;
            return Err(SqlError {
                message: format!(
                    "statement too complex: more than {SQL_NESTING_TOKENS_MAX} keywords, names and operators \
                     (long AND/OR chains: use IN (...) or split the query)"
                ),
                line: at.line,
                column: at.column,
            });
        }
    }
    Ok(())
}

/// Refuses a WHERE clause past the limits the JSON form has ([`PREDICATE_NODES_MAX`]
/// conditions, [`PREDICATE_DEPTH_MAX`] levels), so both forms accept the same queries.
fn check_predicate(filter: &Predicate, expr: &Expr) -> Result<(), SqlError> {
    let (nodes, depth) = filter.extent();
    if nodes > PREDICATE_NODES_MAX {
        return Err(invalid(format!("WHERE has {nodes} conditions, at most {PREDICATE_NODES_MAX} allowed"), expr));
    }
    if depth > PREDICATE_DEPTH_MAX {
        return Err(invalid(format!("WHERE is nested {depth} deep, at most {PREDICATE_DEPTH_MAX} allowed"), expr));
    }
    Ok(())
}

/// Parses one `SELECT` statement.
pub fn parse_sql(sql: &str) -> Result<SqlQuery, SqlError> {
    check_size(sql)?;
    let statements = Parser::parse_sql(&GenericDialect {}, sql).map_err(|error| {
        let text = error.to_string();
        // sqlparser reports "... at Line: L, Column: C"; keep its words, lift the place.
        let place = |key: &str| {
            text.split(key)
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).find(|s| !s.is_empty()))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        SqlError { message: format!("syntax: {text}"), line: place("Line: "), column: place("Column: ") }
    })?;
    let [statement] = statements.as_slice() else {
        return Err(SqlError {
            message: format!("expected one statement, found {}", statements.len()),
            line: 1,
            column: 1,
        });
    };
    if let Statement::Explain { statement: inner, analyze: false, .. } = statement {
        return match inner.as_ref() {
            Statement::Query(_) => Ok(SqlQuery::Explain(Box::new(statement_query(inner)?))),
            other => Err(unsupported("EXPLAIN of statements other than SELECT", other)),
        };
    }
    statement_query(statement)
}

fn statement_query(statement: &Statement) -> Result<SqlQuery, SqlError> {
    let Statement::Query(query) = statement else {
        return Err(unsupported("statements other than SELECT", statement));
    };
    if let Some(with) = &query.with {
        return Err(unsupported("WITH", with));
    }
    if query.fetch.is_some() || !query.locks.is_empty() || query.for_clause.is_some() {
        return Err(unsupported("FETCH / FOR clauses", query.as_ref()));
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(unsupported("UNION, INTERSECT, EXCEPT, VALUES and subqueries", query.body.as_ref()));
    };
    if select.distinct.is_some() {
        return Err(unsupported("DISTINCT", select.as_ref()));
    }
    if let Some(having) = &select.having {
        return Err(unsupported("HAVING", having));
    }
    if select.top.is_some() || select.into.is_some() || !select.lateral_views.is_empty() || select.qualify.is_some() {
        return Err(unsupported("TOP / INTO / LATERAL VIEW / QUALIFY", select.as_ref()));
    }
    let collection = collection(select)?;
    let filter = match &select.selection {
        Some(expr) => {
            let filter = predicate(expr)?;
            check_predicate(&filter, expr)?;
            filter
        }
        None => Predicate::True,
    };
    let group_by = match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) => {
            if !modifiers.is_empty() {
                return Err(unsupported("GROUP BY modifiers", &select.group_by));
            }
            exprs.iter().map(column).collect::<Result<Vec<_>, _>>()?
        }
        GroupByExpr::All(_) => return Err(unsupported("GROUP BY ALL", &select.group_by)),
    };
    let order_by = match &query.order_by {
        None => Vec::new(),
        Some(order) => match &order.kind {
            OrderByKind::Expressions(items) => items
                .iter()
                .map(|item| {
                    if item.with_fill.is_some() {
                        return Err(unsupported("WITH FILL", &item.expr));
                    }
                    Ok(OrderBy {
                        path: column(&item.expr)?,
                        descending: item.options.asc == Some(false),
                        nulls: item.options.nulls_first.map(|first| if first { Nulls::First } else { Nulls::Last }),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            OrderByKind::All(_) => return Err(unsupported("ORDER BY ALL", order)),
        },
    };
    let (limit, offset) = match &query.limit_clause {
        None => (None, 0),
        Some(LimitClause::LimitOffset { limit, offset, limit_by }) => {
            if let Some(by) = limit_by.first() {
                return Err(unsupported("LIMIT BY", by));
            }
            let limit = limit.as_ref().map(count).transpose()?;
            let offset = offset.as_ref().map(|o| count(&o.value)).transpose()?.unwrap_or(0);
            (limit, offset)
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => (Some(count(limit)?), count(offset)?),
    };

    let mut fields = Vec::new();
    let mut aggregates = Vec::new();
    let mut star = false;
    for item in &select.projection {
        let (expr, alias) = match item {
            SelectItem::Wildcard(_) => {
                star = true;
                continue;
            }
            SelectItem::UnnamedExpr(expr) => (expr, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
            SelectItem::QualifiedWildcard(..) => return Err(unsupported("qualified wildcards", item)),
        };
        match expr {
            Expr::Function(function) => aggregates.push(aggregate(function, alias)?),
            _ => {
                if alias.is_some() {
                    return Err(unsupported("aliases on plain fields", item));
                }
                fields.push((column(expr)?, expr));
            }
        }
    }
    if aggregates.is_empty() && !group_by.is_empty() {
        return Err(unsupported("GROUP BY without aggregates", &select.group_by));
    }
    if !aggregates.is_empty() {
        if star {
            return Err(invalid("`*` cannot be mixed with aggregates".to_owned(), select.as_ref()));
        }
        if let Some((field, expr)) = fields.iter().find(|(field, _)| !group_by.contains(field)) {
            return Err(invalid(
                format!("field {field} must appear in GROUP BY to be selected with aggregates"),
                *expr,
            ));
        }
        if offset > 0 {
            return Err(unsupported("OFFSET with aggregates", query.as_ref()));
        }
        return Ok(SqlQuery::Aggregate(AggregateQuery { collection, filter, group_by, aggregates, order_by, limit }));
    }
    let select_fields = if star { None } else { Some(fields.into_iter().map(|(f, _)| f).collect()) };
    Ok(SqlQuery::Select(Query { collection, filter, order_by, limit, offset, after: None, select: select_fields }))
}

fn collection(select: &ast::Select) -> Result<CollectionName, SqlError> {
    let [table] = select.from.as_slice() else {
        return Err(invalid(format!("expected exactly one collection in FROM, found {}", select.from.len()), select));
    };
    if let Some(join) = table.joins.first() {
        return Err(unsupported("JOIN", join));
    }
    let TableFactor::Table { name, alias: None, args: None, .. } = &table.relation else {
        return Err(unsupported("subqueries, table functions and aliases in FROM", &table.relation));
    };
    let [part] = name.0.as_slice() else {
        return Err(unsupported("qualified collection names", name));
    };
    let ident = part.as_ident().ok_or_else(|| unsupported("this FROM form", name))?;
    CollectionName::new(ident.value.as_str()).map_err(|e| invalid(format!("collection: {e}"), name))
}

fn column(expr: &Expr) -> Result<FieldPath, SqlError> {
    let text = match expr {
        Expr::Identifier(ident) => ident.value.clone(),
        Expr::CompoundIdentifier(parts) => parts.iter().map(|p| p.value.as_str()).collect::<Vec<_>>().join("."),
        Expr::Nested(inner) => return column(inner),
        _ => return Err(unsupported("this expression where a field name is expected", expr)),
    };
    FieldPath::parse(&text).map_err(|e| invalid(e, expr))
}

fn literal(expr: &Expr) -> Result<Value, SqlError> {
    match expr {
        Expr::Value(value) => match &value.value {
            ast::Value::Number(text, _) => text
                .parse::<i64>()
                .map(Value::Int)
                .or_else(|_| text.parse::<f64>().map(Value::Float))
                .map_err(|_| invalid(format!("number {text} out of range"), expr)),
            ast::Value::SingleQuotedString(text) => Ok(Value::String(text.clone())),
            ast::Value::Boolean(b) => Ok(Value::Bool(*b)),
            ast::Value::Null => Ok(Value::Null),
            _ => Err(unsupported("this kind of literal", expr)),
        },
        Expr::UnaryOp { op: UnaryOperator::Minus, expr: inner } => match literal(inner)? {
            Value::Int(n) => Ok(Value::Int(-n)),
            Value::Float(x) => Ok(Value::Float(-x)),
            _ => Err(invalid("minus before a non-number".to_owned(), expr)),
        },
        Expr::Nested(inner) => literal(inner),
        _ => Err(unsupported("this expression where a literal is expected", expr)),
    }
}

fn count(expr: &Expr) -> Result<usize, SqlError> {
    match literal(expr)? {
        Value::Int(n) if n >= 0 => Ok(n as usize),
        _ => Err(invalid("expected a whole number ≥ 0".to_owned(), expr)),
    }
}

fn is_column(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
        || matches!(expr, Expr::Nested(inner) if is_column(inner))
}

fn comparison(op: &BinaryOperator, left: &Expr, right: &Expr, whole: &Expr) -> Result<Predicate, SqlError> {
    // `3 < priority` is `priority > 3`.
    let (field, value, op) = match (is_column(left), is_column(right)) {
        (true, false) => (column(left)?, literal(right)?, op.clone()),
        (false, true) => {
            let flipped = match op {
                BinaryOperator::Lt => BinaryOperator::Gt,
                BinaryOperator::LtEq => BinaryOperator::GtEq,
                BinaryOperator::Gt => BinaryOperator::Lt,
                BinaryOperator::GtEq => BinaryOperator::LtEq,
                other => other.clone(),
            };
            (column(right)?, literal(left)?, flipped)
        }
        (true, true) => return Err(unsupported("comparing two fields", whole)),
        (false, false) => {
            // Name the side that is neither a field nor a literal, if there is one.
            let odd = if literal(left).is_err() { left } else { right };
            if literal(odd).is_err() {
                return Err(unsupported("this expression where a field name is expected", odd));
            }
            return Err(unsupported("comparing two literals", whole));
        }
    };
    if matches!(value, Value::Null) {
        return Err(invalid("comparison with NULL is never true; use IS NULL / IS NOT NULL".to_owned(), whole));
    }
    Ok(match op {
        BinaryOperator::Eq => Predicate::Eq(field, value),
        BinaryOperator::NotEq => Predicate::Ne(field, value),
        BinaryOperator::Lt => Predicate::Lt(field, value),
        BinaryOperator::LtEq => Predicate::Le(field, value),
        BinaryOperator::Gt => Predicate::Gt(field, value),
        BinaryOperator::GtEq => Predicate::Ge(field, value),
        _ => return Err(unsupported(&format!("operator {op}"), whole)),
    })
}

fn predicate(expr: &Expr) -> Result<Predicate, SqlError> {
    Ok(match expr {
        Expr::Nested(inner) => predicate(inner)?,
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            let mut items = Vec::new();
            for side in [left, right] {
                match predicate(side)? {
                    Predicate::And(inner) => items.extend(inner),
                    other => items.push(other),
                }
            }
            Predicate::And(items)
        }
        Expr::BinaryOp { left, op: BinaryOperator::Or, right } => {
            let mut items = Vec::new();
            for side in [left, right] {
                match predicate(side)? {
                    Predicate::Or(inner) => items.extend(inner),
                    other => items.push(other),
                }
            }
            Predicate::Or(items)
        }
        Expr::BinaryOp { left, op, right } => comparison(op, left, right, expr)?,
        Expr::UnaryOp { op: UnaryOperator::Not, expr: inner } => Predicate::Not(Box::new(predicate(inner)?)),
        Expr::IsNull(inner) => {
            let field = column(inner)?;
            Predicate::Or(vec![
                Predicate::Not(Box::new(Predicate::Exists(field.clone()))),
                Predicate::Eq(field, Value::Null),
            ])
        }
        Expr::IsNotNull(inner) => {
            let field = column(inner)?;
            Predicate::And(vec![
                Predicate::Exists(field.clone()),
                Predicate::Not(Box::new(Predicate::Eq(field, Value::Null))),
            ])
        }
        Expr::InList { expr: inner, list, negated } => {
            let values = list.iter().map(literal).collect::<Result<Vec<_>, _>>()?;
            let found = Predicate::In(column(inner)?, values);
            if *negated { Predicate::Not(Box::new(found)) } else { found }
        }
        Expr::Between { expr: inner, negated, low, high } => {
            let field = column(inner)?;
            let between =
                Predicate::And(vec![Predicate::Ge(field.clone(), literal(low)?), Predicate::Le(field, literal(high)?)]);
            if *negated { Predicate::Not(Box::new(between)) } else { between }
        }
        Expr::Like { negated, any: false, expr: inner, pattern, escape_char: None } => {
            let field = column(inner)?;
            let Value::String(text) = literal(pattern)? else {
                return Err(invalid("LIKE needs a string pattern".to_owned(), pattern.as_ref()));
            };
            let like = like(field, &text).ok_or_else(|| {
                unsupported("LIKE patterns other than 'prefix%' and '%text%' (and _ wildcards)", pattern.as_ref())
            })?;
            if *negated { Predicate::Not(Box::new(like)) } else { like }
        }
        Expr::Value(_) if literal(expr)? == Value::Bool(true) => Predicate::True,
        _ => return Err(unsupported("this expression in WHERE", expr)),
    })
}

fn like(field: FieldPath, pattern: &str) -> Option<Predicate> {
    if pattern.contains('_') {
        return None;
    }
    let inner = pattern.strip_prefix('%').and_then(|p| p.strip_suffix('%'));
    match inner {
        Some(text) if !text.contains('%') => Some(Predicate::Contains(field, Value::String(text.to_owned()))),
        _ => {
            let prefix = pattern.strip_suffix('%')?;
            (!prefix.contains('%')).then(|| Predicate::Prefix(field, prefix.to_owned()))
        }
    }
}

fn aggregate(function: &ast::Function, alias: Option<String>) -> Result<Aggregate, SqlError> {
    let name = function.name.to_string().to_ascii_lowercase();
    if function.filter.is_some() || function.over.is_some() || !function.within_group.is_empty() {
        return Err(unsupported("FILTER / OVER / WITHIN GROUP", function));
    }
    let FunctionArguments::List(list) = &function.args else {
        return Err(unsupported("functions without an argument list", function));
    };
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return Err(unsupported("DISTINCT or clauses inside aggregates", function));
    }
    let [argument] = list.args.as_slice() else {
        return Err(invalid(format!("{name} takes one argument"), function));
    };
    let field = match argument {
        FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => None,
        FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(column(expr)?),
        _ => return Err(unsupported("this aggregate argument", function)),
    };
    let (function_kind, default_name) = match (name.as_str(), field) {
        ("count", None) => (AggregateFn::Count, "count".to_owned()),
        ("count", Some(f)) => (AggregateFn::CountField(f.clone()), format!("count_{f}")),
        ("sum", Some(f)) => (AggregateFn::Sum(f.clone()), format!("sum_{f}")),
        ("min", Some(f)) => (AggregateFn::Min(f.clone()), format!("min_{f}")),
        ("max", Some(f)) => (AggregateFn::Max(f.clone()), format!("max_{f}")),
        ("avg", Some(f)) => (AggregateFn::Avg(f.clone()), format!("avg_{f}")),
        (other, _) if ["sum", "min", "max", "avg"].contains(&other) => {
            return Err(invalid(format!("{other}(*) is not defined; name a field"), function));
        }
        (other, _) => return Err(unsupported(&format!("function {other}"), function)),
    };
    Ok(Aggregate { function: function_kind, name: alias.unwrap_or(default_name) })
}

//! Authorization rules: deny by default; per collection and operation (read, write,
//! delete), a list of grants, each naming a role and optionally a row condition.
//!
//! ```toml
//! [collections.todos]
//! read   = [{ role = "user", when = "owner == auth.sub" }, { role = "admin" }]
//! write  = [{ role = "user", when = "owner == auth.sub" }]
//! delete = [{ role = "admin" }]
//! ```
//!
//! A condition is one or more `field == operand` joined by `&&`; an operand is
//! `auth.<claim>` or a JSON literal (`"text"`, `42`, `true`, `null`). Role `"*"` is any
//! authenticated caller. A collection not listed falls back to `[collections."*"]`, and
//! without that, everything on it is denied.
//!
//! Enforcement (the same on WebSocket and HTTP): reads and subscriptions only ever see
//! rows a read grant allows; a write is allowed when both the record before it (if the
//! record exists) and the record after it satisfy a write grant, so nobody can take over
//! or create someone else's row; a delete needs a delete grant on the record before it.

use std::collections::BTreeMap;

use serde::Deserialize;
use weft_core::value::{Document, Value};

use super::Principal;

/// One grant as written in the config.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    /// The role it applies to (`"*"`: every authenticated caller).
    pub role: String,
    /// Row condition, e.g. `owner == auth.sub`.
    #[serde(default)]
    pub when: Option<String>,
}

/// The grants of one collection as written in the config.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuleSpec {
    /// Who may read (pull, subscribe, HTTP GET).
    pub read: Vec<GrantSpec>,
    /// Who may write.
    pub write: Vec<GrantSpec>,
    /// Who may delete.
    pub delete: Vec<GrantSpec>,
}

/// The three operations rules distinguish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Pull, subscribe, HTTP read.
    Read,
    /// Put, update, counter and set operations.
    Write,
    /// Delete.
    Delete,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Delete => "delete",
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Operand {
    Claim(String),
    Literal(Value),
}

#[derive(Clone, Debug, PartialEq)]
struct Condition {
    field: String,
    operand: Operand,
}

#[derive(Clone, Debug, PartialEq)]
struct Grant {
    role: String,
    conditions: Vec<Condition>,
}

/// A collection's compiled grants.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompiledRules {
    read: Vec<Grant>,
    write: Vec<Grant>,
    delete: Vec<Grant>,
}

fn parse_condition(text: &str) -> Result<Vec<Condition>, String> {
    text.split("&&")
        .map(|part| {
            let (field, operand) =
                part.split_once("==").ok_or_else(|| format!("condition {part:?}: expected `field == operand`"))?;
            let field = field.trim();
            weft_core::key::validate_field_name(field).map_err(|e| format!("condition {part:?}: {e}"))?;
            let operand = operand.trim();
            let operand = match operand.strip_prefix("auth.") {
                Some(claim) if !claim.is_empty() => Operand::Claim(claim.to_owned()),
                _ => {
                    let json: serde_json::Value = serde_json::from_str(operand).map_err(|_| {
                        format!("condition {part:?}: operand {operand:?} is neither auth.<claim> nor a JSON literal")
                    })?;
                    Operand::Literal(Value::from_json(&json).map_err(|e| format!("condition {part:?}: {e}"))?)
                }
            };
            Ok(Condition { field: field.to_owned(), operand })
        })
        .collect()
}

impl RuleSpec {
    /// Checks and compiles the conditions.
    pub fn compile(&self) -> Result<CompiledRules, String> {
        let grants = |specs: &[GrantSpec], op: &str| -> Result<Vec<Grant>, String> {
            specs
                .iter()
                .map(|spec| {
                    let conditions = match &spec.when {
                        Some(text) => parse_condition(text).map_err(|e| format!("{op}: {e}"))?,
                        None => Vec::new(),
                    };
                    Ok(Grant { role: spec.role.clone(), conditions })
                })
                .collect()
        };
        Ok(CompiledRules {
            read: grants(&self.read, "read")?,
            write: grants(&self.write, "write")?,
            delete: grants(&self.delete, "delete")?,
        })
    }
}

/// What one caller may do with one operation on one collection: nothing, everything,
/// or rows matching any of several condition sets (claims already resolved).
#[derive(Clone, Debug, PartialEq)]
pub enum Access {
    /// Denied.
    Denied,
    /// Every row.
    All,
    /// Rows where all conditions of at least one set hold (field → required value).
    Rows(Vec<Vec<(String, Value)>>),
}

impl Access {
    /// Whether a row (`None`: a record that does not exist or is deleted) is allowed.
    /// A missing row passes only unconditional access.
    pub fn allows(&self, document: Option<&Document>) -> bool {
        match self {
            Access::Denied => false,
            Access::All => true,
            Access::Rows(sets) => document.is_some_and(|document| {
                sets.iter().any(|set| set.iter().all(|(field, value)| document.get(field) == Some(value)))
            }),
        }
    }

    /// Whether some rows may be allowed.
    pub fn is_denied(&self) -> bool {
        matches!(self, Access::Denied)
    }
}

/// The whole rule set: per collection, with `"*"` as the fallback.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    dev: bool,
    collections: BTreeMap<String, CompiledRules>,
}

impl Rules {
    /// Compiles the configured rules; `dev` allows everything.
    pub fn new(specs: &BTreeMap<String, RuleSpec>, dev: bool) -> Result<Rules, String> {
        let mut collections = BTreeMap::new();
        for (name, spec) in specs {
            collections.insert(name.clone(), spec.compile().map_err(|e| format!("collections.{name}: {e}"))?);
        }
        Ok(Rules { dev, collections })
    }

    /// What `principal` may do with `operation` on `collection`.
    pub fn access(&self, principal: &Principal, collection: &str, operation: Operation) -> Access {
        if self.dev {
            return Access::All;
        }
        let Some(rules) = self.collections.get(collection).or_else(|| self.collections.get("*")) else {
            return Access::Denied;
        };
        let grants = match operation {
            Operation::Read => &rules.read,
            Operation::Write => &rules.write,
            Operation::Delete => &rules.delete,
        };
        let mut sets = Vec::new();
        for grant in grants {
            if grant.role != "*" && !principal.roles.contains(&grant.role) {
                continue;
            }
            let mut set = Vec::with_capacity(grant.conditions.len());
            let mut resolvable = true;
            for condition in &grant.conditions {
                let value = match &condition.operand {
                    Operand::Literal(value) => Some(value.clone()),
                    Operand::Claim(claim) if claim == "sub" => Some(Value::from(principal.sub.as_str())),
                    Operand::Claim(claim) => principal.claims.get(claim).and_then(|json| Value::from_json(json).ok()),
                };
                match value {
                    Some(value) => set.push((condition.field.clone(), value)),
                    // A claim the token lacks matches no row.
                    None => resolvable = false,
                }
            }
            if !resolvable {
                continue;
            }
            if set.is_empty() {
                return Access::All;
            }
            sets.push(set);
        }
        if sets.is_empty() { Access::Denied } else { Access::Rows(sets) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(sub: &str, roles: &[&str]) -> Principal {
        Principal {
            sub: sub.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            claims: BTreeMap::new(),
            expires_at_s: None,
        }
    }

    fn rules() -> Rules {
        let config: BTreeMap<String, RuleSpec> = toml::from_str(
            r#"
            [todos]
            read = [{ role = "user", when = "owner == auth.sub" }, { role = "admin" }]
            write = [{ role = "user", when = "owner == auth.sub && kind == \"todo\"" }]
            "#,
        )
        .unwrap();
        Rules::new(&config, false).unwrap()
    }

    fn doc(owner: &str) -> Document {
        Document::from([("owner".into(), Value::from(owner)), ("kind".into(), Value::from("todo"))])
    }

    #[test]
    fn row_conditions_resolve_claims_and_deny_by_default() {
        let rules = rules();
        let alice = user("alice", &["user"]);
        let read = rules.access(&alice, "todos", Operation::Read);
        assert!(read.allows(Some(&doc("alice"))));
        assert!(!read.allows(Some(&doc("bob"))));
        assert!(!read.allows(None));
        assert!(rules.access(&alice, "todos", Operation::Delete).is_denied());
        assert!(rules.access(&alice, "secrets", Operation::Read).is_denied());
        assert_eq!(rules.access(&user("root", &["admin"]), "todos", Operation::Read), Access::All);
        assert!(rules.access(&user("eve", &[]), "todos", Operation::Read).is_denied());
        let write = rules.access(&alice, "todos", Operation::Write);
        let mut note = doc("alice");
        note.insert("kind".into(), Value::from("note"));
        assert!(write.allows(Some(&doc("alice"))));
        assert!(!write.allows(Some(&note)));
    }

    #[test]
    fn bad_conditions_are_refused_with_the_offending_text() {
        let spec = RuleSpec {
            read: vec![GrantSpec { role: "x".into(), when: Some("owner = auth.sub".into()) }],
            ..RuleSpec::default()
        };
        assert!(spec.compile().unwrap_err().contains("owner = auth.sub"));
        let spec = RuleSpec {
            read: vec![GrantSpec { role: "x".into(), when: Some("owner == bob".into()) }],
            ..RuleSpec::default()
        };
        assert!(spec.compile().unwrap_err().contains("neither auth.<claim> nor a JSON literal"));
    }

    #[test]
    fn dev_mode_allows_everything() {
        let rules = Rules::new(&BTreeMap::new(), true).unwrap();
        assert_eq!(rules.access(&Principal::dev(), "anything", Operation::Delete), Access::All);
    }
}

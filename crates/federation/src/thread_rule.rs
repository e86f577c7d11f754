//! A pair's thread rule (federation-protocol.md §5.6): a CEL expression over `record` (the record
//! as stored) and `thread()` (its thread), evaluated by the source for every record a pair's
//! peer would be served. A record is served only when the rule answers `true`; an error, or any
//! other answer, serves nothing (fail closed).

use std::collections::HashMap;
use std::sync::Arc;

use cel_interpreter::objects::{Key, Map};
use cel_interpreter::{Context, Program, Value as Cel};
use serde_json::Value;
use syncropel_protocol::Refusal;

/// Longest rule accepted, in bytes.
pub const MAX_RULE_BYTES: usize = 4096;
/// Deepest nesting accepted: brackets, and unary operators in a row.
const MAX_NESTING: usize = 32;

/// How deep `source` nests: the most brackets open at once, or the longest run of unary `!` and
/// `-` (each a level of the interpreter's recursion), whichever is more.
fn nesting(source: &str) -> usize {
    let (mut depth, mut deepest, mut run, mut longest) = (0usize, 0usize, 0usize, 0usize);
    for c in source.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        match c {
            '!' | '-' => {
                run += 1;
                longest = longest.max(run);
            }
            c if c.is_whitespace() => {}
            _ => run = 0,
        }
    }
    deepest.max(longest)
}

/// A compiled thread rule.
pub struct ThreadRule {
    program: Program,
}

impl std::fmt::Debug for ThreadRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThreadRule")
    }
}

impl ThreadRule {
    /// Compiles `source`; a rule that does not parse is a `400 VALIDATION_ERROR` naming why.
    pub fn compile(source: &str) -> Result<ThreadRule, Refusal> {
        if source.len() > MAX_RULE_BYTES {
            return Err(Refusal::validation(format!(
                "a thread rule holds at most {MAX_RULE_BYTES} bytes"
            )));
        }
        // The interpreter recurses once per level of nesting, on a worker's stack.
        if nesting(source) > MAX_NESTING {
            return Err(Refusal::validation(format!(
                "a thread rule nests at most {MAX_NESTING} levels"
            )));
        }
        // The parser panics on some malformed literals (an integer out of range, an unknown
        // escape): such a rule is refused like any other that does not parse.
        let parsed = std::panic::catch_unwind(|| Program::compile(source));
        let program = match parsed {
            Ok(Ok(program)) => program,
            Ok(Err(e)) => {
                return Err(Refusal::validation(format!(
                    "the thread rule is not CEL: {e}"
                )))
            }
            Err(_) => return Err(Refusal::validation("the thread rule is not CEL")),
        };
        Ok(ThreadRule { program })
    }

    /// Whether the rule serves `record` (a stored record, as JSON) of `thread`. An evaluation
    /// that fails, or panics (the interpreter divides unchecked), serves nothing.
    pub fn admits(&self, thread: &str, record: &Value) -> bool {
        let mut context = Context::default();
        context.add_variable_from_value("record", cel(record));
        let thread = thread.to_string();
        context.add_function("thread", move || thread.clone());
        let program = std::panic::AssertUnwindSafe(&self.program);
        let context = std::panic::AssertUnwindSafe(&context);
        let answer = std::panic::catch_unwind(|| program.execute(&context));
        matches!(answer, Ok(Ok(Cel::Bool(true))))
    }
}

/// A JSON value as CEL sees it. Numbers are integers where they fit (unsigned past `i64`), else
/// doubles.
fn cel(value: &Value) -> Cel {
    match value {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Cel::Int(i),
            (None, Some(u), _) => Cel::UInt(u),
            (None, None, Some(f)) => Cel::Float(f),
            _ => Cel::Null,
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(cel).collect())),
        Value::Object(object) => {
            let map: HashMap<Key, Cel> = object
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), cel(v)))
                .collect();
            Cel::Map(Map { map: Arc::new(map) })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_rule_serves_what_it_answers_true_for_and_nothing_else() {
        let record =
            json!({"thread": "th_a", "body": {"kind": "music.track", "n": 3, "tags": ["x"]}});
        let admits = |rule: &str| ThreadRule::compile(rule).unwrap().admits("th_a", &record);
        assert!(admits("record.body.kind == 'music.track'"));
        assert!(admits("thread() == 'th_a' && record.body.n > 2"));
        assert!(admits("'x' in record.body.tags"));
        assert!(admits("thread().startsWith('th_')"));
        assert!(!admits("record.body.kind == 'other'"));
        assert!(
            !admits("record.body.missing == 1"),
            "an error serves nothing"
        );
        assert!(!admits("record.body.n"), "a non-boolean serves nothing");
        for broken in [
            "record.body.kind ==",
            "",
            "(",
            "record.",
            "1 +",
            "'open",
            "a[",
            "}",
            "a ? b",
        ] {
            assert!(ThreadRule::compile(broken).is_err(), "{broken:?} compiles");
        }
        assert!(ThreadRule::compile(&"a".repeat(MAX_RULE_BYTES + 1)).is_err());
        // Inputs the interpreter does not survive on its own.
        for hostile in [
            "99999999999999999999 == 1",
            "'\\q' == ''",
            &format!("{}true", "!".repeat(64)),
            &format!("{}1{}", "(".repeat(64), ")".repeat(64)),
        ] {
            assert!(
                ThreadRule::compile(hostile).is_err(),
                "{hostile:?} compiles"
            );
        }
        let zero = json!({"body": {"n": 0}});
        let rule = ThreadRule::compile("1 / record.body.n > 0").unwrap();
        assert!(
            !rule.admits("th_a", &zero),
            "a division by zero serves nothing"
        );
    }
}

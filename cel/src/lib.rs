//! CEL as zen-watcher runs it: every expression compiled with limits (length, nesting, depth),
//! evaluated against JSON inputs with a cost budget, so no expression can hang, overflow the
//! stack or exhaust memory. Admission policies and ingest pipelines both evaluate through here.
//!
//! The budget follows the spirit of Kubernetes' CEL cost limits: each comprehension
//! (`all`, `exists`, `exists_one`, `map`, `filter`) is charged for every element it visits and
//! every concatenation for the size it produces, counted while the expression runs.

mod budget;
mod compile;
mod convert;
mod memo;
mod regex;

use std::sync::{Arc, LazyLock};

pub use budget::{Budget, DEFAULT_BUDGET, EVAL_STACK, with_stack};
pub use compile::{MAX_AST_DEPTH, MAX_EXPRESSION_LENGTH, MAX_NESTING, compile};
pub use convert::{from_json, to_json};
pub use regex::MAX_PATTERN_LENGTH;

/// A compiled expression, ready to evaluate many times.
#[derive(Clone, Debug)]
pub struct Program {
    source: Arc<str>,
    expr: Arc<cel::IdedExpr>,
}

impl Program {
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates against `vars`, charging `budget`; the result converted to JSON.
    pub fn evaluate(
        &self,
        vars: &Variables,
        budget: &mut Budget,
    ) -> Result<serde_json::Value, EvalError> {
        let value = budget::run(budget, || cel::Value::resolve(&self.expr, &vars.context))?;
        to_json(&value)
    }

    /// Evaluates with one more variable bound on top of `vars` (an array element, say),
    /// without converting `vars` again.
    pub fn evaluate_with(
        &self,
        vars: &Variables,
        name: &str,
        value: &serde_json::Value,
        budget: &mut Budget,
    ) -> Result<serde_json::Value, EvalError> {
        let mut scope = vars.context.new_inner_scope();
        scope.add_variable_as_val(name, from_json(value));
        let value = budget::run(budget, || cel::Value::resolve(&self.expr, &scope))?;
        to_json(&value)
    }

    /// Evaluates to a boolean; anything else is an error.
    pub fn evaluate_bool(&self, vars: &Variables, budget: &mut Budget) -> Result<bool, EvalError> {
        match budget::run(budget, || cel::Value::resolve(&self.expr, &vars.context))? {
            cel::Value::Bool(b) => Ok(b),
            other => Err(EvalError::Type {
                want: "bool",
                got: other.type_of().to_string(),
            }),
        }
    }
}

/// Why a compiled expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Execution(String),
    #[error("evaluation exceeded its cost budget of {limit}")]
    Budget { limit: u64 },
    #[error("expected a {want} result, got {got}")]
    Type { want: &'static str, got: String },
    #[error("{0}")]
    Convert(String),
}

/// Why an expression was refused at compile time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CompileError(pub String);

/// The variables of one evaluation (`object`, `payload`, ...), converted to CEL once and
/// shared by every expression evaluated against them.
pub struct Variables {
    context: cel::Context<'static, 'static>,
}

/// The standard library, built once: building it registers hundreds of overloads.
static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| Arc::new(cel::Env::stdlib()));

impl Default for Variables {
    fn default() -> Self {
        Self::new()
    }
}

impl Variables {
    pub fn new() -> Self {
        let mut context = cel::Context::with_env(ENV.clone());
        budget::install(&mut context);
        Self { context }
    }

    /// Binds `name` to a JSON value.
    pub fn set(&mut self, name: &str, value: &serde_json::Value) {
        self.context.add_variable_as_val(name, from_json(value));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vars(payload: serde_json::Value) -> Variables {
        let mut v = Variables::new();
        v.set("payload", &payload);
        v
    }

    #[test]
    fn json_inputs_compare_as_ints_and_convert_back() {
        let v = vars(json!({"n": 5, "s": "a", "l": [1, 2], "m": {"k": true}}));
        let mut b = Budget::default();
        let p = compile("payload.n <= 1000 && payload.l.all(x, x > 0) && payload.m.k").unwrap();
        assert!(p.evaluate_bool(&v, &mut b).unwrap());
        let p = compile("{'sum': payload.l.map(x, x * 2), 'name': payload.s + 'b'}").unwrap();
        assert_eq!(
            p.evaluate(&v, &mut b).unwrap(),
            json!({"sum": [2, 4], "name": "ab"})
        );
        let p = compile("duration('5m')").unwrap();
        assert_eq!(p.evaluate(&v, &mut b).unwrap(), json!("300s"));
        assert!(b.spent() > 0);
    }

    #[test]
    fn matches_in_both_forms_with_bad_patterns_refused() {
        let v = vars(
            json!({"name": "web-1", "re": "^[a-z]+$", "bad": "(", "long": "a".repeat(MAX_PATTERN_LENGTH + 1)}),
        );
        let mut b = Budget::default();
        for (e, want) in [
            ("payload.name.matches('^[a-z0-9-]+$')", true),
            ("matches(payload.name, '^[a-z]+$')", false),
            ("payload.name.matches(payload.re)", false),
            ("payload.name.matches('web') && !'x'.matches('y')", true),
        ] {
            assert_eq!(
                compile(e).unwrap().evaluate_bool(&v, &mut b),
                Ok(want),
                "{e}"
            );
        }
        // A constant pattern is checked when the expression compiles ...
        let err = compile("payload.name.matches('(')").unwrap_err();
        assert!(err.0.contains("not a valid regular expression"), "{err}");
        // ... one from the input when it runs, and so is one past the length bound.
        for e in [
            "payload.name.matches(payload.bad)",
            "'a'.matches(payload.long)",
        ] {
            let err = compile(e).unwrap().evaluate_bool(&v, &mut b).unwrap_err();
            assert!(
                err.to_string().contains("not a valid regular expression")
                    || err.to_string().contains("characters long"),
                "{e}: {err}"
            );
        }
    }

    #[test]
    fn matching_is_charged_for_the_text_it_scans() {
        let v = vars(json!({"s": "x".repeat(1 << 20), "l": (0..100).collect::<Vec<_>>()}));
        let p = compile("payload.l.all(i, payload.s.matches('^x+$'))").unwrap();
        assert!(matches!(
            p.evaluate_bool(&v, &mut Budget::new(1 << 16)),
            Err(EvalError::Budget { .. })
        ));
    }

    #[test]
    fn non_bool_where_bool_is_needed_is_an_error() {
        let err = compile("'x'")
            .unwrap()
            .evaluate_bool(&vars(json!({})), &mut Budget::default())
            .unwrap_err();
        assert_eq!(err.to_string(), "expected a bool result, got string");
    }

    #[test]
    fn nested_comprehensions_run_out_of_budget_quickly() {
        let big: Vec<u32> = (0..10_000).collect();
        let v = vars(json!({"l": big}));
        let p =
            compile("payload.l.all(x, payload.l.all(y, payload.l.exists(z, z == x + y)))").unwrap();
        let mut b = Budget::new(20_000);
        assert_eq!(
            p.evaluate_bool(&v, &mut b),
            Err(EvalError::Budget { limit: 20_000 })
        );
        // One pass over the list is well within the budget, and map keeps its fast path.
        let mut b = Budget::default();
        let p = compile("payload.l.map(x, x + 1).filter(x, x % 2 == 0).size()").unwrap();
        assert_eq!(p.evaluate(&v, &mut b).unwrap(), json!(5000));
        assert!(b.spent() < 30_000, "{}", b.spent());
    }

    #[test]
    fn concatenation_is_charged_for_what_it_produces() {
        let v = vars(json!({"s": "x".repeat(1 << 20), "l": (0..1000).collect::<Vec<_>>()}));
        let p = compile("payload.l.map(i, payload.s + payload.s).size()").unwrap();
        assert!(matches!(
            p.evaluate(&v, &mut Budget::default()),
            Err(EvalError::Budget { .. })
        ));
    }

    #[test]
    fn one_budget_spans_several_evaluations() {
        let v = vars(json!({"l": (0..1000).collect::<Vec<_>>()}));
        let p = compile("payload.l.all(x, x >= 0)").unwrap();
        let mut b = Budget::new(2500);
        assert!(p.evaluate_bool(&v, &mut b).unwrap());
        assert!(p.evaluate_bool(&v, &mut b).unwrap());
        assert!(matches!(
            p.evaluate_bool(&v, &mut b),
            Err(EvalError::Budget { limit: 2500 })
        ));
    }

    #[test]
    fn deep_input_is_refused_not_a_stack_overflow() {
        for deep in [
            format!("{}1{}", "(".repeat(2500), ")".repeat(2500)),
            format!("{}true", "!".repeat(5000)),
            format!("{}1{}", "[".repeat(2500), "]".repeat(2500)),
            format!("{}1", "- ".repeat(2500)),
        ] {
            let err = compile(&deep).unwrap_err();
            assert!(
                err.0.contains("levels deep") || err.0.contains("characters long"),
                "{err}"
            );
        }
        let chain = vec!["1"; 200].join(" + ");
        assert!(compile(&chain).unwrap_err().0.contains("syntax tree"));
        // Brackets inside strings do not count.
        assert!(compile(&format!("'{}' == 'x'", "(".repeat(200))).is_ok());
    }

    #[test]
    fn the_deepest_accepted_expressions_evaluate_on_a_small_stack() {
        let nested = format!("{}1{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        let mut longest_chain = None;
        for n in (2..MAX_AST_DEPTH * 2).rev() {
            let chain = vec!["payload.n"; n].join(" + ");
            if compile(&chain).is_ok() {
                longest_chain = Some(chain);
                break;
            }
        }
        let chain = longest_chain.expect("some chain compiles");
        let comprehension = "payload.l.all(a, payload.l.all(b, payload.l.all(c, [a, b, c].exists(d, d.map(e, e + 1).size() > 0))))";
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let v = vars(json!({"n": 1, "l": [[1], [2]]}));
                for e in [nested.as_str(), chain.as_str(), comprehension] {
                    let p = compile(e).unwrap();
                    p.evaluate(&v, &mut Budget::default()).unwrap();
                }
            })
            .unwrap()
            .join()
            .expect("evaluated without overflowing the stack");
    }
}

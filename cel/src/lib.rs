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
mod direct;
mod memo;
mod regex;

use std::{
    borrow::Cow,
    cell::{OnceCell, RefCell},
    sync::{Arc, LazyLock},
};

pub use budget::{Budget, DEFAULT_BUDGET, EVAL_STACK, with_stack};
pub use compile::{MAX_AST_DEPTH, MAX_EXPRESSION_LENGTH, MAX_NESTING, check, compile};
pub use convert::{from_json, to_json};
pub use regex::MAX_PATTERN_LENGTH;
use serde_json::Value as Json;

/// A compiled expression, ready to evaluate many times.
#[derive(Clone, Debug)]
pub struct Program {
    source: Arc<str>,
    expr: Arc<cel::IdedExpr>,
    /// The same tree for direct evaluation, where it covers every node (see `direct`).
    direct: Option<Arc<direct::Node>>,
}

impl Program {
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression names the variable `name` (or a comprehension variable of
    /// that name, so a `false` is certain: the variable is never read).
    pub fn reads(&self, name: &str) -> bool {
        self.expr.references().has_variable(name)
    }

    /// Whether evaluations of this expression can skip the interpreter.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Evaluates against `vars`, charging `budget`; the result converted to JSON.
    pub fn evaluate(&self, vars: &Variables, budget: &mut Budget) -> Result<Json, EvalError> {
        if let Some(v) = self.direct(vars, None, budget, |v| v.to_json()) {
            return Ok(v);
        }
        self.evaluate_reference(vars, budget)
    }

    /// Evaluates with one more variable bound on top of `vars` (an array element, say),
    /// without converting `vars` again.
    pub fn evaluate_with<'v>(
        &self,
        vars: &Variables,
        name: &str,
        value: impl Into<Bound<'v>>,
        budget: &mut Budget,
    ) -> Result<Json, EvalError> {
        let value = value.into();
        if let Some(v) = self.direct(vars, Some((name, value)), budget, |v| v.to_json()) {
            return Ok(v);
        }
        to_json(&self.interpret_with(vars, name, value, budget)?)
    }

    /// Evaluates to a boolean; anything else is an error.
    pub fn evaluate_bool(&self, vars: &Variables, budget: &mut Budget) -> Result<bool, EvalError> {
        if let Some(b) = self.direct(vars, None, budget, direct_bool) {
            return Ok(b);
        }
        boolean(budget::run(budget, || {
            cel::Value::resolve(&self.expr, vars.context())
        })?)
    }

    fn interpret_with(
        &self,
        vars: &Variables,
        name: &str,
        value: Bound<'_>,
        budget: &mut Budget,
    ) -> Result<cel::Value, EvalError> {
        let mut scope = vars.context().new_inner_scope();
        scope.add_variable_as_val(name, value.interpreted());
        budget::run(budget, || cel::Value::resolve(&self.expr, &scope))
    }

    /// Evaluates with the interpreter only: the reference the direct evaluation agrees
    /// with, for tests and fuzzing.
    #[doc(hidden)]
    pub fn evaluate_reference(
        &self,
        vars: &Variables,
        budget: &mut Budget,
    ) -> Result<Json, EvalError> {
        let value = budget::run(budget, || cel::Value::resolve(&self.expr, vars.context()))?;
        to_json(&value)
    }

    /// The direct evaluation's finished result, charged to `budget`; `None` (and nothing
    /// charged) where the interpreter must decide.
    fn direct<'a, 'v: 'a, T>(
        &'a self,
        vars: &'a Variables<'v>,
        extra: Option<(&'a str, Bound<'a>)>,
        budget: &mut Budget,
        finish: impl FnOnce(direct::Val<'a>) -> Result<T, direct::Unknown>,
    ) -> Option<T> {
        let node = self.direct.as_deref()?;
        let (out, left) = direct::evaluate(node, vars, extra, budget.remaining, finish)?;
        budget.remaining = left;
        Some(out)
    }
}

fn direct_bool(v: direct::Val<'_>) -> Result<bool, direct::Unknown> {
    match v {
        direct::Val::Bool(b) => Ok(b),
        _ => Err(direct::Unknown),
    }
}

fn boolean(v: cel::Value) -> Result<bool, EvalError> {
    match v {
        cel::Value::Bool(b) => Ok(b),
        other => Err(EvalError::Type {
            want: "bool",
            got: other.type_of().to_string(),
        }),
    }
}

/// A value bound on top of the variables for one evaluation: JSON, or a document's value.
#[derive(Debug, Clone, Copy)]
pub enum Bound<'v> {
    Json(&'v Json),
    Document(zen_json::Value<'v>),
}

impl Bound<'_> {
    /// The interpreter's value: a document's is converted through JSON.
    fn interpreted(self) -> Box<dyn cel::common::value::Val> {
        match self {
            Bound::Json(json) => from_json(json),
            Bound::Document(doc) => from_json(&doc.to_serde()),
        }
    }
}

impl<'v> From<&'v Json> for Bound<'v> {
    fn from(json: &'v Json) -> Self {
        Self::Json(json)
    }
}

impl<'v> From<zen_json::Value<'v>> for Bound<'v> {
    fn from(value: zen_json::Value<'v>) -> Self {
        Self::Document(value)
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

/// The variables of one evaluation (`object`, `payload`, ...), shared by every expression
/// evaluated against them: read in place by direct evaluation, converted for the
/// interpreter once, on its first use.
pub struct Variables<'a> {
    values: Vec<(&'static str, Input<'a>)>,
    context: OnceCell<cel::Context<'static, 'static>>,
    /// What paths from borrowed inputs led to, for every expression evaluated against
    /// these variables.
    paths: RefCell<Paths<'a>>,
}

/// Paths found for one binding of the variables, by path number (`direct::paths`): the
/// latest path of each number modulo the slots, so a lookup is two reads. A policy set's
/// paths are numbered one after another, so they seldom share a slot; one that does is
/// walked again.
struct Paths<'a> {
    /// Per slot, the place in `found` plus one; 0 for none.
    slots: [u8; PATH_SLOTS],
    found: Vec<(u32, Option<Bound<'a>>)>,
}

impl Default for Paths<'_> {
    fn default() -> Self {
        Self {
            slots: [0; PATH_SLOTS],
            found: Vec::new(),
        }
    }
}

/// Slots of remembered paths.
const PATH_SLOTS: usize = 64;

/// Paths remembered per binding at most (places in `found` fit a `u8` slot).
const MAX_REMEMBERED_PATHS: usize = 255;

/// A variable's value: JSON, or a value of a document, which only the interpreter converts.
pub(crate) enum Input<'a> {
    Json(Cow<'a, Json>),
    Document(zen_json::Value<'a>),
}

impl Input<'_> {
    /// The value, borrowed for as long as the input is.
    pub(crate) fn bound(&self) -> Bound<'_> {
        match self {
            Input::Json(json) => Bound::Json(json),
            Input::Document(doc) => Bound::Document(*doc),
        }
    }
}

/// The standard library, built once: building it registers hundreds of overloads.
static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| Arc::new(cel::Env::stdlib()));

impl Default for Variables<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Variables<'a> {
    pub fn new() -> Self {
        Self {
            values: Vec::new(),
            context: OnceCell::new(),
            paths: RefCell::default(),
        }
    }

    /// Binds `name` to a JSON value, borrowed.
    pub fn set(&mut self, name: &'static str, value: &'a Json) {
        self.bind(name, Cow::Borrowed(value));
    }

    /// Binds `name` to a JSON value the variables keep.
    pub fn set_owned(&mut self, name: &'static str, value: Json) {
        self.bind(name, Cow::Owned(value));
    }

    /// Binds `name` to a value of a document, read in place.
    pub fn set_document(&mut self, name: &'static str, value: zen_json::Value<'a>) {
        self.bind_input(name, Input::Document(value));
    }

    fn bind(&mut self, name: &'static str, value: Cow<'a, Json>) {
        self.bind_input(name, Input::Json(value));
    }

    fn bind_input(&mut self, name: &'static str, value: Input<'a>) {
        self.values.retain(|(n, _)| *n != name);
        if self.values.capacity() == 0 {
            self.values.reserve(4);
        }
        self.values.push((name, value));
        self.context = OnceCell::new();
        let paths = self.paths.get_mut();
        paths.slots = [0; PATH_SLOTS];
        paths.found.clear();
    }

    /// Where `root.fields…` leads (`None` inside: nowhere), found once for these
    /// variables; `None` where the root is not a borrowed input (a value the variables own
    /// is not kept past them).
    pub(crate) fn path(
        &self,
        id: u32,
        root: &str,
        fields: &[zen_json::Key],
    ) -> Option<Option<Bound<'a>>> {
        let mut paths = self.paths.borrow_mut();
        let slot = id as usize % PATH_SLOTS;
        let place = usize::from(paths.slots[slot]);
        if let Some(&(at, found)) = place.checked_sub(1).and_then(|i| paths.found.get(i))
            && at == id
        {
            return Some(found);
        }
        let start = match self.get(root)? {
            Input::Json(Cow::Borrowed(json)) => Bound::Json(json),
            Input::Document(doc) => Bound::Document(*doc),
            Input::Json(Cow::Owned(_)) => return None,
        };
        let found = direct::paths::follow(start, fields);
        if paths.found.len() < MAX_REMEMBERED_PATHS {
            if paths.found.capacity() == 0 {
                // Room for what a policy set reads at once, instead of growing by doubling.
                paths.found.reserve(32);
            }
            paths.found.push((id, found));
            paths.slots[slot] = u8::try_from(paths.found.len()).unwrap_or(0);
        }
        Some(found)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Input<'a>> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The interpreter's context, converted on first use.
    fn context(&self) -> &cel::Context<'static, 'static> {
        self.context.get_or_init(|| {
            let mut context = cel::Context::with_env(ENV.clone());
            budget::install(&mut context);
            for (name, value) in &self.values {
                context.add_variable_as_val(*name, value.bound().interpreted());
            }
            context
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vars(payload: serde_json::Value) -> Variables<'static> {
        let mut v = Variables::new();
        v.set_owned("payload", payload);
        v
    }

    /// Compiles `e` (which must lower for direct evaluation) and evaluates it both ways:
    /// the answers and the charges must agree; the answer is returned.
    fn agreed(e: &str, v: &Variables) -> (Program, Result<serde_json::Value, EvalError>) {
        let p = compile(e).unwrap();
        assert!(p.is_direct(), "{e}");
        let (mut direct, mut reference) = (Budget::default(), Budget::default());
        let got = p.evaluate(v, &mut direct);
        assert_eq!(got, p.evaluate_reference(v, &mut reference), "{e}");
        assert_eq!(direct.spent(), reference.spent(), "{e}");
        (p, got)
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

    /// What policies and CRD rules are made of runs without the interpreter, with its
    /// answers and charges.
    #[test]
    fn policy_expressions_evaluate_directly_as_the_interpreter_does() {
        let object = json!({
            "metadata": {"name": "web", "namespace": "team-a", "labels": {"app": "x"}},
            "spec": {
                "sources": [
                    {"name": "github", "type": "webhook", "auth": {"type": "hmac", "secretRef": {"name": "s"}},
                     "rateLimit": {"requestsPerSecond": 50, "burst": 100}},
                    {"name": "events", "type": "kubernetesEvents"}
                ],
                "ttl": {"default": "24h", "max": "720h"},
                "mapping": {"severity": "'high'"}
            }
        });
        let mut v = Variables::new();
        v.set("object", &object);
        v.set_owned("request", json!({"operation": "CREATE", "namespace": "team-a", "userInfo": {"username": "alice"}}));
        v.set_owned("oldObject", serde_json::Value::Null);
        for (e, want) in [
            (
                "object.spec.sources.all(s, !has(s.rateLimit) || s.rateLimit.requestsPerSecond <= 1000)",
                json!(true),
            ),
            (
                "!has(object.spec.ttl) || !has(object.spec.ttl.max) || duration(object.spec.ttl.max) <= duration('720h')",
                json!(true),
            ),
            (
                "object.spec.sources.all(s, s.type != 'webhook' || s.auth.type != 'none')",
                json!(true),
            ),
            (
                "object.spec.sources.all(s, s.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))",
                json!(true),
            ),
            (
                "object.spec.sources.map(s, s.name).all(n, object.spec.sources.exists_one(t, t.name == n))",
                json!(true),
            ),
            (
                "!has(object.metadata.labels) || object.metadata.labels.all(k, k.size() <= 63)",
                json!(true),
            ),
            (
                "!has(object.metadata.labels) || !('zen.watcher.io/frozen' in object.metadata.labels)",
                json!(true),
            ),
            (
                "request.operation in ['CREATE', 'UPDATE'] && request.userInfo.username != 'system:anonymous'",
                json!(true),
            ),
            (
                "request.operation != 'UPDATE' || object.metadata.name == oldObject.metadata.name",
                json!(true),
            ),
            (
                "'Ingestor ' + object.metadata.name + ' in ' + request.namespace",
                json!("Ingestor web in team-a"),
            ),
            (
                "has(object.spec.ttl) && duration(object.spec.ttl.max) < duration('168h') ? object.spec.ttl.max : '168h'",
                json!("168h"),
            ),
            (
                "object.spec.sources[0].type == 'webhook' ? {'requestsPerSecond': 50, 'burst': 100} : null",
                json!({"requestsPerSecond": 50, "burst": 100}),
            ),
            (
                "object.spec.sources.filter(s, s.type == 'webhook').map(s, s.name + '!')",
                json!(["github!"]),
            ),
            (
                "size(object.spec.sources) * 10 / 3 - 1 + object.spec.sources.size() % 2",
                json!(5),
            ),
            (
                "string(size(object.metadata.name)) + 'x' == '3x' && object.metadata.name.startsWith('w') && 'web'.endsWith('b') && object.metadata.name.contains('e')",
                json!(true),
            ),
            (
                "!object.spec.sources.exists(s, s.type == 'webhook') || has(object.spec.mapping)",
                json!(true),
            ),
            (
                "[size(''), size('héllo'), size('日本'), size('🦀x'), size('a' + '\\u00e9')]",
                json!([0, 5, 2, 2, 2]),
            ),
            (
                "object.spec.sources.exists(s, s.type == 'webhook' || s.type == 'kubernetesEvents')",
                json!(true),
            ),
            // A literal on either side; operands that are not strings compare as unequal.
            (
                "'webhook' == object.spec.sources[0].type && 'x' != object.metadata.name",
                json!(true),
            ),
            (
                "[object.spec.sources[0].rateLimit.burst == '100', object.metadata.labels != 'x', null == 'a']",
                json!([false, true, false]),
            ),
            (
                "[object.metadata.name.matches('^w.b$'), object.spec.sources.exists(s, s.name.matches('^e'))]",
                json!([true, true]),
            ),
        ] {
            assert_eq!(agreed(e, &v).1, Ok(want), "{e}");
        }
        // Where the direct evaluation cannot answer, the interpreter does, with its message.
        for e in [
            "object.spec.nope == 1",
            "object.metadata.name + 1",
            "1 == 1u",
            "object.spec.sources[0].rateLimit.burst.matches('1')",
            "object.spec.nope == 'a'",
        ] {
            // The agreement is the check: these answers are errors, or the interpreter's.
            let _ = agreed(e, &v);
        }
        assert_eq!(
            compile("1 == 1u")
                .unwrap()
                .evaluate(&v, &mut Budget::default()),
            Ok(json!(true))
        );
    }

    /// Comprehension variables are resolved when lowering, by their place in the scope: an
    /// inner one shadows an outer one of the same name, an inner body still sees the outer
    /// ones, and a binding of the caller's (`self`) stays below them all.
    #[test]
    fn comprehension_variables_resolve_as_the_interpreter_does() {
        let v = vars(json!({"l": [1, 2, 3], "m": {"a": [1], "b": [2, 2]}}));
        let element = json!({"n": 2, "items": [2, 4]});
        for (e, want) in [
            ("payload.l.all(x, [7].all(x, x == 7))", json!(true)),
            (
                "payload.l.exists(x, [x].all(y, y == x) && x == 3)",
                json!(true),
            ),
            (
                "payload.l.map(x, payload.l.filter(y, y < x).size())",
                json!([0, 1, 2]),
            ),
            (
                "payload.m.all(k, payload.m[k].all(x, x == size(k) || x == 2))",
                json!(true),
            ),
            ("payload.l.map(x, x * self.n)", json!([2, 4, 6])),
            (
                "self.items.all(i, i % self.n == 0) && [self].exists(self, self.n == 2)",
                json!(true),
            ),
        ] {
            let p = compile(e).unwrap();
            assert!(p.is_direct(), "{e}");
            let (mut direct, mut reference) = (Budget::default(), Budget::default());
            let got = p.evaluate_with(&v, "self", &element, &mut direct);
            assert_eq!(got, Ok(want), "{e}");
            let interpreted = p
                .interpret_with(&v, "self", Bound::Json(&element), &mut reference)
                .and_then(|r| to_json(&r));
            assert_eq!(got, interpreted, "{e}");
            assert_eq!(direct.spent(), reference.spent(), "{e}");
        }
    }

    /// `all` and `exists` run as quantifiers: an element that decides absorbs an error in
    /// another, before or after it, and an error nothing absorbs is the interpreter's.
    #[test]
    fn quantifiers_absorb_errors_as_the_interpreter_does() {
        let v = vars(json!({"l": [1, "a", 0], "ok": [1, 2]}));
        for e in [
            "payload.l.all(x, x > 0)",
            "payload.l.exists(x, x == 0)",
            "payload.l.exists(x, x == 1)",
            "payload.l.all(x, x != 2)",
            "payload.l.exists(x, x > 4)",
            "payload.l.all(x, x)",
            "payload.ok.all(x, x > 0) && !payload.ok.exists(x, x > 2)",
            "payload.ok.exists(x, payload.ok.all(y, y <= x))",
            "[].all(x, x) && ![].exists(x, x)",
        ] {
            let (p, _) = agreed(e, &v);
            assert!(format!("{:?}", p.direct).contains("Quantifier"), "{e}");
        }
        let mut b = Budget::default();
        let answer = |e: &str, b: &mut Budget| compile(e).unwrap().evaluate(&v, b);
        assert_eq!(answer("payload.l.all(x, x > 0)", &mut b), Ok(json!(false)));
        assert_eq!(
            answer("payload.l.exists(x, x == 1)", &mut b),
            Ok(json!(true))
        );
        assert!(answer("payload.l.exists(x, x > 4)", &mut b).is_err());
    }

    /// A path from a borrowed input is found once for every expression evaluated against the
    /// same variables, and answers as selecting it would: a binding of the same name still
    /// shadows the input, a missing field still goes to the interpreter's error, and
    /// variables bound again forget what they found.
    #[test]
    fn paths_found_once_answer_as_selecting_them_does() {
        let object = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"n": 3}});
        let other = json!({"metadata": {"name": "b"}});
        let mut v = Variables::new();
        v.set("object", &object);
        let element = json!({"metadata": {"name": "self's"}});
        let cases = [
            ("object.metadata.name", json!("a")),
            ("object.metadata.name + object.metadata.name", json!("aa")),
            (
                "has(object.metadata.labels) && object.metadata.labels.x == '1'",
                json!(true),
            ),
            ("object.spec.n * 2", json!(6)),
        ];
        for _ in 0..2 {
            for (e, want) in &cases {
                let p = compile(e).unwrap();
                assert!(p.is_direct(), "{e}");
                let (mut direct, mut reference) = (Budget::default(), Budget::default());
                assert_eq!(p.evaluate(&v, &mut direct), Ok(want.clone()), "{e}");
                assert_eq!(
                    p.evaluate_reference(&v, &mut reference),
                    Ok(want.clone()),
                    "{e}"
                );
                assert_eq!(direct.spent(), reference.spent(), "{e}");
            }
        }
        // Missing on the way: the interpreter's error, however often asked.
        let missing = compile("object.spec.absent.deeper").unwrap();
        for _ in 0..2 {
            let got = missing.evaluate(&v, &mut Budget::default());
            assert_eq!(got, missing.evaluate_reference(&v, &mut Budget::default()));
            assert!(got.is_err());
        }
        // `object` bound by the caller over the input of that name.
        let p = compile("object.metadata.name").unwrap();
        assert_eq!(
            p.evaluate_with(&v, "object", &element, &mut Budget::default()),
            Ok(json!("self's"))
        );
        assert_eq!(p.evaluate(&v, &mut Budget::default()), Ok(json!("a")));
        // Bound again: the new value's path.
        v.set("object", &other);
        assert_eq!(p.evaluate(&v, &mut Budget::default()), Ok(json!("b")));
    }

    /// More paths than slots: paths sharing a slot take it from each other and still answer
    /// with their own values, in any order, and a new binding is never answered from the
    /// old one's slots.
    #[test]
    fn paths_sharing_a_slot_answer_with_their_own_values() {
        let n = 3 * PATH_SLOTS + 5;
        let fields: serde_json::Map<String, serde_json::Value> =
            (0..n).map(|i| (format!("f{i}"), json!(i))).collect();
        let object = serde_json::Value::Object(fields);
        let programs: Vec<Program> = (0..n)
            .map(|i| compile(&format!("object.f{i}")).unwrap())
            .collect();
        let mut v = Variables::new();
        v.set("object", &object);
        for order in [1, 7, PATH_SLOTS + 1] {
            for k in 0..n {
                let i = (k * order) % n;
                assert_eq!(
                    programs[i].evaluate(&v, &mut Budget::default()),
                    Ok(json!(i)),
                    "f{i}"
                );
            }
        }
        let other = json!({"f0": "other"});
        v.set("object", &other);
        assert_eq!(
            programs[0].evaluate(&v, &mut Budget::default()),
            Ok(json!("other"))
        );
        assert!(programs[1].evaluate(&v, &mut Budget::default()).is_err());
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

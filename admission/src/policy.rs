//! IngestorPolicies, compiled once per change of the policy set and evaluated per request.
//!
//! Semantics follow ValidatingAdmissionPolicy: `namespaceSelector` and every `matchCondition`
//! decide whether a policy applies; each failed validation is a denial, a warning or an audit
//! annotation according to `validationActions`; an expression that cannot be evaluated (an
//! error, a wrong type, the cost budget spent) is a failure under `failurePolicy: Fail` and
//! skipped under `Ignore`. Mutations are all evaluated against the object as it was sent, so
//! their order does not matter.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Value, json};
use zen_cel::{Budget, EvalError, Program, Variables};
use zen_crds::{
    IngestorPolicy,
    policy::{FailurePolicy, ValidationAction, ValidationReason},
};

use crate::{
    expressions::{self, CompileError},
    mutation,
};

struct CompiledValidation {
    program: Program,
    /// Its place among the set's distinct boolean expressions (see [`Results`]), given when
    /// the policy joins a [`PolicySet`].
    slot: usize,
    message: Option<String>,
    message_expression: Option<Program>,
    reason: ValidationReason,
}

struct CompiledMutation {
    path: String,
    segments: Vec<String>,
    program: Program,
    overwrite: bool,
}

struct MatchCondition {
    name: String,
    program: Program,
    /// As [`CompiledValidation::slot`].
    slot: usize,
}

/// One policy, ready to evaluate.
pub struct CompiledPolicy {
    pub name: String,
    namespace_selector: Option<LabelSelector>,
    match_conditions: Vec<MatchCondition>,
    validations: Vec<CompiledValidation>,
    mutations: Vec<CompiledMutation>,
    actions: Vec<ValidationAction>,
    failure_policy: FailurePolicy,
}

/// Why a policy cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Compile(#[from] CompileError),
    #[error("spec.mutations[{index}].path: Invalid value: {error}")]
    Path {
        index: usize,
        error: mutation::PathError,
    },
}

impl CompiledPolicy {
    pub fn compile(policy: &IngestorPolicy) -> Result<Self, Vec<PolicyError>> {
        let spec = &policy.spec;
        // `of_policy` lists match conditions, then each validation's expression and message
        // expression, then the mutations: the programs are taken back in that order, one slot
        // per expression whether it compiled or not.
        let compiled = expressions::compile_each(&expressions::of_policy(spec));
        let mut errors: Vec<PolicyError> = compiled
            .iter()
            .filter_map(|r| r.as_ref().err().cloned().map(PolicyError::from))
            .collect();
        let mut programs = compiled.into_iter().map(Result::ok);
        let mut next = || programs.next().flatten();
        let match_conditions: Vec<MatchCondition> = spec
            .match_conditions
            .iter()
            .filter_map(|c| {
                Some(MatchCondition {
                    name: c.name.clone(),
                    program: next()?,
                    slot: 0,
                })
            })
            .collect();
        let validations: Vec<CompiledValidation> = spec
            .validations
            .iter()
            .filter_map(|v| {
                let program = next();
                let message_expression = v.message_expression.as_ref().and_then(|_| next());
                Some(CompiledValidation {
                    program: program?,
                    slot: 0,
                    message: v.message.clone(),
                    message_expression,
                    reason: v.reason.unwrap_or(ValidationReason::Invalid),
                })
            })
            .collect();
        let mut mutations = Vec::new();
        for (index, m) in spec.mutations.iter().enumerate() {
            let program = next();
            match (mutation::parse(&m.path), program) {
                (Ok(segments), Some(program)) => mutations.push(CompiledMutation {
                    path: m.path.clone(),
                    segments,
                    program,
                    overwrite: m.overwrite,
                }),
                (Err(error), _) => errors.push(PolicyError::Path { index, error }),
                (Ok(_), None) => {}
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            name: policy.metadata.name.clone().unwrap_or_default(),
            namespace_selector: spec.namespace_selector.clone(),
            match_conditions,
            validations,
            mutations,
            actions: if spec.validation_actions.is_empty() {
                vec![ValidationAction::Deny]
            } else {
                spec.validation_actions.clone()
            },
            failure_policy: spec.failure_policy.unwrap_or_default(),
        })
    }

    /// Every program of the policy.
    fn programs(&self) -> impl Iterator<Item = &Program> {
        let conditions = self.match_conditions.iter().map(|c| &c.program);
        let validations = self
            .validations
            .iter()
            .flat_map(|v| std::iter::once(&v.program).chain(&v.message_expression));
        let mutations = self.mutations.iter().map(|m| &m.program);
        conditions.chain(validations).chain(mutations)
    }

    /// Whether the policy applies: namespace labels, then match conditions. An evaluation
    /// error is returned for the failure policy to decide.
    fn applies(
        &self,
        namespace_labels: Option<&BTreeMap<String, String>>,
        vars: &Variables,
        results: &mut Results,
        budget: &mut Budget,
    ) -> Result<bool, String> {
        if let Some(selector) = &self.namespace_selector {
            let empty = BTreeMap::new();
            if !selector_matches(selector, namespace_labels.unwrap_or(&empty)) {
                return Ok(false);
            }
        }
        for c in &self.match_conditions {
            match results.evaluate(c.slot, &c.program, vars, budget) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) => return Err(format!("matchCondition {:?}: {e}", c.name)),
            }
        }
        Ok(true)
    }
}

/// A failed validation or policy error that refuses the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub message: String,
    pub reason: ValidationReason,
}

impl Denial {
    pub fn code(&self) -> u16 {
        match self.reason {
            ValidationReason::Unauthorized => 401,
            ValidationReason::Forbidden => 403,
            ValidationReason::Invalid => 422,
            ValidationReason::RequestEntityTooLarge => 413,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self.reason {
            ValidationReason::Unauthorized => "Unauthorized",
            ValidationReason::Forbidden => "Forbidden",
            ValidationReason::Invalid => "Invalid",
            ValidationReason::RequestEntityTooLarge => "RequestEntityTooLarge",
        }
    }
}

/// What the policies said about one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub denials: Vec<Denial>,
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
    /// JSON patch operations (mutation only).
    pub patch: Vec<mutation::PatchOp>,
    /// What each policy came to, by its place in the set, for metrics.
    pub evaluations: Vec<(usize, Evaluation)>,
}

/// What one policy came to for one request; declared in [`Evaluation::ALL`]'s order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluation {
    Allowed,
    Denied,
    Warned,
    Audited,
    Error,
    Skipped,
}

impl Evaluation {
    pub const ALL: [Evaluation; 6] = [
        Self::Allowed,
        Self::Denied,
        Self::Warned,
        Self::Audited,
        Self::Error,
        Self::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Warned => "warned",
            Self::Audited => "audited",
            Self::Error => "error",
            Self::Skipped => "skipped",
        }
    }
}

/// The results of the set's distinct boolean expressions for one request. Policies often
/// share an expression (the same match condition, say); it is pure over the request's
/// variables, so it is evaluated once and its result, or error, read by every policy after.
struct Results(Vec<Option<Result<bool, EvalError>>>);

impl Results {
    fn new(slots: usize) -> Self {
        Self(vec![None; slots])
    }

    fn evaluate(
        &mut self,
        slot: usize,
        program: &Program,
        vars: &Variables,
        budget: &mut Budget,
    ) -> Result<bool, EvalError> {
        match self.0.get(slot) {
            Some(Some(known)) => known.clone(),
            _ => {
                let result = program.evaluate_bool(vars, budget);
                if let Some(place) = self.0.get_mut(slot) {
                    *place = Some(result.clone());
                }
                result
            }
        }
    }
}

/// The compiled policies in force, sorted by name.
#[derive(Default)]
pub struct PolicySet {
    policies: Vec<CompiledPolicy>,
    /// Distinct boolean expressions (match conditions and validations) over all policies.
    slots: usize,
    /// Whether any expression reads `oldObject`: only then is a review's old object read.
    reads_old_object: bool,
}

impl PolicySet {
    /// Compiles `policies`; the ones that fail are left out and returned with their errors.
    pub fn compile(policies: &[IngestorPolicy]) -> (Self, Vec<(String, Vec<PolicyError>)>) {
        let mut out = Vec::new();
        let mut failed = Vec::new();
        for p in policies {
            match CompiledPolicy::compile(p) {
                Ok(c) => out.push(c),
                Err(e) => failed.push((p.metadata.name.clone().unwrap_or_default(), e)),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        let mut slots: HashMap<String, usize> = HashMap::new();
        let mut slot_of = |program: &Program| {
            let next = slots.len();
            *slots.entry(program.source().to_owned()).or_insert(next)
        };
        for p in &mut out {
            for c in &mut p.match_conditions {
                c.slot = slot_of(&c.program);
            }
            for v in &mut p.validations {
                v.slot = slot_of(&v.program);
            }
        }
        let slots = slots.len();
        let reads_old_object = out
            .iter()
            .flat_map(CompiledPolicy::programs)
            .any(|p| p.reads("oldObject"));
        (
            Self {
                policies: out,
                slots,
                reads_old_object,
            },
            failed,
        )
    }

    pub fn reads_old_object(&self) -> bool {
        self.reads_old_object
    }

    /// The policies' names, in the order `Outcome::evaluations` refers to them by.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| p.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Runs every applicable policy's validations.
    pub fn validate(
        &self,
        namespace_labels: Option<&BTreeMap<String, String>>,
        vars: &Variables,
        budget: &mut Budget,
    ) -> Outcome {
        let mut pass = Pass::new(namespace_labels, vars, self, budget);
        for (index, p) in self.policies.iter().enumerate() {
            if !pass.applies(index, p) {
                continue;
            }
            let mut failures = Vec::new();
            let mut errored = false;
            for v in &p.validations {
                let result = pass.evaluate(v.slot, &v.program);
                if result == Ok(true) {
                    continue;
                }
                // Ignored errors only show in the policy metrics.
                errored |= result.is_err();
                if result.is_err() && p.failure_policy == FailurePolicy::Ignore {
                    continue;
                }
                failures.push(failure(v, result, vars, pass.budget));
            }
            record(index, p, failures, errored, &mut pass.out);
        }
        pass.out
    }

    /// Runs every applicable policy's mutations on `object`, recording the patch (the object
    /// itself is left as it is: each mutation sees what the earlier ones wrote through the
    /// patch).
    pub fn mutate(
        &self,
        namespace_labels: Option<&BTreeMap<String, String>>,
        vars: &Variables,
        object: zen_json::Value<'_>,
        budget: &mut Budget,
    ) -> Outcome {
        let mut pass = Pass::new(namespace_labels, vars, self, budget);
        for (index, p) in self.policies.iter().enumerate() {
            if p.mutations.is_empty() || !pass.applies(index, p) {
                continue;
            }
            let mut result = Evaluation::Allowed;
            for m in &p.mutations {
                // Under a `*`, the value is computed per element, with `self` bound to it; a
                // null value leaves the element alone.
                let mut value = |element: Option<mutation::Place<'_>>| {
                    let v = match element {
                        Some(e) => m.program.evaluate_with(vars, "self", e, pass.budget),
                        None => m.program.evaluate(vars, pass.budget),
                    };
                    v.map(|v| (!v.is_null()).then_some(v))
                        .map_err(|e| e.to_string())
                };
                let patch = &mut pass.out.patch;
                let applied = mutation::apply(object, &m.segments, &mut value, m.overwrite, patch)
                    .map_err(|e| e.to_string());
                if let Err(e) = applied {
                    result = Evaluation::Error;
                    if p.failure_policy == FailurePolicy::Fail {
                        pass.out.denials.push(Denial {
                            message: format!(
                                "IngestorPolicy {:?} could not apply its mutation of {}: {e}",
                                p.name, m.path
                            ),
                            reason: ValidationReason::Invalid,
                        });
                    }
                }
            }
            pass.out.evaluations.push((index, result));
        }
        pass.out
    }
}

/// One request's pass over the policy set: its variables, the shared expressions evaluated
/// so far, the budget left and what the policies have said.
struct Pass<'p, 'v> {
    namespace_labels: Option<&'p BTreeMap<String, String>>,
    vars: &'p Variables<'v>,
    results: Results,
    budget: &'p mut Budget,
    out: Outcome,
}

impl<'p, 'v> Pass<'p, 'v> {
    fn new(
        namespace_labels: Option<&'p BTreeMap<String, String>>,
        vars: &'p Variables<'v>,
        set: &PolicySet,
        budget: &'p mut Budget,
    ) -> Self {
        Self {
            namespace_labels,
            vars,
            results: Results::new(set.slots),
            budget,
            out: Outcome {
                // One or more per policy.
                evaluations: Vec::with_capacity(set.policies.len()),
                ..Outcome::default()
            },
        }
    }

    fn evaluate(&mut self, slot: usize, program: &Program) -> Result<bool, EvalError> {
        self.results.evaluate(slot, program, self.vars, self.budget)
    }

    /// Whether `p` (at `index` in the set) applies, recording a skip or an evaluation error
    /// when it does not.
    fn applies(&mut self, index: usize, p: &CompiledPolicy) -> bool {
        match p.applies(
            self.namespace_labels,
            self.vars,
            &mut self.results,
            self.budget,
        ) {
            Ok(true) => true,
            Ok(false) => {
                self.out.evaluations.push((index, Evaluation::Skipped));
                false
            }
            Err(e) => {
                policy_error(index, p, &e, &mut self.out);
                false
            }
        }
    }
}

/// A validation that failed (`Ok(false)`) or could not be evaluated: its message, expression
/// and reason. Out of line, since most requests pass.
#[cold]
#[inline(never)]
fn failure(
    v: &CompiledValidation,
    result: Result<bool, EvalError>,
    vars: &Variables,
    budget: &mut Budget,
) -> (String, String, ValidationReason) {
    let expression = v.program.source();
    let message = match result {
        Ok(_) => v
            .message_expression
            .as_ref()
            .and_then(|m| m.evaluate(vars, budget).ok())
            .and_then(|m| m.as_str().map(str::to_owned))
            .filter(|m| !m.trim().is_empty())
            .or_else(|| v.message.clone())
            .unwrap_or_else(|| format!("failed expression: {expression}")),
        Err(e) => format!("expression {expression:?} could not be evaluated: {e}"),
    };
    (message, expression.to_owned(), v.reason)
}

#[cold]
#[inline(never)]
fn policy_error(index: usize, p: &CompiledPolicy, error: &str, out: &mut Outcome) {
    out.evaluations.push((index, Evaluation::Error));
    if p.failure_policy == FailurePolicy::Fail {
        out.denials.push(Denial {
            message: format!(
                "IngestorPolicy {:?} could not be evaluated: {error}",
                p.name
            ),
            reason: ValidationReason::Invalid,
        });
    }
}

fn record(
    index: usize,
    p: &CompiledPolicy,
    failures: Vec<(String, String, ValidationReason)>,
    errored: bool,
    out: &mut Outcome,
) {
    if failures.is_empty() {
        let result = if errored {
            Evaluation::Error
        } else {
            Evaluation::Allowed
        };
        out.evaluations.push((index, result));
        return;
    }
    record_failures(index, p, &failures, out);
}

/// What a policy's actions make of its failed validations: out of line, since most
/// requests pass.
#[cold]
#[inline(never)]
fn record_failures(
    index: usize,
    p: &CompiledPolicy,
    failures: &[(String, String, ValidationReason)],
    out: &mut Outcome,
) {
    for action in &p.actions {
        match action {
            ValidationAction::Deny => {
                out.evaluations.push((index, Evaluation::Denied));
                out.denials
                    .extend(failures.iter().map(|(message, expression, reason)| Denial {
                        message: format!(
                            "IngestorPolicy {:?} denied the request: {message} (expression: {expression})",
                            p.name
                        ),
                        reason: *reason,
                    }));
            }
            ValidationAction::Warn => {
                out.evaluations.push((index, Evaluation::Warned));
                out.warnings.extend(
                    failures
                        .iter()
                        .map(|(message, _, _)| format!("IngestorPolicy {:?}: {message}", p.name)),
                );
            }
            ValidationAction::Audit => {
                out.evaluations.push((index, Evaluation::Audited));
                let list: Vec<Value> = failures
                    .iter()
                    .map(|(message, expression, _)| {
                        json!({"message": message, "expression": expression})
                    })
                    .collect();
                out.audit_annotations.insert(
                    format!("{}/validation_failure", p.name),
                    Value::Array(list).to_string(),
                );
            }
        }
    }
}

/// A `metav1.LabelSelector` against a label set.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|r| {
        let values = r.values.as_deref().unwrap_or_default();
        let value = labels.get(&r.key);
        match r.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policy(spec: Value) -> IngestorPolicy {
        serde_json::from_value(json!({
            "apiVersion": "config.zen.watcher.io/v1alpha1", "kind": "IngestorPolicy",
            "metadata": {"name": "p"}, "spec": spec
        }))
        .unwrap()
    }

    #[test]
    fn a_set_reads_the_old_object_where_any_of_its_expressions_names_it() {
        let plain = json!({
            "matchConditions": [{"name": "m", "expression": "object.kind == 'Ingestor'"}],
            "validations": [{"expression": "object.n < 5", "messageExpression": "'n ' + string(object.n)"}],
            "mutations": [{"path": "/spec/x", "valueExpression": "'oldObject'"}]
        });
        let (set, _) = PolicySet::compile(&[policy(plain.clone())]);
        assert!(!set.reads_old_object(), "a string is not the variable");
        for (at, expression) in [
            ("/matchConditions/0/expression", "oldObject == null"),
            ("/validations/0/expression", "object.n == oldObject.n"),
            ("/validations/0/messageExpression", "string(oldObject.n)"),
            ("/mutations/0/valueExpression", "oldObject.spec.x"),
        ] {
            let mut spec = plain.clone();
            *spec.pointer_mut(at).unwrap() = json!(expression);
            let (set, failed) = PolicySet::compile(&[policy(plain.clone()), policy(spec)]);
            assert!(failed.is_empty());
            assert!(set.reads_old_object(), "{at}");
        }
    }

    #[test]
    fn every_bad_expression_is_reported_with_its_field() {
        let p = policy(json!({
            "matchConditions": [{"name": "m", "expression": "object.("}],
            "validations": [{"expression": "true", "messageExpression": "'a' +"}],
            "mutations": [{"path": "/spec/x", "valueExpression": "1"}, {"path": "/spec/*", "valueExpression": "1"}]
        }));
        let errors: Vec<String> = CompiledPolicy::compile(&p)
            .err()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("spec.matchConditions[0].expression: Invalid value"));
        assert!(errors[1].starts_with("spec.validations[0].messageExpression: Invalid value"));
        assert!(errors[2].starts_with("spec.mutations[1].path: Invalid value: /spec/*"));
    }

    fn named(name: &str, spec: Value) -> IngestorPolicy {
        let mut p = policy(spec);
        p.metadata.name = Some(name.to_owned());
        p
    }

    #[test]
    fn policies_sharing_an_expression_evaluate_it_once_per_request() {
        let shared = json!({
            "matchConditions": [{"name": "all", "expression": "object.n.all(i, i > 0)"}],
            "validations": [{"expression": "object.n.exists(i, i > 9)", "message": "none above 9"}],
            "validationActions": ["Warn"]
        });
        let mut vars = Variables::new();
        vars.set_owned("object", json!({"n": (1..=200).collect::<Vec<_>>()}));
        let spent = |policies: &[IngestorPolicy]| {
            let (set, failed) = PolicySet::compile(policies);
            assert!(failed.is_empty());
            let mut budget = Budget::default();
            let out = set.validate(None, &vars, &mut budget);
            assert!(out.warnings.is_empty(), "{:?}", out.warnings);
            assert_eq!(out.evaluations.len(), policies.len());
            budget.spent()
        };
        let one = spent(&[named("a", shared.clone())]);
        let two = spent(&[named("a", shared.clone()), named("b", shared.clone())]);
        assert!(one > 200, "the comprehensions cost {one}");
        assert_eq!(one, two);

        // A shared expression's error is every sharing policy's error.
        let failing = json!({
            "matchConditions": [{"name": "bad", "expression": "object.missing > 0"}],
            "validations": [{"expression": "true"}]
        });
        let (set, _) = PolicySet::compile(&[named("a", failing.clone()), named("b", failing)]);
        let out = set.validate(None, &vars, &mut Budget::default());
        assert_eq!(
            out.evaluations,
            vec![(0, Evaluation::Error), (1, Evaluation::Error)]
        );
        assert_eq!(out.denials.len(), 2, "{:?}", out.denials);
        assert!(
            out.denials[1]
                .message
                .starts_with("IngestorPolicy \"b\" could not be evaluated")
        );
    }

    #[test]
    fn evaluations_are_listed_in_their_declared_order() {
        // Counters are indexed by `Evaluation as usize` in `ALL`'s order.
        for (i, e) in Evaluation::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i, "{e:?}");
        }
    }

    #[test]
    fn programs_keep_their_places() {
        let p = policy(json!({
            "matchConditions": [{"name": "m", "expression": "object.kind == 'Ingestor'"}],
            "validations": [
                {"expression": "object.n < 5", "messageExpression": "'n is ' + string(object.n)"},
                {"expression": "object.n < 3", "message": "fixed"}
            ],
            "mutations": [{"path": "/spec/x", "valueExpression": "'x'"}],
            "validationActions": ["Warn"]
        }));
        let (set, failed) = PolicySet::compile(&[p]);
        assert!(failed.is_empty());
        let mut vars = Variables::new();
        vars.set_owned("object", json!({"kind": "Ingestor", "n": 7}));
        let out = set.validate(None, &vars, &mut Budget::default());
        assert!(out.denials.is_empty());
        assert_eq!(
            out.warnings,
            vec![
                "IngestorPolicy \"p\": n is 7",
                "IngestorPolicy \"p\": fixed"
            ]
        );
        let object = zen_json::Document::parse(r#"{"spec": {}}"#).unwrap();
        let out = set.mutate(None, &vars, object.root(), &mut Budget::default());
        assert_eq!(
            serde_json::to_value(&out.patch).unwrap(),
            json!([{"op": "add", "path": "/spec/x", "value": "x"}])
        );
    }
}

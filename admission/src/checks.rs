//! The checks every Ingestor and IngestorPolicy gets before any policy runs: the object fits
//! its CRD schema (with the schema's CEL rules, so `policy test` offline says what the cluster
//! would), and so decodes into the `zen-crds` types, and every CEL expression in it compiles.
//! Referenced Secrets that do not exist yet are warnings, not denials: GitOps tools apply
//! them in any order.

use std::fmt::Write as _;

use serde_json::Value;
use zen_cel::{Budget, Program, Variables};
use zen_crds::{IngestorPolicy, schema::SchemaValidator};
use zen_json::{Kind as JsonKind, Value as Doc};

use crate::{cluster::ClusterView, expressions, policy::CompiledPolicy};

/// The kinds this webhook checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Ingestor,
    IngestorPolicy,
}

impl Kind {
    pub fn from_kind(kind: &str) -> Option<Self> {
        match kind {
            "Ingestor" => Some(Self::Ingestor),
            "IngestorPolicy" => Some(Self::IngestorPolicy),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Ingestor => 0,
            Self::IngestorPolicy => 1,
        }
    }

    fn qualified(self) -> &'static str {
        match self {
            Self::Ingestor => "Ingestor.config.zen.watcher.io",
            Self::IngestorPolicy => "IngestorPolicy.config.zen.watcher.io",
        }
    }
}

/// Findings of the built-in checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Each a complete `field: problem` sentence.
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl Findings {
    /// kube-apiserver's wording for an invalid object.
    pub fn message(&self, kind: Kind, name: &str) -> String {
        match self.errors.as_slice() {
            [one] => format!("{} {name:?} is invalid: {one}", kind.qualified()),
            many => format!(
                "{} {name:?} is invalid: [{}]",
                kind.qualified(),
                many.join(", ")
            ),
        }
    }
}

/// One CEL rule of a CRD schema.
struct SchemaRule {
    program: Program,
    message: String,
    field_path: Option<String>,
}

/// A kind's schema with its CEL rules compiled.
struct KindSchema {
    validator: SchemaValidator,
    /// `None` when no rule is anywhere in the schema.
    rules: Option<RuleNode>,
}

/// The part of a schema with CEL rules at or below it: the walk visits only these nodes.
struct RuleNode {
    rules: Vec<SchemaRule>,
    /// By name, the order the object's own fields are visited in.
    properties: Vec<(String, RuleNode)>,
    items: Option<Box<RuleNode>>,
}

/// The schemas of both kinds, built once.
pub struct Checker {
    /// By [`Kind::index`].
    schemas: [Option<KindSchema>; 2],
}

impl Checker {
    pub fn new() -> Result<Self, String> {
        let mut schemas = [None, None];
        for (_, crd) in zen_crds::crd::definitions() {
            let kind = match Kind::from_kind(&crd.spec.names.kind) {
                Some(k) => k,
                None => continue,
            };
            let schema = crd
                .spec
                .versions
                .first()
                .and_then(|v| v.schema.as_ref())
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .ok_or_else(|| format!("{} has no schema", kind.qualified()))
                .and_then(|s| serde_json::to_value(s).map_err(|e| e.to_string()))?;
            let rules = collect_rules(&schema, "")?;
            schemas[kind.index()] = Some(KindSchema {
                validator: SchemaValidator::new(schema)?,
                rules,
            });
        }
        Ok(Self { schemas })
    }

    /// Checks an object of `kind`; `cluster` answers whether referenced Secrets exist.
    pub fn check(
        &self,
        kind: Kind,
        object: Doc<'_>,
        cluster: &dyn ClusterView,
        budget: &mut Budget,
    ) -> Findings {
        let mut out = Findings::default();
        let Some(schema) = &self.schemas[kind.index()] else {
            return out;
        };
        let validated = schema.validator.check(object);
        out.errors
            .extend(validated.errors.into_iter().map(|e| e.message));
        if !out.errors.is_empty() {
            return out;
        }
        // The object's further checks run before the CEL rules, though their
        // findings count after them: the rules and the policies after them then run the same
        // evaluator in a row, its code still cached.
        let further = object_checks(kind, object, cluster);
        if let Some(rules) = &schema.rules {
            let mut walk = RuleWalk {
                vars: Variables::new(),
                field: String::with_capacity(64),
                budget,
                errors: &mut out.errors,
            };
            walk.node(rules, object);
        }
        if !out.errors.is_empty() {
            return out;
        }
        out.errors.extend(further.errors);
        out.warnings.extend(further.warnings);
        out
    }
}

/// What the object says beyond its schema: its expressions compile, and (warnings) the
/// Secrets it names exist; an IngestorPolicy also decodes into its type and compiles as a
/// policy.
///
/// An Ingestor is read from its document, not decoded: its schema is generated from the same
/// types and checks everything their decoding would (a test in `zen-crds` holds every
/// object the schema accepts to decode), and its metadata was read as an `ObjectMeta` by
/// kube-apiserver before any webhook sees it (`policy test` checks that itself). Decoding
/// would run a large body of code on every review to learn nothing new.
fn object_checks(kind: Kind, object: Doc<'_>, cluster: &dyn ClusterView) -> Findings {
    let mut out = Findings::default();
    match kind {
        Kind::Ingestor => {
            let Some(spec) = object.get("spec") else {
                return out;
            };
            out.errors.extend(
                expressions::compile_all(&expressions::of_ingestor(spec))
                    .into_iter()
                    .map(|e| e.to_string()),
            );
            let namespace = text(object.get("metadata"), "namespace").unwrap_or("default");
            out.warnings
                .extend(missing_secrets(namespace, spec, cluster));
        }
        Kind::IngestorPolicy => match zen_crds::manifest::decode::<IngestorPolicy, _>(object) {
            Ok(policy) => {
                if let Err(errors) = CompiledPolicy::compile(&policy) {
                    out.errors.extend(errors.into_iter().map(|e| e.to_string()));
                }
            }
            Err(e) => out.errors.push(e.to_string()),
        },
    }
    out
}

/// The string at `key` of an object, if there is one.
fn text<'d>(object: Option<Doc<'d>>, key: &str) -> Option<&'d str> {
    object?.get(key)?.as_str()
}

/// Warnings for Secrets (or keys) an Ingestor's spec names that are not there yet.
fn missing_secrets(ns: &str, spec: Doc<'_>, cluster: &dyn ClusterView) -> Vec<String> {
    let mut out = Vec::new();
    let sources = spec.get("sources").and_then(|s| s.elements());
    for (i, source) in sources.into_iter().flatten().enumerate() {
        let Some(auth) = source.get("auth") else {
            continue;
        };
        let secret = auth.get("secretRef");
        let (Some(name), Some(key)) = (text(secret, "name"), text(secret, "key")) else {
            continue;
        };
        if text(Some(auth), "type") == Some("none") {
            continue;
        }
        let problem = match cluster.secret_keys(ns, name) {
            None => format!("Secret {ns}/{name} does not exist yet"),
            Some(keys) if !keys.iter().any(|k| k == key) => {
                format!("Secret {ns}/{name} has no key {key:?} yet")
            }
            Some(_) => continue,
        };
        out.push(format!(
            "spec.sources[{i}].auth.secretRef: {problem}; deliveries to source {:?} are refused until it does",
            text(Some(source), "name").unwrap_or_default()
        ));
    }
    out
}

/// Compiles every `x-kubernetes-validations` rule at or below `schema` (at `at`, for error
/// messages); `None` where there are none.
fn collect_rules(schema: &Value, at: &str) -> Result<Option<RuleNode>, String> {
    let mut rules = Vec::new();
    for r in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let rule = r.get("rule").and_then(Value::as_str).unwrap_or_default();
        let program = zen_cel::compile(rule).map_err(|e| format!("{at}: rule {rule:?}: {e}"))?;
        rules.push(SchemaRule {
            program,
            message: r
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| format!("failed rule: {rule}"), str::to_owned),
            field_path: r
                .get("fieldPath")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
    let mut properties = Vec::new();
    for (name, sub) in schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(node) = collect_rules(sub, &format!("{at}.{name}"))? {
            properties.push((name.clone(), node));
        }
    }
    properties.sort_by(|a, b| a.0.cmp(&b.0));
    let items = match schema.get("items") {
        Some(items) => collect_rules(items, &format!("{at}[*]"))?.map(Box::new),
        None => None,
    };
    let empty = rules.is_empty() && properties.is_empty() && items.is_none();
    Ok((!empty).then_some(RuleNode {
        rules,
        properties,
        items,
    }))
}

/// A walk evaluating a schema's rules along an object, as kube-apiserver does for present
/// values only: `self` is bound to each value in turn, the only variable. It is bound as an
/// input, so the paths a node's rules share (`self.type`) are walked once for all of them.
struct RuleWalk<'w> {
    vars: Variables<'w>,
    /// The path of the value the walk is at, extended in place and restored.
    field: String,
    budget: &'w mut Budget,
    errors: &'w mut Vec<String>,
}

impl<'w> RuleWalk<'w> {
    fn node(&mut self, node: &RuleNode, value: Doc<'w>) {
        if !node.rules.is_empty() {
            self.vars.set_document("self", value);
        }
        for rule in &node.rules {
            let failure = match rule.program.evaluate_bool(&self.vars, self.budget) {
                Ok(true) => continue,
                Ok(false) => rule.message.clone(),
                Err(e) => format!(
                    "rule {:?} could not be evaluated: {e}",
                    rule.program.source()
                ),
            };
            let path = format!(
                "{}{}",
                self.field,
                rule.field_path.as_deref().unwrap_or_default()
            );
            let path = path.trim_start_matches('.');
            let path = if path.is_empty() { "<root>" } else { path };
            self.errors
                .push(format!("{path}: Invalid value: {failure}"));
        }
        let len = self.field.len();
        match value.kind() {
            JsonKind::Object => {
                for (name, sub) in &node.properties {
                    if let Some(v) = value.get(name) {
                        self.field.push('.');
                        self.field.push_str(name);
                        self.node(sub, v);
                        self.field.truncate(len);
                    }
                }
            }
            JsonKind::Array => {
                if let Some(sub) = &node.items {
                    for (i, v) in value.elements().into_iter().flatten().enumerate() {
                        let _ = write!(self.field, "[{i}]");
                        self.node(sub, v);
                        self.field.truncate(len);
                    }
                }
            }
            _ => {}
        }
    }
}

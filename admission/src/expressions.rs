//! Every CEL expression of an Ingestor or IngestorPolicy, with the field path it sits at, and
//! its compilation (with `zen-cel`'s limits). A bad expression is refused when the object is applied, never found later
//! on a delivery.

use std::borrow::Cow;

use zen_crds::IngestorPolicySpec;
use zen_json::Value as Doc;

/// An expression's text and the field path it sits at. An Ingestor's paths are fixed texts,
/// so listing them for a review allocates nothing.
pub type Located<'e> = (Cow<'static, str>, &'e str);

/// A CEL expression that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: Invalid value: {expression:?}: compilation failed: {message}")]
pub struct CompileError {
    /// Dotted path, e.g. `spec.mapping.severity`.
    pub field: String,
    pub expression: String,
    pub message: String,
}

/// Where an Ingestor spec holds CEL: the field path, and the keys leading to it from `spec`.
const INGESTOR_EXPRESSIONS: [(&str, &[&str]); 12] = [
    ("spec.filter", &["filter"]),
    ("spec.mapping.category", &["mapping", "category"]),
    ("spec.mapping.severity", &["mapping", "severity"]),
    ("spec.mapping.eventType", &["mapping", "eventType"]),
    ("spec.mapping.source", &["mapping", "source"]),
    ("spec.mapping.title", &["mapping", "title"]),
    ("spec.mapping.description", &["mapping", "description"]),
    ("spec.mapping.resource", &["mapping", "resource"]),
    ("spec.mapping.details", &["mapping", "details"]),
    ("spec.mapping.detectedAt", &["mapping", "detectedAt"]),
    ("spec.mapping.fingerprint", &["mapping", "fingerprint"]),
    ("spec.dedup.key", &["dedup", "key"]),
];

/// The expressions of an Ingestor spec, read where the document holds them: the webhook
/// checks them without decoding the spec into its types (its schema already vouches for
/// the shape).
pub fn of_ingestor(spec: Doc<'_>) -> Vec<Located<'_>> {
    let mut out: Vec<Located<'_>> = Vec::with_capacity(INGESTOR_EXPRESSIONS.len());
    for (field, keys) in INGESTOR_EXPRESSIONS {
        let mut at = Some(spec);
        for key in keys {
            at = at.and_then(|v| v.get(key));
        }
        if let Some(text) = at.and_then(|v| v.as_str()) {
            out.push((field.into(), text));
        }
    }
    out
}

/// The expressions of an IngestorPolicy spec, with their paths.
pub fn of_policy(spec: &IngestorPolicySpec) -> Vec<Located<'_>> {
    let mut out: Vec<Located<'_>> = Vec::new();
    for (i, c) in spec.match_conditions.iter().enumerate() {
        out.push((
            format!("spec.matchConditions[{i}].expression").into(),
            c.expression.as_str(),
        ));
    }
    for (i, v) in spec.validations.iter().enumerate() {
        out.push((
            format!("spec.validations[{i}].expression").into(),
            v.expression.as_str(),
        ));
        if let Some(m) = &v.message_expression {
            out.push((
                format!("spec.validations[{i}].messageExpression").into(),
                m.as_str(),
            ));
        }
    }
    for (i, m) in spec.mutations.iter().enumerate() {
        out.push((
            format!("spec.mutations[{i}].valueExpression").into(),
            m.value_expression.as_str(),
        ));
    }
    out
}

/// Compiles each expression; returns the ones that fail.
pub fn compile_all(expressions: &[Located<'_>]) -> Vec<CompileError> {
    expressions
        .iter()
        .filter_map(|(field, e)| {
            zen_cel::check(e)
                .err()
                .map(|err| CompileError::new(field, e, err))
        })
        .collect()
}

/// Compiles each expression, in order.
pub fn compile_each(expressions: &[Located<'_>]) -> Vec<Result<zen_cel::Program, CompileError>> {
    expressions
        .iter()
        .map(|(field, e)| zen_cel::compile(e).map_err(|err| CompileError::new(field, e, err)))
        .collect()
}

impl CompileError {
    fn new(field: &str, expression: &str, err: zen_cel::CompileError) -> Self {
        Self {
            field: field.to_owned(),
            expression: expression.to_owned(),
            message: err.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use zen_json::Document;

    use super::*;

    fn spec(severity: &str) -> String {
        json!({
            "sources": [{"name": "a", "type": "kubernetesEvents"}],
            "filter": "payload.type == 'Warning'",
            "mapping": {"category": "'operations'", "severity": severity, "eventType": "'x'"},
        })
        .to_string()
    }

    #[test]
    fn good_expressions_compile() {
        let text = spec("payload.reason == 'OOMKilling' ? 'high' : 'low'");
        let doc = Document::parse(&text).unwrap();
        let exprs = of_ingestor(doc.root());
        assert_eq!(exprs.len(), 4);
        assert!(compile_all(&exprs).is_empty());
    }

    /// Every field the table names is found, in the table's order, and nothing else is.
    #[test]
    fn every_expression_field_is_found() {
        let mut spec =
            json!({"sources": [{"name": "a", "type": "webhook"}], "mapping": {}, "dedup": {}});
        for (field, keys) in INGESTOR_EXPRESSIONS {
            let mut at = &mut spec;
            for key in &keys[..keys.len() - 1] {
                at = &mut at[*key];
            }
            at[keys[keys.len() - 1]] = json!(format!("'{field}'"));
        }
        let text = spec.to_string();
        let doc = Document::parse(&text).unwrap();
        let found: Vec<(String, String)> = of_ingestor(doc.root())
            .into_iter()
            .map(|(f, e)| (f.into_owned(), e.to_owned()))
            .collect();
        let expected: Vec<(String, String)> = INGESTOR_EXPRESSIONS
            .iter()
            .map(|(f, _)| (f.to_string(), format!("'{f}'")))
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn a_bad_expression_names_its_field() {
        let text = spec("payload.reason == ");
        let doc = Document::parse(&text).unwrap();
        let errors = compile_all(&of_ingestor(doc.root()));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "spec.mapping.severity");
        assert!(
            errors[0].to_string().starts_with(
                "spec.mapping.severity: Invalid value: \"payload.reason == \": compilation failed:"
            ),
            "{}",
            errors[0]
        );
    }
}

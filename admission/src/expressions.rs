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

/// An expression's field path, and its key in the object that holds it.
type Field = (&'static str, &'static str);

/// Where an Ingestor spec holds CEL: under `spec` or one of its fields, each expression's
/// field path and key.
const INGESTOR_EXPRESSIONS: [(Option<&str>, &[Field]); 3] = [
    (None, &[("spec.filter", "filter")]),
    (
        Some("mapping"),
        &[
            ("spec.mapping.category", "category"),
            ("spec.mapping.severity", "severity"),
            ("spec.mapping.eventType", "eventType"),
            ("spec.mapping.source", "source"),
            ("spec.mapping.title", "title"),
            ("spec.mapping.description", "description"),
            ("spec.mapping.resource", "resource"),
            ("spec.mapping.details", "details"),
            ("spec.mapping.detectedAt", "detectedAt"),
            ("spec.mapping.fingerprint", "fingerprint"),
        ],
    ),
    (Some("dedup"), &[("spec.dedup.key", "key")]),
];

/// The expressions of an Ingestor spec, read where the document holds them: the webhook
/// checks them without decoding the spec into its types (its schema already vouches for
/// the shape).
pub fn of_ingestor(spec: Doc<'_>) -> Vec<Located<'_>> {
    let mut out: Vec<Located<'_>> = Vec::with_capacity(12);
    for (parent, fields) in INGESTOR_EXPRESSIONS {
        let Some(object) = parent.map_or(Some(spec), |p| spec.get(p)) else {
            continue;
        };
        for (field, key) in fields {
            if let Some(text) = object.get(key).and_then(|v| v.as_str()) {
                out.push((Cow::Borrowed(field), text));
            }
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
        let mut spec = json!({"sources": [{"name": "a", "type": "webhook"}]});
        let mut expected = Vec::new();
        for (parent, fields) in INGESTOR_EXPRESSIONS {
            for (field, key) in fields {
                let at = match parent {
                    Some(p) => &mut spec[p],
                    None => &mut spec,
                };
                at[key] = json!(format!("'{field}'"));
                expected.push((field.to_string(), format!("'{field}'")));
            }
        }
        let text = spec.to_string();
        let doc = Document::parse(&text).unwrap();
        let found: Vec<(String, String)> = of_ingestor(doc.root())
            .into_iter()
            .map(|(f, e)| (f.into_owned(), e.to_owned()))
            .collect();
        assert_eq!(found.len(), 12);
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

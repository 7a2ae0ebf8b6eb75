//! Every CEL expression of an Ingestor or IngestorPolicy, with the field path it sits at, and
//! its compilation (with `zen-cel`'s limits). A bad expression is refused when the object is applied, never found later
//! on a delivery.

use std::borrow::Cow;

use zen_crds::{Expression, IngestorPolicySpec, IngestorSpec};

/// An expression and the field path it sits at. An Ingestor's paths are fixed texts, so
/// listing them for a review allocates nothing.
pub type Located<'e> = (Cow<'static, str>, &'e Expression);

/// A CEL expression that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: Invalid value: {expression:?}: compilation failed: {message}")]
pub struct CompileError {
    /// Dotted path, e.g. `spec.mapping.severity`.
    pub field: String,
    pub expression: String,
    pub message: String,
}

/// The expressions of an Ingestor spec, with their paths.
pub fn of_ingestor(spec: &IngestorSpec) -> Vec<Located<'_>> {
    let mut out: Vec<Located<'_>> = Vec::with_capacity(12);
    if let Some(filter) = &spec.filter {
        out.push(("spec.filter".into(), filter));
    }
    if let Some(m) = &spec.mapping {
        out.push(("spec.mapping.category".into(), &m.category));
        out.push(("spec.mapping.severity".into(), &m.severity));
        out.push(("spec.mapping.eventType".into(), &m.event_type));
        for (field, e) in [
            ("spec.mapping.source", &m.source),
            ("spec.mapping.title", &m.title),
            ("spec.mapping.description", &m.description),
            ("spec.mapping.resource", &m.resource),
            ("spec.mapping.details", &m.details),
            ("spec.mapping.detectedAt", &m.detected_at),
            ("spec.mapping.fingerprint", &m.fingerprint),
        ] {
            if let Some(e) = e {
                out.push((field.into(), e));
            }
        }
    }
    if let Some(key) = spec.dedup.as_ref().and_then(|d| d.key.as_ref()) {
        out.push(("spec.dedup.key".into(), key));
    }
    out
}

/// The expressions of an IngestorPolicy spec, with their paths.
pub fn of_policy(spec: &IngestorPolicySpec) -> Vec<Located<'_>> {
    let mut out: Vec<Located<'_>> = Vec::new();
    for (i, c) in spec.match_conditions.iter().enumerate() {
        out.push((
            format!("spec.matchConditions[{i}].expression").into(),
            &c.expression,
        ));
    }
    for (i, v) in spec.validations.iter().enumerate() {
        out.push((
            format!("spec.validations[{i}].expression").into(),
            &v.expression,
        ));
        if let Some(m) = &v.message_expression {
            out.push((format!("spec.validations[{i}].messageExpression").into(), m));
        }
    }
    for (i, m) in spec.mutations.iter().enumerate() {
        out.push((
            format!("spec.mutations[{i}].valueExpression").into(),
            &m.value_expression,
        ));
    }
    out
}

/// Compiles each expression; returns the ones that fail.
pub fn compile_all(expressions: &[Located<'_>]) -> Vec<CompileError> {
    expressions
        .iter()
        .filter_map(|(field, e)| {
            zen_cel::check(e.as_str())
                .err()
                .map(|err| CompileError::new(field, e, err))
        })
        .collect()
}

/// Compiles each expression, in order.
pub fn compile_each(expressions: &[Located<'_>]) -> Vec<Result<zen_cel::Program, CompileError>> {
    expressions
        .iter()
        .map(|(field, e)| {
            zen_cel::compile(e.as_str()).map_err(|err| CompileError::new(field, e, err))
        })
        .collect()
}

impl CompileError {
    fn new(field: &str, expression: &Expression, err: zen_cel::CompileError) -> Self {
        Self {
            field: field.to_owned(),
            expression: expression.as_str().to_owned(),
            message: err.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use zen_crds::ingestor::{Mapping, Source, SourceType};

    use super::*;

    fn spec(severity: &str) -> IngestorSpec {
        IngestorSpec {
            sources: vec![Source {
                name: "a".into(),
                type_: SourceType::KubernetesEvents,
                auth: None,
                rate_limit: None,
                max_body_bytes: None,
                kubernetes_events: None,
            }],
            filter: Some("payload.type == 'Warning'".into()),
            mapping: Some(Mapping {
                source: None,
                category: "'operations'".into(),
                severity: severity.into(),
                event_type: "'x'".into(),
                title: None,
                description: None,
                resource: None,
                details: None,
                detected_at: None,
                fingerprint: None,
            }),
            dedup: None,
            ttl: None,
        }
    }

    #[test]
    fn good_expressions_compile() {
        let s = spec("payload.reason == 'OOMKilling' ? 'high' : 'low'");
        let exprs = of_ingestor(&s);
        assert_eq!(exprs.len(), 4);
        assert!(compile_all(&exprs).is_empty());
    }

    #[test]
    fn a_bad_expression_names_its_field() {
        let s = spec("payload.reason == ");
        let errors = compile_all(&of_ingestor(&s));
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

//! Every CEL expression of an Ingestor or IngestorPolicy, with the field path it sits at, and
//! its compilation. A bad expression is refused when the object is applied, never found later
//! on a delivery.

use zen_crds::{Expression, IngestorPolicySpec, IngestorSpec};

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
pub fn of_ingestor(spec: &IngestorSpec) -> Vec<(String, &Expression)> {
    let mut out = Vec::new();
    if let Some(filter) = &spec.filter {
        out.push(("spec.filter".to_owned(), filter));
    }
    if let Some(m) = &spec.mapping {
        out.push(("spec.mapping.category".to_owned(), &m.category));
        out.push(("spec.mapping.severity".to_owned(), &m.severity));
        out.push(("spec.mapping.eventType".to_owned(), &m.event_type));
        for (name, e) in [
            ("source", &m.source),
            ("title", &m.title),
            ("description", &m.description),
            ("resource", &m.resource),
            ("details", &m.details),
            ("detectedAt", &m.detected_at),
            ("fingerprint", &m.fingerprint),
        ] {
            if let Some(e) = e {
                out.push((format!("spec.mapping.{name}"), e));
            }
        }
    }
    if let Some(key) = spec.dedup.as_ref().and_then(|d| d.key.as_ref()) {
        out.push(("spec.dedup.key".to_owned(), key));
    }
    out
}

/// The expressions of an IngestorPolicy spec, with their paths.
pub fn of_policy(spec: &IngestorPolicySpec) -> Vec<(String, &Expression)> {
    let mut out = Vec::new();
    for (i, c) in spec.match_conditions.iter().enumerate() {
        out.push((
            format!("spec.matchConditions[{i}].expression"),
            &c.expression,
        ));
    }
    for (i, v) in spec.validations.iter().enumerate() {
        out.push((format!("spec.validations[{i}].expression"), &v.expression));
        if let Some(m) = &v.message_expression {
            out.push((format!("spec.validations[{i}].messageExpression"), m));
        }
    }
    for (i, m) in spec.mutations.iter().enumerate() {
        out.push((
            format!("spec.mutations[{i}].valueExpression"),
            &m.value_expression,
        ));
    }
    out
}

/// Deepest nesting of brackets or chained unary operators accepted. The CEL parser recurses
/// through a dozen grammar rules per level before its own depth check, so deeper input is
/// refused before parsing; real policies stay far below this.
pub const MAX_NESTING: usize = 24;
/// Stack of the thread that parses, so the parser's recursion has room in any build.
const PARSER_STACK: usize = 16 * 1024 * 1024;

/// Compiles one expression.
pub fn compile(expression: &str) -> Result<cel::Program, String> {
    let depth = nesting_depth(expression);
    if depth > MAX_NESTING {
        return Err(format!(
            "nested {depth} levels deep; at most {MAX_NESTING} are allowed"
        ));
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("cel-compile".into())
            .stack_size(PARSER_STACK)
            .spawn_scoped(scope, || {
                cel::Program::compile(expression).map_err(|e| e.to_string().replace('\n', " "))
            })
            .map_err(|e| format!("could not start the compiler: {e}"))?
            .join()
            .map_err(|_| "the compiler failed".to_owned())?
    })
}

/// Compiles each expression; returns the ones that fail.
pub fn compile_all(expressions: &[(String, &Expression)]) -> Vec<CompileError> {
    expressions
        .iter()
        .filter_map(|(field, e)| {
            compile(e.as_str()).err().map(|message| CompileError {
                field: field.clone(),
                expression: e.as_str().to_owned(),
                message,
            })
        })
        .collect()
}

/// The deepest nesting of `(`, `[`, `{` and runs of `!`/`-`, outside string literals.
fn nesting_depth(expression: &str) -> usize {
    let mut depth = 0usize;
    let mut max = 0usize;
    let mut unary_run = 0usize;
    let mut chars = expression.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                // Skip the literal, honouring escapes.
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
                unary_run = 0;
            }
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth + unary_run);
                unary_run = 0;
            }
            ')' | ']' | '}' => {
                depth = depth.saturating_sub(1);
                unary_run = 0;
            }
            '!' | '-' => {
                unary_run += 1;
                max = max.max(depth + unary_run);
            }
            c if c.is_whitespace() => {}
            _ => unary_run = 0,
        }
    }
    max
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

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        for deep in [
            format!("{}1{}", "(".repeat(2500), ")".repeat(2500)),
            format!("{}true", "!".repeat(5000)),
            format!("{}1{}", "[".repeat(2500), "]".repeat(2500)),
            format!("{}1", "- ".repeat(2500)),
        ] {
            let s = spec(&deep);
            let errors = compile_all(&of_ingestor(&s));
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].message.contains("levels deep"),
                "{}",
                errors[0].message
            );
        }
        // Brackets inside strings do not count.
        assert!(compile(&format!("'{}' == 'x'", "(".repeat(200))).is_ok());
        assert!(
            compile(&format!(
                "{}1{}",
                "(".repeat(MAX_NESTING),
                ")".repeat(MAX_NESTING)
            ))
            .is_ok()
        );
    }
}

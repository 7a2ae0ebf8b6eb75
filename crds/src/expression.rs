//! CEL expressions as they appear in Ingestors and IngestorPolicies.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Longest CEL expression accepted, in bytes; Kubernetes' own limit for validation rules.
pub const MAX_EXPRESSION_LEN: usize = 5 * 1024;

/// A CEL expression. It is compiled when the object is applied, so a syntax error is refused
/// at `kubectl apply`, not found later.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct Expression(pub String);

impl Expression {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Expression {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl JsonSchema for Expression {
    fn schema_name() -> Cow<'static, str> {
        "Expression".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_EXPRESSION_LEN,
        })
    }
}

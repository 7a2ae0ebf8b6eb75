//! PATCH bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902), applied to the stored
//! object before it goes through the same validation as an update.

use serde_json::Value;

/// Patch formats the server applies. Strategic merge patch is Go-struct specific and has no
/// meaning for these resources; server-side apply is not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
}

impl PatchType {
    pub const MERGE: &'static str = "application/merge-patch+json";
    pub const JSON: &'static str = "application/json-patch+json";

    /// Accepted Content-Types, as listed in a 415 answer.
    pub const ACCEPTED: &'static [&'static str] = &[Self::JSON, Self::MERGE];

    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        match essence {
            Self::MERGE => Some(Self::Merge),
            Self::JSON => Some(Self::Json),
            _ => None,
        }
    }
}

/// Why a patch could not be applied. kube-apiserver answers these with 400 (malformed) or
/// 422 (a JSON patch `test` or path that does not apply).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("error decoding patch: {0}")]
    Malformed(String),
    #[error("the server rejected our request due to an error in our request: {0}")]
    Inapplicable(String),
}

/// Applies `patch` (raw body) to `target`, returning the patched object.
pub fn apply(kind: PatchType, target: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let mut doc = target.clone();
    match kind {
        PatchType::Merge => {
            let patch: Value =
                serde_json::from_slice(patch).map_err(|e| PatchError::Malformed(e.to_string()))?;
            if !patch.is_object() {
                return Err(PatchError::Malformed(
                    "a merge patch must be a JSON object".to_owned(),
                ));
            }
            json_patch::merge(&mut doc, &patch);
        }
        PatchType::Json => {
            let ops: json_patch::Patch =
                serde_json::from_slice(patch).map_err(|e| PatchError::Malformed(e.to_string()))?;
            json_patch::patch(&mut doc, &ops)
                .map_err(|e| PatchError::Inapplicable(e.to_string()))?;
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_sets_and_removes() {
        let obj =
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"severity": "low"}});
        let out = apply(
            PatchType::Merge,
            &obj,
            br#"{"metadata":{"labels":{"a":null,"c":"3"}},"spec":{"severity":"high"}}"#,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"severity": "high"}})
        );
    }

    #[test]
    fn json_patch_ops_and_failed_test() {
        let obj = json!({"spec": {"severity": "low", "title": "x"}});
        let out = apply(
            PatchType::Json,
            &obj,
            br#"[{"op":"replace","path":"/spec/severity","value":"critical"},{"op":"remove","path":"/spec/title"}]"#,
        )
        .unwrap();
        assert_eq!(out, json!({"spec": {"severity": "critical"}}));
        let err = apply(
            PatchType::Json,
            &obj,
            br#"[{"op":"test","path":"/spec/severity","value":"high"}]"#,
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::Inapplicable(_)), "{err}");
    }

    #[test]
    fn malformed_patches_are_refused() {
        let obj = json!({});
        assert!(matches!(
            apply(PatchType::Merge, &obj, b"[1]"),
            Err(PatchError::Malformed(_))
        ));
        assert!(matches!(
            apply(PatchType::Merge, &obj, b"{"),
            Err(PatchError::Malformed(_))
        ));
        assert!(matches!(
            apply(PatchType::Json, &obj, br#"[{"op":"jump"}]"#),
            Err(PatchError::Malformed(_))
        ));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("application/json-patch+json"),
            Some(PatchType::Json)
        );
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json"),
            None
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            None
        );
    }
}

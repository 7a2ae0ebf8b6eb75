//! Reading zen-watcher objects from YAML manifests (examples, `--config-dir`, `policy test -f`).
//!
//! YAML is first turned into JSON values, then decoded with the field path tracked, so an error
//! names the file, the document and the field instead of a line in a parser's state machine.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Ingestor, IngestorPolicy};

/// Largest manifest file read, so a stray huge file cannot exhaust memory.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// Why a manifest could not be read. `Display` is meant for humans on a terminal.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge { file: PathBuf },
    #[error("{file}: not valid YAML: {message}")]
    Syntax { file: PathBuf, message: String },
    #[error("{file}: document {document}{what}: {error}")]
    Decode {
        file: PathBuf,
        /// 1-based position of the document in the stream.
        document: usize,
        /// ` (Kind namespace/name)` when known, to find the object quickly.
        what: String,
        error: DecodeError,
    },
}

/// A value that does not fit its type, with the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct DecodeError {
    /// Dotted path such as `spec.sources[0].auth.type`; `.` for the document itself.
    pub field: String,
    pub message: String,
}

/// A zen-watcher object found in a manifest; other kinds are kept as raw JSON for callers that
/// care about them (Secrets and Namespaces in `--config-dir`).
#[derive(Debug, Clone)]
pub enum Object {
    Ingestor(Box<Ingestor>),
    IngestorPolicy(Box<IngestorPolicy>),
    Other(Value),
}

/// Decodes one JSON value (a `&serde_json::Value` or a document's value) into `T`, naming
/// the failing field.
pub fn decode<'de, T, D>(value: D) -> Result<T, DecodeError>
where
    T: DeserializeOwned,
    D: serde::Deserializer<'de> + Copy,
{
    // Tracking the path costs as much as decoding: only a failure is decoded again with it.
    if let Ok(decoded) = T::deserialize(value) {
        return Ok(decoded);
    }
    decode_tracked(value)
}

/// [`decode`] again, tracking the path to the field that fails: out of line, so the decoding
/// that succeeds keeps its code together.
#[cold]
#[inline(never)]
fn decode_tracked<'de, T, D>(value: D) -> Result<T, DecodeError>
where
    T: DeserializeOwned,
    D: serde::Deserializer<'de>,
{
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        DecodeError {
            field,
            message: e.into_inner().to_string(),
        }
    })
}

/// Splits a YAML stream into JSON documents, skipping empty ones (`---` at the end, comments).
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Reads every object of a manifest file.
pub fn load_file(path: &Path) -> Result<Vec<Object>, ManifestError> {
    let io = |source| ManifestError::Io {
        file: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            file: path.to_owned(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    load_str(path, &text)
}

/// Reads every object of a manifest held in memory; `file` only names it in errors.
pub fn load_str(file: &Path, text: &str) -> Result<Vec<Object>, ManifestError> {
    let docs = documents(text).map_err(|message| ManifestError::Syntax {
        file: file.to_owned(),
        message,
    })?;
    docs.iter()
        .enumerate()
        .map(|(i, doc)| {
            object(doc).map_err(|error| ManifestError::Decode {
                file: file.to_owned(),
                document: i + 1,
                what: describe(doc),
                error,
            })
        })
        .collect()
}

/// The object a manifest document (or an object read from the cluster) is.
pub fn object(doc: &Value) -> Result<Object, DecodeError> {
    let api_version = doc.get("apiVersion").and_then(Value::as_str);
    let kind = doc.get("kind").and_then(Value::as_str);
    let config = format!("{}/{}", crate::CONFIG_GROUP, crate::VERSION);
    match (api_version, kind) {
        (Some(v), Some("Ingestor")) if v == config => {
            decode(doc).map(|o| Object::Ingestor(Box::new(o)))
        }
        (Some(v), Some("IngestorPolicy")) if v == config => {
            decode(doc).map(|o| Object::IngestorPolicy(Box::new(o)))
        }
        (Some(v), Some(k @ ("Ingestor" | "IngestorPolicy"))) => Err(DecodeError {
            field: "apiVersion".into(),
            message: format!("{k} is served as {config}, not {v}"),
        }),
        (None, _) if !doc.is_object() => Err(DecodeError {
            field: ".".into(),
            message: "expected a Kubernetes object (a mapping with apiVersion and kind)".into(),
        }),
        (None, _) => Err(missing("apiVersion")),
        (_, None) => Err(missing("kind")),
        _ => Ok(Object::Other(doc.clone())),
    }
}

fn missing(field: &str) -> DecodeError {
    DecodeError {
        field: field.into(),
        message: "required field is missing".into(),
    }
}

fn describe(doc: &Value) -> String {
    let kind = doc.get("kind").and_then(Value::as_str);
    let meta = doc.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
    let ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str);
    match (kind, ns, name) {
        (Some(k), Some(ns), Some(n)) => format!(" ({k} {ns}/{n})"),
        (Some(k), None, Some(n)) => format!(" ({k} {n})"),
        (Some(k), _, None) => format!(" ({k})"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: config.zen.watcher.io/v1alpha1
kind: Ingestor
metadata: {name: falco, namespace: security}
spec:
  sources:
  - name: falco
    type: webhook
    auth: {type: bearer, secretRef: {name: falco-token, key: token}}
  mapping: {category: "'security'", severity: "'high'", eventType: "'runtime_alert'"}
---
apiVersion: v1
kind: Secret
metadata: {name: falco-token, namespace: security}
stringData: {token: abc}
---
"#;

    #[test]
    fn reads_a_stream_of_objects() {
        let objects = load_str(Path::new("good.yaml"), GOOD).unwrap();
        assert_eq!(objects.len(), 2);
        let Object::Ingestor(ing) = &objects[0] else {
            panic!("first object should be an Ingestor: {:?}", objects[0]);
        };
        assert_eq!(ing.spec.sources[0].name, "falco");
        assert!(matches!(&objects[1], Object::Other(v) if v["kind"] == "Secret"));
    }

    #[test]
    fn names_file_document_object_and_field() {
        let bad = GOOD.replace("type: webhook", "type: webhok");
        let err = load_str(Path::new("bad.yaml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("bad.yaml: document 1 (Ingestor security/falco): spec.sources[0].type: unknown variant `webhok`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_names_the_field() {
        let bad = GOOD.replace("name: falco\n    type", "name: [falco]\n    type");
        let err = load_str(Path::new("bad.yaml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("spec.sources[0].name: invalid type: sequence"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let err = load_str(Path::new("broken.yaml"), "a: [1, 2\nb: {")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("broken.yaml: not valid YAML:"), "{err}");
    }

    #[test]
    fn scalars_and_missing_kind_are_refused() {
        let err = load_str(Path::new("x.yaml"), "just text")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected a Kubernetes object"), "{err}");
        let err = load_str(Path::new("x.yaml"), "apiVersion: v1\nmetadata: {}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("kind: required field is missing"), "{err}");
    }

    #[test]
    fn wrong_group_for_our_kinds_is_refused() {
        let bad = GOOD.replace("config.zen.watcher.io/v1alpha1", "zen.watcher.io/v1alpha1");
        let err = load_str(Path::new("x.yaml"), &bad).unwrap_err().to_string();
        assert!(
            err.contains("apiVersion: Ingestor is served as config.zen.watcher.io/v1alpha1"),
            "{err}"
        );
    }
}

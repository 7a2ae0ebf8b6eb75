//! `metadata` rules every object of the group follows, as kube-apiserver's ObjectMeta
//! validation states them: names, generateName, labels, annotations, and the namespace of the
//! body against the namespace of the path.

use rand::Rng;
use serde_json::{Map, Value};

/// Longest object name (a DNS subdomain).
pub const MAX_NAME_LEN: usize = 253;
/// Total size of all annotations, as kube-apiserver limits it.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;
/// Characters of the random suffix `generateName` gets (vowels and look-alikes left out).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const SUFFIX_LEN: usize = 5;

/// One problem with `metadata`, in the words of apimachinery's field errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaError {
    pub field: String,
    pub reason: &'static str,
    pub message: String,
}

impl MetaError {
    fn invalid(field: &str, value: &str, detail: &str) -> Self {
        Self {
            field: field.to_owned(),
            reason: "FieldValueInvalid",
            message: format!("{field}: Invalid value: {value:?}: {detail}"),
        }
    }

    fn required(field: &str, detail: &str) -> Self {
        Self {
            field: field.to_owned(),
            reason: "FieldValueRequired",
            message: format!("{field}: Required value: {detail}"),
        }
    }

    fn too_long(field: &str, max: usize) -> Self {
        Self {
            field: field.to_owned(),
            reason: "FieldValueTooLong",
            message: format!("{field}: Too long: may not be more than {max} bytes"),
        }
    }
}

/// A string field of `obj`'s metadata. `Value::pointer` would allocate for each step of
/// its path; this runs on every write.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// Attempts at a create whose name is generated, as kube-apiserver makes them: a name
/// another object holds is replaced by a new one.
pub const NAME_ATTEMPTS: usize = 8;

/// Where the name of an object being created comes from.
pub enum Naming<'a> {
    /// `metadata.name`, or `generateName` with a random suffix.
    Metadata,
    /// Each call gives a name to try, the next one after a name turned out to be taken; all
    /// of one shape, since only the first is validated.
    Generator(&'a (dyn Fn() -> String + Send + Sync)),
}

/// The names one create tries, decided once its metadata is read.
pub(crate) enum Names<'a> {
    /// Only the name sent.
    Given,
    GenerateName(String),
    Generator(&'a (dyn Fn() -> String + Send + Sync)),
}

impl Names<'_> {
    /// Names `meta`'s object when `naming` says so or it has only a `generateName`.
    pub(crate) fn start<'a>(naming: Naming<'a>, meta: &mut Map<String, Value>) -> Names<'a> {
        let names = match naming {
            Naming::Generator(f) => Names::Generator(f),
            Naming::Metadata => {
                let has_name = meta
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.is_empty());
                match meta.get("generateName").and_then(Value::as_str) {
                    Some(prefix) if !has_name => Names::GenerateName(prefix.to_owned()),
                    _ => Names::Given,
                }
            }
        };
        if let Some(name) = names.next() {
            meta.insert("name".into(), Value::String(name));
        }
        names
    }

    /// The next name to try, if the name is not fixed.
    pub(crate) fn next(&self) -> Option<String> {
        match self {
            Names::Given => None,
            Names::GenerateName(prefix) => Some(generated_name(prefix)),
            Names::Generator(f) => Some(f()),
        }
    }
}

/// A new object's `metadata.uid`: a random (version 4) UUID, as kube-apiserver makes them.
/// Drawn from the thread's generator rather than a system call per object.
pub fn new_uid() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// `prefix` (trimmed so the result still fits a name, as kube-apiserver trims it) and a
/// random suffix.
fn generated_name(prefix: &str) -> String {
    let max_prefix = MAX_NAME_LEN - SUFFIX_LEN;
    let mut name: String = prefix.chars().take(max_prefix).collect();
    let mut rng = rand::rng();
    name.extend(
        (0..SUFFIX_LEN)
            .map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char),
    );
    name
}

/// Checks `metadata` of an object about to be written.
pub fn validate(meta: &Map<String, Value>) -> Vec<MetaError> {
    let mut errors = Vec::new();
    match meta.get("name").and_then(Value::as_str) {
        None | Some("") => errors.push(MetaError::required(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(name) => {
            if let Some(detail) = dns_subdomain_problem(name) {
                errors.push(MetaError::invalid("metadata.name", name, &detail));
            }
        }
    }
    if let Some(labels) = meta.get("labels") {
        match labels.as_object() {
            Some(labels) => {
                for (key, value) in labels {
                    let field = "metadata.labels".to_owned();
                    if let Some(detail) = qualified_name_problem(key) {
                        errors.push(MetaError::invalid(&field, key, &detail));
                    }
                    match value.as_str() {
                        Some(v) => {
                            if let Some(detail) = label_value_problem(v) {
                                errors.push(MetaError::invalid(&field, v, &detail));
                            }
                        }
                        None => errors.push(MetaError::invalid(
                            &field,
                            &value.to_string(),
                            "must be a string",
                        )),
                    }
                }
            }
            None => errors.push(MetaError::invalid(
                "metadata.labels",
                &labels.to_string(),
                "must be a map of strings",
            )),
        }
    }
    if let Some(annotations) = meta.get("annotations") {
        match annotations.as_object() {
            Some(annotations) => {
                let mut total = 0;
                for (key, value) in annotations {
                    if let Some(detail) = qualified_name_problem(&key.to_ascii_lowercase()) {
                        errors.push(MetaError::invalid("metadata.annotations", key, &detail));
                    }
                    match value.as_str() {
                        Some(v) => total += key.len() + v.len(),
                        None => errors.push(MetaError::invalid(
                            "metadata.annotations",
                            &value.to_string(),
                            "must be a string",
                        )),
                    }
                }
                if total > MAX_ANNOTATIONS_BYTES {
                    errors.push(MetaError::too_long(
                        "metadata.annotations",
                        MAX_ANNOTATIONS_BYTES,
                    ));
                }
            }
            None => errors.push(MetaError::invalid(
                "metadata.annotations",
                &annotations.to_string(),
                "must be a map of strings",
            )),
        }
    }
    errors
}

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// Why `name` is not a DNS-1123 subdomain, in apimachinery's words.
pub fn dns_subdomain_problem(name: &str) -> Option<String> {
    if name.len() > MAX_NAME_LEN {
        return Some(format!("must be no more than {MAX_NAME_LEN} characters"));
    }
    let label_ok = |label: &str| {
        let b = label.as_bytes();
        !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    if name.split('.').all(label_ok) {
        None
    } else {
        Some(DNS1123_SUBDOMAIN_MSG.to_owned())
    }
}

/// Why `key` is not a qualified name (`[prefix/]name`), as label and annotation keys must be.
fn qualified_name_problem(key: &str) -> Option<String> {
    const NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Some("prefix part must be non-empty".to_owned());
        }
        if let Some(detail) = dns_subdomain_problem(prefix) {
            return Some(format!("prefix part {detail}"));
        }
    }
    if name.is_empty() {
        return Some("name part must be non-empty".to_owned());
    }
    if name.len() > 63 {
        return Some("name part must be no more than 63 characters".to_owned());
    }
    if !name_part_ok(name) {
        return Some(NAME_MSG.to_owned());
    }
    None
}

fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if value.len() > 63 {
        return Some("must be no more than 63 characters".to_owned());
    }
    if !name_part_ok(value) {
        return Some("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_owned());
    }
    None
}

fn name_part_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_alphanumeric();
    b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Now, as `metav1.Time` writes it (second precision).
pub fn now_rfc3339() -> String {
    let t = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(t.as_second())
        .map(|t| t.to_string())
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn uids_are_version_4_uuids_and_differ() {
        let (a, b) = (new_uid(), new_uid());
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(a, parsed.hyphenated().to_string(), "lowercase, hyphenated");
    }

    fn meta(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn generate_name_appends_a_suffix() {
        let mut m = meta(json!({"generateName": "scan-"}));
        let names = Names::start(Naming::Metadata, &mut m);
        let name = m["name"].as_str().unwrap();
        assert!(name.starts_with("scan-") && name.len() == 10, "{name}");
        assert!(validate(&m).is_empty());
        let next = names.next().unwrap();
        assert!(next.starts_with("scan-") && next.len() == 10, "{next}");

        let mut named = meta(json!({"name": "keep", "generateName": "scan-"}));
        let names = Names::start(Naming::Metadata, &mut named);
        assert_eq!(named["name"], "keep");
        assert_eq!(names.next(), None, "a name sent is never replaced");

        let long = "p".repeat(300);
        let mut m = meta(json!({"generateName": long}));
        Names::start(Naming::Metadata, &mut m);
        assert_eq!(m["name"].as_str().unwrap().len(), MAX_NAME_LEN);
    }

    #[test]
    fn a_generator_names_the_object_even_over_a_name_sent() {
        let counter = std::sync::atomic::AtomicUsize::new(0);
        let generator = move || {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("gen-{n}")
        };
        let mut m = meta(json!({"name": "sent"}));
        let names = Names::start(Naming::Generator(&generator), &mut m);
        assert_eq!(m["name"], "gen-0");
        assert_eq!(names.next().as_deref(), Some("gen-1"));
    }

    #[test]
    fn names_must_be_dns_subdomains() {
        assert!(validate(&meta(json!({"name": "ok.name-1"}))).is_empty());
        let errs = validate(&meta(json!({"name": "Bad_Name"})));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].reason, "FieldValueInvalid");
        assert!(
            errs[0].message.starts_with(
                "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"
            ),
            "{}",
            errs[0].message
        );
        let errs = validate(&meta(json!({})));
        assert_eq!(
            errs[0].message,
            "metadata.name: Required value: name or generateName is required"
        );
        assert!(!validate(&meta(json!({"name": "a".repeat(254)}))).is_empty());
    }

    #[test]
    fn labels_and_annotations() {
        assert!(
            validate(&meta(
                json!({"name": "a", "labels": {"app.kubernetes.io/name": "zen", "x": ""}})
            ))
            .is_empty()
        );
        let errs = validate(&meta(
            json!({"name": "a", "labels": {"bad key": "v", "k": "bad value!", "n": 5}}),
        ));
        assert_eq!(errs.len(), 3, "{errs:?}");
        let big = "x".repeat(MAX_ANNOTATIONS_BYTES);
        let errs = validate(&meta(json!({"name": "a", "annotations": {"note": big}})));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].reason, "FieldValueTooLong");
    }
}

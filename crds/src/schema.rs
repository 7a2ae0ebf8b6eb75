//! Validation of JSON objects against the structural OpenAPI schemas of these types, the way
//! kube-apiserver validates custom resources, with apimachinery's field error wording. The
//! schema is the single source of truth: no per-field checks are written by hand.

use std::{collections::HashMap, fmt::Write as _};

use serde_json::Value;

/// Deepest nesting walked; deeper input is refused instead of risking the stack.
const MAX_DEPTH: usize = 64;
/// Errors reported at most, like kube-apiserver's cap on causes.
const MAX_ERRORS: usize = 100;

/// Kind of a field error, with its `metav1.CauseType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Required,
    Invalid,
    NotSupported,
    TooLong,
    TooMany,
    Duplicate,
    TypeInvalid,
    /// A field the schema does not declare (`fieldValidation=Strict`).
    Unknown,
}

impl ErrorKind {
    pub fn cause(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Duplicate => "FieldValueDuplicate",
            Self::TypeInvalid => "FieldValueTypeInvalid",
            Self::Unknown => "FieldValueInvalid",
        }
    }
}

/// One problem, at a dotted field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub kind: ErrorKind,
    pub field: String,
    /// The whole message, as apimachinery's `field.Error.Error()` prints it.
    pub message: String,
}

/// What to do with fields the schema does not know (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownFields {
    /// Refuse them.
    Strict,
    /// Drop them and warn (kube-apiserver's default for kubectl).
    #[default]
    Warn,
    /// Drop them silently.
    Ignore,
}

/// The outcome: errors, warnings, and the object with unknown fields pruned.
#[derive(Debug, Clone, Default)]
pub struct Validated {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<String>,
}

/// A schema with its patterns compiled once.
pub struct SchemaValidator {
    schema: Value,
    patterns: HashMap<String, regex::Regex>,
}

impl SchemaValidator {
    /// Compiles every `pattern` of `schema`.
    pub fn new(schema: Value) -> Result<Self, String> {
        let mut patterns = HashMap::new();
        collect_patterns(&schema, &mut patterns)?;
        Ok(Self { schema, patterns })
    }

    /// Validates `object` in place: unknown fields are pruned unless `unknown` is Strict.
    /// `apiVersion`, `kind` and `metadata` at the root are left to the API layer.
    pub fn validate(&self, object: &mut Value, unknown: UnknownFields) -> Validated {
        let mut out = Validated::default();
        let Some(map) = object.as_object_mut() else {
            out.errors.push(FieldError {
                kind: ErrorKind::TypeInvalid,
                field: String::new(),
                message: "Invalid value: the object must be a JSON object".into(),
            });
            return out;
        };
        let props = self.schema.get("properties").and_then(Value::as_object);
        let mut walker = Walker {
            v: self,
            out: &mut out,
            unknown,
        };
        let mut path = String::new();
        let mut unknown_keys = Vec::new();
        for (key, value) in map.iter_mut() {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match props.and_then(|p| p.get(key)) {
                Some(schema) => {
                    path.clear();
                    path.push_str(key);
                    walker.walk(schema, value, &mut path, 1);
                }
                None => {
                    if walker.unknown_field(key) {
                        unknown_keys.push(key.clone());
                    }
                }
            }
        }
        for key in unknown_keys {
            map.remove(&key);
        }
        if let Some(required) = self.schema.get("required").and_then(Value::as_array) {
            for r in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(r) {
                    walker.push(ErrorKind::Required, r, format!("{r}: Required value"));
                }
            }
        }
        out
    }
}

fn collect_patterns(schema: &Value, out: &mut HashMap<String, regex::Regex>) -> Result<(), String> {
    match schema {
        Value::Object(m) => {
            if let Some(Value::String(p)) = m.get("pattern") {
                let re = regex::Regex::new(p).map_err(|e| format!("pattern {p:?}: {e}"))?;
                out.insert(p.clone(), re);
            }
            for v in m.values() {
                collect_patterns(v, out)?;
            }
        }
        Value::Array(a) => {
            for v in a {
                collect_patterns(v, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

struct Walker<'a> {
    v: &'a SchemaValidator,
    out: &'a mut Validated,
    unknown: UnknownFields,
}

fn go_string(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Walker<'_> {
    fn push(&mut self, kind: ErrorKind, field: &str, message: String) {
        if self.out.errors.len() < MAX_ERRORS {
            self.out.errors.push(FieldError {
                kind,
                field: field.to_owned(),
                message,
            });
        }
    }

    /// Reports the undeclared field at `path`; whether it is to be pruned.
    fn unknown_field(&mut self, path: &str) -> bool {
        match self.unknown {
            UnknownFields::Strict => {
                self.push(
                    ErrorKind::Unknown,
                    path,
                    format!(".{path}: field not declared in schema"),
                );
                false
            }
            UnknownFields::Warn => {
                self.out.warnings.push(format!("unknown field \"{path}\""));
                true
            }
            UnknownFields::Ignore => true,
        }
    }

    /// Checks `value` at `path`, which it extends for the parts below and then restores.
    fn walk(&mut self, schema: &Value, value: &mut Value, path: &mut String, depth: usize) {
        if depth > MAX_DEPTH {
            self.push(
                ErrorKind::Invalid,
                path,
                format!("{path}: Invalid value: nested more than {MAX_DEPTH} levels"),
            );
            return;
        }
        if value.is_null() {
            if schema.get("nullable") == Some(&Value::Bool(true)) {
                return;
            }
            self.push(ErrorKind::Required, path, format!("{path}: Required value"));
            return;
        }
        let preserve =
            schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            let actual = type_name(value);
            let ok = actual == t || (t == "number" && actual == "integer");
            if !ok {
                self.push(
                    ErrorKind::TypeInvalid,
                    path,
                    format!("{path}: Invalid value: \"{actual}\": {path} in body must be of type {t}: \"{actual}\""),
                );
                return;
            }
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            let supported: Vec<String> = options.iter().map(go_string).collect();
            self.push(
                ErrorKind::NotSupported,
                path,
                format!(
                    "{path}: Unsupported value: {}: supported values: {}",
                    go_string(value),
                    supported.join(", ")
                ),
            );
        }
        match value {
            Value::String(s) => self.string(schema, s, path),
            Value::Number(n) => self.number(schema, n, path),
            Value::Array(items) => {
                if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                    && items.len() as u64 > max
                {
                    self.push(
                        ErrorKind::TooMany,
                        path,
                        format!(
                            "{path}: Too many: {}: must have at most {max} items",
                            items.len()
                        ),
                    );
                }
                if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                    && (items.len() as u64) < min
                {
                    self.push(ErrorKind::Invalid, path, format!("{path}: Invalid value: {}: {path} in body should have at least {min} items", items.len()));
                }
                self.list_type(schema, items, path);
                if let Some(item_schema) = schema.get("items") {
                    let len = path.len();
                    for (i, item) in items.iter_mut().enumerate() {
                        let _ = write!(path, "[{i}]");
                        self.walk(item_schema, item, path, depth + 1);
                        path.truncate(len);
                    }
                }
            }
            Value::Object(map) => {
                let props = schema.get("properties").and_then(Value::as_object);
                let additional = schema.get("additionalProperties");
                let len = path.len();
                let mut unknown_keys = Vec::new();
                for (key, v) in map.iter_mut() {
                    path.push('.');
                    path.push_str(key);
                    if let Some(s) = props.and_then(|p| p.get(key)) {
                        self.walk(s, v, path, depth + 1);
                    } else if let Some(s) = additional.filter(|a| a.is_object()) {
                        self.walk(s, v, path, depth + 1);
                    } else if !preserve && additional != Some(&Value::Bool(true)) {
                        if self.unknown_field(path) {
                            unknown_keys.push(key.clone());
                        }
                    } else if too_deep(v, depth + 1) {
                        // Kept as given: still bounded in depth.
                        self.push(
                            ErrorKind::Invalid,
                            path,
                            format!("{path}: Invalid value: nested more than {MAX_DEPTH} levels"),
                        );
                    }
                    path.truncate(len);
                }
                for key in unknown_keys {
                    map.remove(&key);
                }
                if let Some(required) = schema.get("required").and_then(Value::as_array) {
                    for r in required.iter().filter_map(Value::as_str) {
                        if !map.contains_key(r) {
                            let f = format!("{path}.{r}");
                            self.push(ErrorKind::Required, &f, format!("{f}: Required value"));
                        }
                    }
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
    }

    fn string(&mut self, schema: &Value, s: &str, path: &str) {
        let len = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            self.push(
                ErrorKind::TooLong,
                path,
                format!("{path}: Too long: may not be more than {max} bytes"),
            );
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            self.push(ErrorKind::Invalid, path, format!("{path}: Invalid value: {s:?}: {path} in body should be at least {min} chars long"));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str)
            && let Some(re) = self.v.patterns.get(p)
            && !re.is_match(s)
        {
            self.push(
                ErrorKind::Invalid,
                path,
                format!("{path}: Invalid value: {s:?}: {path} in body should match '{p}'"),
            );
        }
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && s.parse::<k8s_openapi::jiff::Timestamp>().is_err()
        {
            self.push(
                ErrorKind::Invalid,
                path,
                format!(
                    "{path}: Invalid value: {s:?}: {path} in body must be of type date-time: {s:?}"
                ),
            );
        }
    }

    fn number(&mut self, schema: &Value, n: &serde_json::Number, path: &str) {
        let Some(x) = n.as_f64() else { return };
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && x < min
        {
            self.push(ErrorKind::Invalid, path, format!("{path}: Invalid value: {n}: {path} in body should be greater than or equal to {min}"));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && x > max
        {
            self.push(ErrorKind::Invalid, path, format!("{path}: Invalid value: {n}: {path} in body should be less than or equal to {max}"));
        }
    }

    fn list_type(&mut self, schema: &Value, items: &[Value], path: &str) {
        match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        self.push(
                            ErrorKind::Duplicate,
                            &format!("{path}[{i}]"),
                            format!("{path}[{i}]: Duplicate value: {}", go_string(item)),
                        );
                    }
                }
            }
            Some("map") => {
                let keys: Vec<&str> = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let key_of = |item: &Value| -> Vec<Value> {
                    keys.iter()
                        .map(|k| item.get(*k).cloned().unwrap_or(Value::Null))
                        .collect()
                };
                for (i, item) in items.iter().enumerate() {
                    let k = key_of(item);
                    if items[..i].iter().any(|other| key_of(other) == k) {
                        let shown: Vec<String> = keys
                            .iter()
                            .zip(&k)
                            .map(|(n, v)| format!("\"{n}\":{v}"))
                            .collect();
                        self.push(
                            ErrorKind::Duplicate,
                            &format!("{path}[{i}]"),
                            format!(
                                "{path}[{i}]: Duplicate value: map[string]interface {{}}{{{}}}",
                                shown.join(", ")
                            ),
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

fn too_deep(v: &Value, depth: usize) -> bool {
    // Iterative, so the check itself cannot overflow the stack.
    let mut stack = vec![(v, depth)];
    while let Some((v, d)) = stack.pop() {
        if d > MAX_DEPTH {
            return true;
        }
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(m) => stack.extend(m.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::json;

    use super::*;
    use crate::{Ingestor, Observation};

    fn schema_of(
        crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    ) -> SchemaValidator {
        let s = crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap();
        SchemaValidator::new(serde_json::to_value(s).unwrap()).unwrap()
    }

    fn obs(spec: Value) -> Value {
        json!({"apiVersion": "zen.watcher.io/v1alpha1", "kind": "Observation", "metadata": {"name": "x"}, "spec": spec})
    }

    fn messages(v: &Validated) -> Vec<String> {
        v.errors.iter().map(|e| e.message.clone()).collect()
    }

    #[test]
    fn observation_rules() {
        let s = schema_of(Observation::crd());
        let good = json!({"source": "falco", "category": "security", "severity": "high", "eventType": "runtime_alert",
                          "details": {"deep": {"a": [1, {"b": null}]}}, "detectedAt": "2026-01-01T00:00:00Z"});
        let mut o = obs(good.clone());
        assert!(s.validate(&mut o, UnknownFields::Strict).errors.is_empty());
        assert_eq!(o["spec"]["details"], good["details"]);

        let mut o = obs(
            json!({"source": "falco", "category": "security", "severity": "CRITICAL", "eventType": "x"}),
        );
        assert_eq!(
            messages(&s.validate(&mut o, UnknownFields::Warn)),
            [
                "spec.severity: Unsupported value: \"CRITICAL\": supported values: \"critical\", \"high\", \"medium\", \"low\", \"info\""
            ]
        );
        let mut o = obs(
            json!({"category": "security", "severity": "low", "eventType": "Bad Type", "ttlSecondsAfterCreation": 0}),
        );
        let m = messages(&s.validate(&mut o, UnknownFields::Warn));
        assert!(
            m.contains(&"spec.source: Required value".to_string()),
            "{m:?}"
        );
        assert!(m.contains(&"spec.eventType: Invalid value: \"Bad Type\": spec.eventType in body should match '^[a-z0-9_]+$'".to_string()), "{m:?}");
        assert!(
            m.iter()
                .any(|x| x.starts_with("spec.ttlSecondsAfterCreation: Invalid value: 0")),
            "{m:?}"
        );
        let mut o = obs(
            json!({"source": 5, "category": "security", "severity": "low", "eventType": "x", "detectedAt": "yesterday"}),
        );
        let m = messages(&s.validate(&mut o, UnknownFields::Warn));
        assert!(m.iter().any(|x| x.starts_with("spec.source: Invalid value: \"integer\": spec.source in body must be of type string")), "{m:?}");
        assert!(
            m.iter()
                .any(|x| x.starts_with("spec.detectedAt: Invalid value: \"yesterday\"")),
            "{m:?}"
        );
    }

    #[test]
    fn unknown_fields_by_mode() {
        let s = schema_of(Observation::crd());
        let spec = json!({"source": "a", "category": "cost", "severity": "info", "eventType": "x", "colour": "red"});
        let mut o = obs(spec.clone());
        let v = s.validate(&mut o, UnknownFields::Strict);
        assert_eq!(messages(&v), [".spec.colour: field not declared in schema"]);
        let mut o = obs(spec.clone());
        let v = s.validate(&mut o, UnknownFields::Warn);
        assert!(v.errors.is_empty());
        assert_eq!(v.warnings, ["unknown field \"spec.colour\""]);
        assert!(o["spec"].get("colour").is_none());
        let mut o = obs(spec);
        assert!(
            s.validate(&mut o, UnknownFields::Ignore)
                .warnings
                .is_empty()
        );
    }

    #[test]
    fn duplicates_and_depth() {
        let s = schema_of(Ingestor::crd());
        let src = json!({"name": "a", "type": "kubernetesEvents"});
        let mut o = json!({"metadata": {}, "spec": {"sources": [src, src]}});
        let m = messages(&s.validate(&mut o, UnknownFields::Warn));
        assert_eq!(
            m,
            ["spec.sources[1]: Duplicate value: map[string]interface {}{\"name\":\"a\"}"]
        );

        let obs_schema = schema_of(Observation::crd());
        let mut deep = json!(1);
        for _ in 0..100_000 {
            deep = Value::Array(vec![deep]);
        }
        // Built by hand: `json!` would serialize the deep value recursively.
        let mut o = obs(
            json!({"source": "a", "category": "cost", "severity": "info", "eventType": "x", "details": {}}),
        );
        if let Some(details) = o
            .pointer_mut("/spec/details")
            .and_then(Value::as_object_mut)
        {
            details.insert("d".into(), deep);
        }
        let m = messages(&obs_schema.validate(&mut o, UnknownFields::Warn));
        assert!(m.iter().any(|x| x.contains("nested more than")), "{m:?}");
        // Dropping a 100,000-deep value recursively would overflow the stack, as would serde.
        std::mem::forget(o);
    }
}

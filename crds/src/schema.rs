//! Validation of JSON objects against the structural OpenAPI schemas of these types, the way
//! kube-apiserver validates custom resources, with apimachinery's field error wording. The
//! schema is the single source of truth: no per-field checks are written by hand.

use std::fmt::Write as _;

use serde_json::Value;
use zen_json::{Kind, Number, ReadJson};

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

/// A schema compiled once into [`Node`]s, so a validation looks nothing up in the schema's
/// JSON: every node of every object would otherwise search its schema's map for a dozen
/// keywords.
pub struct SchemaValidator {
    root: Node,
}

/// One level of a structural schema, with the keywords validation reads.
#[derive(Default)]
struct Node {
    nullable: bool,
    preserve_unknown: bool,
    /// `type`, when the schema gives one.
    ty: Option<JsonType>,
    enumeration: Option<Vec<Value>>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    list: ListType,
    items: Option<Box<Node>>,
    /// Sorted by name, for binary search.
    properties: Vec<(String, Node)>,
    additional: Additional,
    required: Vec<String>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    pattern: Option<regex::Regex>,
    date_time: bool,
    minimum: Option<f64>,
    maximum: Option<f64>,
}

/// What `additionalProperties` allows beside the declared properties.
#[derive(Default)]
enum Additional {
    /// Nothing: other fields are unknown (unless unknown fields are preserved).
    #[default]
    None,
    /// Anything (`true`).
    Any,
    /// Values of this schema.
    Schema(Box<Node>),
}

#[derive(Default)]
enum ListType {
    #[default]
    Atomic,
    Set,
    /// `map`, with its `x-kubernetes-list-map-keys`.
    Map(Vec<String>),
}

impl Node {
    fn compile(schema: &Value, depth: usize) -> Result<Self, String> {
        if depth > MAX_DEPTH {
            return Err(format!("the schema is nested more than {MAX_DEPTH} levels"));
        }
        let get = |k: &str| schema.get(k);
        let flag = |k: &str| get(k) == Some(&Value::Bool(true));
        let uint = |k: &str| get(k).and_then(Value::as_u64);
        let float = |k: &str| get(k).and_then(Value::as_f64);
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let pattern = match get("pattern").and_then(Value::as_str) {
            Some(p) => Some(regex::Regex::new(p).map_err(|e| format!("pattern {p:?}: {e}"))?),
            None => None,
        };
        let mut properties = Vec::new();
        if let Some(props) = get("properties").and_then(Value::as_object) {
            for (name, sub) in props {
                properties.push((name.clone(), Node::compile(sub, depth + 1)?));
            }
        }
        properties.sort_by(|a, b| a.0.cmp(&b.0));
        let additional = match get("additionalProperties") {
            Some(Value::Bool(true)) => Additional::Any,
            Some(sub @ Value::Object(_)) => {
                Additional::Schema(Box::new(Node::compile(sub, depth + 1)?))
            }
            _ => Additional::None,
        };
        let list = match get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListType::Set,
            Some("map") => ListType::Map(strings(get("x-kubernetes-list-map-keys"))),
            _ => ListType::Atomic,
        };
        let items = match get("items") {
            Some(sub) => Some(Box::new(Node::compile(sub, depth + 1)?)),
            None => None,
        };
        Ok(Node {
            nullable: flag("nullable"),
            preserve_unknown: flag("x-kubernetes-preserve-unknown-fields"),
            ty: match get("type").and_then(Value::as_str) {
                Some(name) => {
                    Some(JsonType::named(name).ok_or_else(|| format!("unknown type {name:?}"))?)
                }
                None => None,
            },
            enumeration: get("enum").and_then(Value::as_array).cloned(),
            min_items: uint("minItems"),
            max_items: uint("maxItems"),
            list,
            items,
            properties,
            additional,
            required: strings(get("required")),
            min_length: uint("minLength"),
            max_length: uint("maxLength"),
            pattern,
            date_time: get("format").and_then(Value::as_str) == Some("date-time"),
            minimum: float("minimum"),
            maximum: float("maximum"),
        })
    }

    fn properties(&self) -> Properties<'_> {
        Properties {
            all: &self.properties,
            rest: &self.properties,
        }
    }
}

/// Finds an object's keys among a schema's properties. Both come sorted (entries are read in
/// key order, properties sorted when compiled), so one pass over the properties serves all
/// of an object's keys instead of a search for each. A key the pass does not find is
/// searched for, so keys out of order are still found.
struct Properties<'s> {
    all: &'s [(String, Node)],
    rest: &'s [(String, Node)],
}

impl<'s> Properties<'s> {
    fn find(&mut self, key: &str) -> Option<&'s Node> {
        while let Some(((name, node), tail)) = self.rest.split_first() {
            match name.as_str().cmp(key) {
                std::cmp::Ordering::Less => self.rest = tail,
                std::cmp::Ordering::Equal => {
                    self.rest = tail;
                    return Some(node);
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        self.all
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.all[i].1)
    }
}

impl SchemaValidator {
    /// Compiles `schema`, with every `pattern` in it.
    pub fn new(schema: Value) -> Result<Self, String> {
        Ok(Self {
            root: Node::compile(&schema, 0)?,
        })
    }

    /// Validates `object` in place: unknown fields are pruned unless `unknown` is Strict.
    /// `apiVersion`, `kind` and `metadata` at the root are left to the API layer.
    pub fn validate(&self, object: &mut Value, unknown: UnknownFields) -> Validated {
        let (out, pruned) = self.walk(&*object, unknown);
        for place in pruned {
            remove(object, &place);
        }
        out
    }

    /// Validates `object` as [`validate`](Self::validate) does with `Strict`, which changes
    /// nothing, so the object need not be copied to be checked: a `serde_json` value or a
    /// document's.
    pub fn check<'v>(&self, object: impl ReadJson<'v>) -> Validated {
        self.walk(object, UnknownFields::Strict).0
    }

    /// The outcome, and the places of the fields to prune.
    fn walk<'v>(
        &self,
        object: impl ReadJson<'v>,
        unknown: UnknownFields,
    ) -> (Validated, Vec<Vec<Place>>) {
        let mut out = Validated::default();
        if object.kind() != Kind::Object {
            out.errors.push(FieldError {
                kind: ErrorKind::TypeInvalid,
                field: String::new(),
                message: "Invalid value: the object must be a JSON object".into(),
            });
            return (out, Vec::new());
        };
        let mut walker = Walker {
            out: &mut out,
            unknown,
            steps: Vec::new(),
            pruned: Vec::new(),
        };
        let mut properties = self.root.properties();
        for (key, value) in object.sorted_entries() {
            if matches!(key, "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match properties.find(key) {
                Some(schema) => {
                    walker.steps.push(Step::Key(key));
                    walker.walk(schema, value, 1);
                    walker.steps.pop();
                }
                None => walker.unknown_field(key),
            }
        }
        for r in &self.root.required {
            if object.get(r).is_none() {
                walker.push(ErrorKind::Required, r, format!("{r}: Required value"));
            }
        }
        let pruned = std::mem::take(&mut walker.pruned);
        (out, pruned)
    }
}

/// Where a value is, from the root: object keys and array indexes.
#[derive(Debug, Clone, Copy)]
enum Step<'v> {
    Key(&'v str),
    Index(usize),
}

/// A [`Step`] kept after the walk.
#[derive(Debug)]
enum Place {
    Key(String),
    Index(usize),
}

/// Removes the field at `place`.
fn remove(object: &mut Value, place: &[Place]) {
    let Some((Place::Key(last), parents)) = place.split_last() else {
        return;
    };
    let mut node = object;
    for step in parents {
        let next = match (step, node) {
            (Place::Key(k), Value::Object(m)) => m.get_mut(k),
            (Place::Index(i), Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        let Some(next) = next else { return };
        node = next;
    }
    if let Value::Object(m) = node {
        m.remove(last);
    }
}

struct Walker<'a, 'v> {
    out: &'a mut Validated,
    unknown: UnknownFields,
    /// Where the walk is.
    steps: Vec<Step<'v>>,
    pruned: Vec<Vec<Place>>,
}

fn go_string<'v>(v: impl ReadJson<'v>) -> String {
    match v.as_str() {
        Some(s) => format!("{s:?}"),
        None => v.to_serde().to_string(),
    }
}

/// The types of OpenAPI, as a value has one and a schema asks for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Array,
    Object,
}

impl JsonType {
    const ALL: [JsonType; 7] = [
        Self::Null,
        Self::Boolean,
        Self::Integer,
        Self::Number,
        Self::String,
        Self::Array,
        Self::Object,
    ];

    fn of<'v>(v: impl ReadJson<'v>) -> Self {
        match v.kind() {
            Kind::Null => Self::Null,
            Kind::Bool => Self::Boolean,
            Kind::Number => match v.as_number() {
                Some(Number::Int(_) | Number::Uint(_)) => Self::Integer,
                _ => Self::Number,
            },
            Kind::String => Self::String,
            Kind::Array => Self::Array,
            Kind::Object => Self::Object,
        }
    }

    fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    fn name(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Boolean => "boolean",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::String => "string",
            Self::Array => "array",
            Self::Object => "object",
        }
    }
}

impl<'v> Walker<'_, 'v> {
    fn push(&mut self, kind: ErrorKind, field: &str, message: String) {
        if self.out.errors.len() < MAX_ERRORS {
            self.out.errors.push(FieldError {
                kind,
                field: field.to_owned(),
                message,
            });
        }
    }

    /// The path of the value the walk is at, as errors name it (`spec.sources[0].auth`):
    /// written out only for an error, not for every value walked.
    fn path(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            match step {
                Step::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Step::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
            }
        }
        out
    }

    /// The path of field `key` of the value the walk is at.
    fn path_to(&self, key: &str) -> String {
        let mut out = self.path();
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(key);
        out
    }

    /// Reports the undeclared field `key` of the value the walk is at, and records it for
    /// pruning unless unknown fields are refused.
    fn unknown_field(&mut self, key: &str) {
        match self.unknown {
            UnknownFields::Strict => {
                let path = self.path_to(key);
                self.push(
                    ErrorKind::Unknown,
                    &path,
                    format!(".{path}: field not declared in schema"),
                );
                return;
            }
            UnknownFields::Warn => {
                let path = self.path_to(key);
                self.out.warnings.push(format!("unknown field \"{path}\""));
            }
            UnknownFields::Ignore => {}
        }
        let mut place: Vec<Place> = self
            .steps
            .iter()
            .map(|s| match s {
                Step::Key(k) => Place::Key((*k).to_owned()),
                Step::Index(i) => Place::Index(*i),
            })
            .collect();
        place.push(Place::Key(key.to_owned()));
        self.pruned.push(place);
    }

    /// Checks `value`, where [`steps`](Self::steps) say it is.
    fn walk(&mut self, schema: &Node, value: impl ReadJson<'v>, depth: usize) {
        if depth > MAX_DEPTH {
            let path = &self.path();
            self.push(
                ErrorKind::Invalid,
                path,
                format!("{path}: Invalid value: nested more than {MAX_DEPTH} levels"),
            );
            return;
        }
        if value.kind() == Kind::Null {
            if schema.nullable {
                return;
            }
            let path = &self.path();
            self.push(ErrorKind::Required, path, format!("{path}: Required value"));
            return;
        }
        if let Some(t) = schema.ty {
            let actual = JsonType::of(value);
            let ok = actual == t || (t == JsonType::Number && actual == JsonType::Integer);
            if !ok {
                let (path, actual, t) = (&self.path(), actual.name(), t.name());
                self.push(
                    ErrorKind::TypeInvalid,
                    path,
                    format!("{path}: Invalid value: \"{actual}\": {path} in body must be of type {t}: \"{actual}\""),
                );
                return;
            }
        }
        if let Some(options) = &schema.enumeration
            && !options.iter().any(|o| value.equals(o))
        {
            let path = &self.path();
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
        match value.kind() {
            Kind::String => self.string(schema, value.as_str().unwrap_or_default()),
            Kind::Number => self.number(schema, value),
            Kind::Array => {
                let len = value.size().unwrap_or_default();
                if let Some(max) = schema.max_items
                    && len as u64 > max
                {
                    let path = &self.path();
                    self.push(
                        ErrorKind::TooMany,
                        path,
                        format!("{path}: Too many: {len}: must have at most {max} items"),
                    );
                }
                if let Some(min) = schema.min_items
                    && (len as u64) < min
                {
                    let path = &self.path();
                    self.push(ErrorKind::Invalid, path, format!("{path}: Invalid value: {len}: {path} in body should have at least {min} items"));
                }
                self.list_type(schema, value);
                if let Some(item_schema) = &schema.items {
                    for (i, item) in value.elements().enumerate() {
                        self.steps.push(Step::Index(i));
                        self.walk(item_schema, item, depth + 1);
                        self.steps.pop();
                    }
                }
            }
            Kind::Object => {
                let mut properties = schema.properties();
                for (key, v) in value.sorted_entries() {
                    let below = match properties.find(key) {
                        Some(s) => Some(s),
                        None => match &schema.additional {
                            Additional::Schema(s) => Some(&**s),
                            _ => None,
                        },
                    };
                    if let Some(s) = below {
                        self.steps.push(Step::Key(key));
                        self.walk(s, v, depth + 1);
                        self.steps.pop();
                    } else if !schema.preserve_unknown
                        && !matches!(schema.additional, Additional::Any)
                    {
                        self.unknown_field(key);
                    } else if too_deep(v, depth + 1) {
                        // Kept as given: still bounded in depth.
                        let path = &self.path_to(key);
                        self.push(
                            ErrorKind::Invalid,
                            path,
                            format!("{path}: Invalid value: nested more than {MAX_DEPTH} levels"),
                        );
                    }
                }
                for r in &schema.required {
                    if value.get(r).is_none() {
                        let f = self.path_to(r);
                        self.push(ErrorKind::Required, &f, format!("{f}: Required value"));
                    }
                }
            }
            Kind::Bool | Kind::Null => {}
        }
    }

    fn string(&mut self, schema: &Node, s: &str) {
        // A string has at most as many characters as bytes, and at least a quarter as many:
        // they are counted only where that does not decide.
        let bytes = s.len() as u64;
        let counted = |s: &str| s.chars().count() as u64;
        let too_long = schema
            .max_length
            .filter(|&max| bytes > max && counted(s) > max);
        let too_short = schema
            .min_length
            .filter(|&min| bytes < min.saturating_mul(4) && counted(s) < min);
        if too_long.is_some() || too_short.is_some() {
            let len = counted(s);
            if let Some(max) = schema.max_length
                && len > max
            {
                let path = &self.path();
                self.push(
                    ErrorKind::TooLong,
                    path,
                    format!("{path}: Too long: may not be more than {max} bytes"),
                );
            }
            if let Some(min) = schema.min_length
                && len < min
            {
                let path = &self.path();
                self.push(ErrorKind::Invalid, path, format!("{path}: Invalid value: {s:?}: {path} in body should be at least {min} chars long"));
            }
        }
        if let Some(re) = &schema.pattern
            && !re.is_match(s)
        {
            let (path, p) = (&self.path(), re.as_str());
            self.push(
                ErrorKind::Invalid,
                path,
                format!("{path}: Invalid value: {s:?}: {path} in body should match '{p}'"),
            );
        }
        if schema.date_time && s.parse::<k8s_openapi::jiff::Timestamp>().is_err() {
            let path = &self.path();
            self.push(
                ErrorKind::Invalid,
                path,
                format!(
                    "{path}: Invalid value: {s:?}: {path} in body must be of type date-time: {s:?}"
                ),
            );
        }
    }

    fn number(&mut self, schema: &Node, value: impl ReadJson<'v>) {
        let x = match value.as_number() {
            Some(Number::Int(i)) => i as f64,
            Some(Number::Uint(u)) => u as f64,
            Some(Number::Float(f)) => f,
            None => return,
        };
        // As `serde_json` writes the number, only for a message.
        let n = || value.to_serde();
        if let Some(min) = schema.minimum
            && x < min
        {
            let path = &self.path();
            self.push(ErrorKind::Invalid, path, format!("{path}: Invalid value: {}: {path} in body should be greater than or equal to {min}", n()));
        }
        if let Some(max) = schema.maximum
            && x > max
        {
            let path = &self.path();
            self.push(ErrorKind::Invalid, path, format!("{path}: Invalid value: {}: {path} in body should be less than or equal to {max}", n()));
        }
    }

    fn list_type(&mut self, schema: &Node, list: impl ReadJson<'v>) {
        // One element or none repeats nothing.
        if matches!(schema.list, ListType::Atomic) || list.size().unwrap_or_default() < 2 {
            return;
        }
        match &schema.list {
            ListType::Set => {
                let items: Vec<Value> = list.elements().map(ReadJson::to_serde).collect();
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        let path = &self.path();
                        self.push(
                            ErrorKind::Duplicate,
                            &format!("{path}[{i}]"),
                            format!("{path}[{i}]: Duplicate value: {}", go_string(item)),
                        );
                    }
                }
            }
            ListType::Map(keys) => {
                // Only the key fields are compared, so only they are copied.
                let key_values: Vec<Vec<Value>> = list
                    .elements()
                    .map(|item| {
                        keys.iter()
                            .map(|k| item.get(k).map_or(Value::Null, ReadJson::to_serde))
                            .collect()
                    })
                    .collect();
                for (i, k) in key_values.iter().enumerate() {
                    if key_values[..i].contains(k) {
                        let path = &self.path();
                        let shown: Vec<String> = keys
                            .iter()
                            .zip(k)
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
            ListType::Atomic => {}
        }
    }
}

fn too_deep<'v, V: ReadJson<'v>>(v: V, depth: usize) -> bool {
    // Iterative, so the check itself cannot overflow the stack.
    let mut stack = vec![(v, depth)];
    while let Some((v, d)) = stack.pop() {
        if d > MAX_DEPTH {
            return true;
        }
        match v.kind() {
            Kind::Array => stack.extend(v.elements().map(|x| (x, d + 1))),
            Kind::Object => stack.extend(v.sorted_entries().map(|(_, x)| (x, d + 1))),
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

    /// Keys asked for in order are found in one pass; keys out of order, and repeated, are
    /// found all the same, and a key the schema lacks is not.
    #[test]
    fn properties_are_found_in_any_order() {
        let schema = json!({"type": "object", "properties": {
            "alpha": {"type": "string"}, "beta": {"type": "integer"}, "gamma": {"type": "boolean"}
        }});
        let node = Node::compile(&schema, 0).unwrap();
        let mut props = node.properties();
        for (key, found) in [
            ("alpha", Some(JsonType::String)),
            ("beta", Some(JsonType::Integer)),
            ("gamma", Some(JsonType::Boolean)),
            ("alpha", Some(JsonType::String)),
            ("delta", None),
            ("beta", Some(JsonType::Integer)),
            ("aaa", None),
        ] {
            assert_eq!(props.find(key).and_then(|n| n.ty), found, "{key}");
        }
    }

    /// Lengths count characters, not bytes, however long the bytes make a string look.
    #[test]
    fn lengths_are_counted_in_characters() {
        let s = SchemaValidator::new(json!({"type": "object", "properties": {
            "s": {"type": "string", "minLength": 2, "maxLength": 3}
        }}))
        .unwrap();
        for (value, problem) in [
            ("ab", None),
            ("abc", None),
            ("éé", None),
            ("ééé", None),
            ("😀😀😀", None),
            ("abcd", Some("Too long")),
            ("éééé", Some("Too long")),
            ("a", Some("at least 2 chars")),
            ("é", Some("at least 2 chars")),
            ("😀", Some("at least 2 chars")),
        ] {
            let errors = messages(&s.check(&json!({ "s": value })));
            match problem {
                None => assert!(errors.is_empty(), "{value}: {errors:?}"),
                Some(p) => assert!(
                    errors.len() == 1 && errors[0].contains(p),
                    "{value}: {errors:?}"
                ),
            }
        }
    }

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
    fn nested_unknown_fields_are_pruned_where_they_are_and_check_changes_nothing() {
        let s = schema_of(Ingestor::crd());
        let spec = json!({"sources": [
            {"name": "a", "type": "kubernetesEvents"},
            {"name": "b", "type": "kubernetesEvents", "bogus": 1, "events": {"odd": true}}
        ], "extra": "x"});
        let original = json!({"metadata": {}, "spec": spec});
        let strict = s.check(&original);
        assert_eq!(
            messages(&strict),
            [
                ".spec.extra: field not declared in schema",
                ".spec.sources[1].bogus: field not declared in schema",
                ".spec.sources[1].events: field not declared in schema",
            ]
        );
        let mut o = original.clone();
        let warned = s.validate(&mut o, UnknownFields::Warn);
        assert!(warned.errors.is_empty(), "{:?}", warned.errors);
        assert_eq!(warned.warnings.len(), 3);
        assert_eq!(
            o["spec"],
            json!({"sources": [
                {"name": "a", "type": "kubernetesEvents"},
                {"name": "b", "type": "kubernetesEvents"}
            ]})
        );
    }

    /// A document is checked as the same object as a `serde_json` value is: the same errors,
    /// fields and order, with its keys in any order.
    #[test]
    fn documents_are_checked_as_json_values_are() {
        let observations = schema_of(Observation::crd());
        let ingestors = schema_of(Ingestor::crd());
        let cases = [
            (
                &observations,
                obs(
                    json!({"source": "falco", "category": "security", "severity": "high", "eventType": "runtime_alert",
                "details": {"deep": {"a": [1, {"b": null}]}}, "detectedAt": "2026-01-01T00:00:00Z"}),
                ),
            ),
            (
                &observations,
                obs(
                    json!({"source": "falco", "category": "security", "severity": "CRITICAL", "eventType": "x"}),
                ),
            ),
            (
                &observations,
                obs(
                    json!({"category": "security", "severity": "low", "eventType": "Bad Type", "ttlSecondsAfterCreation": 0}),
                ),
            ),
            (
                &observations,
                obs(
                    json!({"source": 5, "category": "security", "severity": "low", "eventType": "x", "detectedAt": "yesterday", "colour": "red"}),
                ),
            ),
            (
                &observations,
                obs(
                    json!({"source": "a", "category": "cost", "severity": "info", "eventType": "x", "ttlSecondsAfterCreation": 1.5}),
                ),
            ),
            (&observations, json!([1, 2])),
            (
                &ingestors,
                json!({"metadata": {}, "spec": {"sources": [
                {"name": "a", "type": "kubernetesEvents"},
                {"name": "b", "type": "kubernetesEvents", "bogus": 1, "events": {"odd": true}}
            ], "extra": "x"}}),
            ),
            (
                &ingestors,
                json!({"metadata": {}, "spec": {"sources": [
                {"name": "a", "type": "kubernetesEvents"}, {"name": "a", "type": "kubernetesEvents"}]}}),
            ),
            (
                &ingestors,
                json!({"metadata": {}, "spec": {"sources": null, "ttl": {"max": 5}}}),
            ),
        ];
        for (schema, object) in cases {
            let want = schema.check(&object);
            // In the order serde_json writes, and reversed, which leaves no object sorted.
            let sorted = object.to_string();
            let doc = zen_json::Document::parse(&sorted).unwrap();
            let got = schema.check(doc.root());
            assert_eq!(got.errors, want.errors, "{sorted}");
            assert_eq!(got.warnings, want.warnings, "{sorted}");
            let reversed = reversed_keys(&object);
            let doc = zen_json::Document::parse(&reversed).unwrap();
            assert_eq!(schema.check(doc.root()).errors, want.errors, "{reversed}");
        }
    }

    /// `v`'s text with every object's keys in reverse order.
    fn reversed_keys(v: &Value) -> String {
        match v {
            Value::Object(m) => {
                let fields: Vec<String> = m
                    .iter()
                    .rev()
                    .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), reversed_keys(v)))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }
            Value::Array(a) => {
                let items: Vec<String> = a.iter().map(reversed_keys).collect();
                format!("[{}]", items.join(","))
            }
            other => other.to_string(),
        }
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

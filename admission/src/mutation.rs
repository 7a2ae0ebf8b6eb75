//! Defaults written at JSON pointers, recorded as the JSON patch the mutating webhook returns.
//!
//! A segment `*` stands for every element of an array (`/spec/sources/*/rateLimit` defaults
//! each source), as Gatekeeper's `[name: *]` does; the value is then computed per element,
//! which the value function receives, and `None` leaves that element alone. Missing parent
//! objects are created by one `add` of the nested value, as kube-apiserver's own defaulting
//! patches look.

use std::{borrow::Cow, fmt::Write as _};

use serde::Serialize;
use serde_json::{Map, Value};
use zen_json::{Kind, Value as Doc};

/// One JSON patch operation of the answer. Typed, so a patch is never anything but the two
/// operations defaulting writes, and it serializes without a map per operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatchOp {
    pub op: PatchKind,
    pub path: String,
    pub value: Value,
}

impl PatchOp {
    /// The JSON text of `ops`, as serializing them gives it: the fixed parts are written as
    /// they are, and only paths and values go through the serializer.
    pub fn to_json(ops: &[PatchOp]) -> Vec<u8> {
        let mut text = Vec::with_capacity(64 * ops.len() + 2);
        text.push(b'[');
        for (i, op) in ops.iter().enumerate() {
            if i > 0 {
                text.push(b',');
            }
            text.extend_from_slice(match op.op {
                PatchKind::Add => br#"{"op":"add","path":"#,
                PatchKind::Replace => br#"{"op":"replace","path":"#,
            });
            // Serializing a string and a JSON value into memory cannot fail.
            let _ = serde_json::to_writer(&mut text, &op.path);
            text.extend_from_slice(br#","value":"#);
            let _ = serde_json::to_writer(&mut text, &op.value);
            text.push(b'}');
        }
        text.push(b']');
        text
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchKind {
    Add,
    Replace,
}

/// A pointer that does not fit the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PathError {
    pub path: String,
    pub message: String,
}

/// Parses a JSON pointer into its unescaped segments.
pub fn parse(path: &str) -> Result<Vec<String>, PathError> {
    let err = |message: &str| PathError {
        path: path.to_owned(),
        message: message.to_owned(),
    };
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| err("a JSON pointer starts with '/'"))?;
    let segments: Vec<String> = rest.split('/').map(|s| unescape(s).into_owned()).collect();
    if segments.last().is_some_and(|s| s == "*") {
        return Err(err(
            "the last segment names a field; '*' may only select array elements",
        ));
    }
    if segments.iter().any(String::is_empty) {
        return Err(err("empty segment"));
    }
    Ok(segments)
}

/// Computes the value to write, given the array element the last `*` selected (if any);
/// `None` writes nothing there.
pub type ValueFn<'a> = dyn FnMut(Option<Place<'_>>) -> Result<Option<Value>, String> + 'a;

/// A value of the object as the patch so far leaves it: the review's own (read in place from
/// its document) or one an earlier operation wrote.
#[derive(Debug, Clone, Copy)]
pub enum Place<'a> {
    Sent(Doc<'a>),
    Written(&'a Value),
}

impl<'a> Place<'a> {
    /// A field of an object or an element of an array.
    fn child(self, seg: &str) -> Option<Place<'a>> {
        match self {
            Place::Sent(doc) => match doc.kind() {
                Kind::Object => doc.get(seg).map(Place::Sent),
                Kind::Array => seg
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| doc.index(i))
                    .map(Place::Sent),
                _ => None,
            },
            Place::Written(value) => child(value, seg).map(Place::Written),
        }
    }

    /// The element at `index` of an array.
    fn index(self, index: usize) -> Option<Place<'a>> {
        match self {
            Place::Sent(doc) => doc.index(index).map(Place::Sent),
            Place::Written(value) => value.get(index).map(Place::Written),
        }
    }

    fn to_value(self) -> Value {
        match self {
            Place::Sent(doc) => doc.to_serde(),
            Place::Written(value) => value.clone(),
        }
    }

    fn equals(self, other: &Value) -> bool {
        match self {
            Place::Sent(doc) => zen_json::ReadJson::equals(doc, other),
            Place::Written(value) => value == other,
        }
    }
}

impl<'a> From<Place<'a>> for zen_cel::Bound<'a> {
    fn from(place: Place<'a>) -> Self {
        match place {
            Place::Sent(doc) => zen_cel::Bound::Document(doc),
            Place::Written(value) => zen_cel::Bound::Json(value),
        }
    }
}

/// Writes the value at `segments` where nothing is there yet (or always, with `overwrite`),
/// appending the patch operations to `ops`. The object is `object` with `ops` applied: the
/// review's object is never copied, since the answer is the patch alone, and what earlier
/// operations wrote is read from them (see `view`).
pub fn apply(
    object: Doc<'_>,
    segments: &[String],
    value: &mut ValueFn<'_>,
    overwrite: bool,
    ops: &mut Vec<PatchOp>,
) -> Result<(), PathError> {
    let mut at = String::with_capacity(64);
    walk(
        Some(Place::Sent(object)),
        ops,
        segments,
        &mut at,
        value,
        overwrite,
    )
}

/// What the walk needs to know of a place, read before it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Missing,
    Null,
    Array(usize),
    Object,
    Other,
}

impl Shape {
    fn of(place: Option<Place<'_>>) -> Self {
        match place {
            None => Self::Missing,
            Some(Place::Sent(doc)) => match doc.kind() {
                Kind::Null => Self::Null,
                Kind::Array => Self::Array(doc.len().unwrap_or_default()),
                Kind::Object => Self::Object,
                _ => Self::Other,
            },
            Some(Place::Written(value)) => match value {
                Value::Null => Self::Null,
                Value::Array(items) => Self::Array(items.len()),
                Value::Object(_) => Self::Object,
                _ => Self::Other,
            },
        }
    }
}

/// Whether the operation at pointer `op` is at `at` or above it.
fn covers(op: &str, at: &str) -> bool {
    at.strip_prefix(op)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The value at pointer `at` with `ops` applied, as far as what is there and of which kind
/// goes: the latest operation at or above `at` holds it, else the object does (`original`,
/// the object's value at `at`, found by the walk on its way down). Operations below `at`
/// only change what is inside it (they add fields where none were and replace values in
/// place), so they are left to [`current`].
fn view<'s>(original: Option<Place<'s>>, ops: &'s [PatchOp], at: &str) -> Option<Place<'s>> {
    match ops.iter().rev().find(|op| covers(&op.path, at)) {
        Some(op) => below(&op.value, &at[op.path.len()..]).map(Place::Written),
        None => original,
    }
}

/// The value at the pointer `rel` below `value`.
fn below<'v>(mut value: &'v Value, rel: &str) -> Option<&'v Value> {
    for token in rel.split('/').skip(1) {
        value = child(value, &unescape(token))?;
    }
    Some(value)
}

/// A field of an object or an element of an array.
fn child<'v>(value: &'v Value, seg: &str) -> Option<&'v Value> {
    match value {
        Value::Object(map) => map.get(seg),
        Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    }
}

/// The whole value at `at` with `ops` applied: where it is where no operation wrote inside
/// it after the one that holds it, else a copy with those writes.
fn current<'s>(original: Option<Place<'s>>, ops: &'s [PatchOp], at: &str) -> Option<Current<'s>> {
    let (base, later) = match ops.iter().rposition(|op| covers(&op.path, at)) {
        Some(i) => (
            Place::Written(below(&ops[i].value, &at[ops[i].path.len()..])?),
            &ops[i + 1..],
        ),
        None => (original?, ops),
    };
    let mut inside = later
        .iter()
        .filter(|op| op.path.len() > at.len() && covers(at, &op.path))
        .peekable();
    if inside.peek().is_none() {
        return Some(Current::At(base));
    }
    let mut copy = base.to_value();
    for op in inside {
        write(&mut copy, &op.path[at.len()..], op.value.clone());
    }
    Some(Current::Copy(copy))
}

/// What [`current`] finds.
enum Current<'s> {
    At(Place<'s>),
    Copy(Value),
}

impl Current<'_> {
    fn place(&self) -> Place<'_> {
        match self {
            Current::At(place) => *place,
            Current::Copy(value) => Place::Written(value),
        }
    }
}

/// Writes `value` at the pointer `rel` below `target`, whose parent is there (the operation
/// it comes from was recorded on the same object).
fn write(target: &mut Value, rel: &str, value: Value) {
    let Some((parent, last)) = rel.rsplit_once('/') else {
        return;
    };
    let key = unescape(last);
    match target.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(key.into_owned(), value);
        }
        Some(Value::Array(items)) => {
            if let Some(slot) = key.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *slot = value;
            }
        }
        _ => {}
    }
}

/// Walks `segments` below the place at pointer `at` (extended in place and restored), where
/// the object has `original`. `value` is asked for the value only where one is to be written.
fn walk(
    original: Option<Place<'_>>,
    ops: &mut Vec<PatchOp>,
    segments: &[String],
    at: &mut String,
    value: &mut ValueFn<'_>,
    overwrite: bool,
) -> Result<(), PathError> {
    let Some((seg, rest)) = segments.split_first() else {
        return Ok(());
    };
    let len = at.len();
    let node = Shape::of(view(original, ops, at));
    if seg == "*" {
        let items = match node {
            Shape::Array(n) => n,
            Shape::Null => return Ok(()),
            _ => return Err(not_fit(at, seg, "'*' needs an array here")),
        };
        // Below the last `*`, the value is computed with the element as it is before the
        // write, and only for elements that get one; above it, inner `*`s select.
        let last = !rest.iter().any(|s| s == "*");
        for i in 0..items {
            let _ = write!(at, "/{i}");
            let item = original.and_then(|o| o.index(i));
            let walked = if !last {
                walk(item, ops, rest, at, value, overwrite)
            } else if wants_value(item, ops, at, rest, overwrite) {
                let current = current(item, ops, at);
                let mut computed = Some(value(current.as_ref().map(Current::place)));
                drop(current);
                let mut once = |_: Option<Place<'_>>| computed.take().unwrap_or(Ok(None));
                walk(item, ops, rest, at, &mut once, overwrite)
            } else {
                walk(item, ops, rest, at, &mut |_| Ok(None), overwrite)
            };
            at.truncate(len);
            walked?;
        }
        return Ok(());
    }
    if let Shape::Array(items) = node {
        let index: usize = seg
            .parse()
            .map_err(|_| not_fit(at, seg, "an array index is a number"))?;
        if index >= items {
            return Err(not_fit(at, seg, "no array element at this index"));
        }
        let _ = write!(at, "/{index}");
        let item = original.and_then(|o| o.index(index));
        let walked = if rest.is_empty() {
            set_existing(item, ops, at, value, overwrite)
        } else {
            walk(item, ops, rest, at, value, overwrite)
        };
        at.truncate(len);
        return walked;
    }
    if node != Shape::Object {
        return Err(not_fit(at, seg, "the parent is not an object"));
    }
    push_segment(at, seg);
    let below = original.and_then(|o| o.child(seg));
    let walked = match Shape::of(view(below, ops, at)) {
        Shape::Missing | Shape::Null if rest.iter().any(|s| s == "*") => {
            // Nothing below to fill when the rest selects array elements that do not exist.
            Ok(())
        }
        Shape::Missing => add(ops, at, rest, value, PatchKind::Add),
        _ if rest.is_empty() => set_existing(below, ops, at, value, overwrite),
        Shape::Null => add(ops, at, rest, value, PatchKind::Replace),
        _ => walk(below, ops, rest, at, value, overwrite),
    };
    at.truncate(len);
    walked
}

/// Writes the value at `at` (missing or null there), nested in the objects `rest` names.
fn add(
    ops: &mut Vec<PatchOp>,
    at: &str,
    rest: &[String],
    value: &mut ValueFn<'_>,
    kind: PatchKind,
) -> Result<(), PathError> {
    match value(None) {
        Err(message) => Err(PathError {
            path: at.to_owned(),
            message,
        }),
        Ok(None) => Ok(()),
        Ok(Some(leaf)) => {
            let nested = rest.iter().rev().fold(leaf, |inner, key| {
                let mut m = Map::new();
                m.insert(key.clone(), inner);
                Value::Object(m)
            });
            ops.push(operation(kind, at, nested));
            Ok(())
        }
    }
}

/// Whether [`walk`] would ask for a value below the place at `at` (where the object has
/// `original`): the place is missing or null (or `overwrite`). It mirrors `walk`'s decisions
/// for segments without `*`.
fn wants_value(
    mut original: Option<Place<'_>>,
    ops: &[PatchOp],
    at: &str,
    mut segments: &[String],
    overwrite: bool,
) -> bool {
    let mut at = at.to_owned();
    while let Some((seg, rest)) = segments.split_first() {
        match Shape::of(view(original, ops, &at)) {
            Shape::Array(items) => match seg.parse::<usize>() {
                Ok(i) if i < items => {
                    let _ = write!(at, "/{i}");
                    original = original.and_then(|o| o.index(i));
                }
                _ => return false,
            },
            Shape::Object => {
                push_segment(&mut at, seg);
                original = original.and_then(|o| o.child(seg));
                match Shape::of(view(original, ops, &at)) {
                    Shape::Missing => return true,
                    Shape::Null if !rest.is_empty() => return true,
                    _ => {}
                }
            }
            _ => return false,
        }
        if rest.is_empty() {
            return overwrite || Shape::of(view(original, ops, &at)) == Shape::Null;
        }
        segments = rest;
    }
    false
}

fn set_existing(
    original: Option<Place<'_>>,
    ops: &mut Vec<PatchOp>,
    at: &str,
    value: &mut ValueFn<'_>,
    overwrite: bool,
) -> Result<(), PathError> {
    if !(overwrite || Shape::of(view(original, ops, at)) == Shape::Null) {
        return Ok(());
    }
    let new = value(None).map_err(|message| PathError {
        path: at.to_owned(),
        message,
    })?;
    let Some(new) = new else {
        return Ok(());
    };
    if !current(original, ops, at).is_some_and(|c| c.place().equals(&new)) {
        ops.push(operation(PatchKind::Replace, at, new));
    }
    Ok(())
}

fn operation(op: PatchKind, path: &str, value: Value) -> PatchOp {
    PatchOp {
        op,
        path: path.to_owned(),
        value,
    }
}

/// The error for `seg` below `at`.
fn not_fit(at: &str, seg: &str, message: &str) -> PathError {
    let mut path = at.to_owned();
    push_segment(&mut path, seg);
    PathError {
        path,
        message: message.to_owned(),
    }
}

/// A JSON pointer's token unescaped (`~1` is `/`, `~0` is `~`, in that order).
fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        token.replace("~1", "/").replace("~0", "~").into()
    } else {
        token.into()
    }
}

/// Appends `/seg`, escaped as a JSON pointer.
fn push_segment(at: &mut String, seg: &str) {
    at.push('/');
    if !seg.contains(['~', '/']) {
        at.push_str(seg);
        return;
    }
    for c in seg.chars() {
        match c {
            '~' => at.push_str("~0"),
            '/' => at.push_str("~1"),
            c => at.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A value function that sees elements as `serde_json` values.
    type ValuesFn<'a> = dyn FnMut(Option<&Value>) -> Result<Option<Value>, String> + 'a;

    fn run(obj: &mut Value, path: &str, value: Value, overwrite: bool) -> Vec<Value> {
        let mut ops = Vec::new();
        let mut f = |_: Option<&Value>| Ok(Some(value.clone()));
        in_place(obj, &parse(path).unwrap(), &mut f, overwrite, &mut ops).unwrap();
        as_json(&ops)
    }

    /// [`apply`] to `obj` read as a review's document is, `value` seeing elements as
    /// `serde_json` values.
    fn apply_to(
        obj: &Value,
        segments: &[String],
        value: &mut ValuesFn<'_>,
        overwrite: bool,
        ops: &mut Vec<PatchOp>,
    ) -> Result<(), PathError> {
        let text = obj.to_string();
        let doc = zen_json::Document::parse(&text).unwrap();
        let mut f = |e: Option<Place<'_>>| value(e.map(Place::to_value).as_ref());
        apply(doc.root(), segments, &mut f, overwrite, ops)
    }

    /// [`apply_to`], then its new operations applied to `obj` as a JSON patch: what the
    /// answer's patch makes of the object.
    fn in_place(
        obj: &mut Value,
        segments: &[String],
        value: &mut ValuesFn<'_>,
        overwrite: bool,
        ops: &mut Vec<PatchOp>,
    ) -> Result<(), PathError> {
        let before = ops.len();
        apply_to(obj, segments, value, overwrite, ops)?;
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(as_json(&ops[before..]))).unwrap();
        json_patch::patch(obj, &patch).unwrap();
        Ok(())
    }

    /// The operations as the answer's JSON has them.
    fn as_json(ops: &[PatchOp]) -> Vec<Value> {
        ops.iter()
            .map(|op| serde_json::to_value(op).unwrap())
            .collect()
    }

    #[test]
    fn missing_parents_are_added_in_one_operation() {
        let mut obj = json!({"spec": {"sources": []}});
        let ops = run(&mut obj, "/spec/dedup/window", json!("5m"), false);
        assert_eq!(
            ops,
            vec![json!({"op": "add", "path": "/spec/dedup", "value": {"window": "5m"}})]
        );
        assert_eq!(obj["spec"]["dedup"]["window"], "5m");
        // Present: left alone unless overwrite.
        assert!(run(&mut obj, "/spec/dedup/window", json!("1m"), false).is_empty());
        let ops = run(&mut obj, "/spec/dedup/window", json!("1m"), true);
        assert_eq!(
            ops,
            vec![json!({"op": "replace", "path": "/spec/dedup/window", "value": "1m"})]
        );
    }

    #[test]
    fn a_star_defaults_every_array_element() {
        let mut obj = json!({"spec": {"sources": [
            {"name": "a", "rateLimit": {"requestsPerSecond": 5}},
            {"name": "b"}
        ]}});
        let ops = run(
            &mut obj,
            "/spec/sources/*/rateLimit",
            json!({"requestsPerSecond": 50}),
            false,
        );
        assert_eq!(
            ops,
            vec![
                json!({"op": "add", "path": "/spec/sources/1/rateLimit", "value": {"requestsPerSecond": 50}})
            ]
        );
        // A patch applied to the original gives the mutated object.
        let mut original = json!({"spec": {"sources": [
            {"name": "a", "rateLimit": {"requestsPerSecond": 5}},
            {"name": "b"}
        ]}});
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
        json_patch::patch(&mut original, &patch).unwrap();
        assert_eq!(original, obj);
    }

    #[test]
    fn per_element_values_may_leave_an_element_alone() {
        let mut obj = json!({"spec": {"sources": [
            {"name": "a", "type": "webhook"},
            {"name": "b", "type": "kubernetesEvents"}
        ]}});
        let mut ops = Vec::new();
        let mut only_webhooks = |e: Option<&Value>| {
            Ok((e.map(|e| &e["type"]) == Some(&json!("webhook"))).then(|| json!(1048576)))
        };
        in_place(
            &mut obj,
            &parse("/spec/sources/*/maxBodyBytes").unwrap(),
            &mut only_webhooks,
            false,
            &mut ops,
        )
        .unwrap();
        assert_eq!(
            as_json(&ops),
            vec![json!({"op": "add", "path": "/spec/sources/0/maxBodyBytes", "value": 1048576})]
        );
    }

    #[test]
    fn a_star_value_is_computed_only_where_written_from_the_element_before_the_write() {
        let mut obj = json!({"spec": {"sources": [
            {"name": "a", "limit": 5},
            {"name": "b", "limit": null},
            {"name": "c", "nested": {"deep": []}}
        ]}});
        let mut seen = Vec::new();
        let mut named = |e: Option<&Value>| {
            let e = e.expect("the element");
            seen.push(e.clone());
            Ok(Some(json!(format!(
                "for {}",
                e["name"].as_str().unwrap_or("?")
            ))))
        };
        let mut ops = Vec::new();
        in_place(
            &mut obj,
            &parse("/spec/sources/*/limit").unwrap(),
            &mut named,
            false,
            &mut ops,
        )
        .unwrap();
        assert_eq!(
            seen,
            vec![
                json!({"name": "b", "limit": null}),
                json!({"name": "c", "nested": {"deep": []}})
            ]
        );
        assert_eq!(
            as_json(&ops),
            vec![
                json!({"op": "replace", "path": "/spec/sources/1/limit", "value": "for b"}),
                json!({"op": "add", "path": "/spec/sources/2/limit", "value": "for c"}),
            ]
        );
        // With overwrite every element gets one; a deeper missing parent is added whole.
        let (mut ops, mut count) = (Vec::new(), 0);
        let mut counted = |_: Option<&Value>| {
            count += 1;
            Ok(Some(json!(1)))
        };
        in_place(
            &mut obj,
            &parse("/spec/sources/*/x/y").unwrap(),
            &mut counted,
            true,
            &mut ops,
        )
        .unwrap();
        assert_eq!(count, 3);
        assert_eq!(
            as_json(&ops)[0],
            json!({"op": "add", "path": "/spec/sources/0/x", "value": {"y": 1}})
        );
        // Nested `*`s: the innermost element is the one the value sees.
        let mut obj = json!({"a": [{"b": [{"k": 1}, {"k": 2, "v": 0}]}, {"b": []}, {}]});
        let mut ops = Vec::new();
        let mut from_k = |e: Option<&Value>| Ok(e.map(|e| e["k"].clone()));
        in_place(
            &mut obj,
            &parse("/a/*/b/*/v").unwrap(),
            &mut from_k,
            false,
            &mut ops,
        )
        .unwrap();
        assert_eq!(
            as_json(&ops),
            vec![json!({"op": "add", "path": "/a/0/b/0/v", "value": 1})]
        );
        // An element that does not fit is an error naming its place.
        assert_eq!(
            not_fitting(json!({"a": [{"b": 1}, {"b": {"c": 2}}]}), "/a/*/b/d"),
            "/a/0/b/d: the parent is not an object"
        );
    }

    /// Mutations in a row, each on the object as the earlier ones left it, give the same
    /// operations and show each value function the same elements, whether the object is
    /// patched in place between them or left untouched with the operations read back.
    #[test]
    fn later_mutations_see_earlier_writes_without_a_copy() {
        let object = json!({"spec": {"ttl": null, "sources": [
            {"name": "a", "type": "webhook"},
            {"name": "b", "type": "kubernetesEvents", "limit": null}
        ]}});
        let steps: [(&str, Value, bool); 8] = [
            ("/spec/ttl/max", json!("720h"), false),
            ("/spec/ttl/default", json!("168h"), false),
            ("/spec/ttl/max", json!("24h"), true),
            ("/spec/sources/*/maxBodyBytes", json!(1024), false),
            ("/spec/sources/*/rateLimit", json!({"burst": 1}), false),
            ("/spec/sources/*/rateLimit/burst", json!(2), true),
            ("/spec/sources/1/limit", json!(3), false),
            ("/spec/sources/*/rateLimit/burst", json!(2), true),
        ];
        let run = |in_place_too: bool| {
            let mut obj = object.clone();
            let (mut ops, mut seen) = (Vec::new(), Vec::new());
            for (path, v, overwrite) in &steps {
                let mut f = |e: Option<&Value>| {
                    seen.push(e.cloned());
                    Ok(Some(v.clone()))
                };
                let segments = parse(path).unwrap();
                if in_place_too {
                    in_place(&mut obj, &segments, &mut f, *overwrite, &mut ops).unwrap();
                } else {
                    apply_to(&obj, &segments, &mut f, *overwrite, &mut ops).unwrap();
                }
            }
            (as_json(&ops), seen, obj)
        };
        let (patched_ops, patched_seen, patched) = run(true);
        let (ops, seen, untouched) = run(false);
        assert_eq!(ops, patched_ops);
        assert_eq!(seen, patched_seen);
        assert_eq!(untouched, object);
        // The elements the rate limit saw carry the body limit written before it.
        assert!(
            seen.iter()
                .flatten()
                .any(|e| e["maxBodyBytes"] == 1024 && e.get("rateLimit").is_none())
        );
        assert_eq!(
            patched["spec"]["ttl"],
            json!({"max": "24h", "default": "168h"})
        );
        assert_eq!(patched["spec"]["sources"][1]["limit"], 3);
        assert_eq!(
            patched["spec"]["sources"][0]["rateLimit"],
            json!({"burst": 2})
        );
        // Two of each per-source step, one of the others; the last step found nothing to
        // change.
        assert_eq!(ops.len(), 10, "{ops:#?}");
    }

    /// The patch text reads as serializing the operations writes them, with paths and
    /// values that need escaping.
    #[test]
    fn patch_text_is_the_serialized_operations() {
        let ops = [
            operation(
                PatchKind::Add,
                "/spec/a\"b",
                json!({"k": "a \"quoted\"\n word", "n": [1, 2.5, null]}),
            ),
            operation(PatchKind::Replace, "/spec/x~1y", json!("\u{7}")),
        ];
        for ops in [&ops[..], &ops[..1], &[]] {
            let text = PatchOp::to_json(ops);
            let read: Value = serde_json::from_slice(&text).unwrap();
            assert_eq!(read, serde_json::to_value(ops).unwrap());
        }
    }

    /// The error of writing 1 at `path` in `obj`.
    fn not_fitting(mut obj: Value, path: &str) -> String {
        let mut one = |_: Option<&Value>| Ok(Some(json!(1)));
        in_place(
            &mut obj,
            &parse(path).unwrap(),
            &mut one,
            false,
            &mut Vec::new(),
        )
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn bad_pointers_are_errors() {
        assert!(parse("spec").is_err());
        assert!(parse("/spec/*").is_err());
        assert!(parse("/spec//x").is_err());
        assert_eq!(
            not_fitting(json!({"spec": "text"}), "/spec/x"),
            "/spec/x: the parent is not an object"
        );
        assert_eq!(
            not_fitting(json!({"spec": [1]}), "/spec/first"),
            "/spec/first: an array index is a number"
        );
        assert_eq!(
            not_fitting(json!({"spec": [1]}), "/spec/3/x"),
            "/spec/3: no array element at this index"
        );
        assert_eq!(
            not_fitting(json!({"spec": {"a~b": 5}}), "/spec/a~0b/*/x"),
            "/spec/a~0b/*: '*' needs an array here"
        );
        assert_eq!(parse("/a~1b/c~0").unwrap(), vec!["a/b", "c~"]);
    }
}

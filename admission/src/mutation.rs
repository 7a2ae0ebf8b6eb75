//! Defaults written at JSON pointers, recorded as the JSON patch the mutating webhook returns.
//!
//! A segment `*` stands for every element of an array (`/spec/sources/*/rateLimit` defaults
//! each source), as Gatekeeper's `[name: *]` does; the value is then computed per element,
//! which the value function receives, and `None` leaves that element alone. Missing parent
//! objects are created by one `add` of the nested value, as kube-apiserver's own defaulting
//! patches look.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};

/// One JSON patch operation of the answer. Typed, so a patch is never anything but the two
/// operations defaulting writes, and it serializes without a map per operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatchOp {
    pub op: PatchKind,
    pub path: String,
    pub value: Value,
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
    let segments: Vec<String> = rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
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
pub type ValueFn<'a> = dyn FnMut(Option<&Value>) -> Result<Option<Value>, String> + 'a;

/// Writes the value at `segments` where nothing is there yet (or always, with `overwrite`),
/// appending the patch operations to `ops`.
pub fn apply(
    object: &mut Value,
    segments: &[String],
    value: &mut ValueFn<'_>,
    overwrite: bool,
    ops: &mut Vec<PatchOp>,
) -> Result<(), PathError> {
    walk(
        object,
        segments,
        &mut String::with_capacity(64),
        value,
        overwrite,
        ops,
    )
}

/// Walks `segments` below `node`, whose pointer is `at` (extended in place and restored).
/// `value` is asked for the value only where one is to be written.
fn walk(
    node: &mut Value,
    segments: &[String],
    at: &mut String,
    value: &mut ValueFn<'_>,
    overwrite: bool,
    ops: &mut Vec<PatchOp>,
) -> Result<(), PathError> {
    let Some((seg, rest)) = segments.split_first() else {
        return Ok(());
    };
    let len = at.len();
    if seg == "*" {
        let Value::Array(items) = node else {
            return match node {
                Value::Null => Ok(()),
                _ => Err(not_fit(at, seg, "'*' needs an array here")),
            };
        };
        // Below the last `*`, the value is computed with the element as it is before the
        // write, and only for elements that get one; above it, inner `*`s select.
        let last = !rest.iter().any(|s| s == "*");
        for (i, item) in items.iter_mut().enumerate() {
            let _ = write!(at, "/{i}");
            let walked = if !last {
                walk(item, rest, at, value, overwrite, ops)
            } else if wants_value(item, rest, overwrite) {
                let mut computed = Some(value(Some(item)));
                let mut once = |_: Option<&Value>| computed.take().unwrap_or(Ok(None));
                walk(item, rest, at, &mut once, overwrite, ops)
            } else {
                walk(item, rest, at, &mut |_| Ok(None), overwrite, ops)
            };
            at.truncate(len);
            walked?;
        }
        return Ok(());
    }
    if let Value::Array(items) = node {
        let index: usize = seg
            .parse()
            .map_err(|_| not_fit(at, seg, "an array index is a number"))?;
        let Some(item) = items.get_mut(index) else {
            return Err(not_fit(at, seg, "no array element at this index"));
        };
        push_segment(at, seg);
        let walked = if rest.is_empty() {
            set_existing(item, at, value, overwrite, ops)
        } else {
            walk(item, rest, at, value, overwrite, ops)
        };
        at.truncate(len);
        return walked;
    }
    let Value::Object(map) = node else {
        return Err(not_fit(at, seg, "the parent is not an object"));
    };
    push_segment(at, seg);
    let walked = match map.get_mut(seg.as_str()) {
        Some(child) if rest.is_empty() => set_existing(child, at, value, overwrite, ops),
        Some(child) if !child.is_null() => walk(child, rest, at, value, overwrite, ops),
        // Nothing below to fill when the rest selects array elements that do not exist.
        _ if rest.iter().any(|s| s == "*") => Ok(()),
        _ => match value(None) {
            Err(message) => Err(PathError {
                path: at.clone(),
                message,
            }),
            Ok(None) => Ok(()),
            Ok(Some(leaf)) => {
                let nested = rest.iter().rev().fold(leaf, |inner, key| {
                    let mut m = Map::new();
                    m.insert(key.clone(), inner);
                    Value::Object(m)
                });
                let kind = if map.contains_key(seg.as_str()) {
                    PatchKind::Replace
                } else {
                    PatchKind::Add
                };
                ops.push(operation(kind, at, nested.clone()));
                map.insert(seg.clone(), nested);
                Ok(())
            }
        },
    };
    at.truncate(len);
    walked
}

/// Whether [`walk`] would ask for a value below `node`: the place is missing or null (or
/// `overwrite`). It mirrors `walk`'s decisions for segments without `*`.
fn wants_value(mut node: &Value, mut segments: &[String], overwrite: bool) -> bool {
    while let Some((seg, rest)) = segments.split_first() {
        let child = match node {
            Value::Array(items) => match seg.parse::<usize>().ok().and_then(|i| items.get(i)) {
                Some(child) => child,
                None => return false,
            },
            Value::Object(map) => match map.get(seg.as_str()) {
                Some(child) if rest.is_empty() || !child.is_null() => child,
                _ => return true,
            },
            _ => return false,
        };
        if rest.is_empty() {
            return overwrite || child.is_null();
        }
        node = child;
        segments = rest;
    }
    false
}

fn set_existing(
    slot: &mut Value,
    at: &str,
    value: &mut ValueFn<'_>,
    overwrite: bool,
    ops: &mut Vec<PatchOp>,
) -> Result<(), PathError> {
    if !(overwrite || slot.is_null()) {
        return Ok(());
    }
    let new = value(None).map_err(|message| PathError {
        path: at.to_owned(),
        message,
    })?;
    if let Some(new) = new.filter(|n| n != slot) {
        ops.push(operation(PatchKind::Replace, at, new.clone()));
        *slot = new;
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

/// Appends `/seg`, escaped as a JSON pointer.
fn push_segment(at: &mut String, seg: &str) {
    at.push('/');
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

    fn run(obj: &mut Value, path: &str, value: Value, overwrite: bool) -> Vec<Value> {
        let mut ops = Vec::new();
        let mut f = |_: Option<&Value>| Ok(Some(value.clone()));
        apply(obj, &parse(path).unwrap(), &mut f, overwrite, &mut ops).unwrap();
        as_json(&ops)
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
        apply(
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
        apply(
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
        apply(
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
        apply(
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

    /// The error of writing 1 at `path` in `obj`.
    fn not_fitting(mut obj: Value, path: &str) -> String {
        let mut one = |_: Option<&Value>| Ok(Some(json!(1)));
        apply(
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

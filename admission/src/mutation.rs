//! Defaults written at JSON pointers, recorded as the JSON patch the mutating webhook returns.
//!
//! A segment `*` stands for every element of an array (`/spec/sources/*/rateLimit` defaults
//! each source), as Gatekeeper's `[name: *]` does; the value is then computed per element,
//! which the value function receives, and `None` leaves that element alone. Missing parent
//! objects are created by one `add` of the nested value, as kube-apiserver's own defaulting
//! patches look.

use serde_json::{Map, Value};

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
    ops: &mut Vec<Value>,
) -> Result<(), PathError> {
    walk(object, segments, String::new(), None, value, overwrite, ops)
}

fn walk(
    node: &mut Value,
    segments: &[String],
    at: String,
    element: Option<&Value>,
    value: &mut ValueFn<'_>,
    overwrite: bool,
    ops: &mut Vec<Value>,
) -> Result<(), PathError> {
    let Some((seg, rest)) = segments.split_first() else {
        return Ok(());
    };
    let here = format!("{at}/{}", escape(seg));
    let not_fit = |message: &str| PathError {
        path: here.clone(),
        message: message.to_owned(),
    };
    if seg == "*" {
        return match node {
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let selected = item.clone();
                    walk(
                        item,
                        rest,
                        format!("{at}/{i}"),
                        Some(&selected),
                        value,
                        overwrite,
                        ops,
                    )?;
                }
                Ok(())
            }
            Value::Null => Ok(()),
            _ => Err(not_fit("'*' needs an array here")),
        };
    }
    if let Value::Array(items) = node {
        let index: usize = seg
            .parse()
            .map_err(|_| not_fit("an array index is a number"))?;
        let item = items
            .get_mut(index)
            .ok_or_else(|| not_fit("no array element at this index"))?;
        return if rest.is_empty() {
            set_existing(item, &here, element, value, overwrite, ops)
        } else {
            walk(item, rest, here, element, value, overwrite, ops)
        };
    }
    let Value::Object(map) = node else {
        return Err(not_fit("the parent is not an object"));
    };
    match map.get_mut(seg.as_str()) {
        Some(child) if rest.is_empty() => {
            set_existing(child, &here, element, value, overwrite, ops)
        }
        Some(child) if !child.is_null() => walk(child, rest, here, element, value, overwrite, ops),
        _ => {
            // Nothing below to fill when the rest selects array elements that do not exist.
            if rest.iter().any(|s| s == "*") {
                return Ok(());
            }
            let Some(leaf) = value(element).map_err(|message| PathError {
                path: here.clone(),
                message,
            })?
            else {
                return Ok(());
            };
            let nested = rest.iter().rev().fold(leaf, |inner, key| {
                let mut m = Map::new();
                m.insert(key.clone(), inner);
                Value::Object(m)
            });
            let op = if map.contains_key(seg.as_str()) {
                "replace"
            } else {
                "add"
            };
            ops.push(serde_json::json!({"op": op, "path": here, "value": nested.clone()}));
            map.insert(seg.clone(), nested);
            Ok(())
        }
    }
}

fn set_existing(
    slot: &mut Value,
    at: &str,
    element: Option<&Value>,
    value: &mut ValueFn<'_>,
    overwrite: bool,
    ops: &mut Vec<Value>,
) -> Result<(), PathError> {
    if !(overwrite || slot.is_null()) {
        return Ok(());
    }
    let new = value(element).map_err(|message| PathError {
        path: at.to_owned(),
        message,
    })?;
    if let Some(new) = new.filter(|n| n != slot) {
        ops.push(serde_json::json!({"op": "replace", "path": at, "value": new.clone()}));
        *slot = new;
    }
    Ok(())
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(obj: &mut Value, path: &str, value: Value, overwrite: bool) -> Vec<Value> {
        let mut ops = Vec::new();
        let mut f = |_: Option<&Value>| Ok(Some(value.clone()));
        apply(obj, &parse(path).unwrap(), &mut f, overwrite, &mut ops).unwrap();
        ops
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
            ops,
            vec![json!({"op": "add", "path": "/spec/sources/0/maxBodyBytes", "value": 1048576})]
        );
    }

    #[test]
    fn bad_pointers_are_errors() {
        assert!(parse("spec").is_err());
        assert!(parse("/spec/*").is_err());
        assert!(parse("/spec//x").is_err());
        let mut obj = json!({"spec": "text"});
        let mut ops = Vec::new();
        let mut one = |_: Option<&Value>| Ok(Some(json!(1)));
        let err = apply(
            &mut obj,
            &parse("/spec/x").unwrap(),
            &mut one,
            false,
            &mut ops,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "/spec/x: the parent is not an object");
        assert_eq!(parse("/a~1b/c~0").unwrap(), vec!["a/b", "c~"]);
    }
}

//! What the server itself sets on objects when they are written, like kube-apiserver's registry
//! strategies: metadata it owns (uid, creationTimestamp, generation), the split between the main
//! resource and the `status` subresource, and Observation defaults.

use serde_json::{Map, Value, json};

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The main resource: spec and metadata; status is kept as stored.
    Main,
    /// The `status` subresource: status only.
    Status,
}

/// Server-owned metadata and defaults for a new object. `now` is RFC 3339 with seconds
/// precision, as `metav1.Time` serializes.
pub fn prepare_for_create(obj: &mut Value, kind: &str, uid: &str, now: &str) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let mut meta = take_object(map, "metadata");
    meta.insert("uid".into(), json!(uid));
    meta.insert("creationTimestamp".into(), json!(now));
    meta.insert("generation".into(), json!(1));
    for owned in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "managedFields",
    ] {
        meta.remove(owned);
    }
    map.insert("metadata".into(), Value::Object(meta));
    // Status is the server's: whatever a client sends on create is replaced.
    map.remove("status");
    if kind == "Observation" {
        default_observation(map, now);
    }
}

/// Carries over what an update may not change, and bumps `generation` when the spec changed.
pub fn prepare_for_update(new: &mut Value, old: &Value, target: Target) {
    let (Some(new_map), Some(old_map)) = (new.as_object_mut(), old.as_object()) else {
        return;
    };
    match target {
        Target::Main => {
            match old_map.get("status") {
                Some(status) => new_map.insert("status".into(), status.clone()),
                None => new_map.remove("status"),
            };
        }
        Target::Status => {
            match old_map.get("spec") {
                Some(spec) => new_map.insert("spec".into(), spec.clone()),
                None => new_map.remove("spec"),
            };
            // A status write changes nothing in metadata but the precondition it carries.
            let rv = new_map
                .get("metadata")
                .and_then(|m| m.get("resourceVersion"))
                .cloned();
            let mut meta = old_map
                .get("metadata")
                .cloned()
                .unwrap_or_else(|| json!({}));
            if let (Some(m), Some(rv)) = (meta.as_object_mut(), rv) {
                m.insert("resourceVersion".into(), rv);
            }
            new_map.insert("metadata".into(), meta);
        }
    }
    let old_meta = old_map.get("metadata").and_then(Value::as_object);
    let mut new_meta = take_object(new_map, "metadata");
    for immutable in [
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
    ] {
        match old_meta.and_then(|m| m.get(immutable)) {
            Some(v) => new_meta.insert(immutable.into(), v.clone()),
            None => new_meta.remove(immutable),
        };
    }
    new_meta.remove("managedFields");
    new_meta.remove("selfLink");
    if target == Target::Main && new_map.get("spec") != old_map.get("spec") {
        let generation = old_meta
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        new_meta.insert("generation".into(), json!(generation + 1));
    }
    new_map.insert("metadata".into(), Value::Object(new_meta));
}

/// `detectedAt` defaults to the creation time; the first occurrence is counted.
fn default_observation(map: &mut Map<String, Value>, now: &str) {
    let mut spec = take_object(map, "spec");
    let detected = spec
        .get("detectedAt")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| now.to_owned());
    spec.entry("detectedAt").or_insert_with(|| json!(now));
    map.insert("spec".into(), Value::Object(spec));
    map.insert(
        "status".into(),
        json!({"count": 1, "firstSeen": detected, "lastSeen": detected}),
    );
}

/// Removes the object at `key` from `map` to work on it (an empty one if it is missing or
/// not an object); the caller puts it back.
fn take_object(map: &mut Map<String, Value>, key: &str) -> Map<String, Value> {
    match map.remove(key) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-22T10:00:00Z";

    #[test]
    fn create_sets_server_fields_and_observation_defaults() {
        let mut obj = json!({
            "metadata": {"name": "a", "resourceVersion": "7", "uid": "forged"},
            "spec": {"source": "falco"},
            "status": {"count": 99}
        });
        prepare_for_create(&mut obj, "Observation", "uid-1", NOW);
        assert_eq!(obj["metadata"]["uid"], "uid-1");
        assert_eq!(obj["metadata"]["creationTimestamp"], NOW);
        assert_eq!(obj["metadata"]["generation"], 1);
        assert!(obj["metadata"].get("resourceVersion").is_none());
        assert_eq!(obj["spec"]["detectedAt"], NOW);
        assert_eq!(
            obj["status"],
            json!({"count": 1, "firstSeen": NOW, "lastSeen": NOW})
        );
    }

    #[test]
    fn detected_at_given_is_first_seen() {
        let mut obj =
            json!({"metadata": {"name": "a"}, "spec": {"detectedAt": "2026-01-01T00:00:00Z"}});
        prepare_for_create(&mut obj, "Observation", "u", NOW);
        assert_eq!(obj["status"]["firstSeen"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn main_update_keeps_status_and_bumps_generation_on_spec_change() {
        let old = json!({"metadata": {"name": "a", "uid": "u", "generation": 3, "creationTimestamp": NOW},
                         "spec": {"severity": "low"}, "status": {"count": 4}});
        let mut new = json!({"metadata": {"name": "a", "uid": "x", "labels": {"l": "v"}},
                             "spec": {"severity": "high"}, "status": {"count": 1}});
        prepare_for_update(&mut new, &old, Target::Main);
        assert_eq!(new["status"]["count"], 4);
        assert_eq!(new["metadata"]["uid"], "u");
        assert_eq!(new["metadata"]["generation"], 4);
        assert_eq!(new["metadata"]["labels"]["l"], "v");

        let mut same =
            json!({"metadata": {"name": "a", "labels": {"l": "w"}}, "spec": {"severity": "low"}});
        prepare_for_update(&mut same, &old, Target::Main);
        assert_eq!(
            same["metadata"]["generation"], 3,
            "label changes do not bump generation"
        );
    }

    #[test]
    fn status_update_changes_only_status() {
        let old = json!({"metadata": {"name": "a", "uid": "u", "generation": 3, "labels": {"l": "v"}},
                         "spec": {"severity": "low"}, "status": {"count": 4}});
        let mut new = json!({"metadata": {"name": "a", "resourceVersion": "9", "labels": {}},
                             "spec": {"severity": "high"}, "status": {"count": 5}});
        prepare_for_update(&mut new, &old, Target::Status);
        assert_eq!(new["spec"]["severity"], "low");
        assert_eq!(new["status"]["count"], 5);
        assert_eq!(new["metadata"]["labels"]["l"], "v");
        assert_eq!(new["metadata"]["resourceVersion"], "9");
        assert_eq!(new["metadata"]["generation"], 3);
    }
}

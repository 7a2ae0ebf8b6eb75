//! `meta.k8s.io` Tables: what `kubectl get` prints, rendered on the server from the catalog's
//! printer columns.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::{negotiation::MetaVersion, resources::ServedResource};

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "None" => Some(Self::None),
            "Metadata" => Some(Self::Metadata),
            "Object" => Some(Self::Object),
            _ => None,
        }
    }
}

/// A Table of `items`, with `list_metadata` (resourceVersion, continue) as its metadata.
pub fn render(
    resource: &ServedResource,
    items: &[Value],
    version: MetaVersion,
    include: IncludeObject,
    list_metadata: Value,
    now: Timestamp,
) -> Value {
    let mut columns = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    })];
    columns.extend(resource.columns.iter().map(|c| {
        json!({"name": c.name, "type": c.type_, "format": "", "description": c.description, "priority": c.priority})
    }));
    // Rows are built from owned values: `json!` would deep-copy every embedded Value.
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut cells = Vec::with_capacity(resource.columns.len() + 1);
            cells.push(
                item.pointer("/metadata/name")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            cells.extend(
                resource
                    .columns
                    .iter()
                    .map(|c| cell(item, &c.json_path, &c.type_, now)),
            );
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert("object".into(), partial_metadata(item, version));
                }
                IncludeObject::Object => {
                    row.insert("object".into(), item.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    let mut table = Map::new();
    table.insert("kind".into(), json!("Table"));
    table.insert("apiVersion".into(), json!(version.api_version()));
    table.insert("metadata".into(), list_metadata);
    table.insert("columnDefinitions".into(), Value::Array(columns));
    table.insert("rows".into(), Value::Array(rows));
    Value::Object(table)
}

/// An object reduced to its metadata, as `PartialObjectMetadata`.
pub fn partial_metadata(item: &Value, version: MetaVersion) -> Value {
    let mut map = Map::new();
    map.insert("kind".into(), json!("PartialObjectMetadata"));
    map.insert("apiVersion".into(), json!(version.api_version()));
    map.insert(
        "metadata".into(),
        item.get("metadata")
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new())),
    );
    Value::Object(map)
}

/// The value at a simple JSONPath (`.spec.resource.name`), rendered for its column type.
fn cell(item: &Value, path: &str, type_: &str, now: Timestamp) -> Value {
    let mut node = Some(item);
    for part in path.trim_start_matches('.').split('.') {
        node = node.and_then(|n| n.get(part));
    }
    match (node, type_) {
        (None | Some(Value::Null), _) => Value::Null,
        (Some(Value::String(s)), "date") => match s.parse::<Timestamp>() {
            Ok(t) => Value::String(human_duration(now.as_second() - t.as_second())),
            Err(_) => Value::String(s.clone()),
        },
        (Some(v), _) => v.clone(),
    }
}

/// How kubectl shows ages: apimachinery's `duration.HumanDuration`, in whole seconds.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{catalog, find};

    #[test]
    fn human_durations_match_apimachinery() {
        for (s, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (10 * 3600, "10h"),
            (50 * 3600, "2d2h"),
            (9 * 86400, "9d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (9 * 365 * 86400, "9y"),
        ] {
            assert_eq!(human_duration(s), want, "{s}");
        }
    }

    #[test]
    fn observation_rows() {
        let catalog = catalog();
        let obs = find(&catalog, "observations").unwrap();
        let item = json!({
            "metadata": {"name": "a", "namespace": "ns", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"source": "falco", "category": "security", "severity": "high", "eventType": "x", "title": "t"},
            "status": {"count": 3}
        });
        let now: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let t = render(
            obs,
            &[item],
            MetaVersion::V1,
            IncludeObject::Metadata,
            json!({"resourceVersion": "5"}),
            now,
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
        assert_eq!(t["columnDefinitions"][7]["priority"], 1);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "a", "falco", "security", "high", "x", 3, "5m", "t", null, null
            ])
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["metadata"]["resourceVersion"], "5");
    }
}

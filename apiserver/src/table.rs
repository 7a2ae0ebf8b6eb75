//! `meta.k8s.io` Tables: what `kubectl get` prints, rendered on the server from the catalog's
//! printer columns.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json, value::RawValue};

use crate::{negotiation::MetaVersion, resources::ServedResource, view::ObjectView};

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

/// A Table of `items`, with `list_metadata` (resourceVersion, continue) as its metadata,
/// written to `out`.
pub fn render(
    resource: &ServedResource,
    items: &[ObjectView<'_>],
    version: MetaVersion,
    include: IncludeObject,
    list_metadata: &Value,
    now: Timestamp,
    out: &mut Vec<u8>,
) {
    let mut columns = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    })];
    columns.extend(resource.columns.iter().map(|c| {
        json!({"name": c.name, "type": c.type_, "format": "", "description": c.description, "priority": c.priority})
    }));
    out.extend_from_slice(b"{\"kind\":\"Table\",\"apiVersion\":\"");
    out.extend_from_slice(version.api_version().as_bytes());
    out.extend_from_slice(b"\",\"metadata\":");
    write_json(out, list_metadata);
    out.extend_from_slice(b",\"columnDefinitions\":");
    write_json(out, &columns);
    out.extend_from_slice(b",\"rows\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"cells\":[");
        write_raw(out, item.get("metadata.name"));
        for c in &resource.columns {
            out.push(b',');
            write_cell(out, item, &c.json_path, &c.type_, now);
        }
        out.push(b']');
        match include {
            IncludeObject::None => {}
            IncludeObject::Metadata => {
                out.extend_from_slice(b",\"object\":");
                write_partial_metadata(out, item, version);
            }
            IncludeObject::Object => {
                out.extend_from_slice(b",\"object\":");
                item.write_object(out);
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

/// An object reduced to its metadata, as `PartialObjectMetadata`.
pub fn write_partial_metadata(out: &mut Vec<u8>, item: &ObjectView<'_>, version: MetaVersion) {
    out.extend_from_slice(b"{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"");
    out.extend_from_slice(version.api_version().as_bytes());
    out.extend_from_slice(b"\",\"metadata\":");
    item.write_metadata(out);
    out.push(b'}');
}

fn write_json(out: &mut Vec<u8>, value: &impl serde::Serialize) {
    // Serializing plain JSON values into a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}

fn write_raw(out: &mut Vec<u8>, raw: Option<&RawValue>) {
    out.extend_from_slice(raw.map_or("null", RawValue::get).as_bytes());
}

/// The value at a simple JSONPath (`.spec.resource.name`), rendered for its column type.
fn write_cell(out: &mut Vec<u8>, item: &ObjectView<'_>, path: &str, type_: &str, now: Timestamp) {
    let raw = item.get(path);
    let age = (type_ == "date")
        .then(|| item.str(path)?.parse::<Timestamp>().ok())
        .flatten();
    match age {
        Some(t) => write_json(out, &human_duration(now.as_second() - t.as_second())),
        None => write_raw(out, raw),
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
        let text = serde_json::to_vec(&item).unwrap();
        let mut out = Vec::new();
        render(
            obs,
            &[ObjectView::parse(&text, Some(4)).unwrap()],
            MetaVersion::V1,
            IncludeObject::Metadata,
            &json!({"resourceVersion": "5"}),
            now,
            &mut out,
        );
        let t: Value = serde_json::from_slice(&out).unwrap();
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
        assert_eq!(t["rows"][0]["object"]["metadata"]["resourceVersion"], "4");
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "ns");
        assert_eq!(t["metadata"]["resourceVersion"], "5");
    }
}

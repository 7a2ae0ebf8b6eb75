//! OpenAPI v2 and v3 documents of the group, generated from the `zen-crds` schemas, so
//! `kubectl explain observations.spec.severity` shows the same words the CRD types carry.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta};
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};
use zen_crds::{API_GROUP, VERSION};

use crate::{discovery::Document, resources::ServedResource};

/// The v3 path of the group-version document.
pub const V3_GROUP_PATH: &str = "apis/zen.watcher.io/v1alpha1";

/// The prepared documents.
#[derive(Debug, Clone)]
pub struct OpenApi {
    pub v2: Document,
    pub v3_root: Document,
    pub v3_group: Document,
}

fn definition_name(kind: &str) -> String {
    format!("io.zen.watcher.{VERSION}.{kind}")
}

impl OpenApi {
    pub fn new(catalog: &[ServedResource]) -> Self {
        let mut generator = SchemaSettings::openapi3().into_generator();
        let object_meta = generator.subschema_for::<ObjectMeta>().to_value();
        let list_meta = generator.subschema_for::<ListMeta>().to_value();
        let mut schemas: Map<String, Value> =
            generator.take_definitions(true).into_iter().collect();
        let mut paths = Map::new();
        for r in catalog {
            let gvk = json!([{"group": API_GROUP, "version": VERSION, "kind": r.kind}]);
            let mut object = r.schema.clone();
            if let Some(props) = object.get_mut("properties").and_then(Value::as_object_mut) {
                props.insert("metadata".into(), object_meta.clone());
                props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
                props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
            }
            object["x-kubernetes-group-version-kind"] = gvk.clone();
            let name = definition_name(r.kind);
            let list_name = definition_name(r.list_kind);
            schemas.insert(name.clone(), object);
            schemas.insert(
                list_name.clone(),
                json!({
                    "type": "object",
                    "description": format!("A list of {}.", r.plural),
                    "required": ["items"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": list_meta,
                        "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}},
                    },
                    "x-kubernetes-group-version-kind": [{"group": API_GROUP, "version": VERSION, "kind": r.list_kind}],
                }),
            );
            let op = |action: &str, verb: &str, schema: &str| {
                let mut params = vec![
                    json!({"name": "pretty", "in": "query", "schema": {"type": "string", "uniqueItems": true}}),
                ];
                if matches!(action, "post" | "put" | "patch") {
                    // kubectl looks for these to learn that the server validates fields itself
                    // (and then skips client-side validation).
                    for name in ["dryRun", "fieldManager", "fieldValidation"] {
                        params.push(json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}}));
                    }
                }
                if matches!(action, "list" | "deletecollection") {
                    for name in [
                        "labelSelector",
                        "fieldSelector",
                        "limit",
                        "continue",
                        "resourceVersion",
                        "resourceVersionMatch",
                        "watch",
                        "allowWatchBookmarks",
                        "timeoutSeconds",
                        "sendInitialEvents",
                    ] {
                        params.push(json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}}));
                    }
                }
                json!({
                    "parameters": params,
                    "operationId": format!("{verb}{}", r.kind),
                    "tags": ["zenWatcherIo_v1alpha1"],
                    "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}},
                                  "401": {"description": "Unauthorized"}},
                    "x-kubernetes-action": action,
                    "x-kubernetes-group-version-kind": {"group": API_GROUP, "version": VERSION, "kind": r.kind},
                })
            };
            let base = format!("/apis/{API_GROUP}/{VERSION}");
            paths.insert(
                format!("{base}/{}", r.plural),
                json!({"get": op("list", "list", &list_name)}),
            );
            let mut collection = json!({"get": op("list", "listNamespaced", &list_name)});
            let mut item = json!({"get": op("get", "read", &name)});
            if r.supports("create") {
                collection["post"] = op("post", "create", &name);
            }
            if r.supports("deletecollection") {
                collection["delete"] = op("deletecollection", "deleteCollection", &list_name);
            }
            if r.supports("update") {
                item["put"] = op("put", "replace", &name);
            }
            if r.supports("patch") {
                item["patch"] = op("patch", "patch", &name);
            }
            if r.supports("delete") {
                item["delete"] = op("delete", "delete", &name);
            }
            paths.insert(
                format!("{base}/namespaces/{{namespace}}/{}", r.plural),
                collection,
            );
            paths.insert(
                format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
                item,
            );
        }
        let v3 = json!({
            "openapi": "3.0.0",
            "info": {"title": "zen-watcher", "version": env!("CARGO_PKG_VERSION")},
            "paths": paths,
            "components": {"schemas": schemas},
        });
        let v3_group = Document::json(&v3, "application/json");
        let hash = v3_group.etag.trim_matches('"').to_uppercase();
        let v3_root = Document::json(
            &json!({"paths": {V3_GROUP_PATH: {"serverRelativeURL": format!("/openapi/v3/{V3_GROUP_PATH}?hash={hash}")}}}),
            "application/json",
        );
        let v2 = Document::json(&to_v2(&v3), "application/json");
        Self {
            v2,
            v3_root,
            v3_group,
        }
    }
}

/// Swagger 2.0 from the v3 document: definitions instead of components, no `nullable`.
fn to_v2(v3: &Value) -> Value {
    fn rewrite(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("nullable");
                if let Some(Value::String(r)) = map.get_mut("$ref") {
                    *r = r.replace("#/components/schemas/", "#/definitions/");
                }
                if let Some(content) = map.remove("content")
                    && let Some(schema) = content.pointer("/application~1json/schema")
                {
                    map.insert("schema".into(), schema.clone());
                }
                map.values_mut().for_each(rewrite);
            }
            Value::Array(items) => items.iter_mut().for_each(rewrite),
            _ => {}
        }
    }
    let mut doc = json!({
        "swagger": "2.0",
        "info": v3["info"],
        "paths": v3["paths"],
        "definitions": v3["components"]["schemas"],
    });
    rewrite(&mut doc);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::catalog;

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn documents_are_self_contained() {
        let api = OpenApi::new(&catalog());
        let v3: Value = serde_json::from_slice(&api.v3_group.body).unwrap();
        let obs = &v3["components"]["schemas"]["io.zen.watcher.v1alpha1.Observation"];
        assert_eq!(
            obs["x-kubernetes-group-version-kind"][0]["kind"],
            "Observation"
        );
        assert!(
            obs["properties"]["spec"]["properties"]["severity"]["description"]
                .as_str()
                .unwrap()
                .contains("urgent")
        );
        let mut all = Vec::new();
        refs(&v3, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r.trim_start_matches("#/components/schemas/");
            assert!(
                v3["components"]["schemas"].get(name).is_some(),
                "unresolved {r}"
            );
        }
        let v2: Value = serde_json::from_slice(&api.v2.body).unwrap();
        let mut all = Vec::new();
        refs(&v2, &mut all);
        for r in all {
            let name = r.trim_start_matches("#/definitions/");
            assert!(v2["definitions"].get(name).is_some(), "unresolved {r}");
        }
        assert!(!String::from_utf8_lossy(&api.v2.body).contains("nullable"));
        let root: Value = serde_json::from_slice(&api.v3_root.body).unwrap();
        let url = root["paths"][V3_GROUP_PATH]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.ends_with(&api.v3_group.etag.trim_matches('"').to_uppercase()));
    }
}

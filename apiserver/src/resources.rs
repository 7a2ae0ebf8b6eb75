//! The catalog of what the aggregated API serves. Discovery, OpenAPI, routing, tables and
//! field selectors all read it, so adding a resource is one entry here.

use kube::core::CustomResourceExt;
use serde_json::Value;
use zen_crds::{API_GROUP, CATEGORY, Observation, VERSION, WebhookEndpoint};

/// A verb in discovery documents, in kube-apiserver's (alphabetical) order.
pub type Verb = &'static str;

/// A column of `kubectl get` output (a `meta.k8s.io/v1` Table column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `date`, ...
    pub type_: String,
    /// JSONPath into the object, e.g. `.spec.severity`.
    pub json_path: String,
    pub description: String,
    /// 0 for default columns, 1 for `-o wide`.
    pub priority: i32,
}

/// One resource of the group, with everything that differs between resources.
#[derive(Debug, Clone)]
pub struct ServedResource {
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    pub verbs: &'static [Verb],
    /// Subresources with their own verbs (`status`, `ingest`).
    pub subresources: &'static [(&'static str, &'static [Verb])],
    /// Fields usable in `fieldSelector`, besides `metadata.name` and `metadata.namespace`.
    pub selectable_fields: &'static [&'static str],
    /// Printer columns (without NAME, which every table has).
    pub columns: Vec<Column>,
    /// The openAPIV3Schema of the object (from the `zen-crds` types).
    pub schema: Value,
}

const ALL_VERBS: &[Verb] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const READ_VERBS: &[Verb] = &["get", "list", "watch"];

impl ServedResource {
    /// `observations.zen.watcher.io`, as kube-apiserver names resources in messages.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.plural, API_GROUP)
    }

    pub fn api_version() -> String {
        format!("{API_GROUP}/{VERSION}")
    }

    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    pub fn subresource_verbs(&self, name: &str) -> Option<&'static [Verb]> {
        self.subresources
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, verbs)| *verbs)
    }
}

/// The discovery category every zen-watcher resource carries.
pub const CATEGORIES: &[&str] = &[CATEGORY];

/// Every resource of `zen.watcher.io/v1alpha1`, in discovery order.
pub fn catalog() -> Vec<ServedResource> {
    vec![
        ServedResource {
            plural: "observations",
            singular: "observation",
            kind: "Observation",
            list_kind: "ObservationList",
            short_names: &["obs"],
            namespaced: true,
            verbs: ALL_VERBS,
            subresources: &[("status", &["get", "patch", "update"])],
            selectable_fields: &[
                "spec.source",
                "spec.category",
                "spec.severity",
                "spec.eventType",
                "spec.ingestor",
            ],
            columns: crd_columns(&Observation::crd()),
            schema: crd_schema(&Observation::crd()),
        },
        ServedResource {
            plural: "webhookendpoints",
            singular: "webhookendpoint",
            kind: "WebhookEndpoint",
            list_kind: "WebhookEndpointList",
            short_names: &["whe"],
            namespaced: true,
            verbs: READ_VERBS,
            subresources: &[("ingest", &["create"])],
            selectable_fields: &["spec.ingestor", "spec.source"],
            columns: crd_columns(&WebhookEndpoint::crd()),
            schema: crd_schema(&WebhookEndpoint::crd()),
        },
    ]
}

/// Finds a resource by plural name.
pub fn find<'a>(catalog: &'a [ServedResource], plural: &str) -> Option<&'a ServedResource> {
    catalog.iter().find(|r| r.plural == plural)
}

type Crd =
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

fn crd_columns(crd: &Crd) -> Vec<Column> {
    let Some(version) = crd.spec.versions.first() else {
        return Vec::new();
    };
    version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| Column {
            name: c.name.clone(),
            type_: c.type_.clone(),
            json_path: c.json_path.clone(),
            description: c.description.clone().unwrap_or_default(),
            priority: c.priority.unwrap_or(0),
        })
        .collect()
}

fn crd_schema(crd: &Crd) -> Value {
    crd.spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null)
}

/// Keeps the `Resource` impls of the served types in step with this catalog.
#[cfg(test)]
mod tests {
    use kube::core::Resource;

    use super::*;

    #[test]
    fn catalog_matches_the_types() {
        let catalog = catalog();
        let obs = find(&catalog, "observations").expect("observations served");
        assert_eq!(obs.kind, Observation::kind(&()));
        assert_eq!(obs.plural, Observation::plural(&()));
        let whe = find(&catalog, "webhookendpoints").expect("webhookendpoints served");
        assert_eq!(whe.kind, WebhookEndpoint::kind(&()));
        assert!(
            !whe.supports("create"),
            "WebhookEndpoints are derived, never created by users"
        );
        assert_eq!(whe.subresource_verbs("ingest"), Some(&["create"][..]));
    }

    #[test]
    fn observation_columns_follow_the_design() {
        let catalog = catalog();
        let obs = find(&catalog, "observations").expect("observations served");
        let names: Vec<(&str, i32)> = obs
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.priority))
            .collect();
        assert_eq!(
            names,
            [
                ("Source", 0),
                ("Category", 0),
                ("Severity", 0),
                ("Type", 0),
                ("Count", 0),
                ("Age", 0),
                ("Title", 1),
                ("Resource", 1),
                ("Ingestor", 1)
            ]
        );
        assert!(obs.schema["properties"]["spec"]["properties"]["severity"]["enum"].is_array());
    }
}

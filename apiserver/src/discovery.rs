//! Discovery documents (`/apis`, `/apis/zen.watcher.io`, `/apis/zen.watcher.io/v1alpha1`,
//! aggregated discovery v2 and v2beta1) and `/version`. Built once at start-up: they change
//! only with the binary, so their ETags let kube-apiserver revalidate every 60 s for free.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zen_crds::{API_GROUP, VERSION};

use crate::{negotiation::DiscoveryVersion, resources::ServedResource};

/// A prepared response body with its validator.
#[derive(Debug, Clone)]
pub struct Document {
    pub body: bytes::Bytes,
    pub etag: String,
    pub content_type: &'static str,
}

impl Document {
    pub fn json(value: &Value, content_type: &'static str) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_default();
        let etag = format!("\"{:x}\"", Sha256::digest(&body));
        Self {
            body: body.into(),
            etag,
            content_type,
        }
    }

    /// Whether an `If-None-Match` header value names this document.
    pub fn matches(&self, if_none_match: Option<&str>) -> bool {
        if_none_match.is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == self.etag || t.trim() == "*")
        })
    }
}

/// Every discovery document.
#[derive(Debug, Clone)]
pub struct Discovery {
    pub group_list: Document,
    pub group: Document,
    pub resource_list: Document,
    pub aggregated_v2: Document,
    pub aggregated_v2beta1: Document,
    pub version: Document,
}

/// The Kubernetes version zen-watcher reports on `/version`. The kubectl on our machines is a
/// dispatcher that runs the bundled kubectl matching the server's minor version, so this must
/// be a minor it bundles (1.27 to 1.33); it is also the API level zen-watcher implements.
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "32");

impl Discovery {
    pub fn new(catalog: &[ServedResource]) -> Self {
        let group_version = format!("{API_GROUP}/{VERSION}");
        let gv = json!({"groupVersion": group_version, "version": VERSION});
        let group = json!({
            "name": API_GROUP,
            "versions": [gv],
            "preferredVersion": gv,
        });
        let group_list = json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]});
        let mut group_doc = group.clone();
        group_doc["kind"] = json!("APIGroup");
        group_doc["apiVersion"] = json!("v1");

        let mut resources = Vec::new();
        for r in catalog {
            resources.push(json!({
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": r.verbs,
                "shortNames": r.short_names,
                "categories": crate::resources::CATEGORIES,
            }));
            for (sub, verbs) in r.subresources {
                resources.push(json!({
                    "name": format!("{}/{sub}", r.plural),
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": verbs,
                }));
            }
        }
        let resource_list = json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        });

        let aggregated = |v: DiscoveryVersion| {
            let resources: Vec<Value> = catalog
                .iter()
                .map(|r| {
                    let kind = json!({"group": API_GROUP, "version": VERSION, "kind": r.kind});
                    let subresources: Vec<Value> = r
                        .subresources
                        .iter()
                        .map(|(sub, verbs)| {
                            json!({"subresource": sub, "responseKind": kind, "verbs": verbs})
                        })
                        .collect();
                    let mut doc = json!({
                        "resource": r.plural,
                        "responseKind": kind,
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular,
                        "verbs": r.verbs,
                        "shortNames": r.short_names,
                        "categories": crate::resources::CATEGORIES,
                    });
                    if !subresources.is_empty() {
                        doc["subresources"] = json!(subresources);
                    }
                    doc
                })
                .collect();
            json!({
                "kind": "APIGroupDiscoveryList",
                "apiVersion": v.api_version(),
                "metadata": {},
                "items": [{
                    "metadata": {"name": API_GROUP, "creationTimestamp": null},
                    "versions": [{"version": VERSION, "resources": resources, "freshness": "Current"}],
                }],
            })
        };

        let (major, minor) = KUBERNETES_VERSION;
        let version = json!({
            "major": major,
            "minor": minor,
            "gitVersion": format!("v{major}.{minor}.0+zen-watcher.{}", env!("CARGO_PKG_VERSION")),
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "",
            "goVersion": "rustc",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        });

        Self {
            group_list: Document::json(&group_list, "application/json"),
            group: Document::json(&group_doc, "application/json"),
            resource_list: Document::json(&resource_list, "application/json"),
            aggregated_v2: Document::json(
                &aggregated(DiscoveryVersion::V2),
                DiscoveryVersion::V2.content_type(),
            ),
            aggregated_v2beta1: Document::json(
                &aggregated(DiscoveryVersion::V2beta1),
                DiscoveryVersion::V2beta1.content_type(),
            ),
            version: Document::json(&version, "application/json"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::catalog;

    #[test]
    fn documents_describe_the_catalog() {
        let d = Discovery::new(&catalog());
        let list: Value = serde_json::from_slice(&d.resource_list.body).unwrap();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "observations",
                "observations/status",
                "webhookendpoints",
                "webhookendpoints/ingest"
            ]
        );
        assert_eq!(list["resources"][0]["shortNames"][0], "obs");
        assert_eq!(list["resources"][0]["categories"][0], "zen");
        let agg: Value = serde_json::from_slice(&d.aggregated_v2beta1.body).unwrap();
        assert_eq!(agg["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        let obs = &agg["items"][0]["versions"][0]["resources"][0];
        assert_eq!(obs["responseKind"]["kind"], "Observation");
        assert_eq!(obs["subresources"][0]["subresource"], "status");
        assert_eq!(
            d.aggregated_v2beta1.content_type,
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        );
        assert!(d.group_list.matches(Some(&d.group_list.etag)));
        assert!(!d.group_list.matches(Some("\"other\"")));
    }
}

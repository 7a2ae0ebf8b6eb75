//! `Observation`: one security, compliance or operations signal, stored by zen-watcher.

// Printer columns repeat `type_ = "string"`, which this lint mistakes for a copy-paste slip.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Largest serialized size of `spec.details`, so one noisy sender cannot bloat the store.
pub const MAX_DETAILS_BYTES: usize = 32 * 1024;

/// A signal about the cluster: a Falco alert, a Trivy finding, a GitHub alert, a warning Event.
///
/// Observations are usually created by Ingestors; repeats of the same `fingerprint` inside the
/// Ingestor's dedup window increase `status.count` instead of creating new objects.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "zen.watcher.io",
    version = "v1alpha1",
    kind = "Observation",
    plural = "observations",
    singular = "observation",
    shortname = "obs",
    category = "zen",
    namespaced,
    status = "ObservationStatus",
    doc = "A security, compliance or operations signal, stored as a Kubernetes resource.",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.source"),
    printcolumn(name = "Category", type_ = "string", json_path = ".spec.category"),
    printcolumn(name = "Severity", type_ = "string", json_path = ".spec.severity"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.eventType"),
    printcolumn(name = "Count", type_ = "integer", json_path = ".status.count"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Title",
        type_ = "string",
        json_path = ".spec.title",
        priority = "1"
    ),
    printcolumn(
        name = "Resource",
        type_ = "string",
        json_path = ".spec.resource.name",
        priority = "1"
    ),
    printcolumn(
        name = "Ingestor",
        type_ = "string",
        json_path = ".spec.ingestor",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ObservationSpec {
    /// The tool or feed that reported the signal, in lowercase with dashes: `falco`, `trivy`,
    /// `github`, `alertmanager`, `kubernetes-events`.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9-]+$"))]
    pub source: String,

    /// What kind of concern the signal is about.
    pub category: Category,

    /// How urgent the signal is. Lowercase only.
    pub severity: Severity,

    /// The kind of event within its source, in lowercase with underscores:
    /// `vulnerability`, `runtime_alert`, `secret_leak`, `pod_crash_loop`.
    #[schemars(length(min = 1, max = 128), pattern(r"^[a-z0-9_]+$"))]
    pub event_type: String,

    /// A one-line summary for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub title: Option<String>,

    /// A longer explanation, remediation hints or a link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,

    /// The Kubernetes object the signal is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceRef>,

    /// Source-specific data kept as reported (rule output, CVE data, alert labels).
    /// Limited to 32 KiB when serialized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub details: Option<BTreeMap<String, serde_json::Value>>,

    /// When the source detected the signal (RFC 3339). Defaults to the creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<Time>,

    /// The deduplication key: signals with the same fingerprint inside the Ingestor's dedup
    /// window are counted on one Observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub fingerprint: Option<String>,

    /// Name of the Ingestor (in the same namespace) that produced this Observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub ingestor: Option<String>,

    /// Delete the Observation this many seconds after it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub ttl_seconds_after_creation: Option<i64>,
}

/// The area a signal belongs to.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub enum Category {
    Security,
    Compliance,
    Performance,
    Operations,
    Cost,
}

/// Urgency, from most to least urgent.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Self::Security,
        Self::Compliance,
        Self::Performance,
        Self::Operations,
        Self::Cost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Security => "security",
            Self::Compliance => "compliance",
            Self::Performance => "performance",
            Self::Operations => "operations",
            Self::Cost => "cost",
        }
    }
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Self::Critical,
        Self::High,
        Self::Medium,
        Self::Low,
        Self::Info,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
            Self::Info => "info",
        }
    }
}

/// A reference to the Kubernetes object a signal is about.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    /// API version of the object, e.g. `apps/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub api_version: Option<String>,
    /// Kind of the object, e.g. `Deployment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub kind: Option<String>,
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the object; empty for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
}

/// Deduplication state, maintained by zen-watcher.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObservationStatus {
    /// How many occurrences were folded into this Observation (1 for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub count: Option<i64>,
    /// When the first occurrence was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Time>,
    /// When the latest occurrence was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
}

/// An object whose fields are kept as given.
pub(crate) fn free_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

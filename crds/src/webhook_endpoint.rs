//! `WebhookEndpoint`: the read-only view of one webhook source of an Ingestor.

// Printer columns repeat `type_ = "string"`, which this lint mistakes for a copy-paste slip.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ingestor::{AuthType, RateLimit};

/// Where and how an external tool delivers webhooks, and what happened to its deliveries.
///
/// zen-watcher derives one WebhookEndpoint per webhook source of every Ingestor; users never
/// create them. Named `<ingestor>-<source>`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "zen.watcher.io",
    version = "v1alpha1",
    kind = "WebhookEndpoint",
    plural = "webhookendpoints",
    singular = "webhookendpoint",
    shortname = "whe",
    category = "zen",
    namespaced,
    status = "WebhookEndpointStatus",
    doc = "A webhook endpoint provisioned by an Ingestor (read-only).",
    printcolumn(name = "Path", type_ = "string", json_path = ".spec.path"),
    printcolumn(name = "Auth", type_ = "string", json_path = ".spec.auth"),
    printcolumn(name = "Received", type_ = "integer", json_path = ".status.received"),
    printcolumn(name = "Accepted", type_ = "integer", json_path = ".status.accepted"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpointSpec {
    /// The Ingestor this endpoint belongs to.
    pub ingestor: String,
    /// The source of the Ingestor this endpoint serves.
    pub source: String,
    /// Path on the ingest port: `/hooks/{namespace}/{ingestor}/{source}`.
    pub path: String,
    /// How deliveries are authenticated.
    pub auth: AuthType,
    /// Per-endpoint rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Largest accepted body in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<i64>,
}

/// Delivery counters since the endpoint was provisioned.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpointStatus {
    /// Deliveries received, whatever their outcome.
    #[serde(default)]
    pub received: i64,
    /// Deliveries that passed every check and were stored (or deduplicated).
    #[serde(default)]
    pub accepted: i64,
    /// Refused deliveries by reason (`badSignature`, `replayed`, `rateLimited`, `tooLarge`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rejected: BTreeMap<String, i64>,
    /// When the last delivery arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_time: Option<Time>,
}

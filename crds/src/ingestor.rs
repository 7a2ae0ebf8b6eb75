//! `Ingestor`: what zen-watcher listens to, and how deliveries become Observations.

// Printer columns repeat `type_ = "string"`, which this lint mistakes for a copy-paste slip.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Duration, expression::Expression};

/// Largest `maxBodyBytes` a webhook source may ask for (10 MiB).
pub const MAX_BODY_BYTES_LIMIT: i64 = 10 * 1024 * 1024;

/// Configures one or more sources of signals and how their events become Observations.
///
/// Applying an Ingestor with a webhook source provisions an HTTPS endpoint on zen-watcher's
/// ingest port at `/hooks/{namespace}/{ingestor}/{source}`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "config.zen.watcher.io",
    version = "v1alpha1",
    kind = "Ingestor",
    plural = "ingestors",
    singular = "ingestor",
    shortname = "igs",
    category = "zen",
    namespaced,
    status = "IngestorStatus",
    doc = "Configures sources of signals (webhooks, Kubernetes events) and how they become Observations.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Endpoints",
        type_ = "string",
        json_path = ".status.endpoints[*].path",
        priority = "1"
    )
)]
#[x_kube(validation = Rule::new("!self.sources.exists(s, s.type == 'webhook') || has(self.mapping)").message("webhook sources need a mapping to turn payloads into Observations").field_path(".mapping"))]
#[serde(rename_all = "camelCase")]
pub struct IngestorSpec {
    /// Where signals come from. Source names are unique within the Ingestor.
    #[schemars(length(min = 1, max = 16), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub sources: Vec<Source>,

    /// CEL expression over `payload` and `headers`; deliveries for which it is false are
    /// dropped (answered 202, not stored). Example: `payload.priority in ['Critical', 'Error']`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Expression>,

    /// CEL expressions that compute the Observation fields from `payload` and `headers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<Mapping>,

    /// Folding of repeated signals into one Observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<Dedup>,

    /// Lifetime of the Observations this Ingestor creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Ttl>,
}

/// One origin of signals.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.type == 'webhook' || (!has(self.auth) && !has(self.rateLimit) && !has(self.maxBodyBytes))").message("auth, rateLimit and maxBodyBytes apply only to webhook sources"),
    validation = Rule::new("self.type != 'webhook' || has(self.auth)").message("webhook sources need auth; write auth.type: none to accept unauthenticated deliveries where policy allows it").field_path(".auth"),
    validation = Rule::new("self.type == 'kubernetesEvents' || !has(self.kubernetesEvents)").message("kubernetesEvents settings apply only to sources of type kubernetesEvents")
)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// Name of the source, unique within the Ingestor; the last segment of the webhook path.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,

    /// `webhook` receives HTTPS deliveries; `kubernetesEvents` follows core Events in the
    /// Ingestor's namespace.
    #[serde(rename = "type")]
    pub type_: SourceType,

    /// How webhook deliveries are authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<WebhookAuth>,

    /// Token-bucket rate limit for this endpoint; excess deliveries get 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,

    /// Largest accepted body in bytes (at most 10 MiB); larger deliveries get 413.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10485760))]
    pub max_body_bytes: Option<i64>,

    /// Which Events a kubernetesEvents source turns into Observations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_events: Option<KubernetesEventsSource>,
}

/// Kind of source.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum SourceType {
    Webhook,
    KubernetesEvents,
}

/// Authentication of webhook deliveries.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.type == 'none' || has(self.secretRef)").message("auth types hmac, bearer and mtls need secretRef").field_path(".secretRef"),
    validation = Rule::new("self.type != 'none' || !has(self.secretRef)").message("auth type none takes no secretRef"),
    validation = Rule::new("self.type == 'hmac' || !has(self.hmac)").message("hmac settings apply only to auth type hmac"),
    validation = Rule::new("self.type != 'hmac' || has(self.hmac)").message("auth type hmac needs hmac settings (a preset, or header and algorithm)").field_path(".hmac"),
    validation = Rule::new("self.type == 'hmac' || !has(self.replay)").message("replay protection needs signed deliveries (auth type hmac)")
)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAuth {
    /// `hmac` checks a signature of the body, `bearer` a token in the Authorization header,
    /// `mtls` a client certificate, `none` nothing (only where policy allows it).
    #[serde(rename = "type")]
    pub type_: AuthType,

    /// The Secret (in the Ingestor's namespace) holding the HMAC key, the bearer token or, for
    /// mtls, the PEM bundle of trusted client CAs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,

    /// How the HMAC signature is carried and computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac: Option<HmacSettings>,

    /// Refusal of stale and repeated deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayProtection>,
}

/// Kind of webhook authentication.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum AuthType {
    Hmac,
    Bearer,
    Mtls,
    None,
}

/// A key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253), pattern(r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// HMAC signature settings: a preset for a known sender, or an explicit scheme.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("(has(self.preset) && self.preset != 'generic') || has(self.header)").message("without a preset (or with preset generic) the signature header must be given").field_path(".header"))]
#[serde(rename_all = "camelCase")]
pub struct HmacSettings {
    /// A sender's documented scheme: `github` (X-Hub-Signature-256), `gitlab` (X-Gitlab-Token),
    /// `standardWebhooks` (webhook-id, webhook-timestamp, webhook-signature), `stripe`
    /// (Stripe-Signature), or `generic` (header, prefix and algorithm below).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<HmacPreset>,
    /// Header carrying the signature (generic scheme).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), pattern(r"^[A-Za-z0-9-]+$"))]
    pub header: Option<String>,
    /// Text before the signature in the header value, e.g. `sha256=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub prefix: Option<String>,
    /// Hash function of the HMAC (default sha256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<HmacAlgorithm>,
    /// Encoding of the signature (default hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<SignatureEncoding>,
}

/// Known webhook signing schemes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum HmacPreset {
    Github,
    Gitlab,
    StandardWebhooks,
    Stripe,
    Generic,
}

/// Hash function of an HMAC.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum HmacAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

/// Text encoding of a signature.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

/// Replay protection: a signed timestamp must be recent, and a delivery id is accepted once.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplayProtection {
    /// How old a signed timestamp may be, and how long delivery ids are remembered (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    /// Header with the delivery time in Unix seconds (presets set it where the scheme signs one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), pattern(r"^[A-Za-z0-9-]+$"))]
    pub timestamp_header: Option<String>,
    /// Header with a unique delivery id, e.g. `X-GitHub-Delivery` or `webhook-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), pattern(r"^[A-Za-z0-9-]+$"))]
    pub delivery_id_header: Option<String>,
}

/// A token bucket: `requestsPerSecond` refill rate and `burst` capacity.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Sustained deliveries per second.
    #[schemars(range(min = 1, max = 100000))]
    pub requests_per_second: i32,
    /// Deliveries accepted at once after a quiet period (default: requestsPerSecond).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub burst: Option<i32>,
}

/// Which core Events become Observations.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesEventsSource {
    /// Event types to take (default: Warning only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2), extend("x-kubernetes-list-type" = "set"))]
    pub types: Vec<EventType>,
    /// Only Events with one of these reasons (e.g. `BackOff`, `FailedScheduling`); empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "set"))]
    pub reasons: Vec<String>,
    /// Only Events about objects of these kinds (e.g. `Pod`); empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "set"))]
    pub involved_kinds: Vec<String>,
}

/// Type of a core Event.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Warning,
    Normal,
}

/// CEL expressions computing the Observation's fields. Each sees `payload` (the JSON body) and
/// `headers` (lower-cased names to values).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Mapping {
    /// `spec.source` (default: the source's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Expression>,
    /// `spec.category`, e.g. `'security'`.
    pub category: Expression,
    /// `spec.severity`, e.g. `payload.priority == 'Critical' ? 'critical' : 'medium'`.
    pub severity: Expression,
    /// `spec.eventType`, e.g. `'runtime_alert'`.
    pub event_type: Expression,
    /// `spec.title`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Expression>,
    /// `spec.description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Expression>,
    /// `spec.resource`: a map with `apiVersion`, `kind`, `name`, `namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Expression>,
    /// `spec.details`: a map kept as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Expression>,
    /// `spec.detectedAt`: a timestamp or an RFC 3339 string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<Expression>,
    /// `spec.fingerprint` (default: a hash of source, eventType and resource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Expression>,
}

/// Repeats of a signal inside `window` increase `status.count` of one Observation.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Dedup {
    /// How long after the last occurrence a repeat is still folded in (e.g. `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    /// CEL expression giving the dedup key (default: the Observation's fingerprint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Expression>,
}

/// Lifetime of produced Observations.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.default) || !has(self.max) || duration(self.default) <= duration(self.max)").message("ttl.default must not exceed ttl.max").field_path(".default"))]
#[serde(rename_all = "camelCase")]
pub struct Ttl {
    /// Lifetime given to each Observation (e.g. `168h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Duration>,
    /// Longest lifetime an Observation may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Duration>,
}

/// What zen-watcher made of the Ingestor.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IngestorStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` tells whether every source is serving, with a reason and message when not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The webhook paths this Ingestor serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["source"]))]
    pub endpoints: Vec<EndpointStatus>,
    /// Deliveries whose mapping failed or produced an invalid Observation since the reporting
    /// replica started (they were refused, nothing was stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_failures: Option<i64>,
    /// Why the last of those failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_mapping_failure: Option<String>,
}

/// A provisioned webhook endpoint.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    /// The source it serves.
    pub source: String,
    /// Path on the ingest port.
    pub path: String,
}

//! `IngestorPolicy`: cluster-wide CEL rules that check and default Ingestors when applied,
//! modelled on ValidatingAdmissionPolicy.

// Printer columns repeat `type_ = "string"`, which this lint mistakes for a copy-paste slip.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::expression::Expression;

/// Rules every Ingestor in matching namespaces must follow, and defaults filled in on apply.
///
/// CEL variables: `object` (the Ingestor), `oldObject` (on update, else null), `request`
/// (`operation`, `userInfo`, `namespace`, `dryRun`).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "config.zen.watcher.io",
    version = "v1alpha1",
    kind = "IngestorPolicy",
    plural = "ingestorpolicies",
    singular = "ingestorpolicy",
    shortname = "ipol",
    category = "zen",
    doc = "CEL rules that check and default Ingestors when they are applied.",
    printcolumn(
        name = "Actions",
        type_ = "string",
        json_path = ".spec.validationActions"
    ),
    printcolumn(
        name = "Failure-Policy",
        type_ = "string",
        json_path = ".spec.failurePolicy"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("(has(self.validations) && size(self.validations) > 0) || (has(self.mutations) && size(self.mutations) > 0)").message("a policy needs at least one validation or mutation"),
    validation = Rule::new("!has(self.validationActions) || !('Deny' in self.validationActions && 'Warn' in self.validationActions)").message("Deny and Warn together would report each failure twice; use one of them").field_path(".validationActions")
)]
#[serde(rename_all = "camelCase")]
pub struct IngestorPolicySpec {
    /// All must be true for the policy to apply to a request (CEL, same variables).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub match_conditions: Vec<MatchCondition>,

    /// Applies only to Ingestors in namespaces whose labels match (empty: every namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Checks; each expression must be true for the Ingestor to pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "atomic"))]
    pub validations: Vec<Validation>,

    /// Defaults written into the Ingestor by the mutating webhook.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "atomic"))]
    pub mutations: Vec<Mutation>,

    /// What a failed validation does: `Deny` refuses the request, `Warn` returns a warning to
    /// the client, `Audit` records an audit annotation. Default: `[Deny]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3), extend("x-kubernetes-list-type" = "set"))]
    pub validation_actions: Vec<ValidationAction>,

    /// What an evaluation error (not a false result) does: `Fail` treats it as a failed
    /// validation, `Ignore` skips the expression. Default: `Fail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<FailurePolicy>,
}

/// A named precondition.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MatchCondition {
    /// Unique name, used in messages.
    #[schemars(
        length(min = 1, max = 63),
        pattern(r"^[a-zA-Z0-9]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?$")
    )]
    pub name: String,
    /// CEL expression that must be true.
    pub expression: Expression,
}

/// One check.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    /// CEL expression that must be true.
    pub expression: Expression,
    /// Message when it is false (default: names the expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
    /// CEL expression computing the message; wins over `message` when it evaluates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_expression: Option<Expression>,
    /// Status reason of a denial (default `Invalid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ValidationReason>,
}

/// Status reason given to a denied request.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValidationReason {
    Unauthorized,
    Forbidden,
    Invalid,
    RequestEntityTooLarge,
}

/// One default: the value of `valueExpression` is written at `path` where nothing is there yet
/// (or always, with `overwrite`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Mutation {
    /// JSON pointer into the Ingestor, e.g. `/spec/dedup/window`. Missing parent objects are
    /// created.
    #[schemars(length(min = 2, max = 512), pattern(r"^(/([^/~]|~[01])*)+$"))]
    pub path: String,
    /// CEL expression computing the value, e.g. `'5m'`.
    pub value_expression: Expression,
    /// Replace a value that is already there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overwrite: bool,
}

/// Effect of a failed validation.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValidationAction {
    Deny,
    Warn,
    Audit,
}

/// Effect of an evaluation error.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum FailurePolicy {
    #[default]
    Fail,
    Ignore,
}

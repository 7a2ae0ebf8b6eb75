//! zen-watcher's API types.
//!
//! Two API groups live here:
//! - `zen.watcher.io/v1alpha1` ([`Observation`], [`WebhookEndpoint`]): served by zen-watcher's own
//!   aggregated API server, so their schemas feed its OpenAPI documents and its validation;
//! - `config.zen.watcher.io/v1alpha1` ([`Ingestor`], [`IngestorPolicy`]): CustomResourceDefinitions
//!   stored by kube-apiserver, printed by `zen-watcher crds`.
//!
//! Everything else in the workspace depends on this crate and nothing here depends on them.

pub mod crd;
pub mod duration;
pub mod expression;
pub mod ingestor;
pub mod manifest;
pub mod observation;
pub mod policy;
pub mod schema;
pub mod webhook_endpoint;

pub use duration::Duration;
pub use expression::Expression;
pub use ingestor::{Ingestor, IngestorSpec, IngestorStatus};
pub use observation::{Category, Observation, ObservationSpec, ObservationStatus, Severity};
pub use policy::{IngestorPolicy, IngestorPolicySpec};
pub use webhook_endpoint::{WebhookEndpoint, WebhookEndpointSpec, WebhookEndpointStatus};

/// Group of the resources served by the aggregated API server.
pub const API_GROUP: &str = "zen.watcher.io";
/// Group of the CustomResourceDefinitions that configure zen-watcher.
pub const CONFIG_GROUP: &str = "config.zen.watcher.io";
/// The one version both groups serve.
pub const VERSION: &str = "v1alpha1";
/// Discovery category shared by every zen-watcher resource (`kubectl get zen`).
pub const CATEGORY: &str = "zen";

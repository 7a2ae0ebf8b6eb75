//! Admission of Ingestors and IngestorPolicies: the validating and mutating webhook, the
//! built-in checks, and the IngestorPolicy engine. `zen-watcher policy test` runs the same
//! code offline.

pub mod checks;
pub mod cluster;
pub mod expressions;
pub mod metrics;
pub mod mutation;
pub mod policy;
pub mod review;
pub mod webhook;

pub use cluster::{ClusterView, StaticCluster};
pub use webhook::{Admission, AdmissionService, Mode};

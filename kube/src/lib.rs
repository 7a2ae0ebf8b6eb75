//! How zen-watcher talks to kube-apiserver in `serve`: where the cluster is and who to be
//! (`config`), and JSON requests over one HTTP/2 connection that is re-established when it
//! breaks (`client`). Deliberately small: zen-watcher needs a handful of calls (reviews,
//! Secrets, Leases, caBundle patches, watches), not a general-purpose client.

pub mod client;
pub mod config;
pub mod lease;
pub mod reflect;

pub use client::{Client, KubeError};
pub use config::{Auth, ClusterConfig};

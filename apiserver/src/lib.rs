//! The aggregated API machinery of zen-watcher: what `kubectl` and kube-apiserver talk to on the
//! secure port for `zen.watcher.io/v1alpha1`.

pub mod metrics;
pub mod objects;
pub mod patch;
pub mod request_info;
pub mod resources;
pub mod strategy;
pub mod ttl;
pub mod watch;

//! The aggregated API machinery of zen-watcher: what `kubectl` and kube-apiserver talk to on the
//! secure port for `zen.watcher.io/v1alpha1`.

pub mod authn;
pub mod authz;
pub mod continue_token;
pub mod discovery;
pub mod metrics;
pub mod negotiation;
pub mod objects;
pub mod openapi;
pub mod params;
pub mod patch;
pub mod request_info;
pub mod resources;
pub mod selectors;
pub mod server;
pub mod status;
pub mod strategy;
pub mod table;
pub mod ttl;
pub mod view;
pub mod watch;

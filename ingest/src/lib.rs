//! The ingest port: each webhook source of an Ingestor is an endpoint at
//! `/hooks/{namespace}/{ingestor}/{source}`. A delivery passes, in order, the endpoint's
//! rate limit, the content type and body size checks, its signature and replay checks, the
//! Ingestor's CEL filter and mapping, and is stored as an Observation (or folded into one by
//! dedup) before it is answered.

pub mod endpoint;
pub mod events;
pub mod limit;
pub mod metrics;
pub mod pipeline;
pub mod replay;
pub mod service;
pub mod signature;
pub mod sink;
pub mod status;
pub mod view;

pub use endpoint::{Endpoints, SecretValues};
pub use events::EventFollower;
pub use service::IngestService;

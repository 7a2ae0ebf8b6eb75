//! The response body type every handler returns, so layers and routers compose without
//! generic plumbing.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// Errors a streaming body may end with (a watch whose source failed).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body: a buffer or a stream (watch).
pub type Body = BoxBody<Bytes, BoxError>;

/// A body with all its bytes at hand.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body with nothing in it (304, 204, HEAD).
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

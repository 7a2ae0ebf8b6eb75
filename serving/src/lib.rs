//! TLS listeners and HTTP serving shared by zen-watcher's secure port and ingest port.
//!
//! Both ports need the same things from a server: a bounded number of connections, handshake
//! and header timeouts so idle peers cannot pin resources, HTTP/1.1 and HTTP/2 (kube-apiserver
//! speaks h2 to aggregated servers), the peer's certificate chain handed to the request handlers
//! for authentication, and a graceful drain on shutdown.

mod body;
pub mod json;
mod listener;

pub use body::{Body, BoxError, empty, full};
pub use listener::{ConnectionInfo, ServerOptions, serve_plain, serve_tls};

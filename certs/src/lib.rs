//! zen-watcher's PKI: its CA, the serving and client certificates it issues, the files they
//! live in, and the rustls configuration that serves them.

pub mod dev;
pub mod issue;
pub mod tls;

/// Why certificate material could not be used. Messages name the file where there is one.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("issuing a certificate failed: {0}")]
    Issue(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
}

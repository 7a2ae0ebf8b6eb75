//! zen-watcher's PKI: its CA, the serving and client certificates it issues, the files they
//! live in, and the rustls configuration that serves them.

pub mod cluster;
pub mod dev;
pub mod inspect;
pub mod issue;
pub mod manager;
pub mod metrics;
pub mod mounted;
pub mod pki;
pub mod rotation;
pub mod store;
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

/// Unix seconds as RFC 3339, for messages and Secret fields.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

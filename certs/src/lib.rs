//! zen-watcher's PKI: its CA and serving certificates, their rotation, and the rustls
//! configuration that serves them (issue: certificates). Nothing is implemented yet.

//! Admission of Ingestors and IngestorPolicies. So far: every CEL expression an object carries
//! is compiled, and a bad one is reported with its field path (the AdmissionReview handling
//! and the IngestorPolicy engine build on this).

pub mod expressions;

//! The admission webhook: AdmissionReview handling and the CEL policy engine for Ingestors
//! and IngestorPolicies (issue: admission webhook). Nothing is implemented yet.

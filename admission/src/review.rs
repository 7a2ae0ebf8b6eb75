//! AdmissionReview `admission.k8s.io/v1`, as kube-apiserver sends it to webhooks and reads the
//! answer back.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const API_VERSION: &str = "admission.k8s.io/v1";

/// Largest review accepted: kube-apiserver's request limit (3 MiB) plus the old object and the
/// envelope.
pub const MAX_REVIEW_BYTES: usize = 7 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    pub api_version: String,
    pub kind: String,
    pub request: Option<AdmissionRequest>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    pub version: String,
    pub kind: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct GroupVersionResource {
    #[serde(default)]
    pub group: String,
    pub version: String,
    pub resource: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[serde(default)]
    pub user_info: UserInfo,
    #[serde(default)]
    pub object: Option<Value>,
    #[serde(default)]
    pub old_object: Option<Value>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

/// Why a body is not a review this webhook can answer.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the AdmissionReview is larger than {MAX_REVIEW_BYTES} bytes")]
    TooLarge,
    #[error("the body is not an AdmissionReview: {0}")]
    Decode(String),
    #[error("expected apiVersion {API_VERSION} and kind AdmissionReview, got {0} {1}")]
    Version(String, String),
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

/// Reads a review; only `admission.k8s.io/v1` is accepted (the webhook configurations ask
/// for it alone).
pub fn decode(body: &[u8]) -> Result<AdmissionRequest, ReviewError> {
    if body.len() > MAX_REVIEW_BYTES {
        return Err(ReviewError::TooLarge);
    }
    let review: AdmissionReview =
        zen_serving::json::from_slice(body).map_err(|e| ReviewError::Decode(e.to_string()))?;
    if review.api_version != API_VERSION || review.kind != "AdmissionReview" {
        return Err(ReviewError::Version(review.api_version, review.kind));
    }
    review.request.ok_or(ReviewError::NoRequest)
}

/// A denial's `status`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

/// The answer to one request.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// Base64 of the JSON patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
}

impl AdmissionResponse {
    pub fn allow(uid: &str) -> Self {
        Self {
            uid: uid.to_owned(),
            allowed: true,
            ..Self::default()
        }
    }

    pub fn deny(uid: &str, code: u16, reason: &str, message: String) -> Self {
        Self {
            uid: uid.to_owned(),
            allowed: false,
            status: Some(Status {
                code,
                reason: reason.to_owned(),
                message,
            }),
            ..Self::default()
        }
    }

    /// Attaches a JSON patch (an empty one is left out).
    pub fn with_patch(mut self, ops: &[crate::mutation::PatchOp]) -> Self {
        if !ops.is_empty() {
            let text = serde_json::to_vec(ops).unwrap_or_default();
            self.patch_type = Some("JSONPatch");
            self.patch = Some(base64::engine::general_purpose::STANDARD.encode(text));
        }
        self
    }

    /// The review document sent back.
    pub fn into_review(self) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out {
            api_version: &'static str,
            kind: &'static str,
            response: AdmissionResponse,
        }
        serde_json::to_vec(&Out {
            api_version: API_VERSION,
            kind: "AdmissionReview",
            response: self,
        })
        .unwrap_or_default()
    }
}

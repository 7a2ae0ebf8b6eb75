//! AdmissionReview `admission.k8s.io/v1`, as kube-apiserver sends it to webhooks and reads the
//! answer back.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{
    Deserialize, Serialize,
    de::{DeserializeOwned, IgnoredAny},
};
use serde_json::Value;

pub const API_VERSION: &str = "admission.k8s.io/v1";

/// Largest review accepted: kube-apiserver's request limit (3 MiB) plus the old object and the
/// envelope.
pub const MAX_REVIEW_BYTES: usize = 7 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound(deserialize = "Old: Deserialize<'de>"))]
pub struct AdmissionReview<Old = Value> {
    pub api_version: String,
    pub kind: String,
    pub request: Option<AdmissionRequest<Old>>,
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

/// One request; `Old` is what the old object is read as (skipped by [`decode`] where no
/// policy reads it).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound(deserialize = "Old: Deserialize<'de>"))]
pub struct AdmissionRequest<Old = Value> {
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
    #[serde(default = "Option::default")]
    pub old_object: Option<Old>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

impl AdmissionRequest<IgnoredAny> {
    /// The request, its old object (skipped) left out.
    fn without_old_object(self) -> AdmissionRequest {
        AdmissionRequest {
            uid: self.uid,
            kind: self.kind,
            resource: self.resource,
            sub_resource: self.sub_resource,
            name: self.name,
            namespace: self.namespace,
            operation: self.operation,
            user_info: self.user_info,
            object: self.object,
            old_object: None,
            dry_run: self.dry_run,
        }
    }
}

/// Whether [`decode`] reads a review's old object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldObject {
    Read,
    /// Checked as JSON and passed over, for a policy set that never reads `oldObject`: an
    /// UPDATE carries the object twice, and reading the old one into a value is about a fifth
    /// of the review's cost (passing over it a third of that).
    Skip,
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
pub fn decode(body: &[u8], old: OldObject) -> Result<AdmissionRequest, ReviewError> {
    match old {
        OldObject::Read => decode_as(body),
        OldObject::Skip => decode_as(body).map(AdmissionRequest::<IgnoredAny>::without_old_object),
    }
}

fn decode_as<Old: DeserializeOwned>(body: &[u8]) -> Result<AdmissionRequest<Old>, ReviewError> {
    if body.len() > MAX_REVIEW_BYTES {
        return Err(ReviewError::TooLarge);
    }
    let review: AdmissionReview<Old> =
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<Patch>,
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
            let text = crate::mutation::PatchOp::to_json(ops);
            self.patch_type = Some("JSONPatch");
            self.patch = Some(Patch(
                base64::engine::general_purpose::STANDARD.encode(text),
            ));
        }
        self
    }

    /// The review document sent back.
    pub fn into_review(mut self) -> Vec<u8> {
        if self.allowed
            && self.status.is_none()
            && self.patch.is_none()
            && self.warnings.is_empty()
            && self.audit_annotations.is_empty()
        {
            // Most answers: allowed, nothing said. Written as they are but for the uid.
            let mut out = Vec::with_capacity(112 + self.uid.len());
            out.extend_from_slice(br#"{"apiVersion":""#);
            out.extend_from_slice(API_VERSION.as_bytes());
            out.extend_from_slice(br#"","kind":"AdmissionReview","response":{"uid":"#);
            // Serializing a string into memory cannot fail.
            let _ = serde_json::to_writer(&mut out, &self.uid);
            out.extend_from_slice(br#","allowed":true}}"#);
            return out;
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'r> {
            api_version: &'static str,
            kind: &'static str,
            response: &'r AdmissionResponse,
        }
        // A patch is base64, which JSON needs no escapes for: it is written as it is, not
        // scanned byte by byte for escapes as the serializer would (it is most of a
        // mutating answer).
        let patch = self.patch.take();
        let mut out = Vec::with_capacity(192 + patch.as_ref().map_or(0, |p| p.0.len()));
        let write = |out: &mut Vec<u8>, response: &AdmissionResponse| {
            // Serializing these types into memory cannot fail.
            let _ = serde_json::to_writer(
                out,
                &Out {
                    api_version: API_VERSION,
                    kind: "AdmissionReview",
                    response,
                },
            );
        };
        write(&mut out, &self);
        if let Some(patch) = patch {
            if out.ends_with(b"}}") {
                // Into the response object, before its closing brace and the review's.
                out.truncate(out.len() - 2);
                out.extend_from_slice(b",\"patch\":\"");
                out.extend_from_slice(patch.0.as_bytes());
                out.extend_from_slice(b"\"}}");
            } else {
                self.patch = Some(patch);
                out.clear();
                write(&mut out, &self);
            }
        }
        out
    }
}

/// Base64 of a JSON patch; only [`AdmissionResponse::with_patch`] makes one, so its text never
/// needs escaping in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Patch(String);

impl Patch {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPDATE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/kube-apiserver-1.28/admission/validate-update-alice.json"
    );

    /// A skipped old object leaves every other field as reading it does, and a body is
    /// refused alike either way.
    #[test]
    fn skipping_the_old_object_changes_nothing_else() {
        let capture: Value =
            serde_json::from_str(&std::fs::read_to_string(UPDATE).unwrap()).unwrap();
        let body = capture["request"]["bodyRaw"].as_str().unwrap();
        let read = decode(body.as_bytes(), OldObject::Read).unwrap();
        let skipped = decode(body.as_bytes(), OldObject::Skip).unwrap();
        let sent: Value = serde_json::from_str(body).unwrap();
        assert_eq!(read.old_object.as_ref(), sent.pointer("/request/oldObject"));
        assert_eq!(skipped.old_object, None);
        assert_eq!(
            format!(
                "{:?}",
                AdmissionRequest {
                    old_object: None,
                    ..read
                }
            ),
            format!("{skipped:?}")
        );

        let cut = body.replacen(r#""oldObject":{"#, r#""oldObject":{"x":"#, 1);
        assert_ne!(cut, body, "the recording has an old object");
        for old in [OldObject::Read, OldObject::Skip] {
            let err = decode(cut.as_bytes(), old).unwrap_err();
            assert!(
                matches!(err, ReviewError::Decode(ref m) if m.contains("line 1")),
                "{old:?}: {err}"
            );
        }
    }

    /// The answer reads as the serializer would have written it, with a patch or without,
    /// beside warnings or a denial.
    #[test]
    fn answers_read_as_their_serialized_form() {
        let ops = vec![crate::mutation::PatchOp {
            op: crate::mutation::PatchKind::Add,
            path: "/spec/ttl".into(),
            value: serde_json::json!({"max": "720h", "note": "a \"quoted\" word"}),
        }];
        let mut warned = AdmissionResponse::allow("uid-3").with_patch(&ops);
        warned.warnings = vec!["w".into()];
        for response in [
            AdmissionResponse::allow("uid-1").with_patch(&ops),
            warned,
            AdmissionResponse::deny("uid-4", 422, "Invalid", "no \"way\"".into()),
            AdmissionResponse::allow("uid-5"),
            AdmissionResponse::allow("uid-6").with_patch(&[]),
            AdmissionResponse::allow("uid \"7\" \\ \u{1}"),
        ] {
            let want = serde_json::json!({
                "apiVersion": API_VERSION,
                "kind": "AdmissionReview",
                "response": serde_json::to_value(&response).unwrap(),
            });
            let got: Value = serde_json::from_slice(&response.clone().into_review()).unwrap();
            assert_eq!(got, want);
        }
    }
}

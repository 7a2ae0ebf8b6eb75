//! AdmissionReview `admission.k8s.io/v1`, as kube-apiserver sends it to webhooks and reads the
//! answer back.
//!
//! A review is read once, as a [`Document`]: its envelope's fields and both objects are read
//! in place from it. Only a review of an unusual shape (a field of another type, a repeated
//! field, a struct written as an array) is decoded by `serde_json` as well, which then
//! decides, with its own error for a review it refuses.

use std::{borrow::Cow, collections::BTreeMap};

use base64::Engine;
use serde::{Deserialize, Serialize, de::IgnoredAny};
use zen_json::{Document, Kind as JsonKind, Value};

pub const API_VERSION: &str = "admission.k8s.io/v1";

/// Largest review accepted: kube-apiserver's request limit (3 MiB) plus the old object and the
/// envelope.
pub const MAX_REVIEW_BYTES: usize = 7 * 1024 * 1024;

/// Nesting a review's text may have where the webhook does not read it (an unknown field, an
/// old object no policy reads). Deeper texts are refused; it bounds the reader's own stack
/// (a few bytes a level), as a body's size bounds the rest.
const MAX_SKIPPED_DEPTH: usize = 200_000;

/// Nesting of the review up to and including its objects, as `serde_json` allows it: the
/// objects themselves are read by code that recurses.
const MAX_DEPTH: usize = zen_json::MAX_DEPTH;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct GroupVersionKind<'a> {
    #[serde(default)]
    pub group: Cow<'a, str>,
    pub version: Cow<'a, str>,
    pub kind: Cow<'a, str>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct GroupVersionResource<'a> {
    #[serde(default)]
    pub group: Cow<'a, str>,
    pub version: Cow<'a, str>,
    pub resource: Cow<'a, str>,
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

    fn parse(text: &str) -> Option<Self> {
        match text {
            "CREATE" => Some(Self::Create),
            "UPDATE" => Some(Self::Update),
            "DELETE" => Some(Self::Delete),
            "CONNECT" => Some(Self::Connect),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct UserInfo<'a> {
    #[serde(default)]
    pub username: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "str::is_empty")]
    pub uid: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<Cow<'a, str>, Vec<Cow<'a, str>>>,
}

/// One request, its strings and objects read in place from the review's document.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionRequest<'d> {
    pub uid: Cow<'d, str>,
    pub kind: GroupVersionKind<'d>,
    pub resource: GroupVersionResource<'d>,
    pub sub_resource: Option<Cow<'d, str>>,
    pub name: Option<Cow<'d, str>>,
    pub namespace: Option<Cow<'d, str>>,
    pub operation: Operation,
    pub user_info: UserInfo<'d>,
    pub object: Option<Value<'d>>,
    /// `None` also where [`Review::request`] was asked to pass over it.
    pub old_object: Option<Value<'d>>,
    pub dry_run: Option<bool>,
}

/// Whether [`Review::request`] reads a review's old object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldObject {
    Read,
    /// Passed over, for a policy set that never reads `oldObject`: it is then not bound,
    /// and may nest as deeply as an unknown field.
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

/// A review's body read as a document, which its request borrows from.
pub struct Review<'b> {
    body: &'b [u8],
    doc: Document<'b>,
    /// Whether the text nests deeper than objects may: they are then measured.
    deep: bool,
}

impl<'b> Review<'b> {
    /// Reads a review's text.
    pub fn parse(body: &'b [u8]) -> Result<Self, ReviewError> {
        if body.len() > MAX_REVIEW_BYTES {
            return Err(ReviewError::TooLarge);
        }
        // Reviews nest a few levels; only a text nested deeper than any object may be is
        // read again, allowing deep parts that are never read.
        match Document::parse_bytes_nested(body, MAX_DEPTH) {
            Ok(doc) => Ok(Self {
                body,
                doc,
                deep: false,
            }),
            Err(shallow) => Self::parse_deep(body, shallow),
        }
    }

    /// A text nested deeper than objects may be, or no JSON at all.
    #[cold]
    #[inline(never)]
    fn parse_deep(body: &'b [u8], shallow: zen_json::Error) -> Result<Self, ReviewError> {
        match Document::parse_bytes_nested(body, MAX_SKIPPED_DEPTH) {
            Ok(doc) => Ok(Self {
                body,
                doc,
                deep: true,
            }),
            Err(_) => {
                let message = serde_error(body).unwrap_or_else(|| shallow.to_string());
                Err(ReviewError::Decode(message))
            }
        }
    }

    /// The request; only `admission.k8s.io/v1` is accepted (the webhook configurations ask
    /// for it alone).
    pub fn request(&self, old: OldObject) -> Result<AdmissionRequest<'_>, ReviewError> {
        let read = if self.doc.repeats() {
            None
        } else {
            envelope(self.doc.root())
        };
        let (api_version, kind, request) = match read {
            Some(read) => read,
            None => serde_envelope(&self.doc, self.body)?,
        };
        if api_version != API_VERSION || kind != "AdmissionReview" {
            return Err(ReviewError::Version(api_version.into(), kind.into()));
        }
        let mut request = request.ok_or(ReviewError::NoRequest)?;
        if old == OldObject::Skip {
            request.old_object = None;
        }
        // The objects are read by code that recurses: no deeper than serde_json reads them
        // in a review (the review and its request are two levels of it).
        let too_deep = |v: &Option<Value<'_>>| v.is_some_and(|v| v.depth() > MAX_DEPTH - 2);
        if self.deep && (too_deep(&request.object) || too_deep(&request.old_object)) {
            let message =
                serde_error(self.body).unwrap_or_else(|| "an object is nested too deeply".into());
            return Err(ReviewError::Decode(message));
        }
        Ok(request)
    }
}

/// The envelope of a review: its apiVersion, kind and request, or `None` for a review of
/// any shape but the usual one (fields of other types, structs as arrays), which
/// [`serde_envelope`] then reads.
type Envelope<'d> = (Cow<'d, str>, Cow<'d, str>, Option<AdmissionRequest<'d>>);

fn envelope(root: Value<'_>) -> Option<Envelope<'_>> {
    let (mut api_version, mut kind, mut request) = (None, None, None);
    for (key, v) in root.entries()? {
        match key {
            "apiVersion" => api_version = Some(v.as_str()?),
            "kind" => kind = Some(v.as_str()?),
            "request" => request = optional(v, read_request)?,
            _ => {}
        }
    }
    Some((api_version?.into(), kind?.into(), request))
}

/// `None` for a value of the wrong type; `Some(None)` for null.
fn optional<'d, T>(v: Value<'d>, read: impl FnOnce(Value<'d>) -> Option<T>) -> Option<Option<T>> {
    if v.is_null() {
        Some(None)
    } else {
        read(v).map(Some)
    }
}

fn string(v: Value<'_>) -> Option<Cow<'_, str>> {
    v.as_str().map(Cow::Borrowed)
}

fn read_request(v: Value<'_>) -> Option<AdmissionRequest<'_>> {
    let mut uid = None;
    let mut kind = None;
    let mut resource = None;
    let mut operation = None;
    let mut request = AdmissionRequest {
        uid: Cow::Borrowed(""),
        kind: GroupVersionKind {
            group: Cow::Borrowed(""),
            version: Cow::Borrowed(""),
            kind: Cow::Borrowed(""),
        },
        resource: GroupVersionResource {
            group: Cow::Borrowed(""),
            version: Cow::Borrowed(""),
            resource: Cow::Borrowed(""),
        },
        sub_resource: None,
        name: None,
        namespace: None,
        operation: Operation::Create,
        user_info: UserInfo::default(),
        object: None,
        old_object: None,
        dry_run: None,
    };
    for (key, v) in v.entries()? {
        match key {
            "uid" => uid = Some(string(v)?),
            "kind" => {
                let [group, version, kind_] = group_version(v, "kind")?;
                kind = Some(GroupVersionKind {
                    group,
                    version,
                    kind: kind_,
                });
            }
            "resource" => {
                let [group, version, resource_] = group_version(v, "resource")?;
                resource = Some(GroupVersionResource {
                    group,
                    version,
                    resource: resource_,
                });
            }
            "subResource" => request.sub_resource = optional(v, string)?,
            "name" => request.name = optional(v, string)?,
            "namespace" => request.namespace = optional(v, string)?,
            "operation" => operation = Some(Operation::parse(v.as_str()?)?),
            "userInfo" => request.user_info = user_info(v)?,
            "object" => request.object = optional(v, Some)?,
            "oldObject" => request.old_object = optional(v, Some)?,
            "dryRun" => request.dry_run = optional(v, |v| v.as_bool())?,
            _ => {}
        }
    }
    request.uid = uid?;
    request.kind = kind?;
    request.resource = resource?;
    request.operation = operation?;
    Some(request)
}

/// A group, a version and the field named `last`; the group may be left out.
fn group_version<'d>(v: Value<'d>, last: &str) -> Option<[Cow<'d, str>; 3]> {
    let (mut group, mut version, mut named) = (Cow::Borrowed(""), None, None);
    for (key, v) in v.entries()? {
        match key {
            "group" => group = string(v)?,
            "version" => version = Some(string(v)?),
            k if k == last => named = Some(string(v)?),
            _ => {}
        }
    }
    Some([group, version?, named?])
}

fn user_info(v: Value<'_>) -> Option<UserInfo<'_>> {
    let mut out = UserInfo::default();
    for (key, v) in v.entries()? {
        match key {
            "username" => out.username = string(v)?,
            "uid" => out.uid = string(v)?,
            "groups" => out.groups = strings(v)?,
            "extra" => {
                for (k, values) in v.entries()? {
                    out.extra.insert(Cow::Borrowed(k), strings(values)?);
                }
            }
            _ => {}
        }
    }
    Some(out)
}

fn strings(v: Value<'_>) -> Option<Vec<Cow<'_, str>>> {
    v.elements()?.map(string).collect()
}

/// A review as `serde_json` decodes it, its objects read as `O`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound(deserialize = "O: Deserialize<'de>"))]
struct SerdeReview<O> {
    api_version: String,
    kind: String,
    request: Option<SerdeRequest<O>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound(deserialize = "O: Deserialize<'de>"))]
struct SerdeRequest<O> {
    uid: String,
    kind: GroupVersionKind<'static>,
    resource: GroupVersionResource<'static>,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(default)]
    user_info: UserInfo<'static>,
    #[serde(default = "Option::default")]
    object: Option<O>,
    #[serde(default = "Option::default")]
    old_object: Option<O>,
    #[serde(default)]
    dry_run: Option<bool>,
}

/// The review as `serde_json` decodes it, for the reviews [`envelope`] does not read: with
/// `serde_json`'s error where it refuses one. Its objects are the document's.
#[cold]
#[inline(never)]
fn serde_envelope<'d>(doc: &'d Document<'d>, body: &[u8]) -> Result<Envelope<'d>, ReviewError> {
    let review: SerdeReview<IgnoredAny> =
        zen_serving::json::from_slice(body).map_err(|e| ReviewError::Decode(e.to_string()))?;
    let request = match review.request {
        None => None,
        Some(r) => {
            // Where serde_json read the request from an array, its objects have no names.
            let sent = doc
                .root()
                .get("request")
                .filter(|v| v.kind() == JsonKind::Object);
            let Some(sent) = sent else {
                return Err(ReviewError::Decode(
                    "the request of an AdmissionReview must be a JSON object".into(),
                ));
            };
            let object = |name| sent.get(name).filter(|v| !v.is_null());
            Some(AdmissionRequest {
                uid: r.uid.into(),
                kind: r.kind,
                resource: r.resource,
                sub_resource: r.sub_resource.map(Cow::Owned),
                name: r.name.map(Cow::Owned),
                namespace: r.namespace.map(Cow::Owned),
                operation: r.operation,
                user_info: r.user_info,
                object: r.object.and_then(|_| object("object")),
                old_object: r.old_object.and_then(|_| object("oldObject")),
                dry_run: r.dry_run,
            })
        }
    };
    Ok((review.api_version.into(), review.kind.into(), request))
}

/// `serde_json`'s error for a review it refuses, reading both of its objects as values.
#[cold]
#[inline(never)]
fn serde_error(body: &[u8]) -> Option<String> {
    zen_serving::json::from_slice::<SerdeReview<serde_json::Value>>(body)
        .err()
        .map(|e| e.to_string())
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
    pub fn into_review(self) -> Vec<u8> {
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
        self.into_full_review()
    }

    /// The review document of an answer that says more than that it allows.
    #[inline(never)]
    fn into_full_review(mut self) -> Vec<u8> {
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
        let capture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(UPDATE).unwrap()).unwrap();
        let body = capture["request"]["bodyRaw"].as_str().unwrap();
        let review = Review::parse(body.as_bytes()).unwrap();
        let read = review.request(OldObject::Read).unwrap();
        let skipped = review.request(OldObject::Skip).unwrap();
        let sent: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            read.old_object.map(|v| v.to_serde()).as_ref(),
            sent.pointer("/request/oldObject")
        );
        assert_eq!(skipped.old_object, None);
        assert_eq!(
            AdmissionRequest {
                old_object: None,
                ..read
            },
            skipped
        );

        let cut = body.replacen(r#""oldObject":{"#, r#""oldObject":{"x":"#, 1);
        assert_ne!(cut, body, "the recording has an old object");
        let err = Review::parse(cut.as_bytes()).err().unwrap();
        assert!(
            matches!(err, ReviewError::Decode(ref m) if m.contains("line 1")),
            "{err}"
        );
    }

    /// Every review the envelope reader reads, `serde_json` reads the same, and it leaves
    /// the rest to `serde_json`: the recorded reviews, and each of them with every field of
    /// the envelope taken away or given a value of every JSON type.
    #[test]
    fn the_envelope_reader_reads_what_serde_json_reads() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/testdata/kube-apiserver-1.28/admission"
        );
        let fields = [
            "/apiVersion",
            "/kind",
            "/request",
            "/request/uid",
            "/request/kind",
            "/request/kind/group",
            "/request/kind/version",
            "/request/kind/kind",
            "/request/resource",
            "/request/resource/resource",
            "/request/subResource",
            "/request/name",
            "/request/namespace",
            "/request/operation",
            "/request/userInfo",
            "/request/userInfo/username",
            "/request/userInfo/groups",
            "/request/userInfo/extra",
            "/request/object",
            "/request/oldObject",
            "/request/dryRun",
        ];
        let values = [
            serde_json::json!(null),
            serde_json::json!(true),
            serde_json::json!(7),
            serde_json::json!("CREATE"),
            serde_json::json!(["a", "b", "c"]),
            serde_json::json!({"a": ["b"]}),
        ];
        let (mut read, mut left) = (0, 0);
        for entry in std::fs::read_dir(dir).unwrap() {
            let capture: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap())
                    .unwrap();
            let Some(body) = capture["request"]["bodyRaw"].as_str() else {
                continue;
            };
            let sent: serde_json::Value = serde_json::from_str(body).unwrap();
            let mut texts = vec![body.to_owned()];
            for field in fields {
                let (parent, name) = field.rsplit_once('/').unwrap();
                let mut without = sent.clone();
                if let Some(serde_json::Value::Object(m)) = without.pointer_mut(parent) {
                    m.remove(name);
                    texts.push(without.to_string());
                }
                for v in &values {
                    let mut changed = sent.clone();
                    if let Some(serde_json::Value::Object(m)) = changed.pointer_mut(parent) {
                        m.insert(name.to_owned(), v.clone());
                        texts.push(changed.to_string());
                    }
                }
            }
            // A field repeated, which the document reads as its last value.
            texts.push(body.replacen("\"uid\":", "\"uid\":\"first\",\"uid\":", 1));
            for text in texts {
                let doc = Document::parse(&text).unwrap();
                let theirs = serde_envelope(&doc, text.as_bytes());
                match envelope(doc.root()).filter(|_| !doc.repeats()) {
                    Some(ours) => {
                        read += 1;
                        let theirs = theirs.unwrap_or_else(|e| panic!("{e}: {text}"));
                        assert_eq!(ours, theirs, "{text}");
                    }
                    None => left += 1,
                }
            }
        }
        assert!(read > 100 && left > 100, "read {read}, left {left}");
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
            let got: serde_json::Value =
                serde_json::from_slice(&response.clone().into_review()).unwrap();
            assert_eq!(got, want);
        }
    }
}

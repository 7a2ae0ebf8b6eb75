//! Arbitrary bytes as an AdmissionReview body, answered by both webhooks with the default
//! policies of `manifests/policies/`.
//!
//! Properties checked on every input, besides "no panic, no hang" (libFuzzer's own):
//! an answered review is an `admission.k8s.io/v1` AdmissionReview that echoes the request's
//! uid; a denial carries an HTTP status code; a patch is base64 of a JSON array of operations
//! and only the mutating webhook sends one.
//!
//! Seed corpus: the recorded reviews, see `fuzz/README.md`.

#![no_main]

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, LazyLock},
};

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::Value;
use zen_admission::{Admission, Mode, StaticCluster};
use zen_crds::manifest::{self, Object};

const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/policies");

static ADMISSION: LazyLock<Admission> = LazyLock::new(|| {
    let mut cluster = StaticCluster::default();
    // One namespace that opts out of the authentication policy, one that does not, and a
    // Secret, so namespaceSelector and the Secret checks see both answers.
    cluster.namespaces.insert(
        "open".into(),
        BTreeMap::from([(
            "zen.watcher.io/allow-unauthenticated".into(),
            "true".into(),
        )]),
    );
    cluster.namespaces.insert("default".into(), BTreeMap::new());
    cluster.secrets.insert(
        ("default".into(), "hmac".into()),
        vec!["secret".into(), "token".into()],
    );
    let admission = Admission::new(Arc::new(cluster), None).expect("admission");
    let mut policies = Vec::new();
    for file in ["baseline.yaml", "defaults.yaml"] {
        for o in manifest::load_file(&Path::new(POLICIES).join(file)).expect("default policies") {
            if let Object::IngestorPolicy(p) = o {
                policies.push(*p);
            }
        }
    }
    assert!(!policies.is_empty(), "no default policies found");
    assert!(
        admission.set_policies(&policies).is_empty(),
        "the default policies compile"
    );
    admission
});

/// The uid as the webhook reads it: other fields are skipped unparsed, as the webhook's own
/// decoding skips them (so a deeply nested unknown field does not hide the uid).
#[derive(Deserialize)]
struct Sent {
    request: SentRequest,
}

#[derive(Deserialize)]
struct SentRequest {
    uid: String,
}

fn check(mode: Mode, input: &[u8], answer: &[u8]) {
    let review: Value = serde_json::from_slice(answer).expect("the answer is JSON");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let response = &review["response"];
    let allowed = response["allowed"].as_bool().expect("response.allowed");
    // `handle` answered, so the input decoded as a review and has a uid.
    let sent: Sent = serde_json::from_slice(input).expect("an answered input has a uid");
    assert_eq!(response["uid"].as_str(), Some(sent.request.uid.as_str()), "uid echoed");
    if allowed {
        assert!(response.get("status").is_none(), "an allowance has no status");
    } else {
        let code = response["status"]["code"].as_u64().expect("a denial has a code");
        assert!((400..600).contains(&code), "denial code {code}");
    }
    if let Some(patch) = response.get("patch") {
        assert_eq!(mode, Mode::Mutate, "only the mutating webhook patches");
        assert_eq!(response["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch.as_str().expect("patch is a string"))
            .expect("patch is base64");
        let ops: Vec<Value> = serde_json::from_slice(&bytes).expect("patch is a JSON array");
        assert!(!ops.is_empty(), "an empty patch is left out");
        for op in ops {
            assert!(op["op"].is_string() && op["path"].is_string(), "{op}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    for mode in [Mode::Validate, Mode::Mutate] {
        if let Ok(answer) = ADMISSION.handle(mode, data) {
            check(mode, data, &answer);
        }
    }
});

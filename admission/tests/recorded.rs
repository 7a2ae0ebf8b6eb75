//! Replays the AdmissionReviews kube-apiserver 1.28 sent (byte for byte from the recordings)
//! through the webhook with the default policies of `manifests/policies/`.
//!
//! The recorded Ingestors have an older shape (`spec.source`, `spec.ingester`), so validation
//! denies them with the schema's field errors; mutation still fills in the defaults.

use std::{path::Path, sync::Arc};

use base64::Engine;
use serde_json::{Value, json};
use zen_admission::{Admission, Mode, StaticCluster};
use zen_crds::{
    IngestorPolicy,
    manifest::{self, Object},
};

const RECORDINGS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/testdata/kube-apiserver-1.28/admission"
);
const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/policies");

fn admission(cluster: StaticCluster) -> Admission {
    admission_with(cluster, None)
}

/// The default policies and `extra`.
fn admission_with(cluster: StaticCluster, extra: Option<IngestorPolicy>) -> Admission {
    let admission = Admission::new(Arc::new(cluster), None).unwrap();
    let mut policies = Vec::new();
    for file in ["baseline.yaml", "defaults.yaml"] {
        for o in manifest::load_file(&Path::new(POLICIES).join(file)).unwrap() {
            if let Object::IngestorPolicy(p) = o {
                policies.push(*p);
            }
        }
    }
    assert_eq!(policies.len(), 3);
    policies.extend(extra);
    assert!(admission.set_policies(&policies).is_empty());
    admission
}

/// Every recorded review: (file name, exact body, the capture).
fn recordings() -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(RECORDINGS).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("mutate-") || name.starts_with("validate-")) {
            continue;
        }
        let capture: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let body = capture["request"]["bodyRaw"].as_str().unwrap().to_owned();
        out.push((name, body, capture));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(out.len(), 28, "recordings changed");
    out
}

fn answer(admission: &Admission, mode: Mode, body: &str) -> Value {
    let bytes = admission.handle(mode, body.as_bytes()).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn patch_ops(response: &Value) -> Vec<Value> {
    let Some(p) = response["patch"].as_str() else {
        return Vec::new();
    };
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn deletes_are_allowed_untouched_byte_for_byte() {
    let admission = admission(StaticCluster::default());
    for (name, body, capture) in recordings() {
        let request = &capture["request"]["body"]["request"];
        if request["operation"] != "DELETE" {
            continue;
        }
        let mode = if name.starts_with("mutate") {
            Mode::Mutate
        } else {
            Mode::Validate
        };
        let bytes = admission.handle(mode, body.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{{"uid":"{}","allowed":true}}}}"#,
                request["uid"].as_str().unwrap()
            ),
            "{name}"
        );
    }
}

#[test]
fn recorded_ingestors_are_denied_with_their_field_errors() {
    let admission = admission(StaticCluster::default());
    let mut seen = 0;
    for (name, body, capture) in recordings() {
        let request = &capture["request"]["body"]["request"];
        if !name.starts_with("validate-") || request["operation"] == "DELETE" {
            continue;
        }
        seen += 1;
        let r = &answer(&admission, Mode::Validate, &body)["response"];
        assert_eq!(r["uid"], request["uid"], "{name}: uid echoed");
        assert_eq!(r["allowed"], false, "{name}");
        assert_eq!(r["status"]["code"], 422, "{name}");
        assert_eq!(r["status"]["reason"], "Invalid", "{name}");
        let message = r["status"]["message"].as_str().unwrap();
        let object_name = request["name"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "Ingestor.config.zen.watcher.io {object_name:?} is invalid: ["
            )),
            "{name}: {message}"
        );
        for field in [
            ".spec.source: field not declared in schema",
            "spec.sources: Required value",
        ] {
            assert!(message.contains(field), "{name}: {message}");
        }
        assert!(r.get("patch").is_none(), "{name}: validation never patches");
    }
    assert_eq!(seen, 12);
}

#[test]
fn mutation_fills_in_the_defaults() {
    let admission = admission(StaticCluster::default());
    let mut seen = 0;
    for (name, body, capture) in recordings() {
        let request = &capture["request"]["body"]["request"];
        if !name.starts_with("mutate-") || request["operation"] == "DELETE" {
            continue;
        }
        seen += 1;
        let r = &answer(&admission, Mode::Mutate, &body)["response"];
        assert_eq!(r["uid"], request["uid"], "{name}");
        assert_eq!(r["allowed"], true, "{name}");
        let ops = patch_ops(r);
        let mut object = request["object"].clone();
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops.clone())).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
        assert_eq!(object["spec"]["dedup"]["window"], "5m", "{name}");
        assert_eq!(
            object["spec"]["ttl"],
            json!({"max": "720h", "default": "168h"}),
            "{name}"
        );
        // Where the capture server also defaulted, it did exactly what the policy does.
        if let Some(recorded) = capture["decodedPatch"].as_array() {
            for op in recorded {
                assert!(ops.contains(op), "{name}: {op} missing from {ops:?}");
            }
        }
        // Nothing that was set is touched.
        for op in &ops {
            assert_eq!(op["op"], "add", "{name}: {op}");
        }
    }
    assert_eq!(seen, 12);
}

/// The envelope of a recorded review around another object.
fn with_object(body: &str, object: &Value) -> String {
    let mut review: Value = serde_json::from_str(body).unwrap();
    review["request"]["object"] = object.clone();
    review["request"]["name"] = object["metadata"]["name"].clone();
    review["request"]["namespace"] = object["metadata"]["namespace"].clone();
    review.to_string()
}

fn example(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    let text = std::fs::read_to_string(path).unwrap();
    manifest::documents(&text)
        .unwrap()
        .into_iter()
        .find(|d| d["kind"] == "Ingestor")
        .unwrap()
}

#[test]
fn current_ingestors_in_recorded_envelopes() {
    let (_, create, _) = recordings()
        .into_iter()
        .find(|(n, _, _)| n == "validate-create-alice.json")
        .unwrap();
    let github = example("github.yaml");

    // Without its Secret: allowed, with a warning for the GitOps order.
    let admission = admission(StaticCluster::default());
    let r = &answer(&admission, Mode::Validate, &with_object(&create, &github))["response"];
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(
        r["warnings"],
        json!([
            "spec.sources[0].auth.secretRef: Secret platform/github-webhook does not exist yet; deliveries to source \"github\" are refused until it does"
        ])
    );

    // With it: no warning.
    let mut cluster = StaticCluster::default();
    cluster.insert_secret(
        "platform".into(),
        "github-webhook".into(),
        vec!["secret".into()],
    );
    let admission = self::admission(cluster);
    let r = &answer(&admission, Mode::Validate, &with_object(&create, &github))["response"];
    assert_eq!(r, &json!({"uid": r["uid"], "allowed": true}));

    // auth.type none outside an opted-out namespace: denied, naming policy and expression.
    let mut open = github.clone();
    open["spec"]["sources"][0]["auth"] = json!({"type": "none"});
    let r = &answer(&admission, Mode::Validate, &with_object(&create, &open))["response"];
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    assert_eq!(r["status"]["reason"], "Forbidden");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("IngestorPolicy \"zen-watcher-require-authentication\" denied the request: Ingestor github-security has webhook sources with auth.type none"),
        "{message}"
    );
    assert!(
        message.ends_with(
            "(expression: object.spec.sources.all(s, s.type != 'webhook' || s.auth.type != 'none'))"
        ),
        "{message}"
    );

    // The opted-out namespace allows it.
    let mut cluster = StaticCluster::default();
    cluster.insert_namespace(
        "platform".into(),
        [(
            "zen.watcher.io/allow-unauthenticated".to_owned(),
            "true".to_owned(),
        )]
        .into(),
    );
    let admission = self::admission(cluster);
    let r = &answer(&admission, Mode::Validate, &with_object(&create, &open))["response"];
    assert_eq!(r["allowed"], true, "{r}");

    // Mutation of a webhook source without limits: rate limit and body size, per source.
    let mut bare = open.clone();
    bare["spec"]["sources"][0]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| matches!(k.as_str(), "name" | "type" | "auth"));
    let r = &answer(&admission, Mode::Mutate, &with_object(&create, &bare))["response"];
    let ops = patch_ops(r);
    assert!(ops.contains(&json!({"op": "add", "path": "/spec/sources/0/rateLimit", "value": {"requestsPerSecond": 50, "burst": 100}})), "{ops:?}");
    assert!(
        ops.contains(
            &json!({"op": "add", "path": "/spec/sources/0/maxBodyBytes", "value": 1048576})
        ),
        "{ops:?}"
    );
}

/// The default policies do not read `oldObject`, so the webhook skips reading it: every
/// recorded review gets the same answer as from a set that also reads it (with a policy that
/// always passes), and a policy that compares with the old object sees it.
#[test]
fn the_old_object_is_read_where_a_policy_reads_it_and_answers_agree_either_way() {
    let reading = |validation: &str| {
        let policy = serde_json::from_value(json!({
            "apiVersion": "config.zen.watcher.io/v1alpha1", "kind": "IngestorPolicy",
            "metadata": {"name": "zz-old"},
            "spec": {"validations": [{"expression": validation, "message": "the filter changed"}]}
        }))
        .unwrap();
        admission_with(StaticCluster::default(), Some(policy))
    };
    let skipping = admission(StaticCluster::default());
    let passing = reading("oldObject == null || has(oldObject.metadata)");
    for (name, body, _) in recordings() {
        for mode in [Mode::Validate, Mode::Mutate] {
            assert_eq!(
                answer(&skipping, mode, &body),
                answer(&passing, mode, &body),
                "{name} {mode:?}"
            );
        }
    }

    let (_, update, _) = recordings()
        .into_iter()
        .find(|(n, _, _)| n == "validate-update-alice.json")
        .unwrap();
    let github = example("github.yaml");
    let mut old = github.clone();
    old["spec"]["filter"] = json!("true");
    let mut review: Value = serde_json::from_str(&with_object(&update, &github)).unwrap();
    review["request"]["oldObject"] = old;
    let body = review.to_string();
    let guarded = reading("oldObject == null || object.spec.filter == oldObject.spec.filter");
    let r = &answer(&guarded, Mode::Validate, &body)["response"];
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("the filter changed"),
        "{r}"
    );
    let r = &answer(&skipping, Mode::Validate, &body)["response"];
    assert_eq!(r["allowed"], true, "{r}");
}

#[test]
fn bad_bodies_are_errors_not_panics() {
    let admission = admission(StaticCluster::default());
    for body in [
        "",
        "{}",
        "[]",
        r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#,
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":1}}"#,
    ] {
        assert!(
            admission.handle(Mode::Validate, body.as_bytes()).is_err(),
            "{body}"
        );
    }
}

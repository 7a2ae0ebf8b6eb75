//! `zen-watcher policy test`: the admission webhook's checks, offline. Each Ingestor of the
//! file goes through the mutating webhook, gets its patch applied, then goes through the
//! validating webhook, as kube-apiserver would send it.

use std::{path::Path, sync::Arc};

use base64::Engine;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::{Value, json};
use zen_admission::{
    Admission, Mode,
    checks::{Findings, Kind},
    review::{
        AdmissionRequest, AdmissionResponse, GroupVersionKind, GroupVersionResource, Operation,
        UserInfo,
    },
};
use zen_crds::manifest;

use crate::config_dir::Config;

/// What happened to one Ingestor.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub namespace: String,
    pub name: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub warnings: Vec<String>,
    /// The JSON patch of the mutating webhook.
    pub patch: Vec<Value>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub audit_annotations: std::collections::BTreeMap<String, String>,
}

/// Runs the checks; `Err` is a readable reason the test could not run at all.
pub fn run(file: &Path, policies: Option<&Path>) -> Result<Vec<Verdict>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let docs = manifest::documents(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut config = Config::default();
    if let Some(dir) = policies {
        if dir.is_dir() {
            config = crate::config_dir::load(dir);
        } else {
            config.add_file(dir);
        }
        if let Some(e) = config.errors.first() {
            return Err(e.clone());
        }
    }
    for doc in &docs {
        config.add_other(doc);
    }
    let ingestors: Vec<&Value> = docs
        .iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("Ingestor"))
        .collect();
    if ingestors.is_empty() {
        return Err(format!("{}: no Ingestor in the file", file.display()));
    }
    let admission = Admission::new(Arc::new(config.cluster), None)?;
    if let Some((name, errors)) = admission.set_policies(&config.policies).first() {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(format!(
            "IngestorPolicy {name:?} does not compile: {}",
            list.join("; ")
        ));
    }
    Ok(ingestors
        .into_iter()
        .enumerate()
        .map(|(i, doc)| check(&admission, i, doc))
        .collect())
}

fn check(admission: &Admission, index: usize, doc: &Value) -> Verdict {
    let meta = |f: &str| {
        doc.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
    };
    let namespace = meta("namespace").unwrap_or("default").to_owned();
    let name = meta("name").unwrap_or_default().to_owned();
    // kube-apiserver reads the metadata as an ObjectMeta before any webhook runs, and the
    // webhook relies on it; offline, the test does it.
    if let Some(Err(e)) = doc.get("metadata").map(manifest::decode::<ObjectMeta, _>) {
        let field = match e.field.as_str() {
            "." => String::new(),
            f => format!(".{f}"),
        };
        let findings = Findings {
            errors: vec![format!("metadata{field}: {}", e.message)],
            warnings: Vec::new(),
        };
        let message = findings.message(Kind::Ingestor, &name);
        return Verdict {
            namespace,
            name,
            allowed: false,
            message: Some(message),
            warnings: Vec::new(),
            patch: Vec::new(),
            audit_annotations: Default::default(),
        };
    }
    let mut object = doc.clone();
    if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        m.entry("namespace").or_insert_with(|| json!(namespace));
    }
    // Each check reads the object as the webhook reads a review's: from its JSON text.
    let review = |mode: Mode, object: &Value| {
        let text = object.to_string();
        let Ok(doc) = zen_json::Document::parse(&text) else {
            return AdmissionResponse::deny(
                "policy-test",
                400,
                "BadRequest",
                "the object is nested too deeply to be read".into(),
            );
        };
        let request = AdmissionRequest {
            uid: format!("policy-test-{index}").into(),
            kind: GroupVersionKind {
                group: "config.zen.watcher.io".into(),
                version: "v1alpha1".into(),
                kind: "Ingestor".into(),
            },
            resource: GroupVersionResource {
                group: "config.zen.watcher.io".into(),
                version: "v1alpha1".into(),
                resource: "ingestors".into(),
            },
            sub_resource: None,
            name: Some(name.as_str().into()),
            namespace: Some(namespace.as_str().into()),
            operation: Operation::Create,
            user_info: UserInfo {
                username: "zen-watcher:policy-test".into(),
                ..UserInfo::default()
            },
            object: Some(doc.root()),
            old_object: None,
            dry_run: Some(true),
        };
        admission.review(mode, &request)
    };
    let mutated = review(Mode::Mutate, &object);
    let mut verdict = Verdict {
        namespace: namespace.clone(),
        name: name.clone(),
        allowed: mutated.allowed,
        message: mutated.status.as_ref().map(|s| s.message.clone()),
        warnings: mutated.warnings.clone(),
        patch: Vec::new(),
        audit_annotations: mutated.audit_annotations.clone(),
    };
    if !mutated.allowed {
        return verdict;
    }
    if let Some(patch) = &mutated.patch {
        let ops: Vec<Value> = base64::engine::general_purpose::STANDARD
            .decode(patch.as_str())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        match serde_json::from_value::<json_patch::Patch>(Value::Array(ops.clone())) {
            Ok(p) if json_patch::patch(&mut object, &p).is_ok() => verdict.patch = ops,
            _ => {
                verdict.allowed = false;
                verdict.message =
                    Some("the mutating webhook returned a patch that does not apply".into());
                return verdict;
            }
        }
    }
    let validated = review(Mode::Validate, &object);
    verdict.allowed = validated.allowed;
    verdict.message = validated.status.map(|s| s.message);
    verdict.warnings.extend(validated.warnings);
    verdict
        .audit_annotations
        .extend(validated.audit_annotations);
    verdict
}

/// Human-readable report.
pub fn print_text(verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    for v in verdicts {
        let head = if v.allowed { "ALLOWED" } else { "DENIED" };
        out.push_str(&format!("{head} Ingestor {}/{}\n", v.namespace, v.name));
        if let Some(m) = &v.message {
            out.push_str(&format!("  reason: {m}\n"));
        }
        for w in &v.warnings {
            out.push_str(&format!("  warning: {w}\n"));
        }
        for op in &v.patch {
            out.push_str(&format!(
                "  patch: {} {} {}\n",
                op["op"].as_str().unwrap_or_default(),
                op["path"].as_str().unwrap_or_default(),
                op["value"]
            ));
        }
        for (k, a) in &v.audit_annotations {
            out.push_str(&format!("  audit: {k}: {a}\n"));
        }
    }
    out
}

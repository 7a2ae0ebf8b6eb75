//! `kubectl kustomize manifests/` renders the whole install with every object DESIGN.md lists,
//! and the CRDs in it are exactly what k8s-openapi's types describe (no unknown fields).

use std::process::Command;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

fn render() -> Vec<Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests");
    let out = Command::new("kubectl")
        .args(["kustomize", dir])
        .output()
        .expect("kubectl must be on PATH to render the manifests");
    assert!(
        out.status.success(),
        "kubectl kustomize failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 YAML");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("rendered YAML parses");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, namespace: Option<&str>, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"] == name
                && d["metadata"]["namespace"].as_str() == namespace
        })
        .unwrap_or_else(|| panic!("the render has no {kind} {namespace:?}/{name}"))
}

#[test]
fn render_contains_the_install() {
    let docs = render();
    let ns = Some("zen-system");
    find(&docs, "Namespace", None, "zen-system");
    find(&docs, "ServiceAccount", ns, "zen-watcher");

    let svc = find(&docs, "Service", ns, "zen-watcher");
    let ports: Vec<(i64, &str)> = svc["spec"]["ports"]
        .as_array()
        .expect("service ports")
        .iter()
        .map(|p| {
            (
                p["port"].as_i64().unwrap_or(0),
                p["targetPort"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(ports, [(443, "https"), (9443, "ingest")]);

    let deploy = find(&docs, "Deployment", ns, "zen-watcher");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["args"][0], "serve");
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["scheme"], "HTTPS");
    let container_ports: Vec<i64> = c["ports"]
        .as_array()
        .expect("container ports")
        .iter()
        .filter_map(|p| p["containerPort"].as_i64())
        .collect();
    assert_eq!(container_ports, [8443, 9443, 9090]);
    let selector = &deploy["spec"]["selector"]["matchLabels"];
    let pdb = find(&docs, "PodDisruptionBudget", ns, "zen-watcher");
    assert_eq!(
        &pdb["spec"]["selector"]["matchLabels"], selector,
        "the PDB selects the Deployment's pods"
    );
    assert_eq!(
        &svc["spec"]["selector"], selector,
        "the Service selects the Deployment's pods"
    );

    let api = find(&docs, "APIService", None, "v1alpha1.zen.watcher.io");
    assert_eq!(api["spec"]["group"], "zen.watcher.io");
    assert_eq!(api["spec"]["version"], "v1alpha1");
    assert_eq!(api["spec"]["service"]["namespace"], "zen-system");
    assert_eq!(api["spec"]["service"]["name"], "zen-watcher");
    assert_eq!(api["spec"]["service"]["port"], 443);

    for (kind, path) in [
        ("MutatingWebhookConfiguration", "/admission/mutate"),
        ("ValidatingWebhookConfiguration", "/admission/validate"),
    ] {
        let cfg = find(&docs, kind, None, "zen-watcher");
        let hooks = cfg["webhooks"].as_array().expect("webhooks");
        assert!(!hooks.is_empty(), "{kind} has webhooks");
        for hook in hooks {
            assert_eq!(hook["clientConfig"]["service"]["path"], path, "{kind}");
            assert_eq!(hook["clientConfig"]["service"]["name"], "zen-watcher");
            assert_eq!(hook["sideEffects"], "None");
            assert_eq!(hook["admissionReviewVersions"][0], "v1");
            let rule = &hook["rules"][0];
            assert_eq!(rule["apiGroups"][0], "config.zen.watcher.io");
            let resources: Vec<&str> = rule["resources"]
                .as_array()
                .expect("resources")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(resources, ["ingestors", "ingestorpolicies"]);
            let ops: Vec<&str> = rule["operations"]
                .as_array()
                .expect("operations")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(ops, ["CREATE", "UPDATE"]);
        }
    }

    let delegator = find(
        &docs,
        "ClusterRoleBinding",
        None,
        "zen-watcher:system:auth-delegator",
    );
    assert_eq!(delegator["roleRef"]["name"], "system:auth-delegator");
    let reader = find(
        &docs,
        "RoleBinding",
        Some("kube-system"),
        "zen-watcher:extension-apiserver-authentication-reader",
    );
    assert_eq!(
        reader["roleRef"]["name"],
        "extension-apiserver-authentication-reader"
    );
    assert_eq!(reader["subjects"][0]["namespace"], "zen-system");

    let grants = |role: &Value, resource: &str, verb: &str| {
        role["rules"].as_array().into_iter().flatten().any(|r| {
            let has = |k: &str, v: &str| r[k].as_array().into_iter().flatten().any(|x| x == v);
            has("apiGroups", "zen.watcher.io") && has("resources", resource) && has("verbs", verb)
        })
    };
    let view = find(&docs, "ClusterRole", None, "zen-watcher-view");
    assert_eq!(
        view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );
    for verb in ["get", "list", "watch"] {
        assert!(
            grants(view, "observations", verb),
            "view grants {verb} on observations"
        );
    }
    assert!(
        !grants(view, "observations", "delete"),
        "view does not grant delete"
    );
    let edit = find(&docs, "ClusterRole", None, "zen-watcher-edit");
    assert_eq!(
        edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"],
        "true"
    );
    assert_eq!(
        edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"],
        "true"
    );
    for verb in ["create", "update", "patch", "delete", "deletecollection"] {
        assert!(
            grants(edit, "observations", verb),
            "edit grants {verb} on observations"
        );
    }
    assert!(grants(edit, "webhookendpoints/ingest", "create"));

    // The operator's own access to its registrations is limited by name.
    let own = find(&docs, "ClusterRole", None, "zen-watcher");
    for rule in own["rules"].as_array().expect("rules") {
        let groups = rule["apiGroups"].to_string();
        if groups.contains("apiregistration") || groups.contains("admissionregistration") {
            assert!(
                rule["resourceNames"].is_array(),
                "unbounded write access: {rule}"
            );
        }
    }

    for doc in &docs {
        assert!(
            !doc.to_string().contains("insecureSkipTLSVerify"),
            "insecureSkipTLSVerify in {}",
            doc["metadata"]["name"]
        );
    }
}

#[test]
fn crds_have_no_unknown_fields() {
    let docs = render();
    let mut names = Vec::new();
    for doc in docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
    {
        let crd: CustomResourceDefinition =
            serde_json::from_value(doc.clone()).expect("a CustomResourceDefinition");
        // k8s-openapi drops fields it does not know; a round trip that loses anything means
        // kube-apiserver would refuse (or prune) part of the CRD.
        let back = serde_json::to_value(&crd).expect("serialize CRD");
        if let Some(path) = first_difference(doc, &back, String::new()) {
            panic!(
                "{}: field not known to CustomResourceDefinition: {path}",
                crd.metadata.name.unwrap_or_default()
            );
        }
        names.push(crd.metadata.name.unwrap_or_default());
    }
    names.sort();
    assert_eq!(
        names,
        [
            "ingestorpolicies.config.zen.watcher.io",
            "ingestors.config.zen.watcher.io"
        ]
    );
}

fn first_difference(a: &Value, b: &Value, path: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                let p = format!("{path}.{k}");
                match y.get(k) {
                    Some(w) => {
                        if let Some(d) = first_difference(v, w, p) {
                            return Some(d);
                        }
                    }
                    None => return Some(p),
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{path}.{k} (added)"))
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, format!("{path}[{i}]"))),
        // k8s-openapi keeps schema bounds as f64: 10485760 comes back as 10485760.0.
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        _ if a == b => None,
        _ => Some(format!("{path} ({a} != {b})")),
    }
}

//! `kubectl kustomize manifests/` renders the whole install that DESIGN.md lists under
//! "Kubernetes objects it owns". This checks that every object is there with its key
//! properties, what zen-watcher's ServiceAccount is effectively allowed to do (and not to do),
//! the roles aggregated for users, and that every object, CRDs included, is exactly what the
//! Kubernetes types describe: k8s-openapi ignores unknown fields, so a misspelled field would
//! otherwise pass here and only fail (or be dropped) at apply time.
//!
//! The render needs `kubectl`. Without it the tests are skipped with a message, except under CI
//! (`CI` set), where a missing kubectl is a failure.

use std::{
    collections::BTreeSet,
    io::{self, Write},
    process::Command,
    sync::OnceLock,
};

use k8s_openapi::{
    api::{
        admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
        apps::v1::Deployment,
        core::v1::{Namespace, Service, ServiceAccount},
        policy::v1::PodDisruptionBudget,
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    kube_aggregator::pkg::apis::apiregistration::v1::APIService,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

const NS: &str = "zen-system";
const NAME: &str = "zen-watcher";
const API_GROUP: &str = "zen.watcher.io";
const CONFIG_GROUP: &str = "config.zen.watcher.io";
const CRD_NAMES: [&str; 2] = [
    "ingestorpolicies.config.zen.watcher.io",
    "ingestors.config.zen.watcher.io",
];

// ---------------------------------------------------------------------------------------------
// Rendering

/// The rendered install, or `None` when kubectl is missing outside CI (the test is skipped).
fn render() -> Option<&'static [Value]> {
    static RENDER: OnceLock<Option<Vec<Value>>> = OnceLock::new();
    RENDER.get_or_init(render_now).as_deref()
}

fn render_now() -> Option<Vec<Value>> {
    render_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests"))
}

/// `kubectl kustomize dir`, document by document.
fn render_dir(dir: &str) -> Option<Vec<Value>> {
    let out = match Command::new("kubectl").args(["kustomize", dir]).output() {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("CI").is_none(),
                "kubectl is not on PATH, and CI must render manifests/ with it"
            );
            // Written straight to stderr, past the test harness's output capture.
            let _ = writeln!(
                io::stderr(),
                "SKIPPED tests/manifests.rs: `kubectl` is not on PATH, so \
                 `kubectl kustomize manifests/` cannot run; install kubectl to check the manifests"
            );
            return None;
        }
        Err(e) => panic!("cannot run `kubectl kustomize {dir}`: {e}"),
    };
    assert!(
        out.status.success(),
        "`kubectl kustomize {dir}` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("kubectl kustomize printed UTF-8");
    // One YAML stream, documents separated by `---`; empty documents are skipped.
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).expect("the rendered YAML parses document by document");
    assert!(
        !docs.is_empty(),
        "`kubectl kustomize {dir}` rendered nothing"
    );
    for doc in &docs {
        assert!(
            doc["kind"].is_string() && doc["metadata"]["name"].is_string(),
            "a rendered document has no kind or metadata.name: {doc}"
        );
    }
    Some(docs)
}

/// `kind namespace/name` (or `kind name`) for messages.
fn describe(doc: &Value) -> String {
    let kind = doc["kind"].as_str().unwrap_or("?");
    let name = doc["metadata"]["name"].as_str().unwrap_or("?");
    match doc["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

fn lookup<'a>(docs: &'a [Value], kind: &str, ns: Option<&str>, name: &str) -> Option<&'a Value> {
    docs.iter().find(|d| {
        d["kind"] == kind
            && d["metadata"]["name"] == name
            && d["metadata"]["namespace"].as_str() == ns
    })
}

fn find<'a>(docs: &'a [Value], kind: &str, ns: Option<&str>, name: &str) -> &'a Value {
    lookup(docs, kind, ns, name).unwrap_or_else(|| {
        let place = ns.map_or(String::new(), |ns| format!("{ns}/"));
        panic!("the render of manifests/ has no {kind} {place}{name}")
    })
}

/// The strings of a YAML sequence (empty when absent).
fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn assert_no_failures(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{what}:\n  - {}",
        failures.join("\n  - ")
    );
}

// ---------------------------------------------------------------------------------------------
// Presence, placement, labels

#[test]
fn every_object_of_the_install_is_rendered() {
    let Some(docs) = render() else { return };
    let ns = Some(NS);
    let expected: &[(&str, Option<&str>, &str)] = &[
        ("Namespace", None, NS),
        ("ServiceAccount", ns, NAME),
        ("Deployment", ns, NAME),
        ("Service", ns, NAME),
        ("PodDisruptionBudget", ns, NAME),
        ("APIService", None, "v1alpha1.zen.watcher.io"),
        ("ValidatingWebhookConfiguration", None, NAME),
        ("MutatingWebhookConfiguration", None, NAME),
        ("ClusterRole", None, NAME),
        ("Role", ns, NAME),
        ("ClusterRole", None, "zen-watcher-view"),
        ("ClusterRole", None, "zen-watcher-edit"),
        ("ClusterRole", None, "zen-watcher-admin"),
    ];
    let missing: Vec<String> = expected
        .iter()
        .filter(|(kind, ns, name)| lookup(docs, kind, *ns, name).is_none())
        .map(|(kind, ns, name)| match ns {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        })
        .collect();
    assert_no_failures("the render of manifests/ is missing objects", &missing);

    let mut seen = BTreeSet::new();
    for doc in docs {
        assert!(
            seen.insert(describe(doc)),
            "{} is rendered twice",
            describe(doc)
        );
    }
}

#[test]
fn objects_are_in_their_namespaces() {
    let Some(docs) = render() else { return };
    const NAMESPACED: [&str; 6] = [
        "ServiceAccount",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
    ];
    let mut wrong = Vec::new();
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let ns = doc["metadata"]["namespace"].as_str();
        if NAMESPACED.contains(&kind) {
            // Only the binding to extension-apiserver-authentication-reader lives elsewhere.
            let allowed = match (kind, ns) {
                (_, Some(NS)) => true,
                ("RoleBinding", Some("kube-system")) => {
                    doc["roleRef"]["name"] == "extension-apiserver-authentication-reader"
                }
                _ => false,
            };
            if !allowed {
                wrong.push(format!("{} should be in namespace {NS}", describe(doc)));
            }
        } else if ns.is_some() {
            wrong.push(format!(
                "{} is cluster-scoped but has a namespace",
                describe(doc)
            ));
        }
    }
    assert_no_failures("objects in the wrong namespace", &wrong);
}

#[test]
fn every_object_carries_the_common_labels() {
    let Some(docs) = render() else { return };
    let mut unlabelled = Vec::new();
    let mut check = |what: String, labels: &Value| {
        for key in ["app.kubernetes.io/name", "app.kubernetes.io/part-of"] {
            if labels[key] != NAME {
                unlabelled.push(format!("{what} lacks label {key}: {NAME}"));
            }
        }
    };
    for doc in docs {
        check(describe(doc), &doc["metadata"]["labels"]);
    }
    let deploy = find(docs, "Deployment", Some(NS), NAME);
    check(
        "the Deployment's pod template".into(),
        &deploy["spec"]["template"]["metadata"]["labels"],
    );
    assert_no_failures("labels missing", &unlabelled);
}

// ---------------------------------------------------------------------------------------------
// Workload

/// The pod template's containers, init containers included.
fn containers(deploy: &Value) -> impl Iterator<Item = &Value> {
    let pod = &deploy["spec"]["template"]["spec"];
    ["initContainers", "containers"]
        .into_iter()
        .flat_map(move |k| pod[k].as_array().into_iter().flatten())
}

/// A container port by number or by name, resolved against the Deployment's containers.
fn resolve_port(deploy: &Value, port: &Value) -> Option<i64> {
    if let Some(n) = port.as_i64() {
        return Some(n);
    }
    let name = port.as_str()?;
    containers(deploy)
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_i64())
}

/// Every `matchLabels` entry is a label of the pod template (and there is at least one).
fn selects_pods(selector: &Value, deploy: &Value) -> bool {
    let pod_labels = &deploy["spec"]["template"]["metadata"]["labels"];
    selector
        .as_object()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| &pod_labels[k] == v))
}

#[test]
fn deployment_runs_serve_restricted_and_probed() {
    let Some(docs) = render() else { return };
    let deploy = find(docs, "Deployment", Some(NS), NAME);
    let pod = &deploy["spec"]["template"]["spec"];
    let mut bad = Vec::new();
    let mut expect = |ok: bool, what: &str| {
        if !ok {
            bad.push(what.to_owned());
        }
    };

    expect(
        deploy["spec"]["replicas"] == 1,
        "the base runs exactly 1 replica",
    );
    expect(
        selects_pods(&deploy["spec"]["selector"]["matchLabels"], deploy),
        "spec.selector.matchLabels selects the pod template's labels",
    );
    expect(
        pod["serviceAccountName"] == NAME,
        "the pod runs as ServiceAccount zen-watcher",
    );

    let all: Vec<&Value> = containers(deploy).collect();
    expect(!all.is_empty(), "the pod has containers");
    for c in &all {
        let name = c["name"].as_str().unwrap_or("?");
        // A container's securityContext overrides the pod's for the fields both have.
        let effective = |field: &str| {
            let own = &c["securityContext"][field];
            if own.is_null() {
                pod["securityContext"][field].clone()
            } else {
                own.clone()
            }
        };
        let sc = &c["securityContext"];
        for (ok, what) in [
            (effective("runAsNonRoot") == true, "runAsNonRoot: true"),
            (effective("runAsUser") == 65532, "runAsUser: 65532"),
            (
                effective("seccompProfile")["type"] == "RuntimeDefault",
                "seccompProfile.type: RuntimeDefault",
            ),
            (
                sc["allowPrivilegeEscalation"] == false,
                "allowPrivilegeEscalation: false",
            ),
            (
                sc["readOnlyRootFilesystem"] == true,
                "readOnlyRootFilesystem: true",
            ),
            (
                strings(&sc["capabilities"]["drop"]).contains(&"ALL"),
                "capabilities.drop: [ALL]",
            ),
            (
                sc["capabilities"]["add"]
                    .as_array()
                    .is_none_or(Vec::is_empty),
                "no capabilities.add",
            ),
            (sc["privileged"] != true, "not privileged"),
        ] {
            expect(ok, &format!("container {name}: {what}"));
        }
    }
    for key in ["hostNetwork", "hostPID", "hostIPC"] {
        expect(pod[key] != true, &format!("the pod does not use {key}"));
    }

    let c = pod["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == NAME))
        .expect("the Deployment has a container named zen-watcher");
    expect(
        c["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("ghcr.io/kube-zen/zen-watcher")),
        "image ghcr.io/kube-zen/zen-watcher[:tag] (kustomization.yaml `images:`)",
    );
    let args = strings(&c["args"]);
    expect(args.first() == Some(&"serve"), "args start with `serve`");
    expect(
        args.contains(&"--store=redb:/var/lib/zen-watcher/zen.redb"),
        "args have --store=redb:/var/lib/zen-watcher/zen.redb",
    );

    // The embedded store's directory is a writable volume (the root filesystem is read-only).
    let store_volume = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"] == "/var/lib/zen-watcher")
        .and_then(|m| {
            pod["volumes"]
                .as_array()?
                .iter()
                .find(|v| v["name"] == m["name"])
        });
    expect(
        store_volume
            .is_some_and(|v| v["emptyDir"].is_object() || v["persistentVolumeClaim"].is_object()),
        "an emptyDir or PersistentVolumeClaim is mounted at /var/lib/zen-watcher",
    );

    expect(
        c["env"].as_array().into_iter().flatten().any(|e| {
            e["name"] == "POD_NAMESPACE"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
        }),
        "env POD_NAMESPACE from fieldRef metadata.namespace",
    );

    for (name, port) in [("https", 8443), ("ingest", 9443), ("metrics", 9090)] {
        expect(
            resolve_port(deploy, &json!(name)) == Some(port),
            &format!("container port {name}: {port}"),
        );
    }
    for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        expect(get["path"] == path, &format!("{probe} GETs {path}"));
        expect(get["scheme"] == "HTTPS", &format!("{probe} uses HTTPS"));
        expect(
            resolve_port(deploy, &get["port"]) == Some(8443),
            &format!("{probe} targets the secure port 8443"),
        );
    }

    let res = &c["resources"];
    for (ok, what) in [
        (res["requests"]["cpu"].is_string(), "resources.requests.cpu"),
        (
            res["requests"]["memory"].is_string(),
            "resources.requests.memory",
        ),
        (
            res["limits"]["memory"].is_string(),
            "resources.limits.memory",
        ),
    ] {
        expect(ok, &format!("container zen-watcher sets {what}"));
    }

    assert_no_failures("Deployment zen-system/zen-watcher", &bad);
}

#[test]
fn service_exposes_the_secure_and_ingest_ports() {
    let Some(docs) = render() else { return };
    let deploy = find(docs, "Deployment", Some(NS), NAME);
    let svc = find(docs, "Service", Some(NS), NAME);
    assert!(
        selects_pods(&svc["spec"]["selector"], deploy),
        "Service zen-system/zen-watcher's selector must match the Deployment's pod labels: {}",
        svc["spec"]["selector"]
    );
    let ports = svc["spec"]["ports"]
        .as_array()
        .expect("Service zen-system/zen-watcher has spec.ports");
    for (port, name, target) in [(443, "https", 8443), (9443, "ingest", 9443)] {
        let p = ports
            .iter()
            .find(|p| p["port"] == port)
            .unwrap_or_else(|| panic!("Service zen-system/zen-watcher has no port {port}"));
        assert_eq!(p["name"], name, "Service port {port} is named {name}");
        assert_eq!(
            resolve_port(deploy, &p["targetPort"]),
            Some(target),
            "Service port {port} must reach container port {target} (targetPort {})",
            p["targetPort"]
        );
    }
}

#[test]
fn disruption_budget_does_not_block_node_drains() {
    let Some(docs) = render() else { return };
    let deploy = find(docs, "Deployment", Some(NS), NAME);
    let pdb = find(docs, "PodDisruptionBudget", Some(NS), NAME);
    let spec = &pdb["spec"];
    assert!(
        selects_pods(&spec["selector"]["matchLabels"], deploy),
        "PodDisruptionBudget zen-system/zen-watcher must select the Deployment's pods: {}",
        spec["selector"]
    );
    let replicas = deploy["spec"]["replicas"].as_i64().unwrap_or(1);
    // With `replicas` pods, at least one must be evictable or every drain hangs.
    let allows_an_eviction = match (&spec["minAvailable"], &spec["maxUnavailable"]) {
        (Value::Number(min), Value::Null) => min.as_i64().is_some_and(|m| m < replicas),
        (Value::Null, Value::Number(max)) => max.as_i64().is_some_and(|m| m >= 1),
        (Value::Null, Value::String(pct)) => pct
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            // Rounded up by the disruption controller.
            .is_some_and(|p| p > 0),
        _ => false,
    };
    assert!(
        allows_an_eviction,
        "PodDisruptionBudget zen-system/zen-watcher must allow evicting one of {replicas} \
         replica(s) (set maxUnavailable: 1): {spec}"
    );
}

// ---------------------------------------------------------------------------------------------
// Registrations

#[test]
fn apiservice_points_at_the_service_with_verified_tls() {
    let Some(docs) = render() else { return };
    let api = find(docs, "APIService", None, "v1alpha1.zen.watcher.io");
    let spec = &api["spec"];
    for (field, want) in [
        ("group", json!(API_GROUP)),
        ("version", json!("v1alpha1")),
        ("groupPriorityMinimum", json!(1000)),
        ("versionPriority", json!(15)),
    ] {
        assert_eq!(
            spec[field], want,
            "APIService v1alpha1.zen.watcher.io spec.{field}"
        );
    }
    assert_eq!(
        spec["service"],
        json!({"namespace": NS, "name": NAME, "port": 443}),
        "APIService v1alpha1.zen.watcher.io must use Service zen-system/zen-watcher port 443"
    );
    assert!(
        spec.get("insecureSkipTLSVerify").is_none(),
        "APIService v1alpha1.zen.watcher.io must not set insecureSkipTLSVerify"
    );
    assert!(
        spec.get("caBundle").is_none(),
        "APIService v1alpha1.zen.watcher.io must not carry a caBundle: zen-watcher injects it"
    );
}

/// A webhook name must be a fully qualified DNS name of at least three labels.
fn fully_qualified(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    labels.len() >= 3
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[test]
fn webhook_configurations_check_ingestors_and_policies() {
    let Some(docs) = render() else { return };
    let mut bad = Vec::new();
    for (kind, path) in [
        ("ValidatingWebhookConfiguration", "/admission/validate"),
        ("MutatingWebhookConfiguration", "/admission/mutate"),
    ] {
        let cfg = find(docs, kind, None, NAME);
        let hooks = cfg["webhooks"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let mut covered: Vec<(String, String)> = Vec::new();
        for hook in hooks {
            let name = hook["name"].as_str().unwrap_or_default();
            let mut expect = |ok: bool, what: String| {
                if !ok {
                    bad.push(format!("{kind} zen-watcher, webhook {name:?}: {what}"));
                }
            };
            expect(
                fully_qualified(name),
                "name must be fully qualified, e.g. validate.ingestors.config.zen.watcher.io"
                    .into(),
            );
            let client = &hook["clientConfig"];
            expect(
                client["service"]
                    == json!({"namespace": NS, "name": NAME, "path": path, "port": 443}),
                format!(
                    "clientConfig.service must be zen-system/zen-watcher port 443 path {path}, \
                     is {}",
                    client["service"]
                ),
            );
            expect(client.get("url").is_none(), "no clientConfig.url".into());
            expect(
                client.get("caBundle").is_none(),
                "no caBundle in the manifest: zen-watcher injects it".into(),
            );
            for (field, want) in [
                ("sideEffects", json!("None")),
                ("admissionReviewVersions", json!(["v1"])),
                ("timeoutSeconds", json!(10)),
                ("failurePolicy", json!("Fail")),
                ("matchPolicy", json!("Equivalent")),
            ] {
                expect(
                    hook[field] == want,
                    format!("{field} must be {want}, is {}", hook[field]),
                );
            }
            if kind == "MutatingWebhookConfiguration" {
                expect(
                    hook["reinvocationPolicy"] == "IfNeeded",
                    format!(
                        "reinvocationPolicy must be IfNeeded, is {}",
                        hook["reinvocationPolicy"]
                    ),
                );
            }
            // A label selector would let whoever labels a namespace or an object skip policies.
            for selector in ["namespaceSelector", "objectSelector"] {
                expect(
                    hook[selector].as_object().is_none_or(|s| s.is_empty()),
                    format!(
                        "{selector} must not exclude anything, is {}",
                        hook[selector]
                    ),
                );
            }
            let rules = hook["rules"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            expect(!rules.is_empty(), "has no rules".into());
            for rule in rules {
                expect(
                    strings(&rule["apiGroups"]) == [CONFIG_GROUP],
                    format!("rule apiGroups must be [{CONFIG_GROUP}]: {rule}"),
                );
                expect(
                    strings(&rule["apiVersions"]) == ["v1alpha1"],
                    format!("rule apiVersions must be [v1alpha1]: {rule}"),
                );
                let ops: BTreeSet<&str> = strings(&rule["operations"]).into_iter().collect();
                expect(
                    ops == BTreeSet::from(["CREATE", "UPDATE"]),
                    format!("rule operations must be exactly CREATE and UPDATE: {rule}"),
                );
                for resource in strings(&rule["resources"]) {
                    covered.push((resource.to_owned(), name.to_owned()));
                }
            }
        }
        for resource in ["ingestors", "ingestorpolicies"] {
            let by: Vec<&str> = covered
                .iter()
                .filter(|(r, _)| r == resource)
                .map(|(_, n)| n.as_str())
                .collect();
            if by.len() != 1 {
                bad.push(format!(
                    "{kind} zen-watcher: exactly one webhook must match {resource}, found {by:?}"
                ));
            }
        }
        if let Some((resource, _)) = covered
            .iter()
            .find(|(r, _)| r != "ingestors" && r != "ingestorpolicies")
        {
            bad.push(format!(
                "{kind} zen-watcher matches {resource}, which zen-watcher does not admit"
            ));
        }
    }
    assert_no_failures("webhook configurations", &bad);
}

// ---------------------------------------------------------------------------------------------
// RBAC

/// Roles that every cluster has, as far as zen-watcher relies on them (kube-apiserver's
/// bootstrap policy).
fn built_in_role(kind: &str, ns: Option<&str>, name: &str) -> Option<Value> {
    match (kind, ns, name) {
        ("ClusterRole", None, "system:auth-delegator") => Some(json!([
            {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
             "verbs": ["create"]},
            {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
             "verbs": ["create"]},
        ])),
        ("Role", Some("kube-system"), "extension-apiserver-authentication-reader") => Some(json!([
            {"apiGroups": [""], "resources": ["configmaps"],
             "resourceNames": ["extension-apiserver-authentication"],
             "verbs": ["get", "list", "watch"]},
        ])),
        _ => None,
    }
}

/// A rule, and the namespace it applies in (`None`: every namespace and cluster-scoped).
struct Grant {
    namespace: Option<String>,
    binding: String,
    rule: Value,
}

/// Everything the bindings in the render give the ServiceAccount `ns/name`.
fn grants_to_service_account(docs: &[Value], ns: &str, name: &str) -> Vec<Grant> {
    let mut grants = Vec::new();
    for binding in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
    {
        let binding_ns = binding["metadata"]["namespace"].as_str();
        let is_subject = binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["name"] == name
                    && s["namespace"].as_str().or(binding_ns) == Some(ns)
            });
        if !is_subject {
            continue;
        }
        let role_kind = binding["roleRef"]["kind"].as_str().unwrap_or_default();
        let role_name = binding["roleRef"]["name"].as_str().unwrap_or_default();
        let role_ns = if role_kind == "Role" {
            binding_ns
        } else {
            None
        };
        let rules = lookup(docs, role_kind, role_ns, role_name)
            .map(|r| r["rules"].clone())
            .or_else(|| built_in_role(role_kind, role_ns, role_name))
            .unwrap_or_else(|| {
                panic!(
                    "{} refers to {role_kind} {role_name}, which is neither in the render nor \
                     a known built-in role",
                    describe(binding)
                )
            });
        for rule in rules.as_array().into_iter().flatten() {
            grants.push(Grant {
                namespace: binding_ns.map(str::to_owned),
                binding: describe(binding),
                rule: rule.clone(),
            });
        }
    }
    grants
}

/// One API request, as the RBAC authorizer sees it.
struct Request<'a> {
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    /// `None`: cluster-scoped, or across all namespaces.
    namespace: Option<&'a str>,
    /// The object's name (for list/watch: a `metadata.name` field selector).
    name: Option<&'a str>,
}

impl Request<'_> {
    fn allowed_by(&self, grants: &[Grant]) -> bool {
        grants.iter().any(|g| {
            let in_scope = match &g.namespace {
                None => true,
                Some(ns) => self.namespace == Some(ns.as_str()),
            };
            let has = |field: &str, want: &str| {
                strings(&g.rule[field])
                    .iter()
                    .any(|v| *v == want || *v == "*")
            };
            let names = strings(&g.rule["resourceNames"]);
            in_scope
                && has("apiGroups", self.group)
                && has("resources", self.resource)
                && has("verbs", self.verb)
                && (names.is_empty() || self.name.is_some_and(|n| names.contains(&n)))
        })
    }
}

impl std::fmt::Display for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        write!(f, "{} {}/{}", self.verb, group, self.resource)?;
        if let Some(name) = self.name {
            write!(f, " {name:?}")?;
        }
        match self.namespace {
            Some(ns) => write!(f, " in namespace {ns}"),
            None => write!(f, " cluster-wide"),
        }
    }
}

fn req<'a>(
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
) -> Request<'a> {
    Request {
        verb,
        group,
        resource,
        namespace,
        name,
    }
}

#[test]
fn delegated_auth_is_bound() {
    let Some(docs) = render() else { return };
    let binds = |kind: &str, ns: Option<&str>, role_kind: &str, role: &str| {
        docs.iter().any(|d| {
            d["kind"] == kind
                && d["metadata"]["namespace"].as_str() == ns
                && d["roleRef"]["kind"] == role_kind
                && d["roleRef"]["name"] == role
                && d["subjects"].as_array().into_iter().flatten().any(|s| {
                    s["kind"] == "ServiceAccount" && s["name"] == NAME && s["namespace"] == NS
                })
        })
    };
    assert!(
        binds(
            "ClusterRoleBinding",
            None,
            "ClusterRole",
            "system:auth-delegator"
        ),
        "no ClusterRoleBinding binds ClusterRole system:auth-delegator to ServiceAccount \
         zen-system/zen-watcher (TokenReviews and SubjectAccessReviews)"
    );
    assert!(
        binds(
            "RoleBinding",
            Some("kube-system"),
            "Role",
            "extension-apiserver-authentication-reader"
        ),
        "no RoleBinding in kube-system binds Role extension-apiserver-authentication-reader to \
         ServiceAccount zen-system/zen-watcher (client and front-proxy CAs)"
    );
}

#[test]
fn zen_watcher_may_do_what_it_needs_and_no_more() {
    let Some(docs) = render() else { return };
    let grants = grants_to_service_account(docs, NS, NAME);
    let ns = Some(NS);
    let everywhere = None;
    let apiservice = Some("v1alpha1.zen.watcher.io");
    let own = Some(NAME);

    let mut needed = Vec::new();
    for verb in ["get", "list", "watch"] {
        needed.extend([
            (
                req(verb, CONFIG_GROUP, "ingestors", everywhere, None),
                "Ingestors configure ingest",
            ),
            (
                req(verb, CONFIG_GROUP, "ingestorpolicies", everywhere, None),
                "admission policies",
            ),
            (
                req(verb, "", "namespaces", everywhere, None),
                "policies' namespaceSelector",
            ),
            (
                req(verb, "", "secrets", everywhere, None),
                "Secrets referenced by Ingestors",
            ),
            (
                req(verb, "", "events", everywhere, None),
                "kubernetesEvents sources",
            ),
            (
                req(verb, "events.k8s.io", "events", everywhere, None),
                "kubernetesEvents sources",
            ),
        ]);
    }
    for verb in ["get", "list", "watch", "update", "patch"] {
        needed.push((
            req(
                verb,
                "apiregistration.k8s.io",
                "apiservices",
                everywhere,
                apiservice,
            ),
            "caBundle of the APIService",
        ));
        for resource in [
            "validatingwebhookconfigurations",
            "mutatingwebhookconfigurations",
        ] {
            needed.push((
                req(
                    verb,
                    "admissionregistration.k8s.io",
                    resource,
                    everywhere,
                    own,
                ),
                "caBundle of the webhooks",
            ));
        }
    }
    for verb in ["update", "patch"] {
        needed.push((
            req(verb, CONFIG_GROUP, "ingestors/status", everywhere, None),
            "Ingestor status",
        ));
    }
    for secret in ["zen-watcher-ca", "zen-watcher-tls"] {
        for verb in ["get", "update", "patch"] {
            needed.push((
                req(verb, "", "secrets", ns, Some(secret)),
                "self-managed certificates",
            ));
        }
    }
    needed.push((
        req("create", "", "secrets", ns, None),
        "self-managed certificates",
    ));
    for verb in ["get", "create", "update"] {
        needed.push((
            req(verb, "coordination.k8s.io", "leases", ns, None),
            "leader election",
        ));
    }
    needed.extend([
        (
            req(
                "create",
                "authentication.k8s.io",
                "tokenreviews",
                everywhere,
                None,
            ),
            "delegated authentication",
        ),
        (
            req(
                "create",
                "authorization.k8s.io",
                "subjectaccessreviews",
                everywhere,
                None,
            ),
            "delegated authorization",
        ),
        (
            req(
                "get",
                "",
                "configmaps",
                Some("kube-system"),
                Some("extension-apiserver-authentication"),
            ),
            "client and front-proxy CAs",
        ),
    ]);
    let missing: Vec<String> = needed
        .iter()
        .filter(|(r, _)| !r.allowed_by(&grants))
        .map(|(r, why)| format!("{r} ({why})"))
        .collect();
    assert_no_failures(
        "ServiceAccount zen-system/zen-watcher lacks permissions",
        &missing,
    );

    let other = Some("default");
    let forbidden = [
        req(
            "update",
            "apiregistration.k8s.io",
            "apiservices",
            everywhere,
            Some("v1beta1.metrics.k8s.io"),
        ),
        req(
            "patch",
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            everywhere,
            Some("other"),
        ),
        req(
            "patch",
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            everywhere,
            Some("other"),
        ),
        req(
            "create",
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            everywhere,
            None,
        ),
        req(
            "delete",
            "apiregistration.k8s.io",
            "apiservices",
            everywhere,
            apiservice,
        ),
        req("update", "", "secrets", other, Some("zen-watcher-tls")),
        req("patch", "", "secrets", ns, Some("other")),
        req("delete", "", "secrets", ns, Some("zen-watcher-ca")),
        req("create", "", "secrets", other, None),
        req("create", "coordination.k8s.io", "leases", other, None),
        req("create", CONFIG_GROUP, "ingestors", other, None),
        req("update", CONFIG_GROUP, "ingestors", other, Some("x")),
        req("delete", CONFIG_GROUP, "ingestors", other, Some("x")),
        req(
            "update",
            CONFIG_GROUP,
            "ingestorpolicies",
            everywhere,
            Some("x"),
        ),
        req("create", "", "pods", other, None),
    ];
    let excess: Vec<String> = forbidden
        .iter()
        .filter(|r| r.allowed_by(&grants))
        .map(ToString::to_string)
        .collect();
    assert_no_failures(
        "ServiceAccount zen-system/zen-watcher may do more than it needs",
        &excess,
    );

    let mut broad = Vec::new();
    for g in &grants {
        for field in ["apiGroups", "resources", "verbs"] {
            if strings(&g.rule[field]).contains(&"*") {
                broad.push(format!("{}: wildcard in {field}: {}", g.binding, g.rule));
            }
        }
        for verb in ["escalate", "bind", "impersonate"] {
            if strings(&g.rule["verbs"]).contains(&verb) {
                broad.push(format!("{}: verb {verb}: {}", g.binding, g.rule));
            }
        }
    }
    assert_no_failures(
        "ServiceAccount zen-system/zen-watcher has broad rules",
        &broad,
    );
}

/// Whether a ClusterRole's own rules allow `verb` on `group`/`resource`.
fn role_grants(role: &Value, group: &str, resource: &str, verb: &str) -> bool {
    let grants: Vec<Grant> = role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|rule| Grant {
            namespace: None,
            binding: describe(role),
            rule: rule.clone(),
        })
        .collect();
    req(verb, group, resource, None, None).allowed_by(&grants)
}

#[test]
fn user_roles_aggregate_into_view_edit_and_admin() {
    let Some(docs) = render() else { return };
    const WRITE: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];
    let mut bad = Vec::new();
    let label = |role: &Value, key: &str| {
        role["metadata"]["labels"][format!("rbac.authorization.k8s.io/{key}")] == "true"
    };

    let view = find(docs, "ClusterRole", None, "zen-watcher-view");
    if !label(view, "aggregate-to-view") {
        bad.push(
            "zen-watcher-view lacks label rbac.authorization.k8s.io/aggregate-to-view: \"true\""
                .into(),
        );
    }
    for (group, resource) in [
        (API_GROUP, "observations"),
        (API_GROUP, "webhookendpoints"),
        (CONFIG_GROUP, "ingestors"),
        (CONFIG_GROUP, "ingestorpolicies"),
    ] {
        for verb in ["get", "list", "watch"] {
            if !role_grants(view, group, resource, verb) {
                bad.push(format!(
                    "zen-watcher-view does not grant {verb} on {group}/{resource}"
                ));
            }
        }
    }
    for rule in view["rules"].as_array().into_iter().flatten() {
        if strings(&rule["verbs"])
            .iter()
            .any(|v| !["get", "list", "watch"].contains(v))
        {
            bad.push(format!("zen-watcher-view grants more than reading: {rule}"));
        }
    }

    let edit = find(docs, "ClusterRole", None, "zen-watcher-edit");
    for key in ["aggregate-to-edit", "aggregate-to-admin"] {
        if !label(edit, key) {
            bad.push(format!(
                "zen-watcher-edit lacks label rbac.authorization.k8s.io/{key}: \"true\""
            ));
        }
    }
    for verb in WRITE {
        if !role_grants(edit, API_GROUP, "observations", verb) {
            bad.push(format!(
                "zen-watcher-edit does not grant {verb} on observations"
            ));
        }
        if !role_grants(edit, CONFIG_GROUP, "ingestors", verb) {
            bad.push(format!(
                "zen-watcher-edit does not grant {verb} on ingestors"
            ));
        }
        // WebhookEndpoints are derived from Ingestors; IngestorPolicies are cluster-wide.
        for (group, resource) in [
            (API_GROUP, "webhookendpoints"),
            (CONFIG_GROUP, "ingestorpolicies"),
            (CONFIG_GROUP, "ingestors/status"),
        ] {
            if role_grants(edit, group, resource, verb) {
                bad.push(format!(
                    "zen-watcher-edit must not grant {verb} on {group}/{resource}"
                ));
            }
        }
    }
    if !role_grants(edit, API_GROUP, "webhookendpoints/ingest", "create") {
        bad.push("zen-watcher-edit does not grant create on webhookendpoints/ingest".into());
    }

    // IngestorPolicies are cluster-scoped guardrails: bound explicitly, never aggregated into
    // admin (a RoleBinding to admin could not use it; a ClusterRoleBinding to admin should not
    // silently be able to loosen the policies). See manifests/rbac-user-roles.yaml.
    let admin = find(docs, "ClusterRole", None, "zen-watcher-admin");
    for verb in WRITE {
        if !role_grants(admin, CONFIG_GROUP, "ingestorpolicies", verb) {
            bad.push(format!(
                "zen-watcher-admin does not grant {verb} on ingestorpolicies"
            ));
        }
    }
    for key in [
        "aggregate-to-view",
        "aggregate-to-edit",
        "aggregate-to-admin",
    ] {
        if label(admin, key) {
            bad.push(format!(
                "zen-watcher-admin (IngestorPolicy write) must not aggregate ({key})"
            ));
        }
    }

    for role in [view, edit, admin] {
        for rule in role["rules"].as_array().into_iter().flatten() {
            if strings(&rule["apiGroups"])
                .iter()
                .any(|g| *g != API_GROUP && *g != CONFIG_GROUP)
            {
                bad.push(format!(
                    "{} reaches beyond zen-watcher's API groups: {rule}",
                    describe(role)
                ));
            }
        }
    }
    assert_no_failures("user-facing ClusterRoles", &bad);
}

// ---------------------------------------------------------------------------------------------
// Exact types

/// Parses `doc` as `T`, serializes it back and compares: anything the type does not know (an
/// unknown or misspelled field) comes back missing.
fn round_trip<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<(), String> {
    let typed: T =
        serde_json::from_value(doc.clone()).map_err(|e| format!("does not parse: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| format!("does not serialize: {e}"))?;
    match first_difference(doc, &back, String::new()) {
        None => Ok(()),
        Some(diff) => Err(format!("changed by a typed round trip: {diff}")),
    }
}

/// The first place where `a` (as written) and `b` (after the round trip) differ.
fn first_difference(a: &Value, b: &Value, path: String) -> Option<String> {
    let key_path = |k: &str| {
        if k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            format!("{path}.{k}")
        } else {
            format!("{path}[{k:?}]")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                let p = key_path(k);
                match y.get(k) {
                    Some(w) => {
                        if let Some(d) = first_difference(v, w, p) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("{p} is not a known field (dropped)")),
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{} appeared", key_path(k)))
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, format!("{path}[{i}]"))),
        // k8s-openapi keeps some schema bounds as f64: 10485760 comes back as 10485760.0.
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        _ if a == b => None,
        _ => Some(format!(
            "{} is {a} as written but {b} after the round trip",
            if path.is_empty() { "." } else { &path }
        )),
    }
}

#[test]
fn every_object_is_exactly_its_kubernetes_type() {
    let Some(docs) = render() else { return };
    let mut bad = Vec::new();
    for doc in docs {
        let api_version = doc["apiVersion"].as_str().unwrap_or_default();
        let kind = doc["kind"].as_str().unwrap_or_default();
        let result = match (api_version, kind) {
            // Checked (and reported) by crds_parse_without_unknown_fields.
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => continue,
            ("v1", "Namespace") => round_trip::<Namespace>(doc),
            ("v1", "ServiceAccount") => round_trip::<ServiceAccount>(doc),
            ("v1", "Service") => round_trip::<Service>(doc),
            ("apps/v1", "Deployment") => round_trip::<Deployment>(doc),
            ("policy/v1", "PodDisruptionBudget") => round_trip::<PodDisruptionBudget>(doc),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip::<ClusterRole>(doc),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                round_trip::<ClusterRoleBinding>(doc)
            }
            ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<Role>(doc),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip::<RoleBinding>(doc),
            ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
                round_trip::<MutatingWebhookConfiguration>(doc)
            }
            ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
                round_trip::<ValidatingWebhookConfiguration>(doc)
            }
            ("apiregistration.k8s.io/v1", "APIService") => round_trip::<APIService>(doc),
            _ => Err(format!(
                "{api_version} {kind} has no typed check; add it to this test"
            )),
        };
        if let Err(e) = result {
            bad.push(format!("{}: {e}", describe(doc)));
        }
    }
    assert_no_failures("objects that are not exactly their Kubernetes type", &bad);
}

#[test]
fn crds_parse_without_unknown_fields() {
    let Some(docs) = render() else { return };
    let mut bad = Vec::new();
    let mut names = BTreeSet::new();
    for doc in docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
    {
        if let Err(e) = round_trip::<CustomResourceDefinition>(doc) {
            bad.push(format!("{}: {e}", describe(doc)));
        }
        names.insert(doc["metadata"]["name"].as_str().unwrap_or_default());
    }
    for name in CRD_NAMES.into_iter().filter(|n| !names.contains(n)) {
        bad.push(format!(
            "CustomResourceDefinition {name} is missing: write `zen-watcher crds` output to \
             manifests/crds/ and list it in manifests/crds/kustomization.yaml"
        ));
    }
    assert_no_failures("CustomResourceDefinitions", &bad);
}

/// The webhooks and the ClusterRole's status rule agree with the CRDs they are about.
#[test]
fn registrations_agree_with_the_crds() {
    let Some(docs) = render() else { return };
    let mut bad = Vec::new();
    for (plural, scope) in [("ingestors", "Namespaced"), ("ingestorpolicies", "Cluster")] {
        let name = format!("{plural}.{CONFIG_GROUP}");
        let Some(crd) = lookup(docs, "CustomResourceDefinition", None, &name) else {
            bad.push(format!("CustomResourceDefinition {name} is missing"));
            continue;
        };
        if crd["spec"]["scope"] != scope {
            bad.push(format!("CustomResourceDefinition {name} must be {scope}"));
        }
        let served_v1alpha1 = crd["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == "v1alpha1" && v["served"] == true);
        match served_v1alpha1 {
            None => bad.push(format!(
                "CustomResourceDefinition {name} does not serve v1alpha1"
            )),
            Some(v) if plural == "ingestors" && !v["subresources"]["status"].is_object() => {
                bad.push(format!(
                    "CustomResourceDefinition {name} v1alpha1 has no status subresource, but \
                     zen-watcher writes ingestors/status"
                ));
            }
            Some(_) => {}
        }
        for kind in [
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
        ] {
            let cfg = find(docs, kind, None, NAME);
            for hook in cfg["webhooks"].as_array().into_iter().flatten() {
                for rule in hook["rules"].as_array().into_iter().flatten() {
                    let rule_scope = rule["scope"].as_str().unwrap_or("*");
                    if strings(&rule["resources"]).contains(&plural)
                        && rule_scope != "*"
                        && rule_scope != scope
                    {
                        bad.push(format!(
                            "{kind} zen-watcher, webhook {}: scope {rule_scope} for {plural}, \
                             which is {scope}",
                            hook["name"]
                        ));
                    }
                }
            }
        }
    }
    assert_no_failures("registrations vs. CRDs", &bad);
}

// ---------------------------------------------------------------------------------------------
// TLS is always verified

/// The path of the first key named `key` inside `v`.
fn find_key(v: &Value, key: &str, path: String) -> Option<String> {
    match v {
        Value::Object(m) => m.iter().find_map(|(k, v)| {
            let p = format!("{path}.{k}");
            if k.eq_ignore_ascii_case(key) {
                Some(p)
            } else {
                find_key(v, key, p)
            }
        }),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_key(v, key, format!("{path}[{i}]"))),
        _ => None,
    }
}

#[test]
fn nothing_skips_tls_verification() {
    let Some(docs) = render() else { return };
    let mut found = Vec::new();
    for doc in docs {
        if let Some(path) = find_key(doc, "insecureSkipTLSVerify", String::new()) {
            found.push(format!("{} sets {path}", describe(doc)));
        } else if doc.to_string().contains("insecureSkipTLSVerify") {
            found.push(format!("{} mentions insecureSkipTLSVerify", describe(doc)));
        }
    }
    assert_no_failures("insecureSkipTLSVerify is not allowed anywhere", &found);
}

/// The HA overlay: the whole base, with several replicas on etcd over TLS, never two on a
/// node, rolling one at a time, and the disruption budget of the base.
#[test]
fn ha_overlay_runs_replicas_on_etcd_spread_over_nodes() {
    let Some(base) = render() else { return };
    let Some(ha) = render_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/overlays/ha"
    )) else {
        return;
    };
    let names = |docs: &[Value]| -> Vec<String> {
        let mut v: Vec<String> = docs.iter().map(describe).collect();
        v.sort();
        v
    };
    assert_eq!(
        names(&ha),
        names(base),
        "the overlay installs what the base does"
    );
    let deploy = find(&ha, "Deployment", Some("zen-system"), "zen-watcher");
    let replicas = deploy["spec"]["replicas"].as_i64().unwrap_or(1);
    assert!(replicas >= 3, "replicas: {replicas}");
    assert_eq!(deploy["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        1
    );
    let pod = &deploy["spec"]["template"]["spec"];
    let args = strings(&pod["containers"][0]["args"]);
    assert_eq!(args.first(), Some(&"serve"));
    let store = args
        .iter()
        .find_map(|a| a.strip_prefix("--store=etcd:"))
        .unwrap_or_else(|| panic!("no --store=etcd: in {args:?}"));
    assert!(
        store.split(',').all(|e| e.starts_with("https://")),
        "etcd over TLS: {store}"
    );
    // The client certificate files come from a mounted Secret.
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"] == "etcd-client")
        .expect("the etcd client Secret is mounted");
    let dir = mount["mountPath"].as_str().unwrap_or_default();
    for flag in ["--etcd-cafile=", "--etcd-certfile=", "--etcd-keyfile="] {
        let file = args
            .iter()
            .find_map(|a| a.strip_prefix(flag))
            .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
        assert!(
            file.starts_with(&format!("{dir}/")),
            "{flag}{file} outside {dir}"
        );
    }
    let secret_volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == "etcd-client")
        .expect("the etcd-client volume");
    assert_eq!(
        secret_volume["secret"]["secretName"],
        "zen-watcher-etcd-client"
    );
    // Never two replicas on one node.
    let anti =
        &pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
    assert!(
        selects_pods(&anti["labelSelector"]["matchLabels"], deploy),
        "the anti-affinity selects zen-watcher's own pods: {anti}"
    );
    let pdb = find(
        &ha,
        "PodDisruptionBudget",
        Some("zen-system"),
        "zen-watcher",
    );
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert!(selects_pods(
        &pdb["spec"]["selector"]["matchLabels"],
        deploy
    ));
}

//! `zen-watcher serve --kubeconfig` against a stand-in kube-apiserver (TLS, HTTP/2) that
//! answers authentication and authorization reviews with replies recorded from a real
//! kube-apiserver 1.28, serves the recorded registrations, and keeps Secrets in memory.
//! The end-to-end suite against a real kube-apiserver is `e2e` (gated on
//! ZEN_E2E_KUBE_APISERVER).

mod support;

use std::{
    collections::HashMap,
    convert::Infallible,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use support::tls::{Request, send};
use zen_certs::issue::Ca;

const RECORDINGS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/testdata/kube-apiserver-1.28"
);
const DAY: Duration = Duration::from_secs(86_400);

fn recording(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{RECORDINGS}/{path}")).unwrap()).unwrap()
}

/// The stand-in's objects by API path, and the reviews it was asked. Every write is also
/// sent to the open watches.
struct State {
    objects: HashMap<String, Value>,
    reviews: Vec<Value>,
    version: u64,
    events: tokio::sync::broadcast::Sender<(String, Value)>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            objects: HashMap::new(),
            reviews: Vec::new(),
            version: 0,
            events: tokio::sync::broadcast::channel(1024).0,
        }
    }
}

impl State {
    /// Stores `object` at `key` with a new resourceVersion and tells the watches.
    fn put(&mut self, key: &str, mut object: Value) -> Value {
        self.version += 1;
        object["metadata"]["resourceVersion"] = json!(self.version.to_string());
        let kind = if self.objects.contains_key(key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.objects.insert(key.to_owned(), object.clone());
        let _ = self
            .events
            .send((key.to_owned(), json!({"type": kind, "object": object})));
        object
    }
}

/// Whether the object at `key` belongs to the collection at `path` (a list or watch path:
/// cluster-wide collections take every namespace).
fn in_collection(path: &str, key: &str) -> bool {
    let segments = |p: &str| {
        p.trim_matches('/')
            .split('/')
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let (c, k) = (segments(path), segments(key));
    match c.as_slice() {
        // /api/v1/namespaces: the Namespace objects themselves.
        [a, _, r] if a == "api" && r == "namespaces" => k.len() == 4 && k[..3] == c[..],
        // /api/v1/namespaces/kube-system/configmaps: that namespace.
        [a, _, n, _, _] if a == "api" && n == "namespaces" => k.len() == 6 && k[..5] == c[..],
        // /api/v1/secrets: any namespace.
        [a, v, r] if a == "api" => k.len() == 6 && k[0] == *a && k[1] == *v && k[4] == *r,
        // /apis/g/v/ingestorpolicies (cluster-scoped) and /apis/g/v/ingestors (any namespace).
        [a, _, _, r] if a == "apis" => {
            (k.len() == 5 && k[..4] == c[..]) || (k.len() == 7 && k[..3] == c[..3] && k[5] == *r)
        }
        _ => false,
    }
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message, "code": code}),
    )
}

fn handle(state: &Mutex<State>, method: &str, path: &str, body: Value) -> (u16, Value) {
    let mut s = state.lock().unwrap();
    match (method, path) {
        ("POST", "/apis/authentication.k8s.io/v1/tokenreviews") => {
            let recorded = recording("authn/tokenreview-serviceaccount-pod-bound.json");
            if body["spec"]["token"] == recorded["request"]["stdinToKubectl"]["spec"]["token"] {
                (201, recorded["response"]["body"].clone())
            } else {
                (
                    201,
                    json!({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                             "status": {"authenticated": false, "error": "invalid bearer token"}}),
                )
            }
        }
        ("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews") => {
            s.reviews.push(body.clone());
            let spec = &body["spec"];
            // Readers may read; nobody else may do anything (as the recorded RBAC had it).
            let read = ["get", "list", "watch"]
                .contains(&spec["resourceAttributes"]["verb"].as_str().unwrap_or(""));
            let file = if read && spec["user"] != "system:anonymous" {
                "allowed"
            } else {
                "denied"
            };
            (
                201,
                recording(&format!("authn/subjectaccessreview-{file}.json"))["response"]["body"]
                    .clone(),
            )
        }
        ("POST", p) if p.ends_with("/secrets") || p.ends_with("/leases") => {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let key = format!("{p}/{name}");
            if s.objects.contains_key(&key) {
                return status(409, "AlreadyExists", "exists");
            }
            (201, s.put(&key, body))
        }
        ("PUT", p) => {
            let Some(current) = s.objects.get(p) else {
                return status(404, "NotFound", "not found");
            };
            if current["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"] {
                return status(409, "Conflict", "the object has been modified");
            }
            (200, s.put(p, body))
        }
        ("PATCH", p) => {
            // The status subresource patches the object it belongs to.
            let p = p.strip_suffix("/status").unwrap_or(p);
            let Some(mut obj) = s.objects.get(p).cloned() else {
                return status(404, "NotFound", "not found");
            };
            let patch: json_patch::Patch = match serde_json::from_value(body) {
                Ok(p) => p,
                Err(e) => return status(400, "BadRequest", &e.to_string()),
            };
            if let Err(e) = json_patch::patch(&mut obj, &patch) {
                return status(422, "Invalid", &e.to_string());
            }
            (200, s.put(p, obj))
        }
        ("GET", p) => match s.objects.get(p) {
            Some(o) => (200, o.clone()),
            None if [
                "/api/v1/namespaces",
                "/api/v1/secrets",
                "/api/v1/events",
                "/api/v1/namespaces/kube-system/configmaps",
                "/api/v1/namespaces/zen-system/secrets",
                "/apis/config.zen.watcher.io/v1alpha1/ingestors",
                "/apis/config.zen.watcher.io/v1alpha1/ingestorpolicies",
            ]
            .contains(&p) =>
            {
                let mut items: Vec<Value> = s
                    .objects
                    .iter()
                    .filter(|(k, _)| in_collection(p, k))
                    .map(|(_, o)| o.clone())
                    .collect();
                items.sort_by_key(|o| {
                    o["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                });
                (
                    200,
                    json!({"kind": "List", "apiVersion": "v1",
                             "metadata": {"resourceVersion": s.version.to_string()}, "items": items}),
                )
            }
            None => status(404, "NotFound", "not found"),
        },
        _ => status(405, "MethodNotAllowed", "not served by the stand-in"),
    }
}

/// Starts the stand-in; returns its port, CA and state.
async fn stand_in(state: Arc<Mutex<State>>) -> (u16, Ca) {
    let ca = Ca::generate("cluster-ca", DAY).unwrap();
    let leaf = ca.issue_serving(&["localhost".into()], &[], DAY).unwrap();
    let config = zen_certs::tls::server_config(
        zen_certs::tls::ServingCert::new(
            zen_certs::tls::certified_key(&leaf.cert_pem, &leaf.key_pem, "stand-in").unwrap(),
        ),
        None,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let state = state.clone();
        async move {
            let method = req.method().as_str().to_owned();
            let path = req.uri().path().to_owned();
            if req.uri().query().is_some_and(|q| q.contains("watch=1")) {
                let mut events = state.lock().unwrap().events.subscribe();
                let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
                tokio::spawn(async move {
                    while let Ok((key, event)) = events.recv().await {
                        if in_collection(&path, &key)
                            && tx
                                .send(bytes::Bytes::from(format!("{event}\n")))
                                .await
                                .is_err()
                        {
                            return;
                        }
                    }
                });
                return Ok::<_, Infallible>(http::Response::new(BodyExt::boxed(Lines(rx))));
            }
            let bytes = req.into_body().collect().await.unwrap().to_bytes();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (code, answer) = handle(&state, &method, &path, body);
            let mut resp = http::Response::new(zen_serving::full(answer.to_string()));
            *resp.status_mut() = http::StatusCode::from_u16(code).unwrap();
            Ok::<_, Infallible>(resp)
        }
    });
    tokio::spawn(zen_serving::serve_tls(
        listener,
        Arc::new(config),
        service,
        zen_serving::ServerOptions::default(),
        std::future::pending(),
    ));
    (port, ca)
}

/// A streaming body of watch lines.
struct Lines(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl http_body::Body for Lines {
    type Data = bytes::Bytes;
    type Error = zen_serving::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|line| line.map(|b| Ok(http_body::Frame::data(b))))
    }
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_delegates_identity_and_permissions_and_publishes_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let front_proxy_ca = Ca::generate("front-proxy-ca", DAY).unwrap();
    let client_ca = Ca::generate("client-ca", DAY).unwrap();

    let state = Arc::new(Mutex::new(State::default()));
    {
        let mut s = state.lock().unwrap();
        let mut cm = recording("authn/extension-apiserver-authentication.json");
        cm["data"]["requestheader-client-ca-file"] = json!(front_proxy_ca.pem.cert_pem);
        cm["data"]["client-ca-file"] = json!(client_ca.pem.cert_pem);
        s.objects.insert(
            "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication".into(),
            cm,
        );
        s.objects.insert(
            "/apis/apiregistration.k8s.io/v1/apiservices/v1alpha1.zen.watcher.io".into(),
            recording("setup/setup-apiservice.json"),
        );
        s.put(
            "/api/v1/namespaces/apps",
            json!({"metadata": {"name": "apps"}}),
        );
        s.put(
            "/api/v1/namespaces/apps/secrets/hooks",
            json!({"metadata": {"name": "hooks", "namespace": "apps"}, "type": "Opaque",
                   "data": {"token": STANDARD.encode("apps-token")}}),
        );
        s.put(
            "/apis/config.zen.watcher.io/v1alpha1/namespaces/apps/ingestors/hooks",
            json!({"metadata": {"name": "hooks", "namespace": "apps", "generation": 2}, "spec": {
                "sources": [{"name": "ci", "type": "webhook",
                             "auth": {"type": "bearer", "secretRef": {"name": "hooks", "key": "token"}}}],
                "mapping": {"category": "'operations'", "severity": "'low'", "eventType": "'build_failed'",
                            "title": "payload.pipeline"}
            }}),
        );
        s.put(
            "/apis/config.zen.watcher.io/v1alpha1/namespaces/apps/ingestors/broken",
            json!({"metadata": {"name": "broken", "namespace": "apps", "generation": 1}, "spec": {
                "sources": [{"name": "ci", "type": "webhook",
                             "auth": {"type": "bearer", "secretRef": {"name": "absent", "key": "token"}}}],
                "mapping": {"category": "'operations'", "severity": "'low'", "eventType": "'x'"}
            }}),
        );
        s.put(
            "/apis/config.zen.watcher.io/v1alpha1/ingestorpolicies/rate-cap",
            json!({"metadata": {"name": "rate-cap"}, "spec": {
                "validations": [{"expression": "object.spec.sources.all(s, !has(s.rateLimit) || s.rateLimit.requestsPerSecond <= 1000)",
                                 "message": "rate limits above 1000/s are not allowed"}],
                "validationActions": ["Deny"]
            }}),
        );
        for mut webhook in recording("setup/setup-webhooks.json")
            .as_array()
            .unwrap()
            .clone()
        {
            webhook["metadata"]["name"] = json!("zen-watcher");
            let plural = webhook["kind"].as_str().unwrap().to_lowercase() + "s";
            s.objects.insert(
                format!("/apis/admissionregistration.k8s.io/v1/{plural}/zen-watcher"),
                webhook,
            );
        }
    }
    let (port, cluster_ca) = stand_in(state.clone()).await;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    tls-server-name: localhost\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    token: zen-watcher-service-account-token\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
            STANDARD.encode(&cluster_ca.pem.cert_pem)
        ),
    )
    .unwrap();

    let secure = support::free_port();
    let ingest = support::free_port();
    let start = |secure: u16, ingest: u16, name: &str| {
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
        Serve(
            Command::new(env!("CARGO_BIN_EXE_zen-watcher"))
                .args(["serve", "--kubeconfig", kubeconfig.to_str().unwrap()])
                .args([
                    "--bind-address",
                    "127.0.0.1",
                    "--secure-port",
                    &secure.to_string(),
                ])
                .args(["--ingest-port", &ingest.to_string()])
                .args(["--metrics-port", &support::free_port().to_string()])
                .args([
                    "--store",
                    &format!("redb:{}", dir.path().join(format!("{name}.redb")).display()),
                ])
                .env_remove("KUBECONFIG")
                .env_remove("POD_NAME")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    };
    let _serve = start(secure, ingest, "serve");
    let logs = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();

    // The CA is stored in its Secret and injected into every registration.
    let bundle_of = |s: &State| -> Option<String> {
        let secret = s
            .objects
            .get("/api/v1/namespaces/zen-system/secrets/zen-watcher-ca")?;
        secret["data"]["ca-bundle.crt"].as_str().map(str::to_owned)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let bundle_b64 = loop {
        {
            let s = state.lock().unwrap();
            // The APIService and the last webhook configuration patched carry it.
            if let Some(b) = bundle_of(&s)
                && s.objects["/apis/apiregistration.k8s.io/v1/apiservices/v1alpha1.zen.watcher.io"]
                    ["spec"]["caBundle"]
                    == b.as_str()
                && s.objects["/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/zen-watcher"]
                    ["webhooks"][0]["clientConfig"]["caBundle"]
                    == b.as_str()
            {
                break b;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no caBundle injected:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    {
        let s = state.lock().unwrap();
        assert!(
            s.objects
                .contains_key("/api/v1/namespaces/zen-system/secrets/zen-watcher-tls")
        );
        // It rotated as the holder of the Lease.
        let lease =
            &s.objects["/apis/coordination.k8s.io/v1/namespaces/zen-system/leases/zen-watcher"];
        assert!(
            lease["spec"]["holderIdentity"]
                .as_str()
                .unwrap()
                .starts_with("zen-watcher-"),
            "{lease}"
        );
        for kind in [
            "validatingwebhookconfigurations",
            "mutatingwebhookconfigurations",
        ] {
            let w =
                &s.objects[&format!("/apis/admissionregistration.k8s.io/v1/{kind}/zen-watcher")];
            for hook in w["webhooks"].as_array().unwrap() {
                assert_eq!(
                    hook["clientConfig"]["caBundle"],
                    bundle_b64.as_str(),
                    "{kind}"
                );
            }
        }
    }
    let bundle = String::from_utf8(STANDARD.decode(&bundle_b64).unwrap()).unwrap();

    // kube-apiserver's view: TLS to zen-watcher.zen-system.svc verified with the caBundle.
    let list = "/apis/zen.watcher.io/v1alpha1/namespaces/default/observations";
    let proxy = front_proxy_ca
        .issue_client("front-proxy-client", None, DAY)
        .unwrap();
    let as_alice = |method: &'static str, path: &'static str| Request {
        port: secure,
        server_name: "zen-watcher.zen-system.svc",
        trust: &bundle,
        client: Some((&proxy.cert_pem, &proxy.key_pem)),
        method,
        path,
        headers: &[
            ("x-remote-user", "alice"),
            ("x-remote-group", "devs"),
            ("x-remote-group", "system:authenticated"),
        ],
        body: b"",
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        match send(as_alice("GET", list)).await {
            Ok(r) => break r,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "serve never answered ({e}):\n{}",
                    logs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(r.status, 200, "{}\n{}", r.body, logs());
    let r = send(as_alice(
        "DELETE",
        "/apis/zen.watcher.io/v1alpha1/namespaces/default/observations/bar",
    ))
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body["message"],
        "observations.zen.watcher.io \"bar\" is forbidden: User \"alice\" cannot delete resource \"observations\" in API group \"zen.watcher.io\" in the namespace \"default\""
    );
    let asked = state.lock().unwrap().reviews.clone();
    assert!(
        asked.iter().any(|r| r["spec"]["user"] == "alice"
            && r["spec"]["groups"] == json!(["devs", "system:authenticated"])),
        "{asked:?}"
    );

    // Identity headers from a client that is not the front proxy are not believed.
    let stranger = client_ca.issue_client("mallory", None, DAY).unwrap();
    let r = send(Request {
        client: Some((&stranger.cert_pem, &stranger.key_pem)),
        ..as_alice(
            "DELETE",
            "/apis/zen.watcher.io/v1alpha1/namespaces/default/observations/bar",
        )
    })
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("User \"mallory\""),
        "{}",
        r.body
    );

    // A service-account token, reviewed by kube-apiserver.
    let token = recording("authn/tokenreview-serviceaccount-pod-bound.json")["request"]["stdinToKubectl"]["spec"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = format!("Bearer {token}");
    let r = send(Request {
        client: None,
        headers: &[("authorization", &auth)],
        ..as_alice("GET", list)
    })
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(Request {
        client: None,
        headers: &[("authorization", "Bearer forged")],
        ..as_alice("GET", list)
    })
    .await
    .unwrap();
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (401, Some("Unauthorized"))
    );

    // Anonymous: health is open, the API is not.
    let anonymous = |path: &'static str| Request {
        client: None,
        headers: &[],
        ..as_alice("GET", path)
    };
    assert_eq!(send(anonymous("/healthz")).await.unwrap().status, 200);
    let r = send(anonymous(list)).await.unwrap();
    assert_eq!(r.status, 403);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("system:anonymous"),
        "{}",
        r.body
    );

    // Admission follows the IngestorPolicies of the cluster (webhook calls carry no client
    // certificate).
    let too_fast = json!({
        "apiVersion": "config.zen.watcher.io/v1alpha1", "kind": "Ingestor",
        "metadata": {"name": "fast", "namespace": "apps"},
        "spec": {
            "sources": [{"name": "s", "type": "webhook",
                         "auth": {"type": "bearer", "secretRef": {"name": "hooks", "key": "token"}},
                         "rateLimit": {"requestsPerSecond": 5000}}],
            "mapping": {"category": "'operations'", "severity": "'low'", "eventType": "'x'"}
        }
    });
    let validate = |object: &Value| {
        let body = support::admission_review(object);
        let bundle = bundle.clone();
        async move {
            send(Request {
                port: secure,
                server_name: "zen-watcher.zen-system.svc",
                trust: &bundle,
                client: None,
                method: "POST",
                path: "/admission/validate?timeout=10s",
                headers: &[("content-type", "application/json")],
                body: body.as_bytes(),
            })
            .await
            .unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = validate(&too_fast).await;
        if r.body["response"]["allowed"] == false {
            assert!(
                r.body["response"]["status"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("above 1000/s"),
                "{}",
                r.body
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster's policy was not applied: {}\n{}",
            r.body,
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A policy added later is followed through the watch.
    state.lock().unwrap().put(
        "/apis/config.zen.watcher.io/v1alpha1/ingestorpolicies/no-x",
        json!({"metadata": {"name": "no-x"}, "spec": {
            "validations": [{"expression": "object.spec.mapping.eventType != \"'x'\"",
                             "message": "event type x is reserved"}],
            "validationActions": ["Deny"]
        }}),
    );
    let mut slow = too_fast.clone();
    slow["spec"]["sources"][0]["rateLimit"]["requestsPerSecond"] = json!(10);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = validate(&slow).await;
        if r.body["response"]["allowed"] == false {
            assert!(
                r.body["response"]["status"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("reserved"),
                "{}",
                r.body
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new policy was not followed: {}\n{}",
            r.body,
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The cluster's Ingestors provision webhook endpoints, with their Secrets.
    let deliver = |body: &'static [u8]| Request {
        port: ingest,
        server_name: "zen-watcher.zen-system.svc",
        trust: &bundle,
        client: None,
        method: "POST",
        path: "/hooks/apps/hooks/ci",
        headers: &[
            ("content-type", "application/json"),
            ("authorization", "Bearer apps-token"),
        ],
        body,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let r = loop {
        let r = send(deliver(br#"{"pipeline": "nightly build #42"}"#))
            .await
            .unwrap();
        if r.status != 404 {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the endpoint never appeared:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(r.status, 201, "{}", r.body);
    let r = send(as_alice(
        "GET",
        "/apis/zen.watcher.io/v1alpha1/namespaces/apps/observations",
    ))
    .await
    .unwrap();
    assert_eq!(
        r.body["items"][0]["spec"]["title"], "nightly build #42",
        "{}",
        r.body
    );

    // A delivery the mapping cannot map is refused and counted in the Ingestor's status;
    // the leader reports every Ingestor's readiness, generation and paths.
    let r = send(deliver(br#"{"pipeline": 42}"#)).await.unwrap();
    assert_eq!(r.status, 422, "{}", r.body);
    let ingestors = "/apis/config.zen.watcher.io/v1alpha1/namespaces/apps/ingestors";
    let status_of = |name: &str| -> Value {
        state.lock().unwrap().objects[&format!("{ingestors}/{name}")]["status"].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (hooks, broken) = (status_of("hooks"), status_of("broken"));
        if hooks["mappingFailures"] == 1 && broken["conditions"][0]["status"] == "False" {
            assert_eq!(hooks["observedGeneration"], 2, "{hooks}");
            assert_eq!(hooks["conditions"][0]["type"], "Ready", "{hooks}");
            assert_eq!(hooks["conditions"][0]["status"], "True", "{hooks}");
            assert_eq!(
                hooks["endpoints"],
                json!([{"source": "ci", "path": "/hooks/apps/hooks/ci"}])
            );
            assert!(
                hooks["lastMappingFailure"]
                    .as_str()
                    .unwrap()
                    .contains("spec.title"),
                "{hooks}"
            );
            assert_eq!(
                broken["conditions"][0]["reason"], "SecretNotFound",
                "{broken}"
            );
            assert_eq!(broken["endpoints"], Value::Null, "{broken}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Ingestor statuses not written: {hooks} {broken}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A kubernetesEvents source: Warning Events of its namespace become Observations, and
    // kube-apiserver's count updates of one Event fold into one Observation.
    let event = |count: u64| {
        json!({"metadata": {"name": "web-1.1", "namespace": "apps", "uid": "e-1"},
               "type": "Warning", "reason": "BackOff", "count": count,
               "message": "Back-off restarting failed container",
               "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "web-1", "namespace": "apps"},
               "lastTimestamp": "2030-01-01T00:00:00Z"})
    };
    {
        let mut s = state.lock().unwrap();
        s.put("/api/v1/namespaces/apps/events/web-1.1", event(1));
        s.put(
            "/api/v1/namespaces/apps/events/normal",
            json!({"metadata": {"name": "normal", "namespace": "apps", "uid": "e-2"},
                   "type": "Normal", "reason": "Pulled", "involvedObject": {"kind": "Pod", "name": "web-1"}}),
        );
        s.put(
            &format!("{ingestors}/events"),
            json!({"metadata": {"name": "events", "namespace": "apps", "generation": 1}, "spec": {
                "sources": [{"name": "k8s", "type": "kubernetesEvents"}],
                "mapping": {"category": "'operations'", "severity": "'medium'", "eventType": "'warning_event'",
                            "title": "payload.reason + ': ' + payload.message",
                            "fingerprint": "payload.involvedObject.name + '/' + payload.reason"},
                "dedup": {"window": "30m"}
            }}),
        );
    }
    let observations = "/apis/zen.watcher.io/v1alpha1/namespaces/apps/observations?fieldSelector=spec.ingestor%3Devents";
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut bumped = false;
    loop {
        let r = send(as_alice("GET", observations)).await.unwrap();
        let items = r.body["items"].as_array().cloned().unwrap_or_default();
        if let [one] = &items[..] {
            assert_eq!(
                one["spec"]["title"], "BackOff: Back-off restarting failed container",
                "{one}"
            );
            if !bumped {
                state
                    .lock()
                    .unwrap()
                    .put("/api/v1/namespaces/apps/events/web-1.1", event(2));
                bumped = true;
            } else if one["status"]["count"] == 2 {
                break;
            }
        }
        assert!(
            items.len() <= 1,
            "the Normal Event was taken too: {}",
            r.body
        );
        assert!(
            Instant::now() < deadline,
            "no Observation from the Event: {}\n{}",
            r.body,
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Something overwrites the APIService's caBundle: it is put back.
    {
        let mut s = state.lock().unwrap();
        let api = s
            .objects
            .get_mut("/apis/apiregistration.k8s.io/v1/apiservices/v1alpha1.zen.watcher.io")
            .unwrap();
        api["spec"]["caBundle"] = json!(STANDARD.encode("stale"));
    }
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let restored = state.lock().unwrap().objects["/apis/apiregistration.k8s.io/v1/apiservices/v1alpha1.zen.watcher.io"]
            ["spec"]["caBundle"]
            == bundle_b64.as_str();
        if restored {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the caBundle was not repaired:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The front-proxy CA rotates in the authentication ConfigMap: the new proxy certificate
    // is believed without a restart, the old one no longer.
    let rotated_ca = Ca::generate("front-proxy-ca-2", DAY).unwrap();
    let rotated = rotated_ca
        .issue_client("front-proxy-client", None, DAY)
        .unwrap();
    {
        let mut s = state.lock().unwrap();
        let key = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication";
        let mut cm = s.objects[key].clone();
        cm["data"]["requestheader-client-ca-file"] = json!(rotated_ca.pem.cert_pem);
        s.put(key, cm);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = send(Request {
            client: Some((&rotated.cert_pem, &rotated.key_pem)),
            ..as_alice("GET", list)
        })
        .await;
        if matches!(&r, Ok(r) if r.status == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated front-proxy CA was not followed: {:?}\n{}",
            r.map(|r| (r.status, r.body)),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let old = send(as_alice("GET", list)).await;
    assert!(
        !matches!(&old, Ok(r) if r.status == 200),
        "the replaced front-proxy CA is still trusted"
    );

    // A second replica does not rotate: it serves the certificate the leader stored.
    let second = support::free_port();
    let _replica = start(second, support::free_port(), "replica");
    let deadline = Instant::now() + Duration::from_secs(30);
    let leaf = |r: &support::tls::Answer| {
        zen_certs::inspect::CertInfo::of_der(r.chain[0].as_ref(), "leaf")
            .unwrap()
            .serial
    };
    let first = leaf(&send(anonymous("/healthz")).await.unwrap());
    let replica = loop {
        match send(Request {
            port: second,
            ..anonymous("/healthz")
        })
        .await
        {
            Ok(r) => break r,
            Err(e) => {
                assert!(Instant::now() < deadline, "the replica never answered: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(leaf(&replica), first);
    let lease = state.lock().unwrap().objects["/apis/coordination.k8s.io/v1/namespaces/zen-system/leases/zen-watcher"].clone();
    assert_eq!(
        lease["spec"]["leaseTransitions"], 0,
        "the leader kept the Lease: {lease}"
    );

    // A CA Secret that cannot be used: both replicas keep their last good certificate (no
    // replica replaces a CA it cannot read: that would break every client's trust).
    let ca_secret = "/api/v1/namespaces/zen-system/secrets/zen-watcher-ca";
    let tls_secret = "/api/v1/namespaces/zen-system/secrets/zen-watcher-tls";
    let good_ca = state.lock().unwrap().objects[ca_secret].clone();
    {
        let mut s = state.lock().unwrap();
        let mut broken = good_ca.clone();
        for (_, v) in broken["data"].as_object_mut().unwrap().iter_mut() {
            *v = json!(STANDARD.encode("-----BEGIN CERTIFICATE-----\ngarbage\n"));
        }
        s.put(ca_secret, broken);
    }
    let replica_logs =
        || std::fs::read_to_string(dir.path().join("replica.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(logs().contains("serving the last good certificate")
        && replica_logs().contains("serving the last good certificate"))
    {
        assert!(
            Instant::now() < deadline,
            "the broken CA Secret was not reported:\n{}\n{}",
            logs(),
            replica_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let on = |port: u16| Request {
        port,
        ..anonymous("/healthz")
    };
    assert_eq!(leaf(&send(on(secure)).await.unwrap()), first);
    assert_eq!(leaf(&send(on(second)).await.unwrap()), first);
    {
        let mut s = state.lock().unwrap();
        let mut restored = good_ca.clone();
        restored["metadata"]["resourceVersion"] =
            s.objects[ca_secret]["metadata"]["resourceVersion"].clone();
        s.put(ca_secret, restored);
    }

    // The Secret is deleted: the leader issues a new serving certificate at once, and the
    // other replica serves it as soon as it is stored (both follow the Secrets by watch).
    {
        let mut s = state.lock().unwrap();
        if let Some(object) = s.objects.remove(tls_secret) {
            let _ = s.events.send((
                tls_secret.to_owned(),
                json!({"type": "DELETED", "object": object}),
            ));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (a, b) = (
            leaf(&send(on(secure)).await.unwrap()),
            leaf(&send(on(second)).await.unwrap()),
        );
        if a != first && a == b {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new certificate served by both replicas:\n{}\n{}",
            logs(),
            replica_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

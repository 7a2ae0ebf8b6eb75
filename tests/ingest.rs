//! Signed deliveries over TLS to `zen-watcher dev`: each sender's scheme, replay and limits,
//! dedup, live reconfiguration, and durability of what was acknowledged.

mod support;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use support::{
    DevServer,
    client::Client,
    delivery::{
        GITHUB_SECRET, dependabot_alert, github_headers, hex, hmac_sha256, json_ct, now,
        observations, post, post_as,
    },
};

/// Ingestors of the other presets, beside the examples.
const MORE: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: hooks, namespace: hooks}
stringData:
  standard: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
  stripe: whsec_stripe_test_secret
  gitlab: gitlab-token-1
  bearer: bearer-token-1
---
apiVersion: config.zen.watcher.io/v1alpha1
kind: Ingestor
metadata: {name: hooks, namespace: hooks}
spec:
  sources:
  - name: standard
    type: webhook
    auth: {type: hmac, secretRef: {name: hooks, key: standard}, hmac: {preset: standardWebhooks}}
  - name: stripe
    type: webhook
    auth: {type: hmac, secretRef: {name: hooks, key: stripe}, hmac: {preset: stripe}}
  - name: gitlab
    type: webhook
    auth: {type: hmac, secretRef: {name: hooks, key: gitlab}, hmac: {preset: gitlab}}
  - name: bearer
    type: webhook
    auth: {type: bearer, secretRef: {name: hooks, key: bearer}}
    rateLimit: {requestsPerSecond: 1, burst: 2}
    maxBodyBytes: 200
  filter: "!has(payload.ignore)"
  mapping:
    category: "'operations'"
    severity: "has(payload.severity) ? payload.severity : 'info'"
    eventType: "'test_event'"
    title: "has(payload.title) ? payload.title : null"
    fingerprint: "has(payload.id) ? string(payload.id) : null"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_deliveries_become_observations() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for f in ["github.yaml", "secrets.yaml"] {
        std::fs::copy(examples.join(f), config.join(f)).unwrap();
    }
    std::fs::write(config.join("more.yaml"), MORE).unwrap();
    let mut server = DevServer::start(&data, &["--config-dir", config.to_str().unwrap()]);
    let port = server.ingest_port;
    let api = Client::admin(&data, server.secure_port);
    let github = "/hooks/platform/github-security/github";

    // The endpoints appear once the config directory is read.
    let deadline = Instant::now() + Duration::from_secs(10);
    while post(&data, port, github, &[json_ct()], b"{}").await.status == 404 {
        assert!(
            Instant::now() < deadline,
            "endpoint never appeared:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // GitHub: a signed Dependabot alert becomes an Observation through the example mapping.
    let body = dependabot_alert(7);
    let r = post(
        &data,
        port,
        github,
        &github_headers(&body, "d-1", GITHUB_SECRET),
        &body,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let items = observations(&api, "platform").await;
    assert_eq!(items.len(), 1);
    let spec = &items[0]["spec"];
    assert_eq!(spec["source"], "github");
    assert_eq!(spec["severity"], "high");
    assert_eq!(spec["eventType"], "vulnerable_dependency");
    assert_eq!(spec["title"], "Prototype pollution in lodash");
    assert_eq!(spec["ingestor"], "github-security");
    assert_eq!(spec["ttlSecondsAfterCreation"], 720 * 3600);

    // The same delivery id again is a replay; a new id with the same alert is folded in.
    let r = post(
        &data,
        port,
        github,
        &github_headers(&body, "d-1", GITHUB_SECRET),
        &body,
    )
    .await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (409, Some("replayed"))
    );
    let r = post(
        &data,
        port,
        github,
        &github_headers(&body, "d-2", GITHUB_SECRET),
        &body,
    )
    .await;
    assert_eq!(
        (r.status, r.body["count"].as_u64()),
        (200, Some(2)),
        "{}",
        r.body
    );
    let items = observations(&api, "platform").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["status"]["count"], 2);

    // Wrong and missing signatures store nothing.
    let other = dependabot_alert(8);
    let r = post(
        &data,
        port,
        github,
        &github_headers(&other, "d-3", "wrong-secret"),
        &other,
    )
    .await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (401, Some("bad_signature"))
    );
    let r = post(
        &data,
        port,
        github,
        &[json_ct(), ("x-github-delivery", "d-4".into())],
        &other,
    )
    .await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (401, Some("missing_signature"))
    );
    // A refused delivery id is not remembered: the properly signed retry gets through.
    let r = post(
        &data,
        port,
        github,
        &github_headers(&other, "d-3", GITHUB_SECRET),
        &other,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(observations(&api, "platform").await.len(), 2);

    // Standard Webhooks: signs id and timestamp; a stale timestamp is refused.
    let path = "/hooks/hooks/hooks/standard";
    let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let standard = |id: &str, ts: i64, body: &[u8]| {
        let sig = STANDARD.encode(hmac_sha256(
            &key,
            &[id.as_bytes(), b".", ts.to_string().as_bytes(), b".", body],
        ));
        vec![
            json_ct(),
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", format!("v1,{sig}")),
        ]
    };
    let body = br#"{"id": "sw-1", "severity": "low", "title": "hello"}"#;
    let r = post(&data, port, path, &standard("msg_1", now(), body), body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = post(
        &data,
        port,
        path,
        &standard("msg_2", now() - 600, body),
        body,
    )
    .await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (401, Some("stale_timestamp"))
    );
    let r = post(&data, port, path, &standard("msg_1", now(), body), body).await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (409, Some("replayed"))
    );

    // Stripe: `t=` and `v1=` over `{t}.{body}`.
    let path = "/hooks/hooks/hooks/stripe";
    let body = br#"{"id": "evt_1", "type": "charge.failed", "severity": "medium"}"#;
    let t = now().to_string();
    let sig = hex(&hmac_sha256(
        b"whsec_stripe_test_secret",
        &[t.as_bytes(), b".", body],
    ));
    let r = post(
        &data,
        port,
        path,
        &[json_ct(), ("stripe-signature", format!("t={t},v1={sig}"))],
        body,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = post(
        &data,
        port,
        path,
        &[
            json_ct(),
            ("stripe-signature", format!("t={t},v1={}", "0".repeat(64))),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, 401);

    // GitLab's token; a filter that says no stores nothing and answers 202.
    let path = "/hooks/hooks/hooks/gitlab";
    let body = br#"{"id": "gl-1"}"#;
    let r = post(
        &data,
        port,
        path,
        &[json_ct(), ("x-gitlab-token", "gitlab-token-1".into())],
        body,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = post(
        &data,
        port,
        path,
        &[json_ct(), ("x-gitlab-token", "nope".into())],
        body,
    )
    .await;
    assert_eq!(r.status, 401);
    let before = observations(&api, "hooks").await.len();
    let r = post(
        &data,
        port,
        path,
        &[json_ct(), ("x-gitlab-token", "gitlab-token-1".into())],
        br#"{"ignore": true}"#,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(observations(&api, "hooks").await.len(), before);

    // A mapping result the schema refuses is a 422 naming the field, and nothing is stored.
    let r = post(
        &data,
        port,
        path,
        &[json_ct(), ("x-gitlab-token", "gitlab-token-1".into())],
        br#"{"severity": "CRITICAL"}"#,
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("spec.severity"),
        "{}",
        r.body
    );
    assert_eq!(observations(&api, "hooks").await.len(), before);

    // Limits: content type, body size, rate (burst 2, then 429 with Retry-After).
    let path = "/hooks/hooks/hooks/bearer";
    let auth = ("authorization", "Bearer bearer-token-1".to_owned());
    let r = post(
        &data,
        port,
        path,
        &[("content-type", "text/plain".into()), auth.clone()],
        b"hi",
    )
    .await;
    assert_eq!(r.status, 415);
    let big = format!(r#"{{"title": "{}"}}"#, "x".repeat(300));
    let r = post(
        &data,
        port,
        path,
        &[json_ct(), auth.clone()],
        big.as_bytes(),
    )
    .await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (413, Some("body_too_large"))
    );
    // (the two refusals above took the bucket's two tokens)
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let small = br#"{"title": "ok"}"#;
    assert_eq!(
        post(&data, port, path, &[json_ct(), auth.clone()], small)
            .await
            .status,
        201
    );
    assert_eq!(
        post(&data, port, path, &[json_ct(), auth.clone()], small)
            .await
            .status,
        201
    );
    let r = post(&data, port, path, &[json_ct(), auth.clone()], small).await;
    assert_eq!(r.status, 429);
    assert!(r.headers.get("retry-after").is_some());

    // In-cluster callers deliver through the API's ingest subresource, authenticated by
    // the API instead of a signature.
    let sub = "/apis/zen.watcher.io/v1alpha1/namespaces/hooks/webhookendpoints/hooks-gitlab/ingest";
    let before = observations(&api, "hooks").await.len();
    let r = api
        .send(
            "POST",
            sub,
            &[("content-type", "application/json")],
            r#"{"id": "in-cluster", "title": "from a pod"}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(observations(&api, "hooks").await.len(), before + 1);
    let r = api
        .send(
            "POST",
            &sub.replace("hooks-gitlab", "hooks-nope"),
            &[("content-type", "application/json")],
            "{}",
        )
        .await;
    assert_eq!((r.status, r.json()["kind"].as_str()), (404, Some("Status")));

    // Each endpoint is a read-only WebhookEndpoint with its settings and counters.
    let whe =
        "/apis/zen.watcher.io/v1alpha1/namespaces/platform/webhookendpoints/github-security-github";
    let deadline = Instant::now() + Duration::from_secs(10);
    let endpoint = loop {
        let r = api.send("GET", whe, &[], "").await;
        if r.status == 200 && r.json()["status"]["rejected"]["badSignature"] == 1 {
            break r.json();
        }
        assert!(
            Instant::now() < deadline,
            "WebhookEndpoint not in step: {}",
            String::from_utf8_lossy(&r.body)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(endpoint["spec"]["path"], github);
    assert_eq!(endpoint["spec"]["auth"], "hmac");
    assert_eq!(endpoint["spec"]["rateLimit"]["requestsPerSecond"], 50);
    assert_eq!(endpoint["status"]["accepted"], 3);
    assert_eq!(endpoint["status"]["rejected"]["replayed"], 1);
    let out = server.kubectl_ok(&["get", "webhookendpoints", "-A"]);
    assert!(
        out.contains("hooks-bearer") && out.contains(github),
        "{out}"
    );
    let r = api.send("DELETE", whe, &[], "").await;
    assert_eq!(r.status, 405, "WebhookEndpoints are read-only");

    // mtls: the client certificate must come from the CA bundle in the source's Secret.
    let falco_ca = zen_certs::issue::Ca::generate("falco-ca", Duration::from_secs(3600)).unwrap();
    let indented: String = falco_ca
        .pem
        .cert_pem
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    std::fs::write(
        config.join("mtls.yaml"),
        format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: falco-client-ca, namespace: hooks}}
stringData:
  ca.crt: |
{indented}---
apiVersion: config.zen.watcher.io/v1alpha1
kind: Ingestor
metadata: {{name: falco, namespace: hooks}}
spec:
  sources:
  - name: falco
    type: webhook
    auth: {{type: mtls, secretRef: {{name: falco-client-ca, key: ca.crt}}}}
  mapping:
    category: "'security'"
    severity: "'high'"
    eventType: "'runtime_alert'"
    title: payload.rule
"#
        ),
    )
    .unwrap();
    let path = "/hooks/hooks/falco/falco";
    let deadline = Instant::now() + Duration::from_secs(5);
    while post(&data, port, path, &[json_ct()], b"{}").await.status == 404 {
        assert!(
            Instant::now() < deadline,
            "mtls endpoint never appeared:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let node = falco_ca
        .issue_client("falco-node-1", None, Duration::from_secs(3600))
        .unwrap();
    let body = br#"{"rule": "Terminal shell in container", "priority": "Warning"}"#;
    let r = post_as(&data, port, path, &[json_ct()], body, Some(&node)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let stranger = zen_certs::issue::Ca::generate("other", Duration::from_secs(3600))
        .unwrap()
        .issue_client("falco-node-1", None, Duration::from_secs(3600))
        .unwrap();
    let r = post_as(&data, port, path, &[json_ct()], body, Some(&stranger)).await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (401, Some("bad_certificate"))
    );
    let r = post(&data, port, path, &[json_ct()], body).await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (401, Some("missing_certificate"))
    );

    // Changing an Ingestor changes its endpoint within a second; deleting removes it.
    let rotated = MORE.replace("gitlab: gitlab-token-1", "gitlab: gitlab-token-2");
    std::fs::write(config.join("more.yaml"), &rotated).unwrap();
    let path = "/hooks/hooks/hooks/gitlab";
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = post(
            &data,
            port,
            path,
            &[json_ct(), ("x-gitlab-token", "gitlab-token-2".into())],
            br#"{"id": "gl-2"}"#,
        )
        .await;
        if r.status == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new token was not accepted in time: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // During a rotation the old secret keeps verifying (one replay window).
    let r = post(
        &data,
        port,
        path,
        &[json_ct(), ("x-gitlab-token", "gitlab-token-1".into())],
        br#"{"id": "gl-3"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    std::fs::remove_file(config.join("more.yaml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while post(&data, port, path, &[json_ct()], b"{}").await.status != 404 {
        assert!(Instant::now() < deadline, "the endpoint was not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = api
            .send(
                "GET",
                "/apis/zen.watcher.io/v1alpha1/namespaces/hooks/webhookendpoints?labelSelector=zen.watcher.io%2Fingestor%3Dhooks",
                &[],
                "",
            )
            .await;
        if r.json()["items"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "WebhookEndpoints of a deleted Ingestor remain"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Deliveries are counted by endpoint and code, refusals by reason.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            &format!("http://127.0.0.1:{}/metrics", server.metrics_port),
        ])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&out.stdout);
    let line = |prefix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in:\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        line(
            r#"zen_watcher_ingest_rejected_total{ingestor="github-security",namespace="platform",reason="bad_signature",source="github"}"#
        ),
        "1"
    );
    assert_eq!(
        line(
            r#"zen_watcher_ingest_requests_total{code="201",ingestor="github-security",namespace="platform",source="github"}"#
        ),
        "2"
    );

    // What was answered 2xx survives kill -9 right after the answer.
    let body = dependabot_alert(9);
    let r = post(
        &data,
        port,
        github,
        &github_headers(&body, "d-9", GITHUB_SECRET),
        &body,
    )
    .await;
    assert_eq!(r.status, 201);
    let name = r.body["observation"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    server.kill_and_restart(&["--config-dir", config.to_str().unwrap()]);
    let api = Client::admin(&data, server.secure_port);
    let r = api
        .send(
            "GET",
            &format!("/apis/zen.watcher.io/v1alpha1/namespaces/platform/observations/{name}"),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
}

/// The port-wide limit is the operator's to set; a limit that would refuse everything is a
/// command-line error, not a server that answers 429 to every sender.
#[test]
fn the_port_wide_rate_limit_is_a_checked_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zen-watcher"))
        .args(["dev", "--ingest-rate-limit", "0"])
        .output()
        .expect("run zen-watcher");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--ingest-rate-limit"), "{stderr}");
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_zen-watcher"))
        .args(["dev", "--help"])
        .output()
        .expect("run zen-watcher");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--ingest-rate-limit") && help.contains("[default: 10000]"),
        "{help}"
    );
}

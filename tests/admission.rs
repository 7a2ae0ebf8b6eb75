//! The admission webhook on `zen-watcher dev`'s secure port over real TLS, with policies and
//! namespaces read from `--config-dir` (and re-read when they change), and `policy test` on the
//! examples and on known-bad Ingestors.

mod support;

use std::{path::Path, process::Command, time::Duration};

use serde_json::{Value, json};
use support::{DevServer, client::Client};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
use support::admission_review as review;

fn unauthenticated() -> Value {
    json!({
        "apiVersion": "config.zen.watcher.io/v1alpha1", "kind": "Ingestor",
        "metadata": {"name": "open-door", "namespace": "shop"},
        "spec": {
            "sources": [{"name": "anyone", "type": "webhook", "auth": {"type": "none"}}],
            "mapping": {"category": "'operations'", "severity": "'info'", "eventType": "'ping'"}
        }
    })
}

fn write_namespace(dir: &Path, labels: Value) {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": labels}});
    std::fs::write(dir.join("namespace.json"), ns.to_string()).unwrap();
}

async fn post(client: &Client, path: &str, body: &str) -> Value {
    let reply = client
        .send("POST", path, &[("content-type", "application/json")], body)
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    serde_json::from_slice(&reply.body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_answer_over_tls_and_follow_the_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    for f in ["baseline.yaml", "defaults.yaml"] {
        std::fs::copy(
            Path::new(ROOT).join("manifests/policies").join(f),
            config.join(f),
        )
        .unwrap();
    }
    write_namespace(&config, json!({}));
    let data = dir.path().join("data");
    let config_arg = config.display().to_string();
    let server = DevServer::start(&data, &["--config-dir", &config_arg]);
    let client = Client::admin(&data, server.secure_port);
    let body = review(&unauthenticated());

    // The policies load in the background; wait for the denial.
    let mut denied = Value::Null;
    for _ in 0..100 {
        denied = post(&client, "/admission/validate", &body).await;
        if denied["response"]["allowed"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = &denied["response"];
    assert_eq!(r["allowed"], false, "{denied}");
    assert_eq!(r["status"]["code"], 403);
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "IngestorPolicy \"zen-watcher-require-authentication\" denied the request:"
        ),
        "{message}"
    );
    assert!(
        message.contains(
            "(expression: object.spec.sources.all(s, s.type != 'webhook' || s.auth.type != 'none'))"
        ),
        "{message}"
    );

    // Mutation returns the defaults as a JSON patch.
    let mutated = post(&client, "/admission/mutate", &body).await;
    assert_eq!(mutated["response"]["allowed"], true);
    assert_eq!(mutated["response"]["patchType"], "JSONPatch");

    // Opting the namespace out in the config directory takes effect without a restart.
    write_namespace(
        &config,
        json!({"zen.watcher.io/allow-unauthenticated": "true"}),
    );
    let mut allowed = false;
    for _ in 0..100 {
        let answer = post(&client, "/admission/validate", &body).await;
        if answer["response"]["allowed"] == true {
            allowed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(allowed, "the namespace label was not picked up");

    // Not an AdmissionReview: a 400 Status, not a crash.
    let reply = client
        .send(
            "POST",
            "/admission/validate",
            &[("content-type", "application/json")],
            "{}",
        )
        .await;
    assert_eq!(reply.status, 400);
    let status: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(status["reason"], "BadRequest");
    // The API is still served on the same port.
    let reply = client
        .send("GET", "/apis/zen.watcher.io/v1alpha1", &[], "")
        .await;
    assert_eq!(reply.status, 200);
}

fn policy_test(file: &Path, json: bool) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zen-watcher"));
    cmd.args(["policy", "test", "-f"])
        .arg(file)
        .arg("--policies")
        .arg(Path::new(ROOT).join("manifests/policies"));
    if json {
        cmd.args(["-o", "json"]);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn policy_test_allows_every_example() {
    let mut checked = 0;
    for entry in std::fs::read_dir(Path::new(ROOT).join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if !text.contains("kind: Ingestor\n") {
            continue;
        }
        let (code, stdout, stderr) = policy_test(&path, false);
        assert_eq!(code, 0, "{}: {stdout}{stderr}", path.display());
        assert!(stdout.starts_with("ALLOWED Ingestor "), "{stdout}");
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[test]
fn policy_test_denies_each_bad_ingestor_with_its_reason() {
    let bad = Path::new(ROOT).join("tests/policy/bad");
    for (file, reason) in [
        (
            "unauthenticated.yaml",
            "IngestorPolicy \"zen-watcher-require-authentication\" denied the request: Ingestor open-door has webhook sources with auth.type none",
        ),
        (
            "rate-limit.yaml",
            "IngestorPolicy \"zen-watcher-baseline\" denied the request: rateLimit.requestsPerSecond is at most 1000 for every source",
        ),
        (
            "ttl-too-long.yaml",
            "IngestorPolicy \"zen-watcher-baseline\" denied the request: ttl.max is at most 30 days (720h)",
        ),
        (
            "bad-cel.yaml",
            "Ingestor.config.zen.watcher.io \"typo\" is invalid: spec.mapping.severity: Invalid value: \"payload.reason == 'OOMKilling' ? 'high' :\": compilation failed: ERROR: <input>:1:42: Syntax error",
        ),
        (
            "ttl-default-above-max.yaml",
            "Ingestor.config.zen.watcher.io \"upside-down\" is invalid: spec.ttl.default: Invalid value: ttl.default must not exceed ttl.max",
        ),
        (
            "bad-metadata.yaml",
            "Ingestor.config.zen.watcher.io \"unlabelled\" is invalid: metadata.labels.team: invalid type: integer `5`, expected a string",
        ),
        (
            "old-shape.yaml",
            "Ingestor.config.zen.watcher.io \"trivy\" is invalid: [.spec.filters: field not declared in schema, .spec.ingester: field not declared in schema, .spec.source: field not declared in schema, spec.sources: Required value]",
        ),
    ] {
        let (code, stdout, stderr) = policy_test(&bad.join(file), false);
        assert_eq!(code, 1, "{file}: {stdout}{stderr}");
        assert!(
            stdout.contains(&format!("  reason: {reason}")),
            "{file}: {stdout}"
        );
        let (code, stdout, _) = policy_test(&bad.join(file), true);
        assert_eq!(code, 1);
        let verdicts: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(verdicts[0]["allowed"], false, "{file}");
        assert!(
            verdicts[0]["message"].as_str().unwrap().starts_with(reason),
            "{file}"
        );
    }
}

#[test]
fn policy_test_reports_unusable_input_with_exit_2() {
    let (code, _, stderr) = policy_test(Path::new("/nonexistent/ingestor.yaml"), false);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("error: /nonexistent/ingestor.yaml:"),
        "{stderr}"
    );
    let (code, _, stderr) = policy_test(&Path::new(ROOT).join("examples/secrets.yaml"), false);
    assert_eq!(code, 2);
    assert!(stderr.contains("no Ingestor in the file"), "{stderr}");
}

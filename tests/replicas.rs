//! Two `zen-watcher dev` replicas on one real etcd: what one writes the other lists and
//! watches, a write racing the other's loses with 409, and a webhook delivered to both is
//! taken once.

mod support;

use std::{path::Path, time::Duration};

use serde_json::json;
use support::{
    DevServer,
    client::{Client, next_event},
    delivery::{GITHUB_SECRET, dependabot_alert, github_headers, json_ct, observations, post},
    etcd_server::Etcd,
};

const OBS: &str = "/apis/zen.watcher.io/v1alpha1/namespaces/default/observations";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_etcd_serve_one_set_of_observations() {
    let mut etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for f in ["github.yaml", "secrets.yaml"] {
        std::fs::copy(examples.join(f), config.join(f)).unwrap();
    }
    let store = format!("etcd:{}", etcd.endpoint());
    let args = ["--config-dir", config.to_str().unwrap(), "--store", &store];
    let a = DevServer::start(&dir.path().join("a"), &args);
    let b = DevServer::start(&dir.path().join("b"), &args);
    let (ca, cb) = (
        Client::admin(&a.data_dir, a.secure_port),
        Client::admin(&b.data_dir, b.secure_port),
    );

    // A watch on one replica sees a create on the other.
    let rv = cb.send("GET", OBS, &[], "").await.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, mut events) = cb
        .watch(&format!("{OBS}?watch=true&resourceVersion={rv}"), &[])
        .await;
    assert_eq!(status, 200);
    let observation = json!({
        "apiVersion": "zen.watcher.io/v1alpha1", "kind": "Observation",
        "metadata": {"name": "shared"},
        "spec": {"source": "trivy", "category": "security", "severity": "high", "eventType": "vulnerability"}
    });
    let r = ca
        .send(
            "POST",
            OBS,
            &[("content-type", "application/json")],
            &observation.to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let e = next_event(&mut events).await;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("shared"))
    );

    // Both read it; the replica that writes second with the same resourceVersion loses.
    let seen = cb
        .send("GET", &format!("{OBS}/shared"), &[], "")
        .await
        .json();
    let mut change = seen.clone();
    change["metadata"]["labels"] = json!({"team": "a"});
    let r = ca
        .send(
            "PUT",
            &format!("{OBS}/shared"),
            &[("content-type", "application/json")],
            &change.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    change["metadata"]["labels"] = json!({"team": "b"});
    let r = cb
        .send(
            "PUT",
            &format!("{OBS}/shared"),
            &[("content-type", "application/json")],
            &change.to_string(),
        )
        .await;
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["reason"], "Conflict");
    let e = next_event(&mut events).await;
    assert_eq!(e["type"], "MODIFIED");
    assert_eq!(e["object"]["metadata"]["labels"]["team"], "a");

    // One webhook delivery sent to both replicas (a sender's retry landing elsewhere):
    // taken once, refused as a replay by the other.
    let path = "/hooks/platform/github-security/github";
    let body = dependabot_alert(7);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for (server, name) in [(&a, "a"), (&b, "b")] {
        while post(
            &server.data_dir,
            server.ingest_port,
            path,
            &[json_ct()],
            b"{}",
        )
        .await
        .status
            == 404
        {
            assert!(
                std::time::Instant::now() < deadline,
                "replica {name} never served {path}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let headers = github_headers(&body, "both-1", GITHUB_SECRET);
    let first = post(&a.data_dir, a.ingest_port, path, &headers, &body).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = post(&b.data_dir, b.ingest_port, path, &headers, &body).await;
    assert_eq!(
        (again.status, again.body["reason"].as_str()),
        (409, Some("replayed")),
        "{}",
        again.body
    );
    // A new delivery of the same alert to the other replica folds into the same
    // Observation (dedup by a name both compute).
    let other = post(
        &b.data_dir,
        b.ingest_port,
        path,
        &github_headers(&body, "both-2", GITHUB_SECRET),
        &body,
    )
    .await;
    assert_eq!(other.status, 200, "{}", other.body);
    assert_eq!(other.body["count"], 2);
    for client in [&ca, &cb] {
        let items = observations(client, "platform").await;
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0]["status"]["count"], 2);
    }

    // etcd goes away: requests fail fast with a 503 Status, readiness follows; when it is
    // back, both replicas serve again.
    etcd.kill();
    let r = ca.send("GET", OBS, &[], "").await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["kind"], "Status");
    assert_eq!(r.json()["reason"], "ServiceUnavailable");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("storage is unavailable"),
        "{}",
        r.json()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cb.send("GET", "/readyz", &[], "").await.status != 503 {
        assert!(
            std::time::Instant::now() < deadline,
            "readiness stayed true without etcd"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    etcd.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for client in [&ca, &cb] {
        while client.send("GET", OBS, &[], "").await.status != 200
            || client.send("GET", "/readyz", &[], "").await.status != 200
        {
            assert!(
                std::time::Instant::now() < deadline,
                "a replica did not recover"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(observations(&ca, "default").await.len(), 1);
}

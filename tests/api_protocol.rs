//! The aggregated API's protocol against `zen-watcher dev` over real TLS: discovery as the
//! recorded kube-apiserver 1.28 asks for it, conflicts, patch types, partial metadata, watch
//! semantics and TTL expiry.

mod support;

use serde_json::{Value, json};
use support::{
    DevServer,
    client::{Client, next_event},
};

const RECORDINGS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/testdata/kube-apiserver-1.28"
);
const OBS: &str = "/apis/zen.watcher.io/v1alpha1/namespaces/default/observations";

fn recording(name: &str) -> Value {
    let path = format!("{RECORDINGS}/{name}");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .expect("recording is JSON")
}

fn header<'a>(rec: &'a Value, name: &str) -> Option<&'a str> {
    rec["request"]["headers"][name].as_str()
}

fn observation(name: &str, extra: Value) -> String {
    let mut o = json!({
        "apiVersion": "zen.watcher.io/v1alpha1", "kind": "Observation",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"source": "trivy", "category": "security", "severity": "high", "eventType": "vulnerability"}
    });
    if let (Some(spec), Some(extra)) = (o["spec"].as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    o.to_string()
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_as_kube_apiserver_asks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = DevServer::start(&data, &[]);
    let client = Client::admin(&data, server.secure_port);

    // The availability probe: no Accept header at all.
    let probe = recording("aggregation/availability-check.json");
    let path = probe["request"]["path"].as_str().unwrap();
    assert_eq!(header(&probe, "Accept"), None);
    let r = client.send("GET", path, &[], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["kind"], "APIResourceList");
    assert_eq!(r.json()["resources"][0]["name"], "observations");

    // Aggregated discovery v2beta1, exactly as kube-apiserver 1.28 asks for it.
    let agg = recording("aggregation/discovery-apis-v2beta1-aggregated.json");
    let accept = header(&agg, "Accept").unwrap();
    let r = client.send("GET", "/apis", &[("accept", accept)], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["content-type"], accept,
        "answered with exactly the Content-Type asked for"
    );
    let body = r.json();
    assert_eq!(body["apiVersion"], "apidiscovery.k8s.io/v2beta1");
    let recorded = &agg["response"]["body"]["items"][0]["versions"][0]["resources"][0];
    let ours = &body["items"][0]["versions"][0]["resources"][0];
    for field in [
        "resource",
        "responseKind",
        "scope",
        "singularResource",
        "verbs",
        "shortNames",
    ] {
        assert_eq!(ours[field], recorded[field], "{field}");
    }
    let etag = r.headers["etag"].to_str().unwrap().to_owned();
    let r = client
        .send(
            "GET",
            "/apis",
            &[("accept", accept), ("if-none-match", &etag)],
            "",
        )
        .await;
    assert_eq!(r.status, 304, "revalidation with the ETag");

    // v2 for newer clients; legacy APIGroupList for plain JSON.
    let v2 =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let r = client.send("GET", "/apis", &[("accept", v2)], "").await;
    assert_eq!(
        r.headers["content-type"],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    let r = client
        .send("GET", "/apis", &[("accept", "application/json")], "")
        .await;
    assert_eq!(r.json()["kind"], "APIGroupList");

    // OpenAPI v2 revalidation and the v3 root's hash.
    let r = client
        .send("GET", "/openapi/v2", &[("accept", "application/json")], "")
        .await;
    assert_eq!(r.status, 200);
    let etag = r.headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        client
            .send("GET", "/openapi/v2", &[("if-none-match", &etag)], "")
            .await
            .status,
        304
    );
    let root = client.send("GET", "/openapi/v3", &[], "").await.json();
    let url = root["paths"]["apis/zen.watcher.io/v1alpha1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = client
        .send("GET", &url, &[("accept", "application/json")], "")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["cache-control"], "public, immutable");
    assert!(r.json()["components"]["schemas"]["io.zen.watcher.v1alpha1.Observation"].is_object());

    let r = client.send("GET", "/version", &[], "").await;
    assert_eq!(r.json()["major"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_kube_apiserver_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = DevServer::start(&data, &[]);
    let c = Client::admin(&data, server.secure_port);

    let created = c
        .send("POST", OBS, &[JSON], &observation("a", json!({})))
        .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let a = created.json();
    let rv1 = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(a["status"]["count"], 1);
    assert!(
        a["spec"]["detectedAt"].is_string(),
        "detectedAt defaults to the creation time"
    );

    let again = c
        .send("POST", OBS, &[JSON], &observation("a", json!({})))
        .await;
    assert_eq!(
        (again.status, again.json()["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );

    // generateName.
    let mut generated: Value = serde_json::from_str(&observation("x", json!({}))).unwrap();
    generated["metadata"] = json!({"generateName": "scan-"});
    let r = c.send("POST", OBS, &[JSON], &generated.to_string()).await;
    assert_eq!(r.status, 201);
    assert!(
        r.json()["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("scan-")
    );

    // dryRun stores nothing.
    let r = c
        .send(
            "POST",
            &format!("{OBS}?dryRun=All"),
            &[JSON],
            &observation("dry", json!({})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        c.send("GET", &format!("{OBS}/dry"), &[], "").await.status,
        404
    );

    // A stale update conflicts.
    let mut update = a.clone();
    update["spec"]["severity"] = json!("low");
    let r = c
        .send("PUT", &format!("{OBS}/a"), &[JSON], &update.to_string())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["metadata"]["generation"], 2);
    let r = c
        .send("PUT", &format!("{OBS}/a"), &[JSON], &update.to_string())
        .await;
    assert_eq!(r.status, 409);
    let status = r.json();
    assert_eq!(status["reason"], "Conflict");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified"),
        "{status}"
    );
    assert_ne!(update["metadata"]["resourceVersion"], json!(null));
    assert_eq!(update["metadata"]["resourceVersion"], json!(rv1));

    // Patch types.
    let r = c
        .send(
            "PATCH",
            &format!("{OBS}/a"),
            &[("content-type", "application/strategic-merge-patch+json")],
            "{}",
        )
        .await;
    assert_eq!(r.status, 415);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("application/merge-patch+json")
    );
    let r = c
        .send(
            "PATCH",
            &format!("{OBS}/a"),
            &[("content-type", "application/apply-patch+yaml")],
            "{}",
        )
        .await;
    assert_eq!(r.status, 415);
    let r = c
        .send(
            "PATCH",
            &format!("{OBS}/a"),
            &[("content-type", "application/json-patch+json")],
            r#"[{"op":"test","path":"/spec/severity","value":"critical"}]"#,
        )
        .await;
    assert_eq!(r.status, 422);

    // The status subresource changes status only; the main resource leaves status alone.
    let r = c
        .send(
            "PATCH",
            &format!("{OBS}/a/status"),
            &[("content-type", "application/merge-patch+json")],
            r#"{"status":{"count":5},"spec":{"severity":"info"}}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (
            r.json()["status"]["count"].clone(),
            r.json()["spec"]["severity"].clone()
        ),
        (json!(5), json!("low"))
    );
    let r = c
        .send(
            "PATCH",
            &format!("{OBS}/a"),
            &[("content-type", "application/merge-patch+json")],
            r#"{"status":{"count":9}}"#,
        )
        .await;
    assert_eq!(r.json()["status"]["count"], 5);

    // Invalid objects: 422 with field causes; unknown fields under Strict: 400.
    let r = c
        .send(
            "POST",
            OBS,
            &[JSON],
            &observation(
                "bad",
                json!({"severity": "CRITICAL", "eventType": "Bad Type"}),
            ),
        )
        .await;
    assert_eq!(r.status, 422);
    let status = r.json();
    let mut fields: Vec<&str> = status["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["spec.eventType", "spec.severity"]);
    let r = c
        .send(
            "POST",
            &format!("{OBS}?fieldValidation=Strict"),
            &[JSON],
            &observation("bad", json!({"colour": "red"})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .send(
            "POST",
            OBS,
            &[JSON],
            &observation("warned", json!({"colour": "red"})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(
        r.headers.get_all("warning").iter().any(|w| w
            .to_str()
            .unwrap_or("")
            .contains("unknown field \\\"spec.colour\\\"")),
        "{:?}",
        r.headers
    );

    // Partial metadata, as the garbage collector asks.
    let r = c
        .send("GET", OBS, &[("accept", "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json")], "")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["kind"], "PartialObjectMetadataList");
    assert!(r.json()["items"][0].get("spec").is_none());
    let r = c
        .send(
            "GET",
            OBS,
            &[("accept", "application/vnd.kubernetes.protobuf")],
            "",
        )
        .await;
    assert_eq!(r.status, 406);

    // Delete preconditions.
    let r = c
        .send(
            "DELETE",
            &format!("{OBS}/a"),
            &[JSON],
            r#"{"preconditions":{"uid":"not-it"}}"#,
        )
        .await;
    assert_eq!(r.status, 409);
    let r = c
        .send(
            "DELETE",
            &format!("{OBS}/a"),
            &[JSON],
            r#"{"propagationPolicy":"Background"}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    let r = c.send("GET", &format!("{OBS}/a"), &[], "").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["message"],
        "observations.zen.watcher.io \"a\" not found"
    );

    // deletecollection with a selector.
    let r = c
        .send("DELETE", &format!("{OBS}?labelSelector=app%3Dweb"), &[], "")
        .await;
    assert_eq!(r.status, 200);
    let left = c.send("GET", OBS, &[], "").await.json();
    let names: Vec<&str> = left["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert!(
        names.len() == 1 && names[0].starts_with("scan-"),
        "only the unlabelled object is left: {left}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = DevServer::start(&data, &[]);
    let c = Client::admin(&data, server.secure_port);
    let a = c
        .send("POST", OBS, &[JSON], &observation("a", json!({})))
        .await
        .json();
    let rv_a: u64 = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // sendInitialEvents with the initial-events-end bookmark.
    let (status, mut events) = c
        .watch(&format!("{OBS}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&resourceVersion={rv_a}"), &[])
        .await;
    assert_eq!(status, 200);
    let e = next_event(&mut events).await;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("a"))
    );
    let e = next_event(&mut events).await;
    assert_eq!(e["type"], "BOOKMARK");
    assert_eq!(
        e["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );

    // Resume from a resourceVersion: only later changes, in order; a label selector turns
    // objects leaving the selection into DELETED.
    let (_, mut from_a) = c
        .watch(
            &format!("{OBS}?watch=true&resourceVersion={rv_a}&labelSelector=app%3Dweb"),
            &[],
        )
        .await;
    c.send("POST", OBS, &[JSON], &observation("b", json!({})))
        .await;
    c.send(
        "PATCH",
        &format!("{OBS}/a"),
        &[("content-type", "application/merge-patch+json")],
        r#"{"metadata":{"labels":{"app":"db"}}}"#,
    )
    .await;
    let e = next_event(&mut from_a).await;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("b"))
    );
    let e = next_event(&mut from_a).await;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("DELETED"), Some("a"))
    );
    let e = next_event(&mut events).await;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("b"))
    );

    // Table watch, as kubectl get -w asks.
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let rv_now = c.send("GET", OBS, &[], "").await.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, mut tables) = c
        .watch(
            &format!("{OBS}?watch=true&resourceVersion={rv_now}"),
            &[("accept", table)],
        )
        .await;
    c.send("DELETE", &format!("{OBS}/b"), &[], "").await;
    let e = next_event(&mut tables).await;
    assert_eq!(e["type"], "DELETED");
    assert_eq!(e["object"]["kind"], "Table");
    assert_eq!(e["object"]["rows"][0]["cells"][0], "b");

    // The unfiltered watch saw all of it, in order.
    for (kind, name) in [("MODIFIED", "a"), ("DELETED", "b")] {
        let e = next_event(&mut events).await;
        assert_eq!(
            (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
            (Some(kind), Some(name))
        );
    }

    // TTL: the Observation is deleted when due and watchers see it.
    c.send(
        "POST",
        OBS,
        &[JSON],
        &observation("short", json!({"ttlSecondsAfterCreation": 1})),
    )
    .await;
    let e = next_event(&mut events).await;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("short"))
    );
    let e = next_event(&mut events).await;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("DELETED"), Some("short"))
    );

    // timeoutSeconds ends the stream.
    let (_, mut brief) = c
        .watch(&format!("{OBS}?watch=true&timeoutSeconds=1"), &[])
        .await;
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while brief.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the watch ended after timeoutSeconds");

    // After a restart, history older than the restart is gone: 410 Expired for watches and
    // for continue tokens, so clients relist.
    c.send("POST", OBS, &[JSON], &observation("c", json!({})))
        .await;
    let first = c
        .send("GET", &format!("{OBS}?limit=1"), &[], "")
        .await
        .json();
    // A change after the first page: its revision can no longer be rebuilt after a restart.
    c.send("POST", OBS, &[JSON], &observation("d", json!({})))
        .await;
    let token = first["metadata"]["continue"].as_str().map(str::to_owned);
    server.kill_and_restart(&[]);
    // etcd keeps old revisions until it compacts them (kube-apiserver compacts every five
    // minutes): compact now, so both stores are past the first page's revision.
    if let Some(etcd) = &server.etcd {
        etcd.compact();
    }
    let c = Client::admin(&data, server.secure_port);
    let (status, mut old) = c
        .watch(&format!("{OBS}?watch=true&resourceVersion={rv_a}"), &[])
        .await;
    assert_eq!(status, 200);
    let e = next_event(&mut old).await;
    assert_eq!(e["type"], "ERROR");
    assert_eq!(
        (e["object"]["code"].as_i64(), e["object"]["reason"].as_str()),
        (Some(410), Some("Expired"))
    );
    if let Some(token) = token {
        let r = c
            .send("GET", &format!("{OBS}?limit=1&continue={token}"), &[], "")
            .await;
        assert_eq!(r.status, 410, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["reason"], "Expired");
    } else {
        panic!("a list of several objects with limit=1 has a continue token: {first}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_clients_of_the_dev_ca_get_in() {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = DevServer::start(&data, &[]);
    let port = server.secure_port;

    // Plain HTTP gets no answer: the bytes are not a TLS handshake.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.write_all(b"GET /apis HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(
        !String::from_utf8_lossy(&buf).contains("APIGroupList"),
        "plain HTTP was served"
    );

    // A certificate from another CA (and no certificate at all) fails the handshake.
    let foreign =
        zen_certs::issue::Ca::generate("foreign-ca", std::time::Duration::from_secs(3600))
            .unwrap()
            .issue_client(
                "zen-admin",
                Some("system:masters"),
                std::time::Duration::from_secs(3600),
            )
            .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read_to_string(data.join("pki/ca.crt")).unwrap();
    for c in zen_certs::tls::certs_from_pem(&ca, "ca").unwrap() {
        roots.add(c).unwrap();
    }
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
    };
    let foreign_client = builder()
        .with_client_auth_cert(
            zen_certs::tls::certs_from_pem(&foreign.cert_pem, "foreign").unwrap(),
            zen_certs::tls::key_from_pem(&foreign.key_pem, "foreign").unwrap(),
        )
        .unwrap();
    for config in [foreign_client, builder().with_no_client_auth()] {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let refused = match tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
        {
            Err(_) => true,
            // TLS 1.3 reports a refused client certificate on the first read.
            Ok(mut tls) => {
                let _ = tls
                    .write_all(b"GET /apis HTTP/1.1\r\nhost: localhost\r\n\r\n")
                    .await;
                let mut buf = Vec::new();
                let read = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    tls.read_to_end(&mut buf),
                )
                .await;
                matches!(read, Ok(Err(_))) || buf.is_empty()
            }
        };
        assert!(refused, "a client without a dev-CA certificate was served");
    }

    // The admin kubeconfig's certificate is served.
    let c = Client::admin(&data, port);
    assert_eq!(c.send("GET", "/apis", &[], "").await.status, 200);

    // Any certificate of the dev CA is a user: CN the name, O the group.
    let ca_secret: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("pki/zen-watcher-ca.json")).unwrap(),
    )
    .unwrap();
    let dev_ca = zen_certs::issue::Ca::from_pem(zen_certs::issue::CertifiedKeyPem {
        cert_pem: ca_secret["ca.crt"].as_str().unwrap().to_owned(),
        key_pem: ca_secret["ca.key"].as_str().unwrap().to_owned(),
    })
    .unwrap();
    let alice = dev_ca
        .issue_client(
            "alice",
            Some("auditors"),
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
    let c = Client::with_certificate(&data, port, &alice.cert_pem, &alice.key_pem);
    let review = r#"{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},"status":{"userInfo":{}}}"#;
    let r = c
        .send(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            &[("content-type", "application/json")],
            review,
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    assert_eq!(body["kind"], "SelfSubjectReview");
    assert_eq!(body["status"]["userInfo"]["username"], "alice");
    assert_eq!(
        body["status"]["userInfo"]["groups"],
        serde_json::json!(["auditors", "system:authenticated"])
    );
    let r = c
        .send(
            "GET",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["reason"], "MethodNotAllowed");
}
